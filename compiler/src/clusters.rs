//! Outbound clusters (one per visible service port, one more per
//! DestinationRule subset) with their endpoints, and the fixed clusters
//! every sidecar has.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::BindConfig;
use envoy_types::pb::envoy::config::core::v3::{SocketAddress, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

use crate::destination_rule;
use crate::endpoints;
use crate::envoy::{ads_config_source, duration_from_std};
use crate::error::CompileError;
use crate::names;
use crate::policy::{self, PolicySource};
use crate::proxy::Proxy;
use crate::snapshot::{Labels, Resolution, Service, ServicePort, Snapshot};

/// Outbound clusters and the assignments of those served over EDS.
#[derive(Debug, Default)]
pub struct Outbound {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
}

pub fn outbound(snapshot: &Snapshot, proxy: &Proxy) -> Result<Outbound, CompileError> {
    let mut out = Outbound::default();
    for service in snapshot.visible_services(&proxy.namespace) {
        let dr = destination_rule::for_host(
            snapshot,
            &proxy.namespace,
            &service.hostname,
            &service.namespace,
        );
        for port in &service.ports {
            let name = names::outbound_cluster(port.port, "", &service.hostname);
            let policy = dr.map(|d| destination_rule::merged_policy(d, port.port, None));
            push(
                &mut out,
                snapshot,
                service,
                port,
                &name,
                &Labels::new(),
                policy.as_ref().zip(dr),
            )?;
            for subset in dr.iter().flat_map(|d| d.spec.subsets.iter().flatten()) {
                let Some(subset_name) = subset.name.as_deref() else {
                    continue;
                };
                let name = names::outbound_cluster(port.port, subset_name, &service.hostname);
                let policy =
                    dr.map(|d| destination_rule::merged_policy(d, port.port, Some(subset)));
                let labels = subset.labels.clone().unwrap_or_default();
                push(
                    &mut out,
                    snapshot,
                    service,
                    port,
                    &name,
                    &labels,
                    policy.as_ref().zip(dr),
                )?;
            }
        }
    }
    Ok(out)
}

fn push(
    out: &mut Outbound,
    snapshot: &Snapshot,
    service: &Service,
    port: &ServicePort,
    name: &str,
    subset_labels: &Labels,
    policy: Option<(
        &meshkeeper_crds::networking::destination_rule::TrafficPolicy,
        &meshkeeper_crds::networking::DestinationRule,
    )>,
) -> Result<(), CompileError> {
    let mut c = base(snapshot, service, port, name, subset_labels);
    policy::defaults(&mut c);
    let source = policy.map(|(_, dr)| PolicySource {
        namespace: dr.metadata.namespace.as_deref().unwrap_or("default"),
        name: dr.metadata.name.as_deref().unwrap_or_default(),
    });
    let empty = Default::default();
    let traffic_policy = policy.map(|(p, _)| p).unwrap_or(&empty);
    policy::apply(&mut c, traffic_policy, port.protocol, source)?;
    if is_eds(&c) {
        out.endpoints
            .push(endpoints::assignment(name, service, port, subset_labels));
    }
    if matches!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::OriginalDst as i32
    ) {
        // Original-destination clusters pick their host per connection.
        c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        c.load_assignment = None;
    }
    out.clusters.push(c);
    Ok(())
}

pub fn is_eds(c: &Cluster) -> bool {
    c.cluster_discovery_type
        == Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        ))
}

/// The cluster before any policy: discovery type by resolution.
fn base(
    snapshot: &Snapshot,
    service: &Service,
    port: &ServicePort,
    name: &str,
    subset_labels: &Labels,
) -> Cluster {
    let mut c = Cluster {
        name: name.into(),
        connect_timeout: Some(duration_from_std(snapshot.mesh.connect_timeout)),
        ..Default::default()
    };
    match service.resolution {
        Resolution::Endpoints => {
            c.cluster_discovery_type = Some(discovery(cluster::DiscoveryType::Eds));
            c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: name.into(),
            });
        }
        Resolution::Dns => {
            c.cluster_discovery_type = Some(discovery(cluster::DiscoveryType::StrictDns));
            c.dns_lookup_family = cluster::DnsLookupFamily::V4Only as i32;
            let mut assignment = endpoints::assignment(name, service, port, subset_labels);
            if service.endpoints.is_empty() {
                // A DNS entry without endpoints resolves its own host.
                assignment = ClusterLoadAssignment {
                    cluster_name: name.into(),
                    endpoints: vec![
                        envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints {
                            lb_endpoints: vec![endpoints::lb_endpoint(
                                &service.hostname,
                                port.port,
                            )],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                };
            }
            c.load_assignment = Some(assignment);
        }
        Resolution::OriginalDestination => {
            c.cluster_discovery_type = Some(discovery(cluster::DiscoveryType::OriginalDst));
        }
    }
    c
}

fn discovery(t: cluster::DiscoveryType) -> cluster::ClusterDiscoveryType {
    cluster::ClusterDiscoveryType::Type(t as i32)
}

/// Sends to the address the application dialled (ALLOW_ANY).
pub fn passthrough(snapshot: &Snapshot) -> Cluster {
    Cluster {
        name: names::PASSTHROUGH_CLUSTER.into(),
        cluster_discovery_type: Some(discovery(cluster::DiscoveryType::OriginalDst)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration_from_std(snapshot.mesh.connect_timeout)),
        ..Default::default()
    }
}

/// A cluster with no hosts: what it receives fails (REGISTRY_ONLY).
pub fn blackhole(snapshot: &Snapshot) -> Cluster {
    Cluster {
        name: names::BLACKHOLE_CLUSTER.into(),
        cluster_discovery_type: Some(discovery(cluster::DiscoveryType::Static)),
        connect_timeout: Some(duration_from_std(snapshot.mesh.connect_timeout)),
        ..Default::default()
    }
}

/// Inbound traffic leaves Envoy from 127.0.0.6 so the init container's
/// rules let it reach the application instead of capturing it again.
fn inbound_bind() -> BindConfig {
    BindConfig {
        source_address: Some(SocketAddress {
            address: "127.0.0.6".into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `inbound|PORT||`: to the application on the port it was addressed to.
/// Original-destination, as Istio, so applications that listen on the pod
/// IP only are reached as well as those on all addresses.
pub fn inbound(snapshot: &Snapshot, name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(discovery(cluster::DiscoveryType::OriginalDst)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration_from_std(snapshot.mesh.connect_timeout)),
        upstream_bind_config: Some(inbound_bind()),
        ..Default::default()
    }
}

/// Inbound traffic to a port no service declares.
pub fn inbound_passthrough(snapshot: &Snapshot) -> Cluster {
    inbound(snapshot, names::INBOUND_PASSTHROUGH_CLUSTER)
}
