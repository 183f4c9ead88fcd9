//! The local job runner end to end: rescale sequences, kills at random
//! moments, sources resuming from their offsets, failing instances. Every
//! run is checked against a single-threaded computation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{TempLog, assert_owned_keys, assigner, run_until, spec, start};
use rescale::{LogSpec, Purchase, RunningSum, Total, compare_totals, reference_totals, totals_of};
use serde::{Deserialize, Serialize};
use state_runtime::prelude::*;
use state_runtime::runner::log::{LogReader, LogWriter};
use state_runtime::runner::source::LogSource;
use state_runtime::runner::{
    Instance, InstanceInfo, Job, JobCheckpoint, JobCheckpointStore, JobEnd, JobError, JobOutcome,
    KeyedProcessor, MemoryCheckpointStore, RunningJob,
};

/// The source offsets a checkpoint holds, over all partitions.
fn checkpoint_offsets(cp: &JobCheckpoint, dir: &Path) -> Vec<(u32, u64)> {
    let mut all = LogSource::<Purchase>::new(dir, Vec::new());
    cp.source.restore_into(&mut all, 0, 1).unwrap();
    let mut offsets = all.offsets().to_vec();
    offsets.sort();
    offsets
}

/// Single-threaded: the totals over exactly the records before the offsets.
fn reference_up_to(dir: &Path, offsets: &[(u32, u64)]) -> HashMap<u32, Total> {
    let mut totals: HashMap<u32, Total> = HashMap::new();
    for &(partition, end) in offsets {
        let mut r = LogReader::<Purchase>::open(dir, partition, 0).unwrap();
        while r.offset() < end {
            let (_, p) = r.next_record().unwrap().unwrap();
            let t = totals.entry(p.customer).or_default();
            t.cents += p.cents;
            t.purchases += 1;
        }
    }
    totals
}

/// The keyed state a checkpoint holds, restored into one instance.
fn checkpoint_totals(cp: &JobCheckpoint) -> HashMap<u32, Total> {
    let mut op = RunningSum::default();
    cp.keyed.restore_into(&mut op, 0, 1).unwrap();
    totals_of(std::slice::from_ref(&op))
}

/// The checkpoint's keyed state is exactly the computation over the input
/// prefix its source offsets describe.
fn assert_checkpoint_consistent(cp: &JobCheckpoint, dir: &Path, context: &str) {
    let offsets = checkpoint_offsets(cp, dir);
    assert_eq!(
        offsets.len(),
        5,
        "{context}: every partition once: {offsets:?}"
    );
    let expected = reference_up_to(dir, &offsets);
    let consumed: u64 = expected.values().map(|t| t.purchases).sum();
    assert_eq!(
        consumed, cp.events,
        "{context}: events counted in checkpoint {}",
        cp.id
    );
    if let Err(diff) = compare_totals(&checkpoint_totals(cp), &expected) {
        panic!(
            "{context}: checkpoint {} is not the prefix computation: {diff}",
            cp.id
        );
    }
}

#[test]
fn rescale_sequence_gives_the_single_threaded_totals() {
    let spec = spec(60_000);
    let log = TempLog::new("sequence", &spec);
    let store = MemoryCheckpointStore::with_retention(usize::MAX);
    let phases = [(2, 2), (3, 3), (1, 1), (2, 4)];
    let mut last_id = 0;
    for (i, (s, n)) in phases.into_iter().enumerate() {
        let job = start(&log.0, &store, s, n);
        let out = if i + 1 < phases.len() {
            run_until(&job, 12_000);
            job.stop().unwrap()
        } else {
            job.wait().unwrap()
        };
        let r = &out.report;
        assert_eq!((r.source_parallelism, r.keyed_parallelism), (s, n));
        assert_eq!(out.operators.len(), n);
        assert_eq!(r.restored_from, (i > 0).then_some(last_id));
        assert!(r.checkpoints.windows(2).all(|w| w[0].id < w[1].id));
        let final_cp = store.latest().unwrap().unwrap();
        assert_eq!(Some(final_cp.id), r.last_checkpoint());
        assert!(final_cp.id > last_id);
        last_id = final_cp.id;
        // A stop leaves the operators exactly in the final checkpoint's state.
        assert_eq!(
            totals_of(&out.operators),
            checkpoint_totals(&final_cp),
            "phase {i}"
        );
        assert_checkpoint_consistent(&final_cp, &log.0, &format!("phase {i}"));
        assert_owned_keys(&out);
        if i + 1 == phases.len() {
            assert_eq!(r.end, JobEnd::Finished);
            assert_eq!(final_cp.events, spec.events);
            compare_totals(&totals_of(&out.operators), &reference_totals(&spec)).unwrap();
        } else {
            assert_eq!(r.end, JobEnd::Stopped);
            assert!(final_cp.events < spec.events, "phase {i} should stop early");
        }
    }
    // Every checkpoint, periodic ones included, is a consistent cut.
    // Besides each phase's final one, the last phase (over 10,000 events at
    // one checkpoint per 4,000) takes periodic ones; how many the earlier
    // phases take depends on when their stop lands.
    let all = store.checkpoints();
    assert!(all.len() >= phases.len() + 2, "{} checkpoints", all.len());
    assert!(
        all.windows(2)
            .all(|w| w[0].id < w[1].id && w[0].events <= w[1].events)
    );
    for cp in &all {
        assert_checkpoint_consistent(cp, &log.0, &format!("checkpoint {}", cp.id));
    }
}

