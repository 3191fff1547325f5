//! Route configurations of a sidecar: one per HTTP port (`9080`), one
//! virtual host per visible service on that port, routes from the
//! VirtualService bound to the mesh that covers the service's host (or a
//! default route to the service's cluster), and a catch-all host that
//! passes unknown traffic through or blocks it per the outbound policy.

pub mod actions;
pub mod matches;

use std::collections::{BTreeSet, HashSet};

use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, VirtualHost, route, route_action,
};
use envoy_types::pb::google::protobuf::Duration;
use meshkeeper_crds::networking::VirtualService;
use meshkeeper_crds::networking::destination_rule::ConsistentHashLb;
use meshkeeper_crds::networking::virtual_service::Destination;

use crate::binding;
use crate::destination_rule;
use crate::envoy::bool_value;
use crate::error::{CompileError, Location};
use crate::names;
use crate::proxy::Proxy;
use crate::snapshot::{OutboundPolicy, Service, Snapshot};

/// What routes of one VirtualService are compiled against.
pub struct RouteContext<'a> {
    pub snapshot: &'a Snapshot,
    pub proxy: &'a Proxy,
    /// The listener port the routes serve.
    pub port: u16,
    pub vs: &'a VirtualService,
    /// Gateways the proxy is: `mesh` for a sidecar, `ns/name` of the
    /// Gateway whose server the routes serve for a gateway proxy.
    pub scope: &'a [String],
}

impl RouteContext<'_> {
    pub(crate) fn namespace(&self) -> &str {
        self.vs.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn error(&self, field: &str, message: String) -> CompileError {
        CompileError::Invalid {
            at: Box::new(Location {
                kind: "VirtualService",
                namespace: self.namespace().into(),
                name: self.vs.metadata.name.clone().unwrap_or_default(),
                field: format!("spec.{field}"),
            }),
            message,
        }
    }

    pub fn duration(&self, field: &str, text: &str) -> Result<Duration, CompileError> {
        crate::duration::parse(text).map_err(|m| self.error(field, m))
    }

    /// The cluster a destination names, and its resolved host. The port is
    /// the destination's, else the service's only port, else the
    /// listener's, as Istio picks it.
    pub fn cluster(
        &self,
        dest: &Destination,
        field: &str,
    ) -> Result<(String, String), CompileError> {
        let host = dest
            .host
            .as_deref()
            .ok_or_else(|| self.error(&format!("{field}.host"), "is required".into()))?;
        let host = names::resolve_host(host, self.namespace(), &self.snapshot.mesh.cluster_domain);
        let port = match dest.port.as_ref().and_then(|p| p.number) {
            Some(n) => u16::try_from(n).map_err(|_| {
                self.error(
                    &format!("{field}.port.number"),
                    format!("{n} is not a port number (1-65535)"),
                )
            })?,
            None => match self.snapshot.service(&host).map(|s| s.ports.as_slice()) {
                Some([only]) => only.port,
                _ => self.port,
            },
        };
        let subset = dest.subset.as_deref().unwrap_or_default();
        Ok((names::outbound_cluster(port, subset, &host), host))
    }

    /// Route hash policy for consistent-hash load balancing of the
    /// destination (Envoy hashes on the route, balances on the cluster).
    pub fn hash_policy(&self, host: &str, dest: &Destination) -> Vec<route_action::HashPolicy> {
        let Some(service) = self.snapshot.service(host) else {
            return Vec::new();
        };
        let Some(dr) = destination_rule::for_host(
            self.snapshot,
            &self.proxy.namespace,
            host,
            &service.namespace,
        ) else {
            return Vec::new();
        };
        let port = dest
            .port
            .as_ref()
            .and_then(|p| p.number)
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(self.port);
        let subset = dest
            .subset
            .as_deref()
            .and_then(|s| destination_rule::subset(dr, s));
        let policy = destination_rule::merged_policy(dr, port, subset);
        policy
            .load_balancer
            .and_then(|lb| lb.consistent_hash)
            .and_then(|h| hash_policy(&h, self))
            .into_iter()
            .collect()
    }
}

