//! Sidecar injection as pure logic: a Pod and the revision's settings in, a
//! decision and a small JSON Patch out. No Kubernetes client, no I/O: the
//! admission server, `meshctl kube-inject` and the benchmarks all call
//! [`inject`].
//!
//! - `decision`: whether the pod is injected (namespaces, host network,
//!   idempotency, the pod's choice, the mesh's selectors and policy);
//! - `annotations` and `capture`: the per-pod settings from the honoured
//!   annotations, every bad value collected into one denial;
//! - `template`: the shape of the injection (`inject.istio.io/templates`:
//!   sidecar, gateway, proxyless gRPC); `shapes` builds each, `merge` folds a
//!   user-declared `istio-proxy` container into the injected proxy;
//! - `containers`, `canonical`, `patch`: what is added and the JSON Patch;
//! - `labels`: label values, shared with the webhook configuration;
//! - [`proxy_overrides`]: which ProxyConfig objects apply to a pod;
//! - [`Settings::from_revision`]: the settings of a revision's webhook.

mod annotations;
mod canonical;
mod capture;
mod containers;
mod decision;
mod image;
pub(crate) mod labels;
mod merge;
pub mod names;
mod patch;
mod pod_proxy_config;
mod proxy_config;
mod quantity;
pub mod selector;
mod settings;
mod shapes;
mod template;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use meshkeeper_crds::meshkeeper::mesh::InjectionMode;

use annotations::Findings;
use decision::Decision;
use patch::Additions;
use template::Template;

pub use patch::InjectionStatus;
pub use proxy_config::proxy_overrides;
pub use settings::{
    DEFAULT_CONCURRENCY, DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE, DEFAULT_REVISION,
    default_proxy_resources,
};

/// The settings one webhook revision injects with (from its MeshRevision
/// and the server's flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The revision this webhook serves (`default` for the default revision).
    pub revision: String,
    /// The revision's meshkeeper version (`MeshRevision` `spec.version`),
    /// recorded on every injected pod so outdated proxies can be told apart.
    pub version: String,
    /// Revision tags pointing at this revision: a pod label
    /// `istio.io/rev=<tag>` names this webhook as much as the revision's
    /// own name does.
    pub tags: Vec<String>,
    /// meshkeeper's own namespace: never injected.
    pub own_namespace: String,
    pub policy: InjectionMode,
    pub never_inject_selector: Vec<LabelSelector>,
    pub always_inject_selector: Vec<LabelSelector>,
    /// Run the proxy as a native sidecar unless the pod's annotation says
    /// otherwise (the Mesh's `Auto` already resolved against the cluster).
    pub native_sidecar: bool,
    pub proxy_image: String,
    pub proxy_resources: ResourceRequirements,
    pub proxy_log_level: String,
    pub proxy_concurrency: Option<i32>,
    pub init_image: String,
}

impl Settings {
    /// Whether `name` (an `istio.io/rev` value) names this webhook: the
    /// revision itself or one of its tags.
    pub fn serves(&self, name: &str) -> bool {
        name == self.revision || self.tags.iter().any(|tag| tag == name)
    }

    /// What this webhook answers to, for messages: `"canary"`, or
    /// `"canary" (tags "prod", "stable")`.
    pub(crate) fn served_names(&self) -> String {
        if self.tags.is_empty() {
            return format!("{:?}", self.revision);
        }
        let tags: Vec<String> = self.tags.iter().map(|t| format!("{t:?}")).collect();
        format!("{:?} (tags {})", self.revision, tags.join(", "))
    }
}

/// How the API server chose to send this pod (which entry of the
/// MutatingWebhookConfiguration matched; each entry has its own path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The namespace opted in (`istio-injection=enabled`, or
    /// `istio.io/rev=<this revision or one of its tags>` without
    /// `istio-injection`).
    Namespace,
    /// The namespace carries no injection label; the pod opted in with its
    /// own labels (`sidecar.istio.io/inject=true` or `istio.io/rev`).
    Object,
}

/// Proxy settings from ProxyConfig objects that apply to this pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyOverrides {
    /// `default`, `debug` or `distroless`.
    pub image_type: Option<String>,
    pub concurrency: Option<i32>,
    pub environment: BTreeMap<String, String>,
    /// What a ProxyConfig selecting the workload set: the pod's
    /// `proxy.istio.io/config` annotation ranks between the namespace's
    /// ProxyConfig and the workload's, as in Istio, so it may not change these.
    pub set_by_workload: WorkloadFields,
}

/// The fields a workload-selecting ProxyConfig set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadFields {
    pub image_type: bool,
    pub concurrency: bool,
    pub environment: std::collections::BTreeSet<String>,
}

/// One admission request for a Pod.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub pod: &'a Pod,
    /// The request's namespace (a Pod being created may not carry it yet).
    pub namespace: &'a str,
    pub scope: Scope,
    pub proxy: Option<&'a ProxyOverrides>,
}

/// What the injector decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Admit with this patch; `warnings` go back as admission warnings.
    Injected {
        patch: json_patch::Patch,
        warnings: Vec<String>,
    },
    /// Admit unchanged.
    Skipped {
        reason: String,
        warnings: Vec<String>,
    },
    /// Reject: an honoured annotation holds a value that cannot be applied.
    Denied { message: String },
}

/// What a request without ProxyConfig overrides gets.
static NO_OVERRIDES: ProxyOverrides = ProxyOverrides {
    image_type: None,
    concurrency: None,
    environment: BTreeMap::new(),
    set_by_workload: WorkloadFields {
        image_type: false,
        concurrency: false,
        environment: std::collections::BTreeSet::new(),
    },
};