/// Both snapshot modes store consistent cuts and the same final state;
/// only asynchronous snapshots write on another thread.
#[test]
fn synchronous_and_asynchronous_snapshots_store_the_same_state() {
    let spec = spec(40_000);
    let log = TempLog::new("snapshot-modes", &spec);
    let mut finals = Vec::new();
    for asynchronous in [false, true] {
        let store = MemoryCheckpointStore::with_retention(usize::MAX);
        let done = Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
            RunningSum::default()
        })
        .parallelism(2, 3)
        .assigner(assigner())
        .checkpoint_every_events(5_000)
        .batch_size(128)
        .asynchronous_snapshots(asynchronous)
        .start()
        .unwrap()
        .wait()
        .unwrap();
        let context = format!("asynchronous {asynchronous}");
        let cps = &done.report.checkpoints;
        assert!(cps.len() >= 3, "{context}: {} checkpoints", cps.len());
        // Synchronous snapshots are written by the instance (no separate
        // write); asynchronous ones by the writer thread.
        assert_eq!(
            cps.iter().all(|c| c.max_async > Duration::ZERO),
            asynchronous,
            "{context}: {cps:?}"
        );
        for cp in store.checkpoints() {
            assert_checkpoint_consistent(&cp, &log.0, &format!("{context}, checkpoint {}", cp.id));
        }
        compare_totals(&totals_of(&done.operators), &reference_totals(&spec)).unwrap();
        let last = store.latest().unwrap().unwrap();
        finals.push((checkpoint_totals(&last), last.events, last.state_bytes()));
    }
    assert_eq!(finals[0], finals[1]);
}

#[test]
fn kill_at_a_random_moment_then_restart_at_another_parallelism() {
    let spec = spec(50_000);
    let log = TempLog::new("kill", &spec);
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..3 {
        let store = MemoryCheckpointStore::new();
        let (s1, n1) = (1 + next() as usize % 3, 1 + next() as usize % 4);
        let (s2, n2) = (1 + next() as usize % 3, 1 + next() as usize % 4);
        let kill_after = next() % 40_000;
        let context = format!(
            "seed {seed} round {round}: {s1}x{n1} killed after {kill_after}, then {s2}x{n2}"
        );
        let job = start(&log.0, &store, s1, n1);
        run_until(&job, kill_after);
        let killed = job.kill().unwrap();
        if killed.report.end == JobEnd::Killed {
            assert!(killed.operators.is_empty(), "{context}");
        }
        // Whatever was stored is a consistent prefix.
        let latest = store.latest().unwrap();
        if let Some(cp) = &latest {
            assert_checkpoint_consistent(cp, &log.0, &context);
        }
        let done = start(&log.0, &store, s2, n2).wait().unwrap();
        assert_eq!(done.report.restored_from, latest.map(|c| c.id), "{context}");
        assert_eq!(done.report.end, JobEnd::Finished, "{context}");
        if let Err(diff) = compare_totals(&totals_of(&done.operators), &reference_totals(&spec)) {
            panic!("{context}: {diff}");
        }
    }
}

/// An event with a sequence number, to see every record exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, Keyed)]
struct Numbered {
    #[key]
    key: u32,
    seq: u64,
}

