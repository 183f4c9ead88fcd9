//! Where a job's completed checkpoints go: the [`JobCheckpointStore`] seam
//! and an in-memory implementation.
//!
//! The runner hands a [`JobCheckpoint`] to the store only once every instance
//! of the pipeline has sent its snapshot for that checkpoint; a restart asks
//! the store for its [`latest`](JobCheckpointStore::latest) checkpoint. A
//! durable (disk-backed) store implements the same trait.
//!
//! ```
//! use state_runtime::runner::{JobCheckpointStore, MemoryCheckpointStore};
//!
//! let store = MemoryCheckpointStore::new();
//! assert!(store.latest()?.is_none());
//! assert_eq!(store.len(), 0);
//! # Ok::<(), state_runtime::StateError>(())
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::checkpoint::Restore;
use crate::checkpoint::durable::{
    IncrementalPolicy, StoredCheckpoint, StoredOperator, SubtaskFile, commit_checkpoint,
    referenced_files, write_subtask, write_subtask_incremental, write_subtask_snapshot,
};
use crate::checkpoint::source::sealed::Source;
use crate::checkpoint::{Checkpoint, SnapshotWriter, SubtaskSnapshot};
use crate::checkpoint::{Checkpointed, WriteSnapshot};
use crate::error::StateError;
use crate::keygroup::KeyGroupAssigner;
use crate::storage::CheckpointStorage;

/// One operator's part of a [`JobCheckpoint`]: held in memory, or stored in
/// a [`CheckpointStorage`] and read lazily, each restoring instance reading
/// only the byte ranges of the items and key groups it receives.
#[derive(Clone)]
pub struct OperatorCheckpoint(Backing);

#[derive(Clone)]
enum Backing {
    Memory(Checkpoint),
    Stored {
        storage: Arc<dyn CheckpointStorage>,
        checkpoint_id: u64,
        operator: String,
        parallelism: usize,
        data_bytes: u64,
    },
}

impl std::fmt::Debug for OperatorCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Backing::Memory(c) => f.debug_tuple("InMemory").field(c).finish(),
            Backing::Stored {
                storage,
                checkpoint_id,
                operator,
                ..
            } => f
                .debug_struct("Stored")
                .field("location", &storage.location())
                .field("checkpoint_id", checkpoint_id)
                .field("operator", operator)
                .finish(),
        }
    }
}

impl From<Checkpoint> for OperatorCheckpoint {
    fn from(c: Checkpoint) -> Self {
        Self(Backing::Memory(c))
    }
}

impl OperatorCheckpoint {
    /// The parallelism the checkpoint was taken at.
    pub fn parallelism(&self) -> usize {
        match &self.0 {
            Backing::Memory(c) => c.parallelism(),
            Backing::Stored { parallelism, .. } => *parallelism,
        }
    }

    /// The checkpoint id.
    pub fn checkpoint_id(&self) -> u64 {
        match &self.0 {
            Backing::Memory(c) => c.checkpoint_id(),
            Backing::Stored { checkpoint_id, .. } => *checkpoint_id,
        }
    }

    /// Bytes of state data (all subtasks).
    pub fn data_bytes(&self) -> u64 {
        match &self.0 {
            Backing::Memory(c) => c.subtasks().iter().map(|s| s.data().len() as u64).sum(),
            Backing::Stored { data_bytes, .. } => *data_bytes,
        }
    }

    /// The in-memory checkpoint, if this one is held in memory.
    pub fn in_memory(&self) -> Option<&Checkpoint> {
        match &self.0 {
            Backing::Memory(c) => Some(c),
            Backing::Stored { .. } => None,
        }
    }

