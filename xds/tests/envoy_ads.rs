//! A real Envoy (1.40, from PyPI) takes its whole configuration from our ADS
//! server: it subscribes, ACKs every type, a VirtualService change reaches
//! it without a restart (its `/config_dump` shows the new weights), and a
//! configuration it rejects comes back as a NACK with Envoy's reason while
//! it keeps the last good one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, socket_address};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use meshkeeper_compiler::{MeshSettings, Proxy, SnapshotBuilder, compile};
use meshkeeper_xds::resources::{CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE};
use meshkeeper_xds::{Ads, ConfigSource, Outcome, Report, Resources};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const NODE: &str = "client.default";
const DEADLINE: Duration = Duration::from_secs(30);

/// The cluster as plain documents, changed by the test.
struct Source {
    documents: Mutex<Vec<Value>>,
    /// Adds a listener Envoy must reject (a port above 65535).
    broken: Mutex<bool>,
    tick: watch::Sender<u64>,
}

impl Source {
    fn change(&self, f: impl FnOnce(&mut Vec<Value>, &mut bool)) {
        if let (Ok(mut docs), Ok(mut broken)) = (self.documents.lock(), self.broken.lock()) {
            f(&mut docs, &mut broken);
        }
        self.tick.send_modify(|n| *n += 1);
    }
}

impl ConfigSource for Source {
    fn resources(&self, node_id: &str) -> Result<Resources, String> {
        if node_id != NODE {
            return Err(format!("unknown proxy {node_id}"));
        }
        let docs = self.documents.lock().map_err(|e| e.to_string())?.clone();
        let mut builder = SnapshotBuilder::new(MeshSettings::default());
        for d in &docs {
            builder.add_document(d).map_err(|e| e.to_string())?;
        }
        let snapshot = builder.build().map_err(|e| e.to_string())?;
        let labels = BTreeMap::from([("app".to_owned(), "client".to_owned())]);
        let proxy = Proxy::sidecar("default", "client", "10.1.0.9", labels);
        let mut config = compile(&snapshot, &proxy).map_err(|e| e.to_string())?;
        if *self.broken.lock().map_err(|e| e.to_string())? {
            config.listeners.push(broken_listener());
        }
        Ok(Resources::from_config(&config))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }
}

fn broken_listener() -> Listener {
    Listener {
        name: "broken".into(),
        address: Some(Address {
            address: Some(
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                    SocketAddress {
                        address: "127.0.0.1".into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(99_999)),
                        ..Default::default()
                    },
                ),
            ),
        }),
        ..Default::default()
    }
}

fn pod(name: &str, ip: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "labels": labels},
           "spec": {"containers": [{"name": "app"}]},
           "status": {"podIP": ip, "phase": "Running"}})
}

fn virtual_service(v1: u32, v2: u32) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "echo", "namespace": "default"},
           "spec": {"hosts": ["echo"], "http": [{"route": [
               {"destination": {"host": "echo", "subset": "v1"}, "weight": v1},
               {"destination": {"host": "echo", "subset": "v2"}, "weight": v2}]}]}})
}

fn documents() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "echo", "namespace": "default"},
               "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "echo"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        pod(
            "echo-v1",
            "10.1.0.2",
            json!({"app": "echo", "version": "v1"}),
        ),
        pod(
            "echo-v2",
            "10.1.0.3",
            json!({"app": "echo", "version": "v2"}),
        ),
        pod("client", "10.1.0.9", json!({"app": "client"})),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "echo-abc", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "echo"}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [
                   {"addresses": ["10.1.0.2"], "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": "echo-v1", "namespace": "default"}},
                   {"addresses": ["10.1.0.3"], "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": "echo-v2", "namespace": "default"}}]}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "echo", "namespace": "default"},
               "spec": {"host": "echo", "subsets": [
                   {"name": "v1", "labels": {"version": "v1"}},
                   {"name": "v2", "labels": {"version": "v2"}}]}}),
        virtual_service(80, 20),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn bootstrap(xds_port: u16, admin_port: u16) -> String {
    format!(
        r#"
node: {{id: "{NODE}", cluster: client.default}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}}}]}}]
"#
    )
}

/// Kills Envoy when the test ends, however it ends.
struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn admin_get(port: u16, path: &str) -> anyhow_like::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The tests' only error type: what failed, as text.
mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

