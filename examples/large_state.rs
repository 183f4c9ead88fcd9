//! State at real sizes: a durable checkpoint of about a gibibyte of keyed
//! state and its restore at a rescale, each against the physical limit
//! measured in the same run; peak memory while checkpointing; and the cost
//! of a restore per entry at several key-group sizes.
//!
//! ```sh
//! cargo run --release --example large_state -- --gib 1
//! cargo run --release --example large_state -- --gib 0.25 --dir /mnt/fast/scratch
//! ```
//!
//! The state is a `KeyedValue<u64, V>` of 56-byte values (`V` is a
//! `serde_bytes::ByteBuf` by default, `--value vec` for a `Vec<u8>`) at
//! parallelism 2 with max parallelism 128, about 15.6 million keys per
//! gibibyte of payload. The run:
//!
//! 1. writes as many bytes as the checkpoint will hold with
//!    `dd conv=fdatasync` in the same folder: the disk's write limit;
//! 2. builds the two subtasks' state (both cores) and notes the resident
//!    memory;
//! 3. checkpoints them durably, each subtask streaming into its data file
//!    on its own thread, as the runner does, and reports the throughput, its
//!    ratio to `dd`, and the peak resident memory over the live state;
//! 4. drops the state and the page cache (it says so when it cannot) and
//!    reads the checkpoint's files cold: the disk's read limit;
//! 5. drops the page cache again and restores at parallelism 3, the three
//!    new subtasks on their own threads, checks every restored value, and
//!    reports the throughput and its ratio to the cold read;
//! 6. writes as many fresh bytes as the restored state holds resident,
//!    a page at a time on both cores: the kernel's cost of the memory a
//!    restore fills;
//! 7. restores one key group of 1k to 10M `u64 -> u64` entries, from
//!    memory, into the same key group and re-bucketed (max parallelism 1 ->
//!    4), per entry, beside a `HashMap` filled with the same entries;
//! 8. encodes and decodes 56-byte values as `Vec<u8>` and as
//!    `serde_bytes::ByteBuf`, per value.
//!
//! Not part of the tests: it needs a few gigabytes of memory and disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde::{Serialize, de::DeserializeOwned};
use state_runtime::checkpoint::durable::{StoredCheckpoint, commit_checkpoint, write_subtask};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage};

#[derive(Parser, Debug)]
#[command(about = "Checkpoint and restore a gibibyte of keyed state against the disk's limits")]
struct Args {
    /// Payload of the checkpoint, in GiB (about 15.6M keys per GiB).
    #[arg(long, default_value_t = 1.0)]
    gib: f64,
    /// Folder for the checkpoint and the dd file (default: a new folder under
    /// the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How the 56-byte values are declared.
    #[arg(long, value_enum, default_value_t = ValueKind::Bytes)]
    value: ValueKind,
    /// Largest key group of the per-entry restore table.
    #[arg(long, default_value_t = 10_000_000)]
    max_entries: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ValueKind {
    /// `serde_bytes::ByteBuf`: encoded as a length and the bytes.
    Bytes,
    /// `Vec<u8>`: serde encodes it byte by byte.
    Vec,
}

const VALUE_BYTES: usize = 56;
const OLD_PARALLELISM: usize = 2;
const NEW_PARALLELISM: u32 = 3;

/// A value type of the benchmark.
trait Value: Serialize + DeserializeOwned + Send + Sync + 'static {
    fn of(bytes: Vec<u8>) -> Self;
    fn is(&self, bytes: &[u8]) -> bool;
    fn bytes(&self) -> &[u8];
}

impl Value for Vec<u8> {
    fn of(bytes: Vec<u8>) -> Self {
        bytes
    }
    fn is(&self, bytes: &[u8]) -> bool {
        self == bytes
    }
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Value for serde_bytes::ByteBuf {
    fn of(bytes: Vec<u8>) -> Self {
        serde_bytes::ByteBuf::from(bytes)
    }
    fn is(&self, bytes: &[u8]) -> bool {
        self.as_slice() == bytes
    }
    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }
}

#[derive(Checkpointed)]
struct Store<V: Value> {
    #[state(keyed)]
    values: KeyedValue<u64, V>,
}

impl<V: Value> Default for Store<V> {
    fn default() -> Self {
        Self {
            values: KeyedValue::default(),
        }
    }
}

/// The value of key `k`: 56 bytes that depend on it.
fn value_bytes(k: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(VALUE_BYTES);
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < VALUE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes()[..(VALUE_BYTES - v.len()).min(8)]);
    }
    v
}

