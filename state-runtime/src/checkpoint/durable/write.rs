//! Writing job checkpoints in format v1: data files, streamed or from
//! memory, then the manifest that commits them.
//!
//! Two phases, so that subtasks can write their own files (on their own
//! threads, straight from their live state) and one committer writes the
//! manifest:
//!
//! 1. [`write_subtask`] streams one subtask's snapshot into its data file
//!    through a bounded buffer (about 8 MiB, or one key group if larger),
//!    taking every CRC-32C on the way, and makes the file durable; or
//!    [`write_subtask_snapshot`] writes a snapshot already in memory. Each
//!    gives a [`SubtaskFile`]: what the manifest needs to know of the file.
//! 2. [`commit_checkpoint`] checks the files of every operator against each
//!    other and commits the manifest.
//!
//! [`write_checkpoint`] does both for checkpoints held in memory.

use std::collections::HashSet;

use super::format::{self, Manifest, OperatorManifest, SubtaskManifest};
use super::{DATA_HEADER_LEN, Region, RegionKind, check_tiling, collect_regions};
use crate::checkpoint::WriteSnapshot;
use crate::checkpoint::writer::StreamedPayload;
use crate::checkpoint::{
    Checkpoint, KeyedSection, SnapshotWriter, StateMeta, SubtaskSnapshot, check_same_keyed,
    check_same_states, validate_keyed,
};
use crate::error::StateError;
use crate::keyed::SnapshotPosition;
use crate::schema::StateType;
use crate::storage::{CheckpointStorage, FileSink};

/// One file written by [`write_checkpoint`] or [`commit_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The operator.
    pub operator: String,
    /// The subtask.
    pub subtask: usize,
    /// The file's name in the checkpoint's folder.
    pub name: String,
    /// The file's length (16-byte header included).
    pub len: u64,
}

/// What [`write_checkpoint`] or [`commit_checkpoint`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteReport {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// The data files, operator by operator, subtask by subtask.
    pub files: Vec<WrittenFile>,
    /// State bytes (the data files' payloads, headers excluded).
    pub payload_bytes: u64,
    /// The manifest's length.
    pub manifest_bytes: u64,
}

/// One subtask's data file, written and durable but not yet committed: what
/// [`commit_checkpoint`] records of it in the manifest (its states, offsets
/// and CRC-32Cs). Made by [`write_subtask`] or [`write_subtask_snapshot`].
#[derive(Debug, Clone)]
pub struct SubtaskFile {
    pub(super) checkpoint_id: u64,
    pub(super) operator_index: usize,
    pub(super) operator: String,
    pub(super) subtask: usize,
    pub(super) name: String,
    pub(super) payload_len: u64,
    pub(super) payload_crc: u32,
    pub(super) states: Vec<StateMeta>,
    pub(super) keyed: Option<KeyedSection>,
    pub(super) item_crcs: Vec<Vec<u32>>,
    pub(super) key_group_crcs: Vec<u32>,
    /// Per keyed state, where the snapshot written sits in its state's
    /// chain (empty if it was not written from a captured snapshot): an
    /// incremental checkpoint's next delta must continue it.
    pub(super) positions: Vec<Option<SnapshotPosition>>,
}

impl SubtaskFile {
    /// The operator it belongs to.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The subtask whose state it holds.
    pub fn subtask(&self) -> usize {
        self.subtask
    }

    /// The file's name in the checkpoint's folder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The payload's length (the file without its 16-byte header).
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// The operator states, as written.
    pub fn states(&self) -> &[StateMeta] {
        &self.states
    }

    /// The keyed section, as written.
    pub fn keyed(&self) -> Option<&KeyedSection> {
        self.keyed.as_ref()
    }

    pub(super) fn manifest(&self) -> SubtaskManifest {
        SubtaskManifest {
            file: self.name.clone(),
            file_len: DATA_HEADER_LEN + self.payload_len,
            payload_crc: self.payload_crc,
            items: self
                .states
                .iter()
                .zip(&self.item_crcs)
                .map(|(meta, crcs)| (meta.bounds.clone(), crcs.clone()))
                .collect(),
            keyed: self.keyed.as_ref().map(|k| {
                (
                    k.key_groups(),
                    k.bounds().to_vec(),
                    self.key_group_crcs.clone(),
                )
            }),
            layers: self
                .keyed
                .as_ref()
                .map(|k| k.layers.clone())
                .unwrap_or_default(),
        }
    }
}

