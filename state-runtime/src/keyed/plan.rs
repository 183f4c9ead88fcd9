//! Keyed rescale planning: which old key groups each new instance reads.
//!
//! Pure metadata: planning touches no state bytes. The restore then reads,
//! for every [`KeyGroupRead`], the sections of its key groups from the old
//! subtask's snapshot (through the checkpoint's offsets index), and hands
//! them to [`KeyedState::read_key_group`],
//! with a filter for the key groups the plan marks.
//!
//! * **Same max parallelism** (either assigner): key groups do not change, a
//!   new subtask reads exactly its own key groups, from each old subtask
//!   whose range intersects its range. This is Flink's
//!   `StateAssignmentOperation.createKeyGroupPartitions` followed by
//!   `extractIntersectingState`, read for read (checked against Flink 2.3.0's
//!   output). No filtering.
//! * **Flink assigner, new max parallelism**: refused, as Flink does
//!   ([`StateError::MaxParallelismChanged`]).
//! * **Native assigner, new max parallelism**: a new subtask owns a
//!   contiguous interval of the hash space; it reads the run of old key
//!   groups whose hash intervals overlap it. Only the first and the last of
//!   them can reach outside it, so at most two key groups are filtered key by
//!   key; every other key group is read whole.
//!
//! ```
//! use state_runtime::keyed::plan::KeyedRescalePlan;
//! use state_runtime::prelude::*;
//!
//! // 2 -> 3 instances, same max parallelism: Flink's assignment.
//! let a = KeyGroupAssigner::native(MaxParallelism::new(128)?);
//! let plan = KeyedRescalePlan::new(a, 2, a, 3)?;
//! let s1 = &plan.subtasks()[1];
//! assert_eq!(s1.key_groups, KeyGroupRange::new(43, 85));
//! let reads: Vec<_> = s1.reads.iter().map(|r| (r.old_subtask, r.key_groups)).collect();
//! assert_eq!(reads, [(0, KeyGroupRange::new(43, 63)), (1, KeyGroupRange::new(64, 85))]);
//! assert!(s1.reads.iter().all(|r| r.filtered.is_empty()));
//!
//! // Native mode may change max parallelism: at most two boundary key groups
//! // per new instance are filtered.
//! let b = KeyGroupAssigner::native(MaxParallelism::new(100)?);
//! let plan = KeyedRescalePlan::new(a, 2, b, 3)?;
//! for s in plan.subtasks() {
//!     assert!(s.reads.iter().map(|r| r.filtered.len()).sum::<usize>() <= 2);
//! }
//!
//! // Flink mode may not.
//! let f = KeyGroupAssigner::flink(MaxParallelism::new(128)?);
//! let g = KeyGroupAssigner::flink(MaxParallelism::new(256)?);
//! assert!(matches!(
//!     KeyedRescalePlan::new(f, 2, g, 3),
//!     Err(StateError::MaxParallelismChanged { old: 128, new: 256 })
//! ));
//! # Ok::<(), StateError>(())
//! ```

use super::KeyedState;
use crate::error::StateError;
use crate::keygroup::{
    KeyGroup, KeyGroupAssigner, KeyGroupRange, native_hash_interval, native_key_group_for_hash,
    subtask_for_key_group_unchecked,
};

/// Old key groups of one old subtask that a new subtask reads.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct KeyGroupRead {
    /// The old subtask whose snapshot holds the key groups.
    pub old_subtask: usize,
    /// The old key groups to read, a non-empty part of the old subtask's
    /// range, under the *old* assigner.
    pub key_groups: KeyGroupRange,
    /// The key groups of `key_groups` whose entries must be filtered key by
    /// key (their keys are partly another new subtask's). Empty unless the
    /// max parallelism changed; at most two per new subtask.
    pub filtered: Vec<KeyGroup>,
}

impl KeyGroupRead {
    /// Whether the old key group `key_group` must be filtered key by key.
    pub fn needs_filter(&self, key_group: KeyGroup) -> bool {
        self.filtered.contains(&key_group)
    }
}

/// What one new subtask restores.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SubtaskRestore {
    /// The new subtask's index.
    pub subtask: usize,
    /// The key groups it owns under the new assigner.
    pub key_groups: KeyGroupRange,
    /// The old key groups it reads, in old subtask order.
    pub reads: Vec<KeyGroupRead>,
}

