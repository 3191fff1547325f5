//! The proxy loop: every namespace with injection on (any revision, any
//! tag) gets its `meshkeeper-proxy` ConfigMap, computed from the injecting
//! revision's proxy defaults and the selector-less ProxyConfigs of the root
//! namespace and the namespace; namespaces that leave the mesh lose it. A
//! malformed ProxyConfig is reported (in the Mesh status, through the mesh
//! loop) and only its namespace keeps its previous ConfigMap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ApiResource;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;
use meshkeeper_crds::parse::from_value;

use super::Context;
use super::apply::Current;
use super::mesh::{primary_mesh, revisions_of};
use crate::install::Desired;
use crate::proxy;
use crate::revisions::tags::Revisions;
use crate::revisions::usage::namespace_revision;

/// ConfigMaps written at once (each is one request).
const PARALLEL_WRITES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ProxyLoopError {
    #[error("writing ConfigMap {namespace}/{name}: {source}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A namespace's ConfigMap as it should be.
struct Wanted {
    namespace: String,
    desired: Desired,
}

pub async fn reconcile(ctx: Arc<Context>) -> Result<Option<Duration>, ProxyLoopError> {
    let mut problems = Vec::new();
    let wanted = match primary_mesh(&ctx) {
        Some(Ok(mesh)) if mesh.metadata.deletion_timestamp.is_none() => {
            let revisions = revisions_of(&ctx, &mesh.name_any());
            let active = crate::plan::active_revision(&mesh);
            let resolution = Revisions::resolve(
                revisions.iter().map(|r| r.name_any()),
                &active,
                mesh.spec.revision_tags.as_deref().unwrap_or_default(),
            );
            if !resolution.errors.is_empty() {
                // The mesh loop reports bad tags; leave every ConfigMap as it is.
                return Ok(None);
            }
            wanted_config_maps(&ctx, &resolution.revisions, &revisions, &mut problems)
        }
        Some(Err(_)) => return Ok(None),
        _ => Vec::new(),
    };

    let keep: BTreeSet<String> = wanted.iter().map(|w| w.namespace.clone()).collect();
    let count = wanted.len();
    let mut writes = Vec::with_capacity(count);
    for w in wanted {
        writes.push(ensure_config_map(ctx.clone(), w));
    }
    let written: Vec<bool> = futures::stream::iter(writes)
        .buffer_unordered(PARALLEL_WRITES)
        .try_collect()
        .await?;
    let changed = written.iter().filter(|wrote| **wrote).count();
    if changed > 0 {
        tracing::info!(changed, namespaces = count, "proxy ConfigMaps updated");
    }

    let resource = ApiResource::erase::<ConfigMap>(&());
    for stale in ctx.caches.proxy_config_maps.state() {
        let Some(namespace) = stale.namespace() else {
            continue;
        };
        if keep.contains(&namespace) || problems_keep(&problems, &namespace) {
            continue;
        }
        tracing::info!(%namespace, "the namespace left the mesh; removing its proxy ConfigMap");
        ctx.applier
            .delete(&resource, Some(&namespace), &stale.name_any())
            .await
            .map_err(|source| ProxyLoopError::Write {
                namespace: namespace.clone(),
                name: stale.name_any(),
                source,
            })?;
    }

    // A problem in the root namespace shows once, not once per namespace.
    let messages: Vec<String> = problems
        .iter()
        .map(|p| p.message.clone())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let changed_problems = ctx
        .proxy_problems
        .lock()
        .map(|mut current| {
            let changed = *current != messages;
            *current = messages;
            changed
        })
        .unwrap_or(false);
    if changed_problems {
        ctx.triggers.mesh.notify_one();
    }
    Ok(None)
}

async fn ensure_config_map(ctx: Arc<Context>, wanted: Wanted) -> Result<bool, ProxyLoopError> {
    let current = ctx.caches.proxy_config_map(&wanted.namespace);
    ctx.applier
        .ensure(
            &wanted.desired,
            current.as_ref().map(|c| Current { meta: &c.metadata }),
        )
        .await
        .map(|applied| applied.wrote)
        .map_err(|source| ProxyLoopError::Write {
            namespace: wanted.namespace.clone(),
            name: wanted.desired.name.clone(),
            source,
        })
}

/// A problem found while computing one namespace's configuration.
struct Problem {
    /// The namespace whose ConfigMap is kept as it was (not deleted).
    keeps: Option<String>,
    message: String,
}

fn problems_keep(problems: &[Problem], namespace: &str) -> bool {
    problems
        .iter()
        .any(|p| p.keeps.as_deref() == Some(namespace))
}

fn wanted_config_maps(
    ctx: &Context,
    view: &Revisions,
    revisions: &[MeshRevision],
    problems: &mut Vec<Problem>,
) -> Vec<Wanted> {
    let by_name: BTreeMap<String, &MeshRevision> =
        revisions.iter().map(|r| (r.name_any(), r)).collect();
    let proxy_configs = proxy_configs_by_namespace(ctx, problems);
    let none = Vec::new();
    let mut wanted = Vec::new();
    for namespace in ctx.caches.namespaces.state() {
        let name = namespace.name_any();
        if !injectable(&name, &ctx.options.namespace)
            || namespace.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(target) = namespace_revision(namespace.labels(), view) else {
            continue;
        };
        let Some(revision) = by_name.get(target.revision) else {
            continue;
        };
        let config = &revision.spec.config;
        let defaults = config.proxy.clone().unwrap_or_default();
        let root = proxy_configs.get(config.root_namespace()).unwrap_or(&none);
        let own = if name == config.root_namespace() {
            &none
        } else {
            proxy_configs.get(&name).unwrap_or(&none)
        };
        let settings = match proxy::effective_settings(&defaults, root, own) {
            Ok(settings) => settings,
            Err(error) => {
                problems.push(Problem {
                    keeps: Some(name.clone()),
                    message: format!("namespace {name}: {error}"),
                });
                continue;
            }
        };
        problems.extend(settings.problems.iter().map(|p| Problem {
            keeps: None,
            message: p.clone(),
        }));
        let rendered = proxy::config_map_data(&name, target.revision, &settings)
            .map(|data| proxy::config_map(&name, target.revision, data));
        match rendered
            .map_err(|e| e.to_string())
            .and_then(|cm| Desired::from_typed(&cm).map_err(|e| e.to_string()))
        {
            Ok(desired) => wanted.push(Wanted {
                namespace: name,
                desired,
            }),
            Err(error) => problems.push(Problem {
                keeps: Some(name.clone()),
                message: format!(
                    "namespace {name}: cannot render the proxy configuration: {error}"
                ),
            }),
        }
    }
    wanted
}

fn injectable(namespace: &str, own_namespace: &str) -> bool {
    namespace != own_namespace
        && !meshkeeper_webhook::inject::names::SYSTEM_NAMESPACES.contains(&namespace)
}

/// The cached ProxyConfigs that parse, by namespace; the others become
/// problems (their namespace keeps its ConfigMap as it was).
fn proxy_configs_by_namespace(
    ctx: &Context,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Vec<ProxyConfig>> {
    let mut by_namespace: BTreeMap<String, Vec<ProxyConfig>> = BTreeMap::new();
    for object in ctx.caches.proxy_configs.state() {
        let namespace = object.namespace().unwrap_or_default();
        let parsed = serde_json::to_value(object.as_ref())
            .map_err(|e| e.to_string())
            .and_then(|value| from_value::<ProxyConfig>(&value).map_err(|e| e.to_string()));
        match parsed {
            Ok(config) => by_namespace.entry(namespace).or_default().push(config),
            Err(error) => problems.push(Problem {
                keeps: Some(namespace.clone()),
                message: format!(
                    "ProxyConfig {namespace}/{} cannot be read: {error}",
                    object.name_any()
                ),
            }),
        }
    }
    by_namespace
}
