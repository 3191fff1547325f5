//! Configuration Istio's own webhook admits goes through meshkeeper's
//! `POST /validate` too, as the API server sends it (JSON in an
//! AdmissionReview, the namespace on the request): allowed, and where the
//! configuration is doubtful, with a warning that names the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use axum::http::StatusCode;
use meshkeeper_webhook::server::ValidationView;
use serde_json::{Value, json};
use server_support::*;

const NS: &str = "bookinfo";

fn create(object: &Value) -> Value {
    let (group, version) = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .unwrap();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "uid-create",
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": "things"},
            "name": object["metadata"]["name"],
            "namespace": NS,
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": object,
        }
    })
}

/// The AdmissionResponse for creating `object`, asserting it is allowed.
async fn admitted(object: Value) -> Value {
    let state = ready_state();
    state.set_validation_view(ValidationView::default());
    let server = TestServer::start(state).await;
    let mut client = server.connect().await;
    let answer = client.review("/validate", &create(&object)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let response = answer.json()["response"].clone();
    assert_eq!(response["allowed"], true, "{object}\n{response}");
    response
}

fn warnings(response: &Value) -> Vec<String> {
    serde_json::from_value(response["warnings"].clone()).unwrap_or_default()
}

fn assert_warns(response: &Value, fragments: &[&str]) {
    let all = warnings(response);
    assert!(
        all.iter().any(|w| fragments.iter().all(|f| w.contains(f))),
        "no warning with {fragments:?} in {all:#?}"
    );
}

#[tokio::test]
async fn ipv6_service_entry_without_ports_is_admitted() {
    admitted(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "v6"},
        "spec": {
            "hosts": ["v6.example.com"],
            "addresses": ["2001:db8::", "2001:db8::/32"],
            "resolution": "STATIC",
            "endpoints": [{"address": "2001:db8::10"}]
        }
    }))
    .await;
}

#[tokio::test]
async fn proxy_config_without_spec_is_admitted() {
    admitted(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
        "metadata": {"name": "empty"}
    }))
    .await;
}

#[tokio::test]
async fn claim_routing_and_a_delay_without_fixed_delay_are_admitted() {
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "claims"},
        "spec": {"hosts": ["reviews"], "http": [
            {"match": [{"headers": {"@request.auth.claims.groups": {"exact": "beta"}}}],
             "fault": {"delay": {"percentage": {"value": 10}}},
             "route": [{"destination": {"host": "reviews"}}]},
            {"route": [{"destination": {"host": "reviews"}}]}
        ]}
    }))
    .await;
    assert_warns(&response, &["spec.http[0].fault.delay", "fixedDelay"]);
}

#[tokio::test]
async fn envoy_filter_with_an_old_name_and_a_typed_config_is_admitted() {
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "lua"},
        "spec": {
            "workloadSelector": {"labels": {"app": "reviews"}},
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
                "patch": {"operation": "INSERT_FIRST", "value": {
                    "name": "envoy.lua",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                        "default_source_code": {"inline_string": "function envoy_on_request(h) end"}
                    }
                }}
            }]
        }
    }))
    .await;
    assert_warns(
        &response,
        &[
            "MK0314",
            "spec.configPatches[0].patch.value.name",
            "envoy.lua",
        ],
    );
    assert!(
        !warnings(&response).iter().any(|w| w.contains("MK0315")),
        "INSERT_FIRST needs no priority: {response}"
    );
}

#[tokio::test]
async fn envoy_filter_matching_an_old_filter_name_is_admitted() {
    // Istio warns: the patch matches nothing, which breaks nothing.
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "old-match"},
        "spec": {
            "workloadSelector": {"labels": {"app": "reviews"}},
            "priority": 10,
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
                    "name": "envoy.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": "envoy.filters.http.lua",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                        "default_source_code": {"inline_string": "function envoy_on_request(h) end"}
                    }
                }}
            }]
        }
    }))
    .await;
    assert_warns(
        &response,
        &[
            "MK0314",
            "spec.configPatches[0].match.listener.filterChain.filter.name",
            "envoy.http_connection_manager",
        ],
    );
}

#[tokio::test]
async fn envoy_filter_with_an_extension_meshkeeper_does_not_list_is_admitted() {
    // A real Envoy extension (geoip) Istio's registry knows: admitted, with
    // a warning that meshkeeper cannot check it.
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "geoip"},
        "spec": {
            "workloadSelector": {"labels": {"app": "reviews"}},
            "priority": 10,
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": "envoy.filters.http.geoip",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.geoip.v3.Geoip",
                        "provider": {"name": "envoy.geoip_providers.maxmind"}
                    }
                }}
            }]
        }
    }))
    .await;
    assert_warns(
        &response,
        &[
            "MK0313",
            "spec.configPatches[0].patch.value.typed_config[\"@type\"]",
            "envoy.extensions.filters.http.geoip.v3.Geoip",
            "not checked",
        ],
    );
}

#[tokio::test]
async fn header_names_istio_accepts_are_admitted_with_a_warning() {
    // Istio checks header operation names only for emptiness, a leading
    // `:` and `host`; `bad:h` is not an HTTP token but is admitted.
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"], "http": [{
            "route": [{"destination": {"host": "reviews"}}],
            "headers": {"request": {"set": {"bad:h": "1", ":authority": "r.example.com"}}}
        }]}
    }))
    .await;
    assert_warns(
        &response,
        &[
            "MK0108",
            "spec.http[0].headers.request.set.bad:h",
            "`bad:h`",
        ],
    );
}

#[tokio::test]
async fn a_subset_without_labels_and_a_static_entry_without_endpoints_are_admitted() {
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {"host": "reviews", "subsets": [{"name": "all",
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}]}
    }))
    .await;
    assert_warns(
        &response,
        &["MK0130", "spec.subsets[0].labels", "every endpoint"],
    );
    let response = admitted(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "db"},
        "spec": {"hosts": ["db.internal"], "resolution": "STATIC",
            "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}]}
    }))
    .await;
    assert_warns(&response, &["MK0150", "spec.endpoints", "no endpoints"]);
}
