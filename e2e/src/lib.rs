//! Harness for end-to-end scenarios against a real Kubernetes control plane
//! (`e2e/bin/cluster up`, or any cluster named by `MESHKEEPER_E2E_KUBECONFIG`).
//!
//! Each scenario gets its own namespace, deleted when the scenario ends, and
//! waits for conditions with a deadline ([`wait_until`]), never a fixed sleep.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long a scenario waits for the cluster to reach a state.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Connection to the cluster under test and the upstream client binaries.
pub struct Harness {
    pub client: kube::Client,
    kubeconfig: PathBuf,
    bin: PathBuf,
}

impl Harness {
    /// Connects to `MESHKEEPER_E2E_KUBECONFIG`, or to the local control plane
    /// that `e2e/bin/cluster up` started.
    pub async fn connect() -> anyhow::Result<Self> {
        let kubeconfig = match std::env::var_os("MESHKEEPER_E2E_KUBECONFIG") {
            Some(p) => PathBuf::from(p),
            None => cluster_dir().join("kubeconfig"),
        };
        if !kubeconfig.is_file() {
            bail!(
                "no cluster to test against: {} does not exist. Start the local control plane \
                 with `e2e/bin/cluster up`, or set MESHKEEPER_E2E_KUBECONFIG to a kubeconfig",
                kubeconfig.display()
            );
        }
        let config = Kubeconfig::read_from(&kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        Ok(Self {
            client,
            kubeconfig,
            bin: upstream_bin()?,
        })
    }

    /// The kubeconfig of the cluster under test (for processes the tests
    /// start, such as the webhook).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Deletes `resource`/`name` (cluster-scoped, e.g. a webhook
    /// configuration) when the guard drops.
    pub fn delete_on_drop(&self, resource: &str, name: &str) -> DeleteOnDrop {
        DeleteOnDrop {
            resource: resource.to_owned(),
            name: name.to_owned(),
            kubectl: self.bin.join("kubectl"),
            kubeconfig: self.kubeconfig.clone(),
        }
    }

    /// Runs the real kubectl against the cluster; fails with its stderr.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        run(
            Command::new(self.bin.join("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    /// Runs kubectl like [`Harness::kubectl`] and also returns its stderr,
    /// where kubectl prints the API server's warnings.
    pub fn kubectl_with_stderr(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        run_capturing(
            Command::new(self.bin.join("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    /// A fresh namespace for one scenario, deleted when the guard drops.
    pub async fn namespace(&self, scenario: &str) -> anyhow::Result<TestNamespace> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("e2e-{scenario}-{}-{n}", std::process::id());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"meshkeeper.io/e2e": "true"}}
        }))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNamespace {
            name,
            kubectl: self.bin.join("kubectl"),
            kubeconfig: self.kubeconfig.clone(),
        })
    }

    /// Applies every CRD in `crds/generated/` (server-side, idempotent) and
    /// waits until each is Established. Returns the CRD names.
    pub async fn install_crds(&self) -> anyhow::Result<Vec<String>> {
        let dir = repo_root().join("crds/generated");
        self.kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=meshkeeper-e2e",
                "-f",
                &dir.to_string_lossy(),
            ],
            None,
        )?;
        let names: Vec<String> = meshkeeper_crds::crd::all()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        for name in &names {
            wait_until(&format!("CRD {name} Established"), DEADLINE, || async {
                let crd = api.get(name).await?;
                Ok(crd_established(&crd).then_some(()))
            })
            .await?;
        }
        Ok(names)
    }
}

/// Whether the API server reports the CRD's names accepted and served.
pub fn crd_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// A namespace owned by one scenario.
pub struct TestNamespace {
    pub name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Best effort and non-blocking: the namespace controller finishes the job.
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A cluster-scoped object owned by one scenario.
pub struct DeleteOnDrop {
    resource: String,
    name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        // Best effort and non-blocking, as for namespaces.
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                &self.resource,
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `check` until it yields `Some`, failing after `timeout` with the
/// last error seen, so a timeout says what was still wrong.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("condition not met yet"),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `meshkeeper-webhook` binary, built from this workspace on first use
/// (once per test process) so a scenario always runs the current code.
pub fn webhook_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built_once(&BUILT, "meshkeeper-webhook", "meshkeeper-webhook")
}

/// The `meshkeeper-operator` binary, built from this workspace on first use
/// like [`webhook_binary`].
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built_once(&BUILT, "meshkeeper-operator", "meshkeeper-operator")
}

