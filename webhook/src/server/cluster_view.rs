//! The cluster as `/validate` sees it, kept from watch events: every
//! VirtualService and DestinationRule, which namespaces are being deleted,
//! and the labels of the running pods behind each selecting Service.
//! Pure: events in, a [`ValidationView`] out; `watch` feeds it.

use std::collections::{BTreeMap, HashSet};

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use meshkeeper_crds::networking::common::Labels;
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
    Service(Event<DynamicObject>),
    Pod(Event<DynamicObject>),
}

/// Everything the validation view is built from.
#[derive(Debug, Default)]
pub struct ClusterView {
    virtual_services: WatchedSet<VirtualService>,
    destination_rules: WatchedSet<DestinationRule>,
    /// Namespace name → whether it is being deleted.
    namespaces: WatchedSet<bool>,
    /// Service → its `spec.selector` (`None`: selects no pod).
    services: WatchedSet<Option<Labels>>,
    pods: WatchedSet<PodSummary>,
}

/// What the view keeps of a pod: enough to tell whether it serves a
/// Service and which subsets its labels fall in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodSummary {
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
            ViewEvent::Service(e) => self.services.apply(e, parse_service_selector),
            ViewEvent::Pod(e) => self.pods.apply(e, |o| Ok(summarize_pod(o))),
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
        for ((namespace, service), pods) in serving_pods_by_service(&self.services, &self.pods) {
            index.set_service_pods(&namespace, &service, pods);
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

/// The labels of the serving pods behind every Service that has a
/// selector, keyed by `(namespace, service)`. A Service without a selector
/// (or with an empty one) is left out: Kubernetes manages no endpoints for
/// it, so the view cannot say which pods back it.
fn serving_pods_by_service(
    services: &WatchedSet<Option<Labels>>,
    pods: &WatchedSet<PodSummary>,
) -> BTreeMap<Key, Vec<Labels>> {
    services
        .live
        .iter()
        .filter_map(|(key, selector)| {
            let selector = selector.as_ref().filter(|s| !s.is_empty())?;
            let backing = pods_in_namespace(pods, &key.0)
                .filter(|pod| pod.serving && selector_matches(selector, &pod.labels))
                .map(|pod| pod.labels.clone())
                .collect();
            Some((key.clone(), backing))
        })
        .collect()
}

fn pods_in_namespace<'a>(
    pods: &'a WatchedSet<PodSummary>,
    namespace: &'a str,
) -> impl Iterator<Item = &'a PodSummary> {
    // Keys sort by namespace first, so one namespace is one contiguous range.
    pods.live
        .range((namespace.to_owned(), String::new())..)
        .take_while(move |((pod_namespace, _), _)| pod_namespace == namespace)
        .map(|(_, pod)| pod)
}

/// A Service selector matches a pod carrying every one of its labels with
/// the same value (equality only, as `spec.selector` is).
fn selector_matches(selector: &Labels, pod_labels: &Labels) -> bool {
    selector
        .iter()
        .all(|(key, value)| pod_labels.get(key) == Some(value))
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
            .map(<[Labels]>::to_vec)
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
    fn pods_listed_before_sync_count_once_the_listing_ends() {
        let mut view = ClusterView::default();
        list_all(&mut view);
        view.apply(ViewEvent::Service(Event::Apply(service(
            "shop",
            "reviews",
            json!({"app": "reviews"}),
        ))));
        view.apply(ViewEvent::Pod(Event::Init));
        view.apply(ViewEvent::Pod(Event::InitApply(pod(
            "shop",
            "v1",
            &[("app", "reviews")],
            "Running",
        ))));
        assert_eq!(
            pods_of(&view, "reviews.shop.svc.cluster.local"),
            Some(vec![])
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
