//! The operator end to end: the real `meshkeeper-operator` runs as a local
//! process against the test cluster and installs a Mesh whose
//! `spec.webhook.url` points the API server at `meshkeeper-webhook`
//! processes on loopback, serving the certificates the operator issues
//! (mirrored from its Secrets into files, as the kubelet would mount them).
//! No kubelet runs, so pods stay Pending: enough to see what admission did.
//!
//! Only one Mesh may exist in a cluster, so the scenarios take turns
//! ([`SERIAL`]); each starts its own operator in its own namespace with its
//! own Mesh, and removes them (webhook configurations first) even when it
//! fails.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;
use meshkeeper_e2e::{DEADLINE, Harness, TestNamespace, wait_until};
use meshkeeper_operator::certs::{CaState, PREVIOUS_CA_CERT_KEY, ServingCert};
use meshkeeper_operator::proxy::{CONFIG_MAP_NAME, SETTINGS_FILE};
use meshkeeper_webhook::inject::names::{INJECTED_REVISION_LABEL, PROXY_VERSION_LABEL};
use serde_json::{Value, json};
use support::operator::{
    MANAGED_BY_SELECTOR, MESH, OperatorEnv, condition, condition_is, free_port, is_injected, label,
    observed_current, plain_pod, wait_dry_run_pod,
};

/// One scenario at a time: they all own the cluster's only Mesh.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const VALIDATOR: &str = "meshkeeper-validator";
const CA_SECRET: &str = meshkeeper_operator::names::CA_SECRET;

fn injector(revision: &str) -> String {
    meshkeeper_webhook::configuration::default_name(revision)
}

/// A Mesh at `version` served on `port`, in place unless `extra` says more.
fn mesh_spec(version: &str, port: u16, extra: Value) -> Value {
    let mut spec = json!({
        "version": version,
        "webhook": {"url": format!("https://127.0.0.1:{port}"), "timeoutSeconds": 5, "replicas": 1}
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// A fresh namespace carrying `label` (`key=value`).
async fn labelled_namespace(
    h: &Harness,
    scenario: &str,
    label: &str,
) -> anyhow::Result<TestNamespace> {
    let ns = h.namespace(scenario).await?;
    h.kubectl(
        &["label", "namespace", &ns.name, label, "--overwrite"],
        None,
    )?;
    Ok(ns)
}

async fn create_deployment(
    h: &Harness,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(h.client.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .with_context(|| format!("creating Deployment {namespace}/{name}"))?;
    Ok(())
}

/// Waits until the Deployment `app` has at least `count` pods and returns them.
async fn wait_pods(
    h: &Harness,
    namespace: &str,
    app: &str,
    count: usize,
) -> anyhow::Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(h.client.clone(), namespace);
    wait_until(&format!("{count} pods of {app}"), DEADLINE, || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await?;
        Ok((list.items.len() >= count).then_some(list.items))
    })
    .await
}

/// Every pod is injected by `revision` with a proxy of `version`.
fn ensure_injected(pods: &[Pod], revision: &str, version: &str) -> anyhow::Result<()> {
    for pod in pods {
        let name = pod.name_any();
        ensure!(
            is_injected(pod),
            "pod {name} was not injected: {:?}",
            support::operator::container_names(pod)
        );
        ensure!(
            label(pod, INJECTED_REVISION_LABEL) == Some(revision),
            "pod {name} carries {INJECTED_REVISION_LABEL}={:?}, not {revision}",
            label(pod, INJECTED_REVISION_LABEL)
        );
        ensure!(
            label(pod, PROXY_VERSION_LABEL) == Some(version),
            "pod {name} carries {PROXY_VERSION_LABEL}={:?}, not {version}",
            label(pod, PROXY_VERSION_LABEL)
        );
    }
    Ok(())
}

async fn wait_config_map(h: &Harness, namespace: &str) -> anyhow::Result<ConfigMap> {
    let api = Api::<ConfigMap>::namespaced(h.client.clone(), namespace);
    wait_until(
        &format!("ConfigMap {namespace}/{CONFIG_MAP_NAME}"),
        DEADLINE,
        || async { api.get_opt(CONFIG_MAP_NAME).await.map_err(Into::into) },
    )
    .await
}

fn settings_file(config_map: &ConfigMap) -> String {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get(SETTINGS_FILE))
        .cloned()
        .unwrap_or_default()
}

fn ca_bundles_of_mutating(config: &MutatingWebhookConfiguration) -> Vec<usize> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|w| w.client_config.ca_bundle.as_ref().map_or(0, |b| b.0.len()))
        .collect()
}

fn ca_bundles_of_validating(config: &ValidatingWebhookConfiguration) -> Vec<usize> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|w| w.client_config.ca_bundle.as_ref().map_or(0, |b| b.0.len()))
        .collect()
}

fn all_non_empty(sizes: &[usize]) -> bool {
    !sizes.is_empty() && sizes.iter().all(|s| *s > 0)
}

