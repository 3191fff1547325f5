//! The cluster as `/validate` sees it, kept from watch events: every
//! VirtualService and DestinationRule, which namespaces are being deleted,
//! and the labels of the running pods behind each selecting Service.
//! Pure: events in, a [`ValidationView`] out; `watch` feeds it.
//!
//! Incremental: an event changes the index entries of its one object (a
//! Service or Pod event, those of the Services it concerns in its
//! namespace), never rebuilds the rest. A relist (the watch restarted)
//! applies each listed object as it comes and, at its end, removes what
//! it no longer holds. The index's
//! maps share their unchanged parts between clones, so a published view is
//! an immutable snapshot that costs a few hundred pointer copies.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use meshkeeper_crds::networking::common::Labels;
use meshkeeper_crds::networking::destination_rule::DestinationRule;
use meshkeeper_crds::networking::virtual_service::VirtualService;
use meshkeeper_crds::networking::{Gateway, ServiceEntry};

use super::state::ValidationView;
use crate::validate::index::{DEFAULT_CLUSTER_DOMAIN, DEFAULT_ROOT_NAMESPACE, Index, ObjectKey};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
type Key = (String, String);

/// What one watch event means for the objects of its kind.
#[derive(Debug, PartialEq)]
pub enum Delta<T> {
    /// The object was added or changed (or is listed).
    Upsert(Key, T),
    /// The object is gone, or can no longer be read.
    Remove(Key),
    /// A listing ended: these are the keys of all the objects of the kind;
    /// any other is gone.
    Retain(BTreeSet<Key>),
}

/// Turns one kind's watch events into [`Delta`]s, each object parsed on
/// its own so one malformed object does not hide the others.
///
/// A listed object is applied at once, not held until the listing ends: a
/// relist after a broken watch then only makes the view fresher object by
/// object, objects deleted meanwhile go when it ends, and no second copy of
/// every object is buffered (20,000 parsed objects would be most of the
/// process's memory). The first listing of every kind still ends before
/// anything is published ([`ClusterView::synced`]).
#[derive(Debug, Default)]
pub struct Listing {
    /// Keys listed since the watch (re)started.
    listed: Option<BTreeSet<Key>>,
    synced: bool,
}

impl Listing {
    /// Whether the kind has been listed once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// What one event changes, and the objects that could not be read
    /// (they count as absent).
    pub fn apply<T>(
        &mut self,
        event: Event<DynamicObject>,
        parse: impl Fn(&DynamicObject) -> Result<T, String>,
    ) -> (Option<Delta<T>>, Vec<String>) {
        let mut problems = Vec::new();
        let mut parsed = |object: &DynamicObject| {
            let key = key_of(object);
            match parse(object) {
                Ok(value) => (true, Delta::Upsert(key, value)),
                Err(problem) => {
                    // A good object turned bad must not stay visible stale.
                    problems.push(problem);
                    (false, Delta::Remove(key))
                }
            }
        };
        let delta = match event {
            Event::Init => {
                self.listed = Some(BTreeSet::new());
                None
            }
            Event::InitApply(object) => {
                let (readable, delta) = parsed(&object);
                if readable {
                    self.listed
                        .get_or_insert_with(BTreeSet::new)
                        .insert(key_of(&object));
                }
                Some(delta)
            }
            Event::InitDone => {
                self.synced = true;
                Some(Delta::Retain(self.listed.take().unwrap_or_default()))
            }
            Event::Apply(object) => Some(parsed(&object).1),
            Event::Delete(object) => Some(Delta::Remove(key_of(&object))),
        };
        (delta, problems)
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
    Service(Event<DynamicObject>),
    Pod(Event<DynamicObject>),
    Gateway(Event<DynamicObject>),
    ServiceEntry(Event<DynamicObject>),
}

/// Everything the validation view is built from, and the index itself,
/// kept current event by event.
#[derive(Debug)]
pub struct ClusterView {
    index: Index,
    virtual_services: Listing,
    destination_rules: Listing,
    namespaces: Listing,
    services: Listing,
    pods: Listing,
    gateways: Listing,
    service_entries: Listing,
    terminating_namespaces: HashSet<String>,
    /// Services with a non-empty selector → that selector. A Service without
    /// one (or with an empty one) is left out: Kubernetes manages no
    /// endpoints for it, so the view cannot say which pods back it.
    selectors: BTreeMap<Key, Labels>,
    /// Every pod the pod watch reports (running ones), by namespace first
    /// so one namespace is one contiguous range.
    pod_summaries: BTreeMap<Key, PodSummary>,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self {
            index: Index::new(DEFAULT_CLUSTER_DOMAIN, DEFAULT_ROOT_NAMESPACE),
            virtual_services: Listing::default(),
            destination_rules: Listing::default(),
            namespaces: Listing::default(),
            services: Listing::default(),
            pods: Listing::default(),
            gateways: Listing::default(),
            service_entries: Listing::default(),
            terminating_namespaces: HashSet::new(),
            selectors: BTreeMap::new(),
            pod_summaries: BTreeMap::new(),
        }
    }
}

