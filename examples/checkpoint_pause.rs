//! The pause checkpoints cause, seen from outside: the longest gap between
//! two outputs reaching the sink, in four runs of the running-sum job over
//! the same log, in the same process: without checkpoints, with synchronous
//! checkpoints (each keyed instance writes its snapshot itself), with
//! asynchronous ones (it captures its state and a writer thread writes it),
//! and with asynchronous incremental ones (the writer writes the keys
//! changed since the previous checkpoint). Checkpoints are durable, into a
//! temporary folder; the table also gives the bytes the periodic
//! checkpoints wrote.
//!
//! ```sh
//! cargo run --release --example checkpoint_pause
//! cargo run --release --example checkpoint_pause -- --customers 8000000 --events 24000000
//! cargo run --release --example checkpoint_pause -- --customers 16000000 --events 48000000 \
//!     --checkpoint-every 8000000 --note-bytes 56
//! ```
//!
//! With `--note-bytes N` each customer's state also holds an N-byte note
//! rewritten by every purchase (the last one about 1 GiB of checkpoint).
//!
//! Not a test: run it on a quiet machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rescale::{LogSpec, Purchase, RunningSum, Total, compare_totals, reference_totals, totals_of};
use serde_bytes::ByteBuf;
use state_runtime::checkpoint::durable::IncrementalPolicy;
use state_runtime::prelude::*;
use state_runtime::runner::{CheckpointStats, DurableCheckpointStore, Job, KeyedProcessor};
use state_runtime::storage::LocalStorage;

#[derive(Parser, Debug, Clone, Copy)]
#[command(about = "Longest sink gap with synchronous vs asynchronous checkpoints")]
struct Args {
    /// Purchases in the log.
    #[arg(long, default_value_t = 6_000_000)]
    events: u64,
    /// Distinct customers (keys of the keyed state).
    #[arg(long, default_value_t = 2_000_000)]
    customers: u32,
    /// Checkpoint every this many events.
    #[arg(long, default_value_t = 1_000_000)]
    checkpoint_every: u64,
    /// Sources and keyed instances.
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Bytes of a note kept beside each customer's total and rewritten by
    /// every purchase (0: the demo's running sum alone).
    #[arg(long, default_value_t = 0)]
    note_bytes: usize,
}

/// The running sum with a note of `note_bytes` per customer: the same job
/// with larger values.
#[derive(Checkpointed)]
struct NotedSum {
    #[state(keyed)]
    sums: KeyedValue<u32, (Total, ByteBuf)>,
    #[state(skip)]
    note_bytes: usize,
}

impl KeyedProcessor for NotedSum {
    type Event = Purchase;
    type Output = (u32, i64);

    fn process(
        &mut self,
        event: Purchase,
        out: &mut impl FnMut((u32, i64)),
    ) -> Result<(), StateError> {
        let n = self.note_bytes;
        let (total, note) = self.sums.get_or_insert_with(event.key(), || {
            (Total::default(), ByteBuf::from(vec![0; n]))
        })?;
        total.cents += event.cents;
        total.purchases += 1;
        let stamp = total.cents.to_le_bytes();
        for (i, b) in note.iter_mut().enumerate() {
            *b = stamp[i % 8] ^ i as u8;
        }
        out((event.customer, total.cents));
        Ok(())
    }
}

/// The job's operator: what it is built from and what its totals are.
trait Operator: KeyedProcessor<Event = Purchase, Output = (u32, i64)> + Sized {
    fn build(args: &Args) -> Self;
    fn totals(operators: &[Self]) -> HashMap<u32, Total>;
}

impl Operator for RunningSum {
    fn build(_: &Args) -> Self {
        RunningSum::default()
    }

    fn totals(operators: &[Self]) -> HashMap<u32, Total> {
        totals_of(operators)
    }
}

impl Operator for NotedSum {
    fn build(args: &Args) -> Self {
        NotedSum {
            sums: KeyedValue::default(),
            note_bytes: args.note_bytes,
        }
    }

    fn totals(operators: &[Self]) -> HashMap<u32, Total> {
        operators
            .iter()
            .flat_map(|op| op.sums.iter().map(|(k, (t, _))| (*k, *t)))
            .collect()
    }
}

