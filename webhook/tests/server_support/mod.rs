//! Shared by the `server_*` tests: a test CA, a server started in-process
//! with hand-fed state, and a client that talks to it over real TLS.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_webhook::server::{self, RunningServer, ServerOptions, State, StateOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long a test waits for the server to reach a state.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A throwaway certificate authority issuing serving certificates for
/// `localhost` and `127.0.0.1`.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
}

/// One serving certificate and its key, PEM.
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "meshkeeper test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self {
            params,
            key,
            cert_pem: cert.pem(),
        }
    }

    pub fn issue(&self) -> ServingCert {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }
}

/// Writes the pair where the server reads it (the way a Secret volume
/// update lands: new files renamed over the old ones).
pub fn write_cert(dir: &Path, cert: &ServingCert) -> (PathBuf, PathBuf) {
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    for (path, contents) in [(&key_path, &cert.key_pem), (&cert_path, &cert.cert_pem)] {
        let staged = path.with_extension("new");
        std::fs::write(&staged, contents).unwrap();
        std::fs::rename(&staged, path).unwrap();
    }
    (cert_path, key_path)
}

pub fn options() -> StateOptions {
    StateOptions {
        revision: "canary".into(),
        own_namespace: "meshkeeper-system".into(),
        init_image: "ghcr.io/meshkeeper/init:test".into(),
        proxy_image: "envoyproxy/envoy:v1.36.2".into(),
        native_sidecars_supported: true,
    }
}

pub fn mesh_revision(name: &str) -> MeshRevision {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "meshkeeper.io/v1alpha1", "kind": "MeshRevision",
        "metadata": {"name": name},
        "spec": {"mesh": "default", "version": "0.1.0"}
    }))
    .unwrap()
}

/// State that is ready to inject and validate for revision `canary`
/// (with an empty cluster view).
pub fn ready_state() -> Arc<State> {
    let state = State::new(options());
    state.apply_revision(&mesh_revision("canary")).unwrap();
    state.set_proxy_configs(Vec::new());
    state.set_validation_view(server::ValidationView::default());
    Arc::new(state)
}

/// A server on 127.0.0.1 with its certificate files in a temporary folder.
pub struct TestServer {
    pub ca: TestCa,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub state: Arc<State>,
    pub server: Option<RunningServer>,
}

impl TestServer {
    pub async fn start(state: Arc<State>) -> Self {
        Self::start_with(state, |_| {}).await
    }

    pub async fn start_with(state: Arc<State>, adjust: impl FnOnce(&mut ServerOptions)) -> Self {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_cert(dir.path(), &ca.issue());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = ServerOptions::new(server::CertFiles::new(cert, key));
        options.reload_interval = Duration::from_millis(100);
        adjust(&mut options);
        let server = server::start(listener, state.clone(), options).unwrap();
        Self {
            ca,
            dir,
            addr,
            state,
            server: Some(server),
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr, self.ca.client_config()).await
    }

    /// Opens a TLS connection and returns it without speaking HTTP.
    pub async fn tls_stream(&self) -> TlsStream<TcpStream> {
        tls_connect(self.addr, self.ca.client_config()).await
    }
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One HTTP/1.1 keep-alive connection over TLS.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    /// The server certificate this connection was made with.
    pub peer_cert: CertificateDer<'static>,
    pub connection: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

/// What a request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        let stream = tls_connect(addr, config).await;
        let peer_cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        Self {
            sender,
            peer_cert,
            connection: tokio::spawn(connection),
        }
    }

    pub async fn request(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let request = Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.request(request).await.unwrap()
    }

    pub async fn post(&mut self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = Request::post(path).header("host", "localhost");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        self.request(request).await.unwrap()
    }

    pub async fn review(&mut self, path: &str, body: &serde_json::Value) -> Answer {
        self.post(
            path,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }
}

/// An AdmissionReview of creating `object` (a Pod unless `kind` says
/// otherwise) in namespace `apps`.
pub fn review(uid: &str, kind: serde_json::Value, object: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind,
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object
        }
    })
}

pub fn pod_kind() -> serde_json::Value {
    serde_json::json!({"group": "", "version": "v1", "kind": "Pod"})
}

/// A plain pod; `labels` and `annotations` are merged into its metadata.
pub fn pod(labels: serde_json::Value, annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}
    })
}

/// Sends raw bytes on a fresh TLS connection and reads the response head
/// and body (by Content-Length) or until the server closes.
pub async fn raw_exchange(stream: &mut TlsStream<TcpStream>, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    stream.flush().await.unwrap();
    read_response(stream).await
}

pub async fn read_response(stream: &mut TlsStream<TcpStream>) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let length: Option<usize> = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    let mut body = buf[head_end..].to_vec();
    if (100..200).contains(&status) {
        // An interim response has no body.
        return (status, head);
    }
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            let _ = stream.read_to_end(&mut body).await;
        }
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
