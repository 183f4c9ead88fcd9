//! Durable job checkpoints: the on-disk format v1 (specified in
//! `state-runtime/FORMAT.md`) on a [`CheckpointStorage`].
//!
//! A job checkpoint holds several operators, each an in-memory [`Checkpoint`]
//! (one [`SubtaskSnapshot`] per subtask). [`write_checkpoint`] writes one
//! data file per operator and subtask and a manifest, and commits them
//! atomically through the storage. [`StoredCheckpoint`] opens a committed
//! checkpoint by reading only its manifest; a [`StoredOperator`] then
//! restores any subtask at any parallelism *lazily*: it reads, with
//! [`CheckpointStorage::read_range`], exactly the byte ranges of the items
//! and key groups that subtask receives, and checks each item's and each
//! key group's CRC-32C on exactly those bytes.
//!
//! ```
//! use state_runtime::checkpoint::durable::{StoredCheckpoint, write_checkpoint};
//! use state_runtime::prelude::*;
//! use state_runtime::storage::LocalStorage;
//!
//! #[derive(Checkpointed, Default)]
//! struct Source {
//!     #[state(split)]
//!     offsets: Vec<(u32, u64)>,
//! }
//!
//! #[derive(Checkpointed, Default)]
//! struct Sum {
//!     #[state(keyed)]
//!     totals: KeyedValue<u32, i64>,
//! }
//!
//! // Parallelism 2.
//! let source = Checkpoint::from_subtasks(vec![
//!     Source { offsets: vec![(0, 10), (1, 11)] }.snapshot()?,
//!     Source { offsets: vec![(2, 12)] }.snapshot()?,
//! ])?;
//! let assigner = KeyGroupAssigner::native(MaxParallelism::new(16)?);
//! let mut sums = Vec::new();
//! for i in 0..2 {
//!     let mut s = Sum::default();
//!     let range = assigner.range_for_subtask(2, i)?;
//!     s.bind_keyed(assigner, range)?;
//!     for key in 0..100u32 {
//!         if range.contains(assigner.key_group(&key)?) {
//!             s.totals.insert(key, i64::from(key) * 10)?;
//!         }
//!     }
//!     sums.push(s.snapshot()?);
//! }
//! let sum = Checkpoint::from_subtasks(sums)?;
//!
//! let dir = tempfile::tempdir()?;
//! let storage = LocalStorage::open(dir.path())?;
//! write_checkpoint(&storage, 1, &[("source", &source), ("sum", &sum)])?;
//!
//! // Restore "sum" at parallelism 3 from the newest checkpoint.
//! let stored = StoredCheckpoint::latest(&storage)?.expect("a checkpoint");
//! let op = stored.operator("sum")?;
//! assert_eq!(op.parallelism(), 2);
//! let mut keys = 0;
//! for subtask in 0..3 {
//!     let mut s = Sum::default();
//!     let report = op.restore_into(&mut s, subtask, 3)?;
//!     assert!(report.bytes_read > 0);
//!     keys += s.totals.len();
//! }
//! assert_eq!(keys, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod format;
mod write;

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Mutex;

pub use format::{DATA_HEADER_LEN, DATA_MAGIC, FORMAT_VERSION, MANIFEST_MAGIC};
use format::{Manifest, OperatorManifest};
#[cfg(test)]
use write::data_file_name;
pub use write::{
    SubtaskFile, WriteReport, WrittenFile, commit_checkpoint, write_checkpoint,
    write_checkpoint_at, write_subtask, write_subtask_snapshot,
};

use super::restore::{self, StateBytes};
use super::{
    Checkpoint, KeyedSection, KeyedStateMeta, RestoreOptions, RestoreReport, StateMeta,
    SubtaskSnapshot, validate_keyed, validate_states,
};
use crate::error::StateError;
use crate::keyed::plan::KeyedRescalePlan;
use crate::keygroup::{KeyGroup, KeyGroupAssigner, KeyGroupRange};
use crate::operator::Checkpointed;
use crate::repartition::operator::{StateShape, plan_subtask};
use crate::storage::{
    CheckpointStorage, FileRef, MANIFEST_NAME, checkpoint_folder_name, validate_file_name,
};

