//! `meshkeeper-webhook`: the sidecar injector of one mesh revision.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use meshkeeper_webhook::inject::{DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE};
use meshkeeper_webhook::process::{
    LogFormat, init_logging, install_crypto_provider, parse_duration, shutdown_signal,
};
use meshkeeper_webhook::server::{self, CertFiles, ServerOptions, State, StateOptions};
use tokio::net::TcpListener;

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
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    cert_reload_interval: Duration,
    /// How long in-flight requests may take after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    shutdown_grace_period: Duration,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    install_crypto_provider();

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

    shutdown_signal()
        .await
        .context("installing the signal handlers")?;
    tracing::info!("shutting down");
    revision_watch.abort();
    proxy_config_watch.abort();
    validation_watch.abort();
    let outcome = running.shutdown().await;
    tracing::info!(?outcome, "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
