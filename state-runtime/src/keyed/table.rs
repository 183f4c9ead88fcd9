//! The storage shared by the keyed containers: one hash table per owned key
//! group, indexed by `key_group - range.start`.
//!
//! Hot path: one stable hash of the key, from which the native key group is
//! derived (`((hash >> 32) * max_p) >> 32`) and the table slot is found
//! (`hash * φ`, so the top bits hashbrown uses for its control bytes depend on
//! every hash bit). The key is hashed once; its hash is kept in the slot so a
//! table that grows never rehashes keys. Flink mode additionally computes the
//! Java hash code for the key group. The table's iteration order is never
//! observable in a snapshot: sections are sorted by stable hash (ties by
//! encoded key).

use hashbrown::HashTable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{
    AssignerKind, KeyGroup, KeyGroupAssigner, KeyGroupRange, MaxParallelism,
    native_key_group_for_hash,
};

use super::key::KeyQuery;

/// Name of a container that was never given one.
pub(crate) const UNNAMED: &str = "<unnamed>";

/// Lists of more zero-byte elements than this, or sections with more entries
/// than bytes, are rejected as corrupt (no unbounded loops or allocation from
/// a corrupt count).
pub(crate) const MAX_ZERO_BYTE_ITEMS: u64 = 1 << 16;

/// The multiplier of Fibonacci hashing (2^64 / φ, odd).
const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn table_hash(stable_hash: u64) -> u64 {
    stable_hash.wrapping_mul(PHI)
}

/// One entry: the key's stable hash, the key, the container's per-key value.
#[derive(Clone)]
pub(crate) struct Slot<K, T> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) value: T,
}

/// Entries of one keyed state, partitioned by key group.
#[derive(Clone)]
pub(crate) struct Tables<K, T> {
    name: String,
    assigner: KeyGroupAssigner,
    range: KeyGroupRange,
    bound: bool,
    groups: Vec<HashTable<Slot<K, T>>>,
    len: usize,
}

impl<K, T> Default for Tables<K, T> {
    fn default() -> Self {
        Self {
            name: UNNAMED.to_owned(),
            assigner: KeyGroupAssigner::native(MaxParallelism::new(1).expect("1 is valid")),
            range: KeyGroupRange::EMPTY,
            bound: false,
            groups: Vec::new(),
            len: 0,
        }
    }
}

