//! `meshkeeper-operator`: turns the Mesh into a running mesh installation
//! and keeps every injected namespace's proxy configuration current.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use meshkeeper_operator::controller::{self, Options, http, leader::LeaseSettings};
use meshkeeper_operator::install::Images;
use meshkeeper_webhook::process::{
    LogFormat, init_logging, install_crypto_provider, parse_duration, shutdown_signal,
};

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
    /// A Secret in --namespace the webhook pods pull their image with
    /// (repeat for several).
    #[arg(long = "image-pull-secret")]
    image_pull_secrets: Vec<String>,
    /// Image pull policy of the webhook Deployment.
    #[arg(long, default_value = "IfNotPresent")]
    image_pull_policy: String,
    /// Lifetime of the operator's own CA (rotated at two thirds).
    #[arg(long, default_value = "8760h", value_parser = positive_duration)]
    ca_lifetime: Duration,
    /// Lifetime of webhook serving certificates (renewed at two thirds).
    #[arg(long, default_value = "2160h", value_parser = positive_duration)]
    serving_cert_lifetime: Duration,
    /// A full reconcile pass runs at least this often.
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    resync: Duration,
    /// ConfigMap in --namespace whose `mesh.yaml` (the Helm chart's Mesh)
    /// is applied whenever it changes.
    #[arg(long)]
    mesh_values_config_map: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// A duration above zero: a lifetime or resync period of zero makes no sense.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("{text:?} must be longer than zero")),
        d => Ok(d),
    }
}

// One thread: the operator waits on the API server, never on the CPU, and
// one thread keeps its memory small (one malloc arena, one set of buffers).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    install_crypto_provider();
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
        mesh_values: args.mesh_values_config_map,
        namespace: args.namespace,
        images: Images {
            webhook_repository: args.webhook_image_repository,
            init_repository: args.init_image_repository,
            proxy: args.proxy_image,
            pull_policy: args.image_pull_policy,
            pull_secrets: args.image_pull_secrets,
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
            signal.context("installing the signal handlers")?;
            tracing::info!("shutting down");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_have_the_documented_defaults_and_refuse_zero_durations() {
        let args = Args::try_parse_from(["meshkeeper-operator"]).unwrap();
        assert_eq!(args.namespace, "meshkeeper-system");
        assert_eq!(args.resync, Duration::from_secs(300));
        assert_eq!(
            args.serving_cert_lifetime,
            Duration::from_secs(90 * 24 * 3600)
        );
        assert!(!args.no_leader_election);
        let err = Args::try_parse_from(["meshkeeper-operator", "--resync", "0s"]).unwrap_err();
        assert!(err.to_string().contains("longer than zero"), "{err}");
    }
}
