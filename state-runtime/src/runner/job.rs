//! The [`Job`] builder, and its start: restore or bind each instance and
//! spawn the pipeline's threads.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self};
use std::thread::{self};
use std::time::{Duration, Instant};

use super::channel::{
    Control, CoordMsg, DEFAULT_ALIGNMENT_BUFFER, Msg, Router, Shared, spawn_instance,
};
use super::coordinator::Coordinator;
use super::error::{Instance, JobError};
use super::keyed_task::KeyedTask;
use super::processor::{InstanceInfo, KeyedProcessor};
use super::report::{JobEnd, JobOutcome, JobReport};
use super::running::RunningJob;
use super::source::{LogInput, SourceFactory};
use super::source_task::{SourceRunner, SourceTask};
use super::store::JobCheckpointStore;
use crate::checkpoint::{Restore, RestoreOptions};
use crate::keygroup::{KeyGroupAssigner, MaxParallelism};

pub(super) type Factory<P> = Arc<dyn Fn(&InstanceInfo) -> P + Send + Sync>;
pub(super) type Sink<O> = Box<dyn FnMut(O) + Send>;

/// A job: `source -> keyed operator -> sink`. Build it, then
/// [`start`](Job::start) it; a start restores from the store's latest
/// checkpoint if there is one.
///
/// See the [module documentation](super) for an example.
pub struct Job<P: KeyedProcessor> {
    pub(super) input: Arc<dyn SourceRunner<P::Event>>,
    pub(super) store: Arc<dyn JobCheckpointStore>,
    pub(super) factory: Factory<P>,
    pub(super) sink: Option<Sink<P::Output>>,
    pub(super) source_parallelism: usize,
    pub(super) keyed_parallelism: usize,
    pub(super) assigner: Option<KeyGroupAssigner>,
    pub(super) every_events: Option<u64>,
    pub(super) interval: Option<Duration>,
    pub(super) stop_at_end: bool,
    pub(super) batch_size: usize,
    pub(super) channel_capacity: usize,
    pub(super) alignment_buffer: usize,
    pub(super) allow_non_restored_state: bool,
    pub(super) measure_restored_state: bool,
    pub(super) asynchronous_snapshots: bool,
}

impl<P: KeyedProcessor> std::fmt::Debug for Job<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("source_parallelism", &self.source_parallelism)
            .field("keyed_parallelism", &self.keyed_parallelism)
            .field("assigner", &self.assigner)
            .field("every_events", &self.every_events)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<P: KeyedProcessor> Job<P>
where
    P::Event: serde::de::DeserializeOwned,
{
    /// A job reading the [log](super::log) in `log_dir` (through
    /// [`LogInput`]), keeping its checkpoints in `store`, with one keyed
    /// operator instance built by `factory` per subtask. Defaults:
    /// parallelism 1 and 1, native assigner with the default max
    /// parallelism, no periodic checkpoints, no sink, stop with a final
    /// checkpoint at the end of the input.
    pub fn new(
        log_dir: impl AsRef<Path>,
        store: impl JobCheckpointStore + 'static,
        factory: impl Fn(&InstanceInfo) -> P + Send + Sync + 'static,
    ) -> Self {
        Self::with_input(LogInput::<P::Event>::new(log_dir), store, factory)
    }
}

impl<P: KeyedProcessor> Job<P> {
    /// A job whose sources `input` builds (a [`LogInput`], a Kafka input, or
    /// a [`SourceFactory`] of your own), with the defaults of
    /// [`new`](Job::new).
    pub fn with_input<F>(
        input: F,
        store: impl JobCheckpointStore + 'static,
        factory: impl Fn(&InstanceInfo) -> P + Send + Sync + 'static,
    ) -> Self
    where
        F: SourceFactory,
        F::Source: super::source::Source<Event = P::Event>,
    {
        Self {
            input: Arc::new(input),
            store: Arc::new(store),
            factory: Arc::new(factory),
            sink: None,
            source_parallelism: 1,
            keyed_parallelism: 1,
            assigner: None,
            every_events: None,
            interval: None,
            stop_at_end: true,
            batch_size: 1024,
            channel_capacity: 16,
            alignment_buffer: DEFAULT_ALIGNMENT_BUFFER,
            allow_non_restored_state: false,
            measure_restored_state: false,
            asynchronous_snapshots: true,
        }
    }

