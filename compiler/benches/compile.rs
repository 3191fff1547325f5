//! The compiler at the scale issue 12 sets: 1,000 services × 10 endpoints
//! with 2,000 VirtualServices and DestinationRules (one of each per
//! service: a header match, a 90/10 split, retries; two subsets with a
//! connection pool and outlier detection). Measured: a full sidecar
//! configuration (`compile`), and an endpoint-only change (one service's
//! endpoints replaced, one cluster's assignment recomputed for EDS).
//!
//! `cargo bench -p meshkeeper-compiler --bench compile`

// Bench setup: a failed unwrap is a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use meshkeeper_compiler::snapshot::Endpoint;
use meshkeeper_compiler::{
    MeshSettings, Proxy, Snapshot, SnapshotBuilder, compile, endpoints_for_cluster,
};
use serde_json::json;

const SERVICES: usize = 1_000;
const ENDPOINTS: usize = 10;
const NAMESPACE: &str = "bench";

fn snapshot() -> Snapshot {
    let mut b = SnapshotBuilder::new(MeshSettings::default());
    for s in 0..SERVICES {
        let name = format!("svc-{s}");
        let mut endpoints = Vec::new();
        for e in 0..ENDPOINTS {
            let pod = format!("{name}-{e}");
            let ip = format!("10.{}.{}.{}", 1 + s / 250, s % 250, e + 1);
            let version = if e % 2 == 0 { "v1" } else { "v2" };
            b.add_document(&json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {"app": name, "version": version}},
                "status": {"podIP": ip},
            }))
            .unwrap();
            endpoints.push(json!({"addresses": [ip], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": pod}}));
        }
        let docs = [
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"clusterIP": format!("10.96.{}.{}", s / 250, s % 250 + 1),
                         "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-x"), "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints}),
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"hosts": [name], "http": [
                    {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                     "route": [{"destination": {"host": name, "subset": "v2"}}]},
                    {"route": [{"destination": {"host": name, "subset": "v1"}, "weight": 90},
                               {"destination": {"host": name, "subset": "v2"}, "weight": 10}],
                     "retries": {"attempts": 3, "perTryTimeout": "2s"}, "timeout": "10s"}]}}),
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"host": name,
                    "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}},
                                      "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s"}},
                    "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                {"name": "v2", "labels": {"version": "v2"}}]}}),
        ];
        for d in &docs {
            b.add_document(d).unwrap();
        }
    }
    b.build().unwrap()
}

fn proxy() -> Proxy {
    let labels = [("app", "svc-0"), ("version", "v1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Proxy::sidecar(NAMESPACE, "svc-0-0", "10.1.0.1", labels)
}

fn bench(c: &mut Criterion) {
    let snapshot = snapshot();
    let proxy = proxy();
    let config = compile(&snapshot, &proxy).unwrap();
    eprintln!(
        "one sidecar: {} listeners, {} route configurations, {} clusters, {} assignments",
        config.listeners.len(),
        config.routes.len(),
        config.clusters.len(),
        config.endpoints.len()
    );
    c.bench_function("full sidecar configuration (1,000 services)", |b| {
        b.iter(|| compile(black_box(&snapshot), black_box(&proxy)).unwrap())
    });

    // An endpoint-only change: svc-500 loses one endpoint; the xDS server
    // replaces its endpoints and recomputes the one cluster's assignment.
    let host = "svc-500.bench.svc.cluster.local";
    let cluster = format!("outbound|8080|v2|{host}");
    let mut changed = snapshot.clone();
    let mut endpoints: Vec<Endpoint> = changed.service(host).unwrap().endpoints.clone();
    endpoints.pop();
    c.bench_function("endpoint-only change (one cluster's assignment)", |b| {
        b.iter(|| {
            assert!(changed.replace_endpoints(host, black_box(endpoints.clone())));
            endpoints_for_cluster(black_box(&changed), black_box(&proxy), black_box(&cluster))
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
