//! Named points at which a worker process can be made to abort, to test
//! recovery from a crash at each step of the commit protocol.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A step of the commit protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// A worker, before it writes its data files of the checkpoint.
    BeforeDataFiles,
    /// A worker, after its data files are durable and before it sends their
    /// descriptions to the committer.
    AfterDataFiles,
    /// The committer (worker 0), once every data file of the checkpoint is
    /// durable, before it writes the manifest.
    BeforeManifest,
    /// The committer, right after the manifest is committed.
    AfterManifest,
}

impl FaultPoint {
    const NAMES: [(&'static str, FaultPoint); 4] = [
        ("before-data-files", FaultPoint::BeforeDataFiles),
        ("after-data-files", FaultPoint::AfterDataFiles),
        ("before-manifest", FaultPoint::BeforeManifest),
        ("after-manifest", FaultPoint::AfterManifest),
    ];

    /// The point's name, as [`Fault`]'s text form spells it.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("", |(n, _)| n)
    }
}

/// What a worker does at its [`Fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Aborts the process (`std::process::abort`, as a kill would stop it:
    /// no destructors, no flush).
    Abort,
    /// Stops until the file exists, then goes on: a process that stalls
    /// (and may find another run has taken over when it wakes up).
    WaitFor(PathBuf),
}

/// Makes worker `worker` abort its process, or stall, when it reaches
/// `point` of checkpoint `checkpoint_id`.
///
/// Its text form is `<point>:<checkpoint id>:<worker>` to abort, with
/// `:wait=<path>` appended to stall until `<path>` exists:
///
/// ```
/// use state_timely::{Fault, FaultAction, FaultPoint};
///
/// let fault: Fault = "before-manifest:4:0".parse()?;
/// assert_eq!(fault, Fault { point: FaultPoint::BeforeManifest, checkpoint_id: 4, worker: 0, action: FaultAction::Abort });
/// assert_eq!(fault.to_string(), "before-manifest:4:0");
/// let stall: Fault = "after-data-files:2:1:wait=/tmp/go".parse()?;
/// assert_eq!(stall.action, FaultAction::WaitFor("/tmp/go".into()));
/// assert_eq!(stall.to_string(), "after-data-files:2:1:wait=/tmp/go");
/// assert!("sometime:4:0".parse::<Fault>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Where.
    pub point: FaultPoint,
    /// In which checkpoint.
    pub checkpoint_id: u64,
    /// Which worker (the committer is worker 0).
    pub worker: usize,
    /// What it does there.
    pub action: FaultAction,
}

impl Fault {
    /// Acts if `fault` is `point` of `checkpoint_id` at `worker`.
    pub(crate) fn check(
        fault: &Option<Fault>,
        point: FaultPoint,
        checkpoint_id: u64,
        worker: usize,
    ) {
        let Some(f) = fault else { return };
        if (f.point, f.checkpoint_id, f.worker) != (point, checkpoint_id, worker) {
            return;
        }
        match &f.action {
            FaultAction::Abort => {
                eprintln!("worker {worker}: aborting at {f} (fault injection)");
                std::process::abort();
            }
            FaultAction::WaitFor(path) => {
                eprintln!("worker {worker}: stalled at {f} (fault injection)");
                while !path.exists() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.point.name(),
            self.checkpoint_id,
            self.worker
        )?;
        match &self.action {
            FaultAction::Abort => Ok(()),
            FaultAction::WaitFor(path) => write!(f, ":wait={}", path.display()),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "fault `{s}`: expected <point>:<checkpoint id>:<worker>[:wait=<path>], point one of before-data-files, after-data-files, before-manifest, after-manifest"
            )
        };
        let mut parts = s.splitn(4, ':');
        let (Some(point), Some(id), Some(worker), rest) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let action = match rest {
            None => FaultAction::Abort,
            Some(rest) => match rest.strip_prefix("wait=") {
                Some(path) if !path.is_empty() => FaultAction::WaitFor(path.into()),
                _ => return Err(bad()),
            },
        };
        let point = FaultPoint::NAMES
            .iter()
            .find(|(n, _)| *n == point)
            .map(|(_, p)| *p)
            .ok_or_else(bad)?;
        Ok(Fault {
            point,
            checkpoint_id: id.parse().map_err(|_| bad())?,
            worker: worker.parse().map_err(|_| bad())?,
            action,
        })
    }
}
