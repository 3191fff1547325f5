//! The admission server: axum over rustls, a thin shell around
//! [`crate::inject`].
//!
//! - [`tls`]: the serving certificate, reloaded when its files change.
//! - [`listen`]: the accept loop and graceful shutdown; [`start`] wires it all.
//! - [`routes`]: the endpoints, with bounded body reads.
//! - [`review`]: one AdmissionReview in, one answer out (no I/O).
//! - [`validate_review`]: `/validate`, the call into [`crate::validate`].
//! - [`state`]: the revision settings, ProxyConfigs and the validation view
//!   requests read.
//! - [`cluster_view`]: the VirtualServices, DestinationRules, terminating
//!   namespaces and services' running pods `/validate` judges against.
//! - [`watch`]: keeps the state current from the cluster.
//! - [`metrics`]: Prometheus counters and histograms.
//!
//! Tests build a [`State`] by hand and call [`start`] without a cluster.

pub mod cluster_view;
pub mod listen;
pub mod metrics;
pub mod review;
pub mod routes;
pub mod state;
pub mod tls;
pub mod validate_review;
pub mod watch;

pub use listen::{RunningServer, ServeOptions, ServerOptions, Shutdown, StartError, serve, start};
pub use metrics::{Endpoint, Metrics, RequestOutcome};
pub use routes::{MAX_BODY_BYTES, router};
pub use state::{Injector, Readiness, Revision, State, StateOptions, ValidationView};
pub use tls::{CertFiles, CertResolver, ReloadingCert, TlsError};
