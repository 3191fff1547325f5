//! The VirtualServices, DestinationRules and AdmissionReviews the
//! validation benchmarks use (`benches/validate.rs`): a cluster of
//! [`NAMESPACES`] × [`SERVICES_PER_NAMESPACE`] services, each with one
//! DestinationRule (3 subsets) and one VirtualService (a header match plus
//! a weighted split over 2 subsets), the shapes the Istio task pages use.

use serde_json::{Value, json};

pub const NAMESPACES: usize = 100;
pub const SERVICES_PER_NAMESPACE: usize = 100;
/// One DestinationRule and one VirtualService per service.
pub const OBJECTS_PER_KIND: usize = NAMESPACES * SERVICES_PER_NAMESPACE;

pub fn namespace(n: usize) -> String {
    format!("team-{n:03}")
}

pub fn service(s: usize) -> String {
    format!("svc-{s:03}")
}

/// The rule of service `s` in namespace `n`: mutual TLS, a connection
/// pool, and subsets v1, v2, v3 selecting pods by `version`.
pub fn destination_rule(n: usize, s: usize) -> Value {
    destination_rule_with_subsets(n, s, &["v1", "v2", "v3"])
}

pub fn destination_rule_with_subsets(n: usize, s: usize, subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets
        .iter()
        .map(|v| json!({"name": v, "labels": {"app": service(s), "version": v}}))
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": service(s), "namespace": namespace(n)},
        "spec": {
            "host": service(s),
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {"http": {"http1MaxPendingRequests": 100, "maxRequestsPerConnection": 10}}
            },
            "subsets": subsets
        }
    })
}

/// The routes of service `s` in namespace `n`: one user to v2, everyone
/// else 90/10 between v1 and v2, with a timeout and retries.
pub fn virtual_service(n: usize, s: usize) -> Value {
    let host = service(s);
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": host, "namespace": namespace(n)},
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "route": [{"destination": {"host": host, "subset": "v2"}}]
                },
                {
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": 90},
                        {"destination": {"host": host, "subset": "v2"}, "weight": 10}
                    ],
                    "timeout": "10s",
                    "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"}
                }
            ]
        }
    })
}

/// The object under review: a new canary VirtualService for an indexed
/// service, 80/20 between subsets v1 and v3 (both defined, so allowed).
/// No namespace in its metadata, as on a CREATE.
pub fn new_virtual_service() -> Value {
    let host = service(42);
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": format!("{host}-canary")},
        "spec": {
            "hosts": [host],
            "http": [{
                "route": [
                    {"destination": {"host": host, "subset": "v1"}, "weight": 80},
                    {"destination": {"host": host, "subset": "v3"}, "weight": 20}
                ],
                "timeout": "5s"
            }]
        }
    })
}

/// The namespace [`new_virtual_service`] and the DestinationRule updates
/// are reviewed in.
pub const REVIEW_NAMESPACE: usize = 42;

/// An `admission.k8s.io/v1` AdmissionReview of `operation` on `object` in
/// namespace [`REVIEW_NAMESPACE`], as the API server sends it to `/validate`.
pub fn review(operation: &str, object: &Value, old_object: Option<&Value>, uid: &str) -> Value {
    let kind = object["kind"].clone();
    let resource = match kind.as_str() {
        Some("DestinationRule") => "destinationrules",
        _ => "virtualservices",
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": kind},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": namespace(REVIEW_NAMESPACE),
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": false
        }
    })
}

/// Resident memory around building the index, KiB (VmRSS).
pub struct IndexMemory {
    pub before: u64,
    pub after_rules: u64,
    pub after_services: u64,
}

impl IndexMemory {
    pub fn print(&self) {
        let objects = OBJECTS_PER_KIND;
        let per = |kib: u64, objects: usize| kib as f64 * 1024.0 / objects as f64;
        println!(
            "index memory: VmRSS {} KiB before, {} KiB after {objects} DestinationRules, \
             {} KiB after {objects} VirtualServices",
            self.before, self.after_rules, self.after_services
        );
        println!(
            "index memory per object: DestinationRule {:.0} B, VirtualService {:.0} B, both kinds {:.0} B",
            per(self.after_rules.saturating_sub(self.before), objects),
            per(
                self.after_services.saturating_sub(self.after_rules),
                objects
            ),
            per(self.after_services.saturating_sub(self.before), 2 * objects),
        );
    }
}

/// VmRSS of this process in KiB, from /proc/self/status.
pub fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/self/status"))
}

/// The index of the whole generated cluster, built one object at a time
/// (generate, parse, insert, drop) as the watches feed it, so the memory
/// measured is what the index keeps, not a pile of parsed documents.
pub fn build_index() -> (meshkeeper_webhook::validate::index::Index, IndexMemory) {
    use meshkeeper_crds::networking::{DestinationRule, VirtualService};
    use meshkeeper_crds::parse::from_value;
    let before = resident_kib();
    let mut index = meshkeeper_webhook::validate::index::Index::default();
    for n in 0..NAMESPACES {
        for s in 0..SERVICES_PER_NAMESPACE {
            let rule: DestinationRule = from_value(&destination_rule(n, s))
                .unwrap_or_else(|e| panic!("generated DestinationRule: {e}"));
            index.upsert_destination_rule(&rule);
        }
    }
    let after_rules = resident_kib();
    for n in 0..NAMESPACES {
        for s in 0..SERVICES_PER_NAMESPACE {
            let vs: VirtualService = from_value(&virtual_service(n, s))
                .unwrap_or_else(|e| panic!("generated VirtualService: {e}"));
            index.upsert_virtual_service(&vs);
        }
    }
    let after_services = resident_kib();
    assert_eq!(index.destination_rule_count(), OBJECTS_PER_KIND);
    assert_eq!(index.virtual_service_count(), OBJECTS_PER_KIND);
    let memory = IndexMemory {
        before,
        after_rules,
        after_services,
    };
    (index, memory)
}

/// A server state ready to validate against `index`, for MeshRevision
/// `default` with the default validation policy (every check denies).
pub fn ready_state(
    index: meshkeeper_webhook::validate::index::Index,
) -> meshkeeper_webhook::server::State {
    use meshkeeper_webhook::inject::{DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE};
    use meshkeeper_webhook::server::{State, StateOptions, ValidationView};
    let state = State::new(StateOptions {
        revision: "default".into(),
        own_namespace: "meshkeeper-system".into(),
        init_image: DEFAULT_INIT_IMAGE.into(),
        proxy_image: DEFAULT_PROXY_IMAGE.into(),
        native_sidecars_supported: true,
    });
    let revision: meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision =
        serde_json::from_value(json!({
            "apiVersion": "meshkeeper.io/v1alpha1", "kind": "MeshRevision",
            "metadata": {"name": "default"},
            "spec": {"mesh": "default", "version": "0.1.0"}
        }))
        .unwrap_or_else(|e| panic!("bench MeshRevision: {e}"));
    state
        .apply_revision(&revision)
        .unwrap_or_else(|e| panic!("bench MeshRevision: {e}"));
    state.set_proxy_configs(Vec::new());
    state.set_validation_view(ValidationView {
        index,
        terminating_namespaces: Default::default(),
    });
    state
}
