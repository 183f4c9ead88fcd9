//! What one worker's operators and its driving loop share (they run on the
//! worker's thread): the storage, the run's identity, the source's state at
//! each boundary, the end of the run, and the first error.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

use state_runtime::checkpoint::CapturedSnapshot;
use state_runtime::storage::CheckpointStorage;

use crate::error::TimelyError;
use crate::fault::Fault;

pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn CheckpointStorage>,
    pub(crate) run_id: String,
    /// The keyed operator's name in checkpoints.
    pub(crate) operator: String,
    pub(crate) fault: Option<Fault>,
    /// Complete checkpoints worker 0 keeps.
    pub(crate) retain: usize,
    pub(crate) worker: usize,
    pub(crate) workers: usize,
    /// Per boundary `b`: the worker's source, captured once it had read
    /// every record of times `< b`. A boundary without an entry takes the
    /// newest earlier one.
    pub(crate) sources: RefCell<BTreeMap<u64, CapturedSnapshot>>,
    /// Per epoch: how many workers reported their source exhausted.
    pub(crate) exhausted: RefCell<BTreeMap<u64, usize>>,
    /// The run's last checkpoint boundary, once the driving loop has
    /// decided it (every worker decides the same).
    pub(crate) final_boundary: Cell<Option<u64>>,
    /// The first error of any operator of this worker.
    pub(crate) failure: RefCell<Option<TimelyError>>,
    /// Worker 0: the newest checkpoint it committed.
    pub(crate) committed: Cell<Option<u64>>,
    /// Records the keyed stage processed.
    pub(crate) events: Cell<u64>,
}

impl Shared {
    /// Keeps the first error.
    pub(crate) fn fail(&self, error: TimelyError) {
        let mut slot = self.failure.borrow_mut();
        if slot.is_none() {
            tracing::error!(worker = self.worker, %error, "worker failed");
            *slot = Some(error);
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Runs `f` on the source's capture for boundary `b` (`None` before
    /// the first).
    pub(crate) fn source_at<R>(&self, b: u64, f: impl FnOnce(Option<&CapturedSnapshot>) -> R) -> R {
        f(self
            .sources
            .borrow()
            .range(..=b)
            .next_back()
            .map(|(_, s)| s))
    }

    /// Forgets the source's captures for boundaries before `b` (keeping the
    /// one `b` would use).
    pub(crate) fn prune_sources(&self, b: u64) {
        let mut sources = self.sources.borrow_mut();
        if let Some((&keep, _)) = sources.range(..=b).next_back() {
            *sources = sources.split_off(&keep);
        }
    }
}
