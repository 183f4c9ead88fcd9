//! The demo job on timely, in real worker processes: the process side
//! ([`worker_main`]: one process of a run, from its command line) and the
//! launcher side ([`Cluster`]: starts a run's processes on loopback with
//! free ports, and collects what each reports).
//!
//! A worker process prints one `timely-report` line per worker thread:
//!
//! ```text
//! timely-report worker=1 workers=3 key_groups=43..86 restored_from=4 bytes_restored=812 keyed_bytes_restored=800 owned_state_bytes=800 events=1500 epochs=4..9 committed=- elapsed_us=81234
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
use state_runtime::storage::{CheckpointStorage, LocalStorage};
use state_timely::{Fault, TimelyJob, WorkerReport, cluster_config};

use crate::RunningSum;

/// The name of the keyed operator in the demo job's checkpoints.
pub const OPERATOR: &str = "sum";

/// The settings of one run, the same for all its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The input log.
    pub log: PathBuf,
    /// The checkpoint directory all processes share.
    pub checkpoints: PathBuf,
    /// The run's id (fresh for every run).
    pub run_id: String,
    /// Worker threads per process.
    pub threads: usize,
    /// Records per worker and epoch.
    pub records_per_epoch: usize,
    /// Epochs open at once (see `TimelyJob::epochs_in_flight`).
    pub epochs_in_flight: u64,
    /// Stop after this many epochs (with a final checkpoint); `None` runs
    /// to the end of the log.
    pub stop_after_epochs: Option<u64>,
    /// The key groups' max parallelism.
    pub max_parallelism: u32,
}

impl RunSpec {
    fn args(&self, process: usize, addresses: &[String], fault: Option<&Fault>) -> Vec<String> {
        let mut args = vec![
            "--log".into(),
            self.log.display().to_string(),
            "--checkpoints".into(),
            self.checkpoints.display().to_string(),
            "--run-id".into(),
            self.run_id.clone(),
            "--threads".into(),
            self.threads.to_string(),
            "--records-per-epoch".into(),
            self.records_per_epoch.to_string(),
            "--max-parallelism".into(),
            self.max_parallelism.to_string(),
            "--epochs-in-flight".into(),
            self.epochs_in_flight.to_string(),
            "--process".into(),
            process.to_string(),
            "--addresses".into(),
            addresses.join(","),
        ];
        if let Some(n) = self.stop_after_epochs {
            args.extend(["--stop-after-epochs".into(), n.to_string()]);
        }
        if let Some(f) = fault {
            args.extend(["--fault".into(), f.to_string()]);
        }
        args
    }
}

/// One process of a run, from its arguments (those [`Cluster::start`]
/// passes): runs its workers of the demo job and prints their reports.
pub fn worker_main(args: impl Iterator<Item = String>) -> Result<Vec<WorkerReport>, String> {
    let mut values: HashMap<String, String> = HashMap::new();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let Some(name) = flag.strip_prefix("--") else {
            return Err(format!("unexpected argument `{flag}`"));
        };
        let value = args
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value"))?;
        values.insert(name.to_owned(), value);
    }
    let get = |name: &str| {
        values
            .get(name)
            .cloned()
            .ok_or_else(|| format!("missing --{name}"))
    };
    let number = |name: &str| -> Result<u64, String> {
        get(name)?.parse().map_err(|e| format!("--{name}: {e}"))
    };
    let addresses: Vec<String> = get("addresses")?.split(',').map(str::to_owned).collect();
    let process = number("process")? as usize;
    let threads = number("threads")? as usize;
    let max_parallelism =
        MaxParallelism::new(number("max-parallelism")? as u32).map_err(|e| e.to_string())?;
    let storage: Arc<dyn CheckpointStorage> =
        Arc::new(LocalStorage::open(get("checkpoints")?).map_err(|e| e.to_string())?);
    let mut job = TimelyJob::new(get("log")?, storage, get("run-id")?)
        .operator_name(OPERATOR)
        .assigner(KeyGroupAssigner::native(max_parallelism))
        .records_per_epoch(number("records-per-epoch")? as usize)
        .epochs_in_flight(number("epochs-in-flight")?);
    if values.contains_key("stop-after-epochs") {
        job = job.stop_after_epochs(number("stop-after-epochs")?);
    }
    if let Some(f) = values.get("fault") {
        job = job.fault(Some(f.parse::<Fault>()?));
    }
    let config = cluster_config(process, &addresses, threads).map_err(|e| e.to_string())?;
    let reports = job
        .execute(config, |_| RunningSum::default(), |_| Box::new(|_| {}))
        .map_err(|e| format!("process {process}: {e}"))?;
    for r in &reports {
        println!("{}", report_line(r));
    }
    Ok(reports)
}

