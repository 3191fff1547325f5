//! ServiceEntries into [`Service`]s: one per host, sharing the entry's
//! ports, addresses and endpoints, as Istio's registry does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use meshkeeper_crds::networking::ServiceEntry;
use meshkeeper_crds::networking::service_entry::{
    Location as SeLocation, Resolution as SeResolution,
};

use super::{Endpoint, Labels, Origin, Resolution, Service, ServicePort, object_name};
use crate::error::{CompileError, Location};
use crate::protocol::Protocol;
use crate::visibility::ExportTo;

pub(super) fn services(se: &ServiceEntry, pods: &[Pod]) -> Result<Vec<Service>, CompileError> {
    let (namespace, name) = object_name(&se.metadata);
    let spec = &se.spec;
    let at = |field: String| {
        Box::new(Location {
            kind: "ServiceEntry",
            namespace: namespace.clone(),
            name: name.clone(),
            field,
        })
    };
    let ports = ports(se, &at)?;
    let resolution = match spec.resolution {
        Some(SeResolution::Static) => Resolution::Endpoints,
        Some(SeResolution::Dns | SeResolution::DnsRoundRobin | SeResolution::DynamicDns) => {
            Resolution::Dns
        }
        Some(SeResolution::None) | None => Resolution::OriginalDestination,
    };
    let mut endpoints = declared_endpoints(se, &at)?;
    if let Some(selector) = spec
        .workload_selector
        .as_ref()
        .and_then(|s| s.labels.as_ref())
    {
        endpoints.extend(selected_pods(pods, &namespace, selector));
    }
    let export_to = ExportTo::from_list(spec.export_to.as_deref(), &namespace);
    let mesh_external = spec.location != Some(SeLocation::MeshInternal);
    Ok(spec
        .hosts
        .iter()
        .flatten()
        .map(|host| Service {
            hostname: host.clone(),
            namespace: namespace.clone(),
            short_name: None,
            addresses: spec.addresses.clone().unwrap_or_default(),
            ports: ports.clone(),
            endpoints: endpoints.clone(),
            export_to: export_to.clone(),
            resolution,
            origin: Origin::ServiceEntry {
                name: name.clone(),
                mesh_external,
            },
        })
        .collect())
}

fn ports(
    se: &ServiceEntry,
    at: &dyn Fn(String) -> Box<Location>,
) -> Result<Vec<ServicePort>, CompileError> {
    let mut out = Vec::new();
    for (i, p) in se.spec.ports.iter().flatten().enumerate() {
        let number = p.number.unwrap_or_default();
        let port = u16::try_from(number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| CompileError::Invalid {
                at: at(format!("spec.ports[{i}].number")),
                message: format!("{number} is not a port number (1-65535)"),
            })?;
        out.push(ServicePort {
            name: p.name.clone().unwrap_or_default(),
            port,
            protocol: p
                .protocol
                .as_deref()
                .map(Protocol::parse)
                .unwrap_or(Protocol::Unknown),
        });
    }
    Ok(out)
}

fn declared_endpoints(
    se: &ServiceEntry,
    at: &dyn Fn(String) -> Box<Location>,
) -> Result<Vec<Endpoint>, CompileError> {
    let mut out = Vec::new();
    for (i, e) in se.spec.endpoints.iter().flatten().enumerate() {
        let mut ports = BTreeMap::new();
        for (port_name, number) in e.ports.iter().flatten() {
            let n = u16::try_from(*number).map_err(|_| CompileError::Invalid {
                at: at(format!("spec.endpoints[{i}].ports.{port_name}")),
                message: format!("{number} is not a port number (1-65535)"),
            })?;
            ports.insert(port_name.clone(), n);
        }
        out.push(Endpoint {
            address: e.address.clone().unwrap_or_default(),
            ports,
            labels: e.labels.clone().unwrap_or_default(),
            ready: true,
        });
    }
    Ok(out)
}

/// Pods of the entry's namespace whose labels include the selector's.
fn selected_pods(pods: &[Pod], namespace: &str, selector: &Labels) -> Vec<Endpoint> {
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter_map(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
                .then(|| Endpoint {
                    address: ip,
                    ports: BTreeMap::new(),
                    labels,
                    ready: true,
                })
        })
        .collect()
}
