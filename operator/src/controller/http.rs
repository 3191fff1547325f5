//! The operator's own HTTP endpoint: liveness, readiness (caches synced)
//! and Prometheus metrics. Plain HTTP: it carries no secrets and is only
//! scraped and probed inside the cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// Set once every cache has its first full list.
#[derive(Clone, Default)]
pub struct Health {
    synced: Arc<AtomicBool>,
}

impl Health {
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.is_synced() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches are not synced yet")
    }
}

async fn metrics() -> (StatusCode, String) {
    match super::metrics::encode() {
        Ok(text) => (StatusCode::OK, text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics".to_owned(),
        ),
    }
}

pub async fn serve(address: SocketAddr, health: Health) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router(health)).await
}