    /// Source parallelism `sources` and keyed operator parallelism `keyed`.
    pub fn parallelism(mut self, sources: usize, keyed: usize) -> Self {
        self.source_parallelism = sources;
        self.keyed_parallelism = keyed;
        self
    }

    /// The key-group assigner. Default: on a fresh start native, with
    /// [`MaxParallelism::default_for`] the keyed parallelism; on a restore
    /// the checkpoint's. Given on a restore with another max parallelism, it
    /// re-buckets the keys (native mode only; a Flink-mode change, or a
    /// change of kind, is refused by [`start`](Job::start)).
    pub fn assigner(mut self, assigner: KeyGroupAssigner) -> Self {
        self.assigner = Some(assigner);
        self
    }

    /// Triggers a checkpoint every `events` records read (counted over all
    /// sources; at most one periodic checkpoint in flight).
    pub fn checkpoint_every_events(mut self, events: u64) -> Self {
        self.every_events = Some(events.max(1));
        self
    }

    /// Triggers a checkpoint every `interval` (at most one periodic
    /// checkpoint in flight).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Hands every output of the keyed operator to `sink`, on a thread of
    /// its own. Without a sink, outputs are dropped. The sink is
    /// at-least-once across restarts (outputs after the last checkpoint are
    /// emitted again); the keyed state is exactly-once.
    pub fn sink(mut self, sink: impl FnMut(P::Output) + Send + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Whether the job stops by itself, with a final checkpoint, once every
    /// source has read its partitions to the end (default true). If false,
    /// it waits for [`RunningJob::stop`] or [`RunningJob::kill`].
    pub fn stop_at_end_of_input(mut self, stop: bool) -> Self {
        self.stop_at_end = stop;
        self
    }

    /// Whether each restored keyed instance encodes its state once more after
    /// the restore, to report how many bytes it holds
    /// ([`KeyedInstanceStats::state_bytes`](crate::runner::KeyedInstanceStats::state_bytes)) and so its
    /// [`read_amplification`](crate::runner::KeyedInstanceStats::read_amplification).
    /// Default false: the extra encoding costs about as much as a snapshot of
    /// the instance, before it processes anything.
    pub fn measure_restored_state(mut self, measure: bool) -> Self {
        self.measure_restored_state = measure;
        self
    }

    /// Whether keyed instances snapshot asynchronously (default true): an
    /// instance only captures its state at a checkpoint
    /// ([`Checkpointed::capture`](crate::checkpoint::Checkpointed::capture), which copies no
    /// entry) and goes on processing while a writer thread of its own
    /// writes the snapshot into the store. With false, the instance writes
    /// the snapshot itself and processes nothing meanwhile.
    ///
    /// An instance has at most one snapshot being written and one waiting;
    /// the extra memory is the pages of its keyed state it changes before
    /// the writer reaches them (up to 512 entries each, encoded).
    /// [`CheckpointStats`](crate::runner::CheckpointStats)
    /// reports the pause and the write separately.
    pub fn asynchronous_snapshots(mut self, asynchronous: bool) -> Self {
        self.asynchronous_snapshots = asynchronous;
        self
    }

    /// Records per message between a source and a keyed instance (default
    /// 1024).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records.max(1);
        self
    }

    /// Bounds the records a keyed instance holds back from one source while
    /// it aligns a checkpoint's barriers (default 16 batches of
    /// [`batch_size`](Job::batch_size) records, at least 1). A source whose
    /// barrier has come waits rather than send more to an instance that
    /// holds this many of its batches: backpressure, as Flink's aligned
    /// checkpoints stop reading a blocked channel, so a fast source cannot
    /// fill memory while a slow one is behind. The batches already queued in
    /// the instance's input channel (at most 16, from all sources) are held
    /// too, so an instance holds at most `messages + 16` batches of one
    /// source ([`KeyedInstanceStats::max_held`](crate::runner::KeyedInstanceStats::max_held)).
    ///
    /// ```no_run
    /// # use state_runtime::runner::{Job, MemoryCheckpointStore, InstanceInfo, KeyedProcessor};
    /// # fn job<P: KeyedProcessor + Default>() where P::Event: serde::de::DeserializeOwned {
    /// let job = Job::new("/data/log", MemoryCheckpointStore::new(), |_: &InstanceInfo| P::default())
    ///     .batch_size(256)
    ///     .alignment_buffer(4); // at most (4 + 16) x 256 records held per source and instance
    /// # }
    /// ```
    pub fn alignment_buffer(mut self, messages: usize) -> Self {
        self.alignment_buffer = messages.max(1);
        self
    }

