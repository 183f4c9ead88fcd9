//! Durable checkpoints streamed from live state: the same bytes as a
//! snapshot written from memory, through a bounded buffer.

use std::sync::Mutex;

use state_runtime::StateDescriptor;
use state_runtime::checkpoint::durable::{
    StoredCheckpoint, commit_checkpoint, write_checkpoint_at, write_subtask,
};
use state_runtime::checkpoint::{RestoredState, SnapshotWriter};
use state_runtime::prelude::*;
use state_runtime::storage::{
    CheckpointStorage, FileSink, LocalStorage, ReadStats, ReferencedFiles, RetentionReport,
};

#[derive(Checkpointed, Default)]
struct Big {
    #[state(keyed)]
    values: KeyedValue<u64, String>,
    #[state(keyed)]
    counts: KeyedValue<u64, u32>,
    #[state(split)]
    offsets: Vec<(u32, u64)>,
    #[state(union)]
    seen: Vec<String>,
}

#[derive(Checkpointed, Default)]
struct Offsets {
    #[state(split)]
    offsets: Vec<(u32, u64)>,
}

/// A local storage that records the largest piece any file was written in.
#[derive(Debug)]
struct Recording {
    inner: LocalStorage,
    largest_write: Mutex<usize>,
}

struct RecordingFile<'s> {
    inner: Box<dyn FileSink + 's>,
    largest_write: &'s Mutex<usize>,
}

impl FileSink for RecordingFile<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let mut largest = self.largest_write.lock().unwrap();
        *largest = (*largest).max(bytes.len());
        self.inner.write(bytes)
    }

    fn finish(self: Box<Self>) -> Result<(), StateError> {
        self.inner.finish()
    }
}

impl CheckpointStorage for Recording {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn begin(&self, id: u64) -> Result<(), StateError> {
        self.inner.begin(id)
    }
    fn write_file(&self, id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let mut largest = self.largest_write.lock().unwrap();
        *largest = (*largest).max(bytes.len());
        self.inner.write_file(id, name, bytes)
    }
    fn create_file<'s>(
        &'s self,
        id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        Ok(Box::new(RecordingFile {
            inner: self.inner.create_file(id, name)?,
            largest_write: &self.largest_write,
        }))
    }
    fn commit(&self, id: u64, manifest: &[u8]) -> Result<(), StateError> {
        self.inner.commit(id, manifest)
    }
    fn create_staged_file<'s>(
        &'s self,
        id: u64,
        name: &str,
    ) -> Result<Box<dyn FileSink + 's>, StateError> {
        Ok(Box::new(RecordingFile {
            inner: self.inner.create_staged_file(id, name)?,
            largest_write: &self.largest_write,
        }))
    }
    fn commit_create_only(&self, id: u64, manifest: &[u8]) -> Result<(), StateError> {
        self.inner.commit_create_only(id, manifest)
    }
    fn abort(&self, id: u64) -> Result<(), StateError> {
        self.inner.abort(id)
    }
    fn list(&self) -> Result<Vec<u64>, StateError> {
        self.inner.list()
    }
    fn read_manifest(&self, id: u64) -> Result<Vec<u8>, StateError> {
        self.inner.read_manifest(id)
    }
    fn list_files(&self, id: u64) -> Result<Vec<String>, StateError> {
        self.inner.list_files(id)
    }
    fn file_len(&self, id: u64, name: &str) -> Result<u64, StateError> {
        self.inner.file_len(id, name)
    }
    fn read_range(
        &self,
        id: u64,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, StateError> {
        self.inner.read_range(id, name, range)
    }
    fn read_stats(&self) -> ReadStats {
        self.inner.read_stats()
    }
    fn retain_last(
        &self,
        keep: usize,
        referenced: ReferencedFiles<'_>,
    ) -> Result<RetentionReport, StateError> {
        self.inner.retain_last(keep, referenced)
    }
}

