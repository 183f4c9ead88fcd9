//! Durable job checkpoints: the on-disk format v1 (specified in
//! `state-runtime/FORMAT.md`) on a [`CheckpointStorage`].
//!
//! A job checkpoint holds several operators, each an in-memory [`Checkpoint`](crate::checkpoint::Checkpoint)
//! (one [`SubtaskSnapshot`](crate::checkpoint::SubtaskSnapshot) per subtask). [`write_checkpoint`] writes one
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
mod incremental;
mod operator;
mod regions;
mod staged;
mod write;

use std::collections::HashSet;

use format::Manifest;
pub use format::{DATA_HEADER_LEN, FORMAT_VERSION, OLDEST_FORMAT_VERSION};
pub use incremental::{IncrementalPolicy, write_subtask_incremental};
use operator::file_path;
pub use operator::{PlannedRead, ReadKind, StoredOperator, StoredSubtask, SubtaskReadPlan};
use regions::{Region, RegionKind, check_tiling, collect_regions};
pub use staged::{
    MAX_RUN_ID_LEN, commit_checkpoint_create_only, validate_run_id, write_subtask_staged,
};
pub use write::{
    SubtaskFile, WriteReport, WrittenFile, commit_checkpoint, write_checkpoint,
    write_checkpoint_at, write_subtask, write_subtask_snapshot,
};

use crate::error::StateError;
use crate::storage::{CheckpointStorage, FileRef, MANIFEST_NAME, checkpoint_folder_name};

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
    // Its own files, and the earlier layers of incremental keyed sections.
    Ok(m.operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .flat_map(|s| {
            std::iter::once(FileRef::new(checkpoint_id, s.file.as_str())).chain(
                s.layers
                    .earlier
                    .iter()
                    .map(|l| FileRef::new(l.checkpoint_id, l.file.as_str())),
            )
        })
        .collect())
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
    format_version: u32,
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
            format_version: m.format_version,
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

    /// The format version of its manifest: [`FORMAT_VERSION`] for
    /// checkpoints this build writes, down to [`OLDEST_FORMAT_VERSION`] for
    /// older ones (version 1 records no state types, so its states restore
    /// unchecked).
    pub fn format_version(&self) -> u32 {
        self.format_version
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
/// [`StoredCheckpoint::open`] does; for fuzzing (`cargo fuzz` builds with
/// `--cfg fuzzing`) and the decoder's property tests. With
/// `check_crc == false` the manifest's CRC is not checked, so that a fuzzer
/// reaches the structure behind it. Never panics.
#[cfg(any(fuzzing, test))]
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
        fn create_staged_file<'s>(
            &'s self,
            _: u64,
            _: &str,
        ) -> Result<Box<dyn crate::storage::FileSink + 's>, StateError> {
            unreachable!()
        }
        fn commit_create_only(&self, _: u64, _: &[u8]) -> Result<(), StateError> {
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
        fn read_range(
            &self,
            _: u64,
            name: &str,
            _: std::ops::Range<u64>,
        ) -> Result<Vec<u8>, StateError> {
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
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub fn check_data_header_for_fuzzing(bytes: &[u8]) -> Result<(), StateError> {
    format::check_data_header(bytes, "<fuzz>")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::{Checkpoint, SnapshotWriter};
    use crate::keyed::KeyedValue;
    use crate::keygroup::{KeyGroupAssigner, MaxParallelism};
    use crate::storage::LocalStorage;

    /// A valid manifest to mutate: an operator with split and union state,
    /// and one with keyed state, each at parallelism 2.
    fn valid_manifest() -> Vec<u8> {
        static MANIFEST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        MANIFEST
            .get_or_init(|| {
                let assigner = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
                let mut sources = Vec::new();
                let mut sums = Vec::new();
                for i in 0..2usize {
                    let mut w = SnapshotWriter::new();
                    w.split("offsets", &vec![(i as u32, 10 * i as u64)])
                        .unwrap();
                    w.union("seen", &vec![format!("seen by {i}")]).unwrap();
                    sources.push(w.finish());
                    let range = assigner.range_for_subtask(2, i).unwrap();
                    let mut sum = KeyedValue::<u64, i64>::new(assigner, range).unwrap();
                    for k in (0..20u64).filter(|k| range.contains(assigner.key_group(k).unwrap())) {
                        sum.insert(k, k as i64).unwrap();
                    }
                    let mut w = SnapshotWriter::new();
                    w.keyed(&[("sum", &sum)]).unwrap();
                    sums.push(w.finish());
                }
                let source = Checkpoint::from_subtasks(sources).unwrap();
                let sum = Checkpoint::from_subtasks(sums).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let storage = LocalStorage::open(dir.path()).unwrap();
                write_checkpoint_at(&storage, 3, &[("source", &source), ("sum", &sum)], 7).unwrap();
                storage.read_manifest(3).unwrap()
            })
            .clone()
    }

    #[test]
    fn the_fuzz_entry_points_accept_a_valid_manifest() {
        let m = valid_manifest();
        decode_manifest_for_fuzzing(&m, true).unwrap();
        decode_manifest_for_fuzzing(&m, false).unwrap();
        assert!(decode_manifest_for_fuzzing(&m[..m.len() - 1], true).is_err());
        assert!(decode_manifest_for_fuzzing(b"", false).is_err());
        let mut header = format::data_header().to_vec();
        check_data_header_for_fuzzing(&header).unwrap();
        header[8] = 9; // version 9, its CRC now wrong
        assert!(check_data_header_for_fuzzing(&header).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// What the fuzz target runs: arbitrary bytes never panic.
        #[test]
        fn manifest_decoder_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            check_crc in any::<bool>(),
        ) {
            let _ = decode_manifest_for_fuzzing(&bytes, check_crc);
            let _ = check_data_header_for_fuzzing(&bytes);
        }

        /// Structured damage behind the CRC (which the fuzzer skips too): the
        /// decoder and the validation never panic or over-allocate.
        #[test]
        fn manifest_decoder_never_panics_on_damaged_manifests(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut m = valid_manifest();
            for (at, byte, kind) in edits {
                let i = at.index(m.len());
                match kind {
                    0 => m[i] = byte,
                    1 => m.insert(i, byte),
                    _ => { m.remove(i); }
                }
            }
            let _ = decode_manifest_for_fuzzing(&m, false);
            let cut = cut.index(m.len() + 1);
            let _ = decode_manifest_for_fuzzing(&m[..cut], false);
        }
    }
}
