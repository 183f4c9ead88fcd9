//! Where checkpoints are kept: one folder per checkpoint id, holding named
//! data files and a manifest.
//!
//! The storage layer knows nothing about the checkpoint format: data files and
//! the manifest are opaque bytes to it. What it guarantees is
//!
//! - **atomic visibility**: a checkpoint is *complete* once its manifest is
//!   committed, and only complete checkpoints are listed ([`CheckpointStorage::list`],
//!   [`CheckpointStorage::latest`]). A crash at any point while writing
//!   checkpoint `k` leaves `k` invisible and every earlier complete checkpoint
//!   intact;
//! - **exact range reads**: [`CheckpointStorage::read_range`] reads exactly the
//!   bytes asked for (checked against the file length first), so a restore
//!   reads only the key groups it owns, and [`CheckpointStorage::read_stats`]
//!   counts what was read;
//! - **reference-aware retention**: [`CheckpointStorage::retain_last`] keeps
//!   the newest checkpoints and every file their manifests still reference,
//!   even in another checkpoint's folder.
//!
//! Two backends: [`LocalStorage`] (a directory, the default) and, behind the
//! `object-store` cargo feature, `ObjectStorage` (S3-compatible object
//! stores).
//!
//! ```
//! use state_runtime::storage::{CheckpointStorage, LocalStorage};
//!
//! let dir = tempfile::tempdir()?;
//! let storage = LocalStorage::open(dir.path())?;
//!
//! storage.begin(1)?;
//! storage.write_file(1, "keyed-0.bin", b"0123456789")?;
//! assert_eq!(storage.latest()?, None); // not committed yet: invisible
//! storage.commit(1, b"my manifest")?;
//!
//! assert_eq!(storage.latest()?, Some(1));
//! assert_eq!(storage.read_manifest(1)?, b"my manifest");
//! assert_eq!(storage.read_range(1, "keyed-0.bin", 2..5)?, b"234");
//! assert_eq!(storage.read_stats().data_bytes, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod local;
#[cfg(feature = "object-store")]
mod object;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StateError;

pub use local::LocalStorage;
#[cfg(feature = "object-store")]
pub use object::{ObjectStorage, S3Config};

/// The object store crate the `object-store` backend is built on, re-exported
/// so that callers use the same version (for [`ObjectStorage::new`]).
#[cfg(feature = "object-store")]
pub use object_store;

/// Name of the manifest inside a checkpoint folder. Its presence is what makes
/// a checkpoint complete.
pub const MANIFEST_NAME: &str = "_MANIFEST";

/// Name under which the local backend writes the manifest before renaming it
/// to [`MANIFEST_NAME`] (a create-only commit adds a unique suffix to it). A
/// leftover whose name starts with it means an interrupted commit; it never
/// makes a checkpoint visible.
pub(crate) const MANIFEST_TMP_NAME: &str = "_MANIFEST.tmp";

/// Longest accepted data file name, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 200;

/// Name of the folder of a checkpoint: `chk-<id>` (as Flink names them).
///
/// ```
/// assert_eq!(state_runtime::storage::checkpoint_folder_name(42), "chk-42");
/// ```
pub fn checkpoint_folder_name(checkpoint_id: u64) -> String {
    format!("chk-{checkpoint_id}")
}

/// The checkpoint id of a folder name made by [`checkpoint_folder_name`];
/// `None` for any other name (also for non-canonical ones like `chk-007`).
///
/// ```
/// use state_runtime::storage::parse_checkpoint_folder_name;
/// assert_eq!(parse_checkpoint_folder_name("chk-7"), Some(7));
/// assert_eq!(parse_checkpoint_folder_name("chk-07"), None);
/// assert_eq!(parse_checkpoint_folder_name("savepoint"), None);
/// ```
pub fn parse_checkpoint_folder_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("chk-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok()?;
    (checkpoint_folder_name(id) == name).then_some(id)
}

