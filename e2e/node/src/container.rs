//! One container's life: start its process through the launcher, probe it,
//! restart it by the pod's policy with a growing back-off, and stop it with
//! SIGTERM, then SIGKILL after the grace period.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as ContainerSpec, Probe};
use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::pod::PodCtx;
use crate::probe::{self, Check, Timing, Verdict};
use crate::status::Run;

/// When a stopped container runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    pub fn parse(policy: Option<&str>) -> Self {
        match policy {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        }
    }

    fn again(self, exit_code: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => exit_code != 0,
            Restart::Never => false,
        }
    }
}

/// Which container of the pod this is.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub init: bool,
    pub index: usize,
}

enum ProbeEvent {
    Started,
    Ready(bool),
    /// Liveness or startup failed past its threshold: restart.
    Unhealthy(String),
}

const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Runs the container until it ends for good (returns its last exit code)
/// or `stop` turns true (returns `None`).
pub async fn supervise(
    pod: Arc<PodCtx>,
    slot: Slot,
    spec: ContainerSpec,
    policy: Restart,
    mut stop: watch::Receiver<bool>,
) -> Option<i32> {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return None;
        }
        let started_at = Timestamp::now();
        let child = match pod.spawn(&spec, None).await {
            Ok(child) => child,
            Err(message) => {
                pod.event_warning("Failed", &format!("container {}: {message}", spec.name))
                    .await;
                pod.update(slot, |c| {
                    c.run = Run::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(message.clone()),
                    }
                });
                if wait_or_stop(&mut stop, backoff).await {
                    return None;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let restarts = pod.update(slot, |c| {
            c.run = Run::Running { started_at };
            c.container_id = Some(format!(
                "meshkeeper-node://{}-{}-{}",
                pod.uid, spec.name, c.restart_count
            ));
            c.started = spec.startup_probe.is_none();
            c.ready = c.started && spec.readiness_probe.is_none();
            c.restart_count
        });
        tracing::info!(pod = %pod.key, container = %spec.name, restarts, "started");

        let (exit_code, reason, stopped) =
            run_until_exit(&pod, slot, &spec, child, &mut stop).await;
        let finished_at = Timestamp::now();
        let ran_for = finished_at.duration_since(started_at);
        pod.update(slot, |c| {
            c.ready = false;
            c.started = false;
            c.run = Run::Terminated {
                exit_code,
                reason: reason.clone(),
                message: None,
                started_at,
                finished_at,
            };
        });
        if stopped || !policy.again(exit_code) {
            return if stopped { None } else { Some(exit_code) };
        }
        // A container that ran for a while starts over with a short delay.
        if ran_for.as_secs() > 60 {
            backoff = Duration::from_secs(1);
        }
        pod.update(slot, |c| {
            c.last = Some(c.run.clone());
            c.restart_count += 1;
            c.run = Run::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container={} pod={}",
                    backoff.as_secs(),
                    spec.name,
                    pod.key
                )),
            };
        });
        if wait_or_stop(&mut stop, backoff).await {
            return None;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Waits `d`; true when `stop` turned true meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    };
    stopped || *stop.borrow()
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// (exit code, reason, whether it ended because the pod stops).
async fn run_until_exit(
    pod: &Arc<PodCtx>,
    slot: Slot,
    spec: &ContainerSpec,
    mut child: Child,
    stop: &mut watch::Receiver<bool>,
) -> (i32, String, bool) {
    let (tx, mut events) = mpsc::channel(8);
    let probes = tokio::spawn(probe_loop(pod.clone(), spec.clone(), tx));
    let grace = pod.grace();
    let outcome = loop {
        tokio::select! {
            status = child.wait() => {
                let code = exit_code(status.ok());
                let reason = if code == 0 { "Completed" } else { "Error" };
                break (code, reason.to_owned(), false);
            }
            Some(ev) = events.recv() => match ev {
                ProbeEvent::Started => pod.update(slot, |c| {
                    c.started = true;
                    c.ready = spec.readiness_probe.is_none();
                }),
                ProbeEvent::Ready(r) => pod.update(slot, |c| c.ready = r && c.started),
                ProbeEvent::Unhealthy(why) => {
                    pod.event_warning("Unhealthy", &format!("container {}: {why}; restarting", spec.name)).await;
                    let code = terminate(&mut child, grace).await;
                    break (code, "Error".to_owned(), false);
                }
            },
            _ = stopped(stop) => {
                let code = terminate(&mut child, pod.grace()).await;
                break (code, "Completed".to_owned(), true);
            }
        }
    };
    probes.abort();
    outcome
}