impl<K: StateKey + Eq, T> Tables<K, T> {
    pub(crate) fn new(
        assigner: KeyGroupAssigner,
        range: KeyGroupRange,
    ) -> Result<Self, StateError> {
        let mut t = Self::default();
        t.bind(assigner, range)?;
        Ok(t)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_name(&mut self, name: &str) {
        name.clone_into(&mut self.name);
    }

    pub(crate) fn binding(&self) -> Option<(KeyGroupAssigner, KeyGroupRange)> {
        self.bound.then_some((self.assigner, self.range))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn clear(&mut self) {
        for g in &mut self.groups {
            g.clear();
        }
        self.len = 0;
    }

    /// Binds to `assigner` and `range`, moving every entry into its key group
    /// under the new assigner. Unchanged (and an error) if some entry would
    /// fall outside `range`.
    pub(crate) fn bind(
        &mut self,
        assigner: KeyGroupAssigner,
        range: KeyGroupRange,
    ) -> Result<(), StateError> {
        assigner.check_key_type::<K>()?;
        let max_p = assigner.max_parallelism().get();
        if range.end_exclusive() > max_p {
            return Err(StateError::KeyGroupOutOfRange {
                key_group: range.end_exclusive() - 1,
                max_parallelism: max_p,
            });
        }
        for slot in self.groups.iter().flat_map(|g| g.iter()) {
            let kg = key_group_of(&assigner, slot.hash, &slot.key)?;
            if !range.contains(kg) {
                return Err(StateError::KeyGroupOutsideRange {
                    state: self.name.clone(),
                    key_group: kg,
                    range,
                });
            }
        }
        let old = std::mem::take(&mut self.groups);
        self.groups = (0..range.len()).map(|_| HashTable::new()).collect();
        self.assigner = assigner;
        self.range = range;
        self.bound = true;
        for slot in old.into_iter().flat_map(|g| g.into_iter()) {
            let kg = key_group_of(&assigner, slot.hash, &slot.key)?;
            let idx = (kg - range.start()) as usize;
            self.groups[idx].insert_unique(table_hash(slot.hash), slot, |s| table_hash(s.hash));
        }
        Ok(())
    }

    /// The index of `key`'s key group in `groups`, and its stable hash.
    #[inline]
    fn locate<Q: StateKey + ?Sized>(&self, key: &Q) -> Result<(usize, u64), StateError> {
        let hash = key.stable_hash();
        let kg = match self.assigner.kind() {
            AssignerKind::Native => {
                native_key_group_for_hash(hash, self.assigner.max_parallelism())
            }
            AssignerKind::Flink => self.assigner.key_group(key)?,
        };
        let idx = kg.wrapping_sub(self.range.start()) as usize;
        if idx < self.groups.len() {
            Ok((idx, hash))
        } else {
            Err(self.outside(kg))
        }
    }

    #[cold]
    #[inline(never)]
    fn outside(&self, key_group: KeyGroup) -> StateError {
        if self.bound {
            StateError::KeyGroupOutsideRange {
                state: self.name.clone(),
                key_group,
                range: self.range,
            }
        } else {
            StateError::KeyedStateUnbound {
                state: self.name.clone(),
            }
        }
    }

    /// The index of an owned key group.
    fn group_index(&self, key_group: KeyGroup) -> Result<usize, StateError> {
        match self.range.index_of(key_group) {
            Some(i) if self.bound => Ok(i),
            _ => Err(self.outside(key_group)),
        }
    }

    /// The key group of `key` under the bound assigner.
    pub(crate) fn key_group<Q: StateKey + ?Sized>(&self, key: &Q) -> Result<KeyGroup, StateError> {
        if !self.bound {
            return Err(self.outside(0));
        }
        self.assigner.key_group(key)
    }

    #[inline]
    pub(crate) fn get<Q: KeyQuery<K>>(&self, key: Q) -> Result<Option<&T>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        Ok(self.groups[idx]
            .find(table_hash(hash), |s| key.matches(&s.key))
            .map(|s| &s.value))
    }

    #[inline]
    pub(crate) fn get_mut<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<&mut T>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        Ok(self.groups[idx]
            .find_mut(table_hash(hash), |s| key.matches(&s.key))
            .map(|s| &mut s.value))
    }

