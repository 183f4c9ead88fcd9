//! Named points at which a worker process can be made to abort, to test
//! recovery from a crash at each step of the commit protocol.

use std::fmt;
use std::str::FromStr;

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

/// Makes worker `worker` abort its process (`std::process::abort`, as a
/// kill would stop it: no destructors, no flush) when it reaches `point` of
/// checkpoint `checkpoint_id`.
///
/// Its text form is `<point>:<checkpoint id>:<worker>`:
///
/// ```
/// use state_timely::{Fault, FaultPoint};
///
/// let fault: Fault = "before-manifest:4:0".parse()?;
/// assert_eq!(fault, Fault { point: FaultPoint::BeforeManifest, checkpoint_id: 4, worker: 0 });
/// assert_eq!(fault.to_string(), "before-manifest:4:0");
/// assert!("sometime:4:0".parse::<Fault>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Where.
    pub point: FaultPoint,
    /// In which checkpoint.
    pub checkpoint_id: u64,
    /// Which worker (the committer is worker 0).
    pub worker: usize,
}

impl Fault {
    /// Aborts the process if `self` is `point` of `checkpoint_id` at `worker`.
    pub(crate) fn check(fault: Option<Fault>, point: FaultPoint, checkpoint_id: u64, worker: usize) {
        let here = Fault {
            point,
            checkpoint_id,
            worker,
        };
        if fault == Some(here) {
            eprintln!("worker {worker}: aborting at {here} (fault injection)");
            std::process::abort();
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
        )
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("fault `{s}`: expected <point>:<checkpoint id>:<worker>, point one of before-data-files, after-data-files, before-manifest, after-manifest");
        let mut parts = s.split(':');
        let (Some(point), Some(id), Some(worker), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
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
        })
    }
}
