//! The keyed stage: a worker's instance of the user's keyed operator, fed
//! by key group, checkpointed at every epoch boundary.
//!
//! Records arrive with their epoch as timestamp. Records of the current
//! epoch are processed at once; records of later epochs, which a faster
//! worker's source may already send, wait in a buffer. Once the input
//! frontier passes boundary `b` (no record of a time `< b` can come any
//! more), the stage writes its data files of checkpoint `b` (the keyed
//! state, and the worker's source offsets at `b`), sends one description
//! of each to the committer at time `b - 1`, downgrades its capability to
//! `b` and takes up the buffered records of epoch `b`.

use std::collections::BTreeMap;
use std::rc::Rc;

use state_runtime::StateError;
use state_runtime::checkpoint::durable::write_subtask_staged;
use state_runtime::runner::KeyedProcessor;
use timely::ExchangeData;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::progress::frontier::AntichainRef;

use crate::error::TimelyError;
use crate::fault::{Fault, FaultPoint};
use crate::routing::KeyGroupRouter;
use crate::shared::Shared;
use crate::source::SOURCE_OPERATOR;

/// Position of the source in the job's checkpoints.
pub(crate) const SOURCE_INDEX: usize = 0;
/// Position of the keyed operator in the job's checkpoints.
pub(crate) const KEYED_INDEX: usize = 1;

type Fragments = CapacityContainerBuilder<Vec<Vec<u8>>>;

struct Stage<P: KeyedProcessor, O> {
    processor: P,
    on_output: O,
    shared: Rc<Shared>,
    /// The next checkpoint boundary: records of times `< boundary - 1`
    /// are all processed, those of time `boundary - 1` are processed on
    /// arrival.
    boundary: u64,
    /// At time `boundary - 1`; `None` once the run's last checkpoint is
    /// written.
    cap: Option<Capability<u64>>,
    /// Records of epochs `>= boundary`, by epoch.
    early: BTreeMap<u64, Vec<P::Event>>,
}

/// The keyed stage on `records`: exchanges them to the worker owning their
/// key group, runs `processor` on them, hands its outputs to `on_output`,
/// and returns the stream of data file descriptions (at time `b - 1` for
/// checkpoint `b`).
pub(crate) fn keyed_stage<'s, P, O>(
    records: Stream<'s, u64, Vec<P::Event>>,
    router: KeyGroupRouter,
    processor: P,
    on_output: O,
    shared: Rc<Shared>,
    resume_epoch: u64,
) -> Stream<'s, u64, Vec<Vec<u8>>>
where
    P: KeyedProcessor,
    P::Event: ExchangeData + Clone,
    O: FnMut(P::Output) + 'static,
{
    let pact = Exchange::new(move |e: &P::Event| router.worker_for(e));
    records.unary_frontier::<Fragments, _, _, _>(pact, "rescale-keyed", move |cap, _info| {
        let mut cap = cap;
        cap.downgrade(&resume_epoch);
        let mut stage = Stage {
            processor,
            on_output,
            shared,
            boundary: resume_epoch + 1,
            cap: Some(cap),
            early: BTreeMap::new(),
        };
        move |(input, frontier), output| {
            input.for_each(|cap, data| stage.receive(cap.least().copied(), data));
            stage.advance(frontier.frontier(), output);
        }
    })
}

impl<P: KeyedProcessor, O: FnMut(P::Output)> Stage<P, O> {
    fn receive(&mut self, time: Option<u64>, data: &mut Vec<P::Event>) {
        match time {
            _ if self.shared.failed() || self.cap.is_none() => data.clear(),
            Some(t) if t < self.boundary => {
                for event in data.drain(..) {
                    self.process(event);
                }
            }
            Some(t) => self.early.entry(t).or_default().append(data),
            None => data.clear(),
        }
    }

    fn process(&mut self, event: P::Event) {
        if self.shared.failed() {
            return;
        }
        match self.processor.process(event, &mut self.on_output) {
            Ok(()) => self.shared.events.set(self.shared.events.get() + 1),
            Err(e) => self.shared.fail(TimelyError::State {
                worker: self.shared.worker,
                during: "processing a record".into(),
                source: e,
            }),
        }
    }

    /// Checkpoints every boundary the frontier has passed.
    fn advance(
        &mut self,
        frontier: AntichainRef<'_, u64>,
        output: &mut OutputBuilderSession<'_, u64, Fragments>,
    ) {
        loop {
            if self.shared.failed() {
                return;
            }
            let Some(cap) = self.cap.as_mut() else {
                return;
            };
            let b = self.boundary;
            if frontier.less_than(&b) {
                return;
            }
            // Every record has a time below the run's last boundary, so
            // once the input is over, a boundary past it is not written
            // (every worker writes the same boundaries).
            let last = self.shared.final_boundary.get();
            if frontier.is_empty() && last.is_some_and(|f| b > f) {
                self.cap = None;
                return;
            }
            match snapshot(&self.shared, &self.processor, b) {
                Ok(fragments) => output.session(&*cap).give_iterator(fragments.into_iter()),
                Err(e) => {
                    self.shared.fail(e);
                    return;
                }
            }
            if frontier.is_empty() && last.is_none() {
                self.cap = None;
                return;
            }
            cap.downgrade(&b);
            self.boundary = b + 1;
            if let Some(events) = self.early.remove(&b) {
                for event in events {
                    self.process(event);
                }
            }
        }
    }
}

/// Writes worker's data files of checkpoint `b` and describes them.
fn snapshot<P: KeyedProcessor>(
    shared: &Shared,
    processor: &P,
    b: u64,
) -> Result<[Vec<u8>; 2], TimelyError> {
    let worker = shared.worker;
    Fault::check(&shared.fault, FaultPoint::BeforeDataFiles, b, worker);
    let storage = &*shared.storage;
    let during = |what: &str| format!("writing the {what} data file of checkpoint {b}");
    let source = shared
        .source_at(b, |captured| {
            let captured = captured.ok_or_else(|| StateError::InvalidOperators {
                reason: format!("no capture of the source for boundary {b}"),
            })?;
            write_subtask_staged(
                storage,
                b,
                SOURCE_INDEX,
                SOURCE_OPERATOR,
                worker,
                &shared.run_id,
                captured,
            )
        })
        .map_err(TimelyError::state(worker, during("source")))?;
    let keyed = write_subtask_staged(
        storage,
        b,
        KEYED_INDEX,
        &shared.operator,
        worker,
        &shared.run_id,
        processor,
    )
    .map_err(TimelyError::state(worker, during("keyed")))?;
    shared.prune_sources(b);
    Fault::check(&shared.fault, FaultPoint::AfterDataFiles, b, worker);
    tracing::debug!(worker, checkpoint_id = b, "data files written");
    Ok([source.to_bytes(), keyed.to_bytes()])
}
