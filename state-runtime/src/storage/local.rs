//! Checkpoints in a local directory.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{
    CheckpointStorage, FileSink, FolderListing, MANIFEST_NAME, MANIFEST_TMP_NAME, Pending,
    ReadCounter, ReadStats, ReferencedFiles, RetentionReport, check_increasing, check_range,
    checkpoint_folder_name, parse_checkpoint_folder_name, plan_retention, validate_file_name,
};
use crate::error::StateError;

mod data_file;

use data_file::LocalFile;

/// Checkpoints in a local directory: `<root>/chk-<id>/<files>` plus
/// `<root>/chk-<id>/_MANIFEST`.
///
/// Commit protocol: every data file is written and fsynced; the manifest is
/// written to `_MANIFEST.tmp` and fsynced, the folder is fsynced, the manifest
/// is renamed to `_MANIFEST` (the commit point: a rename within a folder is
/// atomic) and the folder is fsynced again. A folder without `_MANIFEST` is
/// an interrupted attempt: it is not listed, and [`begin`](CheckpointStorage::begin)
/// or [`retain_last`](CheckpointStorage::retain_last) clean it up.
///
/// ```
/// use state_runtime::storage::{CheckpointStorage, LocalStorage};
///
/// let dir = tempfile::tempdir()?;
/// let storage = LocalStorage::open(dir.path().join("checkpoints"))?;
/// storage.write_checkpoint(1, &[("state.bin", b"hello")], b"manifest")?;
/// assert!(dir.path().join("checkpoints/chk-1/_MANIFEST").is_file());
/// assert_eq!(storage.list()?, [1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LocalStorage {
    root: PathBuf,
    pending: Pending,
    reads: ReadCounter,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

fn fsync_dir(path: &Path) -> Result<(), StateError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut file = File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Counter that makes the temporary names of create-only commits unique
/// within a process.
static STAGED_COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A staged data file ([`CheckpointStorage::create_staged_file`]): the file
/// is fsynced when finished, then its folder, so that its name is durable
/// too (no commit by this process fsyncs the folder later).
struct StagedLocalFile {
    file: LocalFile,
    dir: PathBuf,
}

impl FileSink for StagedLocalFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.file.write(bytes)
    }

    fn finish(self: Box<Self>) -> Result<(), StateError> {
        let StagedLocalFile { file, dir } = *self;
        Box::new(file).finish()?;
        fsync_dir(&dir)
    }
}

impl LocalStorage {
    /// Opens (and creates, with its parents) the directory `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        fsync_dir(&root)?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
        Ok(LocalStorage {
            root,
            pending: Pending::default(),
            reads: ReadCounter::default(),
        })
    }

    /// The directory holding the checkpoint folders.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder of a checkpoint unless it exists (another process
    /// may create it at the same time), and makes its entry durable.
    fn ensure_checkpoint_dir(&self, checkpoint_id: u64) -> Result<PathBuf, StateError> {
        let dir = self.checkpoint_dir(checkpoint_id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        fsync_dir(&self.root)?;
        Ok(dir)
    }

    /// The folder of a checkpoint (whether or not it exists).
    pub fn checkpoint_dir(&self, checkpoint_id: u64) -> PathBuf {
        self.root.join(checkpoint_folder_name(checkpoint_id))
    }

    fn file_path(&self, checkpoint_id: u64, name: &str) -> Result<PathBuf, StateError> {
        validate_file_name(name)?;
        Ok(self.checkpoint_dir(checkpoint_id).join(name))
    }

    fn not_found_as<'a>(
        path: &'a Path,
        not_found: impl FnOnce() -> StateError + 'a,
    ) -> impl FnOnce(io::Error) -> StateError + 'a {
        move |source| {
            if source.kind() == io::ErrorKind::NotFound {
                not_found()
            } else {
                StateError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        }
    }

    fn file_not_found(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
        Self::not_found_as(path, || StateError::FileNotFound {
            location: path.display().to_string(),
        })
    }

    /// Every checkpoint folder, complete or not, in no particular order.
    fn folders(&self) -> Result<Vec<FolderListing>, StateError> {
        let mut out = Vec::new();
        for id in self.folder_ids()? {
            let dir = self.checkpoint_dir(id);
            let mut complete = false;
            let mut files = Vec::new();
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Removed since we listed the root.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == MANIFEST_NAME {
                    complete = true;
                } else {
                    files.push(name);
                }
            }
            files.sort();
            out.push(FolderListing {
                id,
                complete,
                files,
            });
        }
        Ok(out)
    }

    /// Ids of all `chk-<id>` folders, ascending.
    fn folder_ids(&self) -> Result<Vec<u64>, StateError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(parse_checkpoint_folder_name)
            else {
                continue;
            };
            if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn remove_dir(&self, dir: &Path) -> Result<(), StateError> {
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(dir)(e)),
        }
    }

    fn remove_file(path: &Path) -> Result<(), StateError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path)(e)),
        }
    }
}

