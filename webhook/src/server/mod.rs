//! The admission server: axum over rustls, a thin shell around
//! [`crate::inject`].
//!
//! - [`tls`]: the serving certificate, reloaded when its files change.
//! - [`listen`]: the accept loop and graceful shutdown; [`start`] wires it all.
//! - [`routes`]: the endpoints, with bounded body reads.
//! - [`review`]: one AdmissionReview in, one answer out (no I/O).
//! - [`state`]: the revision settings and ProxyConfigs requests read.
//! - [`watch`]: keeps the state current from the cluster.
//! - [`metrics`]: Prometheus counters and histograms.
//!
//! Tests build a [`State`] by hand and call [`start`] without a cluster.

pub mod listen;
pub mod metrics;
pub mod review;
pub mod routes;
pub mod state;
pub mod tls;
pub mod watch;

pub use listen::{RunningServer, ServeOptions, ServerOptions, Shutdown, StartError, serve, start};
pub use metrics::{Endpoint, Metrics, RequestOutcome};
pub use routes::{MAX_BODY_BYTES, router};
pub use state::{Injector, Readiness, Revision, State, StateOptions};
pub use tls::{CertFiles, CertResolver, ReloadingCert, TlsError};