    #[inline]
    pub(crate) fn get_or_insert_with<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        default: impl FnOnce() -> T,
    ) -> Result<&mut T, StateError> {
        let (idx, hash) = self.locate(&key)?;
        let th = table_hash(hash);
        let entry = self.groups[idx].entry(th, |s| key.matches(&s.key), |s| table_hash(s.hash));
        let slot = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                v.insert(Slot {
                    hash,
                    key: key.into_key(),
                    value: default(),
                })
                .into_mut()
            }
        };
        Ok(&mut slot.value)
    }

    pub(crate) fn insert<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        value: T,
    ) -> Result<Option<T>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        let th = table_hash(hash);
        match self.groups[idx].entry(th, |s| key.matches(&s.key), |s| table_hash(s.hash)) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Ok(Some(std::mem::replace(&mut o.get_mut().value, value)))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                v.insert(Slot {
                    hash,
                    key: key.into_key(),
                    value,
                });
                Ok(None)
            }
        }
    }

    pub(crate) fn remove<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<(K, T)>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        match self.groups[idx].find_entry(table_hash(hash), |s| key.matches(&s.key)) {
            Ok(o) => {
                self.len -= 1;
                let (slot, _) = o.remove();
                Ok(Some((slot.key, slot.value)))
            }
            Err(_) => Ok(None),
        }
    }

    /// Applies `f` to the value of `key`, if it has one, and removes the
    /// entry if `f` says so; one lookup.
    pub(crate) fn modify_or_remove<Q: KeyQuery<K>, R>(
        &mut self,
        key: Q,
        f: impl FnOnce(&mut T) -> (R, bool),
    ) -> Result<Option<R>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        match self.groups[idx].find_entry(table_hash(hash), |s| key.matches(&s.key)) {
            Ok(mut o) => {
                let (r, remove) = f(&mut o.get_mut().value);
                if remove {
                    o.remove();
                    self.len -= 1;
                }
                Ok(Some(r))
            }
            Err(_) => Ok(None),
        }
    }

    /// Keeps only the entries for which `f` returns true.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &mut T) -> bool) {
        let mut len = 0;
        for g in &mut self.groups {
            g.retain(|s| f(&s.key, &mut s.value));
            len += g.len();
        }
        self.len = len;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &T)> + '_ {
        self.groups
            .iter()
            .flat_map(|g| g.iter().map(|s| (&s.key, &s.value)))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut T)> + '_ {
        self.groups
            .iter_mut()
            .flat_map(|g| g.iter_mut().map(|s| (&s.key, &mut s.value)))
    }

    pub(crate) fn iter_key_group(
        &self,
        key_group: KeyGroup,
    ) -> Result<impl Iterator<Item = (&K, &T)> + '_, StateError> {
        let idx = self.group_index(key_group)?;
        Ok(self.groups[idx].iter().map(|s| (&s.key, &s.value)))
    }

    pub(crate) fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError> {
        Ok(self.groups[self.group_index(key_group)?].len())
    }
}

/// The key group of a stored key whose stable hash is `hash`.
#[inline]
fn key_group_of<K: StateKey + ?Sized>(
    assigner: &KeyGroupAssigner,
    hash: u64,
    key: &K,
) -> Result<KeyGroup, StateError> {
    match assigner.kind() {
        AssignerKind::Native => Ok(native_key_group_for_hash(hash, assigner.max_parallelism())),
        AssignerKind::Flink => assigner.key_group(key),
    }
}

/// Sorts the pairs by hash. Stable hashes are uniform, so one bucket pass
/// (256 buckets by position in `[min, max]`) leaves small buckets that sort
/// in cache; a plain comparison sort of a whole key group, and a scatter
/// into as many buckets as pairs, both cost more than the encoding did.
/// Skewed input only makes some buckets bigger, and each bucket is sorted by
/// comparison, so the result is always sorted.
fn sort_by_hash<T: Copy + Default>(
    pairs: &mut Vec<(u64, T)>,
    tmp: &mut Vec<(u64, T)>,
    starts: &mut Vec<u32>,
) {
    /// Few enough buckets that scattering into them stays in cache.
    const BUCKETS: usize = 256;
    let n = pairs.len();
    if n < 2 * BUCKETS {
        pairs.sort_unstable_by_key(|p| p.0);
        return;
    }
    let (min, max) = pairs
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    // bucket(h) = floor((h - min) * BUCKETS / span) < BUCKETS, as one
    // multiply-high: a monotone map, so sorted buckets give sorted output.
    let span = u128::from(max - min) + 1;
    let scale = ((BUCKETS as u128) << 64) / span;
    let bucket = |h: u64| ((u128::from(h - min) * scale) >> 64) as usize;
    starts.clear();
    starts.resize(BUCKETS + 1, 0);
    for p in pairs.iter() {
        starts[bucket(p.0) + 1] += 1;
    }
    for b in 0..BUCKETS {
        starts[b + 1] += starts[b];
    }
    tmp.clear();
    tmp.resize(n, (0, T::default()));
    for p in pairs.iter() {
        let b = bucket(p.0);
        tmp[starts[b] as usize] = *p;
        starts[b] += 1;
    }
    // starts[b] is now the end of bucket b, the start of bucket b + 1.
    let mut begin = 0;
    for &end in &starts[..BUCKETS] {
        let end = end as usize;
        tmp[begin..end].sort_unstable_by_key(|p| p.0);
        begin = end;
    }
    std::mem::swap(pairs, tmp);
}

