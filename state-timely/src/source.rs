//! The job's source: one worker's share of a partitioned input log, with its
//! `(partition, offset)` positions as `split` state.
//!
//! Everything the job knows about its input is here, behind [`LogInput`]:
//! opening or restoring a worker's partitions, reading an epoch's worth of
//! records, and the state written for it at each checkpoint.

use std::path::Path;

use serde::de::DeserializeOwned;
use state_runtime::checkpoint::Restore;
use state_runtime::checkpoint::durable::StoredCheckpoint;
use state_runtime::runner::log::partition_count;
use state_runtime::runner::source::LogSource;

use crate::error::TimelyError;

/// The name of the source operator in the job's checkpoints.
pub const SOURCE_OPERATOR: &str = "source";

/// One worker's partitions of the input log.
pub(crate) struct LogInput<E> {
    source: LogSource<E>,
    worker: usize,
}

impl<E: DeserializeOwned> LogInput<E> {
    /// Worker `worker` of `workers`: on a fresh start the partitions `p`
    /// with `p % workers == worker` from the beginning, else its share of
    /// the checkpointed offsets (`split` state: every partition goes to
    /// exactly one worker). Returns the bytes the restore read.
    pub(crate) fn open(
        dir: &Path,
        stored: Option<&StoredCheckpoint<'_>>,
        worker: usize,
        workers: usize,
    ) -> Result<(Self, u64), TimelyError> {
        let (source, bytes) = match stored {
            None => {
                let partitions =
                    partition_count(dir).map_err(|source| TimelyError::Log { worker, source })?;
                let offsets = LogSource::<E>::initial_partitions(partitions, workers, worker);
                (LogSource::new(dir, offsets), 0)
            }
            Some(stored) => {
                let mut source = LogSource::new(dir, Vec::new());
                let report = stored
                    .operator(SOURCE_OPERATOR)
                    .and_then(|op| op.restore_into(&mut source, worker, workers))
                    .map_err(TimelyError::state(worker, "restoring the source offsets"))?;
                (source, report.bytes_read)
            }
        };
        Ok((LogInput { source, worker }, bytes))
    }

    /// Reads up to `max` records into `emit`; returns how many.
    pub(crate) fn poll(&mut self, max: usize, emit: impl FnMut(E)) -> Result<usize, TimelyError> {
        let worker = self.worker;
        self.source
            .poll(max, emit)
            .map_err(|source| TimelyError::Log { worker, source })
    }

    /// Where the worker is in each of its partitions.
    pub(crate) fn offsets(&self) -> Vec<(u32, u64)> {
        self.source.offsets().to_vec()
    }

    /// Whether every partition of the worker is read to its end (true
    /// without partitions).
    pub(crate) fn is_exhausted(&self) -> bool {
        self.source.is_exhausted()
    }
}

/// The source's state at a checkpoint, for the offsets the worker had at
/// the checkpoint's boundary (the worker's keyed stage writes it): a
/// [`LogSource`] at those offsets, so that it is written exactly as the
/// restore into a `LogSource` reads it. Its folder and event type do not
/// enter the snapshot.
pub(crate) fn offsets_state(offsets: Vec<(u32, u64)>) -> LogSource<()> {
    LogSource::new(Path::new(""), offsets)
}