    /// `memory` on the checkpoint held in memory, or `stored` on the
    /// operator in storage (opening its checkpoint's manifest); either gets
    /// `arg`.
    fn either<A, R>(
        &self,
        arg: A,
        memory: impl FnOnce(A, &Checkpoint) -> Result<R, StateError>,
        stored: impl FnOnce(A, &StoredOperator<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        match &self.0 {
            Backing::Memory(c) => memory(arg, c),
            Backing::Stored {
                storage,
                checkpoint_id,
                operator,
                ..
            } => stored(
                arg,
                StoredCheckpoint::open(&**storage, *checkpoint_id)?.operator(operator)?,
            ),
        }
    }

    /// The checkpoint in memory: borrowed if it is held in memory, else
    /// [`load`](Self::load)ed.
    fn as_checkpoint(&self) -> Result<std::borrow::Cow<'_, Checkpoint>, StateError> {
        match &self.0 {
            Backing::Memory(c) => Ok(std::borrow::Cow::Borrowed(c)),
            Backing::Stored { .. } => self.load().map(std::borrow::Cow::Owned),
        }
    }

    /// The whole checkpoint in memory (reading and checking every byte).
    pub fn load(&self) -> Result<Checkpoint, StateError> {
        self.either((), |(), c| Ok(c.clone()), |(), o| o.load())
    }
}

/// A runner's operator checkpoint restores through
/// [`Restore`](crate::checkpoint::Restore), from memory or storage.
impl Source for OperatorCheckpoint {
    fn with_source<R>(
        &self,
        f: impl FnOnce(crate::checkpoint::source::sealed::RestoreSource<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        self.either(f, |f, c| c.with_source(f), |f, o| o.with_source(f))
    }
}

impl crate::checkpoint::Restore for OperatorCheckpoint {}

/// One consistent checkpoint of a whole pipeline: every source instance and
/// every keyed instance snapshotted after the same prefix of the input.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobCheckpoint {
    /// The checkpoint id: increasing over the life of a job, across restarts.
    pub id: u64,
    /// The sources' operator state (one `(partition, offset)` item per
    /// partition), at the source parallelism of the run that took it.
    pub source: OperatorCheckpoint,
    /// The keyed operator's state, at the keyed parallelism of the run that
    /// took it.
    pub keyed: OperatorCheckpoint,
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
    /// use state_runtime::runner::JobCheckpoint;
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
            source: source.with_checkpoint_id(id).into(),
            keyed: keyed.with_checkpoint_id(id).into(),
            assigner,
            events,
        }
    }

    /// Bytes of state data in the checkpoint (sources and keyed operator).
    pub fn state_bytes(&self) -> u64 {
        self.source.data_bytes() + self.keyed.data_bytes()
    }
}

/// The two operators of the runner's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineOperator {
    /// The source instances (their `(partition, offset)` split state).
    Source,
    /// The keyed operator's instances.
    Keyed,
}

/// One instance's snapshot for a checkpoint, as the store took it
/// ([`JobCheckpointStore::snapshot`]).
#[derive(Debug, Clone)]
pub enum SubtaskState {
    /// Held in memory.
    InMemory(SubtaskSnapshot),
    /// Streamed into a data file of the checkpoint, durable, not yet
    /// committed.
    Written(SubtaskFile),
}

/// Where completed job checkpoints are kept.
///
/// For each checkpoint the runner calls [`begin`](Self::begin) on its
/// coordinator thread, [`snapshot`](Self::snapshot) on every instance's
/// thread once the instance reaches the checkpoint, and
/// [`complete`](Self::complete) on the coordinator thread once every
/// instance has. `complete` must make the checkpoint visible to
/// [`latest`](Self::latest) atomically (all of it or nothing). An error
/// fails the job. The defaults keep snapshots in memory and hand the whole
/// checkpoint to [`store`](Self::store); a durable store streams each
/// instance's state to storage instead (see [`DurableCheckpointStore`]).
pub trait JobCheckpointStore: Send + Sync {
    /// Keeps `checkpoint`; afterwards it is the latest one.
    fn store(&self, checkpoint: &JobCheckpoint) -> Result<(), StateError>;

    /// The most recently stored checkpoint, if any.
    fn latest(&self) -> Result<Option<JobCheckpoint>, StateError>;

    /// Prepares checkpoint `id`, before any instance snapshots for it. The
    /// default does nothing.
    fn begin(&self, id: u64) -> Result<(), StateError> {
        let _ = id;
        Ok(())
    }

