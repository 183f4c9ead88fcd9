//! A keyed instance's thread: restore or bind, process records, and align
//! barriers from every source before each snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use super::alignment::{Alignment, BarrierStep, Misaligned};
use super::channel::{CoordMsg, Msg, Shared};
use super::error::TaskError;
use super::job::Factory;
use super::processor::{InstanceInfo, KeyedProcessor};
use super::report::KeyedInstanceStats;
use super::snapshot_writer::SnapshotWriter;
use super::store::{JobCheckpoint, JobCheckpointStore, PipelineOperator};
use crate::checkpoint::{Restore, RestoreOptions};

pub(super) struct KeyedTask<P: KeyedProcessor> {
    pub(super) info: InstanceInfo,
    pub(super) factory: Factory<P>,
    pub(super) latest: Option<Arc<JobCheckpoint>>,
    pub(super) rx: Receiver<Msg<P::Event>>,
    pub(super) out: Option<SyncSender<Vec<P::Output>>>,
    pub(super) coord: Sender<CoordMsg>,
    pub(super) store: Arc<dyn JobCheckpointStore>,
    pub(super) shared: Arc<Shared>,
    pub(super) sources: usize,
    /// The job's assigner, and whether unknown states may be dropped.
    pub(super) restore_options: RestoreOptions,
    pub(super) measure_restored_state: bool,
    /// Snapshots are captured and written by a writer thread.
    pub(super) asynchronous: bool,
}

/// Within a batch of records, outputs held this long go to the sink before
/// the batch ends (checked every [`FLUSH_CHECK_EVERY`] records, and after
/// every record once the batch has been slow: the first writes after a
/// capture may each take milliseconds).
const FLUSH_AFTER: Duration = Duration::from_millis(1);
const FLUSH_CHECK_EVERY: usize = 16;

/// A keyed instance's result: the operator after a stop, and its stats.
pub(super) struct KeyedExit<P> {
    pub(super) op: Option<P>,
    pub(super) stats: KeyedInstanceStats,
}

/// What handling one message led to.
#[derive(PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Aligned,
    Ended,
    Disconnected,
}

impl<P: KeyedProcessor> KeyedTask<P> {
    pub(super) fn run(self) -> Result<KeyedExit<P>, TaskError> {
        let info = self.info;
        let mut op = (self.factory)(&info);
        let t = Instant::now();
        let restore = match &self.latest {
            Some(cp) => {
                // The job's assigner (the checkpoint's, or a new max
                // parallelism in native mode), checked by `Job::start`.
                Some(cp.keyed.restore_into_with(
                    &mut op,
                    info.subtask,
                    info.parallelism,
                    &self.restore_options,
                )?)
            }
            None => {
                op.bind_keyed(info.assigner, info.key_groups)?;
                None
            }
        };
        let restore_time = t.elapsed();
        // What the instance holds now, encoded as a checkpoint would: the
        // denominator of the read amplification (only when asked for).
        let state_bytes = match restore {
            Some(_) if self.measure_restored_state => Some(op.snapshot()?.data().len() as u64),
            _ => None,
        };
        let mut stats = KeyedInstanceStats {
            subtask: info.subtask,
            key_groups: info.key_groups,
            restore,
            restore_time,
            state_bytes,
            events: 0,
            busy: Duration::ZERO,
            max_held: 0,
        };
        tracing::debug!(subtask = info.subtask, key_groups = %info.key_groups, "keyed instance started");
        let writer = match self.asynchronous {
            true => Some(SnapshotWriter::start(
                info.subtask,
                Arc::clone(&self.store),
                self.coord.clone(),
            )?),
            false => None,
        };
        let ended = self.process(&mut op, &mut stats, writer.as_ref());
        // Every snapshot handed to the writer is written (and reported)
        // before the instance ends.
        let written = writer.map_or(Ok(()), SnapshotWriter::finish);
        match ended? {
            Flow::Ended => {
                written?;
                Ok(KeyedExit {
                    op: Some(op),
                    stats,
                })
            }
            _ => Ok(KeyedExit { op: None, stats }),
        }
    }