/// What the view keeps of a pod: enough to tell whether it serves a
/// Service and which subsets its labels fall in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    labels: Labels,
    /// Running and not being deleted: a pod on its way out no longer
    /// counts as a backend a subset could rely on.
    serving: bool,
}

impl ClusterView {
    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.virtual_services.synced()
            && self.destination_rules.synced()
            && self.namespaces.synced()
            && self.services.synced()
            && self.pods.synced()
            && self.gateways.synced()
            && self.service_entries.synced()
    }

    /// Applies one event. Returns whether the view may have changed, and
    /// the objects that could not be read (they count as absent).
    pub fn apply(&mut self, event: ViewEvent) -> (bool, Vec<String>) {
        match event {
            ViewEvent::VirtualService(e) => {
                let (delta, problems) = self
                    .virtual_services
                    .apply(e, |o| parse_typed::<VirtualService>(o, "VirtualService"));
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_virtual_services(delta);
                }
                (changed, problems)
            }
            ViewEvent::DestinationRule(e) => {
                let (delta, problems) = self
                    .destination_rules
                    .apply(e, |o| parse_typed::<DestinationRule>(o, "DestinationRule"));
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_destination_rules(delta);
                }
                (changed, problems)
            }
            ViewEvent::Namespace(e) => {
                let (delta, problems) = self.namespaces.apply(e, |o| Ok(is_terminating(o)));
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_namespaces(delta);
                }
                (changed, problems)
            }
            ViewEvent::Service(e) => {
                let (delta, problems) = self.services.apply(e, parse_service);
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_services(delta);
                }
                // Only a complete list says a host without a Service is missing.
                let known = self.services.synced();
                self.index.catalog_mut().set_services_known(known);
                (changed, problems)
            }
            ViewEvent::Gateway(e) => {
                let (delta, problems) = self
                    .gateways
                    .apply(e, |o| parse_typed::<Gateway>(o, "Gateway"));
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_gateways(delta);
                }
                (changed, problems)
            }
            ViewEvent::ServiceEntry(e) => {
                let (delta, problems) = self
                    .service_entries
                    .apply(e, |o| parse_typed::<ServiceEntry>(o, "ServiceEntry"));
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_service_entries(delta);
                }
                (changed, problems)
            }
            ViewEvent::Pod(e) => {
                let (delta, problems) = self.pods.apply(e, |o| Ok(summarize_pod(o)));
                let changed = delta.is_some();
                if let Some(delta) = delta {
                    self.apply_pods(delta);
                }
                (changed, problems)
            }
        }
    }

    /// The index as it stands, for a mesh whose root namespace is `root`.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The mesh root namespace decides DestinationRule visibility; nothing
    /// stored depends on it, so changing it costs nothing.
    pub fn set_root_namespace(&mut self, root_namespace: &str) {
        self.index.set_root_namespace(root_namespace);
    }

    /// A snapshot for requests to read, for a mesh whose root namespace is
    /// `root_namespace`. Cheap: the index's maps are shared, not copied,
    /// and later events do not change the snapshot.
    pub fn build(&self, root_namespace: &str) -> ValidationView {
        let mut index = self.index.clone();
        index.set_root_namespace(root_namespace);
        ValidationView {
            index,
            terminating_namespaces: self.terminating_namespaces.clone(),
        }
    }

    fn apply_virtual_services(&mut self, delta: Delta<VirtualService>) {
        match delta {
            Delta::Upsert(_, vs) => self.index.upsert_virtual_service(&vs),
            Delta::Remove((namespace, name)) => {
                self.index.remove_virtual_service(&namespace, &name)
            }
            Delta::Retain(listed) => {
                for key in gone(self.index.virtual_service_keys(), &listed) {
                    self.index.remove_virtual_service(&key.namespace, &key.name);
                }
            }
        }
    }

    fn apply_destination_rules(&mut self, delta: Delta<DestinationRule>) {
        match delta {
            Delta::Upsert(_, dr) => self.index.upsert_destination_rule(&dr),
            Delta::Remove((namespace, name)) => {
                self.index.remove_destination_rule(&namespace, &name);
            }
            Delta::Retain(listed) => {
                for key in gone(self.index.destination_rule_keys(), &listed) {
                    self.index
                        .remove_destination_rule(&key.namespace, &key.name);
                }
            }
        }
    }

    fn apply_namespaces(&mut self, delta: Delta<bool>) {
        match delta {
            Delta::Upsert((_, name), true) => {
                self.terminating_namespaces.insert(name);
            }
            Delta::Upsert((_, name), false) | Delta::Remove((_, name)) => {
                self.terminating_namespaces.remove(&name);
            }
            Delta::Retain(listed) => {
                // Namespaces are cluster-scoped: their keys have no namespace.
                self.terminating_namespaces
                    .retain(|name| listed.contains(&(String::new(), name.clone())));
            }
        }
    }

    fn apply_services(&mut self, delta: Delta<ParsedService>) {
        match delta {
            Delta::Upsert(key, parsed) => {
                self.index.catalog_mut().upsert_service(&parsed.service);
                self.set_selector(key, parsed.selector);
            }
            Delta::Remove(key) => {
                self.index.catalog_mut().remove_service(&key.0, &key.1);
                self.set_selector(key, None);
            }
            Delta::Retain(listed) => {
                let unlisted: Vec<Key> = self
                    .selectors
                    .keys()
                    .filter(|key| !listed.contains(*key))
                    .cloned()
                    .collect();
                for key in unlisted {
                    self.set_selector(key, None);
                }
                let catalog = self.index.catalog_mut();
                for key in gone(catalog.service_keys(), &listed) {
                    catalog.remove_service(&key.namespace, &key.name);
                }
            }
        }
    }

    fn apply_gateways(&mut self, delta: Delta<Gateway>) {
        let catalog = self.index.catalog_mut();
        match delta {
            Delta::Upsert(_, gateway) => catalog.upsert_gateway(&gateway),
            Delta::Remove((namespace, name)) => catalog.remove_gateway(&namespace, &name),
            Delta::Retain(listed) => {
                for key in gone(catalog.gateway_keys(), &listed) {
                    catalog.remove_gateway(&key.namespace, &key.name);
                }
            }
        }
    }

    fn apply_service_entries(&mut self, delta: Delta<ServiceEntry>) {
        let catalog = self.index.catalog_mut();
        match delta {
            Delta::Upsert(_, entry) => catalog.upsert_service_entry(&entry),
            Delta::Remove((namespace, name)) => catalog.remove_service_entry(&namespace, &name),
            Delta::Retain(listed) => {
                for key in gone(catalog.service_entry_keys(), &listed) {
                    catalog.remove_service_entry(&key.namespace, &key.name);
                }
            }
        }
    }

    /// Records a Service's selector and, when it changed, which pods back it
    /// (a scan of the pods of its namespace).
    fn set_selector(&mut self, key: Key, selector: Option<Labels>) {
        let (namespace, service) = (&key.0, &key.1);
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            if self.selectors.remove(&key).is_some() {
                self.index.remove_service_pods(namespace, service);
            }
            return;
        };
        if self.selectors.get(&key) == Some(&selector) {
            return;
        }
        let backing = pods_in_namespace(&self.pod_summaries, namespace)
            .filter(|pod| pod.serving && selector_matches(&selector, &pod.labels))
            .map(|pod| pod.labels.clone())
            .collect();
        self.index.set_service_pods(namespace, service, backing);
        self.selectors.insert(key, selector);
    }

    fn apply_pods(&mut self, delta: Delta<PodSummary>) {
        match delta {
            Delta::Upsert(key, pod) => self.set_pod(key, Some(pod)),
            Delta::Remove(key) => self.set_pod(key, None),
            Delta::Retain(listed) => {
                let gone: Vec<Key> = self
                    .pod_summaries
                    .keys()
                    .filter(|key| !listed.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    self.set_pod(key, None);
                }
            }
        }
    }

    /// Records a pod (or its absence) and moves it in or out of the pod
    /// lists of the Services of its namespace that select it.
    fn set_pod(&mut self, key: Key, pod: Option<PodSummary>) {
        let old = match &pod {
            Some(new) => self.pod_summaries.insert(key.clone(), new.clone()),
            None => self.pod_summaries.remove(&key),
        };
        if old == pod {
            return;
        }
        let namespace = &key.0;
        let (before, after) = (serving_labels(old.as_ref()), serving_labels(pod.as_ref()));
        for ((_, service), selector) in selectors_in_namespace(&self.selectors, namespace) {
            if let Some(labels) = before.filter(|l| selector_matches(selector, l)) {
                self.index.remove_service_pod(namespace, service, labels);
            }
            if let Some(labels) = after.filter(|l| selector_matches(selector, l)) {
                self.index.add_service_pod(namespace, service, labels);
            }
        }
    }
}