#[derive(Checkpointed, Default)]
struct Collect {
    #[state(keyed)]
    seqs: KeyedList<u32, u64>,
}

impl KeyedProcessor for Collect {
    type Event = Numbered;
    type Output = ();

    fn process(&mut self, e: Numbered, _: &mut impl FnMut(())) -> Result<(), StateError> {
        self.seqs.push(e.key, e.seq)
    }
}

#[test]
fn sources_resume_from_their_offsets_no_record_twice_none_skipped() {
    const EVENTS: u64 = 30_000;
    let dir = std::env::temp_dir().join(format!("rs-runner-numbered-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = LogWriter::<Numbered>::create(&dir, 7).unwrap();
    for seq in 0..EVENTS {
        let key = (seq.wrapping_mul(2_654_435_761) % 997) as u32;
        w.append((seq % 7) as u32, &Numbered { key, seq }).unwrap();
    }
    w.finish().unwrap();
    let log = TempLog(dir);

    let store = MemoryCheckpointStore::new();
    // More sources than partitions in one phase: some read nothing.
    let phases = [(3, 2), (9, 1), (2, 3), (1, 2)];
    let mut outcome = None;
    for (i, (s, n)) in phases.into_iter().enumerate() {
        let job = Job::new(&log.0, store.clone(), |_: &InstanceInfo| Collect::default())
            .parallelism(s, n)
            .checkpoint_every_events(2_500)
            .batch_size(50)
            .start()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while job.events_read() < 6_000 && !job.is_finished() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = match i {
            1 => job.kill().unwrap(),
            3 => job.wait().unwrap(),
            _ => job.stop().unwrap(),
        };
        // Sources: every partition is read by exactly one instance.
        let mut partitions: Vec<u32> = out
            .report
            .sources
            .iter()
            .flat_map(|s| s.offsets.iter().map(|o| o.partition))
            .collect();
        partitions.sort();
        assert_eq!(partitions, (0..7).collect::<Vec<_>>(), "phase {i}");
        outcome = Some(out);
    }
    let out = outcome.unwrap();
    let mut seen: Vec<u64> = out
        .operators
        .iter()
        .flat_map(|op| op.seqs.iter().flat_map(|(_, v)| v.iter().copied()))
        .collect();
    seen.sort_unstable();
    let twice = seen.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(twice, 0, "records read twice into state");
    assert_eq!(seen, (0..EVENTS).collect::<Vec<_>>(), "records skipped");
    // Within a partition, a key's records arrive in log order.
    for op in &out.operators {
        for (_, seqs) in op.seqs.iter() {
            for p in 0..7 {
                let mine: Vec<_> = seqs.iter().filter(|s| *s % 7 == p).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}

/// Fails on a chosen customer: by panicking, or with an error.
#[derive(Checkpointed, Default)]
struct Fragile {
    #[state(keyed)]
    sums: KeyedValue<u32, i64>,
    #[state(skip)]
    poison: Option<(u32, bool)>,
}

impl KeyedProcessor for Fragile {
    type Event = Purchase;
    type Output = i64;

    fn process(&mut self, e: Purchase, out: &mut impl FnMut(i64)) -> Result<(), StateError> {
        if let Some((customer, panics)) = self.poison
            && e.customer == customer
        {
            if panics {
                panic!("poisoned purchase of customer {customer}");
            }
            return Err(StateError::Decode {
                state: "purchase".into(),
                message: format!("bad purchase of customer {customer}"),
            });
        }
        let s = self.sums.get_or_insert_with(e.key(), || 0)?;
        *s += e.cents;
        out(*s);
        Ok(())
    }
}

/// Runs `job` to its end on another thread; fails the test if it hangs.
fn wait_bounded<P: KeyedProcessor>(job: RunningJob<P>) -> Result<JobOutcome<P>, JobError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job.wait());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the job hung after a failure")
}

#[test]
fn a_failing_instance_stops_the_job_with_an_error_naming_it() {
    let spec = spec(30_000);
    let log = TempLog::new("failing", &spec);
    let customer = 77u32;
    let owner = assigner()
        .subtask_for_key_group(3, assigner().key_group(&customer).unwrap())
        .unwrap();
    for panics in [true, false] {
        let store = MemoryCheckpointStore::new();
        let job = Job::new(&log.0, store.clone(), move |i: &InstanceInfo| Fragile {
            poison: (i.subtask == owner).then_some((customer, panics)),
            ..Fragile::default()
        })
        .parallelism(2, 3)
        .assigner(assigner())
        .checkpoint_every_events(1_000)
        .sink(|_| {})
        .start()
        .unwrap();
        let err = wait_bounded(job).unwrap_err();
        assert_eq!(err.instance(), Some(Instance::Keyed(owner)), "{err}");
        let expected = if panics {
            format!(
                "keyed operator subtask {owner} panicked: poisoned purchase of customer {customer}"
            )
        } else {
            format!(
                "keyed operator subtask {owner} failed: could not decode an item of state `purchase`: bad purchase of customer {customer}"
            )
        };
        assert_eq!(err.to_string(), expected);
    }

    // A panicking sink, and a source reading a corrupt log.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let job = Job::new(&log.0, MemoryCheckpointStore::new(), |_: &InstanceInfo| {
        RunningSum::default()
    })
    .parallelism(2, 2)
    .sink(move |_| {
        if counter.fetch_add(1, Ordering::Relaxed) == 5_000 {
            panic!("sink is full");
        }
    })
    .start()
    .unwrap();
    let err = wait_bounded(job).unwrap_err();
    assert_eq!(err.to_string(), "sink panicked: sink is full");

    let path = state_runtime::runner::log::partition_path(&log.0, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let job = Job::new(&log.0, MemoryCheckpointStore::new(), |_: &InstanceInfo| {
        RunningSum::default()
    })
    .parallelism(4, 2)
    .start()
    .unwrap();
    let err = wait_bounded(job).unwrap_err();
    assert_eq!(err.instance(), Some(Instance::Source(3)), "{err}");
    assert!(err.to_string().contains("partition-00003.log"), "{err}");
}

#[test]
fn invalid_configurations_are_refused_before_starting() {
    let spec = spec(100);
    let log = TempLog::new("config", &spec);
    let store = MemoryCheckpointStore::new();
    let job = |s, n| {
        Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
            RunningSum::default()
        })
        .parallelism(s, n)
        .assigner(assigner())
        .start()
    };
    assert!(matches!(job(0, 1), Err(JobError::Config(_))));
    assert!(matches!(job(1, 0), Err(JobError::Config(_))));
    let err = job(1, 65).unwrap_err();
    assert!(
        err.to_string().contains("exceeds max parallelism 64"),
        "{err}"
    );
    let missing = Job::new(log.0.join("nope"), store.clone(), |_: &InstanceInfo| {
        RunningSum::default()
    })
    .start()
    .unwrap_err();
    assert!(matches!(missing, JobError::Start(_)), "{missing}");
}

