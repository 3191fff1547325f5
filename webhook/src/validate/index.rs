//! The cross-object view the subset checks need: which DestinationRule
//! defines which subsets for which host, which VirtualServices route to
//! which `(host, subset)`, and (optionally) the labels of the pods behind
//! each Kubernetes service.
//!
//! Plain data, no I/O: the server feeds it from watches, `meshctl analyze`
//! from files. Lookups are by resolved host in hash maps, so a request costs
//! a handful of map probes whatever the number of objects.
//!
//! Resolution and visibility follow Istio's behaviour:
//! - a short host `reviews` in namespace `ns` is `reviews.ns.svc.<domain>`;
//!   other hosts are kept as written. `reviews.ns` is treated as an alias of
//!   `reviews.ns.svc.<domain>` (Kubernetes DNS resolves it so) without
//!   rewriting names such as `example.com`, which are usually external.
//! - a wildcard DestinationRule host (`*.ns.svc.cluster.local`, `*`) matches
//!   by suffix; an exact host beats any wildcard and a longer suffix beats a
//!   shorter one.
//! - a DestinationRule is visible to a namespace when `exportTo` is absent or
//!   holds `*`, `.` (its own namespace only) or that namespace by name.
//! - precedence, as the proxy looks it up: rules in the caller's namespace,
//!   then rules exported by the service's namespace, then rules exported by
//!   the mesh root namespace. The first tier with a matching rule wins and
//!   lower tiers are not consulted, so their subsets do not exist for the
//!   caller. Several rules for the same host in the winning tier are merged
//!   (their subsets add up), as Istio merges them.
//!
//! Deliberate approximations, each erring towards "the subset is defined" so
//! the guard does not deny working configuration:
//! - a VirtualService is judged from its own namespace (as `istioctl
//!   analyze` does), not from every namespace it is exported to;
//! - for a host that is not `name.ns.svc.<domain>` (a ServiceEntry host, or
//!   the ambiguous `a.b`), the service's namespace is unknown, so rules
//!   exported from any namespace fill the second tier;
//! - a rule with a `workloadSelector` counts like any other.
//!
//! Every change is incremental (it touches the entries of one object) and
//! the maps are [`SharedMap`]s, so cloning an index is cheap and a clone is
//! an immutable snapshot: the server publishes one after each batch of
//! watch events while it keeps changing its working copy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use meshkeeper_crds::networking::common::Labels;
use meshkeeper_crds::networking::virtual_service::Destination;
use meshkeeper_crds::networking::{DestinationRule, VirtualService};

use super::catalog::{Catalog, MeshBinding};
use super::shared_map::SharedMap;

/// Kubernetes' default cluster DNS domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Istio's default mesh root namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Namespace assumed for an object whose metadata names none (as kubectl
/// does); the server should fill it from the admission request beforehand.
const DEFAULT_NAMESPACE: &str = "default";

/// A namespaced object's identity, shown as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The namespaces a DestinationRule is exported to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportTo {
    /// `exportTo` absent, empty, or holding `*`.
    All,
    /// Only these namespaces (`.` already replaced by the rule's own);
    /// empty for `~` (exported nowhere).
    Namespaces(BTreeSet<String>),
}

impl ExportTo {
    pub(crate) fn from_spec(export_to: Option<&[String]>, own_namespace: &str) -> Self {
        let Some(entries) = export_to.filter(|e| !e.is_empty()) else {
            return ExportTo::All;
        };
        if entries.iter().any(|e| e == "*") {
            return ExportTo::All;
        }
        let namespaces = entries
            .iter()
            .filter(|e| e.as_str() != "~")
            .map(|e| {
                if e == "." {
                    own_namespace.to_owned()
                } else {
                    e.clone()
                }
            })
            .collect();
        ExportTo::Namespaces(namespaces)
    }

    pub(crate) fn includes(&self, namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::Namespaces(set) => set.contains(namespace),
        }
    }
}

/// One subset as a DestinationRule declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedSubset {
    pub name: String,
    /// Pod labels the subset selects; empty selects every pod of the host.
    pub labels: Labels,
}

/// What the index keeps of a DestinationRule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedDestinationRule {
    pub key: ObjectKey,
    /// `spec.host` resolved against the rule's namespace; may be a wildcard
    /// (`*.example.com`). Empty when the rule names no host.
    pub host: String,
    pub subsets: Vec<IndexedSubset>,
    pub export_to: ExportTo,
}

impl IndexedDestinationRule {
    pub fn is_visible_to(&self, namespace: &str) -> bool {
        self.export_to.includes(namespace)
    }

    pub fn subset(&self, name: &str) -> Option<&IndexedSubset> {
        self.subsets.iter().find(|s| s.name == name)
    }
}

/// What the index keeps of a VirtualService.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IndexedVirtualService {
    /// Resolved `(host, subset)` pairs its destinations name.
    references: BTreeSet<(String, String)>,
    /// `metadata.deletionTimestamp` is set: it no longer counts as a user
    /// of the subsets it names.
    being_deleted: bool,
}

/// The labels of the running pods behind one Kubernetes service, kept as
/// distinct label sets with how many pods carry each: the replicas of one
/// workload share their labels, so a pod coming or going changes a count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePods {
    label_sets: Arc<BTreeMap<Labels, usize>>,
    pods: usize,
}

