//! Pods running a proxy older than their revision: in place, a version bump
//! leaves every pod injected before it outdated until it is recreated.
//!
//! A pod's proxy version is its `meshkeeper.io/proxy-version` label,
//! compared with the revision's version turned into a label value the same
//! way the webhook does. A pod without the label (injected before the
//! label existed) falls back to the version in its `meshkeeper.io/status`
//! annotation; when that records none either, the pod counts as outdated:
//! its proxy's version is unknown, and one restart (with `updateWorkloads`)
//! makes it known, whereas never counting it would hide it forever.

use std::collections::BTreeMap;

use meshkeeper_crds::meshkeeper::mesh::RevisionSummary;
use meshkeeper_webhook::inject::names as inject_names;

use super::usage::PodInfo;

/// The outdated proxies of one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outdated {
    pub total: i32,
    /// Only namespaces with at least one.
    pub by_namespace: BTreeMap<String, i32>,
}

impl Outdated {
    /// Writes the counts into the revision's status summary (the by-namespace
    /// map is left out when empty).
    pub fn fill(&self, summary: &mut RevisionSummary) {
        summary.outdated_proxies = self.total;
        summary.outdated_proxies_by_namespace =
            (!self.by_namespace.is_empty()).then(|| self.by_namespace.clone());
    }
}

/// Whether the pod's proxy differs from `current_version` (the
/// MeshRevision's `spec.version`).
pub fn is_outdated(pod: &PodInfo, current_version: &str) -> bool {
    if let Some(label) = pod.labels.get(inject_names::PROXY_VERSION_LABEL) {
        return *label != inject_names::proxy_version_value(current_version);
    }
    match pod.injection_status.as_ref().map(|s| s.version.as_str()) {
        Some(recorded) if !recorded.is_empty() => recorded != current_version,
        _ => true,
    }
}

/// The injected, non-terminated pods of a revision in `versions`
/// (revision → current version) whose proxy is outdated, in input order.
pub fn outdated_pods<'a>(
    versions: &BTreeMap<String, String>,
    pods: &'a [PodInfo],
) -> Vec<&'a PodInfo> {
    pods.iter()
        .filter(|pod| !pod.is_terminated())
        .filter(|pod| {
            pod.injected_by()
                .and_then(|revision| versions.get(revision))
                .is_some_and(|version| is_outdated(pod, version))
        })
        .collect()
}

/// Outdated proxies per revision; every revision of `versions` has an
/// entry, zero or not.
pub fn outdated_proxies(
    versions: &BTreeMap<String, String>,
    pods: &[PodInfo],
) -> BTreeMap<String, Outdated> {
    let mut counts: BTreeMap<String, Outdated> = versions
        .keys()
        .map(|revision| (revision.clone(), Outdated::default()))
        .collect();
    for pod in outdated_pods(versions, pods) {
        let Some(outdated) = pod.injected_by().and_then(|r| counts.get_mut(r)) else {
            continue;
        };
        outdated.total = outdated.total.saturating_add(1);
        let in_namespace = outdated
            .by_namespace
            .entry(pod.namespace.clone())
            .or_default();
        *in_namespace = in_namespace.saturating_add(1);
    }
    counts
}

