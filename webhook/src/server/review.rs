//! One AdmissionReview in, one reply out: parsing, the call into
//! [`crate::inject`], and the response. No I/O, so every answer the server
//! can give is tested here with plain bytes.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, Resource, Status};
use serde::{Deserialize, Serialize};

use super::metrics::RequestOutcome;
use super::state::State;
use crate::inject::{self, Outcome, Request, Scope};

/// The only AdmissionReview version the webhook configurations ask for.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
const ADMISSION_KIND: &str = "AdmissionReview";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// An HTTP answer and how to count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    /// `application/json` for an AdmissionReview, `text/plain` otherwise.
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub outcome: RequestOutcome,
}

impl Reply {
    /// An HTTP error with a reason for the caller (not an AdmissionReview).
    pub fn error(status: StatusCode, reason: impl Into<String>) -> Self {
        let mut body = reason.into().into_bytes();
        body.push(b'\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            outcome: RequestOutcome::Error,
        }
    }

    pub(super) fn review(response: &AdmissionResponse, outcome: RequestOutcome) -> Self {
        let envelope = ResponseEnvelope {
            api_version: ADMISSION_API_VERSION,
            kind: ADMISSION_KIND,
            response,
        };
        match serde_json::to_vec(&envelope) {
            Ok(body) => Self {
                status: StatusCode::OK,
                content_type: "application/json",
                body,
                outcome,
            },
            Err(e) => Self::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the AdmissionReview response: {e}"),
            ),
        }
    }
}

/// The request side of an AdmissionReview. Read without `#[serde(flatten)]`
/// (which kube's own type uses): flattening buffers the whole document,
/// Pod included, before reading it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestEnvelope<T: Resource> {
    #[serde(default)]
    pub(super) api_version: String,
    #[serde(default)]
    pub(super) kind: String,
    pub(super) request: Option<AdmissionRequest<T>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseEnvelope<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: &'a AdmissionResponse,
}

/// Answers one AdmissionReview body sent to an injection endpoint.
pub fn review(body: &[u8], scope: Scope, state: &State) -> Reply {
    // Fast path: a Pod, parsed once. Anything else (a non-Pod object, bad
    // input) is read again generically to say what it is.
    let envelope = match serde_json::from_slice::<RequestEnvelope<Pod>>(body) {
        Ok(envelope) => envelope,
        Err(_) => return review_generic(body),
    };
    if let Err(reply) = check_envelope(&envelope.api_version, &envelope.kind) {
        return reply;
    }
    let Some(request) = envelope.request else {
        return missing_request();
    };
    if !is_pod(&request.kind) {
        return not_a_pod(&request);
    }
    review_pod(&request, scope, state)
}

pub(super) fn check_envelope(api_version: &str, kind: &str) -> Result<(), Reply> {
    if api_version != ADMISSION_API_VERSION || kind != ADMISSION_KIND {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported review type apiVersion={api_version:?} kind={kind:?}: this webhook \
                 answers apiVersion {ADMISSION_API_VERSION:?} kind {ADMISSION_KIND:?} only"
            ),
        ));
    }
    Ok(())
}

pub(super) fn missing_request() -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        "the AdmissionReview has no `request`: nothing to review",
    )
}

/// Reads a body that did not parse as a review of a Pod, to tell malformed
/// input from a review of another kind.
fn review_generic(body: &[u8]) -> Reply {
    let envelope =
        match meshkeeper_crds::parse::from_json_slice::<RequestEnvelope<DynamicObject>>(body) {
            Ok(envelope) => envelope,
            Err(e) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!("malformed AdmissionReview: {e}"),
                );
            }
        };
    if let Err(reply) = check_envelope(&envelope.api_version, &envelope.kind) {
        return reply;
    }
    let Some(request) = envelope.request else {
        return missing_request();
    };
    if !is_pod(&request.kind) {
        return not_a_pod(&request);
    }
    // A Pod review whose object is not a Pod: report where.
    let reason = match meshkeeper_crds::parse::from_json_slice::<RequestEnvelope<Pod>>(body) {
        Err(e) => e.to_string(),
        Ok(_) => "the object does not parse as a Pod".to_string(),
    };
    Reply::error(
        StatusCode::BAD_REQUEST,
        format!("malformed AdmissionReview: {reason}"),
    )
}

