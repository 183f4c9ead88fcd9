//! What can go wrong in a timely job with rescalable state.

use state_runtime::StateError;
use state_runtime::runner::TaskError;

/// An error of a timely job with rescalable state, naming the worker and
/// what it was doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimelyError {
    /// Checkpointing, restoring or processing failed.
    #[error("worker {worker}: {during}: {source}")]
    State {
        /// The worker (its index among all workers of the job).
        worker: usize,
        /// What the worker was doing.
        during: String,
        /// The error.
        #[source]
        source: StateError,
    },

    /// The source failed: the input log could not be read, a broker
    /// refused, a record did not decode.
    #[error("worker {worker}: reading the input: {source}")]
    Source {
        /// The worker.
        worker: usize,
        /// The error.
        #[source]
        source: TaskError,
    },

    /// The committer did not receive one data file from every worker for
    /// every operator of a checkpoint.
    #[error(
        "checkpoint {checkpoint_id}: operator `{operator}` has data files from {found} workers, expected {expected}"
    )]
    MissingFragments {
        /// The checkpoint.
        checkpoint_id: u64,
        /// The operator.
        operator: String,
        /// The number of workers.
        expected: usize,
        /// The number of files received.
        found: usize,
    },

    /// A checkpoint with this or a newer id is already committed: another
    /// run has taken over, and this one must not commit (it is fenced).
    #[error(
        "run {run_id} may not commit checkpoint {checkpoint_id}: checkpoint {latest} is already committed (a newer run took over)"
    )]
    Fenced {
        /// This run's id.
        run_id: String,
        /// The checkpoint it tried to commit.
        checkpoint_id: u64,
        /// The newest committed checkpoint.
        latest: u64,
    },

    /// A setting is out of range.
    #[error("invalid job configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// Timely could not start (for example a port in use, or a process that
    /// never connected).
    #[error("timely: {0}")]
    Timely(String),

    /// A worker thread of this process panicked (timely reports the loss of
    /// a connection to another process this way).
    #[error("worker {worker} panicked: {message}")]
    WorkerPanicked {
        /// The worker.
        worker: usize,
        /// The panic's message.
        message: String,
    },

    /// Another worker of this process failed first; this one stopped.
    #[error("worker {worker} stopped because another worker of its process failed")]
    Stopped {
        /// The worker.
        worker: usize,
    },
}

impl TimelyError {
    pub(crate) fn state(
        worker: usize,
        during: impl Into<String>,
    ) -> impl FnOnce(StateError) -> Self {
        move |source| TimelyError::State {
            worker,
            during: during.into(),
            source,
        }
    }
}