/// The labels of a pod that serves (absent or not serving: none).
fn serving_labels(pod: Option<&PodSummary>) -> Option<&Labels> {
    pod.filter(|p| p.serving).map(|p| &p.labels)
}

/// Keys the index holds that a listing no longer has.
fn gone<'a>(known: impl Iterator<Item = &'a ObjectKey>, listed: &BTreeSet<Key>) -> Vec<ObjectKey> {
    known
        .filter(|key| !listed.contains(&(key.namespace.clone(), key.name.clone())))
        .cloned()
        .collect()
}

fn is_terminating(namespace: &DynamicObject) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace.data["status"]["phase"].as_str() == Some("Terminating")
}

/// The entries of one namespace in a map keyed by `(namespace, name)`:
/// keys sort by namespace first, so it is one contiguous range.
fn in_namespace<'a, T>(
    map: &'a BTreeMap<Key, T>,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a Key, &'a T)> {
    map.range((namespace.to_owned(), String::new())..)
        .take_while(move |((entry_namespace, _), _)| entry_namespace == namespace)
}

fn pods_in_namespace<'a>(
    pods: &'a BTreeMap<Key, PodSummary>,
    namespace: &'a str,
) -> impl Iterator<Item = &'a PodSummary> {
    in_namespace(pods, namespace).map(|(_, pod)| pod)
}