fn report_line(r: &WorkerReport) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    format!(
        "timely-report worker={} workers={} key_groups={}..{} restored_from={} bytes_restored={} keyed_bytes_restored={} owned_state_bytes={} events={} epochs={}..{} committed={} elapsed_us={}",
        r.info.worker,
        r.info.workers,
        r.info.key_groups.start(),
        r.info.key_groups.end_exclusive(),
        opt(r.restored_from),
        r.bytes_restored,
        r.keyed_bytes_restored,
        r.owned_state_bytes,
        r.events,
        r.epochs.0,
        r.epochs.1,
        opt(r.committed),
        r.elapsed.as_micros(),
    )
}

/// One worker's report, as read back from a `timely-report` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// `key=value` fields of the line.
    pub fields: HashMap<String, String>,
}

impl ReportLine {
    fn parse(line: &str) -> Option<ReportLine> {
        let rest = line.strip_prefix("timely-report ")?;
        let fields = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(ReportLine { fields })
    }

    /// A field's text (`""` when absent).
    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }

    /// A numeric field (`None` when absent or `-`).
    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key).parse().ok()
    }
}

/// What one process of a run did.
#[derive(Debug)]
pub struct ProcessOutcome {
    /// The process's index.
    pub process: usize,
    /// How it ended.
    pub status: ExitStatus,
    /// Its workers' reports (none if it failed).
    pub reports: Vec<ReportLine>,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// The processes of one run, on 127.0.0.1.
#[derive(Debug)]
pub struct Cluster {
    children: Vec<Child>,
}

impl Cluster {
    /// Starts `processes` processes of `exe` (each with `exe_args`, then the
    /// run's arguments) listening on free local ports; `faults` gives
    /// processes a fault to inject.
    pub fn start(
        exe: &Path,
        exe_args: &[&str],
        processes: usize,
        spec: &RunSpec,
        faults: &[(usize, Fault)],
    ) -> std::io::Result<Cluster> {
        let addresses = state_timely::free_local_addresses(processes)?;
        let mut children = Vec::with_capacity(processes);
        for p in 0..processes {
            let fault = faults.iter().find(|(q, _)| *q == p).map(|(_, f)| f);
            let child = Command::new(exe)
                .args(exe_args)
                .args(spec.args(p, &addresses, fault))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            children.push(child);
        }
        Ok(Cluster { children })
    }

    /// Kills process `p` (SIGKILL).
    pub fn kill(&mut self, p: usize) -> std::io::Result<()> {
        self.children[p].kill()
    }

    /// Waits for every process to end; after `timeout`, kills those still
    /// running (a fail-stop peer that did not stop).
    pub fn wait(mut self, timeout: Duration) -> std::io::Result<Vec<ProcessOutcome>> {
        let start = Instant::now();
        let mut statuses: Vec<Option<ExitStatus>> = vec![None; self.children.len()];
        while statuses.iter().any(Option::is_none) {
            for (i, child) in self.children.iter_mut().enumerate() {
                if statuses[i].is_none() {
                    statuses[i] = child.try_wait()?;
                }
            }
            if start.elapsed() > timeout {
                for (i, child) in self.children.iter_mut().enumerate() {
                    if statuses[i].is_none() {
                        child.kill()?;
                        statuses[i] = Some(child.wait()?);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut outcomes = Vec::new();
        for (process, (mut child, status)) in self.children.drain(..).zip(statuses).enumerate() {
            let mut stdout = String::new();
            let mut stderr = String::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_string(&mut stdout)?;
            }
            if let Some(mut err) = child.stderr.take() {
                err.read_to_string(&mut stderr)?;
            }
            outcomes.push(ProcessOutcome {
                process,
                status: status.expect("every process ended"),
                reports: stdout.lines().filter_map(ReportLine::parse).collect(),
                stderr,
            });
        }
        Ok(outcomes)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
