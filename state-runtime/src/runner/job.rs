//! The pipeline `source -> keyed operator -> sink`: threads, routing by key
//! group, aligned checkpoints, stop, kill and restart at a new parallelism.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::error::{Instance, JobError, panic_message};
use super::log::partition_count;
use super::source::LogSource;
use super::store::{JobCheckpoint, JobCheckpointStore, PipelineOperator, SubtaskState};
use crate::checkpoint::{RestoreOptions, RestoreReport};
use crate::error::StateError;
use crate::keyed::Keyed;
use crate::keygroup::{KeyGroupAssigner, KeyGroupRange, MaxParallelism};
use crate::operator::Checkpointed;

/// A keyed operator the runner can run: a [`Checkpointed`] type (its keyed
/// state fields are bound or restored by the runner) that processes one
/// event at a time and may emit outputs to the sink.
///
/// The runner builds one value per instance with the job's factory, then
/// restores it from the latest checkpoint (or binds its keyed state to the
/// instance's key groups on a fresh start), and calls
/// [`process`](KeyedProcessor::process) for every event whose key group the
/// instance owns.
pub trait KeyedProcessor: Checkpointed + Send + 'static {
    /// The input events, read from the log.
    type Event: Keyed + DeserializeOwned + Send + 'static;
    /// What the operator emits to the sink.
    type Output: Send + 'static;

    /// Processes one event, handing any outputs to `out`. An error fails the
    /// job, naming this instance.
    fn process(
        &mut self,
        event: Self::Event,
        out: &mut impl FnMut(Self::Output),
    ) -> Result<(), StateError>;
}

/// What the factory learns about the instance it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The instance's index, in `0..parallelism`.
    pub subtask: usize,
    /// The keyed operator's parallelism.
    pub parallelism: usize,
    /// How keys map to key groups.
    pub assigner: KeyGroupAssigner,
    /// The key groups this instance owns.
    pub key_groups: KeyGroupRange,
}

/// How a run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// The input was read to its end; the job stopped with a final
    /// checkpoint.
    Finished,
    /// [`RunningJob::stop`]: stopped with a final checkpoint.
    Stopped,
    /// [`RunningJob::kill`]: aborted without a final checkpoint.
    Killed,
}

/// One completed checkpoint of a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// The checkpoint id.
    pub id: u64,
    /// Input records consumed by the job (over all runs) up to it.
    pub events: u64,
    /// From the trigger to the store holding it.
    pub duration: Duration,
    /// The longest time a keyed instance held back input while aligning
    /// barriers (from the first to the last barrier).
    pub max_alignment: Duration,
    /// The longest time a keyed instance spent in `snapshot` (it processes
    /// nothing meanwhile).
    pub max_snapshot: Duration,
    /// Bytes of state data in the checkpoint.
    pub bytes: u64,
}

/// What one keyed instance did in a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyedInstanceStats {
    /// The instance's index.
    pub subtask: usize,
    /// The key groups it owned.
    pub key_groups: KeyGroupRange,
    /// What its restore read, if it was restored from a checkpoint.
    pub restore: Option<RestoreReport>,
    /// How long its restore took.
    pub restore_time: Duration,
    /// After a restore, with [`Job::measure_restored_state`]: the bytes of
    /// the state it then held, encoded as in a checkpoint (what it needed to
    /// read at least).
    pub state_bytes: Option<u64>,
    /// Events it processed.
    pub events: u64,
    /// Time spent in `process` (events / busy is its throughput).
    pub busy: Duration,
    /// The most record batches it held back from one source at a time while
    /// aligning checkpoint barriers: at most [`Job::alignment_buffer`] plus
    /// the 16 its input channel queues.
    pub max_held: usize,
}

impl KeyedInstanceStats {
    /// Bytes read by the restore over the bytes of the state the instance
    /// then held (1.0: it read exactly its own state). `None` without a
    /// restore, with an empty state, or unless the job was built with
    /// [`Job::measure_restored_state`].
    ///
    /// With an unchanged max parallelism an instance reads whole key groups
    /// it owns, so this is 1.0; after a change of max parallelism (native
    /// mode) the two boundary key groups it shares with a neighbour are read
    /// whole and filtered, so it is slightly above 1.
    pub fn read_amplification(&self) -> Option<f64> {
        let read = self.restore.as_ref()?.bytes_read;
        match self.state_bytes? {
            0 => None,
            held => Some(read as f64 / held as f64),
        }
    }
}

