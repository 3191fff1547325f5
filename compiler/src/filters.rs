//! Network and HTTP filters the listeners share: the HTTP connection
//! manager (with RDS or an inline route configuration) and the TCP proxy.

use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};

use crate::envoy::{ads_config_source, any};
use crate::routes::actions::{CORS_FILTER, FAULT_FILTER};

pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

fn http_filter<M: prost::Message + prost::Name>(name: &str, config: &M) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

/// Where an HTTP connection manager gets its routes.
pub enum Routes {
    /// Over ADS by name (outbound: route configuration `9080`).
    Rds(String),
    /// Inline (inbound, where the routes never change apart from the port).
    Inline(Box<RouteConfiguration>),
}

/// Outbound HTTP: fault and CORS filters (empty unless a route configures
/// them) before the router, as Istio orders them.
pub fn http_connection_manager(stat_prefix: &str, routes: Routes, outbound: bool) -> Filter {
    let mut filters = Vec::new();
    if outbound {
        filters.push(http_filter(FAULT_FILTER, &HttpFault::default()));
        filters.push(http_filter(CORS_FILTER, &Cors::default()));
    }
    filters.push(http_filter("envoy.filters.http.router", &Router::default()));
    let route_specifier = match routes {
        Routes::Rds(name) => http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: name,
        }),
        Routes::Inline(config) => http_connection_manager::RouteSpecifier::RouteConfig(*config),
    };
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.into(),
        http_filters: filters,
        route_specifier: Some(route_specifier),
        ..Default::default()
    };
    Filter {
        name: HCM.into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
    }
}

pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&proxy))),
    }
}
