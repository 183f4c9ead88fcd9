//! A timely job with rescalable state: configuration, and the loop that
//! drives one worker.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use state_runtime::checkpoint::durable::{StoredCheckpoint, validate_run_id};
use state_runtime::checkpoint::{Checkpointed, Restore};
use state_runtime::keygroup::{KeyGroupAssigner, KeyGroupRange, MaxParallelism};
use state_runtime::runner::KeyedProcessor;
use state_runtime::runner::source::{LogInput, Source, SourceFactory};
use state_runtime::storage::CheckpointStorage;
use timely::ExchangeData;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange as ExchangePact;
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

use crate::commit::committer;
use crate::error::TimelyError;
use crate::fault::Fault;
use crate::keyed::keyed_stage;
use crate::routing::KeyGroupRouter;
use crate::shared::Shared;
use crate::source::open_source;
use crate::startup::agree_on_restore_point;

/// A job `source -> keyed operator` on timely, checkpointed at epoch
/// boundaries into a [`CheckpointStorage`] all processes share, restartable
/// at any number of processes and workers.
///
/// Every process of a run builds the same `TimelyJob` (same input, storage
/// location, run id and settings) and runs [`execute`](Self::execute) (the
/// file log of [`new`](Self::new)) or
/// [`execute_with_input`](Self::execute_with_input) (any runner source:
/// the Kafka source, say), or [`run_worker`](Self::run_worker) in its own
/// `timely::execute`.
#[derive(Debug, Clone)]
pub struct TimelyJob {
    /// The file log [`execute`](Self::execute) reads.
    log_dir: Option<PathBuf>,
    storage: Arc<dyn CheckpointStorage>,
    run_id: String,
    operator: String,
    assigner: KeyGroupAssigner,
    records_per_epoch: usize,
    epochs_in_flight: u64,
    stop_after_epochs: Option<u64>,
    retain: usize,
    fault: Option<Fault>,
}

/// What the factory of the keyed operator learns about its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's index, `process * threads + thread`.
    pub worker: usize,
    /// All workers of the run.
    pub workers: usize,
    /// How keys map to key groups.
    pub assigner: KeyGroupAssigner,
    /// The key groups the worker owns.
    pub key_groups: KeyGroupRange,
}

/// What one worker did in a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// The worker and the run's size.
    pub info: WorkerInfo,
    /// The checkpoint it restored, if any.
    pub restored_from: Option<u64>,
    /// Bytes the restore read (keyed state and source offsets).
    pub bytes_restored: u64,
    /// Of those, the bytes of keyed state.
    pub keyed_bytes_restored: u64,
    /// Bytes of keyed state the worker's key groups hold in the restored
    /// checkpoint: what a restore that reads only its own key groups reads.
    pub owned_state_bytes: u64,
    /// The keyed entries it restored.
    pub keyed_entries_restored: u64,
    /// Records its keyed operator processed in this run.
    pub events: u64,
    /// The epoch the run started at and the one it ended at (exclusive).
    pub epochs: (u64, u64),
    /// Worker 0: the newest checkpoint it committed in this run.
    pub committed: Option<u64>,
    /// Wall time of the worker's run, from the start-up barrier to the
    /// last commit.
    pub elapsed: Duration,
}

impl WorkerReport {
    /// Bytes read by the restore over the bytes of the worker's own keyed
    /// state (1.0: it read exactly its key groups); `None` without a
    /// restore or with an empty state.
    pub fn read_amplification(&self) -> Option<f64> {
        self.restored_from?;
        match self.owned_state_bytes {
            0 => None,
            owned => Some(self.keyed_bytes_restored as f64 / owned as f64),
        }
    }
}