/// What one run showed.
struct Run {
    name: &'static str,
    elapsed: Duration,
    max_gap: Duration,
    checkpoints: Vec<CheckpointStats>,
    /// Bytes of the final checkpoint (the whole input).
    final_bytes: u64,
    totals: HashMap<u32, Total>,
}

fn run<P: Operator>(
    name: &'static str,
    log: &std::path::Path,
    args: &Args,
    checkpoints: Option<bool>,
    incremental: bool,
) -> Result<Run, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = DurableCheckpointStore::new(Arc::new(LocalStorage::open(dir.path())?), 2);
    if incremental {
        store = store.incremental(IncrementalPolicy::default());
    }
    let gap = Arc::new(Mutex::new((None::<Instant>, Duration::ZERO)));
    let sink_gap = Arc::clone(&gap);
    let built = *args;
    let mut job = Job::new(log, store, move |_| P::build(&built))
        .parallelism(args.parallelism, args.parallelism)
        .sink(move |_| {
            let now = Instant::now();
            let mut g = sink_gap.lock().expect("the sink's lock");
            if let Some(last) = g.0 {
                g.1 = g.1.max(now - last);
            }
            g.0 = Some(now);
        });
    if let Some(asynchronous) = checkpoints {
        job = job
            .checkpoint_every_events(args.checkpoint_every)
            .asynchronous_snapshots(asynchronous);
    }
    let started = Instant::now();
    let outcome = job.start()?.wait()?;
    let elapsed = started.elapsed();
    let max_gap = gap.lock().expect("the sink's lock").1;
    // The final checkpoint at the end of the input is not a pause between
    // outputs: leave it out.
    let mut checkpoints = outcome.report.checkpoints.clone();
    let last = checkpoints.pop();
    Ok(Run {
        name,
        elapsed,
        max_gap,
        checkpoints,
        final_bytes: last.map_or(0, |c| c.bytes),
        totals: P::totals(&outcome.operators),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let spec = LogSpec {
        partitions: 4,
        events: args.events,
        customers: args.customers,
        seed: 3,
    };
    let log = tempfile::tempdir()?;
    spec.write_log(log.path())?;
    let expected = reference_totals(&spec);
    println!(
        "{} events, {} customers, checkpoint every {} events, parallelism {}",
        args.events,
        expected.len(),
        args.checkpoint_every,
        args.parallelism
    );
    let modes = [
        ("no checkpoints", None, false),
        ("synchronous", Some(false), false),
        ("asynchronous", Some(true), false),
        ("incremental", Some(true), true),
    ];
    let mut runs = Vec::new();
    for (name, checkpoints, incremental) in modes {
        runs.push(if args.note_bytes == 0 {
            run::<RunningSum>(name, log.path(), &args, checkpoints, incremental)?
        } else {
            run::<NotedSum>(name, log.path(), &args, checkpoints, incremental)?
        });
    }
    let base = runs[0].max_gap;
    println!(
        "{:<16} {:>9} {:>12} {:>10} {:>12} {:>12} {:>11} {:>12}",
        "run",
        "elapsed",
        "longest gap",
        "x no-cp",
        "checkpoints",
        "max pause",
        "max write",
        "written"
    );
    for r in &runs {
        compare_totals(&r.totals, &expected)?;
        let pause = r.checkpoints.iter().map(|c| c.max_snapshot).max();
        let write = r.checkpoints.iter().map(|c| c.max_async).max();
        let written: u64 = r.checkpoints.iter().map(|c| c.bytes).sum();
        println!(
            "{:<16} {:>8.2}s {:>10.1}ms {:>9.1}x {:>12} {:>10.1}ms {:>9.1}ms {:>9.1} MB",
            r.name,
            r.elapsed.as_secs_f64(),
            r.max_gap.as_secs_f64() * 1e3,
            r.max_gap.as_secs_f64() / base.as_secs_f64().max(1e-9),
            r.checkpoints.len(),
            pause.unwrap_or_default().as_secs_f64() * 1e3,
            write.unwrap_or_default().as_secs_f64() * 1e3,
            written as f64 / 1e6,
        );
    }
    println!(
        "final checkpoint: synchronous {} bytes, asynchronous {} bytes; every run's totals equal the \
         single-threaded sum",
        runs[1].final_bytes, runs[2].final_bytes
    );
    if runs[1].final_bytes != runs[2].final_bytes {
        return Err("the final checkpoints of the same input differ in size".into());
    }
    Ok(())
}