/// Mesh created → webhook configurations with a caBundle → a labelled
/// namespace gets its ConfigMap and injected pods → Ready and `kubectl get
/// mesh`; a deleted injector configuration comes back; an idle mesh costs
/// no writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_restore_and_idle() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-install", &[]).await?;
    let port = free_port()?;
    env.create_mesh(mesh_spec("0.1.0", port, json!({}))).await?;

    let mutating = Api::<MutatingWebhookConfiguration>::all(h.client.clone());
    let validating = Api::<ValidatingWebhookConfiguration>::all(h.client.clone());
    let configured = wait_until(
        "both webhook configurations with a caBundle",
        DEADLINE,
        || async {
            let m = mutating.get_opt(&injector(MESH)).await?;
            let v = validating.get_opt(VALIDATOR).await?;
            Ok(match (m, v) {
                (Some(m), Some(v))
                    if all_non_empty(&ca_bundles_of_mutating(&m))
                        && all_non_empty(&ca_bundles_of_validating(&v)) =>
                {
                    Some(m)
                }
                _ => None,
            })
        },
    )
    .await;
    let original = env.explain(configured)?;
    let url = format!("https://127.0.0.1:{port}");
    for webhook in original.webhooks.iter().flatten() {
        let points_at = webhook.client_config.url.as_deref().unwrap_or_default();
        ensure!(
            points_at.starts_with(&url),
            "webhook {} points at {points_at:?}, not at {url}",
            webhook.name
        );
    }

    env.serve(MESH, port).await?;
    let ns = labelled_namespace(&h, "op-install-app", "istio-injection=enabled").await?;
    let config_map = wait_config_map(&h, &ns.name).await;
    env.explain(config_map)?;
    let probe = wait_dry_run_pod(&h, &ns.name, "a dry-run pod injected", is_injected).await;
    env.explain(probe)?;
    create_deployment(&h, &ns.name, "web", 2).await?;
    let pods = wait_pods(&h, &ns.name, "web", 2).await?;
    ensure_injected(&pods, MESH, "0.1.0")?;

    let mesh = env.wait_ready().await?;
    ensure!(
        condition_is(&mesh, "Reconciled", "True"),
        "the Mesh is Ready but not Reconciled: {:?}",
        condition(&mesh, "Reconciled")
    );
    let table = h.kubectl(&["get", "mesh", MESH], None)?;
    let header = table.lines().next().unwrap_or_default();
    let row = table.lines().nth(1).unwrap_or_default();
    ensure!(
        header.contains("VERSION") && row.contains("0.1.0") && row.contains("True"),
        "`kubectl get mesh` does not show the version and readiness:\n{table}"
    );

    // A hand deletion is undone.
    let uid = original.uid().unwrap_or_default();
    mutating
        .delete(&injector(MESH), &DeleteParams::default())
        .await?;
    let restored = wait_until("the injector configuration restored", DEADLINE, || async {
        let m = mutating.get_opt(&injector(MESH)).await?;
        Ok(m.filter(|m| {
            m.uid().is_some_and(|u| u != uid) && all_non_empty(&ca_bundles_of_mutating(m))
        }))
    })
    .await;
    env.explain(restored)?;

    // Idle: once two reads 5 s apart agree, a further 10 s sees no write.
    let settled = wait_until(
        "the operator to settle",
        Duration::from_secs(90),
        || async {
            let (before, _) = env.writes().await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (after, _) = env.writes().await?;
            Ok((before == after).then_some(()))
        },
    )
    .await;
    env.explain(settled)?;
    let (before, lines_before) = env.writes().await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after, lines_after) = env.writes().await?;
    let idle = if before == after {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the idle operator wrote {} times in 10 s\nbefore:\n{lines_before}\nafter:\n{lines_after}",
            after.saturating_sub(before)
        ))
    };
    env.explain(idle)?;

    env.delete_mesh().await
}

