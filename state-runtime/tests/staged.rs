//! Staged data files and their descriptions (`SubtaskFile::to_bytes`), as
//! writers in several processes use them.

use state_runtime::checkpoint::durable::{SubtaskFile, write_subtask_staged};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage};

#[derive(Checkpointed, Default)]
struct Op {
    #[state(split)]
    offsets: Vec<(u32, u64)>,
    #[state(keyed)]
    sums: KeyedValue<u32, i64>,
}

#[test]
fn descriptions_round_trip_and_reject_damage() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
    let mut op = Op {
        offsets: vec![(0, 9), (1, 10)],
        ..Op::default()
    };
    let range = assigner.range_for_subtask(2, 1).unwrap();
    op.bind_keyed(assigner, range).unwrap();
    for k in (0..50u32).filter(|k| range.contains(assigner.key_group(k).unwrap())) {
        op.sums.insert(k, i64::from(k)).unwrap();
    }
    let file = write_subtask_staged(&storage, 3, 1, "sum", 1, "run-x", &op).unwrap();
    assert!(file.name().ends_with(".run-x"), "{}", file.name());
    let bytes = file.to_bytes();
    let back = SubtaskFile::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(
        (back.checkpoint_id(), back.operator_index(), back.subtask()),
        (3, 1, 1)
    );
    assert_eq!(back.file_len(), storage.file_len(3, file.name()).unwrap());
    // The same file cannot be staged twice.
    assert!(matches!(
        write_subtask_staged(&storage, 3, 1, "sum", 1, "run-x", &op),
        Err(StateError::FileExists { .. })
    ));
    assert!(matches!(
        write_subtask_staged(&storage, 3, 1, "sum", 1, "bad.id", &op),
        Err(StateError::InvalidFileName { .. })
    ));
    // Every truncation and every changed byte is refused (the manifest's CRC
    // covers all after the first 16 bytes, which hold magic and indexes).
    for cut in 0..bytes.len() {
        assert!(SubtaskFile::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
    }
    for at in (0..8).chain(16..bytes.len()) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5a;
        assert!(SubtaskFile::from_bytes(&bad).is_err(), "flip at {at}");
    }
}

#[test]
fn racing_create_only_commits_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let root = root.clone();
                s.spawn(move || {
                    let storage = LocalStorage::open(root).unwrap();
                    match storage.commit_create_only(9, format!("m{i}").as_bytes()) {
                        Ok(()) => 1,
                        Err(StateError::CheckpointAlreadyCommitted { .. }) => 0,
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
    let storage = LocalStorage::open(&root).unwrap();
    assert_eq!(storage.list().unwrap(), [9]);
    // No temporary manifest is left, and none is listed as a data file.
    assert!(storage.list_files(9).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(storage.checkpoint_dir(9))
            .unwrap()
            .count(),
        1
    );
}