impl SubtaskRestore {
    /// Number of old key groups read.
    pub fn key_groups_read(&self) -> u32 {
        self.reads.iter().map(|r| r.key_groups.len()).sum()
    }

    /// The filter to pass to
    /// [`read_key_group`](super::KeyedState::read_key_group) for a filtered
    /// key group: keep the entries whose new key group this subtask owns.
    pub fn owns(&self, new_key_group: KeyGroup) -> bool {
        self.key_groups.contains(new_key_group)
    }

    /// Decodes `bytes`, the section of one keyed state in old key group
    /// `key_group` of `read` (one of this plan's reads), into `state`,
    /// filtering its entries key by key if the plan marks the key group; a
    /// `delta` section (an incremental checkpoint's) is applied on top of
    /// the key group's earlier layers. Every keyed restore decodes through
    /// here. Returns the entries inserted.
    pub(crate) fn decode_key_group(
        &self,
        read: &KeyGroupRead,
        key_group: KeyGroup,
        bytes: &[u8],
        state: &mut dyn KeyedState,
        delta: bool,
    ) -> Result<usize, StateError> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let keep = |new_kg: KeyGroup| self.owns(new_kg);
        let filter: Option<&dyn Fn(KeyGroup) -> bool> = if read.needs_filter(key_group) {
            Some(&keep)
        } else {
            None
        };
        if delta {
            state.read_key_group_delta(key_group, bytes, filter)
        } else {
            state.read_key_group(key_group, bytes, filter)
        }
    }
}

/// The plan of a keyed rescale from `old_parallelism` instances under one
/// assigner to `new_parallelism` instances under another (the same kind,
/// possibly another max parallelism).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyedRescalePlan {
    old: KeyGroupAssigner,
    old_parallelism: usize,
    new: KeyGroupAssigner,
    new_parallelism: usize,
    subtasks: Vec<SubtaskRestore>,
}

impl KeyedRescalePlan {
    /// Plans the rescale. Errors for invalid parallelisms, a change of
    /// assigner kind, or a change of max parallelism in Flink mode.
    pub fn new(
        old: KeyGroupAssigner,
        old_parallelism: usize,
        new: KeyGroupAssigner,
        new_parallelism: usize,
    ) -> Result<Self, StateError> {
        old.max_parallelism().check_parallelism(old_parallelism)?;
        new.max_parallelism().check_parallelism(new_parallelism)?;
        old.check_restore_as(new)?;
        let same_max_p = old.max_parallelism() == new.max_parallelism();
        let mut subtasks = Vec::with_capacity(new_parallelism);
        for subtask in 0..new_parallelism {
            let key_groups = new.range_for_subtask(new_parallelism, subtask)?;
            let reads = if same_max_p {
                Self::intersecting(old, old_parallelism, key_groups, &[])?
            } else {
                Self::overlapping_hashes(old, old_parallelism, new, key_groups)?
            };
            subtasks.push(SubtaskRestore {
                subtask,
                key_groups,
                reads,
            });
        }
        Ok(Self {
            old,
            old_parallelism,
            new,
            new_parallelism,
            subtasks,
        })
    }

    /// Flink's `extractIntersectingState`: the part of each old subtask's
    /// range inside `wanted` (old key groups), in old subtask order; old
    /// subtasks with an empty intersection are left out.
    fn intersecting(
        old: KeyGroupAssigner,
        old_parallelism: usize,
        wanted: KeyGroupRange,
        filtered: &[KeyGroup],
    ) -> Result<Vec<KeyGroupRead>, StateError> {
        let Some(last) = wanted.last() else {
            return Ok(Vec::new());
        };
        let max_p = old.max_parallelism().get();
        // Checked against the max parallelism (a u32) by `new`.
        let p = old_parallelism as u32;
        let first_old = subtask_for_key_group_unchecked(max_p, p, wanted.start()) as usize;
        let last_old = subtask_for_key_group_unchecked(max_p, p, last) as usize;
        let mut reads = Vec::with_capacity(last_old - first_old + 1);
        for old_subtask in first_old..=last_old {
            let key_groups = old
                .range_for_subtask(old_parallelism, old_subtask)?
                .intersection(wanted);
            if key_groups.is_empty() {
                continue;
            }
            reads.push(KeyGroupRead {
                old_subtask,
                key_groups,
                filtered: filtered
                    .iter()
                    .copied()
                    .filter(|kg| key_groups.contains(*kg))
                    .collect(),
            });
        }
        Ok(reads)
    }

