//! `meshkeeper-webhook`: the sidecar injector of one mesh revision.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use meshkeeper_webhook::inject::{DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE};
use meshkeeper_webhook::server::{self, CertFiles, ServerOptions, State, StateOptions};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// meshkeeper's sidecar injection webhook for one mesh revision.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// PEM certificate chain, server certificate first; reloaded on change.
    #[arg(long)]
    tls_cert_file: PathBuf,
    /// PEM private key of the certificate; reloaded on change.
    #[arg(long)]
    tls_key_file: PathBuf,
    /// Name of the MeshRevision whose settings this webhook injects with.
    #[arg(long, default_value = "default")]
    revision: String,
    /// meshkeeper's own namespace (never injected).
    #[arg(long, env = "POD_NAMESPACE", default_value = "meshkeeper-system")]
    namespace: String,
    /// Image of the `meshkeeper-init` container.
    #[arg(long, default_value = DEFAULT_INIT_IMAGE)]
    init_image: String,
    /// Proxy image when the MeshRevision names none.
    #[arg(long, default_value = DEFAULT_PROXY_IMAGE)]
    proxy_image: String,
    /// How often the certificate files are checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_seconds)]
    cert_reload_interval: Duration,
    /// How long in-flight requests may take after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = parse_seconds)]
    shutdown_grace_period: Duration,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Reads `2s`, `500ms` or a bare number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (expected e.g. 2s, 500ms or 2)");
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    let secs = text.strip_suffix('s').unwrap_or(text);
    secs.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colours only for a person at a terminal, not for a log collector.
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    // Once, before any TLS object exists: kube's client and our server
    // both run on ring.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (KUBECONFIG or in-cluster configuration)")?;
    let native_sidecars_supported = match server::watch::detect_native_sidecars(&client).await {
        Ok(supported) => supported,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot tell the Kubernetes version; assuming no native sidecars");
            false
        }
    };

    let state = Arc::new(State::new(StateOptions {
        revision: args.revision.clone(),
        own_namespace: args.namespace.clone(),
        init_image: args.init_image.clone(),
        proxy_image: args.proxy_image.clone(),
        native_sidecars_supported,
    }));
    let revision_watch = tokio::spawn(server::watch::watch_revision(client.clone(), state.clone()));
    let validation_watch = tokio::spawn(server::watch::watch_validation_view(
        client.clone(),
        state.clone(),
    ));
    let proxy_config_watch =
        tokio::spawn(server::watch::watch_proxy_configs(client, state.clone()));

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    let mut options = ServerOptions::new(CertFiles::new(&args.tls_cert_file, &args.tls_key_file));
    options.reload_interval = args.cert_reload_interval;
    options.serve.grace_period = args.shutdown_grace_period;
    let running = server::start(listener, state, options)
        .context("loading the serving certificate (--tls-cert-file, --tls-key-file)")?;
    tracing::info!(
        address = %running.local_addr(),
        revision = %args.revision,
        native_sidecars_supported,
        "serving"
    );

    shutdown_signal().await?;
    tracing::info!("shutting down");
    revision_watch.abort();
    proxy_config_watch.abort();
    validation_watch.abort();
    let outcome = running.shutdown().await;
    tracing::info!(?outcome, "stopped");
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_or_say_what_is_expected() {
        assert_eq!(parse_seconds("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        let err = parse_seconds("soon").unwrap_err();
        assert!(err.contains("soon") && err.contains("500ms"), "{err}");
        assert!(parse_seconds("-1s").is_err());
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let args = Args::try_parse_from([
            "meshkeeper-webhook",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
        ])
        .unwrap();
        assert_eq!(args.listen, "0.0.0.0:9443".parse().unwrap());
        assert_eq!(args.revision, "default");
        assert_eq!(args.init_image, DEFAULT_INIT_IMAGE);
        assert_eq!(args.proxy_image, DEFAULT_PROXY_IMAGE);
        assert!(matches!(args.log_format, LogFormat::Text));
    }
}
