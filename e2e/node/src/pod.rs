//! One pod on the node: its sandbox (network namespace), its volumes kept
//! current, its init containers in order, native sidecars, containers, the
//! status written back, and a graceful end when the pod is deleted.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container as ContainerSpec, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::container::{self, Restart, Slot};
use crate::env::{self, EnvSources};
use crate::images::ImageTable;
use crate::launch::{self, BindMount, LaunchSpec};
use crate::network::{Network, Sandbox};
use crate::status::{self, Phase, PodRun, Transitions};
use crate::volumes::{self, TokenWanted, VolumeContent};

/// What every pod worker shares.
pub struct Ctx {
    pub client: kube::Client,
    pub state_dir: PathBuf,
    pub images: ImageTable,
    pub net: Network,
    pub self_exe: PathBuf,
    pub config_maps: Store<ConfigMap>,
    pub secrets: Store<Secret>,
    pub services: Store<Service>,
    pub recorder: Recorder,
    /// Turns true when the node shuts down: pods stop, nothing is deleted.
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    pub fn host_ip(&self) -> String {
        self.net.gateway.to_string()
    }
}

/// A running pod, shared by its container tasks.
pub struct PodCtx {
    pub ctx: Arc<Ctx>,
    pub pod: Pod,
    pub key: String,
    pub uid: String,
    pub namespace: String,
    pub sandbox: Sandbox,
    pub dir: PathBuf,
    run: Mutex<PodRun>,
    changed: Notify,
    grace: Mutex<Duration>,
    tokens: Mutex<BTreeMap<TokenWanted, (String, Timestamp)>>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn is_gone(pod: Option<&Pod>) -> bool {
    pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

/// The pod's life on this node, until it is deleted (or the node stops).
pub async fn run(ctx: Arc<Ctx>, mut updates: watch::Receiver<Option<Pod>>) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let key = key_of(&pod);
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
        // Finished before (an earlier run of the node): only the deletion is left.
        wait_gone(&mut updates, &ctx.shutdown).await;
        finish_delete(&ctx, &updates, &pod).await;
        return;
    }
    let sandbox = match ctx.net.create(&uid_of(&pod)).await {
        Ok(s) => s,
        Err(e) => {
            warn_event(&ctx, &pod, "FailedCreatePodSandBox", &format!("{e:#}")).await;
            wait_gone(&mut updates, &ctx.shutdown).await;
            finish_delete(&ctx, &updates, &pod).await;
            return;
        }
    };
    tracing::info!(pod = %key, ip = %sandbox.ip, "sandbox ready");
    let pc = Arc::new(PodCtx::new(ctx.clone(), pod.clone(), sandbox));
    let writer = tokio::spawn(status_writer(pc.clone()));

    // Containers start once their volumes are in place, as on a kubelet.
    if !mount_volumes(&pc, &mut updates).await {
        writer.abort();
        ctx.net.delete(&pc.sandbox).await;
        let _ = std::fs::remove_dir_all(&pc.dir);
        finish_delete(&ctx, &updates, &pod).await;
        return;
    }
    let (stop_main, stop_main_rx) = watch::channel(false);
    let (stop_side, stop_side_rx) = watch::channel(false);
    let tasks = Arc::new(Tasks::default());
    let lifecycle = tokio::spawn(lifecycle(
        pc.clone(),
        tasks.clone(),
        stop_main_rx,
        stop_side_rx,
    ));
    let refresher = tokio::spawn(refresh_files(pc.clone()));

    wait_gone(&mut updates, &ctx.shutdown).await;
    if let Some(p) = updates.borrow().as_ref() {
        pc.set_grace(p);
    }
    tracing::info!(pod = %key, "stopping");
    lifecycle.abort();
    refresher.abort();
    // Containers first, then the native sidecars they may still be using.
    let _ = stop_main.send(true);
    tasks.join(false).await;
    let _ = stop_side.send(true);
    tasks.join(true).await;
    writer.abort();
    ctx.net.delete(&pc.sandbox).await;
    let _ = std::fs::remove_dir_all(&pc.dir);
    finish_delete(&ctx, &updates, &pod).await;
    tracing::info!(pod = %key, "removed");
}

