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
//! `--runs none,asynchronous,asynchronous` makes only those runs, in that
//! order (a mode repeated shows its spread). The table also gives the
//! number of outputs the sink had received when its longest gap ended:
//! with one output per purchase, its place in the checkpoint cycle. Below
//! the table, each run's longest gap in every checkpoint cycle: cycle 0
//! before the first checkpoint, cycle `i` from the `i`-th to the next.
//!
//! Last, as the machine's own floor, a bare loop reads the clock on every
//! core for `--spin-seconds` and prints the longest stall it saw: what any
//! thread of a job that keeps every core busy (as an asynchronous
//! checkpoint does) may lose to the machine, with no allocation, lock or
//! I/O of its own. On a virtual machine whose host is busy it can be tens
//! of milliseconds.
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
use state_runtime::runner::{DurableCheckpointStore, Job, KeyedProcessor};
use state_runtime::storage::LocalStorage;

#[derive(Parser, Debug, Clone)]
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
    /// The runs, in order, each in a process of its own (a mode may repeat,
    /// to see the spread): none, synchronous, asynchronous, incremental.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,synchronous,asynchronous,incremental"
    )]
    runs: Vec<Mode>,
    /// Seconds of the bare spin loop on every core after the runs (0: none).
    #[arg(long, default_value_t = 20)]
    spin_seconds: u64,
    /// (Internal) run once in this mode, over the log in `--log`.
    #[arg(long, hide = true)]
    mode: Option<Mode>,
    /// (Internal) the log of a `--mode` run.
    #[arg(long, hide = true)]
    log: Option<std::path::PathBuf>,
}

/// How a run checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    None,
    Synchronous,
    Asynchronous,
    Incremental,
}