impl ServicePods {
    /// How many running pods back the service.
    pub fn len(&self) -> usize {
        self.pods
    }

    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }

    /// Each distinct label set of the running pods, once.
    pub fn label_sets(&self) -> impl Iterator<Item = &Labels> {
        self.label_sets.keys()
    }

    fn add(&mut self, labels: &Labels) {
        *Arc::make_mut(&mut self.label_sets)
            .entry(labels.clone())
            .or_default() += 1;
        self.pods += 1;
    }

    fn remove(&mut self, labels: &Labels) {
        let sets = Arc::make_mut(&mut self.label_sets);
        let Some(count) = sets.get_mut(labels) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            sets.remove(labels);
        }
        self.pods -= 1;
    }
}

impl FromIterator<Labels> for ServicePods {
    fn from_iter<I: IntoIterator<Item = Labels>>(pods: I) -> Self {
        let mut all = ServicePods::default();
        for labels in pods {
            all.add(&labels);
        }
        all
    }
}

/// A pretend change to one DestinationRule, to ask "what would the view be
/// if this rule looked like that (or were gone)" without mutating the index.
#[derive(Clone, Copy, Debug)]
pub struct RuleOverride<'a> {
    pub key: &'a ObjectKey,
    pub replacement: Option<&'a IndexedDestinationRule>,
}

/// The tiers of Istio's DestinationRule lookup, highest precedence first.
#[derive(Clone, Copy, Debug)]
enum Tier<'a> {
    Namespace(&'a str),
    /// The host's service namespace is unknown (not a cluster-local name,
    /// e.g. a ServiceEntry host): any namespace's exported rule counts. This
    /// errs towards "defined" so the guard does not deny valid config.
    AnyNamespace,
}

impl Tier<'_> {
    fn holds(&self, namespace: &str) -> bool {
        match self {
            Tier::Namespace(ns) => *ns == namespace,
            Tier::AnyNamespace => true,
        }
    }
}

/// The cross-object index. See the module documentation for the rules.
/// Cloning is cheap and gives an immutable snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    cluster_domain: String,
    root_namespace: String,
    destination_rules: SharedMap<ObjectKey, Arc<IndexedDestinationRule>>,
    /// Resolved host (or wildcard pattern) → rules declaring it.
    rules_by_host: SharedMap<String, Arc<BTreeSet<ObjectKey>>>,
    virtual_services: SharedMap<ObjectKey, Arc<IndexedVirtualService>>,
    /// Subset name → resolved host → VirtualServices routing there. Keyed
    /// by subset first so a wildcard rule can scan the hosts of one subset.
    references: SharedMap<String, SharedMap<String, Arc<BTreeSet<ObjectKey>>>>,
    /// `(namespace, service)` → labels of its running pods.
    service_pods: SharedMap<(String, String), ServicePods>,
    /// Gateways, Services, ServiceEntries, Secrets and the hosts bound to
    /// the mesh gateway, for the reference checks.
    catalog: Catalog,
}

impl Default for Index {
    fn default() -> Self {
        Self::new(DEFAULT_CLUSTER_DOMAIN, DEFAULT_ROOT_NAMESPACE)
    }
}

impl Index {
    pub fn new(cluster_domain: impl Into<String>, root_namespace: impl Into<String>) -> Self {
        Self {
            cluster_domain: cluster_domain.into(),
            root_namespace: root_namespace.into(),
            destination_rules: SharedMap::default(),
            rules_by_host: SharedMap::default(),
            virtual_services: SharedMap::default(),
            references: SharedMap::default(),
            service_pods: SharedMap::default(),
            catalog: Catalog::default(),
        }
    }

    /// Gateways, Services, ServiceEntries and Secrets (see [`Catalog`]).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// Changes the mesh root namespace. Nothing stored depends on it (it is
    /// read at lookup time), so this costs nothing.
    pub fn set_root_namespace(&mut self, root_namespace: &str) {
        if self.root_namespace != root_namespace {
            self.root_namespace = root_namespace.to_owned();
        }
    }

    pub fn destination_rule_count(&self) -> usize {
        self.destination_rules.len()
    }

    pub fn virtual_service_count(&self) -> usize {
        self.virtual_services.len()
    }

