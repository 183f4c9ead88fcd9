//! A keyed state frozen for a snapshot in flight: the pages of every key
//! group as they were when the snapshot was taken, shared with the live
//! state and encoded later, on another thread.
//!
//! Taking it clones page pointers (a few per thousand entries) and copies no
//! entry. Afterwards each page is in one of three states:
//!
//! * **shared**: the snapshot and the live state hold the same table. The
//!   writer encodes it when it reaches it.
//! * **encoded**: the live state was about to change the page, so it first
//!   encoded the page for the snapshot (a page is at most 512
//!   entries) and let go of the snapshot's pointer; the live page is then
//!   its own again.
//! * **written**: the writer has taken it.
//!
//! Each page's state sits behind its own lock, held while a page is
//! encoded, so the writer and a write of the live state never both encode
//! it, and when either lets go the live state is the page's only holder.
//! The snapshot therefore holds exactly the entries at the moment it was
//! taken, whatever the live state does meanwhile; what it holds beyond the
//! live state is the pages changed before the writer reached them, as
//! bytes. (A key group's pages split only when no snapshot shares them, and
//! clearing, retaining or rebinding a state first releases every page.)

use std::sync::{Arc, Mutex, TryLockError, Weak};

use serde::Serialize;

use super::changes::{FrozenChanges, SnapshotPosition};
use super::group::{Group, PageLayout};
use super::ordered::OrderedTable;
use super::prefetch;
use super::table::sort_equal_hash_run;
use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// How many entries ahead of the one being encoded a page's encoding
/// prefetches the memory entries own: enough to cover a miss to memory
/// while entries of a few dozen bytes are encoded.
pub(crate) const PREFETCH_DISTANCE: usize = 12;

/// How a container encodes one value (or key).
pub(crate) type EncodeValue<T> = fn(&T, &mut Vec<u8>, &str) -> Result<(), StateError>;

/// How a container encodes its values: a type per container, so that the
/// loop over a page's entries is compiled for it and calls no function
/// through a pointer per entry.
pub(crate) trait WriteValue<T> {
    /// Appends the encoding of `value` (of state `state`, for errors).
    fn write(value: &T, out: &mut Vec<u8>, state: &str) -> Result<(), StateError>;
}

/// Values as the crate's codec encodes them.
pub(crate) struct SerdeValue;

impl<T: Serialize> WriteValue<T> for SerdeValue {
    #[inline]
    fn write(value: &T, out: &mut Vec<u8>, state: &str) -> Result<(), StateError> {
        codec::encode_into(value, out, state)
    }
}

/// How a state encodes a page's entries: [`encode_entries`] for its
/// [`WriteValue`].
pub(crate) type EncodePage<K, T> = fn(
    &OrderedTable<K, T>,
    &mut Vec<u8>,
    &str,
    Option<&mut Vec<(u64, usize)>>,
) -> Result<(), StateError>;

/// How a state's keys and values encode: a page at a time, or one entry at
/// a time.
pub(crate) struct Encoders<K, T> {
    pub(crate) key: EncodeValue<K>,
    pub(crate) value: EncodeValue<T>,
    pub(crate) page: EncodePage<K, T>,
}

impl<K: StateKey + Serialize, T> Encoders<K, T> {
    /// Keys by the codec, values by `W`.
    pub(crate) fn of<W: WriteValue<T>>() -> Self {
        Self {
            key: encode_key::<K>,
            value: W::write,
            page: encode_entries::<K, T, W>,
        }
    }
}

impl<K, T> Clone for Encoders<K, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T> Copy for Encoders<K, T> {}

/// How a container decodes one value (or key): the value and the bytes it
/// took.
pub(crate) type DecodeValue<T> = fn(&[u8], &str) -> Result<(T, usize), StateError>;

/// How a state's keys and values decode, as [`Encoders`] wrote them: what
/// the live state copies a page with when a writer holds it.
pub(crate) struct Decoders<K, T> {
    pub(crate) key: DecodeValue<K>,
    pub(crate) value: DecodeValue<T>,
}

impl<K, T> Clone for Decoders<K, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T> Copy for Decoders<K, T> {}

/// The encoder of keys: the crate's codec.
pub(crate) fn encode_key<K: Serialize>(
    key: &K,
    out: &mut Vec<u8>,
    name: &str,
) -> Result<(), StateError> {
    codec::encode_into(key, out, name)
}

/// A keyed state as it was when a snapshot was taken, for a writer on
/// another thread: what [`KeyedState::freeze`](super::KeyedState::freeze)
/// gives.
#[doc(hidden)]
pub trait FrozenKeyGroups: Send + Sync {
    /// Entries in `key_group` (an owned key group) when frozen.
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError>;

