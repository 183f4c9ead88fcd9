//! What one worker's operators and its driving loop share (they run on the
//! worker's thread): the storage, the run's identity, the source offsets at
//! each boundary, the end of the run, and the first error.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Per boundary `b`: the worker's source offsets once it had read every
    /// record of times `< b`. A boundary without an entry takes the newest
    /// earlier one.
    pub(crate) offsets: RefCell<BTreeMap<u64, Vec<(u32, u64)>>>,
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

    /// The source offsets for boundary `b`.
    pub(crate) fn offsets_at(&self, b: u64) -> Vec<(u32, u64)> {
        self.offsets
            .borrow()
            .range(..=b)
            .next_back()
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    }

    /// Forgets the offsets of boundaries before `b` (keeping the one `b`
    /// would use).
    pub(crate) fn prune_offsets(&self, b: u64) {
        let mut offsets = self.offsets.borrow_mut();
        if let Some((&keep, _)) = offsets.range(..=b).next_back() {
            *offsets = offsets.split_off(&keep);
        }
    }
}
