//! Gateway proxies: the servers of every Gateway whose `selector` the
//! proxy's labels satisfy become listeners `0.0.0.0_PORT` (they bind:
//! no iptables capture on a gateway), one per port:
//!
//! - plain HTTP servers share one connection manager whose routes come
//!   over RDS as `http.PORT`, built from the VirtualServices bound to
//!   their Gateways ([`routes`]);
//! - HTTPS servers that terminate TLS get a filter chain each, matched by
//!   SNI, with the certificate over SDS and routes `https.PORT.NAME.GW.NS`;
//! - TLS PASSTHROUGH servers route by SNI with the VirtualServices' `tls`
//!   rules, terminated TLS and TCP servers with their `tcp` rules.
//!
//! What cannot be served (AUTO_PASSTHROUGH and ISTIO_MUTUAL, which need
//! mesh certificates; a second protocol on a port) is left out with a
//! warning, as are VirtualServices whose hosts no server serves.

pub mod routes;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    TrafficDirection, TransportSocket, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use meshkeeper_crds::networking::Gateway;
use meshkeeper_crds::networking::gateway::{Server, ServerTlsMode};
use meshkeeper_crds::networking::virtual_service::RouteDestination;

use crate::binding::{self, StaticMatch};
use crate::endpoints::socket_address;
use crate::envoy::any;
use crate::error::{CompileError, Location, Warning};
use crate::filters::{self, Routes};
use crate::l4;
use crate::names;
use crate::protocol::Protocol;
use crate::proxy::Proxy;
use crate::routes::RouteContext;
use crate::snapshot::{Snapshot, object_name};
use crate::tls;

/// One server of a Gateway that selects the proxy.
pub struct BoundServer<'a> {
    /// `namespace/name` of the Gateway, as VirtualServices name it.
    pub gateway: String,
    pub namespace: String,
    pub name: String,
    /// Position in `spec.servers`, for messages.
    pub index: usize,
    pub server: &'a Server,
    pub port: u16,
    pub kind: Kind,
}

/// How a server handles its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain HTTP (perhaps redirecting to HTTPS).
    Http,
    /// TLS terminated, then HTTP.
    Https,
    /// TLS not terminated: routed by SNI.
    TlsPassthrough,
    /// TLS terminated, then opaque TCP.
    TlsTerminated,
    Tcp,
}

impl Kind {
    /// Servers of one family share a port: HTTP is one connection manager
    /// for every host, TLS-based servers are told apart by SNI, TCP has
    /// nothing to tell servers apart.
    fn family(self) -> u8 {
        match self {
            Kind::Http => 0,
            Kind::Https | Kind::TlsPassthrough | Kind::TlsTerminated => 1,
            Kind::Tcp => 2,
        }
    }
}

impl BoundServer<'_> {
    fn location(&self, field: &str) -> Location {
        Location {
            kind: "Gateway",
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            field: format!("spec.servers[{}].{field}", self.index),
        }
    }

    pub fn error(&self, field: &str, message: String) -> CompileError {
        CompileError::Invalid {
            at: Box::new(self.location(field)),
            message,
        }
    }

    fn warning(&self, field: &str, message: String) -> Warning {
        Warning {
            at: self.location(field),
            message,
        }
    }

    /// The server's hosts a VirtualService of `vs_namespace` may bind:
    /// `ns/host` admits only that namespace (`.` the Gateway's, `*` any).
    pub fn hosts_for(&self, vs_namespace: &str) -> Vec<&str> {
        self.server
            .hosts
            .iter()
            .flatten()
            .filter_map(|h| match h.split_once('/') {
                None => Some(h.as_str()),
                Some(("*", host)) => Some(host),
                Some((".", host)) => (vs_namespace == self.namespace).then_some(host),
                Some((ns, host)) => (ns == vs_namespace).then_some(host),
            })
            .collect()
    }

    /// SNI names the server answers: its hosts without namespaces; none
    /// (any name) when one of them is `*`.
    fn server_names(&self) -> Vec<String> {
        let hosts: Vec<String> = self
            .server
            .hosts
            .iter()
            .flatten()
            .map(|h| h.split_once('/').map_or(h.as_str(), |(_, h)| h).to_string())
            .collect();
        if hosts.iter().any(|h| h == "*") {
            Vec::new()
        } else {
            hosts
        }
    }

    fn scope(&self) -> Vec<String> {
        vec![self.gateway.clone()]
    }
}