    /// Appends the section of `key_group`, as
    /// [`KeyedState::write_key_group`](super::KeyedState::write_key_group)
    /// would have when the state was frozen. Each key group is written once.
    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError>;

    /// This snapshot's place in its state's chain of snapshots; `None` for a
    /// state that keeps no chain (a delta can never follow it).
    fn position(&self) -> Option<SnapshotPosition> {
        None
    }

    /// Whether the snapshot knows what changed since the previous snapshot
    /// of its chain (`position().seq - 1`), so that
    /// [`write_key_group_delta`](Self::write_key_group_delta) can write it.
    fn knows_changes(&self) -> bool {
        false
    }

    /// Appends the delta section of `key_group`: for each stable hash
    /// changed since the previous snapshot of the chain, every entry of that
    /// hash when this one was frozen, or the hash as removed if none is
    /// left. Empty if nothing changed. Each key group is written once,
    /// either way.
    fn write_key_group_delta(
        &self,
        key_group: KeyGroup,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let _ = out;
        Err(StateError::Encode {
            state: "<keyed>".into(),
            message: format!("key group {key_group}: this snapshot cannot write a delta"),
        })
    }
}

/// A page the live state encoded before changing it: its section bytes,
/// and where each entry starts in them, with its hash as kept (for a delta,
/// which takes only some entries).
struct EncodedPage {
    bytes: Vec<u8>,
    starts: Vec<(u64, usize)>,
}

/// What a snapshot holds of one page. Boxed when encoded, so that a
/// capture, which makes one of these per page, writes little memory.
enum FrozenPage<K, T> {
    Shared(Arc<OrderedTable<K, T>>),
    Encoded(Box<Result<EncodedPage, StateError>>),
    Written,
}

/// One key group of a frozen state: its entry count, its pages in
/// [`Frozen::pages`] and how hashes map to them, and the hashes changed
/// since the previous snapshot of the chain.
struct FrozenGroup {
    len: usize,
    first_page: usize,
    pages: usize,
    layout: PageLayout,
    changed: Mutex<Vec<u64>>,
}

/// The frozen pages of one keyed state.
pub(crate) struct Frozen<K, T> {
    name: String,
    range: KeyGroupRange,
    groups: Vec<FrozenGroup>,
    pages: Vec<Mutex<FrozenPage<K, T>>>,
    encode: Encoders<K, T>,
    decode: Decoders<K, T>,
    position: SnapshotPosition,
    knows_changes: bool,
}

/// Where the live state finds the snapshots in flight that share its pages
/// (each gone once its writer has dropped it).
pub(crate) type InFlight<K, T> = Mutex<Vec<Weak<Frozen<K, T>>>>;

/// Records a snapshot taken of the live state, forgetting those already
/// written.
pub(crate) fn track<K, T>(in_flight: &InFlight<K, T>, frozen: &Arc<Frozen<K, T>>) {
    let mut list = in_flight.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(frozen));
}

/// Whether a snapshot taken of the live state may still share its pages.
pub(crate) fn any_in_flight<K, T>(in_flight: &InFlight<K, T>) -> bool {
    let list = in_flight.lock().unwrap_or_else(|e| e.into_inner());
    list.iter().any(|w| w.strong_count() > 0)
}

impl<K, T> Frozen<K, T> {
    /// Freezes `groups` (the key groups `range`, in order), with the
    /// changes since the previous snapshot.
    pub(crate) fn new(
        name: &str,
        range: KeyGroupRange,
        groups: &[Group<K, T>],
        encode: Encoders<K, T>,
        decode: Decoders<K, T>,
        changes: FrozenChanges,
    ) -> Self {
        let knows_changes = changes.hashes.is_some();
        let mut changed = changes.hashes.unwrap_or_default().into_iter();
        let mut pages = Vec::with_capacity(groups.iter().map(|g| g.pages.len()).sum());
        let groups = groups
            .iter()
            .map(|g| {
                let first_page = pages.len();
                pages.extend(
                    g.pages
                        .iter()
                        .map(|p| Mutex::new(FrozenPage::Shared(Arc::clone(p)))),
                );
                FrozenGroup {
                    len: g.len(),
                    first_page,
                    pages: g.pages.len(),
                    layout: g.layout(),
                    changed: Mutex::new(changed.next().unwrap_or_default()),
                }
            })
            .collect();
        Self {
            name: name.to_owned(),
            range,
            groups,
            pages,
            encode,
            decode,
            position: changes.position,
            knows_changes,
        }
    }

    /// The index in [`Frozen::pages`] of page `page` of the `group`-th key
    /// group.
    fn page_index(&self, group: usize, page: usize) -> Option<usize> {
        let g = self.groups.get(group)?;
        (page < g.pages).then_some(g.first_page + page)
    }
}

