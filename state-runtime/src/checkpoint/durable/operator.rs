//! One operator of a stored checkpoint: its subtasks' files as the manifest
//! describes them, the reads a restore at any parallelism plans, and the
//! checked byte ranges it serves.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Mutex;

use super::super::restore::StateBytes;
use super::super::{
    Checkpoint, KeyedSection, KeyedStateMeta, StateMeta, SubtaskSnapshot, check_layers,
    validate_keyed, validate_states,
};
use super::format::{self, DATA_HEADER_LEN, OperatorManifest};
use super::regions::{Region, RegionKind, check_regions, check_tiling, collect_regions};
use crate::checkpoint::plan::RestorePlan;
use crate::error::StateError;
use crate::keygroup::{KeyGroup, KeyGroupAssigner, KeyGroupRange};
use crate::storage::{CheckpointStorage, FileRef, validate_file_name};

/// One subtask's data file, as the manifest describes it.
#[derive(Debug, Clone)]
pub struct StoredSubtask {
    pub(super) file: String,
    pub(super) file_len: u64,
    pub(super) payload_crc: u32,
    pub(super) states: Vec<StateMeta>,
    pub(super) keyed: Option<KeyedSection>,
    /// Sorted, tiling the payload.
    pub(super) regions: Vec<Region>,
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
    pub(super) fn regions_in(&self, range: &Range<u64>) -> Result<&[Region], String> {
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

/// One operator of a [`StoredCheckpoint`](super::StoredCheckpoint): its metadata (from the manifest)
/// and lazy access to its data files.
#[derive(Debug, Clone)]
pub struct StoredOperator<'a> {
    pub(super) storage: &'a dyn CheckpointStorage,
    pub(super) checkpoint_id: u64,
    pub(super) name: String,
    pub(super) assigner: Option<KeyGroupAssigner>,
    pub(super) subtasks: Vec<StoredSubtask>,
}

/// What a new subtask reads from one data file (see
/// [`StoredOperator::plan_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRead {
    /// The old subtask whose file is read.
    pub old_subtask: usize,
    /// The checkpoint whose folder holds the file: this one, or (for the
    /// earlier layers of an incremental keyed section) an older one.
    pub checkpoint_id: u64,
    /// The data file.
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

    pub(super) fn path(&self, file: &str) -> String {
        file_path(self.storage, self.checkpoint_id, file)
    }

