//! The runner restarting a job whose declaration changed: another max
//! parallelism (native mode re-buckets, Flink mode refuses), a removed state
//! (dropped only when allowed), and Flink-compatible routing.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{TempLog, assert_owned_keys, run_until, spec, start};
use rescale::{RunningSum, compare_totals, reference_totals, totals_of};
use serde::{Deserialize, Serialize};
use state_runtime::prelude::*;
use state_runtime::runner::log::LogWriter;
use state_runtime::runner::{
    InstanceInfo, Job, JobCheckpointStore, JobError, KeyedProcessor, MemoryCheckpointStore,
    TaskError,
};

#[test]
fn native_mode_changes_max_parallelism_on_restart() {
    let spec = spec(30_000);
    let log = TempLog::new("maxp", &spec);
    let store = MemoryCheckpointStore::new();
    let job = start(&log.0, &store, 2, 2);
    run_until(&job, 10_000);
    job.stop().unwrap();
    // Restart with 200 key groups instead of 64: keys are re-bucketed.
    let wider = KeyGroupAssigner::native(MaxParallelism::new(200).unwrap());
    let done = Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
        RunningSum::default()
    })
    .parallelism(2, 3)
    .assigner(wider)
    .measure_restored_state(true)
    .start()
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(done.report.assigner, wider);
    assert_eq!(store.latest().unwrap().unwrap().assigner, wider);
    assert_owned_keys(&done);
    compare_totals(&totals_of(&done.operators), &reference_totals(&spec)).unwrap();
    for k in &done.report.keyed {
        let amp = k.read_amplification().unwrap();
        // Boundary key groups are read whole and filtered: a little above 1.
        assert!((1.0..1.5).contains(&amp), "read amplification {amp}");
    }
}

/// An event with a Flink-compatible key (Java `Integer`).
#[derive(Debug, Clone, Serialize, Deserialize, Keyed)]
struct Transfer {
    #[key]
    account: i32,
    cents: i64,
}

#[derive(Checkpointed, Default)]
struct Balances {
    #[state(keyed)]
    balances: KeyedValue<i32, i64>,
}

impl KeyedProcessor for Balances {
    type Event = Transfer;
    type Output = ();

    fn process(&mut self, t: Transfer, _: &mut impl FnMut(())) -> Result<(), StateError> {
        *self.balances.get_or_insert_with(t.key(), || 0)? += t.cents;
        Ok(())
    }
}

/// A log of `events` transfers `transfer(i)`, record `i` in partition
/// `i % partitions`, and each account's balance over all of them.
fn transfer_log(
    name: &str,
    partitions: u32,
    events: i64,
    transfer: impl Fn(i64) -> Transfer,
) -> (TempLog, HashMap<i32, i64>) {
    let dir = std::env::temp_dir().join(format!("rs-runner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = LogWriter::<Transfer>::create(&dir, partitions).unwrap();
    let mut expected: HashMap<i32, i64> = HashMap::new();
    for i in 0..events {
        let t = transfer(i);
        *expected.entry(t.account).or_default() += t.cents;
        w.append((i % i64::from(partitions)) as u32, &t).unwrap();
    }
    w.finish().unwrap();
    (TempLog(dir), expected)
}

/// `Balances` with one more keyed state, later removed.
#[derive(Checkpointed, Default)]
struct BalancesAndCounts {
    #[state(keyed)]
    balances: KeyedValue<i32, i64>,
    #[state(keyed)]
    transfers: KeyedValue<i32, u64>,
}

impl KeyedProcessor for BalancesAndCounts {
    type Event = Transfer;
    type Output = ();

    fn process(&mut self, t: Transfer, _: &mut impl FnMut(())) -> Result<(), StateError> {
        *self.balances.get_or_insert_with(t.key(), || 0)? += t.cents;
        *self.transfers.get_or_insert_with(t.key(), || 0)? += 1;
        Ok(())
    }
}

/// Runs `make`'s operator at parallelism 1 -> 2 on `log` until 4,000
/// records are read, stops it with a final checkpoint, and returns the store.
fn run_and_stop<P: KeyedProcessor<Event = Transfer> + Checkpointed + Send + 'static>(
    log: &TempLog,
    make: fn() -> P,
) -> MemoryCheckpointStore {
    let store = MemoryCheckpointStore::new();
    let job = Job::new(&log.0, store.clone(), move |_: &InstanceInfo| make())
        .parallelism(1, 2)
        .start()
        .unwrap();
    run_until(&job, 4_000);
    job.stop().unwrap();
    store
}

/// Restarts from `store` at 1 -> 3 with `make`'s operator, which must be
/// refused before any instance is built: the error.
fn refused_before_building_an_instance<P>(
    log: &TempLog,
    store: &MemoryCheckpointStore,
    make: fn() -> P,
) -> JobError
where
    P: KeyedProcessor<Event = Transfer> + Checkpointed + Send + 'static,
{
    let started = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&started);
    let refused = Job::new(&log.0, store.clone(), move |_: &InstanceInfo| {
        count.fetch_add(1, Ordering::Relaxed);
        make()
    })
    .parallelism(1, 3)
    .start()
    .unwrap_err();
    assert_eq!(started.load(Ordering::Relaxed), 0, "an instance was built");
    refused
}

