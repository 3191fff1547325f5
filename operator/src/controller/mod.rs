//! The reconcilers: read the cluster from caches, call the pure builders,
//! apply what they decide. Two loops run under one leader lease:
//! - `mesh`: the Mesh's revisions and everything each installs
//!   (certificates, webhook Deployment, RBAC, webhook configurations), tags,
//!   pruning, outdated proxies and status;
//! - `proxy`: the `meshkeeper-proxy` ConfigMap of every injected namespace.
//!
//! Each loop runs a whole pass when woken by any relevant watch event (many
//! events make one pass) or when its timer fires; a pass that finds nothing
//! to change writes nothing.

pub mod apply;
pub mod cache;
pub mod certificates;
pub mod endpoints;
pub mod http;
pub mod leader;
pub mod mesh;
pub mod metrics;
pub mod proxy;
pub mod readiness;
pub mod status;
pub mod values;
pub mod workloads;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::install::Images;
use apply::Applier;
use cache::{Caches, Triggers};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The operator's namespace: webhook Deployments, Secrets and the lease
    /// live here.
    pub namespace: String,
    pub images: Images,
    /// Lifetime of the operator's CA and of the serving certificates it
    /// issues (renewed at two thirds).
    pub ca_lifetime: Duration,
    pub serving_lifetime: Duration,
    /// A pass runs at least this often even without events.
    pub resync: Duration,
    /// Leader election; `None` runs without (a single replica).
    pub lease: Option<leader::LeaseSettings>,
    /// ConfigMap (in `namespace`) holding the Helm chart's Mesh, applied
    /// when it changes ([`values`]).
    pub mesh_values: Option<String>,
}

/// Shared by the loops.
pub struct Context {
    pub client: kube::Client,
    pub options: Options,
    pub caches: Caches,
    pub applier: Applier,
    pub triggers: Triggers,
    /// Problems the proxy loop found (malformed ProxyConfigs), reported in
    /// the Mesh status by the mesh loop.
    pub proxy_problems: std::sync::Mutex<Vec<String>>,
    /// The caBundle last published in every webhook configuration.
    pub published: certificates::Published,
    /// Workloads restarted for outdated proxies that still have some.
    pub restarted:
        std::sync::Mutex<std::collections::BTreeSet<crate::revisions::restarts::Workload>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("a watch stopped before its first list: {0}")]
    Cache(#[from] kube::runtime::reflector::store::WriterDropped),
    #[error("the leader lease was lost")]
    LeaseLost,
}

/// Runs the operator until leadership is lost.
pub async fn run(
    client: kube::Client,
    options: Options,
    health: http::Health,
) -> Result<(), RunError> {
    let triggers = Triggers::default();
    let caches = Caches::start(
        &client,
        &options.namespace,
        options.mesh_values.as_deref(),
        &triggers,
    );
    caches.wait_synced().await?;
    health.mark_synced();
    tracing::info!("caches synced");

    let lease_lost = match options.lease.clone() {
        Some(lease) => {
            leader::acquire(&client, &lease).await;
            Some(tokio::spawn(leader::keep(client.clone(), lease)))
        }
        None => None,
    };
    let context = Arc::new(Context {
        applier: Applier::new(client.clone()),
        client,
        options,
        caches,
        triggers: triggers.clone(),
        proxy_problems: std::sync::Mutex::new(Vec::new()),
        published: certificates::Published::default(),
        restarted: std::sync::Mutex::new(std::collections::BTreeSet::new()),
    });
    let resync = context.options.resync;
    let mesh_context = context.clone();
    let mesh_loop = tokio::spawn(run_loop("mesh", triggers.mesh.clone(), resync, move || {
        mesh::reconcile(mesh_context.clone())
    }));
    let proxy_context = context.clone();
    let proxy_loop = tokio::spawn(run_loop(
        "proxy",
        triggers.proxy.clone(),
        resync,
        move || proxy::reconcile(proxy_context.clone()),
    ));
    match lease_lost {
        Some(lost) => {
            let _ = lost.await;
            mesh_loop.abort();
            proxy_loop.abort();
            Err(RunError::LeaseLost)
        }
        None => {
            let _ = tokio::join!(mesh_loop, proxy_loop);
            Ok(())
        }
    }
}

/// Events that arrive within this window after a wake-up join its pass.
const COALESCE: Duration = Duration::from_millis(100);
/// Wait after a failed pass before the next (doubling up to a minute).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Runs `pass` whenever `wake` fires, its own requested delay passes, or
/// `resync` elapses. A pass returns when it wants to run again at the
/// latest (e.g. a certificate renewal or a grace period ending).
async fn run_loop<F, Fut, E>(name: &'static str, wake: Arc<Notify>, resync: Duration, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Duration>, E>>,
    E: std::fmt::Display,
{
    let mut backoff = FIRST_BACKOFF;
    let mut next = Duration::ZERO;
    loop {
        let _ = tokio::time::timeout(next, wake.notified()).await;
        tokio::time::sleep(COALESCE).await;
        match pass().await {
            Ok(requested) => {
                metrics::count_pass(name, true);
                backoff = FIRST_BACKOFF;
                next = requested.map_or(resync, |r| r.min(resync));
            }
            Err(error) => {
                metrics::count_pass(name, false);
                tracing::warn!(loop_name = name, error = %error, retry_in = ?backoff, "reconcile pass failed");
                next = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
