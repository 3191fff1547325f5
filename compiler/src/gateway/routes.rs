//! A gateway's HTTP route configurations: one virtual host per host where
//! a server's hosts and a bound VirtualService's hosts meet (the more
//! specific of the two), holding the routes of every VirtualService that
//! meets there, oldest first. Names as Istio's: `http.PORT` for plain
//! HTTP, `https.PORT.PORTNAME.GATEWAY.NAMESPACE` for a terminating server.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost, virtual_host};

use super::{BoundServer, intersect};
use crate::binding;
use crate::envoy::bool_value;
use crate::error::{CompileError, Location, Warning};
use crate::proxy::Proxy;
use crate::routes::{self, RouteContext};
use crate::snapshot::{Snapshot, object_name};

pub fn http_route_name(port: u16) -> String {
    format!("http.{port}")
}

pub fn https_route_name(s: &BoundServer<'_>) -> String {
    let port_name = s
        .server
        .port
        .as_ref()
        .and_then(|p| p.name.as_deref())
        .unwrap_or_default();
    format!("https.{}.{port_name}.{}.{}", s.port, s.name, s.namespace)
}

pub fn route_configuration(
    snapshot: &Snapshot,
    proxy: &Proxy,
    name: &str,
    servers: &[&BoundServer<'_>],
) -> Result<RouteConfiguration, CompileError> {
    let domain = &snapshot.mesh.cluster_domain;
    let mut hosts: BTreeMap<String, VirtualHost> = BTreeMap::new();
    for s in servers {
        let scope = s.scope();
        let redirect = s
            .server
            .tls
            .as_ref()
            .and_then(|t| t.https_redirect)
            .unwrap_or(false);
        for vs in binding::bound(snapshot, proxy, &scope) {
            let (vs_ns, _) = object_name(&vs.metadata);
            let server_hosts = s.hosts_for(&vs_ns);
            let mut met: Vec<String> = Vec::new();
            for h in binding::hosts(vs, domain) {
                for sh in &server_hosts {
                    if let Some(m) = intersect(sh, &h).filter(|m| !met.contains(m)) {
                        met.push(m);
                    }
                }
            }
            if met.is_empty() {
                continue;
            }
            let ctx = RouteContext {
                snapshot,
                proxy,
                port: s.port,
                vs,
                scope: &scope,
            };
            let built = routes::http_routes(&ctx)?;
            for host in met {
                let host = host.to_ascii_lowercase();
                let vh = hosts.entry(host.clone()).or_insert_with(|| VirtualHost {
                    name: format!("{host}:{}", s.port),
                    domains: vec![host.clone()],
                    include_request_attempt_count: true,
                    ..Default::default()
                });
                vh.routes.extend(built.iter().cloned());
                if redirect {
                    vh.require_tls = virtual_host::TlsRequirementType::All as i32;
                }
            }
        }
        // Redirected hosts answer even without a VirtualService.
        if redirect {
            for host in s.server.hosts.iter().flatten() {
                let host = host
                    .split_once('/')
                    .map_or(host.as_str(), |(_, h)| h)
                    .to_ascii_lowercase();
                hosts.entry(host.clone()).or_insert_with(|| VirtualHost {
                    name: format!("{host}:{}", s.port),
                    domains: vec![host.clone()],
                    include_request_attempt_count: true,
                    require_tls: virtual_host::TlsRequirementType::All as i32,
                    ..Default::default()
                });
            }
        }
    }
    let mut virtual_hosts: Vec<VirtualHost> = hosts.into_values().collect();
    if virtual_hosts.is_empty() {
        // No host routed: every request gets 404 from an empty host, as
        // in Istio, rather than a listener without routes.
        let port = servers.first().map(|s| s.port).unwrap_or_default();
        virtual_hosts.push(VirtualHost {
            name: format!("blackhole:{port}"),
            domains: vec!["*".into()],
            ..Default::default()
        });
    }
    Ok(RouteConfiguration {
        name: name.into(),
        virtual_hosts,
        validate_clusters: Some(bool_value(false)),
        // Clients put the gateway's port in Host (`example.com:8080`);
        // hosts are matched without it.
        ignore_port_in_host_matching: true,
        ..Default::default()
    })
}

/// VirtualServices bound to one of the proxy's Gateways whose hosts none
/// of that Gateway's servers serves: Istio ignores them silently.
pub fn unbound_virtual_services(
    snapshot: &Snapshot,
    proxy: &Proxy,
    servers: &[BoundServer<'_>],
) -> Vec<Warning> {
    let mut gateways: Vec<&str> = servers.iter().map(|s| s.gateway.as_str()).collect();
    gateways.dedup();
    let mut out = Vec::new();
    for gateway in gateways {
        let scope = [gateway.to_string()];
        for vs in binding::bound(snapshot, proxy, &scope) {
            let (vs_ns, vs_name) = object_name(&vs.metadata);
            let hosts = binding::hosts(vs, &snapshot.mesh.cluster_domain);
            let served = servers.iter().filter(|s| s.gateway == gateway).any(|s| {
                s.hosts_for(&vs_ns)
                    .iter()
                    .any(|sh| hosts.iter().any(|h| intersect(sh, h).is_some()))
            });
            if !served {
                out.push(Warning {
                    at: Location {
                        kind: "VirtualService",
                        namespace: vs_ns,
                        name: vs_name,
                        field: "spec.hosts".into(),
                    },
                    message: format!(
                        "binds Gateway {gateway}, but no server of it serves these hosts (mind `namespace/host` in the server's hosts): its routes are not used there"
                    ),
                });
            }
        }
    }
    out
}