/// A ProxyConfig changes its namespace's ConfigMap only; a malformed one is
/// reported in the Mesh status while other namespaces keep being
/// configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_config_changes_only_its_namespace() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-proxy", &[]).await?;
    let port = free_port()?;
    env.create_mesh(mesh_spec("0.1.0", port, json!({}))).await?;
    env.serve(MESH, port).await?;
    let a = labelled_namespace(&h, "op-proxy-a", "istio-injection=enabled").await?;
    let b = labelled_namespace(&h, "op-proxy-b", "istio-injection=enabled").await?;
    wait_config_map(&h, &a.name).await?;
    let b_before = wait_config_map(&h, &b.name).await?;
    env.wait_ready().await?;

    let a_configs = Api::<ProxyConfig>::namespaced(h.client.clone(), &a.name);
    a_configs
        .create(
            &PostParams::default(),
            &proxy_config("threads", json!({"concurrency": 3}))?,
        )
        .await
        .context("creating ProxyConfig threads")?;
    let expected = expected_settings(&h, &a.name, "threads").await?;
    ensure!(
        expected.contains("concurrency: 3"),
        "the expected settings do not say concurrency 3:\n{expected}"
    );
    let a_maps = Api::<ConfigMap>::namespaced(h.client.clone(), &a.name);
    let changed = wait_until("namespace a's settings to follow", DEADLINE, || async {
        let cm = a_maps.get(CONFIG_MAP_NAME).await?;
        Ok((settings_file(&cm) == expected).then_some(()))
    })
    .await;
    env.explain(changed)?;
    let b_maps = Api::<ConfigMap>::namespaced(h.client.clone(), &b.name);
    let b_now = b_maps.get(CONFIG_MAP_NAME).await?;
    ensure!(
        b_now.resource_version() == b_before.resource_version(),
        "namespace b's ConfigMap changed ({:?} → {:?}) for a ProxyConfig of namespace a",
        b_before.resource_version(),
        b_now.resource_version()
    );

    // A malformed ProxyConfig: reported, and only its namespace is held.
    Api::<ProxyConfig>::namespaced(h.client.clone(), &b.name)
        .create(
            &PostParams::default(),
            &proxy_config("broken", json!({"concurrency": -1}))?,
        )
        .await
        .context("creating ProxyConfig broken")?;
    let b_name = b.name.clone();
    let mesh = env
        .wait_mesh(
            "Reconciled=False naming the malformed ProxyConfig",
            DEADLINE,
            |mesh| {
                condition(mesh, "Reconciled").is_some_and(|c| {
                    c.status == "False"
                        && c.message.contains(&b_name)
                        && c.message.contains("spec.concurrency")
                        && c.message.contains("-1")
                })
            },
        )
        .await?;
    let message = condition(&mesh, "Reconciled")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("broken"),
        "the message does not name the ProxyConfig: {message}"
    );

    let c = labelled_namespace(&h, "op-proxy-c", "istio-injection=enabled").await?;
    env.explain(wait_config_map(&h, &c.name).await)?;
    a_configs
        .patch(
            "threads",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"concurrency": 4}})),
        )
        .await?;
    let changed = wait_until(
        "namespace a's settings to follow again",
        DEADLINE,
        || async {
            let cm = a_maps.get(CONFIG_MAP_NAME).await?;
            Ok(settings_file(&cm).contains("concurrency: 4").then_some(()))
        },
    )
    .await;
    env.explain(changed)?;
    let b_now = b_maps.get(CONFIG_MAP_NAME).await?;
    ensure!(
        b_now.resource_version() == b_before.resource_version(),
        "namespace b's ConfigMap changed while its ProxyConfig is malformed"
    );

    Api::<ProxyConfig>::namespaced(h.client.clone(), &b.name)
        .delete("broken", &DeleteParams::default())
        .await?;
    env.wait_mesh("Reconciled=True again", DEADLINE, |mesh| {
        condition_is(mesh, "Reconciled", "True")
    })
    .await?;

    env.delete_mesh().await
}

fn proxy_config(name: &str, spec: Value) -> anyhow::Result<ProxyConfig> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ProxyConfig",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// The settings file the operator's own rules give for `namespace` with its
/// ProxyConfig `name` as the cluster stores it.
async fn expected_settings(h: &Harness, namespace: &str, name: &str) -> anyhow::Result<String> {
    let config = Api::<ProxyConfig>::namespaced(h.client.clone(), namespace)
        .get(name)
        .await?;
    let revision = Api::<MeshRevision>::all(h.client.clone()).get(MESH).await?;
    let defaults = revision.spec.config.proxy.clone().unwrap_or_default();
    let settings = meshkeeper_operator::proxy::effective_settings(&defaults, &[], &[config])?;
    let data = meshkeeper_operator::proxy::config_map_data(namespace, MESH, &settings)?;
    data.get(SETTINGS_FILE)
        .cloned()
        .context("the operator renders no settings file")
}

