//! Key -> key group over 10 million keys, `i64` and 12-character `String`
//! keys, native and Flink-compatible modes, with a plain `encode_utf16` Java
//! string hash as the in-run baseline and a floor (touch each string once).
//! Each mode and key type is measured key by key
//! (`KeyGroupAssigner::key_group`, results summed) and as batches
//! (`KeyGroupAssigner::key_groups_into` over 1024 keys at a time into a reused
//! buffer, results summed), as a router that takes events in batches uses it.
//! A batch of strings prefetches the strings ahead of the one it hashes
//! (`StableHash::prefetch`); key by key cannot look ahead.
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
    let mut out = Vec::with_capacity(BATCH);
    let mut acc = 0u32;
    for batch in keys.chunks(BATCH) {
        out.clear();
        assigner.key_groups_into(batch, &mut out).unwrap();
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
        let kg = (state_runtime::flink::murmur_hash(h as i32) as u32) % 128;
        acc = acc.wrapping_add(kg);
    }
    acc
}

type Workload<'a> = (String, Box<dyn Fn() -> u32 + 'a>);

fn workloads<'a>(ints: &'a [i64], strings: &'a [String]) -> Vec<Workload<'a>> {
    let max_p = MaxParallelism::new(128).unwrap();
    let mut w: Vec<Workload<'a>> = Vec::new();
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
    w.push((
        "floor_read_strings/string12".into(),
        Box::new(move || floor_read_strings(strings)),
    ));
    w.push((
        "baseline_encode_utf16/string12".into(),
        Box::new(move || baseline_encode_utf16(strings)),
    ));
    w
}

fn bench(c: &mut Criterion) {
    let (ints, strings) = (keys_i64(), keys_string());
    let mut g = c.benchmark_group("key_group_10M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(KEYS as u64));
    for (name, f) in workloads(&ints, &strings) {
        g.bench_function(name, |b| b.iter(|| black_box(f())));
    }
    g.finish();
}

/// Every workload in turn, `ROUNDS` times; each keeps its fastest round.
fn interleaved_summary() {
    const ROUNDS: usize = 9;
    let (ints, strings) = (keys_i64(), keys_string());
    let work = workloads(&ints, &strings);
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
    // Reading the strings is bound by this machine's memory bandwidth,
    // which other processes share: string workloads also print their ratio
    // to the floor measured in the same rounds.
    let floor = work
        .iter()
        .zip(&best)
        .find(|((name, _), _)| name.starts_with("floor"))
        .map(|(_, b)| b.as_secs_f64());
    for ((name, _), b) in work.iter().zip(&best) {
        let ratio = match floor {
            Some(floor) if name.contains("string") && !name.starts_with("floor") => {
                format!("  {:.2}x floor", b.as_secs_f64() / floor)
            }
            _ => String::new(),
        };
        println!(
            "  {name:<32} {:>6.2} ns/key{ratio}",
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
