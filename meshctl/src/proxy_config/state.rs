//! The mesh as the compiler sees it, built from inputs: what a cluster
//! would add (Pods, ClusterIPs, EndpointSlices; see
//! `meshkeeper_compiler::offline`), then the snapshot.

use anyhow::Context;
use meshkeeper_compiler::{MeshSettings, Snapshot, SnapshotBuilder, offline};
use serde_json::Value;

use super::inputs::Input;

/// A built snapshot and the objects proxies are picked from.
pub struct State {
    pub snapshot: Snapshot,
    /// Every Pod with an IP, read or synthesized.
    pub pods: Vec<Value>,
    /// The Gateway objects, as read.
    pub gateways: Vec<Value>,
}

/// Completes `inputs` with what a cluster would add and builds the
/// snapshot. An object the compiler cannot read is an error naming the
/// file it came from.
pub fn build(inputs: &[Input]) -> anyhow::Result<State> {
    let mut values: Vec<Value> = inputs.iter().map(|i| i.value.clone()).collect();
    let added = offline::complete(&mut values);
    let mut builder = SnapshotBuilder::new(MeshSettings::default());
    for (value, input) in values.iter().zip(inputs) {
        builder
            .add_document(value)
            .with_context(|| format!("{}: {}", input.origin, label(value)))?;
    }
    for value in &added {
        builder.add_document(value).with_context(|| {
            let from = &value["metadata"]["annotations"][offline::SYNTHESIZED_FROM_ANNOTATION];
            format!(
                "{} (made for {})",
                label(value),
                from.as_str().unwrap_or("?")
            )
        })?;
    }
    let pods = values
        .iter()
        .chain(&added)
        .filter(|v| v["apiVersion"] == "v1" && v["kind"] == "Pod")
        .filter(|v| v["status"]["podIP"].is_string())
        .cloned()
        .collect();
    let gateways = values
        .iter()
        .filter(|v| is_networking(v) && v["kind"] == "Gateway")
        .cloned()
        .collect();
    let snapshot = builder
        .build()
        .context("building the mesh from the manifests")?;
    Ok(State {
        snapshot,
        pods,
        gateways,
    })
}

fn is_networking(value: &Value) -> bool {
    value["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("networking.istio.io/"))
}

/// `namespace/name` of an object as read.
pub fn namespaced_name(value: &Value) -> String {
    format!(
        "{}/{}",
        value["metadata"]["namespace"].as_str().unwrap_or("default"),
        value["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// `Kind namespace/name`, for messages.
pub fn label(value: &Value) -> String {
    format!(
        "{} {}/{}",
        value["kind"].as_str().unwrap_or("(no kind)"),
        value["metadata"]["namespace"].as_str().unwrap_or("default"),
        value["metadata"]["name"].as_str().unwrap_or("(no name)")
    )
}
