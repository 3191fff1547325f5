//! Which revision injects each namespace, and what keeps each revision in
//! use: namespaces selecting it (by name or through a tag), tags pointing
//! at it, and injected pods still running its proxy.
//!
//! Namespace selection mirrors Istio's webhook selectors: a namespace with
//! `istio-injection` is decided by that label alone (`enabled` → the
//! `default` tag, else the revision named `default`; any other value →
//! nothing), and only a namespace without it is read for `istio.io/rev`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshkeeper_webhook::inject::InjectionStatus;
use meshkeeper_webhook::inject::names as inject_names;

use super::tags::{Revisions, Target};

/// The name `istio-injection=enabled` resolves through: first as a tag,
/// then as a revision.
pub const DEFAULT_TAG: &str = "default";

/// A namespace as the usage rules read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The controlling owner of a pod (`metadata.ownerReferences` entry with
/// `controller: true`, else the first entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// What revision bookkeeping needs of a pod: small enough to keep 10,000 of
/// them, and all of it available from a metadata-only watch except
/// `phase`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// The pod's labels; [`PodInfo::from_metadata`] keeps only the ones
    /// read here (injected revision, proxy version, pod-template-hash).
    pub labels: BTreeMap<String, String>,
    /// The parsed `meshkeeper.io/status` annotation, when the pod has a
    /// valid one.
    pub injection_status: Option<InjectionStatus>,
    /// `status.phase`. A metadata-only watch has no phase: `None` means
    /// unknown and is treated as running, so a pod whose state is not known
    /// keeps its revision in use rather than letting it be pruned. The
    /// price: with metadata-only watches a completed Job pod counts until
    /// it is deleted.
    pub phase: Option<String>,
    pub owner: Option<OwnerRef>,
}

/// The labels [`PodInfo`] reads; the rest are dropped to save memory.
const KEPT_LABELS: [&str; 3] = [
    inject_names::INJECTED_REVISION_LABEL,
    inject_names::PROXY_VERSION_LABEL,
    inject_names::POD_TEMPLATE_HASH,
];

impl PodInfo {
    /// The pod labels [`PodInfo::from_metadata`] reads (a cache may drop
    /// the others).
    pub const LABELS: [&'static str; 3] = KEPT_LABELS;

    /// The pod as seen by a metadata-only watch (`phase` when the caller
    /// has it). A malformed status annotation is dropped: the labels are
    /// what the rules read first.
    pub fn from_metadata(meta: &ObjectMeta, phase: Option<&str>) -> PodInfo {
        let labels = meta
            .labels
            .iter()
            .flatten()
            .filter(|(key, _)| KEPT_LABELS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let injection_status = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(inject_names::STATUS))
            .and_then(|value| serde_json::from_str(value).ok());
        let owners = meta.owner_references.iter().flatten();
        let owner = owners
            .clone()
            .find(|o| o.controller == Some(true))
            .or_else(|| owners.clone().next())
            .map(|o| OwnerRef {
                kind: o.kind.clone(),
                name: o.name.clone(),
            });
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels,
            injection_status,
            phase: phase.map(str::to_owned),
            owner,
        }
    }

    /// A pod that finished (`Succeeded` or `Failed`) runs no proxy any more.
    /// Unknown phase counts as running.
    pub fn is_terminated(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// The revision that injected the pod: its label, else the status
    /// annotation (pods injected before the label existed); `None` for a
    /// pod that was not injected by meshkeeper. A pod counts as injected
    /// when it carries the proxy-version label or the status annotation:
    /// the webhook's own pods carry the revision label but neither.
    pub fn injected_by(&self) -> Option<&str> {
        let injected = self.labels.contains_key(inject_names::PROXY_VERSION_LABEL)
            || self.injection_status.is_some();
        if !injected {
            return None;
        }
        self.labels
            .get(inject_names::INJECTED_REVISION_LABEL)
            .map(String::as_str)
            .or_else(|| self.injection_status.as_ref().map(|s| s.revision.as_str()))
    }
}

/// Which revision injects a namespace with these labels; `None` when none
/// does (no label, `istio-injection` other than `enabled`, or a name that
/// is neither a revision nor a tag).
pub fn namespace_revision<'a>(
    labels: &BTreeMap<String, String>,
    revisions: &'a Revisions,
) -> Option<Target<'a>> {
    if let Some(injection) = labels.get(inject_names::INJECTION) {
        if injection != "enabled" {
            return None;
        }
        // The `default` tag, when there is one, is what moves
        // `istio-injection=enabled` namespaces between revisions.
        return revisions.tags().get_key_value(DEFAULT_TAG).map_or_else(
            || revisions.lookup(DEFAULT_TAG),
            |(tag, revision)| {
                Some(Target {
                    revision,
                    tag: Some(tag),
                })
            },
        );
    }
    labels
        .get(inject_names::REVISION)
        .and_then(|name| revisions.lookup(name))
}

