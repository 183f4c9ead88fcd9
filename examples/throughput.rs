//! Throughput of the running-sum job: events/s per keyed instance against a
//! plain single-threaded `HashMap` loop over the same events, and the pause a
//! checkpoint causes.
//!
//! ```sh
//! cargo run --release --example throughput
//! cargo run --release --example throughput -- --events 5000000 --customers 100000
//! ```
//!
//! Not a test: run it on a quiet machine. Every figure is the best of
//! `--runs` runs.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use rescale::{LogSpec, Purchase, RunningSum, Total, compare_totals, reference_totals, totals_of};
use state_runtime::prelude::*;
use state_runtime::runner::log::{LogReader, partition_count};
use state_runtime::runner::{Job, JobOutcome, KeyedProcessor, MemoryCheckpointStore};

#[derive(Parser, Debug)]
#[command(about = "Running-sum job throughput vs a single-threaded HashMap loop")]
struct Args {
    /// Purchases in the log.
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// Distinct customers (keys).
    #[arg(long, default_value_t = 100_000)]
    customers: u32,
    /// Log partitions.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Checkpoint interval (events) for the checkpointing runs.
    #[arg(long, default_value_t = 500_000)]
    checkpoint_every: u64,
    /// Runs per measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn best<T>(runs: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut best = f();
    for _ in 1..runs {
        let r = f();
        if r.0 < best.0 {
            best = r;
        }
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let spec = LogSpec {
        partitions: args.partitions,
        events: args.events,
        customers: args.customers,
        seed: 42,
    };
    let dir = std::env::temp_dir().join(format!("rescale-throughput-{}", std::process::id()));
    spec.write_log(&dir)?;
    let expected = reference_totals(&spec);
    let events: Vec<Purchase> = spec.purchases().map(|(_, p)| p).collect();
    let e = spec.events as f64;
    let rate = |d: Duration| e / d.as_secs_f64() / 1e6;
    println!(
        "{} events, {} customers, {} partitions, {} cores available\n",
        spec.events,
        spec.customers,
        spec.partitions,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // The three single-threaded loops, interleaved run by run so that a
    // noisy neighbour hurts them alike; the best run of each counts.
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
    let hash_loop = || {
        let t = Instant::now();
        let mut m: HashMap<u32, Total> = HashMap::new();
        for p in &events {
            let t = m.entry(p.customer).or_default();
            t.cents += p.cents;
            t.purchases += 1;
        }
        black_box(&m);
        t.elapsed()
    };
    let keyed_loop = || {
        let t = Instant::now();
        let mut op = RunningSum::default();
        op.bind_keyed(assigner, assigner.max_parallelism().all_key_groups())
            .expect("bind");
        for p in &events {
            KeyedProcessor::process(&mut op, *p, &mut |_| {}).expect("process");
        }
        (t.elapsed(), op)
    };
    let log_loop = || {
        let t = Instant::now();
        let mut m: HashMap<u32, Total> = HashMap::new();
        for p in 0..partition_count(&dir).expect("log") {
            let mut r = LogReader::<Purchase>::open(&dir, p, 0).expect("open");
            while let Some((_, p)) = r.next_record().expect("read") {
                let t = m.entry(p.customer).or_default();
                t.cents += p.cents;
                t.purchases += 1;
            }
        }
        black_box(&m);
        t.elapsed()
    };
    let (mut hash_time, mut keyed_time, mut log_time) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut full = None;
    for _ in 0..args.runs.max(1) {
        hash_time = hash_time.min(hash_loop());
        let (d, op) = keyed_loop();
        keyed_time = keyed_time.min(d);
        full = Some(op);
        log_time = log_time.min(log_loop());
    }
    // The pause of one checkpoint in one instance: snapshot every key.
    let full = full.expect("at least one run");
    let (snapshot_time, bytes) = best(args.runs.max(5), || {
        let t = Instant::now();
        let snap = full.snapshot().expect("snapshot");
        (t.elapsed(), snap.data().len())
    });
    println!("single-threaded baselines");
    println!(
        "  {:<52} {:>9.2?} {:>7.2} M events/s",
        "HashMap loop over decoded events (in memory)",
        hash_time,
        rate(hash_time)
    );
    println!(
        "  {:<52} {:>9.2?} {:>7.2} M events/s",
        "RunningSum::process over decoded events (KeyedValue)",
        keyed_time,
        rate(keyed_time)
    );
    println!(
        "  {:<52} {:>9.2?} {:>7.2} M events/s",
        "log read (CRC + decode) + HashMap loop",
        log_time,
        rate(log_time)
    );
    println!(
        "  {:<52} {:>9.2?} ({} keys, {:.1} KB)",
        "snapshot of one instance holding every key",
        snapshot_time,
        full.sums.len(),
        bytes as f64 / 1e3
    );

    println!("\nthe job (sources read the log, route by key group; no sink)");
    println!(
        "  {:>7} {:>5} {:>11} | {:>9} {:>8} | {:>28} | {:>6} {:>12} {:>12}",
        "sources",
        "keyed",
        "checkpoint",
        "wall",
        "M ev/s",
        "per keyed instance M ev/s",
        "ckpts",
        "max pause",
        "max align"
    );
    for (s, n) in [(1, 1), (1, 2), (2, 2), (2, 4)] {
        for every in [None, Some(args.checkpoint_every)] {
            let (wall, out) = best(args.runs, || {
                let store = MemoryCheckpointStore::new();
                let mut job = Job::new(&dir, store, |_| RunningSum::default())
                    .parallelism(s, n)
                    .assigner(assigner);
                if let Some(k) = every {
                    job = job.checkpoint_every_events(k);
                }
                let t = Instant::now();
                let out: JobOutcome<RunningSum> = job.start().expect("start").wait().expect("run");
                (t.elapsed(), out)
            });
            compare_totals(&totals_of(&out.operators), &expected)?;
            let per: Vec<String> = out
                .report
                .keyed
                .iter()
                .map(|k| format!("{:.1}", k.events as f64 / k.busy.as_secs_f64() / 1e6))
                .collect();
            let periodic: Vec<_> = out
                .report
                .checkpoints
                .iter()
                .filter(|c| c.id < out.report.checkpoints.last().map_or(0, |l| l.id))
                .collect();
            let max_pause = periodic
                .iter()
                .map(|c| c.max_snapshot)
                .max()
                .unwrap_or_default();
            let max_align = periodic
                .iter()
                .map(|c| c.max_alignment)
                .max()
                .unwrap_or_default();
            println!(
                "  {:>7} {:>5} {:>11} | {:>9.2?} {:>8.2} | {:>28} | {:>6} {:>12.2?} {:>12.2?}",
                s,
                n,
                every.map_or("none".to_string(), |k| format!("{k} ev")),
                wall,
                rate(wall),
                per.join(" "),
                periodic.len(),
                max_pause,
                max_align
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
