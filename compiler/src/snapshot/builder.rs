//! Collects API objects (typed, or as JSON documents of any kind) and builds
//! the [`Snapshot`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use meshkeeper_crds::networking::{
    DestinationRule, Gateway, NetworkingObject, ServiceEntry, VirtualService,
};

use super::{MeshSettings, Service, Snapshot, delegation, kubernetes, service_entry};
use crate::error::CompileError;

#[derive(Debug, Default, Clone)]
pub struct SnapshotBuilder {
    pub mesh: MeshSettings,
    pub services: Vec<KubeService>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub pods: Vec<Pod>,
    pub service_entries: Vec<ServiceEntry>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub gateways: Vec<Gateway>,
}

impl SnapshotBuilder {
    pub fn new(mesh: MeshSettings) -> Self {
        SnapshotBuilder {
            mesh,
            ..Default::default()
        }
    }

    /// Adds one API object given as JSON (a manifest document). Kinds the
    /// compiler does not read (Deployments, ServiceAccounts, …) are skipped
    /// and reported as `Ok(false)`.
    pub fn add_document(&mut self, value: &serde_json::Value) -> Result<bool, CompileError> {
        let kind = value["kind"].as_str().unwrap_or_default();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        let input = |message: String| CompileError::Input {
            kind: kind_name(kind),
            name: name.to_string(),
            message,
        };
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        if api_version.starts_with("networking.istio.io/") {
            let object = NetworkingObject::from_value(value).map_err(|e| input(e.to_string()))?;
            return Ok(self.add_networking(object));
        }
        match kind {
            "Service" => self
                .services
                .push(serde_json::from_value(value.clone()).map_err(|e| input(e.to_string()))?),
            "EndpointSlice" => self
                .endpoint_slices
                .push(serde_json::from_value(value.clone()).map_err(|e| input(e.to_string()))?),
            "Pod" => self
                .pods
                .push(serde_json::from_value(value.clone()).map_err(|e| input(e.to_string()))?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn add_networking(&mut self, object: NetworkingObject) -> bool {
        match object {
            NetworkingObject::VirtualService(o) => self.virtual_services.push(*o),
            NetworkingObject::DestinationRule(o) => self.destination_rules.push(*o),
            NetworkingObject::Gateway(o) => self.gateways.push(*o),
            NetworkingObject::ServiceEntry(o) => self.service_entries.push(*o),
            // EnvoyFilter and ProxyConfig are not compiled yet.
            NetworkingObject::EnvoyFilter(_) | NetworkingObject::ProxyConfig(_) => return false,
        }
        true
    }

    pub fn build(self) -> Result<Snapshot, CompileError> {
        let pods = kubernetes::index_pods(&self.pods);
        let mut by_host: BTreeMap<String, Service> = BTreeMap::new();
        for svc in &self.services {
            if let Some(s) =
                kubernetes::service(svc, &self.endpoint_slices, &pods, &self.mesh.cluster_domain)?
            {
                by_host.insert(s.hostname.clone(), s);
            }
        }
        for se in &self.service_entries {
            for s in service_entry::services(se, &self.pods)? {
                // A Kubernetes Service keeps its host: Istio gives it precedence.
                by_host.entry(s.hostname.clone()).or_insert(s);
            }
        }
        let mut virtual_services = self.virtual_services;
        virtual_services.sort_by_key(creation_order);
        let warnings = delegation::merge_all(&mut virtual_services, &self.mesh.cluster_domain);
        let mut destination_rules = self.destination_rules;
        destination_rules.sort_by_key(creation_order);
        Ok(Snapshot {
            mesh: self.mesh,
            services: by_host.into_values().collect(),
            virtual_services,
            destination_rules,
            gateways: self.gateways,
            warnings,
            ..Snapshot::default()
        })
    }
}

/// Istio resolves conflicts between objects by age, oldest first, then by
/// namespace and name.
fn creation_order<K: kube_meta::HasMeta>(object: &K) -> (String, String, String) {
    let meta = object.meta();
    (
        meta.creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "Service" => "Service",
        "EndpointSlice" => "EndpointSlice",
        "Pod" => "Pod",
        "VirtualService" => "VirtualService",
        "DestinationRule" => "DestinationRule",
        "Gateway" => "Gateway",
        "ServiceEntry" => "ServiceEntry",
        _ => "object",
    }
}

/// The metadata accessor the routing kinds share.
mod kube_meta {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub trait HasMeta {
        fn meta(&self) -> &ObjectMeta;
    }

    impl HasMeta for meshkeeper_crds::networking::VirtualService {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
    }

    impl HasMeta for meshkeeper_crds::networking::DestinationRule {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
    }
}