    /// Native mode across max parallelisms: the old key groups whose hash
    /// intervals overlap the hash interval of `new_range`.
    fn overlapping_hashes(
        old: KeyGroupAssigner,
        old_parallelism: usize,
        new: KeyGroupAssigner,
        new_range: KeyGroupRange,
    ) -> Result<Vec<KeyGroupRead>, StateError> {
        let Some(last) = new_range.last() else {
            return Ok(Vec::new());
        };
        let (lo, _) = native_hash_interval(new_range.start(), new.max_parallelism());
        let (_, hi) = native_hash_interval(last, new.max_parallelism());
        // Upper 32 hash bits in [lo, hi); the old key groups of lo and hi - 1.
        let first_old = native_key_group_for_hash(lo << 32, old.max_parallelism());
        let last_old = native_key_group_for_hash((hi - 1) << 32, old.max_parallelism());
        // Only the first and the last can reach outside [lo, hi).
        let partial = |kg: KeyGroup| {
            let (a, b) = native_hash_interval(kg, old.max_parallelism());
            a < lo || b > hi
        };
        let mut filtered = Vec::with_capacity(2);
        if partial(first_old) {
            filtered.push(first_old);
        }
        if last_old != first_old && partial(last_old) {
            filtered.push(last_old);
        }
        Self::intersecting(
            old,
            old_parallelism,
            KeyGroupRange::new(first_old, last_old),
            &filtered,
        )
    }

    /// The checkpoint's assigner.
    pub fn old_assigner(&self) -> KeyGroupAssigner {
        self.old
    }

    /// The assigner restored into.
    pub fn new_assigner(&self) -> KeyGroupAssigner {
        self.new
    }

    /// Parallelism of the checkpoint.
    pub fn old_parallelism(&self) -> usize {
        self.old_parallelism
    }

    /// Parallelism restored into.
    pub fn new_parallelism(&self) -> usize {
        self.new_parallelism
    }

    /// Whether the max parallelism changes (native mode only), so that entries
    /// are re-bucketed into new key groups.
    pub fn max_parallelism_changed(&self) -> bool {
        self.old.max_parallelism() != self.new.max_parallelism()
    }

    /// What each new subtask restores, in subtask order.
    pub fn subtasks(&self) -> &[SubtaskRestore] {
        &self.subtasks
    }

