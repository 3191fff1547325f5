//! The Kubernetes objects `meshctl analyze` reads beside the networking
//! ones: Services (do destination hosts and gateway ports exist), Secrets
//! (gateway credentials) and Pods (do subsets select any). They come from
//! the files and, with `--cluster`, from the cluster; only with the cluster
//! are they complete, so only then is a host without a Service "missing"
//! rather than "not among the files".

use k8s_openapi::api::core::v1::{Secret, Service};
use meshkeeper_crds::networking::common::Labels;
use meshkeeper_webhook::validate::index::Index;
use serde_json::Value;

/// Services, Secrets and running Pods, as read.
#[derive(Debug, Default)]
pub struct Workloads {
    pub services: Vec<Service>,
    pub secrets: Vec<Secret>,
    /// `(namespace, labels)` of each running pod.
    pub pods: Vec<(String, Labels)>,
    /// The Services are all the cluster has.
    pub services_complete: bool,
    /// The Secrets are all the cluster has (listing them may be forbidden).
    pub secrets_complete: bool,
}

/// What a core document is, when the analysis reads it.
pub enum CoreObject {
    Service(Box<Service>),
    Secret(Box<Secret>),
}

/// Reads a `v1` Service or Secret document (its namespace filled in);
/// `None` for other kinds; `Err` when one of those kinds does not decode.
pub fn core_object(doc: &Value, default_namespace: &str) -> Option<Result<CoreObject, String>> {
    if doc["apiVersion"].as_str() != Some("v1") {
        return None;
    }
    let mut doc = doc.clone();
    if doc["metadata"].is_object() && doc["metadata"]["namespace"].as_str().is_none() {
        doc["metadata"]["namespace"] = Value::String(default_namespace.to_owned());
    }
    match doc["kind"].as_str() {
        Some("Service") => Some(
            serde_json::from_value(doc)
                .map(|s| CoreObject::Service(Box::new(s)))
                .map_err(|e| e.to_string()),
        ),
        Some("Secret") => Some(
            serde_json::from_value(doc)
                .map(|s| CoreObject::Secret(Box::new(s)))
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    }
}

impl Workloads {
    pub fn add(&mut self, object: CoreObject) {
        match object {
            CoreObject::Service(s) => self.services.push(*s),
            CoreObject::Secret(s) => self.secrets.push(*s),
        }
    }

    /// The cluster's Services, Pods and (when listed) Secrets, as listed.
    /// Objects that do not decode are left out: the files are what is
    /// judged, and a missing Service only makes the analysis say less.
    pub fn from_cluster(services: &[Value], pods: &[Value], secrets: Option<&[Value]>) -> Self {
        let pods = pods
            .iter()
            .filter(|p| p["status"]["phase"].as_str() == Some("Running"))
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| {
                let namespace = p["metadata"]["namespace"].as_str()?.to_owned();
                let labels: Labels =
                    serde_json::from_value(p["metadata"]["labels"].clone()).unwrap_or_default();
                Some((namespace, labels))
            })
            .collect();
        Workloads {
            services: services
                .iter()
                .filter_map(|v| serde_json::from_value::<Service>(v.clone()).ok())
                .collect(),
            secrets: secrets
                .unwrap_or_default()
                .iter()
                .filter_map(|v| serde_json::from_value::<Secret>(v.clone()).ok())
                .collect(),
            pods,
            services_complete: true,
            secrets_complete: secrets.is_some(),
        }
    }

    /// Puts the Services, Secrets and the pods behind each Service into
    /// `index`.
    pub fn fill(&self, index: &mut Index) {
        let catalog = index.catalog_mut();
        catalog.set_services_known(self.services_complete);
        catalog.set_secrets_known(self.secrets_complete);
        for service in &self.services {
            catalog.upsert_service(service);
        }
        for secret in &self.secrets {
            catalog.upsert_secret(secret);
        }
        if !self.services_complete {
            // Without the cluster's pods, no subset can be said to select none.
            return;
        }
        for service in &self.services {
            let (Some(namespace), Some(name)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
            let Some(selector) = selector.filter(|s| !s.is_empty()) else {
                continue;
            };
            let backing = self
                .pods
                .iter()
                .filter(|(ns, labels)| {
                    ns == namespace && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .map(|(_, labels)| labels.clone())
                .collect();
            index.set_service_pods(namespace, name, backing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_pods_fill_the_services_they_back() {
        let workloads = Workloads::from_cluster(
            &[json!({"metadata": {"name": "reviews", "namespace": "shop"},
                     "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}})],
            &[
                json!({"metadata": {"name": "a", "namespace": "shop", "labels": {"app": "reviews", "version": "v1"}},
                       "status": {"phase": "Running"}}),
                json!({"metadata": {"name": "b", "namespace": "shop", "labels": {"app": "reviews", "version": "v2"}},
                       "status": {"phase": "Pending"}}),
            ],
            None,
        );
        let mut index = Index::default();
        workloads.fill(&mut index);
        let pods = index
            .pods_of_host("reviews.shop.svc.cluster.local")
            .expect("the service's pods are known");
        assert_eq!(pods.len(), 1);
        assert!(index.catalog().services_known());
        assert!(!index.catalog().secrets_known());
    }

    #[test]
    fn only_v1_services_and_secrets_are_read() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
        match core_object(&service, "shop") {
            Some(Ok(CoreObject::Service(s))) => {
                assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
            }
            _ => panic!("a Service"),
        }
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert!(core_object(&config_map, "shop").is_none());
        let bad = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": "many"}});
        assert!(matches!(core_object(&bad, "shop"), Some(Err(_))));
    }
}
