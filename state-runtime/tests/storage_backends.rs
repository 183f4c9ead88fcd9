//! The same behaviour checks on every storage backend: the local directory,
//! and with `--features object-store` an in-memory object store and a real
//! S3-compatible server.
//!
//! The S3 tests need a server: set `RESCALE_S3_ENDPOINT` (e.g.
//! `http://127.0.0.1:9000`) and `RESCALE_S3_BUCKET` (an existing bucket);
//! `.ci/s3-server.sh` starts one (moto) and prints both. Without them the S3
//! tests say on stderr that they were skipped, unless
//! `RESCALE_S3_REQUIRED=1` is set (as CI does), in which case they fail.

mod common;

use state_runtime::StateError;
use state_runtime::storage::{CheckpointStorage, FileRef, LocalStorage, ReadStats};

/// Manifests here: comma-separated `id/name` references.
fn refs(_id: u64, manifest: &[u8]) -> Result<Vec<FileRef>, StateError> {
    Ok(std::str::from_utf8(manifest)
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (id, name) = s.split_once('/').unwrap();
            FileRef::new(id.parse().unwrap(), name)
        })
        .collect())
}

fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// Behaviour every backend must have. `s` must be empty.
fn conformance(s: &dyn CheckpointStorage) {
    assert_eq!(s.list().unwrap(), Vec::<u64>::new());
    assert_eq!(s.latest().unwrap(), None);

    // Visibility: nothing before the commit.
    let big = data(300_000, 1);
    s.begin(1).unwrap();
    s.write_file(1, "keyed-0", &big).unwrap();
    s.write_file(1, "ops", b"operator state").unwrap();
    assert_eq!(
        s.list().unwrap(),
        Vec::<u64>::new(),
        "uncommitted checkpoint listed"
    );
    assert!(matches!(
        s.read_manifest(1),
        Err(StateError::CheckpointNotFound {
            checkpoint_id: 1,
            ..
        })
    ));
    s.commit(1, b"1/keyed-0,1/ops").unwrap();
    assert_eq!(s.list().unwrap(), vec![1]);
    assert_eq!(s.latest().unwrap(), Some(1));
    assert_eq!(
        s.list_files(1).unwrap(),
        vec!["keyed-0".to_string(), "ops".to_string()]
    );
    assert!(matches!(
        s.write_file(1, "late", b""),
        Err(StateError::CheckpointNotBegun { .. })
    ));
    assert!(matches!(
        s.begin(1),
        Err(StateError::CheckpointIdNotIncreasing { latest: 1, .. })
    ));

    // Range reads: exact, counted, bounds-checked.
    let before = s.read_stats();
    assert_eq!(s.file_len(1, "keyed-0").unwrap(), big.len() as u64);
    assert_eq!(
        s.read_range(1, "keyed-0", 1000..1010).unwrap(),
        &big[1000..1010]
    );
    assert_eq!(
        s.read_range(1, "keyed-0", 299_990..300_000).unwrap(),
        &big[299_990..]
    );
    assert_eq!(s.read_range(1, "keyed-0", 5..5).unwrap(), Vec::<u8>::new());
    assert_eq!(s.read_file(1, "ops").unwrap(), b"operator state");
    assert_eq!(s.read_manifest(1).unwrap(), b"1/keyed-0,1/ops");
    assert_eq!(
        s.read_stats().since(before),
        ReadStats {
            data_bytes: 10 + 10 + 14,
            range_reads: 4,
            manifest_bytes: 15
        }
    );
    let counted = s.read_stats();
    #[allow(clippy::reversed_empty_ranges)]
    let bad = [299_999..300_001, 300_001..300_002, 10..5, 0..u64::MAX];
    for range in bad {
        match s.read_range(1, "keyed-0", range.clone()) {
            Err(StateError::RangeOutOfBounds {
                location,
                start,
                end,
                len,
            }) => {
                assert!(location.ends_with("chk-1/keyed-0"), "{location}");
                assert_eq!((start, end, len), (range.start, range.end, 300_000));
            }
            other => panic!("{range:?}: {other:?}"),
        }
    }
    assert_eq!(s.read_stats(), counted, "failed reads must not count");
    assert!(matches!(
        s.read_range(1, "missing", 0..1),
        Err(StateError::FileNotFound { .. })
    ));
    assert!(matches!(
        s.file_len(9, "keyed-0"),
        Err(StateError::FileNotFound { .. })
    ));
    assert!(matches!(
        s.read_range(1, "_MANIFEST", 0..1),
        Err(StateError::InvalidFileName { .. })
    ));

    // An interrupted attempt is invisible and cleaned up by the retry.
    s.begin(2).unwrap();
    s.write_file(2, "junk", b"from the failed attempt").unwrap();
    assert_eq!(s.list().unwrap(), vec![1]);
    s.begin(2).unwrap();
    s.write_file(2, "delta", b"D2").unwrap();
    s.commit(2, b"1/keyed-0,2/delta").unwrap();
    assert_eq!(s.list_files(2).unwrap(), vec!["delta".to_string()]);

    // Abort.
    s.begin(3).unwrap();
    s.write_file(3, "x", b"x").unwrap();
    s.abort(3).unwrap();
    assert!(matches!(
        s.list_files(3),
        Err(StateError::CheckpointNotFound { .. })
    ));

    // Retention keeps the last K and what they reference.
    s.write_checkpoint(4, &[("delta", b"D4")], b"1/keyed-0,4/delta")
        .unwrap();
    s.write_checkpoint(5, &[("keyed-0", b"K5")], b"5/keyed-0")
        .unwrap();
    let report = s.retain_last(2, &refs).unwrap();
    assert_eq!(report.retained, vec![4, 5]);
    assert_eq!(report.removed_checkpoints, vec![1, 2]);
    assert_eq!(report.kept_referenced, vec![FileRef::new(1, "keyed-0")]);
    assert_eq!(report.deleted_files, 2); // 1/ops, 2/delta
    assert_eq!(s.list().unwrap(), vec![4, 5]);
    assert_eq!(s.list_files(1).unwrap(), vec!["keyed-0".to_string()]);
    assert_eq!(s.read_range(1, "keyed-0", 0..4).unwrap(), &big[..4]);
    assert!(matches!(
        s.list_files(2),
        Err(StateError::CheckpointNotFound { .. })
    ));

    s.write_checkpoint(6, &[("delta", b"D6")], b"5/keyed-0,6/delta")
        .unwrap();
    let report = s.retain_last(2, &refs).unwrap();
    assert_eq!(report.removed_checkpoints, vec![4]);
    assert_eq!(report.removed_incomplete, vec![1]);
    assert_eq!(s.list().unwrap(), vec![5, 6]);
    assert!(matches!(
        s.list_files(1),
        Err(StateError::CheckpointNotFound { .. })
    ));
    assert_eq!(s.read_file(5, "keyed-0").unwrap(), b"K5");

    // Files written in pieces: a small one, and one of several upload parts
    // (8 MiB each for object stores) given in uneven pieces. A file left
    // unfinished does not become part of the checkpoint.
    let large = data(20 << 20, 7);
    s.begin(7).unwrap();
    let mut small = s.create_file(7, "small").unwrap();
    small.write(b"ab").unwrap();
    small.write(b"cd").unwrap();
    small.finish().unwrap();
    let mut file = s.create_file(7, "large").unwrap();
    let mut at = 0;
    for (i, piece) in [1usize, 9 << 20, 3, 5 << 20, 1 << 20]
        .iter()
        .cycle()
        .enumerate()
    {
        let end = (at + piece).min(large.len());
        file.write(&large[at..end]).unwrap();
        at = end;
        if at == large.len() || i > 20 {
            break;
        }
    }
    assert_eq!(at, large.len());
    file.finish().unwrap();
    let mut unfinished = s.create_file(7, "unfinished").unwrap();
    unfinished.write(&large[..(9 << 20)]).unwrap();
    drop(unfinished);
    assert!(matches!(
        s.create_file(8, "x").map(|_| ()),
        Err(StateError::CheckpointNotBegun { .. })
    ));
    s.commit(7, b"7/small,7/large").unwrap();
    assert_eq!(s.read_file(7, "small").unwrap(), b"abcd");
    assert_eq!(s.file_len(7, "large").unwrap(), large.len() as u64);
    assert!(
        s.read_file(7, "large").unwrap() == large,
        "the large file differs"
    );
    let mut buf = vec![1, 2, 3];
    s.read_range_into(7, "large", 100..(12 << 20), &mut buf)
        .unwrap();
    assert!(
        buf[..] == large[100..(12 << 20)],
        "a range read into a buffer differs"
    );
    staged_conformance(s);
}

