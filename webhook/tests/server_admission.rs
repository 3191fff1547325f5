//! The admission endpoints over real TLS: answers, bad input, readiness and
//! metrics. The server runs in-process with state fed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshkeeper_webhook::server::{Endpoint, MAX_BODY_BYTES, RequestOutcome, State};
use serde_json::{Value, json};
use server_support::*;

fn decoded_patch(response: &Value) -> Vec<Value> {
    let sent: kube::core::admission::AdmissionResponse =
        serde_json::from_value(response.clone()).unwrap();
    serde_json::from_slice(&sent.patch.expect("a patch")).unwrap()
}

#[tokio::test]
async fn a_pod_in_an_injected_namespace_gets_a_patch_and_its_uid_back() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    let answer = client
        .review(
            "/inject/namespace",
            &review(
                "uid-injected-1",
                pod_kind(),
                pod(json!({"app": "web"}), json!({})),
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    let response = &body["response"];
    assert_eq!(response["uid"], "uid-injected-1");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = serde_json::to_string(&decoded_patch(response)).unwrap();
    assert!(patch.contains("meshkeeper-proxy"), "{patch}");
    assert!(patch.contains("meshkeeper-init"), "{patch}");
}

#[tokio::test]
async fn opted_out_pods_are_allowed_unchanged() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    let answer = client
        .review(
            "/inject/namespace",
            &review(
                "uid-opted-out",
                pod_kind(),
                pod(json!({"sidecar.istio.io/inject": "false"}), json!({})),
            ),
        )
        .await;
    let response = &answer.json()["response"];
    assert_eq!(response["uid"], "uid-opted-out");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn a_bad_annotation_is_denied_naming_annotation_and_value() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    let answer = client
        .review(
            "/inject/object",
            &review(
                "uid-denied",
                pod_kind(),
                pod(
                    json!({"istio.io/rev": "canary"}),
                    json!({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/33"}),
                ),
            ),
        )
        .await;
    let response = &answer.json()["response"];
    assert_eq!(response["uid"], "uid-denied");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("traffic.sidecar.istio.io/excludeOutboundIPRanges")
            && message.contains("10.0.0.0/33"),
        "{message}"
    );
}

#[tokio::test]
async fn an_object_that_is_not_a_pod_is_allowed_with_a_warning() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    let answer = client
        .review(
            "/inject",
            &review(
                "uid-service",
                json!({"group": "", "version": "v1", "kind": "Service"}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                       "spec": {"ports": [{"port": 80}]}}),
            ),
        )
        .await;
    let response = &answer.json()["response"];
    assert_eq!(response["uid"], "uid-service");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("Service") && warning.contains("only handles Pods"),
        "{warning}"
    );
}

