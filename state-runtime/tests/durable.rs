//! Durable job checkpoints: round trips against the in-memory
//! restore, read locality measured by the storage, determinism, versioning,
//! and every corrupted or truncated byte detected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use state_runtime::checkpoint::durable::{
    DATA_HEADER_LEN, FORMAT_VERSION, ReadKind, StoredCheckpoint, write_checkpoint,
    write_checkpoint_at,
};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage, MANIFEST_NAME};

#[derive(Checkpointed, Default, Debug)]
struct Source {
    #[state(split)]
    offsets: Vec<(u32, u64)>,
    #[state(union)]
    watermarks: BTreeMap<u32, i64>,
    #[state(broadcast)]
    rules: String,
}

#[derive(Checkpointed, Default)]
struct Sum {
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
    #[state(keyed)]
    recent: KeyedList<u64, u32>,
    #[state(split)]
    pending: Vec<u64>,
}

/// Only keyed and split state: every byte goes to exactly one new subtask.
#[derive(Checkpointed, Default)]
struct SumOnly {
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
    #[state(keyed)]
    recent: KeyedList<u64, u32>,
    #[state(split)]
    pending: Vec<u64>,
}

type SourceView = (Vec<(u32, u64)>, BTreeMap<u32, i64>, String);
type SumView = (BTreeMap<u64, i64>, BTreeMap<u64, Vec<u32>>, Vec<u64>);

fn source_view(s: &Source) -> SourceView {
    (s.offsets.clone(), s.watermarks.clone(), s.rules.clone())
}

fn sum_view(s: &Sum) -> SumView {
    (
        s.totals.iter().map(|(k, v)| (*k, *v)).collect(),
        s.recent.iter().map(|(k, v)| (*k, v.clone())).collect(),
        s.pending.clone(),
    )
}

/// The two operators of a job at parallelism `n`, `keys` keys.
fn job(n: usize, max_p: u32, keys: u64) -> (Checkpoint, Checkpoint) {
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(max_p).unwrap());
    let mut sources = Vec::new();
    let mut sums = Vec::new();
    for subtask in 0..n {
        let (i, n) = (subtask as u32, n as u32);
        let source = Source {
            offsets: (0..(i + 2))
                .map(|p| (p * n + i, u64::from(p) * 100 + u64::from(i)))
                .collect(),
            watermarks: BTreeMap::from([(i, i64::from(i) * 1000)]),
            rules: "only-red".into(),
        };
        sources.push(source.snapshot().unwrap());
        let mut sum = Sum::default();
        let range = assigner.range_for_subtask(n as usize, subtask).unwrap();
        sum.bind_keyed(assigner, range).unwrap();
        for k in 0..keys {
            if range.contains(assigner.key_group(&k).unwrap()) {
                sum.totals.insert(k, k as i64 * 7 - 50).unwrap();
                for j in 0..(k % 3) {
                    sum.recent.push(k, (k * 10 + j) as u32).unwrap();
                }
            }
        }
        sum.pending = (0..u64::from(i % 3 + 1))
            .map(|x| x + 10 * u64::from(i))
            .collect();
        sums.push(sum.snapshot().unwrap());
    }
    (
        Checkpoint::from_subtasks(sources).unwrap(),
        Checkpoint::from_subtasks(sums).unwrap(),
    )
}

fn storage() -> (tempfile::TempDir, LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path().join("cp")).unwrap();
    (dir, storage)
}

