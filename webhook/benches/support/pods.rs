//! The pods and AdmissionReviews the benchmarks send, shared by
//! `benches/inject.rs` and `examples/loadgen.rs` (both include this file
//! with `#[path]`), so the in-process and the over-the-wire numbers measure
//! the same input.

use serde_json::{Value, json};

/// The namespace the reviews are for: an ordinary application namespace,
/// so the default mesh policy injects.
pub const NAMESPACE: &str = "bookinfo";

/// A uid of the shape the API server sends, as a placeholder the load
/// generator overwrites in place for every request.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The typical pod: made by a Deployment, two containers with probes and
/// resources, ten environment variables (the injector's golden input).
pub fn typical_pod() -> Value {
    // The golden file is part of the crate; that it parses is checked by the
    // golden tests, so failing here means the file was broken by hand.
    serde_json::from_str(include_str!("../../tests/golden/inject/typical.in.json"))
        .unwrap_or_else(|e| panic!("tests/golden/inject/typical.in.json: {e}"))
}

/// The typical pod with `count` containers: copies of its own containers in
/// turn, each with a unique name and unique container ports.
pub fn pod_with_containers(count: usize) -> Value {
    let mut pod = typical_pod();
    let originals = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!originals.is_empty(), "the typical pod has containers");
    let containers: Vec<Value> = (0..count)
        .map(|i| {
            let mut container = originals[i % originals.len()].clone();
            let name = container["name"].as_str().unwrap_or("app").to_owned();
            container["name"] = json!(format!("{name}-{i}"));
            if let Some(ports) = container["ports"].as_array_mut() {
                for (j, port) in ports.iter_mut().enumerate() {
                    port["containerPort"] = json!(10_000 + i * PORTS_PER_CONTAINER + j);
                }
            }
            container
        })
        .collect();
    pod["spec"]["containers"] = Value::Array(containers);
    pod
}

/// Room for this many ports per copied container when renumbering (the
/// typical pod's containers have one each).
const PORTS_PER_CONTAINER: usize = 4;

/// An `admission.k8s.io/v1` AdmissionReview of creating `pod` in
/// [`NAMESPACE`], as the API server sends it to `/inject/namespace`.
pub fn review(pod: &Value, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "a8f1c0de-1111-4222-8333-444455556666",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// The MeshRevision the benchmarks inject with: a Mesh naming its proxy
/// image, everything else meshkeeper's defaults (as the golden tests).
pub fn mesh_revision(name: &str) -> Value {
    json!({
        "apiVersion": "meshkeeper.io/v1alpha1",
        "kind": "MeshRevision",
        "metadata": {"name": name},
        "spec": {
            "mesh": "default",
            "version": "0.1.0",
            "proxy": {"image": "docker.io/envoyproxy/envoy:v1.36.2"}
        }
    })
}
