//! The runner with durable checkpoints on a local directory: stop, kill and
//! restart at other parallelisms from what is on disk, each instance reading
//! only its own byte ranges.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod common;

use common::run_until;
use rescale::{LogSpec, RunningSum, compare_totals, reference_totals, totals_of};
use state_runtime::checkpoint::durable::StoredCheckpoint;
use state_runtime::prelude::*;
use state_runtime::runner::{
    DurableCheckpointStore, InstanceInfo, Job, JobCheckpointStore, JobEnd, RunningJob,
};
use state_runtime::storage::{CheckpointStorage, LocalStorage};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rs-durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec() -> LogSpec {
    LogSpec {
        partitions: 4,
        events: 40_000,
        customers: 1_500,
        seed: 5,
    }
}

fn start(log: &Path, store: &DurableCheckpointStore, s: usize, n: usize) -> RunningJob<RunningSum> {
    Job::new(log, store.clone(), |_: &InstanceInfo| RunningSum::default())
        .parallelism(s, n)
        .assigner(KeyGroupAssigner::native(MaxParallelism::new(64).unwrap()))
        .checkpoint_every_events(3_000)
        .batch_size(128)
        .start()
        .unwrap()
}

#[test]
fn stop_kill_and_restart_from_disk_at_other_parallelisms() {
    let dir = TempDir::new("sequence");
    let log = dir.0.join("log");
    spec().write_log(&log).unwrap();
    let storage = Arc::new(LocalStorage::open(dir.0.join("checkpoints")).unwrap());
    let store = DurableCheckpointStore::new(storage.clone(), 3);

    // Phase 1: 2 x 2, stopped with a final checkpoint.
    let out = {
        let job = start(&log, &store, 2, 2);
        run_until(&job, 10_000);
        job.stop().unwrap()
    };
    assert_eq!(out.report.end, JobEnd::Stopped);
    let stopped_at = store.latest().unwrap().unwrap();
    assert_eq!(Some(stopped_at.id), out.report.last_checkpoint());
    assert!(
        stopped_at.keyed.in_memory().is_none(),
        "read back from disk"
    );
    assert_eq!(stopped_at.keyed.parallelism(), 2);
    assert!(storage.list().unwrap().len() <= 3, "retention keeps 3");
    StoredCheckpoint::open(&*storage, stopped_at.id)
        .unwrap()
        .verify()
        .unwrap();

    // Phase 2: 3 x 3 from disk; each keyed instance reads exactly the bytes
    // of the key groups it owns, so together they read the keyed data once.
    let before = storage.read_stats();
    let job = start(&log, &store, 3, 3);
    run_until(&job, 8_000);
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(Duration::from_micros(u64::from(seed % 5_000)));
    let killed = job.kill().unwrap();
    let keyed_read: u64 = killed
        .report
        .keyed
        .iter()
        .map(|k| k.restore.as_ref().unwrap().bytes_read)
        .sum();
    assert_eq!(
        keyed_read,
        stopped_at.keyed.data_bytes(),
        "read amplification 1.0"
    );
    // The storage saw exactly those bytes, the sources' offsets, and the
    // job's own fields (read whole, header included, by `latest`).
    let read = storage.read_stats().since(before);
    let stored = StoredCheckpoint::open(&*storage, stopped_at.id).unwrap();
    let job_file = stored.operator("job").unwrap().subtasks()[0].file_len();
    assert_eq!(
        read.data_bytes,
        keyed_read + stopped_at.source.data_bytes() + job_file,
        "bytes read from disk"
    );

    // Phase 3: 1 x 1 from whatever the kill left on disk, to the end.
    let latest = store.latest().unwrap().unwrap();
    assert!(latest.id >= stopped_at.id);
    let done = start(&log, &store, 1, 1).wait().unwrap();
    assert_eq!(done.report.end, JobEnd::Finished);
    assert_eq!(done.report.restored_from, Some(latest.id));
    if let Err(diff) = compare_totals(&totals_of(&done.operators), &reference_totals(&spec())) {
        panic!("seed {seed}: {diff}");
    }
    // And a fresh process could restore the final state from disk alone.
    let fin = DurableCheckpointStore::new(storage, 3)
        .latest()
        .unwrap()
        .unwrap();
    assert_eq!(fin.events, spec().events);
    let mut op = RunningSum::default();
    fin.keyed.restore_into(&mut op, 0, 1).unwrap();
    compare_totals(&totals_of(&[op]), &reference_totals(&spec())).unwrap();
}

/// A durable store whose keyed instances cannot write their files (the disk
/// is full, say): a store that fails each keyed snapshot after writing
/// part of it, and records what the job asks of it. With `busy_first_abort`
/// its first abort fails, deleting nothing, as when another instance's
/// writer adds a file to the folder being deleted.
struct FailingStore {
    inner: DurableCheckpointStore,
    aborted: std::sync::Mutex<Vec<u64>>,
    busy_first_abort: bool,
}

