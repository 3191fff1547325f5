//! meshkeeper's traffic compiler: the mesh ([`Snapshot`]) and one proxy
//! ([`Proxy`]) in, that proxy's Envoy configuration ([`ProxyConfig`]:
//! listeners, route configurations, clusters, endpoints) out, as the typed
//! Envoy v3 API of the `envoy-types` crate. Pure: no Kubernetes client, no
//! I/O, so it is tested with plain values and benchmarked directly.
//!
//! Names follow Istio's (`outbound|9080|v1|reviews.bookinfo.svc.cluster.local`,
//! `0.0.0.0_9080`, route configuration `9080`, `inbound|9080||`).

pub mod binding;
pub mod bootstrap;
mod clusters;
mod compile;
pub mod destination_rule;
pub mod duration;
mod eds;
mod endpoints;
pub mod envoy;
pub mod error;
mod filters;
pub mod gateway;
mod inbound;
mod l4;
pub mod names;
pub mod offline;
mod outbound;
mod policy;
pub mod protocol;
pub mod proxy;
pub mod render;
mod routes;
pub mod snapshot;
mod tls;
pub mod visibility;

pub use compile::{ProxyConfig, compile};
pub use eds::endpoints_for_cluster;
pub use error::{CompileError, RenderError, Warning};
pub use proxy::{Proxy, ProxyKind};
pub use snapshot::{MeshSettings, OutboundPolicy, Snapshot, SnapshotBuilder};
