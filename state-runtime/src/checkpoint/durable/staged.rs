//! Job checkpoints written by several processes: each writer stages its own
//! data files, sends a description of each ([`SubtaskFile::to_bytes`]) to
//! one committer, and the committer commits the manifest create-only.
//!
//! Nothing here needs in-process state shared between the writers and the
//! committer: the files are written with
//! [`CheckpointStorage::create_staged_file`] (no `begin`, never deleting or
//! overwriting), named with the writer's run id, and the manifest with
//! [`CheckpointStorage::commit_create_only`], so a writer left over from an
//! earlier run can neither touch the files of the current run nor replace a
//! committed checkpoint.
//!
//! ```
//! use state_runtime::checkpoint::durable::{
//!     StoredCheckpoint, SubtaskFile, commit_checkpoint_create_only, write_subtask_staged,
//! };
//! use state_runtime::prelude::*;
//! use state_runtime::storage::LocalStorage;
//!
//! #[derive(Checkpointed, Default)]
//! struct Offsets {
//!     #[state(split)]
//!     offsets: Vec<(u32, u64)>,
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let storage = LocalStorage::open(dir.path())?;
//! // Two writers (they could be two processes), run id "r1".
//! let mut fragments = Vec::new();
//! for subtask in 0..2 {
//!     let op = Offsets { offsets: vec![(subtask as u32, 100)] };
//!     let file = write_subtask_staged(&storage, 5, 0, "source", subtask, "r1", &op)?;
//!     fragments.push(file.to_bytes()); // sent to the committer
//! }
//! // The committer.
//! let files = fragments
//!     .iter()
//!     .map(|b| SubtaskFile::from_bytes(b))
//!     .collect::<Result<Vec<_>, _>>()?;
//! commit_checkpoint_create_only(&storage, 5, &[("source", &files)])?;
//!
//! let stored = StoredCheckpoint::latest(&storage)?.expect("committed");
//! let mut op = Offsets::default();
//! stored.operator("source")?.restore_into(&mut op, 0, 1)?;
//! assert_eq!(op.offsets.len(), 2);
//! // A second commit of checkpoint 5 is refused.
//! assert!(matches!(
//!     commit_checkpoint_create_only(&storage, 5, &[("source", &files)]),
//!     Err(StateError::CheckpointAlreadyCommitted { checkpoint_id: 5, .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::format::{Manifest, OperatorManifest};
use super::regions::{check_tiling, collect_regions};
use super::write::{SubtaskFile, Target, WriteReport, commit_checkpoint_at, now_unix_ms};
use crate::checkpoint::{KeyedSection, StateMeta, WriteSnapshot, validate_states};
use crate::error::StateError;
use crate::storage::{CheckpointStorage, validate_file_name};

/// First 8 bytes of an encoded [`SubtaskFile`].
const FRAGMENT_MAGIC: [u8; 8] = *b"RSCLFRAG";

/// Longest accepted run id, in bytes.
pub const MAX_RUN_ID_LEN: usize = 32;

/// Checks a run id: 1 to [`MAX_RUN_ID_LEN`] ASCII letters, digits, `-` and
/// `_`, so that it can end a data file's name.
///
/// ```
/// use state_runtime::checkpoint::durable::validate_run_id;
/// assert!(validate_run_id("run-1a2b").is_ok());
/// assert!(validate_run_id("a.b").is_err());
/// assert!(validate_run_id("").is_err());
/// ```
pub fn validate_run_id(run_id: &str) -> Result<(), StateError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= MAX_RUN_ID_LEN
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidFileName {
            name: run_id.to_owned(),
            reason: "a run id is 1 to 32 ASCII letters, digits, '-' and '_'",
        })
    }
}

/// [`write_subtask`](super::write_subtask) for a writer that shares nothing
/// with the committer (another thread or process): streams the snapshot of
/// `op` into a staged data file of checkpoint `checkpoint_id` whose name
/// ends with `run_id` ([`CheckpointStorage::create_staged_file`]: no
/// `begin`, nothing deleted, nothing overwritten). The file is durable when
/// this returns. Send [`SubtaskFile::to_bytes`] to the committer, which
/// calls [`commit_checkpoint_create_only`].
pub fn write_subtask_staged<T: WriteSnapshot + ?Sized>(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operator_index: usize,
    operator: &str,
    subtask: usize,
    run_id: &str,
    op: &T,
) -> Result<SubtaskFile, StateError> {
    validate_run_id(run_id)?;
    let target = Target {
        checkpoint_id,
        operator_index,
        operator,
        subtask,
        staged: Some(run_id),
    };
    target.write_states(storage, |writer| op.write_to(writer))
}

/// [`commit_checkpoint`](super::commit_checkpoint) for staged files: the
/// same checks, then the manifest is committed create-only
/// ([`CheckpointStorage::commit_create_only`]): if checkpoint
/// `checkpoint_id` is already committed, by anyone, this is
/// [`StateError::CheckpointAlreadyCommitted`] and nothing changes.
pub fn commit_checkpoint_create_only(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operators: &[(&str, &[SubtaskFile])],
) -> Result<WriteReport, StateError> {
    commit_checkpoint_at(storage, checkpoint_id, operators, now_unix_ms(), true)
}