/// In place: a version bump moves the webhook Deployment's image and the
/// MeshRevision; new pods get the new proxy version and the old ones are
/// reported outdated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_version_bump() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-inplace", &[]).await?;
    let port = free_port()?;
    env.create_mesh(mesh_spec("0.1.0", port, json!({}))).await?;
    env.serve(MESH, port).await?;
    let ns = labelled_namespace(&h, "op-inplace-app", "istio-injection=enabled").await?;
    env.explain(wait_dry_run_pod(&h, &ns.name, "a dry-run pod injected", is_injected).await)?;
    create_deployment(&h, &ns.name, "web", 2).await?;
    let old_pods = wait_pods(&h, &ns.name, "web", 2).await?;
    ensure_injected(&old_pods, MESH, "0.1.0")?;
    env.wait_ready().await?;

    env.meshes()
        .patch(
            MESH,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "0.2.0"}})),
        )
        .await?;
    let revisions = Api::<MeshRevision>::all(h.client.clone());
    let followed = wait_until("MeshRevision default at 0.2.0", DEADLINE, || async {
        let revision = revisions.get(MESH).await?;
        Ok((revision.spec.version == "0.2.0").then_some(()))
    })
    .await;
    env.explain(followed)?;
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), &env.namespace.name);
    let webhook_deployment = meshkeeper_operator::names::webhook_name(MESH);
    let image = wait_until("the webhook image at 0.2.0", DEADLINE, || async {
        let deployment = deployments.get(&webhook_deployment).await?;
        let image = deployment
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default();
        Ok(image.ends_with(":0.2.0").then_some(image))
    })
    .await;
    env.explain(image)?;

    let namespace = ns.name.clone();
    env.wait_mesh(
        "two outdated proxies reported in the namespace",
        DEADLINE,
        |mesh| {
            observed_current(mesh)
                && mesh
                    .status
                    .as_ref()
                    .and_then(|s| s.revisions.as_ref())
                    .and_then(|rs| rs.iter().find(|r| r.name == MESH))
                    .is_some_and(|r| {
                        // The total may count other namespaces' pods of a
                        // shared cluster; this namespace's count is exact.
                        r.version == "0.2.0"
                            && r.outdated_proxies >= 2
                            && r.outdated_proxies_by_namespace
                                .as_ref()
                                .and_then(|by| by.get(&namespace))
                                == Some(&2)
                    })
        },
    )
    .await?;

    let probe = wait_dry_run_pod(&h, &ns.name, "a dry-run pod at 0.2.0", |pod| {
        label(pod, PROXY_VERSION_LABEL) == Some("0.2.0")
    })
    .await;
    env.explain(probe)?;
    let old_names: BTreeSet<String> = old_pods.iter().map(|p| p.name_any()).collect();
    Api::<Deployment>::namespaced(h.client.clone(), &ns.name)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    let pods = wait_pods(&h, &ns.name, "web", 3).await?;
    let new_pods: Vec<Pod> = pods
        .into_iter()
        .filter(|p| !old_names.contains(&p.name_any()))
        .collect();
    ensure!(
        new_pods.len() == 1,
        "expected one new pod, got {}",
        new_pods.len()
    );
    ensure_injected(&new_pods, MESH, "0.2.0")?;

    // Rollback is the old version again: the Deployment and the proxies of
    // new pods follow, and the 0.1.0 pods are current once more.
    env.meshes()
        .patch(
            MESH,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "0.1.0"}})),
        )
        .await?;
    wait_webhook_image(&h, &env, "0.1.0").await?;
    let probe = wait_dry_run_pod(&h, &ns.name, "a dry-run pod at 0.1.0 again", |pod| {
        label(pod, PROXY_VERSION_LABEL) == Some("0.1.0")
    })
    .await;
    env.explain(probe)?;

    env.delete_mesh().await
}

/// Waits until the revision's webhook Deployment runs image tag `version`.
async fn wait_webhook_image(
    h: &Harness,
    env: &OperatorEnv<'_>,
    version: &str,
) -> anyhow::Result<()> {
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), &env.namespace.name);
    let name = meshkeeper_operator::names::webhook_name(MESH);
    let suffix = format!(":{version}");
    let rolled = wait_until("the webhook Deployment's image", DEADLINE, || async {
        let deployment = deployments.get(&name).await?;
        let image = deployment
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image);
        Ok(image.filter(|i| i.ends_with(&suffix)).map(|_| ()))
    })
    .await;
    env.explain(rolled)
}