/// Checks a data file name: 1 to [`MAX_FILE_NAME_LEN`] bytes of ASCII letters,
/// digits, `.`, `_` and `-`, not starting with `.` or `_` (those are reserved
/// for the storage's own files such as [`MANIFEST_NAME`]).
///
/// The same names work on every backend and every file system.
///
/// ```
/// use state_runtime::storage::validate_file_name;
/// assert!(validate_file_name("op-3.keyed.0").is_ok());
/// assert!(validate_file_name("_MANIFEST").is_err());
/// assert!(validate_file_name("../etc/passwd").is_err());
/// assert!(validate_file_name("").is_err());
/// ```
pub fn validate_file_name(name: &str) -> Result<(), StateError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_FILE_NAME_LEN {
        Some("it is longer than 200 bytes")
    } else if name.starts_with('.') || name.starts_with('_') {
        Some("names starting with '.' or '_' are reserved for the storage")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StateError::InvalidFileName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A data file of a checkpoint, named by the checkpoint folder it lives in
/// and its name there. A manifest may reference files of older checkpoints
/// (incremental checkpoints); retention keeps every referenced file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRef {
    /// The checkpoint whose folder holds the file.
    pub checkpoint_id: u64,
    /// The file's name in that folder.
    pub name: String,
}

impl FileRef {
    /// A reference to file `name` in the folder of checkpoint `checkpoint_id`.
    ///
    /// ```
    /// use state_runtime::storage::FileRef;
    /// let f = FileRef::new(3, "keyed-0.bin");
    /// assert_eq!((f.checkpoint_id, f.name.as_str()), (3, "keyed-0.bin"));
    /// ```
    pub fn new(checkpoint_id: u64, name: impl Into<String>) -> Self {
        FileRef {
            checkpoint_id,
            name: name.into(),
        }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            checkpoint_folder_name(self.checkpoint_id),
            self.name
        )
    }
}

/// What a storage handle has read since it was opened. Take one before and one
/// after a restore and subtract with [`ReadStats::since`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Bytes returned by [`CheckpointStorage::read_range`] (and
    /// [`CheckpointStorage::read_file`]).
    pub data_bytes: u64,
    /// Number of range reads (one per `read_range` call).
    pub range_reads: u64,
    /// Bytes returned by [`CheckpointStorage::read_manifest`].
    pub manifest_bytes: u64,
}

impl ReadStats {
    /// What was read between `earlier` and `self`.
    ///
    /// ```
    /// use state_runtime::storage::ReadStats;
    /// let before = ReadStats { data_bytes: 10, range_reads: 1, manifest_bytes: 5 };
    /// let after = ReadStats { data_bytes: 25, range_reads: 3, manifest_bytes: 5 };
    /// assert_eq!(after.since(before), ReadStats { data_bytes: 15, range_reads: 2, manifest_bytes: 0 });
    /// ```
    pub fn since(self, earlier: ReadStats) -> ReadStats {
        ReadStats {
            data_bytes: self.data_bytes.saturating_sub(earlier.data_bytes),
            range_reads: self.range_reads.saturating_sub(earlier.range_reads),
            manifest_bytes: self.manifest_bytes.saturating_sub(earlier.manifest_bytes),
        }
    }
}

/// What [`CheckpointStorage::retain_last`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The complete checkpoints kept, ascending.
    pub retained: Vec<u64>,
    /// Complete checkpoints that are no longer complete (their manifest was
    /// deleted), ascending.
    pub removed_checkpoints: Vec<u64>,
    /// Incomplete folders (interrupted checkpoints older than the newest
    /// complete one) that were cleaned up, ascending.
    pub removed_incomplete: Vec<u64>,
    /// Number of data files deleted.
    pub deleted_files: usize,
    /// Files in removed folders that were kept because a retained manifest
    /// references them, sorted.
    pub kept_referenced: Vec<FileRef>,
}

/// The callback of [`CheckpointStorage::retain_last`]: given a retained
/// checkpoint's id and manifest bytes, the files that checkpoint references.
pub type ReferencedFiles<'a> = &'a dyn Fn(u64, &[u8]) -> Result<Vec<FileRef>, StateError>;

