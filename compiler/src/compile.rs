//! The entry point: one proxy's whole configuration.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

use crate::error::{CompileError, RenderError, Warning};
use crate::proxy::{Proxy, ProxyKind};
use crate::snapshot::Snapshot;
use crate::visibility::ExportTo;
use crate::{clusters, gateway, inbound, outbound, render, routes};

/// What a proxy receives over xDS: LDS, RDS, CDS and EDS resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfig {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// What was left out of this configuration and why (not part of the
    /// xDS resources; for people: `meshctl`, admission warnings, logs).
    pub warnings: Vec<Warning>,
}

impl ProxyConfig {
    /// `{"listeners": […], "routes": […], "clusters": […], "endpoints": […]}`
    /// in Envoy's JSON.
    pub fn to_json(&self) -> Result<serde_json::Value, RenderError> {
        Ok(serde_json::json!({
            "listeners": render::to_json_list(&self.listeners)?,
            "routes": render::to_json_list(&self.routes)?,
            "clusters": render::to_json_list(&self.clusters)?,
            "endpoints": render::to_json_list(&self.endpoints)?,
        }))
    }
}

/// Compiles `proxy`'s configuration from `snapshot`.
pub fn compile(snapshot: &Snapshot, proxy: &Proxy) -> Result<ProxyConfig, CompileError> {
    if proxy.kind == ProxyKind::Gateway {
        return compile_gateway(snapshot, proxy);
    }
    let outbound_clusters = clusters::outbound(snapshot, proxy)?;
    let mut clusters = vec![
        clusters::blackhole(snapshot),
        clusters::passthrough(snapshot),
    ];
    clusters.extend(outbound_clusters.clusters);
    clusters.extend(inbound::clusters(snapshot, proxy));
    let mut listeners = outbound::listeners(snapshot, proxy)?;
    listeners.push(inbound::listener(snapshot, proxy));
    Ok(ProxyConfig {
        listeners,
        routes: routes::route_configurations(snapshot, proxy)?,
        clusters,
        endpoints: outbound_clusters.endpoints,
        warnings: visible_warnings(snapshot, proxy),
    })
}

/// A gateway: listeners and routes from the Gateways that select it; the
/// same outbound clusters a sidecar of its namespace has (its routes send
/// to services), and no inbound side.
fn compile_gateway(snapshot: &Snapshot, proxy: &Proxy) -> Result<ProxyConfig, CompileError> {
    let mut warnings = visible_warnings(snapshot, proxy);
    let generated = gateway::generate(snapshot, proxy, &mut warnings)?;
    let outbound_clusters = clusters::outbound(snapshot, proxy)?;
    let mut clusters = vec![clusters::blackhole(snapshot)];
    clusters.extend(outbound_clusters.clusters);
    Ok(ProxyConfig {
        listeners: generated.listeners,
        routes: generated.routes,
        clusters,
        endpoints: outbound_clusters.endpoints,
        warnings,
    })
}

/// The snapshot's warnings about objects the proxy sees (a VirtualService
/// exported to its namespace): a person looking at this proxy's
/// configuration needs them, the rest of the mesh's are noise here.
fn visible_warnings(snapshot: &Snapshot, proxy: &Proxy) -> Vec<Warning> {
    snapshot
        .warnings
        .iter()
        .filter(|w| {
            w.at.kind != "VirtualService"
                || snapshot.virtual_services.iter().any(|vs| {
                    let (ns, name) = crate::snapshot::object_name(&vs.metadata);
                    ns == w.at.namespace
                        && name == w.at.name
                        && ExportTo::from_list(vs.spec.export_to.as_deref(), &ns)
                            .is_visible_to(&proxy.namespace)
                })
        })
        .cloned()
        .collect()
}