/// Pods injected by another revision than the one their namespace selects
/// now (`namespace_revisions`: namespace → revision, for namespaces with
/// injection on): after a namespace is relabelled to a new revision, its
/// running pods still carry the old proxy until their workload restarts.
pub fn on_other_revision<'a>(
    namespace_revisions: &BTreeMap<String, String>,
    pods: &'a [PodInfo],
) -> Vec<&'a PodInfo> {
    pods.iter()
        .filter(|pod| !pod.is_terminated())
        .filter(|pod| {
            let wanted = namespace_revisions.get(&pod.namespace);
            matches!((pod.injected_by(), wanted), (Some(has), Some(wants)) if has != wants)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshkeeper_webhook::inject::InjectionStatus;

    fn pod(namespace: &str, revision: &str, version: Option<&str>) -> PodInfo {
        let mut labels = BTreeMap::from([(
            inject_names::INJECTED_REVISION_LABEL.to_owned(),
            revision.to_owned(),
        )]);
        if let Some(version) = version {
            labels.insert(
                inject_names::PROXY_VERSION_LABEL.to_owned(),
                version.to_owned(),
            );
        }
        PodInfo {
            namespace: namespace.into(),
            name: format!("{namespace}-{revision}"),
            labels,
            ..PodInfo::default()
        }
    }

    fn status(revision: &str, version: &str) -> InjectionStatus {
        InjectionStatus {
            revision: revision.into(),
            version: version.into(),
            init_containers: vec![],
            containers: vec!["meshkeeper-proxy".into()],
            volumes: vec![],
        }
    }

    fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn counts_by_revision_and_namespace() {
        let versions = versions(&[("default", "1.1.0"), ("canary", "2.0.0")]);
        let mut finished = pod("shop", "default", Some("1.0.0"));
        finished.phase = Some("Succeeded".into());
        let pods = [
            pod("shop", "default", Some("1.0.0")),
            pod("shop", "default", Some("1.0.0")),
            pod("pay", "default", Some("0.9.0")),
            pod("pay", "default", Some("1.1.0")),
            pod("shop", "canary", Some("2.0.0")),
            finished,
            // A revision not in `versions` is not counted anywhere.
            pod("shop", "gone", Some("0.1.0")),
        ];
        let counts = outdated_proxies(&versions, &pods);
        assert_eq!(counts.len(), 2);
        let default = &counts["default"];
        assert_eq!(default.total, 3);
        assert_eq!(
            default.by_namespace,
            BTreeMap::from([("pay".to_owned(), 1), ("shop".to_owned(), 2)])
        );
        assert_eq!(counts["canary"], Outdated::default());

        let mut summary = RevisionSummary::default();
        default.fill(&mut summary);
        assert_eq!(summary.outdated_proxies, 3);
        assert_eq!(
            summary
                .outdated_proxies_by_namespace
                .as_ref()
                .map(BTreeMap::len),
            Some(2)
        );
        counts["canary"].fill(&mut summary);
        assert_eq!(
            (
                summary.outdated_proxies,
                summary.outdated_proxies_by_namespace
            ),
            (0, None)
        );
    }

    #[test]
    fn the_label_is_compared_as_the_webhook_wrote_it() {
        // A version no label can hold was written in its label form.
        let p = pod("shop", "default", Some("1.0.0-build-7"));
        assert!(!is_outdated(&p, "1.0.0+build/7"));
        assert!(is_outdated(&p, "1.0.0"));
    }

    #[test]
    fn pods_injected_before_the_labels_use_the_status_annotation() {
        let mut recorded = pod("shop", "default", None);
        recorded.labels.clear();
        recorded.injection_status = Some(status("default", "1.0.0"));
        assert!(!is_outdated(&recorded, "1.0.0"));
        assert!(is_outdated(&recorded, "1.1.0"));

        // No version anywhere: unknown counts as outdated.
        let mut unrecorded = recorded.clone();
        unrecorded.injection_status = Some(status("default", ""));
        assert!(is_outdated(&unrecorded, "1.0.0"));
        let versions = versions(&[("default", "1.0.0")]);
        let both = [recorded, unrecorded];
        let outdated = outdated_pods(&versions, &both);
        assert_eq!(outdated.len(), 1);
        assert_eq!(
            outdated[0]
                .injection_status
                .as_ref()
                .map(|s| s.version.as_str()),
            Some("")
        );
    }

    #[test]
    fn pods_of_a_relabelled_namespace_are_on_another_revision() {
        let mut moved = PodInfo {
            namespace: "shop".into(),
            name: "old".into(),
            ..PodInfo::default()
        };
        moved
            .labels
            .insert(inject_names::INJECTED_REVISION_LABEL.into(), "r1".into());
        moved
            .labels
            .insert(inject_names::PROXY_VERSION_LABEL.into(), "1.0.0".into());
        let mut current = moved.clone();
        current.name = "new".into();
        current
            .labels
            .insert(inject_names::INJECTED_REVISION_LABEL.into(), "r2".into());
        let mut elsewhere = moved.clone();
        elsewhere.namespace = "left-the-mesh".into();
        let namespaces = BTreeMap::from([("shop".to_owned(), "r2".to_owned())]);
        let pods = [moved, current, elsewhere];
        let names: Vec<&str> = on_other_revision(&namespaces, &pods)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["old"]);
    }
}
