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

use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;

use super::group::Group;
use super::ordered::OrderedTable;
use super::table::sort_equal_hash_run;
use crate::codec;
use crate::error::StateError;
use crate::hash::StateKey;
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// How a container encodes one value (or key).
pub(crate) type EncodeValue<T> = fn(&T, &mut Vec<u8>, &str) -> Result<(), StateError>;

/// How a state's keys and values encode.
pub(crate) struct Encoders<K, T> {
    pub(crate) key: EncodeValue<K>,
    pub(crate) value: EncodeValue<T>,
}

impl<K, T> Clone for Encoders<K, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T> Copy for Encoders<K, T> {}

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
}

enum FrozenPage<K, T> {
    Shared(Arc<OrderedTable<K, T>>),
    Encoded(Result<Vec<u8>, StateError>),
    Written,
}

/// One key group of a frozen state: its entry count and its pages in
/// [`Frozen::pages`].
struct FrozenGroup {
    len: usize,
    first_page: usize,
    pages: usize,
}

/// The frozen pages of one keyed state.
pub(crate) struct Frozen<K, T> {
    name: String,
    range: KeyGroupRange,
    groups: Vec<FrozenGroup>,
    pages: Vec<Mutex<FrozenPage<K, T>>>,
    encode: Encoders<K, T>,
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
    /// Freezes `groups` (the key groups `range`, in order).
    pub(crate) fn new(
        name: &str,
        range: KeyGroupRange,
        groups: &[Group<K, T>],
        encode: Encoders<K, T>,
    ) -> Self {
        let mut pages = Vec::new();
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
                }
            })
            .collect();
        Self {
            name: name.to_owned(),
            range,
            groups,
            pages,
            encode,
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
/// makes it the page's only holder, first encoding the page for every
/// snapshot in flight that has not written it yet. Waits only while a
/// writer encodes the page or a snapshot is being dropped.
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
    for frozen in snapshots {
        let Some(i) = frozen.page_index(group, page) else {
            continue;
        };
        let mut slot = frozen.pages[i].lock().unwrap_or_else(|e| e.into_inner());
        if let FrozenPage::Shared(shared) = &*slot {
            // A snapshot taken before the key group's pages last changed
            // holds another table at this position.
            if Arc::ptr_eq(shared, live) {
                let mut out = Vec::new();
                let encoded =
                    encode_entries(shared, &mut out, &frozen.name, frozen.encode).map(|()| out);
                *slot = FrozenPage::Encoded(encoded);
            }
        }
    }
    // What still holds the page is a snapshot being dropped.
    while Arc::get_mut(live).is_none() {
        std::thread::yield_now();
    }
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
                    encode_entries(&table, out, &self.name, self.encode)?;
                    // Let go while the page is locked, so that a live write
                    // that waited for it finds itself the only holder.
                    drop(table);
                }
                FrozenPage::Encoded(bytes) => out.extend_from_slice(&bytes?),
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
pub(crate) fn encode_entries<K, T>(
    table: &OrderedTable<K, T>,
    out: &mut Vec<u8>,
    name: &str,
    encode: Encoders<K, T>,
) -> Result<(), StateError>
where
    K: StateKey,
{
    // The table keeps hashes with their lowest bit set, and orders entries
    // by that. Each entry of the current run of equal kept hashes (empty
    // while they differ): its key's hash and where it starts.
    let mut run: Vec<(u64, usize)> = Vec::new();
    let mut prev: Option<(u64, usize, &K)> = None;
    for (hash, key, value) in table.iter() {
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
        (encode.key)(key, out, name)?;
        (encode.value)(value, out, name)?;
    }
    if !run.is_empty() {
        sort_equal_hash_run(out, &run);
    }
    Ok(())
}

#[cfg(test)]
#[path = "frozen_tests.rs"]
mod tests;
