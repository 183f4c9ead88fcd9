//! Where a job's completed checkpoints go: the [`JobCheckpointStore`] seam
//! and an in-memory implementation.
//!
//! The runner hands a [`JobCheckpoint`] to the store only once every instance
//! of the pipeline has sent its snapshot for that checkpoint; a restart asks
//! the store for its [`latest`](JobCheckpointStore::latest) checkpoint. A
//! durable (disk-backed) store implements the same trait.
//!
//! ```
//! use state_runtime::runner::store::{JobCheckpointStore, MemoryCheckpointStore};
//!
//! let store = MemoryCheckpointStore::new();
//! assert!(store.latest()?.is_none());
//! assert_eq!(store.len(), 0);
//! # Ok::<(), state_runtime::StateError>(())
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use crate::checkpoint::Checkpoint;
use crate::error::StateError;
use crate::keygroup::KeyGroupAssigner;

/// One consistent checkpoint of a whole pipeline: every source instance and
/// every keyed instance snapshotted after the same prefix of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCheckpoint {
    /// The checkpoint id: increasing over the life of a job, across restarts.
    pub id: u64,
    /// The sources' operator state (one `(partition, offset)` item per
    /// partition), at the source parallelism of the run that took it.
    pub source: Checkpoint,
    /// The keyed operator's state, at the keyed parallelism of the run that
    /// took it.
    pub keyed: Checkpoint,
    /// How keys were assigned to key groups (kind and max parallelism).
    pub assigner: KeyGroupAssigner,
    /// Input records consumed by the job (over all runs) up to this
    /// checkpoint.
    pub events: u64,
}

impl JobCheckpoint {
    /// A job checkpoint; the two operator checkpoints get the id `id`.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    /// use state_runtime::runner::store::JobCheckpoint;
    ///
    /// let empty = || Checkpoint::from_subtasks(vec![SubtaskSnapshot::default()]);
    /// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
    /// let cp = JobCheckpoint::new(3, empty()?, empty()?, assigner, 1000);
    /// assert_eq!((cp.id, cp.source.checkpoint_id(), cp.keyed.checkpoint_id()), (3, 3, 3));
    /// # Ok::<(), StateError>(())
    /// ```
    pub fn new(
        id: u64,
        source: Checkpoint,
        keyed: Checkpoint,
        assigner: KeyGroupAssigner,
        events: u64,
    ) -> Self {
        Self {
            id,
            source: source.with_checkpoint_id(id),
            keyed: keyed.with_checkpoint_id(id),
            assigner,
            events,
        }
    }

    /// Bytes of state data in the checkpoint (sources and keyed operator).
    pub fn state_bytes(&self) -> u64 {
        [&self.source, &self.keyed]
            .iter()
            .flat_map(|c| c.subtasks())
            .map(|s| s.data().len() as u64)
            .sum()
    }
}

/// Where completed job checkpoints are kept.
///
/// `store` is called from the job's coordinator thread once checkpoint `id`
/// is complete; it must make the checkpoint visible to `latest` atomically
/// (all of it or nothing). An error fails the job.
pub trait JobCheckpointStore: Send + Sync {
    /// Keeps `checkpoint`; afterwards it is the latest one.
    fn store(&self, checkpoint: &JobCheckpoint) -> Result<(), StateError>;

    /// The most recently stored checkpoint, if any.
    fn latest(&self) -> Result<Option<JobCheckpoint>, StateError>;
}

impl<S: JobCheckpointStore + ?Sized> JobCheckpointStore for Arc<S> {
    fn store(&self, checkpoint: &JobCheckpoint) -> Result<(), StateError> {
        (**self).store(checkpoint)
    }

    fn latest(&self) -> Result<Option<JobCheckpoint>, StateError> {
        (**self).latest()
    }
}

/// An in-memory [`JobCheckpointStore`]. Clones share the same checkpoints,
/// so a test can keep one clone, hand another to a job, kill the job and
/// restart from what the store holds.
///
/// It keeps the latest `retain` checkpoints (default 2).
///
/// ```
/// use state_runtime::prelude::*;
/// use state_runtime::runner::store::{JobCheckpoint, JobCheckpointStore, MemoryCheckpointStore};
///
/// let store = MemoryCheckpointStore::new();
/// let handle = store.clone();
/// let empty = || Checkpoint::from_subtasks(vec![SubtaskSnapshot::default()]);
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// for id in 1..=3 {
///     store.store(&JobCheckpoint::new(id, empty()?, empty()?, assigner, id * 10))?;
/// }
/// assert_eq!(handle.latest()?.map(|c| c.id), Some(3));
/// assert_eq!(handle.ids(), [2, 3]); // retains two
/// # Ok::<(), StateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryCheckpointStore {
    inner: Arc<Mutex<Vec<JobCheckpoint>>>,
    retain: usize,
}

impl Default for MemoryCheckpointStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCheckpointStore {
    /// An empty store that retains the latest 2 checkpoints.
    pub fn new() -> Self {
        Self::with_retention(2)
    }

    /// An empty store that retains the latest `retain` checkpoints (at least 1).
    pub fn with_retention(retain: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Vec::new())),
            retain: retain.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<JobCheckpoint>> {
        // A panic while holding the lock cannot leave the Vec half-updated
        // (push and drain are the only writes), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of the retained checkpoints, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.lock().iter().map(|c| c.id).collect()
    }

    /// The retained checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<JobCheckpoint> {
        self.lock().clone()
    }

    /// The number of retained checkpoints.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no checkpoint.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl JobCheckpointStore for MemoryCheckpointStore {
    fn store(&self, checkpoint: &JobCheckpoint) -> Result<(), StateError> {
        let mut all = self.lock();
        all.push(checkpoint.clone());
        let excess = all.len().saturating_sub(self.retain);
        all.drain(..excess);
        Ok(())
    }

    fn latest(&self) -> Result<Option<JobCheckpoint>, StateError> {
        Ok(self.lock().last().cloned())
    }
}