/// Subtask `subtask` of 2, with keys of every key group it owns and values
/// large enough that each subtask's file is several stream buffers long.
fn big(assigner: KeyGroupAssigner, subtask: usize, keys: u64) -> Big {
    let range = assigner.range_for_subtask(2, subtask).unwrap();
    let mut op = Big {
        offsets: vec![(subtask as u32, 10), (subtask as u32 + 2, 20)],
        seen: vec![format!("seen by {subtask}")],
        ..Big::default()
    };
    op.bind_keyed(assigner, range).unwrap();
    for k in 0..keys {
        if range.contains(assigner.key_group(&k).unwrap()) {
            op.values.insert(k, format!("{k:0>200}")).unwrap();
            op.counts.insert(k, k as u32).unwrap();
        }
    }
    op
}

#[test]
fn streamed_files_equal_in_memory_ones_through_a_bounded_buffer() {
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(256).unwrap());
    let keys = 300_000;
    let ops = [big(assigner, 0, keys), big(assigner, 1, keys)];

    let streamed_dir = tempfile::tempdir().unwrap();
    let streamed = Recording {
        inner: LocalStorage::open(streamed_dir.path()).unwrap(),
        largest_write: Mutex::new(0),
    };
    streamed.begin(1).unwrap();
    let files: Vec<_> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| write_subtask(&streamed, 1, 0, "big", i, op).unwrap())
        .collect();
    let report = commit_checkpoint(&streamed, 1, &[("big", &files)]).unwrap();
    let largest_file = report.files.iter().map(|f| f.len).max().unwrap();
    let largest_write = *streamed.largest_write.lock().unwrap();
    // The buffer (8 MiB) plus one key group (about 130 kB here).
    assert!(
        largest_file > 3 * (8 << 20),
        "files of {largest_file} bytes"
    );
    assert!(
        largest_write < (8 << 20) + (1 << 20),
        "a write of {largest_write} bytes"
    );

    // The same operators snapshotted in memory and written as a whole.
    let memory_dir = tempfile::tempdir().unwrap();
    let memory = LocalStorage::open(memory_dir.path()).unwrap();
    let cp =
        Checkpoint::from_subtasks(ops.iter().map(|op| op.snapshot().unwrap()).collect()).unwrap();
    write_checkpoint_at(&memory, 1, &[("big", &cp)], 0).unwrap();
    for f in &report.files {
        assert!(
            streamed.read_file(1, &f.name).unwrap() == memory.read_file(1, &f.name).unwrap(),
            "{} differs",
            f.name
        );
    }
    // The manifests differ only in their creation time (bytes 24..32) and
    // so in their closing CRC (the last 4 bytes).
    let (a, b) = (
        streamed.read_manifest(1).unwrap(),
        memory.read_manifest(1).unwrap(),
    );
    let body = |m: &[u8]| (m.len(), m[..24].to_vec(), m[32..m.len() - 4].to_vec());
    assert!(body(&a) == body(&b), "the manifests differ");

    // And it restores, verified, at another parallelism.
    let stored = StoredCheckpoint::latest(&streamed).unwrap().unwrap();
    assert_eq!(stored.verify().unwrap().files, 2);
    let op = stored.operator("big").unwrap();
    let mut restored = 0;
    for subtask in 0..3 {
        let mut b = Big::default();
        op.restore_into(&mut b, subtask, 3).unwrap();
        for (k, v) in b.values.iter() {
            assert_eq!(*v, format!("{k:0>200}"));
            assert_eq!(b.counts.get(k).unwrap(), Some(&(*k as u32)));
        }
        restored += b.values.len() as u64;
    }
    assert_eq!(restored, keys);
}

