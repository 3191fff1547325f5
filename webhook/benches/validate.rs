//! In-process speed of `/validate` against a large view (results in
//! BENCHMARKS.md): 10,000 DestinationRules and 10,000 VirtualServices over
//! 100 namespaces (`support/networking.rs`).
//!
//! - `validate/findings/new_virtual_service`: [`validate::findings`] of a
//!   new VirtualService (already parsed) against the index;
//! - `validate/removal/unused_subset`, `validate/removal/used_subset`:
//!   [`subsets::check_destination_rule_change`] of a DestinationRule UPDATE
//!   that drops subset v3 (no VirtualService routes there: allowed) or v2
//!   (one VirtualService routes there: denied);
//! - `validate/review/*`: the same requests as AdmissionReview body bytes
//!   through [`validate_review::review`] (parse, decode, check, serialize
//!   the response), what the server runs between reading the body and
//!   writing the answer.
//!
//! - `update/*`: one watch event applied to the index (a VirtualService
//!   or DestinationRule changed) and a snapshot published, while the
//!   previous snapshot is still held, as the server does after each event:
//!   the copy-on-write cost of the incremental index.
//!
//! Before criterion runs, it prints the resident memory the index costs per
//! object (VmRSS before and after building it) and p50/p90/p99/max over
//! individually timed calls, since criterion reports means and medians only.
//!
//! Run: `cargo bench -p meshkeeper-webhook --bench validate`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/networking.rs"]
mod networking;

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use criterion::{Criterion, criterion_group, criterion_main};
use meshkeeper_crds::networking::{DestinationRule, NetworkingObject};
use meshkeeper_webhook::server::validate_review;
use meshkeeper_webhook::server::{RequestOutcome, State};
use meshkeeper_webhook::validate::{self, index::Index, subsets};
use serde_json::Value;

/// Individually timed calls for the percentiles.
const TIMED_CALLS: usize = 10_000;

fn with_namespace<T: serde::de::DeserializeOwned>(object: &Value) -> T {
    meshkeeper_crds::parse::from_value(object).unwrap()
}

fn build_index() -> Index {
    let (index, memory) = networking::build_index();
    memory.print();
    index
}

/// The new VirtualService as `/validate` decodes it: namespace filled in.
fn parsed_new_virtual_service() -> NetworkingObject {
    let mut object = networking::new_virtual_service();
    object["metadata"]["namespace"] = networking::namespace(networking::REVIEW_NAMESPACE).into();
    NetworkingObject::from_value(&object).unwrap()
}

fn rule_in_review_namespace(subsets: &[&str]) -> Value {
    networking::destination_rule_with_subsets(networking::REVIEW_NAMESPACE, 42, subsets)
}

fn body(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).unwrap()
}