/// Buffers reused by every snapshot of a key group on this thread: a
/// snapshot writes thousands of key groups, and fresh buffers for each cost
/// more page faults than the encoding itself.
#[derive(Default)]
struct WriteScratch {
    bytes: Vec<u8>,
    entries: Vec<(u64, (usize, usize))>,
    tmp: Vec<(u64, (usize, usize))>,
    starts: Vec<u32>,
}

thread_local! {
    static WRITE_SCRATCH: std::cell::RefCell<WriteScratch> = std::cell::RefCell::default();
}

/// Snapshot and restore of one key group's section.
///
/// Section layout (every number a bincode varint through [`codec`]):
/// `count`, then `count` entries sorted by the key's stable hash (equal
/// hashes by encoded key bytes), each the encoded key followed by the
/// container's encoding of its value.
impl<K: StateKey + Eq + Serialize + DeserializeOwned, T> Tables<K, T> {
    pub(crate) fn write_key_group(
        &self,
        key_group: KeyGroup,
        out: &mut Vec<u8>,
        mut write_value: impl FnMut(&T, &mut Vec<u8>, &str) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let group = &self.groups[self.group_index(key_group)?];
        // Encode every entry in the table's memory order (sequential reads),
        // then order the encoded entries by stable hash: a u64 compare, and
        // the order of the hash space the native assigner cuts into key
        // groups. Entries of keys with equal hashes are ordered by their
        // bytes, which orders them by key (bincode encodings are
        // self-delimiting, so no key's encoding is a prefix of another's).
        // The order never depends on the table's history.
        WRITE_SCRATCH.with(|cell| {
            // A value's Serialize impl could snapshot state itself (and so
            // re-enter); it then gets fresh buffers.
            let mut fresh = WriteScratch::default();
            let mut borrowed = cell.try_borrow_mut();
            let scratch = match borrowed.as_deref_mut() {
                Ok(s) => s,
                Err(_) => &mut fresh,
            };
            let WriteScratch {
                bytes,
                entries,
                tmp,
                starts,
            } = scratch;
            bytes.clear();
            entries.clear();
            for slot in group.iter() {
                let start = bytes.len();
                codec::encode_into(&slot.key, bytes, &self.name)?;
                write_value(&slot.value, bytes, &self.name)?;
                entries.push((slot.hash, (start, bytes.len())));
            }
            sort_by_hash(entries, tmp, starts);
            let entry = |&(_, (a, b)): &(u64, (usize, usize))| &bytes[a..b];
            let mut i = 0;
            while i < entries.len() {
                let h = entries[i].0;
                let run = entries[i..].iter().take_while(|e| e.0 == h).count();
                if run > 1 {
                    entries[i..i + run].sort_by(|a, b| entry(a).cmp(entry(b)));
                }
                i += run;
            }
            codec::encode_into(&(entries.len() as u64), out, &self.name)?;
            out.reserve(bytes.len());
            for e in entries.iter() {
                out.extend_from_slice(entry(e));
            }
            Ok(())
        })
    }

