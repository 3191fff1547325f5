//! What the admission handlers read: the revision's injection settings and
//! the cluster's ProxyConfigs, kept in memory and swapped whole when a watch
//! reports a change, so a request reads them without locks or API calls.
//!
//! Nothing here talks to Kubernetes: [`super::watch`] feeds it from the
//! cluster, tests feed it directly.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use meshkeeper_crds::meshkeeper::mesh::ValidationPolicy;
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;

use super::metrics::Metrics;
use crate::inject::{self, Outcome, Request, Settings};
use crate::validate::index::Index;

/// The server's fixed inputs (its flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// Name of the MeshRevision this server injects for.
    pub revision: String,
    /// meshkeeper's own namespace: never injected.
    pub own_namespace: String,
    pub init_image: String,
    /// Proxy image when neither the revision nor the pod names one.
    pub proxy_image: String,
    /// Whether the API server runs native sidecars (1.33 and later).
    pub native_sidecars_supported: bool,
}

/// The settings of the revision, resolved for injection.
#[derive(Clone, Debug)]
pub struct Revision {
    pub settings: Settings,
    /// Namespace whose ProxyConfigs apply mesh-wide.
    pub root_namespace: String,
    /// Whether each validation check denies or only warns.
    pub validation: ValidationPolicy,
}

/// What `/validate` judges cross-object checks against: the cluster's
/// VirtualServices and DestinationRules, and the namespaces being deleted.
#[derive(Clone, Debug, Default)]
pub struct ValidationView {
    pub index: Index,
    pub terminating_namespaces: std::collections::HashSet<String>,
}

/// The injection function. Always [`inject::inject`] in the server; tests
/// may swap in their own to drive the server through every outcome.
pub type Injector = Arc<dyn Fn(&Request<'_>, &Settings) -> Outcome + Send + Sync>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("MeshRevision {found:?} is not the revision this webhook serves ({expected:?})")]
    WrongRevision { expected: String, found: String },
}

/// Shared by every request handler.
pub struct State {
    options: StateOptions,
    revision: ArcSwapOption<Revision>,
    proxy_configs: ArcSwap<Vec<ProxyConfig>>,
    proxy_configs_synced: AtomicBool,
    /// Replaced whole on every change, so a request reads it without locks.
    validation_view: ArcSwap<ValidationView>,
    validation_view_synced: AtomicBool,
    /// Wakes the validation watch when the root namespace may have changed.
    revision_changed: tokio::sync::Notify,
    tls_loaded: AtomicBool,
    injector: Injector,
    metrics: Metrics,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("options", &self.options)
            .field("readiness", &self.readiness())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Not ready until the revision, the ProxyConfigs and the certificate
    /// are loaded.
    pub fn new(options: StateOptions) -> Self {
        Self {
            options,
            revision: ArcSwapOption::empty(),
            proxy_configs: ArcSwap::from_pointee(Vec::new()),
            proxy_configs_synced: AtomicBool::new(false),
            validation_view: ArcSwap::from_pointee(ValidationView::default()),
            validation_view_synced: AtomicBool::new(false),
            revision_changed: tokio::sync::Notify::new(),
            tls_loaded: AtomicBool::new(false),
            injector: Arc::new(inject::inject),
            metrics: Metrics::new(),
        }
    }

    /// Replaces the injection function (tests).
    pub fn with_injector(mut self, injector: Injector) -> Self {
        self.injector = injector;
        self
    }