/// Streams the snapshot of `op`, subtask `subtask` of the operator `operator`
/// (at position `operator_index` in the checkpoint), into its data file of
/// checkpoint `checkpoint_id`, which must have been
/// [begun](CheckpointStorage::begin). The state goes from the operator to
/// the storage through a bounded buffer: no copy of the whole snapshot is
/// ever in memory. The file is durable when this returns, and visible once
/// [`commit_checkpoint`] commits it.
///
/// ```
/// use state_runtime::checkpoint::durable::{StoredCheckpoint, commit_checkpoint, write_subtask};
/// use state_runtime::prelude::*;
/// use state_runtime::storage::{CheckpointStorage, LocalStorage};
///
/// #[derive(Checkpointed, Default)]
/// struct Sum {
///     #[state(keyed)]
///     totals: KeyedValue<u32, i64>,
/// }
///
/// let dir = tempfile::tempdir()?;
/// let storage = LocalStorage::open(dir.path())?;
/// let assigner = KeyGroupAssigner::native(MaxParallelism::DEFAULT);
/// storage.begin(1)?;
/// let mut files = Vec::new();
/// for subtask in 0..2 {
///     let mut op = Sum::default();
///     let range = assigner.range_for_subtask(2, subtask)?;
///     op.bind_keyed(assigner, range)?;
///     for key in (0..1000u32).filter(|k| range.contains(assigner.key_group(k).unwrap())) {
///         op.totals.insert(key, i64::from(key))?;
///     }
///     // Each subtask could do this on its own thread.
///     files.push(write_subtask(&storage, 1, 0, "sum", subtask as usize, &op)?);
/// }
/// commit_checkpoint(&storage, 1, &[("sum", &files)])?;
///
/// let stored = StoredCheckpoint::latest(&storage)?.expect("committed");
/// let mut op = Sum::default();
/// stored.operator("sum")?.restore_into(&mut op, 0, 1)?;
/// assert_eq!(op.totals.len(), 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_subtask<T: WriteSnapshot + ?Sized>(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operator_index: usize,
    operator: &str,
    subtask: usize,
    op: &T,
) -> Result<SubtaskFile, StateError> {
    let target = Target {
        checkpoint_id,
        operator_index,
        operator,
        subtask,
        staged: None,
    };
    target.write_states(storage, |writer| op.write_to(writer))
}

/// Where one subtask's data file goes.
pub(super) struct Target<'a> {
    pub(super) checkpoint_id: u64,
    pub(super) operator_index: usize,
    pub(super) operator: &'a str,
    pub(super) subtask: usize,
    /// `Some(run id)`: a staged file
    /// ([`CheckpointStorage::create_staged_file`]) whose name ends with the
    /// run id.
    pub(super) staged: Option<&'a str>,
}

