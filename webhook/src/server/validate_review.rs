//! `POST /validate`: one AdmissionReview of a networking object in, allowed
//! or denied out, by the pure checks of [`crate::validate`] against the
//! state's validation view. No I/O.

use std::panic::{AssertUnwindSafe, catch_unwind};

use axum::http::StatusCode;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, GroupVersionKind};
use meshkeeper_crds::networking::{KINDS, NetworkingObject};

use super::metrics::RequestOutcome;
use super::review::{
    Reply, RequestEnvelope, check_envelope, loaded_revision, missing_request, panic_message,
};
use super::state::{State, ValidationView};
use crate::validate::{self, Finding, Verdict, subsets};

/// The API group whose kinds this endpoint checks.
pub const NETWORKING_GROUP: &str = "networking.istio.io";

/// Users whose DestinationRule deletions are always allowed: they clean up
/// after namespace deletion and owner removal, and blocking them would
/// wedge the cluster.
pub const CLEANUP_USERS: [&str; 2] = [
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:namespace-controller",
];

/// Answers one AdmissionReview body sent to `/validate`.
pub fn review(body: &[u8], state: &State) -> Reply {
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
    if !is_checked_kind(&request.kind) {
        return unchecked_kind(&request);
    }
    let revision = match loaded_revision(state) {
        Ok(revision) => revision,
        Err(reply) => return reply,
    };
    if !state.readiness().validation_view {
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: VirtualServices, DestinationRules and Namespaces have not been listed yet",
        );
    }
    let view = state.validation_view();
    // A bug in a check must cost one request, not the connection.
    match catch_unwind(AssertUnwindSafe(|| judge(&request, &view))) {
        Ok(Ok(judgement)) => respond(&request, judgement, &revision.validation),
        Ok(Err(reply)) => reply,
        Err(panic) => {
            let what = panic_message(panic.as_ref());
            tracing::error!(uid = %request.uid, panic = %what, "validation failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error while validating: {what}"),
            )
        }
    }
}

fn is_checked_kind(kind: &GroupVersionKind) -> bool {
    kind.group == NETWORKING_GROUP && KINDS.contains(&kind.kind.as_str())
}

fn unchecked_kind(request: &AdmissionRequest<DynamicObject>) -> Reply {
    let kind = &request.kind;
    let mut response = AdmissionResponse::from(request);
    response.warnings = Some(vec![format!(
        "meshkeeper's validating webhook does not check {} {}/{}; admitted unchecked",
        kind.kind, kind.group, kind.version
    )]);
    Reply::review(&response, RequestOutcome::Warned)
}

/// What the checks made of a request, before the policy applies.
enum Judgement {
    /// Nothing to check (a deletion of a kind nothing depends on, a
    /// clean-up deletion, CONNECT).
    Allowed,
    /// The object does not decode: always denied, whatever the policy.
    Undecodable(String),
    Checked {
        subject: String,
        findings: Vec<Finding>,
    },
}

fn judge(
    request: &AdmissionRequest<DynamicObject>,
    view: &ValidationView,
) -> Result<Judgement, Reply> {
    match request.operation {
        Operation::Create | Operation::Update => judge_write(request, view),
        Operation::Delete => judge_delete(request, view),
        Operation::Connect => Ok(Judgement::Allowed),
    }
}

fn judge_write(
    request: &AdmissionRequest<DynamicObject>,
    view: &ValidationView,
) -> Result<Judgement, Reply> {
    let Some(object) = request.object.as_ref() else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed AdmissionReview: request.object is missing for a {:?} of a {}",
                request.operation, request.kind.kind
            ),
        ));
    };
    let subject = subject(request);
    let new = match decode(object, request) {
        Ok(new) => new,
        Err(e) => {
            return Ok(Judgement::Undecodable(format!(
                "{subject} does not decode: {e}"
            )));
        }
    };
    let mut findings = validate::findings(&new, &view.index);
    if request.operation == Operation::Update
        && let NetworkingObject::DestinationRule(new_rule) = &new
    {
        // An old object that no longer decodes cannot tell which subsets
        // were in use; the new one is judged on its own.
        if let Some(Ok(NetworkingObject::DestinationRule(old_rule))) =
            request.old_object.as_ref().map(|old| decode(old, request))
        {
            findings.extend(subsets::check_destination_rule_change(
                &old_rule,
                Some(new_rule),
                &view.index,
            ));
        }
    }
    Ok(Judgement::Checked { subject, findings })
}

