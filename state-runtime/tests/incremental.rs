//! Incremental checkpoints: delta files on top of earlier checkpoints'
//! files, restored at other parallelisms, kept by retention, checked for
//! corruption.

use std::collections::BTreeMap;

mod common;

use state_runtime::checkpoint::durable::{
    IncrementalPolicy, StoredCheckpoint, SubtaskFile, commit_checkpoint, referenced_files,
    write_subtask_incremental,
};
use state_runtime::checkpoint::{CapturedSnapshot, KeyedSection};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage};

#[derive(Checkpointed, Default)]
struct Op {
    #[state(split)]
    offsets: Vec<u64>,
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
    #[state(keyed)]
    tags: KeyedMap<u64, u8, String>,
}

/// Keys in the jobs' state (up to twice as many over time).
const KEYS: u64 = 20_000;

fn assigner() -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(32).unwrap())
}

/// What the job's state should be: totals and tags per key.
#[derive(Default, Clone, PartialEq, Debug)]
struct Model {
    totals: BTreeMap<u64, i64>,
    tags: BTreeMap<(u64, u8), String>,
}

/// A job of `parallelism` instances whose state changes a little between
/// checkpoints, checkpointed incrementally into `storage`.
struct Job {
    assigner: KeyGroupAssigner,
    ops: Vec<Op>,
    previous: Vec<Option<SubtaskFile>>,
    model: Model,
    step: u64,
    keys: u64,
    policy: IncrementalPolicy,
}

impl Job {
    fn new(parallelism: usize) -> Self {
        Self::with_keys(parallelism, KEYS)
    }

    fn with_keys(parallelism: usize, keys: u64) -> Self {
        let a = assigner();
        let ops = (0..parallelism)
            .map(|i| {
                let mut op = Op::default();
                op.bind_keyed(a, a.range_for_subtask(parallelism, i).unwrap())
                    .unwrap();
                op
            })
            .collect();
        Self {
            assigner: a,
            ops,
            previous: vec![None; parallelism],
            model: Model::default(),
            step: 0,
            keys,
            policy: IncrementalPolicy::default(),
        }
    }

    fn owner(&mut self, key: u64) -> &mut Op {
        let n = self.ops.len();
        let a = self.assigner;
        let kg = a.key_group(&key).unwrap();
        let i = (0..n)
            .find(|&i| a.range_for_subtask(n, i).unwrap().contains(kg))
            .unwrap();
        &mut self.ops[i]
    }

    /// Writes about `percent`% of the keys: updates, inserts, removals.
    fn change(&mut self, percent: u64) {
        self.step += 1;
        let step = self.step;
        let keys = self.keys;
        for i in 0..keys * percent / 100 {
            let key = (i * 7919 + step * 104_729) % (keys * 2);
            let op = self.owner(key);
            match (key + step) % 5 {
                0 => {
                    op.totals.remove(key).unwrap();
                    self.model.totals.remove(&key);
                }
                1 => {
                    let tag = (step % 4) as u8;
                    let text = format!("s{step}");
                    op.tags.insert(key, tag, text.clone()).unwrap();
                    self.model.tags.insert((key, tag), text);
                }
                2 => {
                    let tag = ((step + 1) % 4) as u8;
                    op.tags.remove(key, &tag).unwrap();
                    self.model.tags.remove(&(key, tag));
                }
                _ => {
                    *op.totals.get_or_insert_with(key, || 0).unwrap() += step as i64;
                    *self.model.totals.entry(key).or_insert(0) += step as i64;
                }
            }
        }
        for op in &mut self.ops {
            op.offsets = vec![step];
        }
    }

    /// Checkpoint `id` after changing `percent`% of the keys (the first,
    /// `id` 1, after the changes made so far).
    fn checkpoint_after_change(
        &mut self,
        id: u64,
        percent: u64,
        storage: &dyn CheckpointStorage,
    ) -> Vec<SubtaskFile> {
        if id > 1 {
            self.change(percent);
        }
        self.checkpoint(storage, id)
    }

    /// The keyed bytes of a full checkpoint of the state now.
    fn full_keyed_bytes(&self) -> u64 {
        (self.ops.iter())
            .map(|op| op.snapshot().unwrap().keyed().unwrap().total_bytes())
            .sum()
    }

