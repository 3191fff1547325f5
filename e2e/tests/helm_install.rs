//! The chart end to end, the way a user meets meshkeeper: `helm install`
//! into the local control plane, then the operator and the webhook it
//! deploys run as local processes with the arguments and environment their
//! Deployments give them (no kubelet runs here, so the pods stay Pending),
//! the webhook's certificate mirrored from its Secret into files the way
//! the kubelet mounts a Secret volume. The Mesh's `spec.webhook.url` points
//! the API server at that local webhook.
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

use std::net::SocketAddr;
use std::process::{Child, Command};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, ListParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_e2e::{DEADLINE, Harness, TestNamespace, repo_root, upstream, wait_until};
use meshkeeper_operator::names::{DEFAULT_REVISION, webhook_name};
use meshkeeper_operator::proxy::{CONFIG_MAP_NAME, SETTINGS_FILE};
use support::operator::{
    Log, MANAGED_BY_SELECTOR, MESH, SecretMirror, condition_is, free_port, http_get,
    observed_current, remove_operator_leftovers, spawn_logged,
};

/// How long `helm uninstall` may take: its pre-delete hook deletes the Mesh
/// and waits for the operator to take the installation down, twice.
const UNINSTALL_TIMEOUT: &str = "180s";

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

    let port = free_port()?;
    let mut release = Release::new(&h, h.namespace("helm").await?);
    // --take-ownership: the CRDs may already exist, applied by other
    // scenarios or kept by an earlier release's uninstall.
    release.helm(&[
        "install",
        "--take-ownership",
        "--set",
        &format!("mesh.webhook.url=https://127.0.0.1:{port}"),
    ])?;
    release.start_operator().await?;
    release.start_webhook(port).await?;
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

/// The release under test and the local processes standing in for its
/// pods. On drop the processes stop before anything else goes, then what
/// the operator made is removed (webhook configurations first, so no
/// `failurePolicy: Fail` webhook nobody serves is left), then the release
/// if the scenario did not uninstall it, and the namespace last (field
/// order).
struct Release<'h> {
    h: &'h Harness,
    name: String,
    /// Whether a release may exist (set before `helm install`, cleared by a
    /// successful `helm uninstall`).
    installed: bool,
    operator: Option<LocalProcess>,
    webhook: Option<LocalProcess>,
    mirror: Option<SecretMirror>,
    namespace: TestNamespace,
}