#[tokio::test]
async fn malformed_json_and_a_missing_request_are_400_with_the_reason() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;

    let answer = client
        .post(
            "/inject/namespace",
            Some("application/json"),
            b"{\"apiVersion\": ".to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.text().contains("malformed AdmissionReview"),
        "{}",
        answer.text()
    );
    assert!(answer.text().contains("EOF"), "{}", answer.text());

    let answer = client
        .review(
            "/inject/namespace",
            &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text().contains("no `request`"), "{}", answer.text());

    // The connection survives bad input.
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    let body = serde_json::to_vec(&review("u", pod_kind(), pod(json!({}), json!({})))).unwrap();

    let answer = client
        .post("/inject/namespace", Some("text/plain"), body.clone())
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(answer.text().contains("text/plain"), "{}", answer.text());

    let answer = client.post("/inject/namespace", None, body.clone()).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Parameters after the media type are fine.
    let answer = client
        .post(
            "/inject/namespace",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn a_declared_body_over_6_mib_is_413_without_reading_it() {
    let server = TestServer::start(ready_state()).await;
    let mut stream = server.tls_stream().await;
    // Only the head is sent: the server must answer from the declared length.
    let head = format!(
        "POST /inject/namespace HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let (status, body) = raw_exchange(&mut stream, head.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("6 MiB"), "{body}");
}

#[tokio::test]
async fn a_streamed_body_over_6_mib_is_413() {
    let server = TestServer::start(ready_state()).await;
    let mut stream = server.tls_stream().await;
    // Chunked, so the server cannot know the size up front: it must stop
    // reading at the limit. The final chunk is never sent.
    let mut request = b"POST /inject/namespace HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..6 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"1\r\n \r\n");
    let (status, body) = raw_exchange(&mut stream, &request).await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn a_body_of_exactly_6_mib_is_read() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    // Valid JSON padded with whitespace to the limit: read, then reviewed.
    let mut body =
        serde_json::to_vec(&review("uid-big", pod_kind(), pod(json!({}), json!({})))).unwrap();
    body.resize(MAX_BODY_BYTES, b' ');
    let answer = client
        .post("/inject/namespace", Some("application/json"), body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["response"]["uid"], "uid-big");
}

#[tokio::test]
async fn readiness_waits_for_the_revision_and_proxy_configs() {
    let state = Arc::new(State::new(options()));
    let server = TestServer::start(state.clone()).await;
    let mut client = server.connect().await;

    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    let answer = client.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.text().contains("tls certificate: ok"),
        "{}",
        answer.text()
    );
    assert!(
        answer.text().contains("mesh revision: waiting"),
        "{}",
        answer.text()
    );

    // Until then an injection request is refused as unavailable, so the
    // configuration's failurePolicy decides.
    let answer = client
        .review(
            "/inject/namespace",
            &review("u", pod_kind(), pod(json!({}), json!({}))),
        )
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);

    state.apply_revision(&mesh_revision("canary")).unwrap();
    let answer = client.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.text().contains("proxy configs: waiting"),
        "{}",
        answer.text()
    );

    state.set_proxy_configs(Vec::new());
    let answer = client.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer
            .text()
            .contains("virtual services, destination rules, namespaces: waiting"),
        "{}",
        answer.text()
    );

    state.set_validation_view(meshkeeper_webhook::server::ValidationView::default());
    let answer = client.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_outcome() {
    let state = ready_state();
    let server = TestServer::start(state.clone()).await;
    let mut client = server.connect().await;

    let plain = review("a", pod_kind(), pod(json!({}), json!({})));
    let opted_out = review(
        "b",
        pod_kind(),
        pod(json!({"sidecar.istio.io/inject": "false"}), json!({})),
    );
    let bad = review(
        "c",
        pod_kind(),
        pod(
            json!({}),
            json!({"traffic.sidecar.istio.io/excludeInboundPorts": "99999"}),
        ),
    );
    for body in [&plain, &plain, &opted_out, &bad] {
        client.review("/inject/namespace", body).await;
    }
    client
        .post("/inject/object", Some("application/json"), b"[]".to_vec())
        .await;

    let metrics = state.metrics();
    assert_eq!(
        metrics.count(Endpoint::InjectNamespace, RequestOutcome::Injected),
        2
    );
    assert_eq!(
        metrics.count(Endpoint::InjectNamespace, RequestOutcome::Skipped),
        1
    );
    assert_eq!(
        metrics.count(Endpoint::InjectNamespace, RequestOutcome::Denied),
        1
    );
    assert_eq!(
        metrics.count(Endpoint::InjectObject, RequestOutcome::Error),
        1
    );

    let answer = client.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .content_type
            .starts_with("application/openmetrics-text")
    );
    let text = answer.text();
    for line in [
        r#"meshkeeper_webhook_requests_total{endpoint="/inject/namespace",outcome="injected"} 2"#,
        r#"meshkeeper_webhook_requests_total{endpoint="/inject/namespace",outcome="skipped"} 1"#,
        r#"meshkeeper_webhook_requests_total{endpoint="/inject/namespace",outcome="denied"} 1"#,
        r#"meshkeeper_webhook_requests_total{endpoint="/inject/object",outcome="error"} 1"#,
        r#"meshkeeper_webhook_request_duration_seconds_count{endpoint="/inject/namespace"} 4"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn wrong_methods_and_paths_are_refused() {
    let server = TestServer::start(ready_state()).await;
    let mut client = server.connect().await;
    assert_eq!(
        client.get("/inject/namespace").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        client.get("/validate").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(client.get("/mutate").await.status, StatusCode::NOT_FOUND);
}

/// The API server may speak HTTP/2 when ALPN offers it.
#[tokio::test]
async fn reviews_are_answered_over_http2() {
    let server = TestServer::start(ready_state()).await;
    let mut config = (*server.ca.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let stream = tls_connect(server.addr, Arc::new(config)).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let body =
        serde_json::to_vec(&review("uid-h2", pod_kind(), pod(json!({}), json!({})))).unwrap();
    let request = Request::post("https://localhost/inject/namespace")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["response"]["uid"], "uid-h2");
    assert_eq!(body["response"]["allowed"], true);
}