impl TimelyJob {
    /// A job reading the log in `log_dir`, checkpointing into `storage`, as
    /// run `run_id` (1 to 32 ASCII letters, digits, `-`, `_`; a fresh one for
    /// every start, it ends every data file's name). Defaults: keyed operator
    /// named `"keyed"`, native key groups with max parallelism 128, 1000
    /// records per worker and epoch, 2 epochs in flight, run to the end of
    /// the log, keep the newest 3 checkpoints.
    pub fn new(
        log_dir: impl Into<PathBuf>,
        storage: Arc<dyn CheckpointStorage>,
        run_id: impl Into<String>,
    ) -> Self {
        TimelyJob {
            log_dir: Some(log_dir.into()),
            ..Self::with_storage(storage, run_id)
        }
    }

    /// A job whose input is given to
    /// [`execute_with_input`](Self::execute_with_input), checkpointing into
    /// `storage` as run `run_id`, with the defaults of [`new`](Self::new).
    pub fn with_storage(storage: Arc<dyn CheckpointStorage>, run_id: impl Into<String>) -> Self {
        TimelyJob {
            log_dir: None,
            storage,
            run_id: run_id.into(),
            operator: "keyed".into(),
            assigner: KeyGroupAssigner::native(MaxParallelism::DEFAULT),
            records_per_epoch: 1000,
            epochs_in_flight: 2,
            stop_after_epochs: None,
            retain: 3,
            fault: None,
        }
    }

    /// The keyed operator's name in checkpoints.
    pub fn operator_name(mut self, name: impl Into<String>) -> Self {
        self.operator = name.into();
        self
    }

    /// How keys map to key groups (fixed for the life of the job's state).
    pub fn assigner(mut self, assigner: KeyGroupAssigner) -> Self {
        self.assigner = assigner;
        self
    }

    /// Records each worker reads per epoch (each epoch ends with a
    /// checkpoint).
    pub fn records_per_epoch(mut self, records: usize) -> Self {
        self.records_per_epoch = records;
        self
    }

    /// How many epochs may be open at once: a source starts epoch `e` once
    /// checkpoint `e - n + 1` is committed. 1 runs the epochs one after the
    /// other; more lets fast workers run ahead (their records wait at the
    /// slower workers until those reach the epoch).
    pub fn epochs_in_flight(mut self, n: u64) -> Self {
        self.epochs_in_flight = n;
        self
    }

    /// Ends the run, with a final checkpoint, after `epochs` epochs (a
    /// worker reads nothing more; a later run resumes there).
    pub fn stop_after_epochs(mut self, epochs: u64) -> Self {
        self.stop_after_epochs = Some(epochs);
        self
    }

    /// How many complete checkpoints worker 0 keeps: it retires older ones
    /// at start-up and after each commit.
    pub fn retain_checkpoints(mut self, keep: usize) -> Self {
        self.retain = keep;
        self
    }