    /// Whether a restart may drop keyed-operator states that the latest
    /// checkpoint holds but the operator no longer declares (default: no),
    /// as Flink's `--allowNonRestoredState`. Without it, such a state fails
    /// [`start`](Job::start) with [`StateError::UnknownState`](crate::StateError::UnknownState) before any
    /// instance starts; with it, the state is dropped from the next
    /// checkpoint on.
    ///
    /// ```no_run
    /// # use state_runtime::runner::{Job, MemoryCheckpointStore, KeyedProcessor, InstanceInfo};
    /// # fn demo<P: KeyedProcessor + Default>() where P::Event: serde::de::DeserializeOwned {
    /// let job = Job::new("/var/lib/orders-log", MemoryCheckpointStore::new(), |_: &InstanceInfo| P::default())
    ///     .allow_non_restored_state(true);
    /// # }
    /// ```
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    /// Starts the job: restores from the store's latest checkpoint, if any,
    /// at this job's parallelism, and runs every instance on its own thread.
    ///
    /// Fails before starting anything if the configuration is invalid or the
    /// store cannot be read. A restore that fails in an instance fails the
    /// job (see [`RunningJob::wait`]), naming the instance.
    pub fn start(self) -> Result<RunningJob<P>, JobError> {
        let (s, n) = (self.source_parallelism, self.keyed_parallelism);
        if s == 0 || n == 0 {
            return Err(JobError::Config(format!(
                "parallelism must be at least 1 (sources {s}, keyed {n})"
            )));
        }
        let latest = self.store.latest().map_err(JobError::start)?;
        let assigner = match (&latest, self.assigner) {
            (Some(cp), Some(a)) if a != cp.assigner => {
                // Only native mode may change max parallelism; refuse a
                // Flink-mode change (or a change of kind) before starting.
                cp.assigner.check_restore_as(a).map_err(JobError::start)?;
                tracing::info!(old = %cp.assigner, new = %a, "changing the key-group assigner");
                a
            }
            (Some(cp), _) => cp.assigner,
            (None, Some(a)) => a,
            (None, None) => {
                KeyGroupAssigner::native(MaxParallelism::default_for(n).map_err(JobError::start)?)
            }
        };
        assigner
            .max_parallelism()
            .check_parallelism(n)
            .map_err(|e| JobError::Config(e.to_string()))?;
        let restore_options = RestoreOptions::default()
            .assigner(assigner)
            .allow_non_restored_state(self.allow_non_restored_state);
        if let Some(cp) = &latest {
            // What every keyed instance's restore would refuse, refused once
            // before anything starts.
            cp.keyed
                .check_restore::<P>(&restore_options)
                .map_err(JobError::start)?;
        }
        self.input.check().map_err(JobError::start)?;
        let router = Arc::new(Router::new(assigner, n)?);
        let latest = latest.map(Arc::new);
        let (next_id, events_at_start) = latest.as_ref().map_or((1, 0), |c| (c.id + 1, c.events));
        tracing::info!(
            sources = s,
            keyed = n,
            %assigner,
            restored_from = latest.as_ref().map(|c| c.id),
            "starting job"
        );

        let shared = Arc::new(Shared::new(n, s));
        let (coord_tx, coord_rx) = mpsc::channel::<CoordMsg>();
        let started = Instant::now();

        // Sink.
        let mut sink_handle = None;
        let out_tx = match self.sink {
            Some(mut sink) => {
                let (tx, rx) = mpsc::sync_channel::<Vec<P::Output>>(self.channel_capacity);
                sink_handle = Some(spawn_instance(
                    Instance::Sink,
                    coord_tx.clone(),
                    &shared,
                    move || {
                        for batch in rx {
                            batch.into_iter().for_each(&mut sink);
                        }
                        Ok(())
                    },
                )?);
                Some(tx)
            }
            None => None,
        };

        // Keyed instances.
        let mut keyed_txs = Vec::with_capacity(n);
        let mut keyed_handles = Vec::with_capacity(n);
        for subtask in 0..n {
            let (tx, rx) = mpsc::sync_channel::<Msg<P::Event>>(self.channel_capacity);
            keyed_txs.push(tx);
            let info = InstanceInfo {
                subtask,
                parallelism: n,
                assigner,
                key_groups: assigner
                    .range_for_subtask(n, subtask)
                    .map_err(JobError::start)?,
            };
            let task = KeyedTask::<P> {
                info,
                factory: Arc::clone(&self.factory),
                latest: latest.clone(),
                rx,
                out: out_tx.clone(),
                coord: coord_tx.clone(),
                store: Arc::clone(&self.store),
                shared: Arc::clone(&shared),
                sources: s,
                restore_options: restore_options.clone(),
                measure_restored_state: self.measure_restored_state,
                asynchronous: self.asynchronous_snapshots,
            };
            keyed_handles.push(spawn_instance(
                Instance::Keyed(subtask),
                coord_tx.clone(),
                &shared,
                move || task.run(),
            )?);
        }
        drop(out_tx);

        // Sources.
        let mut controls = Vec::with_capacity(s);
        let mut source_handles = Vec::with_capacity(s);
        for subtask in 0..s {
            let (ctl_tx, ctl_rx) = mpsc::channel::<Control>();
            controls.push(ctl_tx);
            let task = SourceTask::<P::Event> {
                subtask,
                parallelism: s,
                latest: latest.clone(),
                outputs: keyed_txs.clone(),
                alignment_buffer: self.alignment_buffer,
                router: Arc::clone(&router),
                control: ctl_rx,
                coord: coord_tx.clone(),
                store: Arc::clone(&self.store),
                shared: Arc::clone(&shared),
                batch_size: self.batch_size,
            };
            let input = Arc::clone(&self.input);
            source_handles.push(spawn_instance(
                Instance::Source(subtask),
                coord_tx.clone(),
                &shared,
                move || input.run(task),
            )?);
        }
        drop(keyed_txs);

        let coordinator = Coordinator {
            rx: coord_rx,
            controls,
            store: self.store,
            shared: Arc::clone(&shared),
            assigner,
            sources: s,
            keyed: n,
            next_id,
            events_at_start,
            every_events: self.every_events,
            interval: self.interval,
            stop_at_end: self.stop_at_end,
            pending: BTreeMap::new(),
            checkpoints: Vec::new(),
            finished_sources: 0,
            live: s + n + usize::from(sink_handle.is_some()),
            stopping: None,
            aborting: false,
            failure: None,
            killed: false,
            abort_again: Vec::new(),
        };
        let report_base = JobReport {
            end: JobEnd::Killed,
            source_parallelism: s,
            keyed_parallelism: n,
            assigner,
            restored_from: latest.as_ref().map(|c| c.id),
            events_at_start,
            events_read: 0,
            events_processed: 0,
            elapsed: Duration::ZERO,
            checkpoints: Vec::new(),
            keyed: Vec::new(),
            sources: Vec::new(),
        };
        let counters = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("rescale-coordinator".into())
            .spawn(move || {
                let run = coordinator.run();
                let mut report = report_base;
                let mut operators = Vec::new();
                for h in keyed_handles {
                    if let Ok(Some(exit)) = h.join() {
                        report.keyed.push(exit.stats);
                        operators.extend(exit.op);
                    }
                }
                for h in source_handles {
                    if let Ok(Some(stats)) = h.join() {
                        report.sources.push(stats);
                    }
                }
                if let Some(h) = sink_handle {
                    let _ = h.join();
                }
                report.elapsed = started.elapsed();
                let (end, checkpoints) = run?;
                report.end = end;
                report.checkpoints = checkpoints;
                report.events_read = counters.read.load(Ordering::Relaxed);
                report.events_processed = counters.processed.load(Ordering::Relaxed);
                if end == JobEnd::Killed || operators.len() != report.keyed_parallelism {
                    operators.clear();
                }
                tracing::info!(?end, elapsed = ?report.elapsed, events = report.events_processed, "job ended");
                Ok(JobOutcome { operators, report })
            })
            .map_err(|e| JobError::Ended(format!("could not spawn the coordinator: {e}")))?;
        Ok(RunningJob {
            commands: coord_tx,
            handle: Some(handle),
            shared,
            events_at_start,
            _op: PhantomData,
        })
    }
}
