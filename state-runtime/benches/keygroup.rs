//! Key -> key group over 10 million keys, `i64` and 12-character `String`
//! keys, native and Flink-compatible modes, with a plain `encode_utf16` Java
//! string hash as the in-run baseline and a floor (touch each string once).
//! Each mode and key type is measured key by key
//! (`KeyGroupAssigner::key_group`, results summed) and as batches
//! (`KeyGroupAssigner::key_groups_into` over 1024 keys at a time into a reused
//! buffer, results summed), as a router that takes events in batches uses it.
//! A batch of strings prefetches the strings ahead of the one it hashes
//! (`StableHash::prefetch`); key by key cannot look ahead. One more workload
//! routes events keyed by the same strings a batch at a time
//! (`event_key_groups_into`, as the job runner does), and three read the
//! strings in shuffled order (`string12-scattered`: each string's bytes far
//! from its neighbours', as once an allocator reuses freed memory), where
//! the hardware prefetcher cannot follow the bytes.
//!
//! After criterion's report, `cargo bench` prints a summary: every workload
//! run in turn, nine rounds, each keeping its fastest round, so that load
//! from other processes on a shared machine skews no workload more than the
//! others. `cargo bench -p state-runtime --bench keygroup -- summary` prints
//! only the summary (the filter matches no criterion benchmark).
//!
//! `cargo bench -p state-runtime --bench keygroup`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};

const KEYS: usize = 10_000_000;
/// Keys per call of the batch API.
const BATCH: usize = 1024;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn keys_i64() -> Vec<i64> {
    let mut s = 1;
    (0..KEYS).map(|_| splitmix(&mut s) as i64).collect()
}

/// 12-character alphanumeric strings, each its own heap allocation.
fn keys_string() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut s = 2;
    (0..KEYS)
        .map(|_| {
            let r = splitmix(&mut s);
            (0..12)
                .map(|i| ALPHABET[((r >> (i * 5)) % ALPHABET.len() as u64) as usize] as char)
                .collect()
        })
        .collect()
}

/// An event keyed by a 12-character string, as the job runner routes them
/// (`KeyGroupAssigner::event_key_groups_into`).
#[derive(state_runtime::Keyed)]
struct Visit {
    #[key]
    visitor: String,
    #[allow(dead_code)] // payload: only makes the event bigger than its key
    pages: u64,
}

/// Sum of the key groups of events, a batch at a time.
fn batched_events(assigner: KeyGroupAssigner, events: &[Visit]) -> u32 {
    sum_batches(events, |batch, out| {
        assigner.event_key_groups_into(batch, out)
    })
}

/// An event per key, each with its own copy of the string.
fn visits(strings: &[String]) -> Vec<Visit> {
    strings
        .iter()
        .enumerate()
        .map(|(i, s)| Visit {
            visitor: s.clone(),
            pages: i as u64,
        })
        .collect()
}

/// Sum of the key groups, key by key.
fn per_key<K: state_runtime::hash::StateKey>(assigner: KeyGroupAssigner, keys: &[K]) -> u32 {
    let mut acc = 0u32;
    for k in keys {
        acc = acc.wrapping_add(assigner.key_group(k).unwrap());
    }
    acc
}

/// Sum of the key groups, a batch at a time.
fn batched<K: state_runtime::hash::StateKey>(assigner: KeyGroupAssigner, keys: &[K]) -> u32 {
    sum_batches(keys, |batch, out| assigner.key_groups_into(batch, out))
}

/// Sum of the key groups `assign` appends, `BATCH` items at a time into a
/// reused buffer.
fn sum_batches<T>(
    items: &[T],
    assign: impl Fn(&[T], &mut Vec<u32>) -> Result<(), state_runtime::StateError>,
) -> u32 {
    let mut out = Vec::with_capacity(BATCH);
    let mut acc = 0u32;
    for batch in items.chunks(BATCH) {
        out.clear();
        assign(batch, &mut out).unwrap();
        acc = out.iter().fold(acc, |a, &kg| a.wrapping_add(kg));
    }
    acc
}

/// Touch every string once (its length and first byte), no hashing.
fn floor_read_strings(keys: &[String]) -> u32 {
    let mut acc = 0u32;
    for k in keys {
        acc = acc.wrapping_add(k.len() as u32 + k.as_bytes()[0] as u32);
    }
    acc
}