/// Staged files and create-only commits: no `begin`, no overwrite, one
/// manifest.
fn staged_conformance(s: &dyn CheckpointStorage) {
    assert_eq!(s.latest().unwrap(), Some(7));
    for (name, bytes) in [("w0.run-a", &b"zero"[..]), ("w1.run-a", b"one")] {
        let mut f = s.create_staged_file(9, name).unwrap();
        f.write(bytes).unwrap();
        f.finish().unwrap();
    }
    // Staged files are not visible before the commit.
    assert_eq!(s.latest().unwrap(), Some(7));
    // Refused when the file is created (local) or put (object store).
    let again = s.create_staged_file(9, "w0.run-a").and_then(|mut f| {
        f.write(b"other")?;
        f.finish()
    });
    assert!(
        matches!(again, Err(StateError::FileExists { .. })),
        "{again:?}"
    );
    assert!(matches!(
        s.create_staged_file(9, "_bad").map(|_| ()),
        Err(StateError::InvalidFileName { .. })
    ));
    s.commit_create_only(9, b"9/w0.run-a,9/w1.run-a").unwrap();
    assert_eq!(s.latest().unwrap(), Some(9));
    assert!(matches!(
        s.commit_create_only(9, b"other"),
        Err(StateError::CheckpointAlreadyCommitted {
            checkpoint_id: 9,
            ..
        })
    ));
    assert_eq!(s.read_manifest(9).unwrap(), b"9/w0.run-a,9/w1.run-a");
    assert_eq!(s.read_file(9, "w0.run-a").unwrap(), b"zero");
    assert_eq!(s.list_files(9).unwrap(), ["w0.run-a", "w1.run-a"]);
}

