//! The Mesh's and each MeshRevision's status: conditions whose
//! lastTransitionTime moves only when their status does, and counts for
//! `kubectl get mesh`. Written only when something changed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use meshkeeper_crds::meshkeeper::mesh::{Mesh, RevisionSummary};
use meshkeeper_crds::meshkeeper::mesh_revision::{MeshRevision, MeshRevisionStatus};
use serde_json::json;

use super::Context;
use super::mesh::{Bookkeeping, MeshError, deployment_available};
use crate::revisions::conditions::set_condition;
use crate::revisions::tags::Revisions;
use crate::revisions::usage::Usage;

/// Per revision: serving, or why not.
pub type Readiness = BTreeMap<String, Result<(), String>>;

/// Is each revision's webhook serving? With a URL override the operator
/// asks `/readyz` the way the API server would connect; otherwise the
/// Deployment must have an available replica.
pub async fn revision_readiness(
    ctx: &Context,
    revisions: &[MeshRevision],
    bundle: Option<&[u8]>,
) -> Readiness {
    let mut readiness = Readiness::new();
    for revision in revisions {
        let name = revision.name_any();
        let url = revision
            .spec
            .config
            .webhook
            .as_ref()
            .and_then(|w| w.url.as_deref());
        let ready = match (url, bundle) {
            (Some(url), Some(bundle)) => {
                super::readiness::url_ready(url, bundle, Duration::from_secs(3))
                    .await
                    .map_err(|e| format!("webhook {url} is not ready: {e}"))
            }
            (Some(url), None) => Err(format!("webhook {url}: no caBundle to trust it with yet")),
            (None, _) => match deployment_available(ctx, &name).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!(
                    "Deployment {}/{} has no available replica",
                    ctx.options.namespace,
                    crate::names::webhook_name(&name)
                )),
                Err(e) => Err(format!("cannot read the webhook Deployment: {e}")),
            },
        };
        readiness.insert(name, ready);
    }
    readiness
}

fn now() -> Time {
    Time(Timestamp::now())
}

#[allow(clippy::too_many_arguments)]
pub async fn write(
    ctx: &Context,
    mesh: &Mesh,
    revisions: &[MeshRevision],
    view: &Revisions,
    bookkeeping: &Bookkeeping,
    readiness: &Readiness,
    problems: &[String],
) -> Result<(), MeshError> {
    let current = mesh.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let generation = mesh.metadata.generation;
    let now = now();
    let mut conditions = status.conditions.take().unwrap_or_default();

    let proxy_problems = ctx
        .proxy_problems
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let mut all_problems: Vec<String> = problems.to_vec();
    all_problems.extend(proxy_problems.iter().cloned());
    if all_problems.is_empty() {
        set_condition(
            &mut conditions,
            "Reconciled",
            true,
            "Reconciled",
            "the installation matches the Mesh",
            generation,
            now.clone(),
        );
    } else {
        set_condition(
            &mut conditions,
            "Reconciled",
            false,
            "ConfigurationProblems",
            &all_problems.join("; "),
            generation,
            now.clone(),
        );
    }
    let not_ready: Vec<String> = readiness
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("revision {name}: {e}")))
        .collect();
    if not_ready.is_empty() {
        set_condition(
            &mut conditions,
            "Ready",
            true,
            "WebhooksServing",
            "every revision's webhook is serving",
            generation,
            now.clone(),
        );
    } else {
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "WebhooksNotReady",
            &not_ready.join("; "),
            generation,
            now.clone(),
        );
    }

    let summaries: Vec<RevisionSummary> = revisions
        .iter()
        .filter(|r| !bookkeeping.pruned.contains(&r.name_any()))
        .map(|revision| {
            let name = revision.name_any();
            let usage = bookkeeping
                .usage
                .by_revision
                .get(&name)
                .cloned()
                .unwrap_or_default();
            let mut summary = RevisionSummary {
                name: name.clone(),
                version: revision.spec.version.clone(),
                ready: readiness.get(&name).is_some_and(|r| r.is_ok()),
                in_use_namespaces: i32::try_from(usage.namespaces.len()).unwrap_or(i32::MAX),
                in_use: usage.in_use(),
                ..RevisionSummary::default()
            };
            if let Some(outdated) = bookkeeping.outdated.get(&name) {
                outdated.fill(&mut summary);
            }
            summary
        })
        .collect();
    status.conditions = Some(conditions);
    status.observed_generation = generation;
    status.active_revision = Some(view.active().to_owned());
    status.revision_count = Some(i32::try_from(summaries.len()).unwrap_or(i32::MAX));
    status.revisions = Some(summaries);
    status.in_use_namespaces =
        Some(i32::try_from(bookkeeping.usage.injected_namespaces.len()).unwrap_or(i32::MAX));
    let tags = view.tag_statuses();
    // Always present: a merge patch leaves out a `None`, which would keep
    // removed tags in the status (and rewrite it on every pass).
    status.tags = Some(tags);

    if status != current {
        patch_status::<Mesh>(ctx, &mesh.name_any(), &status).await?;
    }
    Ok(())
}

/// A MeshRevision's status: InUse (with the namespaces) and when it was
/// last used, which starts the pruning grace period.
pub async fn write_revision(
    ctx: &Context,
    revision: &MeshRevision,
    usage: Option<&Usage>,
    in_use: bool,
    last_used: Option<Time>,
    ready: Option<&Result<(), String>>,
) -> Result<(), MeshError> {
    let current = revision.status.clone().unwrap_or_default();
    let mut status: MeshRevisionStatus = current.clone();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let generation = revision.metadata.generation;
    let namespaces: Vec<String> = usage
        .map(|u| u.namespaces.iter().cloned().collect())
        .unwrap_or_default();
    let message = match usage {
        Some(u) if u.in_use() => format!(
            "{} namespace(s), {} tag(s), {} pod(s) use this revision",
            u.namespaces.len(),
            u.tags.len(),
            u.pods
        ),
        _ => "no namespace, tag or running pod uses this revision".to_owned(),
    };
    set_condition(
        &mut conditions,
        "InUse",
        in_use,
        if in_use { "InUse" } else { "NotInUse" },
        &message,
        generation,
        now(),
    );
    match ready {
        Some(Ok(())) => set_condition(
            &mut conditions,
            "Ready",
            true,
            "WebhookServing",
            "the webhook is serving",
            generation,
            now(),
        ),
        Some(Err(why)) => set_condition(
            &mut conditions,
            "Ready",
            false,
            "WebhookNotReady",
            why,
            generation,
            now(),
        ),
        None => false,
    };
    status.conditions = Some(conditions);
    status.observed_generation = generation;
    status.in_use_namespaces = Some(namespaces); // [] not None: a merge patch omits None, leaving the old list
    status.last_used_time = last_used;
    if status != current {
        patch_status::<MeshRevision>(ctx, &revision.name_any(), &status).await?;
    }
    Ok(())
}

/// Writes the status subresource of a cluster-scoped object of kind `K`.
pub async fn patch_status<K>(
    ctx: &Context,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), MeshError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    Api::<K>::all(ctx.client.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|source| MeshError::Kube {
            action: format!("writing the status of {kind} {name}"),
            source,
        })?;
    super::metrics::count_write(&kind, "status");
    Ok(())
}
