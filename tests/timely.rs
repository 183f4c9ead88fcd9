//! The demo job on timely in real worker processes on loopback: crashes at
//! each step of the commit protocol, restarts at other process and thread
//! counts, exactly-once keyed state, workers without partitions, and a
//! stale process that may not commit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rescale::timely_cluster::{Cluster, OPERATOR, ProcessOutcome, RunSpec};
use rescale::{LogSpec, RunningSum, compare_totals, reference_totals, totals_of};
use state_runtime::checkpoint::Restore;
use state_runtime::checkpoint::durable::StoredCheckpoint;
use state_runtime::storage::{CheckpointStorage, LocalStorage};
use state_timely::{Fault, FaultAction, FaultPoint};

const EXE: &str = env!("CARGO_BIN_EXE_timely_worker");
const TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    spec: LogSpec,
    log: PathBuf,
    checkpoints: PathBuf,
}

fn setup(spec: LogSpec) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    spec.write_log(&log).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    Setup {
        spec,
        log,
        checkpoints,
        _dir: dir,
    }
}

impl Setup {
    fn run_spec(&self, run_id: &str, threads: usize, stop_after: Option<u64>) -> RunSpec {
        RunSpec {
            log: self.log.clone(),
            checkpoints: self.checkpoints.clone(),
            run_id: run_id.into(),
            threads,
            records_per_epoch: 150,
            // One epoch at a time: a crash at checkpoint `k` finds `k - 1`
            // committed.
            epochs_in_flight: 1,
            stop_after_epochs: stop_after,
            max_parallelism: 64,
        }
    }

    fn storage(&self) -> LocalStorage {
        LocalStorage::open(&self.checkpoints).unwrap()
    }

    fn latest(&self) -> Option<u64> {
        self.storage().latest().unwrap()
    }

    /// The totals in the newest checkpoint, restored by one instance.
    fn check_totals(&self) {
        let storage = self.storage();
        let stored = StoredCheckpoint::latest(&storage).unwrap().unwrap();
        let mut op = RunningSum::default();
        stored
            .operator(OPERATOR)
            .unwrap()
            .restore_into(&mut op, 0, 1)
            .unwrap();
        compare_totals(&totals_of(&[op]), &reference_totals(&self.spec)).unwrap();
    }
}

fn fault(point: FaultPoint, checkpoint_id: u64, worker: usize) -> Fault {
    Fault {
        point,
        checkpoint_id,
        worker,
        action: FaultAction::Abort,
    }
}

fn run(exe_spec: &RunSpec, processes: usize, faults: &[(usize, Fault)]) -> Vec<ProcessOutcome> {
    Cluster::start(Path::new(EXE), &[], processes, exe_spec, faults)
        .unwrap()
        .wait(TIMEOUT)
        .unwrap()
}

fn assert_all_succeeded(outcomes: &[ProcessOutcome]) {
    for o in outcomes {
        assert!(
            o.status.success(),
            "process {} failed: {}",
            o.process,
            o.stderr
        );
    }
}

/// A crashed run: the faulty process aborted and no process succeeded
/// (timely is fail-stop).
fn assert_crashed(outcomes: &[ProcessOutcome], faulty: usize) {
    assert!(
        outcomes[faulty].stderr.contains("fault injection"),
        "{}",
        outcomes[faulty].stderr
    );
    for o in outcomes {
        assert!(!o.status.success(), "process {} succeeded", o.process);
    }
}

