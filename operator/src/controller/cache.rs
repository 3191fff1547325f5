//! What the operator knows about the cluster: reflector caches fed by
//! watches, so reconciles read memory, not the API server. Pods and
//! Namespaces are kept small (metadata, plus a pod's phase); the objects the
//! operator owns are watched metadata-only, enough to notice a hand edit or
//! a deletion. Every event wakes the loops that depend on it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config};
use kube::{Resource, ResourceExt};
use meshkeeper_crds::meshkeeper::mesh::Mesh;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::install::owned_kinds;
use crate::names::{MANAGED_BY, MANAGED_BY_LABEL};
use meshkeeper_webhook::inject::names::PROXY_CONFIG_MAP;
use meshkeeper_webhook::inject::names::{INJECTION, PROXY_VERSION_LABEL, REVISION, STATUS};

use super::apply::HASH_ANNOTATION;
use crate::revisions::usage::PodInfo;

/// Wakes a loop. Many events between two passes make one pass.
#[derive(Clone, Default)]
pub struct Triggers {
    pub mesh: Arc<Notify>,
    pub proxy: Arc<Notify>,
}

impl Triggers {
    pub fn all(&self) -> Vec<Arc<Notify>> {
        vec![self.mesh.clone(), self.proxy.clone()]
    }
}

pub struct Caches {
    pub meshes: Store<DynamicObject>,
    pub revisions: Store<DynamicObject>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Injected pods only (label `meshkeeper.io/proxy-version`), stripped to
    /// metadata and phase.
    pub pods: Store<PartialObjectMeta<Pod>>,
    pub proxy_configs: Store<DynamicObject>,
    /// The `meshkeeper-proxy` ConfigMaps the operator wrote.
    pub proxy_config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// The Helm chart's Mesh values ConfigMap, when the operator has one.
    pub mesh_values: Option<Store<ConfigMap>>,
    /// Everything else the operator owns, by kind.
    pub owned: Vec<(ApiResource, Store<PartialObjectMeta<DynamicObject>>)>,
}

impl Caches {
    /// Starts every watch; the stores fill in the background.
    pub fn start(
        client: &kube::Client,
        operator_namespace: &str,
        mesh_values: Option<&str>,
        triggers: &Triggers,
    ) -> Self {
        let managed = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
        let mesh_resource = ApiResource::erase::<Mesh>(&());
        let revision_resource = ApiResource::erase::<MeshRevision>(&());
        let proxy_config_resource = ApiResource::erase::<ProxyConfig>(&());
        let meshes = watch_dynamic(
            Api::all_with(client.clone(), &mesh_resource),
            mesh_resource,
            Config::default(),
            triggers.all(),
        );
        let revisions = watch_dynamic(
            Api::all_with(client.clone(), &revision_resource),
            revision_resource,
            Config::default(),
            triggers.all(),
        );
        let proxy_configs = watch_dynamic(
            Api::all_with(client.clone(), &proxy_config_resource),
            proxy_config_resource,
            Config::default(),
            vec![triggers.proxy.clone()],
        );
        let namespaces = watch_metadata::<Namespace>(
            Api::all(client.clone()),
            Config::default(),
            vec![INJECTION.to_owned(), REVISION.to_owned()],
            triggers.all(),
        );
        let proxy_config_maps = watch_metadata::<ConfigMap>(
            Api::all(client.clone()),
            Config::default()
                .labels(&managed)
                .fields(&format!("metadata.name={PROXY_CONFIG_MAP}")),
            Vec::new(),
            vec![triggers.proxy.clone()],
        );
        let pods = watch_pods(client, vec![triggers.mesh.clone()]);
        let owned = owned_kinds()
            .into_iter()
            .map(|(resource, namespaced)| {
                let api = if namespaced {
                    Api::namespaced_with(client.clone(), operator_namespace, &resource)
                } else {
                    Api::all_with(client.clone(), &resource)
                };
                let store = watch_owned(
                    api,
                    resource.clone(),
                    Config::default().labels(&managed),
                    triggers.mesh.clone(),
                );
                (resource, store)
            })
            .collect();
        let mesh_values = mesh_values.map(|name| {
            let (reader, writer) = reflector::store();
            let config = Config::default().fields(&format!("metadata.name={name}"));
            let stream = watcher::watcher(
                Api::<ConfigMap>::namespaced(client.clone(), operator_namespace),
                config,
            )
            .default_backoff()
            .modify(|o: &mut ConfigMap| o.managed_fields_mut().clear());
            spawn_events(
                reflector::reflector(writer, stream),
                vec![triggers.mesh.clone()],
            );
            reader
        });
        Self {
            mesh_values,
            meshes,
            revisions,
            namespaces,
            pods,
            proxy_configs,
            proxy_config_maps,
            owned,
        }
    }

