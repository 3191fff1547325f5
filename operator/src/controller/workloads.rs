//! `updateWorkloads`: restart the Deployments, StatefulSets and DaemonSets
//! whose pods run an outdated proxy (an older version than their revision's,
//! or a revision their namespace no longer selects), a bounded number at a
//! time. A workload
//! counts as still rolling while any of its pods is outdated, so it takes a
//! slot until its new pods replaced the old ones.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use meshkeeper_crds::meshkeeper::mesh::Mesh;

use super::Context;
use super::mesh::MeshError;
use crate::revisions::outdated::{on_other_revision, outdated_pods};
use crate::revisions::restarts::{self, Workload, WorkloadKind};
use crate::revisions::usage::PodInfo;

/// Restarts what the budget allows; returns whether any workload is still
/// rolling or was just restarted (the caller looks again soon).
pub async fn restart_outdated(
    ctx: &Context,
    mesh: &Mesh,
    versions: &BTreeMap<String, String>,
    namespace_revisions: &BTreeMap<String, String>,
    pods: &[PodInfo],
) -> Result<bool, MeshError> {
    // Outdated: an older proxy than the revision's, or a revision the
    // namespace no longer selects (a canary move).
    let mut outdated = outdated_pods(versions, pods);
    for pod in on_other_revision(namespace_revisions, pods) {
        if !outdated.iter().any(|p| std::ptr::eq(*p, pod)) {
            outdated.push(pod);
        }
    }
    let with_outdated: BTreeSet<Workload> = outdated
        .iter()
        .filter_map(|p| restarts::workload_of(p))
        .collect();
    let rolling: BTreeSet<Workload> = {
        let Ok(mut restarted) = ctx.restarted.lock() else {
            return Ok(false);
        };
        restarted.retain(|w| with_outdated.contains(w));
        restarted.clone()
    };
    let max = restarts::max_concurrent_restarts(mesh.spec.update_strategy.as_ref());
    let chosen = restarts::workloads_to_restart(&outdated, &rolling, max);
    let patch = restarts::restart_patch(&Timestamp::now().to_string());
    for workload in &chosen {
        tracing::info!(kind = workload.kind.as_str(), namespace = %workload.namespace, name = %workload.name, "restarting a workload with outdated proxies");
        let params = PatchParams::default();
        let result = match workload.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(ctx.client.clone(), &workload.namespace)
                    .patch(&workload.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(ctx.client.clone(), &workload.namespace)
                    .patch(&workload.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            WorkloadKind::DaemonSet => {
                Api::<DaemonSet>::namespaced(ctx.client.clone(), &workload.namespace)
                    .patch(&workload.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => super::metrics::count_write(workload.kind.as_str(), "restart"),
            // Gone meanwhile: nothing to restart.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(source) => {
                return Err(MeshError::Kube {
                    action: format!(
                        "restarting {} {}/{}",
                        workload.kind.as_str(),
                        workload.namespace,
                        workload.name
                    ),
                    source,
                });
            }
        }
        if let Ok(mut restarted) = ctx.restarted.lock() {
            restarted.insert(workload.clone());
        }
    }
    Ok(!chosen.is_empty() || !rolling.is_empty())
}