/// What keeps one revision in use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Namespaces whose labels select the revision.
    pub namespaces: BTreeSet<String>,
    /// Tags pointing at the revision.
    pub tags: BTreeSet<String>,
    /// Injected pods of the revision that have not terminated.
    pub pods: usize,
}

impl Usage {
    pub fn in_use(&self) -> bool {
        !self.namespaces.is_empty() || !self.tags.is_empty() || self.pods > 0
    }
}

/// Usage of every revision of a Mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshUsage {
    /// One entry per revision of [`Revisions`], used or not.
    pub by_revision: BTreeMap<String, Usage>,
    /// Namespaces with injection on, whatever the revision (the Mesh's
    /// `status.inUseNamespaces` is its length).
    pub injected_namespaces: BTreeSet<String>,
}

/// Whether the webhook would ever inject this namespace: never the
/// Kubernetes system namespaces nor meshkeeper's own (the webhook refuses
/// them whatever their labels say).
fn injectable(namespace: &str, own_namespace: &str) -> bool {
    namespace != own_namespace && !inject_names::SYSTEM_NAMESPACES.contains(&namespace)
}

/// Works out what keeps each revision in use. Pods naming a revision that
/// is not in `revisions` are left out (there is nothing to keep).
pub fn usage(
    revisions: &Revisions,
    namespaces: &[NamespaceInfo],
    pods: &[PodInfo],
    own_namespace: &str,
) -> MeshUsage {
    let mut by_revision: BTreeMap<String, Usage> = revisions
        .names()
        .map(|name| (name.to_owned(), Usage::default()))
        .collect();
    for (tag, revision) in revisions.tags() {
        if let Some(usage) = by_revision.get_mut(revision) {
            usage.tags.insert(tag.clone());
        }
    }
    let mut injected_namespaces = BTreeSet::new();
    for namespace in namespaces {
        if !injectable(&namespace.name, own_namespace) {
            continue;
        }
        let Some(target) = namespace_revision(&namespace.labels, revisions) else {
            continue;
        };
        injected_namespaces.insert(namespace.name.clone());
        if let Some(usage) = by_revision.get_mut(target.revision) {
            usage.namespaces.insert(namespace.name.clone());
        }
    }
    for pod in pods.iter().filter(|p| !p.is_terminated()) {
        if let Some(usage) = pod.injected_by().and_then(|r| by_revision.get_mut(r)) {
            usage.pods += 1;
        }
    }
    MeshUsage {
        by_revision,
        injected_namespaces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use meshkeeper_crds::meshkeeper::mesh::RevisionTag;

    const OLD: &str = "default-1-0-0";
    const NEW: &str = "default-1-1-0";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn revisions(names: &[&str], active: &str, tags: &[(&str, Option<&str>)]) -> Revisions {
        let tags: Vec<RevisionTag> = tags
            .iter()
            .map(|(name, revision)| RevisionTag {
                name: (*name).to_owned(),
                revision: revision.map(str::to_owned),
            })
            .collect();
        let resolution = Revisions::resolve(names.iter().copied(), active, &tags);
        assert!(resolution.errors.is_empty(), "{:?}", resolution.errors);
        resolution.revisions
    }

    fn injected_pod(namespace: &str, revision: &str, phase: Option<&str>) -> PodInfo {
        PodInfo {
            namespace: namespace.into(),
            name: format!("{revision}-pod"),
            labels: labels(&[
                (inject_names::INJECTED_REVISION_LABEL, revision),
                (inject_names::PROXY_VERSION_LABEL, "1.0.0"),
            ]),
            phase: phase.map(str::to_owned),
            ..PodInfo::default()
        }
    }

    fn ns(name: &str, pairs: &[(&str, &str)]) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: labels(pairs),
        }
    }

    fn revision_of<'a>(pairs: &[(&str, &str)], revisions: &'a Revisions) -> Option<&'a str> {
        namespace_revision(&labels(pairs), revisions).map(|t| t.revision)
    }

    #[test]
    fn istio_injection_enabled_prefers_the_default_tag() {
        let tagged = revisions(&["default", NEW], NEW, &[]);
        // Without a `default` tag, the revision named `default` answers.
        assert_eq!(
            revision_of(&[(inject_names::INJECTION, "enabled")], &tagged),
            Some("default")
        );
        // A `default` tag pointing elsewhere wins over it.
        let tagged = revisions(&[OLD], NEW, &[("default", Some(OLD))]);
        assert_eq!(
            namespace_revision(&labels(&[(inject_names::INJECTION, "enabled")]), &tagged),
            Some(Target {
                revision: OLD,
                tag: Some("default")
            })
        );
        // Neither: nothing injects.
        let untagged = revisions(&[OLD], NEW, &[]);
        assert_eq!(
            revision_of(&[(inject_names::INJECTION, "enabled")], &untagged),
            None
        );
    }

    #[test]
    fn istio_injection_wins_over_istio_rev() {
        let r = revisions(&["default", OLD], NEW, &[]);
        assert_eq!(
            revision_of(
                &[
                    (inject_names::INJECTION, "disabled"),
                    (inject_names::REVISION, NEW)
                ],
                &r
            ),
            None,
            "disabled with a revision label injects nothing"
        );
        assert_eq!(
            revision_of(
                &[
                    (inject_names::INJECTION, "enabled"),
                    (inject_names::REVISION, NEW)
                ],
                &r
            ),
            Some("default")
        );
        assert_eq!(
            revision_of(
                &[
                    (inject_names::INJECTION, "yes"),
                    (inject_names::REVISION, NEW)
                ],
                &r
            ),
            None,
            "an unknown istio-injection value matches no webhook, as in Istio"
        );
        assert_eq!(revision_of(&[(inject_names::REVISION, OLD)], &r), Some(OLD));
        assert_eq!(revision_of(&[(inject_names::REVISION, "gone")], &r), None);
        assert_eq!(revision_of(&[], &r), None);
    }

    #[test]
    fn istio_rev_may_name_a_tag() {
        let r = revisions(&[OLD], NEW, &[("prod", None), ("legacy", Some(OLD))]);
        assert_eq!(
            revision_of(&[(inject_names::REVISION, "prod")], &r),
            Some(NEW)
        );
        assert_eq!(
            revision_of(&[(inject_names::REVISION, "legacy")], &r),
            Some(OLD)
        );
    }

    #[test]
    fn in_use_counts_namespaces_tags_and_live_pods() {
        let r = revisions(&[OLD, "older"], NEW, &[("legacy", Some("older"))]);
        let namespaces = [
            ns("shop", &[(inject_names::REVISION, NEW)]),
            ns("pay", &[(inject_names::REVISION, "legacy")]),
            ns("plain", &[]),
            ns("kube-system", &[(inject_names::REVISION, NEW)]),
            ns("meshkeeper-system", &[(inject_names::REVISION, NEW)]),
        ];
        let pods = [
            injected_pod("shop", OLD, Some("Running")),
            injected_pod("shop", OLD, None),
            injected_pod("shop", NEW, Some("Pending")),
            // Finished pods run no proxy.
            injected_pod("batch", "older", Some("Succeeded")),
            injected_pod("batch", "older", Some("Failed")),
            // A revision that does not exist is not tracked.
            injected_pod("batch", "gone", None),
        ];
        let usage = usage(&r, &namespaces, &pods, "meshkeeper-system");
        assert_eq!(
            usage.by_revision.keys().collect::<Vec<_>>(),
            [OLD, NEW, "older"]
        );
        let new = &usage.by_revision[NEW];
        assert_eq!(new.namespaces, BTreeSet::from(["shop".to_owned()]));
        assert_eq!(new.pods, 1);
        let old = &usage.by_revision[OLD];
        assert!(old.namespaces.is_empty() && old.tags.is_empty());
        assert_eq!(old.pods, 2, "unknown phase counts as running");
        assert!(old.in_use());
        let older = &usage.by_revision["older"];
        assert_eq!(older.namespaces, BTreeSet::from(["pay".to_owned()]));
        assert_eq!(older.tags, BTreeSet::from(["legacy".to_owned()]));
        assert_eq!(older.pods, 0);
        assert_eq!(
            usage.injected_namespaces,
            BTreeSet::from(["pay".to_owned(), "shop".to_owned()]),
            "system and meshkeeper's own namespaces are never injected"
        );
    }

    #[test]
    fn a_tag_alone_keeps_a_revision_in_use() {
        let r = revisions(&[OLD], NEW, &[("pinned", Some(OLD))]);
        let usage = usage(&r, &[], &[], "meshkeeper-system");
        assert!(usage.by_revision[OLD].in_use());
        let r = revisions(&[OLD], NEW, &[]);
        let usage = super::usage(&r, &[], &[], "meshkeeper-system");
        assert!(!usage.by_revision[OLD].in_use());
    }

    #[test]
    fn pods_the_webhook_did_not_inject_are_not_counted() {
        // The webhook's own pods carry the revision label, nothing else.
        let webhook_pod = PodInfo {
            namespace: "meshkeeper-system".into(),
            name: "meshkeeper-webhook-x".into(),
            labels: labels(&[(inject_names::INJECTED_REVISION_LABEL, OLD)]),
            ..PodInfo::default()
        };
        assert_eq!(webhook_pod.injected_by(), None);
        let r = revisions(&[OLD], NEW, &[]);
        assert_eq!(usage(&r, &[], &[webhook_pod], "x").by_revision[OLD].pods, 0);
    }

    #[test]
    fn from_metadata_keeps_what_is_read() {
        let status = r#"{"revision":"old-rev","initContainers":[],"containers":["meshkeeper-proxy"],"volumes":[]}"#;
        let meta = ObjectMeta {
            name: Some("web-7d4b9c-abcde".into()),
            namespace: Some("shop".into()),
            labels: Some(labels(&[
                ("app", "web"),
                (inject_names::POD_TEMPLATE_HASH, "7d4b9c"),
            ])),
            annotations: Some(labels(&[
                (inject_names::STATUS, status),
                ("big", "kubectl last-applied"),
            ])),
            owner_references: Some(vec![
                OwnerReference {
                    kind: "Other".into(),
                    name: "x".into(),
                    ..OwnerReference::default()
                },
                OwnerReference {
                    kind: "ReplicaSet".into(),
                    name: "web-7d4b9c".into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                },
            ]),
            ..ObjectMeta::default()
        };
        let pod = PodInfo::from_metadata(&meta, None);
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("shop", "web-7d4b9c-abcde")
        );
        assert_eq!(
            pod.labels,
            labels(&[(inject_names::POD_TEMPLATE_HASH, "7d4b9c")])
        );
        assert_eq!(
            pod.owner,
            Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "web-7d4b9c".into()
            })
        );
        assert_eq!(pod.phase, None);
        assert!(!pod.is_terminated());
        // Injected before the labels existed: the annotation tells the revision.
        assert_eq!(pod.injected_by(), Some("old-rev"));

        let mut broken = meta;
        broken.annotations = Some(labels(&[(inject_names::STATUS, "{not json")]));
        assert_eq!(
            PodInfo::from_metadata(&broken, Some("Running")).injected_by(),
            None
        );
    }
}
