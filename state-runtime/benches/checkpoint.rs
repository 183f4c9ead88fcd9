//! Keyed checkpoints against the simplest alternatives, in the same run:
//!
//! * `snapshot_5M/key_group_sections`: `Checkpointed::snapshot` of a
//!   `KeyedValue<u64, i64>` with 5 million keys (128 key groups): entries
//!   in stable-hash order per key group (the order the tables keep them
//!   in), an offsets index. Steady state: snapshotted before, so the
//!   buffer is reserved from the size of the last snapshot.
//!   `snapshot_5M/key_group_sections_cold`: the same state, never
//!   snapshotted before (as on the first checkpoint, or the first after a
//!   restore): no size hint yet. Each sample snapshots a fresh clone (the
//!   clone is not timed).
//!   `snapshot_5M/key_group_sections_1pct_new`: steady state after 1% of the
//!   keys were removed and 1% new keys inserted since the previous snapshot
//!   (the changes are not timed).
//!   `snapshot_5M/one_bincode_blob`: the same entries, held in a plain
//!   `HashMap`, encoded as one bincode blob (no index, no order).
//! * `restore_4_to_3/key_group_ranges`: a 4-instance checkpoint of 5 million
//!   keys restored into 3 instances: each reads and decodes only the key
//!   groups it owns.
//!   `restore_4_to_3/full_reshuffle`: the Bytewax-style alternative: decode
//!   all four blobs, re-hash every key and send it to its new owner.
//!
//! After criterion's report, a summary alternates the steady snapshot and the
//! blob (best of nine each) and prints their throughput ratio; `-- summary`
//! prints only that.
//!
//! `cargo bench -p state-runtime --bench checkpoint`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use state_runtime::prelude::*;

const KEYS: u64 = 5_000_000;

#[derive(Checkpointed, Default, Clone)]
struct Sums {
    #[state(keyed)]
    sums: KeyedValue<u64, i64>,
}

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// One instance holding every key, and the same entries in a `HashMap`.
fn every_key(assigner: KeyGroupAssigner) -> (Sums, HashMap<u64, i64>) {
    let mut all = Sums::default();
    all.bind_keyed(assigner, assigner.max_parallelism().all_key_groups())
        .unwrap();
    let mut plain: HashMap<u64, i64> = HashMap::with_capacity(KEYS as usize);
    for i in 0..KEYS {
        all.sums.insert(key(i), i as i64).unwrap();
        plain.insert(key(i), i as i64);
    }
    (all, plain)
}

