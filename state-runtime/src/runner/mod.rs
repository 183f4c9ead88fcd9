//! A local job runner: the pipeline `source -> keyed operator -> sink`, with
//! the sources at parallelism `S` and the keyed operator at parallelism `N`,
//! every instance on its own thread, consistent checkpoints, and restarts at
//! any new `S` and `N`.
//!
//! * **Sources** ([`source::LogSource`]) read a partitioned [`log`]; each
//!   holds one `(partition, offset)` item per partition it reads as `split`
//!   operator state. A fresh job deals the partitions round-robin; a
//!   restored one splits the checkpointed items, so every partition is read
//!   by exactly one instance from its offset.
//! * **Routing**: a source sends each event to the keyed instance that owns
//!   its key group (`assigner.key_group(key)`, then the Flink range formula),
//!   in batches over bounded channels.
//! * **Keyed operator**: a [`KeyedProcessor`] (a [`Checkpointed`](crate::checkpoint::Checkpointed)
//!   type with `#[state(keyed)]` fields), built per instance by a factory,
//!   restored from the latest checkpoint (reading only its key groups) or
//!   bound to its key groups on a fresh start.
//! * **Checkpoints** are aligned (Chandy-Lamport with barriers, as Flink's
//!   exactly-once mode): the coordinator triggers checkpoint `k` every so
//!   many events or milliseconds; each source snapshots its offsets and
//!   sends barrier `k` on every channel; a keyed instance holds back a
//!   source's records after its barrier until it has barrier `k` from every
//!   source, then snapshots. So every snapshot of `k` covers the same prefix
//!   of the input. The coordinator hands checkpoint `k` to the
//!   [`JobCheckpointStore`] once every instance's snapshot has arrived.
//! * **Stop** ([`RunningJob::stop`]) ends with a final checkpoint (Flink's
//!   stop-with-savepoint); **kill** ([`RunningJob::kill`]) aborts at once. A
//!   [`Job::start`] restores from the store's latest checkpoint at the new
//!   parallelism: the keyed state is then exactly-once, whatever the
//!   rescales in between.
//! * **Failures**: a panic or an error in any instance stops the job with a
//!   [`JobError`] naming it (`keyed operator subtask 2 panicked: ...`); the
//!   other threads see their channels close and end, so nothing hangs.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use state_runtime::prelude::*;
//! use state_runtime::runner::log::LogWriter;
//! use state_runtime::runner::{Job, KeyedProcessor, MemoryCheckpointStore};
//!
//! #[derive(Serialize, Deserialize, Keyed)]
//! struct Purchase {
//!     #[key]
//!     customer: u32,
//!     cents: i64,
//! }
//!
//! #[derive(Checkpointed, Default)]
//! struct Totals {
//!     #[state(keyed)]
//!     sums: KeyedValue<u32, i64>,
//! }
//!
//! impl KeyedProcessor for Totals {
//!     type Event = Purchase;
//!     type Output = (u32, i64);
//!     fn process(&mut self, p: Purchase, out: &mut impl FnMut((u32, i64))) -> Result<(), StateError> {
//!         let sum = self.sums.get_or_insert_with(p.key(), || 0)?;
//!         *sum += p.cents;
//!         out((p.customer, *sum));
//!         Ok(())
//!     }
//! }
//!
//! let dir = std::env::temp_dir().join(format!("rs-runner-doc-{}", std::process::id()));
//! let mut log = LogWriter::<Purchase>::create(&dir, 3)?;
//! for i in 0..3000u32 {
//!     log.append(i % 3, &Purchase { customer: i % 10, cents: 5 })?;
//! }
//! log.finish()?;
//!
//! let store = MemoryCheckpointStore::new();
//! // First run: 2 sources, 2 keyed instances, killed at some point.
//! let job = Job::new(&dir, store.clone(), |_| Totals::default())
//!     .parallelism(2, 2)
//!     .checkpoint_every_events(500)
//!     .start()?;
//! while job.events_read() < 1000 && !job.is_finished() {
//!     std::thread::yield_now();
//! }
//! job.kill()?;
//!
//! // Restart from the latest checkpoint with 1 source and 3 keyed instances.
//! let done = Job::new(&dir, store, |_| Totals::default())
//!     .parallelism(1, 3)
//!     .start()?
//!     .wait()?;
//! let mut sums: Vec<(u32, i64)> = done
//!     .operators
//!     .iter()
//!     .flat_map(|op| op.sums.iter().map(|(k, v)| (*k, *v)))
//!     .collect();
//! sums.sort();
//! assert_eq!(sums, (0..10).map(|c| (c, 1500)).collect::<Vec<_>>());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod alignment;
mod channel;
mod coordinator;
mod error;
mod job;
mod keyed_task;
pub mod log;
mod processor;
mod report;
mod running;
mod snapshot_writer;
pub mod source;
mod source_task;
mod store;

pub use error::{Instance, JobError, TaskError};
pub use job::Job;
pub use processor::{InstanceInfo, KeyedProcessor};
pub use report::{
    CheckpointStats, JobEnd, JobOutcome, JobReport, KeyedInstanceStats, SourceInstanceStats,
};
pub use running::RunningJob;
pub use store::{
    DurableCheckpointStore, JobCheckpoint, JobCheckpointStore, MemoryCheckpointStore,
    OperatorCheckpoint, PipelineOperator, SubtaskState,
};