    pub fn options(&self) -> &StateOptions {
        &self.options
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn injector(&self) -> &Injector {
        &self.injector
    }

    /// Takes the settings from the MeshRevision this server serves.
    pub fn apply_revision(&self, revision: &MeshRevision) -> Result<(), StateError> {
        let name = revision.name_any();
        if name != self.options.revision {
            return Err(StateError::WrongRevision {
                expected: self.options.revision.clone(),
                found: name,
            });
        }
        let settings = Settings::from_revision(
            revision,
            &self.options.own_namespace,
            &self.options.init_image,
            &self.options.proxy_image,
            self.options.native_sidecars_supported,
        );
        self.set_revision(Revision {
            settings,
            root_namespace: revision.spec.config.root_namespace().to_string(),
            validation: revision.spec.config.validation.clone().unwrap_or_default(),
        });
        Ok(())
    }

    /// Sets the resolved settings directly.
    pub fn set_revision(&self, revision: Revision) {
        self.revision.store(Some(Arc::new(revision)));
        self.revision_changed.notify_one();
    }

    /// Resolves once the revision was set since the last call (the
    /// validation watch rebuilds its index for a new root namespace).
    pub async fn revision_changed(&self) {
        self.revision_changed.notified().await;
    }

    /// Replaces the validation view; the first call marks it synced.
    pub fn set_validation_view(&self, view: ValidationView) {
        self.validation_view.store(Arc::new(view));
        self.validation_view_synced.store(true, Ordering::Release);
    }

    pub fn validation_view(&self) -> Arc<ValidationView> {
        self.validation_view.load_full()
    }

    pub fn revision(&self) -> Option<Arc<Revision>> {
        self.revision.load_full()
    }

    /// Replaces the known ProxyConfigs; the first call marks them synced.
    pub fn set_proxy_configs(&self, configs: Vec<ProxyConfig>) {
        self.proxy_configs.store(Arc::new(configs));
        self.proxy_configs_synced.store(true, Ordering::Release);
    }

    pub fn proxy_configs(&self) -> Arc<Vec<ProxyConfig>> {
        self.proxy_configs.load_full()
    }

    /// Records that the serving certificate is loaded (the server does this
    /// when it starts).
    pub fn mark_tls_loaded(&self) {
        self.tls_loaded.store(true, Ordering::Release);
    }

    pub fn readiness(&self) -> Readiness {
        Readiness {
            tls: self.tls_loaded.load(Ordering::Acquire),
            revision: self.revision.load().is_some(),
            proxy_configs: self.proxy_configs_synced.load(Ordering::Acquire),
            validation_view: self.validation_view_synced.load(Ordering::Acquire),
        }
    }
}

/// What `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub tls: bool,
    pub revision: bool,
    pub proxy_configs: bool,
    /// VirtualServices, DestinationRules and Namespaces listed once.
    pub validation_view: bool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.tls && self.revision && self.proxy_configs && self.validation_view
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |ok: bool| if ok { "ok" } else { "waiting" };
        writeln!(f, "tls certificate: {}", word(self.tls))?;
        writeln!(f, "mesh revision: {}", word(self.revision))?;
        writeln!(f, "proxy configs: {}", word(self.proxy_configs))?;
        writeln!(
            f,
            "virtual services, destination rules, namespaces: {}",
            word(self.validation_view)
        )
    }
}

/// The cluster's ProxyConfigs as a watch reports them, each parsed on its
/// own so one malformed object does not hide the others.
#[derive(Debug, Default)]
pub struct ProxyConfigIndex {
    live: BTreeMap<(String, String), ProxyConfig>,
    /// Objects listed since the watch (re)started, replacing `live` at the
    /// end of the listing.
    relisting: Option<BTreeMap<(String, String), ProxyConfig>>,
    synced: bool,
}

/// What one watch event did to the index.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexUpdate {
    /// The visible set changed (or was listed for the first time).
    pub changed: bool,
    /// Objects that could not be read, with the reason; they count as absent.
    pub problems: Vec<String>,
}

impl ProxyConfigIndex {
    /// Whether a full listing has completed.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The ProxyConfigs now visible, ordered by namespace and name.
    pub fn snapshot(&self) -> Vec<ProxyConfig> {
        self.live.values().cloned().collect()
    }

    pub fn apply(&mut self, event: Event<DynamicObject>) -> IndexUpdate {
        let mut update = IndexUpdate::default();
        match event {
            Event::Init => self.relisting = Some(BTreeMap::new()),
            Event::InitApply(object) => {
                let key = key_of(&object);
                match parse_proxy_config(&object) {
                    Ok(config) => {
                        self.relisting
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key, config);
                    }
                    Err(problem) => update.problems.push(problem),
                }
            }
            Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                update.changed = !self.synced || !same_sets(&listed, &self.live);
                self.live = listed;
                self.synced = true;
            }
            Event::Apply(object) => {
                let key = key_of(&object);
                match parse_proxy_config(&object) {
                    Ok(config) => {
                        update.changed = self.live.get(&key).is_none_or(|old| !same(old, &config));
                        self.live.insert(key, config);
                    }
                    Err(problem) => {
                        update.changed = self.live.remove(&key).is_some();
                        update.problems.push(problem);
                    }
                }
            }
            Event::Delete(object) => {
                update.changed = self.live.remove(&key_of(&object)).is_some();
            }
        }
        update
    }
}

/// Same content (the generated ProxyConfig type has no `PartialEq`).
fn same(a: &ProxyConfig, b: &ProxyConfig) -> bool {
    a.metadata == b.metadata && a.spec == b.spec
}

fn same_sets(
    a: &BTreeMap<(String, String), ProxyConfig>,
    b: &BTreeMap<(String, String), ProxyConfig>,
) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
}

fn key_of(object: &DynamicObject) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