    /// Takes the snapshot of `state` (an instance, or a snapshot it
    /// captured earlier), instance `subtask` of `operator`, for checkpoint
    /// `id`. The default takes it in memory. Called on the instance's
    /// thread, or for asynchronous snapshots on its snapshot writer's.
    fn snapshot(
        &self,
        id: u64,
        operator: PipelineOperator,
        subtask: usize,
        state: &dyn WriteSnapshot,
    ) -> Result<SubtaskState, StateError> {
        let _ = (id, operator, subtask);
        let mut writer = crate::checkpoint::SnapshotWriter::new();
        state.write_to(&mut writer)?;
        Ok(SubtaskState::InMemory(writer.finish()))
    }

    /// Gives up checkpoint `id`, begun and not completed (the job failed
    /// while taking it), best effort. The default does nothing. A killed
    /// job calls nothing, as a crash would not: the next `begin` of the same
    /// id, or retention, removes what an interrupted checkpoint left.
    fn abort(&self, id: u64) -> Result<(), StateError> {
        let _ = id;
        Ok(())
    }

    /// Whether keyed snapshots may be written as deltas of the previous
    /// ones ([`DurableCheckpointStore::incremental`]): keyed instances then
    /// capture their state with
    /// [`capture_tracking_changes`](crate::checkpoint::Checkpointed::capture_tracking_changes),
    /// recording which keys change between checkpoints. The default is
    /// false: nothing is recorded.
    fn writes_deltas(&self) -> bool {
        false
    }

