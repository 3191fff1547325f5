//! Which workloads to restart so their pods get a current proxy
//! (`spec.updateStrategy.updateWorkloads`), a bounded number at a time, and
//! the patch that restarts one.
//!
//! Only Deployments, StatefulSets and DaemonSets are restarted: a change of
//! their pod template rolls their pods. Bare pods have no template to
//! change, and a Job's pods finish on their own (restarting a Job would
//! rerun its work).

use std::collections::BTreeSet;

use meshkeeper_crds::meshkeeper::mesh::UpdateStrategy;
use meshkeeper_webhook::inject::names as inject_names;
use serde_json::{Value, json};

use super::usage::PodInfo;
use crate::names::RESTARTED_AT_ANNOTATION;

/// Workloads restarting at once when the Mesh sets no bound.
pub const DEFAULT_MAX_CONCURRENT_RESTARTS: usize = 5;

/// The kinds the operator restarts, in the order it restarts them within a
/// namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }
}

/// A workload to restart. Ordered by namespace, kind, name: the order
/// restarts are chosen in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    pub namespace: String,
    pub kind: WorkloadKind,
    pub name: String,
}

/// The workload that owns the pod, when it is one the operator restarts.
/// A pod of a Deployment is owned by a ReplicaSet named
/// `<deployment>-<pod-template-hash>`; the Deployment's name is that name
/// without the pod's `pod-template-hash` label as suffix. A ReplicaSet whose
/// name does not end so is not a Deployment's (nothing would roll it), and
/// is skipped.
pub fn workload_of(pod: &PodInfo) -> Option<Workload> {
    let owner = pod.owner.as_ref()?;
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = pod.labels.get(inject_names::POD_TEMPLATE_HASH)?;
            let deployment = owner
                .name
                .strip_suffix(hash.as_str())?
                .strip_suffix('-')
                .filter(|name| !name.is_empty())?;
            (WorkloadKind::Deployment, deployment.to_owned())
        }
        "StatefulSet" => (WorkloadKind::StatefulSet, owner.name.clone()),
        "DaemonSet" => (WorkloadKind::DaemonSet, owner.name.clone()),
        _ => return None,
    };
    Some(Workload {
        namespace: pod.namespace.clone(),
        kind,
        name,
    })
}

/// The Mesh's bound, defaulted; at least one (the schema's minimum) so a
/// bad value cannot stall every restart.
pub fn max_concurrent_restarts(strategy: Option<&UpdateStrategy>) -> usize {
    strategy
        .and_then(|s| s.max_concurrent_restarts)
        .map_or(DEFAULT_MAX_CONCURRENT_RESTARTS, |n| {
            usize::try_from(n).unwrap_or(0).max(1)
        })
}

/// The workloads to restart now: the owners of `outdated` pods, each once,
/// leaving out those still `rolling` (restarted and not finished), at most
/// `max_concurrent` minus the number still rolling, in [`Workload`] order.
pub fn workloads_to_restart(
    outdated: &[&PodInfo],
    rolling: &BTreeSet<Workload>,
    max_concurrent: usize,
) -> Vec<Workload> {
    let budget = max_concurrent.saturating_sub(rolling.len());
    let candidates: BTreeSet<Workload> = outdated
        .iter()
        .filter_map(|pod| workload_of(pod))
        .filter(|workload| !rolling.contains(workload))
        .collect();
    candidates.into_iter().take(budget).collect()
}