#[test]
fn restores_like_the_in_memory_checkpoint_at_every_parallelism() {
    let (_dir, storage) = storage();
    let (source, sum) = job(3, 32, 200);
    let report = write_checkpoint(&storage, 4, &[("source", &source), ("sum", &sum)]).unwrap();
    assert_eq!(report.files.len(), 6);
    let stored = StoredCheckpoint::latest(&storage).unwrap().unwrap();
    assert_eq!(stored.checkpoint_id(), 4);
    let names: Vec<&str> = stored.operators().iter().map(|o| o.name()).collect();
    assert_eq!(names, ["source", "sum"]);
    let (s_op, k_op) = (
        stored.operator("source").unwrap(),
        stored.operator("sum").unwrap(),
    );
    assert_eq!((s_op.parallelism(), k_op.parallelism()), (3, 3));
    assert_eq!(s_op.assigner(), None);
    assert_eq!(
        k_op.assigner(),
        Some(KeyGroupAssigner::native(MaxParallelism::new(32).unwrap()))
    );
    let source = source.with_checkpoint_id(4);
    let sum = sum.with_checkpoint_id(4);
    for m in [1, 2, 3, 5, 8] {
        let mut keys = 0;
        for j in 0..m {
            let (mut a, mut b) = (Source::default(), Source::default());
            let ra = s_op.restore_into(&mut a, j, m).unwrap();
            let rb = source.restore_into(&mut b, j, m).unwrap();
            assert_eq!(source_view(&a), source_view(&b), "source {j}/{m}");
            assert_eq!(ra, rb, "source report {j}/{m}");
            let (mut a, mut b) = (Sum::default(), Sum::default());
            let ra = k_op.restore_into(&mut a, j, m).unwrap();
            let rb = sum.restore_into(&mut b, j, m).unwrap();
            assert_eq!(sum_view(&a), sum_view(&b), "sum {j}/{m}");
            assert_eq!(ra, rb, "sum report {j}/{m}");
            keys += a.totals.len();
        }
        assert_eq!(keys, 200);
    }
    // A wider max parallelism (native): still the in-memory result.
    let wider = KeyGroupAssigner::native(MaxParallelism::new(64).unwrap());
    let options = RestoreOptions::default().assigner(wider);
    for j in 0..4 {
        let (mut a, mut b) = (Sum::default(), Sum::default());
        let ra = k_op.restore_into_with(&mut a, j, 4, &options).unwrap();
        let rb = sum.restore_into_with(&mut b, j, 4, &options).unwrap();
        assert_eq!(sum_view(&a), sum_view(&b));
        assert_eq!(ra, rb);
    }
    // load() gives back the checkpoints, and verify() passes.
    assert_eq!(s_op.load().unwrap(), source);
    assert_eq!(k_op.load().unwrap(), sum);
    let v = stored.verify().unwrap();
    assert_eq!(v.files, 6);
    assert_eq!(v.bytes, stored.data_file_bytes() + stored.manifest_len());
    // Errors of the in-memory restore carry over.
    assert!(matches!(
        stored.operator("nope"),
        Err(StateError::OperatorNotFound { ref available, .. }) if available == &["source", "sum"]
    ));
    let mut s = Sum::default();
    assert!(matches!(
        s_op.restore_into(&mut s, 0, 1),
        Err(StateError::UnknownState { .. })
    ));
    assert!(matches!(
        k_op.restore_into(&mut s, 3, 3),
        Err(StateError::SubtaskOutOfRange { .. })
    ));
}

