//! VirtualService `tcp` and `tls` routes as listener filter chains, for a
//! service port that is not HTTP. Conditions on the source (port, labels,
//! namespace, gateways) are decided at compile time for the one proxy; the
//! rest are left to Envoy's filter chain match: destination subnets as
//! prefix ranges, SNI names as server names (read by the TLS inspector).
//! Each chain ends in a TCP proxy to one cluster or to weighted clusters.
//!
//! As in Istio: TLS ports (TLS, HTTPS) take only `tls` routes, other ports
//! only `tcp` routes; a TCP rule without a destination subnet ends the
//! list; without a matching rule the port's own cluster serves.

use std::collections::BTreeSet;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use meshkeeper_crds::networking::VirtualService;
use meshkeeper_crds::networking::virtual_service::RouteDestination;

use crate::binding::StaticMatch;
use crate::envoy::{any, u32_value};
use crate::error::CompileError;
use crate::filters;
use crate::names;
use crate::proxy::Proxy;
use crate::routes::RouteContext;
use crate::snapshot::{Service, ServicePort, Snapshot};

pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// What the chains of one service port are compiled for.
pub struct L4Target<'a> {
    pub snapshot: &'a Snapshot,
    pub proxy: &'a Proxy,
    /// Gateways the proxy is (`mesh` for a sidecar, `ns/name` otherwise).
    pub scope: &'a [String],
    /// The VirtualServices that route the service's host, oldest first.
    pub virtual_services: &'a [&'a VirtualService],
    pub service: &'a Service,
    pub port: &'a ServicePort,
    /// Whether the listener is shared by address-less services (a wildcard
    /// `0.0.0.0_PORT`): then the default chain matches the service's host
    /// by SNI, the only thing that tells the services apart.
    pub wildcard: bool,
}

/// Whether a port's traffic is TLS the proxy does not terminate: routed
/// by `tls` rules on SNI.
pub fn is_tls(port: &ServicePort) -> bool {
    matches!(
        port.protocol,
        crate::protocol::Protocol::Tls | crate::protocol::Protocol::Https
    )
}

/// The TLS inspector, which reads the SNI that `server_names` match on.
pub fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// The filter chains for the target's port, in match order.
pub fn filter_chains(t: &L4Target<'_>) -> Result<Vec<FilterChain>, CompileError> {
    if is_tls(t.port) {
        tls_chains(t)
    } else {
        tcp_chains(t)
    }
}

fn tls_chains(t: &L4Target<'_>) -> Result<Vec<FilterChain>, CompileError> {
    let mut out = Vec::new();
    // A later rule with the same SNI and subnets as an earlier one can
    // never be reached, and Envoy rejects identical chain matches.
    let mut seen = BTreeSet::new();
    for vs in t.virtual_services {
        let ctx = context(t, vs);
        let vs_ns = vs.metadata.namespace.as_deref().unwrap_or("default");
        for (i, rule) in vs.spec.tls.iter().flatten().enumerate() {
            let Some(routes) = rule.route.as_deref().filter(|r| !r.is_empty()) else {
                continue;
            };
            for (j, m) in rule.r#match.iter().flatten().enumerate() {
                let static_match = StaticMatch {
                    port: m.port,
                    source_labels: m.source_labels.as_ref(),
                    source_namespace: m.source_namespace.as_deref(),
                    gateways: m.gateways.as_deref(),
                };
                if !static_match.holds(t.proxy, vs_ns, t.scope, t.port.port) {
                    continue;
                }
                let sni = m.sni_hosts.clone().unwrap_or_default();
                let subnets = m.destination_subnets.clone().unwrap_or_default();
                if !seen.insert((sni.clone(), subnets.clone())) {
                    continue;
                }
                let at = format!("tls[{i}].match[{j}]");
                out.push(FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        server_names: sni,
                        prefix_ranges: cidrs(&ctx, &subnets, &format!("{at}.destinationSubnets"))?,
                        ..Default::default()
                    }),
                    filters: vec![proxy_filter(&ctx, vs, routes, &format!("tls[{i}]"))?],
                    ..Default::default()
                });
            }
        }
    }
    if out.is_empty() {
        out.push(default_chain(t));
    }
    Ok(out)
}