    /// Decodes a section written by [`write_key_group`](Self::write_key_group)
    /// and inserts its entries, each into its key group under the bound
    /// assigner. Entries whose key group `filter` rejects are skipped; any
    /// other entry outside the owned range is an error. Returns the number of
    /// entries inserted.
    pub(crate) fn read_key_group(
        &mut self,
        key_group: KeyGroup,
        bytes: &[u8],
        filter: Option<&dyn Fn(KeyGroup) -> bool>,
        mut read_value: impl FnMut(&[u8], &str) -> Result<(T, usize), StateError>,
    ) -> Result<usize, StateError> {
        if !self.bound {
            return Err(self.outside(key_group));
        }
        let ctx = |pos: usize, e: StateError| decode_context(e, &self.name, key_group, pos);
        let (count, mut pos) =
            codec::decode_prefix::<u64>(bytes, &self.name).map_err(|e| ctx(0, e))?;
        // Distinct keys have distinct encodings, so at most one key encodes to
        // zero bytes: a valid count never exceeds the bytes left plus one.
        let left = (bytes.len() - pos) as u64;
        if count > left + 1 {
            return Err(self.decode_error(
                key_group,
                pos,
                format!("entry count {count} exceeds the {left} bytes left"),
            ));
        }
        let mut inserted = 0;
        for _ in 0..count {
            let entry_pos = pos;
            let (key, used) =
                codec::decode_prefix::<K>(&bytes[pos..], &self.name).map_err(|e| ctx(pos, e))?;
            pos += used;
            let (value, used) = read_value(&bytes[pos..], &self.name).map_err(|e| ctx(pos, e))?;
            pos += used;
            let hash = key.stable_hash();
            let kg = key_group_of(&self.assigner, hash, &key)?;
            if let Some(f) = filter {
                if !f(kg) {
                    continue;
                }
            }
            let Some(idx) = self.range.index_of(kg) else {
                return Err(self.outside(kg));
            };
            let th = table_hash(hash);
            match self.groups[idx].entry(th, |s| s.key == key, |s| table_hash(s.hash)) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(self.decode_error(
                        key_group,
                        entry_pos,
                        "duplicate key (the section is corrupt or was read twice)".to_owned(),
                    ));
                }
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(Slot { hash, key, value });
                    self.len += 1;
                    inserted += 1;
                }
            }
        }
        if pos != bytes.len() {
            return Err(self.decode_error(
                key_group,
                pos,
                format!("{} trailing bytes after the last entry", bytes.len() - pos),
            ));
        }
        Ok(inserted)
    }

    fn decode_error(&self, key_group: KeyGroup, pos: usize, message: String) -> StateError {
        StateError::Decode {
            state: self.name.clone(),
            message: format!("key group {key_group}, byte {pos}: {message}"),
        }
    }
}

/// Adds the key group and byte position to a codec error.
fn decode_context(e: StateError, state: &str, key_group: KeyGroup, pos: usize) -> StateError {
    match e {
        StateError::Decode { message, .. } => StateError::Decode {
            state: state.to_owned(),
            message: format!("key group {key_group}, byte {pos}: {message}"),
        },
        other => other,
    }
}

/// Decodes a sequence count and checks it against the bytes left, so a
/// corrupt count can neither allocate nor loop without bound.
pub(crate) fn decode_count(bytes: &[u8], state: &str) -> Result<(u64, usize), StateError> {
    let (count, used) = codec::decode_prefix::<u64>(bytes, state)?;
    let left = (bytes.len() - used) as u64;
    if count > left && count > MAX_ZERO_BYTE_ITEMS {
        return Err(StateError::Decode {
            state: state.to_owned(),
            message: format!("item count {count} exceeds the {left} bytes left"),
        });
    }
    Ok((count, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_sort_sorts_uniform_skewed_and_colliding_hashes() {
        let mut seed = 1u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed
        };
        let inputs: Vec<Vec<u64>> = vec![
            (0..5000).map(|_| next()).collect(),
            (0..5000).map(|_| next() % 7).collect(),
            (0..5000)
                .map(|i| if i % 2 == 0 { 0 } else { u64::MAX })
                .collect(),
            (0..5000).map(|i| 1u64 << (i % 64)).collect(),
            vec![42; 100],
            (0..63).rev().collect(),
        ];
        for hashes in inputs {
            let items: Vec<u32> = (0..hashes.len() as u32).collect();
            let mut sorted: Vec<(u64, u32)> =
                hashes.iter().copied().zip(items.iter().copied()).collect();
            sort_by_hash(&mut sorted, &mut Vec::new(), &mut Vec::new());
            let mut expected = hashes.clone();
            expected.sort_unstable();
            assert_eq!(sorted.iter().map(|p| p.0).collect::<Vec<_>>(), expected);
            let mut seen: Vec<u32> = sorted.iter().map(|p| p.1).collect();
            seen.sort_unstable();
            assert_eq!(seen, items, "every item exactly once");
        }
    }
}
