//! A started job: progress, checkpoints on demand, stop, kill and wait.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use super::channel::{Command, CoordMsg, Shared};
use super::error::{Instance, JobError, panic_message};
use super::processor::KeyedProcessor;
use super::report::JobOutcome;

/// A started job. Dropping it without [`wait`](crate::runner::RunningJob::wait),
/// [`stop`](crate::runner::RunningJob::stop) or [`kill`](crate::runner::RunningJob::kill) kills it (its
/// threads end without a final checkpoint), so no thread outlives it.
pub struct RunningJob<P: KeyedProcessor> {
    pub(super) commands: Sender<CoordMsg>,
    /// `None` once waited for.
    pub(super) handle: Option<JoinHandle<Result<JobOutcome<P>, JobError>>>,
    pub(super) shared: Arc<Shared>,
    pub(super) events_at_start: u64,
    pub(super) _op: PhantomData<fn() -> P>,
}

impl<P: KeyedProcessor> std::fmt::Debug for RunningJob<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningJob")
            .field("events_read", &self.events_read())
            .field("events_processed", &self.events_processed())
            .finish_non_exhaustive()
    }
}

impl<P: KeyedProcessor> RunningJob<P> {
    /// Records the sources have read in this run.
    pub fn events_read(&self) -> u64 {
        self.shared.read.load(Ordering::Relaxed)
    }

    /// Events the keyed instances have processed in this run.
    pub fn events_processed(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    /// Input records consumed by the job over all runs when this run started
    /// (from the checkpoint it was restored from).
    pub fn events_at_start(&self) -> u64 {
        self.events_at_start
    }

    /// The id of the last checkpoint this run stored, if any.
    pub fn last_checkpoint(&self) -> Option<u64> {
        match self.shared.last_checkpoint.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// Source instances that are waiting right now to send to a keyed
    /// instance that holds [`Job::alignment_buffer`](crate::runner::Job::alignment_buffer) of their batches while
    /// it aligns a checkpoint's barriers: backpressure from a slow source.
    pub fn sources_waiting_on_alignment(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Whether every instance has ended (the job finished, failed, or was
    /// stopped or killed); [`wait`](crate::runner::RunningJob::wait) then returns at once.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Asks for a checkpoint now (besides the periodic ones).
    pub fn trigger_checkpoint(&self) {
        let _ = self.commands.send(CoordMsg::Command(Command::Checkpoint));
    }

    /// Waits until the job ends: at the end of the input (if it stops there),
    /// or on a failure.
    pub fn wait(mut self) -> Result<JobOutcome<P>, JobError> {
        let Some(handle) = self.handle.take() else {
            return Err(JobError::Ended("the job was already waited for".into()));
        };
        handle.join().unwrap_or_else(|p| {
            Err(JobError::Panicked {
                instance: Instance::Coordinator,
                message: panic_message(&*p),
            })
        })
    }

    /// Stops the job with a final checkpoint: every source snapshots its
    /// offsets and sends a last barrier; once the checkpoint is stored every
    /// instance ends.
    pub fn stop(self) -> Result<JobOutcome<P>, JobError> {
        let _ = self.commands.send(CoordMsg::Command(Command::Stop));
        self.wait()
    }

    /// Aborts the job at once, without a final checkpoint (a crash): a
    /// restart resumes from the last stored checkpoint. If the job had
    /// already ended (or was stopping), returns how it ended.
    pub fn kill(self) -> Result<JobOutcome<P>, JobError> {
        let _ = self.commands.send(CoordMsg::Command(Command::Kill));
        self.wait()
    }
}

impl<P: KeyedProcessor> Drop for RunningJob<P> {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.commands.send(CoordMsg::Command(Command::Kill));
        }
    }
}