fn hash_policy(h: &ConsistentHashLb, ctx: &RouteContext<'_>) -> Option<route_action::HashPolicy> {
    use route_action::hash_policy::{
        ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter,
    };
    let specifier = if let Some(name) = h.http_header_name.as_ref() {
        PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Default::default()
        })
    } else if let Some(cookie) = h.http_cookie.as_ref() {
        PolicySpecifier::Cookie(Cookie {
            name: cookie.name.clone().unwrap_or_default(),
            path: cookie.path.clone().unwrap_or_default(),
            ttl: cookie.ttl.as_deref().and_then(|t| ctx.duration("", t).ok()),
            ..Default::default()
        })
    } else if h.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else if let Some(name) = h.http_query_parameter_name.as_ref() {
        PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
    } else {
        return None;
    };
    Some(route_action::HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    })
}

/// Every HTTP port's route configuration for `proxy`.
pub fn route_configurations(
    snapshot: &Snapshot,
    proxy: &Proxy,
) -> Result<Vec<RouteConfiguration>, CompileError> {
    let ports: BTreeSet<u16> = snapshot
        .visible_services(&proxy.namespace)
        .flat_map(|s| s.ports.iter())
        .filter(|p| p.protocol.is_http())
        .map(|p| p.port)
        .collect();
    ports
        .into_iter()
        .map(|port| route_configuration(snapshot, proxy, port))
        .collect()
}

fn route_configuration(
    snapshot: &Snapshot,
    proxy: &Proxy,
    port: u16,
) -> Result<RouteConfiguration, CompileError> {
    let mut seen_domains = HashSet::new();
    let mut virtual_hosts = Vec::new();
    for service in snapshot.visible_services(&proxy.namespace) {
        if !service.port(port).is_some_and(|p| p.protocol.is_http()) {
            continue;
        }
        // Envoy rejects a domain that two virtual hosts claim: the first
        // service (by hostname) keeps it.
        let domains: Vec<String> = domains(service, port, &proxy.namespace)
            .into_iter()
            .filter(|d| seen_domains.insert(d.clone()))
            .collect();
        if domains.is_empty() {
            continue;
        }
        virtual_hosts.push(VirtualHost {
            name: format!("{}:{port}", service.hostname),
            domains,
            routes: service_routes(snapshot, proxy, port, service)?,
            include_request_attempt_count: true,
            ..Default::default()
        });
    }
    virtual_hosts.push(catch_all(snapshot));
    Ok(RouteConfiguration {
        name: names::route_config(port),
        virtual_hosts,
        // Clusters arrive over CDS and may lag the routes by a moment.
        validate_clusters: Some(bool_value(false)),
        ..Default::default()
    })
}

/// The names a client may use for the service, each with and without the
/// port: FQDN, `name.ns.svc`, `name.ns`, the short name from the same
/// namespace, and the addresses.
pub fn domains(service: &Service, port: u16, proxy_namespace: &str) -> Vec<String> {
    let mut names = vec![service.hostname.clone()];
    if let Some(short) = service.short_name.as_deref() {
        if service.namespace == proxy_namespace {
            names.push(short.to_string());
        }
        names.push(format!("{short}.{}.svc", service.namespace));
        names.push(format!("{short}.{}", service.namespace));
    }
    names.extend(service.addresses.iter().cloned());
    names
        .into_iter()
        .flat_map(|n| {
            // IPv6 addresses take brackets before a port.
            let with_port = if n.contains(':') {
                format!("[{n}]:{port}")
            } else {
                format!("{n}:{port}")
            };
            [n, with_port]
        })
        .collect()
}

