//! In-process speed of sidecar injection (results in BENCHMARKS.md).
//!
//! - `inject/typical`: [`inject`] on the typical pod, already parsed;
//! - `inject/containers/N`: the same pod grown to N containers;
//! - `review/typical`, `review/containers/N`: the AdmissionReview round trip
//!   without network: request body bytes parsed, the pod reviewed, the
//!   response serialized ([`review::review`], what the server runs for every
//!   request between reading the body and writing the answer).
//!
//! Run: `cargo bench -p meshkeeper-webhook --bench inject`
//! (`e2e/bin/bench` runs it and prints the medians).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pods.rs"]
mod pods;

use std::hint::black_box;
use std::time::Duration;

use axum::http::StatusCode;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_webhook::inject::{
    DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE, Outcome, Request, Scope, Settings, inject,
};
use meshkeeper_webhook::server::review;
use meshkeeper_webhook::server::{RequestOutcome, State, StateOptions};

/// Container counts of the scaling series.
const SCALES: [usize; 3] = [10, 100, 1_000];

/// A server state ready to inject, as the real binary has it against the
/// local control plane (Kubernetes 1.37: native sidecars supported, so the
/// Mesh's `nativeSidecar: Auto` runs the proxy as a native sidecar).
fn ready_state() -> State {
    let state = State::new(StateOptions {
        revision: "default".into(),
        own_namespace: "meshkeeper-system".into(),
        init_image: DEFAULT_INIT_IMAGE.into(),
        proxy_image: DEFAULT_PROXY_IMAGE.into(),
        native_sidecars_supported: true,
    });
    let revision: MeshRevision = serde_json::from_value(pods::mesh_revision("default")).unwrap();
    state.apply_revision(&revision).unwrap();
    state.set_proxy_configs(Vec::new());
    state
}

fn settings(state: &State) -> Settings {
    state.revision().unwrap().settings.clone()
}

fn parse_pod(pod: serde_json::Value) -> Pod {
    serde_json::from_value(pod).unwrap()
}

fn request(pod: &Pod) -> Request<'_> {
    Request {
        pod,
        namespace: pods::NAMESPACE,
        scope: Scope::Namespace,
        proxy: None,
    }
}

/// Fails the run (before any timing) if the input would not be injected:
/// a benchmark of a skip or a denial would measure the wrong thing.
fn check_injects(pod: &Pod, settings: &Settings) {
    match inject(&request(pod), settings) {
        Outcome::Injected { patch, .. } => assert!(!patch.0.is_empty()),
        other => panic!("the benchmark pod is not injected: {other:?}"),
    }
}

fn check_review_injects(body: &[u8], state: &State) {
    let reply = review::review(body, Scope::Namespace, state);
    assert_eq!(
        (reply.status, reply.outcome),
        (StatusCode::OK, RequestOutcome::Injected),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

fn bench_inject(c: &mut Criterion) {
    let state = ready_state();
    let settings = settings(&state);
    let mut group = c.benchmark_group("inject");

    let typical = parse_pod(pods::typical_pod());
    check_injects(&typical, &settings);
    group.bench_function("typical", |b| {
        b.iter(|| inject(black_box(&request(&typical)), black_box(&settings)))
    });

    for count in SCALES {
        let pod = parse_pod(pods::pod_with_containers(count));
        check_injects(&pod, &settings);
        group.bench_with_input(BenchmarkId::new("containers", count), &pod, |b, pod| {
            b.iter(|| inject(black_box(&request(pod)), black_box(&settings)))
        });
    }
    group.finish();
}

fn bench_review(c: &mut Criterion) {
    let state = ready_state();
    let mut group = c.benchmark_group("review");
    // The 1,000-container round trip takes milliseconds: fewer samples keep
    // it within the measurement time.
    group.sample_size(20);
    let body_of = |pod: &serde_json::Value| {
        serde_json::to_vec(&pods::review(pod, pods::PLACEHOLDER_UID)).unwrap()
    };

    let typical = body_of(&pods::typical_pod());
    check_review_injects(&typical, &state);
    group.bench_function("typical", |b| {
        b.iter(|| review::review(black_box(&typical), Scope::Namespace, &state))
    });

    for count in SCALES {
        let body = body_of(&pods::pod_with_containers(count));
        check_review_injects(&body, &state);
        group.bench_with_input(BenchmarkId::new("containers", count), &body, |b, body| {
            b.iter(|| review::review(black_box(body), Scope::Namespace, &state))
        });
    }
    group.finish();
}

/// Short enough that the whole suite takes about a minute on 2 cores;
/// the medians are stable to a few percent at these settings.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_inject, bench_review
}
criterion_main!(benches);