/// Revision based: a canary revision serves beside the old one; a
/// relabelled namespace's new pods carry it; the old revision goes once its
/// pods are gone and its grace period has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_based_canary() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-canary", &[]).await?;
    let strategy = json!({"updateStrategy": {
        "type": "RevisionBased",
        "inactiveRevisionDeletionGracePeriodSeconds": 2
    }});
    let (old, new) = ("default-0-1-0", "default-0-2-0");
    let old_port = free_port()?;
    env.create_mesh(mesh_spec("0.1.0", old_port, strategy))
        .await?;
    env.serve(old, old_port).await?;
    let ns = labelled_namespace(&h, "op-canary-app", &format!("istio.io/rev={old}")).await?;
    env.explain(wait_dry_run_pod(&h, &ns.name, "a dry-run pod injected", is_injected).await)?;
    create_deployment(&h, &ns.name, "web", 2).await?;
    let old_pods = wait_pods(&h, &ns.name, "web", 2).await?;
    ensure_injected(&old_pods, old, "0.1.0")?;
    env.wait_ready().await?;

    // The canary: a new version served on a new port.
    let new_port = free_port()?;
    env.meshes()
        .patch(
            MESH,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "version": "0.2.0",
                "webhook": {"url": format!("https://127.0.0.1:{new_port}")}
            }})),
        )
        .await?;
    env.serve(new, new_port).await?;
    env.wait_mesh("two revisions serving", DEADLINE, |mesh| {
        let status = mesh.status.clone().unwrap_or_default();
        let ready: BTreeSet<String> = status
            .revisions
            .iter()
            .flatten()
            .filter(|r| r.ready)
            .map(|r| r.name.clone())
            .collect();
        observed_current(mesh)
            && condition_is(mesh, "Ready", "True")
            && status.active_revision.as_deref() == Some(new)
            && ready == BTreeSet::from([old.to_owned(), new.to_owned()])
    })
    .await?;
    let revisions = Api::<MeshRevision>::all(h.client.clone());
    let frozen = revisions.get(old).await?;
    let old_url = frozen
        .spec
        .config
        .webhook
        .as_ref()
        .and_then(|w| w.url.clone());
    ensure!(
        frozen.spec.version == "0.1.0"
            && old_url.as_deref() == Some(format!("https://127.0.0.1:{old_port}").as_str()),
        "the old revision did not keep its settings: version {}, url {old_url:?}",
        frozen.spec.version
    );

    h.kubectl(
        &[
            "label",
            "namespace",
            &ns.name,
            &format!("istio.io/rev={new}"),
            "--overwrite",
        ],
        None,
    )?;
    let probe = wait_dry_run_pod(&h, &ns.name, "a dry-run pod of the new revision", |pod| {
        is_injected(pod) && label(pod, INJECTED_REVISION_LABEL) == Some(new)
    })
    .await;
    env.explain(probe)?;
    // Only its pods keep the old revision now.
    let held = wait_until(
        "the old revision in use by its pods alone",
        DEADLINE,
        || async {
            let revision = revisions.get(old).await?;
            let status = revision.status.unwrap_or_default();
            let in_use = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "InUse" && c.status == "True");
            ensure!(
                in_use && status.in_use_namespaces.as_ref().is_none_or(Vec::is_empty),
                "MeshRevision {old} status: {status:?}"
            );
            Ok(Some(()))
        },
    )
    .await;
    env.explain(held)?;

    Api::<Pod>::namespaced(h.client.clone(), &ns.name)
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{INJECTED_REVISION_LABEL}={old}")),
        )
        .await?;
    let pods = Api::<Pod>::namespaced(h.client.clone(), &ns.name);
    let replaced = wait_until("two replacement pods", DEADLINE, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let fresh: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| label(p, INJECTED_REVISION_LABEL) != Some(old))
            .collect();
        Ok((fresh.len() >= 2).then_some(fresh))
    })
    .await;
    let replacements = env.explain(replaced)?;
    ensure_injected(&replacements, new, "0.2.0")?;

    let mutating = Api::<MutatingWebhookConfiguration>::all(h.client.clone());
    let pruned = wait_until("the old revision pruned", DEADLINE, || async {
        let gone = revisions.get_opt(old).await?.is_none()
            && mutating.get_opt(&injector(old)).await?.is_none();
        Ok(gone.then_some(()))
    })
    .await;
    env.explain(pruned)?;
    ensure!(
        revisions.get_opt(new).await?.is_some(),
        "the new revision went too"
    );
    env.wait_mesh("one revision in the status", DEADLINE, |mesh| {
        mesh.status.as_ref().and_then(|s| s.revision_count) == Some(1)
    })
    .await?;

    env.delete_mesh().await
}

/// With a 90 s CA and 60 s serving certificates, the CA rotates while pods
/// keep being created: every admission succeeds and injects, and the
/// rotation completes (the previous CA appears in the CA Secret, then goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_without_failed_admission() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    // 60 s is the shortest lifetime the operator's certificates module allows.
    let lifetimes = ["--ca-lifetime", "90s", "--serving-cert-lifetime", "60s"];
    let mut env = OperatorEnv::start(&h, "op-rotate", &lifetimes).await?;
    let port = free_port()?;
    env.create_mesh(mesh_spec("0.1.0", port, json!({}))).await?;
    env.serve(MESH, port).await?;
    let ns = labelled_namespace(&h, "op-rotate-app", "istio-injection=enabled").await?;
    env.explain(wait_dry_run_pod(&h, &ns.name, "a dry-run pod injected", is_injected).await)?;
    env.wait_ready().await?;

    let secrets = Api::<Secret>::namespaced(h.client.clone(), &env.namespace.name);
    let first_ca = ca_certificate(&secrets.get(CA_SECRET).await?);

    let stop = Arc::new(AtomicBool::new(false));
    let creator = tokio::spawn(create_pods_until(
        Api::<Pod>::namespaced(h.client.clone(), &ns.name),
        stop.clone(),
    ));

    let started = wait_until(
        "the CA rotation to start (previous-ca.crt)",
        Duration::from_secs(150),
        || async {
            let secret = secrets.get(CA_SECRET).await?;
            Ok(has_key(&secret, PREVIOUS_CA_CERT_KEY).then_some(()))
        },
    )
    .await;
    env.explain(started)?;
    let finished = wait_until(
        "the CA rotation to finish (previous-ca.crt gone)",
        Duration::from_secs(90),
        || async {
            let secret = secrets.get(CA_SECRET).await?;
            Ok(
                (!has_key(&secret, PREVIOUS_CA_CERT_KEY) && ca_certificate(&secret) != first_ca)
                    .then_some(secret),
            )
        },
    )
    .await;
    let ca_secret = env.explain(finished)?;

    // Admission keeps working after the rotation too.
    let created_by_then = creator_progress(&h, &ns.name).await?;
    let more = wait_until("more pods after the rotation", DEADLINE, || async {
        Ok((creator_progress(&h, &ns.name).await? >= created_by_then + 5).then_some(()))
    })
    .await;
    env.explain(more)?;
    stop.store(true, Ordering::Relaxed);
    let outcomes = creator.await?;

    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    env.explain(if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} of {} pod creations failed during the rotation, first: {}",
            failures.len(),
            outcomes.len(),
            failures[0]
        ))
    })?;
    let not_injected: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter(|(_, injected)| !injected)
        .map(|(name, _)| name)
        .collect();
    ensure!(
        not_injected.is_empty(),
        "pods admitted without the sidecar during the rotation: {not_injected:?}"
    );
    eprintln!(
        "{} pods created and injected across the CA rotation",
        outcomes.len()
    );

    ensure!(
        env.webhook_logged(MESH, "serving certificate reloaded"),
        "the webhook never reloaded its certificate"
    );
    // The serving certificate in use is from the new CA.
    let ca = CaState::from_secret_data(&ca_secret.data.unwrap_or_default())?;
    let serving = secrets
        .get(&format!("meshkeeper-webhook-{MESH}-tls"))
        .await?;
    let serving = ServingCert::from_secret_data(&serving.data.unwrap_or_default())?;
    ensure!(
        serving.cert().is_issued_by(ca.current.cert()),
        "the serving certificate is not issued by the current CA after the rotation"
    );

    env.delete_mesh().await
}

