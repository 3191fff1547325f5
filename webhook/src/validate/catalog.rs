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
