//! The cluster as `/validate` sees it, kept from watch events: every
//! VirtualService and DestinationRule, and which namespaces are being
//! deleted. Pure: events in, a [`ValidationView`] out; `watch` feeds it.

use std::collections::{BTreeMap, HashSet};

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use meshkeeper_crds::networking::destination_rule::DestinationRule;
use meshkeeper_crds::networking::virtual_service::VirtualService;

use super::state::ValidationView;
use crate::validate::index::{DEFAULT_CLUSTER_DOMAIN, Index};

type Key = (String, String);

/// One kind's objects as a watch reports them, each parsed on its own so
/// one malformed object does not hide the others.
#[derive(Debug)]
pub struct WatchedSet<T> {
    live: BTreeMap<Key, T>,
    /// Objects listed since the watch (re)started; they replace `live`
    /// when the listing ends, so objects deleted meanwhile disappear.
    relisting: Option<BTreeMap<Key, T>>,
    synced: bool,
}

impl<T> Default for WatchedSet<T> {
    fn default() -> Self {
        Self {
            live: BTreeMap::new(),
            relisting: None,
            synced: false,
        }
    }
}

impl<T> WatchedSet<T> {
    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.live.values()
    }

    /// Applies one event. Returns whether the visible set may have changed,
    /// and the objects that could not be read (they count as absent).
    pub fn apply(
        &mut self,
        event: Event<DynamicObject>,
        parse: impl Fn(&DynamicObject) -> Result<T, String>,
    ) -> (bool, Vec<String>) {
        let mut problems = Vec::new();
        let changed = match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                match parse(&object) {
                    Ok(value) => {
                        self.relisting
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key_of(&object), value);
                    }
                    Err(problem) => problems.push(problem),
                }
                false
            }
            Event::InitDone => {
                self.live = self.relisting.take().unwrap_or_default();
                self.synced = true;
                true
            }
            Event::Apply(object) => {
                let key = key_of(&object);
                match parse(&object) {
                    Ok(value) => {
                        self.live.insert(key, value);
                    }
                    Err(problem) => {
                        // A good object turned bad must not stay visible stale.
                        self.live.remove(&key);
                        problems.push(problem);
                    }
                }
                true
            }
            Event::Delete(object) => self.live.remove(&key_of(&object)).is_some(),
        };
        (changed, problems)
    }
}

fn key_of(object: &DynamicObject) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// Which kind a watch event is about.
#[derive(Debug)]
pub enum ViewEvent {
    VirtualService(Event<DynamicObject>),
    DestinationRule(Event<DynamicObject>),
    Namespace(Event<DynamicObject>),
}

/// Everything the validation view is built from.
#[derive(Debug, Default)]
pub struct ClusterView {
    virtual_services: WatchedSet<VirtualService>,
    destination_rules: WatchedSet<DestinationRule>,
    /// Namespace name → whether it is being deleted.
    namespaces: WatchedSet<bool>,
}

impl ClusterView {
    /// Whether all three kinds have been listed once.
    pub fn synced(&self) -> bool {
        self.virtual_services.synced()
            && self.destination_rules.synced()
            && self.namespaces.synced()
    }

    /// Applies one event; see [`WatchedSet::apply`].
    pub fn apply(&mut self, event: ViewEvent) -> (bool, Vec<String>) {
        match event {
            ViewEvent::VirtualService(e) => self
                .virtual_services
                .apply(e, |o| parse_typed(o, "VirtualService")),
            ViewEvent::DestinationRule(e) => self
                .destination_rules
                .apply(e, |o| parse_typed(o, "DestinationRule")),
            ViewEvent::Namespace(e) => self.namespaces.apply(e, |o| Ok(is_terminating(o))),
        }
    }

    /// The view requests read, for a mesh whose root namespace is `root`.
    /// Rebuilt whole: simple, and each request sees one consistent state.
    pub fn build(&self, root_namespace: &str) -> ValidationView {
        let mut index = Index::new(DEFAULT_CLUSTER_DOMAIN, root_namespace);
        for dr in self.destination_rules.values() {
            index.upsert_destination_rule(dr);
        }
        for vs in self.virtual_services.values() {
            index.upsert_virtual_service(vs);
        }
        let terminating_namespaces = self
            .namespaces
            .live
            .iter()
            .filter(|(_, terminating)| **terminating)
            .map(|((_, name), _)| name.clone())
            .collect::<HashSet<_>>();
        ValidationView {
            index,
            terminating_namespaces,
        }
    }
}

fn is_terminating(namespace: &DynamicObject) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace.data["status"]["phase"].as_str() == Some("Terminating")
}

