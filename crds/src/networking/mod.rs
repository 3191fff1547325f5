//! Istio's `networking.istio.io` API. One module a kind; shared messages in
//! [`common`].

pub mod common;
pub mod destination_rule;
pub mod envoy_filter;
pub mod gateway;
pub mod proxy_config;
pub mod service_entry;
pub mod virtual_service;

pub use destination_rule::DestinationRule;
pub use envoy_filter::EnvoyFilter;
pub use gateway::Gateway;
pub use proxy_config::ProxyConfig;
pub use service_entry::ServiceEntry;
pub use virtual_service::VirtualService;

use crate::parse::{self, ParseError};

/// Any networking object meshkeeper understands, chosen by `kind`. Boxed:
/// the kinds differ a lot in size.
#[derive(Clone, Debug)]
pub enum NetworkingObject {
    VirtualService(Box<VirtualService>),
    DestinationRule(Box<DestinationRule>),
    Gateway(Box<Gateway>),
    ServiceEntry(Box<ServiceEntry>),
    EnvoyFilter(Box<EnvoyFilter>),
    ProxyConfig(Box<ProxyConfig>),
}

/// The kinds [`NetworkingObject`] covers, as error messages list them.
pub const KINDS: [&str; 6] = [
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "EnvoyFilter",
    "ProxyConfig",
];

/// Kinds whose `spec` Istio's schema does not require: an object without
/// one means an empty spec (the per-kind checks then say what is missing).
/// ServiceEntry is not among them: Istio's schema requires its `spec`.
pub const SPEC_OPTIONAL_KINDS: [&str; 5] = [
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "EnvoyFilter",
    "ProxyConfig",
];

impl NetworkingObject {
    /// Parses a `networking.istio.io` object of any served version.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ParseError> {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        if api_version.split('/').next() != Some("networking.istio.io") {
            return Err(ParseError::Field {
                path: "apiVersion".into(),
                message: format!(
                    "`{api_version}` is not a networking.istio.io version (expected networking.istio.io/v1, v1beta1 or v1alpha3)"
                ),
            });
        }
        Ok(match value["kind"].as_str().unwrap_or_default() {
            "VirtualService" => Self::VirtualService(Box::new(parse::from_value(value)?)),
            "DestinationRule" => Self::DestinationRule(Box::new(parse::from_value(value)?)),
            "Gateway" => Self::Gateway(Box::new(parse::from_value(value)?)),
            "ServiceEntry" => Self::ServiceEntry(Box::new(parse::from_value(value)?)),
            "EnvoyFilter" => Self::EnvoyFilter(Box::new(parse::from_value(value)?)),
            "ProxyConfig" => Self::ProxyConfig(Box::new(parse::from_value(value)?)),
            other => {
                return Err(ParseError::Field {
                    path: "kind".into(),
                    message: format!(
                        "unknown kind `{other}`, expected one of {}",
                        KINDS.join(", ")
                    ),
                });
            }
        })
    }

    /// The object as JSON. The typed object always carries the storage
    /// version in `apiVersion`, as the API server returns it.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Self::VirtualService(o) => serde_json::to_value(o),
            Self::DestinationRule(o) => serde_json::to_value(o),
            Self::Gateway(o) => serde_json::to_value(o),
            Self::ServiceEntry(o) => serde_json::to_value(o),
            Self::EnvoyFilter(o) => serde_json::to_value(o),
            Self::ProxyConfig(o) => serde_json::to_value(o),
        }
    }
}