#[test]
fn timed_and_requested_checkpoints_and_a_sink_that_sees_every_output() {
    let spec = spec(20_000);
    let log = TempLog::new("timed", &spec);
    let store = MemoryCheckpointStore::with_retention(usize::MAX);
    let outputs = Arc::new(AtomicU64::new(0));
    let sink_count = Arc::clone(&outputs);
    let job = Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
        RunningSum::default()
    })
    .parallelism(2, 2)
    .checkpoint_interval(Duration::from_millis(5))
    .stop_at_end_of_input(false)
    .sink(move |_| {
        sink_count.fetch_add(1, Ordering::Relaxed);
    })
    .start()
    .unwrap();
    // The input is read to its end, then the job idles: timed checkpoints
    // and requested ones still complete.
    let deadline = Instant::now() + Duration::from_secs(20);
    while job.events_read() < spec.events || job.last_checkpoint().unwrap_or(0) < 3 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = job.last_checkpoint().unwrap();
    job.trigger_checkpoint();
    while job.last_checkpoint() == Some(before) {
        assert!(
            Instant::now() < deadline,
            "requested checkpoint never completed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!job.is_finished());
    let out = job.stop().unwrap();
    assert_eq!(out.report.end, JobEnd::Stopped);
    assert_eq!(out.report.events_processed, spec.events);
    assert_eq!(outputs.load(Ordering::Relaxed), spec.events);
    let all = store.checkpoints();
    assert_eq!(all.last().unwrap().events, spec.events);
    for cp in &all {
        assert_checkpoint_consistent(cp, &log.0, &format!("checkpoint {}", cp.id));
    }
    compare_totals(&totals_of(&out.operators), &reference_totals(&spec)).unwrap();
}

#[test]
fn dropping_a_running_job_kills_it() {
    let spec = spec(20_000);
    let log = TempLog::new("drop", &spec);
    let store = MemoryCheckpointStore::new();
    let done = Arc::new(AtomicU64::new(0));
    let sink_done = Arc::clone(&done);
    struct Flag(Arc<AtomicU64>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(1, Ordering::SeqCst);
        }
    }
    let flag = Flag(sink_done);
    let job = Job::new(&log.0, store, |_: &InstanceInfo| RunningSum::default())
        .parallelism(1, 2)
        .stop_at_end_of_input(false)
        .sink(move |_| {
            let _ = &flag;
        })
        .start()
        .unwrap();
    run_until(&job, 1_000);
    drop(job);
    // The sink thread (the last to end) drops its closure once every
    // keyed instance is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "threads outlived the dropped job"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What `#[derive(Checkpointed)]` gives for the source's state.
#[derive(Checkpointed, Default)]
struct DerivedSource {
    #[state(split, name = "partition-offsets")]
    offsets: Vec<(u32, u64)>,
}

#[test]
fn the_source_state_is_the_derived_split_state() {
    let spec = spec(5_000);
    let log = TempLog::new("derived", &spec);
    let store = MemoryCheckpointStore::new();
    let job = start(&log.0, &store, 3, 1);
    run_until(&job, 2_000);
    job.stop().unwrap();
    let cp = store.latest().unwrap().unwrap();
    assert_eq!(cp.source.parallelism(), 3);
    // The runner's source checkpoint restores into the derived struct, and
    // back: the same items, split the same way.
    for p in 1..=4 {
        let derived: Vec<DerivedSource> = (0..p)
            .map(|i| {
                let mut d = DerivedSource::default();
                cp.source.restore_into(&mut d, i, p).unwrap();
                d
            })
            .collect();
        for (i, d) in derived.iter().enumerate() {
            let mut s = LogSource::<Purchase>::new(&log.0, Vec::new());
            cp.source.restore_into(&mut s, i, p).unwrap();
            assert_eq!(s.offsets(), &d.offsets[..]);
            assert_eq!(s.snapshot().unwrap(), d.snapshot().unwrap());
        }
        let mut all: Vec<u32> = derived
            .iter()
            .flat_map(|d| d.offsets.iter().map(|(p, _)| *p))
            .collect();
        all.sort();
        assert_eq!(all, (0..spec.partitions).collect::<Vec<_>>());
    }
}

/// A restored instance encodes its state once more only when asked to (it
/// costs about a snapshot before any event is processed).
#[test]
fn restored_state_is_measured_only_on_request() {
    let spec = spec(5_000);
    let log = TempLog::new("measure", &spec);
    let store = MemoryCheckpointStore::new();
    let job = start(&log.0, &store, 1, 2);
    run_until(&job, 2_000);
    job.stop().unwrap();
    let run = |measure: bool| {
        Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
            RunningSum::default()
        })
        .parallelism(1, 3)
        .measure_restored_state(measure)
        .stop_at_end_of_input(true)
        .start()
        .unwrap()
        .wait()
        .unwrap()
    };
    let plain = run(false);
    for k in &plain.report.keyed {
        assert!(k.restore.is_some(), "instance {} was restored", k.subtask);
        assert_eq!(k.state_bytes, None);
        assert_eq!(k.read_amplification(), None);
    }
    let measured = run(true);
    for k in &measured.report.keyed {
        assert!(k.state_bytes.unwrap() > 0);
        let amp = k.read_amplification().unwrap();
        assert!(
            (amp - 1.0).abs() < 1e-9,
            "unchanged max parallelism reads exactly its state: {amp}"
        );
    }
}