impl<'h> Release<'h> {
    fn new(h: &'h Harness, namespace: TestNamespace) -> Self {
        Self {
            h,
            name: format!("mk-helm-{}", std::process::id()),
            installed: false,
            operator: None,
            webhook: None,
            mirror: None,
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

    /// Starts the operator with the container args and environment of the
    /// chart's operator Deployment, its health port moved to loopback.
    async fn start_operator(&mut self) -> anyhow::Result<()> {
        let deployments =
            Api::<Deployment>::namespaced(self.h.client.clone(), &self.namespace.name);
        let selector = format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component=operator",
            self.name
        );
        let found = deployments
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let [deployment] = found.as_slice() else {
            bail!(
                "expected one operator Deployment labelled {selector}, found {}",
                found.len()
            );
        };
        let container = first_container(deployment)?;
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = without_flags(
            container.args.as_deref().unwrap_or_default(),
            &["--http-listen"],
        );
        args.extend(["--http-listen".to_owned(), http.to_string()]);
        let env = pod_env(container, &self.namespace.name, "helm-e2e-operator")?;
        let binary = tokio::task::spawn_blocking(meshkeeper_e2e::operator_binary).await??;
        self.operator = Some(LocalProcess::start(
            Command::new(binary)
                .env("KUBECONFIG", self.h.kubeconfig())
                .envs(env)
                .args(&args),
        )?);
        let ready = wait_until("the operator's /readyz", DEADLINE, || async {
            Ok(matches!(http_get(http, "/readyz").await, Ok((200, _))).then_some(()))
        })
        .await;
        self.explain(ready)
    }

    /// Waits for the webhook Deployment the operator creates, mirrors the
    /// Secret its pods mount into files and starts the webhook with the
    /// Deployment's args and environment: listening on `port` of loopback
    /// (the Mesh's webhook URL), the mounted paths pointing at the mirror.
    async fn start_webhook(&mut self, port: u16) -> anyhow::Result<()> {
        let deployments =
            Api::<Deployment>::namespaced(self.h.client.clone(), &self.namespace.name);
        let name = webhook_name(DEFAULT_REVISION);
        let deployment = wait_until(
            &format!("the operator's Deployment {name}"),
            DEADLINE,
            || async { Ok(deployments.get_opt(&name).await?) },
        )
        .await;
        let deployment = self.explain(deployment)?;
        let container = first_container(&deployment)?;
        let (secret, mount) = secret_mount(&deployment, container)?;
        let mirror = SecretMirror::start(self.h.client.clone(), &self.namespace.name, &secret)?;
        let files = mirror.wait_for(&["tls.crt", "tls.key"]).await;
        self.explain(files.with_context(|| format!("mirroring Secret {secret}")))?;

        let args = without_flags(container.args.as_deref().unwrap_or_default(), &["--listen"]);
        let mut args: Vec<String> = args
            .iter()
            .map(|arg| mounted_path(arg, &mount, &mirror))
            .collect();
        args.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
        let env = pod_env(container, &self.namespace.name, "helm-e2e-webhook")?;
        let binary = tokio::task::spawn_blocking(meshkeeper_e2e::webhook_binary).await??;
        self.webhook = Some(LocalProcess::start(
            Command::new(binary)
                .env("KUBECONFIG", self.h.kubeconfig())
                .envs(env)
                .args(&args),
        )?);
        self.mirror = Some(mirror);
        Ok(())
    }

    /// Waits until the Mesh reports Ready=True for its current spec (the
    /// operator probes the webhook URL over TLS for it).
    async fn wait_mesh_ready(&self) -> anyhow::Result<()> {
        let meshes = Api::<Mesh>::all(self.h.client.clone());
        let ready = wait_until("the Mesh Ready=True", DEADLINE, || async {
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

    /// Adds the processes' last log lines to an error.
    fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.with_context(|| {
            let mut text = String::new();
            for (name, process) in [("operator", &self.operator), ("webhook", &self.webhook)] {
                if let Some(process) = process {
                    text.push_str(&format!("{name} log:\n{}\n", process.log.tail(40)));
                }
            }
            text
        })
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // The operator first, or it would put back what is removed next.
        self.operator.take();
        self.webhook.take();
        remove_operator_leftovers(self.h);
        if self.installed {
            // No hooks: the pre-delete hook needs the operator just stopped.
            let mut args = self.helm_prefix();
            args.extend(
                [
                    "uninstall",
                    self.name.as_str(),
                    "--no-hooks",
                    "--wait",
                    "--timeout",
                    "60s",
                ]
                .map(str::to_owned),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = upstream("helm", &args);
        }
    }
}

/// A binary standing in for a pod, killed on drop.
struct LocalProcess {
    child: Child,
    log: Log,
}

impl LocalProcess {
    fn start(command: &mut Command) -> anyhow::Result<Self> {
        let command = command.env("RUST_BACKTRACE", "1");
        let (child, log) = spawn_logged(command)?;
        Ok(Self { child, log })
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_container(deployment: &Deployment) -> anyhow::Result<&Container> {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .with_context(|| {
            format!(
                "Deployment {} has no container",
                deployment.metadata.name.as_deref().unwrap_or_default()
            )
        })
}

/// `args` without the `flags`, whether written `--flag=value` or
/// `--flag value`.
fn without_flags(args: &[String], flags: &[&str]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let flag = arg.split_once('=').map_or(arg.as_str(), |(flag, _)| flag);
        if flags.contains(&flag) {
            skip_value = !arg.contains('=');
            continue;
        }
        kept.push(arg.clone());
    }
    kept
}

/// The environment a pod's container gets, with the downward API's pod
/// namespace and name filled in; any other `valueFrom` is refused, since
/// the local process could not be given it faithfully.
fn pod_env(
    container: &Container,
    namespace: &str,
    pod: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    container
        .env
        .iter()
        .flatten()
        .map(|var: &EnvVar| {
            let field = var
                .value_from
                .as_ref()
                .and_then(|from| from.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            let value = match (&var.value, field) {
                (Some(value), _) => value.clone(),
                (None, Some("metadata.namespace")) => namespace.to_owned(),
                (None, Some("metadata.name")) => pod.to_owned(),
                (None, None) if var.value_from.is_none() => String::new(),
                _ => bail!(
                    "env {} comes from {:?}, which a local process cannot get",
                    var.name,
                    var.value_from
                ),
            };
            Ok((var.name.clone(), value))
        })
        .collect()
}

/// The Secret the container mounts and where: its serving certificate.
fn secret_mount(
    deployment: &Deployment,
    container: &Container,
) -> anyhow::Result<(String, String)> {
    let volumes = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten();
    for volume in volumes {
        let Some(secret) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) else {
            continue;
        };
        if let Some(mount) = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.name)
        {
            return Ok((secret, mount.mount_path.clone()));
        }
    }
    bail!(
        "Deployment {} mounts no Secret",
        deployment.metadata.name.as_deref().unwrap_or_default()
    )
}

/// `arg` (or the value of `--flag=arg`) with a path under `mount` moved to
/// the mirrored file of the same key.
fn mounted_path(arg: &str, mount: &str, mirror: &SecretMirror) -> String {
    let prefix = format!("{}/", mount.trim_end_matches('/'));
    let (flag, value) = match arg.split_once('=') {
        Some((flag, value)) => (Some(flag), value),
        None => (None, arg),
    };
    let Some(key) = value.strip_prefix(&prefix) else {
        return arg.to_owned();
    };
    let path = mirror.file(key).to_string_lossy().into_owned();
    match flag {
        Some(flag) => format!("{flag}={path}"),
        None => path,
    }
}

#[test]
fn without_flags_drops_both_spellings_and_keeps_the_rest() {
    let args: Vec<String> = [
        "--http-listen=0.0.0.0:8080",
        "--a",
        "--listen",
        "x:1",
        "--resync=5m",
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(
        without_flags(&args, &["--http-listen", "--listen"]),
        ["--a", "--resync=5m"]
    );
}