/// Before the live state changes page `page` of its `group`-th key group:
/// makes it the page's only holder. For every snapshot in flight that has
/// not written the page yet, it first encodes the page for that snapshot.
/// If a writer is encoding the page just then (its lock is held), it does
/// not wait for that thread, which may have been descheduled: it copies the
/// page instead (encoding and decoding each entry) and changes the copy,
/// leaving the writer the original. It waits only if the copy fails, or
/// while a snapshot is being dropped.
#[cold]
#[inline(never)]
pub(crate) fn release<K, T>(
    in_flight: &InFlight<K, T>,
    group: usize,
    page: usize,
    live: &mut Arc<OrderedTable<K, T>>,
) where
    K: StateKey,
{
    if Arc::get_mut(live).is_some() {
        return;
    }
    let snapshots: Vec<Arc<Frozen<K, T>>> = {
        let list = in_flight.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().filter_map(Weak::upgrade).collect()
    };
    for frozen in &snapshots {
        let Some(i) = frozen.page_index(group, page) else {
            continue;
        };
        let mut slot = match frozen.pages[i].try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // A writer holds the page: copied below.
            Err(TryLockError::WouldBlock) => continue,
        };
        if let FrozenPage::Shared(shared) = &*slot {
            // A snapshot taken before the key group's pages last changed
            // holds another table at this position.
            if Arc::ptr_eq(shared, live) {
                let mut bytes = Vec::new();
                let mut starts = Vec::new();
                let encoded = (frozen.encode.page)(
                    shared,
                    &mut bytes,
                    &frozen.name,
                    frozen.knows_changes.then_some(&mut starts),
                )
                .map(|()| EncodedPage { bytes, starts });
                *slot = FrozenPage::Encoded(Box::new(encoded));
            }
        }
    }
    if Arc::get_mut(live).is_some() {
        return;
    }
    // Still shared: with a writer encoding it, or with a snapshot being
    // dropped. The original stays theirs, unchanged.
    if let Some(frozen) = snapshots.first() {
        if let Ok(copy) = copy_page(live, frozen.encode, frozen.decode, &frozen.name) {
            *live = Arc::new(copy);
            return;
        }
    }
    while Arc::get_mut(live).is_none() {
        std::thread::yield_now();
    }
}

/// A copy of `page` with the same entries, each encoded and decoded again
/// (values need not be `Clone`).
fn copy_page<K, T>(
    page: &OrderedTable<K, T>,
    encode: Encoders<K, T>,
    decode: Decoders<K, T>,
    name: &str,
) -> Result<OrderedTable<K, T>, StateError> {
    let mut copy = page.empty_like();
    copy.reserve(page.len());
    let mut bytes = Vec::new();
    for (hash, key, value) in page.iter() {
        bytes.clear();
        (encode.key)(key, &mut bytes, name)?;
        (encode.value)(value, &mut bytes, name)?;
        let (key, used) = (decode.key)(&bytes, name)?;
        let (value, _) = (decode.value)(&bytes[used..], name)?;
        copy.insert_unique(hash, key, value);
    }
    Ok(copy)
}

