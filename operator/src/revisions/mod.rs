//! Revision bookkeeping as pure logic over plain values (no client, no
//! I/O), so every rule is tested without a cluster:
//!
//! - [`tags`]: where each revision tag of the Mesh points;
//! - [`usage`]: which revision injects each namespace, and what keeps each
//!   revision in use;
//! - [`prune`]: whether an unused revision may be deleted yet;
//! - [`outdated`]: pods running a proxy older than their revision;
//! - [`restarts`]: which workloads to restart for them, and the patch;
//! - [`conditions`]: status conditions whose transition time only moves
//!   when the status does.
//!
//! The controller fills [`PodInfo`] from metadata-only pod watches
//! selected by the label
//! [`meshkeeper_webhook::inject::names::PROXY_VERSION_LABEL`] (only injected
//! pods carry it; the webhook's own pods carry the revision label too).

pub mod conditions;
pub mod outdated;
pub mod prune;
pub mod restarts;
pub mod tags;
pub mod usage;

pub use usage::{OwnerRef, PodInfo};
