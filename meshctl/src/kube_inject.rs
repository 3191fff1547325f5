//! Offline injection: the same injector the webhook runs, applied to the pod
//! templates of workload manifests (`meshctl kube-inject`).

use k8s_openapi::api::core::v1::Pod;
use meshkeeper_crds::parse;
use meshkeeper_webhook::inject::{self, Outcome, Request, Scope, Settings};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum KubeInjectError {
    #[error("document {doc}: {message}")]
    Document { doc: usize, message: String },
}

/// The result of injecting a stream of documents.
#[derive(Debug, Default)]
pub struct Injected {
    pub documents: Vec<Value>,
    /// Per-document notes for stderr: skipped workloads, ignored values.
    pub notes: Vec<String>,
}

/// Where a kind keeps its pod template, as JSON pointer segments; `None`
/// for kinds that carry no pod (they pass through unchanged, with a note).
/// OpenShift's DeploymentConfig (`apps.openshift.io/v1`) keeps it where a
/// ReplicationController does.
fn pod_template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController"
        | "DeploymentConfig" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        "Pod" => Some(&[]),
        _ => None,
    }
}

/// Injects every workload among `documents` (Lists are entered); other
/// documents are returned unchanged.
pub fn inject_documents(
    documents: Vec<Value>,
    settings: &Settings,
) -> Result<Injected, KubeInjectError> {
    let mut out = Injected::default();
    for (i, doc) in documents.into_iter().enumerate() {
        let doc = inject_document(doc, settings, &mut out.notes).map_err(|message| {
            KubeInjectError::Document {
                doc: i + 1,
                message,
            }
        })?;
        out.documents.push(doc);
    }
    Ok(out)
}

fn inject_document(
    mut doc: Value,
    settings: &Settings,
    notes: &mut Vec<String>,
) -> Result<Value, String> {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    if kind == "List" || (kind.ends_with("List") && doc["items"].is_array()) {
        if let Some(items) = doc["items"].as_array_mut() {
            for (j, item) in items.iter_mut().enumerate() {
                let taken = std::mem::take(item);
                *item = inject_document(taken, settings, notes)
                    .map_err(|e| format!("items[{j}]: {e}"))?;
            }
        }
        return Ok(doc);
    }
    let name = doc["metadata"]["name"]
        .as_str()
        .or_else(|| doc["metadata"]["generateName"].as_str())
        .unwrap_or("(unnamed)")
        .to_string();
    let Some(path) = pod_template_path(&kind) else {
        // Said out loud: a workload kind meshctl does not know would
        // otherwise reach the cluster without a sidecar and nobody notice.
        notes.push(passed_through(&kind, &name));
        return Ok(doc);
    };
    let namespace = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let Some(template) = path.iter().try_fold(&mut doc, |v, key| v.get_mut(*key)) else {
        return Err(format!(
            "{kind} {name} has no pod template at {}",
            path.join(".")
        ));
    };
    let metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        return Err(format!(
            "{kind} {name}: the pod's metadata must be a mapping, found {metadata}"
        ));
    }
    let mut pod_json = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    // A template has no name; lend it the workload's so the injector derives
    // the same canonical name the workload's pods will get, then take it back.
    // A Pod with only generateName keeps it as it is: the injector reads it.
    let lent_name = kind != "Pod" && pod_json["metadata"]["name"].is_null();
    if lent_name {
        pod_json["metadata"]["name"] = Value::String(name.clone());
    }
    let pod: Pod =
        parse::from_value(&pod_json).map_err(|e| format!("{kind} {name}: pod template: {e}"))?;
    let request = Request {
        pod: &pod,
        namespace: &namespace,
        scope: Scope::Namespace,
        proxy: None,
    };
    match inject::inject(&request, settings) {
        Outcome::Injected { patch, warnings } => {
            notes.extend(warnings.into_iter().map(|w| format!("{kind} {name}: {w}")));
            let mut patched = pod_json;
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| format!("{kind} {name}: applying the injection patch: {e}"))?;
            if lent_name && let Some(meta) = patched["metadata"].as_object_mut() {
                meta.remove("name");
            }
            template["metadata"] = patched["metadata"].take();
            template["spec"] = patched["spec"].take();
            Ok(doc)
        }
        Outcome::Skipped { reason, warnings } => {
            notes.extend(warnings.into_iter().map(|w| format!("{kind} {name}: {w}")));
            notes.push(format!("{kind} {name}: not injected: {reason}"));
            Ok(doc)
        }
        Outcome::Denied { message } => Err(format!("{kind} {name}: {message}")),
    }
}

