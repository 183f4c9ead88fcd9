//! [`KeyedList`]: a list of values per key.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ValueVersions;
use super::table::{Tables, decode_count};
use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::key::KeyQuery;

/// A list of values of type `V` per key of type `K` (Flink's `ListState`),
/// for the key groups this instance owns. Lists keep insertion order, also
/// through a snapshot and restore.
///
/// Keys are taken as any [`KeyQuery<K>`], as in
/// [`KeyedValue`](super::KeyedValue).
///
/// ```
/// use state_runtime::prelude::*;
///
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// let all = assigner.max_parallelism().all_key_groups();
/// let mut recent = KeyedList::<u32, i64>::new(assigner, all)?;
///
/// recent.push(7u32, 100)?;
/// recent.push(7u32, 250)?;
/// recent.extend(8u32, [1, 2, 3])?;
/// assert_eq!(recent.get(&7)?, Some(&[100, 250][..]));
/// if let Some(list) = recent.get_mut(&8)? {
///     list.retain(|v| v % 2 == 1);
/// }
/// assert_eq!(recent.get(&8)?, Some(&[1, 3][..]));
/// assert_eq!(recent.remove(&7)?, Some(vec![100, 250]));
/// assert_eq!(recent.len(), 1);
/// # Ok::<(), StateError>(())
/// ```
#[derive(Clone)]
pub struct KeyedList<K, V> {
    tables: Tables<K, Vec<V>>,
    versions: ValueVersions<V>,
}

super::keyed_common!(
    KeyedList<K, V>,
    value = Vec<V>,
    migrates = V,
    key = K,
    state_bounds = { V: Serialize + DeserializeOwned, },
    write = WriteList,
    read = read_list
);

/// How a list encodes: [`write_list`].
struct WriteList;

impl<V: Serialize> super::frozen::WriteValue<Vec<V>> for WriteList {
    #[inline]
    fn write(list: &Vec<V>, out: &mut Vec<u8>, state: &str) -> Result<(), StateError> {
        write_list(list, out, state)
    }
}

/// A list: its length, then each element.
fn write_list<V: Serialize>(
    list: &Vec<V>,
    out: &mut Vec<u8>,
    state: &str,
) -> Result<(), StateError> {
    codec::encode_into(&(list.len() as u64), out, state)?;
    for v in list {
        codec::encode_into(v, out, state)?;
    }
    Ok(())
}

/// Reads a list element by element: the count is checked against the bytes
/// left, and the capacity reserved never exceeds them.
fn read_list<V>(
    bytes: &[u8],
    state: &str,
    decode: &impl Fn(&[u8], &str) -> Result<(V, usize), StateError>,
) -> Result<(Vec<V>, usize), StateError> {
    let (count, mut pos) = decode_count(bytes, state)?;
    let mut list = Vec::with_capacity((count as usize).min(bytes.len() - pos));
    for _ in 0..count {
        let (v, used) = decode(&bytes[pos..], state)?;
        pos += used;
        list.push(v);
    }
    Ok((list, pos))
}

impl<K: StateKey + Eq, V> KeyedList<K, V> {
    /// The list of `key`, if it has one.
    #[inline]
    pub fn get<Q: KeyQuery<K>>(&self, key: Q) -> Result<Option<&[V]>, StateError> {
        Ok(self.tables.get(key)?.map(Vec::as_slice))
    }

    /// The list of `key` for in-place change, if it has one. A list emptied
    /// here stays (as an empty list) until [`remove`](Self::remove)d.
    #[inline]
    pub fn get_mut<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<&mut Vec<V>>, StateError> {
        self.tables.get_mut(key)
    }

    /// Appends `value` to the list of `key`, creating the list if needed.
    #[inline]
    pub fn push<Q: KeyQuery<K>>(&mut self, key: Q, value: V) -> Result<(), StateError> {
        self.tables.get_or_insert_with(key, Vec::new)?.push(value);
        Ok(())
    }

    /// Appends every value to the list of `key`, creating the list if needed.
    pub fn extend<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        values: impl IntoIterator<Item = V>,
    ) -> Result<(), StateError> {
        self.tables
            .get_or_insert_with(key, Vec::new)?
            .extend(values);
        Ok(())
    }

    /// Replaces the list of `key`, returning the previous one.
    pub fn insert<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        list: Vec<V>,
    ) -> Result<Option<Vec<V>>, StateError> {
        self.tables.insert(key, list)
    }

    /// Removes the list of `key`, returning it.
    pub fn remove<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<Vec<V>>, StateError> {
        Ok(self.tables.remove(key)?.map(|(_, v)| v))
    }
}