    /// Captures every instance and writes checkpoint `id` incrementally;
    /// returns whether every keyed section is a delta.
    fn checkpoint(&mut self, storage: &dyn CheckpointStorage, id: u64) -> Vec<SubtaskFile> {
        storage.begin(id).unwrap();
        let mut files = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            let captured = op.capture_tracking_changes().unwrap();
            files.push(write_incremental(
                storage,
                id,
                i,
                &captured,
                &mut self.previous[i],
                &self.policy,
            ));
        }
        commit_checkpoint(storage, id, &[("op", &files)]).unwrap();
        files
    }
}

/// Writes captured subtask `subtask` of checkpoint `id` incrementally on
/// top of `previous` under `policy`; the file written becomes `previous`.
fn write_incremental(
    storage: &dyn CheckpointStorage,
    id: u64,
    subtask: usize,
    captured: &CapturedSnapshot,
    previous: &mut Option<SubtaskFile>,
    policy: &IncrementalPolicy,
) -> SubtaskFile {
    let file = write_subtask_incremental(
        storage,
        id,
        0,
        "op",
        subtask,
        captured,
        previous.as_ref(),
        policy,
    )
    .unwrap();
    *previous = Some(file.clone());
    file
}

/// The state of checkpoint `id`, restored from storage into `parallelism`
/// instances.
fn restored(storage: &dyn CheckpointStorage, id: u64, parallelism: usize) -> Model {
    restored_with(storage, id, parallelism, &RestoreOptions::default())
}

/// [`restored`] with `options` (another max parallelism, say).
fn restored_with(
    storage: &dyn CheckpointStorage,
    id: u64,
    parallelism: usize,
    options: &RestoreOptions,
) -> Model {
    let stored = StoredCheckpoint::open(storage, id).unwrap();
    let op = stored.operator("op").unwrap();
    let mut model = Model::default();
    for j in 0..parallelism {
        let mut restored = Op::default();
        op.restore_into_with(&mut restored, j, parallelism, options)
            .unwrap();
        model
            .totals
            .extend(restored.totals.iter().map(|(k, v)| (*k, *v)));
        for (k, tags) in restored.tags.iter() {
            model
                .tags
                .extend(tags.iter().map(|(t, v)| ((*k, *t), v.clone())));
        }
    }
    model
}

/// The keyed section of subtask 0 in checkpoint `id`.
fn first_keyed_section(storage: &dyn CheckpointStorage, id: u64) -> KeyedSection {
    let stored = StoredCheckpoint::open(storage, id).unwrap();
    let op = stored.operator("op").unwrap();
    op.subtasks()[0].keyed().unwrap().clone()
}

fn is_delta(storage: &dyn CheckpointStorage, id: u64) -> Vec<bool> {
    let stored = StoredCheckpoint::open(storage, id).unwrap();
    let op = stored.operator("op").unwrap();
    op.subtasks()
        .iter()
        .map(|s| s.keyed().unwrap().is_delta())
        .collect()
}

#[test]
fn deltas_restore_exactly_the_state_at_every_checkpoint_and_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    deltas_restore_exactly(&LocalStorage::open(dir.path()).unwrap());
}

/// Twelve checkpoints, each restored at parallelism 1, 2 and 3.
fn deltas_restore_exactly(storage: &dyn CheckpointStorage) {
    let mut job = Job::new(2);
    let mut models = BTreeMap::new();
    let mut full_bytes = 0;
    let mut delta_bytes = 0;
    let mut delta_count = 0;
    job.change(100);
    for id in 1..=12 {
        let files = job.checkpoint_after_change(id, 5, storage);
        let bytes: u64 = files.iter().map(|f| f.payload_len()).sum();
        let deltas = is_delta(storage, id);
        match id {
            1 => {
                assert_eq!(deltas, [false, false], "the first checkpoint is full");
                full_bytes = bytes;
            }
            2 => assert_eq!(deltas, [true, true], "checkpoint {id} is a delta"),
            _ => {}
        }
        // Later ones are deltas until their chain outgrows the policy.
        if deltas == [true, true] {
            delta_bytes += bytes;
            delta_count += 1;
        }
        models.insert(id, job.model.clone());
        for parallelism in [1, 2, 3] {
            assert_eq!(
                restored(storage, id, parallelism),
                job.model,
                "checkpoint {id} restored at {parallelism}"
            );
        }
    }
    // 5% of the keys written per checkpoint: each delta is a small part of
    // a full checkpoint.
    assert!(delta_count >= 6, "{delta_count} deltas");
    let per_delta = delta_bytes as f64 / delta_count as f64 / full_bytes as f64;
    assert!(
        per_delta < 0.15,
        "a delta is {per_delta:.3} of a full checkpoint"
    );
    // Every checkpoint still restores, each its own state.
    for (id, model) in &models {
        assert_eq!(&restored(storage, *id, 2), model, "checkpoint {id}");
    }
}