/// Creates a pod every 300 ms until `stop`; each outcome is the pod's name
/// and whether it was injected, or the error.
async fn create_pods_until(
    pods: Api<Pod>,
    stop: Arc<AtomicBool>,
) -> Vec<Result<(String, bool), String>> {
    let mut outcomes = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("rotating-{n}");
        n += 1;
        let mut pod = plain_pod(&name);
        pod.metadata.labels = Some([("app".to_owned(), "rotating".to_owned())].into());
        outcomes.push(match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => Ok((name, is_injected(&created))),
            Err(error) => Err(format!("pod {name}: {error}")),
        });
        // Pacing, not synchronisation: a steady stream of admissions.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    outcomes
}

/// How many pods the creator has stored so far.
async fn creator_progress(h: &Harness, namespace: &str) -> anyhow::Result<usize> {
    let list = Api::<Pod>::namespaced(h.client.clone(), namespace)
        .list(&ListParams::default().labels("app=rotating"))
        .await?;
    Ok(list.items.len())
}

fn has_key(secret: &Secret, key: &str) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
}

fn ca_certificate(secret: &Secret) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

/// Deleting the Mesh leaves no webhook configuration, revision, Secret or
/// proxy ConfigMap, and no stuck finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_deletion_removes_everything() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-delete", &[]).await?;
    let port = free_port()?;
    env.create_mesh(mesh_spec("0.1.0", port, json!({}))).await?;
    env.serve(MESH, port).await?;
    let ns = labelled_namespace(&h, "op-delete-app", "istio-injection=enabled").await?;
    wait_config_map(&h, &ns.name).await?;
    env.wait_ready().await?;

    let managed = ListParams::default().labels(MANAGED_BY_SELECTOR);
    let mutating = Api::<MutatingWebhookConfiguration>::all(h.client.clone());
    let validating = Api::<ValidatingWebhookConfiguration>::all(h.client.clone());
    let revisions = Api::<MeshRevision>::all(h.client.clone());
    let secrets = Api::<Secret>::namespaced(h.client.clone(), &env.namespace.name);
    ensure!(
        !mutating.list(&managed).await?.items.is_empty()
            && !validating.list(&managed).await?.items.is_empty()
            && !revisions
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
            && !secrets.list(&managed).await?.items.is_empty(),
        "the installation is incomplete before the deletion"
    );

    env.delete_mesh().await?;
    // Webhook configurations go before the finalizer is released.
    let left: Vec<String> = mutating
        .list(&managed)
        .await?
        .items
        .iter()
        .map(|m| m.name_any())
        .chain(
            validating
                .list(&managed)
                .await?
                .items
                .iter()
                .map(|v| v.name_any()),
        )
        .collect();
    ensure!(
        left.is_empty(),
        "webhook configurations outlived the Mesh: {left:?}"
    );
    let config_maps = Api::<ConfigMap>::namespaced(h.client.clone(), &ns.name);
    let cleaned = wait_until(
        "revisions, Secrets and ConfigMaps removed",
        DEADLINE,
        || async {
            let revisions_left = revisions.list(&ListParams::default()).await?.items.len();
            let secrets_left = secrets.list(&managed).await?.items.len();
            let config_map_left = config_maps.get_opt(CONFIG_MAP_NAME).await?.is_some();
            Ok((revisions_left == 0 && secrets_left == 0 && !config_map_left).then_some(()))
        },
    )
    .await;
    env.explain(cleaned)?;
    let meshes: Vec<Mesh> = env.meshes().list(&ListParams::default()).await?.items;
    ensure!(
        meshes.is_empty(),
        "a Mesh is left: {:?}",
        meshes.iter().map(|m| m.name_any()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Bad input: the CRD schema refuses an invalid version, an unknown
/// strategy and duplicate tag names; a second Mesh is told only one is
/// allowed; a tag naming no revision stops the pass with
/// `Reconciled=False` and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_meshes_are_refused_or_reported() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let env = OperatorEnv::start(&h, "op-bad", &[]).await?;

    for (spec, expected) in [
        (json!({"version": "banana"}), "spec.version"),
        (
            json!({"version": "0.1.0", "updateStrategy": {"type": "BlueGreen"}}),
            "spec.updateStrategy.type",
        ),
        (
            json!({"version": "0.1.0", "revisionTags": [{"name": "prod"}, {"name": "prod"}]}),
            "spec.revisionTags[1]",
        ),
        (
            json!({"version": "0.1.0", "webhook": {"certificate": {"source": "Secret"}}}),
            "secretName",
        ),
    ] {
        // Through kubectl, as a person would: the typed client would refuse
        // some of these before the API server sees them.
        let manifest = json!({
            "apiVersion": "meshkeeper.io/v1alpha1", "kind": "Mesh",
            "metadata": {"name": MESH}, "spec": spec,
        });
        let err = h
            .kubectl(&["create", "-f", "-"], Some(&manifest.to_string()))
            .err()
            .with_context(|| format!("the API server accepted an invalid Mesh: {spec}"))?;
        ensure!(
            format!("{err:#}").contains(expected),
            "refusing {spec} should name {expected}: {err:#}"
        );
    }

    let port = free_port()?;
    env.create_mesh(mesh_spec(
        "0.1.0",
        port,
        json!({"revisionTags": [{"name": "prod", "revision": "nowhere"}]}),
    ))
    .await?;
    let mesh = env
        .wait_mesh(
            "Reconciled=False for the unknown tag target",
            DEADLINE,
            |mesh| {
                condition(mesh, "Reconciled").is_some_and(|c| {
                    c.status == "False"
                        && c.reason == "InvalidRevisionTags"
                        && c.message.contains("nowhere")
                })
            },
        )
        .await?;
    let message = condition(&mesh, "Reconciled")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("spec.revisionTags[0]"),
        "the message names the field: {message}"
    );
    let revisions = Api::<MeshRevision>::all(h.client.clone());
    ensure!(
        revisions
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "a Mesh with a bad tag must not install anything"
    );

    // Fixed, it installs; a second Mesh is then told the first one rules.
    env.meshes()
        .patch(
            MESH,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"revisionTags": null}})),
        )
        .await?;
    env.wait_mesh("Reconciled=True once the tag is gone", DEADLINE, |mesh| {
        condition_is(mesh, "Reconciled", "True") && observed_current(mesh)
    })
    .await?;
    let second: Mesh = serde_json::from_value(json!({
        "apiVersion": "meshkeeper.io/v1alpha1", "kind": "Mesh",
        "metadata": {"name": "second"}, "spec": {"version": "0.1.0"}
    }))?;
    let meshes = env.meshes();
    meshes.create(&PostParams::default(), &second).await?;
    let reported = wait_until("the second Mesh's status", DEADLINE, || async {
        let second = meshes.get("second").await?;
        Ok(condition(&second, "Reconciled")
            .filter(|c| c.status == "False" && c.reason == "OnlyOneMeshAllowed")
            .map(|c| c.message.clone()))
    })
    .await;
    meshes.delete("second", &DeleteParams::default()).await?;
    let message = env.explain(reported)?;
    ensure!(
        message.contains("\"default\"") && message.contains("delete Mesh \"second\""),
        "the message says which Mesh rules and what to do: {message}"
    );
    let owned = Api::<MutatingWebhookConfiguration>::all(h.client.clone())
        .list(&ListParams::default().labels(MANAGED_BY_SELECTOR))
        .await?;
    ensure!(
        owned.items.iter().all(|m| !m.name_any().contains("second")),
        "the second Mesh installed something"
    );
    env.delete_mesh().await?;
    Ok(())
}

