//! Compiling manifests without a cluster. A set of manifests (what
//! `kubectl apply -f` would send) usually holds Deployments and Services
//! but none of what the cluster adds: Pods, their IPs, ClusterIPs and
//! EndpointSlices. [`complete`] adds them the way Kubernetes would, with
//! made-up but stable addresses, so a [`crate::SnapshotBuilder`] fed the
//! result sees a running mesh:
//!
//! - each Deployment, ReplicaSet and StatefulSet gets `spec.replicas` Pods
//!   (default 1), each DaemonSet one, carrying the template's labels;
//!   named like Kubernetes' (`reviews-v1-<hash>-<suffix>`, `mysql-0`),
//!   where the hashes come from the workload's namespace and name (not its
//!   template), so an edited workload keeps its pods' names. A workload
//!   whose selector already matches a Pod of its namespace (one read from a
//!   cluster, say) is running and gets none;
//! - Pods get an IP in [`POD_CIDR`] (those without `status.podIP` only);
//! - Services get a ClusterIP in [`SERVICE_CIDR`] (those without one;
//!   headless and ExternalName Services stay as they are);
//! - a Service with a selector and no EndpointSlice gets EndpointSlices
//!   naming the Pods it selects, ready, on the resolved target ports
//!   (numbers, or names looked up in the pod's container ports).
//!
//! The ranges are RFC 2544's benchmarking block, never a real cluster's.
//! An address is chosen by hashing the object's namespace and name, so it
//! does not move when other objects are added or removed: comparing the
//! configuration of two sets of manifests shows only what they change.
//! Each synthesized object names its source in the
//! [`SYNTHESIZED_FROM_ANNOTATION`] annotation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// Pods' made-up addresses (RFC 2544 benchmarking addresses, 198.18.0.0/16).
pub const POD_CIDR: &str = "198.18.0.0/16";
/// Services' made-up ClusterIPs (198.19.0.0/16).
pub const SERVICE_CIDR: &str = "198.19.0.0/16";
/// Set on each object [`complete`] makes: `Deployment bookinfo/reviews-v1`.
pub const SYNTHESIZED_FROM_ANNOTATION: &str = "meshkeeper.io/synthesized-from";

/// The VirtualService that routes `host` (a service's FQDN) for a sidecar,
/// as the compiler picks it: for tools that explain a configuration
/// (which object made this virtual host's routes).
pub use crate::routes::virtual_service_for;

const POD_NETWORK: [u8; 2] = [198, 18];
const SERVICE_NETWORK: [u8; 2] = [198, 19];
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The letters Kubernetes uses in generated names (no vowels, no 0/1/3).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Fills in ClusterIPs and pod IPs in `documents` and returns the Pods and
/// EndpointSlices a cluster would add (see the module documentation).
/// Documents without a namespace count as `default`; give them theirs
/// first (as `kubectl apply -n` does).
pub fn complete(documents: &mut [Value]) -> Vec<Value> {
    let mut used = existing_addresses(documents);
    assign_cluster_ips(documents, &mut used);
    assign_pod_ips(documents, &mut used);
    let mut pods: Vec<PodView> = documents.iter().filter_map(PodView::of_pod).collect();
    let mut made = workload_pods(documents, &pods);
    made.sort_by_key(PodView::key);
    for pod in &mut made {
        pod.ip = allocate(POD_NETWORK, &pod.key(), &mut used);
    }
    let mut added: Vec<Value> = made.iter().map(PodView::to_pod).collect();
    pods.extend(made);
    added.extend(endpoint_slices(documents, &pods));
    added
}

/// What a Pod contributes to endpoints.
#[derive(Debug, Clone, PartialEq)]
struct PodView {
    namespace: String,
    name: String,
    labels: Map<String, Value>,
    ip: String,
    /// Container port numbers by name, for named target ports.
    named_ports: BTreeMap<String, u64>,
    /// `Kind ns/name` of the workload it was made from.
    source: Option<String>,
}

impl PodView {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn of_pod(doc: &Value) -> Option<PodView> {
        if !is_core(doc, "Pod") {
            return None;
        }
        let ip = doc["status"]["podIP"].as_str().filter(|s| !s.is_empty())?;
        Some(PodView {
            namespace: namespace(doc).to_string(),
            name: name(doc).to_string(),
            labels: doc["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ip: ip.to_string(),
            named_ports: named_ports(&doc["spec"]),
            source: None,
        })
    }