fn parse_proxy_config(object: &DynamicObject) -> Result<ProxyConfig, String> {
    let describe = || {
        format!(
            "ProxyConfig {}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    };
    let value = serde_json::to_value(object).map_err(|e| format!("{}: {e}", describe()))?;
    meshkeeper_crds::parse::from_value(&value)
        .map_err(|e| format!("{} is ignored: {e}", describe()))
}

/// Reads the MeshRevision out of a watched object, naming the bad field.
pub fn parse_mesh_revision(object: &DynamicObject) -> Result<MeshRevision, String> {
    let value = serde_json::to_value(object)
        .map_err(|e| format!("MeshRevision {}: {e}", object.name_any()))?;
    meshkeeper_crds::parse::from_value(&value)
        .map_err(|e| format!("MeshRevision {} cannot be used: {e}", object.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ApiResource;
    use serde_json::json;

    fn proxy_config(namespace: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
        let resource = ApiResource::erase::<ProxyConfig>(&());
        let mut object = DynamicObject::new(name, &resource).within(namespace);
        object.data = json!({ "spec": spec });
        object
    }

    fn names(index: &ProxyConfigIndex) -> Vec<String> {
        index
            .snapshot()
            .iter()
            .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
            .collect()
    }

    #[test]
    fn listing_replaces_the_set_only_when_done() {
        let mut index = ProxyConfigIndex::default();
        assert!(!index.synced());
        index.apply(Event::Init);
        let update = index.apply(Event::InitApply(proxy_config(
            "b",
            "one",
            json!({"concurrency": 2}),
        )));
        assert!(!update.changed);
        assert!(names(&index).is_empty(), "visible before the listing ended");
        index.apply(Event::InitApply(proxy_config("a", "two", json!({}))));
        let update = index.apply(Event::InitDone);
        assert!(update.changed);
        assert!(index.synced());
        assert_eq!(names(&index), ["a/two", "b/one"]);

        // A relist that no longer contains `b/one` drops it.
        index.apply(Event::Init);
        index.apply(Event::InitApply(proxy_config("a", "two", json!({}))));
        assert!(index.apply(Event::InitDone).changed);
        assert_eq!(names(&index), ["a/two"]);

        // An identical relist is not a change.
        index.apply(Event::Init);
        index.apply(Event::InitApply(proxy_config("a", "two", json!({}))));
        assert!(!index.apply(Event::InitDone).changed);
    }

    #[test]
    fn an_empty_first_listing_is_a_change() {
        let mut index = ProxyConfigIndex::default();
        index.apply(Event::Init);
        assert!(index.apply(Event::InitDone).changed);
        assert!(index.synced());
    }

    #[test]
    fn apply_and_delete_update_the_set() {
        let mut index = ProxyConfigIndex::default();
        index.apply(Event::Init);
        index.apply(Event::InitDone);
        let one = proxy_config("ns", "one", json!({"concurrency": 1}));
        assert!(index.apply(Event::Apply(one.clone())).changed);
        assert!(!index.apply(Event::Apply(one.clone())).changed);
        assert_eq!(index.snapshot()[0].spec.concurrency, Some(1));
        assert!(index.apply(Event::Delete(one.clone())).changed);
        assert!(!index.apply(Event::Delete(one)).changed);
        assert!(index.snapshot().is_empty());
    }

    #[test]
    fn a_malformed_object_is_dropped_with_a_reason() {
        let mut index = ProxyConfigIndex::default();
        index.apply(Event::Init);
        index.apply(Event::InitApply(proxy_config("ns", "good", json!({}))));
        let update = index.apply(Event::InitApply(proxy_config(
            "ns",
            "bad",
            json!({"concurrency": "two"}),
        )));
        assert_eq!(update.problems.len(), 1);
        assert!(
            update.problems[0].contains("ns/bad")
                && update.problems[0].contains("spec.concurrency"),
            "{:?}",
            update.problems
        );
        index.apply(Event::InitDone);
        assert_eq!(names(&index), ["ns/good"]);

        // A good object that turns bad disappears instead of staying stale.
        let update = index.apply(Event::Apply(proxy_config(
            "ns",
            "good",
            json!({"image": "debug"}),
        )));
        assert!(update.changed);
        assert!(names(&index).is_empty());
    }

    #[test]
    fn readiness_needs_all_four() {
        let state = State::new(StateOptions {
            revision: "default".into(),
            own_namespace: "meshkeeper-system".into(),
            init_image: "init".into(),
            proxy_image: "proxy".into(),
            native_sidecars_supported: true,
        });
        assert!(!state.readiness().is_ready());
        state.mark_tls_loaded();
        state.set_proxy_configs(Vec::new());
        let readiness = state.readiness();
        assert!(readiness.tls && readiness.proxy_configs && !readiness.revision);
        assert!(readiness.to_string().contains("mesh revision: waiting"));
    }

    #[test]
    fn a_revision_of_another_name_is_refused() {
        let state = State::new(StateOptions {
            revision: "canary".into(),
            own_namespace: "meshkeeper-system".into(),
            init_image: "init".into(),
            proxy_image: "proxy".into(),
            native_sidecars_supported: true,
        });
        let revision: MeshRevision = serde_json::from_value(json!({
            "apiVersion": "meshkeeper.io/v1alpha1", "kind": "MeshRevision",
            "metadata": {"name": "stable"},
            "spec": {"mesh": "default", "version": "0.1.0"}
        }))
        .unwrap();
        assert_eq!(
            state.apply_revision(&revision),
            Err(StateError::WrongRevision {
                expected: "canary".into(),
                found: "stable".into()
            })
        );
        assert!(state.revision().is_none());
    }
}