/// The files of the job checkpoint whose manifest is `manifest`: the
/// callback [`CheckpointStorage::retain_last`] wants.
///
/// ```
/// use state_runtime::checkpoint::durable::{referenced_files, write_checkpoint};
/// use state_runtime::prelude::*;
/// use state_runtime::storage::{CheckpointStorage, LocalStorage};
///
/// #[derive(Checkpointed, Default)]
/// struct Op { #[state(split)] xs: Vec<u8> }
///
/// let dir = tempfile::tempdir()?;
/// let storage = LocalStorage::open(dir.path())?;
/// for id in 1..=3 {
///     let cp = Checkpoint::from_subtasks(vec![Op { xs: vec![id as u8] }.snapshot()?])?;
///     write_checkpoint(&storage, id, &[("op", &cp)])?;
/// }
/// storage.retain_last(1, &referenced_files)?;
/// assert_eq!(storage.list()?, [3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn referenced_files(checkpoint_id: u64, manifest: &[u8]) -> Result<Vec<FileRef>, StateError> {
    let path = format!("{}/{MANIFEST_NAME}", checkpoint_folder_name(checkpoint_id));
    let m = Manifest::decode(manifest, &path)?;
    Ok(m.operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .map(|s| FileRef::new(checkpoint_id, s.file.as_str()))
        .collect())
}

/// What a CRC-32C covers: one item of one operator state, or one key group
/// (every keyed state's section of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RegionKind {
    Item { state: usize, index: u64 },
    KeyGroup(KeyGroup),
}

/// A checksummed byte range of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
    crc: u32,
    kind: RegionKind,
}

impl Region {
    fn describe(&self, states: &[StateMeta]) -> String {
        match self.kind {
            RegionKind::Item { state, index } => {
                format!("item {index} of state `{}`", states[state].name)
            }
            RegionKind::KeyGroup(kg) => format!("key group {kg}"),
        }
    }
}

/// Sorts `regions` and checks that they cover `0..len` without gaps or
/// overlaps, so that every payload byte is under exactly one CRC.
fn check_tiling(regions: &mut [Region], len: u64) -> Result<(), String> {
    regions.sort_by_key(|r| (r.start, r.end, r.kind));
    let mut pos = 0;
    for r in regions.iter() {
        if r.start > r.end {
            return Err(format!(
                "region {}..{} ends before it starts",
                r.start, r.end
            ));
        }
        if r.start != pos {
            return Err(format!(
                "the payload's items and key groups leave bytes {}..{} {}",
                pos.min(r.start),
                pos.max(r.start),
                if r.start > pos {
                    "uncovered"
                } else {
                    "covered twice"
                }
            ));
        }
        pos = r.end;
    }
    if pos != len {
        return Err(format!(
            "the payload's items and key groups cover {pos} of its {len} bytes"
        ));
    }
    Ok(())
}

/// One subtask's data file, as the manifest describes it.
#[derive(Debug, Clone)]
pub struct StoredSubtask {
    file: String,
    file_len: u64,
    payload_crc: u32,
    states: Vec<StateMeta>,
    keyed: Option<KeyedSection>,
    /// Sorted, tiling the payload.
    regions: Vec<Region>,
}

impl StoredSubtask {
    /// The data file's name in the checkpoint's folder.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The data file's length, header included.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The payload's length (the file without its 16-byte header).
    pub fn payload_len(&self) -> u64 {
        self.file_len - DATA_HEADER_LEN
    }

    /// The operator states: names, modes, item types and item offsets
    /// (relative to the payload, which starts at byte
    /// [`DATA_HEADER_LEN`] of the file).
    pub fn states(&self) -> &[StateMeta] {
        &self.states
    }

    /// The keyed section: assigner, owned key groups and the offsets of
    /// every key group's sections (relative to the payload).
    pub fn keyed(&self) -> Option<&KeyedSection> {
        self.keyed.as_ref()
    }

    /// The ranges of the payload covered by `range`'s regions; `Err` with a
    /// reason unless `range` starts and ends on region boundaries.
    fn regions_in(&self, range: &Range<u64>) -> Result<&[Region], String> {
        if range.is_empty() {
            return Ok(&[]);
        }
        let first = self.regions.partition_point(|r| r.start < range.start);
        let mut pos = range.start;
        let mut i = first;
        while pos < range.end {
            match self.regions.get(i) {
                Some(r) if r.start == pos && r.end <= range.end => pos = r.end,
                _ => {
                    return Err(format!(
                        "bytes {}..{} do not start and end on item or key-group boundaries",
                        range.start, range.end
                    ));
                }
            }
            i += 1;
        }
        Ok(&self.regions[first..i])
    }
}

/// One operator of a [`StoredCheckpoint`]: its metadata (from the manifest)
/// and lazy access to its data files.
#[derive(Debug, Clone)]
pub struct StoredOperator<'a> {
    storage: &'a dyn CheckpointStorage,
    checkpoint_id: u64,
    name: String,
    assigner: Option<KeyGroupAssigner>,
    subtasks: Vec<StoredSubtask>,
}

/// What a new subtask reads from one data file (see
/// [`StoredOperator::plan_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRead {
    /// The old subtask whose file is read.
    pub old_subtask: usize,
    /// Its data file.
    pub file: String,
    /// The byte range read, as an offset range in the file.
    pub range: Range<u64>,
    /// What the bytes are.
    pub what: ReadKind,
}

