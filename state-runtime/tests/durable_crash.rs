//! Crash safety of durable job checkpoints: a child process writes job
//! checkpoints (an operator with split and union state, and one with keyed
//! state) through `write_checkpoint` in a loop, running retention, and is
//! killed with SIGKILL at random moments. After every kill the newest
//! complete checkpoint opens, verifies, and restores to exactly the state
//! written for it; no partial checkpoint is ever visible.
//!
//! The child is this same test binary, re-run with `RESCALE_DURABLE_CHILD_DIR`
//! set and filtered to this test. Reproduce a run with
//! `RESCALE_CRASH_SEED=<seed printed on failure>`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

mod common;
use common::{Rng, crash_seed, run_and_kill_writer, write_until_killed};

use state_runtime::checkpoint::durable::{StoredCheckpoint, referenced_files, write_checkpoint};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage, MANIFEST_NAME};

const CHILD_ENV: &str = "RESCALE_DURABLE_CHILD_DIR";
const TEST_NAME: &str = "sigkill_while_writing_job_checkpoints_keeps_the_latest_restorable";
const KILLS: usize = 55;
/// Kills go on past `KILLS`, up to this many, until at least `KILLS / 8`
/// of them interrupted a checkpoint: where a kill lands is random, and a
/// run whose kills mostly fell between checkpoints would test too little.
const MAX_KILLS: usize = 3 * KILLS;

#[derive(Checkpointed, Default)]
struct Source {
    #[state(split)]
    offsets: Vec<(u32, u64)>,
    #[state(union)]
    seen: Vec<String>,
}

#[derive(Checkpointed, Default)]
struct Sum {
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
    #[state(keyed)]
    history: KeyedList<u64, u64>,
}

/// The job's state at checkpoint `id`: parallelism 2 or 3, values derived
/// from the id, a few hundred KB in all.
fn job(id: u64) -> (Checkpoint, Checkpoint) {
    let n = 2 + (id % 2) as usize;
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(64).unwrap());
    let mut sources = Vec::new();
    let mut sums = Vec::new();
    for i in 0..n {
        let source = Source {
            offsets: (0..4u32)
                .map(|p| (p * n as u32 + i as u32, id * 1000 + u64::from(p)))
                .collect(),
            seen: vec![format!("schema-{id}-{i}")],
        };
        sources.push(source.snapshot().unwrap());
        let range = assigner.range_for_subtask(n, i).unwrap();
        let mut sum = Sum::default();
        sum.bind_keyed(assigner, range).unwrap();
        for k in 0..1500u64 {
            if range.contains(assigner.key_group(&k).unwrap()) {
                sum.totals.insert(k, (k * id) as i64).unwrap();
                sum.history
                    .extend(k, (0..(k + id) % 8).map(|j| j * id))
                    .unwrap();
            }
        }
        sums.push(sum.snapshot().unwrap());
    }
    (
        Checkpoint::from_subtasks(sources).unwrap(),
        Checkpoint::from_subtasks(sums).unwrap(),
    )
}

type View = (
    Vec<Vec<(u32, u64)>>,
    Vec<Vec<String>>,
    BTreeMap<u64, (i64, Vec<u64>)>,
);

/// Restores both operators at parallelism 2, through `restore`.
fn restored(
    mut source: impl FnMut(&mut Source, usize) -> Result<RestoreReport, StateError>,
    mut sum: impl FnMut(&mut Sum, usize) -> Result<RestoreReport, StateError>,
) -> Result<View, StateError> {
    let mut view: View = Default::default();
    for j in 0..2 {
        let mut s = Source::default();
        source(&mut s, j)?;
        view.0.push(s.offsets);
        view.1.push(s.seen);
        let mut k = Sum::default();
        sum(&mut k, j)?;
        for (key, v) in k.totals.iter() {
            let h = k.history.get(key)?.map(<[u64]>::to_vec).unwrap_or_default();
            view.2.insert(*key, (*v, h));
        }
    }
    Ok(view)
}

fn child(dir: &Path) -> ! {
    write_until_killed(dir, |storage, _, id| {
        let (source, sum) = job(id);
        write_checkpoint(storage, id, &[("source", &source), ("sum", &sum)])
            .expect("write checkpoint");
        storage
            .retain_last(2, &referenced_files)
            .expect("retention");
    })
}

#[test]
fn sigkill_while_writing_job_checkpoints_keeps_the_latest_restorable() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let seed = crash_seed();
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    let began = Instant::now();
    let mut latest: Option<u64> = None;
    let mut interrupted = 0;
    let mut checked = 0;
    let mut kill = 0;
    while kill < KILLS || (interrupted < KILLS / 8 && kill < MAX_KILLS) {
        kill += 1;
        let context = format!("seed {seed}, kill {kill}");
        run_and_kill_writer(
            TEST_NAME, CHILD_ENV, &root, latest, &mut rng, 120_000, &context,
        );

        let storage = LocalStorage::open(&root).unwrap();
        let listed = storage.list().unwrap();
        // Every listed checkpoint has a manifest, and no folder without one is listed.
        for id in &listed {
            assert!(storage.checkpoint_dir(*id).join(MANIFEST_NAME).is_file());
        }
        let now = storage.latest().unwrap();
        assert!(
            now >= latest,
            "seed {seed}, kill {kill}: {latest:?} -> {now:?}"
        );
        let next = storage.checkpoint_dir(now.map_or(1, |l| l + 1));
        if next.is_dir() && !next.join(MANIFEST_NAME).exists() {
            interrupted += 1;
        }
        if let Some(stored) = StoredCheckpoint::latest(&storage).unwrap() {
            let id = stored.checkpoint_id();
            assert_eq!(Some(id), now);
            // Restoring every checkpoint on every kill would dominate the
            // run time; restore the new ones and every fifth.
            if now != latest || kill % 5 == 0 {
                stored
                    .verify()
                    .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: {e}"));
                let (s_op, k_op) = (
                    stored.operator("source").unwrap(),
                    stored.operator("sum").unwrap(),
                );
                let got = restored(
                    |s, j| s_op.restore_into(s, j, 2),
                    |k, j| k_op.restore_into(k, j, 2),
                )
                .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: checkpoint {id}: {e}"));
                let (source, sum) = job(id);
                let want = restored(
                    |s, j| source.restore_into(s, j, 2),
                    |k, j| sum.restore_into(k, j, 2),
                )
                .unwrap();
                assert!(
                    got == want,
                    "seed {seed}, kill {kill}: checkpoint {id} restored wrong"
                );
                assert_eq!(got.2.len(), 1500);
                checked += 1;
            }
        }
        latest = now;
    }
    let progress = latest.unwrap_or(0);
    println!(
        "{kill} kills in {:?}; {interrupted} interrupted a checkpoint; reached checkpoint {progress}; {checked} restores checked",
        began.elapsed()
    );
    assert!(
        interrupted >= KILLS / 8,
        "seed {seed}: only {interrupted} of {kill} kills interrupted a checkpoint"
    );
    assert!(
        progress >= KILLS as u64 / 6,
        "seed {seed}: only reached {progress}"
    );
}
