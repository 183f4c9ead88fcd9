//! The storage shared by the keyed containers: one [`OrderedTable`] per
//! owned key group, indexed by `key_group - range.start`.
//!
//! Hot path: one stable hash of the key, from which the native key group is
//! derived (`((hash >> 32) * max_p) >> 32`) and the entry is found (its home
//! in the key group's table is the hash's place in the key group's hash
//! interval). The key is hashed once; its hash is kept in the slot so a table
//! that grows never rehashes keys. Flink mode additionally computes the Java
//! hash code for the key group.
//!
//! Each table keeps its entries sorted by stable hash (as kept: lowest bit
//! set), which is the order of a snapshot section (ties by encoded key): a
//! snapshot encodes a key group in one sequential pass, and only entries of
//! equal kept hashes (rare for any real key type) are sorted, by full hash
//! and then bytes.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{
    AssignerKind, KeyGroup, KeyGroupAssigner, KeyGroupRange, MaxParallelism, native_hash_interval,
    native_key_group_for_hash,
};

use super::key::KeyQuery;
use super::ordered::{HashSpan, OrderedTable};

/// Name of a container that was never given one.
pub(crate) const UNNAMED: &str = "<unnamed>";

/// Lists of more zero-byte elements than this are rejected as corrupt (no
/// unbounded loops or allocation from a corrupt count).
pub(crate) const MAX_ZERO_BYTE_ITEMS: u64 = 1 << 16;

/// A `u32` set through `&self` (a snapshot takes `&self`, and the tables must
/// stay `Sync`), cloned by value. Only ever a hint, so `Relaxed` suffices.
#[derive(Default)]
struct Hint(AtomicU32);

impl Hint {
    fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }

    fn set(&self, v: u32) {
        self.0.store(v, Relaxed)
    }
}

impl Clone for Hint {
    fn clone(&self) -> Self {
        Self(AtomicU32::new(self.get()))
    }
}

/// The hashes `key_group` holds under `assigner`: its interval of the hash
/// space in native mode, every hash in Flink mode.
fn span_of(assigner: &KeyGroupAssigner, key_group: KeyGroup) -> HashSpan {
    match assigner.kind() {
        AssignerKind::Native => {
            let (lo, hi) = native_hash_interval(key_group, assigner.max_parallelism());
            // Upper 32 bits in [lo, hi): hashes lo << 32 ..= (hi << 32) - 1.
            HashSpan::new(lo << 32, (hi << 32).wrapping_sub(1)).unwrap_or(HashSpan::ALL)
        }
        AssignerKind::Flink => HashSpan::ALL,
    }
}

/// Entries of one keyed state, partitioned by key group.
#[derive(Clone)]
pub(crate) struct Tables<K, T> {
    name: String,
    assigner: KeyGroupAssigner,
    range: KeyGroupRange,
    bound: bool,
    groups: Vec<OrderedTable<K, T>>,
    /// Encoded bytes per entry in the last snapshot of a key group, in
    /// sixteenths: [`encoded_size_hint`](Self::encoded_size_hint).
    bytes_per_entry_x16: Hint,
}