/// Where a server host and a VirtualService host meet: the more specific
/// of the two when one covers the other.
pub fn intersect(server_host: &str, vs_host: &str) -> Option<String> {
    if names::host_matches(server_host, vs_host) {
        Some(vs_host.to_string())
    } else if names::host_matches(vs_host, server_host) {
        Some(server_host.to_string())
    } else {
        None
    }
}

/// The servers of the Gateways that select `proxy`, in Gateway then
/// server order; what cannot be served becomes a warning.
pub fn servers<'a>(
    snapshot: &'a Snapshot,
    proxy: &Proxy,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<BoundServer<'a>>, CompileError> {
    let mut out = Vec::new();
    for gw in snapshot.gateways.iter().filter(|g| selects(g, proxy)) {
        let (namespace, name) = object_name(&gw.metadata);
        for (index, server) in gw.spec.servers.iter().flatten().enumerate() {
            let mut bound = BoundServer {
                gateway: format!("{namespace}/{name}"),
                namespace: namespace.clone(),
                name: name.clone(),
                index,
                server,
                port: 0,
                kind: Kind::Tcp,
            };
            let number = server.port.as_ref().and_then(|p| p.number).unwrap_or(0);
            bound.port = u16::try_from(number)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    bound.error(
                        "port.number",
                        format!("{number} is not a port number (1-65535)"),
                    )
                })?;
            match kind(server) {
                Ok(k) => bound.kind = k,
                Err(why) => {
                    warnings.push(bound.warning("tls.mode", why));
                    continue;
                }
            }
            out.push(bound);
        }
    }
    Ok(out)
}

fn selects(gw: &Gateway, proxy: &Proxy) -> bool {
    gw.spec.selector.as_ref().is_none_or(|s| proxy.matches(s))
}

fn kind(server: &Server) -> Result<Kind, String> {
    let protocol = server
        .port
        .as_ref()
        .and_then(|p| p.protocol.as_deref())
        .map(Protocol::parse)
        .unwrap_or(Protocol::Tcp);
    let mode = server
        .tls
        .as_ref()
        .and_then(|t| t.mode)
        .unwrap_or(ServerTlsMode::Passthrough);
    let unsupported = |m: &str| {
        Err(format!(
            "{m} needs the mesh's workload certificates, which meshkeeper does not issue yet: the server is not served"
        ))
    };
    match protocol {
        // TLS settings on an HTTP server only carry httpsRedirect.
        p if p.is_http() => Ok(Kind::Http),
        Protocol::Https | Protocol::Tls => match mode {
            ServerTlsMode::Passthrough => Ok(Kind::TlsPassthrough),
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
                Ok(if protocol == Protocol::Https {
                    Kind::Https
                } else {
                    Kind::TlsTerminated
                })
            }
            ServerTlsMode::AutoPassthrough => unsupported("AUTO_PASSTHROUGH"),
            ServerTlsMode::IstioMutual => unsupported("ISTIO_MUTUAL"),
        },
        _ => Ok(Kind::Tcp),
    }
}

/// A gateway's listeners and route configurations.
pub struct Generated {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
}