fn is_pod(kind: &kube::core::GroupVersionKind) -> bool {
    kind.group.is_empty() && kind.kind == "Pod"
}

fn not_a_pod<T: Resource>(request: &AdmissionRequest<T>) -> Reply {
    let kind = &request.kind;
    let group_version = if kind.group.is_empty() {
        kind.version.clone()
    } else {
        format!("{}/{}", kind.group, kind.version)
    };
    let mut response = AdmissionResponse::from(request);
    response.warnings = Some(vec![format!(
        "meshkeeper's sidecar injector only handles Pods; {} {group_version} admitted unchanged",
        kind.kind
    )]);
    Reply::review(&response, RequestOutcome::Skipped)
}

fn review_pod(request: &AdmissionRequest<Pod>, scope: Scope, state: &State) -> Reply {
    if request.operation != Operation::Create {
        // Only pod creation is registered; anything else passes unchanged.
        return Reply::review(&AdmissionResponse::from(request), RequestOutcome::Skipped);
    }
    let Some(pod) = request.object.as_ref() else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "malformed AdmissionReview: request.object is missing for a CREATE of a Pod",
        );
    };
    let Some(namespace) = request
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
    else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "malformed AdmissionReview: request.namespace is missing (Pods are namespaced)",
        );
    };
    let revision = match loaded_revision(state) {
        Ok(revision) => revision,
        Err(reply) => return reply,
    };
    if !state.readiness().proxy_configs {
        // Injecting now could miss a ProxyConfig's image type or environment.
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the cluster's ProxyConfigs have not been listed yet",
        );
    }
    let configs = state.proxy_configs();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    let proxy = inject::proxy_overrides(
        labels,
        namespace,
        &revision.root_namespace,
        configs.as_slice(),
    );
    let injector = state.injector();
    let inject_request = Request {
        pod,
        namespace,
        scope,
        proxy: Some(&proxy),
    };
    // A bug in injection must cost one request, not the connection.
    let outcome = match catch_unwind(AssertUnwindSafe(|| {
        injector(&inject_request, &revision.settings)
    })) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic_message(panic.as_ref());
            tracing::error!(uid = %request.uid, panic = %what, "injection failed");
            return Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error while injecting: {what}"),
            );
        }
    };
    respond(request, outcome)
}

fn respond(request: &AdmissionRequest<Pod>, outcome: Outcome) -> Reply {
    let response = AdmissionResponse::from(request);
    match outcome {
        Outcome::Injected { patch, warnings } => match response.with_patch(patch) {
            Ok(mut response) => {
                response.warnings = non_empty(warnings);
                Reply::review(&response, RequestOutcome::Injected)
            }
            Err(e) => Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the patch: {e}"),
            ),
        },
        Outcome::Skipped { reason, warnings } => {
            tracing::debug!(uid = %request.uid, %reason, "not injected");
            let mut response = response;
            response.warnings = non_empty(warnings);
            Reply::review(&response, RequestOutcome::Skipped)
        }
        Outcome::Denied { message } => {
            let mut response = response.deny(&message);
            response.result = Status::failure(&message, "BadRequest").with_code(400);
            Reply::review(&response, RequestOutcome::Denied)
        }
    }
}