impl<K, T> Default for Tables<K, T> {
    fn default() -> Self {
        Self {
            name: UNNAMED.to_owned(),
            assigner: KeyGroupAssigner::native(MaxParallelism::new(1).expect("1 is valid")),
            range: KeyGroupRange::EMPTY,
            bound: false,
            groups: Vec::new(),
            bytes_per_entry_x16: Hint::default(),
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

    /// The number of entries: the sum over the owned key groups (kept by
    /// each table, so that no caught panic in user code can leave a total
    /// out of step).
    pub(crate) fn len(&self) -> usize {
        self.groups.iter().map(OrderedTable::len).sum()
    }

    /// About how many bytes a snapshot of every key group would take, from
    /// the last key group snapshotted (0 before any): lets a snapshot
    /// reserve its buffer once instead of growing it by doubling.
    pub(crate) fn encoded_size_hint(&self) -> usize {
        self.len()
            .saturating_mul(self.bytes_per_entry_x16.get() as usize)
            / 16
    }

    pub(crate) fn clear(&mut self) {
        for g in &mut self.groups {
            g.clear();
        }
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
        for (hash, key, _) in self.groups.iter().flat_map(|g| g.iter()) {
            let kg = key_group_of(&assigner, hash, key)?;
            if !range.contains(kg) {
                return Err(StateError::KeyGroupOutsideRange {
                    state: self.name.clone(),
                    key_group: kg,
                    range,
                });
            }
        }
        let old = std::mem::take(&mut self.groups);
        self.groups = range
            .iter()
            .map(|kg| OrderedTable::new(span_of(&assigner, kg)))
            .collect();
        self.assigner = assigner;
        self.range = range;
        self.bound = true;
        for (hash, key, value) in old.into_iter().flat_map(OrderedTable::into_entries) {
            let kg = key_group_of(&assigner, hash, &key)?;
            let idx = (kg - range.start()) as usize;
            self.groups[idx].insert_unique(hash, key, value);
        }
        Ok(())
    }

    /// The index of `key`'s key group in `groups`, and its stable hash.
    #[inline]
    fn locate<Q: StateKey + ?Sized>(&self, key: &Q) -> Result<(usize, u64), StateError> {
        let hash = key.stable_hash();
        let kg = key_group_of(&self.assigner, hash, key)?;
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
        Ok(self.groups[idx].find(hash, |k| key.matches(k)))
    }

    #[inline]
    pub(crate) fn get_mut<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<&mut T>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        Ok(self.groups[idx].find_mut(hash, |k| key.matches(k)))
    }

    #[inline]
    pub(crate) fn get_or_insert_with<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        default: impl FnOnce() -> T,
    ) -> Result<&mut T, StateError> {
        let (idx, hash) = self.locate(&key)?;
        let group = &mut self.groups[idx];
        Ok(match group.find_or_vacancy(hash, |k| key.matches(k)) {
            Ok(i) => group.value_at(i),
            Err(vacancy) => group.fill(vacancy, key.into_key(), default()),
        })
    }

    pub(crate) fn insert<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        value: T,
    ) -> Result<Option<T>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        let group = &mut self.groups[idx];
        match group.find_or_vacancy(hash, |k| key.matches(k)) {
            Ok(i) => Ok(Some(std::mem::replace(group.value_at(i), value))),
            Err(vacancy) => {
                group.fill(vacancy, key.into_key(), value);
                Ok(None)
            }
        }
    }

    pub(crate) fn remove<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<(K, T)>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        Ok(self.groups[idx].remove(hash, |k| key.matches(k)))
    }

    /// Applies `f` to the value of `key`, if it has one, and removes the
    /// entry if `f` says so; one lookup.
    pub(crate) fn modify_or_remove<Q: KeyQuery<K>, R>(
        &mut self,
        key: Q,
        f: impl FnOnce(&mut T) -> (R, bool),
    ) -> Result<Option<R>, StateError> {
        let (idx, hash) = self.locate(&key)?;
        Ok(self.groups[idx].modify_or_remove(hash, |k| key.matches(k), f))
    }

    /// Keeps only the entries for which `f` returns true.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &mut T) -> bool) {
        for g in &mut self.groups {
            g.retain(&mut f);
        }
    }

    /// Every entry, key group by key group, each in stable-hash order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &T)> + '_ {
        self.groups
            .iter()
            .flat_map(|g| g.iter().map(|(_, k, v)| (k, v)))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut T)> + '_ {
        self.groups.iter_mut().flat_map(OrderedTable::iter_mut)
    }

    pub(crate) fn iter_key_group(
        &self,
        key_group: KeyGroup,
    ) -> Result<impl Iterator<Item = (&K, &T)> + '_, StateError> {
        let idx = self.group_index(key_group)?;
        Ok(self.groups[idx].iter().map(|(_, k, v)| (k, v)))
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

/// Sorts the entries at `out[run[0].1..]`, which begin at the offsets in
/// `run` (in order, each with its key's stable hash) and are of keys whose
/// hashes the table keeps equal, by hash and then by their bytes. Bytes
/// order them by key: bincode encodings are self-delimiting, so no key's
/// encoding is a prefix of another's, and distinct keys differ before
/// either encoding ends.
#[cold]
#[inline(never)]
fn sort_equal_hash_run(out: &mut [u8], run: &[(u64, usize)]) {
    let base = run[0].1;
    // Runs are rare (equal kept hashes), so a plain copy to sort from.
    let copy = out[base..].to_vec();
    let end = out.len() - base;
    let mut entries: Vec<(u64, &[u8])> = run
        .iter()
        .zip(run[1..].iter().map(|&(_, s)| s - base).chain([end]))
        .map(|(&(hash, s), e)| (hash, &copy[s - base..e]))
        .collect();
    entries.sort_unstable();
    let mut at = base;
    for (_, e) in entries {
        out[at..at + e.len()].copy_from_slice(e);
        at += e.len();
    }
}

