//! The labels, annotations and object names injection reads or writes. Istio's
//! keys are kept as Istio spells them so existing manifests work unchanged;
//! what meshkeeper itself records lives under `meshkeeper.io/`.

/// Pod label or annotation (the label wins): `true` or `false`.
pub const INJECT: &str = "sidecar.istio.io/inject";
/// Namespace or pod label naming the revision (or tag) that injects.
pub const REVISION: &str = "istio.io/rev";

pub const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
pub const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
pub const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";

/// Labels written on injected pods (never overwritten when present).
pub const TLS_MODE: &str = "security.istio.io/tlsMode";
pub const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
pub const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
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

/// Namespaces that are never injected, whatever their labels say.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

pub const PROXY_UID: i64 = 1337;
pub const HEALTH_PORT: i32 = 15021;
pub const PROMETHEUS_PORT: i32 = 15090;
pub const READINESS_PATH: &str = "/healthz/ready";
