//! `statectl`: inspect, plan and verify durable job checkpoints (formats v1 and v2)
//! in a local checkpoint directory or, built with the `object-store`
//! feature, under an `s3://bucket/prefix`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use state_runtime::StateError;
use state_runtime::checkpoint::durable::{ReadKind, StoredCheckpoint, StoredOperator};
use state_runtime::keygroup::KeyGroupRange;
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
use state_runtime::schema::StateType;
use state_runtime::storage::{CheckpointStorage, LocalStorage};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a checkpoint is corrupt, truncated, of a newer format, or fails verification
  2  usage error (bad arguments, impossible parallelism)
  3  not found: no such directory, no complete checkpoint, no such checkpoint or operator
  4  any other error (I/O)";

/// Inspect, plan and verify durable rescale checkpoints.
///
/// DIR is a checkpoint directory holding `chk-<id>/` folders, each with a
/// `_MANIFEST` and one data file per operator and subtask, or (with the
/// `object-store` feature) `s3://bucket/prefix`, configured from the
/// environment: AWS_ENDPOINT_URL (an S3-compatible server), AWS_REGION
/// (default us-east-1), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
#[derive(Debug, Parser)]
#[command(name = "statectl", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Operators, states, modes, item counts, bytes and a key-group histogram
    /// per subtask (reads the manifest only).
    Inspect {
        /// The checkpoint directory, or s3://bucket/prefix.
        dir: PathBuf,
        /// The checkpoint id (default: the newest complete checkpoint).
        #[arg(long)]
        checkpoint: Option<u64>,
        /// Buckets of the key-group histogram of each subtask.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
        buckets: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The byte ranges each new subtask reads when the operator is restored
    /// at another parallelism, and the read amplification (reads nothing
    /// but the manifest).
    Plan {
        /// The checkpoint directory, or s3://bucket/prefix.
        dir: PathBuf,
        /// The operator's name.
        #[arg(long)]
        operator: String,
        /// The new parallelism.
        #[arg(long)]
        parallelism: usize,
        /// A new max parallelism for keyed state (native assigner only).
        #[arg(long)]
        max_parallelism: Option<u32>,
        /// The checkpoint id (default: the newest complete checkpoint).
        #[arg(long)]
        checkpoint: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Reads every file and checks every checksum, of every complete
    /// checkpoint or of one.
    Verify {
        /// The checkpoint directory, or s3://bucket/prefix.
        dir: PathBuf,
        /// Only this checkpoint id.
        #[arg(long)]
        checkpoint: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// A failure and its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        let code = match &e {
            StateError::Corrupt { .. }
            | StateError::UnsupportedFormatVersion { .. }
            | StateError::CorruptSnapshot { .. }
            | StateError::FileNotFound { .. }
            | StateError::RangeOutOfBounds { .. } => 1,
            StateError::ZeroParallelism
            | StateError::ParallelismAboveMax { .. }
            | StateError::InvalidMaxParallelism { .. }
            | StateError::MaxParallelismChanged { .. }
            | StateError::AssignerKindChanged { .. } => 2,
            StateError::CheckpointNotFound { .. } | StateError::OperatorNotFound { .. } => 3,
            _ => 4,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect {
            dir,
            checkpoint,
            buckets,
            json,
        } => inspect(&dir, checkpoint, buckets as usize, json),
        Command::Plan {
            dir,
            operator,
            parallelism,
            max_parallelism,
            checkpoint,
            json,
        } => plan(
            &dir,
            checkpoint,
            &operator,
            parallelism,
            max_parallelism,
            json,
        ),
        Command::Verify {
            dir,
            checkpoint,
            json,
        } => verify(&dir, checkpoint, json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("statectl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Opens the checkpoint location: a directory (without creating it), or
/// `s3://bucket/prefix`.
fn open_dir(dir: &Path) -> Result<Box<dyn CheckpointStorage>, Failure> {
    if let Some(rest) = dir.to_str().and_then(|d| d.strip_prefix("s3://")) {
        return open_s3(rest);
    }
    if !dir.is_dir() {
        return Err(Failure {
            code: 3,
            message: format!("no checkpoint directory at {}", dir.display()),
        });
    }
    Ok(Box::new(LocalStorage::open(dir)?))
}

/// `bucket/prefix` (after `s3://`) as object storage, configured from the
/// environment.
#[cfg(feature = "object-store")]
fn open_s3(bucket_and_prefix: &str) -> Result<Box<dyn CheckpointStorage>, Failure> {
    use state_runtime::storage::{ObjectStorage, S3Config};
    let (bucket, prefix) = bucket_and_prefix
        .split_once('/')
        .unwrap_or((bucket_and_prefix, ""));
    if bucket.is_empty() {
        return Err(Failure {
            code: 2,
            message: "an s3:// location needs a bucket: s3://bucket/prefix".into(),
        });
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut config = S3Config::new(bucket, prefix.trim_end_matches('/'));
    if let Some(endpoint) = env("AWS_ENDPOINT_URL") {
        config = config.with_endpoint(endpoint);
    }
    if let Some(region) = env("AWS_REGION") {
        config = config.with_region(region);
    }
    if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        config = config.with_credentials(key, secret);
    }
    Ok(Box::new(ObjectStorage::s3(&config)?))
}

#[cfg(not(feature = "object-store"))]
fn open_s3(_: &str) -> Result<Box<dyn CheckpointStorage>, Failure> {
    Err(Failure {
        code: 2,
        message: "s3:// locations need statectl built with the `object-store` feature \
                  (cargo install --path state-runtime --features cli,object-store)"
            .into(),
    })
}

fn open_checkpoint<'a>(
    storage: &'a dyn CheckpointStorage,
    checkpoint: Option<u64>,
) -> Result<StoredCheckpoint<'a>, Failure> {
    match checkpoint {
        Some(id) => Ok(StoredCheckpoint::open(storage, id)?),
        None => StoredCheckpoint::latest(storage)?.ok_or_else(|| Failure {
            code: 3,
            message: format!("no complete checkpoint in {}", storage.location()),
        }),
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from milliseconds since the Unix epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

fn range_str(r: KeyGroupRange) -> String {
    match r.last() {
        Some(last) => format!("{}..={last}", r.start()),
        None => "none".into(),
    }
}

/// Bytes per key group of one subtask, in up to `buckets` contiguous
/// buckets of key groups: `(key groups, bytes)`.
fn histogram(
    keyed: &state_runtime::checkpoint::KeyedSection,
    buckets: usize,
) -> Vec<(KeyGroupRange, u64)> {
    let kgs = keyed.key_groups();
    let n = kgs.len() as usize;
    let buckets = buckets.min(n.max(1));
    (0..buckets)
        .filter_map(|b| {
            let lo = kgs.start() + (b * n / buckets) as u32;
            let hi = kgs.start() + ((b + 1) * n / buckets) as u32;
            let range = KeyGroupRange::from_exclusive(lo, hi);
            if range.is_empty() {
                return None;
            }
            let bytes = range
                .iter()
                .map(|kg| {
                    let r = keyed.key_group_range(kg).expect("owned key group");
                    r.end - r.start
                })
                .sum();
            Some((range, bytes))
        })
        .collect()
}

fn inspect(dir: &Path, checkpoint: Option<u64>, buckets: usize, json: bool) -> Result<u8, Failure> {
    let storage = open_dir(dir)?;
    let complete = storage.list()?;
    let cp = open_checkpoint(&*storage, checkpoint)?;
    let mut ops = Vec::new();
    for op in cp.operators() {
        ops.push(operator_json(op, buckets));
    }
    let value = json!({
        "directory": dir.display().to_string(),
        "complete_checkpoints": complete,
        "checkpoint_id": cp.checkpoint_id(),
        "format_version": cp.format_version(),
        "created_unix_ms": cp.created_unix_ms(),
        "created": utc(cp.created_unix_ms()),
        "manifest_bytes": cp.manifest_len(),
        "data_file_bytes": cp.data_file_bytes(),
        "operators": ops,
    });
    if json {
        print_json(&value);
        return Ok(0);
    }
    println!(
        "checkpoint {} (format v{}, created {}), manifest {} bytes, data files {} bytes",
        cp.checkpoint_id(),
        cp.format_version(),
        utc(cp.created_unix_ms()),
        cp.manifest_len(),
        cp.data_file_bytes()
    );
    println!("complete checkpoints in {}: {complete:?}", dir.display());
    for op in cp.operators() {
        println!();
        let keyed = match op.assigner() {
            Some(a) => format!(
                ", max parallelism {}, {} assigner",
                a.max_parallelism(),
                a.kind()
            ),
            None => ", no keyed state".into(),
        };
        println!(
            "operator \"{}\": parallelism {}{keyed}",
            op.name(),
            op.parallelism()
        );
        println!(
            "  {:<20} {:<9} {:>8} {:>10}  item type",
            "state", "mode", "items", "bytes"
        );
        for (i, s) in op.states().iter().enumerate() {
            let items: usize = op.subtasks().iter().map(|t| t.states()[i].len()).sum();
            let bytes: u64 = op.subtasks().iter().map(|t| t.states()[i].byte_len()).sum();
            println!(
                "  {:<20} {:<9} {:>8} {:>10}  {}",
                s.name(),
                s.mode().as_str(),
                items,
                bytes,
                s.item_type()
            );
            println!("  {:<20} {}", "", type_line(s.recorded_type()));
        }
        for (i, s) in op.keyed_states().iter().enumerate() {
            println!(
                "  {:<20} {:<9} {:>8} {:>10}  {}",
                s.name(),
                "keyed",
                "-",
                keyed_state_bytes(op, i),
                s.state_type()
            );
            println!("  {:<20} {}", "", type_line(s.recorded_type()));
        }
        for (i, t) in op.subtasks().iter().enumerate() {
            let items: Vec<String> = t
                .states()
                .iter()
                .map(|s| format!("{}={}", s.name(), s.len()))
                .collect();
            print!("  subtask {i}: {} ({} bytes)", t.file(), t.file_len());
            if !items.is_empty() {
                print!(", items {}", items.join(" "));
            }
            if let Some(k) = t.keyed() {
                print!(
                    ", key groups {} ({} bytes keyed)",
                    range_str(k.key_groups()),
                    k.total_bytes()
                );
                if k.is_delta() {
                    let layers = k.earlier_layers();
                    let shared: u64 = layers.iter().map(|l| l.bytes()).sum();
                    print!(
                        ", a delta adding {} bytes ({} of {} key groups whole) to {} bytes in {} earlier files (a chain of {} files; a restore reads {} bytes)",
                        k.total_bytes(),
                        k.whole_key_groups(),
                        k.key_groups().len(),
                        shared,
                        layers.len(),
                        layers.len() + 1,
                        k.restore_bytes()
                    );
                }
            }
            println!();
            if let Some(k) = t.keyed() {
                for l in k.earlier_layers() {
                    println!(
                        "    builds on chk-{}/{} ({} bytes keyed, {} of {} key groups whole)",
                        l.checkpoint_id(),
                        l.file(),
                        l.bytes(),
                        l.whole_key_groups(),
                        k.key_groups().len()
                    );
                }
            }
            if let Some(k) = t.keyed() {
                let h = histogram(k, buckets);
                let max = h.iter().map(|b| b.1).max().unwrap_or(0).max(1);
                for (range, bytes) in h {
                    let bar = "#".repeat(((bytes * 30).div_ceil(max)) as usize);
                    println!(
                        "    key groups {:<13} {:>9} bytes  {bar}",
                        range_str(range),
                        bytes
                    );
                }
            }
        }
    }
    Ok(0)
}

/// A state's recorded version and shapes, on one line.
fn type_line(ty: Option<&StateType>) -> String {
    let Some(ty) = ty else {
        return "type not recorded (format v1): restores unchecked".to_owned();
    };
    let mut line = format!("version {}", ty.version());
    if let Some(key) = ty.key_shape() {
        line.push_str(&format!(", key {key}, value"));
    } else {
        line.push_str(", shape");
    }
    line.push(' ');
    line.push_str(ty.shape().unwrap_or("(not traceable: unchecked)"));
    line.push_str(&format!(", fingerprint {:016x}", ty.fingerprint()));
    line
}

/// A state's recorded version and shapes, as JSON (`null`: format v1).
fn type_json(ty: Option<&StateType>) -> Value {
    ty.map_or(Value::Null, |t| {
        json!({
            "version": t.version(),
            "shape": t.shape(),
            "key_shape": t.key_shape(),
            "fingerprint": format!("{:016x}", t.fingerprint()),
        })
    })
}

/// The bytes of keyed state `index` over all subtasks.
fn keyed_state_bytes(op: &StoredOperator<'_>, index: usize) -> u64 {
    op.subtasks()
        .iter()
        .filter_map(|t| t.keyed())
        .map(|k| k.state_bytes(index))
        .sum()
}

fn operator_json(op: &StoredOperator<'_>, buckets: usize) -> Value {
    let states: Vec<Value> = op
        .states()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "name": s.name(),
                "mode": s.mode().as_str(),
                "item_type": s.item_type(),
                "recorded_type": type_json(s.recorded_type()),
                "items": op.subtasks().iter().map(|t| t.states()[i].len()).sum::<usize>(),
                "bytes": op.subtasks().iter().map(|t| t.states()[i].byte_len()).sum::<u64>(),
            })
        })
        .collect();
    let keyed_states: Vec<Value> = op
        .keyed_states()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "name": s.name(),
                "type": s.state_type(),
                "recorded_type": type_json(s.recorded_type()),
                "bytes": keyed_state_bytes(op, i),
            })
        })
        .collect();
    let subtasks: Vec<Value> = op
        .subtasks()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let keyed = t.keyed().map(|k| {
                json!({
                    "key_groups": [k.key_groups().start(), k.key_groups().end_exclusive()],
                    "bytes": k.total_bytes(),
                    "delta": k.is_delta(),
                    "whole_key_groups": k.whole_key_groups(),
                    "restore_bytes": k.restore_bytes(),
                    "builds_on": k.earlier_layers().iter().map(|l| json!({
                        "checkpoint": l.checkpoint_id(),
                        "file": l.file(),
                        "bytes": l.bytes(),
                        "delta": l.is_delta(),
                        "whole_key_groups": l.whole_key_groups(),
                    })).collect::<Vec<_>>(),
                    "histogram": histogram(k, buckets)
                        .into_iter()
                        .map(|(r, b)| json!({ "key_groups": [r.start(), r.end_exclusive()], "bytes": b }))
                        .collect::<Vec<_>>(),
                })
            });
            json!({
                "subtask": i,
                "file": t.file(),
                "file_bytes": t.file_len(),
                "items": t.states().iter().map(|s| (s.name().to_owned(), json!(s.len()))).collect::<serde_json::Map<_, _>>(),
                "keyed": keyed,
            })
        })
        .collect();
    json!({
        "name": op.name(),
        "parallelism": op.parallelism(),
        "max_parallelism": op.assigner().map(|a| a.max_parallelism().get()),
        "assigner": op.assigner().map(|a| a.kind().to_string()),
        "states": states,
        "keyed_states": keyed_states,
        "subtasks": subtasks,
    })
}