#[test]
fn local_storage_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(dir.path()).unwrap();
    conformance(&storage);
}

#[test]
fn storage_handle_is_shareable_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let storage: std::sync::Arc<dyn CheckpointStorage> =
        std::sync::Arc::new(LocalStorage::open(dir.path()).unwrap());
    storage.begin(1).unwrap();
    std::thread::scope(|scope| {
        for i in 0..4u8 {
            let storage = &storage;
            scope.spawn(move || {
                storage
                    .write_file(1, &format!("keyed-{i}"), &data(10_000, i))
                    .unwrap();
            });
        }
    });
    storage.commit(1, b"").unwrap();
    std::thread::scope(|scope| {
        for i in 0..4u8 {
            let storage = &storage;
            scope.spawn(move || {
                let name = format!("keyed-{i}");
                assert_eq!(
                    storage.read_range(1, &name, 100..200).unwrap(),
                    &data(10_000, i)[100..200]
                );
            });
        }
    });
    assert_eq!(storage.read_stats().data_bytes, 400);
}

#[cfg(feature = "object-store")]
mod object {
    use super::common::s3::{config, s3_server, unique_prefix};
    use super::*;
    use std::sync::Arc;

    use state_runtime::storage::ObjectStorage;
    use state_runtime::storage::object_store::aws::AmazonS3Builder;
    use state_runtime::storage::object_store::memory::InMemory;
    use state_runtime::storage::object_store::path::Path;
    use state_runtime::storage::object_store::{ObjectStoreExt, PutPayload};

