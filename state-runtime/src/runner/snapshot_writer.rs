//! A keyed instance's snapshot writer: writes the snapshots the instance
//! captured into the checkpoint store on a thread of its own, while the
//! instance goes on processing (asynchronous snapshots).
//!
//! One snapshot is written at a time: handing over the next waits until the
//! writer is free, so at most two captured snapshots exist per instance
//! (the one being written and the one waiting). The writer reports each
//! written snapshot to the coordinator itself, and its first error to the
//! instance, which then fails.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::channel::CoordMsg;
use super::error::TaskError;
use super::store::{JobCheckpointStore, PipelineOperator};
use crate::checkpoint::CapturedSnapshot;

/// A captured snapshot to write.
struct Job {
    id: u64,
    captured: CapturedSnapshot,
    alignment: Duration,
    pause: Duration,
}

pub(super) struct SnapshotWriter {
    jobs: Option<SyncSender<Job>>,
    errors: Receiver<TaskError>,
    thread: Option<JoinHandle<()>>,
}

impl SnapshotWriter {
    /// Starts the writer of keyed instance `subtask`.
    pub(super) fn start(
        subtask: usize,
        store: Arc<dyn JobCheckpointStore>,
        coord: Sender<CoordMsg>,
    ) -> Result<Self, TaskError> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(0);
        let (error_tx, errors) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("rescale-keyed-{subtask}-snapshots"))
            .spawn(move || write_loop(subtask, &*store, &coord, &rx, &error_tx))
            .map_err(|e| {
                TaskError::State(crate::StateError::Encode {
                    state: "<snapshot>".into(),
                    message: format!("could not start the snapshot writer: {e}"),
                })
            })?;
        Ok(Self {
            jobs: Some(jobs),
            errors,
            thread: Some(thread),
        })
    }

    /// Hands a captured snapshot over, waiting while the previous one is
    /// being written.
    pub(super) fn write(
        &self,
        id: u64,
        captured: CapturedSnapshot,
        alignment: Duration,
        pause: Duration,
    ) -> Result<(), TaskError> {
        self.check()?;
        let job = Job {
            id,
            captured,
            alignment,
            pause,
        };
        if let Some(jobs) = &self.jobs {
            if jobs.send(job).is_err() {
                // The writer ended on an error: report it.
                return self.errors.recv().map_or(Ok(()), Err);
            }
        }
        Ok(())
    }

    /// The writer's error, if it has failed.
    pub(super) fn check(&self) -> Result<(), TaskError> {
        match self.errors.try_recv() {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Waits until every snapshot handed over is written and the writer
    /// has ended; its error, if any.
    pub(super) fn finish(mut self) -> Result<(), TaskError> {
        self.stop();
        self.check()
    }

    fn stop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SnapshotWriter {
    /// Ends the writer after the snapshots handed over, and waits for it: a
    /// snapshot is never left being written after its instance ended (a
    /// restart could otherwise see a file of the old run appear).
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(
    subtask: usize,
    store: &dyn JobCheckpointStore,
    coord: &Sender<CoordMsg>,
    jobs: &Receiver<Job>,
    errors: &Sender<TaskError>,
) {
    for job in jobs {
        let t = Instant::now();
        match store.snapshot(job.id, PipelineOperator::Keyed, subtask, &job.captured) {
            Ok(snapshot) => {
                let _ = coord.send(CoordMsg::KeyedSnapshot {
                    subtask,
                    id: job.id,
                    snapshot,
                    alignment: job.alignment,
                    snapshot_time: job.pause,
                    async_time: t.elapsed(),
                });
            }
            Err(e) => {
                let _ = errors.send(e.into());
                return;
            }
        }
    }
}