    /// Aborts a worker's process at a step of the commit protocol (for
    /// testing recovery).
    pub fn fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }

    fn check(&self) -> Result<(), TimelyError> {
        let invalid = |reason: String| Err(TimelyError::InvalidConfig { reason });
        if let Err(e) = validate_run_id(&self.run_id) {
            return invalid(e.to_string());
        }
        if self.operator.is_empty() || self.operator == crate::source::SOURCE_OPERATOR {
            return invalid(format!(
                "the keyed operator cannot be named `{}`",
                self.operator
            ));
        }
        if self.records_per_epoch == 0 || self.epochs_in_flight == 0 || self.retain == 0 {
            return invalid(
                "records per epoch, epochs in flight and retained checkpoints must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// Runs the job on every worker of this process (`config` says how many
    /// threads, and for several processes, which one this is and where the
    /// others are: see [`cluster_config`](crate::cluster_config)). `factory` builds
    /// each worker's keyed operator (its state is then restored or bound to
    /// the worker's key groups), `on_output` receives its outputs on the
    /// worker's thread.
    ///
    /// Returns this process's workers' reports, or the first error. Timely
    /// is fail-stop: when a process dies, the others end with an error too.
    pub fn execute<P, F, O>(
        &self,
        config: timely::Config,
        factory: F,
        on_output: O,
    ) -> Result<Vec<WorkerReport>, TimelyError>
    where
        P: KeyedProcessor,
        P::Event: ExchangeData + Clone + serde::de::DeserializeOwned,
        F: Fn(&WorkerInfo) -> P + Send + Sync + 'static,
        O: Fn(&WorkerInfo) -> Box<dyn FnMut(P::Output)> + Send + Sync + 'static,
    {
        let input = LogInput::<P::Event>::new(self.log()?);
        self.execute_with_input(config, input, factory, on_output)
    }

    /// [`execute`](Self::execute) reading `input` instead of the file log:
    /// each worker builds its source instance with it (worker `w` of `W` is
    /// instance `w` of `W`), and its partition offsets are the checkpoint's
    /// `source` operator, as in the local runner.
    pub fn execute_with_input<P, I, F, O>(
        &self,
        config: timely::Config,
        input: I,
        factory: F,
        on_output: O,
    ) -> Result<Vec<WorkerReport>, TimelyError>
    where
        P: KeyedProcessor,
        P::Event: ExchangeData + Clone,
        I: SourceFactory,
        I::Source: Source<Event = P::Event>,
        F: Fn(&WorkerInfo) -> P + Send + Sync + 'static,
        O: Fn(&WorkerInfo) -> Box<dyn FnMut(P::Output)> + Send + Sync + 'static,
    {
        self.check()?;
        let job = self.clone();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let guards = timely::execute(config, move |worker| {
            let result = job.run_worker_inner(worker, &input, &factory, &on_output, &flag);
            if result.is_err() {
                flag.store(true, Ordering::SeqCst);
            }
            result
        })
        .map_err(TimelyError::Timely)?;
        let mut reports = Vec::new();
        let mut first_error = None;
        for (thread, result) in guards.join().into_iter().enumerate() {
            match result {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(TimelyError::Stopped { .. })) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(message) => {
                    first_error.get_or_insert(TimelyError::WorkerPanicked {
                        worker: thread,
                        message,
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if failed.load(Ordering::SeqCst) => Err(TimelyError::Stopped { worker: 0 }),
            None => Ok(reports),
        }
    }

    /// Runs the job on one worker, inside the caller's `timely::execute`.
    pub fn run_worker<P, F>(
        &self,
        worker: &mut Worker,
        factory: F,
        on_output: impl FnMut(P::Output) + 'static,
    ) -> Result<WorkerReport, TimelyError>
    where
        P: KeyedProcessor,
        P::Event: ExchangeData + Clone + serde::de::DeserializeOwned,
        F: Fn(&WorkerInfo) -> P,
    {
        self.check()?;
        let input = LogInput::<P::Event>::new(self.log()?);
        let mut on_output = Some(on_output);
        let output = |_: &WorkerInfo| -> Box<dyn FnMut(P::Output)> {
            match on_output.take() {
                Some(o) => Box::new(o),
                None => Box::new(|_| {}),
            }
        };
        let never = AtomicBool::new(false);
        self.run_worker_inner(worker, &input, &factory, output, &never)
    }

    /// The file log of [`new`](Self::new).
    fn log(&self) -> Result<&PathBuf, TimelyError> {
        self.log_dir.as_ref().ok_or_else(|| TimelyError::InvalidConfig {
            reason: "a job made with `with_storage` has no file log: run it with `execute_with_input`"
                .into(),
        })
    }

    fn run_worker_inner<P, I, F>(
        &self,
        worker: &mut Worker,
        input: &I,
        factory: &F,
        mut on_output: impl FnMut(&WorkerInfo) -> Box<dyn FnMut(P::Output)>,
        stop: &AtomicBool,
    ) -> Result<WorkerReport, TimelyError>
    where
        P: KeyedProcessor,
        P::Event: ExchangeData + Clone,
        I: SourceFactory,
        I::Source: Source<Event = P::Event>,
        F: Fn(&WorkerInfo) -> P,
    {
        let started = Instant::now();
        let me = worker.index();
        input
            .check()
            .map_err(|source| TimelyError::Source { worker: me, source })?;
        let workers = worker.peers();
        let stopped = || stop.load(Ordering::SeqCst);
        let point = agree_on_restore_point(worker, &*self.storage, self.retain, &stopped)?;
        let key_groups = self
            .assigner
            .range_for_subtask(workers, me)
            .map_err(TimelyError::state(me, "assigning key groups"))?;
        let info = WorkerInfo {
            worker: me,
            workers,
            assigner: self.assigner,
            key_groups,
        };

        let (processor, mut source, mut report) =
            self.restore(info, point.checkpoint_id, input, factory)?;

        let resume = report.epochs.0;
        let shared = Rc::new(Shared {
            storage: Arc::clone(&self.storage),
            run_id: self.run_id.clone(),
            operator: self.operator.clone(),
            fault: self.fault.clone(),
            retain: self.retain,
            worker: me,
            workers,
            sources: Default::default(),
            exhausted: Default::default(),
            final_boundary: Default::default(),
            failure: Default::default(),
            committed: Default::default(),
            events: Default::default(),
        });
        let capture = |source: &I::Source| {
            source
                .capture()
                .map_err(TimelyError::state(me, "capturing the source's offsets"))
        };
        shared
            .sources
            .borrow_mut()
            .insert(resume, capture(&source)?);
        let router = KeyGroupRouter::new(self.assigner, workers)
            .map_err(TimelyError::state(me, "routing key groups"))?;

        let mut records: InputHandle<u64, CapacityContainerBuilder<Vec<P::Event>>> =
            InputHandle::new();
        let mut status: InputHandle<u64, CapacityContainerBuilder<Vec<(u64, bool)>>> =
            InputHandle::new();
        let committed = ProbeHandle::new();
        let reported = ProbeHandle::new();
        let output = on_output(&info);
        {
            let shared = Rc::clone(&shared);
            worker.dataflow::<u64, _, _>(|scope| {
                records.advance_to(resume);
                status.advance_to(resume);
                let fragments = keyed_stage(
                    records.to_stream(scope),
                    router,
                    processor,
                    output,
                    Rc::clone(&shared),
                    resume,
                );
                committer(fragments, Rc::clone(&shared)).probe_with(&committed);
                // Every worker learns, per epoch, how many sources are
                // exhausted; the probe passes an epoch once its reports
                // are all counted.
                status
                    .to_stream(scope)
                    .unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                        ExchangePact::new(|m: &(u64, bool)| m.0),
                        "rescale-exhausted",
                        move |_cap, _info| {
                            move |input, _output| {
                                input.for_each(|cap, data| {
                                    let Some(&t) = cap.least() else { return };
                                    let n = data.drain(..).filter(|m| m.1).count();
                                    *shared.exhausted.borrow_mut().entry(t).or_default() += n;
                                });
                            }
                        },
                    )
                    .probe_with(&reported);
            });
        }

        let wait = |worker: &mut Worker, until: &dyn Fn() -> bool| -> Result<(), TimelyError> {
            while !until() {
                if let Some(e) = shared.failure.borrow_mut().take() {
                    return Err(e);
                }
                if stopped() {
                    return Err(TimelyError::Stopped { worker: me });
                }
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            Ok(())
        };

        let stop_at = self.stop_after_epochs.map(|n| resume + n);
        let mut epoch = resume;
        loop {
            // Every worker decides the end from the same facts: the epoch
            // count, or every source exhausted in the previous epoch.
            if epoch > resume {
                let previous = epoch - 1;
                wait(worker, &|| !reported.less_equal(&previous))?;
                let all_done = shared.exhausted.borrow().get(&previous).copied() == Some(workers);
                shared.exhausted.borrow_mut().remove(&previous);
                if all_done {
                    break;
                }
            }
            if stop_at == Some(epoch) {
                break;
            }
            if let Some(gate) = epoch
                .checked_sub(self.epochs_in_flight)
                .filter(|g| *g >= resume)
            {
                wait(worker, &|| !committed.less_equal(&gate))?;
            }
            source
                .poll(self.records_per_epoch, &mut |e| records.send(e))
                .map_err(|source| TimelyError::Source { worker: me, source })?;
            shared
                .sources
                .borrow_mut()
                .insert(epoch + 1, capture(&source)?);
            let exhausted = source.is_exhausted();
            for w in 0..workers {
                status.send((w as u64, exhausted));
            }
            epoch += 1;
            records.advance_to(epoch);
            status.advance_to(epoch);
            worker.step();
        }
        shared.final_boundary.set(Some(epoch));
        records.close();
        status.close();
        wait(worker, &|| committed.done())?;
        if let Some(e) = shared.failure.borrow_mut().take() {
            return Err(e);
        }
        report.epochs.1 = epoch;
        report.events = shared.events.get();
        report.committed = shared.committed.get();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Builds worker `info`'s keyed operator and source: restored from
    /// checkpoint `checkpoint_id` (its key groups, its share of the source
    /// offsets), or bound to its key groups and given its initial
    /// partitions on a fresh start.
    fn restore<P, I, F>(
        &self,
        info: WorkerInfo,
        checkpoint_id: Option<u64>,
        input: &I,
        factory: &F,
    ) -> Result<(P, I::Source, WorkerReport), TimelyError>
    where
        P: KeyedProcessor,
        I: SourceFactory,
        F: Fn(&WorkerInfo) -> P,
    {
        let (me, workers, key_groups) = (info.worker, info.workers, info.key_groups);
        let stored = checkpoint_id
            .map(|id| StoredCheckpoint::open(&*self.storage, id))
            .transpose()
            .map_err(TimelyError::state(me, "opening the checkpoint to restore"))?;
        let mut processor = factory(&info);
        let mut report = WorkerReport {
            info,
            restored_from: checkpoint_id,
            bytes_restored: 0,
            keyed_bytes_restored: 0,
            owned_state_bytes: 0,
            keyed_entries_restored: 0,
            events: 0,
            epochs: (checkpoint_id.unwrap_or(0), 0),
            committed: None,
            elapsed: Duration::ZERO,
        };
        match &stored {
            Some(stored) => {
                let op = stored
                    .operator(&self.operator)
                    .map_err(TimelyError::state(me, "finding the keyed operator"))?;
                let restored = op
                    .restore_into(&mut processor, me, workers)
                    .map_err(TimelyError::state(me, "restoring the keyed state"))?;
                report.bytes_restored += restored.bytes_read;
                report.keyed_bytes_restored = restored.bytes_read;
                report.keyed_entries_restored = restored.keyed_entries_restored;
                report.owned_state_bytes = owned_bytes(op.subtasks(), key_groups);
            }
            None => processor
                .bind_keyed(self.assigner, key_groups)
                .map_err(TimelyError::state(me, "binding the keyed state"))?,
        }
        let (source, source_bytes) = open_source(input, stored.as_ref(), me, workers)?;
        report.bytes_restored += source_bytes;
        Ok((processor, source, report))
    }
}

/// Bytes of keyed state in key groups `mine` over the old subtasks' files.
fn owned_bytes(
    subtasks: &[state_runtime::checkpoint::durable::StoredSubtask],
    mine: KeyGroupRange,
) -> u64 {
    subtasks
        .iter()
        .filter_map(|s| s.keyed())
        .flat_map(|k| {
            let theirs = k.key_groups();
            (theirs.start()..theirs.end_exclusive())
                .filter(move |kg| mine.contains(*kg))
                .filter_map(move |kg| k.key_group_range(kg))
        })
        .map(|r| r.end - r.start)
        .sum()
}
