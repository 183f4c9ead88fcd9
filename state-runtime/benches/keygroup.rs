//! Key -> key group over 10 million keys, `i64` and 12-character `String`
//! keys, native and Flink-compatible modes, with a plain `encode_utf16` Java
//! string hash as the in-run baseline.
//!
//! `cargo bench --bench keygroup`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};

const KEYS: usize = 10_000_000;

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

fn bench(c: &mut Criterion) {
    let max_p = MaxParallelism::new(128).unwrap();
    let native = KeyGroupAssigner::native(max_p);
    let flink = KeyGroupAssigner::flink(max_p);
    let ints = keys_i64();
    let strings = keys_string();

    let mut g = c.benchmark_group("key_group_10M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(KEYS as u64));

    for (name, assigner) in [("native", native), ("flink", flink)] {
        g.bench_function(format!("{name}/i64"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &ints {
                    acc = acc.wrapping_add(assigner.key_group(k).unwrap());
                }
                black_box(acc)
            })
        });
        g.bench_function(format!("{name}/string12"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &strings {
                    acc = acc.wrapping_add(assigner.key_group(k).unwrap());
                }
                black_box(acc)
            })
        });
    }
    // Floor: touch every string once (its length and first byte), no hashing.
    g.bench_function("floor_read_strings/string12", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in &strings {
                acc = acc.wrapping_add(k.len() as u32 + k.as_bytes()[0] as u32);
            }
            black_box(acc)
        })
    });
    // Baseline: the straightforward Java string hash over encode_utf16.
    g.bench_function("baseline_encode_utf16/string12", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in &strings {
                let h = k
                    .encode_utf16()
                    .fold(0u32, |h, u| h.wrapping_mul(31).wrapping_add(u as u32));
                let kg = (state_runtime::flink::murmur_hash(h as i32) as u32) % 128;
                acc = acc.wrapping_add(kg);
            }
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