/// What a [`PlannedRead`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadKind {
    /// A run of items of an operator state.
    Items {
        /// The state.
        state: String,
        /// Item indices in the old subtask's list.
        items: Range<u64>,
    },
    /// A run of old key groups, every keyed state.
    KeyGroups(KeyGroupRange),
}

/// The reads of one new subtask (see [`StoredOperator::plan_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskReadPlan {
    /// The new subtask.
    pub subtask: usize,
    /// The key groups it owns (`None`: no keyed state).
    pub key_groups: Option<KeyGroupRange>,
    /// The range reads, in the order a restore issues them.
    pub reads: Vec<PlannedRead>,
}

impl SubtaskReadPlan {
    /// Bytes read in all.
    pub fn bytes(&self) -> u64 {
        self.reads.iter().map(|r| r.range.end - r.range.start).sum()
    }
}

impl<'a> StoredOperator<'a> {
    /// The operator's name in the job checkpoint.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parallelism the checkpoint was taken at.
    pub fn parallelism(&self) -> usize {
        self.subtasks.len()
    }

    /// The key-group assigner (kind and max parallelism) of its keyed state;
    /// `None` without keyed state.
    pub fn assigner(&self) -> Option<KeyGroupAssigner> {
        self.assigner
    }

    /// Its operator states (names, modes, item types), as subtask 0 holds
    /// them; every subtask holds the same states.
    pub fn states(&self) -> &[StateMeta] {
        &self.subtasks[0].states
    }

    /// Its keyed states (names and container types).
    pub fn keyed_states(&self) -> &[KeyedStateMeta] {
        self.subtasks[0].keyed.as_ref().map_or(&[], |k| k.states())
    }

    /// The subtasks' data files, subtask `i` at index `i`.
    pub fn subtasks(&self) -> &[StoredSubtask] {
        &self.subtasks
    }

