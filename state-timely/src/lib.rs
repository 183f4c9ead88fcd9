//! Rescalable state on [timely-dataflow](https://github.com/TimelyDataflow/timely-dataflow):
//! a keyed operator with `#[derive(Checkpointed)]` state, fed from a
//! partitioned source (the runner's file log, Kafka, or any
//! `state_runtime::runner::source::SourceFactory`), checkpointed at epoch
//! boundaries into storage that all
//! processes share, and restartable at any number of processes and worker
//! threads; each worker then reads only its own key groups.
//!
//! - **Routing**: records go to the worker owning their key group
//!   ([`KeyGroupRouter`]): worker `w` of `W` owns `range_for_subtask(W, w)`.
//! - **Epochs** (the `u64` timestamps) are checkpoint boundaries:
//!   checkpoint `b` holds every record of times `< b`. Each worker reads a
//!   batch of its partitions per epoch; its keyed operator snapshots when
//!   its input frontier passes the boundary, holding back records of later
//!   epochs that arrive early.
//! - **Sources** keep their `(partition, offset)` positions as `split`
//!   state; a worker without partitions still advances the epochs.
//! - **Commit** in two phases through the storage: every worker writes and
//!   syncs its own data files (named with the run id), and sends a
//!   description of each to worker 0; once progress tracking shows all of
//!   them arrived, worker 0 writes the manifest, create-only. A process of
//!   an earlier run cannot commit: its checkpoint ids are taken or older
//!   than the newest ([`TimelyError::Fenced`]).
//! - **Restart** at any `W'`: worker 0 cleans up leftovers and names the
//!   newest checkpoint; every worker restores its key groups and its share
//!   of the source offsets, and the epochs continue from there.
//!
//! ```
//! use std::sync::Arc;
//! use serde::{Deserialize, Serialize};
//! use state_runtime::prelude::*;
//! use state_runtime::runner::KeyedProcessor;
//! use state_runtime::runner::log::LogWriter;
//! use state_runtime::storage::LocalStorage;
//! use state_timely::TimelyJob;
//!
//! #[derive(Clone, Serialize, Deserialize, Keyed)]
//! struct Purchase { #[key] customer: u32, cents: i64 }
//!
//! #[derive(Checkpointed, Default)]
//! struct Totals { #[state(keyed)] sums: KeyedValue<u32, i64> }
//!
//! impl KeyedProcessor for Totals {
//!     type Event = Purchase;
//!     type Output = ();
//!     fn process(&mut self, p: Purchase, _out: &mut impl FnMut(())) -> Result<(), StateError> {
//!         *self.sums.get_or_insert_with(p.key(), || 0)? += p.cents;
//!         Ok(())
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let mut log = LogWriter::<Purchase>::create(&dir.path().join("log"), 3)?;
//! for i in 0..3000u32 {
//!     log.append(i % 3, &Purchase { customer: i % 10, cents: 1 })?;
//! }
//! log.finish()?;
//! let storage = Arc::new(LocalStorage::open(dir.path().join("checkpoints"))?);
//!
//! // Two worker threads, stopped after 2 epochs of 500 records per worker.
//! let job = TimelyJob::new(dir.path().join("log"), storage.clone(), "run-1")
//!     .operator_name("totals")
//!     .records_per_epoch(500)
//!     .stop_after_epochs(2);
//! let reports = job.execute(timely::Config::process(2), |_| Totals::default(), |_| Box::new(|_| {}))?;
//! assert_eq!(reports.iter().map(|r| r.events).sum::<u64>(), 2000);
//!
//! // Restart with three workers, to the end of the log.
//! let job = TimelyJob::new(dir.path().join("log"), storage.clone(), "run-2").operator_name("totals");
//! let reports = job.execute(timely::Config::process(3), |_| Totals::default(), |_| Box::new(|_| {}))?;
//! assert_eq!(reports.iter().map(|r| r.events).sum::<u64>(), 1000);
//! assert!(reports.iter().all(|r| r.restored_from == Some(2)));
//!
//! // The last checkpoint holds every purchase once.
//! let stored = state_runtime::checkpoint::durable::StoredCheckpoint::latest(&*storage)?.unwrap();
//! let mut all = Totals::default();
//! stored.operator("totals")?.restore_into(&mut all, 0, 1)?;
//! assert_eq!(all.sums.iter().map(|(_, v)| *v).sum::<i64>(), 3000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it does not do: timely cannot add or remove workers of a running
//! job (TimelyDataflow/timely-dataflow#529), so a rescale is a restart from
//! the last checkpoint; timely is fail-stop, so a lost process ends the run
//! and the job restarts from its last checkpoint. See `docs/timely.md`.

/// The timely guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/timely.md")]
mod timely_guide_doctests {}

mod cluster;
mod commit;
mod error;
mod fault;
mod job;
mod keyed;
mod routing;
mod shared;
mod source;
mod startup;

pub use cluster::{cluster_config, free_local_addresses};
pub use error::TimelyError;
pub use fault::{Fault, FaultAction, FaultPoint};
pub use job::{TimelyJob, WorkerInfo, WorkerReport};
pub use routing::KeyGroupRouter;
pub use source::SOURCE_OPERATOR;
