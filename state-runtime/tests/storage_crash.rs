//! Crash safety of the local checkpoint storage: a child process writes
//! checkpoints (and runs retention) in a loop and is killed with SIGKILL at
//! random moments. After every kill the newest complete checkpoint, and every
//! other listed one, must have exactly the content written for it, and the
//! next child continues from `latest() + 1`.
//!
//! The child is this same test binary, re-run with `RESCALE_CRASH_CHILD_DIR`
//! set and filtered to this test.
//!
//! Reproduce a run with `RESCALE_CRASH_SEED=<seed printed on failure>`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

mod common;
use common::{Rng, crash_seed, run_and_kill_writer, write_until_killed};

use state_runtime::StateError;
use state_runtime::storage::{CheckpointStorage, FileRef, LocalStorage, MANIFEST_NAME};

const CHILD_ENV: &str = "RESCALE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "sigkill_while_writing_checkpoints_never_exposes_partial_state";
const KILLS: usize = 60;
const RETAIN: usize = 3;
/// Every 5th checkpoint (1, 6, 11, ...) writes a `base` file that the next
/// four reference from its folder, as an incremental checkpoint would.
const BASE_EVERY: u64 = 5;

fn base_of(id: u64) -> u64 {
    id - (id - 1) % BASE_EVERY
}

/// The files checkpoint `id` writes into its own folder, with their lengths
/// (a few hundred KB in all, varying with the id).
fn own_files(id: u64) -> Vec<(String, usize)> {
    let mut files = vec![
        ("part-0".to_string(), 64 * 1024),
        ("part-1".to_string(), 96 * 1024 + (id % 13) as usize * 1000),
        ("part-2".to_string(), 128 * 1024 + (id % 7) as usize),
    ];
    if base_of(id) == id {
        files.push(("base".to_string(), 48 * 1024 + (id % 3) as usize));
    }
    files
}

fn base_len(base: u64) -> usize {
    48 * 1024 + (base % 3) as usize
}

/// Content of file `name` written by checkpoint `origin`: xorshift bytes
/// seeded by both.
fn content(origin: u64, name: &str, len: usize) -> Vec<u8> {
    let mut x = origin.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        }),
    ) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The manifest of checkpoint `id`: one `origin name len` line per file it
/// references, its own files first.
fn manifest(id: u64) -> String {
    let mut lines: Vec<String> = own_files(id)
        .into_iter()
        .map(|(name, len)| format!("{id} {name} {len}"))
        .collect();
    let base = base_of(id);
    if base != id {
        lines.push(format!("{base} base {}", base_len(base)));
    }
    lines.join("\n")
}

fn parse_manifest(bytes: &[u8]) -> Vec<(u64, String, usize)> {
    std::str::from_utf8(bytes)
        .expect("manifest is UTF-8")
        .lines()
        .map(|line| {
            let mut it = line.split(' ');
            let origin = it.next().unwrap().parse().unwrap();
            let name = it.next().unwrap().to_string();
            let len = it.next().unwrap().parse().unwrap();
            (origin, name, len)
        })
        .collect()
}

fn referenced(_id: u64, manifest: &[u8]) -> Result<Vec<FileRef>, StateError> {
    Ok(parse_manifest(manifest)
        .into_iter()
        .map(|(origin, name, _)| FileRef::new(origin, name))
        .collect())
}

/// The child: write checkpoints from `latest() + 1` on until killed.
fn child(dir: &Path) -> ! {
    write_until_killed(dir, |storage, _, id| {
        storage.begin(id).expect("begin");
        for (name, len) in own_files(id) {
            storage
                .write_file(id, &name, &content(id, &name, len))
                .expect("write file");
        }
        storage.commit(id, manifest(id).as_bytes()).expect("commit");
        storage.retain_last(RETAIN, &referenced).expect("retention");
    })
}

/// Everything listed is complete and exact; returns the newest id.
fn verify(storage: &LocalStorage, seed: u64, kill: usize) -> Option<u64> {
    let listed = storage.list().expect("list");
    for &id in &listed {
        let bytes = storage
            .read_manifest(id)
            .expect("manifest of a listed checkpoint");
        assert_eq!(
            bytes,
            manifest(id).as_bytes(),
            "seed {seed}, kill {kill}: manifest of checkpoint {id}"
        );
        for (origin, name, len) in parse_manifest(&bytes) {
            let got = storage.read_file(origin, &name).unwrap_or_else(|e| {
                panic!("seed {seed}, kill {kill}: checkpoint {id} references {origin}/{name}: {e}")
            });
            assert_eq!(
                got.len(),
                len,
                "seed {seed}, kill {kill}: length of {origin}/{name}"
            );
            assert!(
                got == content(origin, &name, len),
                "seed {seed}, kill {kill}: content of {origin}/{name} (referenced by {id})"
            );
        }
    }
    listed.last().copied()
}

/// Folders on disk without a manifest (interrupted attempts).
fn incomplete_folders(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.join(MANIFEST_NAME).exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn sigkill_while_writing_checkpoints_never_exposes_partial_state() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let seed = crash_seed();
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkpoints");
    let began = Instant::now();

    let mut latest: Option<u64> = None;
    let mut interrupted_kills = 0;
    for kill in 0..KILLS {
        let context = format!("seed {seed}, kill {kill}");
        run_and_kill_writer(
            TEST_NAME, CHILD_ENV, &root, latest, &mut rng, 150_000, &context,
        );

        let storage = LocalStorage::open(&root).unwrap();
        let now = verify(&storage, seed, kill);
        // A kill while checkpoint `latest + 1` was being written leaves its
        // folder without a manifest.
        let next = format!("chk-{}", now.map_or(1, |l| l + 1));
        if incomplete_folders(&root).contains(&next) {
            interrupted_kills += 1;
        }
        assert!(
            now >= latest,
            "seed {seed}, kill {kill}: latest went back from {latest:?} to {now:?}"
        );
        let listed = storage.list().unwrap();
        for folder in incomplete_folders(&root) {
            let id: u64 = folder.strip_prefix("chk-").unwrap().parse().unwrap();
            assert!(
                !listed.contains(&id),
                "seed {seed}, kill {kill}: {folder} listed without manifest"
            );
        }
        latest = now;
    }
    let progress = latest.unwrap_or(0);
    println!(
        "{KILLS} kills in {:?}; {interrupted_kills} interrupted a checkpoint being written; reached checkpoint {progress}",
        began.elapsed()
    );
    // The test only means something if kills landed mid-checkpoint and the
    // children got work done between them.
    assert!(
        interrupted_kills >= KILLS / 6,
        "seed {seed}: only {interrupted_kills} of {KILLS} kills interrupted a checkpoint"
    );
    assert!(
        progress >= KILLS as u64 / 6,
        "seed {seed}: only reached checkpoint {progress}"
    );
}