impl<K, T> FrozenKeyGroups for Frozen<K, T>
where
    K: StateKey + Send + Sync,
    T: Send + Sync,
{
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError> {
        Ok(self.group(key_group)?.len)
    }

    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError> {
        let g = self.group(key_group)?;
        codec::encode_into(&(g.len as u64), out, &self.name)?;
        for slot in &self.pages[g.first_page..g.first_page + g.pages] {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *slot, FrozenPage::Written) {
                FrozenPage::Shared(table) => {
                    (self.encode.page)(&table, out, &self.name, None)?;
                    // Let go while the page is locked, so that a live write
                    // that waited for it finds itself the only holder.
                    drop(table);
                }
                FrozenPage::Encoded(page) => out.extend_from_slice(&(*page)?.bytes),
                FrozenPage::Written => {
                    return Err(StateError::Encode {
                        state: self.name.clone(),
                        message: format!(
                            "key group {key_group} of a frozen snapshot written twice"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn position(&self) -> Option<SnapshotPosition> {
        Some(self.position)
    }

    fn knows_changes(&self) -> bool {
        self.knows_changes
    }

    fn write_key_group_delta(
        &self,
        key_group: KeyGroup,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let g = self.group(key_group)?;
        if !self.knows_changes {
            return Err(StateError::Encode {
                state: self.name.clone(),
                message: "a delta of a snapshot that does not know its changes".into(),
            });
        }
        let mut hashes = std::mem::take(&mut *g.changed.lock().unwrap_or_else(|e| e.into_inner()));
        hashes.sort_unstable();
        hashes.dedup();
        let pages = &self.pages[g.first_page..g.first_page + g.pages];
        // Per changed hash: its entries now, or (none left) a removal.
        let mut removed: Vec<u64> = Vec::new();
        let mut entries = Vec::new();
        let mut count = 0u64;
        for &hash in &hashes {
            let slot = pages[g.layout.page_of(hash)]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let before = count;
            match &*slot {
                FrozenPage::Shared(table) => {
                    let mut run = Vec::new();
                    for (_, key, value) in table.kept_run(hash) {
                        run.push((key.stable_hash(), entries.len()));
                        (self.encode.key)(key, &mut entries, &self.name)?;
                        (self.encode.value)(value, &mut entries, &self.name)?;
                        count += 1;
                    }
                    if run.len() > 1 {
                        sort_equal_hash_run(&mut entries, &run);
                    }
                }
                FrozenPage::Encoded(encoded) => {
                    let page = match &**encoded {
                        Ok(page) => page,
                        Err(e) => {
                            return Err(StateError::Encode {
                                state: self.name.clone(),
                                message: format!("key group {key_group}: {e}"),
                            });
                        }
                    };
                    let first = page.starts.partition_point(|&(h, _)| h < hash);
                    let end = page.starts.partition_point(|&(h, _)| h <= hash);
                    if end > first {
                        let to = page.starts.get(end).map_or(page.bytes.len(), |&(_, at)| at);
                        entries.extend_from_slice(&page.bytes[page.starts[first].1..to]);
                        count += (end - first) as u64;
                    }
                }
                FrozenPage::Written => {
                    return Err(StateError::Encode {
                        state: self.name.clone(),
                        message: format!(
                            "key group {key_group} of a frozen snapshot written twice"
                        ),
                    });
                }
            }
            if count == before {
                removed.push(hash);
            }
        }
        if count > 0 || !removed.is_empty() {
            codec::encode_into(&(removed.len() as u64), out, &self.name)?;
            for hash in &removed {
                out.extend_from_slice(&hash.to_le_bytes());
            }
            codec::encode_into(&count, out, &self.name)?;
            out.extend_from_slice(&entries);
        }
        // Done with the key group: its pages are the live state's alone again.
        for slot in pages {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            drop(std::mem::replace(&mut *slot, FrozenPage::Written));
        }
        Ok(())
    }
}

impl<K, T> Frozen<K, T> {
    fn group(&self, key_group: KeyGroup) -> Result<&FrozenGroup, StateError> {
        self.range
            .index_of(key_group)
            .and_then(|i| self.groups.get(i))
            .ok_or_else(|| StateError::KeyGroupOutsideRange {
                state: self.name.clone(),
                key_group,
                range: self.range,
            })
    }
}

/// Appends the entries of `table` in section order: each key then its
/// value, by stable hash, entries of equal kept hashes sorted by their
/// bytes (which [`sort_equal_hash_run`] does).
/// With `starts`, also records where each entry starts in `out`, with its
/// hash as kept (entries of equal kept hashes are one run: the first start
/// is the run's).
pub(crate) fn encode_entries<K, T, W>(
    table: &OrderedTable<K, T>,
    out: &mut Vec<u8>,
    name: &str,
    mut starts: Option<&mut Vec<(u64, usize)>>,
) -> Result<(), StateError>
where
    K: StateKey + Serialize,
    W: WriteValue<T>,
{
    // The table keeps hashes with their lowest bit set, and orders entries
    // by that. Each entry of the current run of equal kept hashes (empty
    // while they differ): its key's hash and where it starts.
    let mut run: Vec<(u64, usize)> = Vec::new();
    let mut prev: Option<(u64, usize, &K)> = None;
    // The entry `PREFETCH_DISTANCE` places ahead, whose memory behind a
    // pointer is fetched while this one is encoded: its key's through
    // `StableHash::prefetch`, its value's by `prefetch::owned_memory`
    // (values are serde types only). Only for types that have any.
    let prefetching = K::INDIRECT || std::mem::needs_drop::<T>();
    let mut ahead = table.iter().skip(PREFETCH_DISTANCE);
    for (hash, key, value) in table.iter() {
        if prefetching {
            if let Some((_, key, value)) = ahead.next() {
                key.prefetch();
                prefetch::owned_memory(value);
            }
        }
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
        if let Some(starts) = starts.as_deref_mut() {
            starts.push((hash, at));
        }
        codec::encode_into(key, out, name)?;
        W::write(value, out, name)?;
    }
    if !run.is_empty() {
        sort_equal_hash_run(out, &run);
    }
    Ok(())
}

#[cfg(test)]
#[path = "frozen_tests.rs"]
mod tests;
