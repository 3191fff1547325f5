//! meshkeeper's admission webhooks.
//!
//! - [`inject`]: sidecar injection, pure logic (a Pod in, a JSON Patch out).
//! - [`server`]: axum over rustls, a thin shell around the pure logic.
//! - [`configuration`]: the MutatingWebhookConfiguration that routes pods
//!   to the server (shared with the operator).

pub mod configuration;
pub mod inject;
pub mod server;
pub mod validate;
