//! The PodDisruptionBudget of a revision's webhook: voluntary evictions
//! (node drains) keep one replica serving when there is more than one, and
//! never block a drain when there is only one.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{Identity, object_meta, selector_labels};

pub(crate) fn pod_disruption_budget(
    name: &str,
    namespace: &str,
    replicas: i32,
    id: Identity<'_>,
    owner: &OwnerReference,
) -> PodDisruptionBudget {
    // `minAvailable: 1` over a single replica would forbid every eviction
    // and hang `kubectl drain`; `maxUnavailable: 1` lets it go.
    let (min_available, max_unavailable) = if replicas > 1 {
        (Some(IntOrString::Int(1)), None)
    } else {
        (None, Some(IntOrString::Int(1)))
    };
    PodDisruptionBudget {
        metadata: object_meta(name, Some(namespace), id, owner),
        spec: Some(PodDisruptionBudgetSpec {
            min_available,
            max_unavailable,
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(id.revision)),
                match_expressions: None,
            }),
            // A crash-looping pod does not count as available anyway; let
            // drains evict it instead of waiting for it to turn healthy.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
        }),
        status: None,
    }
}