pub fn generate(
    snapshot: &Snapshot,
    proxy: &Proxy,
    warnings: &mut Vec<Warning>,
) -> Result<Generated, CompileError> {
    let servers = servers(snapshot, proxy, warnings)?;
    warnings.extend(routes::unbound_virtual_services(snapshot, proxy, &servers));
    let mut by_port: BTreeMap<u16, Vec<&BoundServer<'_>>> = BTreeMap::new();
    for s in &servers {
        let on_port = by_port.entry(s.port).or_default();
        match on_port.first() {
            Some(first) if first.kind.family() != s.kind.family() => warnings.push(s.warning(
                "port",
                format!(
                    "port {} is already served as {:?} by {} spec.servers[{}]; one port carries one kind of traffic: the server is not served",
                    s.port, first.kind, first.gateway, first.index
                ),
            )),
            _ => on_port.push(s),
        }
    }
    let mut out = Generated {
        listeners: Vec::new(),
        routes: Vec::new(),
    };
    for (port, on_port) in by_port {
        let mut chains = Vec::new();
        let mut sni = false;
        if on_port.iter().all(|s| s.kind == Kind::Http) {
            let name = routes::http_route_name(port);
            out.routes.push(routes::route_configuration(
                snapshot, proxy, &name, &on_port,
            )?);
            chains.push(FilterChain {
                filters: vec![hcm(port, name)],
                ..Default::default()
            });
        } else {
            for s in &on_port {
                let new = match s.kind {
                    Kind::Https => {
                        let name = routes::https_route_name(s);
                        out.routes.push(routes::route_configuration(
                            snapshot,
                            proxy,
                            &name,
                            &[*s],
                        )?);
                        vec![terminated_chain(s, vec![hcm(port, name)], true)?]
                    }
                    Kind::TlsTerminated => match tcp_filter(snapshot, proxy, s)? {
                        Some(f) => vec![terminated_chain(s, vec![f], false)?],
                        None => Vec::new(),
                    },
                    Kind::TlsPassthrough => passthrough_chains(snapshot, proxy, s)?,
                    Kind::Tcp => tcp_filter(snapshot, proxy, s)?
                        .map(|f| FilterChain {
                            filters: vec![f],
                            ..Default::default()
                        })
                        .into_iter()
                        .collect(),
                    Kind::Http => Vec::new(),
                };
                if new.is_empty() {
                    warnings.push(s.warning(
                        "hosts",
                        "no VirtualService bound to this Gateway routes this server's traffic: nothing is served on it".into(),
                    ));
                }
                for chain in new {
                    // Envoy rejects two chains with one match: the first
                    // server keeps it.
                    if chains
                        .iter()
                        .any(|c: &FilterChain| c.filter_chain_match == chain.filter_chain_match)
                    {
                        warnings.push(s.warning(
                            "hosts",
                            "an earlier server on this port already matches the same SNI names: this one is not served".into(),
                        ));
                        continue;
                    }
                    sni |= chain
                        .filter_chain_match
                        .as_ref()
                        .is_some_and(|m| !m.server_names.is_empty());
                    chains.push(chain);
                }
            }
        }
        if chains.is_empty() {
            continue;
        }
        out.listeners.push(Listener {
            name: names::http_listener(port),
            address: Some(socket_address("0.0.0.0", port)),
            traffic_direction: TrafficDirection::Outbound as i32,
            listener_filters: if sni {
                vec![l4::tls_inspector()]
            } else {
                Vec::new()
            },
            filter_chains: chains,
            ..Default::default()
        });
    }
    Ok(out)
}

fn hcm(port: u16, route_name: String) -> Filter {
    filters::http_connection_manager(
        &format!("outbound_{}", names::http_listener(port)),
        Routes::Rds(route_name),
        true,
    )
}

fn terminated_chain(
    s: &BoundServer<'_>,
    filters: Vec<Filter>,
    alpn: bool,
) -> Result<FilterChain, CompileError> {
    let settings = s.server.tls.clone().unwrap_or_default();
    let context = tls::downstream(&settings, alpn, &|field, message| s.error(field, message))?;
    let server_names = s.server_names();
    Ok(FilterChain {
        filter_chain_match: (!server_names.is_empty()).then(|| FilterChainMatch {
            server_names,
            ..Default::default()
        }),
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
        }),
        filters,
        ..Default::default()
    })
}

/// The VirtualServices bound to the server's Gateway with a host the
/// server serves.
fn bound_virtual_services<'a>(
    snapshot: &'a Snapshot,
    proxy: &Proxy,
    s: &BoundServer<'_>,
) -> Vec<&'a meshkeeper_crds::networking::VirtualService> {
    let scope = s.scope();
    binding::bound(snapshot, proxy, &scope)
        .filter(|vs| {
            let ns = vs.metadata.namespace.as_deref().unwrap_or("default");
            let server_hosts = s.hosts_for(ns);
            binding::hosts(vs, &snapshot.mesh.cluster_domain)
                .iter()
                .any(|h| server_hosts.iter().any(|sh| intersect(sh, h).is_some()))
        })
        .collect()
}

