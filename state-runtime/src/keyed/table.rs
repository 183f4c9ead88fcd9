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
//!
//! Each slot also keeps its rank: its position in the last snapshot of its
//! key group. The order depends only on the key set, which changes slowly
//! between checkpoints while values change constantly, so the next snapshot
//! places ranked entries by rank, checks that they are still in order, and
//! sorts only the keys added since (the ranks are rewritten once the keys
//! added or removed since are more than a few percent of the key group).
//! The ranks are a hint: a snapshot whose placed entries are out of order
//! sorts them all, so the output never depends on them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

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

/// Rank of a slot that has none.
const UNRANKED: u32 = u32::MAX;

/// A `u32` set through `&self` (a snapshot takes `&self`, and the tables must
/// stay `Sync`), cloned by value. Only ever a hint, so `Relaxed` suffices:
/// racing snapshots of one state compute, and store, the same ranks.
#[derive(Default)]
struct Rank(AtomicU32);

impl Rank {
    fn new(v: u32) -> Self {
        Self(AtomicU32::new(v))
    }

    #[inline]
    fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }

    #[inline]
    fn set(&self, v: u32) {
        self.0.store(v, Relaxed)
    }
}

impl Clone for Rank {
    fn clone(&self) -> Self {
        Self::new(self.get())
    }
}

/// One entry: the key's stable hash, the key, the container's per-key value.
/// (Its rank lives beside the table, in [`Tables::ranks`].)
#[derive(Clone)]
pub(crate) struct Slot<K, T> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) value: T,
}

impl<K, T> Slot<K, T> {
    fn new(hash: u64, key: K, value: T) -> Self {
        Self { hash, key, value }
    }
}

/// Ranks of one group, indexed by hashbrown bucket index, for a table of
/// `num_buckets` buckets.
fn unranked(num_buckets: usize) -> Vec<Rank> {
    (0..num_buckets).map(|_| Rank::new(UNRANKED)).collect()
}

/// Makes room for one more entry in a group's table, before any
/// `HashTable::entry` call: that call grows a full table (or rehashes it in
/// place) even for a key that is present, moving every entry. The move
/// happens here instead, where the group's ranks are dropped with it (the
/// next snapshot sorts the group and ranks it again).
#[inline]
fn make_room<K, T>(group: &mut HashTable<Slot<K, T>>, ranks: &mut Vec<Rank>, handed_out: &Rank) {
    if group.len() == group.capacity() {
        group.reserve(1, |s| table_hash(s.hash));
        *ranks = unranked(group.num_buckets());
        handed_out.set(0);
    }
}

/// Records that the entry in `bucket` of a group is new (unranked). The
/// group's ranks are sized to its table by [`make_room`].
#[inline]
fn note_new(ranks: &[Rank], bucket: usize) {
    if let Some(r) = ranks.get(bucket) {
        r.set(UNRANKED);
    }
}

/// Entries of one keyed state, partitioned by key group.
#[derive(Clone)]
pub(crate) struct Tables<K, T> {
    name: String,
    assigner: KeyGroupAssigner,
    range: KeyGroupRange,
    bound: bool,
    groups: Vec<HashTable<Slot<K, T>>>,
    /// Per group, per hashbrown bucket: the rank of the entry in that bucket
    /// (its position in the last snapshot of its key group), kept beside the
    /// table so that slots stay small. Kept sized to the table's buckets by
    /// [`make_room`], the one place a table grows.
    ranks: Vec<Vec<Rank>>,
    /// Per group: how many ranks its last snapshot handed out. An entry whose
    /// rank is below this count was (probably) at that position.
    ranked: Vec<Rank>,
    /// Encoded bytes per entry in the last snapshot of a key group, in
    /// sixteenths: [`encoded_size_hint`](Self::encoded_size_hint).
    bytes_per_entry_x16: Rank,
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
            ranks: Vec::new(),
            ranked: Vec::new(),
            bytes_per_entry_x16: Rank::default(),
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

    /// About how many bytes a snapshot of every key group would take, from
    /// the last key group snapshotted (0 before any): lets a snapshot
    /// reserve its buffer once instead of growing it by doubling.
    pub(crate) fn encoded_size_hint(&self) -> usize {
        self.len
            .saturating_mul(self.bytes_per_entry_x16.get() as usize)
            / 16
    }

