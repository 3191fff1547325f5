//! `meshctl`: meshkeeper's command line.
//!
//! `meshctl analyze -f PATH... [--cluster] [--kubeconfig PATH]` runs the
//! validating webhook's checks on manifests, optionally together with what a
//! cluster holds; `meshctl kube-inject -f FILE` injects the sidecar into the
//! workloads of a manifest offline, with the same library the webhook uses;
//! `meshctl webhook-config` prints the injector's and the validator's
//! webhook configurations for a webhook running outside the cluster;
//! `meshctl proxy-config` prints what a proxy would receive, compiled
//! offline, or with `--diff` what a set of manifests would change in it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_crds::meshkeeper::mesh_revision::{MeshRevision, MeshRevisionSpec};
use meshkeeper_crds::parse;
use meshkeeper_webhook::configuration::{
    InjectorWebhook, Target, ValidatorWebhook, mutating_webhook_configuration,
    validating_webhook_configuration,
};
use meshkeeper_webhook::inject::Settings;

mod analyze;
mod cluster;
mod kube_inject;
mod manifests;
mod proxy_config;
mod workloads;

#[derive(Parser)]
#[command(name = "meshctl", version, about = "meshkeeper's command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every check of the validating webhook on manifests (files or
    /// folders), the objects judged together. Prints each finding with its
    /// code, object, field path and message; exits non-zero on any error.
    Analyze {
        /// Files or folders of YAML/JSON manifests; `-` reads standard
        /// input. A file named here is read whatever its extension; in a
        /// folder only `.yaml`, `.yml` and `.json` files are.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Namespace for objects that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Also read the VirtualServices, DestinationRules, Gateways and
        /// ServiceEntries the cluster holds (all namespaces), its Services,
        /// running Pods and Secrets (when allowed), and judge the files
        /// together with them; the files' objects replace cluster objects
        /// of the same name. Only then are destination hosts without a
        /// Service reported, and subsets that select no running pod.
        /// Uses --kubeconfig, else KUBECONFIG or ~/.kube/config. Without
        /// it (and without --kubeconfig) the analysis is purely offline.
        #[arg(long)]
        cluster: bool,
        /// Kubeconfig of the cluster to read; implies --cluster.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
    },
    /// Inject the sidecar into Pods, Deployments, StatefulSets, DaemonSets,
    /// ReplicaSets, ReplicationControllers, Jobs, CronJobs, OpenShift
    /// DeploymentConfigs and Lists of them; other documents pass through
    /// unchanged, each named on stderr. Writes YAML to stdout, notes to stderr.
    KubeInject {
        /// Manifest to read (multi-document YAML or JSON); `-` for stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// A Mesh manifest whose settings to inject with (default: built-in defaults).
        #[arg(long)]
        mesh: Option<PathBuf>,
        /// Revision recorded on injected pods.
        #[arg(long, default_value = "default")]
        revision: String,
        #[arg(long, default_value = meshkeeper_webhook::inject::DEFAULT_INIT_IMAGE)]
        init_image: String,
        #[arg(long, default_value = meshkeeper_webhook::inject::DEFAULT_PROXY_IMAGE)]
        proxy_image: String,
        /// Whether the target cluster runs native sidecars (Kubernetes 1.33+).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        native_sidecars_supported: bool,
    },
    /// Print what a proxy would receive (listeners, routes, clusters,
    /// endpoints), compiled offline from manifests (and, with --cluster,
    /// the cluster's objects): summary tables, or the Envoy configuration
    /// with -o json|yaml. With --diff FILES, what those files would change
    /// in it (exit code 0: no change, 1: changes, 2: trouble).
    ProxyConfig(proxy_config::Args),
    /// Print the MutatingWebhookConfiguration and the
    /// ValidatingWebhookConfiguration of a revision whose webhook runs
    /// outside the cluster at an HTTPS URL (development, demos). The
    /// operator writes the in-cluster one.
    WebhookConfig {
        /// Base URL of the webhook, e.g. https://127.0.0.1:9443.
        #[arg(long)]
        url: String,
        /// PEM file of the CA that signed the webhook's certificate.
        #[arg(long)]
        ca_bundle_file: PathBuf,
        #[arg(long, default_value = "default")]
        revision: String,
        /// meshkeeper's own namespace (never injected).
        #[arg(long, default_value = "meshkeeper-system")]
        namespace: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::ProxyConfig(args) => {
            let code = match proxy_config::run(&args) {
                Ok(proxy_config::Outcome::Changed) => 1,
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    // `diff`'s convention: 1 means "differs", trouble is 2.
                    if args.diff.is_some() { 2 } else { 1 }
                }
            };
            std::process::exit(code);
        }
        Command::Analyze {
            paths,
            namespace,
            cluster,
            kubeconfig,
        } => {
            let (networking, workloads) = if cluster || kubeconfig.is_some() {
                let listed = cluster::objects(kubeconfig.as_deref())?;
                let workloads = workloads::Workloads::from_cluster(
                    &listed.services,
                    &listed.pods,
                    listed.secrets.as_deref(),
                );
                (listed.networking, workloads)
            } else {
                (Vec::new(), workloads::Workloads::default())
            };
            let reports = analyze::analyze(&paths, &namespace, &networking, workloads);
            for report in &reports {
                println!("{report}");
            }
            let errors = reports
                .iter()
                .filter(|r| r.finding.severity == meshkeeper_webhook::validate::Severity::Error)
                .count();
            println!("{errors} error(s), {} warning(s)", reports.len() - errors);
            if errors > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::KubeInject {
            file,
            mesh,
            revision,
            init_image,
            proxy_image,
            native_sidecars_supported,
        } => {
            let settings = settings(
                mesh.as_deref(),
                &revision,
                &init_image,
                &proxy_image,
                native_sidecars_supported,
            )?;
            let text = read_input(&file)?;
            let docs = parse::yaml_documents(&text)
                .with_context(|| format!("reading {}", file.display()))?;
            let injected = kube_inject::inject_documents(docs, &settings)?;
            for note in &injected.notes {
                eprintln!("meshctl: {note}");
            }
            let yaml =
                serde_saphyr::to_string_multiple(&injected.documents).context("writing YAML")?;
            print!("{yaml}");
            Ok(())
        }
        Command::WebhookConfig {
            url,
            ca_bundle_file,
            revision,
            namespace,
        } => {
            let ca = std::fs::read(&ca_bundle_file)
                .with_context(|| format!("reading {}", ca_bundle_file.display()))?;
            let validator = ValidatorWebhook::new(&revision, Target::Url(url.clone()), ca.clone());
            let injector = InjectorWebhook::new(revision, namespace, Target::Url(url), ca);
            let mutating = mutating_webhook_configuration(&injector)?;
            let validating = validating_webhook_configuration(&validator)?;
            print!(
                "{}---\n{}",
                serde_saphyr::to_string(&mutating).context("writing YAML")?,
                serde_saphyr::to_string(&validating).context("writing YAML")?
            );
            Ok(())
        }
    }
}

fn read_input(file: &std::path::Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(text)
}

/// The injection settings: a Mesh manifest's, or the defaults.
fn settings(
    mesh: Option<&std::path::Path>,
    revision: &str,
    init_image: &str,
    proxy_image: &str,
    native_sidecars_supported: bool,
) -> anyhow::Result<Settings> {
    let mut spec = MeshRevisionSpec {
        mesh: "offline".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    if let Some(path) = mesh {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let docs =
            parse::yaml_documents(&text).with_context(|| format!("reading {}", path.display()))?;
        let [doc] = docs.as_slice() else {
            bail!(
                "{} must hold exactly one Mesh, it holds {} documents",
                path.display(),
                docs.len()
            );
        };
        let mesh: Mesh = parse::from_value(doc)
            .with_context(|| format!("{} is not a valid Mesh", path.display()))?;
        spec.version = mesh.spec.version;
        spec.config = mesh.spec.config;
    }
    let rev = MeshRevision::new(revision, spec);
    Ok(Settings::from_revision(
        &rev,
        "meshkeeper-system",
        init_image,
        proxy_image,
        native_sidecars_supported,
    ))
}
