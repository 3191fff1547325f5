//! A static Envoy bootstrap holding a compiled configuration inline, for
//! checking it with `envoy --mode validate` (and for running a proxy with
//! no control plane). EDS clusters become STATIC with their assignment
//! inline; RDS references become the inline route configuration.

use envoy_types::pb::envoy::config::bootstrap::v3::{Admin, Bootstrap, bootstrap};
use envoy_types::pb::envoy::config::cluster::v3::cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use prost::Message;

use crate::clusters::is_eds;
use crate::compile::ProxyConfig;
use crate::endpoints::socket_address;
use crate::envoy::any;
use crate::filters::HCM;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("listener {listener}: its HTTP connection manager does not decode: {source}")]
    Decode {
        listener: String,
        source: prost::DecodeError,
    },
    #[error("listener {listener}: route configuration `{route}` is not in the compiled routes")]
    MissingRoute { listener: String, route: String },
}

pub fn static_bootstrap(config: &ProxyConfig, node_id: &str) -> Result<Bootstrap, BootstrapError> {
    let clusters = config
        .clusters
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if is_eds(&c) {
                c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                ));
                c.eds_cluster_config = None;
                c.load_assignment = config
                    .endpoints
                    .iter()
                    .find(|e| e.cluster_name == c.name)
                    .cloned();
            }
            c
        })
        .collect();
    let mut listeners = config.listeners.clone();
    for l in &mut listeners {
        let name = l.name.clone();
        for chain in &mut l.filter_chains {
            for f in &mut chain.filters {
                inline_routes(f, config, &name)?;
            }
        }
    }
    Ok(Bootstrap {
        node: Some(Node {
            id: node_id.into(),
            cluster: "meshkeeper-validate".into(),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket_address("127.0.0.1", 15000)),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            listeners,
            clusters,
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn inline_routes(
    f: &mut Filter,
    config: &ProxyConfig,
    listener: &str,
) -> Result<(), BootstrapError> {
    if f.name != HCM {
        return Ok(());
    }
    let Some(filter::ConfigType::TypedConfig(typed)) = f.config_type.as_mut() else {
        return Ok(());
    };
    let mut hcm = HttpConnectionManager::decode(typed.value.as_slice()).map_err(|source| {
        BootstrapError::Decode {
            listener: listener.into(),
            source,
        }
    })?;
    if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier.as_ref() {
        let route = config
            .routes
            .iter()
            .find(|r| r.name == rds.route_config_name)
            .cloned()
            .ok_or_else(|| BootstrapError::MissingRoute {
                listener: listener.into(),
                route: rds.route_config_name.clone(),
            })?;
        hcm.route_specifier = Some(http_connection_manager::RouteSpecifier::RouteConfig(route));
        *typed = any(&hcm);
    }
    Ok(())
}
