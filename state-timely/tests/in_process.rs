//! Timely jobs with rescalable state, with all workers in this process.

use std::sync::Arc;

use state_runtime::runner::log::LogWriter;
use state_runtime::storage::{CheckpointStorage, LocalStorage};
use state_timely::{TimelyJob, WorkerReport};

mod common;

use common::{Purchase, Totals, newest_totals};

fn run(job: &TimelyJob, threads: usize) -> Vec<WorkerReport> {
    job.execute(
        timely::Config::process(threads),
        |_| Totals::default(),
        |_| Box::new(|_| {}),
    )
    .unwrap()
}

fn write_log(dir: &std::path::Path, partitions: u32, events: u32) -> i64 {
    let mut w = LogWriter::<Purchase>::create(dir, partitions).unwrap();
    let mut total = 0;
    for i in 0..events {
        let cents = i64::from(i % 7) + 1;
        total += cents;
        w.append(
            i % partitions,
            &Purchase {
                customer: i % 50,
                cents,
            },
        )
        .unwrap();
    }
    w.finish().unwrap();
    total
}

/// Every customer's sum in the newest checkpoint, restored at parallelism 1.
fn checkpointed_sums(storage: &dyn CheckpointStorage) -> Vec<(u32, i64)> {
    let all = newest_totals(storage);
    let mut sums: Vec<(u32, i64)> = all.sums.iter().map(|(k, v)| (*k, *v)).collect();
    sums.sort_unstable();
    sums
}

fn expected_sums(partitions: u32, events: u32) -> Vec<(u32, i64)> {
    let mut sums = std::collections::BTreeMap::new();
    for i in 0..events {
        let _ = partitions;
        *sums.entry(i % 50).or_insert(0) += i64::from(i % 7) + 1;
    }
    sums.into_iter().collect()
}

#[test]
fn stop_and_restart_at_other_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 3, 3000);
    let storage: Arc<dyn CheckpointStorage> =
        Arc::new(LocalStorage::open(dir.path().join("checkpoints")).unwrap());
    let job = TimelyJob::new(&log, storage.clone(), "run-1")
        .operator_name("totals")
        .records_per_epoch(500)
        .stop_after_epochs(2);
    let reports = run(&job, 2);
    // Two epochs, a checkpoint at each boundary.
    assert_eq!(storage.list().unwrap(), [1, 2]);
    assert_eq!(reports.iter().map(|r| r.events).sum::<u64>(), 2000);
    assert_eq!(reports[0].committed, Some(2));
    assert!(reports.iter().all(|r| r.epochs == (0, 2)));

    let job = TimelyJob::new(&log, storage.clone(), "run-2").operator_name("totals");
    let reports = run(&job, 3);
    assert!(
        reports.iter().all(|r| r.restored_from == Some(2)),
        "{reports:?}"
    );
    assert_eq!(reports.iter().map(|r| r.events).sum::<u64>(), 1000);
    for r in &reports {
        // Each worker read only its own key groups.
        assert_eq!(r.read_amplification(), Some(1.0), "{r:?}");
        assert_eq!(r.epochs.0, 2);
    }
    assert_eq!(checkpointed_sums(&*storage), expected_sums(3, 3000));
    // Worker 0 keeps the newest three checkpoints; a run with nothing
    // left to read still ends with a checkpoint.
    let latest = storage.latest().unwrap().unwrap();
    assert_eq!(storage.list().unwrap().len(), 3, "{:?}", storage.list());
    let job = TimelyJob::new(&log, storage.clone(), "run-3").operator_name("totals");
    let reports = run(&job, 1);
    assert_eq!(reports[0].events, 0);
    assert_eq!(storage.latest().unwrap(), Some(latest + 1));
    assert_eq!(storage.list().unwrap().len(), 3, "{:?}", storage.list());
    assert_eq!(checkpointed_sums(&*storage), expected_sums(3, 3000));
}

#[test]
fn workers_without_partitions_let_epochs_advance() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 2, 4000);
    let storage: Arc<dyn CheckpointStorage> =
        Arc::new(LocalStorage::open(dir.path().join("checkpoints")).unwrap());
    // Four workers, two partitions: workers 2 and 3 read nothing.
    let job = TimelyJob::new(&log, storage.clone(), "run-a")
        .operator_name("totals")
        .records_per_epoch(300)
        .epochs_in_flight(3);
    let reports = run(&job, 4);
    assert_eq!(reports.iter().map(|r| r.events).sum::<u64>(), 4000);
    // 2000 records per partition, 300 per epoch: 7 epochs, then one in
    // which every source reports it is exhausted.
    assert!(reports.iter().all(|r| r.epochs == (0, 7)), "{reports:?}");
    assert_eq!(storage.latest().unwrap(), Some(7));
    assert_eq!(checkpointed_sums(&*storage), expected_sums(2, 4000));
}

#[test]
fn one_epoch_in_flight_and_many_in_flight_agree() {
    for in_flight in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        write_log(&log, 5, 2500);
        let storage: Arc<dyn CheckpointStorage> =
            Arc::new(LocalStorage::open(dir.path().join("checkpoints")).unwrap());
        for (run_id, threads, epochs) in [("a", 3, Some(2)), ("b", 2, Some(3)), ("c", 4, None)] {
            let mut job = TimelyJob::new(&log, storage.clone(), run_id)
                .operator_name("totals")
                .records_per_epoch(97)
                .epochs_in_flight(in_flight);
            if let Some(n) = epochs {
                job = job.stop_after_epochs(n);
            }
            run(&job, threads);
        }
        assert_eq!(
            checkpointed_sums(&*storage),
            expected_sums(5, 2500),
            "{in_flight}"
        );
    }
}

#[test]
fn invalid_settings_are_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn CheckpointStorage> = Arc::new(LocalStorage::open(dir.path()).unwrap());
    for job in [
        TimelyJob::new(dir.path(), storage.clone(), "bad.id"),
        TimelyJob::new(dir.path(), storage.clone(), "ok").operator_name("source"),
        TimelyJob::new(dir.path(), storage.clone(), "ok").records_per_epoch(0),
    ] {
        let err = job
            .execute(
                timely::Config::thread(),
                |_| Totals::default(),
                |_| Box::new(|_| {}),
            )
            .unwrap_err();
        assert!(
            matches!(err, state_timely::TimelyError::InvalidConfig { .. }),
            "{err}"
        );
    }
}

#[test]
fn run_worker_inside_the_callers_timely_execute() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 4, 1200);
    let storage: Arc<dyn CheckpointStorage> =
        Arc::new(LocalStorage::open(dir.path().join("checkpoints")).unwrap());
    let job = TimelyJob::new(&log, storage.clone(), "own-execute")
        .operator_name("totals")
        .records_per_epoch(100);
    let outputs = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = Arc::clone(&outputs);
    let guards = timely::execute(timely::Config::process(2), move |worker| {
        let seen = Arc::clone(&seen);
        job.run_worker(
            worker,
            |_| Totals::default(),
            move |()| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        )
    })
    .unwrap();
    let reports: Vec<WorkerReport> = guards
        .join()
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(reports.iter().map(|r| r.events).sum::<u64>(), 1200);
    // Every processed record gave one output, on its worker's thread.
    assert_eq!(outputs.load(std::sync::atomic::Ordering::Relaxed), 1200);
    assert_eq!(checkpointed_sums(&*storage), expected_sums(4, 1200));
}
