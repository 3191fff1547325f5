//! `POST /validate` over real TLS: denials naming the object and the field,
//! the cross-object subset checks, clean-up deletions, bad input, warnings,
//! readiness and metrics. The server runs in-process with a hand-fed view.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use meshkeeper_crds::networking::{DestinationRule, VirtualService};
use meshkeeper_webhook::server::{Endpoint, RequestOutcome, State, ValidationView};
use meshkeeper_webhook::validate::index::Index;
use serde_json::{Value, json};
use server_support::*;

const NS: &str = "bookinfo";
const GARBAGE_COLLECTOR: &str = "system:serviceaccount:kube-system:generic-garbage-collector";

fn destination_rule(name: &str, host: &str, subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets
        .iter()
        .map(|s| json!({"name": s, "labels": {"version": s}}))
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"host": host, "subsets": subsets}
    })
}

/// A VirtualService routing all of `host` to `subset`; no namespace in
/// its metadata, as on a CREATE (the request carries it).
fn virtual_service(name: &str, host: &str, subset: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [host], "http": [{"route": [
            {"destination": {"host": host, "subset": subset}}]}]}
    })
}

fn kind_of(object: &Value) -> Value {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    json!({"group": group, "version": version, "kind": object["kind"]})
}

/// An AdmissionReview of `operation` by `user` on networking objects.
fn admission(
    operation: &str,
    user: &str,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> Value {
    let subject = object.or(old_object).unwrap();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{operation}"),
            "kind": kind_of(subject),
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "things"},
            "name": subject["metadata"]["name"],
            "namespace": NS,
            "operation": operation,
            "userInfo": {"username": user},
            "object": object,
            "oldObject": old_object,
        }
    })
}

fn create(object: &Value) -> Value {
    admission("CREATE", "alice", Some(object), None)
}

fn view_of(objects: &[Value]) -> ValidationView {
    let mut index = Index::default();
    for object in objects {
        let mut object = object.clone();
        object["metadata"]["namespace"] = json!(NS);
        match object["kind"].as_str().unwrap() {
            "DestinationRule" => index.upsert_destination_rule(
                &meshkeeper_crds::parse::from_value::<DestinationRule>(&object).unwrap(),
            ),
            "VirtualService" => index.upsert_virtual_service(
                &meshkeeper_crds::parse::from_value::<VirtualService>(&object).unwrap(),
            ),
            other => panic!("{other}"),
        }
    }
    ValidationView {
        index,
        terminating_namespaces: Default::default(),
    }
}

fn state_with(view: ValidationView) -> Arc<State> {
    let state = ready_state();
    state.set_validation_view(view);
    state
}

