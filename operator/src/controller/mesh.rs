//! The mesh loop: one pass makes the cluster match the Mesh.
//!
//! Order within a pass: revisions, certificates, per-revision objects, the
//! mesh-wide webhook configurations, then bookkeeping (in use, pruning,
//! outdated proxies, restarts) and status. Bad input stops the pass before
//! anything is written and is reported as `Reconciled=False`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use meshkeeper_crds::meshkeeper::mesh::{Mesh, MeshStatus};
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::parse::from_value;
use serde_json::json;

use super::Context;
use super::apply::Current;
use super::certificates;
use crate::install::{self, Desired, InstallError};
use crate::names::{self, FINALIZER};
use crate::plan;
use crate::revisions::conditions::set_condition;
use crate::revisions::outdated;
use crate::revisions::prune::{self, PruneDecision, PruneInput};
use crate::revisions::tags::Revisions;
use crate::revisions::usage::{self, MeshUsage, NamespaceInfo, PodInfo};

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Certificates(#[from] certificates::CertificateError),
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> MeshError {
    let action = action.into();
    move |source| MeshError::Kube { action, source }
}

/// One pass over the Mesh. Returns when to look again at the latest.
pub async fn reconcile(ctx: Arc<Context>) -> Result<Option<Duration>, MeshError> {
    super::values::apply(&ctx).await?;
    let meshes = meshes_oldest_first(&ctx);
    let Some((primary, extras)) = meshes.split_first() else {
        return Ok(None);
    };
    for extra in extras {
        report_extra(&ctx, extra, primary).await?;
    }
    let mesh: Mesh = match parse_mesh(primary) {
        Ok(mesh) => mesh,
        Err(error) => {
            let message =
                format!("the Mesh cannot be read: {error}; fix the field and apply again");
            write_failure(&ctx, primary, "InvalidSpec", &message).await?;
            return Ok(None);
        }
    };
    if mesh.meta().deletion_timestamp.is_some() {
        uninstall(&ctx, &mesh).await?;
        return Ok(None);
    }
    ensure_finalizer(&ctx, &mesh).await?;
    install(&ctx, &mesh).await
}

/// The cached Meshes, oldest first: the oldest is the one in charge.
fn meshes_oldest_first(ctx: &Context) -> Vec<Arc<DynamicObject>> {
    let mut meshes = ctx.caches.meshes.state();
    meshes.retain(|m| !is_placeholder(m));
    meshes.sort_by(|a, b| {
        (a.creation_timestamp().map(|t| t.0), a.name_any())
            .cmp(&(b.creation_timestamp().map(|t| t.0), b.name_any()))
    });
    meshes
}

/// Annotation marking a Mesh the operator must leave alone: the chart's
/// pre-delete hook creates one only so that Helm deletes the real Mesh (and
/// waits for it) before it removes the operator.
pub const PLACEHOLDER_ANNOTATION: &str = "meshkeeper.io/placeholder";

fn is_placeholder(mesh: &DynamicObject) -> bool {
    mesh.annotations()
        .get(PLACEHOLDER_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

/// The Mesh in charge, parsed; `None` when there is none.
pub fn primary_mesh(ctx: &Context) -> Option<Result<Mesh, String>> {
    let primary = meshes_oldest_first(ctx).into_iter().next()?;
    Some(parse_mesh(&primary))
}

fn parse_mesh(object: &DynamicObject) -> Result<Mesh, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    from_value(&value).map_err(|e| e.to_string())
}

/// A second Mesh gets a status saying the first one is in charge.
async fn report_extra(
    ctx: &Context,
    extra: &DynamicObject,
    primary: &DynamicObject,
) -> Result<(), MeshError> {
    let message = format!(
        "only one Mesh is allowed in a cluster: Mesh {:?} (the oldest) already manages this one; delete Mesh {:?}",
        primary.name_any(),
        extra.name_any()
    );
    write_failure(ctx, extra, "OnlyOneMeshAllowed", &message).await
}

/// `Reconciled=False` with `reason` and `message`; nothing else changes.
async fn write_failure(
    ctx: &Context,
    mesh: &DynamicObject,
    reason: &str,
    message: &str,
) -> Result<(), MeshError> {
    let current: MeshStatus = mesh
        .data
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let mut status = current.clone();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let generation = mesh.metadata.generation;
    set_condition(
        &mut conditions,
        "Reconciled",
        false,
        reason,
        message,
        generation,
        now(),
    );
    status.conditions = Some(conditions);
    status.observed_generation = generation;
    if status != current {
        super::status::patch_status::<Mesh>(ctx, &mesh.name_any(), &status).await?;
    }
    Ok(())
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn ensure_finalizer(ctx: &Context, mesh: &Mesh) -> Result<(), MeshError> {
    if mesh.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = mesh.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    patch_finalizers(ctx, &mesh.name_any(), finalizers, mesh.resource_version()).await
}

async fn patch_finalizers(
    ctx: &Context,
    name: &str,
    finalizers: Vec<String>,
    resource_version: Option<String>,
) -> Result<(), MeshError> {
    // The resourceVersion makes this a compare-and-swap with whoever else
    // edits the finalizers.
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}});
    let result = Api::<Mesh>::all(ctx.client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    match result {
        Ok(_) => {
            super::metrics::count_write("Mesh", "finalizer");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(MeshError::Kube {
            action: format!("updating the finalizers of Mesh {name}"),
            source,
        }),
    }
}

/// Mesh deletion: webhook configurations first (a `Fail` webhook nobody
/// serves would block the cluster), then the revisions and the rest, then
/// the finalizer. NotFound counts as done, so this never gets stuck.
async fn uninstall(ctx: &Context, mesh: &Mesh) -> Result<(), MeshError> {
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for (resource, name) in owned_of_mesh(ctx, kind, &mesh.name_any()) {
            ctx.applier
                .delete(&resource, None, &name)
                .await
                .map_err(kube_error(format!("deleting {kind} {name}")))?;
        }
    }
    let revision_resource = ApiResource::erase::<MeshRevision>(&());
    for revision in revisions_of(ctx, &mesh.name_any()) {
        ctx.applier
            .delete(&revision_resource, None, &revision.name_any())
            .await
            .map_err(kube_error(format!(
                "deleting MeshRevision {}",
                revision.name_any()
            )))?;
    }
    let secret = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
    ctx.applier
        .delete(&secret, Some(&ctx.options.namespace), names::CA_SECRET)
        .await
        .map_err(kube_error("deleting the CA Secret"))?;
    let remaining: Vec<String> = mesh
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if remaining.len() != mesh.finalizers().len() {
        patch_finalizers(ctx, &mesh.name_any(), remaining, mesh.resource_version()).await?;
    }
    tracing::info!(mesh = %mesh.name_any(), "uninstalled");
    Ok(())
}

/// Cached objects of `kind` the operator made for `mesh` (by owner
/// references up to the Mesh or one of its revisions).
fn owned_of_mesh(ctx: &Context, kind: &str, mesh: &str) -> Vec<(ApiResource, String)> {
    let revisions: BTreeSet<String> = revisions_of(ctx, mesh)
        .iter()
        .map(|r| r.name_any())
        .collect();
    ctx.caches
        .owned
        .iter()
        .filter(|(resource, _)| resource.kind == kind)
        .flat_map(|(resource, store)| {
            store.state().into_iter().filter_map(|object| {
                let owned = object.owner_references().iter().any(|o| {
                    (o.kind == "Mesh" && o.name == mesh)
                        || (o.kind == "MeshRevision" && revisions.contains(&o.name))
                });
                owned.then(|| (resource.clone(), object.name_any()))
            })
        })
        .collect()
}

/// The cached MeshRevisions of `mesh` that parse (a damaged one is logged
/// and left alone).
pub fn revisions_of(ctx: &Context, mesh: &str) -> Vec<MeshRevision> {
    ctx.caches
        .revisions
        .state()
        .iter()
        .filter_map(|object| {
            let value = serde_json::to_value(object.as_ref()).ok()?;
            match from_value::<MeshRevision>(&value) {
                Ok(revision) => Some(revision),
                Err(error) => {
                    tracing::warn!(revision = %object.name_any(), %error, "ignoring an unreadable MeshRevision");
                    None
                }
            }
        })
        .filter(|r| r.spec.mesh == mesh)
        .collect()
}

/// Everything but deletion.
async fn install(ctx: &Context, mesh: &Mesh) -> Result<Option<Duration>, MeshError> {
    let mesh_name = mesh.name_any();
    let existing = revisions_of(ctx, &mesh_name);
    let active = plan::active_revision(mesh);
    let empty = Vec::new();
    let resolution = Revisions::resolve(
        existing.iter().map(|r| r.name_any()),
        &active,
        mesh.spec.revision_tags.as_ref().unwrap_or(&empty),
    );
    if !resolution.errors.is_empty() {
        let message: Vec<String> = resolution.errors.iter().map(ToString::to_string).collect();
        return stop(ctx, mesh, "InvalidRevisionTags", &message.join("; ")).await;
    }
    let revisions_view = resolution.revisions;

    // Revisions first: every other object is owned by one.
    let mut revisions = Vec::new();
    for desired in plan::desired_revisions(mesh, &existing, revisions_view.tags()) {
        let applied = apply_typed(ctx, &desired).await?;
        let mut revision = desired;
        revision.metadata.uid = applied;
        // Status and generation as the cluster has them, for bookkeeping.
        if let Some(cached) = existing
            .iter()
            .find(|r| r.name_any() == revision.name_any())
        {
            revision.status = cached.status.clone();
            revision.metadata.generation = cached.metadata.generation;
        }
        revisions.push(revision);
    }
    let Some(active_revision) = revisions.iter().find(|r| r.name_any() == active).cloned() else {
        return Ok(Some(Duration::from_secs(1)));
    };
    if revisions.iter().any(|r| r.metadata.uid.is_none()) {
        // A revision just created is not in the cache yet; its uid comes
        // with the next pass, moments later.
        return Ok(Some(Duration::from_secs(1)));
    }

    let certificates = certificates::ensure(ctx, mesh, &revisions).await?;
    let bundle = certificates.ca_bundle.as_deref();
    let mut desired = Vec::new();
    let mut build_errors = Vec::new();
    for revision in &revisions {
        let tls_secret = names::webhook_tls_secret(&revision.name_any());
        match install::revision_objects(&install::RevisionInput {
            revision,
            namespace: &ctx.options.namespace,
            images: &ctx.options.images,
            ca_bundle: bundle,
            tls_secret: &tls_secret,
        }) {
            Ok(objects) => desired.extend(objects),
            Err(error) => build_errors.push(error),
        }
    }
    match install::mesh_objects(&install::MeshInput {
        mesh,
        namespace: &ctx.options.namespace,
        active: &active_revision,
        revisions: &revisions,
        ca_bundle: bundle,
    }) {
        Ok(objects) => desired.extend(objects),
        Err(error) => build_errors.push(error),
    }
    if !build_errors.is_empty() {
        let message: Vec<String> = build_errors.iter().map(InstallError::to_string).collect();
        return stop(ctx, mesh, "InvalidSpec", &message.join("; ")).await;
    }
    for object in &desired {
        ensure(ctx, object).await?;
    }
    ctx.published.set(certificates.ca_bundle.clone());
    remove_stale(ctx, &mesh_name, &desired).await?;

    let readiness = super::status::revision_readiness(ctx, &revisions, bundle).await;
    let bookkeeping = bookkeeping(ctx, mesh, &revisions, &revisions_view, &readiness).await?;

    super::status::write(
        ctx,
        mesh,
        &revisions,
        &revisions_view,
        &bookkeeping,
        &readiness,
        &certificates.problems,
    )
    .await?;

    let mut next = certificates.recheck;
    for candidate in [
        bookkeeping.recheck,
        readiness
            .values()
            .all(|r| r.is_ok())
            .then_some(ctx.options.resync)
            .or(Some(Duration::from_secs(2))),
    ] {
        next = match (next, candidate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// Reports bad input and stops the pass with nothing applied.
async fn stop(
    ctx: &Context,
    mesh: &Mesh,
    reason: &str,
    message: &str,
) -> Result<Option<Duration>, MeshError> {
    tracing::warn!(mesh = %mesh.name_any(), reason, message, "not reconciling");
    let object = DynamicObject::new(&mesh.name_any(), &ApiResource::erase::<Mesh>(&()))
        .data(json!({"status": mesh.status}));
    let mut object = object;
    object.metadata.generation = mesh.metadata.generation;
    write_failure(ctx, &object, reason, message).await?;
    Ok(None)
}

/// Applies a typed object; returns its uid when known.
async fn apply_typed<K>(ctx: &Context, object: &K) -> Result<Option<String>, MeshError>
where
    K: Resource<DynamicType = ()> + serde::Serialize,
{
    let desired = Desired::from_typed(object).map_err(|e| {
        MeshError::Json(serde_json::Error::io(std::io::Error::other(e.to_string())))
    })?;
    ensure(ctx, &desired).await
}

async fn ensure(ctx: &Context, desired: &Desired) -> Result<Option<String>, MeshError> {
    let current = current_meta(ctx, desired);
    let applied = ctx
        .applier
        .ensure(desired, current.as_ref().map(|m| Current { meta: m }))
        .await
        .map_err(kube_error(format!("applying {}", desired.describe())))?;
    Ok(applied.uid)
}

/// The cached metadata of the object `desired` describes.
fn current_meta(ctx: &Context, desired: &Desired) -> Option<kube::core::ObjectMeta> {
    if desired.api.kind == "MeshRevision" {
        return ctx
            .caches
            .revisions
            .state()
            .into_iter()
            .find(|r| r.name_any() == desired.name)
            .map(|r| r.metadata.clone());
    }
    ctx.caches
        .owned_meta(
            &desired.api.kind,
            desired.namespace.as_deref(),
            &desired.name,
        )
        .map(|m| m.metadata.clone())
}

/// Deletes what the operator made for this mesh that no longer belongs
/// (a removed tag's webhook configuration, a pruned revision's leftovers).
/// Secrets are handled by the certificate code and stay.
async fn remove_stale(ctx: &Context, mesh: &str, desired: &[Desired]) -> Result<(), MeshError> {
    let wanted: BTreeSet<(String, String)> = desired
        .iter()
        .map(|d| (d.api.kind.clone(), d.name.clone()))
        .collect();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "PodDisruptionBudget",
    ] {
        for (resource, name) in owned_of_mesh(ctx, kind, mesh) {
            if wanted.contains(&(kind.to_owned(), name.clone())) {
                continue;
            }
            let namespace = ctx
                .caches
                .owned_meta(kind, Some(&ctx.options.namespace), &name)
                .map(|_| ctx.options.namespace.clone());
            tracing::info!(kind, %name, "deleting an object the mesh no longer needs");
            ctx.applier
                .delete(&resource, namespace.as_deref(), &name)
                .await
                .map_err(kube_error(format!("deleting {kind} {name}")))?;
        }
    }
    Ok(())
}

/// In use, pruning, outdated proxies and restarts.
pub struct Bookkeeping {
    pub usage: MeshUsage,
    pub outdated: BTreeMap<String, outdated::Outdated>,
    pub pruned: Vec<String>,
    pub recheck: Option<Duration>,
}

fn namespace_infos(ctx: &Context) -> Vec<NamespaceInfo> {
    ctx.caches
        .namespaces
        .state()
        .iter()
        .map(|ns| NamespaceInfo {
            name: ns.name_any(),
            labels: ns.labels().clone(),
        })
        .collect()
}

fn pod_infos(ctx: &Context) -> Vec<PodInfo> {
    ctx.caches
        .pods
        .state()
        .iter()
        // The cache holds only pods that have not terminated (the watch
        // filters on the phase), so every one of them is running or pending.
        .map(|pod| PodInfo::from_metadata(&pod.metadata, None))
        .collect()
}

async fn bookkeeping(
    ctx: &Context,
    mesh: &Mesh,
    revisions: &[MeshRevision],
    view: &Revisions,
    readiness: &super::status::Readiness,
) -> Result<Bookkeeping, MeshError> {
    let pods = pod_infos(ctx);
    let usage = usage::usage(view, &namespace_infos(ctx), &pods, &ctx.options.namespace);
    let versions: BTreeMap<String, String> = revisions
        .iter()
        .map(|r| (r.name_any(), r.spec.version.clone()))
        .collect();
    let outdated = outdated::outdated_proxies(&versions, &pods);

    let strategy = mesh.spec.update_strategy.as_ref();
    let grace = prune::grace_period(strategy);
    let now = now();
    let mut recheck = None;
    let mut pruned = Vec::new();
    for revision in revisions {
        let name = revision.name_any();
        let revision_usage = usage.by_revision.get(&name);
        let in_use = revision_usage.is_some_and(|u| u.in_use());
        let status = revision.status.clone().unwrap_or_default();
        let was_in_use = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "InUse")
            .is_none_or(|c| c.status == "True");
        let last_used =
            prune::last_used_time(in_use, was_in_use, status.last_used_time.as_ref(), &now);
        let decision = prune::decide(&PruneInput {
            revision: &name,
            active_revision: view.active(),
            usage: revision_usage,
            caches_synced: true,
            last_used_time: last_used.as_ref(),
            grace_period: grace,
            now: &now,
        });
        match decision {
            PruneDecision::Delete => {
                tracing::info!(revision = %name, "pruning a revision nothing uses any more");
                delete_revision(ctx, &name).await?;
                pruned.push(name);
                continue;
            }
            PruneDecision::KeepUntil(at) => {
                let wait = at.0.duration_since(now.0).unsigned_abs();
                recheck = Some(
                    recheck.map_or(wait, |r: Duration| r.min(wait)) + Duration::from_millis(200),
                );
            }
            PruneDecision::Keep { .. } => {}
        }
        super::status::write_revision(
            ctx,
            revision,
            revision_usage,
            in_use,
            last_used,
            readiness.get(&name),
        )
        .await?;
    }

    let update = strategy.and_then(|s| s.update_workloads).unwrap_or(false);
    if update {
        let namespace_revisions: BTreeMap<String, String> = namespace_infos(ctx)
            .iter()
            .filter_map(|ns| {
                usage::namespace_revision(&ns.labels, view)
                    .map(|target| (ns.name.clone(), target.revision.to_owned()))
            })
            .collect();
        let restarting =
            super::workloads::restart_outdated(ctx, mesh, &versions, &namespace_revisions, &pods)
                .await?;
        if restarting {
            recheck = Some(recheck.map_or(Duration::from_secs(5), |r: Duration| {
                r.min(Duration::from_secs(5))
            }));
        }
    }
    Ok(Bookkeeping {
        usage,
        outdated,
        pruned,
        recheck,
    })
}

/// The revision's webhook configuration goes first, then the MeshRevision
/// (its other objects follow through owner references).
async fn delete_revision(ctx: &Context, revision: &str) -> Result<(), MeshError> {
    let resource = ApiResource::erase::<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    >(&());
    let name = meshkeeper_webhook::configuration::default_name(revision);
    ctx.applier
        .delete(&resource, None, &name)
        .await
        .map_err(kube_error(format!(
            "deleting MutatingWebhookConfiguration {name}"
        )))?;
    ctx.applier
        .delete(&ApiResource::erase::<MeshRevision>(&()), None, revision)
        .await
        .map_err(kube_error(format!("deleting MeshRevision {revision}")))
}

/// Whether the Deployment of a revision has an available replica.
pub async fn deployment_available(ctx: &Context, revision: &str) -> Result<bool, kube::Error> {
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), &ctx.options.namespace)
        .get_opt(&names::webhook_name(revision))
        .await?;
    Ok(deployment
        .and_then(|d| d.status)
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        > 0)
}