/// Fails the run before any timing if a request is not judged as the
/// benchmark means it: timing a decode error measures the wrong thing.
fn check_reply(body: &[u8], state: &State, expected: RequestOutcome) {
    let reply = validate_review::review(body, state);
    assert_eq!(
        (reply.status, reply.outcome),
        (StatusCode::OK, expected),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// Times `calls` calls of `f` one by one and prints the percentiles.
fn print_percentiles(name: &str, calls: usize, mut f: impl FnMut()) {
    for _ in 0..calls / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((calls as f64 * q) as usize).min(calls - 1)];
    println!(
        "{name:<40} p50 {:>9.1?}  p90 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}  ({calls} calls)",
        at(0.50),
        at(0.90),
        at(0.99),
        times[calls - 1]
    );
}

fn bench_validate(c: &mut Criterion) {
    let state = networking::ready_state(build_index());
    let view = state.validation_view();
    let index = &view.index;

    let new_vs = parsed_new_virtual_service();
    let found = validate::findings(&new_vs, index);
    assert!(
        found.is_empty(),
        "the new VirtualService has findings: {found:?}"
    );

    let old_rule: DestinationRule = with_namespace(&rule_in_review_namespace(&["v1", "v2", "v3"]));
    let without_v3: DestinationRule = with_namespace(&rule_in_review_namespace(&["v1", "v2"]));
    let without_v2: DestinationRule = with_namespace(&rule_in_review_namespace(&["v1", "v3"]));
    let allowed = subsets::check_destination_rule_change(&old_rule, Some(&without_v3), index);
    assert!(allowed.is_empty(), "{allowed:?}");
    let denied = subsets::check_destination_rule_change(&old_rule, Some(&without_v2), index);
    assert_eq!(denied.len(), 1, "{denied:?}");

    let vs_body = body(&networking::review(
        "CREATE",
        &networking::new_virtual_service(),
        None,
        "bench-vs",
    ));
    let old = rule_in_review_namespace(&["v1", "v2", "v3"]);
    let drop_v3_body = body(&networking::review(
        "UPDATE",
        &rule_in_review_namespace(&["v1", "v2"]),
        Some(&old),
        "bench-dr",
    ));
    let drop_v2_body = body(&networking::review(
        "UPDATE",
        &rule_in_review_namespace(&["v1", "v3"]),
        Some(&old),
        "bench-dr",
    ));
    check_reply(&vs_body, &state, RequestOutcome::Allowed);
    check_reply(&drop_v3_body, &state, RequestOutcome::Allowed);
    check_reply(&drop_v2_body, &state, RequestOutcome::Denied);

    println!("percentiles over individually timed calls (Instant around each call):");
    print_percentiles("findings/new_virtual_service", TIMED_CALLS, || {
        black_box(validate::findings(black_box(&new_vs), index));
    });
    print_percentiles("removal/used_subset", TIMED_CALLS, || {
        black_box(subsets::check_destination_rule_change(
            black_box(&old_rule),
            Some(&without_v2),
            index,
        ));
    });
    print_percentiles("review/new_virtual_service", TIMED_CALLS, || {
        black_box(validate_review::review(black_box(&vs_body), &state));
    });
    print_percentiles("review/drop_used_subset", TIMED_CALLS, || {
        black_box(validate_review::review(black_box(&drop_v2_body), &state));
    });

    // Alternates two versions of one object so every call changes it.
    let vs_versions: Vec<meshkeeper_crds::networking::VirtualService> = ["v1", "v3"]
        .iter()
        .map(|subset| {
            let mut vs = networking::virtual_service(networking::REVIEW_NAMESPACE, 7);
            vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = (*subset).into();
            with_namespace(&vs)
        })
        .collect();
    let dr_versions: Vec<DestinationRule> = [&["v1", "v2", "v3"][..], &["v1", "v2", "v3", "v4"]]
        .iter()
        .map(|subsets| {
            with_namespace(&networking::destination_rule_with_subsets(
                networking::REVIEW_NAMESPACE,
                7,
                subsets,
            ))
        })
        .collect();
    let mut working = index.clone();
    let mut published = working.clone();
    let mut turn = 0usize;
    print_percentiles("update/virtual_service+publish", TIMED_CALLS, || {
        turn += 1;
        working.upsert_virtual_service(&vs_versions[turn % 2]);
        published = black_box(working.clone());
    });
    print_percentiles("update/destination_rule+publish", TIMED_CALLS, || {
        turn += 1;
        working.upsert_destination_rule(&dr_versions[turn % 2]);
        published = black_box(working.clone());
    });
    drop(published);

    let mut group = c.benchmark_group("validate");
    group.bench_function("findings/new_virtual_service", |b| {
        b.iter(|| validate::findings(black_box(&new_vs), index))
    });
    group.bench_function("removal/unused_subset", |b| {
        b.iter(|| {
            subsets::check_destination_rule_change(black_box(&old_rule), Some(&without_v3), index)
        })
    });
    group.bench_function("removal/used_subset", |b| {
        b.iter(|| {
            subsets::check_destination_rule_change(black_box(&old_rule), Some(&without_v2), index)
        })
    });
    group.bench_function("review/new_virtual_service", |b| {
        b.iter(|| validate_review::review(black_box(&vs_body), &state))
    });
    group.bench_function("review/drop_unused_subset", |b| {
        b.iter(|| validate_review::review(black_box(&drop_v3_body), &state))
    });
    group.bench_function("review/drop_used_subset", |b| {
        b.iter(|| validate_review::review(black_box(&drop_v2_body), &state))
    });
    group.finish();
}

/// The same settings as the injection benches.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_validate
}
criterion_main!(benches);