fn bench(c: &mut Criterion) {
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
    let config = bincode::config::standard();

    // One instance holding every key.
    let (mut all, mut plain) = every_key(assigner);

    let mut g = c.benchmark_group("snapshot_5M");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(KEYS));
    // First, while `all` has never been snapshotted.
    g.bench_function("key_group_sections_cold", |b| {
        b.iter_batched(
            || all.clone(),
            |fresh| {
                black_box(fresh.snapshot().unwrap().data().len());
                fresh // dropped untimed
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("key_group_sections", |b| {
        b.iter(|| black_box(all.snapshot().unwrap().data().len()))
    });
    g.bench_function("one_bincode_blob", |b| {
        b.iter(|| black_box(bincode::serde::encode_to_vec(&plain, config).unwrap().len()))
    });
    // A window of key indexes slides by 1% between snapshots: the oldest
    // 1% removed, 1% new inserted.
    const CHURN: u64 = KEYS / 100;
    let mut lo = 0;
    g.bench_function("key_group_sections_1pct_new", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                for i in lo..lo + CHURN {
                    all.sums.remove(key(i)).unwrap();
                    all.sums.insert(key(i + KEYS), i as i64).unwrap();
                }
                lo += CHURN;
                let start = Instant::now();
                black_box(all.snapshot().unwrap().data().len());
                timed += start.elapsed();
            }
            timed
        })
    });
    g.finish();
    // The window moved: rebuild `plain` to match `all` for the rest.
    plain = all.sums.iter().map(|(k, v)| (*k, *v)).collect();
    drop(all);

    // Four instances, each with its share, as checkpointed at parallelism 4.
    let mut old: Vec<Sums> = (0..4)
        .map(|i| {
            let mut s = Sums::default();
            s.bind_keyed(assigner, assigner.range_for_subtask(4, i).unwrap())
                .unwrap();
            s
        })
        .collect();
    let mut old_plain: Vec<HashMap<u64, i64>> = vec![HashMap::new(); 4];
    for (k, v) in plain.drain() {
        let owner = assigner
            .subtask_for_key_group(4, assigner.key_group(&k).unwrap())
            .unwrap();
        old[owner].sums.insert(k, v).unwrap();
        old_plain[owner].insert(k, v);
    }
    let checkpoint =
        Checkpoint::from_subtasks(old.iter().map(|s| s.snapshot().unwrap()).collect()).unwrap();
    drop(old);
    let blobs: Vec<Vec<u8>> = old_plain
        .iter()
        .map(|m| bincode::serde::encode_to_vec(m, config).unwrap())
        .collect();
    drop(old_plain);

    let mut g = c.benchmark_group("restore_4_to_3");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(KEYS));
    g.bench_function("key_group_ranges", |b| {
        b.iter(|| {
            let mut total = 0;
            for j in 0..3 {
                let mut s = Sums::default();
                checkpoint.restore_into(&mut s, j, 3).unwrap();
                total += s.sums.len();
            }
            assert_eq!(total as u64, KEYS);
            black_box(total)
        })
    });
    g.bench_function("full_reshuffle", |b| {
        b.iter(|| {
            let mut new: Vec<HashMap<u64, i64>> = vec![HashMap::new(); 3];
            for blob in &blobs {
                let (m, _): (HashMap<u64, i64>, usize) =
                    bincode::serde::decode_from_slice(blob, config).unwrap();
                for (k, v) in m {
                    let owner = assigner
                        .subtask_for_key_group(3, assigner.key_group(&k).unwrap())
                        .unwrap();
                    new[owner].insert(k, v);
                }
            }
            let total: usize = new.iter().map(HashMap::len).sum();
            assert_eq!(total as u64, KEYS);
            black_box(total)
        })
    });
    g.finish();
}

/// The steady-state snapshot and the blob alternate, nine rounds, each
/// keeping its fastest, so that load from other processes on a shared
/// machine skews neither side. Printed after criterion's report, under
/// `cargo bench` only; `-- summary` prints only this (the filter matches no
/// criterion benchmark).
fn interleaved_snapshot_ratio() {
    const ROUNDS: usize = 9;
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
    let config = bincode::config::standard();
    let (all, plain) = every_key(assigner);
    let time = |f: &dyn Fn() -> usize| {
        let start = Instant::now();
        black_box(f());
        start.elapsed()
    };
    let cold = time(&|| all.snapshot().unwrap().data().len());
    let (mut best_blob, mut best_sections) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        best_blob = best_blob.min(time(&|| {
            bincode::serde::encode_to_vec(&plain, config).unwrap().len()
        }));
        best_sections = best_sections.min(time(&|| all.snapshot().unwrap().data().len()));
    }
    println!(
        "interleaved, best of {ROUNDS}, {KEYS} keys: one bincode blob {:.1} ms, key-group sections (steady) {:.1} ms, throughput ratio {:.2} (first, cold snapshot: {:.1} ms)",
        best_blob.as_secs_f64() * 1e3,
        best_sections.as_secs_f64() * 1e3,
        best_blob.as_secs_f64() / best_sections.as_secs_f64(),
        cold.as_secs_f64() * 1e3,
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    if std::env::args().any(|a| a == "--bench") {
        interleaved_snapshot_ratio();
    }
    Criterion::default().configure_from_args().final_summary();
}