/// Durable storage of checkpoints: one folder per checkpoint id, holding named
/// data files and one manifest (opaque bytes). Synchronous, object safe,
/// `Send + Sync`; one handle can be shared by all instances of a job.
///
/// Writing: [`begin`](Self::begin), any number of
/// [`write_file`](Self::write_file), then [`commit`](Self::commit) with the
/// manifest: the commit is the atomic point after which the checkpoint is
/// complete. [`write_checkpoint`](Self::write_checkpoint) does all three.
/// One writer per checkpoint id; checkpoint ids only grow.
///
/// Reading: [`list`](Self::list) / [`latest`](Self::latest) show only
/// complete checkpoints; [`read_manifest`](Self::read_manifest),
/// [`file_len`](Self::file_len) and [`read_range`](Self::read_range) read
/// them. Reads do not check that the checkpoint is complete (that would cost a
/// request per read): read checkpoints that `list` returned.
///
/// ```
/// use state_runtime::storage::{CheckpointStorage, FileRef, LocalStorage};
///
/// fn newest_manifest(storage: &dyn CheckpointStorage) -> Result<Option<Vec<u8>>, state_runtime::StateError> {
///     match storage.latest()? {
///         Some(id) => Ok(Some(storage.read_manifest(id)?)),
///         None => Ok(None),
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let storage = LocalStorage::open(dir.path())?;
/// assert_eq!(newest_manifest(&storage)?, None);
/// storage.write_checkpoint(7, &[("a.bin", b"aaa"), ("b.bin", b"bb")], b"m7")?;
/// assert_eq!(newest_manifest(&storage)?, Some(b"m7".to_vec()));
/// assert_eq!(storage.list_files(7)?, ["a.bin", "b.bin"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait CheckpointStorage: Send + Sync + fmt::Debug {
    /// Where this storage lives (a directory path or an object store URL), for
    /// messages.
    fn location(&self) -> String;

    /// Starts writing checkpoint `checkpoint_id`. Removes whatever an earlier,
    /// interrupted attempt at the same id left behind.
    ///
    /// Fails with [`StateError::CheckpointIdNotIncreasing`] unless the id is
    /// greater than every complete checkpoint's id.
    fn begin(&self, checkpoint_id: u64) -> Result<(), StateError>;

    /// Writes (or overwrites) data file `name` of a begun checkpoint. The name
    /// must pass [`validate_file_name`]. The file is durable when this returns
    /// but not visible until [`commit`](Self::commit).
    fn write_file(&self, checkpoint_id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError>;

    /// Starts data file `name` of a begun checkpoint, to be written in
    /// pieces: what a snapshot streamed through a bounded buffer needs. The
    /// file is durable once [`FileSink::finish`] returns, and not visible
    /// until [`commit`](Self::commit). The default keeps the bytes in memory
    /// and hands them to [`write_file`](Self::write_file) when finished; the
    /// local and object-store backends stream them.
    fn create_file<'s>(
        &'s self,
        checkpoint_id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        validate_file_name(name)?;
        Ok(Box::new(BufferedFile {
            storage: self,
            checkpoint_id,
            name: name.to_owned(),
            bytes: Vec::new(),
        }))
    }

    /// Starts data file `name` of checkpoint `checkpoint_id` for one of
    /// several writers of a checkpoint, possibly in other processes, that
    /// share no in-process state: each writes its own files this way and a
    /// committer commits them with [`commit_create_only`](Self::commit_create_only).
    ///
    /// Unlike [`create_file`](Self::create_file) it needs no
    /// [`begin`](Self::begin), creates the checkpoint's folder if it is
    /// missing, and never deletes anything. It never overwrites either: an
    /// existing `name` is [`StateError::FileExists`] (the object-store
    /// backend checks with a conditional put, for files that fit in one
    /// part), so writers whose names differ (a run id in each) cannot touch
    /// each other's files. The file, and its name, are durable once
    /// [`FileSink::finish`] returns.
    ///
    /// ```
    /// use state_runtime::storage::{CheckpointStorage, LocalStorage};
    /// use state_runtime::StateError;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let storage = LocalStorage::open(dir.path())?;
    /// for writer in ["run7-w0", "run7-w1"] {
    ///     let mut file = storage.create_staged_file(3, writer)?;
    ///     file.write(writer.as_bytes())?;
    ///     file.finish()?;
    /// }
    /// assert!(matches!(storage.create_staged_file(3, "run7-w0"), Err(StateError::FileExists { .. })));
    /// storage.commit_create_only(3, b"manifest")?;
    /// assert_eq!(storage.list()?, [3]);
    /// assert!(matches!(
    ///     storage.commit_create_only(3, b"another"),
    ///     Err(StateError::CheckpointAlreadyCommitted { checkpoint_id: 3, .. })
    /// ));
    /// assert_eq!(storage.read_manifest(3)?, b"manifest");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn create_staged_file<'s>(
        &'s self,
        checkpoint_id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError>;

    /// Commits checkpoint `checkpoint_id` with `manifest`, create-only: the
    /// manifest appears atomically if the checkpoint has none, and an
    /// existing one is never replaced ([`StateError::CheckpointAlreadyCommitted`],
    /// whoever committed it). Needs no [`begin`](Self::begin); the data files
    /// are those written with [`create_staged_file`](Self::create_staged_file).
    /// Two committers racing for one id: exactly one succeeds.
    fn commit_create_only(&self, checkpoint_id: u64, manifest: &[u8]) -> Result<(), StateError>;

    /// Writes the manifest of a begun checkpoint: the atomic commit point.
    /// Afterwards the checkpoint is complete and listed.
    fn commit(&self, checkpoint_id: u64, manifest: &[u8]) -> Result<(), StateError>;

    /// Gives up a begun checkpoint and deletes what was written for it.
    fn abort(&self, checkpoint_id: u64) -> Result<(), StateError>;

    /// The complete checkpoints, ascending.
    fn list(&self) -> Result<Vec<u64>, StateError>;

    /// The newest complete checkpoint.
    fn latest(&self) -> Result<Option<u64>, StateError> {
        Ok(self.list()?.last().copied())
    }

    /// The manifest of a complete checkpoint; [`StateError::CheckpointNotFound`]
    /// when the checkpoint has none.
    fn read_manifest(&self, checkpoint_id: u64) -> Result<Vec<u8>, StateError>;

    /// The data files in a checkpoint's folder (not the manifest), sorted.
    fn list_files(&self, checkpoint_id: u64) -> Result<Vec<String>, StateError>;

    /// The length of a data file in bytes.
    fn file_len(&self, checkpoint_id: u64, name: &str) -> Result<u64, StateError>;

    /// Exactly the bytes `range` of a data file. The range is checked against
    /// the file length first: a range that ends before it starts or reaches
    /// past the end is [`StateError::RangeOutOfBounds`], never a panic or an
    /// allocation larger than the file.
    fn read_range(
        &self,
        checkpoint_id: u64,
        name: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StateError>;

    /// [`read_range`](Self::read_range) into `buf`, replacing what it held:
    /// a reader that reuses one buffer reads without fresh memory. The
    /// default reads a new buffer.
    fn read_range_into(
        &self,
        checkpoint_id: u64,
        name: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        *buf = self.read_range(checkpoint_id, name, range)?;
        Ok(())
    }

    /// A whole data file (one range read).
    fn read_file(&self, checkpoint_id: u64, name: &str) -> Result<Vec<u8>, StateError> {
        let len = self.file_len(checkpoint_id, name)?;
        self.read_range(checkpoint_id, name, 0..len)
    }

    /// What this handle has read so far.
    fn read_stats(&self) -> ReadStats;

    /// Keeps the newest `keep` complete checkpoints and deletes the rest,
    /// except files that a kept checkpoint references: `referenced` is called
    /// with each kept checkpoint's id and manifest and returns the files it
    /// uses (its own folder is always kept whole). Also removes incomplete
    /// folders older than the newest complete checkpoint (interrupted
    /// attempts); newer incomplete folders may be in progress and are left
    /// alone, as are checkpoints this handle has begun and not committed.
    ///
    /// Everything is planned before anything is deleted, so an error from
    /// `referenced` deletes nothing. A removed checkpoint loses its manifest
    /// first, so a crash during retention never leaves a listed checkpoint
    /// with missing files. `keep == 0` is [`StateError::InvalidRetention`].
    fn retain_last(
        &self,
        keep: usize,
        referenced: ReferencedFiles<'_>,
    ) -> Result<RetentionReport, StateError>;

    /// [`begin`](Self::begin), [`write_file`](Self::write_file) for each file,
    /// then [`commit`](Self::commit). On an error the attempt is aborted
    /// (best effort) and the error returned.
    fn write_checkpoint(
        &self,
        checkpoint_id: u64,
        files: &[(&str, &[u8])],
        manifest: &[u8],
    ) -> Result<(), StateError> {
        self.begin(checkpoint_id)?;
        let written = files
            .iter()
            .try_for_each(|(name, bytes)| self.write_file(checkpoint_id, name, bytes))
            .and_then(|()| self.commit(checkpoint_id, manifest));
        if written.is_err() {
            if let Err(e) = self.abort(checkpoint_id) {
                tracing::warn!(checkpoint_id, error = %e, "could not clean up a failed checkpoint");
            }
        }
        written
    }
}