    /// Processes messages until the input ends (`Flow::Ended`) or the job
    /// is torn down (`Flow::Disconnected`).
    fn process(
        &self,
        op: &mut P,
        stats: &mut KeyedInstanceStats,
        writer: Option<&SnapshotWriter>,
    ) -> Result<Flow, TaskError> {
        let mut align = Alignment::new(self.sources);
        let mut outputs = Vec::new();
        loop {
            let msg = match self.rx.recv() {
                Ok(m) if !self.shared.abort.load(Ordering::Relaxed) => m,
                // Every source is gone without ending, or the job is being
                // torn down: a kill or a failure. Queued records are dropped.
                _ => return Ok(Flow::Disconnected),
            };
            if let Some(w) = writer {
                w.check()?;
            }
            let from = msg.from();
            // Only records count against the bound: barriers and ends never
            // wait, and a source sends few of them.
            let records = matches!(msg, Msg::Records(..));
            let Some(msg) = align.offer(msg) else {
                if records {
                    let held = &self.shared.held[self.info.subtask][from];
                    let now = held.fetch_add(1, Ordering::AcqRel) + 1;
                    stats.max_held = stats.max_held.max(now);
                }
                continue;
            };
            let mut flow = self.apply(op, &mut align, stats, &mut outputs, writer, msg)?;
            // A completed alignment releases the held messages, which may
            // block their source again, complete the next alignment, and so
            // on.
            if flow == Flow::Aligned {
                flow = Flow::Continue;
                while let Some(m) = align.next_released() {
                    if let Msg::Records(s, _) = &m {
                        self.shared.held[self.info.subtask][*s].fetch_sub(1, Ordering::AcqRel);
                    }
                    match self.apply(op, &mut align, stats, &mut outputs, writer, m)? {
                        Flow::Continue | Flow::Aligned => {}
                        f => {
                            flow = f;
                            break;
                        }
                    }
                }
            }
            if matches!(flow, Flow::Ended | Flow::Disconnected) {
                return Ok(flow);
            }
        }
    }

    /// Sends the outputs held so far to the sink, if there is one and they
    /// are not empty; false if the sink is gone.
    fn hand_on(&self, outputs: &mut Vec<P::Output>) -> bool {
        match &self.out {
            Some(out) if !outputs.is_empty() => out.send(std::mem::take(outputs)).is_ok(),
            _ => true,
        }
    }

    pub(super) fn apply(
        &self,
        op: &mut P,
        align: &mut Alignment<P::Event>,
        stats: &mut KeyedInstanceStats,
        outputs: &mut Vec<P::Output>,
        writer: Option<&SnapshotWriter>,
        msg: Msg<P::Event>,
    ) -> Result<Flow, TaskError> {
        match msg {
            Msg::Records(_, batch) => {
                let n = batch.len() as u64;
                let t = Instant::now();
                let keep = self.out.is_some();
                let mut handed_on = t;
                // Once the batch has held outputs for `FLUSH_AFTER`, its
                // records are slow ones: the clock is read after each.
                let mut slow = false;
                for (i, e) in batch.into_iter().enumerate() {
                    op.process(e, &mut |o| {
                        if keep {
                            outputs.push(o)
                        }
                    })?;
                    // A slow batch (the first writes after a capture each
                    // encode a page for the snapshot) hands on its outputs as
                    // it goes, rather than holding them all until its end.
                    if keep && (slow || i % FLUSH_CHECK_EVERY == FLUSH_CHECK_EVERY - 1) {
                        let now = Instant::now();
                        if now - handed_on >= FLUSH_AFTER {
                            if !self.hand_on(outputs) {
                                return Ok(Flow::Disconnected);
                            }
                            handed_on = now;
                            slow = true;
                        }
                    }
                }
                stats.busy += t.elapsed();
                stats.events += n;
                self.shared.processed.fetch_add(n, Ordering::Relaxed);
                if !self.hand_on(outputs) {
                    return Ok(Flow::Disconnected);
                }
                Ok(Flow::Continue)
            }
            Msg::Barrier(from, id) => {
                let alignment = match align.barrier(from, id) {
                    Ok(BarrierStep::Waiting) => return Ok(Flow::Continue),
                    Ok(BarrierStep::Aligned { alignment, .. }) => alignment,
                    Err(Misaligned { aligning, .. }) => {
                        return Err(TaskError::Misaligned {
                            barrier: id,
                            from,
                            aligning,
                        });
                    }
                };
                let t = Instant::now();
                if let Some(writer) = writer {
                    // Asynchronous: only the capture pauses the instance.
                    let captured = if self.store.writes_deltas() {
                        op.capture_tracking_changes()?
                    } else {
                        op.capture()?
                    };
                    writer.write(id, captured, alignment, t.elapsed())?;
                    return Ok(Flow::Aligned);
                }
                let snapshot =
                    self.store
                        .snapshot(id, PipelineOperator::Keyed, self.info.subtask, op)?;
                let snapshot_time = t.elapsed();
                let _ = self.coord.send(CoordMsg::KeyedSnapshot {
                    subtask: self.info.subtask,
                    id,
                    snapshot,
                    alignment,
                    snapshot_time,
                    async_time: Duration::ZERO,
                });
                Ok(Flow::Aligned)
            }
            Msg::End(from) => match align.end(from) {
                true => Ok(Flow::Ended),
                false => Ok(Flow::Continue),
            },
        }
    }
}