#[test]
fn restore_reads_exactly_its_key_groups_and_items() {
    let (_dir, storage) = storage();
    let (_, sum) = job(4, 64, 500);
    write_checkpoint(&storage, 1, &[("sum", &sum)]).unwrap();
    let stored = StoredCheckpoint::open(&storage, 1).unwrap();
    let op = stored.operator("sum").unwrap();
    let payload: u64 = op.subtasks().iter().map(|s| s.payload_len()).sum();
    let keyed_bytes: u64 = op
        .subtasks()
        .iter()
        .map(|s| s.keyed().unwrap().total_bytes())
        .sum();
    for m in [1, 2, 3, 4, 6, 9] {
        let plan = op.plan_reads(m, None).unwrap();
        let mut total = 0;
        for (j, planned) in plan.iter().enumerate() {
            let before = storage.read_stats();
            let mut s = SumOnly::default();
            let report = op.restore_into(&mut s, j, m).unwrap();
            let read = storage.read_stats().since(before);
            assert_eq!(read.manifest_bytes, 0);
            assert_eq!(read.data_bytes, report.bytes_read, "{j}/{m}");
            assert_eq!(read.data_bytes, planned.bytes(), "{j}/{m}");
            assert_eq!(read.range_reads, planned.reads.len() as u64, "{j}/{m}");
            // Per subtask: the bytes of its key groups and of its items.
            let kgs = report.key_groups.unwrap();
            let mut own = 0;
            for sub in op.subtasks() {
                let k = sub.keyed().unwrap();
                for kg in k.key_groups().intersection(kgs) {
                    own +=
                        k.key_group_range(kg).unwrap().end - k.key_group_range(kg).unwrap().start;
                }
            }
            let items: u64 = planned
                .reads
                .iter()
                .filter(|r| matches!(r.what, ReadKind::Items { .. }))
                .map(|r| r.range.end - r.range.start)
                .sum();
            assert_eq!(read.data_bytes, own + items, "{j}/{m}");
            assert_eq!(planned.key_groups, Some(kgs));
            total += read.data_bytes;
        }
        // Read amplification 1.0.
        assert_eq!(total, payload, "parallelism {m}");
        assert!(keyed_bytes < payload);
    }
    // With a new max parallelism, only boundary key groups are read twice.
    let wider = KeyGroupAssigner::native(MaxParallelism::new(96).unwrap());
    let options = RestoreOptions::default().assigner(wider);
    let plan = op.plan_reads(5, Some(wider)).unwrap();
    let mut total = 0;
    for (j, p) in plan.iter().enumerate() {
        let before = storage.read_stats();
        let mut s = SumOnly::default();
        let report = op.restore_into_with(&mut s, j, 5, &options).unwrap();
        assert_eq!(storage.read_stats().since(before).data_bytes, p.bytes());
        assert_eq!(report.bytes_read, p.bytes());
        total += p.bytes();
    }
    assert!(
        total >= payload && total < payload * 2,
        "{total} vs {payload}"
    );
}

#[test]
fn union_and_broadcast_are_read_whole_by_every_subtask() {
    let (_dir, storage) = storage();
    let (source, _) = job(2, 8, 0);
    write_checkpoint(&storage, 1, &[("source", &source)]).unwrap();
    let stored = StoredCheckpoint::open(&storage, 1).unwrap();
    let op = stored.operator("source").unwrap();
    let union_bytes: u64 = op.subtasks().iter().map(|s| s.states()[1].byte_len()).sum();
    let plan = op.plan_reads(3, None).unwrap();
    for (j, p) in plan.iter().enumerate() {
        let union: u64 = p
            .reads
            .iter()
            .filter(|r| matches!(&r.what, ReadKind::Items { state, .. } if state == "watermarks"))
            .map(|r| r.range.end - r.range.start)
            .sum();
        assert_eq!(union, union_bytes);
        let broadcast: Vec<_> = p
            .reads
            .iter()
            .filter(|r| matches!(&r.what, ReadKind::Items { state, .. } if state == "rules"))
            .collect();
        assert_eq!(broadcast.len(), 1);
        assert_eq!(broadcast[0].old_subtask, j % 2);
        assert!(broadcast[0].range.start >= DATA_HEADER_LEN);
    }
}

#[test]
fn same_checkpoints_give_byte_identical_files() {
    let (source, sum) = job(3, 16, 100);
    let (d1, s1) = storage();
    let (d2, s2) = storage();
    let ops = [("source", &source), ("sum", &sum)];
    write_checkpoint_at(&s1, 9, &ops, 1234).unwrap();
    // Rebuilt from scratch: same state, same bytes.
    let (source2, sum2) = job(3, 16, 100);
    write_checkpoint_at(&s2, 9, &[("source", &source2), ("sum", &sum2)], 1234).unwrap();
    let files = |d: &tempfile::TempDir| -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(d.path().join("cp/chk-9"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(files(&d1), files(&d2));
    assert_eq!(files(&d1).len(), 7);
    // Another creation time changes the manifest only.
    let (d3, s3) = storage();
    write_checkpoint_at(&s3, 9, &ops, 999).unwrap();
    let (a, b) = (files(&d1), files(&d3));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1 == y.1, x.0 != MANIFEST_NAME, "{}", x.0);
    }
    assert_eq!(
        StoredCheckpoint::open(&s3, 9).unwrap().created_unix_ms(),
        999
    );
}