fn passed_through(kind: &str, name: &str) -> String {
    if kind.is_empty() {
        return format!("document {name} has no kind: passed through unchanged");
    }
    format!(
        "{kind} {name}: passed through unchanged (kube-inject injects Pods and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs and OpenShift DeploymentConfigs)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshkeeper_crds::meshkeeper::mesh_revision::{MeshRevision, MeshRevisionSpec};

    fn settings() -> Settings {
        let rev = MeshRevision::new(
            "default",
            MeshRevisionSpec {
                mesh: "test".into(),
                version: "0.1.0".into(),
                ..Default::default()
            },
        );
        Settings::from_revision(&rev, "meshkeeper-system", "init:test", "envoy:test", true)
    }

    fn pod_spec() -> Value {
        json!({"containers": [{"name": "app", "image": "app:1"}]})
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    }

    #[test]
    fn every_workload_kind_gets_the_sidecar_in_its_template() {
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()});
        let docs = vec![
            json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": template}}),
            json!({"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"template": template}}),
            json!({"kind": "DaemonSet", "metadata": {"name": "ds"}, "spec": {"template": template}}),
            json!({"kind": "ReplicaSet", "metadata": {"name": "rs"}, "spec": {"template": template}}),
            json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}),
            json!({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": template}}}}),
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec()}),
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"}, "spec": {"replicas": 1, "template": template}}),
            json!({"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig", "metadata": {"name": "dc"}, "spec": {"replicas": 1, "template": template}}),
        ];
        let out = inject_documents(docs, &settings()).unwrap();
        assert!(out.notes.is_empty(), "{:?}", out.notes);
        for doc in &out.documents {
            let kind = doc["kind"].as_str().unwrap();
            let pod = match kind {
                "Pod" => doc,
                "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
                _ => &doc["spec"]["template"],
            };
            assert_eq!(
                names(&pod["spec"]["initContainers"]),
                ["meshkeeper-init", "meshkeeper-proxy"],
                "{kind}"
            );
            assert_eq!(names(&pod["spec"]["containers"]), ["app"], "{kind}");
            assert!(
                pod["metadata"]["annotations"]["meshkeeper.io/status"].is_string(),
                "{kind}"
            );
        }
        // Templates keep having no name: the lent one is taken back.
        assert!(out.documents[0]["spec"]["template"]["metadata"]["name"].is_null());
        assert_eq!(
            out.documents[0]["spec"]["template"]["metadata"]["labels"]["service.istio.io/canonical-name"],
            "web"
        );
    }

    #[test]
    fn lists_are_entered_and_other_kinds_pass_through() {
        let service = json!({"kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        let list = json!({"kind": "List", "items": [
            service.clone(),
            {"kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec()}
        ]});
        let out = inject_documents(vec![service.clone(), list], &settings()).unwrap();
        assert_eq!(out.documents[0], service);
        // Each passed-through document is named, the one in the List too.
        assert_eq!(
            out.notes
                .iter()
                .filter(|n| n.starts_with("Service web: passed through unchanged"))
                .count(),
            2,
            "{:?}",
            out.notes
        );
        assert_eq!(out.documents[1]["items"][0], service);
        assert_eq!(
            names(&out.documents[1]["items"][1]["spec"]["initContainers"]),
            ["meshkeeper-init", "meshkeeper-proxy"]
        );
    }

    #[test]
    fn opted_out_workloads_stay_unchanged_with_a_note() {
        let doc = json!({"kind": "Deployment", "metadata": {"name": "batch"}, "spec": {"template": {
            "metadata": {"labels": {"sidecar.istio.io/inject": "false"}}, "spec": pod_spec()}}});
        let out = inject_documents(vec![doc.clone()], &settings()).unwrap();
        assert_eq!(out.documents[0], doc);
        assert!(
            out.notes
                .iter()
                .any(|n| n.starts_with("Deployment batch: not injected")),
            "{:?}",
            out.notes
        );
    }

    #[test]
    fn bad_annotation_fails_naming_document_workload_and_annotation() {
        let ok = json!({"kind": "Pod", "metadata": {"name": "fine"}, "spec": pod_spec()});
        let bad = json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {
            "metadata": {"annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "99999"}},
            "spec": pod_spec()}}});
        let err = inject_documents(vec![ok, bad], &settings())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("document 2: Deployment web: "), "{err}");
        assert!(
            err.contains("traffic.sidecar.istio.io/excludeOutboundPorts") && err.contains("99999"),
            "{err}"
        );
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        for doc in [
            json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"metadata": "oops", "spec": pod_spec()}}}),
            json!({"kind": "Pod", "metadata": [1], "spec": pod_spec()}),
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": "nope"}),
            json!({"kind": "List", "items": [{"kind": "Pod", "metadata": 7}]}),
        ] {
            assert!(
                inject_documents(vec![doc.clone()], &settings()).is_err(),
                "{doc}"
            );
        }
    }

    #[test]
    fn generate_name_pods_get_a_valid_canonical_name() {
        let doc =
            json!({"kind": "Pod", "metadata": {"generateName": "batch-"}, "spec": pod_spec()});
        let out = inject_documents(vec![doc], &settings()).unwrap();
        let meta = &out.documents[0]["metadata"];
        assert!(meta["name"].is_null());
        let canonical = meta["labels"]["service.istio.io/canonical-name"]
            .as_str()
            .unwrap();
        assert!(
            !canonical.is_empty()
                && canonical
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !canonical.ends_with('-'),
            "{canonical}"
        );
    }

    #[test]
    fn unknown_kinds_and_kindless_documents_are_named() {
        let docs = vec![
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
                   "spec": {"template": {"spec": pod_spec()}}}),
            json!({"metadata": {"name": "odd"}}),
        ];
        let out = inject_documents(docs.clone(), &settings()).unwrap();
        assert_eq!(out.documents, docs);
        assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
        assert!(
            out.notes[0].starts_with("Rollout web: passed through unchanged")
                && out.notes[0].contains("DeploymentConfigs"),
            "{:?}",
            out.notes
        );
        assert!(out.notes[1].contains("odd has no kind"), "{:?}", out.notes);
    }

    #[test]
    fn replication_controller_without_template_is_an_error() {
        let doc = json!({"kind": "ReplicationController", "metadata": {"name": "rc"}, "spec": {"replicas": 1}});
        let err = inject_documents(vec![doc], &settings())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ReplicationController rc has no pod template at spec.template"),
            "{err}"
        );
    }

    #[test]
    fn workload_without_template_is_an_error() {
        let doc = json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {}});
        let err = inject_documents(vec![doc], &settings())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no pod template at spec.template"),
            "{err}"
        );
    }
}