impl Target<'_> {
    /// [`write`](Self::write) of the states `states` writes into a
    /// streaming [`SnapshotWriter`].
    pub(super) fn write_states(
        &self,
        storage: &dyn CheckpointStorage,
        states: impl FnOnce(&mut SnapshotWriter<'_>) -> Result<(), StateError>,
    ) -> Result<SubtaskFile, StateError> {
        self.write(storage, |sink| {
            let mut writer = SnapshotWriter::streaming(sink);
            states(&mut writer)?;
            writer.finish_streaming()
        })
    }

    /// Creates the data file, writes its header, lets `payload` write the
    /// rest and finish it, and describes the file.
    pub(super) fn write(
        &self,
        storage: &dyn CheckpointStorage,
        payload: impl FnOnce(Box<dyn FileSink + '_>) -> Result<StreamedPayload, StateError>,
    ) -> Result<SubtaskFile, StateError> {
        let name = data_file_name(self.operator_index, self.operator, self.subtask);
        let mut sink = match self.staged {
            Some(run_id) => {
                let name = format!("{name}.{run_id}");
                let sink = storage.create_staged_file(self.checkpoint_id, &name)?;
                return self.finish(sink, name, payload);
            }
            None => storage.create_file(self.checkpoint_id, &name)?,
        };
        sink.write(&format::data_header())?;
        let payload = payload(sink)?;
        Ok(self.described(name, payload))
    }

    fn finish(
        &self,
        mut sink: Box<dyn FileSink + '_>,
        name: String,
        payload: impl FnOnce(Box<dyn FileSink + '_>) -> Result<StreamedPayload, StateError>,
    ) -> Result<SubtaskFile, StateError> {
        sink.write(&format::data_header())?;
        let payload = payload(sink)?;
        Ok(self.described(name, payload))
    }

    fn described(&self, name: String, payload: StreamedPayload) -> SubtaskFile {
        SubtaskFile {
            checkpoint_id: self.checkpoint_id,
            operator_index: self.operator_index,
            operator: self.operator.to_owned(),
            subtask: self.subtask,
            name,
            payload_len: payload.len,
            payload_crc: payload.crc,
            states: payload.states,
            keyed: payload.keyed,
            item_crcs: payload.item_crcs,
            key_group_crcs: payload.key_group_crcs,
            positions: Vec::new(),
        }
    }
}

/// [`write_subtask`] for a snapshot already in memory: writes its bytes as
/// they are (no copy) and takes their CRC-32Cs.
pub fn write_subtask_snapshot(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operator_index: usize,
    operator: &str,
    subtask: usize,
    snapshot: &SubtaskSnapshot,
) -> Result<SubtaskFile, StateError> {
    let data = snapshot.data();
    let mut regions = Vec::new();
    collect_regions(snapshot.states(), snapshot.keyed(), &mut regions);
    check_tiling(&mut regions, data.len() as u64).map_err(|reason| {
        StateError::CorruptSnapshot {
            state: format!("<operator `{operator}`>"),
            subtask,
            message: reason,
        }
    })?;
    let crc_of = |r: &Region| crc32c::crc32c(&data[r.start as usize..r.end as usize]);
    let mut item_crcs: Vec<Vec<u32>> = snapshot.states().iter().map(|m| vec![0; m.len()]).collect();
    let key_groups = snapshot.keyed().map(|k| k.key_groups());
    let mut key_group_crcs = vec![0; key_groups.map_or(0, |r| r.len() as usize)];
    for r in &regions {
        match r.kind {
            RegionKind::Item { state, index } => item_crcs[state][index as usize] = crc_of(r),
            RegionKind::KeyGroup(kg) => {
                let first = key_groups.expect("a keyed section").start();
                key_group_crcs[(kg - first) as usize] = crc_of(r);
            }
        }
    }
    let target = Target {
        checkpoint_id,
        operator_index,
        operator,
        subtask,
        staged: None,
    };
    target.write(storage, |mut sink| {
        sink.write(data)?;
        sink.finish()?;
        Ok(StreamedPayload {
            len: data.len() as u64,
            crc: crc32c::crc32c(data),
            states: snapshot.states().to_vec(),
            keyed: snapshot.keyed().cloned(),
            item_crcs,
            key_group_crcs,
        })
    })
}

/// Commits checkpoint `checkpoint_id` (begun, its data files written): checks
/// that each operator's files were written for this checkpoint and are its
/// subtasks `0..p` in order, written for its position in `operators`,
/// holding the same states, then writes the
/// manifest, the atomic commit point. The manifest records the current time.
///
/// On an error nothing becomes visible; the caller aborts the checkpoint
/// (see [`write_subtask`] for an example).
pub fn commit_checkpoint(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operators: &[(&str, &[SubtaskFile])],
) -> Result<WriteReport, StateError> {
    commit_checkpoint_at(storage, checkpoint_id, operators, now_unix_ms(), false)
}

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Checks `operators` and commits their manifest: with
/// [`CheckpointStorage::commit_create_only`] if `create_only`, else with
/// [`CheckpointStorage::commit`].
pub(super) fn commit_checkpoint_at(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operators: &[(&str, &[SubtaskFile])],
    created_unix_ms: u64,
    create_only: bool,
) -> Result<WriteReport, StateError> {
    check_operator_names(operators.iter().map(|(name, _)| *name))?;
    let invalid = |reason: String| StateError::InvalidOperators { reason };
    let mut manifest = Manifest {
        format_version: format::FORMAT_VERSION,
        checkpoint_id,
        created_unix_ms,
        operators: Vec::with_capacity(operators.len()),
    };
    let mut report = WriteReport {
        checkpoint_id,
        files: Vec::new(),
        payload_bytes: 0,
        manifest_bytes: 0,
    };
    for (index, (name, files)) in operators.iter().enumerate() {
        let Some(first) = files.first() else {
            return Err(StateError::ZeroParallelism);
        };
        for (subtask, f) in files.iter().enumerate() {
            if f.checkpoint_id != checkpoint_id {
                return Err(invalid(format!(
                    "file {} of operator `{}` was written for checkpoint {}, not {checkpoint_id}",
                    f.name, f.operator, f.checkpoint_id
                )));
            }
            if (f.operator_index, f.operator.as_str(), f.subtask) != (index, *name, subtask) {
                return Err(invalid(format!(
                    "file {} (operator `{}` at {}, subtask {}) given as subtask {subtask} of operator `{name}` at {index}",
                    f.name, f.operator, f.operator_index, f.subtask
                )));
            }
            if let Some(k) = &f.keyed {
                validate_keyed(k, f.payload_len, subtask, files.len())?;
            }
        }
        let metas: Vec<&[StateMeta]> = files.iter().map(|f| f.states.as_slice()).collect();
        check_same_states(&metas)?;
        let keyed: Vec<Option<&KeyedSection>> = files.iter().map(|f| f.keyed.as_ref()).collect();
        check_same_keyed(&keyed)?;

        check_u32(name.len(), "an operator name's length")?;
        check_u32(files.len(), "a parallelism")?;
        let states: Vec<_> = first
            .states
            .iter()
            .map(|s| (s.name.clone(), s.mode, s.item_type.clone(), s.ty.clone()))
            .collect();
        let keyed_states: Vec<(String, String, Option<StateType>)> = first
            .keyed
            .iter()
            .flat_map(|k| k.states())
            .map(|s| (s.name.clone(), s.state_type.clone(), s.ty.clone()))
            .collect();
        check_u32(states.len(), "a number of states")?;
        check_u32(keyed_states.len(), "a number of keyed states")?;
        for (n, _, t, ty) in &states {
            check_u32(n.len().max(t.len()), "a state name's length")?;
            check_type_len(ty.as_ref())?;
        }
        for (n, t, ty) in &keyed_states {
            check_u32(n.len().max(t.len()), "a keyed state name's length")?;
            check_type_len(ty.as_ref())?;
        }
        for f in files.iter() {
            report.files.push(WrittenFile {
                operator: (*name).to_owned(),
                subtask: f.subtask,
                name: f.name.clone(),
                len: DATA_HEADER_LEN + f.payload_len,
            });
            report.payload_bytes += f.payload_len;
        }
        manifest.operators.push(OperatorManifest {
            name: (*name).to_owned(),
            assigner: first.keyed.as_ref().map(|k| k.assigner()),
            states,
            keyed_states,
            subtasks: files.iter().map(SubtaskFile::manifest).collect(),
        });
    }
    let manifest = manifest.encode();
    report.manifest_bytes = manifest.len() as u64;
    if create_only {
        storage.commit_create_only(checkpoint_id, &manifest)?;
    } else {
        storage.commit(checkpoint_id, &manifest)?;
    }
    tracing::debug!(
        checkpoint_id,
        files = report.files.len(),
        payload_bytes = report.payload_bytes,
        "job checkpoint committed"
    );
    Ok(report)
}

/// Operator names are non-empty and unique in a checkpoint.
fn check_operator_names<'n>(names: impl Iterator<Item = &'n str>) -> Result<(), StateError> {
    let invalid = |reason: String| StateError::InvalidOperators { reason };
    let mut seen = HashSet::new();
    for name in names {
        if name.is_empty() {
            return Err(invalid("an operator name is empty".into()));
        }
        if !seen.insert(name) {
            return Err(invalid(format!("operator `{name}` is given twice")));
        }
    }
    Ok(())
}

/// Writes a job checkpoint (several operators) as format v1 and commits it
/// atomically: one data file per operator and subtask, then the manifest.
/// The manifest records the current time; see [`write_checkpoint_at`] to
/// choose it.
///
/// Each operator is named by a non-empty string, unique in the checkpoint;
/// the checkpoint ids inside the [`Checkpoint`]s are ignored
/// (`checkpoint_id` is the job checkpoint's). On an error nothing becomes
/// visible (the attempt is aborted).
///
/// See the [module documentation](super) for an example, and
/// [`write_subtask`] to write an operator's state without a copy of it in
/// memory.
pub fn write_checkpoint(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operators: &[(&str, &Checkpoint)],
) -> Result<WriteReport, StateError> {
    write_checkpoint_at(storage, checkpoint_id, operators, now_unix_ms())
}

/// [`write_checkpoint`] with the creation time (milliseconds since the Unix
/// epoch) given: the same checkpoints and time give byte-identical files,
/// manifest included. Data files never depend on the time.
///
/// ```
/// use state_runtime::checkpoint::durable::write_checkpoint_at;
/// use state_runtime::prelude::*;
/// use state_runtime::storage::{CheckpointStorage, LocalStorage};
///
/// #[derive(Checkpointed, Default)]
/// struct Op {
///     #[state(union)]
///     seen: Vec<String>,
/// }
///
/// let cp = Checkpoint::from_subtasks(vec![Op { seen: vec!["a".into()] }.snapshot()?])?;
/// let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let (s1, s2) = (LocalStorage::open(d1.path())?, LocalStorage::open(d2.path())?);
/// let report = write_checkpoint_at(&s1, 5, &[("op", &cp)], 1_700_000_000_000)?;
/// write_checkpoint_at(&s2, 5, &[("op", &cp)], 1_700_000_000_000)?;
/// assert_eq!(s1.read_manifest(5)?, s2.read_manifest(5)?);
/// let file = &report.files[0].name;
/// assert_eq!(s1.read_file(5, file)?, s2.read_file(5, file)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_checkpoint_at(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operators: &[(&str, &Checkpoint)],
    created_unix_ms: u64,
) -> Result<WriteReport, StateError> {
    check_operator_names(operators.iter().map(|(name, _)| *name))?;
    storage.begin(checkpoint_id)?;
    let written = (|| {
        let mut files = Vec::with_capacity(operators.len());
        for (index, (name, cp)) in operators.iter().enumerate() {
            let subtasks = cp
                .subtasks()
                .iter()
                .enumerate()
                .map(|(subtask, snap)| {
                    write_subtask_snapshot(storage, checkpoint_id, index, name, subtask, snap)
                })
                .collect::<Result<Vec<_>, _>>()?;
            files.push(subtasks);
        }
        let operators: Vec<(&str, &[SubtaskFile])> = operators
            .iter()
            .zip(&files)
            .map(|((name, _), f)| (*name, f.as_slice()))
            .collect();
        commit_checkpoint_at(storage, checkpoint_id, &operators, created_unix_ms, false)
    })();
    if written.is_err() {
        if let Err(e) = storage.abort(checkpoint_id) {
            tracing::warn!(checkpoint_id, error = %e, "could not clean up a failed checkpoint");
        }
    }
    written
}