/// An event with a payload of any size: a source reading large ones is slow.
#[derive(Debug, Clone, Serialize, Deserialize, Keyed)]
struct Padded {
    #[key]
    key: u32,
    pad: Vec<u8>,
}

/// Counts events per key.
#[derive(Checkpointed, Default)]
struct CountPadded {
    #[state(keyed)]
    counts: KeyedValue<u32, u64>,
}

impl KeyedProcessor for CountPadded {
    type Event = Padded;
    type Output = ();

    fn process(&mut self, e: Padded, _: &mut impl FnMut(())) -> Result<(), StateError> {
        *self.counts.get_or_insert_with(e.key, || 0)? += 1;
        Ok(())
    }
}

/// A log of two partitions: 150 000 small records in partition 0, 200
/// records of 32 KB in partition 1; and the count of events per key.
fn padded_log(name: &str) -> (TempLog, HashMap<u32, u64>) {
    let dir = std::env::temp_dir().join(format!("rs-runner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = LogWriter::<Padded>::create(&dir, 2).unwrap();
    let mut want: HashMap<u32, u64> = HashMap::new();
    for seq in 0..150_000u32 {
        let key = seq % 500;
        let pad = Vec::new();
        w.append(0, &Padded { key, pad }).unwrap();
        *want.entry(key).or_default() += 1;
    }
    for seq in 0..200u32 {
        let key = seq % 500;
        let pad = vec![seq as u8; 32 << 10];
        w.append(1, &Padded { key, pad }).unwrap();
        *want.entry(key).or_default() += 1;
    }
    w.finish().unwrap();
    (TempLog(dir), want)
}

/// A kill while a source waits on the alignment bound ends the job: the
/// slow source's barrier, which would release the held batches, never
/// comes, so the waiting source must notice the kill itself.
#[test]
fn a_kill_reaches_a_source_that_waits_on_the_alignment_bound() {
    let (log, _) = padded_log("align-kill");
    let job = Job::new(&log.0, MemoryCheckpointStore::new(), |_: &InstanceInfo| {
        CountPadded::default()
    })
    .parallelism(2, 2)
    .assigner(assigner())
    .batch_size(20)
    .alignment_buffer(1)
    .stop_at_end_of_input(false)
    .start()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while job.sources_waiting_on_alignment() == 0 {
        assert!(Instant::now() < deadline, "no source ever waited");
        assert!(!job.is_finished(), "the job ended");
        job.trigger_checkpoint();
        std::thread::sleep(Duration::from_micros(200));
    }
    eprintln!("a source waited after {} records read", job.events_read());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job.kill().map(|o| o.report.end));
    });
    let end = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the kill did not end the job: a source kept waiting");
    assert_eq!(end.unwrap(), JobEnd::Killed);
}

