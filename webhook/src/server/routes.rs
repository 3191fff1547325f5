//! The HTTP surface: admission endpoints with bounded body reads, health,
//! readiness and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::metrics::{Endpoint, RequestOutcome};
use super::review::{self, Reply};
use super::state::State;
use super::validate_review;
use crate::inject::Scope;

/// The largest AdmissionReview accepted. The API server's own request limit
/// is smaller (3 MiB objects), so only a broken or hostile client hits it.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// How long a client may take to send the body. The API server gives up
/// after the webhook timeout (at most 30 s) anyway.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(
            Endpoint::Inject.path(),
            post(|s, h, b| admit(s, h, b, Endpoint::Inject, Scope::Namespace)),
        )
        .route(
            Endpoint::InjectNamespace.path(),
            post(|s, h, b| admit(s, h, b, Endpoint::InjectNamespace, Scope::Namespace)),
        )
        .route(
            Endpoint::InjectObject.path(),
            post(|s, h, b| admit(s, h, b, Endpoint::InjectObject, Scope::Object)),
        )
        .route(Endpoint::Validate.path(), post(validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn admit(
    state: Extract<Arc<State>>,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
    scope: Scope,
) -> Response {
    answer(state, headers, body, endpoint, |bytes, state| {
        review::review(bytes, scope, state)
    })
    .await
}

async fn validate(state: Extract<Arc<State>>, headers: HeaderMap, body: Body) -> Response {
    answer(
        state,
        headers,
        body,
        Endpoint::Validate,
        validate_review::review,
    )
    .await
}

/// Reads the body, answers it with `review`, counts and logs the outcome.
async fn answer(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
    review: impl FnOnce(&[u8], &State) -> Reply,
) -> Response {
    let started = Instant::now();
    let reply = match read_json_body(&headers, body).await {
        Ok(bytes) => review(&bytes, &state),
        Err(reply) => reply,
    };
    let took = started.elapsed();
    state.metrics().record(endpoint, reply.outcome, took);
    if reply.outcome == RequestOutcome::Error {
        tracing::warn!(
            endpoint = endpoint.path(),
            status = reply.status.as_u16(),
            reason = %String::from_utf8_lossy(&reply.body).trim_end(),
            "admission request failed"
        );
    } else {
        tracing::debug!(
            endpoint = endpoint.path(),
            outcome = reply.outcome.as_str(),
            micros = took.as_micros() as u64,
            "admission request answered"
        );
    }
    into_response(reply)
}

fn into_response(reply: Reply) -> Response {
    (
        reply.status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(reply.content_type),
        )],
        reply.body,
    )
        .into_response()
}

/// Checks the content type and reads at most [`MAX_BODY_BYTES`]; never
/// buffers more, whatever the client claims or sends.
async fn read_json_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Reply> {
    check_content_type(headers)?;
    if let Some(length) = declared_length(headers)
        && length > MAX_BODY_BYTES as u64
    {
        return Err(too_large());
    }
    let limited = Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
        Err(_) => Err(Reply::error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Reply> {
    let value = headers.get(header::CONTENT_TYPE);
    let media_type = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match media_type {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(Reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type must be application/json, got {}",
                value.map_or_else(
                    || "none".to_string(),
                    |v| format!("{:?}", String::from_utf8_lossy(v.as_bytes()))
                )
            ),
        )),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large() -> Reply {
    Reply::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body exceeds {MAX_BODY_BYTES} bytes (6 MiB)"),
    )
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the certificate, the revision, the ProxyConfigs and the
/// validation view are loaded.
async fn readyz(Extract(state): Extract<Arc<State>>) -> Response {
    let readiness = state.readiness();
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, readiness.to_string()).into_response()
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    match state.metrics().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
            .into_response(),
    }
}
