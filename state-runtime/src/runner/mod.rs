//! A local job runner: sources reading a partitioned log, a keyed operator at
//! any parallelism, aligned checkpoints, and restarts at a new parallelism.

mod error;
mod job;
pub mod log;
pub mod source;
pub mod store;

pub use error::{Instance, JobError};
pub use job::{
    CheckpointStats, InstanceInfo, Job, JobEnd, JobOutcome, JobReport, KeyedInstanceStats,
    KeyedProcessor, RunningJob, SourceInstanceStats,
};
pub use store::{JobCheckpoint, JobCheckpointStore, MemoryCheckpointStore};
