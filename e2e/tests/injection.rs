//! Sidecar injection against the real control plane: the real
//! `meshkeeper-webhook` binary runs on loopback with a certificate from a
//! test CA, a MutatingWebhookConfiguration built by
//! `meshkeeper_webhook::configuration` points the API server at it, and
//! pods are created the ways users create them.
//!
//! Each scenario serves its own revision (`e2e-<pid>-<n>`), so scenarios
//! running in parallel never see each other's webhook.

mod support;

use std::collections::BTreeSet;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use meshkeeper_e2e::{DEADLINE, DeleteOnDrop, Harness, TestNamespace, wait_until};
use meshkeeper_webhook::configuration::{InjectorWebhook, Target, mutating_webhook_configuration};
use serde_json::{Value, json};
use support::{OWN_NAMESPACE, ServedRevision};

const INIT: &str = "meshkeeper-init";
const PROXY: &str = "meshkeeper-proxy";

/// One scenario's mesh: a revision, its webhook process and its webhook
/// configuration, and a namespace labelled for that revision. Dropped in
/// field order: the configuration goes before the webhook process stops.
struct Mesh {
    revision: String,
    labelled: TestNamespace,
    _configuration: DeleteOnDrop,
    rev: ServedRevision,
}

impl Mesh {
    async fn start(h: &Harness, scenario: &str) -> anyhow::Result<Self> {
        let rev = ServedRevision::start(h, "e2e").await?;
        let revision = rev.name.clone();

        let mut spec = InjectorWebhook::new(
            &revision,
            OWN_NAMESPACE,
            Target::Url(rev.url()),
            rev.certs.ca_pem.as_bytes(),
        );
        spec.timeout_seconds = 5;
        let configuration = mutating_webhook_configuration(&spec)?;
        Api::<MutatingWebhookConfiguration>::all(h.client.clone())
            .create(&PostParams::default(), &configuration)
            .await
            .with_context(|| format!("creating MutatingWebhookConfiguration {}", spec.name))?;
        let configuration = h.delete_on_drop("mutatingwebhookconfigurations", &spec.name);

        let labelled = h.namespace(scenario).await?;
        h.kubectl(
            &[
                "label",
                "namespace",
                &labelled.name,
                &format!("istio.io/rev={revision}"),
            ],
            None,
        )?;

        let mesh = Self {
            revision,
            labelled,
            _configuration: configuration,
            rev,
        };
        mesh.wait_until_injecting(h).await?;
        Ok(mesh)
    }

    /// The API server learns of new webhook configurations asynchronously
    /// and the webhook becomes ready once it has read its MeshRevision: a
    /// server-side dry run shows when both have happened.
    async fn wait_until_injecting(&self, h: &Harness) -> anyhow::Result<()> {
        let probe = plain_pod("probe", json!({}), json!({})).to_string();
        let namespace = self.labelled.name.clone();
        let result = wait_until("the webhook to inject a dry-run pod", DEADLINE, || {
            let probe = probe.clone();
            let namespace = namespace.clone();
            async move {
                let out = h.kubectl(
                    &[
                        "create",
                        "--dry-run=server",
                        "-n",
                        &namespace,
                        "-o",
                        "json",
                        "-f",
                        "-",
                    ],
                    Some(&probe),
                )?;
                let pod: Pod = serde_json::from_str(&out)?;
                Ok(is_injected(&pod).then_some(()))
            }
        })
        .await;
        result.with_context(|| format!("webhook log:\n{}", self.rev.webhook.log_tail()))
    }
}

/// A pod with one container; `labels` and `annotations` as given.
fn plain_pod(name: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    })
}

/// Names of all containers and init containers.
fn container_names(pod: &Pod) -> BTreeSet<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeSet::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

fn is_injected(pod: &Pod) -> bool {
    let names = container_names(pod);
    names.contains(INIT) && names.contains(PROXY)
}

fn is_untouched(pod: &Pod) -> bool {
    let names = container_names(pod);
    names.len() == 1
        && names.contains("app")
        && pod
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.keys().any(|k| k.starts_with("meshkeeper.io/")))
}

