//! Outbound listeners of a sidecar. iptables sends every outbound
//! connection to `virtualOutbound` (15001), which hands it to the listener
//! for its original destination: `0.0.0.0_PORT` for HTTP ports (routes
//! pick the service by Host), `ADDRESS_PORT` for a TCP service port. These
//! listeners do not bind (`bind_to_port: false`): they only receive
//! connections handed over. Anything else takes the catch-all chain.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use crate::endpoints::socket_address;
use crate::envoy::bool_value;
use crate::filters::{self, Routes};
use crate::names;
use crate::proxy::Proxy;
use crate::snapshot::{OutboundPolicy, Snapshot};

pub fn listeners(snapshot: &Snapshot, proxy: &Proxy) -> Vec<Listener> {
    let mut out = vec![virtual_outbound(snapshot)];
    let mut http_ports = BTreeSet::new();
    let mut tcp = BTreeSet::new();
    for service in snapshot.visible_services(&proxy.namespace) {
        for port in &service.ports {
            if port.protocol.is_http() {
                http_ports.insert(port.port);
            } else {
                let cluster = names::outbound_cluster(port.port, "", &service.hostname);
                for address in &service.addresses {
                    tcp.insert((address.clone(), port.port, cluster.clone()));
                }
            }
        }
    }
    out.extend(http_ports.into_iter().map(http_listener));
    // One TCP listener per address and port: the first service keeps it.
    let mut seen = BTreeSet::new();
    for (address, port, cluster) in tcp {
        if seen.insert((address.clone(), port)) {
            out.push(tcp_listener(&address, port, &cluster));
        }
    }
    out
}

/// The cluster unknown destinations go to.
pub fn fallback_cluster(snapshot: &Snapshot) -> &'static str {
    match snapshot.mesh.outbound_policy {
        OutboundPolicy::AllowAny => names::PASSTHROUGH_CLUSTER,
        OutboundPolicy::RegistryOnly => names::BLACKHOLE_CLUSTER,
    }
}

fn virtual_outbound(snapshot: &Snapshot) -> Listener {
    let fallback = fallback_cluster(snapshot);
    Listener {
        name: names::VIRTUAL_OUTBOUND_LISTENER.into(),
        address: Some(socket_address("0.0.0.0", names::VIRTUAL_OUTBOUND_PORT)),
        use_original_dst: Some(bool_value(true)),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: vec![FilterChain {
            name: "virtualOutbound-catchall-tcp".into(),
            filters: vec![filters::tcp_proxy(fallback, fallback)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn not_bound(name: String, address: &str, port: u16) -> Listener {
    Listener {
        name,
        address: Some(socket_address(address, port)),
        bind_to_port: Some(bool_value(false)),
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

fn http_listener(port: u16) -> Listener {
    let name = names::http_listener(port);
    let hcm = filters::http_connection_manager(
        &format!("outbound_{name}"),
        Routes::Rds(names::route_config(port)),
        true,
    );
    Listener {
        filter_chains: vec![FilterChain {
            filters: vec![hcm],
            ..Default::default()
        }],
        ..not_bound(name, "0.0.0.0", port)
    }
}

fn tcp_listener(address: &str, port: u16, cluster: &str) -> Listener {
    Listener {
        filter_chains: vec![FilterChain {
            filters: vec![filters::tcp_proxy(cluster, cluster)],
            ..Default::default()
        }],
        ..not_bound(names::tcp_listener(address, port), address, port)
    }
}