fn selectors_in_namespace<'a>(
    selectors: &'a BTreeMap<Key, Labels>,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a Key, &'a Labels)> {
    in_namespace(selectors, namespace)
}

/// A Service selector matches a pod carrying every one of its labels with
/// the same value (equality only, as `spec.selector` is).
fn selector_matches(selector: &Labels, pod_labels: &Labels) -> bool {
    selector
        .iter()
        .all(|(key, value)| pod_labels.get(key) == Some(value))
}

/// What the view keeps of a Service: its selector (for the pods behind
/// it) and the Service itself (ports, for the reference checks).
#[derive(Debug, PartialEq)]
pub struct ParsedService {
    selector: Option<Labels>,
    service: Service,
}

fn parse_service(object: &DynamicObject) -> Result<ParsedService, String> {
    let selector = parse_service_selector(object)?;
    let describe = || {
        format!(
            "Service {}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    };
    let value = serde_json::to_value(object).map_err(|e| format!("{}: {e}", describe()))?;
    let service = serde_json::from_value(value)
        .map_err(|e| format!("{} is ignored for validation: {e}", describe()))?;
    Ok(ParsedService { selector, service })
}

fn parse_service_selector(service: &DynamicObject) -> Result<Option<Labels>, String> {
    let selector = &service.data["spec"]["selector"];
    if selector.is_null() {
        return Ok(None);
    }
    serde_json::from_value(selector.clone()).map_err(|e| {
        format!(
            "Service {}/{} is ignored for validation: spec.selector {selector} is not a map of \
             string labels to string values: {e}",
            service.namespace().unwrap_or_default(),
            service.name_any()
        )
    })
}

fn summarize_pod(pod: &DynamicObject) -> PodSummary {
    let running = pod.data["status"]["phase"].as_str() == Some("Running");
    PodSummary {
        labels: pod.labels().clone(),
        serving: running && pod.metadata.deletion_timestamp.is_none(),
    }
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
            ViewEvent::Service,
            ViewEvent::Pod,
            ViewEvent::Gateway,
            ViewEvent::ServiceEntry,
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
        view.apply(ViewEvent::Service(Event::Init));
        view.apply(ViewEvent::Service(Event::InitDone));
        assert!(!view.synced(), "pods not listed yet");
        view.apply(ViewEvent::Pod(Event::Init));
        view.apply(ViewEvent::Pod(Event::InitDone));
        view.apply(ViewEvent::Gateway(Event::Init));
        view.apply(ViewEvent::Gateway(Event::InitDone));
        assert!(!view.synced());
        view.apply(ViewEvent::ServiceEntry(Event::Init));
        view.apply(ViewEvent::ServiceEntry(Event::InitDone));
        assert!(view.synced());
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn service(namespace: &str, name: &str, selector: serde_json::Value) -> DynamicObject {
        object::<k8s_openapi::api::core::v1::Service>(
            namespace,
            name,
            json!({"spec": {"selector": selector}}),
        )
    }

    fn pod(namespace: &str, name: &str, pod_labels: &[(&str, &str)], phase: &str) -> DynamicObject {
        let mut pod = object::<k8s_openapi::api::core::v1::Pod>(
            namespace,
            name,
            json!({"status": {"phase": phase}}),
        );
        pod.metadata.labels = Some(labels(pod_labels));
        pod
    }

    fn pods_of(view: &ClusterView, host: &str) -> Option<Vec<Labels>> {
        view.build("istio-system")
            .index
            .pods_of_host(host)
            .map(|pods| pods.label_sets().cloned().collect())
    }

    #[test]
    fn a_selector_matches_pods_carrying_all_its_labels() {
        let selector = labels(&[("app", "reviews")]);
        assert!(selector_matches(
            &selector,
            &labels(&[("app", "reviews"), ("version", "v1")])
        ));
        assert!(!selector_matches(&selector, &labels(&[("app", "ratings")])));
        assert!(!selector_matches(&selector, &labels(&[("version", "v1")])));
    }

    #[test]
    fn a_service_gets_the_labels_of_its_running_pods_in_its_namespace() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        let app = ("app", "reviews");
        for event in [
            ViewEvent::Service(Event::Apply(service(
                "shop",
                "reviews",
                json!({"app": "reviews"}),
            ))),
            ViewEvent::Pod(Event::Apply(pod(
                "shop",
                "v1",
                &[app, ("version", "v1")],
                "Running",
            ))),
            ViewEvent::Pod(Event::Apply(pod(
                "shop",
                "v2",
                &[app, ("version", "v2")],
                "Pending",
            ))),
            ViewEvent::Pod(Event::Apply(pod(
                "shop",
                "other",
                &[("app", "ratings")],
                "Running",
            ))),
            ViewEvent::Pod(Event::Apply(pod(
                "elsewhere",
                "v3",
                &[app, ("version", "v3")],
                "Running",
            ))),
        ] {
            view.apply(event);
        }
        assert_eq!(
            pods_of(&view, "reviews.shop.svc.cluster.local"),
            Some(vec![labels(&[app, ("version", "v1")])])
        );

        // The pod stops running: the service is still known, with no pod.
        view.apply(ViewEvent::Pod(Event::Apply(pod(
            "shop",
            "v1",
            &[app, ("version", "v1")],
            "Succeeded",
        ))));
        assert_eq!(
            pods_of(&view, "reviews.shop.svc.cluster.local"),
            Some(vec![])
        );

        view.apply(ViewEvent::Service(Event::Delete(service(
            "shop",
            "reviews",
            json!(null),
        ))));
        assert_eq!(pods_of(&view, "reviews.shop.svc.cluster.local"), None);
    }

    #[test]
    fn a_pod_being_deleted_no_longer_serves() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::Service(Event::Apply(service(
            "shop",
            "reviews",
            json!({"app": "reviews"}),
        ))));
        let mut leaving = pod("shop", "v1", &[("app", "reviews")], "Running");
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        view.apply(ViewEvent::Pod(Event::Apply(leaving)));
        assert_eq!(
            pods_of(&view, "reviews.shop.svc.cluster.local"),
            Some(vec![])
        );
    }

    #[test]
    fn a_service_without_a_selector_is_not_checked_against_pods() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::Service(Event::Apply(service(
            "shop",
            "external",
            json!(null),
        ))));
        view.apply(ViewEvent::Service(Event::Apply(service(
            "shop",
            "empty",
            json!({}),
        ))));
        view.apply(ViewEvent::Pod(Event::Apply(pod(
            "shop",
            "p",
            &[("app", "x")],
            "Running",
        ))));
        assert_eq!(pods_of(&view, "external.shop.svc.cluster.local"), None);
        assert_eq!(pods_of(&view, "empty.shop.svc.cluster.local"), None);
    }

    #[test]
    fn a_malformed_selector_is_reported_and_the_service_left_unchecked() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        let bad = service("shop", "reviews", json!({"app": 7}));
        let (_, problems) = view.apply(ViewEvent::Service(Event::Apply(bad)));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("Service shop/reviews") && problems[0].contains("spec.selector"),
            "{problems:?}"
        );
        assert_eq!(pods_of(&view, "reviews.shop.svc.cluster.local"), None);
    }

    #[test]
    fn a_relisted_pod_counts_at_once_and_unlisted_ones_go_when_the_listing_ends() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::Service(Event::Apply(service(
            "shop",
            "reviews",
            json!({"app": "reviews"}),
        ))));
        view.apply(ViewEvent::Pod(Event::Apply(pod(
            "shop",
            "old",
            &[("app", "reviews"), ("version", "old")],
            "Running",
        ))));
        // The watch broke; while it relists, `old` was deleted and `v1` started.
        view.apply(ViewEvent::Pod(Event::Init));
        view.apply(ViewEvent::Pod(Event::InitApply(pod(
            "shop",
            "v1",
            &[("app", "reviews")],
            "Running",
        ))));
        assert_eq!(
            pods_of(&view, "reviews.shop.svc.cluster.local").map(|p| p.len()),
            Some(2),
            "a listed object is applied as it comes; deletions wait for the end"
        );
        view.apply(ViewEvent::Pod(Event::InitDone));
        assert_eq!(
            pods_of(&view, "reviews.shop.svc.cluster.local"),
            Some(vec![labels(&[("app", "reviews")])])
        );
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
        // `a` may have been deleted meanwhile: only the listing's end says.
        assert_eq!(view.build("istio-system").index.virtual_service_count(), 2);
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

    /// A small deterministic generator (no dependency): SplitMix64.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const KINDS: usize = 5;

    fn wrap(kind: usize, event: Event<DynamicObject>) -> ViewEvent {
        match kind {
            0 => ViewEvent::VirtualService(event),
            1 => ViewEvent::DestinationRule(event),
            2 => ViewEvent::Namespace(event),
            3 => ViewEvent::Service(event),
            _ => ViewEvent::Pod(event),
        }
    }

    /// A random object of `kind` among a few names, so events keep hitting
    /// the same objects, Services and pods keep meeting, and some objects
    /// are malformed.
    fn random_object(random: &mut Random, kind: usize) -> DynamicObject {
        let namespace = random.pick(&["shop", "other"]);
        let name = random.pick(&["a", "b", "c"]);
        let app = random.pick(&["reviews", "ratings"]);
        let version = random.pick(&["v1", "v2"]);
        let mut object = match kind {
            0 => {
                let mut vs = vs(name, version);
                vs.metadata.namespace = Some(namespace.to_owned());
                vs
            }
            1 => {
                let subsets = [&["v1"][..], &["v1", "v2"], &[]][random.below(3)];
                let mut rule = if random.below(8) == 0 {
                    object::<DestinationRule>(namespace, name, json!({"spec": {"host": 7}}))
                } else {
                    dr(name, subsets)
                };
                rule.metadata.namespace = Some(namespace.to_owned());
                rule
            }
            2 => self::namespace(namespace, random.pick(&["Active", "Terminating"])),
            3 => {
                let selector = [
                    json!({"app": app}),
                    json!(null),
                    json!({}),
                    json!({"app": 7}),
                ][random.below(4)]
                .clone();
                service(namespace, app, selector)
            }
            _ => pod(
                namespace,
                name,
                &[("app", app), ("version", version)],
                random.pick(&["Running", "Running", "Pending"]),
            ),
        };
        if kind == 4 && random.below(6) == 0 {
            object.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
            );
        }
        object
    }

    /// A view that listed exactly `objects`, kind by kind.
    fn listed(objects: &[BTreeMap<Key, DynamicObject>]) -> ClusterView {
        let mut view = ClusterView::default();
        for (kind, of_kind) in objects.iter().enumerate() {
            view.apply(wrap(kind, Event::Init));
            for object in of_kind.values() {
                view.apply(wrap(kind, Event::InitApply(object.clone())));
            }
            view.apply(wrap(kind, Event::InitDone));
        }
        view
    }

    fn assert_same_view(a: &ValidationView, b: &ValidationView, context: &str) {
        assert_eq!(a.index, b.index, "{context}");
        assert_eq!(
            a.terminating_namespaces, b.terminating_namespaces,
            "{context}"
        );
    }

    #[test]
    fn any_event_sequence_gives_the_view_of_a_fresh_listing_of_the_final_objects() {
        let mut random = Random(0x00c0_ffee);
        for round in 0..200 {
            // What the API server holds, kind by kind.
            let mut truth: Vec<BTreeMap<Key, DynamicObject>> = vec![BTreeMap::new(); KINDS];
            let mut view = listed(&truth);
            let mut snapshots = Vec::new();
            for step in 0..60 {
                let kind = random.below(KINDS);
                match random.below(10) {
                    0..=5 => {
                        let object = random_object(&mut random, kind);
                        truth[kind].insert(key_of(&object), object.clone());
                        view.apply(wrap(kind, Event::Apply(object)));
                    }
                    6..=7 => {
                        let object = random_object(&mut random, kind);
                        if let Some(gone) = truth[kind].remove(&key_of(&object)) {
                            view.apply(wrap(kind, Event::Delete(gone)));
                        }
                    }
                    _ => {
                        // The watch broke: changes made meanwhile are only
                        // seen through the relist.
                        for _ in 0..random.below(4) {
                            let object = random_object(&mut random, kind);
                            if random.below(2) == 0 {
                                truth[kind].insert(key_of(&object), object);
                            } else {
                                truth[kind].remove(&key_of(&object));
                            }
                        }
                        view.apply(wrap(kind, Event::Init));
                        for object in truth[kind].values() {
                            view.apply(wrap(kind, Event::InitApply(object.clone())));
                        }
                        view.apply(wrap(kind, Event::InitDone));
                    }
                }
                if random.below(4) == 0 {
                    snapshots.push((view.build("istio-system"), truth.clone(), step));
                }
            }
            assert_same_view(
                &view.build("istio-system"),
                &listed(&truth).build("istio-system"),
                &format!("round {round}"),
            );
            // Snapshots published along the way never changed afterwards.
            for (snapshot, truth, step) in &snapshots {
                assert_same_view(
                    snapshot,
                    &listed(truth).build("istio-system"),
                    &format!("round {round}, snapshot at step {step}"),
                );
            }
        }
    }

    #[test]
    fn a_published_view_is_not_changed_by_later_events() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::DestinationRule(Event::Apply(dr(
            "reviews",
            &["v1"],
        ))));
        let published = view.build("istio-system");
        view.apply(ViewEvent::DestinationRule(Event::Delete(dr(
            "reviews",
            &[],
        ))));
        view.apply(ViewEvent::Namespace(Event::Apply(namespace(
            "shop",
            "Terminating",
        ))));
        assert_eq!(published.index.destination_rule_count(), 1);
        assert!(published.terminating_namespaces.is_empty());
        assert_eq!(view.build("istio-system").index.destination_rule_count(), 0);
    }
}
