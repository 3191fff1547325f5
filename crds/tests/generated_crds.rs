//! The committed CRD YAML is what the types generate, and it is structural
//! (the API server rejects a CRD whose schema nodes lack types).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

#[test]
fn generated_crds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    let wanted = meshkeeper_crds::crd::rendered().unwrap();
    let mut committed = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            committed.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        wanted.keys().collect::<Vec<_>>(),
        "crds/generated holds other files than the types generate; run `cargo run -p meshkeeper-crds --bin crdgen`"
    );
    for (name, yaml) in &wanted {
        assert!(
            committed[name] == *yaml,
            "crds/generated/{name} is stale; run `cargo run -p meshkeeper-crds --bin crdgen`"
        );
    }
}

#[test]
fn istio_kinds_serve_every_istio_version_with_v1_stored() {
    for crd in meshkeeper_crds::crd::all() {
        let versions: Vec<(String, bool)> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.clone(), v.storage))
            .collect();
        let expected: Vec<(String, bool)> = match crd.spec.names.kind.as_str() {
            "VirtualService" | "DestinationRule" | "Gateway" | "ServiceEntry" => vec![
                ("v1".into(), true),
                ("v1beta1".into(), false),
                ("v1alpha3".into(), false),
            ],
            "EnvoyFilter" => vec![("v1alpha3".into(), true)],
            "ProxyConfig" => vec![("v1beta1".into(), true)],
            "Mesh" | "MeshRevision" => vec![("v1alpha1".into(), true)],
            other => panic!("unexpected CRD kind {other}"),
        };
        assert_eq!(versions, expected, "{}", crd.spec.names.kind);
        assert!(crd.spec.versions.iter().all(|v| v.served));
    }
}

#[test]
fn mesh_kinds_are_cluster_scoped_and_istio_kinds_namespaced() {
    for crd in meshkeeper_crds::crd::all() {
        let scope = if crd.spec.group == "meshkeeper.io" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, scope, "{}", crd.spec.names.kind);
    }
}

#[test]
fn every_schema_node_is_structural() {
    let mut checked = 0;
    for crd in meshkeeper_crds::crd::all() {
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(
                version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .expect("every version has a schema"),
            )
            .unwrap();
            let mut problems = Vec::new();
            check_node(
                &schema,
                &format!("{}/{}", crd.spec.names.kind, version.name),
                &mut problems,
                &mut checked,
            );
            assert!(
                problems.is_empty(),
                "non-structural schema nodes:\n{}",
                problems.join("\n")
            );
        }
    }
    assert!(checked > 500, "walked only {checked} schema nodes");
}

/// A structural schema: every node states its type unless it keeps unknown
/// fields or is int-or-string; no references; branches of anyOf/oneOf/allOf
/// only constrain and never declare types, descriptions or defaults.
fn check_node(node: &Value, path: &str, problems: &mut Vec<String>, checked: &mut usize) {
    *checked += 1;
    let free = node["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
        || node["x-kubernetes-int-or-string"] == Value::Bool(true);
    if node.get("type").is_none() && !free {
        problems.push(format!("{path}: no type"));
    }
    for banned in ["$ref", "definitions", "$defs", "const"] {
        if node.get(banned).is_some() {
            problems.push(format!("{path}: has {banned}"));
        }
    }
    if let Some(Value::String(t)) = node.get("type") {
        let allowed = ["object", "array", "string", "integer", "number", "boolean"];
        if !allowed.contains(&t.as_str()) {
            problems.push(format!("{path}: type {t}"));
        }
    } else if let Some(t) = node.get("type") {
        problems.push(format!("{path}: type must be one string, is {t}"));
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        for (i, branch) in node[combinator]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for key in [
                "type",
                "description",
                "default",
                "nullable",
                "additionalProperties",
            ] {
                if branch.get(key).is_some() {
                    problems.push(format!("{path}.{combinator}[{i}]: declares {key}"));
                }
            }
        }
    }
    if let Some(props) = node["properties"].as_object() {
        for (name, child) in props {
            check_node(child, &format!("{path}.{name}"), problems, checked);
        }
    }
    if let Some(items) = node.get("items") {
        check_node(items, &format!("{path}[]"), problems, checked);
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        check_node(extra, &format!("{path}{{}}"), problems, checked);
    }
}
