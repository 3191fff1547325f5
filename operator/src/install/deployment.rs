//! The Deployment running a revision's webhook server.
//!
//! Images are tagged with the revision's version without a leading `v`
//! (`0.1.0`, as the chart's appVersion and the webhook's default init image
//! `ghcr.io/meshkeeper/init:0.1.0` are), so `version: v0.1.0` and
//! `version: 0.1.0` run the same image.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    LocalObjectReference, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshkeeper_webhook::inject::DEFAULT_PROXY_IMAGE;

use super::meta::{Identity, labels, object_meta, selector_labels};
use crate::names::WEBHOOK_CONTAINER_PORT;

/// The container's name, and the one `kubectl logs` picks.
pub const CONTAINER: &str = "webhook";
/// Where the serving certificate is mounted.
pub const TLS_DIR: &str = "/etc/meshkeeper/tls";
/// The UID and GID the webhook runs as (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;
/// Default webhook replicas: one can be drained while the other serves.
pub const DEFAULT_REPLICAS: i32 = 2;

const TLS_VOLUME: &str = "tls";
const PORT_NAME: &str = "https";
/// Istio's pod label: never inject the injector, whatever namespace it
/// runs in.
const INJECT_LABEL: &str = "sidecar.istio.io/inject";

/// Where the images come from; their tags follow the revision's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Repository of the webhook server, e.g. `ghcr.io/meshkeeper/webhook`.
    pub webhook_repository: String,
    /// Repository of `meshkeeper-init`, passed to the webhook for the init
    /// containers it injects.
    pub init_repository: String,
    /// The proxy image for revisions whose `spec.proxy.image` names none
    /// (the webhook's `--proxy-image`).
    pub proxy: String,
    /// `imagePullPolicy` of the webhook container; empty leaves
    /// Kubernetes' default.
    pub pull_policy: String,
    /// Secrets (in the operator's namespace) the webhook pods pull with.
    pub pull_secrets: Vec<String>,
}

impl Images {
    pub const DEFAULT_WEBHOOK_REPOSITORY: &str = "ghcr.io/meshkeeper/webhook";
    pub const DEFAULT_INIT_REPOSITORY: &str = "ghcr.io/meshkeeper/init";
}

impl Default for Images {
    fn default() -> Self {
        Self {
            webhook_repository: Self::DEFAULT_WEBHOOK_REPOSITORY.to_owned(),
            init_repository: Self::DEFAULT_INIT_REPOSITORY.to_owned(),
            proxy: DEFAULT_PROXY_IMAGE.to_owned(),
            pull_policy: String::new(),
            pull_secrets: Vec::new(),
        }
    }
}

/// The image tag of a version: without a leading `v`.
pub fn image_tag(version: &str) -> &str {
    version.strip_prefix('v').unwrap_or(version)
}

/// What the Deployment of one revision depends on.
pub(crate) struct DeploymentParams<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub replicas: i32,
    pub images: &'a Images,
    pub tls_secret: &'a str,
    pub id: Identity<'a>,
}

pub(crate) fn deployment(params: &DeploymentParams<'_>, owner: &OwnerReference) -> Deployment {
    let selector = selector_labels(params.id.revision);
    let mut pod_labels = labels(params.id);
    pod_labels.insert(INJECT_LABEL.to_owned(), "false".to_owned());
    Deployment {
        metadata: object_meta(params.name, Some(params.namespace), params.id, owner),
        spec: DeploymentSpec {
            replicas: Some(params.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            // Bring the new pod up before taking an old one down, so a
            // single replica still serves during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(params, &selector)),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

fn pod_spec(params: &DeploymentParams<'_>, selector: &BTreeMap<String, String>) -> PodSpec {
    PodSpec {
        service_account_name: Some(params.name.to_owned()),
        image_pull_secrets: (!params.images.pull_secrets.is_empty()).then(|| {
            params
                .images
                .pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        containers: vec![container(params)],
        volumes: Some(vec![Volume {
            name: TLS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(params.tls_secret.to_owned()),
                // Owner and group read only; fsGroup gives the group to
                // the webhook's user.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        affinity: Some(spread_over_nodes(selector)),
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            // Best effort across zones; never leaves a pod Pending.
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            }),
            ..TopologySpreadConstraint::default()
        }]),
        // The webhook drains in-flight reviews for up to 20 s on SIGTERM.
        termination_grace_period_seconds: Some(30),
        ..PodSpec::default()
    }
}

/// Prefer one replica per node, so losing a node leaves one serving;
/// preferred, not required, so a one-node cluster still runs them all.
fn spread_over_nodes(selector: &BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector.clone()),
                            match_expressions: None,
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

fn container(params: &DeploymentParams<'_>) -> Container {
    let tag = image_tag(params.id.version);
    let images = params.images;
    let args = [
        "--tls-cert-file",
        &format!("{TLS_DIR}/tls.crt"),
        "--tls-key-file",
        &format!("{TLS_DIR}/tls.key"),
        "--revision",
        params.id.revision,
        "--init-image",
        &format!("{}:{tag}", images.init_repository),
        "--proxy-image",
        &images.proxy,
        "--log-format",
        "json",
    ];
    Container {
        name: CONTAINER.to_owned(),
        image: Some(format!("{}:{tag}", images.webhook_repository)),
        image_pull_policy: (!images.pull_policy.is_empty()).then(|| images.pull_policy.clone()),
        args: Some(args.iter().map(|a| (*a).to_owned()).collect()),
        env: Some(vec![EnvVar {
            // The webhook excludes its own namespace from injection.
            name: "POD_NAMESPACE".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".to_owned(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        }]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: WEBHOOK_CONTAINER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(https_probe("/healthz", 10, 3)),
        // Ready only once the MeshRevision is loaded: the API server is
        // never sent to a webhook that would answer 503.
        readiness_probe: Some(https_probe("/readyz", 5, 2)),
        resources: Some(resources()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: TLS_VOLUME.to_owned(),
            mount_path: TLS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

fn https_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(PORT_NAME.to_owned()),
            scheme: Some("HTTPS".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// Requests sized for an idle webhook; a memory limit against leaks, no CPU
/// limit, so admission latency never suffers from throttling.
fn resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity("50m")),
            ("memory".to_owned(), quantity("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("256Mi"))])),
        claims: None,
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}
