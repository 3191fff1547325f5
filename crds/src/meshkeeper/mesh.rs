//! `Mesh`: one mesh installation, cluster-scoped. The operator turns it into
//! webhook deployments, certificates, webhook configurations and
//! per-namespace proxy configuration (one `MeshRevision` per revision).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Istio's default root namespace: config there applies mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The desired mesh: which version runs, how upgrades roll out, and the
/// settings of its webhooks and proxies.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "meshkeeper.io",
    version = "v1alpha1",
    kind = "Mesh",
    plural = "meshes",
    status = "MeshStatus",
    category = "meshkeeper",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Revisions","type":"integer","jsonPath":".status.revisionCount"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeRevision"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"In use","type":"integer","jsonPath":".status.inUseNamespaces"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    /// meshkeeper version to run (the webhook and proxy images follow it
    /// unless overridden), e.g. `0.1.0`.
    #[schemars(length(min = 1))]
    pub version: String,
    /// How a change of `version` rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
    /// Settings every revision of this mesh runs with.
    #[serde(flatten)]
    pub config: MeshConfig,
}

/// The settings a mesh revision runs with. `Mesh` carries them for its
/// current version; each `MeshRevision` keeps the copy it was created from,
/// so an old revision keeps running unchanged during an upgrade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// Namespace whose configuration applies mesh-wide (Istio's root
    /// namespace). Default `istio-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyDefaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSettings>,
}

impl MeshConfig {
    pub fn root_namespace(&self) -> &str {
        self.root_namespace
            .as_deref()
            .unwrap_or(DEFAULT_ROOT_NAMESPACE)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// Default `InPlace`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<UpdateStrategyType>,
    /// How long a revision that no namespace uses any more is kept before it
    /// is deleted (RevisionBased only). Default 30 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub inactive_revision_deletion_grace_period_seconds: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategyType {
    /// Replace the running revision in place.
    #[default]
    InPlace,
    /// Run the new version as a new revision beside the old one; workloads
    /// move when their namespace's `istio.io/rev` label moves.
    RevisionBased,
}

/// Proxy settings for every injected pod unless a ProxyConfig or a pod
/// annotation overrides them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyDefaults {
    /// Envoy image, e.g. `envoyproxy/envoy:v1.36.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Envoy worker threads; 0 means one per CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<ProxyLogLevel>,
}

/// Envoy's log levels, spelled as Envoy's `--log-level` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyLogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
    Off,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InjectionPolicy {
    /// `Enabled` (default): pods in an injection-labelled namespace are
    /// injected unless they opt out. `Disabled`: only pods that opt in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<InjectionMode>,
    /// Pods matching any of these are never injected, unless they opt in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never_inject_selector: Option<Vec<LabelSelector>>,
    /// Pods matching any of these are injected even under `Disabled`,
    /// unless they opt out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_inject_selector: Option<Vec<LabelSelector>>,
    /// Run the proxy as a Kubernetes native sidecar (an init container with
    /// `restartPolicy: Always`). `Auto` (default) decides per cluster version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_sidecar: Option<NativeSidecar>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum InjectionMode {
    #[default]
    Enabled,
    Disabled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NativeSidecar {
    #[default]
    Auto,
    True,
    False,
}

/// What each admission check does when it finds a problem. Every check
/// defaults to `Deny`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationPolicy {
    /// Per-object rules (hosts, routes, durations, TLS, ports, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_rules: Option<Enforcement>,
    /// A route naming a subset that no visible DestinationRule defines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_references: Option<Enforcement>,
    /// A DestinationRule change or deletion that removes a subset in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_removal: Option<Enforcement>,
    /// EnvoyFilters that would break proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_filters: Option<Enforcement>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Enforcement {
    /// Reject the request with the reason.
    #[default]
    Deny,
    /// Admit the request and return the reason as an admission warning.
    Warn,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSettings {
    /// Webhook server replicas. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
    /// What the API server does when the webhook cannot be reached.
    /// Default `Fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// Seconds the API server waits for an answer. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: Option<i32>,
    /// Out-of-cluster development: the API server calls this HTTPS URL
    /// instead of the webhook Service (paths `/inject` and `/validate` are
    /// appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://"))]
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Reconciled` (the installation matches the spec) and `Ready` (the
    /// webhooks serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The revision new injections use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<RevisionSummary>>,
    /// Number of entries in `revisions`, for `kubectl get mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_count: Option<i32>,
    /// Namespaces with injection on, across all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use_namespaces: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSummary {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub in_use_namespaces: i32,
}