#[test]
fn key_groups_are_rewritten_on_a_rolling_schedule_and_old_files_leave_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let policy = IncrementalPolicy::default();
    let every = policy.rewrite_every;
    let mut job = Job::new(1);
    job.change(100);
    let mut first_full = 0;
    let mut rewritten = 0;
    for id in 1..=3 * every {
        let files = job.checkpoint_after_change(id, 5, &storage);
        let keyed = first_keyed_section(&storage, id);
        let key_groups = keyed.key_groups().len() as usize;
        let layers = keyed.earlier_layers();
        if id == 1 {
            assert!(!keyed.is_delta(), "the first checkpoint is full");
            first_full = keyed.total_bytes();
            continue;
        }
        let full_bytes = job.full_keyed_bytes();
        // No checkpoint after the first rewrites the whole state: each
        // writes a rolling share of the key groups whole.
        assert!(keyed.is_delta(), "checkpoint {id} is partly deltas");
        let whole = keyed.whole_key_groups();
        assert!(
            whole <= key_groups / 4,
            "checkpoint {id}: {whole} of {key_groups} key groups whole"
        );
        rewritten += whole;
        // The chain holds only files some key group still reads: at most
        // `every` of them, and once the full file has aged out, the first
        // is partly deltas too.
        assert!(
            layers.len() < every as usize,
            "checkpoint {id}: {} earlier files",
            layers.len()
        );
        if id > every {
            assert!(layers[0].is_delta(), "checkpoint {id}: the full file left");
            assert!(
                files[0].payload_len() < full_bytes / 4,
                "checkpoint {id} wrote {} bytes, a full one {full_bytes}",
                files[0].payload_len()
            );
            // Sections a later whole one replaced are not read.
            let chain: u64 = layers.iter().map(|l| l.bytes()).sum::<u64>() + keyed.total_bytes();
            assert!(keyed.restore_bytes() < chain);
            assert!(first_full > 0);
        }
        // A restore reads each key group's last whole section and the
        // deltas after it: within the policy's bound of a full checkpoint.
        let read = keyed.restore_bytes() as f64 / full_bytes as f64;
        assert!(
            read <= 1.0 + policy.max_delta_ratio + 0.1,
            "checkpoint {id}: a restore reads {read:.2} of a full checkpoint"
        );
        if id % 7 == 0 || id == 3 * every {
            assert_eq!(restored(&storage, id, 3), job.model, "checkpoint {id}");
        }
    }
    // About one key group in `every` per checkpoint (32 / 20), a few more
    // where the bound on restore reads asks for them.
    let per_checkpoint = rewritten as f64 / (3 * every - 1) as f64;
    assert!(
        (1.4..3.5).contains(&per_checkpoint),
        "{per_checkpoint:.2} key groups whole per checkpoint"
    );
}

#[test]
fn many_changes_make_more_key_groups_whole_to_bound_restore_reads() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let policy = IncrementalPolicy::default();
    let mut job = Job::new(1);
    job.change(100);
    let mut whole = Vec::new();
    for id in 1..=12 {
        job.checkpoint_after_change(id, 40, &storage);
        let keyed = first_keyed_section(&storage, id);
        if id == 1 {
            continue;
        }
        let read = keyed.restore_bytes() as f64 / job.full_keyed_bytes() as f64;
        assert!(
            read <= 1.0 + policy.max_delta_ratio + 0.15,
            "checkpoint {id}: a restore reads {read:.2} of a full checkpoint"
        );
        whole.push(keyed.whole_key_groups());
    }
    // The rolling share alone would be 16 in 10 checkpoints (2 of 32 key
    // groups, or 1).
    let rewritten: usize = whole.iter().sum();
    assert!(rewritten > 60, "key groups whole: {whole:?}");
    assert_eq!(restored(&storage, 12, 2), job.model);
}

