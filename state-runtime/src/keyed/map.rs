//! [`KeyedMap`]: a map from user keys to values, per key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ValueVersions;
use super::table::{Tables, decode_count};
use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::key::KeyQuery;

/// A map from user keys `UK` to values `V` per key of type `K` (Flink's
/// `MapState`), for the key groups this instance owns.
///
/// A key has state while its map has at least one entry: removing the last
/// user key removes the key. Snapshots write each map sorted by encoded user
/// key, so the in-memory map's order never shows.
///
/// ```
/// use state_runtime::prelude::*;
///
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// let all = assigner.max_parallelism().all_key_groups();
/// // per customer: product -> count
/// let mut counts = KeyedMap::<u64, String, u32>::new(assigner, all)?;
///
/// counts.insert(&1, "apple".to_string(), 2)?;
/// counts.update(&1, "pear".to_string(), || 0, |c| *c += 1)?;
/// counts.update(&1, "pear".to_string(), || 0, |c| *c += 1)?;
/// assert_eq!(counts.get(&1, "pear")?, Some(&2));
/// assert_eq!(counts.get_map(&1)?.map(|m| m.len()), Some(2));
/// assert_eq!(counts.remove(&1, "apple")?, Some(2));
/// assert_eq!(counts.remove(&1, "pear")?, Some(2));
/// assert!(counts.is_empty(), "the last user key took the key with it");
/// # Ok::<(), StateError>(())
/// ```
#[derive(Clone)]
pub struct KeyedMap<K, UK, V> {
    tables: Tables<K, HashMap<UK, V>>,
    versions: ValueVersions<V>,
}

super::keyed_common!(
    KeyedMap<K, UK, V>,
    value = HashMap<UK, V>,
    migrates = V,
    key = (K, UK),
    state_bounds = {
        UK: Hash + Eq + Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    },
    write = WriteMap,
    read = read_map::<UK, V, _>
);

/// How a map encodes: [`write_map`].
struct WriteMap;

impl<UK: Serialize, V: Serialize> super::frozen::WriteValue<HashMap<UK, V>> for WriteMap {
    fn write(map: &HashMap<UK, V>, out: &mut Vec<u8>, state: &str) -> Result<(), StateError> {
        write_map(map, out, state)
    }
}

/// A map: its length, then its entries sorted by encoded user key.
fn write_map<UK: Serialize, V: Serialize>(
    map: &HashMap<UK, V>,
    out: &mut Vec<u8>,
    state: &str,
) -> Result<(), StateError> {
    let mut keys = Vec::new();
    let mut order = Vec::with_capacity(map.len());
    for (uk, v) in map {
        let start = keys.len();
        codec::encode_into(uk, &mut keys, state)?;
        order.push((start, keys.len(), v));
    }
    order.sort_unstable_by(|a, b| keys[a.0..a.1].cmp(&keys[b.0..b.1]));
    codec::encode_into(&(order.len() as u64), out, state)?;
    for (start, end, v) in order {
        out.extend_from_slice(&keys[start..end]);
        codec::encode_into(v, out, state)?;
    }
    Ok(())
}

fn read_map<UK: Hash + Eq + DeserializeOwned, V, D>(
    bytes: &[u8],
    state: &str,
    decode: &D,
) -> Result<(HashMap<UK, V>, usize), StateError>
where
    D: Fn(&[u8], &str) -> Result<(V, usize), StateError>,
{
    let (count, mut pos) = decode_count(bytes, state)?;
    let mut map = HashMap::with_capacity((count as usize).min(bytes.len() - pos));
    for _ in 0..count {
        let entry = pos;
        let (uk, used) = codec::decode_prefix::<UK>(&bytes[pos..], state)?;
        pos += used;
        let (v, used) = decode(&bytes[pos..], state)?;
        pos += used;
        if map.insert(uk, v).is_some() {
            return Err(StateError::Decode {
                state: state.to_owned(),
                message: format!("duplicate user key at byte {entry} of the map"),
            });
        }
    }
    Ok((map, pos))
}

impl<K: StateKey + Eq, UK: Hash + Eq, V> KeyedMap<K, UK, V> {
    /// The value of `user_key` in the map of `key`.
    #[inline]
    pub fn get<Q, U>(&self, key: Q, user_key: &U) -> Result<Option<&V>, StateError>
    where
        Q: KeyQuery<K>,
        UK: Borrow<U>,
        U: Hash + Eq + ?Sized,
    {
        Ok(self.tables.get(key)?.and_then(|m| m.get(user_key)))
    }

    /// The value of `user_key` in the map of `key`, for in-place change.
    #[inline]
    pub fn get_mut<Q, U>(&mut self, key: Q, user_key: &U) -> Result<Option<&mut V>, StateError>
    where
        Q: KeyQuery<K>,
        UK: Borrow<U>,
        U: Hash + Eq + ?Sized,
    {
        Ok(self.tables.get_mut(key)?.and_then(|m| m.get_mut(user_key)))
    }

    /// Whether the map of `key` has `user_key`.
    pub fn contains<Q, U>(&self, key: Q, user_key: &U) -> Result<bool, StateError>
    where
        Q: KeyQuery<K>,
        UK: Borrow<U>,
        U: Hash + Eq + ?Sized,
    {
        Ok(self.get(key, user_key)?.is_some())
    }

    /// The whole map of `key`, if it has one (empty only if emptied through
    /// [`iter_mut`](Self::iter_mut) or [`retain`](Self::retain)).
    pub fn get_map<Q: KeyQuery<K>>(&self, key: Q) -> Result<Option<&HashMap<UK, V>>, StateError> {
        self.tables.get(key)
    }

    /// Sets `user_key` to `value` in the map of `key`, returning the previous
    /// value.
    pub fn insert<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        user_key: UK,
        value: V,
    ) -> Result<Option<V>, StateError> {
        Ok(self
            .tables
            .get_or_insert_with(key, HashMap::new)?
            .insert(user_key, value))
    }

    /// Applies `f` to the value of `user_key` in the map of `key` (inserting
    /// `default()` first if there is none) and returns what `f` returns.
    #[inline]
    pub fn update<Q: KeyQuery<K>, R>(
        &mut self,
        key: Q,
        user_key: UK,
        default: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, StateError> {
        let map = self.tables.get_or_insert_with(key, HashMap::new)?;
        Ok(f(map.entry(user_key).or_insert_with(default)))
    }

    /// Removes `user_key` from the map of `key`, returning its value. The
    /// key itself goes when its map becomes empty.
    pub fn remove<Q, U>(&mut self, key: Q, user_key: &U) -> Result<Option<V>, StateError>
    where
        Q: KeyQuery<K>,
        UK: Borrow<U>,
        U: Hash + Eq + ?Sized,
    {
        self.tables
            .modify_or_remove(key, |map| {
                let removed = map.remove(user_key);
                (removed, map.is_empty())
            })
            .map(Option::flatten)
    }

    /// Removes the whole map of `key`, returning it.
    pub fn remove_map<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
    ) -> Result<Option<HashMap<UK, V>>, StateError> {
        Ok(self.tables.remove(key)?.map(|(_, m)| m))
    }
}