fn catch_all(snapshot: &Snapshot) -> VirtualHost {
    let (name, action) = match snapshot.mesh.outbound_policy {
        OutboundPolicy::AllowAny => (
            "allow_any",
            actions::forward_to(names::PASSTHROUGH_CLUSTER.into()),
        ),
        OutboundPolicy::RegistryOnly => (
            "block_all",
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.into(),
        domains: vec!["*".into()],
        routes: vec![Route {
            name: name.into(),
            r#match: Some(matches::catch_all()),
            action: Some(action),
            ..Default::default()
        }],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// The VirtualService that routes `host` for sidecars of `proxy`: bound to
/// `mesh`, visible to the proxy's namespace; an exact host before a
/// wildcard, the oldest first (Istio does not merge them for sidecars).
pub fn virtual_service_for<'a>(
    snapshot: &'a Snapshot,
    proxy: &Proxy,
    host: &str,
) -> Option<&'a VirtualService> {
    let index = &snapshot.index().virtual_services;
    let scope = [binding::MESH.to_string()];
    let usable = |&i: &usize| {
        snapshot
            .virtual_services
            .get(i)
            .filter(|vs| binding::applies(vs, proxy, &scope))
    };
    index
        .exact(host)
        .iter()
        .find_map(usable)
        .or_else(|| index.wildcard(host).find_map(|i| usable(&i)))
}

fn service_routes(
    snapshot: &Snapshot,
    proxy: &Proxy,
    port: u16,
    service: &Service,
) -> Result<Vec<Route>, CompileError> {
    let Some(vs) = virtual_service_for(snapshot, proxy, &service.hostname) else {
        return Ok(vec![Route {
            name: "default".into(),
            r#match: Some(matches::catch_all()),
            action: Some(actions::forward_to(names::outbound_cluster(
                port,
                "",
                &service.hostname,
            ))),
            ..Default::default()
        }]);
    };
    let scope = [binding::MESH.to_string()];
    let ctx = RouteContext {
        snapshot,
        proxy,
        port,
        vs,
        scope: &scope,
    };
    http_routes(&ctx)
}

/// The Envoy routes of the context's VirtualService, in order.
pub fn http_routes(ctx: &RouteContext<'_>) -> Result<Vec<Route>, CompileError> {
    let (vs, proxy, port) = (ctx.vs, ctx.proxy, ctx.port);
    let mut routes = Vec::new();
    for (i, http) in vs.spec.http.iter().flatten().enumerate() {
        let at = format!("http[{i}]");
        // SnapshotBuilder merges delegates into their roots; a snapshot
        // built another way may still hold one, which is not routed.
        if http.delegate.is_some() {
            return Err(ctx.error(
                &format!("{at}.delegate"),
                "delegation is merged when the snapshot is built (SnapshotBuilder); this snapshot still holds it".into(),
            ));
        }
        let action = actions::action(ctx, http, &at)?;
        let per_filter = actions::per_filter_config(ctx, http, &at)?;
        let headers = http.headers.as_ref();
        let (req_add, req_remove) = actions::header_ops(headers.and_then(|h| h.request.as_ref()));
        let (resp_add, resp_remove) =
            actions::header_ops(headers.and_then(|h| h.response.as_ref()));
        let route_matches: Vec<_> = match http.r#match.as_ref().filter(|m| !m.is_empty()) {
            None => vec![(None, matches::catch_all())],
            Some(ms) => ms
                .iter()
                .filter(|m| matches::applies(m, proxy, port, ctx.namespace(), ctx.scope))
                .map(|m| (m.name.as_deref(), matches::route_match(m)))
                .collect(),
        };
        for (match_name, route_match) in route_matches {
            let name = match (http.name.as_deref(), match_name) {
                (Some(r), Some(m)) => format!("{r}.{m}"),
                (Some(r), None) => r.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => String::new(),
            };
            routes.push(Route {
                name,
                r#match: Some(route_match),
                action: Some(action.clone()),
                typed_per_filter_config: per_filter.clone(),
                request_headers_to_add: req_add.clone(),
                request_headers_to_remove: req_remove.clone(),
                response_headers_to_add: resp_add.clone(),
                response_headers_to_remove: resp_remove.clone(),
                ..Default::default()
            });
        }
    }
    Ok(routes)
}