    /// The checkpoint id.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    fn path(&self, file: &str) -> String {
        file_path(self.storage, self.checkpoint_id, file)
    }

    /// Restores subtask `subtask` of `parallelism` into `op`, reading only
    /// the byte ranges of the items and key groups it receives; same
    /// semantics as [`Checkpoint::restore_into`]. `bytes_read` in the report
    /// is what was read from the storage.
    ///
    /// Every range read is checked against the CRC-32C of each item and key
    /// group in it before anything is decoded; a mismatch, or a data file
    /// whose length differs from the manifest's, is [`StateError::Corrupt`]
    /// naming the file and offset.
    pub fn restore_into<T: Checkpointed>(
        &self,
        op: &mut T,
        subtask: usize,
        parallelism: usize,
    ) -> Result<RestoreReport, StateError> {
        self.restore_into_with(op, subtask, parallelism, &RestoreOptions::default())
    }

    /// [`Checkpoint::check_restore`] for this stored operator: from the
    /// manifest, reading no data.
    pub fn check_restore<T: Checkpointed>(
        &self,
        options: &RestoreOptions,
    ) -> Result<(), StateError> {
        let first = self.subtasks.first().ok_or(StateError::ZeroParallelism)?;
        restore::check_restore::<T>(&first.states, first.keyed.as_ref(), options)
    }

    /// [`restore_into`](Self::restore_into) with options, as
    /// [`Checkpoint::restore_into_with`].
    pub fn restore_into_with<T: Checkpointed>(
        &self,
        op: &mut T,
        subtask: usize,
        parallelism: usize,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, StateError> {
        let metas: Vec<&[StateMeta]> = self.subtasks.iter().map(|s| s.states.as_slice()).collect();
        let keyed: Vec<Option<&KeyedSection>> =
            self.subtasks.iter().map(|s| s.keyed.as_ref()).collect();
        let bytes = StoredBytes {
            op: self,
            length_checked: Mutex::new(vec![false; self.subtasks.len()]),
        };
        restore::restore_operator(
            self.checkpoint_id,
            &metas,
            &keyed,
            &bytes,
            op,
            subtask,
            parallelism,
            options,
        )
    }

    /// Reads every data file whole, checks every checksum, and gives the
    /// operator's checkpoint in memory.
    pub fn load(&self) -> Result<Checkpoint, StateError> {
        let mut snapshots = Vec::with_capacity(self.subtasks.len());
        for i in 0..self.subtasks.len() {
            let data = self.read_verified(i)?;
            let sub = &self.subtasks[i];
            snapshots.push(SubtaskSnapshot {
                data,
                states: sub.states.clone(),
                keyed: sub.keyed.clone(),
            });
        }
        Ok(Checkpoint::from_subtasks(snapshots)?.with_checkpoint_id(self.checkpoint_id))
    }

    /// Reads subtask `subtask`'s data file whole and checks its length,
    /// header, payload CRC and every item's and key group's CRC. Returns
    /// the bytes read.
    pub fn verify_subtask(&self, subtask: usize) -> Result<u64, StateError> {
        let payload = self.read_verified(subtask)?;
        Ok(payload.len() as u64 + DATA_HEADER_LEN)
    }

    /// The payload of a subtask's file, every check passed.
    fn read_verified(&self, subtask: usize) -> Result<Vec<u8>, StateError> {
        let sub = self
            .subtasks
            .get(subtask)
            .ok_or(StateError::SubtaskOutOfRange {
                subtask: u32::try_from(subtask).unwrap_or(u32::MAX),
                parallelism: self.subtasks.len() as u32,
            })?;
        let path = self.path(&sub.file);
        self.check_len(sub)?;
        let mut bytes = self
            .storage
            .read_range(self.checkpoint_id, &sub.file, 0..sub.file_len)
            .map_err(|e| truncated(e, &path, sub.file_len))?;
        format::check_data_header(&bytes, &path)?;
        let payload = bytes.split_off(DATA_HEADER_LEN as usize);
        check_regions(&sub.regions, &sub.states, &payload, 0, &path)?;
        let crc = crc32c::crc32c(&payload);
        if crc != sub.payload_crc {
            return Err(StateError::Corrupt {
                path,
                offset: DATA_HEADER_LEN,
                expected: format!("payload CRC-32C {:#010x}", sub.payload_crc),
                found: format!("{crc:#010x}"),
            });
        }
        Ok(payload)
    }

    fn check_len(&self, sub: &StoredSubtask) -> Result<(), StateError> {
        let len = self.storage.file_len(self.checkpoint_id, &sub.file)?;
        if len != sub.file_len {
            return Err(StateError::Corrupt {
                path: self.path(&sub.file),
                offset: len.min(sub.file_len),
                expected: format!("a file of {} bytes", sub.file_len),
                found: format!("{len} bytes"),
            });
        }
        Ok(())
    }

    /// The range reads that restoring each of `parallelism` new subtasks
    /// issues, computed from the manifest alone (nothing is read): what
    /// [`restore_into_with`](Self::restore_into_with) reads for an operator
    /// that declares every state of the checkpoint. `assigner` is the keyed
    /// state's new assigner (`None`: the checkpoint's).
    ///
    /// ```
    /// use state_runtime::checkpoint::durable::{StoredCheckpoint, write_checkpoint};
    /// use state_runtime::prelude::*;
    /// use state_runtime::storage::LocalStorage;
    ///
    /// #[derive(Checkpointed, Default)]
    /// struct Op { #[state(split)] xs: Vec<u64> }
    ///
    /// let cp = Checkpoint::from_subtasks(vec![
    ///     Op { xs: vec![1, 2, 3] }.snapshot()?,
    ///     Op { xs: vec![4] }.snapshot()?,
    /// ])?;
    /// let dir = tempfile::tempdir()?;
    /// let storage = LocalStorage::open(dir.path())?;
    /// write_checkpoint(&storage, 1, &[("op", &cp)])?;
    /// let stored = StoredCheckpoint::open(&storage, 1)?;
    /// let plan = stored.operator("op")?.plan_reads(4, None)?;
    /// // Four subtasks, one item (one byte) each.
    /// assert!(plan.iter().all(|p| p.bytes() == 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plan_reads(
        &self,
        parallelism: usize,
        assigner: Option<KeyGroupAssigner>,
    ) -> Result<Vec<SubtaskReadPlan>, StateError> {
        if parallelism == 0 {
            return Err(StateError::ZeroParallelism);
        }
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let states = self.states();
        let counts: Vec<Vec<u64>> = (0..states.len())
            .map(|i| {
                self.subtasks
                    .iter()
                    .map(|s| s.states[i].len() as u64)
                    .collect()
            })
            .collect();
        let shapes: Vec<StateShape<'_>> = states
            .iter()
            .zip(&counts)
            .map(|(s, c)| StateShape {
                mode: s.mode,
                counts: c,
            })
            .collect();
        let keyed_plan = match (self.assigner, self.subtasks[0].keyed.as_ref()) {
            (Some(old), Some(_)) => Some(KeyedRescalePlan::new(
                old,
                clamp(self.parallelism()),
                assigner.unwrap_or(old),
                clamp(parallelism),
            )?),
            _ => None,
        };
        let mut out = Vec::with_capacity(parallelism);
        for subtask in 0..parallelism {
            let mut reads = Vec::new();
            for (index, runs) in plan_subtask(&shapes, subtask, parallelism)
                .into_iter()
                .enumerate()
            {
                for run in runs {
                    let sub = &self.subtasks[run.old_subtask];
                    let r = sub.states[index].items_range(&run.items);
                    if r.is_empty() {
                        continue;
                    }
                    reads.push(PlannedRead {
                        old_subtask: run.old_subtask,
                        file: sub.file.clone(),
                        range: r.start + DATA_HEADER_LEN..r.end + DATA_HEADER_LEN,
                        what: ReadKind::Items {
                            state: states[index].name.clone(),
                            items: run.items,
                        },
                    });
                }
            }
            let mut key_groups = None;
            if let Some(plan) = &keyed_plan {
                let mine = &plan.subtasks()[subtask];
                key_groups = Some(mine.key_groups);
                for read in &mine.reads {
                    let old = read.old_subtask as usize;
                    let sub = &self.subtasks[old];
                    let k = sub.keyed.as_ref().expect("every subtask has keyed state");
                    let Some(r) = k.key_groups_bytes(read.key_groups) else {
                        continue;
                    };
                    if r.is_empty() {
                        continue;
                    }
                    reads.push(PlannedRead {
                        old_subtask: old,
                        file: sub.file.clone(),
                        range: r.start + DATA_HEADER_LEN..r.end + DATA_HEADER_LEN,
                        what: ReadKind::KeyGroups(read.key_groups),
                    });
                }
            }
            out.push(SubtaskReadPlan {
                subtask,
                key_groups,
                reads,
            });
        }
        Ok(out)
    }

    fn from_manifest(
        storage: &'a dyn CheckpointStorage,
        checkpoint_id: u64,
        m: OperatorManifest,
        manifest_path: &str,
    ) -> Result<Self, StateError> {
        let inconsistent = |found: String| StateError::Corrupt {
            path: manifest_path.to_owned(),
            offset: 0,
            expected: format!("a consistent description of operator `{}`", m.name),
            found,
        };
        if m.name.is_empty() {
            return Err(inconsistent("an empty operator name".into()));
        }
        let parallelism = m.subtasks.len();
        let mut subtasks = Vec::with_capacity(parallelism);
        for (i, sub) in m.subtasks.iter().enumerate() {
            validate_file_name(&sub.file).map_err(|e| inconsistent(e.to_string()))?;
            let payload_len = sub
                .file_len
                .checked_sub(DATA_HEADER_LEN)
                .ok_or_else(|| inconsistent(format!("file length {}", sub.file_len)))?;
            let states: Vec<StateMeta> = m
                .states
                .iter()
                .zip(&sub.items)
                .map(|((name, mode, item_type), (bounds, _))| StateMeta {
                    name: name.clone(),
                    mode: *mode,
                    item_type: item_type.clone(),
                    bounds: bounds.clone(),
                })
                .collect();
            validate_states(&states, payload_len, i).map_err(|e| inconsistent(e.to_string()))?;
            let keyed = match (&sub.keyed, m.assigner) {
                (Some((range, bounds, _)), Some(assigner)) => {
                    let k = KeyedSection::from_parts(
                        assigner,
                        *range,
                        m.keyed_states.clone(),
                        bounds.clone(),
                    );
                    validate_keyed(&k, payload_len, i, parallelism)
                        .map_err(|e| inconsistent(e.to_string()))?;
                    if let Some(s) = k
                        .states()
                        .iter()
                        .find(|s| states.iter().any(|o| o.name == s.name) || s.name.is_empty())
                    {
                        return Err(inconsistent(format!(
                            "keyed state `{}` is also an operator state",
                            s.name
                        )));
                    }
                    Some(k)
                }
                (None, None) => None,
                _ => return Err(inconsistent("a keyed section without assigner".into())),
            };
            let mut regions = Vec::new();
            collect_regions(&states, keyed.as_ref(), &mut regions);
            // Attach the CRCs, then check the tiling of the payload.
            for r in &mut regions {
                r.crc = match r.kind {
                    RegionKind::Item { state, index } => sub.items[state].1[index as usize],
                    RegionKind::KeyGroup(kg) => {
                        let (range, _, crcs) = sub.keyed.as_ref().expect("keyed");
                        crcs[(kg - range.start()) as usize]
                    }
                };
            }
            check_tiling(&mut regions, payload_len).map_err(inconsistent)?;
            subtasks.push(StoredSubtask {
                file: sub.file.clone(),
                file_len: sub.file_len,
                payload_crc: sub.payload_crc,
                states,
                keyed,
                regions,
            });
        }
        Ok(StoredOperator {
            storage,
            checkpoint_id,
            name: m.name,
            assigner: m.assigner,
            subtasks,
        })
    }
}