    /// Waits until every store has its first full list: no decision is
    /// made on a partial view.
    pub async fn wait_synced(&self) -> Result<(), reflector::store::WriterDropped> {
        self.meshes.wait_until_ready().await?;
        self.revisions.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.proxy_configs.wait_until_ready().await?;
        self.proxy_config_maps.wait_until_ready().await?;
        if let Some(store) = &self.mesh_values {
            store.wait_until_ready().await?;
        }
        for (_, store) in &self.owned {
            store.wait_until_ready().await?;
        }
        Ok(())
    }

    /// The cached metadata of an owned object.
    pub fn owned_meta(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<PartialObjectMeta<DynamicObject>>> {
        let (resource, store) = self.owned.iter().find(|(r, _)| r.kind == kind)?;
        let mut key = ObjectRef::new_with(name, resource.clone());
        if let Some(namespace) = namespace {
            key = key.within(namespace);
        }
        store.get(&key)
    }

    /// The chart's Mesh values ConfigMap `name`, if cached.
    pub fn mesh_values(&self, name: &str) -> Option<Arc<ConfigMap>> {
        let store = self.mesh_values.as_ref()?;
        store
            .state()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
    }

    /// The cached metadata of the `meshkeeper-proxy` ConfigMap of `namespace`.
    pub fn proxy_config_map(&self, namespace: &str) -> Option<Arc<PartialObjectMeta<ConfigMap>>> {
        self.proxy_config_maps
            .get(&ObjectRef::new(PROXY_CONFIG_MAP).within(namespace))
    }
}

fn wake(targets: &[Arc<Notify>]) {
    for target in targets {
        target.notify_one();
    }
}

fn watch_dynamic(
    api: Api<DynamicObject>,
    resource: ApiResource,
    config: Config,
    wakes: Vec<Arc<Notify>>,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(resource);
    let reader = writer.as_reader();
    let stream = watcher::watcher(api, config)
        .default_backoff()
        .modify(|o: &mut DynamicObject| o.managed_fields_mut().clear());
    spawn_events(reflector::reflector(writer, stream), wakes);
    reader
}

fn watch_metadata<K>(
    api: Api<PartialObjectMeta<K>>,
    config: Config,
    keep_labels: Vec<String>,
    wakes: Vec<Arc<Notify>>,
) -> Store<PartialObjectMeta<K>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(api, config).default_backoff().modify(
        move |o: &mut PartialObjectMeta<K>| {
            let labels: Vec<&str> = keep_labels.iter().map(String::as_str).collect();
            keep_only(&mut o.metadata, &labels, &[HASH_ANNOTATION]);
        },
    );
    spawn_events(reflector::reflector(writer, stream), wakes);
    reader
}

fn watch_owned(
    api: Api<PartialObjectMeta<DynamicObject>>,
    resource: ApiResource,
    config: Config,
    wake_on: Arc<Notify>,
) -> Store<PartialObjectMeta<DynamicObject>> {
    let writer = reflector::store::Writer::new(resource);
    let reader = writer.as_reader();
    let stream = watcher::watcher(api, config).default_backoff().modify(
        |o: &mut PartialObjectMeta<DynamicObject>| {
            keep_only(&mut o.metadata, &[], &[HASH_ANNOTATION]);
        },
    );
    spawn_events(reflector::reflector(writer, stream), vec![wake_on]);
    reader
}

/// Injected pods that have not terminated (the API server filters on the
/// phase), metadata only, with just the labels and the annotation that
/// in-use and outdated-proxy accounting read: ten thousand pods then cost a
/// few megabytes.
fn watch_pods(client: &kube::Client, wakes: Vec<Arc<Notify>>) -> Store<PartialObjectMeta<Pod>> {
    let (reader, writer) = reflector::store();
    let config = Config::default()
        .labels(PROXY_VERSION_LABEL)
        .fields("status.phase!=Succeeded,status.phase!=Failed");
    let stream = watcher::watcher(Api::<PartialObjectMeta<Pod>>::all(client.clone()), config)
        .default_backoff()
        .modify(|pod: &mut PartialObjectMeta<Pod>| {
            keep_only(&mut pod.metadata, &PodInfo::LABELS, &[STATUS]);
        });
    spawn_events(reflector::reflector(writer, stream), wakes);
    reader
}

/// Drops managed fields and every label and annotation not listed, so the
/// caches hold only what the operator reads.
fn keep_only(meta: &mut ObjectMeta, labels: &[&str], annotations: &[&str]) {
    meta.managed_fields = None;
    if let Some(map) = meta.labels.as_mut() {
        map.retain(|key, _| labels.contains(&key.as_str()));
    }
    if let Some(map) = meta.annotations.as_mut() {
        map.retain(|key, _| annotations.contains(&key.as_str()));
    }
}

fn spawn_events<S, T>(stream: S, wakes: Vec<Arc<Notify>>)
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => wake(&wakes),
                Err(error) => tracing::warn!(error = %error, "watch error; retrying"),
            }
        }
    });
}