/// A data file being written ([`CheckpointStorage::create_file`]): bytes
/// appended in order, durable once [`finish`](FileSink::finish) returns. A
/// sink dropped unfinished leaves an incomplete file, which only an aborted
/// or never committed checkpoint may hold.
///
/// ```
/// use state_runtime::storage::{CheckpointStorage, LocalStorage};
///
/// let dir = tempfile::tempdir()?;
/// let storage = LocalStorage::open(dir.path())?;
/// storage.begin(1)?;
/// let mut file = storage.create_file(1, "big.bin")?;
/// for chunk in [&b"abc"[..], b"def"] {
///     file.write(chunk)?;
/// }
/// file.finish()?;
/// storage.commit(1, b"manifest")?;
/// assert_eq!(storage.read_file(1, "big.bin")?, b"abcdef");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait FileSink {
    /// Appends `bytes` to the file.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError>;

    /// Completes the file and makes it durable.
    fn finish(self: Box<Self>) -> Result<(), StateError>;
}

/// [`CheckpointStorage::create_file`]'s default: the whole file in memory,
/// written with [`CheckpointStorage::write_file`] when finished.
struct BufferedFile<'s, S: ?Sized> {
    storage: &'s S,
    checkpoint_id: u64,
    name: String,
    bytes: Vec<u8>,
}