/// A recorded type's shapes must fit the format's 32-bit lengths.
fn check_type_len(ty: Option<&StateType>) -> Result<(), StateError> {
    let len = |s: Option<&str>| s.map_or(0, str::len);
    let ty_len = ty.map_or(0, |t| len(t.shape()).max(len(t.key_shape())));
    check_u32(ty_len, "a shape's length")
}

fn check_u32(v: usize, what: &str) -> Result<(), StateError> {
    u32::try_from(v)
        .map(|_| ())
        .map_err(|_| StateError::InvalidOperators {
            reason: format!("{what} ({v}) does not fit the format's 32-bit field"),
        })
}

/// `<operator index>.<operator name, sanitized>.<subtask>.data`: the index
/// makes it unique, the name makes it readable.
pub(super) fn data_file_name(index: usize, name: &str, subtask: usize) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{index}.{clean}.{subtask}.data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::validate_file_name;

    #[test]
    fn file_names_are_valid_and_unique() {
        let a = data_file_name(0, "sum/π", 3);
        assert_eq!(a, "0.sum__.3.data");
        validate_file_name(&a).unwrap();
        validate_file_name(&data_file_name(12, &"x".repeat(500), 7)).unwrap();
        assert_ne!(data_file_name(1, "a", 11), data_file_name(11, "a", 1));
    }
}
