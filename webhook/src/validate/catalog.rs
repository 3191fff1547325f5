//! The rest of the cross-object view, for the reference checks
//! ([`super::references`]): Gateways, Kubernetes Services, ServiceEntries,
//! Secrets (only whether each is a usable TLS credential, never its
//! content) and which hosts VirtualServices bind to the mesh gateway.
//!
//! Plain data like the [`super::index::Index`] that holds it: maps keyed by
//! object, [`SharedMap`]s so a clone is a cheap snapshot, every change
//! touching only its own object's entries. Services and Secrets may be
//! unknown (offline analysis without a cluster, a webhook not allowed to
//! read Secrets): checks that need them are then skipped, never guessed.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshkeeper_crds::networking::common::Labels;
use meshkeeper_crds::networking::{Gateway, ServiceEntry};

use super::index::{ExportTo, ObjectKey, key_of};
use super::shared_map::SharedMap;

/// What the checks keep of one Gateway server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedServer {
    /// Position in `spec.servers`, for field paths.
    pub position: usize,
    pub port: Option<u32>,
    pub bind: Option<String>,
    /// As written (`host`, `ns/host`, `./host`, `*/host`).
    pub hosts: Vec<String>,
    pub credential_name: Option<String>,
    /// `(serverCertificate, privateKey)` file paths when set.
    pub certificate_files: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedGateway {
    pub key: ObjectKey,
    pub selector: Labels,
    pub servers: Vec<IndexedServer>,
}

impl IndexedGateway {
    pub fn from_gateway(gateway: &Gateway) -> Self {
        let servers = gateway
            .spec
            .servers
            .iter()
            .flatten()
            .enumerate()
            .map(|(position, server)| {
                let tls = server.tls.as_ref();
                IndexedServer {
                    position,
                    port: server.port.as_ref().and_then(|p| p.number),
                    bind: server.bind.clone().filter(|b| !b.is_empty()),
                    hosts: server.hosts.clone().unwrap_or_default(),
                    credential_name: tls
                        .and_then(|t| t.credential_name.clone())
                        .filter(|c| !c.is_empty()),
                    certificate_files: tls.and_then(|t| {
                        Some((
                            t.server_certificate.clone().filter(|c| !c.is_empty())?,
                            t.private_key.clone().filter(|k| !k.is_empty())?,
                        ))
                    }),
                }
            })
            .collect();
        Self {
            key: key_of(&gateway.metadata),
            selector: gateway.spec.selector.clone().unwrap_or_default(),
            servers,
        }
    }
}

/// One port of a Kubernetes Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub port: u32,
    /// The numeric `targetPort`; `None` when it is a name or absent.
    pub target_port: Option<u32>,
    /// `TCP` unless the Service says otherwise.
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedService {
    pub key: ObjectKey,
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
}

impl IndexedService {
    pub fn from_service(service: &Service) -> Self {
        let spec = service.spec.as_ref();
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(ServicePort {
                    port: u32::try_from(p.port).ok()?,
                    target_port: match &p.target_port {
                        Some(IntOrString::Int(n)) => u32::try_from(*n).ok(),
                        _ => None,
                    },
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                })
            })
            .collect();
        Self {
            key: key_of(&service.metadata),
            selector: spec
                .and_then(|s| s.selector.clone())
                .map(|s| s.into_iter().collect())
                .unwrap_or_default(),
            ports,
        }
    }
}

/// One port of a ServiceEntry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPort {
    pub number: u32,
    /// Upper-cased; empty when unset.
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedServiceEntry {
    pub key: ObjectKey,
    /// As written (ServiceEntry hosts are never short names).
    pub hosts: Vec<String>,
    pub ports: Vec<EntryPort>,
    pub export_to: ExportTo,
}