/// The first `tcp` rule of a bound VirtualService whose match holds for
/// the server (Istio takes the first).
fn tcp_filter(
    snapshot: &Snapshot,
    proxy: &Proxy,
    s: &BoundServer<'_>,
) -> Result<Option<Filter>, CompileError> {
    let scope = s.scope();
    for vs in bound_virtual_services(snapshot, proxy, s) {
        let vs_ns = vs.metadata.namespace.as_deref().unwrap_or("default");
        for (i, rule) in vs.spec.tcp.iter().flatten().enumerate() {
            let Some(routes) = rule.route.as_deref().filter(|r| !r.is_empty()) else {
                continue;
            };
            let matches = rule.r#match.as_deref().unwrap_or_default();
            let holds = matches.is_empty()
                || matches.iter().any(|m| {
                    StaticMatch {
                        port: m.port,
                        source_labels: m.source_labels.as_ref(),
                        source_namespace: m.source_namespace.as_deref(),
                        gateways: m.gateways.as_deref(),
                    }
                    .holds(proxy, vs_ns, &scope, s.port)
                });
            if holds {
                let ctx = context(snapshot, proxy, s, vs, &scope);
                return route_filter(&ctx, vs, routes, &format!("tcp[{i}]")).map(Some);
            }
        }
    }
    Ok(None)
}

/// One chain per `tls` match that holds, on its SNI names (those the
/// server serves).
fn passthrough_chains(
    snapshot: &Snapshot,
    proxy: &Proxy,
    s: &BoundServer<'_>,
) -> Result<Vec<FilterChain>, CompileError> {
    let scope = s.scope();
    let mut out: Vec<FilterChain> = Vec::new();
    for vs in bound_virtual_services(snapshot, proxy, s) {
        let vs_ns = vs.metadata.namespace.as_deref().unwrap_or("default");
        let server_hosts = s.hosts_for(vs_ns);
        for (i, rule) in vs.spec.tls.iter().flatten().enumerate() {
            let Some(routes) = rule.route.as_deref().filter(|r| !r.is_empty()) else {
                continue;
            };
            for m in rule.r#match.iter().flatten() {
                let holds = StaticMatch {
                    port: m.port,
                    source_labels: m.source_labels.as_ref(),
                    source_namespace: m.source_namespace.as_deref(),
                    gateways: m.gateways.as_deref(),
                }
                .holds(proxy, vs_ns, &scope, s.port);
                if !holds {
                    continue;
                }
                let mut sni: Vec<String> = m
                    .sni_hosts
                    .iter()
                    .flatten()
                    .filter_map(|h| server_hosts.iter().find_map(|sh| intersect(sh, h)))
                    .collect();
                sni.dedup();
                if sni.is_empty() {
                    continue;
                }
                let chain_match = Some(FilterChainMatch {
                    server_names: sni,
                    ..Default::default()
                });
                if out.iter().any(|c| c.filter_chain_match == chain_match) {
                    continue;
                }
                let ctx = context(snapshot, proxy, s, vs, &scope);
                out.push(FilterChain {
                    filter_chain_match: chain_match,
                    filters: vec![route_filter(&ctx, vs, routes, &format!("tls[{i}]"))?],
                    ..Default::default()
                });
            }
        }
    }
    Ok(out)
}

fn context<'a>(
    snapshot: &'a Snapshot,
    proxy: &'a Proxy,
    s: &BoundServer<'_>,
    vs: &'a meshkeeper_crds::networking::VirtualService,
    scope: &'a [String],
) -> RouteContext<'a> {
    RouteContext {
        snapshot,
        proxy,
        port: s.port,
        vs,
        scope,
    }
}

fn route_filter(
    ctx: &RouteContext<'_>,
    vs: &meshkeeper_crds::networking::VirtualService,
    routes: &[RouteDestination],
    at: &str,
) -> Result<Filter, CompileError> {
    l4::proxy_filter(ctx, vs, routes, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_meet_at_the_more_specific() {
        assert_eq!(
            intersect("*", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("a.example.com", "*.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(intersect("*.example.com", "a.example.org"), None);
    }

    #[test]
    fn namespaced_server_hosts_admit_only_their_namespace() {
        let server: Server = serde_json::from_value(serde_json::json!({
            "port": {"number": 80, "name": "http", "protocol": "HTTP"},
            "hosts": ["./a.example.com", "ns2/b.example.com", "*/c.example.com", "d.example.com"]
        }))
        .unwrap();
        let bound = BoundServer {
            gateway: "ns1/gw".into(),
            namespace: "ns1".into(),
            name: "gw".into(),
            index: 0,
            server: &server,
            port: 80,
            kind: Kind::Http,
        };
        assert_eq!(
            bound.hosts_for("ns1"),
            ["a.example.com", "c.example.com", "d.example.com"]
        );
        assert_eq!(
            bound.hosts_for("ns2"),
            ["b.example.com", "c.example.com", "d.example.com"]
        );
        assert_eq!(kind(&server), Ok(Kind::Http));
    }
}