fn collect_regions(states: &[StateMeta], keyed: Option<&KeyedSection>, out: &mut Vec<Region>) {
    for (s, meta) in states.iter().enumerate() {
        for i in 0..meta.len() {
            let r = meta.item_range(i).expect("item in range");
            out.push(Region {
                start: r.start,
                end: r.end,
                crc: 0,
                kind: RegionKind::Item {
                    state: s,
                    index: i as u64,
                },
            });
        }
    }
    if let Some(k) = keyed {
        for kg in k.key_groups() {
            let r = k.key_group_range(kg).expect("owned key group");
            out.push(Region {
                start: r.start,
                end: r.end,
                crc: 0,
                kind: RegionKind::KeyGroup(kg),
            });
        }
    }
}

/// Checks the CRC of every region in `regions` against `bytes`, which hold
/// the payload from offset `base` on.
fn check_regions(
    regions: &[Region],
    states: &[StateMeta],
    bytes: &[u8],
    base: u64,
    path: &str,
) -> Result<(), StateError> {
    for r in regions {
        let slice = &bytes[(r.start - base) as usize..(r.end - base) as usize];
        let crc = crc32c::crc32c(slice);
        if crc != r.crc {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                offset: DATA_HEADER_LEN + r.start,
                expected: format!(
                    "CRC-32C {:#010x} of {} (bytes {}..{} of the file)",
                    r.crc,
                    r.describe(states),
                    DATA_HEADER_LEN + r.start,
                    DATA_HEADER_LEN + r.end
                ),
                found: format!("{crc:#010x}"),
            });
        }
    }
    Ok(())
}

