//! The objects a proxy configuration is compiled from: manifests read
//! from files, folders or standard input (with `manifests`, as `analyze`
//! reads them), a cluster's objects, and one set laid over another.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::manifests::{self, Source};

/// One object and where it came from (a file, `stdin`, `cluster`).
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub origin: String,
    pub value: Value,
}

/// Every object of the manifests `paths` name (`kind: List` items one by
/// one), each given `default_namespace` when it names none. A path that
/// cannot be read, a document that does not parse or that is not a mapping
/// is an error naming the file and the document's number; a mapping
/// without `apiVersion` and `kind` (a values file beside manifests) is
/// skipped with a note on stderr.
pub fn read(paths: &[PathBuf], default_namespace: &str) -> anyhow::Result<Vec<Input>> {
    let (sources, unreadable) = manifests::sources(paths);
    if let Some(problem) = unreadable.first() {
        bail!("{}: {}", problem.path.display(), problem.message);
    }
    let mut inputs = Vec::new();
    for source in &sources {
        read_source(source, default_namespace, &mut inputs)?;
    }
    Ok(inputs)
}

fn read_source(
    source: &Source,
    default_namespace: &str,
    inputs: &mut Vec<Input>,
) -> anyhow::Result<()> {
    let origin = source.to_string();
    let mut problem = None;
    let mut take = |number: usize, document: Result<Value, String>| {
        if problem.is_some() {
            return;
        }
        match document.and_then(objects_of) {
            Ok(None) => eprintln!(
                "meshctl: {origin}: document {number} has no `apiVersion` or `kind`: skipped"
            ),
            Ok(Some(objects)) => inputs.extend(objects.into_iter().map(|value| Input {
                origin: origin.clone(),
                value: with_namespace(value, default_namespace),
            })),
            Err(message) => problem = Some(format!("{origin}: document {number}: {message}")),
        }
    };
    match source {
        Source::Stdin => manifests::for_each_document(&mut std::io::stdin().lock(), &mut take),
        Source::File(path) => {
            let mut file =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            manifests::for_each_document(&mut file, &mut take);
        }
    }
    match problem {
        Some(message) => bail!("{message}"),
        None => Ok(()),
    }
}

/// The Kubernetes objects of one document (the items of a List); `None`
/// for a mapping without `apiVersion` and `kind`.
fn objects_of(document: Value) -> Result<Option<Vec<Value>>, String> {
    let Value::Object(map) = &document else {
        return Err(
            "is not a Kubernetes object (a mapping with `apiVersion`, `kind` and `metadata`): \
             is this file a manifest?"
                .to_owned(),
        );
    };
    if !map.contains_key("apiVersion") && !map.contains_key("kind") {
        return Ok(None);
    }
    Ok(Some(manifests::expand_lists(document)))
}

/// `value` with `metadata.namespace` set when it has none.
pub fn with_namespace(mut value: Value, namespace: &str) -> Value {
    let meta = &mut value["metadata"];
    if meta.is_object() && meta["namespace"].as_str().is_none_or(str::is_empty) {
        meta["namespace"] = Value::String(namespace.to_owned());
    }
    value
}

/// The objects of `base` with `change` laid over them, as `kubectl apply`
/// would leave the cluster: an object of the same API group, kind,
/// namespace and name is replaced (a replaced Service keeps its ClusterIP
/// when the new one sets none, as the API server does), others are added.
pub fn overlay(base: &[Input], change: &[Input]) -> Vec<Input> {
    let mut out: Vec<Input> = base.to_vec();
    for new in change {
        let id = identity(&new.value);
        match out.iter_mut().find(|old| identity(&old.value) == id) {
            Some(old) => {
                let mut value = new.value.clone();
                keep_cluster_ip(&old.value, &mut value);
                *old = Input {
                    origin: new.origin.clone(),
                    value,
                };
            }
            None => out.push(new.clone()),
        }
    }
    out
}

/// API group (not version), kind, namespace, name.
fn identity(value: &Value) -> (String, String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(group, _)| group)
        .to_owned();
    (
        group,
        text(&value["kind"]),
        text(&value["metadata"]["namespace"]),
        text(&value["metadata"]["name"]),
    )
}

fn keep_cluster_ip(old: &Value, new: &mut Value) {
    if new["kind"] != "Service" || !new["spec"].is_object() {
        return;
    }
    let unset = new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty);
    if unset && let Some(ip) = old["spec"]["clusterIP"].as_str() {
        new["spec"]["clusterIP"] = Value::String(ip.to_owned());
        if old["spec"]["clusterIPs"].is_array() {
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(origin: &str, value: Value) -> Input {
        Input {
            origin: origin.to_owned(),
            value,
        }
    }

    #[test]
    fn the_change_replaces_same_objects_and_adds_new_ones() {
        let base = [
            input(
                "base.yaml",
                json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                                      "metadata": {"name": "r", "namespace": "a"}, "spec": {"hosts": ["old"]}}),
            ),
            input(
                "base.yaml",
                json!({"apiVersion": "v1", "kind": "Service",
                                      "metadata": {"name": "r", "namespace": "a"}, "spec": {"clusterIP": "10.0.0.1"}}),
            ),
        ];
        let change = [
            input(
                "change.yaml",
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                        "metadata": {"name": "r", "namespace": "a"}, "spec": {"hosts": ["new"]}}),
            ),
            input(
                "change.yaml",
                json!({"apiVersion": "v1", "kind": "Service",
                                        "metadata": {"name": "r", "namespace": "a"}, "spec": {"ports": []}}),
            ),
            input(
                "change.yaml",
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                        "metadata": {"name": "r", "namespace": "b"}}),
            ),
        ];
        let merged = overlay(&base, &change);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].value["spec"]["hosts"], json!(["new"]));
        assert_eq!(merged[0].origin, "change.yaml");
        assert_eq!(merged[1].value["spec"]["clusterIP"], "10.0.0.1");
        assert_eq!(merged[2].value["metadata"]["namespace"], "b");
    }

    #[test]
    fn objects_without_a_namespace_get_the_default_one() {
        let v = with_namespace(json!({"metadata": {"name": "x"}}), "shop");
        assert_eq!(v["metadata"]["namespace"], "shop");
        let v = with_namespace(
            json!({"metadata": {"name": "x", "namespace": "own"}}),
            "shop",
        );
        assert_eq!(v["metadata"]["namespace"], "own");
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_an_error_a_bare_mapping_is_skipped() {
        assert!(objects_of(json!("text")).is_err());
        assert_eq!(objects_of(json!({"replicas": 3})), Ok(None));
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service"}]});
        assert_eq!(objects_of(list).map(|v| v.map(|v| v.len())), Ok(Some(1)));
    }
}
