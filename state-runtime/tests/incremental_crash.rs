//! Crash safety of incremental checkpoints: a child process writes
//! incremental checkpoints in a loop (a full file, then deltas on top of the
//! files of earlier checkpoints), running retention after each, and is
//! killed with SIGKILL at random moments. After every kill the newest
//! complete checkpoint opens, verifies (its files and every earlier file it
//! builds on) and restores to exactly the state written for it; no listed
//! checkpoint references a missing or partly written file.
//!
//! The child is this same test binary, re-run with
//! `RESCALE_INCREMENTAL_CHILD_DIR` set and filtered to this test. Reproduce a
//! run with `RESCALE_CRASH_SEED=<seed printed on failure>`.

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::{Rng, crash_seed, run_and_kill_writer, write_until_killed};

use state_runtime::checkpoint::durable::{
    IncrementalPolicy, StoredCheckpoint, SubtaskFile, commit_checkpoint, referenced_files,
    write_subtask_incremental,
};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage};

const CHILD_ENV: &str = "RESCALE_INCREMENTAL_CHILD_DIR";
const TEST_NAME: &str = "sigkill_while_writing_incremental_checkpoints_keeps_the_latest_restorable";
const KILLS: usize = 30;
const KEYS: u64 = 3_000;
const PARALLELISM: usize = 2;

#[derive(Checkpointed, Default)]
struct Sum {
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
}

fn assigner() -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(16).unwrap())
}

/// The changes of checkpoint `id`: `(key, Some(add))` or `(key, None)` for
/// a removal; about 5% of the keys.
fn changes(id: u64) -> impl Iterator<Item = (u64, Option<i64>)> {
    (0..KEYS)
        .filter(move |k| (k * 7 + id * 13) % 20 == 0)
        .map(move |k| (k, ((k + id) % 9 != 0).then_some(id as i64)))
}

/// The state of checkpoint `id`.
fn model(id: u64) -> BTreeMap<u64, i64> {
    let mut m: BTreeMap<u64, i64> = (0..KEYS).map(|k| (k, k as i64)).collect();
    for i in 1..=id {
        for (k, change) in changes(i) {
            match change {
                Some(add) => *m.entry(k).or_insert(0) += add,
                None => {
                    m.remove(&k);
                }
            }
        }
    }
    m
}

fn child(dir: &Path) -> ! {
    let a = assigner();
    let owner = move |k: u64| {
        let kg = a.key_group(&k).unwrap();
        (0..PARALLELISM)
            .find(|&i| a.range_for_subtask(PARALLELISM, i).unwrap().contains(kg))
            .unwrap()
    };
    let mut ops: Option<Vec<Sum>> = None;
    let mut previous: Vec<Option<SubtaskFile>> = vec![None; PARALLELISM];
    let policy = IncrementalPolicy {
        rewrite_every: 4,
        max_delta_ratio: 0.5,
    };
    write_until_killed(dir, |storage, start, id| {
        // The state of the checkpoint before the first one this run writes.
        let ops = ops.get_or_insert_with(|| {
            let mut ops: Vec<Sum> = (0..PARALLELISM)
                .map(|i| {
                    let mut op = Sum::default();
                    op.bind_keyed(a, a.range_for_subtask(PARALLELISM, i).unwrap())
                        .unwrap();
                    op
                })
                .collect();
            for (k, v) in model(start - 1) {
                ops[owner(k)].totals.insert(k, v).unwrap();
            }
            ops
        });
        for (k, change) in changes(id) {
            let op = &mut ops[owner(k)];
            match change {
                Some(add) => *op.totals.get_or_insert_with(k, || 0).unwrap() += add,
                None => {
                    op.totals.remove(k).unwrap();
                }
            }
        }
        storage.begin(id).expect("begin");
        let files: Vec<SubtaskFile> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let captured = op.capture_tracking_changes().expect("capture");
                let file = write_subtask_incremental(
                    storage,
                    id,
                    0,
                    "sum",
                    i,
                    &captured,
                    previous[i].as_ref(),
                    &policy,
                )
                .expect("write");
                previous[i] = Some(file.clone());
                file
            })
            .collect();
        commit_checkpoint(storage, id, &[("sum", &files)]).expect("commit");
        storage
            .retain_last(2, &referenced_files)
            .expect("retention");
    })
}

#[test]
fn sigkill_while_writing_incremental_checkpoints_keeps_the_latest_restorable() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let seed = crash_seed();
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    let mut latest: Option<u64> = None;
    let mut deltas = 0;
    for kill in 1..=KILLS {
        let context = format!("seed {seed}, kill {kill}");
        run_and_kill_writer(
            TEST_NAME, CHILD_ENV, &root, latest, &mut rng, 150_000, &context,
        );
        let storage = LocalStorage::open(&root).unwrap();
        let now = storage.latest().unwrap();
        assert!(now >= latest, "{context}: {latest:?} -> {now:?}");
        for id in storage.list().unwrap() {
            // Every file a listed checkpoint references exists, whole.
            let stored = StoredCheckpoint::open(&storage, id).unwrap();
            stored
                .verify()
                .unwrap_or_else(|e| panic!("{context}: checkpoint {id}: {e}"));
        }
        if let Some(stored) = StoredCheckpoint::latest(&storage).unwrap() {
            let id = stored.checkpoint_id();
            let sum = stored.operator("sum").unwrap();
            deltas += sum
                .subtasks()
                .iter()
                .filter(|s| s.keyed().unwrap().is_delta())
                .count();
            let mut got = BTreeMap::new();
            for j in 0..3 {
                let mut op = Sum::default();
                sum.restore_into(&mut op, j, 3)
                    .unwrap_or_else(|e| panic!("{context}: checkpoint {id}: {e}"));
                got.extend(op.totals.iter().map(|(k, v)| (*k, *v)));
            }
            assert!(
                got == model(id),
                "{context}: checkpoint {id} restored wrong"
            );
        }
        latest = now;
    }
    println!("reached checkpoint {latest:?}; {deltas} delta files seen as the latest");
    assert!(
        deltas > 0,
        "seed {seed}: no kill found a delta as the latest"
    );
}