/// A read past the end of a file that the manifest says is longer: the file
/// was truncated.
fn truncated(e: StateError, path: &str, expected_len: u64) -> StateError {
    match e {
        StateError::RangeOutOfBounds { start, len, .. } => StateError::Corrupt {
            path: path.to_owned(),
            offset: start.min(len),
            expected: format!("a file of {expected_len} bytes"),
            found: format!("{len} bytes"),
        },
        other => other,
    }
}

fn file_path(storage: &dyn CheckpointStorage, checkpoint_id: u64, file: &str) -> String {
    format!(
        "{}/{}",
        storage.location(),
        FileRef::new(checkpoint_id, file)
    )
}

/// Serves a restore's byte ranges from the data files, each checked.
struct StoredBytes<'s> {
    op: &'s StoredOperator<'s>,
    /// Old subtasks whose file length was checked against the manifest.
    length_checked: Mutex<Vec<bool>>,
}

impl StateBytes for StoredBytes<'_> {
    fn read(
        &self,
        state: &str,
        old_subtask: usize,
        range: Range<u64>,
    ) -> Result<Cow<'_, [u8]>, StateError> {
        let mut buf = Vec::new();
        self.read_into(state, old_subtask, range, &mut buf)?;
        Ok(Cow::Owned(buf))
    }

    fn read_into(
        &self,
        state: &str,
        old_subtask: usize,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let outside = |len: u64| StateError::CorruptSnapshot {
            state: state.to_owned(),
            subtask: old_subtask,
            message: format!(
                "bytes {}..{} are outside the {len} bytes of data",
                range.start, range.end
            ),
        };
        let sub = self
            .op
            .subtasks
            .get(old_subtask)
            .ok_or_else(|| outside(0))?;
        if range.start > range.end || range.end > sub.payload_len() {
            return Err(outside(sub.payload_len()));
        }
        let path = self.op.path(&sub.file);
        let regions = sub
            .regions_in(&range)
            .map_err(|reason| StateError::Corrupt {
                path: path.clone(),
                offset: DATA_HEADER_LEN + range.start,
                expected: "a read of whole items or key groups".into(),
                found: reason,
            })?;
        buf.clear();
        if range.is_empty() {
            return Ok(());
        }
        {
            let mut checked = self
                .length_checked
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !checked[old_subtask] {
                self.op.check_len(sub)?;
                checked[old_subtask] = true;
            }
        }
        self.op
            .storage
            .read_range_into(
                self.op.checkpoint_id,
                &sub.file,
                range.start + DATA_HEADER_LEN..range.end + DATA_HEADER_LEN,
                buf,
            )
            .map_err(|e| truncated(e, &path, sub.file_len))?;
        if buf.len() as u64 != range.end - range.start {
            return Err(StateError::Corrupt {
                path,
                offset: DATA_HEADER_LEN + range.start,
                expected: format!("{} bytes", range.end - range.start),
                found: format!("{} bytes", buf.len()),
            });
        }
        check_regions(regions, &sub.states, buf, range.start, &path)
    }
}

/// A committed job checkpoint on a [`CheckpointStorage`], opened by reading
/// its manifest only.
///
/// ```
/// use state_runtime::checkpoint::durable::{StoredCheckpoint, write_checkpoint};
/// use state_runtime::prelude::*;
/// use state_runtime::storage::LocalStorage;
///
/// #[derive(Checkpointed, Default, PartialEq, Debug)]
/// struct Op { #[state(union)] seen: Vec<String> }
///
/// let cp = Checkpoint::from_subtasks(vec![Op { seen: vec!["x".into()] }.snapshot()?])?;
/// let dir = tempfile::tempdir()?;
/// let storage = LocalStorage::open(dir.path())?;
/// assert!(StoredCheckpoint::latest(&storage)?.is_none());
/// write_checkpoint(&storage, 7, &[("op", &cp)])?;
///
/// let stored = StoredCheckpoint::open(&storage, 7)?;
/// assert_eq!(stored.checkpoint_id(), 7);
/// assert_eq!(stored.operators().len(), 1);
/// assert_eq!(stored.operator("op")?.load()?, cp.clone().with_checkpoint_id(7));
/// assert!(stored.operator("nope").is_err());
/// stored.verify()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoredCheckpoint<'a> {
    storage: &'a dyn CheckpointStorage,
    checkpoint_id: u64,
    created_unix_ms: u64,
    manifest_len: u64,
    operators: Vec<StoredOperator<'a>>,
}

