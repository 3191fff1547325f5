//! The labels, annotations and object names injection reads or writes. Istio's
//! keys are kept as Istio spells them so existing manifests work unchanged;
//! what meshkeeper itself records lives under `meshkeeper.io/`.

use meshkeeper_init::capture::NEVER_CAPTURED_INBOUND_PORTS;

/// Pod label or annotation, `true` or `false`; when the label is present it
/// alone decides.
pub const INJECT: &str = "sidecar.istio.io/inject";
/// Namespace or pod label naming the revision (or tag) that injects.
pub const REVISION: &str = "istio.io/rev";
/// Namespace label `enabled` or `disabled`; it wins over [`REVISION`].
pub const INJECTION: &str = "istio-injection";

pub const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
/// Pod annotation: Istio's ProxyConfig (YAML or JSON) for this pod.
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
pub const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
pub const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
/// Pod annotation choosing the injection template (see `template.rs`).
pub const TEMPLATES: &str = "inject.istio.io/templates";
// The `traffic.sidecar.istio.io/*` and `sidecar.istio.io/interceptionMode`
// annotations are the init crate's: `meshkeeper_init::capture::Setting::annotation`.

/// Labels written on injected pods (never overwritten when present).
pub const TLS_MODE: &str = "security.istio.io/tlsMode";
pub const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
pub const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
/// The revision whose webhook injected the pod (the revision's own name,
/// never a tag). Together with [`PROXY_VERSION_LABEL`] it lets the operator
/// watch only injected pods, metadata only, and tell which run an outdated
/// proxy. Note that the operator also puts this key on the objects it
/// creates (the webhook's own pods among them); injected pods are the ones
/// that carry [`PROXY_VERSION_LABEL`] too.
pub const INJECTED_REVISION_LABEL: &str = "meshkeeper.io/revision";
/// The meshkeeper version of the revision that injected the pod
/// (`MeshRevision` `spec.version`, as a label value: see
/// [`proxy_version_value`]).
pub const PROXY_VERSION_LABEL: &str = "meshkeeper.io/proxy-version";
/// Where the canonical name and revision come from when the pod does not
/// carry them already, in order of preference.
pub const APP_NAME_LABELS: [&str; 2] = ["app.kubernetes.io/name", "app"];
pub const APP_VERSION_LABELS: [&str; 2] = ["app.kubernetes.io/version", "version"];
/// Set by the Deployment controller on the pods of each ReplicaSet.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Annotation telling `kubectl logs/exec` which container to pick by default.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// meshkeeper's record of an injection (see [`super::InjectionStatus`]).
pub const STATUS: &str = "meshkeeper.io/status";
/// Istio's record of an injection: such a pod already has a sidecar.
pub const ISTIO_STATUS: &str = "sidecar.istio.io/status";

pub const INIT_CONTAINER: &str = "meshkeeper-init";
pub const PROXY_CONTAINER: &str = "meshkeeper-proxy";
/// The per-namespace ConfigMap the operator writes (Envoy bootstrap).
pub const PROXY_CONFIG_MAP: &str = "meshkeeper-proxy";
pub const PROXY_CONFIG_VOLUME: &str = "meshkeeper-proxy-config";
pub const PROXY_CONFIG_DIR: &str = "/etc/meshkeeper/proxy";
pub const PROXY_BOOTSTRAP: &str = "/etc/meshkeeper/proxy/bootstrap.yaml";
/// The gRPC xDS bootstrap: the key the operator writes in the proxy
/// ConfigMap, where proxyless gRPC pods find it, and the variable gRPC
/// libraries read its path from.
pub const GRPC_BOOTSTRAP_KEY: &str = "grpc-bootstrap.json";
pub const GRPC_BOOTSTRAP: &str = "/etc/meshkeeper/proxy/grpc-bootstrap.json";
pub const GRPC_BOOTSTRAP_ENV: &str = "GRPC_XDS_BOOTSTRAP";
/// Lets a gateway's proxy, which runs as 1337, listen on ports 80 and 443
/// (a namespaced sysctl Kubernetes counts as safe).
pub const UNPRIVILEGED_PORT_SYSCTL: &str = "net.ipv4.ip_unprivileged_port_start";

/// Namespaces that are never injected, whatever their labels say.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Envoy's Prometheus endpoint and the readiness endpoint the kubelet
/// probes: the init crate's never-captured inbound ports (in its documented
/// order), so the ports the proxy opens and the ports the rules leave alone
/// cannot drift apart.
pub const PROMETHEUS_PORT: i32 = NEVER_CAPTURED_INBOUND_PORTS[0] as i32;
pub const HEALTH_PORT: i32 = NEVER_CAPTURED_INBOUND_PORTS[1] as i32;
pub const READINESS_PATH: &str = "/healthz/ready";

/// The value of [`PROXY_VERSION_LABEL`] for a revision at `version`: the
/// version itself when it is a valid label value (every version the Mesh's
/// schema accepts is), else the same cut-and-trim every other derived label
/// gets, so a hand-made MeshRevision cannot make the API server refuse the
/// pod. The operator compares pods with this function's result, never with
/// the raw version.
pub fn proxy_version_value(version: &str) -> String {
    super::labels::to_label_value(version)
}