/// Keys are spread over the whole u64 range (an invertible mix of 0..n).
fn key(i: u64) -> u64 {
    let x = i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 31)
}

fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The CPU time this process has used so far, user and system (Linux:
/// `/proc/self/stat`, in clock ticks of 10 ms); zero where unknown.
fn cpu_times() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends at the last ')': utime
    // and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = after.split_whitespace().skip(11);
    let mut tick = || {
        let ticks: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        Duration::from_millis(ticks * 10)
    };
    (tick(), tick())
}

/// `cpu_times` since `before`, as "U s user + S s system".
fn cpu_since(before: (Duration, Duration)) -> String {
    let (user, system) = cpu_times();
    format!(
        "{:.2} s user + {:.2} s system",
        (user - before.0).as_secs_f64(),
        (system - before.1).as_secs_f64()
    )
}

/// Hands the memory freed so far back to the kernel (glibc's
/// `malloc_trim`), so that what comes next fills fresh memory, as a restore
/// in a new process does, instead of reusing the pages of a dropped state.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim takes a byte count and only returns
        // free memory of malloc's own heaps to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Copies the bytes of every value of every subtask, in the tables' order
/// (the order a checkpoint reads them), into a reused 8 MiB buffer, one
/// thread per subtask, prefetching ahead as a checkpoint does: what a
/// checkpoint cannot avoid, the reads of values spread over the heap. The
/// time taken and its CPU time.
fn read_every_value<V: Value>(ops: &[Store<V>]) -> (Duration, String) {
    let (start, cpu) = (Instant::now(), cpu_times());
    std::thread::scope(|s| {
        for op in ops {
            s.spawn(move || {
                let mut buffer = Vec::with_capacity(8 << 20);
                // The value 12 places ahead is prefetched, as the
                // checkpoint's encoding does.
                let mut ahead = op.values.iter().skip(12);
                for (key, value) in op.values.iter() {
                    if let Some((_, next)) = ahead.next() {
                        prefetch(next.bytes().as_ptr());
                    }
                    if buffer.len() + 8 + VALUE_BYTES > buffer.capacity() {
                        std::hint::black_box(&buffer);
                        buffer.clear();
                    }
                    buffer.extend_from_slice(&key.to_le_bytes());
                    buffer.extend_from_slice(value.bytes());
                }
                std::hint::black_box(&buffer);
            });
        }
    });
    (start.elapsed(), cpu_since(cpu))
}

/// Asks the CPU to fetch the memory at `p` (a hint: it never faults).
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Writes one byte in every 4 KiB page of `bytes` bytes of fresh memory,
/// split over `OLD_PARALLELISM` threads: the kernel's page faults for
/// memory as large as a restored state. The time taken and its CPU time.
fn touch_fresh_memory(bytes: usize) -> (Duration, String) {
    let (start, cpu) = (Instant::now(), cpu_times());
    std::thread::scope(|s| {
        for _ in 0..OLD_PARALLELISM {
            s.spawn(|| {
                // A zeroed allocation this large is mapped, not written:
                // its pages are faulted in by the writes below.
                let mut fresh = vec![0u8; bytes / OLD_PARALLELISM];
                for i in (0..fresh.len()).step_by(4096) {
                    fresh[i] = 1;
                }
                std::hint::black_box(&fresh);
            });
        }
    });
    (start.elapsed(), cpu_since(cpu))
}

fn rss() -> u64 {
    proc_status("VmRSS:").unwrap_or(0)
}

/// Resets the peak resident memory (Linux: `5` into `clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_rss() -> u64 {
    proc_status("VmHWM:").unwrap_or(0)
}

