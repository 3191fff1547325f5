//! Kubernetes Services, EndpointSlices and Pods into [`Service`]s. Endpoint
//! labels come from the Pod each endpoint's `targetRef` names, because
//! DestinationRule subsets select on pod labels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{Endpoint, Labels, Origin, Resolution, Service, ServicePort, object_name};
use crate::error::{CompileError, Location};
use crate::names;
use crate::protocol::Protocol;
use crate::visibility::{ExportTo, SERVICE_EXPORT_TO_ANNOTATION};

/// The label EndpointSlices carry to name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Pods by (namespace, name).
pub(super) type PodIndex<'a> = BTreeMap<(String, String), &'a Pod>;

pub(super) fn index_pods(pods: &[Pod]) -> PodIndex<'_> {
    pods.iter().map(|p| (object_name(&p.metadata), p)).collect()
}

/// The Service as the compiler models it; `None` for kinds the mesh does
/// not route (ExternalName).
pub(super) fn service(
    svc: &KubeService,
    slices: &[EndpointSlice],
    pods: &PodIndex<'_>,
    cluster_domain: &str,
) -> Result<Option<Service>, CompileError> {
    let (namespace, name) = object_name(&svc.metadata);
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(None);
    }
    let ports = service_ports(svc, &namespace, &name)?;
    let addresses = spec
        .cluster_ips
        .clone()
        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| !ip.is_empty() && ip != "None")
        .collect();
    let export_to = ExportTo::from_annotation(
        svc.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SERVICE_EXPORT_TO_ANNOTATION))
            .map(String::as_str),
        &namespace,
    );
    let endpoints = slices
        .iter()
        .filter(|s| slice_belongs_to(s, &namespace, &name))
        .map(|s| slice_endpoints(s, pods))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(Some(Service {
        hostname: names::service_fqdn(&name, &namespace, cluster_domain),
        namespace,
        short_name: Some(name),
        addresses,
        ports,
        endpoints,
        export_to,
        resolution: Resolution::Endpoints,
        origin: Origin::Kubernetes,
    }))
}

fn service_ports(
    svc: &KubeService,
    namespace: &str,
    name: &str,
) -> Result<Vec<ServicePort>, CompileError> {
    let spec_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut ports = Vec::new();
    for (i, p) in spec_ports.iter().enumerate() {
        // Istio leaves UDP and SCTP ports alone: Envoy does not proxy them.
        if p.protocol.as_deref().is_some_and(|proto| proto != "TCP") {
            continue;
        }
        let port = u16::try_from(p.port).map_err(|_| CompileError::Invalid {
            at: Box::new(Location {
                kind: "Service",
                namespace: namespace.into(),
                name: name.into(),
                field: format!("spec.ports[{i}].port"),
            }),
            message: format!("{} is not a port number (1-65535)", p.port),
        })?;
        ports.push(ServicePort {
            name: p.name.clone().unwrap_or_default(),
            port,
            protocol: Protocol::of_service_port(p.name.as_deref(), p.app_protocol.as_deref()),
        });
    }
    Ok(ports)
}

fn slice_belongs_to(slice: &EndpointSlice, namespace: &str, name: &str) -> bool {
    slice.metadata.namespace.as_deref().unwrap_or("default") == namespace
        && slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .is_some_and(|n| n == name)
}

fn slice_endpoints(
    slice: &EndpointSlice,
    pods: &PodIndex<'_>,
) -> Result<Vec<Endpoint>, CompileError> {
    let (namespace, name) = object_name(&slice.metadata);
    let mut ports = BTreeMap::new();
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        let Some(number) = p.port else { continue };
        let number = u16::try_from(number).map_err(|_| CompileError::Invalid {
            at: Box::new(Location {
                kind: "EndpointSlice",
                namespace: namespace.clone(),
                name: name.clone(),
                field: format!("ports[{i}].port"),
            }),
            message: format!("{number} is not a port number (1-65535)"),
        })?;
        ports.insert(p.name.clone().unwrap_or_default(), number);
    }
    let mut out = Vec::new();
    for e in slice.endpoints.iter().flatten() {
        // Kubernetes documents an absent `ready` as "unknown" and consumers
        // treat it as ready.
        let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let labels = e
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .and_then(|r| {
                let ns = r.namespace.clone().unwrap_or_else(|| namespace.clone());
                pods.get(&(ns, r.name.clone().unwrap_or_default()))
            })
            .and_then(|p| p.metadata.labels.clone())
            .unwrap_or_else(Labels::new);
        for address in &e.addresses {
            out.push(Endpoint {
                address: address.clone(),
                ports: ports.clone(),
                labels: labels.clone(),
                ready,
            });
        }
    }
    Ok(out)
}