    /// Reads every data file whole, checks every checksum, and gives the
    /// operator's checkpoint in memory.
    ///
    /// An incremental checkpoint's keyed sections are deltas on top of
    /// other checkpoints' files, which a snapshot in memory cannot hold:
    /// loading one is [`StateError::IncrementalCheckpoint`] (restore it from
    /// storage instead, with [`Restore`](crate::checkpoint::Restore)).
    pub fn load(&self) -> Result<Checkpoint, StateError> {
        if self
            .subtasks
            .iter()
            .any(|s| s.keyed.as_ref().is_some_and(|k| k.is_delta()))
        {
            return Err(StateError::IncrementalCheckpoint {
                checkpoint_id: self.checkpoint_id,
                operator: self.name.clone(),
            });
        }
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
    ///
    /// For an incremental checkpoint it also reads the keyed sections of
    /// every earlier layer the subtask builds on and checks their lengths
    /// and key groups' CRCs (those bytes count too).
    pub fn verify_subtask(&self, subtask: usize) -> Result<u64, StateError> {
        let payload = self.read_verified(subtask)?;
        let mut bytes = payload.len() as u64 + DATA_HEADER_LEN;
        if let Some(keyed) = self.subtasks[subtask].keyed.as_ref() {
            let checked = Mutex::default();
            let mut buf = Vec::new();
            for (i, layer) in keyed.earlier_layers().iter().enumerate() {
                let all = layer.bounds[0]..layer.bounds[layer.bounds.len() - 1];
                read_layer(self.storage, keyed, i, all, &mut buf, &checked)?;
                bytes += buf.len() as u64;
            }
        }
        Ok(bytes)
    }

    /// The payload of a subtask's file, every check passed.
    pub(super) fn read_verified(&self, subtask: usize) -> Result<Vec<u8>, StateError> {
        let sub = self
            .subtasks
            .get(subtask)
            .ok_or(StateError::SubtaskOutOfRange {
                subtask,
                parallelism: self.subtasks.len(),
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

    pub(super) fn check_len(&self, sub: &StoredSubtask) -> Result<(), StateError> {
        let file = FileRef::new(self.checkpoint_id, sub.file.as_str());
        check_file_len(self.storage, &file, sub.file_len, &self.path(&sub.file))
    }

    /// The range reads that restoring each of `parallelism` new subtasks
    /// issues, computed from the manifest alone (nothing is read): what
    /// [`restore_into_with`](crate::checkpoint::Restore::restore_into_with) reads for an operator
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
        let states = self.states();
        let metas: Vec<&[StateMeta]> = self.subtasks.iter().map(|s| s.states.as_slice()).collect();
        let keyed: Vec<Option<&KeyedSection>> =
            self.subtasks.iter().map(|s| s.keyed.as_ref()).collect();
        let restore_plan = RestorePlan::new(&metas, Some(&keyed), assigner, parallelism)?;
        let mut out = Vec::with_capacity(parallelism);
        for subtask in 0..parallelism {
            let mut reads = Vec::new();
            for (index, runs) in restore_plan.items(subtask).into_iter().enumerate() {
                for run in runs {
                    let sub = &self.subtasks[run.old_subtask];
                    let r = sub.states[index].items_range(&run.items);
                    if r.is_empty() {
                        continue;
                    }
                    reads.push(PlannedRead {
                        old_subtask: run.old_subtask,
                        checkpoint_id: self.checkpoint_id,
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
            if let Some(mine) = restore_plan.keyed(subtask) {
                key_groups = Some(mine.key_groups);
                for read in &mine.reads {
                    let old = read.old_subtask;
                    let sub = &self.subtasks[old];
                    let k = sub.keyed.as_ref().expect("every subtask has keyed state");
                    // Every layer, in the order a restore applies them, for
                    // the key groups a restore reads from it.
                    for (view, run) in k.layer_runs(read.key_groups) {
                        let Some(r) = view.key_groups_bytes(run) else {
                            continue;
                        };
                        if r.is_empty() {
                            continue;
                        }
                        let (checkpoint_id, file) = match view.layer {
                            None => (self.checkpoint_id, sub.file.clone()),
                            Some(i) => {
                                let l = &k.earlier_layers()[i];
                                (l.checkpoint_id, l.file.clone())
                            }
                        };
                        reads.push(PlannedRead {
                            old_subtask: old,
                            checkpoint_id,
                            file,
                            range: r.start + DATA_HEADER_LEN..r.end + DATA_HEADER_LEN,
                            what: ReadKind::KeyGroups(run),
                        });
                    }
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

    pub(super) fn from_manifest(
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
                .map(|((name, mode, item_type, ty), (bounds, _))| StateMeta {
                    name: name.clone(),
                    mode: *mode,
                    item_type: item_type.clone(),
                    ty: ty.clone(),
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
                    )
                    .with_layers(sub.layers.clone());
                    validate_keyed(&k, payload_len, i, parallelism)
                        .map_err(|e| inconsistent(e.to_string()))?;
                    check_layers(
                        &sub.layers,
                        checkpoint_id,
                        *range,
                        m.keyed_states.len(),
                        DATA_HEADER_LEN,
                    )
                    .map_err(|e| inconsistent(format!("subtask {i}: {e}")))?;
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

/// A read past the end of a file that the manifest says is longer: the file
/// was truncated.
pub(super) fn truncated(e: StateError, path: &str, expected_len: u64) -> StateError {
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

pub(super) fn file_path(storage: &dyn CheckpointStorage, checkpoint_id: u64, file: &str) -> String {
    format!(
        "{}/{}",
        storage.location(),
        FileRef::new(checkpoint_id, file)
    )
}

/// Serves a restore's byte ranges from the data files, each checked.
pub(super) struct StoredBytes<'s> {
    pub(super) op: &'s StoredOperator<'s>,
    /// Old subtasks whose file length was checked against the manifest.
    pub(super) length_checked: Mutex<Vec<bool>>,
    /// Earlier layers' files whose length was checked.
    pub(super) layers_checked: Mutex<HashSet<FileRef>>,
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
        let file = FileRef::new(self.op.checkpoint_id, sub.file.as_str());
        read_payload_range(
            self.op.storage,
            &file,
            sub.file_len,
            range.clone(),
            buf,
            &path,
        )?;
        check_regions(regions, &sub.states, buf, range.start, &path)
    }

    fn read_layer_into(
        &self,
        state: &str,
        old_subtask: usize,
        layer: usize,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let missing = || StateError::CorruptSnapshot {
            state: state.to_owned(),
            subtask: old_subtask,
            message: format!("no earlier layer {layer}"),
        };
        let keyed = self
            .op
            .subtasks
            .get(old_subtask)
            .and_then(|s| s.keyed.as_ref())
            .ok_or_else(missing)?;
        if layer >= keyed.earlier_layers().len() {
            return Err(missing());
        }
        read_layer(
            self.op.storage,
            keyed,
            layer,
            range,
            buf,
            &self.layers_checked,
        )
    }
}

/// Checks that `file` (at `path`, for messages) is `expected` bytes long:
/// a data file the manifest describes, neither truncated nor extended.
fn check_file_len(
    storage: &dyn CheckpointStorage,
    file: &FileRef,
    expected: u64,
    path: &str,
) -> Result<(), StateError> {
    let len = storage.file_len(file.checkpoint_id, &file.name)?;
    if len != expected {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            offset: len.min(expected),
            expected: format!("a file of {expected} bytes"),
            found: format!("{len} bytes"),
        });
    }
    Ok(())
}

/// Reads payload bytes `range` of `file` (at `path`, for messages; the
/// manifest says it is `file_len` bytes) into `buf`, exactly.
fn read_payload_range(
    storage: &dyn CheckpointStorage,
    file: &FileRef,
    file_len: u64,
    range: Range<u64>,
    buf: &mut Vec<u8>,
    path: &str,
) -> Result<(), StateError> {
    storage
        .read_range_into(
            file.checkpoint_id,
            &file.name,
            range.start + DATA_HEADER_LEN..range.end + DATA_HEADER_LEN,
            buf,
        )
        .map_err(|e| truncated(e, path, file_len))?;
    if buf.len() as u64 != range.end - range.start {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            offset: DATA_HEADER_LEN + range.start,
            expected: format!("{} bytes", range.end - range.start),
            found: format!("{} bytes", buf.len()),
        });
    }
    Ok(())
}

/// Reads `range` (payload offsets, on key-group boundaries) of earlier
/// layer `index` (which exists) of `keyed` into `buf`, checking the file's
/// length (once per file, recorded in `checked`) and each key group's
/// CRC-32C.
pub(super) fn read_layer(
    storage: &dyn CheckpointStorage,
    keyed: &KeyedSection,
    index: usize,
    range: Range<u64>,
    buf: &mut Vec<u8>,
    checked: &Mutex<HashSet<FileRef>>,
) -> Result<(), StateError> {
    let layer = &keyed.earlier_layers()[index];
    let view = keyed.view(Some(index)).expect("an earlier layer");
    let file = FileRef::new(layer.checkpoint_id, layer.file.as_str());
    let path = file_path(storage, layer.checkpoint_id, &layer.file);
    // The key groups the range covers, whole.
    let groups: Vec<(KeyGroup, Range<u64>)> = keyed
        .key_groups()
        .iter()
        .filter_map(|kg| view.key_group_range(kg).map(|r| (kg, r)))
        .filter(|(_, r)| r.start >= range.start && r.end <= range.end && !r.is_empty())
        .collect();
    let covered: u64 = groups.iter().map(|(_, r)| r.end - r.start).sum();
    if covered != range.end - range.start {
        return Err(StateError::Corrupt {
            path,
            offset: DATA_HEADER_LEN + range.start,
            expected: "a read of whole key groups".into(),
            found: format!("bytes {}..{}", range.start, range.end),
        });
    }
    buf.clear();
    if range.is_empty() {
        return Ok(());
    }
    let first_check = checked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(file.clone());
    if first_check {
        check_file_len(storage, &file, layer.file_len, &path)?;
    }
    read_payload_range(storage, &file, layer.file_len, range.clone(), buf, &path)?;
    for (kg, r) in groups {
        let g = keyed.key_groups().index_of(kg).expect("an owned key group");
        let bytes = &buf[(r.start - range.start) as usize..(r.end - range.start) as usize];
        let crc = crc32c::crc32c(bytes);
        if crc != layer.crcs[g] {
            return Err(StateError::Corrupt {
                path,
                offset: DATA_HEADER_LEN + r.start,
                expected: format!(
                    "CRC-32C {:#010x} of key group {kg} (bytes {}..{} of the file)",
                    layer.crcs[g],
                    DATA_HEADER_LEN + r.start,
                    DATA_HEADER_LEN + r.end
                ),
                found: format!("{crc:#010x}"),
            });
        }
    }
    Ok(())
}

/// A stored operator restores through [`Restore`](crate::checkpoint::Restore),
/// reading only the byte ranges of the items and key groups the restoring
/// subtask receives (`bytes_read` in the report is what was read from the
/// storage). Every range read is checked against the CRC-32C of each item
/// and key group in it before anything is decoded; a mismatch, or a data file
/// whose length differs from the manifest's, is [`StateError::Corrupt`]
/// naming the file and offset.
impl crate::checkpoint::source::sealed::Source for StoredOperator<'_> {
    fn with_source<R>(
        &self,
        f: impl FnOnce(crate::checkpoint::source::sealed::RestoreSource<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let bytes = StoredBytes {
            op: self,
            length_checked: Mutex::new(vec![false; self.subtasks.len()]),
            layers_checked: Mutex::default(),
        };
        f(crate::checkpoint::source::sealed::RestoreSource {
            checkpoint_id: self.checkpoint_id,
            metas: self.subtasks.iter().map(|s| s.states.as_slice()).collect(),
            keyed: self.subtasks.iter().map(|s| s.keyed.as_ref()).collect(),
            bytes: &bytes,
        })
    }
}

impl crate::checkpoint::Restore for StoredOperator<'_> {}
