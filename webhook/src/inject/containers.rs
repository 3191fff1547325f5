//! The containers and the volume injection adds to a pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, Probe, ResourceRequirements, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshkeeper_init::capture::{DEFAULT_PROXY_GID, DEFAULT_PROXY_UID};

use super::annotations::ProxySpec;
use super::names;

/// The iptables init container: root with NET_ADMIN and NET_RAW only,
/// because installing rules needs exactly those and nothing else.
pub(crate) fn init_container(image: &str, args: Vec<String>) -> Container {
    Container {
        name: names::INIT_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        command: Some(vec![names::INIT_CONTAINER.to_owned()]),
        // The init binary's defaults need no flags.
        args: (!args.is_empty()).then_some(args),
        resources: Some(resources(("10m", "16Mi"), ("100m", "64Mi"))),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            ..SecurityContext::default()
        }),
        // A failed rule set shows its error in `kubectl describe pod`.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The Envoy sidecar. `service_cluster` is the canonical service name.
pub(crate) fn proxy_container(spec: &ProxySpec, service_cluster: &str) -> Container {
    let native = spec.native_sidecar;
    Container {
        name: names::PROXY_CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        command: Some(vec!["envoy".to_owned()]),
        args: Some(envoy_args(spec, service_cluster)),
        env: Some(environment(spec)),
        ports: Some(vec![
            port("http-envoy-prom", names::PROMETHEUS_PORT),
            port("health", names::HEALTH_PORT),
        ]),
        readiness_probe: Some(ready_probe(2, 30)),
        // A native sidecar must be up before the app containers start; the
        // kubelet waits for its startup probe.
        startup_probe: native.then(|| ready_probe(1, 600)),
        restart_policy: native.then(|| "Always".to_owned()),
        resources: Some(spec.resources.clone()),
        security_context: Some(SecurityContext {
            // The ids whose traffic the init container's rules let through.
            run_as_user: Some(i64::from(DEFAULT_PROXY_UID)),
            run_as_group: Some(i64::from(DEFAULT_PROXY_GID)),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".to_owned()]),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![config_mount()]),
        ..Container::default()
    }
}

/// The proxy ConfigMap, read-only, where the proxy (and a proxyless gRPC
/// application) expects it.
pub(crate) fn config_mount() -> VolumeMount {
    VolumeMount {
        name: names::PROXY_CONFIG_VOLUME.to_owned(),
        mount_path: names::PROXY_CONFIG_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The variable pointing a gRPC library at its xDS bootstrap.
pub(crate) fn grpc_bootstrap_env() -> EnvVar {
    EnvVar {
        name: names::GRPC_BOOTSTRAP_ENV.to_owned(),
        value: Some(names::GRPC_BOOTSTRAP.to_owned()),
        value_from: None,
    }
}

/// The per-namespace proxy ConfigMap. Optional, so a pod is admitted and
/// scheduled before the operator has written it; the kubelet fills the
/// volume in once it exists.
pub(crate) fn config_volume() -> Volume {
    Volume {
        name: names::PROXY_CONFIG_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::PROXY_CONFIG_MAP.to_owned(),
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Plain Envoy: the bootstrap from the ConfigMap, node and cluster names
/// from the downward API so the bootstrap can stay per namespace.
fn envoy_args(spec: &ProxySpec, service_cluster: &str) -> Vec<String> {
    let mut args = vec![
        "-c".to_owned(),
        names::PROXY_BOOTSTRAP.to_owned(),
        "--log-level".to_owned(),
        spec.log_level.clone(),
    ];
    if let Some(threads) = spec.concurrency {
        args.extend(["--concurrency".to_owned(), threads.to_string()]);
    }
    args.extend([
        "--disable-hot-restart".to_owned(),
        "--service-node".to_owned(),
        "$(POD_NAME).$(POD_NAMESPACE)".to_owned(),
        "--service-cluster".to_owned(),
        format!("{service_cluster}.$(POD_NAMESPACE)"),
    ]);
    args
}

/// The proxy's variables from the downward API, and the pod fields they
/// hold. Its command line relies on them, so ProxyConfig may not replace
/// them (see [`is_set_by_proxy`]).
const DOWNWARD_ENV: [(&str, &str); 4] = [
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("INSTANCE_IP", "status.podIP"),
    ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
];

/// Whether the proxy container sets the variable `name` itself.
pub(crate) fn is_set_by_proxy(name: &str) -> bool {
    DOWNWARD_ENV.iter().any(|(reserved, _)| *reserved == name)
}

fn environment(spec: &ProxySpec) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = DOWNWARD_ENV
        .iter()
        .map(|(name, path)| EnvVar {
            name: (*name).to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: (*path).to_owned(),
                }),
                ..EnvVarSource::default()
            }),
        })
        .collect();
    env.extend(spec.environment.iter().map(|(name, value)| EnvVar {
        name: name.clone(),
        value: Some(value.clone()),
        value_from: None,
    }));
    env
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn ready_probe(period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(names::READINESS_PATH.to_owned()),
            port: IntOrString::Int(names::HEALTH_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let side = |(cpu, memory): (&str, &str)| {
        Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]))
    };
    ResourceRequirements {
        requests: side(requests),
        limits: side(limits),
        ..ResourceRequirements::default()
    }
}