#[test]
fn writer_rejects_bad_operator_lists_and_leaves_nothing() {
    let (_dir, storage) = storage();
    let (source, _) = job(1, 8, 0);
    for ops in [vec![("", &source)], vec![("a", &source), ("a", &source)]] {
        assert!(matches!(
            write_checkpoint(&storage, 1, &ops),
            Err(StateError::InvalidOperators { .. })
        ));
    }
    assert_eq!(storage.list().unwrap(), Vec::<u64>::new());
    // No operators at all is a valid (empty) job checkpoint.
    write_checkpoint(&storage, 1, &[]).unwrap();
    assert!(
        StoredCheckpoint::open(&storage, 1)
            .unwrap()
            .operators()
            .is_empty()
    );
}

fn cp_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("cp/chk-{id}"))
}

#[test]
fn newer_versions_give_a_typed_error() {
    let (dir, storage) = storage();
    let (source, _) = job(1, 8, 0);
    let report = write_checkpoint(&storage, 1, &[("source", &source)]).unwrap();
    let manifest_path = cp_dir(dir.path(), 1).join(MANIFEST_NAME);
    let original = std::fs::read(&manifest_path).unwrap();
    // The next version with a valid CRC: a newer writer.
    let mut m = original.clone();
    m[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let n = m.len() - 4;
    let crc = crc32c::crc32c(&m[..n]);
    m[n..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&manifest_path, &m).unwrap();
    let err = StoredCheckpoint::open(&storage, 1).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::UnsupportedFormatVersion {
                found,
                supported: FORMAT_VERSION,
                ..
            } if found == FORMAT_VERSION + 1
        ),
        "{err}"
    );
    assert!(err.to_string().contains("_MANIFEST"), "{err}");
    // The same byte flipped without fixing the CRC: corruption.
    m[n..].copy_from_slice(&original[n..]);
    std::fs::write(&manifest_path, &m).unwrap();
    assert!(matches!(
        StoredCheckpoint::open(&storage, 1),
        Err(StateError::Corrupt { offset: 8, .. })
    ));
    std::fs::write(&manifest_path, &original).unwrap();
    // A data file of the next version (valid header CRC).
    let data_path = cp_dir(dir.path(), 1).join(&report.files[0].name);
    let mut d = std::fs::read(&data_path).unwrap();
    d[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32c::crc32c(&d[..12]);
    d[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&data_path, &d).unwrap();
    let stored = StoredCheckpoint::open(&storage, 1).unwrap();
    let err = stored.verify().unwrap_err();
    assert!(
        matches!(err, StateError::UnsupportedFormatVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
}

/// Restores every subtask of both operators at parallelism `m` and compares
/// with the expected views; `Err` if any restore fails.
fn restore_all(
    storage: &LocalStorage,
    m: usize,
) -> Result<(Vec<SourceView>, Vec<SumView>), StateError> {
    let stored = StoredCheckpoint::open(storage, 1)?;
    let (s_op, k_op) = (stored.operator("source")?, stored.operator("sum")?);
    let mut sources = Vec::new();
    let mut sums = Vec::new();
    for j in 0..m {
        let mut s = Source::default();
        s_op.restore_into(&mut s, j, m)?;
        sources.push(source_view(&s));
        let mut k = Sum::default();
        k_op.restore_into(&mut k, j, m)?;
        sums.push(sum_view(&k));
    }
    Ok((sources, sums))
}

fn verify_all(storage: &LocalStorage) -> Result<(), StateError> {
    StoredCheckpoint::open(storage, 1)?.verify().map(|_| ())
}

/// A small job checkpoint, and every file of it.
fn small_checkpoint() -> (tempfile::TempDir, LocalStorage, Vec<PathBuf>) {
    let (dir, storage) = storage();
    let (source, sum) = job(2, 4, 6);
    write_checkpoint(&storage, 1, &[("source", &source), ("sum", &sum)]).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(cp_dir(dir.path(), 1))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    (dir, storage, files)
}

#[test]
fn every_flipped_byte_is_detected_or_harmless() {
    let (_dir, storage, files) = small_checkpoint();
    let expected: Vec<_> = [1, 2, 3].map(|m| restore_all(&storage, m).unwrap()).into();
    let total: usize = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len() as usize)
        .sum();
    assert!(total < 4096, "keep the checkpoint small: {total} bytes");
    let mut cases = 0;
    let mut restore_errors = 0;
    for file in &files {
        let original = std::fs::read(file).unwrap();
        for i in 0..original.len() {
            // One flip per byte, cycling through low, high, all and middle bits.
            {
                let mask = [0x01u8, 0x80, 0xff, 0x10][i % 4];
                let mut bad = original.clone();
                bad[i] ^= mask;
                std::fs::write(file, &bad).unwrap();
                cases += 1;
                // Every flip is found by verify, and named by file and offset.
                match verify_all(&storage) {
                    Err(StateError::Corrupt { path, offset, .. }) => {
                        assert!(path.ends_with(&*file.file_name().unwrap().to_string_lossy()));
                        assert!(offset <= i as u64, "{path}: offset {offset} > {i}");
                    }
                    Err(StateError::UnsupportedFormatVersion { .. }) => {
                        assert!((8..12).contains(&i), "{}: byte {i}", file.display());
                    }
                    other => panic!(
                        "{} byte {i} ^ {mask:#x}: verify gave {other:?}",
                        file.display()
                    ),
                }
                // A restore fails or gives exactly the original state.
                for (k, m) in [1, 2, 3].into_iter().enumerate() {
                    match restore_all(&storage, m) {
                        Ok(got) => assert_eq!(
                            got,
                            expected[k],
                            "{} byte {i} ^ {mask:#x}: wrong restore at {m}",
                            file.display()
                        ),
                        Err(_) => restore_errors += 1,
                    }
                }
            }
        }
        std::fs::write(file, &original).unwrap();
    }
    assert!(cases > 500, "{cases}");
    // Most flips hit bytes a restore reads; harmless ones are data file
    // headers and values a given parallelism does not read (the broadcast
    // copies of other old subtasks).
    assert!(
        restore_errors * 2 > cases * 3,
        "{restore_errors} of {}",
        cases * 3
    );
}

#[test]
fn every_truncation_is_detected() {
    let (_dir, storage, files) = small_checkpoint();
    for file in &files {
        let original = std::fs::read(file).unwrap();
        for len in 0..original.len() {
            std::fs::write(file, &original[..len]).unwrap();
            let err = verify_all(&storage).unwrap_err();
            assert!(
                matches!(err, StateError::Corrupt { .. }),
                "{} cut at {len}: {err}",
                file.display()
            );
            for m in [1, 3] {
                assert!(
                    restore_all(&storage, m).is_err(),
                    "{} cut at {len}: restore at {m} succeeded",
                    file.display()
                );
            }
        }
        // One byte too many is also a wrong length.
        let mut longer = original.clone();
        longer.push(0);
        std::fs::write(file, &longer).unwrap();
        assert!(verify_all(&storage).is_err());
        assert!(restore_all(&storage, 2).is_err());
        std::fs::write(file, &original).unwrap();
    }
    restore_all(&storage, 2).unwrap();
    verify_all(&storage).unwrap();
}

#[test]
fn corrupt_errors_name_file_offset_and_expectation() {
    let (dir, storage) = storage();
    let (_, sum) = job(1, 8, 50);
    let report = write_checkpoint(&storage, 1, &[("sum", &sum)]).unwrap();
    let path = cp_dir(dir.path(), 1).join(&report.files[0].name);
    let mut d = std::fs::read(&path).unwrap();
    let stored = StoredCheckpoint::open(&storage, 1).unwrap();
    let k = stored.operator("sum").unwrap().subtasks()[0]
        .keyed()
        .unwrap()
        .clone();
    let kg = k
        .key_groups()
        .iter()
        .find(|kg| !k.key_group_range(*kg).unwrap().is_empty())
        .unwrap();
    let r = k.key_group_range(kg).unwrap();
    d[(DATA_HEADER_LEN + r.start) as usize] ^= 0x10;
    std::fs::write(&path, &d).unwrap();
    let mut s = Sum::default();
    let err = stored
        .operator("sum")
        .unwrap()
        .restore_into(&mut s, 0, 1)
        .unwrap_err();
    let msg = err.to_string();
    match err {
        StateError::Corrupt {
            path: p,
            offset,
            expected,
            ..
        } => {
            assert!(
                p.ends_with(&format!("chk-1/{}", report.files[0].name)),
                "{p}"
            );
            assert_eq!(offset, DATA_HEADER_LEN + r.start);
            assert!(expected.contains(&format!("key group {kg}")), "{expected}");
        }
        other => panic!("{other}"),
    }
    assert!(msg.starts_with("corrupt checkpoint file"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// What the `sections` fuzz target runs: the keyed section decoders,
    /// full and delta, on arbitrary bytes give errors, never panics.
    #[test]
    fn keyed_section_decoders_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        selector in any::<u8>(),
    ) {
        let max = MaxParallelism::new(8).unwrap();
        let assigner = if selector & 0x10 == 0 {
            KeyGroupAssigner::native(max)
        } else {
            KeyGroupAssigner::flink(max)
        };
        let range = max.all_key_groups();
        let kg = u32::from(selector >> 5) % 8;
        let keep_even = |kg: u32| kg % 2 == 0;
        let filter: Option<&dyn Fn(u32) -> bool> =
            if selector & 0x08 == 0 { None } else { Some(&keep_even) };
        match selector & 0x07 {
            0 | 1 => {
                let mut s = KeyedValue::<i64, String>::new(assigner, range).unwrap();
                let _ = s.read_key_group(kg, &bytes, filter);
                let _ = s.read_key_group_delta(kg, &bytes, filter);
            }
            2 | 3 => {
                let mut s = KeyedList::<i32, Vec<u8>>::new(assigner, range).unwrap();
                let _ = s.read_key_group(kg, &bytes, filter);
                let _ = s.read_key_group_delta(kg, &bytes, filter);
            }
            4 | 5 => {
                let mut s = KeyedMap::<String, u64, (u8, i64)>::new(assigner, range).unwrap();
                let _ = s.read_key_group(kg, &bytes, filter);
                let _ = s.read_key_group_delta(kg, &bytes, filter);
            }
            _ => {
                let mut s = KeyedValue::<i64, Vec<u128>>::new(assigner, range).unwrap();
                let _ = s.read_key_group(kg, &bytes, filter);
                let _ = s.read_key_group_delta(kg, &bytes, filter);
            }
        }
    }
}

/// A valid delta section of a `KeyedValue<i64, String>`: one removed hash,
/// and key 42's entry `"abc"`.
fn delta_of_42() -> Vec<u8> {
    use state_runtime::hash::StableHash;
    let hash = 42i64.stable_hash() | 1;
    let removed = hash.wrapping_add(2) | 1;
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&removed.to_le_bytes());
    bytes.push(1); // one entry
    bytes.push(84); // 42, zigzag
    bytes.push(3);
    bytes.extend_from_slice(b"abc");
    bytes
}

#[test]
fn a_delta_section_replaces_and_removes_entries() {
    let a = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
    let mut s = KeyedValue::<i64, String>::new(a, a.range_for_subtask(1, 0).unwrap()).unwrap();
    s.insert(42i64, "old".to_string()).unwrap();
    let kg = a.key_group(&42i64).unwrap();
    assert_eq!(s.read_key_group_delta(kg, &delta_of_42(), None).unwrap(), 1);
    assert_eq!(s.get(42i64).unwrap().map(String::as_str), Some("abc"));
    assert_eq!(s.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// A damaged delta section (bytes changed, the section cut short) is an
    /// error or applies, never a panic.
    #[test]
    fn delta_decoder_never_panics_on_damaged_deltas(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let a = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
        let mut s = KeyedValue::<i64, String>::new(a, a.range_for_subtask(1, 0).unwrap()).unwrap();
        let mut bytes = delta_of_42();
        for (at, x) in flips {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let kg = a.key_group(&42i64).unwrap();
        let _ = s.read_key_group_delta(kg, &bytes, None);
    }
}

#[derive(Checkpointed, Default)]
struct FlinkSum {
    #[state(keyed)]
    totals: KeyedValue<i64, i64>,
}

#[test]
fn flink_assigner_round_trips_and_refuses_a_new_max_parallelism() {
    let (_dir, storage) = storage();
    let assigner = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
    let mut subtasks = Vec::new();
    for i in 0..2 {
        let range = assigner.range_for_subtask(2, i).unwrap();
        let mut s = FlinkSum::default();
        s.bind_keyed(assigner, range).unwrap();
        for k in (0..300i64).filter(|k| range.contains(assigner.key_group(k).unwrap())) {
            s.totals.insert(k, -k).unwrap();
        }
        subtasks.push(s.snapshot().unwrap());
    }
    let cp = Checkpoint::from_subtasks(subtasks).unwrap();
    write_checkpoint(&storage, 1, &[("flink-sum", &cp)]).unwrap();
    let stored = StoredCheckpoint::open(&storage, 1).unwrap();
    let op = stored.operator("flink-sum").unwrap();
    assert_eq!(op.assigner(), Some(assigner));
    let mut all = BTreeMap::new();
    for j in 0..3 {
        let mut s = FlinkSum::default();
        op.restore_into(&mut s, j, 3).unwrap();
        for (k, v) in s.totals.iter() {
            assert_eq!(
                assigner
                    .subtask_for_key_group(3, assigner.key_group(k).unwrap())
                    .unwrap(),
                j
            );
            all.insert(*k, *v);
        }
    }
    assert_eq!(all, (0..300).map(|k| (k, -k)).collect());
    let other = KeyGroupAssigner::flink(MaxParallelism::new(256).unwrap());
    assert!(matches!(
        op.plan_reads(2, Some(other)),
        Err(StateError::MaxParallelismChanged { .. })
    ));
    let mut s = FlinkSum::default();
    assert!(matches!(
        op.restore_into_with(&mut s, 0, 2, &RestoreOptions::default().assigner(other)),
        Err(StateError::MaxParallelismChanged { .. })
    ));
}

#[cfg(feature = "object-store")]
#[test]
fn object_storage_serves_the_same_checkpoint_lazily() {
    use state_runtime::storage::ObjectStorage;
    use state_runtime::storage::object_store::memory::InMemory;
    use std::sync::Arc;

    let storage = ObjectStorage::new(Arc::new(InMemory::new()), "job", "memory://").unwrap();
    let (source, sum) = job(3, 32, 300);
    write_checkpoint(&storage, 2, &[("source", &source), ("sum", &sum)]).unwrap();
    let stored = StoredCheckpoint::latest(&storage).unwrap().unwrap();
    stored.verify().unwrap();
    let op = stored.operator("sum").unwrap();
    let sum = sum.with_checkpoint_id(2);
    let plan = op.plan_reads(4, None).unwrap();
    for (j, p) in plan.iter().enumerate() {
        let before = storage.read_stats();
        let (mut a, mut b) = (Sum::default(), Sum::default());
        let ra = op.restore_into(&mut a, j, 4).unwrap();
        assert_eq!(storage.read_stats().since(before).data_bytes, p.bytes());
        sum.restore_into(&mut b, j, 4).unwrap();
        assert_eq!(sum_view(&a), sum_view(&b));
        assert_eq!(ra.bytes_read, p.bytes());
    }
    assert_eq!(op.load().unwrap(), sum);
}
