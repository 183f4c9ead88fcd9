//! What a run reports: how it ended, and per checkpoint and instance what
//! it did.

use std::time::Duration;

use crate::checkpoint::RestoreReport;
use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};

/// How a run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// The input was read to its end; the job stopped with a final
    /// checkpoint.
    Finished,
    /// [`RunningJob::stop`](crate::runner::RunningJob::stop): stopped with a final checkpoint.
    Stopped,
    /// [`RunningJob::kill`](crate::runner::RunningJob::kill): aborted without a final checkpoint.
    Killed,
}

/// One completed checkpoint of a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// The checkpoint id.
    pub id: u64,
    /// Input records consumed by the job (over all runs) up to it.
    pub events: u64,
    /// From the trigger to the store holding it.
    pub duration: Duration,
    /// The longest time a keyed instance held back input while aligning
    /// barriers (from the first to the last barrier).
    pub max_alignment: Duration,
    /// The longest synchronous part of a keyed instance's snapshot, during
    /// which it processes nothing: the whole snapshot, or with asynchronous
    /// snapshots ([`Job::asynchronous_snapshots`](crate::runner::Job::asynchronous_snapshots)) only its capture,
    /// which does not grow with the keyed state.
    pub max_snapshot: Duration,
    /// With asynchronous snapshots, the longest time a keyed instance's
    /// snapshot writer took to write its captured snapshot into the store,
    /// while the instance went on processing (zero otherwise).
    pub max_async: Duration,
    /// Bytes of state data in the checkpoint.
    pub bytes: u64,
}

/// What one keyed instance did in a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyedInstanceStats {
    /// The instance's index.
    pub subtask: usize,
    /// The key groups it owned.
    pub key_groups: KeyGroupRange,
    /// What its restore read, if it was restored from a checkpoint.
    pub restore: Option<RestoreReport>,
    /// How long its restore took.
    pub restore_time: Duration,
    /// After a restore, with [`Job::measure_restored_state`](crate::runner::Job::measure_restored_state): the bytes of
    /// the state it then held, encoded as in a checkpoint (what it needed to
    /// read at least).
    pub state_bytes: Option<u64>,
    /// Events it processed.
    pub events: u64,
    /// Time spent in `process` (events / busy is its throughput).
    pub busy: Duration,
    /// The most record batches it held back from one source at a time while
    /// aligning checkpoint barriers: at most [`Job::alignment_buffer`](crate::runner::Job::alignment_buffer) plus
    /// the 16 its input channel queues.
    pub max_held: usize,
}

impl KeyedInstanceStats {
    /// Bytes read by the restore over the bytes of the state the instance
    /// then held (1.0: it read exactly its own state). `None` without a
    /// restore, with an empty state, or unless the job was built with
    /// [`Job::measure_restored_state`](crate::runner::Job::measure_restored_state).
    ///
    /// With an unchanged max parallelism an instance reads whole key groups
    /// it owns, so this is 1.0; after a change of max parallelism (native
    /// mode) the two boundary key groups it shares with a neighbour are read
    /// whole and filtered, so it is slightly above 1.
    pub fn read_amplification(&self) -> Option<f64> {
        let read = self.restore.as_ref()?.bytes_read;
        match self.state_bytes? {
            0 => None,
            held => Some(read as f64 / held as f64),
        }
    }
}

/// What one source instance did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceInstanceStats {
    /// The instance's index.
    pub subtask: usize,
    /// Where it was in each of its partitions when it ended.
    pub offsets: Vec<crate::runner::source::PartitionOffset>,
    /// Records it read.
    pub events: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobReport {
    /// How the run ended.
    pub end: JobEnd,
    /// Source parallelism.
    pub source_parallelism: usize,
    /// Keyed operator parallelism.
    pub keyed_parallelism: usize,
    /// How keys were assigned to key groups.
    pub assigner: KeyGroupAssigner,
    /// The checkpoint the run was restored from.
    pub restored_from: Option<u64>,
    /// Input records consumed by the job (all runs) when the run started.
    pub events_at_start: u64,
    /// Records the sources read in this run.
    pub events_read: u64,
    /// Events the keyed instances processed in this run.
    pub events_processed: u64,
    /// Wall time of the run, from start to the last thread's end.
    pub elapsed: Duration,
    /// The checkpoints completed and stored in this run, in order.
    pub checkpoints: Vec<CheckpointStats>,
    /// Per keyed instance.
    pub keyed: Vec<KeyedInstanceStats>,
    /// Per source instance.
    pub sources: Vec<SourceInstanceStats>,
}

impl JobReport {
    /// The id of the last checkpoint stored in this run.
    pub fn last_checkpoint(&self) -> Option<u64> {
        self.checkpoints.last().map(|c| c.id)
    }
}

/// The result of a run: the keyed operator instances (after a stop or the
/// end of the input; empty after a kill) and the report.
#[non_exhaustive]
pub struct JobOutcome<P> {
    /// Instance `i` at index `i`; their state is exactly the final
    /// checkpoint's. Empty if the job was killed.
    pub operators: Vec<P>,
    /// What the run did.
    pub report: JobReport,
}

impl<P> std::fmt::Debug for JobOutcome<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOutcome")
            .field("operators", &self.operators.len())
            .field("report", &self.report)
            .finish()
    }
}