impl JobCheckpointStore for FailingStore {
    fn store(&self, checkpoint: &state_runtime::runner::JobCheckpoint) -> Result<(), StateError> {
        self.inner.store(checkpoint)
    }
    fn latest(&self) -> Result<Option<state_runtime::runner::JobCheckpoint>, StateError> {
        self.inner.latest()
    }
    fn begin(&self, id: u64) -> Result<(), StateError> {
        self.inner.begin(id)
    }
    fn snapshot(
        &self,
        id: u64,
        operator: state_runtime::runner::PipelineOperator,
        subtask: usize,
        state: &dyn state_runtime::checkpoint::WriteSnapshot,
    ) -> Result<state_runtime::runner::SubtaskState, StateError> {
        let written = self.inner.snapshot(id, operator, subtask, state)?;
        if operator == state_runtime::runner::PipelineOperator::Keyed {
            return Err(StateError::InvalidOperators {
                reason: "no space left on device".into(),
            });
        }
        Ok(written)
    }
    fn complete(
        &self,
        id: u64,
        sources: Vec<state_runtime::runner::SubtaskState>,
        keyed: Vec<state_runtime::runner::SubtaskState>,
        assigner: KeyGroupAssigner,
        events: u64,
    ) -> Result<state_runtime::runner::JobCheckpoint, StateError> {
        self.inner.complete(id, sources, keyed, assigner, events)
    }
    fn abort(&self, id: u64) -> Result<(), StateError> {
        let mut aborted = self.aborted.lock().unwrap();
        aborted.push(id);
        if self.busy_first_abort && aborted.len() == 1 {
            return Err(StateError::InvalidOperators {
                reason: "directory not empty".into(),
            });
        }
        self.inner.abort(id)
    }
}

/// A job that fails while taking a checkpoint gives it up: the files its
/// instances had written are deleted, and nothing becomes visible.
#[test]
fn a_job_that_fails_mid_checkpoint_gives_the_checkpoint_up() {
    let (aborted, deleted) = fail_mid_checkpoint(false);
    // The other instance may still be writing its file into the folder
    // when the first one fails: then giving up finds the folder not empty,
    // and the job deletes it again once every instance has ended (the next
    // test makes that happen every time).
    assert!(
        aborted == [1] || aborted == [1, 1],
        "checkpoint 1 given up, at most once more at the end: {aborted:?}"
    );
    assert!(deleted, "its files are deleted");
}

/// If giving the checkpoint up fails while other instances still write
/// (a file added to the folder being deleted), the job deletes it again
/// once every instance has ended.
#[test]
fn a_checkpoint_given_up_while_instances_write_is_deleted_when_they_end() {
    let (aborted, deleted) = fail_mid_checkpoint(true);
    assert_eq!(aborted, [1, 1], "given up, then deleted again at the end");
    assert!(deleted, "its files are deleted");
}

/// Runs a job whose keyed snapshots fail (see [`FailingStore`]): the ids
/// the store was asked to give up, and whether checkpoint 1's folder is
/// gone at the end.
fn fail_mid_checkpoint(busy_first_abort: bool) -> (Vec<u64>, bool) {
    let dir = TempDir::new(if busy_first_abort {
        "failing-busy"
    } else {
        "failing"
    });
    let log = dir.0.join("log");
    spec().write_log(&log).unwrap();
    let storage = Arc::new(LocalStorage::open(dir.0.join("checkpoints")).unwrap());
    let store = Arc::new(FailingStore {
        inner: DurableCheckpointStore::new(storage.clone(), 3),
        aborted: std::sync::Mutex::new(Vec::new()),
        busy_first_abort,
    });
    let job = Job::new(&log, store.clone(), |_: &InstanceInfo| {
        RunningSum::default()
    })
    .parallelism(2, 2)
    .assigner(KeyGroupAssigner::native(MaxParallelism::new(64).unwrap()))
    .checkpoint_every_events(3_000)
    .batch_size(128)
    .start()
    .unwrap();
    let err = job.wait().map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert_eq!(storage.list().unwrap(), Vec::<u64>::new());
    let aborted = store.aborted.lock().unwrap().clone();
    (aborted, !dir.0.join("checkpoints/chk-1").exists())
}

#[test]
fn incremental_checkpoints_survive_kills_and_rescales() {
    use state_runtime::checkpoint::durable::{IncrementalPolicy, referenced_files};
    let dir = TempDir::new("incremental");
    let log = dir.0.join("log");
    spec().write_log(&log).unwrap();
    let storage = Arc::new(LocalStorage::open(dir.0.join("checkpoints")).unwrap());
    let store =
        DurableCheckpointStore::new(storage.clone(), 3).incremental(IncrementalPolicy::default());
    let mut deltas = 0;
    let mut count_deltas = |storage: &LocalStorage| {
        for id in storage.list().unwrap() {
            let stored = StoredCheckpoint::open(storage, id).unwrap();
            stored.verify().unwrap();
            let keyed = stored.operator("keyed").unwrap();
            deltas += keyed
                .subtasks()
                .iter()
                .filter(|s| s.keyed().is_some_and(|k| k.is_delta()))
                .count();
            // Retention kept every file the checkpoint references.
            for file in referenced_files(id, &storage.read_manifest(id).unwrap()).unwrap() {
                storage.file_len(file.checkpoint_id, &file.name).unwrap();
            }
        }
    };
    let job = start(&log, &store, 2, 2);
    run_until(&job, 12_000);
    job.stop().unwrap();
    count_deltas(&storage);
    let job = start(&log, &store, 3, 3);
    run_until(&job, 10_000);
    job.kill().unwrap();
    count_deltas(&storage);
    let done = start(&log, &store, 1, 1).wait().unwrap();
    assert_eq!(done.report.end, JobEnd::Finished);
    count_deltas(&storage);
    assert!(deltas > 0, "some checkpoints were deltas");
    compare_totals(&totals_of(&done.operators), &reference_totals(&spec())).unwrap();
    let fin = DurableCheckpointStore::new(storage, 3)
        .latest()
        .unwrap()
        .unwrap();
    let mut op = RunningSum::default();
    fin.keyed.restore_into(&mut op, 0, 2).unwrap();
    let mut other = RunningSum::default();
    fin.keyed.restore_into(&mut other, 1, 2).unwrap();
    compare_totals(&totals_of(&[op, other]), &reference_totals(&spec())).unwrap();
}
