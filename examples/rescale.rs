//! The main example: a per-customer running sum over a log of purchases,
//! checkpointed and rescaled while it runs, then checked against a
//! single-threaded recomputation.
//!
//! ```sh
//! cargo run --release --example rescale
//! cargo run --release --example rescale -- --phases 2,3,1,4 --kill --events 1000000
//! cargo run --release --example rescale -- --final-max-parallelism 200
//! ```
//!
//! Each phase runs the job at a parallelism, stops it (with a final
//! checkpoint, or with `--kill` abruptly, so the next phase resumes from the
//! last periodic checkpoint) once its share of the input is read, and
//! restarts at the next phase's parallelism from the latest checkpoint. The
//! last phase runs to the end of the input. Exits with status 1 if any
//! customer's total differs from the reference.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rescale::{LogSpec, RunningSum, compare_totals, reference_totals, totals_of};
use state_runtime::prelude::*;
use state_runtime::runner::{DurableCheckpointStore, Job, JobOutcome};
use state_runtime::storage::LocalStorage;

#[derive(Parser, Debug)]
#[command(about = "Running sums per customer, rescaled while running, verified at the end")]
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
    /// Keyed parallelism of each phase, comma-separated.
    #[arg(long, default_value = "2,3,1", value_delimiter = ',')]
    phases: Vec<usize>,
    /// Source parallelism of each phase (default: the keyed parallelism).
    #[arg(long, value_delimiter = ',')]
    sources: Option<Vec<usize>>,
    /// Max parallelism (number of key groups).
    #[arg(long, default_value_t = 128)]
    max_parallelism: u32,
    /// Restart the last phase with this max parallelism (native mode
    /// re-buckets the keys; boundary key groups are filtered on restore).
    #[arg(long)]
    final_max_parallelism: Option<u32>,
    /// A periodic checkpoint every this many events.
    #[arg(long, default_value_t = 400_000)]
    checkpoint_every: u64,
    /// End every phase but the last with a kill (no final checkpoint).
    #[arg(long)]
    kill: bool,
    /// Seed of the log generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to write the log (`DIR/log`) and the checkpoints
    /// (`DIR/checkpoints`; default: a temporary folder, removed at the end).
    /// Keep it to look inside with `statectl inspect DIR/checkpoints`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Checkpoints kept on disk.
    #[arg(long, default_value_t = 3)]
    retain: usize,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let spec = LogSpec {
        partitions: args.partitions,
        events: args.events,
        customers: args.customers,
        seed: args.seed,
    };
    let sources = args.sources.clone().unwrap_or_else(|| args.phases.clone());
    if args.phases.is_empty() || sources.len() != args.phases.len() {
        return Err("--phases must be non-empty and --sources must have as many entries".into());
    }
    let temp = args.dir.is_none();
    let root = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rescale-example-{}", std::process::id()))
    });
    let dir = root.join("log");
    let checkpoints = root.join("checkpoints");
    if checkpoints.exists() {
        // A fresh run: checkpoints of an earlier run would be restored.
        std::fs::remove_dir_all(&checkpoints)?;
    }

    let t = Instant::now();
    let log_bytes = spec.write_log(&dir)?;
    println!(
        "log: {} purchases by {} customers in {} partitions, {:.1} MB, written in {:.2?} ({})",
        spec.events,
        spec.customers,
        spec.partitions,
        log_bytes as f64 / 1e6,
        t.elapsed(),
        dir.display()
    );
    let t = Instant::now();
    let expected = reference_totals(&spec);
    let reference_time = t.elapsed();

    let storage = std::sync::Arc::new(LocalStorage::open(&checkpoints)?);
    let store = DurableCheckpointStore::new(storage, args.retain);
    println!(
        "checkpoints: format v1 on local disk ({}), the last {} kept; restores read only their byte ranges",
        checkpoints.display(),
        args.retain
    );
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(args.max_parallelism)?);
    let bar = ProgressBar::new(spec.events);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} {msg:<18} [{bar:40}] {pos:>9}/{len} events {per_sec:>14} {elapsed}",
    )?);
    let phases = args.phases.len();
    let started = Instant::now();
    let mut last: Option<JobOutcome<RunningSum>> = None;
    for (i, (&n, &s)) in args.phases.iter().zip(&sources).enumerate() {
        let final_phase = i + 1 == phases;
        bar.set_message(format!("phase {}: {s} -> {n}", i + 1));
        let job = Job::new(&dir, store.clone(), |_| RunningSum::default())
            .parallelism(s, n)
            .measure_restored_state(true)
            .assigner(match args.final_max_parallelism {
                Some(m) if final_phase => KeyGroupAssigner::native(MaxParallelism::new(m)?),
                _ => assigner,
            })
            .checkpoint_every_events(args.checkpoint_every)
            .sink(|_update: (u32, i64)| {})
            .start()?;
        let target = spec.events * (i as u64 + 1) / phases as u64;
        loop {
            let at = job.events_at_start() + job.events_read();
            bar.set_position(at.min(spec.events));
            if job.is_finished() || (!final_phase && at >= target) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let outcome = if final_phase {
            job.wait()?
        } else if args.kill {
            job.kill()?
        } else {
            job.stop()?
        };
        bar.suspend(|| print_phase(i + 1, &outcome));
        last = Some(outcome);
    }
    bar.finish_and_clear();
    let total_time = started.elapsed();

    let Some(last) = last else {
        return Ok(false);
    };
    let actual = totals_of(&last.operators);
    println!(
        "\nall phases: {:.2?} ({:.2} M events/s overall, restarts included); single-threaded HashMap reference: {:.2?}",
        total_time,
        spec.events as f64 / total_time.as_secs_f64() / 1e6,
        reference_time
    );
    if temp {
        std::fs::remove_dir_all(&root).ok();
    }
    match compare_totals(&actual, &expected) {
        Ok(()) => {
            println!(
                "verified: {} customers, every total equals the single-threaded recomputation",
                expected.len()
            );
            Ok(true)
        }
        Err(diff) => {
            println!("MISMATCH: {diff}");
            Ok(false)
        }
    }
}

