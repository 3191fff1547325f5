//! Server-side apply with one field manager, writing only when something
//! changed. Each applied object carries the hash of what was applied; an
//! object whose hash matches and that nobody changed since (same generation,
//! or resourceVersion for kinds without one) is left alone, so an idle mesh
//! costs no writes, while a hand edit or a deletion is undone on the next
//! pass.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::ObjectMeta;
use serde_json::Value;

use super::metrics;
use crate::install::Desired;
use crate::names::FIELD_MANAGER;

/// Annotation holding the SHA-256 of the applied object (hex).
pub const HASH_ANNOTATION: &str = "meshkeeper.io/applied-hash";

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    kind: String,
    namespace: Option<String>,
    name: String,
}

/// What the cluster holds now for one object (from a metadata cache).
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    pub meta: &'a ObjectMeta,
}

impl Current<'_> {
    /// Generation where the kind has one (status writes don't move it),
    /// else the resourceVersion.
    fn version(&self) -> String {
        match self.meta.generation {
            Some(generation) => format!("g{generation}"),
            None => format!("rv{}", self.meta.resource_version.as_deref().unwrap_or("")),
        }
    }

    fn hash(&self) -> Option<&str> {
        self.meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH_ANNOTATION))
            .map(String::as_str)
    }
}

/// The outcome of [`Applier::ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub wrote: bool,
    /// The object's uid (owner references need it).
    pub uid: Option<String>,
}

pub struct Applier {
    client: kube::Client,
    /// Per object: the hash we applied and the version the object had
    /// right after, so a later change by someone else is noticed.
    records: Mutex<HashMap<Key, (String, String)>>,
}

impl Applier {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            records: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Applies `desired` unless `current` shows it is already in place.
    pub async fn ensure(
        &self,
        desired: &Desired,
        current: Option<Current<'_>>,
    ) -> Result<Applied, kube::Error> {
        let (object, hash) = with_hash(&desired.object);
        let key = Key {
            kind: desired.api.kind.clone(),
            namespace: desired.namespace.clone(),
            name: desired.name.clone(),
        };
        if let Some(current) = current
            && current.hash() == Some(hash.as_str())
            && self.unchanged_since_applied(&key, &hash, &current.version())
        {
            return Ok(Applied {
                wrote: false,
                uid: current.meta.uid.clone(),
            });
        }
        let api = self.api(&desired.api, desired.namespace.as_deref());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = api
            .patch(&desired.name, &params, &Patch::Apply(&object))
            .await?;
        metrics::count_write(&desired.api.kind, "apply");
        let version = Current {
            meta: &applied.metadata,
        }
        .version();
        self.remember(key, hash, version);
        Ok(Applied {
            wrote: true,
            uid: applied.metadata.uid,
        })
    }

    /// Deletes an object; a missing one counts as deleted.
    pub async fn delete(
        &self,
        api: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), kube::Error> {
        let result = self
            .api(api, namespace)
            .delete(name, &DeleteParams::background())
            .await;
        self.forget(&Key {
            kind: api.kind.clone(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        });
        match result {
            Ok(_) => {
                metrics::count_write(&api.kind, "delete");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// True when we applied this hash and nobody changed the object since,
    /// or when we never applied it in this process (after a restart the
    /// object's own hash annotation is trusted, and its version becomes the
    /// baseline for noticing later edits).
    fn unchanged_since_applied(&self, key: &Key, hash: &str, version: &str) -> bool {
        let Ok(mut records) = self.records.lock() else {
            return false;
        };
        match records.get(key) {
            Some((applied_hash, applied_version)) => {
                applied_hash == hash && applied_version == version
            }
            None => {
                records.insert(key.clone(), (hash.to_owned(), version.to_owned()));
                true
            }
        }
    }

    fn remember(&self, key: Key, hash: String, version: String) {
        if let Ok(mut records) = self.records.lock() {
            records.insert(key, (hash, version));
        }
    }

    fn forget(&self, key: &Key) {
        if let Ok(mut records) = self.records.lock() {
            records.remove(key);
        }
    }
}

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The object with its hash annotation set, and the hash. The hash covers
/// the object as desired (without the annotation), serialized with sorted
/// keys, so equal objects hash equally across runs.
pub fn with_hash(object: &Value) -> (Value, String) {
    let hash = sha256_hex(object.to_string().as_bytes());
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(HASH_ANNOTATION.to_owned(), Value::String(hash.clone()));
        }
    }
    (object, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_objects_hash_equally_and_the_hash_is_annotated() {
        let a =
            json!({"metadata": {"name": "x", "labels": {"b": "1", "a": "2"}}, "data": {"k": "v"}});
        let b =
            json!({"data": {"k": "v"}, "metadata": {"labels": {"a": "2", "b": "1"}, "name": "x"}});
        let (annotated, hash) = with_hash(&a);
        assert_eq!(hash, with_hash(&b).1);
        assert_eq!(
            annotated["metadata"]["annotations"][HASH_ANNOTATION],
            json!(hash)
        );
        let (_, other) = with_hash(&json!({"metadata": {"name": "x"}, "data": {"k": "w"}}));
        assert_ne!(hash, other);
    }
}