/// Container tasks by kind, so a deletion stops them in order.
#[derive(Default)]
struct Tasks {
    main: Mutex<Vec<JoinHandle<Option<i32>>>>,
    sidecars: Mutex<Vec<JoinHandle<Option<i32>>>>,
}

impl Tasks {
    fn add(&self, sidecar: bool, h: JoinHandle<Option<i32>>) {
        let list = if sidecar { &self.sidecars } else { &self.main };
        if let Ok(mut l) = list.lock() {
            l.push(h);
        }
    }

    async fn join(&self, sidecar: bool) {
        let list = if sidecar { &self.sidecars } else { &self.main };
        let handles = list
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for h in handles {
            let _ = h.await;
        }
    }
}

async fn wait_gone(updates: &mut watch::Receiver<Option<Pod>>, shutdown: &watch::Receiver<bool>) {
    let mut shutdown = shutdown.clone();
    tokio::select! {
        _ = updates.wait_for(|p| is_gone(p.as_ref())) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// The kubelet's last word on a deleted pod: remove it for good (grace 0),
/// but only the pod this worker ran (UID precondition).
async fn finish_delete(ctx: &Ctx, updates: &watch::Receiver<Option<Pod>>, pod: &Pod) {
    if *ctx.shutdown.borrow() || updates.borrow().is_none() {
        return;
    }
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %key_of(pod), "final delete: {e}"),
    }
}

async fn lifecycle(
    pc: Arc<PodCtx>,
    tasks: Arc<Tasks>,
    stop_main: watch::Receiver<bool>,
    stop_side: watch::Receiver<bool>,
) {
    let spec = pc.pod.spec.clone().unwrap_or_default();
    let policy = Restart::parse(spec.restart_policy.as_deref());
    // Init containers are retried on failure unless the pod never restarts.
    let init_policy = if policy == Restart::Never {
        Restart::Never
    } else {
        Restart::OnFailure
    };
    for (index, c) in spec.init_containers.iter().flatten().enumerate() {
        let slot = Slot { init: true, index };
        if c.restart_policy.as_deref() == Some("Always") {
            let h = tokio::spawn(container::supervise(
                pc.clone(),
                slot,
                c.clone(),
                Restart::Always,
                stop_side.clone(),
            ));
            tasks.add(true, h);
            // The next container starts once this sidecar has started.
            pc.wait_started(slot).await;
            continue;
        }
        let mut done = start(&pc, &tasks, slot, c, init_policy, &stop_main);
        match done.recv().await {
            Some(Some(0)) => {}
            Some(Some(code)) => {
                pc.finish(
                    Phase::Failed,
                    format!("init container {} failed with exit code {code}", c.name),
                );
                return;
            }
            _ => return,
        }
    }
    pc.with_run(|r| r.initialized = true);
    let mut results = Vec::new();
    for (index, c) in spec.containers.iter().enumerate() {
        let slot = Slot { init: false, index };
        pc.update(slot, |s| {
            s.run = status::Run::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            }
        });
        results.push(start(&pc, &tasks, slot, c, policy, &stop_main));
    }
    // Only pods that do not always restart reach an end on their own.
    let mut all_zero = true;
    for mut r in results {
        match r.recv().await {
            Some(Some(code)) => all_zero &= code == 0,
            _ => return,
        }
    }
    let phase = if all_zero {
        Phase::Succeeded
    } else {
        Phase::Failed
    };
    pc.finish(phase, String::new());
}

/// Supervises a container in its own task (registered so a deletion waits
/// for it); the receiver gets its final exit code, `None` when stopped.
fn start(
    pc: &Arc<PodCtx>,
    tasks: &Tasks,
    slot: Slot,
    c: &ContainerSpec,
    policy: Restart,
    stop: &watch::Receiver<bool>,
) -> tokio::sync::mpsc::Receiver<Option<i32>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let supervised = container::supervise(pc.clone(), slot, c.clone(), policy, stop.clone());
    let h = tokio::spawn(async move {
        let result = supervised.await;
        let _ = tx.send(result).await;
        result
    });
    tasks.add(false, h);
    rx
}