/// The straightforward Java string hash over `encode_utf16`, then murmur.
fn baseline_encode_utf16(keys: &[String]) -> u32 {
    let mut acc = 0u32;
    for k in keys {
        let h = k
            .encode_utf16()
            .fold(0u32, |h, u| h.wrapping_mul(31).wrapping_add(u as u32));
        let kg = (state_runtime::hash::murmur_hash(h as i32) as u32) % 128;
        acc = acc.wrapping_add(kg);
    }
    acc
}

type Workload<'a> = (String, Box<dyn Fn() -> u32 + 'a>);

/// Every key set the workloads read.
struct Keys {
    ints: Vec<i64>,
    strings: Vec<String>,
    /// The same strings, their vector shuffled after allocation: each
    /// string's bytes are far from its neighbours', as after an allocator
    /// has reused freed memory for a while.
    scattered: Vec<String>,
    events: Vec<Visit>,
}

fn keys() -> Keys {
    let strings = keys_string();
    let mut scattered = strings.clone();
    let mut s = 3;
    for i in (1..scattered.len()).rev() {
        let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
        scattered.swap(i, j);
    }
    Keys {
        ints: keys_i64(),
        events: visits(&strings),
        strings,
        scattered,
    }
}

fn workloads(keys: &Keys) -> Vec<Workload<'_>> {
    let Keys {
        ints,
        strings,
        scattered,
        events,
    } = keys;
    let max_p = MaxParallelism::new(128).unwrap();
    let mut w: Vec<Workload<'_>> = Vec::new();
    for (name, a) in [
        ("native", KeyGroupAssigner::native(max_p)),
        ("flink", KeyGroupAssigner::flink(max_p)),
    ] {
        w.push((format!("{name}/i64"), Box::new(move || per_key(a, ints))));
        w.push((
            format!("{name}/i64/batch"),
            Box::new(move || batched(a, ints)),
        ));
        w.push((
            format!("{name}/string12"),
            Box::new(move || per_key(a, strings)),
        ));
        w.push((
            format!("{name}/string12/batch"),
            Box::new(move || batched(a, strings)),
        ));
    }
    let native = KeyGroupAssigner::native(max_p);
    w.push((
        "native/string12/event-batch".into(),
        Box::new(move || batched_events(native, events)),
    ));
    w.push((
        "floor_read_strings/string12".into(),
        Box::new(move || floor_read_strings(strings)),
    ));
    w.push((
        "baseline_encode_utf16/string12".into(),
        Box::new(move || baseline_encode_utf16(strings)),
    ));
    w.push((
        "native/string12-scattered".into(),
        Box::new(move || per_key(native, scattered)),
    ));
    w.push((
        "native/string12-scattered/batch".into(),
        Box::new(move || batched(native, scattered)),
    ));
    w.push((
        "floor_read_strings/string12-scattered".into(),
        Box::new(move || floor_read_strings(scattered)),
    ));
    w
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("key_group_10M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(KEYS as u64));
    for (name, f) in workloads(&keys) {
        g.bench_function(name, |b| b.iter(|| black_box(f())));
    }
    g.finish();
}

/// Every workload in turn, `ROUNDS` times; each keeps its fastest round.
fn interleaved_summary() {
    const ROUNDS: usize = 9;
    let keys = keys();
    let work = workloads(&keys);
    let mut best = vec![Duration::MAX; work.len()];
    for _ in 0..ROUNDS {
        for (b, (_, f)) in best.iter_mut().zip(&work) {
            let start = Instant::now();
            black_box(f());
            *b = (*b).min(start.elapsed());
        }
    }
    println!(
        "\nkey -> key group, {KEYS} keys, max parallelism 128, best of {ROUNDS} interleaved rounds:"
    );
    // Reading the strings is bound by this machine's memory, which other
    // processes share: string workloads also print their ratio to the floor
    // of their key set (the name's second part) measured in the same rounds.
    let key_set = |name: &str| name.split('/').nth(1).unwrap_or("").to_owned();
    let floor_of = |set: &str| {
        work.iter()
            .zip(&best)
            .find(|((name, _), _)| name.starts_with("floor") && key_set(name) == set)
            .map(|(_, b)| b.as_secs_f64())
    };
    for ((name, _), b) in work.iter().zip(&best) {
        let ratio = match floor_of(&key_set(name)) {
            Some(floor) if !name.starts_with("floor") => {
                format!("  {:.2}x floor", b.as_secs_f64() / floor)
            }
            _ => String::new(),
        };
        println!(
            "  {name:<40} {:>6.2} ns/key{ratio}",
            b.as_secs_f64() * 1e9 / KEYS as f64
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    if std::env::args().any(|a| a == "--bench") {
        interleaved_summary();
    }
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
