//! What the pipeline's threads share: counters and flags, the key-group
//! router, the messages on each channel, and the thread spawner.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::error::{Instance, JobError, TaskError, panic_message};
use super::store::SubtaskState;
use crate::error::StateError;
use crate::key::Keyed;
use crate::keygroup::KeyGroupAssigner;

/// Messages a keyed instance holds back per source while aligning, by
/// default: [`Job::alignment_buffer`].
pub(super) const DEFAULT_ALIGNMENT_BUFFER: usize = 16;

/// Counters and flags every thread shares.
pub(super) struct Shared {
    pub(super) abort: AtomicBool,
    pub(super) read: AtomicU64,
    pub(super) processed: AtomicU64,
    pub(super) last_checkpoint: AtomicU64,
    /// Per keyed instance, per source: how many of the source's messages
    /// the instance holds back while aligning (the source waits while this
    /// is at the job's alignment buffer).
    pub(super) held: Vec<Vec<AtomicUsize>>,
    /// Sources waiting right now because an instance holds
    /// `alignment_buffer` of their batches.
    pub(super) waiting: AtomicUsize,
}

impl Shared {
    pub(super) fn new(keyed: usize, sources: usize) -> Self {
        Self {
            abort: AtomicBool::new(false),
            read: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            last_checkpoint: AtomicU64::new(0),
            held: (0..keyed)
                .map(|_| (0..sources).map(|_| AtomicUsize::new(0)).collect())
                .collect(),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Key group -> keyed instance, precomputed.
pub(super) struct Router {
    pub(super) assigner: KeyGroupAssigner,
    pub(super) owner: Vec<u32>,
}

impl Router {
    pub(super) fn new(assigner: KeyGroupAssigner, parallelism: usize) -> Result<Self, JobError> {
        let owner = assigner
            .max_parallelism()
            .all_key_groups()
            .iter()
            // Below the max parallelism, so a u32.
            .map(|kg| {
                assigner
                    .subtask_for_key_group(parallelism, kg)
                    .map(|s| s as u32)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| JobError::Config(e.to_string()))?;
        Ok(Self { assigner, owner })
    }

    /// The subtask owning each event's key, a batch at a time
    /// ([`KeyGroupAssigner::event_key_groups_into`]), written to `targets`.
    pub(super) fn route_batch<E: Keyed>(
        &self,
        events: &[E],
        targets: &mut Vec<u32>,
    ) -> Result<(), StateError> {
        targets.clear();
        self.assigner.event_key_groups_into(events, targets)?;
        for t in targets.iter_mut() {
            *t = self.owner[*t as usize];
        }
        Ok(())
    }
}

/// Source -> keyed instance.
pub(super) enum Msg<E> {
    Records(usize, Vec<E>),
    Barrier(usize, u64),
    End(usize),
}

impl<E> Msg<E> {
    pub(super) fn from(&self) -> usize {
        match self {
            Msg::Records(s, _) | Msg::Barrier(s, _) | Msg::End(s) => *s,
        }
    }
}

/// Coordinator -> source.
pub(super) enum Control {
    Checkpoint(u64),
    StopWithCheckpoint(u64),
}

pub(super) enum Command {
    Checkpoint,
    Stop,
    Kill,
}

/// Everything the coordinator hears.
pub(super) enum CoordMsg {
    Command(Command),
    SourceSnapshot {
        subtask: usize,
        id: u64,
        snapshot: SubtaskState,
        read: u64,
    },
    KeyedSnapshot {
        subtask: usize,
        id: u64,
        snapshot: SubtaskState,
        alignment: Duration,
        /// The instance's pause: the whole snapshot, or its capture when
        /// snapshots are asynchronous.
        snapshot_time: Duration,
        /// Writing a captured snapshot, while the instance went on.
        async_time: Duration,
    },
    SourceFinished,
    Exited(Result<(), JobError>),
}

pub(super) fn spawn_instance<T: Send + 'static>(
    instance: Instance,
    coord: Sender<CoordMsg>,
    shared: &Arc<Shared>,
    body: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<JoinHandle<Option<T>>, JobError> {
    let shared = Arc::clone(shared);
    let name = match instance {
        Instance::Source(i) => format!("rescale-source-{i}"),
        Instance::Keyed(i) => format!("rescale-keyed-{i}"),
        Instance::Sink => "rescale-sink".into(),
        Instance::Coordinator => "rescale-coordinator".into(),
    };
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            // The body owns its channel ends: they are dropped when it
            // returns or unwinds, so the threads it talks to see the
            // channels close and end too.
            let (value, status) = match panic::catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(v)) => (Some(v), Ok(())),
                Ok(Err(source)) => (None, Err(JobError::Failed { instance, source })),
                Err(payload) => (
                    None,
                    Err(JobError::Panicked {
                        instance,
                        message: panic_message(&*payload),
                    }),
                ),
            };
            if let Err(e) = &status {
                tracing::error!(%e, "instance failed");
                shared.abort.store(true, Ordering::SeqCst);
            }
            let _ = coord.send(CoordMsg::Exited(status));
            value
        })
        .map_err(|e| JobError::Ended(format!("could not spawn a thread for {instance}: {e}")))
}
