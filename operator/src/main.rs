//! `meshkeeper-operator`: turns the Mesh into a running mesh installation
//! and keeps every injected namespace's proxy configuration current.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use meshkeeper_operator::controller::{self, Options, http, leader::LeaseSettings};
use meshkeeper_operator::install::Images;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// meshkeeper's operator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The operator's namespace (webhook Deployments, Secrets, the lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "meshkeeper-system")]
    namespace: String,
    /// This replica's name in the leader lease.
    #[arg(long, env = "POD_NAME", default_value = "meshkeeper-operator")]
    identity: String,
    /// Run without leader election (only ever one replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Webhook image repository; the tag is the revision's version.
    #[arg(long, default_value = Images::DEFAULT_WEBHOOK_REPOSITORY)]
    webhook_image_repository: String,
    /// Init container image repository; the tag is the revision's version.
    #[arg(long, default_value = Images::DEFAULT_INIT_REPOSITORY)]
    init_image_repository: String,
    /// Envoy image when the Mesh names none.
    #[arg(long, default_value = meshkeeper_webhook::inject::DEFAULT_PROXY_IMAGE)]
    proxy_image: String,
    /// Image pull policy of the webhook Deployment.
    #[arg(long, default_value = "IfNotPresent")]
    image_pull_policy: String,
    /// Lifetime of the operator's own CA (rotated at two thirds).
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    ca_lifetime: Duration,
    /// Lifetime of webhook serving certificates (renewed at two thirds).
    #[arg(long, default_value = "2160h", value_parser = parse_duration)]
    serving_cert_lifetime: Duration,
    /// A full reconcile pass runs at least this often.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    resync: Duration,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Reads `90s`, `5m`, `2h`, `500ms` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (expected e.g. 500ms, 90s, 5m, 2h)");
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (KUBECONFIG or in-cluster configuration)")?;

    let health = http::Health::default();
    let http_listen = args.http_listen;
    let server_health = health.clone();
    let listener = tokio::net::TcpListener::bind(http_listen)
        .await
        .with_context(|| format!("listening on {http_listen} (--http-listen)"))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, http::router(server_health)).await {
            tracing::error!(%error, "the health and metrics server stopped");
        }
    });

    let options = Options {
        lease: (!args.no_leader_election).then(|| LeaseSettings {
            namespace: args.namespace.clone(),
            name: "meshkeeper-operator".to_owned(),
            identity: args.identity.clone(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }),
        namespace: args.namespace,
        images: Images {
            webhook_repository: args.webhook_image_repository,
            init_repository: args.init_image_repository,
            proxy: args.proxy_image,
            pull_policy: args.image_pull_policy,
        },
        ca_lifetime: args.ca_lifetime,
        serving_lifetime: args.serving_cert_lifetime,
        resync: args.resync,
    };
    tracing::info!(namespace = %options.namespace, "starting");
    tokio::select! {
        result = controller::run(client, options, health) => {
            result.context("the operator stopped")?;
        }
        signal = shutdown_signal() => {
            signal?;
            tracing::info!("shutting down");
        }
    }
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
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("soon") && err.contains("5m"), "{err}");
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