/// Source 0 reads many small records, source 1 a few large ones, so source
/// 1 is in the middle of a slow read when a checkpoint starts and its
/// barrier comes late. Meanwhile the keyed instances hold back what source
/// 0 sends after its own barrier: without a bound, hundreds of messages;
/// with `alignment_buffer(2)`, source 0 waits once an instance holds two
/// (plus what its channel had already queued, at most 16). Every event is
/// still counted exactly once.
#[test]
fn a_source_ahead_of_the_alignment_waits_instead_of_filling_memory() {
    const CHANNEL: usize = 16; // the runner's per-instance channel capacity
    let (log, want) = padded_log("align");

    let run = |buffer: usize| {
        Job::new(&log.0, MemoryCheckpointStore::new(), |_: &InstanceInfo| {
            CountPadded::default()
        })
        .parallelism(2, 2)
        .assigner(assigner())
        .checkpoint_every_events(2_000)
        .batch_size(20)
        .alignment_buffer(buffer)
        .start()
        .unwrap()
        .wait()
        .unwrap()
    };
    let count = |out: &JobOutcome<CountPadded>| {
        let mut got: HashMap<u32, u64> = HashMap::new();
        for op in &out.operators {
            for (k, v) in op.counts.iter() {
                assert!(got.insert(*k, *v).is_none(), "key {k} on two instances");
            }
        }
        got
    };
    let most_held =
        |out: &JobOutcome<CountPadded>| out.report.keyed.iter().map(|k| k.max_held).max().unwrap();

    let unbounded = run(usize::MAX);
    assert_eq!(count(&unbounded), want);
    assert!(unbounded.report.checkpoints.len() >= 2);
    let held = most_held(&unbounded);
    eprintln!("unbounded: an instance held {held} messages of one source");
    assert!(
        held > 2 + CHANNEL,
        "the scenario makes an instance hold many messages unless bounded: {held}"
    );

    let bounded = run(2);
    assert_eq!(count(&bounded), want);
    assert!(bounded.report.checkpoints.len() >= 2);
    let held = most_held(&bounded);
    assert!(
        held <= 2 + CHANNEL,
        "an instance held {held} messages of one source"
    );
}

