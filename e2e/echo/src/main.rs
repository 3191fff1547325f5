//! `meshkeeper-echo`: the test app behind every traffic scenario. Each
//! answer says who answered (pod, namespace, version) and what arrived
//! (method, path, authority, headers) as JSON, over HTTP/1.1 and HTTP/2
//! (cleartext, prior knowledge or upgrade-free), on every `--port`.
//!
//! It can be told to misbehave, per request or for the next N requests:
//! - header `x-echo-status: 503` answers with that status;
//! - header `x-echo-delay-ms: 1500` waits before answering;
//! - `POST /echo/fail?count=N&status=503` fails the next N requests;
//! - `POST /echo/delay?count=N&ms=M` delays the next N requests.
//!
//! Who it is comes from `POD_NAME`/`HOSTNAME`, `POD_NAMESPACE` (or the
//! service-account namespace file) and `VERSION` (or `-vN-` in the pod name,
//! which is how Bookinfo's pods are named).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Echo test app: answers with who it is and what it received")]
struct Args {
    /// Ports to listen on (all addresses); repeat for several.
    #[arg(long = "port", default_values_t = [8080u16])]
    ports: Vec<u16>,
}

/// Who answers.
struct Identity {
    pod: String,
    namespace: String,
    version: String,
}

/// Misbehaviour ordered for the next requests.
#[derive(Default)]
struct Orders {
    fail: Option<(u64, u16)>,
    delay: Option<(u64, u64)>,
}

struct App {
    me: Identity,
    orders: Mutex<Orders>,
    served: AtomicU64,
}

fn identity() -> Identity {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let pod = var("POD_NAME")
        .or_else(|| var("HOSTNAME"))
        .unwrap_or_else(|| "unknown".into());
    let namespace = var("POD_NAMESPACE")
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .unwrap_or_else(|| "unknown".into());
    let version = var("VERSION")
        .or_else(|| version_in_name(&pod))
        .unwrap_or_else(|| "unknown".into());
    Identity {
        pod,
        namespace,
        version,
    }
}

/// `reviews-v2-6f9b8c-x7k2p` → `v2`.
fn version_in_name(pod: &str) -> Option<String> {
    pod.split('-')
        .find(|p| p.len() > 1 && p.starts_with('v') && p[1..].chars().all(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Arc::new(App {
        me: identity(),
        orders: Mutex::new(Orders::default()),
        served: AtomicU64::new(0),
    });
    let mut servers = Vec::new();
    for port in args.ports {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!(
            "meshkeeper-echo: {} ({}, {}) listening on {addr}",
            app.me.pod, app.me.namespace, app.me.version
        );
        servers.push(tokio::spawn(accept(listener, app.clone())));
    }
    for s in servers {
        s.await??;
    }
    Ok(())
}

async fn accept(listener: TcpListener, app: Arc<App>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(app.clone(), req, peer));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::POST && req.uri().path().starts_with("/echo/") {
        return Ok(control(&app, &req).await);
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |k: &str| headers.get(k).and_then(|v| v.parse::<u64>().ok());
    let (mut status, mut delay_ms) = (header("x-echo-status"), header("x-echo-delay-ms"));
    {
        let mut orders = app.orders.lock().await;
        if let Some((left, code)) = orders.fail.take() {
            status = status.or(Some(u64::from(code)));
            orders.fail = (left > 1).then_some((left - 1, code));
        }
        if let Some((left, ms)) = orders.delay.take() {
            delay_ms = delay_ms.or(Some(ms));
            orders.delay = (left > 1).then_some((left - 1, ms));
        }
    }
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| headers.get("host").cloned())
        .unwrap_or_default();
    let protocol = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let served = app.served.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = serde_json::json!({
        "pod": app.me.pod,
        "namespace": app.me.namespace,
        "version": app.me.version,
        "method": method,
        "uri": uri,
        "authority": authority,
        "protocol": protocol,
        "peer": peer.to_string(),
        "headers": headers,
        "bodyBytes": body.len(),
        "served": served,
    });
    let code = status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    Ok(json(code, &answer))
}

async fn control(app: &App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let query: BTreeMap<&str, &str> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |k: &str, d: u64| {
        query
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(d)
    };
    let count = num("count", 1);
    let mut orders = app.orders.lock().await;
    match req.uri().path() {
        "/echo/fail" => {
            let code = u16::try_from(num("status", 503)).unwrap_or(503);
            orders.fail = Some((count, code));
        }
        "/echo/delay" => orders.delay = Some((count, num("ms", 1000))),
        "/echo/reset" => *orders = Orders::default(),
        other => {
            let msg = format!(
                "unknown control path {other:?}; use /echo/fail?count=N&status=S, /echo/delay?count=N&ms=M or /echo/reset"
            );
            return json(StatusCode::NOT_FOUND, &serde_json::json!({ "error": msg }));
        }
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "pod": app.me.pod, "ordered": req.uri().to_string() }),
    )
}

fn json(code: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_bookinfo_style_names() {
        assert_eq!(
            version_in_name("reviews-v2-6f9b8c-x7k2p").as_deref(),
            Some("v2")
        );
        assert_eq!(version_in_name("productpage-v1-abc").as_deref(), Some("v1"));
        assert_eq!(version_in_name("client-7d9f").as_deref(), None);
        assert_eq!(version_in_name("v-x").as_deref(), None);
    }
}