impl IndexedServiceEntry {
    pub fn from_service_entry(entry: &ServiceEntry) -> Self {
        let key = key_of(&entry.metadata);
        let export_to = ExportTo::from_spec(entry.spec.export_to.as_deref(), &key.namespace);
        Self {
            hosts: entry
                .spec
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            ports: entry
                .spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(EntryPort {
                        number: p.number?,
                        protocol: p.protocol.clone().unwrap_or_default().to_ascii_uppercase(),
                    })
                })
                .collect(),
            export_to,
            key,
        }
    }

    pub fn is_visible_to(&self, namespace: &str) -> bool {
        self.export_to.includes(namespace)
    }
}

/// Whether a Secret can serve as a gateway's TLS credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretUse {
    /// Holds a certificate and a key (`tls.crt`/`tls.key` or `cert`/`key`).
    Credential,
    /// Present but not a credential: what is missing.
    Invalid(String),
}

impl SecretUse {
    pub fn of(secret: &Secret) -> Self {
        let has = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .is_some_and(|v| !v.0.is_empty())
                || secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .is_some_and(|v| !v.is_empty())
        };
        // Istio's two layouts: a kubernetes.io/tls Secret, or a generic one
        // with `cert` and `key`.
        if (has("tls.crt") && has("tls.key")) || (has("cert") && has("key")) {
            return SecretUse::Credential;
        }
        let mut keys: Vec<&str> = secret
            .data
            .iter()
            .flat_map(|d| d.keys())
            .chain(secret.string_data.iter().flat_map(|d| d.keys()))
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        SecretUse::Invalid(if keys.is_empty() {
            "it holds no data".to_owned()
        } else {
            format!(
                "it holds {} but neither `tls.crt` with `tls.key` nor `cert` with `key` (both non-empty)",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// How a VirtualService binds hosts to the mesh gateway (the sidecars).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshBinding {
    /// Resolved hosts, for VirtualServices bound to `mesh` only.
    pub hosts: BTreeSet<String>,
    pub export_to: ExportTo,
}

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    gateways: SharedMap<ObjectKey, Arc<IndexedGateway>>,
    services: SharedMap<ObjectKey, Arc<IndexedService>>,
    /// Whether `services` is the cluster's complete list.
    services_known: bool,
    service_entries: SharedMap<ObjectKey, Arc<IndexedServiceEntry>>,
    /// ServiceEntry host (maybe a wildcard) → entries declaring it.
    entries_by_host: SharedMap<String, Arc<BTreeSet<ObjectKey>>>,
    secrets: SharedMap<ObjectKey, SecretUse>,
    /// Whether `secrets` is the cluster's complete list.
    secrets_known: bool,
    mesh_bindings: SharedMap<ObjectKey, Arc<MeshBinding>>,
    /// Resolved host → VirtualServices binding it to the mesh gateway.
    mesh_hosts: SharedMap<String, Arc<BTreeSet<ObjectKey>>>,
}

impl Catalog {
    pub fn upsert_gateway(&mut self, gateway: &Gateway) {
        let entry = IndexedGateway::from_gateway(gateway);
        if self
            .gateways
            .get(&entry.key)
            .is_none_or(|old| **old != entry)
        {
            self.gateways.insert(entry.key.clone(), Arc::new(entry));
        }
    }

    pub fn remove_gateway(&mut self, namespace: &str, name: &str) {
        self.gateways.remove(&ObjectKey::new(namespace, name));
    }

    pub fn gateway(&self, key: &ObjectKey) -> Option<&IndexedGateway> {
        self.gateways.get(key).map(|g| &**g)
    }

    pub fn gateways(&self) -> impl Iterator<Item = &IndexedGateway> {
        self.gateways.values().map(|g| &**g)
    }

    pub fn gateway_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.gateways.keys()
    }

    /// Declares that the Services held are all the cluster has (the watch
    /// has listed them, or the analysis read them from the cluster), so a
    /// host without one is missing rather than unknown.
    pub fn set_services_known(&mut self, known: bool) {
        self.services_known = known;
    }

    pub fn services_known(&self) -> bool {
        self.services_known
    }

    pub fn upsert_service(&mut self, service: &Service) {
        let entry = IndexedService::from_service(service);
        if self
            .services
            .get(&entry.key)
            .is_none_or(|old| **old != entry)
        {
            self.services.insert(entry.key.clone(), Arc::new(entry));
        }
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        self.services.remove(&ObjectKey::new(namespace, name));
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&IndexedService> {
        self.services
            .get(&ObjectKey::new(namespace, name))
            .map(|s| &**s)
    }

    pub fn services(&self) -> impl Iterator<Item = &IndexedService> {
        self.services.values().map(|s| &**s)
    }

    pub fn service_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.services.keys()
    }

    pub fn upsert_service_entry(&mut self, entry: &ServiceEntry) {
        let entry = IndexedServiceEntry::from_service_entry(entry);
        if self
            .service_entries
            .get(&entry.key)
            .is_some_and(|old| **old == entry)
        {
            return;
        }
        self.remove_service_entry(&entry.key.namespace, &entry.key.name);
        for host in &entry.hosts {
            Arc::make_mut(
                self.entries_by_host
                    .get_or_insert_with(host.clone(), Default::default),
            )
            .insert(entry.key.clone());
        }
        self.service_entries
            .insert(entry.key.clone(), Arc::new(entry));
    }

    pub fn remove_service_entry(&mut self, namespace: &str, name: &str) {
        let key = ObjectKey::new(namespace, name);
        let Some(old) = self.service_entries.remove(&key) else {
            return;
        };
        for host in &old.hosts {
            remove_from(&mut self.entries_by_host, host, &key);
        }
    }

    pub fn service_entry_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.service_entries.keys()
    }