/// Certificates the operator does not issue: a Secret of your own (its CA
/// becomes the caBundle, the webhook mounts it) and cert-manager (no
/// caBundle written, the injection annotation instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_a_secret_or_cert_manager() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-own-cert", &[]).await?;
    let certs = support::Certificates::new()?;
    let read = |path: std::path::PathBuf| std::fs::read(path).map(k8s_openapi::ByteString);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "my-webhook-tls", "namespace": env.namespace.name},
        "type": "kubernetes.io/tls"
    }))?;
    let secret = Secret {
        data: Some(
            [
                ("tls.crt".to_owned(), read(certs.cert())?),
                ("tls.key".to_owned(), read(certs.key())?),
                (
                    "ca.crt".to_owned(),
                    k8s_openapi::ByteString(certs.ca_pem.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..secret
    };
    let secrets = Api::<Secret>::namespaced(h.client.clone(), &env.namespace.name);
    secrets.create(&PostParams::default(), &secret).await?;

    let port = free_port()?;
    env.create_mesh(mesh_spec(
        "0.1.0",
        port,
        json!({"webhook": {
            "url": format!("https://127.0.0.1:{port}"), "timeoutSeconds": 5, "replicas": 1,
            "certificate": {"source": "Secret", "secretName": "my-webhook-tls"}
        }}),
    ))
    .await?;
    env.serve_from(MESH, port, "my-webhook-tls").await?;
    env.wait_ready().await?;
    let mutating = Api::<MutatingWebhookConfiguration>::all(h.client.clone())
        .get(&injector(MESH))
        .await?;
    for entry in mutating.webhooks.iter().flatten() {
        let bundle = entry.client_config.ca_bundle.as_ref().map(|b| b.0.clone());
        ensure!(
            bundle.as_deref() == Some(certs.ca_pem.as_bytes()),
            "entry {} does not trust the Secret's CA",
            entry.name
        );
    }
    let deployment = Api::<Deployment>::namespaced(h.client.clone(), &env.namespace.name)
        .get(&meshkeeper_operator::names::webhook_name(MESH))
        .await?;
    let mounted: Vec<String> = deployment
        .spec
        .template
        .spec
        .map(|s| s.volumes.unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.secret.and_then(|s| s.secret_name))
        .collect();
    ensure!(
        mounted == ["my-webhook-tls"],
        "the webhook pods mount {mounted:?}"
    );
    ensure!(
        secrets.get_opt(CA_SECRET).await?.is_none(),
        "the operator made a CA although the certificate is the user's"
    );

    // cert-manager: the annotation names the Certificate, no caBundle.
    env.meshes()
        .patch(
            MESH,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"webhook": {"certificate": {
                "source": "CertManager", "secretName": "my-webhook-tls",
                "certManagerCertificate": format!("{}/my-webhook", env.namespace.name)
            }}}})),
        )
        .await?;
    let expected = format!("{}/my-webhook", env.namespace.name);
    let validating = Api::<ValidatingWebhookConfiguration>::all(h.client.clone());
    let annotated = wait_until(
        "cert-manager's annotation on both configurations",
        DEADLINE,
        || async {
            let mutating = Api::<MutatingWebhookConfiguration>::all(h.client.clone())
                .get(&injector(MESH))
                .await?;
            let validating = validating.get(VALIDATOR).await?;
            let inject_from = |annotations: &std::collections::BTreeMap<String, String>| {
                annotations.get("cert-manager.io/inject-ca-from").cloned()
            };
            let both = [
                inject_from(mutating.annotations()),
                inject_from(validating.annotations()),
            ];
            Ok(both
                .iter()
                .all(|a| a.as_deref() == Some(expected.as_str()))
                .then_some(()))
        },
    )
    .await;
    env.explain(annotated)?;
    env.delete_mesh().await?;
    Ok(())
}