/// Snapshot and restore of one key group's section.
///
/// Section layout (every number a bincode varint through [`codec`]):
/// `count`, then `count` entries sorted by the key's stable hash (equal
/// hashes by encoded key bytes), each the encoded key followed by the
/// container's encoding of its value.
impl<K: StateKey + Eq + Serialize + DeserializeOwned, T> Tables<K, T> {
    /// Appends the section of `key_group` to `out`: the table is already in
    /// section order, so this is one sequential pass that encodes each
    /// entry; only entries of equal hashes are then sorted by their bytes.
    pub(crate) fn write_key_group(
        &self,
        key_group: KeyGroup,
        out: &mut Vec<u8>,
        mut write_value: impl FnMut(&T, &mut Vec<u8>, &str) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let group = &self.groups[self.group_index(key_group)?];
        let n = group.len();
        codec::encode_into(&(n as u64), out, &self.name)?;
        let start = out.len();
        // The table keeps hashes with their lowest bit set, and orders
        // entries by that. Each entry of the current run of equal kept
        // hashes (empty while they differ): its key's hash and where it
        // starts.
        let mut run: Vec<(u64, usize)> = Vec::new();
        let mut prev: Option<(u64, usize, &K)> = None;
        for (hash, key, value) in group.iter() {
            let at = out.len();
            match prev {
                Some((h, prev_at, prev_key)) if h == hash => {
                    if run.is_empty() {
                        run.push((prev_key.stable_hash(), prev_at));
                    }
                    run.push((key.stable_hash(), at));
                }
                _ if !run.is_empty() => {
                    sort_equal_hash_run(&mut out[..at], &run);
                    run.clear();
                }
                _ => {}
            }
            prev = Some((hash, at, key));
            codec::encode_into(key, out, &self.name)?;
            write_value(value, out, &self.name)?;
        }
        if !run.is_empty() {
            sort_equal_hash_run(out, &run);
        }
        if let Some(x16) = (out.len() - start).saturating_mul(16).checked_div(n) {
            self.bytes_per_entry_x16
                .set(x16.min(u32::MAX as usize) as u32);
        }
        Ok(())
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
        let mut inserted_count = 0;
        for i in 0..count {
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
            if i == 0 && kg == key_group {
                // Read into the key group it was written from (max
                // parallelism unchanged): make room once for the count, but
                // for no more slots than 8 bytes of them per byte of the
                // section, so that a corrupt count allocates little more
                // than what was read (a table that needs more grows).
                let rest = usize::try_from(count).unwrap_or(usize::MAX);
                let slot = std::mem::size_of::<(u64, K, T)>().max(1);
                let by_bytes = bytes.len().saturating_mul(8) / slot;
                self.groups[idx].reserve(rest.min(by_bytes.max(1)));
            }
            // Entries come in hash order, so each is appended (no search):
            // linear in the section, also when key groups are re-bucketed.
            if !self.groups[idx].insert_sorted_if_absent(hash, key, value) {
                return Err(self.decode_error(
                    key_group,
                    entry_pos,
                    "duplicate key (the section is corrupt or was read twice)".to_owned(),
                ));
            }
            inserted_count += 1;
        }
        if pos != bytes.len() {
            return Err(self.decode_error(
                key_group,
                pos,
                format!("{} trailing bytes after the last entry", bytes.len() - pos),
            ));
        }
        Ok(inserted_count)
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

    use crate::hash::{StableHash, StableHasher};
    use serde::Deserialize;

    /// A key whose stable hash has only five values: long runs of equal
    /// hashes, ordered by encoded key.
    #[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
    struct Weak(u64);

    impl StableHash for Weak {
        fn stable_hash_into(&self, h: &mut StableHasher) {
            h.write_bytes(&(self.0 % 5).to_le_bytes());
        }
    }
    impl StateKey for Weak {}

    /// A key whose stable hash comes in pairs that differ only in the
    /// lowest bit, which the tables do not keep: the snapshot must still
    /// order each pair by hash.
    #[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
    struct Paired(u64);

    impl StableHash for Paired {
        fn stable_hash_into(&self, h: &mut StableHasher) {
            h.write_bytes(&self.0.to_le_bytes());
        }

        fn stable_hash(&self) -> u64 {
            // The larger key of a pair has the smaller hash, so byte order
            // alone would give the wrong order.
            (wide(self.0 / 2) & !1) | u64::from(self.0 % 2 == 0)
        }
    }
    impl StateKey for Paired {}

    type Key<K> = fn(u64) -> K;

    fn wide(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn weak(i: u64) -> Weak {
        Weak(i)
    }

    fn new_table<K: StateKey + Eq>() -> Tables<K, i64> {
        let a = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
        Tables::new(a, a.max_parallelism().all_key_groups()).unwrap()
    }

    fn write_value(v: &i64, out: &mut Vec<u8>, name: &str) -> Result<(), StateError> {
        codec::encode_into(v, out, name)
    }

    /// Every owned key group's section, as `write_key_group` writes it.
    fn sections<K: StateKey + Eq + Serialize + DeserializeOwned>(
        t: &Tables<K, i64>,
    ) -> Vec<Vec<u8>> {
        t.range
            .iter()
            .map(|kg| {
                let mut out = Vec::new();
                t.write_key_group(kg, &mut out, write_value).unwrap();
                out
            })
            .collect()
    }

    /// The sections as the format defines them, computed the slow way.
    fn expected<K: StateKey + Eq + Serialize + DeserializeOwned>(
        t: &Tables<K, i64>,
    ) -> Vec<Vec<u8>> {
        t.range
            .iter()
            .map(|kg| {
                let mut entries: Vec<(u64, Vec<u8>, Vec<u8>)> = t
                    .iter_key_group(kg)
                    .unwrap()
                    .map(|(k, v)| {
                        let mut key = Vec::new();
                        codec::encode_into(k, &mut key, "t").unwrap();
                        let mut value = Vec::new();
                        codec::encode_into(v, &mut value, "t").unwrap();
                        (k.stable_hash(), key, value)
                    })
                    .collect();
                entries.sort();
                let mut out = Vec::new();
                codec::encode_into(&(entries.len() as u64), &mut out, "t").unwrap();
                for (_, key, value) in entries {
                    out.extend(key);
                    out.extend(value);
                }
                out
            })
            .collect()
    }

    /// A table restored from `sections` (one per key group).
    fn restored<K: StateKey + Eq + Serialize + DeserializeOwned>(
        sections: &[Vec<u8>],
    ) -> Tables<K, i64> {
        let mut r = new_table::<K>();
        for (kg, bytes) in r.range.iter().zip(sections) {
            r.read_key_group(kg, bytes, None, |b, name| {
                codec::decode_prefix::<i64>(b, name)
            })
            .unwrap();
        }
        r
    }

    /// A table with `keys` inserted in that order, never snapshotted.
    fn fresh<K: StateKey + Eq + Serialize + DeserializeOwned>(
        key: Key<K>,
        keys: impl IntoIterator<Item = u64>,
    ) -> Tables<K, i64> {
        let mut t = new_table();
        for i in keys {
            t.insert(key(i), i as i64).unwrap();
        }
        t
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *seed >> 33
    }

    fn histories_give_one_snapshot<K: StateKey + Eq + Serialize + DeserializeOwned + Clone>(
        key: Key<K>,
        n: u64,
    ) {
        let want = expected(&fresh(key, 0..n));
        assert_eq!(sections(&fresh(key, 0..n)), want, "insert order");
        assert_eq!(sections(&fresh(key, (0..n).rev())), want, "reverse order");

        // Extra keys inserted and snapshotted, then removed.
        let mut t = fresh(key, (0..n + n / 3).rev());
        sections(&t);
        for i in n..n + n / 3 {
            t.remove(key(i)).unwrap();
        }
        assert_eq!(sections(&t), want, "after removals");
        assert_eq!(sections(&t), want, "twice");

        // Half the keys, snapshotted, then the rest.
        let mut t = fresh(key, (0..n).filter(|i| i % 2 == 0));
        sections(&t);
        for i in (0..n).filter(|i| i % 2 == 1) {
            t.insert(key(i), i as i64).unwrap();
        }
        assert_eq!(sections(&t), want, "after inserts");

        // Restored from its own sections, then from a snapshotted state.
        let r = restored::<K>(&want);
        assert_eq!(sections(&r), want, "after restore");
        assert_eq!(sections(&r), want, "after restore, twice");

        // Cleared after a snapshot of other keys, then refilled.
        let mut t = fresh(key, n..2 * n);
        sections(&t);
        t.clear();
        for i in 0..n {
            t.insert(key(i), i as i64).unwrap();
        }
        assert_eq!(sections(&t), want, "after clear");

        // A clone of a snapshotted state, snapshotted and changed on its own.
        let mut t = fresh(key, 0..n + 1);
        sections(&t);
        let mut c = t.clone();
        c.remove(key(n)).unwrap();
        assert_eq!(sections(&c), want, "clone");
        t.remove(key(n)).unwrap();
        assert_eq!(sections(&t), want, "original after the clone");

        // Rebound (all slots move), after a snapshot.
        let mut t = fresh(key, 0..n);
        sections(&t);
        let (assigner, range) = t.binding().unwrap();
        t.bind(assigner, range).unwrap();
        assert_eq!(sections(&t), want, "after bind");
    }

    /// Entries of different lengths, with long runs of equal hashes (ties
    /// compared by bytes, across lengths).
    #[test]
    fn entries_with_equal_hashes_are_written_in_byte_order() {
        let value = |i: u64| {
            if i % 3 == 0 {
                i as i64
            } else {
                (i as i64).wrapping_mul(0x1234_5678_9abc_def1)
            }
        };
        let build = |keys: &mut dyn Iterator<Item = u64>| {
            let mut t = new_table::<Weak>();
            for i in keys {
                t.insert(Weak(wide(i)), value(i)).unwrap();
            }
            t
        };
        let n = 3000;
        let want = expected(&build(&mut (0..n)));
        let longest = want.iter().map(|s| s.len()).max().unwrap();
        assert!(longest > 16 * 100, "sections hold many entries");
        let mut t = build(&mut (0..n).rev());
        assert_eq!(sections(&t), want, "reverse insert order");
        assert_eq!(sections(&t), want, "twice");
        t.insert(Weak(wide(n)), value(n)).unwrap();
        t.remove(Weak(wide(n))).unwrap();
        t.remove(Weak(wide(1))).unwrap();
        t.insert(Weak(wide(1)), value(1)).unwrap();
        assert_eq!(sections(&t), want, "after changes");
        let r = restored::<Weak>(&want);
        for i in 0..n {
            assert_eq!(r.get(Weak(wide(i))).unwrap(), Some(&value(i)));
        }
    }

    /// A `retain` predicate that panics (and is caught) leaves every count
    /// in step with the entries: the sections still decode, and `len` is
    /// what they hold.
    #[test]
    fn a_panicking_retain_leaves_counts_in_step() {
        let mut t = fresh(wide, 0..5_000);
        let mut seen = 0;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.retain(|_, v| {
                seen += 1;
                assert!(seen < 2_500, "the predicate fails half way");
                *v % 2 == 0
            })
        }));
        assert!(caught.is_err());
        let held: usize = t.iter().count();
        assert_eq!(t.len(), held);
        let written = sections(&t);
        assert_eq!(written, expected(&t));
        let r = restored::<u64>(&written);
        assert_eq!(r.len(), held);
    }

    /// A restore is linear in the entries it reads, whatever the size of a
    /// key group: one section of a million entries, restored into its own
    /// key group and re-bucketed (max parallelism 1 -> 4: each entry into
    /// one of four tables that grow as entries come), within a few slot
    /// steps per entry (searches, shifts, rebuilds). Entries arrive in hash
    /// order; inserted one by one with a search each, they pile into one
    /// cluster and every insert walks it.
    #[test]
    fn restoring_a_million_entry_key_group_takes_linear_steps() {
        let n = 1_000_000u64;
        let one = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
        let mut t = Tables::<u64, i64>::new(one, KeyGroupRange::new(0, 0)).unwrap();
        for i in 0..n {
            t.insert(wide(i), i as i64).unwrap();
        }
        let mut section = Vec::new();
        t.write_key_group(0, &mut section, write_value).unwrap();
        for max_p in [1, 4] {
            let a = KeyGroupAssigner::native(MaxParallelism::new(max_p).unwrap());
            let mut r = Tables::<u64, i64>::new(a, a.max_parallelism().all_key_groups()).unwrap();
            let before = super::super::ordered::STEPS.with(|s| s.get());
            let inserted = r
                .read_key_group(0, &section, None, |b, name| {
                    codec::decode_prefix::<i64>(b, name)
                })
                .unwrap();
            let steps = super::super::ordered::STEPS.with(|s| s.get()) - before;
            assert_eq!(inserted as u64, n);
            assert!(
                steps <= 6 * n,
                "{steps} slot steps to restore {n} entries at max parallelism {max_p}"
            );
            for i in (0..n).step_by(997) {
                assert_eq!(r.get(wide(i)).unwrap(), Some(&(i as i64)));
            }
            if max_p == 1 {
                let mut again = Vec::new();
                r.write_key_group(0, &mut again, write_value).unwrap();
                assert!(
                    again == section,
                    "the restored key group snapshots as before"
                );
            }
        }
    }

    /// A section whose count claims far more entries than it holds (corrupt,
    /// though it passed its checksum) reserves slots in proportion to its
    /// bytes, not to the count, and fails on the entries it lacks.
    #[test]
    fn a_corrupt_count_reserves_in_proportion_to_the_bytes() {
        let one = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
        let mut t = Tables::<u64, i64>::new(one, KeyGroupRange::new(0, 0)).unwrap();
        // A count of 99,000 (within the bytes, so it passes the count
        // check), then 100 kB of one repeated two-byte entry.
        let mut section = Vec::new();
        codec::encode_into(&99_000u64, &mut section, "t").unwrap();
        section.resize(100_000, 0);
        let err = t
            .read_key_group(0, &section, None, |b, name| {
                codec::decode_prefix::<i64>(b, name)
            })
            .unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
        let slot_bytes = std::mem::size_of::<Option<(u64, u64, i64)>>();
        let reserved = t.groups[0].slot_count() * slot_bytes;
        assert!(
            reserved <= 16 * section.len(),
            "{reserved} bytes of slots for a {}-byte section",
            section.len()
        );
    }

    #[test]
    fn same_key_set_gives_the_same_snapshot_whatever_the_history() {
        histories_give_one_snapshot(wide, 20_000);
        histories_give_one_snapshot(weak, 600);
        histories_give_one_snapshot(Paired, 5_000);
    }

    fn mutate_and_snapshot<K: StateKey + Eq + Serialize + DeserializeOwned + Clone>(
        key: Key<K>,
        universe: u64,
        rounds: usize,
    ) {
        let mut seed = 7;
        let mut t = fresh(key, 0..universe / 2);
        let mut live: std::collections::BTreeMap<u64, i64> =
            (0..universe / 2).map(|i| (i, i as i64)).collect();
        for round in 0..rounds {
            // A different mix every round: inserts of new keys, removals,
            // value updates, sometimes nothing.
            let changes = match round % 4 {
                0 => universe / 50,
                1 => universe / 3,
                2 => 0,
                _ => 3,
            };
            for _ in 0..changes {
                let i = lcg(&mut seed) % universe;
                match lcg(&mut seed) % 3 {
                    0 => {
                        t.remove(key(i)).unwrap();
                        live.remove(&i);
                    }
                    _ => {
                        let v = lcg(&mut seed) as i64;
                        t.insert(key(i), v).unwrap();
                        live.insert(i, v);
                    }
                }
            }
            let mut reference = new_table::<K>();
            for (&i, &v) in &live {
                reference.insert(key(i), v).unwrap();
            }
            let want = expected(&reference);
            assert_eq!(sections(&t), want, "round {round}");
            assert_eq!(sections(&reference), want, "round {round}, fresh state");
        }
    }

    #[test]
    fn snapshot_after_changes_matches_a_fresh_state() {
        mutate_and_snapshot(wide, 30_000, 12);
        mutate_and_snapshot(weak, 900, 12);
        mutate_and_snapshot(Paired, 6_000, 12);
    }
}
