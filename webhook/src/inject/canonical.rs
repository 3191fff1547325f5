//! The canonical service name and revision of a pod, as Istio derives them:
//! the telemetry identity of the workload, stable across its pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::{labels, names};

/// Canonical revision when the pod names none.
const DEFAULT_CANONICAL_REVISION: &str = "latest";

/// Digits of the scheduled-time suffix the CronJob controller gives its
/// Jobs (minutes since the epoch: 8 digits until 2160), as Istio matches it.
const CRON_STAMP_DIGITS: std::ops::RangeInclusive<usize> = 8..=10;

/// `(canonical name, canonical revision)` for the pod. Labels the pod
/// already carries are kept as they are; derived values are made valid
/// label values, since they become labels.
pub(crate) fn canonical_service(pod: &Pod) -> (String, String) {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let first_label = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k));

    let name = first_label(&[names::CANONICAL_NAME])
        .cloned()
        .unwrap_or_else(|| {
            first_label(&names::APP_NAME_LABELS).map_or_else(
                || labels::to_label_value(&workload_name(pod)),
                |app| labels::to_label_value(app),
            )
        });
    let revision = first_label(&[names::CANONICAL_REVISION])
        .cloned()
        .unwrap_or_else(|| {
            first_label(&names::APP_VERSION_LABELS).map_or_else(
                || DEFAULT_CANONICAL_REVISION.to_owned(),
                |version| labels::to_label_value(version),
            )
        });
    (name, revision)
}

/// The name of the workload that made the pod: the Deployment for a pod of
/// one of its ReplicaSets, the CronJob for a pod of one of its Jobs, else the
/// controlling owner, else the pod's own name (or its `generateName` stem).
///
/// A StatefulSet's pod (`db-0`) gets the StatefulSet's name (`db`). This
/// deliberately differs from Istio, which names such a pod by itself (it
/// falls back to the pod name when there is no `generateName`): every
/// replica would then be its own canonical service, splitting the
/// workload's telemetry, where one name groups the replicas.
pub(crate) fn workload_name(pod: &Pod) -> String {
    let meta = &pod.metadata;
    let template_hash = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(names::POD_TEMPLATE_HASH))
        .filter(|h| !h.is_empty());
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));

    if let Some(owner) = controller {
        return match owner.kind.as_str() {
            "ReplicaSet" => template_hash
                .and_then(|hash| strip_dash_suffix(&owner.name, hash))
                .unwrap_or(&owner.name)
                .to_owned(),
            "Job" => cron_job_name(&owner.name).unwrap_or(&owner.name).to_owned(),
            _ => owner.name.clone(),
        };
    }
    if let Some(name) = meta.name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    let stem = meta
        .generate_name
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('-');
    // A pod template stamped by hand (or `meshctl kube-inject`) keeps the
    // ReplicaSet's name as its generateName even without an owner.
    template_hash
        .and_then(|hash| strip_dash_suffix(stem, hash))
        .unwrap_or(stem)
        .to_owned()
}

/// `name` without a trailing `-suffix`, if it has one.
fn strip_dash_suffix<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    name.strip_suffix(suffix)?
        .strip_suffix('-')
        .filter(|stem| !stem.is_empty())
}