    pub fn destination_rule_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.destination_rules.keys()
    }

    pub fn virtual_service_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.virtual_services.keys()
    }

    /// Resolves a host as written in an object of `namespace`: a short name
    /// becomes `name.namespace.svc.<domain>`; anything with a dot, `*` and
    /// IP addresses are kept.
    pub fn resolve_host(&self, host: &str, namespace: &str) -> String {
        let host = host.trim();
        if host.is_empty() || host == "*" || host.contains('.') || host.contains(':') {
            return host.to_owned();
        }
        format!("{host}.{namespace}.svc.{}", self.cluster_domain)
    }

    /// The `(namespace, service)` a resolved host names when it is a
    /// Kubernetes service's full name `service.namespace.svc.<domain>`.
    pub fn service_of_host<'h>(&self, host: &'h str) -> Option<(&'h str, &'h str)> {
        let local = host
            .strip_suffix(self.cluster_domain.as_str())?
            .strip_suffix(".svc.")?;
        split_service_namespace(local)
    }

    /// The other spelling of a cluster-local host: `a.b` ↔ `a.b.svc.<domain>`.
    pub(crate) fn alias_of(&self, host: &str) -> Option<String> {
        if let Some((namespace, service)) = self.service_of_host(host) {
            return Some(format!("{service}.{namespace}"));
        }
        let (namespace, service) = split_service_namespace(host)?;
        Some(format!("{service}.{namespace}.svc.{}", self.cluster_domain))
    }

    /// The full service name of a host when it has one (the host itself or
    /// the long form of its `a.b` alias).
    fn service_host(&self, host: &str) -> Option<String> {
        if self.service_of_host(host).is_some() {
            return Some(host.to_owned());
        }
        self.alias_of(host)
    }

    /// Patterns a resolved host may be declared under, most specific first:
    /// the host and its alias, then each wildcard suffix, then `*`.
    pub(crate) fn match_levels(&self, host: &str) -> Vec<Vec<String>> {
        let alias = self.alias_of(host);
        let mut levels = vec![
            std::iter::once(host.to_owned())
                .chain(alias.clone())
                .collect::<Vec<_>>(),
        ];
        if host.starts_with('*') {
            return levels;
        }
        // Wildcards are tried on the long spelling first: it has more
        // suffixes, and they are the more specific ones.
        let mut spellings: Vec<String> = std::iter::once(host.to_owned()).chain(alias).collect();
        spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for spelling in &spellings {
            for (i, _) in spelling.match_indices('.') {
                let pattern = format!("*{}", &spelling[i..]);
                if !levels.iter().flatten().any(|p| *p == pattern) {
                    levels.push(vec![pattern]);
                }
            }
        }
        levels.push(vec!["*".to_owned()]);
        levels
    }

    /// Builds the index entry for a DestinationRule without storing it.
    pub fn index_destination_rule(&self, dr: &DestinationRule) -> IndexedDestinationRule {
        let key = key_of(&dr.metadata);
        let host = dr
            .spec
            .host
            .as_deref()
            .map(|h| self.resolve_host(h, &key.namespace))
            .unwrap_or_default();
        let subsets = dr
            .spec
            .subsets
            .iter()
            .flatten()
            .filter_map(|s| {
                Some(IndexedSubset {
                    name: s.name.clone().filter(|n| !n.is_empty())?,
                    labels: s.labels.clone().unwrap_or_default(),
                })
            })
            .collect();
        let export_to = ExportTo::from_spec(dr.spec.export_to.as_deref(), &key.namespace);
        IndexedDestinationRule {
            key,
            host,
            subsets,
            export_to,
        }
    }

    /// Adds or replaces a DestinationRule; touches only its own entries
    /// (nothing at all when what the index keeps of it is unchanged).
    pub fn upsert_destination_rule(&mut self, dr: &DestinationRule) {
        let entry = self.index_destination_rule(dr);
        if self
            .destination_rules
            .get(&entry.key)
            .is_some_and(|old| **old == entry)
        {
            return;
        }
        self.remove_destination_rule(&entry.key.namespace, &entry.key.name);
        if !entry.host.is_empty() {
            Arc::make_mut(
                self.rules_by_host
                    .get_or_insert_with(entry.host.clone(), Default::default),
            )
            .insert(entry.key.clone());
        }
        self.destination_rules
            .insert(entry.key.clone(), Arc::new(entry));
    }

    pub fn remove_destination_rule(&mut self, namespace: &str, name: &str) {
        let key = ObjectKey::new(namespace, name);
        let Some(old) = self.destination_rules.remove(&key) else {
            return;
        };
        if let Some(keys) = self.rules_by_host.get_mut(&old.host) {
            let keys = Arc::make_mut(keys);
            keys.remove(&key);
            if keys.is_empty() {
                self.rules_by_host.remove(&old.host);
            }
        }
    }

    pub fn destination_rule(&self, namespace: &str, name: &str) -> Option<&IndexedDestinationRule> {
        self.destination_rules
            .get(&ObjectKey::new(namespace, name))
            .map(|dr| &**dr)
    }

    /// Adds or replaces a VirtualService; touches only its own entries
    /// (nothing at all when what the index keeps of it is unchanged).
    pub fn upsert_virtual_service(&mut self, vs: &VirtualService) {
        let key = key_of(&vs.metadata);
        let references: BTreeSet<(String, String)> = destinations(vs)
            .filter_map(|(_, d)| {
                let host = d.host.as_deref().filter(|h| !h.is_empty())?;
                let subset = d.subset.as_deref().filter(|s| !s.is_empty())?;
                Some((self.resolve_host(host, &key.namespace), subset.to_owned()))
            })
            .collect();
        let entry = IndexedVirtualService {
            references,
            being_deleted: vs.metadata.deletion_timestamp.is_some(),
        };
        let binding = self.mesh_binding(vs, &key.namespace);
        if self
            .virtual_services
            .get(&key)
            .is_some_and(|old| **old == entry)
        {
            self.catalog.set_mesh_binding(&key, binding);
            return;
        }
        self.remove_virtual_service(&key.namespace, &key.name);
        self.catalog.set_mesh_binding(&key, binding);
        for (host, subset) in &entry.references {
            let hosts = self
                .references
                .get_or_insert_with(subset.clone(), SharedMap::default);
            Arc::make_mut(hosts.get_or_insert_with(host.clone(), Default::default))
                .insert(key.clone());
        }
        self.virtual_services.insert(key, Arc::new(entry));
    }

    pub fn remove_virtual_service(&mut self, namespace: &str, name: &str) {
        let key = ObjectKey::new(namespace, name);
        self.catalog.set_mesh_binding(&key, None);
        let Some(old) = self.virtual_services.remove(&key) else {
            return;
        };
        for (host, subset) in &old.references {
            let Some(hosts) = self.references.get_mut(subset) else {
                continue;
            };
            if let Some(keys) = hosts.get_mut(host) {
                let keys = Arc::make_mut(keys);
                keys.remove(&key);
                if keys.is_empty() {
                    hosts.remove(host);
                }
            }
            if hosts.is_empty() {
                self.references.remove(subset);
            }
        }
    }

    /// The hosts a VirtualService binds to the mesh gateway (the sidecars):
    /// all of them when it names no gateway or names `mesh`. A VirtualService
    /// being deleted binds nothing.
    pub(crate) fn mesh_binding(&self, vs: &VirtualService, namespace: &str) -> Option<MeshBinding> {
        if vs.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let gateways = vs.spec.gateways.as_deref().unwrap_or_default();
        if !gateways.is_empty() && !gateways.iter().any(|g| g == "mesh") {
            return None;
        }
        let hosts = vs
            .spec
            .hosts
            .iter()
            .flatten()
            .filter(|h| !h.is_empty())
            .map(|h| self.resolve_host(&h.to_ascii_lowercase(), namespace))
            .collect();
        Some(MeshBinding {
            hosts,
            export_to: ExportTo::from_spec(vs.spec.export_to.as_deref(), namespace),
        })
    }

    /// Records the labels of the running pods behind a Kubernetes service
    /// (an empty list: the service is known and has no running pod).
    pub fn set_service_pods(&mut self, namespace: &str, service: &str, pods: Vec<Labels>) {
        let pods: ServicePods = pods.into_iter().collect();
        let key = (namespace.to_owned(), service.to_owned());
        if self.service_pods.get(&key) != Some(&pods) {
            self.service_pods.insert(key, pods);
        }
    }

    /// One more running pod behind a service (which becomes known).
    pub fn add_service_pod(&mut self, namespace: &str, service: &str, labels: &Labels) {
        self.service_pods
            .get_or_insert_with((namespace.to_owned(), service.to_owned()), Default::default)
            .add(labels);
    }

    /// One running pod fewer behind a service (which stays known).
    pub fn remove_service_pod(&mut self, namespace: &str, service: &str, labels: &Labels) {
        if let Some(pods) = self
            .service_pods
            .get_mut(&(namespace.to_owned(), service.to_owned()))
        {
            pods.remove(labels);
        }
    }

    /// Forgets a service: its subsets are no longer checked against pods.
    pub fn remove_service_pods(&mut self, namespace: &str, service: &str) {
        self.service_pods
            .remove(&(namespace.to_owned(), service.to_owned()));
    }

    /// The running pods behind a resolved host, when the host is a
    /// Kubernetes service the index has pods for.
    pub fn pods_of_host(&self, resolved_host: &str) -> Option<&ServicePods> {
        let service_host = self.service_host(resolved_host)?;
        let (namespace, service) = self.service_of_host(&service_host)?;
        self.service_pods
            .get(&(namespace.to_owned(), service.to_owned()))
    }

    /// The DestinationRules that apply to `host` (as written in an object of
    /// `namespace`) for a caller in `namespace`, after precedence: empty when
    /// none applies. Sorted by namespace/name.
    pub fn destination_rules_for(
        &self,
        namespace: &str,
        host: &str,
    ) -> Vec<&IndexedDestinationRule> {
        self.destination_rules_with(namespace, &self.resolve_host(host, namespace), None)
    }

    /// As [`Index::destination_rules_for`] for an already resolved host, as
    /// if `change` had been applied to the index.
    pub fn destination_rules_with<'a>(
        &'a self,
        namespace: &str,
        resolved_host: &str,
        change: Option<RuleOverride<'a>>,
    ) -> Vec<&'a IndexedDestinationRule> {
        let service_tier = match self.service_of_host(resolved_host) {
            Some((service_namespace, _)) => Tier::Namespace(service_namespace),
            None => Tier::AnyNamespace,
        };
        let tiers = [
            Tier::Namespace(namespace),
            service_tier,
            Tier::Namespace(&self.root_namespace),
        ];
        let levels = self.match_levels(resolved_host);
        for tier in tiers {
            for level in &levels {
                let mut found: Vec<&IndexedDestinationRule> = level
                    .iter()
                    .flat_map(|pattern| self.rules_declaring(pattern, change))
                    .filter(|dr| tier.holds(&dr.key.namespace) && dr.is_visible_to(namespace))
                    .collect();
                if !found.is_empty() {
                    found.sort_by(|a, b| a.key.cmp(&b.key));
                    found.dedup_by(|a, b| a.key == b.key);
                    return found;
                }
            }
        }
        Vec::new()
    }

    /// The applicable rule defining `subset` for `host` (as written in an
    /// object of `namespace`), with the subset's definition.
    pub fn subset_for(
        &self,
        namespace: &str,
        host: &str,
        subset: &str,
    ) -> Option<(&IndexedDestinationRule, &IndexedSubset)> {
        self.destination_rules_for(namespace, host)
            .into_iter()
            .find_map(|dr| dr.subset(subset).map(|s| (dr, s)))
    }

    /// Whether a caller in `namespace` would find `subset` for the resolved
    /// host, as if `change` had been applied.
    pub fn defines_subset_with(
        &self,
        namespace: &str,
        resolved_host: &str,
        subset: &str,
        change: Option<RuleOverride<'_>>,
    ) -> bool {
        self.destination_rules_with(namespace, resolved_host, change)
            .iter()
            .any(|dr| dr.subset(subset).is_some())
    }

    /// Every stored rule declared for the resolved host (exactly, by alias
    /// or by wildcard) that defines `subset`, visible to the caller or not:
    /// used to explain why a subset that exists somewhere is not seen.
    pub fn rules_defining_anywhere(
        &self,
        resolved_host: &str,
        subset: &str,
    ) -> Vec<&IndexedDestinationRule> {
        let mut found: Vec<&IndexedDestinationRule> = self
            .match_levels(resolved_host)
            .iter()
            .flatten()
            .flat_map(|pattern| self.rules_declaring(pattern, None))
            .filter(|dr| dr.subset(subset).is_some())
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.dedup_by(|a, b| a.key == b.key);
        found
    }

    /// Rules declared under exactly `pattern`, with `change` applied.
    fn rules_declaring<'a>(
        &'a self,
        pattern: &str,
        change: Option<RuleOverride<'a>>,
    ) -> impl Iterator<Item = &'a IndexedDestinationRule> + use<'a> {
        let stored = self
            .rules_by_host
            .get(pattern)
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter(move |key| change.is_none_or(|c| c.key != *key))
            .filter_map(|key| self.destination_rules.get(key).map(|dr| &**dr));
        let replacement = change
            .and_then(|c| c.replacement)
            .filter(|dr| dr.host == pattern);
        stored.chain(replacement)
    }

    /// VirtualServices (not being deleted) routing to `subset` of `resolved_host`
    /// or its alias, sorted.
    pub fn virtual_services_using(&self, resolved_host: &str, subset: &str) -> Vec<&ObjectKey> {
        let mut users: Vec<&ObjectKey> = self
            .users_of_pattern(resolved_host, subset)
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// `(resolved host, VirtualService)` pairs routing to `subset` of a host
    /// that `pattern` (a rule's host, maybe a wildcard) covers, skipping
    /// VirtualServices being deleted.
    pub fn users_of_pattern<'a>(
        &'a self,
        pattern: &str,
        subset: &str,
    ) -> Vec<(&'a str, &'a ObjectKey)> {
        let Some(hosts) = self.references.get(subset) else {
            return Vec::new();
        };
        // An exact host is two probes; only a wildcard needs a scan of the
        // hosts that use this subset name.
        let matching: Vec<(&'a String, &'a Arc<BTreeSet<ObjectKey>>)> = if pattern.starts_with('*')
        {
            hosts
                .iter()
                .filter(|(host, _)| pattern_covers(pattern, host))
                .collect()
        } else {
            std::iter::once(pattern.to_owned())
                .chain(self.alias_of(pattern))
                .filter_map(|h| hosts.get_key_value(&h))
                .collect()
        };
        matching
            .into_iter()
            .flat_map(|(host, keys)| keys.iter().map(move |key| (host.as_str(), key)))
            .filter(|(_, key)| {
                self.virtual_services
                    .get(*key)
                    .is_some_and(|vs| !vs.being_deleted)
            })
            .collect()
    }
}

