//! What the runner's end-to-end tests share: a temporary input log, the
//! job's shape, and waiting on a running job.

#![allow(dead_code)] // Each test binary uses its own part.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rescale::{LogSpec, RunningSum};
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
use state_runtime::runner::{
    InstanceInfo, Job, JobOutcome, KeyedProcessor, MemoryCheckpointStore, RunningJob,
};

/// An input log in a temporary folder, removed on drop.
pub struct TempLog(pub PathBuf);

impl TempLog {
    pub fn new(name: &str, spec: &LogSpec) -> Self {
        let dir = std::env::temp_dir().join(format!("rs-runner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        spec.write_log(&dir).unwrap();
        TempLog(dir)
    }
}

impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tests' log: 5 partitions, 2,000 customers.
pub fn spec(events: u64) -> LogSpec {
    LogSpec {
        partitions: 5,
        events,
        customers: 2_000,
        seed: 11,
    }
}

pub fn assigner() -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(64).unwrap())
}

/// The running sum at parallelism `s -> n`, checkpointing every 4,000 events.
pub fn start(
    dir: &Path,
    store: &MemoryCheckpointStore,
    s: usize,
    n: usize,
) -> RunningJob<RunningSum> {
    Job::new(dir, store.clone(), |_: &InstanceInfo| RunningSum::default())
        .parallelism(s, n)
        .assigner(assigner())
        .checkpoint_every_events(4_000)
        .batch_size(128)
        .start()
        .unwrap()
}

/// Waits until the job has read `events` records in this run (or finished).
pub fn run_until<P: KeyedProcessor>(job: &RunningJob<P>, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while job.events_read() < events && !job.is_finished() {
        assert!(Instant::now() < deadline, "job made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every keyed instance holds only keys of the key groups it owns.
pub fn assert_owned_keys(out: &JobOutcome<RunningSum>) {
    let a = out.report.assigner;
    for (op, stats) in out.operators.iter().zip(&out.report.keyed) {
        for (k, _) in op.sums.iter() {
            assert!(stats.key_groups.contains(a.key_group(k).unwrap()));
        }
    }
}