/// Waits until `check` holds, polling; fails with `what` after the deadline.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn acked(reports: &Mutex<Vec<Report>>, type_url: &str, version: &str) -> bool {
    reports.lock().is_ok_and(|r| {
        r.iter().any(|r| {
            r.node_id == NODE
                && matches!(&r.outcome, Outcome::Ack { type_url: t, version: v } if t == type_url && v == version)
        })
    })
}

fn version(source: &Source, type_url: &str) -> String {
    source
        .resources(NODE)
        .ok()
        .and_then(|r| r.get(type_url).map(|t| t.version.clone()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_envoy_acks_updates_and_nacks_through_ads() {
    let envoy_bin: PathBuf = match meshkeeper_testkit::envoy_binary() {
        Ok(p) => p,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no Envoy: {why}"
            );
            eprintln!("skipped: no Envoy: {why}");
            return;
        }
    };
    let (tick, _) = watch::channel(0);
    let source = Arc::new(Source {
        documents: Mutex::new(documents()),
        broken: Mutex::new(false),
        tick,
    });
    let ads = Ads::new(source.clone());
    let reports = ads.reports();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_port = listener.local_addr().unwrap().port();
    let incoming = tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ads.into_service())
            .serve_with_incoming(incoming),
    );

    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = dir.path().join("bootstrap.yaml");
    std::fs::write(&config, bootstrap(xds_port, admin_port)).unwrap();
    let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
    let _envoy = Envoy(
        Command::new(&envoy_bin)
            .arg("-c")
            .arg(&config)
            .args([
                "--disable-hot-restart",
                "--log-level",
                "warning",
                "--concurrency",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let envoy_log = || std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();

    // Every type is subscribed to and ACKed at the version served.
    for type_url in PUSH_ORDER {
        let v = version(&source, type_url);
        wait_for(&format!("Envoy's ACK of {type_url} {v}"), || {
            acked(&reports, type_url, &v)
        })
        .await;
    }
    let dump = admin_get(admin_port, "/config_dump?resource=dynamic_route_configs")
        .await
        .unwrap();
    assert!(
        dump.contains("outbound|80|v1|echo.default.svc.cluster.local"),
        "{dump}"
    );
    assert!(
        dump.contains("\"weight\": 80"),
        "route weights 80/20 in Envoy: {dump}"
    );
    let clusters = admin_get(admin_port, "/clusters").await.unwrap();
    assert!(
        clusters.contains("outbound|80|v2|echo.default.svc.cluster.local::10.1.0.3:8080"),
        "EDS gave the v2 subset its pod: {clusters}"
    );

    // A weight change reaches the running Envoy: only the routes change.
    let (clusters_before, endpoints_before) =
        (version(&source, CLUSTER), version(&source, ENDPOINT));
    source.change(|docs, _| {
        if let Some(vs) = docs.iter_mut().find(|d| d["kind"] == "VirtualService") {
            *vs = virtual_service(10, 90);
        }
    });
    let routes = version(&source, ROUTE);
    wait_for("the ACK of the new routes", || {
        acked(&reports, ROUTE, &routes)
    })
    .await;
    assert_eq!(version(&source, CLUSTER), clusters_before);
    assert_eq!(version(&source, ENDPOINT), endpoints_before);
    let dump = admin_get(admin_port, "/config_dump?resource=dynamic_route_configs")
        .await
        .unwrap();
    assert!(
        dump.contains("\"weight\": 90"),
        "new weights in Envoy: {dump}"
    );

    // A listener Envoy rejects is NACKed with its reason; the rest stays.
    source.change(|_, broken| *broken = true);
    let bad = version(&source, LISTENER);
    wait_for("Envoy's NACK of the broken listener", || {
        reports.lock().is_ok_and(|r| {
            r.iter().any(|r| {
                matches!(&r.outcome, Outcome::Nack { type_url, version, message }
                    if type_url == LISTENER && *version == bad && !message.is_empty())
            })
        })
    })
    .await;
    let listeners = admin_get(admin_port, "/listeners").await.unwrap();
    assert!(
        listeners.contains("virtualOutbound"),
        "Envoy kept its listeners: {listeners}\n{}",
        envoy_log()
    );
}