fn non_empty(warnings: Vec<String>) -> Option<Vec<String>> {
    (!warnings.is_empty()).then_some(warnings)
}

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// The revision's settings, or the 503 to answer before they are loaded: an
/// unreachable-looking webhook lets the configuration's failurePolicy decide
/// rather than denying every request.
pub(super) fn loaded_revision(
    state: &State,
) -> Result<std::sync::Arc<super::state::Revision>, Reply> {
    state.revision().ok_or_else(|| {
        Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: MeshRevision {:?} has not been loaded yet",
                state.options().revision
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::StateOptions;
    use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn state_with(injector: crate::server::state::Injector) -> State {
        let state = State::new(StateOptions {
            revision: "canary".into(),
            own_namespace: "meshkeeper-system".into(),
            init_image: "init:1".into(),
            proxy_image: "envoy:1".into(),
            native_sidecars_supported: true,
        })
        .with_injector(injector);
        let revision: MeshRevision = serde_json::from_value(json!({
            "apiVersion": "meshkeeper.io/v1alpha1", "kind": "MeshRevision",
            "metadata": {"name": "canary"},
            "spec": {"mesh": "default", "version": "0.1.0"}
        }))
        .unwrap();
        state.apply_revision(&revision).unwrap();
        state.set_proxy_configs(Vec::new());
        state
    }

    fn answering(outcome: Outcome) -> State {
        state_with(Arc::new(move |_: &Request<'_>, _: &inject::Settings| {
            outcome.clone()
        }))
    }

    fn review_of(kind: Value, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": kind,
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "apps",
                "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": object
            }
        }))
        .unwrap()
    }

    fn pod_review() -> Vec<u8> {
        review_of(
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
        )
    }

    fn response(reply: &Reply) -> Value {
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let review: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(
            review["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        review["response"].clone()
    }

    fn text(reply: &Reply) -> String {
        String::from_utf8_lossy(&reply.body).into_owned()
    }

    #[test]
    fn injected_pods_get_the_patch_and_the_warnings() {
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/labels/security.istio.io~1tlsMode", "value": "istio"}
        ]))
        .unwrap();
        let state = answering(Outcome::Injected {
            patch: patch.clone(),
            warnings: vec!["sidecar.istio.io/inject=\"yes\" ignored".into()],
        });
        let reply = review(&pod_review(), Scope::Namespace, &state);
        assert_eq!(reply.outcome, RequestOutcome::Injected);
        let response = response(&reply);
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        assert_eq!(
            response["warnings"],
            json!(["sidecar.istio.io/inject=\"yes\" ignored"])
        );
        // The patch travels base64-encoded ([]byte in Go).
        let sent: kube::core::admission::AdmissionResponse =
            serde_json::from_value(response.clone()).unwrap();
        let decoded: json_patch::Patch = serde_json::from_slice(&sent.patch.unwrap()).unwrap();
        assert_eq!(decoded, patch);
    }

    #[test]
    fn skipped_pods_are_allowed_unchanged() {
        let state = answering(Outcome::Skipped {
            reason: "opted out".into(),
            warnings: vec![],
        });
        let reply = review(&pod_review(), Scope::Object, &state);
        assert_eq!(reply.outcome, RequestOutcome::Skipped);
        let response = response(&reply);
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none() && response.get("warnings").is_none());
    }

    #[test]
    fn denied_pods_carry_the_message_and_a_400() {
        let message =
            "traffic.sidecar.istio.io/excludeOutboundIPRanges: \"10.0.0.0/33\" is not a CIDR";
        let state = answering(Outcome::Denied {
            message: message.into(),
        });
        let reply = review(&pod_review(), Scope::Namespace, &state);
        assert_eq!(reply.outcome, RequestOutcome::Denied);
        let response = response(&reply);
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["message"], message);
        assert_eq!(response["status"]["code"], 400);
        assert_eq!(response["status"]["reason"], "BadRequest");
    }

    #[test]
    fn the_injector_sees_scope_namespace_and_proxy_overrides() {
        let state = state_with(Arc::new(
            |request: &Request<'_>, settings: &inject::Settings| {
                assert_eq!(request.scope, Scope::Object);
                assert_eq!(request.namespace, "apps");
                assert_eq!(settings.revision, "canary");
                assert!(request.proxy.is_some());
                Outcome::Skipped {
                    reason: "checked".into(),
                    warnings: vec![],
                }
            },
        ));
        let reply = review(&pod_review(), Scope::Object, &state);
        assert_eq!(reply.outcome, RequestOutcome::Skipped);
    }

    #[test]
    fn a_panicking_injector_costs_one_request() {
        let state = state_with(Arc::new(
            |_: &Request<'_>, _: &inject::Settings| -> Outcome { panic!("boom") },
        ));
        let reply = review(&pod_review(), Scope::Namespace, &state);
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.outcome, RequestOutcome::Error);
        assert!(text(&reply).contains("boom"));
    }

    #[test]
    fn other_kinds_are_allowed_with_a_warning() {
        let state = answering(Outcome::Denied {
            message: "never called".into(),
        });
        let reply = review(
            &review_of(
                json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                       "spec": {"replicas": "three"}}),
            ),
            Scope::Namespace,
            &state,
        );
        assert_eq!(reply.outcome, RequestOutcome::Skipped);
        let response = response(&reply);
        assert_eq!(response["allowed"], true);
        let warning = response["warnings"][0].as_str().unwrap();
        assert!(warning.contains("Deployment apps/v1"), "{warning}");
    }

    #[test]
    fn bad_input_is_a_400_with_the_reason() {
        let state = answering(Outcome::Denied {
            message: "never called".into(),
        });
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "malformed AdmissionReview"),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).unwrap(),
                "no `request`",
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": null})).unwrap(),
                "admission.k8s.io/v1beta1",
            ),
            (
                review_of(
                    json!({"group": "", "version": "v1", "kind": "Pod"}),
                    json!({"metadata": {"name": "web"}, "spec": {"containers": "nginx"}}),
                ),
                "request.object.spec.containers",
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {"uid": 7}})).unwrap(),
                "request.uid",
            ),
        ];
        for (body, expected) in cases {
            let reply = review(&body, Scope::Namespace, &state);
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", text(&reply));
            assert_eq!(reply.outcome, RequestOutcome::Error);
            assert!(
                text(&reply).contains(expected),
                "{expected:?} not in {}",
                text(&reply)
            );
        }
    }

    #[test]
    fn before_the_revision_is_loaded_the_answer_is_503() {
        let state = State::new(StateOptions {
            revision: "canary".into(),
            own_namespace: "meshkeeper-system".into(),
            init_image: "init:1".into(),
            proxy_image: "envoy:1".into(),
            native_sidecars_supported: true,
        });
        let reply = review(&pod_review(), Scope::Namespace, &state);
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text(&reply).contains("\"canary\""), "{}", text(&reply));
    }

    #[test]
    fn before_proxy_configs_are_listed_the_answer_is_503() {
        let state = answering(Outcome::Denied {
            message: "never called".into(),
        });
        let fresh = State::new(state.options().clone());
        fresh.set_revision((*state.revision().unwrap()).clone());
        // The revision is known, the ProxyConfig listing is not.
        assert!(fresh.readiness().revision && !fresh.readiness().proxy_configs);
        let reply = review(&pod_review(), Scope::Namespace, &fresh);
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text(&reply).contains("ProxyConfigs"), "{}", text(&reply));
    }

    #[test]
    fn only_creates_are_injected() {
        let state = answering(Outcome::Denied {
            message: "never called".into(),
        });
        let mut body: Value = serde_json::from_slice(&pod_review()).unwrap();
        body["request"]["operation"] = json!("UPDATE");
        let reply = review(
            &serde_json::to_vec(&body).unwrap(),
            Scope::Namespace,
            &state,
        );
        assert_eq!(reply.outcome, RequestOutcome::Skipped);
        assert_eq!(response(&reply)["allowed"], true);
    }
}
