//! What changed in a keyed state since its last frozen snapshot, for
//! incremental checkpoints: per key group, the stable hashes (as tables keep
//! them, lowest bit set) of the keys written or removed. Recorded only
//! after a snapshot that asks for it
//! ([`Checkpointed::capture_tracking_changes`](crate::checkpoint::Checkpointed::capture_tracking_changes)).
//!
//! A delta written from these hashes replaces, for each hash, every entry
//! of that hash by the entries the state holds now (none: the key was
//! removed). Recording a hash costs a push onto a vector; a key group's
//! vector is sorted and deduplicated when it doubles, and tracking gives up
//! (the next snapshot is then a full one) when it would hold more hashes
//! than twice the key group's entries. Changes that are not made key by key
//! (clearing, retaining, iterating mutably, rebinding, restoring) end
//! tracking the same way.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lineages handed out in this process: each state's chain of snapshots
/// has its own.
static NEXT_LINEAGE: AtomicU64 = AtomicU64::new(1);

/// Which frozen snapshot of which state: a delta written from snapshot
/// `seq` of a lineage holds the changes since snapshot `seq - 1` of the
/// same lineage, and is valid only on top of what that one was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotPosition {
    /// The state (unique in the process; a clone or a fresh state gets a
    /// new one).
    pub lineage: u64,
    /// The number of frozen snapshots of the lineage before this one.
    pub seq: u64,
}

/// The smallest vector a key group's hashes are deduplicated at.
const MIN_COMPACT: usize = 64;

/// The live state's record of its changes.
pub(crate) struct Changes {
    lineage: u64,
    /// Frozen snapshots taken so far.
    seq: u64,
    /// Whether `hashes` holds every change since the last frozen snapshot:
    /// false before the first one, and after a change not tracked by key.
    complete: bool,
    /// Per owned key group, the kept hashes changed (unsorted, repeated).
    hashes: Vec<Vec<u64>>,
    /// Per owned key group, the length at which its hashes are next
    /// deduplicated.
    compact_at: Vec<usize>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            lineage: NEXT_LINEAGE.fetch_add(1, Ordering::Relaxed),
            seq: 0,
            complete: false,
            hashes: Vec::new(),
            compact_at: Vec::new(),
        }
    }
}

/// What a frozen snapshot knows about the changes it holds.
pub(crate) struct FrozenChanges {
    /// This snapshot.
    pub(crate) position: SnapshotPosition,
    /// Per key group, the kept hashes changed since the previous snapshot of
    /// the lineage (unsorted, repeated); `None` if they are not known, so
    /// only a full snapshot can be written from it.
    pub(crate) hashes: Option<Vec<Vec<u64>>>,
}

impl Changes {
    /// Records a change of the key whose stable hash is `hash` in the `g`-th
    /// key group; `group_len` gives that key group's entries, asked for only
    /// when the record is compacted.
    #[inline]
    pub(crate) fn note(&mut self, g: usize, hash: u64, group_len: impl FnOnce() -> usize) {
        if !self.complete {
            return;
        }
        let Some(list) = self.hashes.get_mut(g) else {
            return;
        };
        list.push(hash | 1);
        if list.len() >= self.compact_at[g] {
            self.compact(g, group_len());
        }
    }

    #[cold]
    #[inline(never)]
    fn compact(&mut self, g: usize, group_len: usize) {
        let list = &mut self.hashes[g];
        list.sort_unstable();
        list.dedup();
        if list.len() > 2 * group_len + MIN_COMPACT {
            // More distinct changes than the key group can explain (keys
            // inserted and removed again): a full snapshot is cheaper.
            self.forget();
            return;
        }
        self.compact_at[g] = (2 * list.len()).max(MIN_COMPACT);
    }

    /// A change not tracked by key: the next snapshot is a full one.
    pub(crate) fn forget(&mut self) {
        self.complete = false;
        self.hashes = Vec::new();
        self.compact_at = Vec::new();
    }

    /// Hands the changes since the last frozen snapshot to a new one, of
    /// a state of `groups` key groups, and records afresh from now on if
    /// `track` (else stops recording: a snapshot that does not write deltas
    /// pays nothing for them).
    pub(crate) fn freeze(&mut self, groups: usize, track: bool) -> FrozenChanges {
        let hashes = std::mem::take(&mut self.hashes);
        let hashes = (self.complete && hashes.len() == groups).then_some(hashes);
        self.seq += 1;
        if track {
            self.complete = true;
            self.hashes = vec![Vec::new(); groups];
            self.compact_at = vec![MIN_COMPACT; groups];
        } else {
            self.forget();
        }
        FrozenChanges {
            position: SnapshotPosition {
                lineage: self.lineage,
                seq: self.seq,
            },
            hashes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_snapshot_and_one_after_an_untracked_change_know_no_changes() {
        let mut c = Changes::default();
        c.note(0, 7, || 1);
        let first = c.freeze(2, true);
        assert!(first.hashes.is_none());
        c.note(1, 8, || 1);
        let second = c.freeze(2, true);
        assert_eq!(second.hashes, Some(vec![vec![], vec![9]]));
        assert_eq!(second.position.seq, first.position.seq + 1);
        assert_eq!(second.position.lineage, first.position.lineage);
        c.note(0, 4, || 1);
        c.forget();
        c.note(0, 6, || 1);
        assert!(c.freeze(2, true).hashes.is_none());
    }

    #[test]
    fn repeated_changes_of_few_keys_stay_few_and_too_many_give_up() {
        let mut c = Changes::default();
        c.freeze(1, true);
        for i in 0..100_000u64 {
            c.note(0, i % 10, || 10);
        }
        assert!(c.hashes[0].len() <= MIN_COMPACT);
        for i in 0..1_000u64 {
            c.note(0, i * 2, || 10);
        }
        assert!(
            c.freeze(1, true).hashes.is_none(),
            "gave up: more changes than entries"
        );
    }

    #[test]
    fn a_snapshot_that_does_not_track_stops_recording() {
        let mut c = Changes::default();
        c.freeze(1, true);
        c.note(0, 3, || 1);
        let untracked = c.freeze(1, false);
        assert_eq!(
            untracked.hashes,
            Some(vec![vec![3]]),
            "it knows its own changes"
        );
        c.note(0, 5, || 1);
        assert!(c.hashes.is_empty(), "nothing recorded after it");
        assert!(c.freeze(1, true).hashes.is_none());
    }

    #[test]
    fn lineages_differ_between_states() {
        let (mut a, mut b) = (Changes::default(), Changes::default());
        assert_ne!(
            a.freeze(1, true).position.lineage,
            b.freeze(1, true).position.lineage
        );
    }
}
