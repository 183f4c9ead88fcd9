//! Why a job failed, naming the instance.

use std::fmt;

use super::log::LogError;
use crate::error::StateError;

/// One running instance of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Instance {
    /// Source instance `subtask`.
    Source(usize),
    /// Keyed operator instance `subtask`.
    Keyed(usize),
    /// The sink.
    Sink,
    /// The coordinator (triggers checkpoints, gathers snapshots, stores them).
    Coordinator,
}

impl fmt::Display for Instance {
    /// ```
    /// use state_runtime::runner::Instance;
    ///
    /// assert_eq!(Instance::Keyed(2).to_string(), "keyed operator subtask 2");
    /// assert_eq!(Instance::Source(0).to_string(), "source subtask 0");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instance::Source(i) => write!(f, "source subtask {i}"),
            Instance::Keyed(i) => write!(f, "keyed operator subtask {i}"),
            Instance::Sink => f.write_str("sink"),
            Instance::Coordinator => f.write_str("checkpoint coordinator"),
        }
    }
}

/// Why an instance of a job stopped with an error: its state, its input, or
/// the checkpoint protocol between instances.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// Its state: a restore, a snapshot, a keyed-state operation, a
    /// checkpoint store, or the operator's own `process`.
    #[error(transparent)]
    State(#[from] StateError),

    /// Reading the input log.
    #[error(transparent)]
    Log(#[from] LogError),

    /// Reading Kafka (the `kafka` feature's source).
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(Box<crate::kafka::KafkaError>),

    /// A keyed instance received a barrier for another checkpoint while it
    /// was aligning one (a runner bug: barriers of one checkpoint reach
    /// every instance before the next checkpoint's).
    #[error(
        "barrier of checkpoint {barrier} from source {from} arrived while aligning checkpoint {aligning}"
    )]
    Misaligned {
        /// The checkpoint of the barrier that arrived.
        barrier: u64,
        /// The source subtask it came from.
        from: usize,
        /// The checkpoint being aligned.
        aligning: u64,
    },
}

#[cfg(feature = "kafka")]
impl From<crate::kafka::KafkaError> for TaskError {
    fn from(e: crate::kafka::KafkaError) -> Self {
        TaskError::Kafka(Box::new(e))
    }
}

/// Why a job could not start or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job's configuration is invalid (zero parallelism, parallelism
    /// above the max parallelism, ...).
    #[error("invalid job configuration: {0}")]
    Config(String),

    /// Reading the latest checkpoint, restoring it or opening the input log
    /// failed before the job started.
    #[error("could not start the job: {0}")]
    Start(#[source] TaskError),

    /// An instance's code panicked.
    #[error("{instance} panicked: {message}")]
    Panicked {
        /// The instance that panicked.
        instance: Instance,
        /// The panic message.
        message: String,
    },

    /// An instance returned an error (a restore, a snapshot, reading the
    /// log, or the operator itself).
    #[error("{instance} failed: {source}")]
    Failed {
        /// The instance that failed.
        instance: Instance,
        /// The error.
        #[source]
        source: TaskError,
    },

    /// Every instance ended, but the job did not complete (an internal
    /// error: it should not happen).
    #[error("the job ended unexpectedly: {0}")]
    Ended(String),
}

impl JobError {
    /// A start failure, from a state or log error.
    pub(super) fn start(e: impl Into<TaskError>) -> Self {
        JobError::Start(e.into())
    }

    /// The instance the error names, if any.
    ///
    /// ```
    /// use state_runtime::runner::{Instance, JobError};
    ///
    /// let e = JobError::Panicked { instance: Instance::Keyed(2), message: "boom".into() };
    /// assert_eq!(e.instance(), Some(Instance::Keyed(2)));
    /// assert_eq!(e.to_string(), "keyed operator subtask 2 panicked: boom");
    /// ```
    pub fn instance(&self) -> Option<Instance> {
        match self {
            JobError::Panicked { instance, .. } | JobError::Failed { instance, .. } => {
                Some(*instance)
            }
            _ => None,
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    }
}
