//! The file log's source: reads some partitions of a [log](crate::runner::log)
//! and checkpoints one `(partition, offset)` item per partition as `split`
//! operator state, like a Kafka source.
//!
//! On a fresh start the partitions are dealt round-robin over the source
//! instances ([`LogSource::initial_partitions`]); on a restore the items of
//! all old instances are split over the new ones, so every partition is read
//! by exactly one instance, from its checkpointed offset.
//!
//! ```
//! use state_runtime::prelude::*;
//! use state_runtime::runner::log::LogWriter;
//! use state_runtime::runner::source::LogSource;
//!
//! let dir = std::env::temp_dir().join(format!("rs-source-doc-{}", std::process::id()));
//! let mut w = LogWriter::<u64>::create(&dir, 3)?;
//! for i in 0..30u64 {
//!     w.append((i % 3) as u32, &i)?;
//! }
//! w.finish()?;
//!
//! // Two instances: partitions {0, 2} and {1}.
//! let mut a = LogSource::<u64>::new(&dir, LogSource::<u64>::initial_partitions(3, 2, 0));
//! let mut b = LogSource::<u64>::new(&dir, LogSource::<u64>::initial_partitions(3, 2, 1));
//! let mut seen = Vec::new();
//! a.poll(5, |r| seen.push(r))?;
//! b.poll(5, |r| seen.push(r))?;
//! assert_eq!(seen.len(), 10);
//!
//! // Checkpoint, restore at parallelism 1: the one instance reads the rest.
//! let cp = Checkpoint::from_subtasks(vec![a.snapshot()?, b.snapshot()?])?;
//! let mut c = LogSource::<u64>::new(&dir, vec![]);
//! cp.restore_into(&mut c, 0, 1)?;
//! while c.poll(100, |r| seen.push(r))? > 0 {}
//! assert!(c.is_exhausted());
//! seen.sort();
//! assert_eq!(seen, (0..30).collect::<Vec<_>>()); // none twice, none skipped
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{PartitionOffset, Source, SourceFactory, SourceInstance};
use crate::checkpoint::Checkpointed;
use crate::checkpoint::{RestoredState, SnapshotWriter};
use crate::error::StateError;
use crate::key::Keyed;
use crate::operator::{StateDescriptor, StateMode};
use crate::runner::TaskError;
use crate::runner::log::{FIRST_OFFSET, LogError, LogReader, partition_count};

/// The name of the source's `split` state.
pub const OFFSETS_STATE: &str = "partition-offsets";

/// Reads a set of partitions of a log, and checkpoints where it is in each.
///
/// Its [`Checkpointed`] implementation is what
/// `#[derive(Checkpointed)]` gives for a field
/// `#[state(split, name = "partition-offsets")] offsets: Vec<(u32, u64)>`
/// (every other field is not state).
pub struct LogSource<E> {
    dir: PathBuf,
    /// `(partition, offset of the next record)`, one item per partition.
    offsets: Vec<(u32, u64)>,
    /// One reader per item of `offsets`, opened on first use.
    readers: Vec<Option<LogReader<E>>>,
    /// Per item of `offsets`: the end of the partition was reached.
    exhausted: Vec<bool>,
    /// The item `poll` reads from next.
    cursor: usize,
}

impl<E> std::fmt::Debug for LogSource<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource")
            .field("dir", &self.dir)
            .field("offsets", &self.offsets)
            .finish_non_exhaustive()
    }
}

impl<E: DeserializeOwned> LogSource<E> {
    /// A source reading the log in `dir` from the given `(partition,
    /// offset)` pairs (offset `0` or [`FIRST_OFFSET`] for the beginning).
    pub fn new(dir: &Path, offsets: Vec<(u32, u64)>) -> Self {
        let n = offsets.len();
        Self {
            dir: dir.to_path_buf(),
            offsets: offsets
                .into_iter()
                .map(|(p, o)| (p, o.max(FIRST_OFFSET)))
                .collect(),
            readers: (0..n).map(|_| None).collect(),
            exhausted: vec![false; n],
            cursor: 0,
        }
    }

    /// The initial assignment of instance `subtask` of `parallelism`: the
    /// partitions `p` with `p % parallelism == subtask`, from the beginning.
    /// With more instances than partitions some instances get none.
    ///
    /// ```
    /// use state_runtime::runner::source::LogSource;
    ///
    /// assert_eq!(LogSource::<u8>::initial_partitions(5, 2, 1), [(1, 8), (3, 8)]);
    /// assert!(LogSource::<u8>::initial_partitions(2, 3, 2).is_empty());
    /// ```
    pub fn initial_partitions(
        partitions: u32,
        parallelism: usize,
        subtask: usize,
    ) -> Vec<(u32, u64)> {
        (0..partitions)
            .filter(|p| *p as usize % parallelism.max(1) == subtask)
            .map(|p| (p, FIRST_OFFSET))
            .collect()
    }

