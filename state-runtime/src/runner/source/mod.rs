//! The runner's sources: what a source instance does ([`Source`]), how a job
//! builds its instances ([`SourceFactory`]), and the file log's source
//! ([`LogSource`], built by [`LogInput`]). The Kafka source
//! (`state_runtime::kafka`, feature `kafka`) implements the same traits.
//!
//! A source instance reads some partitions and checkpoints where it is in
//! each as `split` operator state, so a restore at another parallelism deals
//! every partition to exactly one new instance, at its checkpointed offset.
//!
//! A source of your own implements [`Source`] (with its offsets as
//! `#[state(split)]`) and [`SourceFactory`], and runs with
//! [`Job::with_input`](super::Job::with_input):
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use state_runtime::prelude::*;
//! use state_runtime::runner::source::{PartitionOffset, Source, SourceFactory, SourceInstance};
//! use state_runtime::runner::{Job, KeyedProcessor, MemoryCheckpointStore, TaskError};
//!
//! #[derive(Keyed)]
//! struct Number {
//!     #[key]
//!     n: u64,
//! }
//!
//! /// Counts from `next` up to `end` (exclusive) in one partition.
//! #[derive(Checkpointed)]
//! struct Counter {
//!     #[state(split)]
//!     next: Vec<u64>,
//!     #[state(skip)]
//!     end: u64,
//! }
//!
//! impl Source for Counter {
//!     type Event = Number;
//!     fn poll(&mut self, max: usize, emit: &mut impl FnMut(Number)) -> Result<usize, TaskError> {
//!         let Some(next) = self.next.first_mut() else { return Ok(0) };
//!         let n = (self.end - *next).min(max as u64);
//!         (*next..*next + n).for_each(|n| emit(Number { n }));
//!         *next += n;
//!         Ok(n as usize)
//!     }
//!     fn is_exhausted(&self) -> bool {
//!         self.next.iter().all(|n| *n == self.end)
//!     }
//!     fn positions(&self) -> Vec<PartitionOffset> {
//!         self.next.iter().map(|n| PartitionOffset::new("counter", 0, *n)).collect()
//!     }
//! }
//!
//! struct Counting(u64);
//!
//! impl SourceFactory for Counting {
//!     type Source = Counter;
//!     fn create(&self, instance: &SourceInstance) -> Result<Counter, TaskError> {
//!         // One partition, read by instance 0 of a fresh job.
//!         let fresh = instance.fresh && instance.subtask == 0;
//!         Ok(Counter { next: if fresh { vec![0] } else { vec![] }, end: self.0 })
//!     }
//! }
//!
//! #[derive(Checkpointed, Default)]
//! struct Sum {
//!     #[state(keyed)]
//!     sums: KeyedValue<u64, u64>,
//! }
//!
//! impl KeyedProcessor for Sum {
//!     type Event = Number;
//!     type Output = ();
//!     fn process(&mut self, e: Number, _: &mut impl FnMut(())) -> Result<(), StateError> {
//!         *self.sums.get_or_insert_with(&e.n, || 0)? += e.n;
//!         Ok(())
//!     }
//! }
//!
//! let done = Job::with_input(Counting(100), MemoryCheckpointStore::new(), |_| Sum::default())
//!     .parallelism(2, 2)
//!     .start()?
//!     .wait()?;
//! let total: u64 = done.operators.iter().flat_map(|op| op.sums.iter().map(|(_, v)| *v)).sum();
//! assert_eq!(total, (0..100u64).sum::<u64>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod log;

use std::fmt;

pub use log::{LogInput, LogSource, OFFSETS_STATE};

use super::error::TaskError;
use crate::checkpoint::Checkpointed;
use crate::key::Keyed;

/// One source instance: reads its partitions and checkpoints its offsets.
///
/// The runner calls [`poll`](Source::poll) in a loop on the instance's
/// thread, and between two polls takes its snapshot for a checkpoint
/// ([`Checkpointed`]). Everything emitted before a snapshot is in the
/// checkpoint's prefix of the input; everything after it is not, so the
/// offsets in the snapshot must be those of the next records to read.
pub trait Source: Checkpointed + Send + 'static {
    /// The events it reads.
    type Event: Keyed + Send + 'static;

    /// Reads up to `max` events, handing each to `emit`, and returns how many
    /// it read. It may return 0 when nothing is available now; a source
    /// that waits for input should wait briefly (a few tens of milliseconds
    /// at most), since a checkpoint waits for the poll to return.
    fn poll(&mut self, max: usize, emit: &mut impl FnMut(Self::Event)) -> Result<usize, TaskError>;

    /// Whether the instance has read all it will ever read (a bounded input
    /// read to its end). An unbounded source is never exhausted.
    fn is_exhausted(&self) -> bool;

    /// Where the instance is in each partition it reads, for the job's
    /// report.
    fn positions(&self) -> Vec<PartitionOffset>;
}

/// Builds a job's source instances.
pub trait SourceFactory: Send + Sync + 'static {
    /// The instances it builds.
    type Source: Source;

    /// Checks the input once before the job starts anything (that the log
    /// exists, that the topics do). The default checks nothing.
    fn check(&self) -> Result<(), TaskError> {
        Ok(())
    }

    /// Builds instance `instance.subtask` of `instance.parallelism`. On a
    /// fresh start (`instance.fresh`) it is given its initial partitions; on
    /// a restore it is built without any, and the runner then restores its
    /// share of the checkpointed offsets into it.
    fn create(&self, instance: &SourceInstance) -> Result<Self::Source, TaskError>;
}

/// Which source instance a [`SourceFactory`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceInstance {
    /// The instance's index, in `0..parallelism`.
    pub subtask: usize,
    /// How many source instances the job runs.
    pub parallelism: usize,
    /// True on a fresh start, false when the instance will be restored from
    /// a checkpoint.
    pub fresh: bool,
}

impl SourceInstance {
    /// Instance `subtask` of `parallelism`, fresh or to be restored.
    ///
    /// ```
    /// use state_runtime::runner::source::SourceInstance;
    ///
    /// let i = SourceInstance::new(1, 3, true);
    /// assert_eq!((i.subtask, i.parallelism, i.fresh), (1, 3, true));
    /// ```
    pub fn new(subtask: usize, parallelism: usize, fresh: bool) -> Self {
        Self {
            subtask,
            parallelism,
            fresh,
        }
    }
}

/// Where a source instance is in one partition: the offset of the next
/// record it reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionOffset {
    /// The topic (for the file log, the name of the log's folder).
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset of the next record to read.
    pub offset: u64,
}

impl PartitionOffset {
    /// Partition `partition` of `topic` at `offset`.
    ///
    /// ```
    /// use state_runtime::runner::source::PartitionOffset;
    ///
    /// assert_eq!(PartitionOffset::new("orders", 2, 40).to_string(), "orders/2@40");
    /// ```
    pub fn new(topic: impl Into<String>, partition: u32, offset: u64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

impl fmt::Display for PartitionOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}