#[test]
fn a_restart_drops_a_removed_state_only_when_allowed_and_refuses_before_starting() {
    let (log, expected) = transfer_log("dropped", 3, 9_000, |i| Transfer {
        account: (i * 31 % 200) as i32,
        cents: i % 13 - 6,
    });
    let store = run_and_stop(&log, BalancesAndCounts::default);

    // The new operator no longer declares `transfers`: refused before any
    // instance starts, with the typed error naming the state.
    let refused = refused_before_building_an_instance(&log, &store, Balances::default);
    assert!(
        matches!(&refused, JobError::Start(TaskError::State(StateError::UnknownState { state })) if state == "transfers"),
        "{refused:?}"
    );

    // Allowed: the state is dropped and the job finishes exactly.
    let done = Job::new(&log.0, store, |_: &InstanceInfo| Balances::default())
        .parallelism(1, 3)
        .allow_non_restored_state(true)
        .start()
        .unwrap()
        .wait()
        .unwrap();
    let mut actual: HashMap<i32, i64> = HashMap::new();
    for op in &done.operators {
        actual.extend(op.balances.iter().map(|(k, v)| (*k, *v)));
    }
    assert_eq!(actual, expected);
}

/// `Balances` whose values became a struct: without a migration the
/// restart is refused before any instance is built; with one it restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Balance {
    cents: i64,
    transfers: u64,
}

fn upgrade_balance(cents: i64) -> Balance {
    Balance {
        cents,
        transfers: 0,
    }
}

#[derive(Checkpointed, Default)]
struct BalancesV2Unmigrated {
    #[state(keyed)]
    balances: KeyedValue<i32, Balance>,
}

#[derive(Checkpointed, Default)]
struct BalancesV2 {
    #[state(keyed, migrate_from(i64 => upgrade_balance))]
    balances: KeyedValue<i32, Balance>,
}

macro_rules! balance_processor {
    ($ty:ty) => {
        impl KeyedProcessor for $ty {
            type Event = Transfer;
            type Output = ();

            fn process(&mut self, t: Transfer, _: &mut impl FnMut(())) -> Result<(), StateError> {
                let b = self
                    .balances
                    .get_or_insert_with(t.key(), Balance::default)?;
                b.cents += t.cents;
                b.transfers += 1;
                Ok(())
            }
        }
    };
}
balance_processor!(BalancesV2Unmigrated);
balance_processor!(BalancesV2);

#[test]
fn a_restart_with_a_changed_state_type_is_refused_before_starting_unless_migrated() {
    let (log, expected) = transfer_log("types", 3, 9_000, |i| Transfer {
        account: (i * 17 % 150) as i32,
        cents: i % 11 - 5,
    });
    let store = run_and_stop(&log, Balances::default);
    let restored_events = store.latest().unwrap().unwrap().events;

    let refused = refused_before_building_an_instance(&log, &store, BalancesV2Unmigrated::default);
    assert!(
        matches!(&refused, JobError::Start(TaskError::State(StateError::TypeChanged { state, .. })) if state == "balances"),
        "{refused:?}"
    );

    let done = Job::new(&log.0, store, |_: &InstanceInfo| BalancesV2::default())
        .parallelism(1, 3)
        .start()
        .unwrap()
        .wait()
        .unwrap();
    let mut actual: HashMap<i32, i64> = HashMap::new();
    let mut transfers_after_restore = 0;
    for op in &done.operators {
        for (k, b) in op.balances.iter() {
            actual.insert(*k, b.cents);
            transfers_after_restore += b.transfers;
        }
    }
    assert_eq!(actual, expected);
    // Migrated values start counting at 0: only the records after the
    // checkpoint are counted.
    assert_eq!(transfers_after_restore, 9_000 - restored_events);
}

#[test]
fn flink_mode_routes_like_flink_and_refuses_a_new_max_parallelism() {
    let (log, expected) = transfer_log("flink", 4, 20_000, |i| Transfer {
        account: (i * 7919 % 1_000) as i32 - 500,
        cents: i % 97 - 40,
    });
    let flink = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
    let store = MemoryCheckpointStore::new();
    let job = Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
        Balances::default()
    })
    .parallelism(2, 3)
    .assigner(flink)
    .start()
    .unwrap();
    run_until(&job, 8_000);
    job.stop().unwrap();

    let refused = Job::new(&log.0, store.clone(), |_: &InstanceInfo| {
        Balances::default()
    })
    .parallelism(2, 3)
    .assigner(KeyGroupAssigner::flink(MaxParallelism::new(256).unwrap()))
    .start()
    .unwrap_err();
    assert!(
        matches!(
            refused,
            JobError::Start(TaskError::State(StateError::MaxParallelismChanged {
                old: 128,
                new: 256
            }))
        ),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .contains("max parallelism changed from 128 to 256"),
        "{refused}"
    );

    let done = Job::new(&log.0, store, |_: &InstanceInfo| Balances::default())
        .parallelism(3, 2)
        .start()
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.report.assigner, flink);
    let mut actual: HashMap<i32, i64> = HashMap::new();
    for (op, stats) in done.operators.iter().zip(&done.report.keyed) {
        for (k, v) in op.balances.iter() {
            // Flink's KeyGroupRangeAssignment puts the key here too.
            assert!(stats.key_groups.contains(flink.key_group(k).unwrap()));
            actual.insert(*k, *v);
        }
    }
    assert_eq!(actual, expected);
}
