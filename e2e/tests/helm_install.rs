//! The chart end to end, the way a user meets meshkeeper: `helm install`
//! into the local cluster, where the operator and the webhook it deploys run
//! as pods on the test node and the API server reaches the webhook through
//! its Service.
//!
//! One scenario: install → Mesh Ready and an injected namespace gets its
//! proxy ConfigMap; `helm upgrade --reuse-values` (the first upgrade adopts
//! the Mesh a hook created, so it changes nothing), then one that changes
//! the proxy default → the ConfigMap follows; `helm uninstall` → the Mesh is
//! gone (its finalizer removed by the operator), no webhook configuration
//! is left, a user's VirtualService and the CRDs remain.
//!
//! Only one Mesh may exist in a cluster: this is its own test binary, and
//! it removes whatever the operator made (webhook configurations first,
//! a stuck Mesh finalizer) even when it fails.

mod support;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, ListParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_e2e::{DEADLINE, Harness, TestNamespace, repo_root, upstream, wait_until};
use meshkeeper_operator::proxy::{CONFIG_MAP_NAME, SETTINGS_FILE};
use support::operator::{
    MANAGED_BY_SELECTOR, MESH, condition_is, observed_current, remove_operator_leftovers,
};

/// How long `helm uninstall` may take: its pre-delete hook deletes the Mesh
/// and waits for the operator to take the installation down, twice.
const UNINSTALL_TIMEOUT: &str = "180s";

/// The operator's and the webhook's pods start before the Mesh is Ready.
const PODS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test]
async fn helm_install_upgrade_and_uninstall_with_the_charts_processes() -> anyhow::Result<()> {
    let h = Harness::connect().await?;
    remove_operator_leftovers(&h);
    let meshes = Api::<Mesh>::all(h.client.clone());
    let crds = Api::<CustomResourceDefinition>::all(h.client.clone());
    // On a fresh cluster the chart brings the Mesh kind: nothing to wait for.
    if crds.get_opt(Mesh::crd_name()).await?.is_some() {
        wait_until("no Mesh left from an earlier run", DEADLINE, || async {
            Ok(meshes.get_opt(MESH).await?.is_none().then_some(()))
        })
        .await?;
    }

    let mut release = Release::new(&h, h.namespace("helm").await?);
    // --take-ownership: the CRDs may already exist, applied by other
    // scenarios or kept by an earlier release's uninstall.
    release.helm(&["install", "--take-ownership"])?;
    release.wait_mesh_ready().await?;

    let app = h.namespace("helm-app").await?;
    h.kubectl(
        &["label", "namespace", &app.name, "istio-injection=enabled"],
        None,
    )?;
    release.wait_concurrency(&app.name, 2).await?;

    // The first upgrade adopts a Mesh the install hook created and may not
    // change it (templates/mesh.yaml); on a cluster that knew the Mesh kind
    // at install it is an ordinary upgrade. Either way it must succeed.
    release.helm(&["upgrade", "--reuse-values"])?;
    release.wait_mesh_ready().await?;
    release.helm(&[
        "upgrade",
        "--reuse-values",
        "--set",
        "mesh.proxy.concurrency=5",
    ])?;
    let mesh = meshes.get(MESH).await?;
    ensure!(
        mesh.spec.config.proxy.as_ref().and_then(|p| p.concurrency) == Some(5),
        "helm upgrade did not carry mesh.proxy.concurrency=5 into the Mesh: {:?}",
        mesh.spec.config.proxy
    );
    release.wait_concurrency(&app.name, 5).await?;
    release.wait_mesh_ready().await?;

    // A user's object, admitted by the running validating webhook.
    h.kubectl(
        &["apply", "-n", &app.name, "-f", "-"],
        Some(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {name: survivor}\n\
             spec: {hosts: [survivor], http: [{route: [{destination: {host: survivor}}]}]}\n",
        ),
    )?;

    release.uninstall()?;
    ensure!(
        meshes.get_opt(MESH).await?.is_none(),
        "the Mesh outlived helm uninstall (a finalizer nobody removes?): {:?}",
        meshes
            .get_opt(MESH)
            .await?
            .map(|m| (m.metadata.finalizers, m.metadata.deletion_timestamp))
    );
    let left = release.webhook_configurations().await?;
    ensure!(
        left.is_empty(),
        "webhook configurations outlived helm uninstall: {left:?}"
    );
    let kept = h.kubectl(
        &[
            "get",
            "virtualservice",
            "survivor",
            "-n",
            &app.name,
            "-o",
            "name",
        ],
        None,
    )?;
    ensure!(
        kept.trim() == "virtualservice.networking.istio.io/survivor",
        "the VirtualService did not survive helm uninstall: {kept:?}"
    );
    for crd in meshkeeper_crds::crd::all() {
        let name = crd.metadata.name.unwrap_or_default();
        ensure!(
            crds.get_opt(&name).await?.is_some(),
            "CRD {name} did not survive helm uninstall"
        );
    }
    Ok(())
}