#[test]
fn crashes_at_every_step_and_restarts_at_other_sizes_count_every_record_once() {
    let s = setup(LogSpec {
        partitions: 3,
        events: 6_000,
        customers: 300,
        seed: 11,
    });
    // 2 processes x 1 thread; worker 1 dies before writing its files of
    // checkpoint 3.
    let out = run(
        &s.run_spec("a", 1, None),
        2,
        &[(1, fault(FaultPoint::BeforeDataFiles, 3, 1))],
    );
    assert_crashed(&out, 1);
    assert_eq!(s.latest(), Some(2));

    // 3 processes x 1 thread, from checkpoint 2; the committer dies with
    // every data file of checkpoint 5 durable, before the manifest.
    let out = run(
        &s.run_spec("b", 1, None),
        3,
        &[(0, fault(FaultPoint::BeforeManifest, 5, 0))],
    );
    assert_crashed(&out, 0);
    assert_eq!(s.latest(), Some(4));
    assert_eq!(
        s.storage().list_files(5).unwrap().len(),
        6,
        "two files per worker, never committed"
    );

    // 1 process x 2 threads; the committer dies right after committing 6.
    let out = run(
        &s.run_spec("c", 2, None),
        1,
        &[(0, fault(FaultPoint::AfterManifest, 6, 0))],
    );
    assert_crashed(&out, 0);
    assert_eq!(s.latest(), Some(6));

    // 2 processes x 2 threads; worker 3 dies with its files of 8 written,
    // before describing them to the committer.
    let out = run(
        &s.run_spec("d", 2, None),
        2,
        &[(1, fault(FaultPoint::AfterDataFiles, 8, 3))],
    );
    assert_crashed(&out, 1);
    assert_eq!(s.latest(), Some(7));

    // 2 processes x 2 threads, three partitions: one worker reads nothing.
    // To the end of the log.
    let out = run(&s.run_spec("e", 2, None), 2, &[]);
    assert_all_succeeded(&out);
    let reports: Vec<_> = out.iter().flat_map(|o| &o.reports).collect();
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r.number("restored_from"), Some(7));
        assert_eq!(r.number("workers"), Some(4));
        // Each worker read exactly its own key groups' state.
        assert_eq!(
            r.number("keyed_bytes_restored"),
            r.number("owned_state_bytes")
        );
    }
    let events: u64 = reports.iter().filter_map(|r| r.number("events")).sum();
    assert!(events > 0);
    s.check_totals();
}

#[test]
fn a_stale_process_of_an_earlier_run_cannot_commit() {
    let s = setup(LogSpec {
        partitions: 2,
        events: 3_000,
        customers: 100,
        seed: 5,
    });
    let out = run(&s.run_spec("old", 1, Some(2)), 1, &[]);
    assert_all_succeeded(&out);
    assert_eq!(s.latest(), Some(2));

    // Run "old2" stalls with its files of checkpoint 3 written, before the
    // manifest, as a process cut off from the cluster would.
    let release = s.checkpoints.with_file_name("release");
    let stall = Fault {
        point: FaultPoint::BeforeManifest,
        checkpoint_id: 3,
        worker: 0,
        action: FaultAction::WaitFor(release.clone()),
    };
    let stale = Cluster::start(
        Path::new(EXE),
        &[],
        1,
        &s.run_spec("old2", 1, None),
        &[(0, stall)],
    )
    .unwrap();
    // Wait for its data files of checkpoint 3.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while s.storage().list_files(3).map_or(0, |f| f.len()) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale run wrote no files"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A new run takes over with two processes and commits 3, 4 and 5.
    let out = run(&s.run_spec("new", 1, Some(3)), 2, &[]);
    assert_all_succeeded(&out);
    assert_eq!(s.latest(), Some(5));

    // The stale process wakes up: it may not commit 3 over the new run.
    std::fs::write(&release, b"").unwrap();
    let out = stale.wait(TIMEOUT).unwrap();
    assert!(!out[0].status.success());
    assert!(
        out[0].stderr.contains("may not commit checkpoint 3"),
        "{}",
        out[0].stderr
    );
    let storage = s.storage();
    let stored = StoredCheckpoint::open(&storage, 3).unwrap();
    for sub in stored.operator(OPERATOR).unwrap().subtasks() {
        assert!(sub.file().ends_with(".new"), "{}", sub.file());
    }
    // The stale run's files are still there, untouched, and unreferenced.
    let files = storage.list_files(3).unwrap();
    assert_eq!(files.iter().filter(|f| f.ends_with(".old2")).count(), 2);
    assert_eq!(files.iter().filter(|f| f.ends_with(".new")).count(), 4);

    // The job finishes from the new run's checkpoints.
    let out = run(&s.run_spec("final", 3, None), 1, &[]);
    assert_all_succeeded(&out);
    s.check_totals();
}
