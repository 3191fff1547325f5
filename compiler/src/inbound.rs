//! Inbound side of a sidecar: iptables sends every inbound connection to
//! `virtualInbound` (15006); the original-destination listener filter
//! restores the address the client dialled, and a filter chain per
//! workload port (the target ports of the services that select this pod)
//! sends it to `inbound|PORT||`. Other ports pass through to the
//! application; connections addressed to 15006 itself are dropped so a
//! misrouted connection cannot loop.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;

use crate::clusters;
use crate::endpoints::socket_address;
use crate::envoy::{any, u32_value};
use crate::filters::{self, Routes};
use crate::names;
use crate::protocol::Protocol;
use crate::proxy::Proxy;
use crate::routes::{actions, matches};
use crate::snapshot::Snapshot;

/// Ports the workload serves, with their protocol: the endpoint ports of
/// every service in the proxy's namespace that has the proxy's IP as an
/// endpoint. The first service (by hostname) decides a port's protocol.
pub fn workload_ports(snapshot: &Snapshot, proxy: &Proxy) -> BTreeMap<u16, Protocol> {
    let mut ports = BTreeMap::new();
    for service in snapshot
        .services
        .iter()
        .filter(|s| s.namespace == proxy.namespace)
    {
        for endpoint in service.endpoints.iter().filter(|e| e.address == proxy.ip) {
            for port in &service.ports {
                ports
                    .entry(endpoint.port_for(port))
                    .or_insert(port.protocol);
            }
        }
    }
    ports
}

pub fn clusters(snapshot: &Snapshot, proxy: &Proxy) -> Vec<Cluster> {
    let mut out: Vec<Cluster> = workload_ports(snapshot, proxy)
        .into_keys()
        .map(|port| clusters::inbound(snapshot, &names::inbound_cluster(port)))
        .collect();
    out.push(clusters::inbound_passthrough(snapshot));
    out
}

pub fn listener(snapshot: &Snapshot, proxy: &Proxy) -> Listener {
    let mut chains = vec![FilterChain {
        name: "virtualInbound-blackhole".into(),
        filter_chain_match: Some(port_match(names::VIRTUAL_INBOUND_PORT)),
        filters: vec![filters::tcp_proxy(
            names::BLACKHOLE_CLUSTER,
            names::BLACKHOLE_CLUSTER,
        )],
        ..Default::default()
    }];
    for (port, protocol) in workload_ports(snapshot, proxy) {
        chains.push(port_chain(port, protocol));
    }
    Listener {
        name: names::VIRTUAL_INBOUND_LISTENER.into(),
        address: Some(socket_address("0.0.0.0", names::VIRTUAL_INBOUND_PORT)),
        traffic_direction: TrafficDirection::Inbound as i32,
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.original_dst".into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                &OriginalDst {},
            ))),
            ..Default::default()
        }],
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            name: "virtualInbound-catchall".into(),
            filters: vec![filters::tcp_proxy(
                names::INBOUND_PASSTHROUGH_CLUSTER,
                names::INBOUND_PASSTHROUGH_CLUSTER,
            )],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn port_match(port: u16) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: Some(u32_value(u32::from(port))),
        ..Default::default()
    }
}

fn port_chain(port: u16, protocol: Protocol) -> FilterChain {
    let cluster = names::inbound_cluster(port);
    let filter = if protocol.is_http() {
        let routes = RouteConfiguration {
            name: cluster.clone(),
            virtual_hosts: vec![VirtualHost {
                name: format!("inbound|http|{port}"),
                domains: vec!["*".into()],
                routes: vec![Route {
                    name: "default".into(),
                    r#match: Some(matches::catch_all()),
                    action: Some(inbound_action(cluster.clone())),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        filters::http_connection_manager(
            &format!("inbound_0.0.0.0_{port}"),
            Routes::Inline(Box::new(routes)),
            false,
        )
    } else {
        filters::tcp_proxy(&cluster, &cluster)
    };
    FilterChain {
        name: cluster,
        filter_chain_match: Some(port_match(port)),
        filters: vec![filter],
        ..Default::default()
    }
}

/// Inbound requests are not retried: the caller's sidecar already does.
fn inbound_action(cluster: String) -> envoy_types::pb::envoy::config::route::v3::route::Action {
    let mut action = actions::forward_to(cluster);
    if let envoy_types::pb::envoy::config::route::v3::route::Action::Route(r) = &mut action {
        r.retry_policy = None;
    }
    action
}