#[test]
fn retention_keeps_what_retained_checkpoints_build_on_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    retention_keeps_what_is_referenced(&storage);
    // What remains on disk: the retained checkpoints' files and those they
    // reference, nothing else.
    let mut needed = std::collections::BTreeSet::new();
    for id in storage.list().unwrap() {
        needed.extend(referenced_files(id, &storage.read_manifest(id).unwrap()).unwrap());
    }
    let mut on_disk = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let folder = entry.file_name().into_string().unwrap();
        let Some(id) = state_runtime::storage::parse_checkpoint_folder_name(&folder) else {
            continue;
        };
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            if !name.starts_with('_') {
                on_disk.insert(state_runtime::storage::FileRef::new(id, name));
            }
        }
    }
    assert_eq!(on_disk, needed);
}

/// 45 checkpoints keeping 3: after each retention the oldest retained one
/// restores.
fn retention_keeps_what_is_referenced(storage: &dyn CheckpointStorage) {
    let mut job = Job::new(2);
    job.change(100);
    let mut models = BTreeMap::new();
    for id in 1..=45 {
        job.checkpoint_after_change(id, 5, storage);
        models.insert(id, job.model.clone());
        storage.retain_last(3, &referenced_files).unwrap();
        let listed = storage.list().unwrap();
        assert_eq!(listed.len(), id.min(3) as usize);
        // The oldest retained checkpoint restores, whatever was deleted.
        let oldest = listed[0];
        assert_eq!(
            restored(storage, oldest, 3),
            models[&oldest],
            "checkpoint {oldest}"
        );
    }
}

/// Restores checkpoint 3 of `storage` into one instance.
fn restore_latest(storage: &dyn CheckpointStorage) -> Result<Op, StateError> {
    let mut op = Op::default();
    StoredCheckpoint::open(storage, 3)?
        .operator("op")?
        .restore_into(&mut op, 0, 1)?;
    Ok(op)
}

#[test]
fn every_damaged_byte_of_a_delta_or_an_earlier_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let mut job = Job::with_keys(1, 150);
    // No key group rewritten whole: a restore reads every byte of the
    // chain's keyed sections.
    job.policy.rewrite_every = 1000;
    job.change(100);
    for id in 1..=3 {
        job.checkpoint_after_change(id, 5, &storage);
    }
    let stored = StoredCheckpoint::open(&storage, 3).unwrap();
    let sub = stored.operator("op").unwrap().subtasks()[0].clone();
    let keyed = sub.keyed().unwrap();
    assert!(keyed.is_delta());
    let layers = keyed.earlier_layers().to_vec();
    assert_eq!(layers.len(), 2);
    let path_of = |id: u64, file: &str| dir.path().join(format!("chk-{id}")).join(file);
    // The earlier files: a restore reads their keyed sections and checks
    // every byte of them; so does verify.
    for layer in &layers {
        let path = path_of(layer.checkpoint_id(), layer.file());
        let original = std::fs::read(&path).unwrap();
        let len = original.len();
        let keyed_start = len - layer.bytes() as usize;
        for at in keyed_start..len {
            let mut damaged = original.clone();
            damaged[at] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            match restore_latest(&storage) {
                Err(StateError::Corrupt { path: p, .. }) => assert!(
                    p.ends_with(&format!("chk-{}/{}", layer.checkpoint_id(), layer.file())),
                    "byte {at}: {p}"
                ),
                other => panic!("byte {at} of {}: {:?}", layer.file(), other.map(|_| ())),
            }
            assert!(
                StoredCheckpoint::open(&storage, 3)
                    .unwrap()
                    .verify()
                    .is_err()
            );
        }
        // Truncated at every length: refused before anything is decoded.
        for cut in (0..len).rev().step_by(7) {
            std::fs::write(&path, &original[..cut]).unwrap();
            assert!(
                matches!(restore_latest(&storage), Err(StateError::Corrupt { .. })),
                "{} cut at {cut}",
                layer.file()
            );
        }
        std::fs::write(&path, &original).unwrap();
    }
    // The delta file itself: verify finds every flipped byte.
    let path = path_of(3, sub.file());
    let original = std::fs::read(&path).unwrap();
    for at in 0..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        assert!(
            matches!(
                StoredCheckpoint::open(&storage, 3).unwrap().verify(),
                Err(StateError::Corrupt { .. } | StateError::UnsupportedFormatVersion { .. })
            ),
            "byte {at} of the delta file"
        );
    }
    std::fs::write(&path, &original).unwrap();
    StoredCheckpoint::open(&storage, 3)
        .unwrap()
        .verify()
        .unwrap();
    let op = restore_latest(&storage).unwrap();
    assert_eq!(op.totals.len(), job.model.totals.len());
    assert_eq!(restored(&storage, 3, 2), job.model);
}

