//! Shared by the end-to-end scenarios that run the real
//! `meshkeeper-webhook` binary on loopback: a test CA with a serving
//! certificate, and the process itself.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use meshkeeper_e2e::DEADLINE;
use serde_json::Value;

/// meshkeeper's own namespace as the scenarios' webhooks are told.
pub const OWN_NAMESPACE: &str = "meshkeeper-system";

/// A CA and a serving certificate for 127.0.0.1, as PEM files.
pub struct Certificates {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Certificates {
    pub fn new() -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "meshkeeper e2e webhook CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "meshkeeper-webhook");
        let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))?;

        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("tls.crt"), cert.pem())?;
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem())?;
        Ok(Self {
            dir,
            ca_pem: ca.pem(),
        })
    }

    pub fn cert(&self) -> std::path::PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> std::path::PathBuf {
        self.dir.path().join("tls.key")
    }
}

/// The webhook binary as a child process, killed on drop. Its JSON log is
/// kept to say what went wrong when a scenario fails.
pub struct WebhookProcess {
    child: Child,
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl WebhookProcess {
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        revision: &str,
        certs: &Certificates,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,meshkeeper_webhook=debug")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--revision", revision, "--namespace", OWN_NAMESPACE])
            .arg("--tls-cert-file")
            .arg(certs.cert())
            .arg("--tls-key-file")
            .arg(certs.key())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(address) = serving_address(&line) {
                        let _ = address_tx.send(address);
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push(line);
                    }
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut log) = log.lock() {
                        log.push(line);
                    }
                }
            });
        }
        let mut process = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match address_rx.recv_timeout(DEADLINE) {
            Ok(address) => process.address = address,
            Err(_) => bail!(
                "the webhook did not report its address within {DEADLINE:?}:\n{}",
                process.log_tail()
            ),
        }
        Ok(process)
    }

    pub fn log_tail(&self) -> String {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        let start = log.len().saturating_sub(30);
        log[start..].join("\n")
    }
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address from the `serving` line of the JSON log.
fn serving_address(line: &str) -> Option<SocketAddr> {
    let entry: Value = serde_json::from_str(line).ok()?;
    if entry["fields"]["message"] != "serving" {
        return None;
    }
    entry["fields"]["address"].as_str()?.parse().ok()
}

/// A MeshRevision served by its own real webhook process: the part every
/// webhook scenario starts the same way. Dropped in field order: the
/// process stops, then the MeshRevision goes, then the certificates.
pub struct ServedRevision {
    pub name: String,
    pub webhook: WebhookProcess,
    _object: meshkeeper_e2e::DeleteOnDrop,
    pub certs: Certificates,
}

impl ServedRevision {
    /// A revision named `<prefix>-<pid>-<n>`, unique per run and scenario.
    pub async fn start(h: &meshkeeper_e2e::Harness, prefix: &str) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        h.install_crds().await?;
        let binary = tokio::task::spawn_blocking(meshkeeper_e2e::webhook_binary).await??;
        let certs = Certificates::new()?;
        let object: meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "meshkeeper.io/v1alpha1",
                "kind": "MeshRevision",
                "metadata": {"name": name, "labels": {"meshkeeper.io/e2e": "true"}},
                "spec": {"mesh": "default", "version": "0.1.0"}
            }))?;
        kube::Api::<meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision>::all(
            h.client.clone(),
        )
        .create(&kube::api::PostParams::default(), &object)
        .await
        .with_context(|| format!("creating MeshRevision {name}"))?;
        let object = h.delete_on_drop("meshrevisions.meshkeeper.io", &name);
        let webhook = WebhookProcess::start(&binary, h.kubeconfig(), &name, &certs)?;
        Ok(Self {
            name,
            webhook,
            _object: object,
            certs,
        })
    }

    /// The webhook's base URL for a configuration's client config.
    pub fn url(&self) -> String {
        format!("https://{}", self.webhook.address)
    }
}

/// The operator as a local process, and the webhooks it installs (tests/operator.rs).
pub mod operator;
