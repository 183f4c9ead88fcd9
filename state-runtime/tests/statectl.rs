//! The `statectl` binary, run as a process: output, `--json`, and exit codes
//! on good, corrupt and missing checkpoints.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use state_runtime::checkpoint::durable::{StoredCheckpoint, write_checkpoint_at};
use state_runtime::prelude::*;
use state_runtime::storage::{CheckpointStorage, LocalStorage, MANIFEST_NAME};

#[derive(Checkpointed, Default)]
struct Source {
    #[state(split)]
    offsets: Vec<(u32, u64)>,
    #[state(union)]
    schemas: Vec<String>,
}

#[derive(Checkpointed, Default)]
struct Sum {
    #[state(keyed)]
    totals: KeyedValue<u64, i64>,
}

/// Checkpoints 1 and 2 of a job with "source" (parallelism 2) and "sum"
/// (parallelism 3, max parallelism 16) in `dir`.
fn write_job(dir: &Path) {
    write_job_to(&LocalStorage::open(dir).unwrap());
}

/// [`write_job`] on any storage.
fn write_job_to(storage: &dyn CheckpointStorage) {
    let assigner = KeyGroupAssigner::native(MaxParallelism::new(16).unwrap());
    for id in 1..=2u64 {
        let sources = (0..2u32)
            .map(|i| {
                Source {
                    offsets: (0..3).map(|p| (p * 2 + i, id * 100)).collect(),
                    schemas: vec![format!("v{i}")],
                }
                .snapshot()
                .unwrap()
            })
            .collect();
        let sums = (0..3usize)
            .map(|i| {
                let range = assigner.range_for_subtask(3, i).unwrap();
                let mut s = Sum::default();
                s.bind_keyed(assigner, range).unwrap();
                for k in 0..300u64 {
                    if range.contains(assigner.key_group(&k).unwrap()) {
                        s.totals.insert(k, (k * id) as i64).unwrap();
                    }
                }
                s.snapshot().unwrap()
            })
            .collect();
        let source = Checkpoint::from_subtasks(sources).unwrap();
        let sum = Checkpoint::from_subtasks(sums).unwrap();
        write_checkpoint_at(
            storage,
            id,
            &[("source", &source), ("sum", &sum)],
            1_700_000_000_000 + id,
        )
        .unwrap();
    }
}

