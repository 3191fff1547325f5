//! A hash map whose clone is cheap: the entries are spread over a fixed
//! number of shards, each behind an `Arc`, and a change copies only the
//! shard it touches, and only while an older clone still shares it.
//!
//! The validation index uses it so the server can publish an immutable
//! snapshot after every watch event (a clone: a few hundred pointer copies)
//! and then keep changing its working copy, without ever copying the tens
//! of thousands of entries of a large cluster.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Shards per map. A change to a snapshot-shared map copies one shard:
/// with 20,000 entries that is about 80 of them.
const SHARDS: usize = 256;

type Shard<K, V> = Arc<HashMap<K, V>>;

/// See the module documentation. `V` should itself be cheap to clone (an
/// `Arc` or another `SharedMap`): a copied shard clones its values.
pub struct SharedMap<K, V> {
    /// `None` until the first insert, so an empty map allocates nothing.
    shards: Option<Arc<Vec<Shard<K, V>>>>,
    len: usize,
}

impl<K, V> Clone for SharedMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for SharedMap<K, V> {
    fn default() -> Self {
        Self {
            shards: None,
            len: 0,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The shard of a key. A fixed hasher: the same key lands in the same
/// shard in every map, which keeps equality a per-shard comparison.
fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    // SHARDS divides 2^64, so the modulo keeps the spread even.
    (hasher.finish() % SHARDS as u64) as usize
}

impl<K, V> SharedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|shards| shards.iter())
            .flat_map(|shard| shard.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SharedMap<K, V> {
    fn shard<Q>(&self, key: &Q) -> Option<&HashMap<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards.as_ref().map(|s| &*s[shard_of(key)])
    }

    /// The shard of `key`, unshared first (copied if a snapshot holds it).
    fn shard_mut<Q>(&mut self, key: &Q) -> &mut HashMap<K, V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shards = self.shards.get_or_insert_with(|| {
            // Every shard starts as the same empty map: one allocation, and
            // the first write to a shard gives it its own.
            let empty = Arc::new(HashMap::new());
            Arc::new(std::iter::repeat_n(empty, SHARDS).collect())
        });
        Arc::make_mut(&mut Arc::make_mut(shards)[shard_of(key)])
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key)?.get(key)
    }

    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key)?.get_key_value(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// The value of `key` for changing in place; copies its shard when a
    /// snapshot shares it, so only ask when the change will be made.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        self.shard_mut(key).get_mut(key)
    }

    /// The value of `key`, inserted from `make` when absent.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let absent = !self.contains_key(&key);
        if absent {
            self.len += 1;
        }
        self.shard_mut(&key).entry(key).or_insert_with(make)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.shard_mut(&key).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }
}

impl<K: Hash + Eq + Clone, V: Clone + PartialEq> PartialEq for SharedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Eq> Eq for SharedMap<K, V> {}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for SharedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = Self::default();
        for (k, v) in entries {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut map = SharedMap::default();
        assert!(map.is_empty());
        assert_eq!(map.insert("a".to_owned(), 1), None);
        assert_eq!(map.insert("b".to_owned(), 2), None);
        assert_eq!(map.insert("a".to_owned(), 3), Some(1));
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("a"), Some(&3));
        *map.get_or_insert_with("c".to_owned(), || 0) += 5;
        *map.get_or_insert_with("c".to_owned(), || 0) += 5;
        assert_eq!(map.get("c"), Some(&10));
        assert_eq!(map.get_mut("zz"), None);
        assert_eq!(map.remove("b"), Some(2));
        assert_eq!(map.remove("b"), None);
        assert_eq!(map.len(), 2);
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        assert_eq!(keys, ["a", "c"]);
    }

    #[test]
    fn a_clone_is_a_snapshot_unaffected_by_later_changes() {
        let mut map: SharedMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
        let snapshot = map.clone();
        map.insert(7, 700);
        map.remove(&8);
        map.insert(5000, 1);
        assert_eq!(snapshot.get(&7), Some(&7));
        assert_eq!(snapshot.get(&8), Some(&8));
        assert_eq!(snapshot.get(&5000), None);
        assert_eq!(snapshot.len(), 1000);
        assert_eq!(map.get(&7), Some(&700));
        assert_eq!(map.len(), 1000);
    }

    #[test]
    fn a_change_copies_only_one_shard() {
        let mut map: SharedMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let snapshot = map.clone();
        map.insert(1, 2);
        let (Some(old), Some(new)) = (&snapshot.shards, &map.shards) else {
            panic!("both maps hold entries");
        };
        let shared = old
            .iter()
            .zip(new.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1);
    }

    #[test]
    fn equality_ignores_history() {
        let mut a: SharedMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
        let b: SharedMap<u32, u32> = (0..50).map(|i| (i, i)).collect();
        assert_ne!(a, b);
        for i in 50..100 {
            a.remove(&i);
        }
        assert_eq!(a, b);
    }
}
