//! Starting one container process: the node re-executes itself as
//! `meshkeeper-node launch SPEC.json`, and this code, running alone in that
//! fresh single-threaded process, enters the pod's network namespace, gives
//! the container a private mount namespace with its volumes bound where the
//! pod spec says, drops to the container's user and execs the program.
//!
//! Doing it in a separate process keeps namespace changes away from the
//! node's multi-threaded runtime (setns only moves the calling thread).

use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
use serde::{Deserialize, Serialize};

/// Everything the launcher needs, written by the node as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaunchSpec {
    /// `/run/netns/<name>` of the pod.
    pub netns: PathBuf,
    pub mounts: Vec<BindMount>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the pod's `fsGroup` and `supplementalGroups`.
    #[serde(default)]
    pub groups: Vec<u32>,
    /// `securityContext.readOnlyRootFilesystem`.
    pub read_only_root: bool,
    pub workdir: Option<PathBuf>,
    /// Program (absolute) and its arguments.
    pub argv: Vec<String>,
    /// The whole environment: nothing of the node's leaks in.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Where the node keeps the launch spec of a pod's container.
pub fn spec_path(state_dir: &Path, pod_uid: &str, container: &str) -> PathBuf {
    state_dir
        .join("pods")
        .join(pod_uid)
        .join("launch")
        .join(format!("{container}.json"))
}

pub fn read_spec(file: &Path) -> anyhow::Result<LaunchSpec> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading launch spec {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing launch spec {}", file.display()))
}

/// `command` with its program found in the container's `PATH`.
pub fn resolve(command: &[String], env: &[(String, String)]) -> anyhow::Result<Vec<String>> {
    let Some((program, rest)) = command.split_first() else {
        bail!("no command to run");
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        path.split(':')
            .map(|d| Path::new(d).join(program))
            .find(|p| is_executable(p))
    };
    let Some(found) = found else {
        bail!("{program:?} is not in the container's PATH ({path})");
    };
    let mut argv = vec![found.display().to_string()];
    argv.extend(rest.iter().cloned());
    Ok(argv)
}

/// Never returns on success: the process becomes the container.
pub fn launch(spec: &LaunchSpec) -> anyhow::Result<()> {
    let Some((program, args)) = spec.argv.split_first() else {
        bail!("the launch spec has an empty argv");
    };

    enter_network_namespace(&spec.netns)?;
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    // Private propagation: the container's mounts never reach the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private in the container's mount namespace")?;
    // Every source is opened before anything is mounted (and after the
    // namespace exists: a bind takes its source from the caller's own
    // namespace): a volume on /tmp would otherwise hide sources that live
    // under /tmp, the node's state folder, as with Bookinfo's emptyDir.
    let sources = open_sources(&spec.mounts)?;
    // The program too: it may live under a path a volume covers.
    let executable =
        File::open(program).with_context(|| format!("opening the program {program}"))?;
    if spec.read_only_root {
        // Remount the root read-only first: volume targets are then created
        // beforehand, which keeps the root the pod asked for read-only.
        for (m, source) in spec.mounts.iter().zip(&sources) {
            prepare_target(source, &m.target)?;
        }
        remount_read_only(Path::new("/"))?;
    }
    for (m, source) in spec.mounts.iter().zip(&sources) {
        bind(m, source)?;
    }
    drop_privileges(spec.uid, spec.gid, &spec.groups)?;

    let workdir = spec.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    let err = Command::new(fd_path(&executable))
        .arg0(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&workdir)
        .exec();
    bail!("exec {program}: {err}")
}

fn enter_network_namespace(path: &Path) -> anyhow::Result<()> {
    let ns = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {}", path.display()))
}

/// A mount's source, held open so it can be mounted by descriptor.
struct Source {
    file: File,
    is_dir: bool,
    shown: PathBuf,
}

impl Source {
    fn path(&self) -> PathBuf {
        fd_path(&self.file)
    }
}

/// The path under which an open file stays reachable whatever is mounted.
fn fd_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn open_sources(mounts: &[BindMount]) -> anyhow::Result<Vec<Source>> {
    mounts
        .iter()
        .map(|m| {
            let file = File::open(&m.source)
                .with_context(|| format!("volume source {}", m.source.display()))?;
            let is_dir = file.metadata()?.is_dir();
            Ok(Source {
                file,
                is_dir,
                shown: m.source.clone(),
            })
        })
        .collect()
}

/// Creates the mount point, a file or a folder to match the source.
fn prepare_target(source: &Source, target: &Path) -> anyhow::Result<()> {
    if let Ok(t) = target.metadata() {
        if t.is_dir() != source.is_dir {
            bail!(
                "cannot mount {} on {}: one is a folder, the other a file",
                source.shown.display(),
                target.display()
            );
        }
        return Ok(());
    }
    if source.is_dir {
        std::fs::create_dir_all(target)
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        File::create(target).map(|_| ())
    }
    .with_context(|| format!("creating mount point {}", target.display()))
}

fn bind(m: &BindMount, source: &Source) -> anyhow::Result<()> {
    prepare_target(source, &m.target)?;
    mount(
        Some(&source.path()),
        &m.target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind {} -> {}", m.source.display(), m.target.display()))?;
    if m.read_only {
        remount_read_only(&m.target)?;
    }
    Ok(())
}

fn remount_read_only(target: &Path) -> anyhow::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .with_context(|| format!("remounting {} read-only", target.display()))
}

fn drop_privileges(uid: u32, gid: u32, groups: &[u32]) -> anyhow::Result<()> {
    let mut all = vec![Gid::from_raw(gid)];
    all.extend(groups.iter().map(|g| Gid::from_raw(*g)));
    setgroups(&all).context("setgroups")?;
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    setgid(Gid::from_raw(gid)).with_context(|| format!("setgid {gid}"))?;
    setuid(Uid::from_raw(uid)).with_context(|| format!("setuid {uid}"))?;
    Ok(())
}

/// Whether `argv[0]` is something exec can run (used to fail a pod with a
/// clear message before any process starts).
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    CString::new(path.as_os_str().as_encoded_bytes()).is_ok()
        && path
            .metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
}
