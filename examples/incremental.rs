//! Incremental checkpoints against full synchronous ones, in the same run on
//! the same state: the pause each checkpoint causes, the bytes it writes,
//! the bytes on disk over the retained checkpoints, and what a restore at a
//! rescale reads.
//!
//! ```sh
//! cargo run --release --example incremental
//! cargo run --release --example incremental -- --keys 15600000 --checkpoints 30
//! ```
//!
//! The state is a `KeyedValue<u64, ByteBuf>` of 56-byte values at
//! parallelism 2 (max parallelism 128). Before each checkpoint `--changed`
//! percent of the keys get a new value (spread over all keys, so every key
//! group and nearly every page changes), one in twenty of them is removed
//! and as many new keys are inserted. The same changes run twice, in two
//! folders:
//!
//! 1. **full**: each subtask writes its whole state while it is paused (a
//!    synchronous full checkpoint);
//! 2. **incremental**: each subtask captures its state (the pause), then
//!    writes the key groups whose turn it is whole and the rest as deltas
//!    on top of its previous checkpoint (`write_subtask_incremental`).
//!
//! Both keep the last `--retain` checkpoints. At the end it restores the
//! last checkpoint of each at parallelism 3, checks every value against the
//! live state, and prints the figures and their ratios.
//!
//! Not part of the tests: the defaults write a few gigabytes.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_bytes::ByteBuf;
use state_runtime::checkpoint::durable::{
    IncrementalPolicy, StoredCheckpoint, SubtaskFile, commit_checkpoint, referenced_files,
    write_subtask, write_subtask_incremental,
};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage};

#[derive(Parser, Debug)]
#[command(about = "Incremental vs full synchronous checkpoints: pauses, bytes, restore reads")]
struct Args {
    /// Keys in the state.
    #[arg(long, default_value_t = 2_000_000)]
    keys: u64,
    /// Checkpoints taken.
    #[arg(long, default_value_t = 30)]
    checkpoints: u64,
    /// Percent of the keys changed between two checkpoints.
    #[arg(long, default_value_t = 5.0)]
    changed: f64,
    /// Checkpoints retained.
    #[arg(long, default_value_t = 10)]
    retain: usize,
    /// The incremental policy: each key group is written whole once in
    /// this many checkpoints.
    #[arg(long, default_value_t = IncrementalPolicy::default().rewrite_every)]
    rewrite_every: u64,
    /// The incremental policy: most delta bytes a restore reads, over the
    /// whole sections' bytes it reads.
    #[arg(long, default_value_t = IncrementalPolicy::default().max_delta_ratio)]
    max_delta_ratio: f64,
}

const PARALLELISM: usize = 2;
const NEW_PARALLELISM: usize = 3;
const VALUE_BYTES: usize = 56;

#[derive(Checkpointed, Default)]
struct Store {
    #[state(keyed)]
    values: KeyedValue<u64, ByteBuf>,
}

fn assigner() -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(128).expect("valid"))
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}

fn value(k: u64, version: u64) -> ByteBuf {
    let mut v = Vec::with_capacity(VALUE_BYTES);
    let mut x = mix(k ^ version.rotate_left(17)) | 1;
    while v.len() < VALUE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes()[..(VALUE_BYTES - v.len()).min(8)]);
    }
    ByteBuf::from(v)
}

/// The two subtasks' state and the keys it holds.
struct Job {
    ops: Vec<Store>,
    /// Key indices `live.0 .. live.1` are in the state (key = mix(index)).
    live: (u64, u64),
}

impl Job {
    fn new(keys: u64) -> Self {
        let a = assigner();
        let mut ops: Vec<Store> = (0..PARALLELISM)
            .map(|i| {
                let mut op = Store::default();
                op.bind_keyed(a, a.range_for_subtask(PARALLELISM, i).expect("valid"))
                    .expect("bind");
                op
            })
            .collect();
        for i in 0..keys {
            let k = mix(i);
            ops[owner(k)].values.insert(k, value(k, 0)).expect("owned");
        }
        Self {
            ops,
            live: (0, keys),
        }
    }

