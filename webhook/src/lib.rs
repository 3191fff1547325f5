//! meshkeeper's admission webhooks.
//!
//! - [`inject`]: sidecar injection, pure logic (a Pod in, a JSON Patch out).
//! - [`server`]: axum over rustls, a thin shell around the pure logic.
//! - [`configuration`]: the MutatingWebhookConfiguration that routes pods
//!   to the server (shared with the operator).
//! - [`process`]: logging, durations and signals, shared by the daemons.

pub mod configuration;
pub mod inject;
pub mod process;
pub mod server;
pub mod validate;
