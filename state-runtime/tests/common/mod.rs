//! Shared by the crash tests (a test binary that re-runs one of its own tests
//! as a child process, which writes checkpoints until the parent kills it)
//! and the object-store tests (the S3 server they use).

#![allow(dead_code)] // each test binary uses what it needs

#[cfg(feature = "object-store")]
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The line a child prints, with its first checkpoint id, once it has
/// opened the storage.
pub const START_MARKER: &str = "RESCALE_CHILD_START ";

/// A xorshift generator for kill delays.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `RESCALE_CRASH_SEED` if set (to replay a run), else a fresh odd seed;
/// printed so that a failure can be replayed.
pub fn crash_seed() -> u64 {
    let seed = std::env::var("RESCALE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed}");
    seed
}

/// Starts this test binary's test `test_name` as a child with `env = root`,
/// and waits for its start line: returns the child and the first checkpoint
/// id it will write.
pub fn spawn_writer(test_name: &str, env: &str, root: &Path, context: &str) -> (Child, u64) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let start = loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("{context}: child ended before starting: {status}");
        }
        if let Some(n) = line.trim().strip_prefix(START_MARKER) {
            break n.parse::<u64>().unwrap();
        }
    };
    (child, start)
}

/// Starts a writer child (see [`spawn_writer`]), checks that it continues
/// right after the newest complete checkpoint `latest`, lets it write for a
/// random time below `max_delay_us`, and kills it with SIGKILL.
pub fn run_and_kill_writer(
    test_name: &str,
    env: &str,
    root: &Path,
    latest: Option<u64>,
    rng: &mut Rng,
    max_delay_us: u64,
    context: &str,
) {
    let (mut child, start) = spawn_writer(test_name, env, root, context);
    assert_eq!(
        start,
        latest.map_or(1, |l| l + 1),
        "{context}: the child must continue after the newest complete checkpoint"
    );
    std::thread::sleep(std::time::Duration::from_micros(rng.below(max_delay_us)));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "{context}: child was not killed: {status}"
    );
}

/// The child's side of a crash test: opens the storage at `dir`, prints
/// where it starts (right after the newest complete checkpoint), and calls
/// `write` for each checkpoint id from there on, for 30 seconds; the parent
/// kills it long before.
pub fn write_until_killed(
    dir: &Path,
    mut write: impl FnMut(&state_runtime::storage::LocalStorage, u64, u64),
) -> ! {
    use state_runtime::storage::CheckpointStorage;
    let storage = state_runtime::storage::LocalStorage::open(dir).expect("open storage");
    let start = storage.latest().expect("latest").map_or(1, |l| l + 1);
    // On its own line: the harness has printed `test <name> ... ` before.
    println!("\n{START_MARKER}{start}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut id = start;
    while std::time::Instant::now() < deadline {
        write(&storage, start, id);
        id += 1;
    }
    std::process::exit(0);
}