    pub fn service_entries(&self) -> impl Iterator<Item = &IndexedServiceEntry> {
        self.service_entries.values().map(|e| &**e)
    }

    /// The ServiceEntries declaring exactly `pattern` (a host or wildcard).
    pub fn service_entries_declaring(
        &self,
        pattern: &str,
    ) -> impl Iterator<Item = &IndexedServiceEntry> {
        self.entries_by_host
            .get(pattern)
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter_map(|key| self.service_entries.get(key).map(|e| &**e))
    }

    /// See [`Catalog::set_services_known`].
    pub fn set_secrets_known(&mut self, known: bool) {
        self.secrets_known = known;
    }

    pub fn secrets_known(&self) -> bool {
        self.secrets_known
    }

    pub fn upsert_secret(&mut self, secret: &Secret) {
        let key = key_of(&secret.metadata);
        let usable = SecretUse::of(secret);
        if self.secrets.get(&key) != Some(&usable) {
            self.secrets.insert(key, usable);
        }
    }

    pub fn remove_secret(&mut self, namespace: &str, name: &str) {
        self.secrets.remove(&ObjectKey::new(namespace, name));
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&SecretUse> {
        self.secrets.get(&ObjectKey::new(namespace, name))
    }

    pub fn secret_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.secrets.keys()
    }

    /// Records the hosts a VirtualService binds to the mesh gateway (none
    /// when it is bound to gateways only).
    pub(crate) fn set_mesh_binding(&mut self, key: &ObjectKey, binding: Option<MeshBinding>) {
        let binding = binding.filter(|b| !b.hosts.is_empty());
        if self.mesh_bindings.get(key).map(|b| &**b) == binding.as_ref() {
            return;
        }
        if let Some(old) = self.mesh_bindings.remove(key) {
            for host in &old.hosts {
                remove_from(&mut self.mesh_hosts, host, key);
            }
        }
        let Some(binding) = binding else {
            return;
        };
        for host in &binding.hosts {
            Arc::make_mut(
                self.mesh_hosts
                    .get_or_insert_with(host.clone(), Default::default),
            )
            .insert(key.clone());
        }
        self.mesh_bindings.insert(key.clone(), Arc::new(binding));
    }