impl Mode {
    /// How the table names the run.
    fn label(self) -> &'static str {
        match self {
            Mode::None => "no checkpoints",
            m => m.name(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Synchronous => "synchronous",
            Mode::Asynchronous => "asynchronous",
            Mode::Incremental => "incremental",
        }
    }
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

/// What one run showed, as its process prints it on one line.
struct Run {
    elapsed: Duration,
    max_gap: Duration,
    /// Outputs the sink had received when the longest gap ended.
    gap_at: u64,
    /// The longest gap in each checkpoint cycle, the `i`-th ending at one
    /// of the outputs `i * checkpoint_every + 1 ..= (i + 1) * checkpoint_every`.
    cycle_gaps: Vec<Duration>,
    checkpoints: usize,
    max_pause: Duration,
    max_write: Duration,
    /// Bytes the periodic checkpoints wrote.
    written: u64,
    /// Bytes of the final checkpoint (the whole input).
    final_bytes: u64,
}

impl Run {
    fn line(&self) -> String {
        format!(
            "RUN {} {} {} {} {} {} {} {} {}",
            self.elapsed.as_nanos(),
            self.max_gap.as_nanos(),
            self.gap_at,
            self.checkpoints,
            self.max_pause.as_nanos(),
            self.max_write.as_nanos(),
            self.written,
            self.final_bytes,
            self.cycle_gaps
                .iter()
                .map(|g| g.as_nanos().to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    fn parse(out: &str) -> Option<Self> {
        let line = out.lines().find_map(|l| l.strip_prefix("RUN "))?;
        let (line, cycles) = line.rsplit_once(' ')?;
        let f: Vec<u128> = line
            .split(' ')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let cycle_gaps = cycles
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().ok().map(Duration::from_nanos))
            .collect::<Option<_>>()?;
        let ns = |i: usize| Duration::from_nanos(f[i] as u64);
        (f.len() == 8).then(|| Run {
            elapsed: ns(0),
            max_gap: ns(1),
            gap_at: f[2] as u64,
            cycle_gaps,
            checkpoints: f[3] as usize,
            max_pause: ns(4),
            max_write: ns(5),
            written: f[6] as u64,
            final_bytes: f[7] as u64,
        })
    }
}

/// The gaps between outputs reaching the sink.
#[derive(Default)]
struct SinkGaps {
    /// When the last output arrived.
    last: Option<Instant>,
    /// Outputs so far.
    outputs: u64,
    longest: Duration,
    /// Outputs the sink had received when the longest gap ended.
    longest_at: u64,
    /// The longest gap of each checkpoint cycle (see [`Run::cycle_gaps`]).
    per_cycle: Vec<Duration>,
}

impl SinkGaps {
    /// An output arrived at `now`, in a run that checkpoints every `every`
    /// outputs (one per purchase).
    fn output(&mut self, now: Instant, every: u64) {
        self.outputs += 1;
        if let Some(last) = self.last {
            let gap = now - last;
            if gap > self.longest {
                (self.longest, self.longest_at) = (gap, self.outputs);
            }
            let cycle = ((self.outputs - 1) / every) as usize;
            if self.per_cycle.len() <= cycle {
                self.per_cycle.resize(cycle + 1, Duration::ZERO);
            }
            self.per_cycle[cycle] = self.per_cycle[cycle].max(gap);
        }
        self.last = Some(now);
    }
}

/// Runs the job over the log in `log` once, in `mode`, and checks its
/// totals against `expected`.
fn run<P: Operator>(
    log: &std::path::Path,
    args: &Args,
    mode: Mode,
    expected: &HashMap<u32, Total>,
) -> Result<Run, Box<dyn std::error::Error>> {
    let (checkpoints, incremental) = match mode {
        Mode::None => (None, false),
        Mode::Synchronous => (Some(false), false),
        Mode::Asynchronous => (Some(true), false),
        Mode::Incremental => (Some(true), true),
    };
    let dir = tempfile::tempdir()?;
    let mut store = DurableCheckpointStore::new(Arc::new(LocalStorage::open(dir.path())?), 2);
    if incremental {
        store = store.incremental(IncrementalPolicy::default());
    }
    let gap = Arc::new(Mutex::new(SinkGaps::default()));
    let every = args.checkpoint_every.max(1);
    let sink_gap = Arc::clone(&gap);
    let built = args.clone();
    let mut job = Job::new(log, store, move |_| P::build(&built))
        .parallelism(args.parallelism, args.parallelism)
        .sink(move |_| {
            let now = Instant::now();
            sink_gap.lock().expect("the sink's lock").output(now, every);
        });
    if let Some(asynchronous) = checkpoints {
        job = job
            .checkpoint_every_events(args.checkpoint_every)
            .asynchronous_snapshots(asynchronous);
    }
    let started = Instant::now();
    let outcome = job.start()?.wait()?;
    let elapsed = started.elapsed();
    let SinkGaps {
        longest: max_gap,
        longest_at: gap_at,
        per_cycle: cycle_gaps,
        ..
    } = std::mem::take(&mut *gap.lock().expect("the sink's lock"));
    // The final checkpoint at the end of the input is not a pause between
    // outputs: leave it out.
    let mut checkpoints = outcome.report.checkpoints.clone();
    let last = checkpoints.pop();
    compare_totals(&P::totals(&outcome.operators), expected)?;
    Ok(Run {
        elapsed,
        max_gap,
        gap_at,
        cycle_gaps,
        checkpoints: checkpoints.len(),
        max_pause: checkpoints
            .iter()
            .map(|c| c.max_snapshot)
            .max()
            .unwrap_or_default(),
        max_write: checkpoints
            .iter()
            .map(|c| c.max_async)
            .max()
            .unwrap_or_default(),
        written: checkpoints.iter().map(|c| c.bytes).sum(),
        final_bytes: last.map_or(0, |c| c.bytes),
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
    if let (Some(mode), Some(log)) = (args.mode, &args.log) {
        // One run, in this process: its result on one line.
        let expected = reference_totals(&spec);
        let r = if args.note_bytes == 0 {
            run::<RunningSum>(log, &args, mode, &expected)?
        } else {
            run::<NotedSum>(log, &args, mode, &expected)?
        };
        println!("{}", r.line());
        return Ok(());
    }
    let log = tempfile::tempdir()?;
    spec.write_log(log.path())?;
    println!(
        "{} events, {} customers, checkpoint every {} events, parallelism {}, {}-byte notes",
        args.events,
        reference_totals(&spec).len(),
        args.checkpoint_every,
        args.parallelism,
        args.note_bytes
    );
    // Each run in a process of its own, so that none starts on the heap
    // another left behind.
    let mut runs = Vec::new();
    for &mode in &args.runs {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--events", &args.events.to_string()])
            .args(["--customers", &args.customers.to_string()])
            .args(["--checkpoint-every", &args.checkpoint_every.to_string()])
            .args(["--parallelism", &args.parallelism.to_string()])
            .args(["--note-bytes", &args.note_bytes.to_string()])
            .arg("--mode")
            .arg(mode.name())
            .arg("--log")
            .arg(log.path())
            .stderr(std::process::Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("the {} run failed: {stdout}", mode.name()).into());
        }
        let run = Run::parse(&stdout).ok_or("a run printed no result")?;
        runs.push((mode, run));
    }
    // Ratios against the first run without checkpoints, if any.
    let base = runs
        .iter()
        .find(|(m, _)| *m == Mode::None)
        .map(|(_, r)| r.max_gap);
    println!(
        "{:<16} {:>9} {:>12} {:>10} {:>14} {:>12} {:>12} {:>11} {:>12}",
        "run",
        "elapsed",
        "longest gap",
        "x no-cp",
        "gap at output",
        "checkpoints",
        "max pause",
        "max write",
        "written"
    );
    for (mode, r) in &runs {
        let ratio = base.map_or("-".to_owned(), |b| {
            format!(
                "{:.1}x",
                r.max_gap.as_secs_f64() / b.as_secs_f64().max(1e-9)
            )
        });
        println!(
            "{:<16} {:>8.2}s {:>10.1}ms {:>10} {:>14} {:>12} {:>10.1}ms {:>9.1}ms {:>9.1} MB",
            mode.label(),
            r.elapsed.as_secs_f64(),
            r.max_gap.as_secs_f64() * 1e3,
            ratio,
            r.gap_at,
            r.checkpoints,
            r.max_pause.as_secs_f64() * 1e3,
            r.max_write.as_secs_f64() * 1e3,
            r.written as f64 / 1e6,
        );
    }
    println!(
        "longest gap in each checkpoint cycle, ms (cycle i: from the i-th checkpoint to the next):"
    );
    for (mode, r) in &runs {
        let gaps: Vec<String> = r
            .cycle_gaps
            .iter()
            .map(|g| format!("{:.1}", g.as_secs_f64() * 1e3))
            .collect();
        println!("  {:<16} {}", mode.label(), gaps.join("  "));
    }
    // The final checkpoint holds the whole input: the same bytes whatever
    // the mode (incremental ones write it as a delta).
    let finals: Vec<u64> = runs
        .iter()
        .filter(|(m, _)| matches!(m, Mode::Synchronous | Mode::Asynchronous))
        .map(|(_, r)| r.final_bytes)
        .collect();
    if let Some(first) = finals.first() {
        println!(
            "final checkpoint: {first} bytes in every full run; every run's totals equal the single-threaded sum"
        );
        if finals.iter().any(|b| b != first) {
            return Err("the final checkpoints of the same input differ in size".into());
        }
    } else {
        println!("every run's totals equal the single-threaded sum");
    }
    if args.spin_seconds > 0 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stall = longest_stall(cores, Duration::from_secs(args.spin_seconds));
        println!(
            "machine floor: a bare loop reading the clock on all {cores} cores for {} s stalled at most {:.1} ms",
            args.spin_seconds,
            stall.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The longest time between two consecutive clock reads of a loop that does
/// nothing else, one per core, run for `length`: the time the machine took
/// from a busy thread (other threads, the kernel, or the host of a virtual
/// machine).
fn longest_stall(cores: usize, length: Duration) -> Duration {
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let (mut last, mut longest) = (start, Duration::ZERO);
                while last - start < length {
                    let now = Instant::now();
                    longest = longest.max(now - last);
                    last = now;
                }
                longest
            })
        })
        .collect();
    spinners
        .into_iter()
        .map(|s| s.join().expect("a spinner"))
        .max()
        .unwrap_or_default()
}