/// The `meshctl` binary, built from this workspace on first use like
/// [`webhook_binary`].
pub fn meshctl_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built_once(&BUILT, "meshctl", "meshctl")
}

/// Builds `bin` of `package` the first time `cell` is asked, then answers
/// from it (the error too, so a broken build is not retried per scenario).
fn built_once(
    cell: &OnceLock<Result<PathBuf, String>>,
    package: &str,
    bin: &str,
) -> anyhow::Result<PathBuf> {
    cell.get_or_init(|| build_binary(package, bin).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs `cargo build -p <package> --bin <bin>` and returns the executable
/// cargo reports (wherever the target folder is).
fn build_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run(
        Command::new(cargo).current_dir(repo_root()).args([
            "build",
            "--message-format=json",
            "-p",
            package,
            "--bin",
            bin,
        ]),
        None,
    )?;
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no executable named {bin}"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    meshkeeper_testkit::repo_root()
}

/// Where `e2e/bin/cluster` keeps its state (same default as the script).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("MESHKEEPER_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("meshkeeper-cluster"))
}

/// Runs one of the upstream binaries (`helm`, `kubectl`, ...) without a
/// cluster; fails with its stderr.
pub fn upstream(binary: &str, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new(upstream_bin()?.join(binary)).args(args), None)
}

/// The folder of the upstream binaries (built on first use, then cached).
fn upstream_bin() -> anyhow::Result<PathBuf> {
    let script = repo_root().join("e2e/bin/build-upstream");
    let out = run(&mut Command::new(script), None)?;
    let dir = out.lines().last().unwrap_or_default().trim();
    if !Path::new(dir).join("kubectl").exists() {
        bail!("build-upstream printed no folder holding kubectl (got {dir:?})");
    }
    Ok(PathBuf::from(dir))
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> anyhow::Result<String> {
    run_capturing(cmd, stdin).map(|(stdout, _)| stdout)
}

/// Runs `cmd`; on success its stdout and stderr, else an error with stderr.
fn run_capturing(cmd: &mut Command, stdin: Option<&str>) -> anyhow::Result<(String, String)> {
    use std::io::Write;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// JSON equality with numbers compared by value: Go's JSON (the API server,
/// Helm) writes `100.0` as `100` and `0` where Rust wrote `0.0`.
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Running pods on the test node (`meshkeeper-node`, which `e2e/bin/cluster
/// up` starts): commands inside their containers and waits for readiness.
impl Harness {
    /// Runs `command` inside `container` of pod `namespace/pod`, the way
    /// `kubectl exec` would (its network, mounts and user); returns stdout.
    pub fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        command: &[&str],
    ) -> anyhow::Result<String> {
        let dir = cluster_dir().join("node");
        run(
            Command::new(dir.join("images").join("meshkeeper-node"))
                .arg("exec")
                .arg("--state-dir")
                .arg(&dir)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg(format!("{namespace}/{pod}"))
                .arg(container)
                .arg("--")
                .args(command),
            None,
        )
    }

    /// Waits until `count` pods matching `selector` in `namespace` are Ready;
    /// returns them.
    pub async fn ready_pods(
        &self,
        namespace: &str,
        selector: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<k8s_openapi::api::core::v1::Pod>> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        let lp = kube::api::ListParams::default().labels(selector);
        let what = format!("{count} Ready pod(s) {selector} in {namespace}");
        let result = wait_until(&what, timeout, || async {
            let pods: Vec<_> = api
                .list(&lp)
                .await?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
                .collect();
            Ok((pods.len() == count).then_some(pods))
        })
        .await;
        if result.is_err() {
            // Say why: the pods' states and the node's events about them.
            let pods = self
                .kubectl(&["get", "pods", "-n", namespace, "-o", "wide"], None)
                .unwrap_or_default();
            let events = self
                .kubectl(&["get", "events", "-n", namespace], None)
                .unwrap_or_default();
            return result.with_context(|| format!("pods:\n{pods}\nevents:\n{events}"));
        }
        result
    }
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
