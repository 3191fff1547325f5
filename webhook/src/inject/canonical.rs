//! The canonical service name and revision of a pod, as Istio derives them:
//! the telemetry identity of the workload, stable across its pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::names;

/// Canonical revision when the pod names none.
const DEFAULT_REVISION: &str = "latest";

/// `(canonical name, canonical revision)` for the pod.
pub(crate) fn canonical_service(pod: &Pod) -> (String, String) {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let first_label = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k)).cloned();

    let name = first_label(&[names::CANONICAL_NAME])
        .or_else(|| first_label(&names::APP_NAME_LABELS))
        .unwrap_or_else(|| workload_name(pod));
    let revision = first_label(&[names::CANONICAL_REVISION])
        .or_else(|| first_label(&names::APP_VERSION_LABELS))
        .unwrap_or_else(|| DEFAULT_REVISION.to_owned());
    (name, revision)
}

/// The name of the workload that made the pod: the Deployment for a pod of
/// one of its ReplicaSets, the CronJob for a pod of one of its Jobs, else the
/// controlling owner, else the pod's own name (or its `generateName` stem).
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
    let is_stamp = stamp.len() >= 8 && stamp.bytes().all(|b| b.is_ascii_digit());
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
