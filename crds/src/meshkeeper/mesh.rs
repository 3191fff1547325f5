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
    #[schemars(regex(pattern = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"))]
    pub version: String,
    /// How a change of `version` rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
    /// Named aliases of revisions: a namespace labelled `istio.io/rev=<tag>`
    /// is injected by the revision the tag points at, so moving a tag moves
    /// every namespace using it. The tag `default` also answers
    /// `istio-injection=enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // A list-map keyed by name: the API server itself rejects two tags of
    // the same name.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(length(max = 32))]
    pub revision_tags: Option<Vec<RevisionTag>>,
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
    /// Restart the Deployments, StatefulSets and DaemonSets whose pods run
    /// an outdated proxy, so they pick up the new one. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_workloads: Option<bool>,
    /// How many workloads are restarting at once when `updateWorkloads` is
    /// on. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent_restarts: Option<i32>,
}

/// A named alias of a revision (Istio's revision tag).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionTag {
    /// The value namespaces put in `istio.io/rev`.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        length(max = 63)
    )]
    pub name: String,
    /// The MeshRevision the tag points at; absent means the active revision,
    /// so the tag follows upgrades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub revision: Option<String>,
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
    /// Where the webhook's serving certificate comes from. Default: the
    /// operator is its own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.source) || self.source != 'Secret' || has(self.secretName)", "message": "source Secret needs secretName (a kubernetes.io/tls Secret in the operator's namespace)"},
    {"rule": "!has(self.source) || self.source != 'CertManager' || (has(self.secretName) && has(self.certManagerCertificate))", "message": "source CertManager needs secretName (the Secret cert-manager writes) and certManagerCertificate (namespace/name of the Certificate)"},
    {"rule": "!has(self.caBundle) || (has(self.source) && self.source == 'Secret')", "message": "caBundle is only used with source Secret"}
]))]
pub struct CertificateSettings {
    /// `SelfSigned` (default): the operator's own CA, rotated automatically.
    /// `Secret`: a Secret you manage. `CertManager`: a Secret written by a
    /// cert-manager Certificate, caBundle injected by cert-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CertificateSource>,
    /// Secret (type kubernetes.io/tls, in the operator's namespace) holding
    /// `tls.crt`, `tls.key` and, for `Secret`, `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub secret_name: Option<String>,
    /// PEM CA bundle for the webhook configurations when the Secret has no
    /// `ca.crt` (source `Secret` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
    /// `namespace/name` of the cert-manager Certificate whose CA cert-manager
    /// injects into the webhook configurations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    ))]
    #[schemars(length(max = 317))]
    pub cert_manager_certificate: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CertificateSource {
    #[default]
    SelfSigned,
    Secret,
    CertManager,
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
    /// Where each revision tag points now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagStatus>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagStatus {
    pub name: String,
    pub revision: String,
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
    /// Whether a namespace, tag or running pod still refers to the revision.
    #[serde(default)]
    pub in_use: bool,
    /// Pods of this revision whose proxy is older than the revision's
    /// version.
    #[serde(default)]
    pub outdated_proxies: i32,
    /// The same count by namespace (namespaces with none are left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated_proxies_by_namespace: Option<std::collections::BTreeMap<String, i32>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::from_value;
    use serde_json::json;

    fn mesh(spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "meshkeeper.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"}, "spec": spec})
    }

    #[test]
    fn full_mesh_round_trips() {
        let doc = mesh(json!({
            "version": "0.1.0",
            "rootNamespace": "mesh-root",
            "updateStrategy": {"type": "RevisionBased", "inactiveRevisionDeletionGracePeriodSeconds": 60},
            "proxy": {
                "image": "envoyproxy/envoy:v1.36.2",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                "concurrency": 2,
                "logLevel": "warning"
            },
            "injection": {
                "policy": "Disabled",
                "neverInjectSelector": [{"matchLabels": {"job": "batch"}}],
                "alwaysInjectSelector": [{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}],
                "nativeSidecar": "True"
            },
            "validation": {"objectRules": "Deny", "subsetReferences": "Warn", "subsetRemoval": "Deny", "envoyFilters": "Warn"},
            "webhook": {"replicas": 3, "failurePolicy": "Ignore", "timeoutSeconds": 5, "url": "https://127.0.0.1:9443"}
        }));
        let parsed: Mesh = from_value(&doc).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), doc);
        assert_eq!(parsed.spec.config.root_namespace(), "mesh-root");
        assert_eq!(
            parsed.spec.update_strategy.and_then(|u| u.kind),
            Some(UpdateStrategyType::RevisionBased)
        );
    }

    /// Quantities are int-or-string; an integer is read as its decimal
    /// string (k8s-openapi's `Quantity`), the same value.
    #[test]
    fn quantities_take_integers_and_strings() {
        let doc = mesh(
            json!({"version": "0.1.0", "proxy": {"resources": {"limits": {"cpu": 1, "memory": "512Mi"}}}}),
        );
        let parsed: Mesh = from_value(&doc).unwrap();
        let limits = parsed
            .spec
            .config
            .proxy
            .and_then(|p| p.resources)
            .and_then(|r| r.limits)
            .unwrap();
        assert_eq!(limits["cpu"].0, "1");
        assert_eq!(limits["memory"].0, "512Mi");
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let parsed: Mesh = from_value(&mesh(json!({"version": "0.1.0"}))).unwrap();
        assert_eq!(parsed.spec.config.root_namespace(), DEFAULT_ROOT_NAMESPACE);
        assert_eq!(UpdateStrategyType::default(), UpdateStrategyType::InPlace);
        assert_eq!(Enforcement::default(), Enforcement::Deny);
    }

    #[test]
    fn bad_enum_and_missing_version_name_the_field() {
        let err = from_value::<Mesh>(&mesh(
            json!({"version": "0.1.0", "updateStrategy": {"type": "BlueGreen"}}),
        ))
        .unwrap_err();
        assert_eq!(err.path(), Some("spec.updateStrategy.type"), "{err}");
        assert!(
            err.to_string().contains("BlueGreen") && err.to_string().contains("RevisionBased"),
            "{err}"
        );

        let err = from_value::<Mesh>(&mesh(
            json!({"version": "0.1.0", "validation": {"envoyFilters": "Audit"}}),
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("Audit") && err.to_string().contains("Warn"),
            "{err}"
        );

        let err = from_value::<Mesh>(&mesh(json!({"proxy": {}}))).unwrap_err();
        assert!(err.to_string().contains("missing field `version`"), "{err}");
    }

    #[test]
    fn crd_is_cluster_scoped_with_printer_columns() {
        use kube::CustomResourceExt;
        let crd = Mesh::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            columns,
            ["Version", "Revisions", "Active", "Ready", "In use", "Age"]
        );
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
}