/// Decides whether to inject the pod and builds the patch.
pub fn inject(request: &Request<'_>, settings: &Settings) -> Outcome {
    let pod = request.pod;
    // A pod being created often carries no namespace yet; the request's is
    // the truth, the pod's a fallback for offline use.
    let namespace = if request.namespace.is_empty() {
        pod.metadata.namespace.as_deref().unwrap_or_default()
    } else {
        request.namespace
    };
    match decision::decide(pod, namespace, request.scope, settings) {
        Decision::Skip { reason, warnings } => Outcome::Skipped { reason, warnings },
        Decision::Inject { warnings } => build(
            pod,
            settings,
            request.proxy.unwrap_or(&NO_OVERRIDES),
            warnings,
        ),
    }
}

/// Builds the patch for a pod that is to be injected, or the denial naming
/// every annotation whose value cannot be applied.
fn build(
    pod: &Pod,
    settings: &Settings,
    overrides: &ProxyOverrides,
    mut warnings: Vec<String>,
) -> Outcome {
    let no_annotations = BTreeMap::new();
    let pod_annotations = pod.metadata.annotations.as_ref().unwrap_or(&no_annotations);
    let mut findings = Findings::default();
    let template = template::select(pod_annotations, &mut findings);
    let proxy = annotations::proxy_spec(pod_annotations, settings, overrides, &mut findings);
    let capture = match template {
        Template::Sidecar => capture::capture_config(pod_annotations, &mut findings),
        Template::Gateway | Template::Grpc => {
            warn_capture_ignored(pod_annotations, template, &mut findings);
            None
        }
    };
    let user_proxy = shapes::user_proxy(pod);
    if template == Template::Grpc {
        shapes::check_grpc_user_proxy(user_proxy.as_ref(), &mut findings);
    }
    if !findings.errors.is_empty() {
        return Outcome::Denied {
            message: format!(
                "cannot inject the meshkeeper sidecar: {}",
                findings.errors.join("; ")
            ),
        };
    }
    warnings.extend(findings.warnings);

    let (canonical_name, canonical_revision) = canonical::canonical_service(pod);
    let mut additions = Additions::default();
    if let Some(capture) = capture {
        additions.init_containers.push(containers::init_container(
            &settings.init_image,
            capture.to_args(),
        ));
    }
    let shaped = match template {
        Template::Sidecar => {
            shapes::sidecar(pod, &proxy, &canonical_name, user_proxy, &mut additions)
        }
        Template::Gateway => shapes::gateway(
            pod,
            pod_annotations,
            proxy,
            &canonical_name,
            user_proxy,
            &mut additions,
        ),
        Template::Grpc => Ok(shapes::grpc(pod, &mut additions)),
    };
    match shaped {
        Ok(notes) => warnings.extend(notes),
        Err(error) => return internal_error(&error),
    }
    additions.volumes.push(containers::config_volume());

    let status = InjectionStatus {
        revision: settings.revision.clone(),
        version: settings.version.clone(),
        init_containers: additions
            .init_containers
            .iter()
            .map(|c| c.name.clone())
            .collect(),
        containers: additions
            .containers
            .iter()
            .map(|c| c.name.clone())
            .chain(
                additions
                    .edits
                    .iter()
                    .filter_map(patch::Edit::replaced_name),
            )
            .collect(),
        volumes: additions.volumes.iter().map(|v| v.name.clone()).collect(),
    };
    let status = match serde_json::to_string(&status) {
        Ok(json) => json,
        Err(error) => return internal_error(&error),
    };
    // As in Istio, only the sidecar template marks the pod as taking mutual
    // TLS: a gateway is reached from outside the mesh, and a proxyless gRPC
    // application sets up its own TLS.
    if template == Template::Sidecar {
        additions.labels.push((names::TLS_MODE, "istio".to_owned()));
    }
    additions.labels.extend([
        (names::CANONICAL_NAME, canonical_name),
        (names::CANONICAL_REVISION, canonical_revision),
        (names::INJECTED_REVISION_LABEL, settings.revision.clone()),
        (
            names::PROXY_VERSION_LABEL,
            names::proxy_version_value(&settings.version),
        ),
    ]);
    // The pod's first own container stays the one `kubectl logs` picks; a
    // declared `istio-proxy` is the proxy, not the application.
    if let Some(first) = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .find(|c| c.name != merge::USER_PROXY_CONTAINER)
    }) {
        additions
            .annotations
            .push((names::DEFAULT_CONTAINER, first.name.clone()));
    }
    additions.annotations.push((names::STATUS, status));

    match patch::build(pod, additions) {
        Ok(patch) => Outcome::Injected { patch, warnings },
        Err(error) => internal_error(&error),
    }
}

/// A template without capture has no init container to hand the capture
/// annotations to; say so rather than drop them silently.
fn warn_capture_ignored(
    annotations: &BTreeMap<String, String>,
    template: Template,
    findings: &mut Findings,
) {
    let present = capture::present(annotations);
    if !present.is_empty() {
        findings.warnings.push(format!(
            "annotations {} ignored: the {} template captures no traffic",
            present.join(", "),
            template.name()
        ));
    }
}

/// Serializing plain Kubernetes types to JSON does not fail; if it ever
/// did, refusing the pod beats admitting it half-injected.
fn internal_error(error: &serde_json::Error) -> Outcome {
    Outcome::Denied {
        message: format!(
            "cannot inject the meshkeeper sidecar: internal error building the patch: {error}"
        ),
    }
}