    #[test]
    fn in_memory_object_storage_conformance() {
        let storage = ObjectStorage::new(Arc::new(InMemory::new()), "job/op", "memory://").unwrap();
        conformance(&storage);
    }

    #[test]
    fn s3_conformance() {
        let Some((endpoint, bucket)) = s3_server("s3_conformance") else {
            return;
        };
        let storage =
            ObjectStorage::s3(&config(&endpoint, &bucket, &unique_prefix("conformance"))).unwrap();
        conformance(&storage);
    }

    #[test]
    fn s3_objects_without_manifest_are_invisible() {
        let Some((endpoint, bucket)) = s3_server("s3_objects_without_manifest_are_invisible")
        else {
            return;
        };
        let prefix = unique_prefix("invisible");
        let storage = ObjectStorage::s3(&config(&endpoint, &bucket, &prefix)).unwrap();
        storage.write_checkpoint(1, &[("a", b"1")], b"1/a").unwrap();
        // What a writer that died between its data PUTs and the manifest PUT
        // leaves behind, put with a separate client.
        let raw = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let put = |key: String, bytes: &'static [u8]| {
            rt.block_on(raw.put(&Path::from(key), PutPayload::from_static(bytes)))
                .unwrap();
        };
        put(format!("{prefix}/chk-2/a"), b"partial");
        put(format!("{prefix}/chk-2/b"), b"partial");
        // And unrelated keys under the prefix.
        for key in ["chk-x/a", "chk-03/_MANIFEST", "notes.txt"] {
            put(format!("{prefix}/{key}"), b"?");
        }
        assert_eq!(storage.list().unwrap(), vec![1]);
        assert_eq!(storage.latest().unwrap(), Some(1));
        assert_eq!(
            storage.list_files(2).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        // Retention removes the interrupted attempt only once something newer is complete.
        storage.retain_last(1, &refs).unwrap();
        assert_eq!(storage.list_files(2).unwrap().len(), 2);
        storage.begin(2).unwrap();
        assert!(matches!(
            storage.list_files(2),
            Err(StateError::CheckpointNotFound { .. })
        ));
        storage.write_file(2, "c", b"c").unwrap();
        storage.commit(2, b"2/c").unwrap();
        assert_eq!(storage.list().unwrap(), vec![1, 2]);
        assert_eq!(storage.list_files(2).unwrap(), vec!["c".to_string()]);
        // A handle on the same bucket and prefix sees the same.
        let other = ObjectStorage::s3(&config(&endpoint, &bucket, &prefix)).unwrap();
        assert_eq!(other.list().unwrap(), vec![1, 2]);
        assert_eq!(other.read_range(2, "c", 0..1).unwrap(), b"c");
    }

    #[test]
    fn s3_errors_name_the_object() {
        let Some((endpoint, _bucket)) = s3_server("s3_errors_name_the_object") else {
            return;
        };
        let storage = ObjectStorage::s3(&config(&endpoint, "no-such-bucket-rescale", "p")).unwrap();
        let err = storage
            .write_checkpoint(1, &[("a", b"1")], b"m")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StateError::Storage { .. }), "{text}");
        assert!(text.contains("no-such-bucket-rescale"), "{text}");
    }

    #[test]
    fn sync_api_inside_async_runtime_is_an_error_not_a_panic() {
        let storage = ObjectStorage::new(Arc::new(InMemory::new()), "", "memory://").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(async { storage.list() }).unwrap_err();
        assert!(err.to_string().contains("async runtime"), "{err}");
        // Outside it works.
        assert_eq!(storage.list().unwrap(), Vec::<u64>::new());
    }
}