/// What one source instance did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceInstanceStats {
    /// The instance's index.
    pub subtask: usize,
    /// Its `(partition, offset)` pairs when it ended.
    pub offsets: Vec<(u32, u64)>,
    /// Records it read.
    pub events: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobReport {
    /// How the run ended.
    pub end: JobEnd,
    /// Source parallelism.
    pub source_parallelism: usize,
    /// Keyed operator parallelism.
    pub keyed_parallelism: usize,
    /// How keys were assigned to key groups.
    pub assigner: KeyGroupAssigner,
    /// The checkpoint the run was restored from.
    pub restored_from: Option<u64>,
    /// Input records consumed by the job (all runs) when the run started.
    pub events_at_start: u64,
    /// Records the sources read in this run.
    pub events_read: u64,
    /// Events the keyed instances processed in this run.
    pub events_processed: u64,
    /// Wall time of the run, from start to the last thread's end.
    pub elapsed: Duration,
    /// The checkpoints completed and stored in this run, in order.
    pub checkpoints: Vec<CheckpointStats>,
    /// Per keyed instance.
    pub keyed: Vec<KeyedInstanceStats>,
    /// Per source instance.
    pub sources: Vec<SourceInstanceStats>,
}

impl JobReport {
    /// The id of the last checkpoint stored in this run.
    pub fn last_checkpoint(&self) -> Option<u64> {
        self.checkpoints.last().map(|c| c.id)
    }
}

/// The result of a run: the keyed operator instances (after a stop or the
/// end of the input; empty after a kill) and the report.
#[non_exhaustive]
pub struct JobOutcome<P> {
    /// Instance `i` at index `i`; their state is exactly the final
    /// checkpoint's. Empty if the job was killed.
    pub operators: Vec<P>,
    /// What the run did.
    pub report: JobReport,
}

impl<P> std::fmt::Debug for JobOutcome<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOutcome")
            .field("operators", &self.operators.len())
            .field("report", &self.report)
            .finish()
    }
}

type Factory<P> = Arc<dyn Fn(&InstanceInfo) -> P + Send + Sync>;
type Sink<O> = Box<dyn FnMut(O) + Send>;

/// A job: `source -> keyed operator -> sink`. Build it, then
/// [`start`](Job::start) it; a start restores from the store's latest
/// checkpoint if there is one.
///
/// See the [module documentation](super) for an example.
pub struct Job<P: KeyedProcessor> {
    log_dir: PathBuf,
    store: Arc<dyn JobCheckpointStore>,
    factory: Factory<P>,
    sink: Option<Sink<P::Output>>,
    source_parallelism: usize,
    keyed_parallelism: usize,
    assigner: Option<KeyGroupAssigner>,
    every_events: Option<u64>,
    interval: Option<Duration>,
    stop_at_end: bool,
    batch_size: usize,
    channel_capacity: usize,
    alignment_buffer: usize,
    allow_non_restored_state: bool,
    measure_restored_state: bool,
}