    pub(crate) fn clear(&mut self) {
        for g in &mut self.groups {
            g.clear();
        }
        for r in &mut self.ranked {
            *r = Rank::default();
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
        self.ranked = (0..range.len()).map(|_| Rank::default()).collect();
        self.assigner = assigner;
        self.range = range;
        self.bound = true;
        for slot in old.into_iter().flat_map(|g| g.into_iter()) {
            let kg = key_group_of(&assigner, slot.hash, &slot.key)?;
            let idx = (kg - range.start()) as usize;
            self.groups[idx].insert_unique(table_hash(slot.hash), slot, |s| table_hash(s.hash));
        }
        self.ranks = self
            .groups
            .iter()
            .map(|g| unranked(g.num_buckets()))
            .collect();
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
        make_room(
            &mut self.groups[idx],
            &mut self.ranks[idx],
            &self.ranked[idx],
        );
        let entry = self.groups[idx].entry(th, |s| key.matches(&s.key), |s| table_hash(s.hash));
        let slot = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                let o = v.insert(Slot::new(hash, key.into_key(), default()));
                note_new(&self.ranks[idx], o.bucket_index());
                o.into_mut()
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
        make_room(
            &mut self.groups[idx],
            &mut self.ranks[idx],
            &self.ranked[idx],
        );
        match self.groups[idx].entry(th, |s| key.matches(&s.key), |s| table_hash(s.hash)) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Ok(Some(std::mem::replace(&mut o.get_mut().value, value)))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                let o = v.insert(Slot::new(hash, key.into_key(), value));
                note_new(&self.ranks[idx], o.bucket_index());
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

/// Buckets of at most this many pairs are sorted by insertion.
const INSERTION_MAX: usize = 32;

/// Sorts the pairs by hash. Stable hashes are uniform, so one scatter into
/// about `n / BUCKET_FILL` buckets by position in `[min, max]` leaves
/// buckets of a few pairs each, which insertion sort finishes in place.
/// Skewed input only makes some buckets bigger; those are sorted by
/// comparison, so the result is always sorted.
fn sort_by_hash<T: Copy + Default>(
    pairs: &mut Vec<(u64, T)>,
    tmp: &mut Vec<(u64, T)>,
    starts: &mut Vec<u32>,
) {
    /// Pairs per bucket on average.
    const BUCKET_FILL: usize = 2;
    let n = pairs.len();
    if n <= INSERTION_MAX {
        insertion_sort(pairs);
        return;
    }
    let buckets = n / BUCKET_FILL;
    let (min, max) = pairs
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    // bucket(h) = floor((h - min) * buckets / span) < buckets, as one
    // multiply-high: a monotone map, so sorted buckets give sorted output.
    let span = u128::from(max - min) + 1;
    let scale = ((buckets as u128) << 64) / span;
    let bucket = |h: u64| ((u128::from(h - min) * scale) >> 64) as usize;
    starts.clear();
    starts.resize(buckets + 1, 0);
    for p in pairs.iter() {
        starts[bucket(p.0) + 1] += 1;
    }
    for b in 0..buckets {
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
    for &end in &starts[..buckets] {
        let end = end as usize;
        let run = &mut tmp[begin..end];
        if run.len() <= INSERTION_MAX {
            insertion_sort(run);
        } else {
            run.sort_unstable_by_key(|p| p.0);
        }
        begin = end;
    }
    std::mem::swap(pairs, tmp);
}

/// Sorts a few pairs by hash.
#[inline]
fn insertion_sort<T: Copy>(run: &mut [(u64, T)]) {
    for i in 1..run.len() {
        let x = run[i];
        let mut j = i;
        while j > 0 && run[j - 1].0 > x.0 {
            run[j] = run[j - 1];
            j -= 1;
        }
        run[j] = x;
    }
}

/// Entries of at most this many bytes are copied as one fixed-size move.
const COPY_WIDTH: usize = 16;

/// An entry's place in [`WriteScratch`]: its index in table order (high 32
/// bits) and its encoded length (low 32 bits).
type Loc = u64;

/// The ranks of a key group are rewritten once more than `1 / RERANK` of
/// its entries are holes or unranked.
const RERANK: usize = 16;

/// Marks an empty place in an order being filled by rank.
const HOLE: Loc = Loc::MAX;

#[inline]
fn loc(index: usize, len: usize) -> Loc {
    ((index as u64) << 32) | len as u64
}

#[inline]
fn loc_index(l: Loc) -> usize {
    (l >> 32) as usize
}

#[inline]
fn loc_len(l: Loc) -> usize {
    (l & 0xffff_ffff) as usize
}

/// Buffers reused by every snapshot of a key group on this thread: a
/// snapshot writes thousands of key groups, and fresh buffers for each cost
/// page faults.
#[derive(Default)]
struct WriteScratch {
    /// The key group's entries, encoded in table order, `COPY_WIDTH` bytes
    /// each: entry `i` at `16 * i`, or, if longer than that, in `spill` at
    /// the offset written (as a little-endian `u64`) at `16 * i`. The fixed
    /// stride lets the copy into snapshot order find an entry without
    /// reading an offsets table first.
    bytes: Vec<u8>,
    /// Entries longer than `COPY_WIDTH`.
    spill: Vec<u8>,
    /// Encoded length of entry `i` (in table order).
    lens: Vec<u32>,
    /// `(stable hash, place)` in snapshot order.
    order: Vec<(u64, Loc)>,
    /// Entries without a usable rank.
    unranked: Vec<(u64, Loc)>,
    tmp: Vec<(u64, Loc)>,
    starts: Vec<u32>,
    /// Per table index, its position in the new order.
    ranks: Vec<u32>,
    /// Per table index, its hashbrown bucket.
    buckets: Vec<usize>,
}

thread_local! {
    /// Taken for the length of one key group's snapshot: a value's
    /// `Serialize` impl that snapshots state itself (and so re-enters) finds
    /// it empty and uses fresh buffers.
    static WRITE_SCRATCH: Cell<WriteScratch> = Cell::default();
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
        let idx = self.group_index(key_group)?;
        let mut scratch = WRITE_SCRATCH.with(Cell::take);
        let result = self.write_group(idx, &mut scratch, out, &mut write_value);
        WRITE_SCRATCH.with(|c| c.set(scratch));
        result
    }

    /// Encodes every entry of group `idx` in the table's memory order
    /// (sequential reads), orders them, and appends them to `out` in that
    /// order. The ranked entries are placed by rank (and checked), the rest
    /// sorted and merged in; the ranks are rewritten once enough changed.
    /// The order depends only on the key set: it is checked, and sorted from
    /// scratch if the ranks were wrong.
    fn write_group(
        &self,
        idx: usize,
        scratch: &mut WriteScratch,
        out: &mut Vec<u8>,
        write_value: &mut impl FnMut(&T, &mut Vec<u8>, &str) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let group = &self.groups[idx];
        let WriteScratch {
            bytes,
            spill,
            lens,
            order,
            unranked,
            tmp,
            starts,
            ranks,
            buckets,
        } = scratch;
        let group_ranks = &self.ranks[idx];
        // Every insert keeps the ranks sized to the table; if they are not,
        // none applies.
        let usable = group_ranks.len() == group.num_buckets();
        let handed_out = if usable {
            self.ranked[idx].get() as usize
        } else {
            0
        };
        if group.len() >= u32::MAX as usize {
            return Err(StateError::Encode {
                state: self.name.clone(),
                message: format!(
                    "{} entries in one key group (at most 2^32 - 2)",
                    group.len()
                ),
            });
        }
        bytes.clear();
        spill.clear();
        lens.clear();
        order.clear();
        order.resize(handed_out, (0, HOLE));
        unranked.clear();
        let mut encoded = 0;
        buckets.clear();
        for (i, bucket) in group.iter_buckets().enumerate() {
            let slot = group.get_bucket(bucket).expect("an occupied bucket");
            buckets.push(bucket);
            let start = bytes.len();
            codec::encode_into(&slot.key, bytes, &self.name)?;
            write_value(&slot.value, bytes, &self.name)?;
            let len = bytes.len() - start;
            if len > COPY_WIDTH {
                if len >= u32::MAX as usize {
                    return Err(StateError::Encode {
                        state: self.name.clone(),
                        message: format!("an entry of {len} bytes (at most 2^32 - 1)"),
                    });
                }
                let at = spill.len() as u64;
                spill.extend_from_slice(&bytes[start..]);
                bytes.truncate(start);
                bytes.extend_from_slice(&at.to_le_bytes());
            }
            // Pad to the stride with one fixed-size store (`resize` would
            // call memset for every entry).
            bytes.extend_from_slice(&[0; COPY_WIDTH]);
            bytes.truncate(start + COPY_WIDTH);
            lens.push(len as u32);
            encoded += len;
            // A plain store, no check for a rank taken twice: a lost entry
            // is noticed when the order is copied.
            let rank = if usable {
                group_ranks[bucket].get()
            } else {
                UNRANKED
            };
            match order.get_mut(rank as usize) {
                Some(e) => *e = (slot.hash, loc(i, len)),
                None => unranked.push((slot.hash, loc(i, len))),
            }
        }
        let n = bytes.len() / COPY_WIDTH;
        // Entries of keys with equal hashes are ordered by their bytes, which
        // orders them by key: bincode encodings are self-delimiting, so no
        // key's encoding is a prefix of another's, and distinct keys differ
        // before either encoding ends.
        let entry = |&(_, l): &(u64, Loc)| {
            let (at, len) = (loc_index(l) * COPY_WIDTH, loc_len(l));
            if len <= COPY_WIDTH {
                &bytes[at..at + len]
            } else {
                let from =
                    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
                &spill[from..from + len]
            }
        };
        let less =
            |a: &(u64, Loc), b: &(u64, Loc)| a.0 < b.0 || (a.0 == b.0 && entry(a) < entry(b));
        let sort = |v: &mut Vec<(u64, Loc)>, tmp: &mut Vec<(u64, Loc)>, starts: &mut Vec<u32>| {
            sort_by_hash(v, tmp, starts);
            let mut i = 0;
            while i < v.len() {
                let h = v[i].0;
                let run = v[i..].iter().take_while(|e| e.0 == h).count();
                if run > 1 {
                    v[i..i + run].sort_unstable_by(|a, b| entry(a).cmp(entry(b)));
                }
                i += run;
            }
        };
        // Appends the entries in `order` (skipping holes) to `out` and
        // returns how many; `None` (and `out` partly written) if they are
        // out of order.
        let copy = |order: &[(u64, Loc)], out: &mut Vec<u8>| {
            let mut prev: Option<&(u64, Loc)> = None;
            let mut copied = 0;
            for e in order {
                if e.1 == HOLE {
                    continue;
                }
                if prev.is_some_and(|p| !less(p, e)) {
                    return None;
                }
                prev = Some(e);
                copied += 1;
                let (at, len) = (loc_index(e.1) * COPY_WIDTH, loc_len(e.1));
                if len <= COPY_WIDTH {
                    // One fixed-size move instead of a memcpy call.
                    out.extend_from_slice(&bytes[at..at + COPY_WIDTH]);
                    out.truncate(out.len() - (COPY_WIDTH - len));
                } else {
                    out.extend_from_slice(entry(e));
                }
            }
            Some(copied)
        };

        codec::encode_into(&(n as u64), out, &self.name)?;
        let start = out.len();
        out.reserve(encoded);
        if let Some(x16) = encoded.saturating_mul(16).checked_div(n) {
            self.bytes_per_entry_x16
                .set(x16.min(u32::MAX as usize) as u32);
        }
        // Holes (removed keys) and unranked (new) keys cost every snapshot
        // until the ranks are rewritten, and rewriting them costs a pass
        // over the table: rewrite once they are more than 1/RERANK of the
        // key group. Unchanged ranks stay a valid hint: the placed entries
        // are still in order.
        let stale = (order.len() + 2 * unranked.len()).saturating_sub(n);
        let mut rerank = stale * RERANK > n;
        let mut copied = None;
        if unranked.is_empty() {
            copied = copy(order, out);
        } else {
            sort(unranked, tmp, starts);
            // Merge the placed entries (checking their order) with the
            // sorted unranked ones.
            tmp.clear();
            tmp.reserve(n);
            let mut rest = unranked.iter().peekable();
            let mut prev: Option<&(u64, Loc)> = None;
            let mut sorted = true;
            for e in order.iter().filter(|e| e.1 != HOLE) {
                if prev.is_some_and(|p| !less(p, e)) {
                    sorted = false;
                    break;
                }
                prev = Some(e);
                while let Some(u) = rest.next_if(|u| less(u, e)) {
                    tmp.push(*u);
                }
                tmp.push(*e);
            }
            if sorted {
                tmp.extend(rest);
                std::mem::swap(order, tmp);
                copied = copy(order, out);
            }
        }
        // Out of order, or fewer entries than the table has (two slots had
        // the same rank, and one overwrote the other): the ranks were wrong,
        // sort everything.
        if copied != Some(n) {
            out.truncate(start);
            order.clear();
            // Index `i` is the `i`-th entry of the pass above (`buckets`).
            order.extend(
                buckets
                    .iter()
                    .zip(lens.iter())
                    .enumerate()
                    .map(|(i, (&b, &len))| {
                        let hash = group.get_bucket(b).expect("an occupied bucket").hash;
                        (hash, loc(i, len as usize))
                    }),
            );
            sort(order, tmp, starts);
            let all = copy(order, out);
            debug_assert_eq!(all, Some(n));
            rerank = true;
        }
        if rerank {
            // Ranks fit a u32 below UNRANKED; a larger group keeps none.
            if n < UNRANKED as usize {
                ranks.clear();
                ranks.resize(n, UNRANKED);
                let entries = order.iter().filter(|e| e.1 != HOLE);
                for (pos, &(_, l)) in entries.enumerate() {
                    ranks[loc_index(l)] = pos as u32;
                }
                if usable {
                    for (&bucket, &rank) in buckets.iter().zip(ranks.iter()) {
                        group_ranks[bucket].set(rank);
                    }
                    self.ranked[idx].set(n as u32);
                } else {
                    self.ranked[idx].set(0);
                }
            } else {
                self.ranked[idx].set(0);
            }
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
            make_room(
                &mut self.groups[idx],
                &mut self.ranks[idx],
                &self.ranked[idx],
            );
            match self.groups[idx].entry(th, |s| s.key == key, |s| table_hash(s.hash)) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(self.decode_error(
                        key_group,
                        entry_pos,
                        "duplicate key (the section is corrupt or was read twice)".to_owned(),
                    ));
                }
                hashbrown::hash_table::Entry::Vacant(v) => {
                    let o = v.insert(Slot::new(hash, key, value));
                    note_new(&self.ranks[idx], o.bucket_index());
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

    impl<K: StateKey + Eq, T> Tables<K, T> {
        /// The rank kept for the entry in `bucket` of `key_group`.
        fn rank_of(&self, key_group: KeyGroup, bucket: usize) -> u32 {
            self.ranks[self.group_index(key_group).unwrap()][bucket].get()
        }
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

    /// Entries longer than the 16-byte stride of the write scratch (kept
    /// aside and found by offset), mixed with short ones, with long runs of
    /// equal hashes (ties compared by bytes across both kinds).
    #[test]
    fn long_and_short_entries_with_equal_hashes_are_written_in_order() {
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
        assert_eq!(sections(&t), want, "cold");
        assert_eq!(sections(&t), want, "by rank");
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

    /// `HashTable::entry` grows a full table even for a key that is present:
    /// an update of an existing key then moves every entry. The ranks must
    /// follow (dropped and rewritten by the next snapshot), not stay out of
    /// step with the table for good.
    #[test]
    fn a_table_grown_by_an_update_keeps_its_ranks_in_step() {
        let a = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
        let mut t = Tables::<u64, i64>::new(a, a.max_parallelism().all_key_groups()).unwrap();
        let mut i = 0;
        while t.groups[0].is_empty() || t.groups[0].len() < t.groups[0].capacity() {
            t.insert(wide(i), 0).unwrap();
            i += 1;
        }
        let n = t.len();
        assert_eq!(sections(&t), expected(&t));
        assert_eq!(t.ranked[0].get() as usize, n);
        let buckets = t.groups[0].num_buckets();
        t.insert(wide(0), 7).unwrap(); // present: an update
        assert!(
            t.groups[0].num_buckets() > buckets,
            "the update grew the table"
        );
        assert_eq!(sections(&t), expected(&t));
        assert_eq!(sections(&t), expected(&t));
        assert_eq!(
            t.ranked[0].get() as usize,
            n,
            "ranks rewritten after the growth"
        );
        let g = &t.groups[0];
        assert!(g.iter_buckets().all(|b| t.ranks[0][b].get() < n as u32));
    }

    #[test]
    fn same_key_set_gives_the_same_snapshot_whatever_the_history() {
        histories_give_one_snapshot(wide, 20_000);
        histories_give_one_snapshot(weak, 600);
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
    }

    fn wrong_ranks_are_ignored<K: StateKey + Eq + Serialize + DeserializeOwned>(
        key: Key<K>,
        n: u64,
    ) {
        let want = expected(&fresh(key, 0..n));
        /// A name, the new rank from (table index, old rank, count), the
        /// new count.
        type Corruption = (&'static str, fn(usize, u32, u32) -> u32, fn(u32) -> u32);
        let corruptions: [Corruption; 6] = [
            ("reversed", |_, r, c| c - 1 - r, |c| c),
            ("all zero", |_, _, _| 0, |c| c),
            ("table order", |i, _, _| i as u32, |c| c),
            ("shifted", |_, r, c| (r + 1) % c, |c| c),
            ("count too small", |_, r, _| r, |c| c / 2),
            (
                "count too large",
                |i, _, _| (i as u32).wrapping_mul(7),
                |c| c * 9,
            ),
        ];
        for (what, rank, count) in corruptions {
            let mut t = fresh(key, 0..n);
            assert_eq!(sections(&t), want, "{what}: first snapshot");
            // Values change (ranks must not care), then the ranks break.
            for i in (0..n).step_by(3) {
                t.insert(key(i), -(i as i64)).unwrap();
            }
            let want_now = expected(&t);
            for ((g, ranks), handed_out) in t.groups.iter().zip(&t.ranks).zip(&t.ranked) {
                let c = handed_out.get();
                if c == 0 {
                    continue;
                }
                for (i, b) in g.iter_buckets().enumerate() {
                    ranks[b].set(rank(i, ranks[b].get(), c));
                }
                handed_out.set(count(c));
            }
            assert_eq!(sections(&t), want_now, "{what}");
            assert_eq!(sections(&t), want_now, "{what}, twice");
        }
    }

    #[test]
    fn wrong_ranks_never_change_the_snapshot() {
        wrong_ranks_are_ignored(wide, 5_000);
        wrong_ranks_are_ignored(weak, 400);
    }

    /// Each slot's rank is its position in the last snapshot of its key
    /// group, so the next snapshot of an unchanged key set sorts nothing.
    #[test]
    fn ranks_are_the_positions_in_the_last_snapshot() {
        let mut t = fresh(wide, 0..10_000);
        let check = |t: &Tables<u64, i64>| {
            for (kg, section) in t.range.iter().zip(sections(t)) {
                let g = &t.groups[t.group_index(kg).unwrap()];
                let (count, mut pos) = codec::decode_prefix::<u64>(&section, "t").unwrap();
                assert_eq!(count as usize, g.len());
                assert_eq!(t.ranked[t.group_index(kg).unwrap()].get() as usize, g.len());
                for rank in 0..count as u32 {
                    let (k, used) = codec::decode_prefix::<u64>(&section[pos..], "t").unwrap();
                    pos += used;
                    let (_, used) = codec::decode_prefix::<i64>(&section[pos..], "t").unwrap();
                    pos += used;
                    let b = g
                        .find_bucket_index(table_hash(k.stable_hash()), |s| s.key == k)
                        .unwrap();
                    assert_eq!(t.rank_of(kg, b), rank);
                }
            }
        };
        assert!(t.iter().next().is_some());
        for (g, ranks) in t.groups.iter().zip(&t.ranks) {
            assert!(g.iter_buckets().all(|b| ranks[b].get() == UNRANKED));
        }
        check(&t);
        for i in (0..10_000).step_by(7) {
            t.remove(wide(i)).unwrap();
        }
        for i in 20_000..20_300 {
            t.insert(wide(i), 0).unwrap();
        }
        check(&t);
        t.insert(wide(1), 5).unwrap();
        check(&t);
        // A few new keys are sorted and merged in, but the ranks are kept
        // until more has changed.
        let counts: Vec<u32> = t.ranked.iter().map(Rank::get).collect();
        for i in 30_000..30_010 {
            t.insert(wide(i), 1).unwrap();
        }
        assert_eq!(sections(&t), expected(&t));
        assert_eq!(t.ranked.iter().map(Rank::get).collect::<Vec<_>>(), counts);
        for (g, ranks) in t.groups.iter().zip(&t.ranks) {
            let new = g
                .iter_buckets()
                .filter(|&b| g.get_bucket(b).unwrap().value == 1);
            assert!(new.map(|b| ranks[b].get()).all(|r| r == UNRANKED));
        }
        assert_eq!(sections(&t), expected(&t));
    }
}