/// Creates `pod` in `namespace` with kubectl and returns what was stored.
fn create_pod(h: &Harness, namespace: &str, pod: &Value) -> anyhow::Result<Pod> {
    let out = h.kubectl(
        &["create", "-n", namespace, "-o", "json", "-f", "-"],
        Some(&pod.to_string()),
    )?;
    Ok(serde_json::from_str(&out)?)
}

#[tokio::test]
async fn deployment_pods_in_a_revision_labelled_namespace_get_the_sidecar() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let mesh = Mesh::start(&h, "inject-deploy").await?;
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": "v1"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "registry.k8s.io/pause:3.10",
                    "ports": [{"containerPort": 8080}]
                }]}
            }
        }
    });
    h.kubectl(
        &["apply", "-n", &mesh.labelled.name, "-f", "-"],
        Some(&deployment.to_string()),
    )?;

    let pods = Api::<Pod>::namespaced(h.client.clone(), &mesh.labelled.name);
    let injected = wait_until(
        "two controller-made pods carrying the sidecar",
        DEADLINE,
        || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let made_by_controller: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "ReplicaSet")
                })
                .collect();
            Ok((made_by_controller.len() >= 2).then_some(made_by_controller))
        },
    )
    .await
    .with_context(|| format!("webhook log:\n{}", mesh.rev.webhook.log_tail()))?;

    for pod in &injected {
        let name = pod.metadata.name.clone().unwrap_or_default();
        ensure!(
            is_injected(pod),
            "pod {name} lacks {INIT}/{PROXY}: {:?}",
            container_names(pod)
        );
        ensure!(
            container_names(pod).contains("web"),
            "pod {name} lost its own container"
        );
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let status = annotations
            .get("meshkeeper.io/status")
            .with_context(|| format!("pod {name} has no meshkeeper.io/status"))?;
        ensure!(
            status.contains(&mesh.revision),
            "meshkeeper.io/status of {name} does not name revision {}: {status}",
            mesh.revision
        );
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        ensure!(
            labels.get("security.istio.io/tlsMode").map(String::as_str) == Some("istio"),
            "pod {name} lacks security.istio.io/tlsMode=istio: {labels:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn pods_outside_the_selection_and_opted_out_pods_are_untouched() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let mesh = Mesh::start(&h, "inject-skip").await?;
    let unlabelled = h.namespace("inject-plain").await?;

    let pod = create_pod(
        &h,
        &unlabelled.name,
        &plain_pod("plain", json!({}), json!({})),
    )?;
    ensure!(
        is_untouched(&pod),
        "a pod in an unlabelled namespace was changed: {:?}",
        container_names(&pod)
    );

    let pod = create_pod(
        &h,
        &mesh.labelled.name,
        &plain_pod(
            "opted-out",
            json!({"sidecar.istio.io/inject": "false"}),
            json!({}),
        ),
    )?;
    ensure!(
        is_untouched(&pod),
        "an opted-out pod was changed: {:?}",
        container_names(&pod)
    );

    // The contrast: in the same unlabelled namespace, a pod that names the
    // revision itself is injected (the object-scope entry).
    let pod = create_pod(
        &h,
        &unlabelled.name,
        &plain_pod(
            "opted-in",
            json!({"istio.io/rev": mesh.revision}),
            json!({}),
        ),
    )?;
    ensure!(
        is_injected(&pod),
        "a pod labelled istio.io/rev={} was not injected: {:?}\nwebhook log:\n{}",
        mesh.revision,
        container_names(&pod),
        mesh.rev.webhook.log_tail()
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_with_a_bad_annotation_is_rejected_with_the_reason() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    let mesh = Mesh::start(&h, "inject-deny").await?;
    let annotation = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
    let value = "10.0.0.0/33";
    let err = match create_pod(
        &h,
        &mesh.labelled.name,
        &plain_pod("bad", json!({}), json!({ annotation: value })),
    ) {
        Ok(pod) => bail!(
            "the pod was admitted: {:?}",
            pod.metadata.annotations.unwrap_or_default()
        ),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("denied the request") && err.contains(annotation) && err.contains(value),
        "kubectl's error does not name the annotation and value: {err}"
    );
    // Nothing was stored.
    let pods = Api::<Pod>::namespaced(h.client.clone(), &mesh.labelled.name);
    ensure!(
        pods.get_opt("bad").await?.is_none(),
        "the rejected pod exists"
    );
    Ok(())
}