/// Counts its events. Events `slow.0 ..= slow.1` (of the first batch of
/// 1,024) take 2 ms each, as the first writes after a capture may; at event
/// `wait_at` it waits up to 10 s for the sink to have received `wait_for`
/// outputs.
#[derive(Checkpointed, Default)]
struct SlowBatch {
    #[state(keyed)]
    sums: KeyedValue<u32, i64>,
    #[state(skip)]
    processed: u64,
    #[state(skip)]
    slow: (u64, u64),
    #[state(skip)]
    wait_at: u64,
    #[state(skip)]
    wait_for: u64,
    #[state(skip)]
    sink_received: Arc<AtomicU64>,
    #[state(skip)]
    waited: Arc<Mutex<Option<Duration>>>,
}

impl KeyedProcessor for SlowBatch {
    type Event = Purchase;
    type Output = i64;

    fn process(&mut self, e: Purchase, out: &mut impl FnMut(i64)) -> Result<(), StateError> {
        self.processed += 1;
        if (self.slow.0..=self.slow.1).contains(&self.processed) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.processed == self.wait_at {
            let t = Instant::now();
            while self.sink_received.load(Ordering::SeqCst) < self.wait_for
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            *self.waited.lock().unwrap() = Some(t.elapsed());
        }
        let s = self.sums.get_or_insert_with(e.key(), || 0)?;
        *s += e.cents;
        out(*s);
        Ok(())
    }
}

/// Runs `SlowBatch` (as configured by `slow`, `wait_at` and `wait_for`) over
/// one partition of `events`, checking that the sink received every output
/// and the sums equal the single-threaded ones: how long it waited for the
/// sink.
fn run_slow_batch(
    name: &str,
    events: u64,
    slow: (u64, u64),
    wait_at: u64,
    wait_for: u64,
) -> Duration {
    // One partition: the source's first batch is 1,024 records.
    let spec = LogSpec {
        partitions: 1,
        events,
        customers: 100,
        seed: 5,
    };
    let log = TempLog::new(name, &spec);
    let received = Arc::new(AtomicU64::new(0));
    let waited = Arc::new(Mutex::new(None));
    let (r, w) = (Arc::clone(&received), Arc::clone(&waited));
    let sink_received = Arc::clone(&received);
    let job = Job::new(
        &log.0,
        MemoryCheckpointStore::new(),
        move |_: &InstanceInfo| SlowBatch {
            slow,
            wait_at,
            wait_for,
            sink_received: Arc::clone(&r),
            waited: Arc::clone(&w),
            ..SlowBatch::default()
        },
    )
    .batch_size(1_024)
    .sink(move |_| {
        sink_received.fetch_add(1, Ordering::SeqCst);
    })
    .start()
    .unwrap();
    let outcome = wait_bounded(job).unwrap();
    assert_eq!(received.load(Ordering::SeqCst), events);
    let cents: HashMap<u32, i64> = outcome.operators[0]
        .sums
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    let expected: HashMap<u32, i64> = reference_totals(&spec)
        .into_iter()
        .map(|(k, t)| (k, t.cents))
        .collect();
    assert_eq!(cents, expected);
    let waited = waited.lock().unwrap();
    waited.expect("the waiting record was processed")
}

/// The 11th record takes 2 ms: the outputs before the 300th reach the sink
/// before the batch of 1,024 ends.
#[test]
fn a_slow_batch_hands_its_outputs_to_the_sink_before_it_ends() {
    let waited = run_slow_batch("slow-batch", 3_000, (11, 11), 300, 1);
    assert!(
        waited < Duration::from_secs(10),
        "the sink received nothing of the batch before it ended"
    );
}

/// Once a batch is slow, each slow record's output goes to the sink after
/// it, not after the next 16 records: 16 writes of a few milliseconds each
/// after a capture would otherwise be one gap at the sink.
#[test]
fn slow_records_hand_on_their_outputs_one_by_one() {
    let waited = run_slow_batch("slow-records", 2_000, (11, 60), 40, 39);
    assert!(
        waited < Duration::from_secs(10),
        "the sink had not received the outputs of the 39 records before the 40th"
    );
}