#[test]
fn a_snapshot_that_does_not_continue_the_chain_is_written_full() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let mut job = Job::new(1);
    job.change(100);
    job.checkpoint(&storage, 1);
    // A capture that is never written: the next one's changes do not
    // start where the chain's file ends.
    drop(job.ops[0].capture_tracking_changes().unwrap());
    job.change(5);
    job.checkpoint(&storage, 2);
    assert_eq!(is_delta(&storage, 2), [false]);
    // A capture that does not track changes: the one after knows none.
    job.change(5);
    job.checkpoint(&storage, 3);
    assert_eq!(is_delta(&storage, 3), [true]);
    let untracked = job.ops[0].capture().unwrap();
    storage.begin(4).unwrap();
    let file = write_incremental(
        &storage,
        4,
        0,
        &untracked,
        &mut job.previous[0],
        &job.policy,
    );
    commit_checkpoint(&storage, 4, &[("op", &[file])]).unwrap();
    assert_eq!(is_delta(&storage, 4), [true], "it knows its own changes");
    job.change(5);
    job.checkpoint(&storage, 5);
    assert_eq!(
        is_delta(&storage, 5),
        [false],
        "nothing was recorded after it"
    );
    // A restored state starts a new chain too.
    let mut op = Op::default();
    StoredCheckpoint::open(&storage, 5)
        .unwrap()
        .operator("op")
        .unwrap()
        .restore_into(&mut op, 0, 1)
        .unwrap();
    job.ops[0] = op;
    job.change(5);
    job.checkpoint(&storage, 6);
    assert_eq!(is_delta(&storage, 6), [false]);
    job.change(5);
    job.checkpoint(&storage, 7);
    assert_eq!(is_delta(&storage, 7), [true]);
    assert_eq!(restored(&storage, 7, 1), job.model);
}

#[test]
fn an_incremental_checkpoint_cannot_be_loaded_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let mut job = Job::new(1);
    job.change(100);
    job.checkpoint(&storage, 1);
    job.change(5);
    job.checkpoint(&storage, 2);
    let stored = StoredCheckpoint::open(&storage, 2).unwrap();
    assert!(matches!(
        stored.operator("op").unwrap().load(),
        Err(StateError::IncrementalCheckpoint {
            checkpoint_id: 2,
            ..
        })
    ));
}

#[cfg(feature = "object-store")]
mod object {
    use super::common::s3::{config, s3_server, unique_prefix};
    use super::*;
    use state_runtime::storage::ObjectStorage;

    #[test]
    fn s3_deltas_restore_exactly_and_retention_keeps_what_is_referenced() {
        let Some((endpoint, bucket)) = s3_server("s3_incremental") else {
            return;
        };
        let prefix = unique_prefix("incremental");
        let storage = ObjectStorage::s3(&config(&endpoint, &bucket, &prefix)).unwrap();
        deltas_restore_exactly(&storage);
        let storage =
            ObjectStorage::s3(&config(&endpoint, &bucket, &format!("{prefix}-retention"))).unwrap();
        retention_keeps_what_is_referenced(&storage);
    }
}

