//! The demo job (per-customer running sums) on timely-dataflow in real
//! worker processes on 127.0.0.1, killed and rescaled by restart, then
//! checked against a single-threaded recomputation.
//!
//! ```sh
//! cargo run --release --example timely_rescale
//! cargo run --release --example timely_rescale -- --events 1000000 --records-per-epoch 10000
//! ```
//!
//! Phases: 2 processes x 1 worker, one process killed (SIGKILL) once a few
//! checkpoints are committed (timely is fail-stop: the other process ends
//! too); a restart at 3 processes x 1 worker for a number of epochs; then
//! 1 process x 2 workers to the end of the log. Each restart restores from
//! the newest committed checkpoint, every worker reading only its own key
//! groups. Exits with status 1 if any customer's total differs from the
//! reference.
//!
//! The example starts its worker processes by running its own binary with
//! `worker` and the run's arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rescale::timely_cluster::{Cluster, OPERATOR, ProcessOutcome, RunSpec, worker_main};
use rescale::{LogSpec, RunningSum, compare_totals, reference_totals, totals_of};
use state_runtime::checkpoint::Restore;
use state_runtime::checkpoint::durable::StoredCheckpoint;
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
use state_runtime::storage::{CheckpointStorage, LocalStorage};

#[derive(Parser, Debug)]
#[command(about = "Running sums per customer on timely, killed and rescaled, verified at the end")]
struct Args {
    /// Purchases in the input log.
    #[arg(long, default_value_t = 400_000)]
    events: u64,
    /// Distinct customers (keys).
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
    /// Partitions of the input log.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Records each worker reads per epoch (one checkpoint per epoch).
    #[arg(long, default_value_t = 4_000)]
    records_per_epoch: usize,
    /// Key groups (max parallelism).
    #[arg(long, default_value_t = 128)]
    max_parallelism: u32,
    /// Phase 1 is killed once this checkpoint is committed.
    #[arg(long, default_value_t = 3)]
    kill_after_checkpoint: u64,
    /// Epochs phase 2 runs before it stops.
    #[arg(long, default_value_t = 12)]
    phase2_epochs: u64,
    /// Where the log and the checkpoints go (a fresh temporary folder if
    /// not given).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Instead of the phases: the whole log once on the local runner (2
    /// sources, 2 keyed instances, a checkpoint triggered every
    /// `2 * records_per_epoch` records) and once on timely (1 process x 2
    /// workers, epochs sized for as many checkpoints as the runner took),
    /// both checkpointing to local disk, and their throughput.
    #[arg(long)]
    throughput: bool,
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("worker") {
        argv.next();
        return match worker_main(argv) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let spec = LogSpec {
        partitions: args.partitions,
        events: args.events,
        customers: args.customers,
        seed: 42,
    };
    let log = dir.join("log");
    let checkpoints = dir.join("checkpoints");
    let _ = std::fs::remove_dir_all(&checkpoints);
    let bytes = spec.write_log(&log)?;
    println!(
        "input: {} purchases by {} customers in {} partitions ({:.1} MiB)",
        spec.events,
        spec.customers,
        spec.partitions,
        bytes as f64 / (1 << 20) as f64
    );
    let storage = LocalStorage::open(&checkpoints)?;
    let exe = std::env::current_exe()?;
    if args.throughput {
        return throughput(&args, &spec, &log, &dir);
    }
    let run_spec = |run_id: &str, threads: usize, stop: Option<u64>| RunSpec {
        log: log.clone(),
        checkpoints: checkpoints.clone(),
        run_id: run_id.into(),
        threads,
        records_per_epoch: args.records_per_epoch,
        epochs_in_flight: 2,
        stop_after_epochs: stop,
        max_parallelism: args.max_parallelism,
    };
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(args.max_parallelism)?);

