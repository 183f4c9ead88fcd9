//! A source instance's thread: read its partitions, route records by key
//! group, and on a checkpoint snapshot its offsets and send barriers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::time::Duration;

use super::channel::{Control, CoordMsg, Msg, Router, Shared};
use super::error::TaskError;
use super::report::SourceInstanceStats;
use super::source::{Source, SourceFactory, SourceInstance};
use super::store::{JobCheckpoint, JobCheckpointStore, PipelineOperator};
use crate::checkpoint::Restore;
use crate::key::Keyed;

/// Runs a job's source instances: [`SourceFactory`] with its source type
/// erased, so that a [`Job`](super::Job) names only its keyed operator.
pub(super) trait SourceRunner<E>: Send + Sync {
    fn check(&self) -> Result<(), TaskError>;
    fn run(&self, task: SourceTask<E>) -> Result<SourceInstanceStats, TaskError>;
}

impl<F: SourceFactory> SourceRunner<<F::Source as Source>::Event> for F {
    fn check(&self) -> Result<(), TaskError> {
        SourceFactory::check(self)
    }

    fn run(
        &self,
        task: SourceTask<<F::Source as Source>::Event>,
    ) -> Result<SourceInstanceStats, TaskError> {
        task.run(self)
    }
}

pub(super) struct SourceTask<E> {
    pub(super) subtask: usize,
    pub(super) parallelism: usize,
    pub(super) latest: Option<Arc<JobCheckpoint>>,
    pub(super) outputs: Vec<SyncSender<Msg<E>>>,
    pub(super) alignment_buffer: usize,
    pub(super) router: Arc<Router>,
    pub(super) control: Receiver<Control>,
    pub(super) coord: Sender<CoordMsg>,
    pub(super) store: Arc<dyn JobCheckpointStore>,
    pub(super) shared: Arc<Shared>,
    pub(super) batch_size: usize,
}

/// Why a source's loop ended early: the job is being torn down.
struct Disconnected;

impl<E: Keyed + Send + 'static> SourceTask<E> {
    fn run<F>(self, factory: &F) -> Result<SourceInstanceStats, TaskError>
    where
        F: SourceFactory + ?Sized,
        F::Source: Source<Event = E>,
    {
        let instance = SourceInstance::new(self.subtask, self.parallelism, self.latest.is_none());
        let mut source = factory.create(&instance)?;
        if let Some(cp) = &self.latest {
            cp.source
                .restore_into(&mut source, self.subtask, self.parallelism)?;
        }
        tracing::debug!(subtask = self.subtask, positions = ?source.positions(), "source started");
        let mut state = SourceState {
            batches: (0..self.outputs.len())
                .map(|_| Vec::with_capacity(self.batch_size))
                .collect(),
            polled: Vec::with_capacity(self.batch_size),
            targets: Vec::with_capacity(self.batch_size),
            read: 0,
            source,
        };
        // Ok(()) on a stop; Err(Disconnected) on a kill or another failure.
        let _ = self.main_loop(&mut state)?;
        Ok(SourceInstanceStats {
            subtask: self.subtask,
            offsets: state.source.positions(),
            events: state.read,
        })
    }

    fn main_loop<S: Source<Event = E>>(
        &self,
        st: &mut SourceState<S>,
    ) -> Result<Result<(), Disconnected>, TaskError> {
        let mut reported_end = false;
        loop {
            // Commands first, so a checkpoint is not delayed by a long read.
            loop {
                match self.control.try_recv() {
                    Ok(c) => {
                        if let Some(done) = self.command(st, c)? {
                            return Ok(done);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Ok(Err(Disconnected)),
                }
            }
            if self.shared.abort.load(Ordering::Relaxed) {
                return Ok(Err(Disconnected));
            }
            if st.source.is_exhausted() {
                if self.flush(st).is_err() {
                    return Ok(Err(Disconnected));
                }
                if !reported_end {
                    reported_end = true;
                    tracing::debug!(
                        subtask = self.subtask,
                        "source reached the end of its partitions"
                    );
                    let _ = self.coord.send(CoordMsg::SourceFinished);
                }
                match self.control.recv() {
                    Ok(c) => {
                        if let Some(done) = self.command(st, c)? {
                            return Ok(done);
                        }
                    }
                    Err(_) => return Ok(Err(Disconnected)),
                }
                continue;
            }
            let polled = &mut st.polled;
            let n = st.source.poll(self.batch_size, &mut |e| polled.push(e))?;
            st.read += n as u64;
            self.router.route_batch(&st.polled, &mut st.targets)?;
            for (e, &target) in st.polled.drain(..).zip(&st.targets) {
                let target = target as usize;
                let batch = &mut st.batches[target];
                batch.push(e);
                if batch.len() >= self.batch_size {
                    let full = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
                    if self.send_records(target, full).is_err() {
                        return Ok(Err(Disconnected));
                    }
                }
            }
            self.shared.read.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Handles a command; `Some` when the source is done.
    fn command<S: Source<Event = E>>(
        &self,
        st: &mut SourceState<S>,
        c: Control,
    ) -> Result<Option<Result<(), Disconnected>>, TaskError> {
        let (id, stop) = match c {
            Control::Checkpoint(id) => (id, false),
            Control::StopWithCheckpoint(id) => (id, true),
        };
        if self.flush(st).is_err() {
            return Ok(Some(Err(Disconnected)));
        }
        let snapshot =
            self.store
                .snapshot(id, PipelineOperator::Source, self.subtask, &st.source)?;
        let _ = self.coord.send(CoordMsg::SourceSnapshot {
            subtask: self.subtask,
            id,
            snapshot,
            read: st.read,
        });
        for out in &self.outputs {
            if out.send(Msg::Barrier(self.subtask, id)).is_err() {
                return Ok(Some(Err(Disconnected)));
            }
        }
        if stop {
            for out in &self.outputs {
                if out.send(Msg::End(self.subtask)).is_err() {
                    return Ok(Some(Err(Disconnected)));
                }
            }
            return Ok(Some(Ok(())));
        }
        Ok(None)
    }

    fn flush<S: Source<Event = E>>(&self, st: &mut SourceState<S>) -> Result<(), Disconnected> {
        for (target, batch) in st.batches.iter_mut().enumerate() {
            if !batch.is_empty() {
                let b = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
                self.send_records(target, b)?;
            }
        }
        Ok(())
    }

    /// Sends a batch to keyed instance `target`, first waiting while the
    /// instance holds back as many of this source's messages as the
    /// alignment buffer allows (it is aligning a checkpoint and this
    /// source's barrier has come). Barriers and ends never wait.
    fn send_records(&self, target: usize, batch: Vec<E>) -> Result<(), Disconnected> {
        let held = &self.shared.held[target][self.subtask];
        if held.load(Ordering::Acquire) >= self.alignment_buffer {
            self.shared.waiting.fetch_add(1, Ordering::Relaxed);
            let mut pause = Duration::from_micros(20);
            let waited = loop {
                if held.load(Ordering::Acquire) < self.alignment_buffer {
                    break Ok(());
                }
                // The barrier that would release the held batches may
                // never come (a kill, a failed instance).
                if self.shared.abort.load(Ordering::Relaxed) {
                    break Err(Disconnected);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            };
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
            waited?;
        }
        self.outputs[target]
            .send(Msg::Records(self.subtask, batch))
            .map_err(|_| Disconnected)
    }
}

struct SourceState<S: Source> {
    source: S,
    batches: Vec<Vec<S::Event>>,
    polled: Vec<S::Event>,
    /// The subtask each polled event goes to.
    targets: Vec<u32>,
    read: u64,
}
