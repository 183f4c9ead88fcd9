//! The coordinator's thread: trigger checkpoints, gather every instance's
//! snapshot, complete them through the store, stop and kill.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::channel::{Command, Control, CoordMsg, Shared};
use super::error::{Instance, JobError, TaskError};
use super::report::{CheckpointStats, JobEnd};
use super::store::{JobCheckpointStore, SubtaskState};
use crate::keygroup::KeyGroupAssigner;

/// Snapshots of one checkpoint, as they come in.
pub(super) struct Pending {
    pub(super) started: Instant,
    pub(super) sources: Vec<Option<SubtaskState>>,
    pub(super) keyed: Vec<Option<SubtaskState>>,
    pub(super) read: u64,
    pub(super) max_alignment: Duration,
    pub(super) max_snapshot: Duration,
    pub(super) max_async: Duration,
}

pub(super) struct Coordinator {
    pub(super) rx: Receiver<CoordMsg>,
    pub(super) controls: Vec<Sender<Control>>,
    pub(super) store: Arc<dyn JobCheckpointStore>,
    pub(super) shared: Arc<Shared>,
    pub(super) assigner: KeyGroupAssigner,
    pub(super) sources: usize,
    pub(super) keyed: usize,
    pub(super) next_id: u64,
    pub(super) events_at_start: u64,
    pub(super) every_events: Option<u64>,
    pub(super) interval: Option<Duration>,
    pub(super) stop_at_end: bool,
    pub(super) pending: BTreeMap<u64, Pending>,
    pub(super) checkpoints: Vec<CheckpointStats>,
    pub(super) finished_sources: usize,
    pub(super) live: usize,
    pub(super) stopping: Option<(u64, JobEnd)>,
    pub(super) aborting: bool,
    pub(super) failure: Option<JobError>,
    pub(super) killed: bool,
    /// Checkpoints given up whose files could not all be deleted (a writer
    /// of another instance may have been adding one): deleted again once
    /// every instance has ended.
    pub(super) abort_again: Vec<u64>,
}

impl Coordinator {
    pub(super) fn run(mut self) -> Result<(JobEnd, Vec<CheckpointStats>), JobError> {
        let mut last_trigger_events = 0u64;
        let mut last_trigger_time = Instant::now();
        while self.live > 0 {
            // Poll often enough to trigger close to every `every_events`
            // records and on time.
            let mut wait = Duration::from_millis(if self.every_events.is_some() { 2 } else { 20 });
            if let Some(i) = self.interval {
                wait = wait.min(i.saturating_sub(last_trigger_time.elapsed()));
            }
            match self.rx.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.aborting || self.stopping.is_some() || !self.pending.is_empty() {
                continue;
            }
            let read = self.shared.read.load(Ordering::Relaxed);
            let due_events = self
                .every_events
                .is_some_and(|every| read >= last_trigger_events + every);
            let due_time = self
                .interval
                .is_some_and(|i| last_trigger_time.elapsed() >= i);
            if due_events || due_time {
                last_trigger_events = read;
                last_trigger_time = Instant::now();
                self.trigger(false);
            }
        }
        // Every instance and its snapshot writer has ended: nothing adds a
        // file any more.
        for id in std::mem::take(&mut self.abort_again) {
            if let Err(e) = self.store.abort(id) {
                tracing::warn!(id, error = %e, "could not give up a begun checkpoint");
            }
        }
        if let Some(e) = self.failure {
            return Err(e);
        }
        if self.killed {
            return Ok((JobEnd::Killed, self.checkpoints));
        }
        match self.stopping {
            Some((id, end)) if self.checkpoints.last().is_some_and(|c| c.id == id) => {
                Ok((end, self.checkpoints))
            }
            _ => Err(JobError::Ended(
                "every instance ended without a final checkpoint".into(),
            )),
        }
    }

