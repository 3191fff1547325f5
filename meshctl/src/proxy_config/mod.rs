//! `meshctl proxy-config`: what a proxy would receive (listeners, routes,
//! clusters, endpoints), compiled offline from manifests and/or a
//! cluster's objects with meshkeeper's compiler; with `--diff`, what a set
//! of manifests would change in it before it is applied.

mod checks;
mod describe;
mod diff;
mod inputs;
mod select;
mod state;
mod summary;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshkeeper_compiler::{
    Proxy, ProxyKind, Snapshot, binding, compile, destination_rule, names, offline,
};
use serde_json::Value;

use self::inputs::Input;
use self::select::Target;
use self::summary::Sources;

/// Which resources to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    All,
    Listeners,
    Routes,
    Clusters,
    Endpoints,
}

impl Part {
    fn key(self) -> Option<&'static str> {
        match self {
            Part::All => None,
            Part::Listeners => Some("listeners"),
            Part::Routes => Some("routes"),
            Part::Clusters => Some("clusters"),
            Part::Endpoints => Some("endpoints"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Summary tables (with --diff: the list of changes).
    Short,
    /// The Envoy configuration as Envoy's JSON (with --diff: the changes).
    Json,
    /// The same as YAML.
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to print: all, listeners, routes, clusters or endpoints. Give
    /// it before -f, whose list of paths takes every word after it.
    #[arg(value_enum, default_value_t = Part::All)]
    pub part: Part,
    /// Manifests (files, folders, `-` for stdin) the mesh is made of: the
    /// Services, Deployments and networking objects you would apply. Pods,
    /// ClusterIPs and EndpointSlices a cluster would add are made up (see
    /// README: pods get IPs in 198.18.0.0/16, Services in 198.19.0.0/16).
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// The sidecar to compile for: NAMESPACE/POD, or a unique prefix of the
    /// pod's name, or the name of the Deployment (StatefulSet, …) running it.
    #[arg(long, value_name = "NS/NAME", required_unless_present = "gateway")]
    pub pod: Option<String>,
    /// The gateway proxy to compile for: NAMESPACE/POD (as --pod), or a
    /// Gateway object's NAMESPACE/NAME (the pod its selector picks, or a
    /// stand-in proxy with its selector's labels).
    #[arg(long, value_name = "NS/NAME", conflicts_with = "pod")]
    pub gateway: Option<String>,
    /// Namespace for objects that name none, and for --pod/--gateway NAME.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Short)]
    pub output: Output,
    /// Show what these manifests change for the proxy instead: the
    /// configuration of -f (and the cluster's objects with --cluster)
    /// compared with the same plus these files, whose objects replace
    /// those of the same kind, namespace and name. Exit code 0: no change,
    /// 1: changes, 2: trouble (as `diff`).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub diff: Option<Vec<PathBuf>>,
    /// Start from the cluster's VirtualServices, DestinationRules,
    /// Gateways, ServiceEntries, Services, EndpointSlices and running Pods
    /// (all namespaces); -f files are laid over them. Uses --kubeconfig,
    /// else KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    pub cluster: bool,
    /// Kubeconfig of the cluster to read; implies --cluster.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

/// How the command ended, for its exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Printed,
    Unchanged,
    Changed,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let with_cluster = args.cluster || args.kubeconfig.is_some();
    if args.paths.is_empty() && !with_cluster {
        bail!(
            "nothing to compile: give manifests with -f PATH... or read the cluster with --cluster"
        );
    }
    let mut base = Vec::new();
    if with_cluster {
        let objects = crate::cluster::mesh_objects(args.kubeconfig.as_deref())?;
        base.extend(objects.into_iter().map(|value| Input {
            origin: "cluster".into(),
            value,
        }));
    }
    let files = inputs::read(&args.paths, &args.namespace)?;
    let base = inputs::overlay(&base, &files);
    let target = target(args)?;
    match &args.diff {
        None => show(&base, &target, args),
        Some(paths) => {
            let change = inputs::read(paths, &args.namespace)?;
            compare(&base, &inputs::overlay(&base, &change), &target, args)
        }
    }
}

fn target(args: &Args) -> anyhow::Result<Target> {
    match (&args.pod, &args.gateway) {
        (Some(pod), _) => Target::parse(ProxyKind::Sidecar, pod, &args.namespace),
        (None, Some(gateway)) => Target::parse(ProxyKind::Gateway, gateway, &args.namespace),
        (None, None) => bail!("name the proxy with --pod NS/NAME or --gateway NS/NAME"),
    }
}

/// A proxy's configuration as Envoy JSON, with what made its routes and
/// clusters.
struct Compiled {
    config: Value,
    sources: Sources,
    /// The compiler's warnings and the routes to clusters the proxy lacks.
    warnings: Vec<String>,
}

fn compiled(inputs: &[Input], target: &Target) -> anyhow::Result<Compiled> {
    let state = state::build(inputs)?;
    let proxy = select::proxy(&state, target)?;
    let config = compile(&state.snapshot, &proxy)
        .with_context(|| format!("compiling the configuration of {}", describe_proxy(&proxy)))?;
    let json = config
        .to_json()
        .context("rendering the configuration as Envoy JSON")?;
    let mut warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    warnings.extend(checks::missing_clusters(&json));
    let mut sources = sources(&state.snapshot, &proxy);
    if proxy.kind == ProxyKind::Gateway {
        sources.virtual_services = gateway_virtual_services(&state, &proxy, &json);
    }
    Ok(Compiled {
        config: json,
        sources,
        warnings,
    })
}

fn describe_proxy(proxy: &Proxy) -> String {
    let kind = match proxy.kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Gateway => "gateway",
    };
    format!("the {kind} of {}/{}", proxy.namespace, proxy.name)
}

/// `namespace/name`.
fn object_name(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The VirtualService and DestinationRule behind each service the proxy
/// sees (VirtualServices for sidecars only: a gateway's routes come from
/// the VirtualServices bound to its Gateways).
fn sources(snapshot: &Snapshot, proxy: &Proxy) -> Sources {
    let mut sources = Sources::default();
    for service in snapshot.visible_services(&proxy.namespace) {
        let host = &service.hostname;
        if proxy.kind == ProxyKind::Sidecar
            && let Some(vs) = offline::virtual_service_for(snapshot, proxy, host)
        {
            sources
                .virtual_services
                .insert(host.clone(), object_name(&vs.metadata));
        }
        if let Some(dr) =
            destination_rule::for_host(snapshot, &proxy.namespace, host, &service.namespace)
        {
            sources
                .destination_rules
                .insert(host.clone(), object_name(&dr.metadata));
        }
    }
    sources
}

/// For a gateway proxy: per virtual host (`bookinfo.example.com`, `*`),
/// the VirtualServices bound to the Gateways selecting the proxy whose
/// hosts meet it (a gateway merges them into one virtual host).
fn gateway_virtual_services(
    state: &state::State,
    proxy: &Proxy,
    config: &Value,
) -> BTreeMap<String, String> {
    let scope: Vec<String> = state
        .gateways
        .iter()
        .filter(|g| {
            let selector = g["spec"]["selector"].as_object();
            selector.is_some_and(|s| {
                s.iter()
                    .all(|(k, v)| proxy.labels.get(k).map(String::as_str) == v.as_str())
            })
        })
        .map(state::namespaced_name)
        .collect();
    let domain = &state.snapshot.mesh.cluster_domain;
    let hosts = config["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["virtual_hosts"].as_array().into_iter().flatten())
        .filter_map(|h| h["name"].as_str())
        .map(|name| name.rsplit_once(':').map_or(name, |(host, _)| host));
    let mut out = BTreeMap::new();
    for host in hosts {
        let names: Vec<String> = binding::bound(&state.snapshot, proxy, &scope)
            .filter(|vs| {
                binding::hosts(vs, domain)
                    .iter()
                    .any(|h| names::host_matches(h, host) || names::host_matches(host, h))
            })
            .map(|vs| object_name(&vs.metadata))
            .collect();
        if !names.is_empty() {
            out.insert(host.to_owned(), names.join(","));
        }
    }
    out
}

fn show(inputs: &[Input], target: &Target, args: &Args) -> anyhow::Result<Outcome> {
    let compiled = compiled(inputs, target)?;
    warn(compiled.warnings.iter());
    match args.output {
        Output::Short => print!(
            "{}",
            summary::render(&compiled.config, args.part, &compiled.sources)
        ),
        Output::Json | Output::Yaml => {
            let value = match args.part.key() {
                Some(key) => compiled.config[key].clone(),
                None => compiled.config,
            };
            print_structured(&value, args.output)?;
        }
    }
    Ok(Outcome::Printed)
}

fn compare(
    before: &[Input],
    after: &[Input],
    target: &Target,
    args: &Args,
) -> anyhow::Result<Outcome> {
    let old = compiled(before, target).context("before the change")?;
    let new = compiled(after, target).context("after the change")?;
    // Only what the change brings: the base's own problems are not news.
    warn(new.warnings.iter().filter(|w| !old.warnings.contains(w)));
    let diff = diff::compare(&old.config, &new.config, args.part);
    match args.output {
        Output::Short => print!("{}", diff.render()),
        Output::Json | Output::Yaml => print_structured(&diff.to_json(), args.output)?,
    }
    Ok(if diff.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Changed
    })
}

fn warn<'a>(warnings: impl Iterator<Item = &'a String>) {
    for warning in warnings {
        eprintln!("meshctl: warning: {warning}");
    }
}

fn print_structured(value: &Value, output: Output) -> anyhow::Result<()> {
    let text = match output {
        Output::Yaml => serde_saphyr::to_string(value).context("writing YAML")?,
        _ => serde_json::to_string_pretty(value).context("writing JSON")? + "\n",
    };
    print!("{text}");
    Ok(())
}
