//! [`KeyedValue`]: one value per key.

use super::ValueVersions;
use super::table::Tables;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::key::KeyQuery;

/// One value of type `V` per key of type `K` (Flink's `ValueState`), for the
/// key groups this instance owns.
///
/// Every method that takes a key accepts any [`KeyQuery<K>`]: the key by
/// value, `&K`, `&str` for `String` keys, or what
/// [`Keyed::key`](crate::Keyed::key) returns. A key whose key group is not
/// owned gives [`StateError::KeyGroupOutsideRange`]; an unbound state gives
/// [`StateError::KeyedStateUnbound`].
///
/// ```
/// use state_runtime::prelude::*;
///
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// let all = assigner.max_parallelism().all_key_groups();
/// let mut totals = KeyedValue::<String, i64>::new(assigner, all)?.named("totals");
///
/// totals.insert("alice".to_string(), 10)?;
/// *totals.get_or_insert_with("bob", || 0)? += 7;         // &str for a String key
/// let doubled = totals.update("alice", || 0, |v| { *v *= 2; *v })?;
/// assert_eq!(doubled, 20);
/// assert_eq!(totals.get("bob")?, Some(&7));
/// assert_eq!(totals.remove("bob")?, Some(7));
/// assert_eq!(totals.len(), 1);
/// assert!(totals.get("carol")?.is_none());
/// # Ok::<(), StateError>(())
/// ```
#[derive(Clone)]
pub struct KeyedValue<K, V> {
    tables: Tables<K, V>,
    versions: ValueVersions<V>,
}

super::keyed_common!(
    KeyedValue<K, V>,
    value = V,
    migrates = V,
    key = K,
    state_bounds = { V: ::serde::Serialize + ::serde::de::DeserializeOwned, },
    write = super::frozen::SerdeValue,
    read = read_value
);

/// A value: decoded by `decode` (the current type, or an older one converted).
#[inline]
fn read_value<V>(
    bytes: &[u8],
    state: &str,
    decode: &impl Fn(&[u8], &str) -> Result<(V, usize), StateError>,
) -> Result<(V, usize), StateError> {
    decode(bytes, state)
}

impl<K: StateKey + Eq, V> KeyedValue<K, V> {
    /// The value of `key`, if it has one.
    #[inline]
    pub fn get<Q: KeyQuery<K>>(&self, key: Q) -> Result<Option<&V>, StateError> {
        self.tables.get(key)
    }

    /// The value of `key` for in-place change, if it has one.
    #[inline]
    pub fn get_mut<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<&mut V>, StateError> {
        self.tables.get_mut(key)
    }

    /// The value of `key`, inserting `default()` first if it has none. The
    /// hot path of an aggregation: one key-group computation, one lookup.
    #[inline]
    pub fn get_or_insert_with<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        default: impl FnOnce() -> V,
    ) -> Result<&mut V, StateError> {
        self.tables.get_or_insert_with(key, default)
    }

    /// Applies `f` to the value of `key` (inserting `default()` first if it
    /// has none) and returns what `f` returns.
    #[inline]
    pub fn update<Q: KeyQuery<K>, R>(
        &mut self,
        key: Q,
        default: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, StateError> {
        Ok(f(self.tables.get_or_insert_with(key, default)?))
    }

    /// Sets the value of `key`, returning the previous one.
    pub fn insert<Q: KeyQuery<K>>(&mut self, key: Q, value: V) -> Result<Option<V>, StateError> {
        self.tables.insert(key, value)
    }

    /// Removes the value of `key`, returning it.
    pub fn remove<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<V>, StateError> {
        Ok(self.tables.remove(key)?.map(|(_, v)| v))
    }
}