    fn to_pod(&self) -> Value {
        let mut metadata =
            json!({"name": self.name, "namespace": self.namespace, "labels": self.labels});
        if let Some(source) = &self.source {
            metadata["annotations"] = json!({ SYNTHESIZED_FROM_ANNOTATION: source });
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": metadata,
            "status": {
                "phase": "Running",
                "podIP": self.ip, "podIPs": [{"ip": self.ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        })
    }
}

fn is_core(doc: &Value, kind: &str) -> bool {
    doc["apiVersion"] == "v1" && doc["kind"] == kind
}

fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

/// Container port numbers by name, from a pod spec.
fn named_ports(spec: &Value) -> BTreeMap<String, u64> {
    let containers = spec["containers"].as_array().into_iter().flatten();
    containers
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_string(),
                p["containerPort"].as_u64()?,
            ))
        })
        .collect()
}

fn existing_addresses(documents: &[Value]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for doc in documents {
        if is_core(doc, "Pod")
            && let Some(ip) = doc["status"]["podIP"].as_str()
        {
            used.insert(ip.to_string());
        }
        if is_core(doc, "Service")
            && let Some(ip) = doc["spec"]["clusterIP"].as_str()
        {
            used.insert(ip.to_string());
        }
    }
    used
}

/// An address of `network`/16 for `key`: its hash, or the next free one.
fn allocate(network: [u8; 2], key: &str, used: &mut BTreeSet<String>) -> String {
    // Hosts 1..=65534: neither the network's first nor its last address.
    let start = fnv1a(key.as_bytes()) % 65534;
    for step in 0..65534u64 {
        let host = (start + step) % 65534 + 1;
        let address = format!(
            "{}.{}.{}.{}",
            network[0],
            network[1],
            host >> 8,
            host & 0xff
        );
        if used.insert(address.clone()) {
            return address;
        }
    }
    // 65,534 objects of one kind: reuse rather than fail.
    format!("{}.{}.255.254", network[0], network[1])
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` letters of Kubernetes' alphabet from the hash of `key`.
fn name_hash(key: &str, len: usize) -> String {
    let mut h = fnv1a(key.as_bytes());
    let base = NAME_ALPHABET.len() as u64;
    (0..len)
        .map(|_| {
            let letter = NAME_ALPHABET[(h % base) as usize];
            h /= base;
            if h == 0 {
                h = fnv1a(&[letter]);
            }
            char::from(letter)
        })
        .collect()
}

fn assign_cluster_ips(documents: &mut [Value], used: &mut BTreeSet<String>) {
    let mut needing: Vec<(String, usize)> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| is_core(d, "Service") && needs_cluster_ip(d))
        .map(|(i, d)| (format!("{}/{}", namespace(d), name(d)), i))
        .collect();
    needing.sort();
    for (key, i) in needing {
        let ip = allocate(SERVICE_NETWORK, &key, used);
        if let Some(doc) = documents.get_mut(i)
            && let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
    }
}

fn needs_cluster_ip(service: &Value) -> bool {
    let spec = &service["spec"];
    spec.is_object()
        && spec["type"] != "ExternalName"
        && spec["clusterIP"].as_str().is_none_or(str::is_empty)
}

fn assign_pod_ips(documents: &mut [Value], used: &mut BTreeSet<String>) {
    let mut needing: Vec<(String, usize)> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            is_core(d, "Pod") && d["status"]["podIP"].as_str().is_none_or(str::is_empty)
        })
        .map(|(i, d)| (format!("{}/{}", namespace(d), name(d)), i))
        .collect();
    needing.sort();
    for (key, i) in needing {
        let ip = allocate(POD_NETWORK, &key, used);
        if let Some(doc) = documents.get_mut(i).and_then(Value::as_object_mut) {
            let status = doc.entry("status").or_insert_with(|| json!({}));
            if let Some(status) = status.as_object_mut() {
                status.insert("podIP".into(), json!(ip));
                status.insert("podIPs".into(), json!([{ "ip": ip }]));
            }
        }
    }
}

/// The Pods the workloads in `documents` run (without IPs yet).
fn workload_pods(documents: &[Value], existing: &[PodView]) -> Vec<PodView> {
    let mut out = Vec::new();
    for doc in documents {
        let Some(replicas) = replicas(doc) else {
            continue;
        };
        let ns = namespace(doc);
        let selector = workload_selector(doc);
        let running = existing
            .iter()
            .any(|p| p.namespace == ns && selects(&selector, &p.labels));
        if running || selector.is_empty() {
            continue;
        }
        let template = &doc["spec"]["template"];
        let kind = doc["kind"].as_str().unwrap_or_default();
        for i in 0..replicas {
            out.push(PodView {
                namespace: ns.to_string(),
                name: pod_name(kind, ns, name(doc), i),
                labels: template["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ip: String::new(),
                named_ports: named_ports(&template["spec"]),
                source: Some(format!("{kind} {ns}/{}", name(doc))),
            });
        }
    }
    out
}

/// How many Pods a workload document runs; `None` when it is no workload.
fn replicas(doc: &Value) -> Option<u64> {
    if !doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("apps/"))
    {
        return None;
    }
    match doc["kind"].as_str()? {
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            Some(doc["spec"]["replicas"].as_u64().unwrap_or(1))
        }
        "DaemonSet" => Some(1),
        _ => None,
    }
}

/// `spec.selector.matchLabels`, else the template's labels.
fn workload_selector(doc: &Value) -> Map<String, Value> {
    doc["spec"]["selector"]["matchLabels"]
        .as_object()
        .filter(|m| !m.is_empty())
        .or_else(|| doc["spec"]["template"]["metadata"]["labels"].as_object())
        .cloned()
        .unwrap_or_default()
}

fn selects(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_name(kind: &str, namespace: &str, workload: &str, i: u64) -> String {
    let key = format!("{namespace}/{workload}");
    match kind {
        "StatefulSet" => format!("{workload}-{i}"),
        "Deployment" => format!(
            "{workload}-{}-{}",
            name_hash(&key, 10),
            name_hash(&format!("{key}/{i}"), 5)
        ),
        _ => format!("{workload}-{}", name_hash(&format!("{key}/{i}"), 5)),
    }
}

/// EndpointSlices for the Services that select pods and have none.
fn endpoint_slices(documents: &[Value], pods: &[PodView]) -> Vec<Value> {
    let with_slices: BTreeSet<(String, String)> = documents
        .iter()
        .filter(|d| d["kind"] == "EndpointSlice")
        .filter_map(|d| {
            let service = d["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()?;
            Some((namespace(d).to_string(), service.to_string()))
        })
        .collect();
    let mut out = Vec::new();
    for service in documents.iter().filter(|d| is_core(d, "Service")) {
        let key = (namespace(service).to_string(), name(service).to_string());
        let selector = service["spec"]["selector"].as_object();
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            continue;
        };
        if with_slices.contains(&key) || service["spec"]["type"] == "ExternalName" {
            continue;
        }
        let selected: Vec<&PodView> = pods
            .iter()
            .filter(|p| p.namespace == key.0 && selects(selector, &p.labels))
            .collect();
        out.extend(slices_of(service, &selected));
    }
    out
}

/// One slice per distinct set of resolved ports, as the EndpointSlice
/// controller groups them.
fn slices_of(service: &Value, pods: &[&PodView]) -> Vec<Value> {
    // Keyed by the ports' JSON text (JSON values have no order).
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<&PodView>)> = BTreeMap::new();
    for pod in pods {
        let ports = resolved_ports(service, pod);
        let key = Value::from(ports.clone()).to_string();
        groups.entry(key).or_insert((ports, Vec::new())).1.push(pod);
    }
    let (ns, svc) = (namespace(service), name(service));
    groups
        .into_values()
        .enumerate()
        .map(|(i, (ports, mut members))| {
            members.sort_by_key(|p| p.name.as_str());
            let endpoints: Vec<Value> = members
                .iter()
                .map(|p| {
                    json!({
                        "addresses": [p.ip],
                        "conditions": {"ready": true, "serving": true, "terminating": false},
                        "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name},
                    })
                })
                .collect();
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{svc}-{}", name_hash(&format!("{ns}/{svc}/{i}"), 5)),
                    "namespace": ns,
                    "labels": {SERVICE_NAME_LABEL: svc},
                    "annotations": {SYNTHESIZED_FROM_ANNOTATION: format!("Service {ns}/{svc}")},
                },
                "addressType": "IPv4",
                "ports": ports,
                "endpoints": endpoints,
            })
        })
        .collect()
}

/// The Service's ports as this pod serves them: `targetPort` a number, a
/// name of one of the pod's container ports, or absent (the port itself).
/// A name the pod does not declare leaves the port out, as Kubernetes does.
fn resolved_ports(service: &Value, pod: &PodView) -> Vec<Value> {
    let ports = service["spec"]["ports"].as_array().into_iter().flatten();
    ports
        .filter_map(|p| {
            let number = match &p["targetPort"] {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => match s.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => pod.named_ports.get(s).copied(),
                },
                _ => p["port"].as_u64(),
            }?;
            let mut port = json!({
                "port": number,
                "protocol": p["protocol"].as_str().unwrap_or("TCP"),
            });
            if let Some(name) = p["name"].as_str() {
                port["name"] = json!(name);
            }
            if let Some(app) = p["appProtocol"].as_str() {
                port["appProtocol"] = json!(app);
            }
            Some(port)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str, replicas: u64, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "ports": [{"name": "web", "containerPort": 8080}]}]}}},
        })
    }

    fn service(name: &str, selector: Value, target_port: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": target_port}]},
        })
    }

    fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
        docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    #[test]
    fn deployments_get_pods_services_get_ips_and_slices() {
        let mut docs = vec![
            deployment("reviews-v1", 2, json!({"app": "reviews", "version": "v1"})),
            service("reviews", json!({"app": "reviews"}), json!("web")),
        ];
        let added = complete(&mut docs);
        let pods = of_kind(&added, "Pod");
        assert_eq!(pods.len(), 2);
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            assert!(name.starts_with("reviews-v1-"), "{name}");
            assert_eq!(name.len(), "reviews-v1-".len() + 10 + 1 + 5, "{name}");
            assert_eq!(pod["metadata"]["labels"]["version"], "v1");
            let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
            assert!(ip.starts_with("198.18."), "{ip}");
            assert_eq!(
                pod["metadata"]["annotations"][SYNTHESIZED_FROM_ANNOTATION],
                "Deployment shop/reviews-v1"
            );
        }
        assert_ne!(pods[0]["status"]["podIP"], pods[1]["status"]["podIP"]);
        let ip = docs[1]["spec"]["clusterIP"].as_str().unwrap_or_default();
        assert!(ip.starts_with("198.19."), "{ip}");
        let slices = of_kind(&added, "EndpointSlice");
        assert_eq!(slices.len(), 1);
        assert_eq!(
            slices[0]["metadata"]["labels"][SERVICE_NAME_LABEL],
            "reviews"
        );
        assert_eq!(
            slices[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(slices[0]["endpoints"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn addresses_and_names_do_not_move_when_other_objects_come() {
        let alone = complete(&mut [deployment("a", 1, json!({"app": "a"}))]);
        let mut more = vec![
            deployment("b", 3, json!({"app": "b"})),
            deployment("a", 1, json!({"app": "a"})),
        ];
        let with_others = complete(&mut more);
        let a = |docs: &[Value]| {
            docs.iter()
                .find(|d| d["metadata"]["labels"]["app"] == "a")
                .cloned()
        };
        assert_eq!(a(&alone), a(&with_others));
    }

    #[test]
    fn running_workloads_statefulsets_and_existing_objects_are_respected() {
        let mut docs = vec![
            deployment("web", 1, json!({"app": "web"})),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "web-live", "namespace": "shop", "labels": {"app": "web"}},
                   "status": {"podIP": "10.1.2.3"}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
                   "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "db"}}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fixed", "namespace": "shop"},
                   "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 1}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless", "namespace": "shop"},
                   "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 3306}]}}),
        ];
        let added = complete(&mut docs);
        let names: Vec<&str> = of_kind(&added, "Pod")
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, ["db-0", "db-1"]);
        assert_eq!(docs[3]["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(docs[4]["spec"]["clusterIP"], "None");
        let slices = of_kind(&added, "EndpointSlice");
        assert_eq!(slices.len(), 1);
        assert_eq!(
            slices[0]["ports"],
            json!([{"port": 3306, "protocol": "TCP"}])
        );
    }

    #[test]
    fn a_service_with_slices_or_an_unknown_port_name_keeps_what_kubernetes_would() {
        let mut docs = vec![
            deployment("web", 1, json!({"app": "web"})),
            service("web", json!({"app": "web"}), json!("nope")),
            service("listed", json!({"app": "web"}), json!(8080)),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "listed-x", "namespace": "shop",
                                "labels": {SERVICE_NAME_LABEL: "listed"}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}}),
        ];
        let added = complete(&mut docs);
        let slices = of_kind(&added, "EndpointSlice");
        assert_eq!(slices.len(), 1, "{slices:?}");
        assert_eq!(slices[0]["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
        assert_eq!(slices[0]["ports"], json!([]));
        let bare_ip = docs[4]["status"]["podIP"].as_str().unwrap_or_default();
        assert!(bare_ip.starts_with("198.18."), "{bare_ip}");
    }

    #[test]
    fn allocation_probes_past_collisions() {
        let mut used = BTreeSet::new();
        let first = allocate(POD_NETWORK, "x", &mut used);
        let second = allocate(POD_NETWORK, "x", &mut used);
        assert_ne!(first, second);
        assert_eq!(used.len(), 2);
    }
}
