//! ClusterLoadAssignments (EDS): a cluster's endpoints, the subset's when
//! the cluster is a subset's.

use envoy_types::pb::envoy::config::core::v3::{
    Address, HealthStatus, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};

use crate::envoy::u32_value;
use crate::snapshot::{Endpoint, Labels, Service, ServicePort};

pub fn socket_address(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// Whether an endpoint belongs to a subset: its labels include the
/// subset's.
pub fn in_subset(endpoint: &Endpoint, subset_labels: &Labels) -> bool {
    subset_labels
        .iter()
        .all(|(k, v)| endpoint.labels.get(k) == Some(v))
}

/// The assignment for `cluster_name`: the ready endpoints of `service` on
/// `port` that carry `subset_labels`. Endpoints that are not ready are left
/// out, as Istio does by default, so no request waits on them.
pub fn assignment(
    cluster_name: &str,
    service: &Service,
    port: &ServicePort,
    subset_labels: &Labels,
) -> ClusterLoadAssignment {
    let lb_endpoints: Vec<LbEndpoint> = service
        .endpoints
        .iter()
        .filter(|e| e.ready && in_subset(e, subset_labels))
        .map(|e| lb_endpoint(&e.address, e.port_for(port)))
        .collect();
    let locality = (!lb_endpoints.is_empty()).then(|| LocalityLbEndpoints {
        load_balancing_weight: Some(u32_value(
            u32::try_from(lb_endpoints.len()).unwrap_or(u32::MAX),
        )),
        lb_endpoints,
        ..Default::default()
    });
    ClusterLoadAssignment {
        cluster_name: cluster_name.into(),
        endpoints: locality.into_iter().collect(),
        ..Default::default()
    }
}

pub fn lb_endpoint(ip: &str, port: u16) -> LbEndpoint {
    LbEndpoint {
        health_status: HealthStatus::Healthy as i32,
        load_balancing_weight: Some(u32_value(1)),
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(socket_address(ip, port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}