/// Writes the volumes until it works (false: the pod went away first).
async fn mount_volumes(pc: &PodCtx, updates: &mut watch::Receiver<Option<Pod>>) -> bool {
    let mut reported = String::new();
    loop {
        match pc.write_files().await {
            Ok(()) => return true,
            Err(e) => {
                if e != reported {
                    pc.event_warning("FailedMount", &e).await;
                    reported = e;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = wait_gone(updates, &pc.ctx.shutdown) => return false,
        }
    }
}

/// Keeps volumes (and /etc/hosts) current: the kubelet's periodic sync.
async fn refresh_files(pc: Arc<PodCtx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut reported = String::new();
    loop {
        tick.tick().await;
        match pc.write_files().await {
            Ok(()) => reported.clear(),
            Err(e) => {
                if e != reported {
                    pc.event_warning("FailedMount", &e).await;
                    reported = e;
                }
            }
        }
    }
}

async fn status_writer(pc: Arc<PodCtx>) {
    let api: Api<Pod> = Api::namespaced(pc.ctx.client.clone(), &pc.namespace);
    let name = pc.pod.metadata.name.clone().unwrap_or_default();
    let host_ip = pc.ctx.host_ip();
    let mut transitions = Transitions::default();
    let mut last_sent = None;
    loop {
        let Some(run) = pc.run.lock().ok().map(|r| r.clone()) else {
            return;
        };
        let status = status::pod_status(&run, &host_ip, &mut transitions, Timestamp::now());
        let mut body = serde_json::json!({ "status": status });
        // A sandbox made again (after a node restart) has a new address: the
        // address lists are replaced, never merged with the old ones.
        for list in ["podIPs", "hostIPs"] {
            if let Some(serde_json::Value::Array(items)) = body["status"].get_mut(list) {
                items.push(serde_json::json!({ "$patch": "replace" }));
            }
        }
        if last_sent.as_ref() != Some(&body) {
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&body))
                .await
            {
                Ok(_) => last_sent = Some(body),
                Err(e) => tracing::warn!(pod = %pc.key, "writing status: {e}"),
            }
        }
        tokio::select! {
            _ = pc.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

impl PodCtx {
    fn new(ctx: Arc<Ctx>, pod: Pod, sandbox: Sandbox) -> Self {
        let uid = uid_of(&pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let containers = |list: &[ContainerSpec]| -> Vec<status::Container> {
            list.iter()
                .map(|c| {
                    let mut s =
                        status::Container::new(&c.name, c.image.as_deref().unwrap_or_default());
                    s.sidecar = c.restart_policy.as_deref() == Some("Always");
                    s
                })
                .collect()
        };
        let run = PodRun {
            sandbox_ready: true,
            ip: Some(sandbox.ip.to_string()),
            initialized: spec.init_containers.as_ref().is_none_or(|v| v.is_empty()),
            init: containers(spec.init_containers.as_deref().unwrap_or_default()),
            main: containers(&spec.containers),
            done: None,
            message: None,
            start_time: Timestamp::now(),
        };
        let grace = Duration::from_secs(
            u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30)).unwrap_or(30),
        );
        Self {
            dir: ctx.state_dir.join("pods").join(&uid),
            key: key_of(&pod),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            uid,
            ctx,
            pod,
            sandbox,
            run: Mutex::new(run),
            changed: Notify::new(),
            grace: Mutex::new(grace),
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn grace(&self) -> Duration {
        if *self.ctx.shutdown.borrow() {
            return Duration::from_secs(2);
        }
        self.grace
            .lock()
            .map(|g| *g)
            .unwrap_or(Duration::from_secs(30))
    }

    fn set_grace(&self, pod: &Pod) {
        if let Some(s) = pod.metadata.deletion_grace_period_seconds
            && let Ok(mut g) = self.grace.lock()
        {
            *g = Duration::from_secs(u64::try_from(s).unwrap_or(0));
        }
    }

    fn with_run<R>(&self, f: impl FnOnce(&mut PodRun) -> R) -> Option<R> {
        let r = self.run.lock().ok().map(|mut run| f(&mut run));
        self.changed.notify_one();
        r
    }

    /// Changes one container's state; returns what `f` returns.
    pub fn update<R: Default>(&self, slot: Slot, f: impl FnOnce(&mut status::Container) -> R) -> R {
        self.with_run(|r| r.container_mut(slot.init, slot.index).map(f))
            .flatten()
            .unwrap_or_default()
    }

    fn finish(&self, phase: Phase, message: String) {
        self.with_run(|r| {
            r.done = Some(phase);
            r.message = (!message.is_empty()).then_some(message);
        });
    }

    async fn wait_started(&self, slot: Slot) {
        loop {
            let started = self
                .run
                .lock()
                .ok()
                .and_then(|mut r| r.container_mut(slot.init, slot.index).map(|c| c.started));
            if started != Some(false) {
                return;
            }
            self.changed.notified().await;
        }
    }

    pub async fn event_warning(&self, reason: &str, note: &str) {
        warn_event(&self.ctx, &self.pod, reason, note).await;
    }

    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let cm = self
            .ctx
            .config_maps
            .get(&ObjectRef::new(name).within(&self.namespace))?;
        Some(cm.data.clone().unwrap_or_default())
    }

    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let s = self
            .ctx
            .secrets
            .get(&ObjectRef::new(name).within(&self.namespace))?;
        let mut out: BTreeMap<String, String> = s
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        out.extend(s.string_data.clone().unwrap_or_default());
        Some(out)
    }

    /// `KUBERNETES_SERVICE_HOST` and the variables of the namespace's
    /// Services, as the kubelet sets them (enableServiceLinks).
    fn service_env(&self) -> Vec<(String, String)> {
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut env = Vec::new();
        for svc in self.ctx.services.state() {
            let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            let is_api = ns == "default" && name == "kubernetes";
            if !(is_api || links && ns == self.namespace) {
                continue;
            }
            let Some(spec) = &svc.spec else { continue };
            let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| *ip != "None") else {
                continue;
            };
            let prefix = name.to_uppercase().replace('-', "_");
            let ports = spec.ports.as_deref().unwrap_or_default();
            env.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
            if let Some(first) = ports.first() {
                env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
            }
            for p in ports {
                if let Some(pname) = &p.name {
                    let pname = pname.to_uppercase().replace('-', "_");
                    env.push((format!("{prefix}_SERVICE_PORT_{pname}"), p.port.to_string()));
                }
            }
        }
        env.sort();
        env
    }

    /// The hosts file every container sees: the pod itself and the
    /// cluster's Services by name (this node's stand-in for cluster DNS).
    fn hosts_file(&self) -> String {
        let mut out =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        let hostname = self.pod.metadata.name.clone().unwrap_or_default();
        out.push_str(&format!("{}\t{hostname}\n", self.sandbox.ip));
        let mut lines: Vec<String> = Vec::new();
        for svc in self.ctx.services.state() {
            let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            let Some(ip) = svc
                .spec
                .as_ref()
                .and_then(|s| s.cluster_ip.as_deref())
                .filter(|ip| *ip != "None" && !ip.is_empty())
            else {
                continue;
            };
            let mut names = vec![
                format!("{name}.{ns}.svc.cluster.local"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ];
            if ns == self.namespace {
                names.push(name.to_owned());
            }
            lines.push(format!("{ip}\t{}", names.join(" ")));
        }
        lines.sort();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    async fn token(&self, wanted: &TokenWanted) -> Result<String, String> {
        let now = Timestamp::now();
        if let Ok(tokens) = self.tokens.lock()
            && let Some((token, refresh_at)) = tokens.get(wanted)
            && *refresh_at > now
        {
            return Ok(token.clone());
        }
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(wanted.audience.clone().into_iter().collect()),
                expiration_seconds: Some(wanted.expiration_seconds),
                bound_object_ref: Some(
                    k8s_openapi::api::authentication::v1::BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: self.pod.metadata.name.clone(),
                        uid: Some(self.uid.clone()),
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = api
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "TokenRequest for ServiceAccount {}/{sa}: {e}",
                    self.namespace
                )
            })?;
        let token = got.status.and_then(|s| s.token).ok_or_else(|| {
            format!(
                "TokenRequest for ServiceAccount {}/{sa} returned no token",
                self.namespace
            )
        })?;
        // Renewed at 80% of its life, as the kubelet does.
        let refresh_at = now
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                wanted.expiration_seconds * 8 / 10,
            ))
            .unwrap_or(now);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(wanted.clone(), (token.clone(), refresh_at));
        }
        Ok(token)
    }

    /// Writes every volume and the hosts file; the first error is returned.
    async fn write_files(&self) -> Result<(), String> {
        let mut tokens = BTreeMap::new();
        for wanted in volumes::tokens_wanted(&self.pod) {
            let t = self.token(&wanted).await?;
            tokens.insert(wanted, t);
        }
        let stamp = Timestamp::now().as_nanosecond().to_string();
        let volumes = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten());
        let contents = self
            .with_sources(|src| {
                volumes
                    .map(|v| {
                        volumes::content(&self.pod, v, src, &|w| tokens.get(w).cloned())
                            .map(|c| (v, c))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| e.to_string())?;
        for (v, content) in contents {
            let dir = self.dir.join("volumes").join(&v.name);
            match content {
                VolumeContent::Files(files) => {
                    volumes::write_atomically(&dir, &files, &stamp, self.fs_group()).map_err(
                        |e| format!("volume {}: writing {}: {e}", v.name, dir.display()),
                    )?;
                }
                VolumeContent::EmptyDir => {
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| format!("volume {}: {e}", v.name))?;
                        // Shared by containers running as different users.
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
                        let _ = std::os::unix::fs::chown(&dir, None, self.fs_group());
                    }
                }
                VolumeContent::HostPath(_) => {}
            }
        }
        let hosts = self.hosts_file();
        let path = self.dir.join("etc-hosts");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(hosts.as_str()) {
            // Rewritten in place: the file is bind-mounted, so its inode stays.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(hosts.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// What the environment and the volumes are computed from: the pod's
    /// addresses, the Services' variables, its namespace's ConfigMaps and
    /// Secrets from the node's caches.
    fn with_sources<R>(&self, f: impl FnOnce(&EnvSources<'_>) -> R) -> R {
        let service_env = self.service_env();
        let host_ip = self.ctx.host_ip();
        let pod_ip = self.sandbox.ip.to_string();
        let cm = |n: &str| self.config_map(n);
        let secret = |n: &str| self.secret(n);
        f(&EnvSources {
            pod_ip: &pod_ip,
            host_ip: &host_ip,
            service_env: &service_env,
            config_map: &cm,
            secret: &secret,
        })
    }

    fn fs_group(&self) -> Option<u32> {
        let sc = self.pod.spec.as_ref()?.security_context.as_ref()?;
        sc.fs_group.and_then(|g| u32::try_from(g).ok())
    }

    fn launch_spec(
        &self,
        c: &ContainerSpec,
        argv_override: Option<Vec<String>>,
    ) -> Result<LaunchSpec, String> {
        let image = c.image.clone().unwrap_or_default();
        let mut env = self
            .with_sources(|src| env::container_env(&self.pod, c, src))
            .map_err(|e| e.to_string())?;
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".into(), self.ctx.images.path_env(&image)));
        }
        env.push((
            "HOSTNAME".into(),
            self.pod.metadata.name.clone().unwrap_or_default(),
        ));
        let expand = |v: &Option<Vec<String>>| -> Vec<String> {
            v.iter().flatten().map(|s| env::expand(s, &env)).collect()
        };
        let argv = match argv_override {
            Some(argv) => self
                .ctx
                .images
                .argv(&image, &argv, &[], launch::is_executable)
                .map_err(|e| e.to_string())?,
            None => self
                .ctx
                .images
                .argv(
                    &image,
                    &expand(&c.command),
                    &expand(&c.args),
                    launch::is_executable,
                )
                .map_err(|e| e.to_string())?,
        };
        let mut mounts = vec![BindMount {
            source: self.dir.join("etc-hosts"),
            target: PathBuf::from("/etc/hosts"),
            read_only: false,
        }];
        for m in c.volume_mounts.iter().flatten() {
            let volume = self
                .pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .find(|v| v.name == m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
            let mut source = match &volume.host_path {
                Some(h) => PathBuf::from(&h.path),
                None => self.dir.join("volumes").join(&m.name),
            };
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                // A subPath binds what the path is now (it does not follow updates).
                source = std::fs::canonicalize(source.join(sub))
                    .map_err(|e| format!("volumeMount {:?} subPath {sub:?}: {e}", m.name))?;
            }
            mounts.push(BindMount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only == Some(true),
            });
        }
        let pod_sc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        let sc = c.security_context.as_ref();
        let uid = sc
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_sc.and_then(|s| s.run_as_user))
            .unwrap_or(0);
        let gid = sc
            .and_then(|s| s.run_as_group)
            .or_else(|| pod_sc.and_then(|s| s.run_as_group))
            .unwrap_or(uid);
        Ok(LaunchSpec {
            netns: self.sandbox.netns_path(),
            mounts,
            uid: u32::try_from(uid).map_err(|_| format!("runAsUser {uid} is out of range"))?,
            gid: u32::try_from(gid).map_err(|_| format!("runAsGroup {gid} is out of range"))?,
            groups: self
                .fs_group()
                .into_iter()
                .chain(
                    pod_sc
                        .and_then(|s| s.supplemental_groups.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|g| u32::try_from(g).ok()),
                )
                .collect(),
            read_only_root: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
            workdir: c.working_dir.as_ref().map(PathBuf::from),
            argv,
            env,
        })
    }

    /// Starts the container's process (or, with `argv`, a command in it).
    pub async fn spawn(
        &self,
        c: &ContainerSpec,
        argv: Option<Vec<String>>,
    ) -> Result<tokio::process::Child, String> {
        let exec = argv.is_some();
        let spec = self.launch_spec(c, argv)?;
        let launch_dir = self.dir.join("launch");
        std::fs::create_dir_all(&launch_dir)
            .map_err(|e| format!("{}: {e}", launch_dir.display()))?;
        let file = launch_dir.join(if exec {
            format!("{}.exec.json", c.name)
        } else {
            format!("{}.json", c.name)
        });
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
        std::fs::write(&file, json).map_err(|e| format!("{}: {e}", file.display()))?;
        let log_path = self.log_path(&c.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = container::launcher_command(&self.ctx.self_exe, &file, log)
            .map_err(|e| format!("opening the log: {e}"))?;
        cmd.spawn()
            .map_err(|e| format!("starting {}: {e}", self.ctx.self_exe.display()))
    }

    pub fn log_path(&self, container: &str) -> PathBuf {
        log_path(
            &self.ctx.state_dir,
            &self.namespace,
            self.pod.metadata.name.as_deref().unwrap_or_default(),
            container,
        )
    }

    /// An exec probe: the command inside the container, exit 0 is success.
    pub async fn exec(
        &self,
        c: &ContainerSpec,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut child = self.spawn(c, Some(command.clone())).await?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(s)) if s.success() => Ok(()),
            Ok(Ok(s)) => Err(format!("command {command:?} exited with {s}")),
            Ok(Err(e)) => Err(format!("command {command:?}: {e}")),
            Err(_) => {
                container::terminate(&mut child, Duration::ZERO).await;
                Err(format!("command {command:?} timed out after {timeout:?}"))
            }
        }
    }
}

/// Where a container's output goes: `logs/<namespace>_<pod>/<container>.log`
/// under the node's state folder (kept after the pod is gone).
pub fn log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    let dir = state_dir.join("logs").join(format!("{namespace}_{pod}"));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{container}.log"))
}

async fn warn_event(ctx: &Ctx, pod: &Pod, reason: &str, note: &str) {
    tracing::warn!(pod = %key_of(pod), reason, "{note}");
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        tracing::debug!("publishing event: {e}");
    }
}