fn tcp_chains(t: &L4Target<'_>) -> Result<Vec<FilterChain>, CompileError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for vs in t.virtual_services {
        let ctx = context(t, vs);
        let vs_ns = vs.metadata.namespace.as_deref().unwrap_or("default");
        for (i, rule) in vs.spec.tcp.iter().flatten().enumerate() {
            let Some(routes) = rule.route.as_deref().filter(|r| !r.is_empty()) else {
                continue;
            };
            let at = format!("tcp[{i}]");
            let matches = rule.r#match.as_deref().unwrap_or_default();
            let mut subnets = Vec::new();
            let mut terminal = matches.is_empty();
            for m in matches {
                let static_match = StaticMatch {
                    port: m.port,
                    source_labels: m.source_labels.as_ref(),
                    source_namespace: m.source_namespace.as_deref(),
                    gateways: m.gateways.as_deref(),
                };
                if !static_match.holds(t.proxy, vs_ns, t.scope, t.port.port) {
                    continue;
                }
                match m.destination_subnets.as_deref().filter(|s| !s.is_empty()) {
                    // A match on any destination: nothing after it is reached.
                    None => {
                        terminal = true;
                        break;
                    }
                    Some(s) => subnets.extend(s.iter().cloned()),
                }
            }
            if terminal {
                out.push(FilterChain {
                    filters: vec![proxy_filter(&ctx, vs, routes, &at)?],
                    ..Default::default()
                });
                return Ok(out);
            }
            subnets.sort();
            subnets.dedup();
            if !subnets.is_empty() && seen.insert(subnets.clone()) {
                out.push(FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        prefix_ranges: cidrs(&ctx, &subnets, &format!("{at}.match"))?,
                        ..Default::default()
                    }),
                    filters: vec![proxy_filter(&ctx, vs, routes, &at)?],
                    ..Default::default()
                });
            }
        }
    }
    out.push(default_chain(t));
    Ok(out)
}

fn context<'a>(t: &'a L4Target<'a>, vs: &'a VirtualService) -> RouteContext<'a> {
    RouteContext {
        snapshot: t.snapshot,
        proxy: t.proxy,
        port: t.port.port,
        vs,
        scope: t.scope,
    }
}

/// The port's own cluster, when no rule matched (or none exists).
fn default_chain(t: &L4Target<'_>) -> FilterChain {
    let cluster = names::outbound_cluster(t.port.port, "", &t.service.hostname);
    let filter_chain_match = (t.wildcard && is_tls(t.port)).then(|| FilterChainMatch {
        server_names: vec![t.service.hostname.clone()],
        ..Default::default()
    });
    FilterChain {
        filter_chain_match,
        filters: vec![filters::tcp_proxy(&cluster, &cluster)],
        ..Default::default()
    }
}

/// A TCP proxy to the rule's destination, or to its weighted destinations
/// (zero weights left out, as Istio does).
pub(crate) fn proxy_filter(
    ctx: &RouteContext<'_>,
    vs: &VirtualService,
    routes: &[RouteDestination],
    at: &str,
) -> Result<Filter, CompileError> {
    if let [only] = routes {
        let dest = only.destination.clone().unwrap_or_default();
        let (cluster, _) = ctx.cluster(&dest, &format!("{at}.route[0].destination"))?;
        return Ok(filters::tcp_proxy(&cluster, &cluster));
    }
    let mut clusters = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let weight = r.weight.unwrap_or(0);
        if weight <= 0 {
            continue;
        }
        let dest = r.destination.clone().unwrap_or_default();
        let (name, _) = ctx.cluster(&dest, &format!("{at}.route[{i}].destination"))?;
        clusters.push(tcp_proxy::weighted_cluster::ClusterWeight {
            name,
            weight: weight.unsigned_abs(),
            ..Default::default()
        });
    }
    if clusters.is_empty() {
        return Err(ctx.error(
            &format!("{at}.route"),
            "several destinations, none with a positive weight".into(),
        ));
    }
    // Istio names the statistics of a weighted TCP route after the
    // VirtualService.
    let (ns, name) = crate::snapshot::object_name(&vs.metadata);
    let proxy = TcpProxy {
        stat_prefix: format!("{name}.{ns}"),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
            tcp_proxy::WeightedCluster { clusters },
        )),
        ..Default::default()
    };
    Ok(Filter {
        name: filters::TCP_PROXY.into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&proxy))),
    })
}

/// `10.0.0.0/8`, `10.0.0.1` (a host) or an IPv6 form as Envoy's CIDR range.
fn cidrs(
    ctx: &RouteContext<'_>,
    subnets: &[String],
    field: &str,
) -> Result<Vec<CidrRange>, CompileError> {
    subnets
        .iter()
        .map(|s| {
            let (address, len) = match s.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (s.as_str(), None),
            };
            let ip: IpAddr = address.trim().parse().map_err(|_| {
                ctx.error(field, format!("`{s}` is not an IP address or CIDR range"))
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix_len = match len {
                None => max,
                Some(l) => l
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| {
                        ctx.error(field, format!("`{s}`: the prefix length must be 0-{max}"))
                    })?,
            };
            Ok(CidrRange {
                address_prefix: ip.to_string(),
                prefix_len: Some(u32_value(prefix_len)),
            })
        })
        .collect()
}