fn statectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_statectl"))
        .args(args)
        .output()
        .expect("run statectl")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn inspect_shows_operators_states_and_histograms() {
    let tmp = tempfile::tempdir().unwrap();
    write_job(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let out = statectl(&["inspect", dir]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    println!("{text}");
    assert!(
        text.starts_with("checkpoint 2 (format v4, created 2023-11-14T22:13:20.002Z)"),
        "{text}"
    );
    assert!(
        text.contains("operator \"source\": parallelism 2, no keyed state"),
        "{text}"
    );
    assert!(text.contains("operator \"sum\": parallelism 3, max parallelism 16, native assigner"));
    assert!(text.contains("offsets") && text.contains("split") && text.contains("union"));
    assert!(text.contains("key groups 0..=5"), "{text}");
    // Each state's recorded version and shapes.
    assert!(
        text.contains("version 1, shape tuple(u32,u64), fingerprint "),
        "{text}"
    );
    assert!(
        text.contains("version 1, shape str, fingerprint "),
        "{text}"
    );
    assert!(
        text.contains("version 1, key u64, value i64, fingerprint "),
        "{text}"
    );

    let out = statectl(&[
        "inspect",
        dir,
        "--checkpoint",
        "1",
        "--json",
        "--buckets",
        "2",
    ]);
    assert_eq!(code(&out), 0);
    let v = json(&out);
    assert_eq!(v["checkpoint_id"], 1);
    assert_eq!(v["complete_checkpoints"], serde_json::json!([1, 2]));
    let source = &v["operators"][0];
    assert_eq!(source["name"], "source");
    assert_eq!(source["states"][0]["items"], 6);
    assert_eq!(source["states"][1]["mode"], "union");
    let offsets_type = &source["states"][0]["recorded_type"];
    assert_eq!(offsets_type["version"], 1);
    assert_eq!(offsets_type["shape"], "tuple(u32,u64)");
    assert_eq!(offsets_type["key_shape"], Value::Null);
    assert_eq!(offsets_type["fingerprint"].as_str().unwrap().len(), 16);
    let sum = &v["operators"][1];
    assert_eq!(sum["max_parallelism"], 16);
    assert_eq!(sum["assigner"], "native");
    let keyed_total: u64 = sum["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["keyed"]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(sum["keyed_states"][0]["bytes"].as_u64(), Some(keyed_total));
    assert_eq!(sum["keyed_states"][0]["recorded_type"]["key_shape"], "u64");
    assert_eq!(sum["keyed_states"][0]["recorded_type"]["shape"], "i64");
    let hist = sum["subtasks"][0]["keyed"]["histogram"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    let hist_bytes: u64 = hist.iter().map(|b| b["bytes"].as_u64().unwrap()).sum();
    assert_eq!(
        Some(hist_bytes),
        sum["subtasks"][0]["keyed"]["bytes"].as_u64()
    );
}

#[test]
fn inspect_says_a_format_v1_checkpoint_records_no_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-v1");
    let out = statectl(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("checkpoint 7 (format v1, "), "{text}");
    assert_eq!(
        text.matches("type not recorded (format v1): restores unchecked")
            .count(),
        5,
        "{text}"
    );
    let out = statectl(&["inspect", dir.to_str().unwrap(), "--json"]);
    let v = json(&out);
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["operators"][0]["states"][0]["recorded_type"], Value::Null);
}

#[test]
fn plan_matches_the_library_and_reports_amplification() {
    let tmp = tempfile::tempdir().unwrap();
    write_job(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let out = statectl(&[
        "plan",
        dir,
        "--operator",
        "sum",
        "--parallelism",
        "5",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["old_parallelism"], 3);
    assert_eq!(v["read_amplification"], 1.0);
    assert_eq!(v["bytes_read"], v["state_bytes"]);
    let storage = LocalStorage::open(tmp.path()).unwrap();
    let stored = StoredCheckpoint::open(&storage, 2).unwrap();
    let plan = stored.operator("sum").unwrap().plan_reads(5, None).unwrap();
    for (p, j) in plan.iter().zip(v["subtasks"].as_array().unwrap()) {
        assert_eq!(j["bytes"].as_u64(), Some(p.bytes()));
        assert_eq!(j["reads"].as_array().unwrap().len(), p.reads.len());
    }
    // Text, with a new max parallelism: boundary key groups are read twice.
    let out = statectl(&[
        "plan",
        dir,
        "--operator",
        "sum",
        "--parallelism",
        "4",
        "--max-parallelism",
        "24",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    println!("{text}");
    assert!(
        text.contains("parallelism 3 -> 4, max parallelism 16 -> 24"),
        "{text}"
    );
    assert!(text.contains("read amplification"), "{text}");
    assert!(text.contains("1.sum.0.data"), "{text}");
    // Union state is read by every new subtask.
    let out = statectl(&[
        "plan",
        dir,
        "--operator",
        "source",
        "--parallelism",
        "4",
        "--json",
    ]);
    assert!(json(&out)["read_amplification"].as_f64().unwrap() > 1.0);
}

#[test]
fn verify_passes_then_fails_on_a_corrupt_byte() {
    let tmp = tempfile::tempdir().unwrap();
    write_job(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let out = statectl(&["verify", dir]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("checkpoint 1: ok"));
    assert!(stdout(&out).contains("checkpoint 2: ok"));
    // No progress bar when stderr is not a terminal.
    assert_eq!(stderr(&out), "");

    let file = tmp.path().join("chk-2/1.sum.2.data");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let out = statectl(&["verify", dir]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    println!("{text}");
    assert!(text.contains("checkpoint 1: ok"), "{text}");
    assert!(
        text.contains("checkpoint 2: FAILED: corrupt checkpoint file"),
        "{text}"
    );
    assert!(text.contains("chk-2/1.sum.2.data at offset"), "{text}");
    let out = statectl(&["verify", dir, "--checkpoint", "2", "--json"]);
    assert_eq!(code(&out), 1);
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["checkpoints"][0]["error"]
            .as_str()
            .unwrap()
            .contains("CRC-32C")
    );
    // Inspect reads only the manifest: still fine.
    assert_eq!(code(&statectl(&["inspect", dir])), 0);
    // A truncated manifest: inspect and verify both exit 1.
    let manifest = tmp.path().join("chk-1").join(MANIFEST_NAME);
    let m = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &m[..m.len() / 2]).unwrap();
    let out = statectl(&["inspect", dir, "--checkpoint", "1"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("_MANIFEST"), "{}", stderr(&out));
    assert_eq!(code(&statectl(&["verify", dir, "--checkpoint", "1"])), 1);
}

#[test]
fn exit_codes_for_usage_and_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = tmp.path().join("missing");
    let job_dir = tmp.path().join("job");
    write_job(&job_dir);
    let (empty, missing, dir) = (
        empty.to_str().unwrap(),
        missing.to_str().unwrap(),
        job_dir.to_str().unwrap(),
    );
    let help = statectl(&["--help"]);
    assert_eq!(code(&help), 0);
    assert!(stdout(&help).contains("Exit codes:"));
    assert!(stdout(&help).contains("3  not found"));

    assert_eq!(code(&statectl(&[])), 2);
    assert_eq!(code(&statectl(&["frobnicate"])), 2);
    // Without the object-store feature an s3:// location is a usage error
    // that says how to get one.
    #[cfg(not(feature = "object-store"))]
    {
        let out = statectl(&["inspect", "s3://bucket/prefix"]);
        assert_eq!(code(&out), 2);
        assert!(stderr(&out).contains("object-store"), "{}", stderr(&out));
    }
    assert_eq!(code(&statectl(&["plan", dir, "--parallelism", "2"])), 2);
    assert_eq!(
        code(&statectl(&[
            "plan",
            dir,
            "--operator",
            "sum",
            "--parallelism",
            "x"
        ])),
        2
    );
    assert_eq!(
        code(&statectl(&[
            "plan",
            dir,
            "--operator",
            "sum",
            "--parallelism",
            "0"
        ])),
        2
    );
    assert_eq!(
        code(&statectl(&[
            "plan",
            dir,
            "--operator",
            "sum",
            "--parallelism",
            "17"
        ])),
        2
    );
    let out = statectl(&[
        "plan",
        dir,
        "--operator",
        "source",
        "--parallelism",
        "2",
        "--max-parallelism",
        "8",
    ]);
    assert_eq!(code(&out), 2);

    for args in [
        vec!["inspect", missing],
        vec!["verify", missing],
        vec!["inspect", empty],
        vec!["verify", empty],
        vec!["inspect", dir, "--checkpoint", "9"],
        vec!["verify", dir, "--checkpoint", "9"],
        vec!["plan", dir, "--operator", "nope", "--parallelism", "2"],
    ] {
        let out = statectl(&args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("statectl: "), "{args:?}");
    }
    // The missing directory was not created.
    assert!(!Path::new(missing).exists());
}

/// `s3://bucket/prefix` locations, against the S3-compatible server CI
/// starts (`source .ci/s3-server.sh`); skipped without one unless
/// `RESCALE_S3_REQUIRED` is set.
#[cfg(feature = "object-store")]
#[test]
fn inspect_plan_and_verify_checkpoints_in_s3() {
    use state_runtime::storage::{ObjectStorage, S3Config};
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(bucket)) = (var("RESCALE_S3_ENDPOINT"), var("RESCALE_S3_BUCKET"))
    else {
        assert!(
            std::env::var_os("RESCALE_S3_REQUIRED").is_none(),
            "RESCALE_S3_REQUIRED is set but RESCALE_S3_ENDPOINT and RESCALE_S3_BUCKET are not"
        );
        eprintln!("SKIPPED inspect_plan_and_verify_checkpoints_in_s3: no S3 server");
        return;
    };
    let prefix = format!("statectl/{}-{}", std::process::id(), line!());
    let storage = ObjectStorage::s3(
        &S3Config::new(&bucket, &prefix)
            .with_endpoint(&endpoint)
            .with_credentials("testing", "testing"),
    )
    .unwrap();
    write_job_to(&storage);
    let location = format!("s3://{bucket}/{prefix}");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_statectl"))
            .args(args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .expect("run statectl")
    };
    let out = run(&["inspect", &location, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["complete_checkpoints"], serde_json::json!([1, 2]));
    assert_eq!(v["operators"][1]["name"], "sum");
    let out = run(&["plan", &location, "--operator", "sum", "--parallelism", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run(&["verify", &location]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // No bucket: a usage error.
    assert_eq!(code(&run(&["inspect", "s3://"])), 2);
    // Another prefix holds no checkpoint: not found.
    let out = run(&["inspect", &format!("s3://{bucket}/{prefix}-none")]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn inspect_shows_what_an_incremental_checkpoint_adds_and_builds_on() {
    use state_runtime::checkpoint::durable::{
        IncrementalPolicy, commit_checkpoint, write_subtask_incremental,
    };
    let tmp = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(tmp.path()).unwrap();
    let a = KeyGroupAssigner::native(MaxParallelism::new(16).unwrap());
    let mut op = Sum::default();
    op.bind_keyed(a, a.range_for_subtask(1, 0).unwrap())
        .unwrap();
    let mut previous = None;
    for id in 1..=3u64 {
        for k in 0..(if id == 1 { 1000 } else { 30 }) {
            op.totals.insert(k, (k * id) as i64).unwrap();
        }
        storage.begin(id).unwrap();
        let captured = op.capture_tracking_changes().unwrap();
        let file = write_subtask_incremental(
            &storage,
            id,
            0,
            "sum",
            0,
            &captured,
            previous.as_ref(),
            &IncrementalPolicy::default(),
        )
        .unwrap();
        previous = Some(file.clone());
        commit_checkpoint(&storage, id, &[("sum", &[file])]).unwrap();
    }
    let dir = tmp.path().to_str().unwrap();
    let out = statectl(&["inspect", dir]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("a delta adding"), "{text}");
    assert!(text.contains("in 2 earlier files"), "{text}");
    assert!(text.contains("builds on chk-1/0.sum.0.data"), "{text}");
    assert!(text.contains("builds on chk-2/0.sum.0.data"), "{text}");
    let v = json(&statectl(&["inspect", dir, "--json"]));
    let keyed = &v["operators"][0]["subtasks"][0]["keyed"];
    assert_eq!(keyed["delta"], true);
    let builds_on = keyed["builds_on"].as_array().unwrap();
    assert_eq!(builds_on.len(), 2);
    assert_eq!(builds_on[0]["checkpoint"], 1);
    assert_eq!(builds_on[0]["delta"], false);
    assert_eq!(builds_on[1]["delta"], true);
    assert!(builds_on[0]["bytes"].as_u64().unwrap() > keyed["bytes"].as_u64().unwrap());
    // verify reads the earlier files too.
    let out = statectl(&["verify", dir]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A restore plan reads every layer, and its amplification says so.
    let out = statectl(&["plan", dir, "--operator", "sum", "--parallelism", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("chk-1/0.sum.0.data"), "{text}");
    assert!(text.contains("chk-2/0.sum.0.data"), "{text}");
    let v = json(&statectl(&[
        "plan",
        dir,
        "--operator",
        "sum",
        "--parallelism",
        "2",
        "--json",
    ]));
    let reads = v["subtasks"][0]["reads"].as_array().unwrap();
    assert_eq!(reads[0]["checkpoint"], 1);
    assert!(v["read_amplification"].as_f64().unwrap() > 1.0);
    // The plan is what a restore reads.
    let stored = StoredCheckpoint::open(&storage, 3).unwrap();
    let sum = stored.operator("sum").unwrap();
    for (j, plan) in sum.plan_reads(2, None).unwrap().iter().enumerate() {
        let mut restored = Sum::default();
        let report = sum.restore_into(&mut restored, j, 2).unwrap();
        assert_eq!(report.bytes_read, plan.bytes(), "subtask {j}");
    }
}