    /// Completes checkpoint `id` from every instance's snapshot (in subtask
    /// order) and returns it. The default gathers in-memory snapshots into a
    /// [`JobCheckpoint`] and [`store`](Self::store)s it.
    fn complete(
        &self,
        id: u64,
        sources: Vec<SubtaskState>,
        keyed: Vec<SubtaskState>,
        assigner: KeyGroupAssigner,
        events: u64,
    ) -> Result<JobCheckpoint, StateError> {
        let in_memory = |states: Vec<SubtaskState>| -> Result<Checkpoint, StateError> {
            let snapshots = states
                .into_iter()
                .map(|s| match s {
                    SubtaskState::InMemory(snap) => Ok(snap),
                    SubtaskState::Written(file) => Err(StateError::InvalidOperators {
                        reason: format!(
                            "this store keeps checkpoints in memory, but the snapshot of subtask {} of `{}` was written to file {}",
                            file.subtask(),
                            file.operator(),
                            file.name()
                        ),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Checkpoint::from_subtasks(snapshots)
        };
        let checkpoint =
            JobCheckpoint::new(id, in_memory(sources)?, in_memory(keyed)?, assigner, events);
        self.store(&checkpoint)?;
        Ok(checkpoint)
    }
}

impl<S: JobCheckpointStore + ?Sized> JobCheckpointStore for Arc<S> {
    fn store(&self, checkpoint: &JobCheckpoint) -> Result<(), StateError> {
        (**self).store(checkpoint)
    }

    fn latest(&self) -> Result<Option<JobCheckpoint>, StateError> {
        (**self).latest()
    }

    fn begin(&self, id: u64) -> Result<(), StateError> {
        (**self).begin(id)
    }

    fn snapshot(
        &self,
        id: u64,
        operator: PipelineOperator,
        subtask: usize,
        state: &dyn WriteSnapshot,
    ) -> Result<SubtaskState, StateError> {
        (**self).snapshot(id, operator, subtask, state)
    }

    fn complete(
        &self,
        id: u64,
        sources: Vec<SubtaskState>,
        keyed: Vec<SubtaskState>,
        assigner: KeyGroupAssigner,
        events: u64,
    ) -> Result<JobCheckpoint, StateError> {
        (**self).complete(id, sources, keyed, assigner, events)
    }

    fn abort(&self, id: u64) -> Result<(), StateError> {
        (**self).abort(id)
    }

    fn writes_deltas(&self) -> bool {
        (**self).writes_deltas()
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
/// use state_runtime::runner::{JobCheckpoint, JobCheckpointStore, MemoryCheckpointStore};
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

/// The operators of a job checkpoint in storage.
const SOURCE_OPERATOR: &str = "source";
const KEYED_OPERATOR: &str = "keyed";
/// One subtask of broadcast state: the job's own fields.
const JOB_OPERATOR: &str = "job";

/// The job's own fields, kept as broadcast state of a one-subtask operator
/// `job` next to `source` and `keyed`.
#[derive(serde::Serialize, serde::Deserialize)]
struct JobFields {
    assigner: KeyGroupAssigner,
    events: u64,
}

/// A durable [`JobCheckpointStore`] on any [`CheckpointStorage`] (a local
/// directory, or object storage): each job checkpoint is written in the
/// checkpoint format (operators `source`, `keyed` and `job`), committed
/// atomically, and the last `retain` are kept. A restart restores lazily:
/// each instance opens the manifest and reads only the byte ranges it
/// receives.
///
/// ```
/// use std::sync::Arc;
/// use state_runtime::prelude::*;
/// use state_runtime::runner::{DurableCheckpointStore, JobCheckpoint, JobCheckpointStore};
/// use state_runtime::storage::LocalStorage;
///
/// # let dir = std::env::temp_dir().join(format!("durable-store-doc-{}", std::process::id()));
/// let store = DurableCheckpointStore::new(Arc::new(LocalStorage::open(&dir)?), 2);
/// let empty = || Checkpoint::from_subtasks(vec![SubtaskSnapshot::default()]);
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// for id in 1..=3 {
///     store.store(&JobCheckpoint::new(id, empty()?, empty()?, assigner, id * 10))?;
/// }
/// let latest = store.latest()?.unwrap();
/// assert_eq!((latest.id, latest.events, latest.assigner), (3, 30, assigner));
/// assert!(latest.keyed.in_memory().is_none()); // read lazily from storage
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), StateError>(())
/// ```
///
/// With [`incremental`](DurableCheckpointStore::incremental), a keyed
/// instance's checkpoint holds only what changed since its previous one
/// (see [`IncrementalPolicy`]).
#[derive(Clone)]
pub struct DurableCheckpointStore {
    storage: Arc<dyn CheckpointStorage>,
    retain: usize,
    incremental: Option<IncrementalPolicy>,
    /// Per keyed instance, the data file it wrote last: what its next
    /// delta builds on.
    chains: Arc<Mutex<HashMap<usize, SubtaskFile>>>,
}

impl std::fmt::Debug for DurableCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableCheckpointStore")
            .field("location", &self.storage.location())
            .field("retain", &self.retain)
            .field("incremental", &self.incremental)
            .finish()
    }
}

impl DurableCheckpointStore {
    /// A store writing to `storage`, keeping the last `retain` (at least 1)
    /// checkpoints.
    pub fn new(storage: Arc<dyn CheckpointStorage>, retain: usize) -> Self {
        Self {
            storage,
            retain: retain.max(1),
            incremental: None,
            chains: Arc::default(),
        }
    }

    /// Makes checkpoints incremental: each keyed instance whose snapshots
    /// are asynchronous (the default, see
    /// [`Job::asynchronous_snapshots`](crate::runner::Job::asynchronous_snapshots))
    /// writes the entries changed since its previous checkpoint, as a delta
    /// file on top of that checkpoint's files, until `policy` asks for a
    /// full one. The first checkpoint of a job, and the first after a
    /// restore or a rescale, is full. Retention keeps every file a retained
    /// checkpoint builds on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use state_runtime::checkpoint::durable::IncrementalPolicy;
    /// use state_runtime::runner::DurableCheckpointStore;
    /// use state_runtime::storage::LocalStorage;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = DurableCheckpointStore::new(Arc::new(LocalStorage::open(dir.path())?), 3)
    ///     .incremental(IncrementalPolicy::default());
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn incremental(mut self, policy: IncrementalPolicy) -> Self {
        self.incremental = Some(policy);
        self
    }

    /// The storage the checkpoints go to.
    pub fn storage(&self) -> &Arc<dyn CheckpointStorage> {
        &self.storage
    }
}

/// The operators of a job checkpoint in storage, in manifest order.
const OPERATORS: [&str; 3] = [SOURCE_OPERATOR, KEYED_OPERATOR, JOB_OPERATOR];

impl DurableCheckpointStore {
    fn operator_index(operator: PipelineOperator) -> usize {
        match operator {
            PipelineOperator::Source => 0,
            PipelineOperator::Keyed => 1,
        }
    }

    /// The data files of `operator`'s instances for checkpoint `id`: those
    /// they wrote, and the in-memory snapshots written now.
    fn files(
        &self,
        id: u64,
        operator: PipelineOperator,
        states: Vec<SubtaskState>,
    ) -> Result<Vec<SubtaskFile>, StateError> {
        let index = Self::operator_index(operator);
        let write = |subtask, snap: &SubtaskSnapshot| {
            write_subtask_snapshot(&*self.storage, id, index, OPERATORS[index], subtask, snap)
        };
        states
            .into_iter()
            .enumerate()
            .map(|(subtask, state)| match state {
                SubtaskState::Written(file) => Ok(file),
                SubtaskState::InMemory(snap) => write(subtask, &snap),
            })
            .collect()
    }

    /// Completes begun checkpoint `id`: the sources' and keyed instances'
    /// data files (which `files` writes or hands over), the job's own
    /// fields, then the manifest; then applies retention. Aborts the
    /// checkpoint on an error.
    fn commit(
        &self,
        id: u64,
        files: impl FnOnce() -> Result<(Vec<SubtaskFile>, Vec<SubtaskFile>), StateError>,
        assigner: KeyGroupAssigner,
        events: u64,
    ) -> Result<JobCheckpoint, StateError> {
        let storage = &*self.storage;
        let committed = (|| {
            let (sources, keyed) = files()?;
            let job = JobFieldsHolder(Some(JobFields { assigner, events }));
            let job = write_subtask(storage, id, 2, JOB_OPERATOR, 0, &job)?;
            commit_checkpoint(
                storage,
                id,
                &[
                    (SOURCE_OPERATOR, &sources),
                    (KEYED_OPERATOR, &keyed),
                    (JOB_OPERATOR, std::slice::from_ref(&job)),
                ],
            )?;
            let operator = |name: &str, files: &[SubtaskFile]| {
                OperatorCheckpoint(Backing::Stored {
                    storage: Arc::clone(&self.storage),
                    checkpoint_id: id,
                    operator: name.to_owned(),
                    parallelism: files.len(),
                    data_bytes: files.iter().map(SubtaskFile::payload_len).sum(),
                })
            };
            Ok(JobCheckpoint {
                id,
                source: operator(SOURCE_OPERATOR, &sources),
                keyed: operator(KEYED_OPERATOR, &keyed),
                assigner,
                events,
            })
        })();
        match committed {
            Ok(checkpoint) => {
                self.storage.retain_last(self.retain, &referenced_files)?;
                Ok(checkpoint)
            }
            Err(e) => {
                if let Err(abort) = self.storage.abort(id) {
                    tracing::warn!(id, error = %abort, "could not clean up a failed checkpoint");
                }
                Err(e)
            }
        }
    }
}

impl JobCheckpointStore for DurableCheckpointStore {
    /// Writes a checkpoint held in memory (its snapshots as they are).
    fn store(&self, checkpoint: &JobCheckpoint) -> Result<(), StateError> {
        let id = checkpoint.id;
        // Written as they are, without a copy.
        let (source, keyed) = (
            checkpoint.source.as_checkpoint()?,
            checkpoint.keyed.as_checkpoint()?,
        );
        let write = |operator: PipelineOperator, c: &Checkpoint| {
            let index = Self::operator_index(operator);
            c.subtasks()
                .iter()
                .enumerate()
                .map(|(subtask, snap)| {
                    write_subtask_snapshot(
                        &*self.storage,
                        id,
                        index,
                        OPERATORS[index],
                        subtask,
                        snap,
                    )
                })
                .collect::<Result<Vec<_>, StateError>>()
        };
        self.storage.begin(id)?;
        let files = || {
            Ok((
                write(PipelineOperator::Source, &source)?,
                write(PipelineOperator::Keyed, &keyed)?,
            ))
        };
        self.commit(id, files, checkpoint.assigner, checkpoint.events)
            .map(|_| ())
    }

    fn begin(&self, id: u64) -> Result<(), StateError> {
        self.storage.begin(id)
    }

    /// Deletes what the instances wrote for checkpoint `id`.
    fn abort(&self, id: u64) -> Result<(), StateError> {
        self.storage.abort(id)
    }

    fn writes_deltas(&self) -> bool {
        self.incremental.is_some()
    }

    /// Streams the instance's state into its data file: the snapshot never
    /// exists in memory as a whole.
    fn snapshot(
        &self,
        id: u64,
        operator: PipelineOperator,
        subtask: usize,
        state: &dyn WriteSnapshot,
    ) -> Result<SubtaskState, StateError> {
        let index = Self::operator_index(operator);
        if let (Some(policy), Some(captured), PipelineOperator::Keyed) =
            (&self.incremental, state.as_captured(), operator)
        {
            let lock = || self.chains.lock().unwrap_or_else(|e| e.into_inner());
            // Not held while writing: the instances write at once.
            let previous = lock().get(&subtask).cloned();
            let file = write_subtask_incremental(
                &*self.storage,
                id,
                index,
                OPERATORS[index],
                subtask,
                captured,
                previous.as_ref(),
                policy,
            )?;
            lock().insert(subtask, file.clone());
            return Ok(SubtaskState::Written(file));
        }
        write_subtask(&*self.storage, id, index, OPERATORS[index], subtask, state)
            .map(SubtaskState::Written)
    }

    fn complete(
        &self,
        id: u64,
        sources: Vec<SubtaskState>,
        keyed: Vec<SubtaskState>,
        assigner: KeyGroupAssigner,
        events: u64,
    ) -> Result<JobCheckpoint, StateError> {
        let files = || {
            Ok((
                self.files(id, PipelineOperator::Source, sources)?,
                self.files(id, PipelineOperator::Keyed, keyed)?,
            ))
        };
        self.commit(id, files, assigner, events)
    }

    fn latest(&self) -> Result<Option<JobCheckpoint>, StateError> {
        let Some(stored) = StoredCheckpoint::latest(&*self.storage)? else {
            return Ok(None);
        };
        let id = stored.checkpoint_id();
        let job = stored.operator(JOB_OPERATOR)?.load()?;
        let mut holder = JobFieldsHolder(None);
        job.restore_into(&mut holder, 0, 1)?;
        let fields = holder.0.ok_or_else(|| StateError::CorruptSnapshot {
            state: "fields".into(),
            subtask: 0,
            message: format!("checkpoint {id}: operator `{JOB_OPERATOR}` lacks its `fields` state"),
        })?;
        let operator = |name: &str| -> Result<OperatorCheckpoint, StateError> {
            let op = stored.operator(name)?;
            Ok(OperatorCheckpoint(Backing::Stored {
                storage: Arc::clone(&self.storage),
                checkpoint_id: id,
                operator: name.to_owned(),
                parallelism: op.parallelism(),
                data_bytes: op.subtasks().iter().map(|s| s.payload_len()).sum(),
            }))
        };
        Ok(Some(JobCheckpoint {
            id,
            source: operator(SOURCE_OPERATOR)?,
            keyed: operator(KEYED_OPERATOR)?,
            assigner: fields.assigner,
            events: fields.events,
        }))
    }
}

/// Restores the `job` operator's one broadcast state.
struct JobFieldsHolder(Option<JobFields>);

impl Checkpointed for JobFieldsHolder {
    fn state_descriptors() -> Vec<crate::operator::StateDescriptor> {
        vec![crate::operator::StateDescriptor::new(
            "fields",
            crate::operator::StateMode::Broadcast,
            std::any::type_name::<JobFields>(),
        )]
    }

    fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        if let Some(f) = &self.0 {
            w.broadcast("fields", f)?;
        }
        Ok(())
    }

    fn restore(
        &mut self,
        state: &mut crate::checkpoint::RestoredState<'_>,
    ) -> Result<(), StateError> {
        self.0 = state.broadcast("fields")?;
        Ok(())
    }
}
