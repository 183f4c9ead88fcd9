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

use std::sync::atomic::{AtomicU32, Ordering::Acquire, Ordering::Relaxed, fence};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{
    AssignerKind, KeyGroup, KeyGroupAssigner, KeyGroupRange, MaxParallelism, native_hash_interval,
    native_key_group_for_hash,
};

use super::changes::Changes;
use super::frozen::{Decoders, Encoders, Frozen, FrozenKeyGroups, InFlight, release};
use super::group::{Group, PAGE_SPLIT};
use super::ordered::{HashSpan, OrderedTable};
use crate::key::KeyQuery;

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

/// Entries a restore reads into a key group before it sizes the key group's
/// pages for the rest (see [`expected_entries`]).
const FILL_SAMPLE: usize = PAGE_SPLIT / 2;

/// The key group a section being read fills, and the sample taken of it.
struct Fill {
    /// The key group's index in the owned range (`usize::MAX`: none yet).
    idx: usize,
    /// The hash of its first entry in the section, while it is sampled:
    /// only a key group that was empty when the section reached it.
    first_hash: Option<u64>,
    /// Its entries read so far from the section.
    seen: usize,
}

impl Default for Fill {
    fn default() -> Self {
        Self {
            idx: usize::MAX,
            first_hash: None,
            seen: 0,
        }
    }
}

/// The entries a key group of `span` will hold after a restore, whose
/// section gave it `seen` entries of hashes `first ..= last` so far, with
/// `left` entries still to come in the section. Stable hashes are uniform,
/// so the density of the sample holds over the rest of the span; when that
/// predicts nearly all of the rest (the section is this key group's own),
/// it is all of it. A section in hash order reaches a key group's entries
/// in one run, so this sizes a key group once whether its section is its
/// own or split among several key groups (max parallelism changed).
fn expected_entries(span: HashSpan, first: u64, last: u64, seen: usize, left: usize) -> usize {
    let covered = last.saturating_sub(first);
    let ahead = span.hi().saturating_sub(last);
    let predicted = if covered == 0 {
        left
    } else {
        let rate = seen.saturating_sub(1) as f64 / covered as f64;
        (rate * ahead as f64).min(left as f64) as usize
    };
    let rest = if predicted >= left - left / 8 {
        left
    } else {
        predicted
    };
    seen + rest
}

/// Entries of one keyed state, partitioned by key group, each key group in
/// pages ([`Group`]).
pub(crate) struct Tables<K, T> {
    name: String,
    assigner: KeyGroupAssigner,
    range: KeyGroupRange,
    bound: bool,
    groups: Vec<Group<K, T>>,
    /// Encoded bytes per entry in the last snapshot of a key group, in
    /// sixteenths: [`encoded_size_hint`](Self::encoded_size_hint).
    bytes_per_entry_x16: Hint,
    /// The snapshots taken with [`freeze`](Self::freeze) that may still
    /// share pages.
    in_flight: InFlight<K, T>,
    /// The keys changed since the last [`freeze`](Self::freeze), for
    /// incremental checkpoints (behind a lock only because freezing takes
    /// `&self`; writes reach it through `get_mut`).
    changes: Mutex<Changes>,
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
            in_flight: Mutex::new(Vec::new()),
            changes: Mutex::default(),
        }
    }
}