    /// The VirtualServices binding the resolved `host` to the mesh gateway,
    /// with how each is bound.
    pub fn mesh_bindings_of(&self, host: &str) -> Vec<(&ObjectKey, &MeshBinding)> {
        self.mesh_hosts
            .get(host)
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter_map(|key| Some((key, &**self.mesh_bindings.get(key)?)))
            .collect()
    }
}

fn remove_from(map: &mut SharedMap<String, Arc<BTreeSet<ObjectKey>>>, host: &str, key: &ObjectKey) {
    if let Some(keys) = map.get_mut(host) {
        let keys = Arc::make_mut(keys);
        keys.remove(key);
        if keys.is_empty() {
            map.remove(host);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Properties of the catalog as the watches feed it: whatever order the
    //! changes come in, the result is the catalog built afresh from the
    //! objects that remain, and a snapshot (a clone) never sees a later
    //! change.

    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::validate::index::ExportTo;

    /// A small deterministic generator (splitmix64), so a failure replays.
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

        /// Up to `max` picks, repeats allowed (duplicate hosts are legal input).
        fn some<'a>(&mut self, from: &[&'a str], max: usize) -> Vec<&'a str> {
            let count = self.below(max + 1);
            (0..count).map(|_| self.pick(from)).collect()
        }
    }

    /// Hosts shared between objects, in two cases, so entries collide.
    const HOSTS: &[&str] = &[
        "api.example.com",
        "API.example.com",
        "*.example.com",
        "db.internal",
        "*",
    ];

    fn metadata(namespace: &str, name: &str) -> Value {
        json!({"name": name, "namespace": namespace})
    }

    fn random_gateway(random: &mut Random, namespace: &str, name: &str) -> Gateway {
        let servers: Vec<Value> = (0..random.below(3))
            .map(|_| {
                let number = [80, 443, 8443][random.below(3)];
                let mut server = json!({
                    "port": {"number": number, "name": "p", "protocol": "HTTPS"},
                    "hosts": random.some(HOSTS, 2),
                });
                match random.below(3) {
                    0 => server["tls"] = json!({"mode": "SIMPLE", "credentialName": random.pick(&["cert-a", "cert-b", ""])}),
                    1 => server["tls"] = json!({"mode": "SIMPLE", "serverCertificate": "/c.pem", "privateKey": "/k.pem"}),
                    _ => {}
                }
                server
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": metadata(namespace, name),
            "spec": {"selector": {"istio": random.pick(&["ingressgateway", "egress"])}, "servers": servers}
        }))
        .unwrap()
    }

    fn random_service(random: &mut Random, namespace: &str, name: &str) -> Service {
        let ports: Vec<Value> = (0..random.below(3))
            .map(|_| {
                let port = [80, 443, 9080][random.below(3)];
                let target = [json!(8080), json!("http")][random.below(2)].clone();
                json!({
                    "port": port,
                    "targetPort": target,
                    "protocol": random.pick(&["TCP", "UDP"]),
                })
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": metadata(namespace, name),
            "spec": {"selector": {"app": random.pick(&["a", "b"])}, "ports": ports}
        }))
        .unwrap()
    }

    fn random_service_entry(random: &mut Random, namespace: &str, name: &str) -> ServiceEntry {
        let number = [80, 443][random.below(2)];
        let mut spec = json!({
            "hosts": random.some(HOSTS, 3),
            "ports": [{"number": number, "name": "p",
                       "protocol": random.pick(&["http", "HTTPS", "tcp"])}],
        });
        match random.below(3) {
            0 => spec["exportTo"] = json!(["."]),
            1 => spec["exportTo"] = json!(["b", "~"]),
            _ => {}
        }
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": metadata(namespace, name), "spec": spec
        }))
        .unwrap()
    }

    fn random_secret(random: &mut Random, namespace: &str, name: &str) -> Secret {
        // "eA==" is "x": non-empty base64.
        let data = match random.below(4) {
            0 => json!({"tls.crt": "eA==", "tls.key": "eA=="}),
            1 => json!({"cert": "eA==", "key": "eA=="}),
            2 => json!({"tls.crt": "eA=="}),
            _ => json!({}),
        };
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": metadata(namespace, name), "data": data
        }))
        .unwrap()
    }

    fn random_binding(random: &mut Random, namespace: &str) -> Option<MeshBinding> {
        if random.below(4) == 0 {
            return None;
        }
        let export_to = match random.below(3) {
            0 => ExportTo::All,
            1 => ExportTo::from_spec(Some(&[".".to_owned()]), namespace),
            _ => ExportTo::from_spec(Some(&["~".to_owned()]), namespace),
        };
        Some(MeshBinding {
            // An empty set is legal input: the VirtualService binds nothing.
            hosts: random
                .some(&["reviews.a.svc.cluster.local", "api.example.com", "*"], 2)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            export_to,
        })
    }

    /// The objects the watches last reported, per kind and key.
    #[derive(Clone, Default)]
    struct World {
        gateways: BTreeMap<ObjectKey, Gateway>,
        services: BTreeMap<ObjectKey, Service>,
        entries: BTreeMap<ObjectKey, ServiceEntry>,
        secrets: BTreeMap<ObjectKey, Secret>,
        bindings: BTreeMap<ObjectKey, MeshBinding>,
        services_known: bool,
        secrets_known: bool,
    }

    impl World {
        /// The catalog built from nothing but these objects.
        fn fresh(&self) -> Catalog {
            let mut catalog = Catalog::default();
            for gateway in self.gateways.values() {
                catalog.upsert_gateway(gateway);
            }
            for service in self.services.values() {
                catalog.upsert_service(service);
            }
            for entry in self.entries.values() {
                catalog.upsert_service_entry(entry);
            }
            for secret in self.secrets.values() {
                catalog.upsert_secret(secret);
            }
            for (key, binding) in &self.bindings {
                catalog.set_mesh_binding(key, Some(binding.clone()));
            }
            catalog.set_services_known(self.services_known);
            catalog.set_secrets_known(self.secrets_known);
            catalog
        }
    }

    /// One random change, applied to both the catalog and the world.
    fn random_change(random: &mut Random, catalog: &mut Catalog, world: &mut World) {
        let namespace = random.pick(&["a", "b", "istio-system"]);
        let name = random.pick(&["one", "two", "three"]);
        let key = ObjectKey::new(namespace, name);
        match random.below(10) {
            0 => {
                let gateway = random_gateway(random, namespace, name);
                catalog.upsert_gateway(&gateway);
                world.gateways.insert(key, gateway);
            }
            1 => {
                catalog.remove_gateway(namespace, name);
                world.gateways.remove(&key);
            }
            2 => {
                let service = random_service(random, namespace, name);
                catalog.upsert_service(&service);
                world.services.insert(key, service);
            }
            3 => {
                catalog.remove_service(namespace, name);
                world.services.remove(&key);
            }
            4 => {
                let entry = random_service_entry(random, namespace, name);
                catalog.upsert_service_entry(&entry);
                world.entries.insert(key, entry);
            }
            5 => {
                catalog.remove_service_entry(namespace, name);
                world.entries.remove(&key);
            }
            6 => {
                let secret = random_secret(random, namespace, name);
                catalog.upsert_secret(&secret);
                world.secrets.insert(key, secret);
            }
            7 => {
                catalog.remove_secret(namespace, name);
                world.secrets.remove(&key);
            }
            8 => {
                let binding = random_binding(random, namespace);
                catalog.set_mesh_binding(&key, binding.clone());
                match binding.filter(|b| !b.hosts.is_empty()) {
                    Some(binding) => world.bindings.insert(key, binding),
                    None => world.bindings.remove(&key),
                };
            }
            _ => {
                world.services_known = random.below(2) == 0;
                world.secrets_known = random.below(2) == 0;
                catalog.set_services_known(world.services_known);
                catalog.set_secrets_known(world.secrets_known);
            }
        }
    }

    /// The host indexes agree with the objects they index: every entry is
    /// found under each of its hosts, and nothing else is.
    fn assert_host_indexes_agree(catalog: &Catalog) {
        let probes = [
            "api.example.com",
            "*.example.com",
            "db.internal",
            "*",
            "reviews.a.svc.cluster.local",
            "absent.example.com",
        ];
        for host in probes {
            let mut found: Vec<&ObjectKey> = catalog
                .service_entries_declaring(host)
                .map(|e| &e.key)
                .collect();
            found.sort();
            let mut expected: Vec<&ObjectKey> = catalog
                .service_entries()
                .filter(|e| e.hosts.iter().any(|h| h == host))
                .map(|e| &e.key)
                .collect();
            expected.sort();
            assert_eq!(found, expected, "ServiceEntries declaring {host}");

            let bound: Vec<&ObjectKey> = catalog
                .mesh_bindings_of(host)
                .into_iter()
                .inspect(|(_, binding)| assert!(binding.hosts.contains(host)))
                .map(|(key, _)| key)
                .collect();
            assert!(bound.windows(2).all(|w| w[0] < w[1]), "{bound:?}");
        }
    }

    #[test]
    fn any_sequence_of_changes_gives_the_catalog_built_from_the_final_objects() {
        let mut random = Random(0x6361_7461);
        for _ in 0..300 {
            let mut catalog = Catalog::default();
            let mut world = World::default();
            let mut snapshots = Vec::new();
            for _ in 0..40 {
                random_change(&mut random, &mut catalog, &mut world);
                if random.below(3) == 0 {
                    snapshots.push((catalog.clone(), world.clone()));
                }
            }
            assert_eq!(catalog, world.fresh());
            assert_host_indexes_agree(&catalog);
            // Every snapshot taken along the way still shows its moment.
            for (snapshot, world) in &snapshots {
                assert_eq!(*snapshot, world.fresh());
                assert_host_indexes_agree(snapshot);
            }
        }
    }

    #[test]
    fn a_snapshot_does_not_see_later_changes() {
        let mut random = Random(7);
        let mut catalog = Catalog::default();
        let entry = random_service_entry(&mut random, "a", "one");
        catalog.upsert_service_entry(&entry);
        let gateway = random_gateway(&mut random, "a", "gw");
        catalog.upsert_gateway(&gateway);
        let snapshot = catalog.clone();
        let before: Vec<ObjectKey> = snapshot.service_entry_keys().cloned().collect();

        catalog.remove_service_entry("a", "one");
        catalog.remove_gateway("a", "gw");
        catalog.set_services_known(true);
        catalog.upsert_secret(&random_secret(&mut random, "a", "s"));

        assert_eq!(
            snapshot.service_entry_keys().cloned().collect::<Vec<_>>(),
            before
        );
        assert!(snapshot.gateway(&ObjectKey::new("a", "gw")).is_some());
        assert!(!snapshot.services_known());
        assert_eq!(snapshot.secret_keys().count(), 0);
        assert_eq!(catalog.service_entry_keys().count(), 0);
    }

    #[test]
    fn an_unchanged_object_keeps_its_entry() {
        // Re-reporting an object (a resync) must not copy its entry: the
        // snapshots taken before and after share it.
        let mut random = Random(11);
        let mut catalog = Catalog::default();
        let gateway = random_gateway(&mut random, "a", "gw");
        catalog.upsert_gateway(&gateway);
        let key = ObjectKey::new("a", "gw");
        let before = catalog.gateways.get(&key).cloned().unwrap();
        catalog.upsert_gateway(&gateway);
        let after = catalog.gateways.get(&key).cloned().unwrap();
        assert!(Arc::ptr_eq(&before, &after));
    }
}
