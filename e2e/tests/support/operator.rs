//! The real `meshkeeper-operator` as a local process against the test
//! cluster, with the webhooks it installs served by local
//! `meshkeeper-webhook` processes (the Mesh's `spec.webhook.url` points the
//! API server at them). The serving certificates come from the Secrets the
//! operator writes, mirrored into files the way the kubelet mounts a Secret
//! volume, so the webhook sees renewals and CA rotations as it would in a
//! pod.
//!
//! Only one Mesh may exist in a cluster, so an [`OperatorEnv`] assumes it
//! has the cluster to itself; on drop it stops the operator and removes
//! everything the operator made that could get in other tests' way (above
//! all the `failurePolicy: Fail` webhook configurations).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, PostParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_e2e::{DEADLINE, Harness, TestNamespace, wait_until};
use serde_json::{Value, json};

use super::WebhookProcess;

/// The name of the scenarios' Mesh (its in-place revision has the same name).
pub const MESH: &str = "default";
/// The label on everything the operator creates.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=meshkeeper-operator";
pub const INIT: &str = meshkeeper_webhook::inject::names::INIT_CONTAINER;
pub const PROXY: &str = meshkeeper_webhook::inject::names::PROXY_CONTAINER;

/// A loopback port nobody listens on right now (the operator and the
/// webhooks need theirs before they start: it goes into their flags and
/// into the Mesh).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Lines a child process printed, kept to explain a failure.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn capture(&self, child: &mut Child, on_line: impl Fn(&str) + Send + Clone + 'static) {
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let log = self.clone();
            let on_line = on_line.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    on_line(&line);
                    if let Ok(mut lines) = log.0.lock() {
                        lines.push(line);
                    }
                }
            });
        }
    }

    pub fn tail(&self, lines: usize) -> String {
        let log = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        log[log.len().saturating_sub(lines)..].join("\n")
    }
}