fn judge_delete(
    request: &AdmissionRequest<DynamicObject>,
    view: &ValidationView,
) -> Result<Judgement, Reply> {
    if request.kind.kind != "DestinationRule" || is_cleanup(request, view) {
        return Ok(Judgement::Allowed);
    }
    // A deletion is never refused for being unreadable: that would leave an
    // object nobody can remove.
    let Some(Ok(NetworkingObject::DestinationRule(old_rule))) =
        request.old_object.as_ref().map(|old| decode(old, request))
    else {
        return Ok(Judgement::Allowed);
    };
    let findings = subsets::check_destination_rule_change(&old_rule, None, &view.index);
    Ok(Judgement::Checked {
        subject: subject(request),
        findings,
    })
}

/// Deletions that must go through: the namespace is going away, or the
/// cluster's own controllers are cleaning up.
fn is_cleanup(request: &AdmissionRequest<DynamicObject>, view: &ValidationView) -> bool {
    let terminating = request
        .namespace
        .as_deref()
        .is_some_and(|ns| view.terminating_namespaces.contains(ns));
    let cleanup_user = request
        .user_info
        .username
        .as_deref()
        .is_some_and(|user| CLEANUP_USERS.contains(&user));
    terminating || cleanup_user
}

/// Decodes the object as its kind, with the request's namespace filled in
/// (the API server may leave it out of the object on CREATE).
fn decode(
    object: &DynamicObject,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<NetworkingObject, meshkeeper_crds::parse::ParseError> {
    let mut value =
        serde_json::to_value(object).map_err(|e| meshkeeper_crds::parse::ParseError::Field {
            path: String::new(),
            message: e.to_string(),
        })?;
    if let (Some(namespace), Some(metadata)) = (
        request.namespace.as_deref(),
        value.get_mut("metadata").and_then(|m| m.as_object_mut()),
    ) {
        metadata.insert("namespace".into(), namespace.into());
    }
    NetworkingObject::from_value(&value)
}

/// `Kind namespace/name`, as messages name the object.
fn subject(request: &AdmissionRequest<DynamicObject>) -> String {
    let name = if request.name.is_empty() {
        request
            .object
            .as_ref()
            .and_then(|o| o.metadata.generate_name.as_deref())
            .map_or_else(|| "(unnamed)".to_string(), |g| format!("{g}*"))
    } else {
        request.name.clone()
    };
    match request.namespace.as_deref() {
        Some(ns) => format!("{} {ns}/{name}", request.kind.kind),
        None => format!("{} {name}", request.kind.kind),
    }
}

/// `CODE path: message`, as denials and warnings list findings.
pub fn describe(finding: &Finding) -> String {
    format!("{} {}: {}", finding.code, finding.path, finding.message)
}

fn respond(
    request: &AdmissionRequest<DynamicObject>,
    judgement: Judgement,
    policy: &meshkeeper_crds::meshkeeper::mesh::ValidationPolicy,
) -> Reply {
    let response = AdmissionResponse::from(request);
    match judgement {
        Judgement::Allowed => Reply::review(&response, RequestOutcome::Allowed),
        Judgement::Undecodable(reason) => {
            Reply::review(&response.deny(reason), RequestOutcome::Denied)
        }
        Judgement::Checked { subject, findings } => {
            let verdict = Verdict::new(findings, policy);
            let warnings: Vec<String> = verdict.warn.iter().map(describe).collect();
            let (mut response, outcome) = if verdict.allowed() {
                let outcome = if warnings.is_empty() {
                    RequestOutcome::Allowed
                } else {
                    RequestOutcome::Warned
                };
                (response, outcome)
            } else {
                (
                    response.deny(denial_message(&subject, &verdict.deny)),
                    RequestOutcome::Denied,
                )
            };
            response.warnings = (!warnings.is_empty()).then_some(warnings);
            Reply::review(&response, outcome)
        }
    }
}

fn denial_message(subject: &str, denied: &[Finding]) -> String {
    let mut message = format!("{subject} is rejected by meshkeeper:");
    for finding in denied {
        message.push_str("\n- ");
        message.push_str(&describe(finding));
    }
    message
}