/// `updateWorkloads`: after an in-place version bump the operator restarts
/// the Deployment whose pods run the old proxy (pod template annotation),
/// and the controller-manager's new pods are injected at the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_workloads_restarts_outdated_deployments() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let h = Harness::connect().await?;
    let mut env = OperatorEnv::start(&h, "op-restart", &[]).await?;
    let port = free_port()?;
    env.create_mesh(mesh_spec(
        "0.1.0",
        port,
        json!({"updateStrategy": {"type": "InPlace", "updateWorkloads": true}}),
    ))
    .await?;
    env.serve(MESH, port).await?;
    let ns = labelled_namespace(&h, "op-restart-app", "istio-injection=enabled").await?;
    env.wait_ready().await?;
    create_deployment(&h, &ns.name, "web", 1).await?;
    let old_pods = wait_pods(&h, &ns.name, "web", 1).await?;
    ensure_injected(&old_pods, MESH, "0.1.0")?;
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), &ns.name);
    let untouched = deployments.get("web").await?;
    ensure!(
        untouched
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .is_none_or(|a| !a.contains_key(meshkeeper_operator::names::RESTARTED_AT_ANNOTATION)),
        "a current workload was restarted"
    );

    env.meshes()
        .patch(
            MESH,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "0.2.0"}})),
        )
        .await?;
    let restarted = wait_until(
        "the Deployment restarted by the operator",
        DEADLINE,
        || async {
            let deployment = deployments.get("web").await?;
            Ok(deployment
                .spec
                .template
                .metadata
                .and_then(|m| m.annotations)
                .and_then(|a| {
                    a.get(meshkeeper_operator::names::RESTARTED_AT_ANNOTATION)
                        .cloned()
                }))
        },
    )
    .await;
    env.explain(restarted)?;
    let pods = Api::<Pod>::namespaced(h.client.clone(), &ns.name);
    let renewed = wait_until("a new pod injected at 0.2.0", DEADLINE, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        Ok(list
            .items
            .into_iter()
            .find(|p| label(p, PROXY_VERSION_LABEL) == Some("0.2.0")))
    })
    .await;
    let renewed = env.explain(renewed)?;
    ensure_injected(std::slice::from_ref(&renewed), MESH, "0.2.0")?;
    env.delete_mesh().await
}