impl<S: CheckpointStorage + ?Sized> FileSink for BufferedFile<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), StateError> {
        self.storage
            .write_file(self.checkpoint_id, &self.name, &self.bytes)
    }
}

/// Read counters shared by the backends.
#[derive(Debug, Default)]
pub(crate) struct ReadCounter {
    data_bytes: AtomicU64,
    range_reads: AtomicU64,
    manifest_bytes: AtomicU64,
}

impl ReadCounter {
    pub(crate) fn range(&self, bytes: usize) {
        self.data_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.range_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn manifest(&self, bytes: usize) {
        self.manifest_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> ReadStats {
        ReadStats {
            data_bytes: self.data_bytes.load(Ordering::Relaxed),
            range_reads: self.range_reads.load(Ordering::Relaxed),
            manifest_bytes: self.manifest_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The checkpoints a handle has begun and not yet committed or aborted.
#[derive(Debug, Default)]
pub(crate) struct Pending(Mutex<BTreeSet<u64>>);

impl Pending {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        // The set stays consistent even if a holder panicked.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, id: u64) {
        self.set().insert(id);
    }

    pub(crate) fn remove(&self, id: u64) -> bool {
        self.set().remove(&id)
    }

    pub(crate) fn check(&self, id: u64, location: &str) -> Result<(), StateError> {
        if self.set().contains(&id) {
            Ok(())
        } else {
            Err(StateError::CheckpointNotBegun {
                checkpoint_id: id,
                location: location.to_owned(),
            })
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeSet<u64> {
        self.set().clone()
    }
}

/// Checks `range` against a file of `len` bytes.
pub(crate) fn check_range(location: &str, range: &Range<u64>, len: u64) -> Result<(), StateError> {
    if range.start > range.end || range.end > len {
        Err(StateError::RangeOutOfBounds {
            location: location.to_owned(),
            start: range.start,
            end: range.end,
            len,
        })
    } else {
        Ok(())
    }
}

/// Checks that `id` may be begun given the complete checkpoints.
pub(crate) fn check_increasing(
    id: u64,
    complete: &[u64],
    location: &str,
) -> Result<(), StateError> {
    match complete.last() {
        Some(&latest) if latest >= id => Err(StateError::CheckpointIdNotIncreasing {
            checkpoint_id: id,
            latest,
            location: location.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// One checkpoint folder as a backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderListing {
    pub(crate) id: u64,
    /// Whether the manifest is there.
    pub(crate) complete: bool,
    /// Every other file in the folder (data files and leftovers), sorted.
    pub(crate) files: Vec<String>,
}

/// What retention will delete, in this order: manifests, then single files,
/// then whole folders.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RetentionPlan {
    /// Complete checkpoints whose manifest goes first.
    pub(crate) drop_manifests: Vec<u64>,
    /// Files deleted one by one from folders that keep referenced files.
    pub(crate) delete_files: Vec<FileRef>,
    /// Folders deleted whole (with the listed files), after the above.
    pub(crate) remove_folders: Vec<FolderListing>,
    pub(crate) report: RetentionReport,
}

/// Plans [`CheckpointStorage::retain_last`]. `manifest` reads a complete
/// checkpoint's manifest.
pub(crate) fn plan_retention(
    folders: &[FolderListing],
    keep: usize,
    pending: &BTreeSet<u64>,
    manifest: &dyn Fn(u64) -> Result<Vec<u8>, StateError>,
    referenced: ReferencedFiles<'_>,
) -> Result<RetentionPlan, StateError> {
    if keep == 0 {
        return Err(StateError::InvalidRetention { keep });
    }
    let mut complete: Vec<u64> = folders
        .iter()
        .filter(|f| f.complete)
        .map(|f| f.id)
        .collect();
    complete.sort_unstable();
    let Some(&newest) = complete.last() else {
        // Nothing complete: every folder may be an attempt in progress.
        return Ok(RetentionPlan::default());
    };
    let retained: BTreeSet<u64> = complete.iter().rev().take(keep).copied().collect();
    let mut keep_files: HashSet<FileRef> = HashSet::new();
    for &id in &retained {
        keep_files.extend(referenced(id, &manifest(id)?)?);
    }

    let mut plan = RetentionPlan::default();
    plan.report.retained = retained.iter().copied().collect();
    let mut sorted: Vec<&FolderListing> = folders.iter().collect();
    sorted.sort_by_key(|f| f.id);
    for folder in sorted {
        if retained.contains(&folder.id)
            || (!folder.complete && (folder.id > newest || pending.contains(&folder.id)))
        {
            continue;
        }
        if folder.complete {
            plan.drop_manifests.push(folder.id);
            plan.report.removed_checkpoints.push(folder.id);
        } else {
            plan.report.removed_incomplete.push(folder.id);
        }
        let (kept, deleted): (Vec<FileRef>, Vec<FileRef>) = folder
            .files
            .iter()
            .map(|name| FileRef::new(folder.id, name.as_str()))
            .partition(|f| keep_files.contains(f));
        plan.report.deleted_files += deleted
            .iter()
            .filter(|f| !f.name.starts_with(MANIFEST_TMP_NAME))
            .count();
        if kept.is_empty() {
            plan.remove_folders.push(folder.clone());
        } else {
            plan.delete_files.extend(deleted);
            plan.report.kept_referenced.extend(kept);
        }
    }
    plan.report.kept_referenced.sort();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(id: u64, complete: bool, files: &[&str]) -> FolderListing {
        FolderListing {
            id,
            complete,
            files: files.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn refs_from_manifest(_id: u64, m: &[u8]) -> Result<Vec<FileRef>, StateError> {
        // "id/name,id/name"
        let text = std::str::from_utf8(m).unwrap();
        Ok(text
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (id, name) = s.split_once('/').unwrap();
                FileRef::new(id.parse().unwrap(), name)
            })
            .collect())
    }

    #[test]
    fn folder_names_round_trip_and_reject_others() {
        for id in [0, 1, 42, u64::MAX] {
            assert_eq!(
                parse_checkpoint_folder_name(&checkpoint_folder_name(id)),
                Some(id)
            );
        }
        for bad in [
            "chk-",
            "chk-x",
            "chk--1",
            "chk-+1",
            "chk-01",
            "chk-1 ",
            "CHK-1",
            "chk-99999999999999999999",
        ] {
            assert_eq!(parse_checkpoint_folder_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_names_are_validated() {
        for ok in [
            "a",
            "keyed-0.bin",
            "A_b.c-d",
            &"x".repeat(MAX_FILE_NAME_LEN),
        ] {
            validate_file_name(ok).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "_MANIFEST",
            "a/b",
            "a\\b",
            "é",
            "a b",
            &"x".repeat(MAX_FILE_NAME_LEN + 1),
        ] {
            let err = validate_file_name(bad).unwrap_err();
            assert!(matches!(err, StateError::InvalidFileName { .. }), "{bad}");
        }
    }

    #[test]
    fn range_check() {
        check_range("f", &(0..10), 10).unwrap();
        check_range("f", &(10..10), 10).unwrap();
        let err = check_range("f", &(5..11), 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "byte range 5..11 is invalid for f (10 bytes long)"
        );
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 6..5;
        assert!(check_range("f", &reversed, 10).is_err());
    }

    #[test]
    fn plan_keeps_last_k_and_referenced_files() {
        let folders = vec![
            folder(1, true, &["base", "x"]),
            folder(2, true, &["y"]),
            folder(3, false, &["partial", MANIFEST_TMP_NAME]),
            folder(4, true, &["z"]),
            folder(5, true, &["w"]),
            folder(6, false, &["in-progress"]),
        ];
        let manifests = |id: u64| -> Result<Vec<u8>, StateError> {
            Ok(match id {
                4 => b"4/z,1/base".to_vec(),
                5 => b"5/w,1/base".to_vec(),
                _ => panic!("manifest of non-retained checkpoint {id} read"),
            })
        };
        let plan = plan_retention(
            &folders,
            2,
            &BTreeSet::new(),
            &manifests,
            &refs_from_manifest,
        )
        .unwrap();
        assert_eq!(plan.drop_manifests, vec![1, 2]);
        assert_eq!(plan.delete_files, vec![FileRef::new(1, "x")]);
        let removed: Vec<u64> = plan.remove_folders.iter().map(|f| f.id).collect();
        assert_eq!(removed, vec![2, 3]);
        assert_eq!(plan.report.retained, vec![4, 5]);
        assert_eq!(plan.report.removed_checkpoints, vec![1, 2]);
        assert_eq!(plan.report.removed_incomplete, vec![3]);
        assert_eq!(plan.report.kept_referenced, vec![FileRef::new(1, "base")]);
        // x, y, partial (the tmp manifest is not a data file)
        assert_eq!(plan.report.deleted_files, 3);
    }

    #[test]
    fn plan_spares_pending_and_handles_empty() {
        let none = |_: u64| -> Result<Vec<u8>, StateError> { Ok(Vec::new()) };
        let refs = |_: u64, _: &[u8]| -> Result<Vec<FileRef>, StateError> { Ok(Vec::new()) };
        // Nothing complete: nothing is touched.
        let folders = vec![folder(1, false, &["a"])];
        let plan = plan_retention(&folders, 1, &BTreeSet::new(), &none, &refs).unwrap();
        assert_eq!(plan, RetentionPlan::default());
        // An older incomplete folder this handle is writing is spared.
        let folders = vec![folder(1, false, &["a"]), folder(2, true, &["b"])];
        let plan = plan_retention(&folders, 1, &BTreeSet::from([1]), &none, &refs).unwrap();
        assert!(plan.remove_folders.is_empty());
        let plan = plan_retention(&folders, 1, &BTreeSet::new(), &none, &refs).unwrap();
        assert_eq!(plan.remove_folders, vec![folder(1, false, &["a"])]);
        // keep == 0 is refused.
        assert!(matches!(
            plan_retention(&folders, 0, &BTreeSet::new(), &none, &refs),
            Err(StateError::InvalidRetention { keep: 0 })
        ));
        // An error from the callback plans nothing.
        let failing = |_: u64, _: &[u8]| -> Result<Vec<FileRef>, StateError> {
            Err(StateError::InvalidRetention { keep: 99 })
        };
        assert!(plan_retention(&folders, 1, &BTreeSet::new(), &none, &failing).is_err());
    }
}