#[test]
fn deltas_restore_at_another_max_parallelism_and_under_the_flink_assigner() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let mut job = Job::new(2);
    job.change(100);
    for id in 1..=4 {
        job.checkpoint_after_change(id, 5, &storage);
    }
    assert_eq!(is_delta(&storage, 4), [true, true]);
    // Native: 32 key groups re-bucketed into 48 and into 7 (boundary key
    // groups filtered, deltas routed by their hashes).
    for max in [48, 7] {
        let options = RestoreOptions::default()
            .assigner(KeyGroupAssigner::native(MaxParallelism::new(max).unwrap()));
        for parallelism in [1, 3] {
            assert_eq!(
                restored_with(&storage, 4, parallelism, &options),
                job.model,
                "max parallelism {max}, parallelism {parallelism}"
            );
        }
    }
    // Flink's assigner (Java hash codes): deltas stay in their key group.
    #[derive(Checkpointed, Default)]
    struct Flinkish {
        #[state(keyed)]
        totals: KeyedValue<i64, i64>,
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let flink = KeyGroupAssigner::flink(MaxParallelism::new(32).unwrap());
    let mut op = Flinkish::default();
    op.bind_keyed(flink, flink.range_for_subtask(1, 0).unwrap())
        .unwrap();
    let mut model = BTreeMap::new();
    let mut previous = None;
    for id in 1..=4i64 {
        for k in 0..3_000i64 {
            if id == 1 || (k * 13 + id) % 20 == 0 {
                op.totals.insert(k, k * id).unwrap();
                model.insert(k, k * id);
            }
            if id > 1 && (k + id) % 97 == 0 {
                op.totals.remove(k).unwrap();
                model.remove(&k);
            }
        }
        let id = id as u64;
        storage.begin(id).unwrap();
        let captured = op.capture_tracking_changes().unwrap();
        let file = write_incremental(
            &storage,
            id,
            0,
            &captured,
            &mut previous,
            &IncrementalPolicy::default(),
        );
        commit_checkpoint(&storage, id, &[("op", &[file])]).unwrap();
    }
    assert_eq!(is_delta(&storage, 4), [true]);
    let stored = StoredCheckpoint::open(&storage, 4).unwrap();
    for parallelism in [1, 3] {
        let mut got = BTreeMap::new();
        for j in 0..parallelism {
            let mut restored = Flinkish::default();
            stored
                .operator("op")
                .unwrap()
                .restore_into(&mut restored, j, parallelism)
                .unwrap();
            got.extend(restored.totals.iter().map(|(k, v)| (*k, *v)));
        }
        assert_eq!(got, model, "parallelism {parallelism}");
    }
}

#[test]
fn a_delta_written_while_the_state_changes_holds_the_state_at_capture() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let mut job = Job::new(1);
    job.change(100);
    job.checkpoint(&storage, 1);
    job.change(5);
    let at_capture = job.model.clone();
    let captured = job.ops[0].capture_tracking_changes().unwrap();
    // The live state changes every page before the delta is written: each
    // page is encoded for the snapshot first, and the delta comes from
    // those bytes.
    for _ in 0..3 {
        job.change(30);
    }
    storage.begin(2).unwrap();
    let file = write_incremental(&storage, 2, 0, &captured, &mut job.previous[0], &job.policy);
    commit_checkpoint(&storage, 2, &[("op", &[file])]).unwrap();
    assert_eq!(is_delta(&storage, 2), [true]);
    assert_eq!(restored(&storage, 2, 2), at_capture);
}

/// The job of `tests/data/format-v3-incremental/README.md`.
#[derive(Checkpointed, Default)]
struct V3Job {
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
}

#[test]
fn a_format_v3_incremental_checkpoint_still_restores() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-v3-incremental");
    let storage = LocalStorage::open(&dir).unwrap();
    let stored = StoredCheckpoint::latest(&storage).unwrap().unwrap();
    assert_eq!(stored.format_version(), 3);
    let op = stored.operator("job").unwrap();
    for sub in op.subtasks() {
        let keyed = sub.keyed().unwrap();
        assert!(keyed.is_delta());
        let kinds: Vec<bool> = keyed
            .earlier_layers()
            .iter()
            .map(|l| l.is_delta())
            .collect();
        assert_eq!(kinds, [false, true], "a full file, then a delta");
    }
    // The values the fixture's program wrote.
    let mut want: BTreeMap<u64, i64> = (0..200).map(|k| (k, k as i64 * 10)).collect();
    (0..20).for_each(|k| *want.get_mut(&k).unwrap() += 1);
    want.remove(&199);
    (10..30).for_each(|k| *want.get_mut(&k).unwrap() += 2);
    want.extend((300..305).map(|k| (k, -(k as i64))));
    for parallelism in [1, 3] {
        let mut got = BTreeMap::new();
        for j in 0..parallelism {
            let mut job = V3Job::default();
            op.restore_into(&mut job, j, parallelism).unwrap();
            got.extend(job.totals.iter().map(|(k, v)| (*k, *v)));
        }
        assert_eq!(got, want, "restored at parallelism {parallelism}");
    }
    stored.verify().unwrap();
}