impl<P: KeyedProcessor> std::fmt::Debug for Job<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("log_dir", &self.log_dir)
            .field("source_parallelism", &self.source_parallelism)
            .field("keyed_parallelism", &self.keyed_parallelism)
            .field("assigner", &self.assigner)
            .field("every_events", &self.every_events)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<P: KeyedProcessor> Job<P> {
    /// A job reading the log in `log_dir`, keeping its checkpoints in
    /// `store`, with one keyed operator instance built by `factory` per
    /// subtask. Defaults: parallelism 1 and 1, native assigner with the
    /// default max parallelism, no periodic checkpoints, no sink, stop with
    /// a final checkpoint at the end of the input.
    pub fn new(
        log_dir: impl AsRef<Path>,
        store: impl JobCheckpointStore + 'static,
        factory: impl Fn(&InstanceInfo) -> P + Send + Sync + 'static,
    ) -> Self {
        Self {
            log_dir: log_dir.as_ref().to_path_buf(),
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
    /// ([`KeyedInstanceStats::state_bytes`]) and so its
    /// [`read_amplification`](KeyedInstanceStats::read_amplification).
    /// Default false: the extra encoding costs about as much as a snapshot of
    /// the instance, before it processes anything.
    pub fn measure_restored_state(mut self, measure: bool) -> Self {
        self.measure_restored_state = measure;
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
    /// source ([`KeyedInstanceStats::max_held`]).
    ///
    /// ```no_run
    /// # use state_runtime::runner::{Job, MemoryCheckpointStore, InstanceInfo, KeyedProcessor};
    /// # fn job<P: KeyedProcessor + Default>() {
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
    /// [`start`](Job::start) with [`StateError::UnknownState`] before any
    /// instance starts; with it, the state is dropped from the next
    /// checkpoint on.
    ///
    /// ```no_run
    /// # use state_runtime::runner::{Job, MemoryCheckpointStore, KeyedProcessor, InstanceInfo};
    /// # fn demo<P: KeyedProcessor + Default>() {
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
        let latest = self.store.latest().map_err(JobError::Start)?;
        let assigner = match (&latest, self.assigner) {
            (Some(cp), Some(a)) if a != cp.assigner => {
                // Only native mode may change max parallelism; refuse a
                // Flink-mode change (or a change of kind) before starting.
                cp.assigner.check_restore_as(a).map_err(JobError::Start)?;
                tracing::info!(old = %cp.assigner, new = %a, "changing the key-group assigner");
                a
            }
            (Some(cp), _) => cp.assigner,
            (None, Some(a)) => a,
            (None, None) => KeyGroupAssigner::native(
                MaxParallelism::default_for(n as u32).map_err(JobError::Start)?,
            ),
        };
        assigner
            .max_parallelism()
            .check_parallelism(u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(|e| JobError::Config(e.to_string()))?;
        let restore_options = RestoreOptions::default()
            .assigner(assigner)
            .allow_non_restored_state(self.allow_non_restored_state);
        if let Some(cp) = &latest {
            // What every keyed instance's restore would refuse, refused once
            // before anything starts.
            cp.keyed
                .check_restore::<P>(&restore_options)
                .map_err(JobError::Start)?;
        }
        let partitions = partition_count(&self.log_dir).map_err(JobError::Start)?;
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
                    .range_for_subtask(n as u32, subtask as u32)
                    .map_err(JobError::Start)?,
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
                partitions,
                log_dir: self.log_dir.clone(),
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
            source_handles.push(spawn_instance(
                Instance::Source(subtask),
                coord_tx.clone(),
                &shared,
                move || task.run(),
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

/// A started job. Dropping it without [`wait`](RunningJob::wait),
/// [`stop`](RunningJob::stop) or [`kill`](RunningJob::kill) kills it (its
/// threads end without a final checkpoint), so no thread outlives it.
pub struct RunningJob<P: KeyedProcessor> {
    commands: Sender<CoordMsg>,
    /// `None` once waited for.
    handle: Option<JoinHandle<Result<JobOutcome<P>, JobError>>>,
    shared: Arc<Shared>,
    events_at_start: u64,
    _op: PhantomData<fn() -> P>,
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
    /// instance that holds [`Job::alignment_buffer`] of their batches while
    /// it aligns a checkpoint's barriers: backpressure from a slow source.
    pub fn sources_waiting_on_alignment(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Whether every instance has ended (the job finished, failed, or was
    /// stopped or killed); [`wait`](RunningJob::wait) then returns at once.
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

/// Messages a keyed instance holds back per source while aligning, by
/// default: [`Job::alignment_buffer`].
const DEFAULT_ALIGNMENT_BUFFER: usize = 16;

/// Counters and flags every thread shares.
struct Shared {
    abort: AtomicBool,
    read: AtomicU64,
    processed: AtomicU64,
    last_checkpoint: AtomicU64,
    /// Per keyed instance, per source: how many of the source's messages
    /// the instance holds back while aligning (the source waits while this
    /// is at the job's alignment buffer).
    held: Vec<Vec<AtomicUsize>>,
    /// Sources waiting right now because an instance holds
    /// `alignment_buffer` of their batches.
    waiting: AtomicUsize,
}

impl Shared {
    fn new(keyed: usize, sources: usize) -> Self {
        Self {
            abort: AtomicBool::new(false),
            read: AtomicU64::new(0),
            processed: AtomicU64::new(0),
            last_checkpoint: AtomicU64::new(0),
            held: (0..keyed)
                .map(|_| (0..sources).map(|_| AtomicUsize::new(0)).collect())
                .collect(),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Key group -> keyed instance, precomputed.
struct Router {
    assigner: KeyGroupAssigner,
    owner: Vec<u32>,
}

impl Router {
    fn new(assigner: KeyGroupAssigner, parallelism: usize) -> Result<Self, JobError> {
        let owner = assigner
            .max_parallelism()
            .all_key_groups()
            .iter()
            .map(|kg| assigner.subtask_for_key_group(parallelism as u32, kg))
            .collect::<Result<_, _>>()
            .map_err(|e| JobError::Config(e.to_string()))?;
        Ok(Self { assigner, owner })
    }

    /// The subtask owning each event's key, a batch at a time
    /// ([`KeyGroupAssigner::event_key_groups_into`]), written to `targets`.
    fn route_batch<E: Keyed>(
        &self,
        events: &[E],
        targets: &mut Vec<u32>,
    ) -> Result<(), StateError> {
        targets.clear();
        self.assigner.event_key_groups_into(events, targets)?;
        for t in targets.iter_mut() {
            *t = self.owner[*t as usize];
        }
        Ok(())
    }
}

/// Source -> keyed instance.
enum Msg<E> {
    Records(usize, Vec<E>),
    Barrier(usize, u64),
    End(usize),
}

impl<E> Msg<E> {
    fn from(&self) -> usize {
        match self {
            Msg::Records(s, _) | Msg::Barrier(s, _) | Msg::End(s) => *s,
        }
    }
}

/// Coordinator -> source.
enum Control {
    Checkpoint(u64),
    StopWithCheckpoint(u64),
}

enum Command {
    Checkpoint,
    Stop,
    Kill,
}

/// Everything the coordinator hears.
enum CoordMsg {
    Command(Command),
    SourceSnapshot {
        subtask: usize,
        id: u64,
        snapshot: SubtaskState,
        read: u64,
    },
    KeyedSnapshot {
        subtask: usize,
        id: u64,
        snapshot: SubtaskState,
        alignment: Duration,
        snapshot_time: Duration,
    },
    SourceFinished,
    Exited(Result<(), JobError>),
}

fn spawn_instance<T: Send + 'static>(
    instance: Instance,
    coord: Sender<CoordMsg>,
    shared: &Arc<Shared>,
    body: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<JoinHandle<Option<T>>, JobError> {
    let shared = Arc::clone(shared);
    let name = match instance {
        Instance::Source(i) => format!("rescale-source-{i}"),
        Instance::Keyed(i) => format!("rescale-keyed-{i}"),
        Instance::Sink => "rescale-sink".into(),
        Instance::Coordinator => "rescale-coordinator".into(),
    };
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            // The body owns its channel ends: they are dropped when it
            // returns or unwinds, so the threads it talks to see the
            // channels close and end too.
            let (value, status) = match panic::catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(v)) => (Some(v), Ok(())),
                Ok(Err(source)) => (None, Err(JobError::Failed { instance, source })),
                Err(payload) => (
                    None,
                    Err(JobError::Panicked {
                        instance,
                        message: panic_message(&*payload),
                    }),
                ),
            };
            if let Err(e) = &status {
                tracing::error!(%e, "instance failed");
                shared.abort.store(true, Ordering::SeqCst);
            }
            let _ = coord.send(CoordMsg::Exited(status));
            value
        })
        .map_err(|e| JobError::Ended(format!("could not spawn a thread for {instance}: {e}")))
}

struct SourceTask<E> {
    subtask: usize,
    parallelism: usize,
    partitions: u32,
    log_dir: PathBuf,
    latest: Option<Arc<JobCheckpoint>>,
    outputs: Vec<SyncSender<Msg<E>>>,
    alignment_buffer: usize,
    router: Arc<Router>,
    control: Receiver<Control>,
    coord: Sender<CoordMsg>,
    store: Arc<dyn JobCheckpointStore>,
    shared: Arc<Shared>,
    batch_size: usize,
}

/// Why a source's loop ended early: the job is being torn down.
struct Disconnected;

impl<E: Keyed + DeserializeOwned + Send + 'static> SourceTask<E> {
    fn run(self) -> Result<SourceInstanceStats, StateError> {
        let mut source = LogSource::<E>::new(&self.log_dir, Vec::new());
        match &self.latest {
            Some(cp) => {
                cp.source
                    .restore_into(&mut source, self.subtask, self.parallelism)?;
            }
            None => {
                source = LogSource::new(
                    &self.log_dir,
                    LogSource::<E>::initial_partitions(
                        self.partitions,
                        self.parallelism,
                        self.subtask,
                    ),
                );
            }
        }
        tracing::debug!(subtask = self.subtask, offsets = ?source.offsets(), "source started");
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
            offsets: state.source.offsets().to_vec(),
            events: state.read,
        })
    }

    fn main_loop(&self, st: &mut SourceState<E>) -> Result<Result<(), Disconnected>, StateError> {
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
            let n = st.source.poll(self.batch_size, |e| polled.push(e))?;
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
    fn command(
        &self,
        st: &mut SourceState<E>,
        c: Control,
    ) -> Result<Option<Result<(), Disconnected>>, StateError> {
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

    fn flush(&self, st: &mut SourceState<E>) -> Result<(), Disconnected> {
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

struct SourceState<E> {
    source: LogSource<E>,
    batches: Vec<Vec<E>>,
    polled: Vec<E>,
    /// The subtask each polled event goes to.
    targets: Vec<u32>,
    read: u64,
}

struct KeyedTask<P: KeyedProcessor> {
    info: InstanceInfo,
    factory: Factory<P>,
    latest: Option<Arc<JobCheckpoint>>,
    rx: Receiver<Msg<P::Event>>,
    out: Option<SyncSender<Vec<P::Output>>>,
    coord: Sender<CoordMsg>,
    store: Arc<dyn JobCheckpointStore>,
    shared: Arc<Shared>,
    sources: usize,
    /// The job's assigner, and whether unknown states may be dropped.
    restore_options: RestoreOptions,
    measure_restored_state: bool,
}

/// A keyed instance's result: the operator after a stop, and its stats.
struct KeyedExit<P> {
    op: Option<P>,
    stats: KeyedInstanceStats,
}

/// What handling one message led to.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Aligned,
    Ended,
    Disconnected,
}

struct Alignment<E> {
    /// Per source: its barrier for the checkpoint being aligned has come, so
    /// its later messages wait in `held`.
    blocked: Vec<bool>,
    held: Vec<VecDeque<Msg<E>>>,
    /// The checkpoint being aligned, and when its first barrier came.
    current: Option<(u64, Instant)>,
    ended: Vec<bool>,
}

impl<P: KeyedProcessor> KeyedTask<P> {
    fn run(self) -> Result<KeyedExit<P>, StateError> {
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
        let mut align = Alignment {
            blocked: vec![false; self.sources],
            held: (0..self.sources).map(|_| VecDeque::new()).collect(),
            current: None,
            ended: vec![false; self.sources],
        };
        let mut outputs = Vec::new();
        loop {
            let msg = match self.rx.recv() {
                Ok(m) if !self.shared.abort.load(Ordering::Relaxed) => m,
                // Every source is gone without ending, or the job is being
                // torn down: a kill or a failure. Queued records are dropped.
                _ => return Ok(KeyedExit { op: None, stats }),
            };
            let from = msg.from();
            if align.blocked[from] {
                // Only records count against the bound: barriers and ends
                // never wait, and a source sends few of them.
                if matches!(msg, Msg::Records(..)) {
                    let held = &self.shared.held[self.info.subtask][from];
                    let now = held.fetch_add(1, Ordering::AcqRel) + 1;
                    stats.max_held = stats.max_held.max(now);
                }
                align.held[from].push_back(msg);
                continue;
            }
            let mut flow = self.apply(&mut op, &mut align, &mut stats, &mut outputs, msg)?;
            // A completed alignment releases the held messages, which may
            // complete the next alignment, and so on.
            while flow == Flow::Aligned {
                flow = Flow::Continue;
                'drain: for s in 0..self.sources {
                    while !align.blocked[s] {
                        let Some(m) = align.held[s].pop_front() else {
                            break;
                        };
                        if matches!(m, Msg::Records(..)) {
                            self.shared.held[self.info.subtask][s].fetch_sub(1, Ordering::AcqRel);
                        }
                        match self.apply(&mut op, &mut align, &mut stats, &mut outputs, m)? {
                            Flow::Continue => {}
                            Flow::Aligned => {
                                flow = Flow::Aligned;
                                break 'drain;
                            }
                            f => {
                                flow = f;
                                break 'drain;
                            }
                        }
                    }
                }
            }
            match flow {
                Flow::Ended => {
                    return Ok(KeyedExit {
                        op: Some(op),
                        stats,
                    });
                }
                Flow::Disconnected => return Ok(KeyedExit { op: None, stats }),
                _ => {}
            }
        }
    }

    fn apply(
        &self,
        op: &mut P,
        align: &mut Alignment<P::Event>,
        stats: &mut KeyedInstanceStats,
        outputs: &mut Vec<P::Output>,
        msg: Msg<P::Event>,
    ) -> Result<Flow, StateError> {
        match msg {
            Msg::Records(_, batch) => {
                let n = batch.len() as u64;
                let t = Instant::now();
                let keep = self.out.is_some();
                for e in batch {
                    op.process(e, &mut |o| {
                        if keep {
                            outputs.push(o)
                        }
                    })?;
                }
                stats.busy += t.elapsed();
                stats.events += n;
                self.shared.processed.fetch_add(n, Ordering::Relaxed);
                if let Some(out) = &self.out {
                    if !outputs.is_empty() && out.send(std::mem::take(outputs)).is_err() {
                        return Ok(Flow::Disconnected);
                    }
                }
                Ok(Flow::Continue)
            }
            Msg::Barrier(from, id) => {
                let (current, since) = *align.current.get_or_insert((id, Instant::now()));
                if current != id {
                    return Err(StateError::CorruptSnapshot {
                        state: "barrier".into(),
                        subtask: self.info.subtask,
                        message: format!(
                            "barrier {id} from source {from} while aligning checkpoint {current}"
                        ),
                    });
                }
                align.blocked[from] = true;
                if !align.blocked.iter().all(|b| *b) {
                    return Ok(Flow::Continue);
                }
                let alignment = since.elapsed();
                let t = Instant::now();
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
                });
                align.blocked.iter_mut().for_each(|b| *b = false);
                align.current = None;
                Ok(Flow::Aligned)
            }
            Msg::End(from) => {
                align.ended[from] = true;
                if align.ended.iter().all(|e| *e) {
                    Ok(Flow::Ended)
                } else {
                    Ok(Flow::Continue)
                }
            }
        }
    }
}

/// Snapshots of one checkpoint, as they come in.
struct Pending {
    started: Instant,
    sources: Vec<Option<SubtaskState>>,
    keyed: Vec<Option<SubtaskState>>,
    read: u64,
    max_alignment: Duration,
    max_snapshot: Duration,
}

struct Coordinator {
    rx: Receiver<CoordMsg>,
    controls: Vec<Sender<Control>>,
    store: Arc<dyn JobCheckpointStore>,
    shared: Arc<Shared>,
    assigner: KeyGroupAssigner,
    sources: usize,
    keyed: usize,
    next_id: u64,
    events_at_start: u64,
    every_events: Option<u64>,
    interval: Option<Duration>,
    stop_at_end: bool,
    pending: BTreeMap<u64, Pending>,
    checkpoints: Vec<CheckpointStats>,
    finished_sources: usize,
    live: usize,
    stopping: Option<(u64, JobEnd)>,
    aborting: bool,
    failure: Option<JobError>,
    killed: bool,
}

impl Coordinator {
    fn run(mut self) -> Result<(JobEnd, Vec<CheckpointStats>), JobError> {
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

    fn handle(&mut self, msg: CoordMsg) {
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
            } => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.keyed[subtask] = Some(snapshot);
                    p.max_alignment = p.max_alignment.max(alignment);
                    p.max_snapshot = p.max_snapshot.max(snapshot_time);
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

    fn trigger(&mut self, stop: bool) -> u64 {
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

    fn stop(&mut self, end: JobEnd) {
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
    fn abort(&mut self) {
        self.aborting = true;
        self.shared.abort.store(true, Ordering::SeqCst);
        for id in std::mem::take(&mut self.pending).into_keys() {
            if self.killed {
                continue;
            }
            if let Err(e) = self.store.abort(id) {
                tracing::warn!(id, error = %e, "could not give up a begun checkpoint");
            }
        }
        // Sources waiting for a command see their channel close.
        self.controls.clear();
    }

    fn try_complete(&mut self, id: u64) {
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
    fn fail(&mut self, source: StateError) {
        if self.failure.is_none() {
            self.failure = Some(JobError::Failed {
                instance: Instance::Coordinator,
                source,
            });
        }
        self.abort();
    }
}