fn plan(
    dir: &Path,
    checkpoint: Option<u64>,
    operator: &str,
    parallelism: usize,
    max_parallelism: Option<u32>,
    json: bool,
) -> Result<u8, Failure> {
    let storage = open_dir(dir)?;
    let cp = open_checkpoint(&*storage, checkpoint)?;
    let op = cp.operator(operator)?;
    let assigner = match (max_parallelism, op.assigner()) {
        (Some(m), Some(old)) => Some(KeyGroupAssigner::new(old.kind(), MaxParallelism::new(m)?)),
        (Some(_), None) => {
            return Err(Failure {
                code: 2,
                message: format!(
                    "operator \"{operator}\" has no keyed state, so --max-parallelism does not apply"
                ),
            });
        }
        (None, _) => None,
    };
    let plans = op.plan_reads(parallelism, assigner)?;
    let state_bytes: u64 = op.subtasks().iter().map(|t| t.payload_len()).sum();
    let read: u64 = plans.iter().map(|p| p.bytes()).sum();
    let amplification = if state_bytes == 0 {
        1.0
    } else {
        read as f64 / state_bytes as f64
    };
    let new_max = assigner
        .or(op.assigner())
        .map(|a| a.max_parallelism().get());
    if json {
        let subtasks: Vec<Value> = plans
            .iter()
            .map(|p| {
                json!({
                    "subtask": p.subtask,
                    "key_groups": p.key_groups.map(|r| [r.start(), r.end_exclusive()]),
                    "bytes": p.bytes(),
                    "reads": p.reads.iter().map(|r| json!({
                        "old_subtask": r.old_subtask,
                        "checkpoint": r.checkpoint_id,
                        "file": r.file,
                        "range": [r.range.start, r.range.end],
                        "bytes": r.range.end - r.range.start,
                        "what": match &r.what {
                            ReadKind::Items { state, items } => json!({ "state": state, "items": [items.start, items.end] }),
                            ReadKind::KeyGroups(kg) => json!({ "key_groups": [kg.start(), kg.end_exclusive()] }),
                        },
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!({
            "checkpoint_id": cp.checkpoint_id(),
            "operator": op.name(),
            "old_parallelism": op.parallelism(),
            "new_parallelism": parallelism,
            "old_max_parallelism": op.assigner().map(|a| a.max_parallelism().get()),
            "new_max_parallelism": new_max,
            "state_bytes": state_bytes,
            "bytes_read": read,
            "read_amplification": amplification,
            "subtasks": subtasks,
        }));
        return Ok(0);
    }
    print!(
        "operator \"{}\" of checkpoint {}: parallelism {} -> {parallelism}",
        op.name(),
        cp.checkpoint_id(),
        op.parallelism()
    );
    match (op.assigner(), new_max) {
        (Some(old), Some(new)) if old.max_parallelism().get() != new => {
            println!(", max parallelism {} -> {new}", old.max_parallelism())
        }
        (Some(old), _) => println!(", max parallelism {}", old.max_parallelism()),
        _ => println!(),
    }
    for p in &plans {
        let kgs = p
            .key_groups
            .map(|r| format!(", key groups {}", range_str(r)))
            .unwrap_or_default();
        println!(
            "subtask {}{kgs}: {} reads, {} bytes",
            p.subtask,
            p.reads.len(),
            p.bytes()
        );
        for r in &p.reads {
            let what = match &r.what {
                ReadKind::Items { state, items } => {
                    format!("state {state} items {}..{}", items.start, items.end)
                }
                ReadKind::KeyGroups(kg) => format!("key groups {}", range_str(*kg)),
            };
            let file = if r.checkpoint_id == cp.checkpoint_id() {
                r.file.clone()
            } else {
                format!("chk-{}/{}", r.checkpoint_id, r.file)
            };
            println!(
                "  {:<24} bytes {:>8}..{:<8} {:>9} bytes  {what}",
                file,
                r.range.start,
                r.range.end,
                r.range.end - r.range.start
            );
        }
    }
    println!(
        "total: {read} bytes read for {state_bytes} bytes of state: read amplification {amplification:.3}"
    );
    Ok(0)
}

fn verify(dir: &Path, checkpoint: Option<u64>, json: bool) -> Result<u8, Failure> {
    let storage = open_dir(dir)?;
    let ids = match checkpoint {
        Some(id) => vec![id],
        None => storage.list()?,
    };
    if ids.is_empty() {
        return Err(Failure {
            code: 3,
            message: format!("no complete checkpoint in {}", storage.location()),
        });
    }
    // Open every manifest first: the progress bar's length is the bytes of
    // all data files.
    let opened: Vec<(u64, Result<StoredCheckpoint<'_>, StateError>)> = ids
        .iter()
        .map(|&id| (id, StoredCheckpoint::open(&*storage, id)))
        .collect();
    if let [(_, Err(e @ StateError::CheckpointNotFound { .. }))] = opened.as_slice() {
        return Err(Failure {
            code: 3,
            message: e.to_string(),
        });
    }
    let total: u64 = opened
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok())
        .map(|c| c.data_file_bytes())
        .sum();
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut failed = 0;
    let mut results = Vec::new();
    for (id, cp) in opened {
        bar.set_message(format!("checkpoint {id}"));
        let outcome = cp.and_then(|cp| {
            let mut files = 0u64;
            let mut bytes = cp.manifest_len();
            for op in cp.operators() {
                for i in 0..op.parallelism() {
                    let n = op.verify_subtask(i)?;
                    bar.inc(n);
                    files += 1;
                    bytes += n;
                }
            }
            Ok((files, bytes))
        });
        match outcome {
            Ok((files, bytes)) => {
                results.push(
                    json!({ "checkpoint_id": id, "ok": true, "files": files, "bytes": bytes }),
                );
                if !json {
                    bar.suspend(|| {
                        println!("checkpoint {id}: ok ({files} data files, {bytes} bytes)")
                    });
                }
            }
            Err(e) => {
                failed += 1;
                results.push(json!({ "checkpoint_id": id, "ok": false, "error": e.to_string() }));
                if !json {
                    bar.suspend(|| println!("checkpoint {id}: FAILED: {e}"));
                }
            }
        }
    }
    bar.finish_and_clear();
    if json {
        print_json(&json!({ "ok": failed == 0, "checkpoints": results }));
    } else if failed > 0 {
        println!("{failed} of {} checkpoints failed verification", ids.len());
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
