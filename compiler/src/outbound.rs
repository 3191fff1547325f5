//! Outbound listeners of a sidecar. iptables sends every outbound
//! connection to `virtualOutbound` (15001), which hands it to the listener
//! for its original destination: `0.0.0.0_PORT` for HTTP ports (routes
//! pick the service by Host), `ADDRESS_PORT` for a TCP service port. These
//! listeners do not bind (`bind_to_port: false`): they only receive
//! connections handed over. Anything else takes the catch-all chain.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use crate::binding;
use crate::endpoints::socket_address;
use crate::envoy::bool_value;
use crate::error::CompileError;
use crate::filters::{self, Routes};
use crate::l4::{self, L4Target};
use crate::names;
use crate::proxy::Proxy;
use crate::snapshot::{OutboundPolicy, Service, ServicePort, Snapshot};

pub fn listeners(snapshot: &Snapshot, proxy: &Proxy) -> Result<Vec<Listener>, CompileError> {
    let mut out = vec![virtual_outbound(snapshot)];
    let mut http_ports = BTreeSet::new();
    // One listener per address and port: the first service (by hostname)
    // keeps it. Address-less TLS services share `0.0.0.0_PORT`, told
    // apart by SNI.
    let mut by_address: BTreeMap<(String, u16), (&Service, &ServicePort)> = BTreeMap::new();
    let mut wildcard: BTreeMap<u16, Vec<(&Service, &ServicePort)>> = BTreeMap::new();
    for service in snapshot.visible_services(&proxy.namespace) {
        for port in &service.ports {
            if port.protocol.is_http() {
                http_ports.insert(port.port);
            } else if service.addresses.is_empty() {
                if l4::is_tls(port) {
                    wildcard.entry(port.port).or_default().push((service, port));
                }
            } else {
                for address in &service.addresses {
                    by_address
                        .entry((address.clone(), port.port))
                        .or_insert((service, port));
                }
            }
        }
    }
    out.extend(http_ports.iter().copied().map(http_listener));
    let scope = [binding::MESH.to_string()];
    let chains_of = |service: &Service, port: &ServicePort, wildcard: bool| {
        let virtual_services =
            binding::mesh_virtual_services_for(snapshot, proxy, &service.hostname);
        l4::filter_chains(&L4Target {
            snapshot,
            proxy,
            scope: &scope,
            virtual_services: &virtual_services,
            service,
            port,
            wildcard,
        })
    };
    for ((address, port), (service, service_port)) in &by_address {
        let chains = chains_of(service, service_port, false)?;
        out.push(l4_listener(
            names::tcp_listener(address, *port),
            address,
            *port,
            chains,
        ));
    }
    for (port, services) in wildcard {
        // An HTTP listener already holds `0.0.0.0_PORT`; Istio resolves the
        // clash the same way, in favour of HTTP.
        if http_ports.contains(&port) {
            continue;
        }
        let mut chains: Vec<FilterChain> = Vec::new();
        for (service, service_port) in services {
            for chain in chains_of(service, service_port, true)? {
                // Envoy rejects two chains with the same match; the first
                // service keeps it.
                if !chains
                    .iter()
                    .any(|c| c.filter_chain_match == chain.filter_chain_match)
                {
                    chains.push(chain);
                }
            }
        }
        out.push(l4_listener(
            names::tcp_listener("0.0.0.0", port),
            "0.0.0.0",
            port,
            chains,
        ));
    }
    Ok(out)
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

/// A TCP or TLS service listener; the TLS inspector runs when a chain
/// matches on SNI.
fn l4_listener(name: String, address: &str, port: u16, chains: Vec<FilterChain>) -> Listener {
    let sni = chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.server_names.is_empty())
    });
    Listener {
        filter_chains: chains,
        listener_filters: if sni {
            vec![l4::tls_inspector()]
        } else {
            Vec::new()
        },
        ..not_bound(name, address, port)
    }
}