/// Copies the data of a Secret into files every 500 ms, each file replaced
/// atomically (written aside, then renamed), as the kubelet refreshes a
/// Secret volume.
pub struct SecretMirror {
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl SecretMirror {
    pub fn start(client: kube::Client, namespace: &str, secret: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let api = Api::<Secret>::namespaced(client, namespace);
        let secret = secret.to_owned();
        let target = dir.path().to_owned();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(Some(found)) = api.get_opt(&secret).await {
                    for (key, value) in found.data.unwrap_or_default() {
                        let _ = replace_if_changed(&target, &key, &value.0);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok(Self { task, dir })
    }

    pub fn file(&self, key: &str) -> PathBuf {
        self.dir.path().join(key)
    }

    /// Waits until the Secret's `keys` are all in files.
    pub async fn wait_for(&self, keys: &[&str]) -> anyhow::Result<()> {
        wait_until("the Secret's files", DEADLINE, || async {
            Ok(keys.iter().all(|k| self.file(k).is_file()).then_some(()))
        })
        .await
    }
}

impl Drop for SecretMirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn replace_if_changed(dir: &Path, key: &str, value: &[u8]) -> std::io::Result<()> {
    let path = dir.join(key);
    if std::fs::read(&path).is_ok_and(|old| old == value) {
        return Ok(());
    }
    let aside = dir.join(format!(".{key}.new"));
    std::fs::write(&aside, value)?;
    std::fs::rename(&aside, &path)
}

/// A revision's webhook served on the port its Mesh settings name, with
/// the operator's certificate for it. Dropped in field order: the process
/// stops before its files go.
pub struct ServedWebhook {
    pub revision: String,
    pub process: WebhookProcess,
    pub mirror: SecretMirror,
}

impl ServedWebhook {
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// The operator process, killed on drop.
struct OperatorProcess {
    child: Child,
    log: Log,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scenario's operator: its namespace, its process, the webhooks the
/// scenario serves. Only one may exist at a time (one Mesh per cluster).
pub struct OperatorEnv<'h> {
    h: &'h Harness,
    operator: Option<OperatorProcess>,
    pub http: SocketAddr,
    webhooks: Vec<ServedWebhook>,
    /// The operator's namespace: dropped last, after the cleanup in `drop`.
    pub namespace: TestNamespace,
}

impl<'h> OperatorEnv<'h> {
    /// Installs the CRDs, removes a Mesh a crashed run may have left, and
    /// starts the operator in a fresh namespace with `extra_args`.
    pub async fn start(
        h: &'h Harness,
        scenario: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        h.install_crds().await?;
        remove_leftovers(h);
        let meshes = Api::<Mesh>::all(h.client.clone());
        wait_until("no Mesh left from an earlier run", DEADLINE, || async {
            Ok(meshes
                .list(&Default::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        })
        .await?;

        let binary = tokio::task::spawn_blocking(meshkeeper_e2e::operator_binary).await??;
        let namespace = h.namespace(scenario).await?;
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut child = Command::new(&binary)
            .env("KUBECONFIG", h.kubeconfig())
            .env("RUST_LOG", "info,meshkeeper_operator=debug")
            .args(["--namespace", &namespace.name, "--no-leader-election"])
            .args(["--http-listen", &http.to_string(), "--resync", "5m"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let log = Log::default();
        log.capture(&mut child, |_| {});
        let env = Self {
            h,
            operator: Some(OperatorProcess { child, log }),
            http,
            webhooks: Vec::new(),
            namespace,
        };
        let ready = wait_until("the operator's /readyz", DEADLINE, || async {
            Ok(matches!(http_get(http, "/readyz").await, Ok((200, _))).then_some(()))
        })
        .await;
        env.explain(ready)?;
        Ok(env)
    }

    /// Adds the operator's and the webhooks' last log lines to an error.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.with_context(|| {
            let mut text = String::new();
            if let Some(operator) = &self.operator {
                text.push_str(&format!("operator log:\n{}\n", operator.log.tail(40)));
            }
            for webhook in &self.webhooks {
                text.push_str(&format!(
                    "webhook {} log:\n{}\n",
                    webhook.revision,
                    webhook.log_tail()
                ));
            }
            text
        })
    }

    pub fn meshes(&self) -> Api<Mesh> {
        Api::all(self.h.client.clone())
    }

    /// Creates the Mesh `default` with `spec`.
    pub async fn create_mesh(&self, spec: Value) -> anyhow::Result<Mesh> {
        let mesh: Mesh = serde_json::from_value(json!({
            "apiVersion": "meshkeeper.io/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": MESH},
            "spec": spec,
        }))?;
        self.meshes()
            .create(&PostParams::default(), &mesh)
            .await
            .context("creating the Mesh")
    }

    /// Waits until `check` accepts the Mesh.
    pub async fn wait_mesh(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Mesh) -> bool,
    ) -> anyhow::Result<Mesh> {
        let meshes = self.meshes();
        let result = wait_until(what, timeout, || async {
            let mesh = meshes.get(MESH).await?;
            Ok(check(&mesh).then_some(mesh))
        })
        .await;
        self.explain(result)
    }

    /// Waits until the Mesh reports `Ready=True` for its current generation.
    pub async fn wait_ready(&self) -> anyhow::Result<Mesh> {
        self.wait_mesh("the Mesh Ready=True", DEADLINE, |mesh| {
            condition_is(mesh, "Ready", "True") && observed_current(mesh)
        })
        .await
    }

    /// Serves `revision` on `port`: waits for the operator's serving Secret,
    /// mirrors it into files and starts a webhook process with them.
    pub async fn serve(&mut self, revision: &str, port: u16) -> anyhow::Result<()> {
        self.serve_from(
            revision,
            port,
            &format!("meshkeeper-webhook-{revision}-tls"),
        )
        .await
    }

    /// [`Self::serve`] with the certificate from Secret `secret` (in the
    /// operator's namespace), as the webhook Deployment would mount it.
    pub async fn serve_from(
        &mut self,
        revision: &str,
        port: u16,
        secret: &str,
    ) -> anyhow::Result<()> {
        let mirror = SecretMirror::start(self.h.client.clone(), &self.namespace.name, secret)?;
        let files = mirror.wait_for(&["tls.crt", "tls.key"]).await;
        self.explain(files.with_context(|| format!("waiting for Secret {secret}")))?;
        let binary = tokio::task::spawn_blocking(meshkeeper_e2e::webhook_binary).await??;
        let process = start_webhook(
            &binary,
            self.h.kubeconfig(),
            SocketAddr::from(([127, 0, 0, 1], port)),
            revision,
            &self.namespace.name,
            &mirror,
        )?;
        self.webhooks.push(ServedWebhook {
            revision: revision.to_owned(),
            process,
            mirror,
        });
        Ok(())
    }

    /// Whether the webhook serving `revision` logged a line containing `text`.
    pub fn webhook_logged(&self, revision: &str, text: &str) -> bool {
        self.webhooks
            .iter()
            .filter(|w| w.revision == revision)
            .any(|w| {
                w.process
                    .log
                    .lock()
                    .is_ok_and(|lines| lines.iter().any(|l| l.contains(text)))
            })
    }

    /// The sum of `meshkeeper_operator_writes_total` over every kind and
    /// verb, and the lines it was read from.
    pub async fn writes(&self) -> anyhow::Result<(u64, String)> {
        let (status, body) = http_get(self.http, "/metrics").await?;
        ensure!(status == 200, "/metrics answered {status}: {body}");
        let mut total = 0;
        let mut lines = Vec::new();
        for line in body.lines() {
            if !line.starts_with("meshkeeper_operator_writes_total{") {
                continue;
            }
            let value = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| format!("unreadable metric line {line:?}"))?;
            // Counters are whole numbers.
            total += value as u64;
            lines.push(line.to_owned());
        }
        Ok((total, lines.join("\n")))
    }

    /// Deletes the Mesh and waits until it is gone (the operator's
    /// finalizer removed).
    pub async fn delete_mesh(&self) -> anyhow::Result<()> {
        let meshes = self.meshes();
        meshes
            .delete(MESH, &DeleteParams::default())
            .await
            .context("deleting the Mesh")?;
        let gone = wait_until("the Mesh to disappear", DEADLINE, || async {
            Ok(meshes.get_opt(MESH).await?.is_none().then_some(()))
        })
        .await;
        self.explain(gone)
    }
}

impl Drop for OperatorEnv<'_> {
    fn drop(&mut self) {
        // The operator first, or it would put back what is removed next.
        self.operator.take();
        remove_leftovers(self.h);
        // Then the webhooks (fields), and the namespace last.
        self.webhooks.clear();
    }
}

/// Whatever the operator made cluster-wide, best effort: webhook
/// configurations first (a `Fail` webhook nobody serves blocks other
/// tests), then the Mesh with its finalizer removed (nobody runs it any
/// more), the revisions and their RBAC.
fn remove_leftovers(h: &Harness) {
    let _ = h.kubectl(
        &[
            "delete",
            "mutatingwebhookconfigurations,validatingwebhookconfigurations",
            "-l",
            MANAGED_BY_SELECTOR,
            "--ignore-not-found",
            "--wait=false",
        ],
        None,
    );
    if let Ok(names) = h.kubectl(&["get", "meshes", "-o", "name"], None) {
        for name in names.lines().filter(|n| !n.trim().is_empty()) {
            let _ = h.kubectl(
                &[
                    "patch",
                    name.trim(),
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
                None,
            );
            let _ = h.kubectl(
                &["delete", name.trim(), "--ignore-not-found", "--wait=false"],
                None,
            );
        }
    }
    let _ = h.kubectl(
        &[
            "delete",
            "meshrevisions,clusterroles,clusterrolebindings",
            "-l",
            MANAGED_BY_SELECTOR,
            "--ignore-not-found",
            "--wait=false",
        ],
        None,
    );
}

/// Starts the webhook binary on `listen` with the mirrored certificate.
fn start_webhook(
    binary: &Path,
    kubeconfig: &Path,
    listen: SocketAddr,
    revision: &str,
    own_namespace: &str,
    mirror: &SecretMirror,
) -> anyhow::Result<WebhookProcess> {
    let mut child = Command::new(binary)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,meshkeeper_webhook=debug")
        .args(["--listen", &listen.to_string(), "--log-format", "json"])
        .args(["--revision", revision, "--namespace", own_namespace])
        .args(["--cert-reload-interval", "500ms"])
        .arg("--tls-cert-file")
        .arg(mirror.file("tls.crt"))
        .arg("--tls-key-file")
        .arg(mirror.file("tls.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let log = Log::default();
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let address_tx = Arc::new(Mutex::new(address_tx));
    log.capture(&mut child, move |line| {
        if let Some(address) = super::serving_address(line)
            && let Ok(tx) = address_tx.lock()
        {
            let _ = tx.send(address);
        }
    });
    let process = WebhookProcess {
        child,
        address: listen,
        log: log.0.clone(),
    };
    match address_rx.recv_timeout(DEADLINE) {
        Ok(address) if address == listen => Ok(process),
        Ok(address) => bail!("the webhook serves on {address}, not on {listen}"),
        Err(_) => bail!(
            "the webhook did not report serving on {listen} within {DEADLINE:?}:\n{}",
            process.log_tail()
        ),
    }
}

/// A plain HTTP GET (the operator's health and metrics endpoint):
/// status code and body.
pub async fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("no HTTP response from {address}: {response:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        Ok((status, body.to_owned()))
    })
    .await?
}

pub fn condition<'a>(mesh: &'a Mesh, kind: &str) -> Option<&'a Condition> {
    mesh.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

pub fn condition_is(mesh: &Mesh, kind: &str, status: &str) -> bool {
    condition(mesh, kind).is_some_and(|c| c.status == status)
}

/// Whether the status describes the Mesh's current spec.
pub fn observed_current(mesh: &Mesh) -> bool {
    mesh.status.as_ref().and_then(|s| s.observed_generation) == mesh.metadata.generation
}

/// The container and init container names of a pod.
pub fn container_names(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

pub fn is_injected(pod: &Pod) -> bool {
    let names = container_names(pod);
    names.iter().any(|n| n == INIT) && names.iter().any(|n| n == PROXY)
}

pub fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// A one-container pod.
pub fn plain_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "probe"}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap_or_default()
}

/// Waits until a server-side dry-run pod in `namespace` comes back from
/// admission as `accept` wants it (the API server learns of webhook
/// configurations and namespace labels asynchronously).
pub async fn wait_dry_run_pod(
    h: &Harness,
    namespace: &str,
    what: &str,
    accept: impl Fn(&Pod) -> bool,
) -> anyhow::Result<Pod> {
    let pods = Api::<Pod>::namespaced(h.client.clone(), namespace);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_until(what, DEADLINE, || async {
        let pod = pods.create(&params, &plain_pod("probe")).await?;
        Ok(accept(&pod).then_some(pod))
    })
    .await
}

/// Starts `command` with its stdout and stderr captured into a [`Log`],
/// for scenarios that start the binaries with arguments of their own
/// choosing; the caller stops the child.
pub fn spawn_logged(command: &mut Command) -> anyhow::Result<(Child, Log)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let log = Log::default();
    log.capture(&mut child, |_| {});
    Ok((child, log))
}

/// What [`OperatorEnv`] removes on drop, for scenarios that run the
/// operator another way: webhook configurations first, then the Mesh with
/// its finalizer stripped, the revisions and their RBAC.
pub fn remove_operator_leftovers(h: &Harness) {
    remove_leftovers(h);
}