impl<K: Clone, T: Clone> Clone for Tables<K, T> {
    /// A deep copy, sharing no page with the original or its snapshots.
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            assigner: self.assigner,
            range: self.range,
            bound: self.bound,
            groups: self.groups.clone(),
            bytes_per_entry_x16: self.bytes_per_entry_x16.clone(),
            in_flight: Mutex::new(Vec::new()),
            // A clone is a state of its own: its snapshots start a new chain.
            changes: Mutex::default(),
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
        self.groups.iter().map(Group::len).sum()
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
        self.forget_changes();
        for g in 0..self.groups.len() {
            for p in 0..self.groups[g].pages.len() {
                self.page_mut(g, p).clear();
            }
        }
    }

    /// Records a change of the key of stable hash `hash` in the `g`-th key
    /// group.
    #[inline]
    fn note(&mut self, g: usize, hash: u64) {
        let groups = &self.groups;
        let changes = self.changes.get_mut().unwrap_or_else(|e| e.into_inner());
        changes.note(g, hash, || groups[g].len());
    }

    /// A change not recorded key by key: the next snapshot is a full one.
    pub(crate) fn forget_changes(&mut self) {
        let changes = self.changes.get_mut().unwrap_or_else(|e| e.into_inner());
        changes.forget();
    }

    /// Page `p` of the `g`-th key group, to change: first released from the
    /// snapshots in flight that share it.
    #[inline]
    fn page_mut(&mut self, g: usize, p: usize) -> &mut OrderedTable<K, T> {
        exclusive(&self.in_flight, g, p, &mut self.groups[g].pages[p])
    }

    /// The page of `hash` in the `g`-th key group, to insert into: if that
    /// page is full and no snapshot shares the pages, the key group's next
    /// page is split first.
    #[inline]
    fn page_to_insert(&mut self, g: usize, hash: u64) -> &mut OrderedTable<K, T> {
        let group = &mut self.groups[g];
        let mut p = group.page_of(hash);
        if group.inserts_before_split_check > 0 {
            group.inserts_before_split_check -= 1;
        } else if group.pages[p].len() >= PAGE_SPLIT && split(&self.in_flight, group) {
            p = group.page_of(hash);
        }
        exclusive(&self.in_flight, g, p, &mut group.pages[p])
    }

    /// Releases every page from the snapshots in flight.
    fn release_all(&mut self) {
        for g in 0..self.groups.len() {
            for p in 0..self.groups[g].pages.len() {
                self.page_mut(g, p);
            }
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
        for (hash, key, _) in self.groups.iter().flat_map(Group::iter) {
            let kg = key_group_of(&assigner, hash, key)?;
            if !range.contains(kg) {
                return Err(StateError::KeyGroupOutsideRange {
                    state: self.name.clone(),
                    key_group: kg,
                    range,
                });
            }
        }
        self.release_all();
        self.forget_changes();
        let old = std::mem::take(&mut self.groups);
        self.groups = range
            .iter()
            .map(|kg| Group::new(span_of(&assigner, kg), 1))
            .collect();
        self.assigner = assigner;
        self.range = range;
        self.bound = true;
        for (hash, key, value) in old.into_iter().flat_map(Group::into_entries) {
            let kg = key_group_of(&assigner, hash, &key)?;
            let g = (kg - range.start()) as usize;
            self.page_to_insert(g, hash).insert_unique(hash, key, value);
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
        let (g, hash) = self.locate(&key)?;
        let group = &self.groups[g];
        Ok(group.pages[group.page_of(hash)].find(hash, |k| key.is_key(k)))
    }

    #[inline]
    pub(crate) fn get_mut<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<&mut T>, StateError> {
        let (g, hash) = self.locate(&key)?;
        let p = self.groups[g].page_of(hash);
        // Noted even if absent: a delta then says the key has no entry,
        // which costs a few bytes and spares a second lookup.
        self.note(g, hash);
        Ok(self.page_mut(g, p).find_mut(hash, |k| key.is_key(k)))
    }

    #[inline]
    pub(crate) fn get_or_insert_with<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        default: impl FnOnce() -> T,
    ) -> Result<&mut T, StateError> {
        let (g, hash) = self.locate(&key)?;
        self.note(g, hash);
        let page = self.page_to_insert(g, hash);
        Ok(match page.find_or_vacancy(hash, |k| key.is_key(k)) {
            Ok(i) => page.value_at(i),
            Err(vacancy) => page.fill(vacancy, key.into_key(), default()),
        })
    }

    pub(crate) fn insert<Q: KeyQuery<K>>(
        &mut self,
        key: Q,
        value: T,
    ) -> Result<Option<T>, StateError> {
        let (g, hash) = self.locate(&key)?;
        self.note(g, hash);
        let page = self.page_to_insert(g, hash);
        match page.find_or_vacancy(hash, |k| key.is_key(k)) {
            Ok(i) => Ok(Some(std::mem::replace(page.value_at(i), value))),
            Err(vacancy) => {
                page.fill(vacancy, key.into_key(), value);
                Ok(None)
            }
        }
    }

    pub(crate) fn remove<Q: KeyQuery<K>>(&mut self, key: Q) -> Result<Option<(K, T)>, StateError> {
        let Some((g, p, hash)) = self.page_holding(&key)? else {
            return Ok(None);
        };
        self.note(g, hash);
        Ok(self.page_mut(g, p).remove(hash, |k| key.is_key(k)))
    }

    /// Applies `f` to the value of `key`, if it has one, and removes the
    /// entry if `f` says so; one lookup.
    pub(crate) fn modify_or_remove<Q: KeyQuery<K>, R>(
        &mut self,
        key: Q,
        f: impl FnOnce(&mut T) -> (R, bool),
    ) -> Result<Option<R>, StateError> {
        let Some((g, p, hash)) = self.page_holding(&key)? else {
            return Ok(None);
        };
        self.note(g, hash);
        Ok(self
            .page_mut(g, p)
            .modify_or_remove(hash, |k| key.is_key(k), f))
    }

    /// The key group, page and stable hash of `key`, if it has an entry: a
    /// change that finds no entry leaves a shared page shared.
    fn page_holding<Q: KeyQuery<K>>(
        &self,
        key: &Q,
    ) -> Result<Option<(usize, usize, u64)>, StateError> {
        let (g, hash) = self.locate(key)?;
        let p = self.groups[g].page_of(hash);
        let present = self.groups[g].pages[p]
            .find(hash, |k| key.is_key(k))
            .is_some();
        Ok(present.then_some((g, p, hash)))
    }

    /// Keeps only the entries for which `f` returns true.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &mut T) -> bool) {
        self.release_all();
        self.forget_changes();
        for g in &mut self.groups {
            for page in &mut g.pages {
                Arc::get_mut(page).expect("released").retain(&mut f);
            }
        }
    }

    /// Every entry, key group by key group, each in stable-hash order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &T)> + '_ {
        self.groups
            .iter()
            .flat_map(|g| g.iter().map(|(_, k, v)| (k, v)))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut T)> + '_ {
        self.release_all();
        self.forget_changes();
        self.groups
            .iter_mut()
            .flat_map(|g| &mut g.pages)
            .flat_map(|p| Arc::get_mut(p).expect("released").iter_mut())
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

    /// The state as it is now, for a snapshot written later, on another
    /// thread, while this state changes: see [`Frozen`]. Copies no entry.
    /// With `track`, the keys changed from now on are recorded for the next
    /// snapshot (see [`Changes`]).
    pub(crate) fn freeze(
        &self,
        encode: Encoders<K, T>,
        decode: Decoders<K, T>,
        track: bool,
    ) -> Arc<dyn FrozenKeyGroups>
    where
        K: Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        let changes = self
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .freeze(self.groups.len(), track);
        let frozen = Arc::new(Frozen::new(
            &self.name,
            self.range,
            &self.groups,
            encode,
            decode,
            changes,
        ));
        super::frozen::track(&self.in_flight, &frozen);
        frozen
    }
}

