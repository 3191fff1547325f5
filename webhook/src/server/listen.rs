//! The accept loop: TCP, then TLS, then HTTP/1.1 or HTTP/2 into the axum
//! router; and the graceful shutdown that stops accepting, lets in-flight
//! requests finish, and gives up after a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::routes::router;
use super::state::State;
use super::tls::{CertFiles, CertResolver, ReloadingCert, TlsError, server_config};

/// Timeouts of the accept loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// After a shutdown signal, how long in-flight requests may take.
    pub grace_period: Duration,
    /// How long a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1 client may take to send request headers.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            // Below the kubelet's default 30 s termination grace period.
            grace_period: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How the last shutdown went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every connection finished within the grace period.
    Graceful,
    /// The grace period ended with connections still open; they are dropped.
    TimedOut,
}

/// Serves `router` over TLS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> Shutdown {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);

    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning on the same error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // Taken before the handshake so a shutdown also waits for (and then
        // closes) connections still shaking hands.
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let handshake_timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "stopped accepting; waiting for in-flight requests"
    );
    match tokio::time::timeout(options.grace_period, graceful.shutdown()).await {
        Ok(()) => Shutdown::Graceful,
        Err(_) => {
            tracing::warn!(
                grace_period = ?options.grace_period,
                "connections still open after the grace period; closing them"
            );
            Shutdown::TimedOut
        }
    }
}

/// Everything [`start`] needs besides the listener and the state.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub cert: CertFiles,
    /// How often the certificate files are checked for a change.
    pub reload_interval: Duration,
    pub serve: ServeOptions,
}

impl ServerOptions {
    pub fn new(cert: CertFiles) -> Self {
        Self {
            cert,
            reload_interval: Duration::from_secs(2),
            serve: ServeOptions::default(),
        }
    }
}

/// A server started by [`start`].
pub struct RunningServer {
    local_addr: SocketAddr,
    cert: ReloadingCert,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Shutdown>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The certificate handshakes get now.
    pub fn cert_resolver(&self) -> &Arc<CertResolver> {
        &self.cert.resolver
    }

    /// Whether the accept loop ended on its own (it only ends on shutdown).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops accepting, waits for in-flight requests (bounded by the grace
    /// period) and reports how that went.
    pub async fn shutdown(mut self) -> Shutdown {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(shutdown) => shutdown,
            Err(e) => {
                tracing::error!(error = %e, "the server task failed");
                Shutdown::TimedOut
            }
        }
    }
}

/// Loads the certificate (failing if it is unusable now), starts watching
/// it for changes, and serves [`router`] for `state` on `listener`.
pub fn start(
    listener: TcpListener,
    state: Arc<State>,
    options: ServerOptions,
) -> Result<RunningServer, StartError> {
    let local_addr = listener.local_addr().map_err(StartError::Listener)?;
    let cert = ReloadingCert::start(options.cert.clone(), options.reload_interval)?;
    let tls = Arc::new(server_config(cert.resolver.clone())?);
    state.mark_tls_loaded();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        tls,
        router(state),
        async move {
            // Sent by `shutdown`, or dropped with the RunningServer: both stop.
            let _ = stopped.await;
        },
        options.serve,
    ));
    Ok(RunningServer {
        local_addr,
        cert,
        stop: Some(stop),
        task,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the listening socket: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}