/// The release under test. On drop it is uninstalled (its pre-delete hook
/// needs the operator's pods, which still run), then whatever the operator
/// made is removed (webhook configurations first, so no `failurePolicy:
/// Fail` webhook nobody serves is left), and the namespace last (field
/// order).
struct Release<'h> {
    h: &'h Harness,
    name: String,
    /// Whether a release may exist (set before `helm install`, cleared by a
    /// successful `helm uninstall`).
    installed: bool,
    namespace: TestNamespace,
}

impl<'h> Release<'h> {
    fn new(h: &'h Harness, namespace: TestNamespace) -> Self {
        Self {
            h,
            name: format!("mk-helm-{}", std::process::id()),
            installed: false,
            namespace,
        }
    }

    /// Runs `helm <verb> <release> <chart> <rest...>` (the chart only for
    /// install and upgrade).
    fn helm(&mut self, args: &[&str]) -> anyhow::Result<String> {
        let (verb, rest) = args.split_first().context("no helm verb")?;
        let chart = repo_root().join("charts/meshkeeper");
        let chart = chart.to_string_lossy();
        let mut all = self.helm_prefix();
        all.extend([verb.to_string(), self.name.clone()]);
        if matches!(*verb, "install" | "upgrade") {
            all.push(chart.into_owned());
        }
        all.extend(rest.iter().map(|a| a.to_string()));
        if *verb == "install" {
            self.installed = true;
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = upstream("helm", &all);
        self.explain(out)
    }

    fn helm_prefix(&self) -> Vec<String> {
        vec![
            "--kubeconfig".to_owned(),
            self.h.kubeconfig().to_string_lossy().into_owned(),
            "--namespace".to_owned(),
            self.namespace.name.clone(),
        ]
    }

    /// `helm uninstall --wait`: its pre-delete hook needs the operator, so
    /// the processes keep running.
    fn uninstall(&mut self) -> anyhow::Result<()> {
        self.helm(&["uninstall", "--wait", "--timeout", UNINSTALL_TIMEOUT])?;
        self.installed = false;
        Ok(())
    }

    /// Waits until the Mesh reports Ready=True for its current spec (the
    /// operator probes the webhook's Service over TLS for it).
    async fn wait_mesh_ready(&self) -> anyhow::Result<()> {
        let meshes = Api::<Mesh>::all(self.h.client.clone());
        let ready = wait_until("the Mesh Ready=True", PODS_DEADLINE, || async {
            let mesh = meshes.get(MESH).await?;
            Ok((condition_is(&mesh, "Ready", "True") && observed_current(&mesh)).then_some(()))
        })
        .await;
        self.explain(ready)
    }

    /// Waits until `namespace`'s proxy ConfigMap says `concurrency`.
    async fn wait_concurrency(&self, namespace: &str, concurrency: i64) -> anyhow::Result<()> {
        let maps = Api::<ConfigMap>::namespaced(self.h.client.clone(), namespace);
        let what =
            format!("ConfigMap {namespace}/{CONFIG_MAP_NAME} with concurrency {concurrency}");
        let seen = wait_until(&what, DEADLINE, || async {
            let map = maps
                .get_opt(CONFIG_MAP_NAME)
                .await?
                .context("no ConfigMap yet")?;
            let text = map
                .data
                .unwrap_or_default()
                .remove(SETTINGS_FILE)
                .with_context(|| format!("no {SETTINGS_FILE} in the ConfigMap"))?;
            let settings = meshkeeper_crds::parse::yaml_documents(&text)?;
            let found = settings.first().and_then(|s| s["concurrency"].as_i64());
            if found == Some(concurrency) {
                Ok(Some(()))
            } else {
                bail!("{SETTINGS_FILE} says concurrency {found:?}")
            }
        })
        .await;
        self.explain(seen)
    }

    /// Names of the webhook configurations the operator made.
    async fn webhook_configurations(&self) -> anyhow::Result<Vec<String>> {
        let params = ListParams::default().labels(MANAGED_BY_SELECTOR);
        let mutating = Api::<MutatingWebhookConfiguration>::all(self.h.client.clone())
            .list(&params)
            .await?;
        let validating = Api::<ValidatingWebhookConfiguration>::all(self.h.client.clone())
            .list(&params)
            .await?;
        Ok(mutating
            .items
            .iter()
            .map(|c| {
                format!(
                    "mutating/{}",
                    c.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .chain(validating.items.iter().map(|c| {
                format!(
                    "validating/{}",
                    c.metadata.name.as_deref().unwrap_or_default()
                )
            }))
            .collect())
    }

    /// Adds the last log lines of the release's pods to an error.
    fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.with_context(|| {
            let logs = meshkeeper_e2e::cluster_dir().join("node").join("logs");
            let prefix = format!("{}_", self.namespace.name);
            let mut text = String::new();
            for dir in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                if !dir.file_name().to_string_lossy().starts_with(&prefix) {
                    continue;
                }
                for file in std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let content = std::fs::read_to_string(file.path()).unwrap_or_default();
                    let lines: Vec<&str> = content.lines().collect();
                    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                    text.push_str(&format!("{}:\n{tail}\n", file.path().display()));
                }
            }
            text
        })
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = self.uninstall();
        }
        remove_operator_leftovers(self.h);
    }
}