/// What [`StoredCheckpoint::verify`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Data files read and checked.
    pub files: u64,
    /// Bytes read (manifest and data files).
    pub bytes: u64,
}

impl<'a> StoredCheckpoint<'a> {
    /// Opens complete checkpoint `checkpoint_id`: reads and checks its
    /// manifest ([`StateError::Corrupt`], or
    /// [`StateError::UnsupportedFormatVersion`] for a newer format). No data
    /// file is read.
    pub fn open(
        storage: &'a dyn CheckpointStorage,
        checkpoint_id: u64,
    ) -> Result<Self, StateError> {
        let bytes = storage.read_manifest(checkpoint_id)?;
        Self::from_manifest(storage, checkpoint_id, &bytes)
    }

    /// Opens the newest complete checkpoint, if any.
    pub fn latest(storage: &'a dyn CheckpointStorage) -> Result<Option<Self>, StateError> {
        match storage.latest()? {
            Some(id) => Self::open(storage, id).map(Some),
            None => Ok(None),
        }
    }

    fn from_manifest(
        storage: &'a dyn CheckpointStorage,
        checkpoint_id: u64,
        bytes: &[u8],
    ) -> Result<Self, StateError> {
        let path = file_path(storage, checkpoint_id, MANIFEST_NAME);
        let m = Manifest::decode(bytes, &path)?;
        Self::from_decoded(storage, checkpoint_id, m, bytes.len() as u64, &path)
    }

    fn from_decoded(
        storage: &'a dyn CheckpointStorage,
        checkpoint_id: u64,
        m: Manifest,
        manifest_len: u64,
        path: &str,
    ) -> Result<Self, StateError> {
        if m.checkpoint_id != checkpoint_id {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                offset: 16,
                expected: format!("checkpoint id {checkpoint_id}"),
                found: format!("checkpoint id {}", m.checkpoint_id),
            });
        }
        let mut names = HashSet::new();
        let mut files = HashSet::new();
        let mut operators = Vec::with_capacity(m.operators.len());
        for op in m.operators {
            if !names.insert(op.name.clone()) {
                return Err(StateError::Corrupt {
                    path: path.to_owned(),
                    offset: 0,
                    expected: "unique operator names".into(),
                    found: format!("operator `{}` twice", op.name),
                });
            }
            if let Some(f) = op.subtasks.iter().find(|s| !files.insert(s.file.clone())) {
                return Err(StateError::Corrupt {
                    path: path.to_owned(),
                    offset: 0,
                    expected: "one data file per subtask".into(),
                    found: format!("file {} used twice", f.file),
                });
            }
            operators.push(StoredOperator::from_manifest(
                storage,
                checkpoint_id,
                op,
                path,
            )?);
        }
        Ok(StoredCheckpoint {
            storage,
            checkpoint_id,
            created_unix_ms: m.created_unix_ms,
            manifest_len,
            operators,
        })
    }

    /// The checkpoint id.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// When the checkpoint was written, in milliseconds since the Unix epoch
    /// (as given to the writer).
    pub fn created_unix_ms(&self) -> u64 {
        self.created_unix_ms
    }

    /// The format version of its files (this build reads only
    /// [`FORMAT_VERSION`]).
    pub fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }

    /// The manifest's length in bytes.
    pub fn manifest_len(&self) -> u64 {
        self.manifest_len
    }

    /// The storage it is read from.
    pub fn storage(&self) -> &'a dyn CheckpointStorage {
        self.storage
    }

    /// Its operators, in the order they were written.
    pub fn operators(&self) -> &[StoredOperator<'a>] {
        &self.operators
    }

    /// The operator named `name`, or [`StateError::OperatorNotFound`].
    pub fn operator(&self, name: &str) -> Result<&StoredOperator<'a>, StateError> {
        self.operators
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| StateError::OperatorNotFound {
                operator: name.to_owned(),
                checkpoint_id: self.checkpoint_id,
                available: self.operators.iter().map(|o| o.name.clone()).collect(),
            })
    }

    /// Total bytes of its data files.
    pub fn data_file_bytes(&self) -> u64 {
        self.operators
            .iter()
            .flat_map(|o| &o.subtasks)
            .map(|s| s.file_len)
            .sum()
    }

    /// Reads every data file whole and checks every checksum (the manifest
    /// was checked by [`open`](Self::open)). Stops at the first error.
    pub fn verify(&self) -> Result<VerifyReport, StateError> {
        let mut report = VerifyReport {
            files: 0,
            bytes: self.manifest_len,
        };
        for op in &self.operators {
            for i in 0..op.parallelism() {
                report.bytes += op.verify_subtask(i)?;
                report.files += 1;
            }
        }
        Ok(report)
    }
}