impl SubtaskFile {
    /// The checkpoint the file was written for.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// The operator's position in the checkpoint.
    pub fn operator_index(&self) -> usize {
        self.operator_index
    }

    /// The file's length, 16-byte header included.
    pub fn file_len(&self) -> u64 {
        super::DATA_HEADER_LEN + self.payload_len
    }

    /// This description as bytes, to send to a committer in another
    /// process: magic `RSCLFRAG`, the operator's index and the subtask
    /// (`u32` little-endian each), then a format-v2 manifest of one operator
    /// with this one subtask. [`from_bytes`](Self::from_bytes) reads it back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let first = self.states.iter();
        let manifest = Manifest {
            format_version: super::FORMAT_VERSION,
            checkpoint_id: self.checkpoint_id,
            created_unix_ms: 0,
            operators: vec![OperatorManifest {
                name: self.operator.clone(),
                assigner: self.keyed.as_ref().map(KeyedSection::assigner),
                states: first
                    .map(|s| (s.name.clone(), s.mode, s.item_type.clone(), s.ty.clone()))
                    .collect(),
                keyed_states: self
                    .keyed
                    .iter()
                    .flat_map(|k| k.states())
                    .map(|s| (s.name.clone(), s.state_type.clone(), s.ty.clone()))
                    .collect(),
                subtasks: vec![self.manifest()],
            }],
        };
        let mut out = FRAGMENT_MAGIC.to_vec();
        // Indexes beyond u32 cannot be committed (the manifest's fields are
        // 32-bit); they saturate here and the commit refuses them.
        for v in [self.operator_index, self.subtask] {
            out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
        }
        out.extend_from_slice(&manifest.encode());
        out
    }

    /// Reads a description written by [`to_bytes`](Self::to_bytes),
    /// checking it as a manifest is checked ([`StateError::Corrupt`] names
    /// what is wrong).
    pub fn from_bytes(bytes: &[u8]) -> Result<SubtaskFile, StateError> {
        const WHERE: &str = "<subtask file description>";
        let corrupt = |offset: u64, expected: &str, found: String| StateError::Corrupt {
            path: WHERE.to_owned(),
            offset,
            expected: expected.to_owned(),
            found,
        };
        if bytes.len() < 16 || bytes[..8] != FRAGMENT_MAGIC {
            return Err(corrupt(
                0,
                "magic RSCLFRAG and two u32 fields",
                format!("{} bytes", bytes.len()),
            ));
        }
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b) as usize
        };
        let (operator_index, subtask) = (u32_at(8), u32_at(12));
        let m = Manifest::decode(&bytes[16..], WHERE)?;
        let [op] = <[OperatorManifest; 1]>::try_from(m.operators)
            .map_err(|ops| corrupt(16, "one operator", format!("{} operators", ops.len())))?;
        let OperatorManifest {
            name,
            assigner,
            states: op_states,
            keyed_states,
            subtasks,
        } = op;
        let [sub] = <[_; 1]>::try_from(subtasks)
            .map_err(|s: Vec<_>| corrupt(16, "one subtask", format!("{} subtasks", s.len())))?;
        validate_file_name(&sub.file)
            .map_err(|e| corrupt(16, "a data file name", e.to_string()))?;
        let payload_len = sub
            .file_len
            .checked_sub(super::DATA_HEADER_LEN)
            .ok_or_else(|| corrupt(16, "a file of at least 16 bytes", sub.file_len.to_string()))?;
        let states: Vec<StateMeta> = op_states
            .into_iter()
            .zip(&sub.items)
            .map(|((name, mode, item_type, ty), (bounds, _))| StateMeta {
                name,
                mode,
                item_type,
                ty,
                bounds: bounds.clone(),
            })
            .collect();
        validate_states(&states, payload_len, subtask)?;
        let (keyed, key_group_crcs) = match (sub.keyed, assigner) {
            (Some((range, bounds, crcs)), Some(assigner)) => (
                Some(KeyedSection::from_parts(
                    assigner,
                    range,
                    keyed_states,
                    bounds,
                )),
                crcs,
            ),
            (None, None) => (None, Vec::new()),
            _ => {
                return Err(corrupt(
                    16,
                    "a keyed section with an assigner",
                    "one without the other".into(),
                ));
            }
        };
        let mut regions = Vec::new();
        collect_regions(&states, keyed.as_ref(), &mut regions);
        if let Some(k) = &keyed {
            let expected = k.key_groups().len() as usize * k.states().len() + 1;
            if k.bounds().len() != expected || key_group_crcs.len() != k.key_groups().len() as usize
            {
                return Err(corrupt(
                    16,
                    "one offset per key group and state, one CRC per key group",
                    format!(
                        "{} offsets, {} CRCs",
                        k.bounds().len(),
                        key_group_crcs.len()
                    ),
                ));
            }
        }
        check_tiling(&mut regions, payload_len)
            .map_err(|reason| corrupt(16, "regions that tile the payload", reason))?;
        Ok(SubtaskFile {
            checkpoint_id: m.checkpoint_id,
            operator_index,
            operator: name,
            subtask,
            name: sub.file,
            payload_len,
            payload_crc: sub.payload_crc,
            item_crcs: sub.items.into_iter().map(|(_, crcs)| crcs).collect(),
            states,
            keyed,
            key_group_crcs,
            positions: Vec::new(),
        })
    }
}
