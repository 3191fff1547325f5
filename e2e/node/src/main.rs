//! `meshkeeper-node`: a node of the local control plane without a container
//! engine. Pods bound to it run as network namespaces with their containers
//! as processes (see the crate's modules, one concern each).
//!
//!   meshkeeper-node serve --kubeconfig F --images F --state-dir D
//!   meshkeeper-node launch SPEC.json      (internal: starts one container)

use meshkeeper_node::{images, launch, network, node, pod};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "A test node that runs pods as network namespaces and processes")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register the node and run the pods bound to it.
    Serve(ServeArgs),
    /// Start one container (used by `serve`; not for people).
    Launch { spec: PathBuf },
    /// Run a command in a running container, as `kubectl exec` would:
    /// `exec NAMESPACE/POD CONTAINER -- COMMAND...` (stdio inherited).
    Exec {
        /// The node's state folder (`serve --state-dir`).
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        kubeconfig: PathBuf,
        pod: String,
        container: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long, default_value = "meshkeeper-node")]
    node_name: String,
    /// Pod folders (volumes, launch specs) and container logs.
    #[arg(long)]
    state_dir: PathBuf,
    /// The image table (JSON): which local program stands for which image.
    #[arg(long)]
    images: PathBuf,
    #[arg(long, default_value = "10.244.0.0/24")]
    pod_cidr: String,
    #[arg(long, default_value = "mk0")]
    bridge: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // Before any thread exists: namespaces are per thread.
        Cmd::Launch { spec } => launch::launch(&launch::read_spec(&spec)?),
        Cmd::Exec {
            state_dir,
            kubeconfig,
            pod,
            container,
            command,
        } => {
            // The pod's UID names its folder; asking the API keeps the
            // threads of that runtime away from the namespace switch below.
            let uid = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(pod_uid(&kubeconfig, &pod))?;
            let file = launch::spec_path(&state_dir, &uid, &container);
            let mut spec = launch::read_spec(&file).with_context(|| {
                format!("container {container} of pod {pod} is not running on this node")
            })?;
            spec.argv = launch::resolve(&command, &spec.env)?;
            launch::launch(&spec)
        }
        Cmd::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn".into()),
                )
                .init();
            let _ = rustls::crypto::ring::default_provider().install_default();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(args))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let table = std::fs::read_to_string(&args.images)
        .with_context(|| format!("reading the image table {}", args.images.display()))?;
    let images: images::ImageTable = serde_json::from_str(&table)
        .with_context(|| format!("parsing the image table {}", args.images.display()))?;
    let net = network::Network::new(&args.bridge, &args.pod_cidr)?;
    net.set_up().await.context("setting up the pod network")?;

    let config = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;

    let node = node::node_object(
        &args.node_name,
        &net.gateway.to_string(),
        &args.pod_cidr,
        k8s_openapi::jiff::Timestamp::now(),
    );
    node::register(&client, &node)
        .await
        .context("registering the Node")?;
    tokio::spawn(node::heartbeat(client.clone(), node));

    let config_maps = cache::<ConfigMap>(&client);
    let secrets = cache::<Secret>(&client);
    let services = cache::<Service>(&client);
    for store in [
        config_maps.1.clone().wait_until_ready().await.is_ok(),
        secrets.1.clone().wait_until_ready().await.is_ok(),
        services.1.clone().wait_until_ready().await.is_ok(),
    ] {
        anyhow::ensure!(store, "a cache of the cluster ended before it was filled");
    }

    let (shutdown_tx, shutdown) = watch::channel(false);
    let ctx = Arc::new(pod::Ctx {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubelet".into(),
                instance: Some(args.node_name.clone()),
            },
        ),
        client,
        state_dir: args.state_dir.clone(),
        images,
        net,
        self_exe: std::env::current_exe().context("locating this binary")?,
        config_maps: config_maps.0,
        secrets: secrets.0,
        services: services.0,
        shutdown,
    });
    tracing::info!(node = %args.node_name, "node ready");

    let mut workers: HashMap<String, (watch::Sender<Option<Pod>>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", args.node_name);
    let mut events = watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut seen = Vec::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let event = tokio::select! {
            e = events.try_next() => e,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("pod watch: {e}");
                continue;
            }
        };
        match event {
            watcher::Event::Init => seen.clear(),
            watcher::Event::InitApply(p) => {
                seen.push(p.metadata.uid.clone().unwrap_or_default());
                dispatch(&ctx, &mut workers, p);
            }
            watcher::Event::Apply(p) => dispatch(&ctx, &mut workers, p),
            watcher::Event::Delete(p) => {
                if let Some((tx, _)) = workers.get(p.metadata.uid.as_deref().unwrap_or_default()) {
                    let _ = tx.send(None);
                }
            }
            watcher::Event::InitDone => {
                // Pods deleted while the watch was re-listing.
                for (uid, (tx, _)) in &workers {
                    if !seen.contains(uid) {
                        let _ = tx.send(None);
                    }
                }
            }
        }
        workers.retain(|_, (_, h)| !h.is_finished());
    }

    tracing::info!("shutting down: stopping every pod");
    let _ = shutdown_tx.send(true);
    for (_, (_, h)) in workers {
        let _ = h.await;
    }
    ctx.net.tear_down().await;
    Ok(())
}

async fn pod_uid(kubeconfig: &std::path::Path, key: &str) -> anyhow::Result<String> {
    let (ns, name) = key
        .split_once('/')
        .with_context(|| format!("pod {key:?} must be NAMESPACE/NAME"))?;
    let config = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_from(config)?;
    let pod = Api::<Pod>::namespaced(client, ns).get(name).await?;
    pod.metadata.uid.context("the pod has no UID")
}

fn dispatch(
    ctx: &Arc<pod::Ctx>,
    workers: &mut HashMap<String, (watch::Sender<Option<Pod>>, tokio::task::JoinHandle<()>)>,
    p: Pod,
) {
    let uid = p.metadata.uid.clone().unwrap_or_default();
    match workers.get(&uid) {
        Some((tx, _)) => {
            let _ = tx.send(Some(p));
        }
        None => {
            let (tx, rx) = watch::channel(Some(p));
            let h = tokio::spawn(pod::run(ctx.clone(), rx));
            workers.insert(uid, (tx, h));
        }
    }
}

/// A cluster-wide cache of one kind, kept by a reflector.
fn cache<K>(client: &kube::Client) -> (Store<K>, Store<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    tokio::spawn(stream);
    (reader.clone(), reader)
}
