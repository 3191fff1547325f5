//! Istio's own samples parse into the typed API and serialize back to the
//! same JSON: nothing Istio accepts is dropped or rewritten.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use meshkeeper_crds::networking::NetworkingObject;
use serde_json::{Value, json};

#[test]
fn every_corpus_networking_document_round_trips() {
    let docs = meshkeeper_testkit::networking_documents().unwrap();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for doc in &docs {
        let where_ = format!("{} {} in {}", doc.kind(), doc.name(), doc.file.display());
        let typed = NetworkingObject::from_value(&doc.value)
            .unwrap_or_else(|e| panic!("{where_} does not parse: {e}"));
        let back = typed.to_value().unwrap();

        // The typed object speaks the storage version, as the API server
        // answers; everything else must be exactly what came in.
        let mut expected = doc.value.clone();
        expected["apiVersion"] = back["apiVersion"].clone();
        assert!(
            back["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("networking.istio.io/"),
            "{where_}: {}",
            back["apiVersion"]
        );
        assert_eq!(back, expected, "{where_} changed on the way back");
        *seen.entry(doc.kind().to_string()).or_default() += 1;
    }
    // The corpus exercises all four core kinds; an empty or partial corpus
    // must not pass silently.
    for kind in [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in the corpus: {seen:?}"
        );
    }
    assert!(docs.len() >= 30, "only {} networking documents", docs.len());
}

fn parse_error(doc: Value) -> String {
    NetworkingObject::from_value(&doc).unwrap_err().to_string()
}

#[test]
fn wrong_type_names_the_field_path_and_value() {
    let err = parse_error(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": "fifty"}
        ]}]}
    }));
    assert!(err.starts_with("spec.http[0].route[1].weight: "), "{err}");
    assert!(err.contains("\"fifty\""), "{err}");
}

#[test]
fn unknown_enum_value_names_the_field_value_and_allowed_values() {
    let err = parse_error(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTAL"}}}
    }));
    assert!(err.starts_with("spec.trafficPolicy.tls.mode: "), "{err}");
    assert!(err.contains("ISTIO_MUTAL"), "{err}");
    assert!(
        err.contains("ISTIO_MUTUAL"),
        "allowed values missing: {err}"
    );
}

#[test]
fn misspelled_field_is_rejected_not_dropped() {
    let err = parse_error(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"servers": [{"port": {"number": 80, "protocol": "HTTP", "nmae": "http"}}]}
    }));
    assert!(err.starts_with("spec.servers[0].port.nmae: "), "{err}");
}

#[test]
fn unknown_kind_and_foreign_group_are_named() {
    let err = parse_error(json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar"}));
    assert!(
        err.contains("unknown kind `Sidecar`") && err.contains("VirtualService"),
        "{err}"
    );
    let err = parse_error(json!({"apiVersion": "apps/v1", "kind": "Deployment"}));
    assert!(err.starts_with("apiVersion: "), "{err}");
}

#[test]
fn garbage_never_panics() {
    for doc in [
        json!(null),
        json!([]),
        json!("VirtualService"),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService"}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {}, "spec": 7}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {}, "spec": {"http": [{"route": [{"weight": 1e300}]}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "EnvoyFilter", "metadata": {}, "spec": {"configPatches": [{"patch": {"value": [1, 2]}}]}}),
    ] {
        assert!(NetworkingObject::from_value(&doc).is_err(), "{doc} parsed");
    }
}