/// The JSON merge patch that restarts a Deployment, StatefulSet or
/// DaemonSet: a new pod template annotation, as `kubectl rollout restart`
/// does with its own key.
pub fn restart_patch(restarted_at: &str) -> Value {
    json!({
        "spec": {"template": {"metadata": {"annotations": {
            (RESTARTED_AT_ANNOTATION): restarted_at
        }}}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revisions::usage::OwnerRef;
    use std::collections::BTreeMap;

    fn pod(namespace: &str, owner: Option<(&str, &str)>, hash: Option<&str>) -> PodInfo {
        PodInfo {
            namespace: namespace.into(),
            name: "p".into(),
            labels: hash
                .map(|h| {
                    BTreeMap::from([(inject_names::POD_TEMPLATE_HASH.to_owned(), h.to_owned())])
                })
                .unwrap_or_default(),
            owner: owner.map(|(kind, name)| OwnerRef {
                kind: kind.into(),
                name: name.into(),
            }),
            ..PodInfo::default()
        }
    }

    fn workload(namespace: &str, kind: WorkloadKind, name: &str) -> Workload {
        Workload {
            namespace: namespace.into(),
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn replica_set_names_map_to_their_deployment() {
        let p = pod(
            "shop",
            Some(("ReplicaSet", "web-api-7d4b9c8f5")),
            Some("7d4b9c8f5"),
        );
        assert_eq!(
            workload_of(&p),
            Some(workload("shop", WorkloadKind::Deployment, "web-api"))
        );
        // A Deployment whose own name ends like a hash keeps that part.
        let p = pod("shop", Some(("ReplicaSet", "abc-abc-abc")), Some("abc"));
        assert_eq!(
            workload_of(&p),
            Some(workload("shop", WorkloadKind::Deployment, "abc-abc"))
        );
        // A ReplicaSet of no Deployment: no hash label, or a name that does
        // not end in it.
        assert_eq!(
            workload_of(&pod("shop", Some(("ReplicaSet", "web-1")), None)),
            None
        );
        assert_eq!(
            workload_of(&pod("shop", Some(("ReplicaSet", "web-1")), Some("2"))),
            None
        );
        assert_eq!(
            workload_of(&pod("shop", Some(("ReplicaSet", "-abc")), Some("abc"))),
            None
        );
        assert_eq!(
            workload_of(&pod("shop", Some(("ReplicaSet", "webabc")), Some("abc"))),
            None,
            "the hash follows a dash"
        );
    }

    #[test]
    fn other_owners() {
        assert_eq!(
            workload_of(&pod("db", Some(("StatefulSet", "pg")), None)),
            Some(workload("db", WorkloadKind::StatefulSet, "pg"))
        );
        assert_eq!(
            workload_of(&pod("mon", Some(("DaemonSet", "agent")), None)),
            Some(workload("mon", WorkloadKind::DaemonSet, "agent"))
        );
        assert_eq!(
            workload_of(&pod("batch", Some(("Job", "nightly")), None)),
            None
        );
        assert_eq!(workload_of(&pod("shop", None, None)), None, "bare pod");
    }

    #[test]
    fn restarts_are_deduplicated_bounded_and_ordered() {
        let pods = [
            pod("shop", Some(("ReplicaSet", "web-h1")), Some("h1")),
            pod("shop", Some(("ReplicaSet", "web-h1")), Some("h1")),
            pod("shop", Some(("ReplicaSet", "api-h2")), Some("h2")),
            pod("db", Some(("StatefulSet", "pg")), None),
            pod("batch", Some(("Job", "nightly")), None),
            pod("mon", Some(("DaemonSet", "agent")), None),
            pod("shop", Some(("StatefulSet", "cache")), None),
        ];
        let outdated: Vec<&PodInfo> = pods.iter().collect();
        let all = workloads_to_restart(&outdated, &BTreeSet::new(), 10);
        assert_eq!(
            all,
            [
                workload("db", WorkloadKind::StatefulSet, "pg"),
                workload("mon", WorkloadKind::DaemonSet, "agent"),
                workload("shop", WorkloadKind::Deployment, "api"),
                workload("shop", WorkloadKind::Deployment, "web"),
                workload("shop", WorkloadKind::StatefulSet, "cache"),
            ]
        );
        // The input order does not change the choice.
        let reversed: Vec<&PodInfo> = pods.iter().rev().collect();
        assert_eq!(workloads_to_restart(&reversed, &BTreeSet::new(), 10), all);

        assert_eq!(
            workloads_to_restart(&outdated, &BTreeSet::new(), 2),
            all[..2]
        );

        // Two still rolling: they are not chosen again and use up the budget.
        let rolling = BTreeSet::from([all[0].clone(), all[2].clone()]);
        assert_eq!(
            workloads_to_restart(&outdated, &rolling, 3),
            [all[1].clone()]
        );
        assert!(workloads_to_restart(&outdated, &rolling, 2).is_empty());
        assert!(workloads_to_restart(&outdated, &rolling, 1).is_empty());
    }

    #[test]
    fn the_bound_defaults_and_never_reaches_zero() {
        assert_eq!(max_concurrent_restarts(None), 5);
        let with = |n| UpdateStrategy {
            max_concurrent_restarts: Some(n),
            ..UpdateStrategy::default()
        };
        assert_eq!(max_concurrent_restarts(Some(&with(2))), 2);
        assert_eq!(max_concurrent_restarts(Some(&with(0))), 1);
        assert_eq!(max_concurrent_restarts(Some(&with(-3))), 1);
    }

    #[test]
    fn the_patch_sets_the_template_annotation() {
        assert_eq!(
            restart_patch("2025-06-01T12:00:00Z"),
            json!({"spec": {"template": {"metadata": {"annotations": {
                "meshkeeper.io/restartedAt": "2025-06-01T12:00:00Z"
            }}}}})
        );
        assert_eq!(WorkloadKind::StatefulSet.as_str(), "StatefulSet");
    }
}