/// `page` (page `p` of the `g`-th key group) to change: first released
/// from the snapshots in flight that share it.
#[inline]
fn exclusive<'a, K: StateKey, T>(
    in_flight: &InFlight<K, T>,
    g: usize,
    p: usize,
    page: &'a mut Arc<OrderedTable<K, T>>,
) -> &'a mut OrderedTable<K, T> {
    // A plain load, not `Arc::get_mut`'s two atomic read-modify-writes:
    // this runs on every write to the state.
    if Arc::strong_count(page) != 1 {
        release(in_flight, g, p, page);
    }
    // Whatever another holder did with the page (a writer thread that
    // encoded it, then dropped its pointer with a release decrement)
    // happens before what this thread does next.
    fence(Acquire);
    // SAFETY: the page's strong count is 1 and no `Weak` pointer to a page
    // is ever made, so `page` is the only pointer to the table, and it stays
    // so: only the state that owns the page clones it (`Tables::freeze`,
    // through `&self`), and the `&mut` borrow excludes that while it lives.
    unsafe { &mut *Arc::as_ptr(page).cast_mut() }
}

/// Splits the next page of `group` (one of whose pages is full) if its
/// pages are half full on average and no snapshot in flight may share
/// them; whether it did. A page full of keys whose hashes collide does not
/// multiply the pages: splitting would not spread them.
///
/// Counting the entries is a pass over the pages, so when they are not
/// half full the next check waits for as many inserts as the count lacks
/// (each brings at most one entry), and for at least one per page: an
/// insert's share of the count stays constant whatever the key group's
/// size.
#[cold]
#[inline(never)]
fn split<K, T>(in_flight: &InFlight<K, T>, group: &mut Group<K, T>) -> bool {
    if super::frozen::any_in_flight(in_flight) {
        return false;
    }
    let half_full = group.pages.len() * (PAGE_SPLIT / 2);
    let entries = group.len();
    if entries < half_full {
        group.inserts_before_split_check = (half_full - entries).max(group.pages.len());
        return false;
    }
    group.split_next_page()
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
pub(crate) fn sort_equal_hash_run(out: &mut [u8], run: &[(u64, usize)]) {
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
        encode: Encoders<K, T>,
    ) -> Result<(), StateError> {
        let group = &self.groups[self.group_index(key_group)?];
        let n = group.len();
        codec::encode_into(&(n as u64), out, &self.name)?;
        let start = out.len();
        for page in &group.pages {
            (encode.page)(page, out, &self.name, None)?;
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
        self.forget_changes();
        let name = self.name.clone();
        let ctx = |pos: usize, e: StateError| decode_context(e, &name, key_group, pos);
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
        // Pages for the entries to come, but for no more than 8 bytes of
        // slots per byte of the section, so that a corrupt count allocates
        // little more than what was read (pages that need more grow).
        let slot = std::mem::size_of::<(u64, K, T)>().max(1);
        let by_bytes = bytes.len().saturating_mul(8) / slot;
        let mut fill = Fill::default();
        let mut inserted_count = 0;
        for i in 0..count {
            let entry_pos = pos;
            let (key, value) = self.decode_entry(key_group, bytes, &mut pos, &mut read_value)?;
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
            if idx != fill.idx {
                // The first entry of this section for the key group: sample
                // it if it is still empty.
                let sampling = self.groups[idx].is_fresh();
                fill = Fill {
                    idx,
                    first_hash: sampling.then_some(hash),
                    seen: 0,
                };
            }
            // Entries come in hash order, so each is appended (no search):
            // linear in the section, also when key groups are re-bucketed.
            if !self
                .page_to_insert(idx, hash)
                .insert_sorted_if_absent(hash, key, value)
            {
                return Err(self.decode_error(
                    key_group,
                    entry_pos,
                    "duplicate key (the section is corrupt or was read twice)".to_owned(),
                ));
            }
            inserted_count += 1;
            if let Some(first_hash) = fill.first_hash {
                fill.seen += 1;
                if fill.seen == FILL_SAMPLE {
                    fill.first_hash = None;
                    let left = usize::try_from(count - i - 1).unwrap_or(usize::MAX);
                    let span = span_of(&self.assigner, kg);
                    let expected = expected_entries(span, first_hash, hash, FILL_SAMPLE, left);
                    self.presize(idx, expected.min(by_bytes.max(1)));
                }
            }
        }
        self.check_consumed(key_group, bytes, pos)?;
        Ok(inserted_count)
    }

    /// Lays key group `g`, which holds only the entries of the section being
    /// read, out for `entries` entries: pages for them, each with room for
    /// its share. Unchanged while a snapshot in flight may share its pages.
    fn presize(&mut self, g: usize, entries: usize) {
        if super::frozen::any_in_flight(&self.in_flight) {
            return;
        }
        let pages = Group::<K, T>::pages_for(entries);
        let group = &mut self.groups[g];
        if pages > group.pages.len() {
            group.relayout(pages, entries.div_ceil(pages));
        }
    }

    /// Decodes the entry at `*pos` of a section of `key_group` (its key,
    /// then its value by `read_value`), moving `*pos` past it.
    fn decode_entry(
        &self,
        key_group: KeyGroup,
        bytes: &[u8],
        pos: &mut usize,
        read_value: &mut impl FnMut(&[u8], &str) -> Result<(T, usize), StateError>,
    ) -> Result<(K, T), StateError> {
        let ctx = |at: usize, e: StateError| decode_context(e, &self.name, key_group, at);
        let (key, used) =
            codec::decode_prefix::<K>(&bytes[*pos..], &self.name).map_err(|e| ctx(*pos, e))?;
        *pos += used;
        let (value, used) = read_value(&bytes[*pos..], &self.name).map_err(|e| ctx(*pos, e))?;
        *pos += used;
        Ok((key, value))
    }

    /// A section of `key_group` decoded up to `pos` must end there.
    fn check_consumed(
        &self,
        key_group: KeyGroup,
        bytes: &[u8],
        pos: usize,
    ) -> Result<(), StateError> {
        if pos == bytes.len() {
            return Ok(());
        }
        Err(self.decode_error(
            key_group,
            pos,
            format!("{} trailing bytes after the last entry", bytes.len() - pos),
        ))
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

#[path = "delta.rs"]
mod delta;

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
