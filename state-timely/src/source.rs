//! The job's source: one worker's instance of a runner source
//! ([`Source`], built by a [`SourceFactory`]: the file log's `LogInput`, the
//! Kafka source's `KafkaInput`, or one of your own), with its partition
//! offsets as `split` state.
//!
//! A worker's source is built fresh with its initial partitions, or built
//! empty and given its share of a checkpoint's offsets; at every epoch
//! boundary the driving loop captures it, and the keyed stage writes that
//! capture into the checkpoint's source data file.

use state_runtime::checkpoint::Restore;
use state_runtime::checkpoint::durable::StoredCheckpoint;
use state_runtime::runner::source::{SourceFactory, SourceInstance};

use crate::error::TimelyError;

/// The name of the source operator in the job's checkpoints.
pub const SOURCE_OPERATOR: &str = "source";

/// Worker `worker` of `workers`'s source instance: on a fresh start (no
/// `stored` checkpoint) with its initial partitions, else with its share of
/// the checkpointed offsets (`split` state: every partition goes to
/// exactly one worker). Returns the source and the bytes the restore read.
pub(crate) fn open_source<I: SourceFactory>(
    input: &I,
    stored: Option<&StoredCheckpoint<'_>>,
    worker: usize,
    workers: usize,
) -> Result<(I::Source, u64), TimelyError> {
    let instance = SourceInstance::new(worker, workers, stored.is_none());
    let mut source = input
        .create(&instance)
        .map_err(|source| TimelyError::Source { worker, source })?;
    let bytes = match stored {
        None => 0,
        Some(stored) => {
            stored
                .operator(SOURCE_OPERATOR)
                .and_then(|op| op.restore_into(&mut source, worker, workers))
                .map_err(TimelyError::state(worker, "restoring the source offsets"))?
                .bytes_read
        }
    };
    Ok((source, bytes))
}