/// Decodes and validates a manifest without a storage, as
/// [`StoredCheckpoint::open`] does; for fuzzing and property tests of the
/// decoder. With `check_crc == false` the manifest's CRC is not checked, so
/// that a fuzzer reaches the structure behind it. Never panics.
#[doc(hidden)]
pub fn decode_manifest_for_fuzzing(bytes: &[u8], check_crc: bool) -> Result<(), StateError> {
    #[derive(Debug)]
    struct NoStorage;
    impl CheckpointStorage for NoStorage {
        fn location(&self) -> String {
            "<fuzz>".into()
        }
        fn begin(&self, _: u64) -> Result<(), StateError> {
            unreachable!()
        }
        fn write_file(&self, _: u64, _: &str, _: &[u8]) -> Result<(), StateError> {
            unreachable!()
        }
        fn commit(&self, _: u64, _: &[u8]) -> Result<(), StateError> {
            unreachable!()
        }
        fn abort(&self, _: u64) -> Result<(), StateError> {
            unreachable!()
        }
        fn list(&self) -> Result<Vec<u64>, StateError> {
            Ok(Vec::new())
        }
        fn read_manifest(&self, id: u64) -> Result<Vec<u8>, StateError> {
            Err(StateError::CheckpointNotFound {
                checkpoint_id: id,
                location: self.location(),
            })
        }
        fn list_files(&self, _: u64) -> Result<Vec<String>, StateError> {
            Ok(Vec::new())
        }
        fn file_len(&self, _: u64, name: &str) -> Result<u64, StateError> {
            Err(StateError::FileNotFound {
                location: name.to_owned(),
            })
        }
        fn read_range(&self, _: u64, name: &str, _: Range<u64>) -> Result<Vec<u8>, StateError> {
            Err(StateError::FileNotFound {
                location: name.to_owned(),
            })
        }
        fn read_stats(&self) -> crate::storage::ReadStats {
            crate::storage::ReadStats::default()
        }
        fn retain_last(
            &self,
            _: usize,
            _: crate::storage::ReferencedFiles<'_>,
        ) -> Result<crate::storage::RetentionReport, StateError> {
            unreachable!()
        }
    }
    let m = Manifest::decode_inner(bytes, "<fuzz>", check_crc)?;
    let id = m.checkpoint_id;
    let stored = StoredCheckpoint::from_decoded(&NoStorage, id, m, bytes.len() as u64, "<fuzz>")?;
    // Exercise the planner on what was accepted: it must not panic either.
    for op in stored.operators() {
        for p in [1, 2, op.parallelism(), op.parallelism() + 1] {
            if let Some(a) = op.assigner() {
                if p as u32 > a.max_parallelism().get() {
                    continue;
                }
            }
            op.plan_reads(p, None)?;
        }
    }
    Ok(())
}

/// Checks a data file's first bytes as the reader does (magic, version,
/// header CRC); for fuzzing. Never panics.
#[doc(hidden)]
pub fn check_data_header_for_fuzzing(bytes: &[u8]) -> Result<(), StateError> {
    format::check_data_header(bytes, "<fuzz>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, n: u32) -> Region {
        Region {
            start,
            end,
            crc: 0,
            kind: RegionKind::KeyGroup(n),
        }
    }

    #[test]
    fn tiling_detects_gaps_overlaps_and_short_cover() {
        let mut ok = vec![region(3, 5, 1), region(0, 3, 0), region(5, 5, 2)];
        check_tiling(&mut ok, 5).unwrap();
        assert!(check_tiling(&mut [region(0, 2, 0), region(3, 5, 1)], 5).is_err());
        assert!(check_tiling(&mut [region(0, 3, 0), region(2, 5, 1)], 5).is_err());
        assert!(check_tiling(&mut [region(0, 3, 0)], 5).is_err());
        assert!(check_tiling(&mut [], 1).is_err());
        check_tiling(&mut [], 0).unwrap();
    }

    #[test]
    fn file_names_are_valid_and_unique() {
        let a = data_file_name(0, "sum/π", 3);
        assert_eq!(a, "0.sum__.3.data");
        validate_file_name(&a).unwrap();
        validate_file_name(&data_file_name(12, &"x".repeat(500), 7)).unwrap();
        assert_ne!(data_file_name(1, "a", 11), data_file_name(11, "a", 1));
    }
}