fn exit_code(status: Option<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
        None => 255,
    }
}

/// SIGTERM to the container's process group, SIGKILL after `grace`.
pub async fn terminate(child: &mut Child, grace: Duration) -> i32 {
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return exit_code(child.wait().await.ok());
    };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => exit_code(status.ok()),
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            exit_code(child.wait().await.ok())
        }
    }
}

async fn probe_loop(pod: Arc<PodCtx>, spec: ContainerSpec, tx: mpsc::Sender<ProbeEvent>) {
    if let Some(startup) = &spec.startup_probe {
        match run_probe(&pod, &spec, startup, true).await {
            Ok(()) => {
                let _ = tx.send(ProbeEvent::Started).await;
            }
            Err(why) => {
                let _ = tx
                    .send(ProbeEvent::Unhealthy(format!(
                        "startup probe failed: {why}"
                    )))
                    .await;
                return;
            }
        }
    }
    let readiness = watch_probe(
        pod.clone(),
        spec.clone(),
        spec.readiness_probe.clone(),
        tx.clone(),
        false,
    );
    let liveness = watch_probe(pod, spec.clone(), spec.liveness_probe.clone(), tx, true);
    tokio::join!(readiness, liveness);
}

/// Runs a startup probe until it succeeds or fails past its threshold.
async fn run_probe(
    pod: &PodCtx,
    spec: &ContainerSpec,
    probe: &Probe,
    _startup: bool,
) -> Result<(), String> {
    let timing = probe::timing(probe);
    let check = probe::check(probe, spec)?;
    tokio::time::sleep(timing.initial_delay).await;
    let mut failures = 0;
    loop {
        match once(pod, spec, &check, &timing).await {
            Ok(()) => return Ok(()),
            Err(why) => {
                failures += 1;
                if failures >= timing.failure_threshold {
                    return Err(why);
                }
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

/// Readiness (reports each flip) or liveness (reports failure) forever.
async fn watch_probe(
    pod: Arc<PodCtx>,
    spec: ContainerSpec,
    probe: Option<Probe>,
    tx: mpsc::Sender<ProbeEvent>,
    liveness: bool,
) {
    let Some(probe) = probe else { return };
    let timing = probe::timing(&probe);
    let check = match probe::check(&probe, &spec) {
        Ok(c) => c,
        Err(why) => {
            pod.event_warning("Unhealthy", &format!("container {}: {why}", spec.name))
                .await;
            return;
        }
    };
    tokio::time::sleep(timing.initial_delay).await;
    let mut verdict = Verdict::default();
    let mut last_error = String::new();
    loop {
        let result = once(&pod, &spec, &check, &timing).await;
        if let Err(e) = &result {
            if *e != last_error {
                tracing::debug!(pod = %pod.key, container = %spec.name, liveness, "probe failed: {e}");
            }
            last_error.clone_from(e);
        }
        if let Some(ok) = verdict.record(&timing, result.is_ok()) {
            let event = if liveness {
                (!ok).then(|| ProbeEvent::Unhealthy(format!("liveness probe failed: {last_error}")))
            } else {
                if !ok {
                    pod.event_warning(
                        "Unhealthy",
                        &format!(
                            "container {}: readiness probe failed: {last_error}",
                            spec.name
                        ),
                    )
                    .await;
                }
                Some(ProbeEvent::Ready(ok))
            };
            if let Some(ev) = event
                && tx.send(ev).await.is_err()
            {
                return;
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

async fn once(
    pod: &PodCtx,
    spec: &ContainerSpec,
    check: &Check,
    timing: &Timing,
) -> Result<(), String> {
    let ip: IpAddr = IpAddr::V4(pod.sandbox.ip);
    match check {
        Check::Http { .. } => probe::http(ip, check, timing.timeout).await,
        Check::Tcp { port } => probe::tcp(ip, *port, timing.timeout).await,
        Check::Exec { command } => pod.exec(spec, command.clone(), timing.timeout).await,
    }
}

/// Starts the launcher for `spec`, in its own process group.
pub fn launcher_command(
    self_exe: &std::path::Path,
    spec_file: &std::path::Path,
    log: std::fs::File,
) -> std::io::Result<Command> {
    let err = log.try_clone()?;
    let mut cmd = Command::new(self_exe);
    cmd.arg("launch")
        .arg(spec_file)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .process_group(0);
    Ok(cmd)
}
