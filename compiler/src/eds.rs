//! Endpoint-only updates: when only a service's endpoints change, the
//! xDS server needs no new listeners, routes or clusters, only the
//! ClusterLoadAssignments of that service's clusters. This recomputes one
//! of them without compiling the rest, so the push is EDS alone.

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

use crate::destination_rule;
use crate::endpoints;
use crate::error::CompileError;
use crate::names;
use crate::proxy::Proxy;
use crate::snapshot::{Labels, Resolution, Snapshot};

/// The assignment `compile` gives `cluster` (`outbound|PORT|SUBSET|HOST`)
/// for `proxy`, or `None` when the proxy has no such EDS cluster (unknown
/// or invisible service, no such port or subset, or a cluster that
/// resolves its endpoints itself, like DNS).
pub fn endpoints_for_cluster(
    snapshot: &Snapshot,
    proxy: &Proxy,
    cluster: &str,
) -> Result<Option<ClusterLoadAssignment>, CompileError> {
    let Some((port, subset, host)) = names::parse_outbound_cluster(cluster) else {
        return Ok(None);
    };
    let Some(service) = snapshot
        .service(host)
        .filter(|s| s.export_to.is_visible_to(&proxy.namespace))
        .filter(|s| s.resolution == Resolution::Endpoints)
    else {
        return Ok(None);
    };
    let Some(service_port) = service.port(port) else {
        return Ok(None);
    };
    let labels = if subset.is_empty() {
        Labels::new()
    } else {
        let dr = destination_rule::for_host(
            snapshot,
            &proxy.namespace,
            &service.hostname,
            &service.namespace,
        );
        match dr.and_then(|d| destination_rule::subset(d, subset)) {
            Some(s) => s.labels.clone().unwrap_or_default(),
            None => return Ok(None),
        }
    };
    Ok(Some(endpoints::assignment(
        cluster,
        service,
        service_port,
        &labels,
    )))
}