    /// The `(partition, offset of the next record)` pairs this instance reads.
    pub fn offsets(&self) -> &[(u32, u64)] {
        &self.offsets
    }

    /// Whether every partition of this instance has been read to its end
    /// (true for an instance without partitions).
    pub fn is_exhausted(&self) -> bool {
        self.exhausted.iter().all(|e| *e)
    }

    /// Reads up to `max` records, round-robin over the partitions in runs of
    /// up to 64 records, handing each to `emit`; returns how many were read
    /// (0 once exhausted). The offsets advance past each emitted record.
    pub fn poll(&mut self, max: usize, mut emit: impl FnMut(E)) -> Result<usize, LogError> {
        self.read(max, &mut emit)
    }

    fn read(&mut self, max: usize, emit: &mut impl FnMut(E)) -> Result<usize, LogError> {
        const RUN: usize = 64;
        let n = self.offsets.len();
        let mut read = 0;
        let mut idle_turns = 0;
        while read < max && idle_turns < n {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            if self.exhausted[i] {
                idle_turns += 1;
                continue;
            }
            let (partition, offset) = self.offsets[i];
            let reader = match &mut self.readers[i] {
                Some(r) => r,
                slot => slot.insert(LogReader::open(&self.dir, partition, offset)?),
            };
            let mut run = 0;
            while run < RUN && read < max {
                match reader.next_record()? {
                    Some((_, record)) => {
                        emit(record);
                        run += 1;
                        read += 1;
                    }
                    None => {
                        self.exhausted[i] = true;
                        break;
                    }
                }
            }
            self.offsets[i].1 = reader.offset();
            idle_turns = if run == 0 { idle_turns + 1 } else { 0 };
        }
        Ok(read)
    }
}

impl<E: DeserializeOwned> Checkpointed for LogSource<E> {
    fn state_descriptors() -> Vec<StateDescriptor> {
        vec![StateDescriptor::new(
            OFFSETS_STATE,
            StateMode::Split,
            std::any::type_name::<(u32, u64)>(),
        )]
    }

    fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        w.split(OFFSETS_STATE, &self.offsets)?;
        Ok(())
    }

    fn restore(&mut self, state: &mut RestoredState<'_>) -> Result<(), StateError> {
        let offsets: Vec<(u32, u64)> = state.list(OFFSETS_STATE)?;
        *self = LogSource::new(&self.dir, offsets);
        Ok(())
    }
}

impl<E: Keyed + DeserializeOwned + Send + 'static> Source for LogSource<E> {
    type Event = E;

    fn poll(&mut self, max: usize, emit: &mut impl FnMut(E)) -> Result<usize, TaskError> {
        Ok(self.read(max, emit)?)
    }

    fn is_exhausted(&self) -> bool {
        LogSource::is_exhausted(self)
    }

    fn positions(&self) -> Vec<PartitionOffset> {
        let topic = self
            .dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        self.offsets
            .iter()
            .map(|&(partition, offset)| PartitionOffset::new(topic.clone(), partition, offset))
            .collect()
    }
}

/// Builds [`LogSource`]s over the log in one folder: on a fresh start
/// instance `i` of `n` reads the partitions `p` with `p % n == i`
/// ([`LogSource::initial_partitions`]). [`Job::new`](crate::runner::Job::new)
/// reads a log through it.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use state_runtime::Keyed;
/// use state_runtime::runner::log::LogWriter;
/// use state_runtime::runner::source::{LogInput, SourceFactory, SourceInstance};
///
/// #[derive(Serialize, Deserialize, Keyed)]
/// struct Reading {
///     #[key]
///     sensor: u32,
///     celsius: f32,
/// }
///
/// let dir = tempfile::tempdir()?;
/// LogWriter::<Reading>::create(dir.path(), 3)?.finish()?;
/// let input = LogInput::<Reading>::new(dir.path());
/// input.check()?; // the log exists
/// let second = input.create(&SourceInstance::new(1, 2, true))?;
/// assert_eq!(second.offsets(), [(1, 8)]);
/// assert!(input.create(&SourceInstance::new(1, 2, false))?.offsets().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LogInput<E> {
    dir: PathBuf,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for LogInput<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogInput").field("dir", &self.dir).finish()
    }
}

impl<E> LogInput<E> {
    /// The log in `dir`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            _event: std::marker::PhantomData,
        }
    }

    /// The log's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl<E: Keyed + DeserializeOwned + Send + 'static> SourceFactory for LogInput<E> {
    type Source = LogSource<E>;

    fn check(&self) -> Result<(), TaskError> {
        partition_count(&self.dir)?;
        Ok(())
    }

    fn create(&self, instance: &SourceInstance) -> Result<LogSource<E>, TaskError> {
        let offsets = if instance.fresh {
            let partitions = partition_count(&self.dir)?;
            LogSource::<E>::initial_partitions(partitions, instance.parallelism, instance.subtask)
        } else {
            Vec::new()
        };
        Ok(LogSource::new(&self.dir, offsets))
    }
}
