//! `KeyedValue` update against a plain `HashMap<K, V>` update on the same
//! 10 million events (`u64` customer keys, 100 000 distinct customers), in
//! the same run. Target: `KeyedValue` at most 1.3x the `HashMap`.
//!
//! * `hashmap_std`: `std::collections::HashMap<u64, i64>` (default SipHash
//!   hasher), `*map.entry(k).or_insert(0) += cents`: the baseline.
//! * `keyed_value`: `KeyedValue<u64, i64>` owning all 128 key groups, native
//!   assigner, `*state.get_or_insert_with(&k, || 0)? += cents` (stable hash,
//!   key group, per-key-group table lookup, range check).
//! * `keyed_value_quarter`: instance 0 of 4 (32 key groups), fed only its
//!   own events, as a running operator is.
//! * `hashmap_fx`: `HashMap` with a multiply-shift hasher (not DoS-resistant,
//!   not what a plain `HashMap` uses), for reference only.
//!
//! `cargo bench -p state-runtime --bench keyed`

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use state_runtime::keyed::KeyedValue;
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};

const EVENTS: usize = 10_000_000;
const CUSTOMERS: usize = 100_000;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `(customer, cents)` events over `CUSTOMERS` random customer ids.
fn events() -> Vec<(u64, i64)> {
    let mut s = 7;
    let customers: Vec<u64> = (0..CUSTOMERS).map(|_| splitmix(&mut s)).collect();
    (0..EVENTS)
        .map(|_| {
            let r = splitmix(&mut s);
            (
                customers[(r % CUSTOMERS as u64) as usize],
                (r >> 40) as i64 % 1000,
            )
        })
        .collect()
}

#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn bench(c: &mut Criterion) {
    let events = events();
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
    let all = assigner.max_parallelism().all_key_groups();
    let quarter = assigner.range_for_subtask(4, 0).unwrap();
    let quarter_events: Vec<(u64, i64)> = events
        .iter()
        .copied()
        .filter(|(k, _)| quarter.contains(assigner.key_group(k).unwrap()))
        .collect();

    let mut g = c.benchmark_group("keyed_update_10M");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Elements(EVENTS as u64));

    g.bench_function("hashmap_std", |b| {
        b.iter(|| {
            let mut map: HashMap<u64, i64> = HashMap::new();
            for &(k, cents) in &events {
                *map.entry(k).or_insert(0) += cents;
            }
            black_box(map.len())
        })
    });
    g.bench_function("keyed_value", |b| {
        b.iter(|| {
            let mut state = KeyedValue::<u64, i64>::new(assigner, all).unwrap();
            for &(k, cents) in &events {
                *state.get_or_insert_with(&k, || 0).unwrap() += cents;
            }
            black_box(state.len())
        })
    });
    g.bench_function("hashmap_fx", |b| {
        b.iter(|| {
            let mut map: HashMap<u64, i64, BuildHasherDefault<Fx>> = HashMap::default();
            for &(k, cents) in &events {
                *map.entry(k).or_insert(0) += cents;
            }
            black_box(map.len())
        })
    });
    g.finish();

    // The same comparison for one of four instances, on its share.
    let mut g = c.benchmark_group("keyed_update_quarter");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Elements(quarter_events.len() as u64));
    g.bench_function("hashmap_std", |b| {
        b.iter(|| {
            let mut map: HashMap<u64, i64> = HashMap::new();
            for &(k, cents) in &quarter_events {
                *map.entry(k).or_insert(0) += cents;
            }
            black_box(map.len())
        })
    });
    g.bench_function("keyed_value_quarter", |b| {
        b.iter(|| {
            let mut state = KeyedValue::<u64, i64>::new(assigner, quarter).unwrap();
            for &(k, cents) in &quarter_events {
                *state.get_or_insert_with(&k, || 0).unwrap() += cents;
            }
            black_box(state.len())
        })
    });
    g.finish();
}

/// The runs alternate, A B A B ..., and each side keeps its fastest run, so
/// that load from other processes on a shared machine (which makes single
/// criterion samples noisy) skews neither side. Printed after criterion's
/// report; only under `cargo bench`.
fn interleaved_ratio() {
    const ROUNDS: usize = 9;
    let events = events();
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
    let all = assigner.max_parallelism().all_key_groups();
    let time = |f: &dyn Fn() -> usize| {
        let start = std::time::Instant::now();
        black_box(f());
        start.elapsed()
    };
    let std_map = || {
        let mut map: HashMap<u64, i64> = HashMap::new();
        for &(k, cents) in &events {
            *map.entry(k).or_insert(0) += cents;
        }
        map.len()
    };
    let keyed = || {
        let mut state = KeyedValue::<u64, i64>::new(assigner, all).unwrap();
        for &(k, cents) in &events {
            *state.get_or_insert_with(&k, || 0).unwrap() += cents;
        }
        state.len()
    };
    let (mut best_std, mut best_keyed) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        best_std = best_std.min(time(&std_map));
        best_keyed = best_keyed.min(time(&keyed));
    }
    println!(
        "interleaved, best of {ROUNDS}, {EVENTS} events: HashMap<u64, i64> {:.1} ms, KeyedValue<u64, i64> {:.1} ms, ratio {:.2}",
        best_std.as_secs_f64() * 1e3,
        best_keyed.as_secs_f64() * 1e3,
        best_keyed.as_secs_f64() / best_std.as_secs_f64()
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    if std::env::args().any(|a| a == "--bench") {
        interleaved_ratio();
    }
    Criterion::default().configure_from_args().final_summary();
}