#[test]
fn a_commit_refuses_files_given_out_of_place() {
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(16).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    storage.begin(1).unwrap();
    let a = write_subtask(&storage, 1, 0, "big", 0, &big(assigner, 0, 100)).unwrap();
    let b = write_subtask(&storage, 1, 0, "big", 1, &big(assigner, 1, 100)).unwrap();
    let err = commit_checkpoint(&storage, 1, &[("big", &[b.clone(), a.clone()])]).unwrap_err();
    assert!(
        matches!(&err, StateError::InvalidOperators { reason } if reason.contains("given as subtask 0")),
        "{err}"
    );
    let err = commit_checkpoint(&storage, 1, &[("other", &[a.clone(), b.clone()])]).unwrap_err();
    assert!(matches!(err, StateError::InvalidOperators { .. }), "{err}");
    // Files of another checkpoint.
    storage.begin(2).unwrap();
    let err = commit_checkpoint(&storage, 2, &[("big", &[a.clone(), b.clone()])]).unwrap_err();
    assert!(
        matches!(&err, StateError::InvalidOperators { reason } if reason.contains("written for checkpoint 1, not 2")),
        "{err}"
    );
    storage.abort(2).unwrap();
    // Nothing became visible; the right order commits.
    assert_eq!(storage.list().unwrap(), Vec::<u64>::new());
    commit_checkpoint(&storage, 1, &[("big", &[a, b])]).unwrap();
    assert_eq!(storage.list().unwrap(), [1]);
}

/// The runner's durable store streams each instance's state into its data
/// file (no snapshot in memory) and commits them with the job's fields.
#[test]
fn the_durable_job_store_streams_instances_into_their_files() {
    use state_runtime::runner::{
        DurableCheckpointStore, JobCheckpointStore, PipelineOperator, SubtaskState,
    };
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(64).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let recording = std::sync::Arc::new(Recording {
        inner: LocalStorage::open(dir.path()).unwrap(),
        largest_write: Mutex::new(0),
    });
    let store = DurableCheckpointStore::new(recording.clone(), 2);
    let ops = [big(assigner, 0, 200_000), big(assigner, 1, 200_000)];
    store.begin(7).unwrap();
    let mut keyed = Vec::new();
    let mut sources = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let state = store.snapshot(7, PipelineOperator::Keyed, i, op).unwrap();
        assert!(
            matches!(state, SubtaskState::Written(_)),
            "subtask {i} written"
        );
        keyed.push(state);
        let offsets = Offsets {
            offsets: vec![(i as u32, 100)],
        };
        let source = store
            .snapshot(7, PipelineOperator::Source, i, &offsets)
            .unwrap();
        sources.push(source);
    }
    let cp = store.complete(7, sources, keyed, assigner, 1234).unwrap();
    assert!(cp.keyed.in_memory().is_none());
    assert!(cp.keyed.data_bytes() > 4 * (8 << 20));
    assert!(*recording.largest_write.lock().unwrap() < (8 << 20) + (1 << 20));
    let latest = store.latest().unwrap().unwrap();
    assert_eq!(
        (latest.id, latest.events, latest.assigner),
        (7, 1234, assigner)
    );
    let mut restored = 0;
    for subtask in 0..3 {
        let mut b = Big::default();
        latest.keyed.restore_into(&mut b, subtask, 3).unwrap();
        restored += b.values.len();
    }
    assert_eq!(restored, 200_000);
}

/// An item whose encoding fails.
#[derive(Clone)]
struct Unencodable(u32);

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 cannot be encoded"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d).map(Unencodable)
    }
}

/// A hand-written operator that ignores an error while writing one state
/// and writes another.
struct Careless;

impl Checkpointed for Careless {
    fn state_descriptors() -> Vec<StateDescriptor> {
        vec![
            StateDescriptor::new("tags", StateMode::Union, "Unencodable"),
            StateDescriptor::new("offsets", StateMode::Split, "u64"),
        ]
    }
    fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        let _ = w.union("tags", &vec![Unencodable(1), Unencodable(13)]);
        w.split("offsets", &vec![5u64, 6])?;
        Ok(())
    }
    fn restore(&mut self, _: &mut RestoredState<'_>) -> Result<(), StateError> {
        Ok(())
    }
}

/// A streamed file whose states did not all write is never handed to a
/// commit, even when the operator ignored the error.
#[test]
fn a_state_that_failed_to_write_fails_the_streamed_file() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    storage.begin(1).unwrap();
    let err = write_subtask(&storage, 1, 0, "careless", 0, &Careless).unwrap_err();
    assert!(
        matches!(&err, StateError::Encode { state, .. } if state == "tags"),
        "{err}"
    );
}
