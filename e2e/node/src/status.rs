//! What the node knows about a running pod, and the PodStatus it reports
//! (pure): phase, conditions, addresses and one status per container.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub enum Run {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub run: Run,
    pub last: Option<Run>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: i32,
    pub container_id: Option<String>,
    /// A native sidecar (an init container with `restartPolicy: Always`).
    pub sidecar: bool,
}

impl Container {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            run: Run::Waiting {
                reason: "PodInitializing".into(),
                message: None,
            },
            last: None,
            ready: false,
            started: false,
            restart_count: 0,
            container_id: None,
            sidecar: false,
        }
    }

    fn is_running(&self) -> bool {
        matches!(self.run, Run::Running { .. })
    }
}

/// How the pod stands as a whole; `Failed`/`Succeeded` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodRun {
    pub sandbox_ready: bool,
    pub ip: Option<String>,
    pub initialized: bool,
    pub init: Vec<Container>,
    pub main: Vec<Container>,
    /// Set when the pod reached a final phase.
    pub done: Option<Phase>,
    pub message: Option<String>,
    pub start_time: Timestamp,
}

impl PodRun {
    pub fn container_mut(&mut self, init: bool, index: usize) -> Option<&mut Container> {
        if init {
            self.init.get_mut(index)
        } else {
            self.main.get_mut(index)
        }
    }

    pub fn phase(&self) -> Phase {
        if let Some(done) = self.done {
            return done;
        }
        if self.initialized
            && self
                .main
                .iter()
                .any(|c| c.is_running() || c.restart_count > 0)
        {
            Phase::Running
        } else {
            Phase::Pending
        }
    }

    /// Main containers and native sidecars all ready.
    pub fn containers_ready(&self) -> bool {
        self.initialized
            && self.main.iter().all(|c| c.ready)
            && self.init.iter().filter(|c| c.sidecar).all(|c| c.ready)
    }
}

/// Keeps each condition's `lastTransitionTime` until its status changes.
#[derive(Debug, Default)]
pub struct Transitions(BTreeMap<String, (bool, Timestamp)>);

impl Transitions {
    fn condition(&mut self, type_: &str, value: bool, now: Timestamp) -> PodCondition {
        let entry = self.0.entry(type_.to_owned()).or_insert((value, now));
        if entry.0 != value {
            *entry = (value, now);
        }
        PodCondition {
            type_: type_.to_owned(),
            status: if value { "True" } else { "False" }.to_owned(),
            last_transition_time: Some(Time(entry.1)),
            ..Default::default()
        }
    }
}

pub fn pod_status(run: &PodRun, host_ip: &str, t: &mut Transitions, now: Timestamp) -> PodStatus {
    let ready = run.containers_ready() && run.done.is_none();
    let mut conditions = vec![
        t.condition("PodReadyToStartContainers", run.sandbox_ready, now),
        t.condition("Initialized", run.initialized, now),
        t.condition("ContainersReady", ready, now),
        t.condition("Ready", ready, now),
    ];
    if !ready {
        let not_ready: Vec<&str> = run
            .main
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        if !not_ready.is_empty() {
            for c in conditions.iter_mut().skip(2) {
                c.reason = Some("ContainersNotReady".into());
                c.message = Some(format!(
                    "containers with unready status: [{}]",
                    not_ready.join(" ")
                ));
            }
        }
    }
    PodStatus {
        phase: Some(format!("{:?}", run.phase())),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_owned(),
        }]),
        pod_ip: run.ip.clone(),
        pod_ips: run.ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(Time(run.start_time)),
        message: run.message.clone(),
        init_container_statuses: Some(run.init.iter().map(container_status).collect()),
        container_statuses: Some(run.main.iter().map(container_status).collect()),
        ..Default::default()
    }
}

fn container_status(c: &Container) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: format!("meshkeeper-node://{}", c.image),
        container_id: c.container_id.clone(),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count,
        state: Some(state(&c.run)),
        last_state: c.last.as_ref().map(state),
        ..Default::default()
    }
}

fn state(r: &Run) -> ContainerState {
    match r {
        Run::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        Run::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..Default::default()
        },
        Run::Terminated {
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: Some(Time(*started_at)),
                finished_at: Some(Time(*finished_at)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> PodRun {
        PodRun {
            sandbox_ready: true,
            ip: Some("10.244.0.2".into()),
            initialized: true,
            init: vec![],
            main: vec![Container::new("app", "echo")],
            done: None,
            message: None,
            start_time: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_pod_is_ready_when_every_container_is() {
        let mut r = run();
        let mut t = Transitions::default();
        let s = pod_status(&r, "10.244.0.1", &mut t, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .clone()
        };
        assert_eq!(ready(&s).status, "False");

        r.main[0].run = Run::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        r.main[0].ready = true;
        let later = Timestamp::from_second(60).unwrap();
        let s = pod_status(&r, "10.244.0.1", &mut t, later);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(ready(&s).status, "True");
        assert_eq!(ready(&s).last_transition_time, Some(Time(later)));
        // Unchanged status keeps its transition time.
        let s = pod_status(
            &r,
            "10.244.0.1",
            &mut t,
            Timestamp::from_second(120).unwrap(),
        );
        assert_eq!(ready(&s).last_transition_time, Some(Time(later)));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.2"));
    }

    #[test]
    fn a_final_phase_is_never_ready() {
        let mut r = run();
        r.main[0].ready = true;
        r.done = Some(Phase::Succeeded);
        let s = pod_status(&r, "h", &mut Transitions::default(), Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert!(
            s.conditions
                .unwrap()
                .iter()
                .all(|c| c.type_ != "Ready" || c.status == "False")
        );
    }
}