    /// Restores one keyed state of new subtask `subtask`: binds `state` to
    /// the new assigner and the subtask's key groups, then, for every old key
    /// group the plan names, has `read_section(old_subtask, key_group, buf)`
    /// fill `buf` with that key group's section of this state (empty if the
    /// old subtask wrote none) and decodes it, filtering the key groups the
    /// plan marks. Returns the number of entries restored.
    ///
    /// This is the whole keyed restore but the I/O: the checkpoint reader
    /// supplies `read_section` (through its offsets index).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use state_runtime::keyed::plan::KeyedRescalePlan;
    /// use state_runtime::prelude::*;
    ///
    /// let old = KeyGroupAssigner::native(MaxParallelism::new(128)?);
    /// // One old instance holding keys 0..100, snapshotted key group by key group.
    /// let mut before = KeyedValue::<u64, u64>::new(old, old.range_for_subtask(1, 0)?)?;
    /// for k in 0..100 {
    ///     before.insert(k, k)?;
    /// }
    /// let mut sections = HashMap::new();
    /// for kg in 0..128 {
    ///     let mut out = Vec::new();
    ///     before.write_key_group(kg, &mut out)?;
    ///     sections.insert((0, kg), out);
    /// }
    ///
    /// // Rescale to 3 instances and max parallelism 50.
    /// let new = KeyGroupAssigner::native(MaxParallelism::new(50)?);
    /// let plan = KeyedRescalePlan::new(old, 1, new, 3)?;
    /// let mut restored = 0;
    /// for s in 0..3 {
    ///     let mut state = KeyedValue::<u64, u64>::default();
    ///     restored += plan.restore_subtask(s, &mut state, |old_subtask, kg, buf| {
    ///         buf.extend_from_slice(&sections[&(old_subtask, kg)]);
    ///         Ok(())
    ///     })?;
    ///     assert!(state.iter().all(|(k, _)| plan.subtasks()[s].owns(new.key_group(k).unwrap())));
    /// }
    /// assert_eq!(restored, 100);
    /// # Ok::<(), StateError>(())
    /// ```
    pub fn restore_subtask(
        &self,
        subtask: usize,
        state: &mut dyn KeyedState,
        mut read_section: impl FnMut(usize, KeyGroup, &mut Vec<u8>) -> Result<(), StateError>,
    ) -> Result<usize, StateError> {
        let Some(plan) = self.subtasks.get(subtask) else {
            return Err(StateError::SubtaskOutOfRange {
                subtask,
                parallelism: self.new_parallelism,
            });
        };
        state.bind(self.new, plan.key_groups)?;
        let mut buf = Vec::new();
        let mut restored = 0;
        for read in &plan.reads {
            for kg in read.key_groups {
                buf.clear();
                read_section(read.old_subtask, kg, &mut buf)?;
                restored += plan.decode_key_group(read, kg, &buf, state, false)?;
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup::MaxParallelism;

    fn native(m: u32) -> KeyGroupAssigner {
        KeyGroupAssigner::native(MaxParallelism::new(m).unwrap())
    }

    /// Every old key group is read by the new subtasks whose hash intervals
    /// it overlaps, filtered exactly when it overlaps more than one.
    #[test]
    fn native_reads_cover_every_old_key_group_exactly_as_needed() {
        for (om, op, nm, np) in [
            (128, 3, 256, 5),
            (256, 7, 100, 3),
            (128, 1, 1000, 9),
            (7, 7, 3, 1),
            (1, 1, 5, 5),
            (1000, 13, 999, 12),
        ] {
            let plan = KeyedRescalePlan::new(native(om), op, native(nm), np).unwrap();
            let mut readers = vec![Vec::new(); om as usize];
            for s in plan.subtasks() {
                assert!(s.reads.iter().map(|r| r.filtered.len()).sum::<usize>() <= 2);
                for r in &s.reads {
                    let owner_range = native(om).range_for_subtask(op, r.old_subtask).unwrap();
                    assert_eq!(owner_range.intersection(r.key_groups), r.key_groups);
                    for kg in r.key_groups {
                        readers[kg as usize].push((s.subtask, r.needs_filter(kg)));
                    }
                }
            }
            for (kg, rs) in readers.iter().enumerate() {
                let (lo, hi) = native_hash_interval(kg as u32, native(om).max_parallelism());
                let first = native_key_group_for_hash(lo << 32, native(nm).max_parallelism());
                let last = native_key_group_for_hash((hi - 1) << 32, native(nm).max_parallelism());
                let mut owners: Vec<usize> = (first..=last)
                    .map(|k| native(nm).subtask_for_key_group(np, k).unwrap())
                    .collect();
                owners.dedup();
                let got: Vec<usize> = rs.iter().map(|r| r.0).collect();
                assert_eq!(got, owners, "old kg {kg} in {om}/{op} -> {nm}/{np}");
                let split = owners.len() > 1;
                assert!(rs.iter().all(|r| r.1 == split), "old kg {kg}: {rs:?}");
            }
        }
    }

    #[test]
    fn refuses_invalid_inputs() {
        let f = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
        assert!(matches!(
            KeyedRescalePlan::new(native(128), 2, f, 2),
            Err(StateError::AssignerKindChanged { .. })
        ));
        assert!(matches!(
            KeyedRescalePlan::new(native(128), 0, native(128), 2),
            Err(StateError::ZeroParallelism)
        ));
        assert!(matches!(
            KeyedRescalePlan::new(native(128), 2, native(4), 5),
            Err(StateError::ParallelismAboveMax { .. })
        ));
        assert!(KeyedRescalePlan::new(f, 3, f, 128).is_ok());
    }
}