impl CheckpointStorage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn begin(&self, checkpoint_id: u64) -> Result<(), StateError> {
        check_increasing(checkpoint_id, &self.list()?, &self.location())?;
        let dir = self.checkpoint_dir(checkpoint_id);
        // Leftovers of an interrupted attempt (never complete: the id is newer
        // than every complete checkpoint).
        self.remove_dir(&dir)?;
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        fsync_dir(&self.root)?;
        self.pending.insert(checkpoint_id);
        tracing::debug!(checkpoint_id, dir = %dir.display(), "checkpoint begun");
        Ok(())
    }

    fn write_file(&self, checkpoint_id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        let path = self.file_path(checkpoint_id, name)?;
        write_synced(&path, bytes)
    }

    fn create_file<'s>(
        &'s self,
        checkpoint_id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        let path = self.file_path(checkpoint_id, name)?;
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(Box::new(LocalFile::new(file, path)))
    }

    fn create_staged_file<'s>(
        &'s self,
        checkpoint_id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        let path = self.file_path(checkpoint_id, name)?;
        let dir = self.ensure_checkpoint_dir(checkpoint_id)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => StateError::FileExists {
                    location: path.display().to_string(),
                },
                _ => StateError::Io {
                    path: path.clone(),
                    source,
                },
            })?;
        Ok(Box::new(StagedLocalFile {
            file: LocalFile::new(file, path),
            dir,
        }))
    }

    fn commit_create_only(&self, checkpoint_id: u64, manifest: &[u8]) -> Result<(), StateError> {
        let dir = self.ensure_checkpoint_dir(checkpoint_id)?;
        let fin = dir.join(MANIFEST_NAME);
        // A name no other committer uses, so that racing committers never
        // write the same temporary file.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = STAGED_COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(
            "{MANIFEST_TMP_NAME}.{}.{nanos}.{unique}",
            std::process::id()
        ));
        write_synced(&tmp, manifest)?;
        fsync_dir(&dir)?;
        // A hard link never replaces an existing name: the create-only commit
        // point.
        let linked = fs::hard_link(&tmp, &fin);
        Self::remove_file(&tmp)?;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::CheckpointAlreadyCommitted {
                    checkpoint_id,
                    location: self.location(),
                });
            }
            Err(e) => return Err(io_err(&fin)(e)),
        }
        fsync_dir(&dir)?;
        tracing::debug!(checkpoint_id, dir = %dir.display(), "checkpoint committed (create-only)");
        Ok(())
    }

    fn commit(&self, checkpoint_id: u64, manifest: &[u8]) -> Result<(), StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        let dir = self.checkpoint_dir(checkpoint_id);
        let tmp = dir.join(MANIFEST_TMP_NAME);
        let fin = dir.join(MANIFEST_NAME);
        write_synced(&tmp, manifest)?;
        // Data file entries durable before the manifest can be.
        fsync_dir(&dir)?;
        fs::rename(&tmp, &fin).map_err(io_err(&fin))?;
        fsync_dir(&dir)?;
        self.pending.remove(checkpoint_id);
        tracing::debug!(checkpoint_id, dir = %dir.display(), "checkpoint committed");
        Ok(())
    }

    fn abort(&self, checkpoint_id: u64) -> Result<(), StateError> {
        self.pending.check(checkpoint_id, &self.location())?;
        self.remove_dir(&self.checkpoint_dir(checkpoint_id))?;
        fsync_dir(&self.root)?;
        self.pending.remove(checkpoint_id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<u64>, StateError> {
        let mut complete = Vec::new();
        for id in self.folder_ids()? {
            let manifest = self.checkpoint_dir(id).join(MANIFEST_NAME);
            match fs::symlink_metadata(&manifest) {
                Ok(meta) if meta.is_file() => complete.push(id),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&manifest)(e)),
            }
        }
        Ok(complete)
    }

    fn read_manifest(&self, checkpoint_id: u64) -> Result<Vec<u8>, StateError> {
        let path = self.checkpoint_dir(checkpoint_id).join(MANIFEST_NAME);
        let bytes = fs::read(&path).map_err(Self::not_found_as(&path, || {
            StateError::CheckpointNotFound {
                checkpoint_id,
                location: self.checkpoint_dir(checkpoint_id).display().to_string(),
            }
        }))?;
        self.reads.manifest(bytes.len());
        Ok(bytes)
    }

    fn list_files(&self, checkpoint_id: u64) -> Result<Vec<String>, StateError> {
        let dir = self.checkpoint_dir(checkpoint_id);
        let entries = fs::read_dir(&dir).map_err(Self::not_found_as(&dir, || {
            StateError::CheckpointNotFound {
                checkpoint_id,
                location: dir.display().to_string(),
            }
        }))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != MANIFEST_NAME && !name.starts_with(MANIFEST_TMP_NAME) {
                files.push(name);
            }
        }
        files.sort();
        Ok(files)
    }

    fn file_len(&self, checkpoint_id: u64, name: &str) -> Result<u64, StateError> {
        let path = self.file_path(checkpoint_id, name)?;
        let meta = fs::metadata(&path).map_err(Self::file_not_found(&path))?;
        Ok(meta.len())
    }

    fn read_range(
        &self,
        checkpoint_id: u64,
        name: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StateError> {
        let mut buf = Vec::new();
        self.read_range_into(checkpoint_id, name, range, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        checkpoint_id: u64,
        name: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let path = self.file_path(checkpoint_id, name)?;
        let mut file = File::open(&path).map_err(Self::file_not_found(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        check_range(&path.display().to_string(), &range, len)?;
        let n =
            usize::try_from(range.end - range.start).map_err(|_| StateError::RangeOutOfBounds {
                location: path.display().to_string(),
                start: range.start,
                end: range.end,
                len,
            })?;
        // Read into spare capacity: no zeroing of a buffer about to be
        // overwritten.
        buf.clear();
        buf.reserve_exact(n);
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| (&mut file).take(n as u64).read_to_end(buf))
            .and_then(|read| match read == n {
                true => Ok(()),
                false => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            })
            .map_err(io_err(&path))?;
        self.reads.range(n);
        Ok(())
    }

    fn read_stats(&self) -> ReadStats {
        self.reads.get()
    }

    fn retain_last(
        &self,
        keep: usize,
        referenced: ReferencedFiles<'_>,
    ) -> Result<RetentionReport, StateError> {
        let folders = self.folders()?;
        let plan = plan_retention(
            &folders,
            keep,
            &self.pending.snapshot(),
            &|id| self.read_manifest(id),
            referenced,
        )?;
        // 1. Manifests first: the checkpoints stop being complete before any
        //    of their files goes.
        for &id in &plan.drop_manifests {
            let dir = self.checkpoint_dir(id);
            Self::remove_file(&dir.join(MANIFEST_NAME))?;
            fsync_dir(&dir)?;
        }
        // 2. Unreferenced files of folders that keep referenced ones.
        let mut touched = std::collections::BTreeSet::new();
        for file in &plan.delete_files {
            Self::remove_file(&self.checkpoint_dir(file.checkpoint_id).join(&file.name))?;
            touched.insert(file.checkpoint_id);
        }
        for id in touched {
            fsync_dir(&self.checkpoint_dir(id))?;
        }
        // 3. Whole folders.
        for folder in &plan.remove_folders {
            self.remove_dir(&self.checkpoint_dir(folder.id))?;
        }
        if !plan.remove_folders.is_empty() {
            fsync_dir(&self.root)?;
        }
        tracing::debug!(
            root = %self.root.display(),
            retained = ?plan.report.retained,
            removed = ?plan.report.removed_checkpoints,
            removed_incomplete = ?plan.report.removed_incomplete,
            "checkpoint retention"
        );
        Ok(plan.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileRef;

    fn storage() -> (tempfile::TempDir, LocalStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path().join("root")).unwrap();
        (dir, storage)
    }

    #[test]
    fn folder_without_manifest_is_invisible() {
        let (_dir, s) = storage();
        s.begin(1).unwrap();
        s.write_file(1, "a", b"data").unwrap();
        assert_eq!(s.list().unwrap(), Vec::<u64>::new());
        assert_eq!(s.latest().unwrap(), None);
        assert!(matches!(
            s.read_manifest(1),
            Err(StateError::CheckpointNotFound {
                checkpoint_id: 1,
                ..
            })
        ));
        s.commit(1, b"m1").unwrap();
        assert_eq!(s.list().unwrap(), vec![1]);
        // A later folder created by hand without a manifest stays invisible.
        fs::create_dir(s.checkpoint_dir(5)).unwrap();
        fs::write(s.checkpoint_dir(5).join("a"), b"x").unwrap();
        assert_eq!(s.latest().unwrap(), Some(1));
        // Unrelated entries in the root are ignored.
        fs::create_dir(s.root().join("chk-007")).unwrap();
        fs::write(s.root().join("chk-8"), b"a file, not a folder").unwrap();
        fs::create_dir(s.root().join("shared")).unwrap();
        assert_eq!(s.list().unwrap(), vec![1]);
    }

    #[test]
    fn tmp_manifest_leftover_is_ignored_and_cleaned_by_begin() {
        let (_dir, s) = storage();
        s.write_checkpoint(1, &[("a", b"1")], b"m1").unwrap();
        // A commit of 2 that crashed between writing the tmp manifest and the rename.
        let dir2 = s.checkpoint_dir(2);
        fs::create_dir(&dir2).unwrap();
        fs::write(dir2.join("a"), b"2").unwrap();
        fs::write(dir2.join(MANIFEST_TMP_NAME), b"m2").unwrap();
        assert_eq!(s.list().unwrap(), vec![1]);
        assert_eq!(s.list_files(2).unwrap(), vec!["a".to_string()]);
        // Retrying 2 starts from an empty folder.
        s.begin(2).unwrap();
        assert!(!dir2.join(MANIFEST_TMP_NAME).exists());
        assert!(!dir2.join("a").exists());
        s.write_file(2, "b", b"22").unwrap();
        s.commit(2, b"m2'").unwrap();
        assert_eq!(s.list().unwrap(), vec![1, 2]);
        assert_eq!(s.list_files(2).unwrap(), vec!["b".to_string()]);
        assert_eq!(s.read_manifest(2).unwrap(), b"m2'");
        assert!(!dir2.join(MANIFEST_TMP_NAME).exists());
    }

    #[test]
    fn writes_need_begin_and_ids_increase() {
        let (_dir, s) = storage();
        assert!(matches!(
            s.write_file(1, "a", b""),
            Err(StateError::CheckpointNotBegun {
                checkpoint_id: 1,
                ..
            })
        ));
        assert!(matches!(
            s.commit(1, b""),
            Err(StateError::CheckpointNotBegun { .. })
        ));
        s.write_checkpoint(3, &[], b"m3").unwrap();
        // Committed: no more writes.
        assert!(matches!(
            s.write_file(3, "a", b""),
            Err(StateError::CheckpointNotBegun { .. })
        ));
        for id in [2, 3] {
            let err = s.begin(id).unwrap_err();
            assert!(
                matches!(err, StateError::CheckpointIdNotIncreasing { latest: 3, .. }),
                "{err}"
            );
        }
        assert_eq!(s.read_manifest(3).unwrap(), b"m3");
        assert!(matches!(
            s.write_file(4, "../x", b""),
            Err(StateError::CheckpointNotBegun { .. })
        ));
        s.begin(4).unwrap();
        assert!(matches!(
            s.write_file(4, "../x", b""),
            Err(StateError::InvalidFileName { .. })
        ));
        s.write_file(4, "x", b"1").unwrap();
        s.abort(4).unwrap();
        assert!(!s.checkpoint_dir(4).exists());
        assert_eq!(s.list().unwrap(), vec![3]);
    }

    #[test]
    fn write_checkpoint_aborts_on_error() {
        let (_dir, s) = storage();
        let err = s
            .write_checkpoint(1, &[("ok", b"1"), ("_bad", b"2")], b"m")
            .unwrap_err();
        assert!(matches!(err, StateError::InvalidFileName { .. }));
        assert!(!s.checkpoint_dir(1).exists());
        assert!(matches!(
            s.write_file(1, "ok", b""),
            Err(StateError::CheckpointNotBegun { .. })
        ));
    }

    #[test]
    fn range_reads_are_exact_checked_and_counted() {
        let (_dir, s) = storage();
        let data: Vec<u8> = (0..=255).collect();
        s.write_checkpoint(1, &[("f", &data)], b"manifest").unwrap();
        assert_eq!(s.read_stats(), ReadStats::default());
        assert_eq!(s.file_len(1, "f").unwrap(), 256);
        assert_eq!(s.read_range(1, "f", 10..20).unwrap(), &data[10..20]);
        assert_eq!(s.read_range(1, "f", 250..256).unwrap(), &data[250..]);
        assert_eq!(s.read_range(1, "f", 256..256).unwrap(), Vec::<u8>::new());
        let before = s.read_stats();
        assert_eq!(
            before,
            ReadStats {
                data_bytes: 16,
                range_reads: 3,
                manifest_bytes: 0
            }
        );
        assert_eq!(s.read_file(1, "f").unwrap(), data);
        assert_eq!(s.read_manifest(1).unwrap(), b"manifest");
        assert_eq!(
            s.read_stats().since(before),
            ReadStats {
                data_bytes: 256,
                range_reads: 1,
                manifest_bytes: 8
            }
        );

        let counted = s.read_stats();
        #[allow(clippy::reversed_empty_ranges)]
        let bad_ranges = [
            250..257,
            256..257,
            300..400,
            20..10,
            0..u64::MAX,
            u64::MAX - 1..u64::MAX,
        ];
        for range in bad_ranges {
            let err = s.read_range(1, "f", range.clone()).unwrap_err();
            match &err {
                StateError::RangeOutOfBounds {
                    location,
                    start,
                    end,
                    len,
                } => {
                    assert!(location.ends_with("chk-1/f"), "{location}");
                    assert_eq!((*start, *end, *len), (range.start, range.end, 256));
                }
                other => panic!("{range:?}: {other}"),
            }
            assert!(err.to_string().contains("256 bytes"), "{err}");
        }
        // Failed reads count nothing.
        assert_eq!(s.read_stats(), counted);
        assert!(matches!(
            s.read_range(1, "g", 0..1),
            Err(StateError::FileNotFound { .. })
        ));
        assert!(matches!(
            s.file_len(2, "f"),
            Err(StateError::FileNotFound { .. })
        ));
        assert!(matches!(
            s.read_range(1, "_MANIFEST", 0..1),
            Err(StateError::InvalidFileName { .. })
        ));
    }

    /// Manifests in these tests: comma-separated `id/name` references.
    fn refs(_id: u64, manifest: &[u8]) -> Result<Vec<FileRef>, StateError> {
        Ok(std::str::from_utf8(manifest)
            .unwrap()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (id, name) = s.split_once('/').unwrap();
                FileRef::new(id.parse().unwrap(), name)
            })
            .collect())
    }

    #[test]
    fn retention_keeps_last_k_and_referenced_files() {
        let (_dir, s) = storage();
        s.write_checkpoint(1, &[("base", b"B1"), ("delta", b"D1")], b"1/base,1/delta")
            .unwrap();
        s.write_checkpoint(2, &[("delta", b"D2")], b"1/base,2/delta")
            .unwrap();
        s.write_checkpoint(3, &[("delta", b"D3")], b"1/base,3/delta")
            .unwrap();
        // An interrupted attempt older than the newest complete checkpoint...
        fs::create_dir(s.checkpoint_dir(4)).unwrap();
        fs::write(s.checkpoint_dir(4).join("delta"), b"partial").unwrap();
        fs::write(s.checkpoint_dir(4).join(MANIFEST_TMP_NAME), b"partial").unwrap();
        s.write_checkpoint(5, &[("base", b"B5")], b"5/base")
            .unwrap();
        s.write_checkpoint(6, &[("delta", b"D6")], b"1/base,5/base,6/delta")
            .unwrap();
        // ... and one newer (in progress elsewhere): left alone.
        fs::create_dir(s.checkpoint_dir(7)).unwrap();
        fs::write(s.checkpoint_dir(7).join("delta"), b"D7").unwrap();

        let report = s.retain_last(2, &refs).unwrap();
        assert_eq!(report.retained, vec![5, 6]);
        assert_eq!(report.removed_checkpoints, vec![1, 2, 3]);
        assert_eq!(report.removed_incomplete, vec![4]);
        assert_eq!(report.kept_referenced, vec![FileRef::new(1, "base")]);
        assert_eq!(report.deleted_files, 4); // 1/delta, 2/delta, 3/delta, 4/delta
        assert_eq!(s.list().unwrap(), vec![5, 6]);
        // 1 lost its manifest and its delta but keeps the referenced base.
        assert_eq!(s.list_files(1).unwrap(), vec!["base".to_string()]);
        assert!(!s.checkpoint_dir(1).join(MANIFEST_NAME).exists());
        assert_eq!(s.read_file(1, "base").unwrap(), b"B1");
        for gone in [2, 3, 4] {
            assert!(!s.checkpoint_dir(gone).exists(), "chk-{gone} still there");
        }
        assert_eq!(s.read_file(5, "base").unwrap(), b"B5");
        assert_eq!(s.read_file(6, "delta").unwrap(), b"D6");
        assert_eq!(s.read_file(7, "delta").unwrap(), b"D7");

        // Once nothing references 1/base any more, it goes too.
        s.write_checkpoint(8, &[("base", b"B8")], b"8/base")
            .unwrap();
        s.write_checkpoint(9, &[("delta", b"D9")], b"8/base,9/delta")
            .unwrap();
        let report = s.retain_last(2, &refs).unwrap();
        assert_eq!(report.retained, vec![8, 9]);
        assert_eq!(report.removed_checkpoints, vec![5, 6]);
        assert_eq!(report.removed_incomplete, vec![1, 7]);
        assert!(report.kept_referenced.is_empty());
        for gone in [1, 5, 6, 7] {
            assert!(!s.checkpoint_dir(gone).exists(), "chk-{gone} still there");
        }
        assert_eq!(s.list().unwrap(), vec![8, 9]);

        // Running it again changes nothing.
        let report = s.retain_last(2, &refs).unwrap();
        assert_eq!(report.removed_checkpoints, Vec::<u64>::new());
        assert_eq!(report.deleted_files, 0);
        assert_eq!(s.list().unwrap(), vec![8, 9]);
        assert!(matches!(
            s.retain_last(0, &refs),
            Err(StateError::InvalidRetention { keep: 0 })
        ));
    }

    #[test]
    fn retention_error_from_callback_deletes_nothing() {
        let (_dir, s) = storage();
        for id in 1..=3 {
            s.write_checkpoint(id, &[("f", b"x")], b"").unwrap();
        }
        let failing = |id: u64, _: &[u8]| -> Result<Vec<FileRef>, StateError> {
            Err(StateError::CheckpointNotFound {
                checkpoint_id: id,
                location: "test".into(),
            })
        };
        assert!(s.retain_last(1, &failing).is_err());
        assert_eq!(s.list().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn retention_spares_checkpoint_being_written() {
        let (_dir, s) = storage();
        s.write_checkpoint(1, &[("f", b"x")], b"").unwrap();
        s.begin(2).unwrap();
        s.write_file(2, "f", b"y").unwrap();
        s.write_checkpoint(3, &[("f", b"z")], b"").unwrap();
        // 2 is older than the newest complete checkpoint but still pending here.
        let report = s.retain_last(1, &refs).unwrap();
        assert_eq!(report.removed_checkpoints, vec![1]);
        assert!(report.removed_incomplete.is_empty());
        assert_eq!(s.read_file(2, "f").unwrap(), b"y");
        s.commit(2, b"").unwrap();
        assert_eq!(s.list().unwrap(), vec![2, 3]);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        let err = LocalStorage::open(file.join("sub")).unwrap_err();
        assert!(
            matches!(&err, StateError::Io { path, .. } if path.ends_with("not-a-dir/sub")),
            "{err}"
        );
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
