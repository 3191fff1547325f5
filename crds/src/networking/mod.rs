//! Istio's `networking.istio.io` API. One module a kind; shared messages in
//! [`common`].

pub mod common;
pub mod destination_rule;
pub mod envoy_filter;
pub mod gateway;
pub mod proxy_config;
pub mod service_entry;
pub mod virtual_service;

pub use gateway::Gateway;