/// Splits `service.namespace` (exactly two non-wildcard labels).
fn split_service_namespace(local: &str) -> Option<(&str, &str)> {
    let (service, namespace) = local.split_once('.')?;
    let well_formed = !service.is_empty()
        && !namespace.is_empty()
        && !namespace.contains('.')
        && !service.contains('*');
    well_formed.then_some((namespace, service))
}

/// Whether a rule host pattern (exact or `*`-prefixed) covers a host.
pub(crate) fn pattern_covers(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

pub(crate) fn key_of(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    ObjectKey::new(
        metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        metadata.name.clone().unwrap_or_default(),
    )
}

/// Every destination a VirtualService sends traffic (or a mirror copy) to,
/// with its field path (`spec.http[0].route[1].destination`).
pub fn destinations(vs: &VirtualService) -> impl Iterator<Item = (String, &Destination)> {
    let spec = &vs.spec;
    let http = spec
        .http
        .iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, rule)| {
            let routes = rule
                .route
                .iter()
                .flatten()
                .enumerate()
                .filter_map(move |(j, r)| {
                    Some((
                        format!("spec.http[{i}].route[{j}].destination"),
                        r.destination.as_ref()?,
                    ))
                });
            let mirror = rule
                .mirror
                .as_ref()
                .map(|d| (format!("spec.http[{i}].mirror"), d));
            let mirrors = rule
                .mirrors
                .iter()
                .flatten()
                .enumerate()
                .filter_map(move |(k, m)| {
                    Some((
                        format!("spec.http[{i}].mirrors[{k}].destination"),
                        m.destination.as_ref()?,
                    ))
                });
            routes.chain(mirror).chain(mirrors)
        });
    let tcp = spec.tcp.iter().flatten().enumerate().flat_map(|(i, rule)| {
        rule.route
            .iter()
            .flatten()
            .enumerate()
            .filter_map(move |(j, r)| {
                Some((
                    format!("spec.tcp[{i}].route[{j}].destination"),
                    r.destination.as_ref()?,
                ))
            })
    });
    let tls = spec.tls.iter().flatten().enumerate().flat_map(|(i, rule)| {
        rule.route
            .iter()
            .flatten()
            .enumerate()
            .filter_map(move |(j, r)| {
                Some((
                    format!("spec.tls[{i}].route[{j}].destination"),
                    r.destination.as_ref()?,
                ))
            })
    });
    http.chain(tcp).chain(tls)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dr(namespace: &str, name: &str, spec: serde_json::Value) -> DestinationRule {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    fn vs_to(namespace: &str, name: &str, host: &str, subset: &str) -> VirtualService {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host, "subset": subset}}]}]},
        }))
        .unwrap()
    }

    fn subsets(names: &[&str]) -> serde_json::Value {
        names
            .iter()
            .map(|n| json!({"name": n, "labels": {"version": n}}))
            .collect()
    }

    /// Names of the subsets a caller in `namespace` sees for `host`.
    fn seen(index: &Index, namespace: &str, host: &str) -> Vec<String> {
        index
            .destination_rules_for(namespace, host)
            .iter()
            .flat_map(|r| r.subsets.iter().map(|s| s.name.clone()))
            .collect()
    }

    #[test]
    fn short_names_resolve_against_namespace_and_domain() {
        let index = Index::default();
        assert_eq!(
            index.resolve_host("reviews", "ns"),
            "reviews.ns.svc.cluster.local"
        );
        let custom = Index::new("corp.example", "mesh-root");
        assert_eq!(
            custom.resolve_host("reviews", "ns"),
            "reviews.ns.svc.corp.example"
        );
        assert_eq!(custom.root_namespace(), "mesh-root");
    }

    #[test]
    fn fqdns_ips_and_star_are_kept() {
        let index = Index::default();
        for host in [
            "reviews.ns.svc.cluster.local",
            "httpbin.org",
            "10.0.0.1",
            "*",
            "::1",
        ] {
            assert_eq!(index.resolve_host(host, "ns"), host);
        }
    }

    #[test]
    fn rule_short_host_resolves_in_the_rules_namespace() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "a",
            "reviews",
            json!({"host": "reviews", "subsets": subsets(&["v1"])}),
        ));
        assert_eq!(seen(&index, "a", "reviews"), ["v1"]);
        // In namespace b, `reviews` is b's service, not a's.
        assert!(seen(&index, "b", "reviews").is_empty());
        assert_eq!(seen(&index, "b", "reviews.a.svc.cluster.local"), ["v1"]);
    }

    #[test]
    fn service_dot_namespace_is_an_alias_of_the_full_name() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "a",
            "reviews",
            json!({"host": "reviews", "subsets": subsets(&["v1"])}),
        ));
        assert_eq!(seen(&index, "b", "reviews.a"), ["v1"]);
        index.upsert_destination_rule(&dr(
            "c",
            "ratings",
            json!({"host": "ratings.c", "subsets": subsets(&["v2"])}),
        ));
        assert_eq!(seen(&index, "b", "ratings.c.svc.cluster.local"), ["v2"]);
        // External two-label names are not rewritten.
        assert_eq!(index.resolve_host("example.com", "ns"), "example.com");
    }

    #[test]
    fn wildcard_rules_match_by_suffix_and_the_most_specific_wins() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "ns",
            "all-local",
            json!({"host": "*.ns.svc.cluster.local", "subsets": subsets(&["wild"])}),
        ));
        assert_eq!(seen(&index, "ns", "reviews"), ["wild"]);
        index.upsert_destination_rule(&dr(
            "ns",
            "reviews",
            json!({"host": "reviews", "subsets": subsets(&["exact"])}),
        ));
        assert_eq!(seen(&index, "ns", "reviews"), ["exact"]);
        assert_eq!(seen(&index, "ns", "ratings"), ["wild"]);

        index.upsert_destination_rule(&dr(
            "ext",
            "com",
            json!({"host": "*.com", "subsets": subsets(&["short"])}),
        ));
        index.upsert_destination_rule(&dr(
            "ext",
            "example",
            json!({"host": "*.example.com", "subsets": subsets(&["long"])}),
        ));
        assert_eq!(seen(&index, "ext", "api.example.com"), ["long"]);
        assert_eq!(seen(&index, "ext", "api.other.com"), ["short"]);
        // `*.example.com` does not cover `example.com` itself.
        assert_eq!(seen(&index, "ext", "example.com"), ["short"]);
    }

    #[test]
    fn export_to_dot_keeps_the_rule_in_its_namespace() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "a",
            "r",
            json!({"host": "reviews", "exportTo": ["."], "subsets": subsets(&["v1"])}),
        ));
        assert_eq!(seen(&index, "a", "reviews.a.svc.cluster.local"), ["v1"]);
        assert!(seen(&index, "b", "reviews.a.svc.cluster.local").is_empty());
    }

    #[test]
    fn export_to_star_or_absent_reaches_every_namespace() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "a",
            "star",
            json!({"host": "reviews", "exportTo": ["*"], "subsets": subsets(&["v1"])}),
        ));
        index.upsert_destination_rule(&dr(
            "a",
            "absent",
            json!({"host": "ratings", "subsets": subsets(&["v2"])}),
        ));
        assert_eq!(seen(&index, "z", "reviews.a.svc.cluster.local"), ["v1"]);
        assert_eq!(seen(&index, "z", "ratings.a.svc.cluster.local"), ["v2"]);
    }

    #[test]
    fn export_to_named_namespaces_and_tilde() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "a",
            "r",
            json!({"host": "reviews", "exportTo": ["b"], "subsets": subsets(&["v1"])}),
        ));
        index.upsert_destination_rule(&dr(
            "a",
            "hidden",
            json!({"host": "ratings", "exportTo": ["~"], "subsets": subsets(&["v1"])}),
        ));
        assert_eq!(seen(&index, "b", "reviews.a.svc.cluster.local"), ["v1"]);
        assert!(seen(&index, "c", "reviews.a.svc.cluster.local").is_empty());
        // Exported to b only: not even its own namespace sees it.
        assert!(seen(&index, "a", "reviews").is_empty());
        assert!(seen(&index, "a", "ratings").is_empty());
    }

    #[test]
    fn root_namespace_rules_are_the_mesh_wide_fallback() {
        let mut index = Index::new(DEFAULT_CLUSTER_DOMAIN, "mesh-root");
        index.upsert_destination_rule(&dr(
            "mesh-root",
            "reviews",
            json!({"host": "reviews.a.svc.cluster.local", "subsets": subsets(&["root"])}),
        ));
        assert_eq!(seen(&index, "a", "reviews"), ["root"]);
        assert_eq!(seen(&index, "b", "reviews.a.svc.cluster.local"), ["root"]);
        // A rule in some other (non-root, non-service) namespace is not a fallback.
        let mut index = Index::new(DEFAULT_CLUSTER_DOMAIN, "mesh-root");
        index.upsert_destination_rule(&dr(
            "elsewhere",
            "reviews",
            json!({"host": "reviews.a.svc.cluster.local", "subsets": subsets(&["v1"])}),
        ));
        assert!(seen(&index, "b", "reviews.a.svc.cluster.local").is_empty());
    }

    #[test]
    fn precedence_is_caller_namespace_then_service_namespace_then_root() {
        let mut index = Index::default();
        let host = "reviews.svc-ns.svc.cluster.local";
        index.upsert_destination_rule(&dr(
            "istio-system",
            "root",
            json!({"host": host, "subsets": subsets(&["root"])}),
        ));
        assert_eq!(seen(&index, "caller", host), ["root"]);
        index.upsert_destination_rule(&dr(
            "svc-ns",
            "service",
            json!({"host": "reviews", "subsets": subsets(&["service"])}),
        ));
        assert_eq!(seen(&index, "caller", host), ["service"]);
        index.upsert_destination_rule(&dr(
            "caller",
            "own",
            json!({"host": host, "subsets": subsets(&["own"])}),
        ));
        assert_eq!(seen(&index, "caller", host), ["own"]);
        // Other callers are unaffected by caller's own rule.
        assert_eq!(seen(&index, "other", host), ["service"]);
    }

    #[test]
    fn rules_for_the_same_host_in_the_winning_namespace_merge() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "ns",
            "one",
            json!({"host": "reviews", "subsets": subsets(&["v1"])}),
        ));
        index.upsert_destination_rule(&dr(
            "ns",
            "two",
            json!({"host": "reviews.ns.svc.cluster.local", "subsets": subsets(&["v2"])}),
        ));
        assert_eq!(seen(&index, "ns", "reviews"), ["v1", "v2"]);
    }

    #[test]
    fn upsert_replaces_and_remove_forgets() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "ns",
            "r",
            json!({"host": "reviews", "subsets": subsets(&["v1"])}),
        ));
        index.upsert_destination_rule(&dr(
            "ns",
            "r",
            json!({"host": "ratings", "subsets": subsets(&["v2"])}),
        ));
        assert!(seen(&index, "ns", "reviews").is_empty());
        assert_eq!(seen(&index, "ns", "ratings"), ["v2"]);
        assert_eq!(index.destination_rule_count(), 1);
        index.remove_destination_rule("ns", "r");
        assert!(seen(&index, "ns", "ratings").is_empty());
        assert_eq!(index.destination_rule_count(), 0);
        assert!(index.rules_by_host.is_empty());
    }

    #[test]
    fn virtual_service_references_are_indexed_by_resolved_host() {
        let mut index = Index::default();
        index.upsert_virtual_service(&vs_to("ns", "a", "reviews", "v1"));
        index.upsert_virtual_service(&vs_to("other", "b", "reviews.ns.svc.cluster.local", "v1"));
        index.upsert_virtual_service(&vs_to("other", "c", "reviews.ns", "v1"));
        let users: Vec<String> = index
            .virtual_services_using("reviews.ns.svc.cluster.local", "v1")
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(users, ["ns/a", "other/b", "other/c"]);
        assert!(
            index
                .virtual_services_using("reviews.ns.svc.cluster.local", "v2")
                .is_empty()
        );
        index.remove_virtual_service("ns", "a");
        index.remove_virtual_service("other", "b");
        index.remove_virtual_service("other", "c");
        assert!(index.references.is_empty());
        assert_eq!(index.virtual_service_count(), 0);
    }

    #[test]
    fn virtual_services_being_deleted_are_not_users() {
        let mut index = Index::default();
        let mut value = serde_json::to_value(vs_to("ns", "a", "reviews", "v1")).unwrap();
        value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let vs: VirtualService = serde_json::from_value(value).unwrap();
        index.upsert_virtual_service(&vs);
        assert!(
            index
                .virtual_services_using("reviews.ns.svc.cluster.local", "v1")
                .is_empty()
        );
    }

    #[test]
    fn pods_are_found_by_host() {
        let mut index = Index::default();
        let pod: Labels = [("app".to_owned(), "reviews".to_owned())].into();
        index.set_service_pods("ns", "reviews", vec![pod.clone()]);
        let pods = index.pods_of_host("reviews.ns.svc.cluster.local").unwrap();
        assert_eq!(pods.label_sets().collect::<Vec<_>>(), [&pod]);
        assert_eq!(
            index.pods_of_host("reviews.ns").map(ServicePods::len),
            Some(1)
        );
        assert!(index.pods_of_host("ratings.ns.svc.cluster.local").is_none());
        index.remove_service_pods("ns", "reviews");
        assert!(index.pods_of_host("reviews.ns.svc.cluster.local").is_none());
    }

    #[test]
    fn pods_of_a_workload_are_counted_per_label_set() {
        let mut index = Index::default();
        let v1: Labels = [("version".to_owned(), "v1".to_owned())].into();
        let v2: Labels = [("version".to_owned(), "v2".to_owned())].into();
        index.add_service_pod("ns", "reviews", &v1);
        index.add_service_pod("ns", "reviews", &v1);
        index.add_service_pod("ns", "reviews", &v2);
        let host = "reviews.ns.svc.cluster.local";
        assert_eq!(index.pods_of_host(host).map(ServicePods::len), Some(3));
        index.remove_service_pod("ns", "reviews", &v1);
        index.remove_service_pod("ns", "reviews", &v2);
        let pods = index.pods_of_host(host).unwrap();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods.label_sets().collect::<Vec<_>>(), [&v1]);
        // Built in one go or pod by pod: the same index.
        let mut whole = Index::default();
        whole.set_service_pods("ns", "reviews", vec![v1.clone()]);
        assert_eq!(index, whole);
        index.remove_service_pod("ns", "reviews", &v1);
        assert_eq!(index.pods_of_host(host).map(ServicePods::len), Some(0));
    }

    #[test]
    fn a_snapshot_does_not_see_later_changes() {
        let mut index = Index::default();
        index.upsert_destination_rule(&dr(
            "ns",
            "r",
            json!({"host": "reviews", "subsets": subsets(&["v1"])}),
        ));
        index.upsert_virtual_service(&vs_to("ns", "a", "reviews", "v1"));
        let snapshot = index.clone();
        index.remove_destination_rule("ns", "r");
        index.remove_virtual_service("ns", "a");
        index.set_root_namespace("mesh-root");
        assert_eq!(seen(&snapshot, "ns", "reviews"), ["v1"]);
        assert_eq!(
            snapshot.virtual_services_using("reviews.ns.svc.cluster.local", "v1"),
            [&ObjectKey::new("ns", "a")]
        );
        assert_eq!(snapshot.root_namespace(), "istio-system");
        assert!(seen(&index, "ns", "reviews").is_empty());
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

    /// A random rule or VirtualService among a few names, hosts and subsets,
    /// so sequences keep hitting the same entries (shared hosts, wildcards,
    /// aliases, exportTo).
    fn random_rule(random: &mut Random, namespace: &str, name: &str) -> DestinationRule {
        let host = random.pick(&[
            "reviews",
            "ratings",
            "reviews.a",
            "*.a.svc.cluster.local",
            "*",
        ]);
        let names = ["v1", "v2", "v3"];
        let count = random.below(4);
        let chosen: Vec<&str> = names[..count].to_vec();
        let mut spec = json!({"host": host, "subsets": subsets(&chosen)});
        match random.below(3) {
            0 => spec["exportTo"] = json!(["."]),
            1 => spec["exportTo"] = json!(["b"]),
            _ => {}
        }
        dr(namespace, name, spec)
    }

    fn random_virtual_service(random: &mut Random, namespace: &str, name: &str) -> VirtualService {
        let host = random.pick(&[
            "reviews",
            "ratings",
            "reviews.a",
            "reviews.a.svc.cluster.local",
        ]);
        let subset = random.pick(&["v1", "v2", "v3"]);
        let mut value = serde_json::to_value(vs_to(namespace, name, host, subset)).unwrap();
        if random.below(5) == 0 {
            value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn any_sequence_of_changes_gives_the_index_built_from_the_final_objects() {
        let mut random = Random(0x6d65_7368);
        let namespaces = ["a", "b", "istio-system"];
        let names = ["one", "two", "three"];
        for _ in 0..300 {
            let mut index = Index::default();
            let mut snapshots = Vec::new();
            let mut rules: BTreeMap<(String, String), DestinationRule> = BTreeMap::new();
            let mut services: BTreeMap<(String, String), VirtualService> = BTreeMap::new();
            for _ in 0..40 {
                let key = (
                    random.pick(&namespaces).to_owned(),
                    random.pick(&names).to_owned(),
                );
                match random.below(4) {
                    0 => {
                        let rule = random_rule(&mut random, &key.0, &key.1);
                        index.upsert_destination_rule(&rule);
                        rules.insert(key, rule);
                    }
                    1 => {
                        index.remove_destination_rule(&key.0, &key.1);
                        rules.remove(&key);
                    }
                    2 => {
                        let vs = random_virtual_service(&mut random, &key.0, &key.1);
                        index.upsert_virtual_service(&vs);
                        services.insert(key, vs);
                    }
                    _ => {
                        index.remove_virtual_service(&key.0, &key.1);
                        services.remove(&key);
                    }
                }
                if random.below(3) == 0 {
                    snapshots.push((index.clone(), rules.clone(), services.clone()));
                }
            }
            let fresh = |rules: &BTreeMap<_, DestinationRule>,
                         services: &BTreeMap<_, VirtualService>| {
                let mut fresh = Index::default();
                for rule in rules.values() {
                    fresh.upsert_destination_rule(rule);
                }
                for vs in services.values() {
                    fresh.upsert_virtual_service(vs);
                }
                fresh
            };
            assert_eq!(index, fresh(&rules, &services));
            // Every snapshot taken along the way still shows its moment.
            for (snapshot, rules, services) in &snapshots {
                assert_eq!(*snapshot, fresh(rules, services));
            }
        }
    }
}