fn print_phase(phase: usize, outcome: &JobOutcome<RunningSum>) {
    let r = &outcome.report;
    let secs = r.elapsed.as_secs_f64();
    println!(
        "\nphase {phase}: sources {}, keyed instances {}, {}; {:?} after {} events this run ({:.2?}, {:.2} M events/s)",
        r.source_parallelism,
        r.keyed_parallelism,
        match r.restored_from {
            Some(id) => format!(
                "restored from checkpoint {id} at event {}",
                r.events_at_start
            ),
            None => "fresh start".to_string(),
        },
        r.end,
        r.events_read,
        r.elapsed,
        r.events_read as f64 / secs / 1e6,
    );
    println!(
        "  {:>8} | {:>11} | {:>13} | {:>11} | {:>14} | {:>8} | {:>10} | {:>9} | {:>13}",
        "instance",
        "key groups",
        "keys restored",
        "keys at end",
        "bytes restored",
        "read amp",
        "restore",
        "events",
        "events/s busy"
    );
    for (i, k) in r.keyed.iter().enumerate() {
        let keys = outcome
            .operators
            .get(i)
            .map_or("-".to_string(), |op| op.sums.len().to_string());
        let (restored, bytes) = k.restore.as_ref().map_or(("-".into(), "-".into()), |rep| {
            (
                rep.keyed_entries_restored.to_string(),
                rep.bytes_read.to_string(),
            )
        });
        let amp = k
            .read_amplification()
            .map_or("-".into(), |a| format!("{a:.3}"));
        println!(
            "  {:>8} | {:>11} | {:>13} | {:>11} | {:>14} | {:>8} | {:>10.2?} | {:>9} | {:>13.0}",
            k.subtask,
            k.key_groups.to_string(),
            restored,
            keys,
            bytes,
            amp,
            k.restore_time,
            k.events,
            k.events as f64 / k.busy.as_secs_f64().max(1e-9)
        );
    }
    if let (Some(first), Some(lastc)) = (r.checkpoints.first(), r.checkpoints.last()) {
        let max_pause = r
            .checkpoints
            .iter()
            .map(|c| c.max_snapshot)
            .max()
            .unwrap_or_default();
        let max_align = r
            .checkpoints
            .iter()
            .map(|c| c.max_alignment)
            .max()
            .unwrap_or_default();
        println!(
            "  checkpoints {}..={} ({}), last {:.1} KB; longest snapshot pause {:.2?}, longest alignment {:.2?}",
            first.id,
            lastc.id,
            r.checkpoints.len(),
            lastc.bytes as f64 / 1e3,
            max_pause,
            max_align
        );
    }
}