    /// Changes `percent` of the keys for checkpoint `step`: updates spread
    /// over all keys, and one in twenty as a removal of the oldest key and
    /// an insert of a new one.
    fn change(&mut self, step: u64, percent: f64) {
        let (lo, hi) = self.live;
        let n = hi - lo;
        let changes = (n as f64 * percent / 100.0) as u64;
        let turnover = changes / 20;
        for j in 0..changes - turnover {
            let i = lo + mix(step * 1_000_003 + j) % n;
            let k = mix(i);
            self.ops[owner(k)]
                .values
                .insert(k, value(k, step))
                .expect("owned");
        }
        for i in lo..lo + turnover {
            let k = mix(i);
            self.ops[owner(k)].values.remove(k).expect("owned");
        }
        for i in hi..hi + turnover {
            let k = mix(i);
            self.ops[owner(k)]
                .values
                .insert(k, value(k, step))
                .expect("owned");
        }
        self.live = (lo + turnover, hi + turnover);
    }
}

fn owner(k: u64) -> usize {
    let kg = assigner().key_group(&k).expect("u64 keys");
    (0..PARALLELISM)
        .find(|&i| {
            assigner()
                .range_for_subtask(PARALLELISM, i)
                .expect("valid")
                .contains(kg)
        })
        .expect("an owner")
}

/// What one way of checkpointing cost.
#[derive(Default)]
struct Figures {
    /// Per checkpoint, the longest pause of a subtask.
    pauses: Vec<Duration>,
    /// Per checkpoint, the payload bytes written.
    written: Vec<u64>,
    /// Time spent changing the state between checkpoints (with the changes
    /// recorded, in the incremental run).
    changing: Duration,
    /// Bytes of every file on disk after the last retention.
    on_disk: u64,
    /// The most bytes on disk after a retention, once `--retain`
    /// checkpoints exist.
    peak_disk: u64,
    /// Restore of the last checkpoint at parallelism 3.
    restore: Duration,
    restore_read: u64,
}

fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for folder in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(folder.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            total += file.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

fn run(args: &Args, incremental: bool, dir: &Path) -> Result<Figures, StateError> {
    let storage = LocalStorage::open(dir)?;
    let mut job = Job::new(args.keys);
    let mut figures = Figures::default();
    let mut previous: Vec<Option<SubtaskFile>> = vec![None; PARALLELISM];
    let policy = IncrementalPolicy {
        rewrite_every: args.rewrite_every,
        max_delta_ratio: args.max_delta_ratio,
    };
    // The most bytes on disk after any retention.
    let mut peak_disk = 0;
    for id in 1..=args.checkpoints {
        if id > 1 {
            let t = Instant::now();
            job.change(id, args.changed);
            figures.changing += t.elapsed();
        }
        storage.begin(id)?;
        let mut files = Vec::new();
        let mut pause = Duration::ZERO;
        for (i, op) in job.ops.iter().enumerate() {
            let file = if incremental {
                let t = Instant::now();
                let captured = op.capture_tracking_changes()?;
                pause = pause.max(t.elapsed());
                write_subtask_incremental(
                    &storage,
                    id,
                    0,
                    "store",
                    i,
                    &captured,
                    previous[i].as_ref(),
                    &policy,
                )?
            } else {
                let t = Instant::now();
                let file = write_subtask(&storage, id, 0, "store", i, op)?;
                pause = pause.max(t.elapsed());
                file
            };
            previous[i] = Some(file.clone());
            files.push(file);
        }
        commit_checkpoint(&storage, id, &[("store", &files)])?;
        storage.retain_last(args.retain, &referenced_files)?;
        if id >= args.retain as u64 {
            peak_disk = peak_disk.max(disk_bytes(dir));
        }
        figures.pauses.push(pause);
        figures
            .written
            .push(files.iter().map(|f| f.payload_len()).sum());
    }
    figures.on_disk = disk_bytes(dir);
    figures.peak_disk = peak_disk;
    let stored = StoredCheckpoint::latest(&storage)?.expect("committed");
    let before = storage.read_stats();
    let t = Instant::now();
    let restored: Vec<Store> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..NEW_PARALLELISM)
            .map(|j| {
                let stored = &stored;
                scope.spawn(move || -> Result<Store, StateError> {
                    let mut op = Store::default();
                    stored
                        .operator("store")?
                        .restore_into(&mut op, j, NEW_PARALLELISM)?;
                    Ok(op)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("restore thread"))
            .collect::<Result<_, _>>()
    })?;
    figures.restore = t.elapsed();
    figures.restore_read = storage.read_stats().since(before).data_bytes;
    let live: usize = job.ops.iter().map(|o| o.values.len()).sum();
    let back: usize = restored.iter().map(|o| o.values.len()).sum();
    let mismatch = restored
        .iter()
        .flat_map(|o| o.values.iter())
        .find(|(k, v)| job.ops[owner(**k)].values.get(*k).ok().flatten() != Some(*v));
    if back != live || mismatch.is_some() {
        return Err(StateError::InvalidOperators {
            reason: format!(
                "the restore differs from the live state: {back} of {live} keys, first difference {:?}",
                mismatch.map(|(k, _)| *k)
            ),
        });
    }
    Ok(figures)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.checkpoints < 2 || args.retain == 0 {
        eprintln!("--checkpoints must be at least 2 and --retain at least 1");
        return ExitCode::FAILURE;
    }
    let root = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temporary folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} keys of {VALUE_BYTES}-byte values at parallelism {PARALLELISM}, {} checkpoints, {}% of keys changed between two, last {} retained, each key group whole once in {} checkpoints, restore reads within 1 + {} of the whole sections",
        args.keys,
        args.checkpoints,
        args.changed,
        args.retain,
        args.rewrite_every,
        args.max_delta_ratio
    );
    let full = run(&args, false, &root.path().join("full"));
    let inc = full
        .as_ref()
        .ok()
        .map(|_| run(&args, true, &root.path().join("incremental")));
    let inc = inc.unwrap_or_else(|| Ok(Figures::default()));
    let (full, inc) = match (full, inc) {
        (Ok(f), Ok(i)) => (f, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let full_size = *full.written.last().expect("checkpoints");
    let logical = full_size * args.retain.min(args.checkpoints as usize) as u64;
    // The first checkpoint is full in both runs: compare the later ones.
    let later = |f: &Figures| f.written[1..].iter().sum::<u64>() / (f.written.len() as u64 - 1);
    let pause = |f: &Figures| median(f.pauses[1..].to_vec());
    println!();
    println!("                          full (sync)   incremental   ratio");
    println!(
        "pause per checkpoint      {:>10.1?}  {:>10.1?}     {:.4}  (median of the subtasks' longest)",
        pause(&full),
        pause(&inc),
        pause(&inc).as_secs_f64() / pause(&full).as_secs_f64()
    );
    println!(
        "state updates, in all     {:>10.1?}  {:>10.1?}     {:.3}  (the incremental run records each changed key)",
        full.changing,
        inc.changing,
        inc.changing.as_secs_f64() / full.changing.as_secs_f64()
    );
    println!(
        "bytes written per chk     {:>8.1} MiB  {:>8.1} MiB   {:.3}",
        mib(later(&full)),
        mib(later(&inc)),
        later(&inc) as f64 / later(&full) as f64
    );
    println!(
        "on disk, at the end       {:>8.1} MiB  {:>8.1} MiB   {:.3}  (over their logical size, {:.1} MiB: full {:.3}, incremental {:.3})",
        mib(full.on_disk),
        mib(inc.on_disk),
        inc.on_disk as f64 / full.on_disk as f64,
        mib(logical),
        full.on_disk as f64 / logical as f64,
        inc.on_disk as f64 / logical as f64
    );
    println!(
        "on disk, peak             {:>8.1} MiB  {:>8.1} MiB   {:.3}  (over the logical size: full {:.3}, incremental {:.3})",
        mib(full.peak_disk),
        mib(inc.peak_disk),
        inc.peak_disk as f64 / full.peak_disk as f64,
        full.peak_disk as f64 / logical as f64,
        inc.peak_disk as f64 / logical as f64
    );
    println!(
        "restore 2 -> 3 reads      {:>8.1} MiB  {:>8.1} MiB   {:.3}  (read amplification: bytes read over a full checkpoint's)",
        mib(full.restore_read),
        mib(inc.restore_read),
        inc.restore_read as f64 / full.restore_read as f64
    );
    println!(
        "restore 2 -> 3 time       {:>10.1?}  {:>10.1?}     {:.3}",
        full.restore,
        inc.restore,
        inc.restore.as_secs_f64() / full.restore.as_secs_f64()
    );
    let fulls = inc
        .written
        .iter()
        .filter(|&&w| w as f64 > 0.5 * full_size as f64)
        .count();
    println!();
    println!(
        "incremental: {fulls} of {} checkpoints wrote more than half a full one (the first is full)",
        args.checkpoints
    );
    println!("verified: both restores equal the live state, key by key");
    ExitCode::SUCCESS
}
