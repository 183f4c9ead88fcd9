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
//! `cargo bench --bench keyed`

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, bench);
criterion_main!(benches);