    pub(super) fn handle(&mut self, msg: CoordMsg) {
        match msg {
            CoordMsg::Command(Command::Checkpoint) => {
                if !self.aborting && self.stopping.is_none() {
                    self.trigger(false);
                }
            }
            CoordMsg::Command(Command::Stop) => self.stop(JobEnd::Stopped),
            CoordMsg::Command(Command::Kill) => {
                if !self.aborting && self.stopping.is_none() {
                    tracing::info!("killing the job");
                    self.killed = true;
                    self.abort();
                }
            }
            CoordMsg::SourceFinished => {
                self.finished_sources += 1;
                if self.finished_sources == self.sources && self.stop_at_end {
                    self.stop(JobEnd::Finished);
                }
            }
            CoordMsg::SourceSnapshot {
                subtask,
                id,
                snapshot,
                read,
            } => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.sources[subtask] = Some(snapshot);
                    p.read += read;
                    self.try_complete(id);
                }
            }
            CoordMsg::KeyedSnapshot {
                subtask,
                id,
                snapshot,
                alignment,
                snapshot_time,
                async_time,
            } => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.keyed[subtask] = Some(snapshot);
                    p.max_alignment = p.max_alignment.max(alignment);
                    p.max_snapshot = p.max_snapshot.max(snapshot_time);
                    p.max_async = p.max_async.max(async_time);
                    self.try_complete(id);
                }
            }
            CoordMsg::Exited(result) => {
                self.live -= 1;
                if let Err(e) = result {
                    if self.failure.is_none() {
                        self.failure = Some(e);
                    }
                    self.abort();
                }
            }
        }
    }

    pub(super) fn trigger(&mut self, stop: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        tracing::debug!(id, stop, "triggering checkpoint");
        // The store prepares for the instances' snapshots before any is
        // asked for.
        if let Err(source) = self.store.begin(id) {
            self.fail(source);
            return id;
        }
        self.pending.insert(
            id,
            Pending {
                started: Instant::now(),
                sources: vec![None; self.sources],
                keyed: vec![None; self.keyed],
                read: 0,
                max_alignment: Duration::ZERO,
                max_snapshot: Duration::ZERO,
                max_async: Duration::ZERO,
            },
        );
        for c in &self.controls {
            let _ = c.send(if stop {
                Control::StopWithCheckpoint(id)
            } else {
                Control::Checkpoint(id)
            });
        }
        id
    }

    pub(super) fn stop(&mut self, end: JobEnd) {
        if self.aborting || self.stopping.is_some() {
            return;
        }
        let id = self.trigger(true);
        tracing::info!(id, ?end, "stopping the job with a final checkpoint");
        self.stopping = Some((id, end));
    }

    /// Tears the job down: no checkpoint completes after this. A failing
    /// job gives up the checkpoints it had begun (a killed one leaves them,
    /// as a crash would).
    pub(super) fn abort(&mut self) {
        self.aborting = true;
        self.shared.abort.store(true, Ordering::SeqCst);
        for id in std::mem::take(&mut self.pending).into_keys() {
            if self.killed {
                continue;
            }
            if let Err(e) = self.store.abort(id) {
                tracing::debug!(id, error = %e, "a begun checkpoint is deleted again at the end");
                self.abort_again.push(id);
            }
        }
        // Sources waiting for a command see their channel close.
        self.controls.clear();
    }

    pub(super) fn try_complete(&mut self, id: u64) {
        let complete = self.pending.get(&id).is_some_and(|p| {
            p.sources.iter().all(Option::is_some) && p.keyed.iter().all(Option::is_some)
        });
        if !complete || self.aborting {
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let stored = self.store.complete(
            id,
            p.sources.into_iter().flatten().collect(),
            p.keyed.into_iter().flatten().collect(),
            self.assigner,
            self.events_at_start + p.read,
        );
        match stored {
            Ok(cp) => {
                let stats = CheckpointStats {
                    id,
                    events: cp.events,
                    duration: p.started.elapsed(),
                    max_alignment: p.max_alignment,
                    max_snapshot: p.max_snapshot,
                    max_async: p.max_async,
                    bytes: cp.state_bytes(),
                };
                tracing::debug!(?stats, "checkpoint stored");
                self.shared.last_checkpoint.store(id, Ordering::Relaxed);
                self.checkpoints.push(stats);
            }
            Err(source) => self.fail(source),
        }
    }

    /// Fails the job with an error of the coordinator's own.
    pub(super) fn fail(&mut self, source: impl Into<TaskError>) {
        if self.failure.is_none() {
            self.failure = Some(JobError::Failed {
                instance: Instance::Coordinator,
                source: source.into(),
            });
        }
        self.abort();
    }
}