/// The CronJob controller names its Jobs `<cronjob>-<scheduled time in
/// minutes since the epoch>`; recover the CronJob's name from that.
fn cron_job_name(job: &str) -> Option<&str> {
    let (stem, stamp) = job.rsplit_once('-')?;
    let is_stamp =
        CRON_STAMP_DIGITS.contains(&stamp.len()) && stamp.bytes().all(|b| b.is_ascii_digit());
    (is_stamp && !stem.is_empty()).then_some(stem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(meta: ObjectMeta) -> Pod {
        Pod {
            metadata: meta,
            ..Pod::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn owner(kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn existing_canonical_labels_win() {
        let p = pod(ObjectMeta {
            labels: labels(&[
                (names::CANONICAL_NAME, "svc"),
                (names::CANONICAL_REVISION, "r1"),
                ("app.kubernetes.io/name", "k8s-name"),
                ("app", "app"),
                ("version", "v9"),
            ]),
            ..ObjectMeta::default()
        });
        assert_eq!(canonical_service(&p), ("svc".into(), "r1".into()));
    }

    #[test]
    fn kubernetes_recommended_labels_beat_app_and_version() {
        let p = pod(ObjectMeta {
            labels: labels(&[
                ("app.kubernetes.io/name", "k8s-name"),
                ("app.kubernetes.io/version", "1.2"),
                ("app", "app"),
                ("version", "v9"),
            ]),
            ..ObjectMeta::default()
        });
        assert_eq!(canonical_service(&p), ("k8s-name".into(), "1.2".into()));
    }

    #[test]
    fn app_and_version_labels_then_latest() {
        let p = pod(ObjectMeta {
            labels: labels(&[("app", "reviews"), ("version", "v2")]),
            ..ObjectMeta::default()
        });
        assert_eq!(canonical_service(&p), ("reviews".into(), "v2".into()));
        let p = pod(ObjectMeta {
            name: Some("solo".into()),
            ..ObjectMeta::default()
        });
        assert_eq!(canonical_service(&p), ("solo".into(), "latest".into()));
    }

    #[test]
    fn deployment_name_from_replica_set_owner() {
        let p = pod(ObjectMeta {
            generate_name: Some("reviews-v1-7d9c8b6f4d-".into()),
            labels: labels(&[(names::POD_TEMPLATE_HASH, "7d9c8b6f4d")]),
            owner_references: Some(vec![
                owner("Other", "not-controller", false),
                owner("ReplicaSet", "reviews-v1-7d9c8b6f4d", true),
            ]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "reviews-v1");
    }

    #[test]
    fn replica_set_without_matching_hash_keeps_owner_name() {
        let p = pod(ObjectMeta {
            generate_name: Some("rs-abc-".into()),
            owner_references: Some(vec![owner("ReplicaSet", "plain-rs", true)]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "plain-rs");
        let p = pod(ObjectMeta {
            labels: labels(&[(names::POD_TEMPLATE_HASH, "zzz")]),
            owner_references: Some(vec![owner("ReplicaSet", "plain-rs", true)]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "plain-rs");
    }

    #[test]
    fn cron_job_name_from_job_owner() {
        let p = pod(ObjectMeta {
            owner_references: Some(vec![owner("Job", "nightly-backup-29012345", true)]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "nightly-backup");
        let p = pod(ObjectMeta {
            owner_references: Some(vec![owner("Job", "migrate-2", true)]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "migrate-2");
    }

    #[test]
    fn cron_job_stamps_have_eight_to_ten_digits() {
        for (job, workload) in [
            ("report-1234567", "report-1234567"),
            ("report-12345678", "report"),
            ("report-123456789", "report"),
            ("report-1234567890", "report"),
            ("report-12345678901", "report-12345678901"),
        ] {
            let p = pod(ObjectMeta {
                owner_references: Some(vec![owner("Job", job, true)]),
                ..ObjectMeta::default()
            });
            assert_eq!(workload_name(&p), workload, "{job}");
        }
    }

    fn daemon_set_pod(name: &str) -> Pod {
        pod(ObjectMeta {
            name: Some(format!("{name}-x1y2z")),
            owner_references: Some(vec![owner("DaemonSet", name, true)]),
            ..ObjectMeta::default()
        })
    }

    #[test]
    fn derived_canonical_name_is_cut_to_63_characters() {
        let name = format!("{}-{}", "log-agent".repeat(4), "z".repeat(31));
        assert_eq!(name.len(), 68);
        let (canonical, revision) = canonical_service(&daemon_set_pod(&name));
        assert_eq!(canonical, name[..63]);
        assert_eq!(revision, "latest");
    }

    #[test]
    fn derived_canonical_name_never_ends_in_punctuation_after_the_cut() {
        for tail in ['-', '.', '_'] {
            // The cut at 63 leaves `tail` (and the one before it) last.
            let name = format!("{}{tail}{tail}b-c", "a".repeat(61));
            let (canonical, _) = canonical_service(&daemon_set_pod(&name));
            assert_eq!(canonical, "a".repeat(61), "{name}");
        }
        // A pod name (no owner) is cut the same way.
        let long_pod = pod(ObjectMeta {
            name: Some(format!("{}.{}", "w".repeat(62), "v".repeat(10))),
            ..ObjectMeta::default()
        });
        assert_eq!(canonical_service(&long_pod).0, "w".repeat(62));
    }

    #[test]
    fn derived_names_that_fit_are_kept() {
        let (canonical, _) = canonical_service(&daemon_set_pod("fluent-bit"));
        assert_eq!(canonical, "fluent-bit");
        let name = "n".repeat(63);
        assert_eq!(canonical_service(&daemon_set_pod(&name)).0, name);
    }

    #[test]
    fn stateful_set_pods_share_the_set_name() {
        // Deliberately unlike Istio, which names each replica by its pod.
        let p = pod(ObjectMeta {
            name: Some("db-0".into()),
            labels: labels(&[("statefulset.kubernetes.io/pod-name", "db-0")]),
            owner_references: Some(vec![owner("StatefulSet", "db", true)]),
            ..ObjectMeta::default()
        });
        assert_eq!(canonical_service(&p), ("db".into(), "latest".into()));
    }

    #[test]
    fn other_owners_name_the_workload() {
        let p = pod(ObjectMeta {
            name: Some("db-0".into()),
            owner_references: Some(vec![owner("StatefulSet", "db", true)]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "db");
    }

    #[test]
    fn pod_name_then_generate_name_stem() {
        let p = pod(ObjectMeta {
            name: Some("standalone".into()),
            generate_name: Some("ignored-".into()),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "standalone");
        let p = pod(ObjectMeta {
            generate_name: Some("batch-".into()),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "batch");
        let p = pod(ObjectMeta {
            generate_name: Some("web-5f7b9-".into()),
            labels: labels(&[(names::POD_TEMPLATE_HASH, "5f7b9")]),
            ..ObjectMeta::default()
        });
        assert_eq!(workload_name(&p), "web");
        assert_eq!(workload_name(&Pod::default()), "");
    }
}
