//! Start-up: every worker must restore from the same checkpoint. Worker 0
//! cleans up leftovers of earlier runs, reads the newest complete
//! checkpoint and sends its id to every worker through a small dataflow,
//! which doubles as a barrier: no worker writes a file before the cleanup
//! is over.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use state_runtime::checkpoint::durable::referenced_files;
use state_runtime::storage::CheckpointStorage;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

use crate::error::TimelyError;

/// Worker 0's message to each worker: `(worker, checkpoint to restore)`.
type Announcement = (u64, Option<u64>);

/// What the workers agree on at start-up.
pub(crate) struct RestorePoint {
    /// The checkpoint to restore, if any.
    pub(crate) checkpoint_id: Option<u64>,
}

/// Runs the start-up dataflow. On worker 0 first removes what
/// [`CheckpointStorage::retain_last`] with `retain` removes: checkpoints
/// beyond the newest `retain` and interrupted attempts older than the
/// newest complete checkpoint (a newer one may still belong to a live
/// process of an earlier run, which cannot commit over a newer run's
/// checkpoints anyway).
pub(crate) fn agree_on_restore_point(
    worker: &mut Worker,
    storage: &dyn CheckpointStorage,
    retain: usize,
    stopped: &dyn Fn() -> bool,
) -> Result<RestorePoint, TimelyError> {
    let me = worker.index();
    let peers = worker.peers();
    let received: Rc<Cell<Option<Option<u64>>>> = Rc::new(Cell::new(None));
    let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<Announcement>>> =
        InputHandle::new();
    let probe = ProbeHandle::new();
    let slot = Rc::clone(&received);
    worker.dataflow::<u64, _, _>(|scope| {
        input
            .to_stream(scope)
            .exchange(|m: &Announcement| m.0)
            .inspect(move |m: &Announcement| slot.set(Some(m.1)))
            .probe_with(&probe);
    });
    if me == 0 {
        if !storage
            .list()
            .map_err(TimelyError::state(me, "listing checkpoints"))?
            .is_empty()
        {
            storage
                .retain_last(retain, &referenced_files)
                .map_err(TimelyError::state(
                    me,
                    "cleaning up leftovers of earlier runs",
                ))?;
        }
        let latest = storage
            .latest()
            .map_err(TimelyError::state(me, "reading the newest checkpoint"))?;
        for w in 0..peers {
            input.send((w as u64, latest));
        }
    }
    input.close();
    while !probe.done() {
        if stopped() {
            return Err(TimelyError::Stopped { worker: me });
        }
        worker.step_or_park(Some(Duration::from_millis(5)));
    }
    match received.get() {
        Some(checkpoint_id) => Ok(RestorePoint { checkpoint_id }),
        None => Err(TimelyError::InvalidConfig {
            reason: format!("worker {me} of {peers} received no restore point from worker 0"),
        }),
    }
}