/// Drops the page cache, if this process may.
fn drop_page_cache() -> Result<(), String> {
    let sync = std::process::Command::new("sync").status();
    if !sync.is_ok_and(|s| s.success()) {
        return Err("`sync` failed".into());
    }
    std::fs::write("/proc/sys/vm/drop_caches", "1")
        .map_err(|e| format!("writing /proc/sys/vm/drop_caches: {e}"))
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// `dd if=/dev/zero of=<dir>/dd.tmp bs=8M count=<n> conv=fdatasync`, timed,
/// with `oflag=direct` too if `direct` (past the page cache, as the
/// checkpoint writes where the file system allows it).
fn dd_write(dir: &Path, bytes: u64, direct: bool) -> Result<(u64, Duration), String> {
    let file = dir.join("dd.tmp");
    let count = bytes.div_ceil(8 << 20).max(1);
    let start = Instant::now();
    let out = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=8M", &format!("count={count}"), "conv=fdatasync"])
        .args(direct.then_some("oflag=direct"))
        .output()
        .map_err(|e| format!("running dd: {e}"))?;
    let took = start.elapsed();
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(format!(
            "dd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((count * (8 << 20), took))
}

/// Reads every file under `dir` sequentially in 8 MiB reads.
fn read_all(dir: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let mut f = std::fs::File::open(&path)?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        }
    }
    Ok(total)
}

/// Subtask `subtask`'s state: every key of `0..keys` in its key groups.
fn build<V: Value>(assigner: KeyGroupAssigner, subtask: usize, keys: u64) -> Store<V> {
    let range = assigner
        .range_for_subtask(OLD_PARALLELISM, subtask)
        .expect("valid subtask");
    let mut store = Store::<V>::default();
    store.bind_keyed(assigner, range).expect("bind");
    for i in 0..keys {
        let k = key(i);
        if range.contains(assigner.key_group(&k).expect("u64 keys")) {
            store
                .values
                .insert(k, V::of(value_bytes(k)))
                .expect("owned key");
        }
    }
    store
}

fn run<V: Value>(args: &Args, dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    // A key varint of 9 bytes, a length byte and the value.
    let entry_bytes = 9 + 1 + VALUE_BYTES as u64;
    let payload_target = (args.gib * (1u64 << 30) as f64) as u64;
    let keys = payload_target / entry_bytes;
    let assigner = KeyGroupAssigner::native(MaxParallelism::DEFAULT);
    println!(
        "large_state: {:.2} GiB of keyed state, {:.1}M keys of u64 -> 56-byte {}, parallelism {OLD_PARALLELISM} -> {NEW_PARALLELISM}, max parallelism {}",
        args.gib,
        keys as f64 / 1e6,
        match args.value {
            ValueKind::Bytes => "serde_bytes::ByteBuf",
            ValueKind::Vec => "Vec<u8>",
        },
        assigner.max_parallelism().get(),
    );
    println!("  folder {}", dir.display());

    // 1. The disk's write limit.
    let dd = dd_write(dir, payload_target, false);
    let dd_direct = dd_write(dir, payload_target, true);
    for (dd, how) in [
        (&dd, "conv=fdatasync"),
        (&dd_direct, "oflag=direct conv=fdatasync"),
    ] {
        match dd {
            Ok((bytes, took)) => println!(
                "disk write: dd {how} {:.2} GB in {:.2} s = {:.0} MB/s",
                gb(*bytes),
                took.as_secs_f64(),
                mb_per_s(*bytes, *took)
            ),
            Err(e) => println!("disk write ({how}): {e}"),
        }
    }

    // 2. The live state.
    let rss_empty = rss();
    let start = Instant::now();
    let ops: Vec<Store<V>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..OLD_PARALLELISM)
            .map(|i| s.spawn(move || build::<V>(assigner, i, keys)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("builder"))
            .collect()
    });
    let live = rss().saturating_sub(rss_empty);
    println!(
        "state: {} entries built in {:.1} s, {:.2} GB resident",
        ops.iter().map(|o| o.values.len()).sum::<usize>(),
        start.elapsed().as_secs_f64(),
        gb(live)
    );

    // 3. The durable checkpoint, each subtask streaming on its own thread.
    let storage = LocalStorage::open(dir.join("checkpoints"))?;
    let peak_known = reset_peak_rss();
    let rss_before = rss();
    let (start, cpu) = (Instant::now(), cpu_times());
    storage.begin(1)?;
    let files = std::thread::scope(|s| {
        let handles: Vec<_> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let storage = &storage;
                s.spawn(move || write_subtask(storage, 1, 0, "store", i, op))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let report = commit_checkpoint(&storage, 1, &[("store", &files)])?;
    let took = start.elapsed();
    let payload = report.payload_bytes;
    let cp_rate = mb_per_s(payload, took);
    print!(
        "checkpoint: {:.2} GB (encode, write, fsync, commit) in {:.2} s = {cp_rate:.0} MB/s ({})",
        gb(payload),
        took.as_secs_f64(),
        cpu_since(cpu)
    );
    for (dd, how) in [(&dd, "dd"), (&dd_direct, "dd oflag=direct")] {
        if let Ok((bytes, t)) = dd {
            print!(" = {:.2} x {how}", cp_rate / mb_per_s(*bytes, *t));
        }
    }
    println!();
    if peak_known {
        let peak = peak_rss();
        println!(
            "  peak resident memory while checkpointing {:.3} GB over {:.3} GB before: {:.3} x (+{:.1} MB)",
            gb(peak),
            gb(rss_before),
            peak as f64 / rss_before as f64,
            (peak.saturating_sub(rss_before)) as f64 / 1e6
        );
    } else {
        println!("  peak resident memory: cannot reset the high-water mark here");
    }
    let (floor, floor_cpu) = read_every_value(&ops);
    println!(
        "  memory floor: copying every value's bytes in the tables' order, one thread per subtask, takes {:.2} s ({floor_cpu}) = {:.2} x the checkpoint's time",
        floor.as_secs_f64(),
        floor.as_secs_f64() / took.as_secs_f64()
    );
    drop(ops);
    release_freed_memory();

    // 4. A cold read of the checkpoint's files.
    let cold = match drop_page_cache() {
        Ok(()) => "cold (page cache dropped)".to_owned(),
        Err(e) => format!("WARM: could not drop the page cache ({e})"),
    };
    let (start, cpu) = (Instant::now(), cpu_times());
    let read = read_all(&dir.join("checkpoints").join("chk-1"))?;
    let read_took = start.elapsed();
    let read_rate = mb_per_s(read, read_took);
    println!(
        "disk read: {cold}, sequential read of the checkpoint's files {:.2} GB in {:.2} s = {read_rate:.0} MB/s ({})",
        gb(read),
        read_took.as_secs_f64(),
        cpu_since(cpu)
    );

    // 5. The restore at parallelism 3, each new subtask on its own thread:
    // from a cold page cache, then (to tell the disk from the CPU) warm.
    let _ = drop_page_cache();
    let (cpu, rss_before_restore) = (cpu_times(), rss());
    let (restored, took) = restore::<V>(&storage)?;
    let restore_cpu = cpu_since(cpu);
    let restored_rss = rss().saturating_sub(rss_before_restore);
    let bytes_read: u64 = restored.iter().map(|(_, b)| b).sum();
    let rate = mb_per_s(bytes_read, took);
    println!(
        "restore {OLD_PARALLELISM} -> {NEW_PARALLELISM}: {:.2} GB read in {:.2} s = {rate:.0} MB/s = {:.2} x the cold read ({restore_cpu})",
        gb(bytes_read),
        took.as_secs_f64(),
        rate / read_rate
    );
    let mut entries = 0u64;
    let mut wrong = 0u64;
    for (store, _) in &restored {
        for (k, v) in store.values.iter() {
            entries += 1;
            if !v.is(&value_bytes(*k)) {
                wrong += 1;
            }
        }
    }
    let ok = entries == keys && wrong == 0;
    println!(
        "  verified: {entries} of {keys} keys restored, {wrong} wrong values{}",
        if ok { "" } else { "  << MISMATCH" }
    );
    drop(restored);
    release_freed_memory();

    // 6. The machine's cost of fresh memory: as many bytes as the restored
    // state holds resident, written a page at a time on both cores.
    let (touch, touch_cpu) = touch_fresh_memory(restored_rss as usize);
    println!(
        "fresh memory: the restored state holds {:.2} GB resident; writing as many fresh bytes a page at a time on {OLD_PARALLELISM} threads takes {:.2} s ({touch_cpu}) = {:.2} x the restore's time",
        gb(restored_rss),
        touch.as_secs_f64(),
        touch.as_secs_f64() / took.as_secs_f64()
    );
    let (restored, took) = restore::<V>(&storage)?;
    drop(restored);
    println!(
        "  the same restore with the files in the page cache: {:.2} s = {:.0} MB/s",
        took.as_secs_f64(),
        mb_per_s(bytes_read, took)
    );
    Ok(ok)
}

/// Restores the checkpoint at parallelism 3, each new subtask on its own
/// thread: the subtasks' state and bytes read, and the time taken.
#[allow(clippy::type_complexity)]
fn restore<V: Value>(
    storage: &LocalStorage,
) -> Result<(Vec<(Store<V>, u64)>, Duration), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let stored = StoredCheckpoint::latest(storage)?.ok_or("no checkpoint")?;
    let op = stored.operator("store")?;
    let restored: Vec<(Store<V>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..NEW_PARALLELISM as usize)
            .map(|i| {
                let op = &op;
                s.spawn(move || {
                    let mut store = Store::<V>::default();
                    let report = op.restore_into(&mut store, i, NEW_PARALLELISM as usize)?;
                    Ok::<_, StateError>((store, report.bytes_read))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("restorer"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok((restored, start.elapsed()))
}

/// Restores one key group of `n` `u64 -> u64` entries from memory: per
/// entry into its own key group, re-bucketed (max parallelism 1 -> 4), and
/// a `HashMap` filled with the same entries.
fn per_entry_restore(n: u64) -> Result<(f64, f64, f64), StateError> {
    #[derive(Checkpointed, Default)]
    struct One {
        #[state(keyed)]
        values: KeyedValue<u64, u64>,
    }
    let one = KeyGroupAssigner::native(MaxParallelism::new(1)?);
    let mut op = One::default();
    op.bind_keyed(one, one.range_for_subtask(1, 0)?)?;
    for i in 0..n {
        op.values.insert(key(i), i)?;
    }
    let checkpoint = Checkpoint::from_subtasks(vec![op.snapshot()?])?;
    drop(op);
    let time = |options: RestoreOptions, parallelism: usize| -> Result<f64, StateError> {
        let start = Instant::now();
        let mut restored = 0;
        for subtask in 0..parallelism {
            let mut r = One::default();
            checkpoint.restore_into_with(&mut r, subtask, parallelism, &options)?;
            restored += r.values.len() as u64;
        }
        assert_eq!(restored, n);
        Ok(start.elapsed().as_nanos() as f64 / n as f64)
    };
    let same = time(RestoreOptions::default(), 1)?;
    let four = KeyGroupAssigner::native(MaxParallelism::new(4)?);
    let rebucketed = time(RestoreOptions::default().assigner(four), 1)?;
    let start = Instant::now();
    let mut map = HashMap::with_capacity(n as usize);
    for i in 0..n {
        map.insert(key(i), i);
    }
    let hash_map = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(map.len() as u64, n);
    Ok((same, rebucketed, hash_map))
}

/// Snapshot and restore (in memory) of 1M 56-byte values of type `V`, per
/// value.
fn value_codec<V: Value>() -> Result<(f64, f64), StateError> {
    let n = 1_000_000u64;
    let assigner = KeyGroupAssigner::native(MaxParallelism::DEFAULT);
    let mut op = Store::<V>::default();
    op.bind_keyed(assigner, assigner.range_for_subtask(1, 0)?)?;
    for i in 0..n {
        op.values.insert(key(i), V::of(value_bytes(i)))?;
    }
    let start = Instant::now();
    let snap = op.snapshot()?;
    let encode = start.elapsed().as_nanos() as f64 / n as f64;
    let checkpoint = Checkpoint::from_subtasks(vec![snap])?;
    let start = Instant::now();
    let mut r = Store::<V>::default();
    checkpoint.restore_into(&mut r, 0, 1)?;
    let decode = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(r.values.len() as u64, n);
    Ok((encode, decode))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (dir, _temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("large-state-")
                .tempdir()
                .expect("a temporary folder");
            (t.path().to_path_buf(), Some(t))
        }
    };
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    std::fs::create_dir_all(&dir).expect("the folder");
    let ok = match args.value {
        ValueKind::Bytes => run::<serde_bytes::ByteBuf>(&args, &dir),
        ValueKind::Vec => run::<Vec<u8>>(&args, &dir),
    };
    let ok = match ok {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));

    println!("restore per entry, one key group of u64 -> u64 (ns/entry; ratio to the smallest):");
    println!(
        "  {:>10}  {:>16}  {:>16}  {:>14}",
        "entries", "same key group", "re-bucketed 1->4", "HashMap insert"
    );
    let mut first: Option<(f64, f64)> = None;
    let mut n = 1_000;
    while n <= args.max_entries {
        match per_entry_restore(n) {
            Ok((same, re, map)) => {
                let (s0, r0) = *first.get_or_insert((same, re));
                println!(
                    "  {n:>10}  {same:>7.1} ({:>4.2}x)  {re:>7.1} ({:>4.2}x)  {map:>14.1}",
                    same / s0,
                    re / r0
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        n *= 10;
    }

    println!("56-byte values, 1M, in memory (ns/value): snapshot, restore");
    for (name, r) in [
        ("Vec<u8>", value_codec::<Vec<u8>>()),
        (
            "serde_bytes::ByteBuf",
            value_codec::<serde_bytes::ByteBuf>(),
        ),
    ] {
        match r {
            Ok((e, d)) => println!("  {name:<22} {e:>6.1}  {d:>6.1}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