    // Phase 1: 2 processes x 1 worker, process 1 killed mid-run.
    println!("\nphase 1: 2 processes x 1 worker, fresh start");
    for w in 0..2 {
        let kg = assigner.range_for_subtask(2, w)?;
        println!(
            "  worker {w} of 2: key groups {}..{}, nothing to restore",
            kg.start(),
            kg.end_exclusive()
        );
    }
    let t = Instant::now();
    let mut cluster = Cluster::start(&exe, &["worker"], 2, &run_spec("phase1", 1, None), &[])?;
    let deadline = Instant::now() + TIMEOUT;
    while storage.latest()?.unwrap_or(0) < args.kill_after_checkpoint {
        if Instant::now() > deadline {
            return Err("phase 1 committed no checkpoints".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cluster.kill(1)?;
    let killed_at = storage.latest()?;
    let outcomes = cluster.wait(TIMEOUT)?;
    println!(
        "  killed process 1 (SIGKILL) with checkpoint {} committed; process 0 then ended: {} ({:.2?})",
        killed_at.map_or("-".into(), |c| c.to_string()),
        outcomes[0].status,
        t.elapsed()
    );
    if outcomes[0].status.success() {
        return Err("process 0 of phase 1 finished although its peer was killed".into());
    }
    println!("  newest committed checkpoint: {:?}", storage.latest()?);

    // Phase 2: restart at 3 processes x 1 worker, for some epochs.
    println!("\nphase 2: restart at 3 processes x 1 worker");
    let t = Instant::now();
    let out = Cluster::start(
        &exe,
        &["worker"],
        3,
        &run_spec("phase2", 1, Some(args.phase2_epochs)),
        &[],
    )?
    .wait(TIMEOUT)?;
    print_phase(&out, t.elapsed())?;

    // Phase 3: 1 process x 2 workers, to the end.
    println!("\nphase 3: restart at 1 process x 2 workers, to the end of the log");
    let t = Instant::now();
    let out =
        Cluster::start(&exe, &["worker"], 1, &run_spec("phase3", 2, None), &[])?.wait(TIMEOUT)?;
    print_phase(&out, t.elapsed())?;

    // Verify.
    let stored = StoredCheckpoint::latest(&storage)?.ok_or("no checkpoint")?;
    let mut all = RunningSum::default();
    stored.operator(OPERATOR)?.restore_into(&mut all, 0, 1)?;
    let totals = totals_of(&[all]);
    let reference = reference_totals(&spec);
    match compare_totals(&totals, &reference) {
        Ok(()) => {
            println!(
                "\nverified: the final checkpoint ({}) holds the totals of all {} customers over {} purchases, \
                 equal to a single-threaded recomputation: every purchase counted exactly once across a \
                 kill and restarts at 3 and then 2 workers ({:.2?} in all)",
                stored.checkpoint_id(),
                reference.len(),
                spec.events,
                started.elapsed()
            );
            Ok(())
        }
        Err(diff) => Err(format!("final totals differ from the reference: {diff}").into()),
    }
}

/// The whole log on timely and on the local runner, same cores and disk.
fn throughput(
    args: &Args,
    spec: &LogSpec,
    log: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use state_runtime::runner::{DurableCheckpointStore, Job};
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(args.max_parallelism)?);
    let reference = reference_totals(spec);

    // The local runner, checkpointing every `2 * records_per_epoch` records.
    let runner_dir = dir.join("throughput-runner");
    let _ = std::fs::remove_dir_all(&runner_dir);
    let store =
        DurableCheckpointStore::new(std::sync::Arc::new(LocalStorage::open(&runner_dir)?), 3);
    let t = Instant::now();
    let outcome = Job::new(log, store, |_| RunningSum::default())
        .parallelism(2, 2)
        .assigner(assigner)
        .checkpoint_every_events(2 * args.records_per_epoch as u64)
        .sink(|_update: (u32, i64)| {})
        .start()?
        .wait()?;
    let runner_time = t.elapsed();
    compare_totals(&totals_of(&outcome.operators), &reference)?;
    let runner_checkpoints = outcome.report.checkpoints.len().max(1) as u64;

    // Timely, with epochs sized for as many checkpoints as the runner took.
    let timely_dir = dir.join("throughput-timely");
    let _ = std::fs::remove_dir_all(&timely_dir);
    let per_epoch = spec.events.div_ceil(2 * runner_checkpoints) as usize;
    let spec_run = RunSpec {
        log: log.to_path_buf(),
        checkpoints: timely_dir.clone(),
        run_id: "throughput".into(),
        threads: 2,
        records_per_epoch: per_epoch,
        epochs_in_flight: 2,
        stop_after_epochs: None,
        max_parallelism: args.max_parallelism,
    };
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let out = Cluster::start(&exe, &["worker"], 1, &spec_run, &[])?.wait(TIMEOUT)?;
    let timely_time = t.elapsed();
    print_phase(&out, timely_time)?;
    let storage = LocalStorage::open(&timely_dir)?;
    let stored = StoredCheckpoint::latest(&storage)?.ok_or("no checkpoint")?;
    let mut all = RunningSum::default();
    stored.operator(OPERATOR)?.restore_into(&mut all, 0, 1)?;
    compare_totals(&totals_of(&[all]), &reference)?;
    let in_job = out
        .iter()
        .flat_map(|o| &o.reports)
        .filter_map(|r| r.number("elapsed_us"))
        .max()
        .map(Duration::from_micros)
        .ok_or("no worker reported its time")?;

    let rate = |d: Duration| spec.events as f64 / d.as_secs_f64();
    println!(
        "throughput over {} purchases, both verified against the reference:\n  \
         local runner, 2 source + 2 keyed threads: {:.0} events/s ({:.2?}), {} checkpoints\n  \
         timely, 1 process x 2 workers, {} records per worker and epoch: {:.0} events/s in the job \
         ({:.2?}; {:.2?} with process start), {} checkpoints\n  \
         timely / runner = {:.2}",
        spec.events,
        rate(runner_time),
        runner_time,
        runner_checkpoints,
        per_epoch,
        rate(in_job),
        in_job,
        timely_time,
        stored.checkpoint_id(),
        rate(in_job) / rate(runner_time)
    );
    Ok(())
}

fn print_phase(out: &[ProcessOutcome], took: Duration) -> Result<(), Box<dyn std::error::Error>> {
    for o in out {
        if !o.status.success() {
            return Err(
                format!("process {} failed ({}): {}", o.process, o.status, o.stderr).into(),
            );
        }
    }
    let mut events = 0;
    for r in out.iter().flat_map(|o| &o.reports) {
        let restored = r.number("keyed_bytes_restored").unwrap_or(0);
        let owned = r.number("owned_state_bytes").unwrap_or(0);
        let amplification = if owned == 0 {
            "-".to_owned()
        } else {
            format!("{:.3}", restored as f64 / owned as f64)
        };
        println!(
            "  worker {} of {}: key groups {}, restored checkpoint {}: {} bytes (keyed {}), read amplification {}, {} purchases, epochs {}",
            r.get("worker"),
            r.get("workers"),
            r.get("key_groups"),
            r.get("restored_from"),
            r.get("bytes_restored"),
            restored,
            amplification,
            r.get("events"),
            r.get("epochs"),
        );
        events += r.number("events").unwrap_or(0);
    }
    println!(
        "  {events} purchases in {took:.2?}; newest committed checkpoint: {}",
        out.iter()
            .flat_map(|o| &o.reports)
            .find(|r| r.get("worker") == "0")
            .map_or("-", |r| r.get("committed"))
    );
    Ok(())
}