fn parse_typed<T: serde::de::DeserializeOwned>(
    object: &DynamicObject,
    kind: &str,
) -> Result<T, String> {
    let describe = || {
        format!(
            "{kind} {}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    };
    let value = serde_json::to_value(object).map_err(|e| format!("{}: {e}", describe()))?;
    meshkeeper_crds::parse::from_value(&value)
        .map_err(|e| format!("{} is ignored for validation: {e}", describe()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ApiResource;
    use serde_json::json;

    fn object<K: kube::Resource<DynamicType = ()>>(
        namespace: &str,
        name: &str,
        data: serde_json::Value,
    ) -> DynamicObject {
        let resource = ApiResource::erase::<K>(&());
        let mut object = DynamicObject::new(name, &resource).within(namespace);
        object.data = data;
        object
    }

    fn dr(name: &str, subsets: &[&str]) -> DynamicObject {
        let subsets: Vec<_> = subsets
            .iter()
            .map(|s| json!({"name": s, "labels": {"version": s}}))
            .collect();
        object::<DestinationRule>(
            "shop",
            name,
            json!({"spec": {"host": "reviews", "subsets": subsets}}),
        )
    }

    fn vs(name: &str, subset: &str) -> DynamicObject {
        object::<VirtualService>(
            "shop",
            name,
            json!({"spec": {"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": subset}}]}]}}),
        )
    }

    fn namespace(name: &str, phase: &str) -> DynamicObject {
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
        let mut object = DynamicObject::new(name, &resource);
        object.data = json!({"status": {"phase": phase}});
        object
    }

    fn list_all(view: &mut ClusterView) {
        for make in [
            ViewEvent::VirtualService as fn(Event<DynamicObject>) -> ViewEvent,
            ViewEvent::DestinationRule,
            ViewEvent::Namespace,
        ] {
            view.apply(make(Event::Init));
            view.apply(make(Event::InitDone));
        }
    }

    #[test]
    fn synced_only_after_every_kind_is_listed() {
        let mut view = ClusterView::default();
        view.apply(ViewEvent::VirtualService(Event::Init));
        view.apply(ViewEvent::VirtualService(Event::InitDone));
        view.apply(ViewEvent::DestinationRule(Event::Init));
        view.apply(ViewEvent::DestinationRule(Event::InitDone));
        assert!(!view.synced());
        view.apply(ViewEvent::Namespace(Event::Init));
        view.apply(ViewEvent::Namespace(Event::InitDone));
        assert!(view.synced());
    }

    #[test]
    fn the_built_index_holds_rules_services_and_terminating_namespaces() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::DestinationRule(Event::Apply(dr(
            "reviews",
            &["v1", "v2"],
        ))));
        view.apply(ViewEvent::VirtualService(Event::Apply(vs("reviews", "v1"))));
        view.apply(ViewEvent::Namespace(Event::Apply(namespace(
            "old",
            "Terminating",
        ))));
        view.apply(ViewEvent::Namespace(Event::Apply(namespace(
            "shop", "Active",
        ))));
        let built = view.build("mesh-root");
        assert_eq!(built.index.root_namespace(), "mesh-root");
        assert_eq!(built.index.destination_rule_count(), 1);
        assert_eq!(built.index.virtual_service_count(), 1);
        assert!(built.terminating_namespaces.contains("old"));
        assert!(!built.terminating_namespaces.contains("shop"));

        view.apply(ViewEvent::DestinationRule(Event::Delete(dr(
            "reviews",
            &[],
        ))));
        assert_eq!(view.build("mesh-root").index.destination_rule_count(), 0);
    }

    #[test]
    fn a_malformed_object_is_dropped_with_a_reason_naming_it() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::DestinationRule(Event::Apply(dr(
            "good",
            &["v1"],
        ))));
        let bad = object::<DestinationRule>("shop", "good", json!({"spec": {"host": 7}}));
        let (changed, problems) = view.apply(ViewEvent::DestinationRule(Event::Apply(bad)));
        assert!(changed);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("DestinationRule shop/good") && problems[0].contains("spec.host"),
            "{problems:?}"
        );
        assert_eq!(view.build("istio-system").index.destination_rule_count(), 0);
    }

    #[test]
    fn a_relist_drops_objects_deleted_while_disconnected() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::VirtualService(Event::Apply(vs("a", "v1"))));
        view.apply(ViewEvent::VirtualService(Event::Init));
        view.apply(ViewEvent::VirtualService(Event::InitApply(vs("b", "v1"))));
        assert_eq!(view.build("istio-system").index.virtual_service_count(), 1);
        view.apply(ViewEvent::VirtualService(Event::InitDone));
        let built = view.build("istio-system");
        let users: Vec<String> = built
            .index
            .virtual_services_using("reviews.shop.svc.cluster.local", "v1")
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(users, ["shop/b"]);
    }
}