async fn send(state: Arc<State>, body: &Value) -> Value {
    let server = TestServer::start(state).await;
    let mut client = server.connect().await;
    let answer = client.review("/validate", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()["response"].clone()
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn warnings(response: &Value) -> Vec<String> {
    serde_json::from_value(response["warnings"].clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_virtual_service_naming_an_undefined_subset_is_denied_with_the_fix() {
    let state = state_with(view_of(&[destination_rule(
        "reviews-rule",
        "reviews",
        &["v1", "v2"],
    )]));
    let response = send(
        state.clone(),
        &create(&virtual_service("reviews", "reviews", "v9")),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["uid"], "uid-CREATE");
    let text = message(&response);
    for part in [
        "VirtualService bookinfo/reviews",
        "MK0201 spec.http[0].route[0].destination",
        "v9",
        "reviews-rule",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    assert_eq!(
        state
            .metrics()
            .count(Endpoint::Validate, RequestOutcome::Denied),
        1
    );
}

fn bookinfo(file: &str) -> Vec<Value> {
    let path = meshkeeper_testkit::corpus_dir()
        .unwrap()
        .join("istio-samples/bookinfo/networking")
        .join(file);
    meshkeeper_crds::parse::yaml_documents(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_bookinfo_rules_then_routes_are_allowed() {
    let rules = bookinfo("destination-rule-all.yaml");
    let state = state_with(view_of(&[]));
    let server = TestServer::start(state.clone()).await;
    let mut client = server.connect().await;
    for rule in &rules {
        let answer = client.review("/validate", &create(rule)).await;
        assert_eq!(
            answer.json()["response"]["allowed"],
            true,
            "{}",
            answer.text()
        );
    }
    state.set_validation_view(view_of(&rules));
    let routes = bookinfo("virtual-service-all-v1.yaml");
    assert!(!routes.is_empty());
    for route in &routes {
        let answer = client.review("/validate", &create(route)).await;
        let response = &answer.json()["response"];
        assert_eq!(response["allowed"], true, "{}", answer.text());
    }
    assert_eq!(
        state
            .metrics()
            .count(Endpoint::Validate, RequestOutcome::Denied),
        0
    );
}

fn rule_in_use() -> (Value, ValidationView) {
    let rule = destination_rule("reviews-rule", "reviews", &["v1", "v2"]);
    let view = view_of(&[rule.clone(), virtual_service("reviews", "reviews", "v1")]);
    (rule, view)
}

#[tokio::test]
async fn deleting_a_destination_rule_in_use_is_denied_naming_the_user() {
    let (rule, view) = rule_in_use();
    let response = send(
        state_with(view),
        &admission("DELETE", "alice", None, Some(&rule)),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    for part in [
        "DestinationRule bookinfo/reviews-rule",
        "MK0202",
        "v1",
        "bookinfo/reviews",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
}

#[tokio::test]
async fn removing_a_used_subset_in_an_update_is_denied() {
    let (rule, view) = rule_in_use();
    let shrunk = destination_rule("reviews-rule", "reviews", &["v2"]);
    let response = send(
        state_with(view),
        &admission("UPDATE", "alice", Some(&shrunk), Some(&rule)),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(message(&response).contains("MK0202"), "{response}");
}

#[tokio::test]
async fn clean_up_deletions_are_allowed() {
    let (rule, view) = rule_in_use();
    let response = send(
        state_with(view),
        &admission("DELETE", GARBAGE_COLLECTOR, None, Some(&rule)),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");

    let (rule, mut view) = rule_in_use();
    view.terminating_namespaces.insert(NS.to_string());
    let response = send(
        state_with(view),
        &admission("DELETE", "alice", None, Some(&rule)),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test]
async fn an_object_that_does_not_decode_is_denied_with_the_field_path() {
    let mut route = virtual_service("reviews", "reviews", "v1");
    route["spec"]["http"][0]["route"][0]["weight"] = json!("heavy");
    let response = send(state_with(view_of(&[])), &create(&route)).await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.contains("VirtualService bookinfo/reviews")
            && text.contains("spec.http[0].route[0].weight"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_kind_is_allowed_with_a_warning() {
    let sidecar = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
        "metadata": {"name": "default"}, "spec": {}
    });
    let state = state_with(view_of(&[]));
    let response = send(state.clone(), &create(&sidecar)).await;
    assert_eq!(response["allowed"], true, "{response}");
    let warned = warnings(&response);
    assert!(
        warned.len() == 1 && warned[0].contains("Sidecar"),
        "{warned:?}"
    );
    assert_eq!(
        state
            .metrics()
            .count(Endpoint::Validate, RequestOutcome::Warned),
        1
    );
}

#[tokio::test]
async fn a_subset_without_running_pods_is_allowed_with_a_warning() {
    let mut view = view_of(&[destination_rule("reviews-rule", "reviews", &["v1", "v2"])]);
    let running = BTreeMap::from([("version".to_string(), "v1".to_string())]);
    view.index.set_service_pods(NS, "reviews", vec![running]);
    let response = send(
        state_with(view),
        &create(&virtual_service("reviews", "reviews", "v2")),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
    let warned = warnings(&response);
    assert!(
        warned.iter().any(|w| w.starts_with("MK0203 spec.http[0]")),
        "{warned:?}"
    );
}

/// The view as the watches build it: a rule, a Service selecting
/// `app=reviews`, and one running pod of it labelled `version=v1`.
fn view_from_watch_events() -> ValidationView {
    use kube::api::DynamicObject;
    use kube::runtime::watcher::Event;
    use meshkeeper_webhook::server::cluster_view::{ClusterView, ViewEvent};

    let object = |value: Value| serde_json::from_value::<DynamicObject>(value).unwrap();
    let mut rule = destination_rule("reviews-rule", "reviews", &["v1", "v2"]);
    rule["metadata"]["namespace"] = json!(NS);
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": NS},
        "spec": {"selector": {"app": "reviews"}}
    });
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "reviews-v1", "namespace": NS,
                     "labels": {"app": "reviews", "version": "v1"}},
        "status": {"phase": "Running"}
    });
    let mut view = ClusterView::default();
    // Each kind's listing: how to wrap its events, and its objects.
    type Listing = (fn(Event<DynamicObject>) -> ViewEvent, Vec<Value>);
    let listings: [Listing; 7] = [
        (ViewEvent::VirtualService, vec![]),
        (ViewEvent::DestinationRule, vec![rule]),
        (ViewEvent::Namespace, vec![]),
        (ViewEvent::Service, vec![service]),
        (ViewEvent::Pod, vec![pod]),
        (ViewEvent::Gateway, vec![]),
        (ViewEvent::ServiceEntry, vec![]),
    ];
    for (kind, objects) in listings {
        view.apply(kind(Event::Init));
        for value in objects {
            let (_, problems) = view.apply(kind(Event::InitApply(object(value))));
            assert!(problems.is_empty(), "{problems:?}");
        }
        view.apply(kind(Event::InitDone));
    }
    assert!(view.synced());
    view.build("istio-system")
}

#[tokio::test]
async fn watched_services_and_pods_drive_the_no_running_pod_warning() {
    let state = state_with(view_from_watch_events());
    let to_v2 = send(
        state.clone(),
        &create(&virtual_service("to-v2", "reviews", "v2")),
    )
    .await;
    assert_eq!(to_v2["allowed"], true, "{to_v2}");
    let warned = warnings(&to_v2);
    assert!(
        warned.iter().any(|w| w.starts_with("MK0203 spec.http[0]")),
        "{warned:?}"
    );

    let to_v1 = send(state, &create(&virtual_service("to-v1", "reviews", "v1"))).await;
    assert_eq!(to_v1["allowed"], true, "{to_v1}");
    let warned = warnings(&to_v1);
    assert!(
        !warned.iter().any(|w| w.starts_with("MK0203")),
        "{warned:?}"
    );
}

#[tokio::test]
async fn a_warn_policy_turns_the_denial_into_a_warning() {
    let state = State::new(options());
    let revision: meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision =
        serde_json::from_value(json!({
            "apiVersion": "meshkeeper.io/v1alpha1", "kind": "MeshRevision",
            "metadata": {"name": "canary"},
            "spec": {"mesh": "default", "version": "0.1.0",
                     "validation": {"subsetReferences": "Warn"}}
        }))
        .unwrap();
    state.apply_revision(&revision).unwrap();
    state.set_proxy_configs(Vec::new());
    state.set_validation_view(view_of(&[destination_rule("r", "reviews", &["v1"])]));
    let response = send(
        Arc::new(state),
        &create(&virtual_service("reviews", "reviews", "v9")),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(
        warnings(&response)
            .iter()
            .any(|w| w.starts_with("MK0201 ") && w.contains("v9")),
        "{response}"
    );
}

#[tokio::test]
async fn before_the_view_is_listed_validation_is_unavailable() {
    let state = State::new(options());
    state.apply_revision(&mesh_revision("canary")).unwrap();
    state.set_proxy_configs(Vec::new());
    let server = TestServer::start(Arc::new(state)).await;
    let mut client = server.connect().await;
    let answer = client
        .review(
            "/validate",
            &create(&virtual_service("reviews", "reviews", "v1")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.text().contains("not ready"), "{}", answer.text());
    assert_eq!(
        client.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn bad_input_gets_the_same_http_errors_as_injection() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    let answer = client
        .post("/validate", Some("application/json"), b"{".to_vec())
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text().contains("malformed AdmissionReview"));
    let answer = client
        .post(
            "/validate",
            Some("application/json"),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text().contains("no `request`"), "{}", answer.text());
    let answer = client
        .post("/validate", Some("text/yaml"), b"x".to_vec())
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        server
            .state
            .metrics()
            .count(Endpoint::Validate, RequestOutcome::Error),
        3
    );
}
