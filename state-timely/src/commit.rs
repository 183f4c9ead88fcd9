//! The committer: worker 0 collects the data file descriptions of each
//! checkpoint and, once progress tracking shows that every one has arrived,
//! commits the manifest create-only.
//!
//! Every worker sends exactly one description per operator for checkpoint
//! `b`, at time `b - 1`, while holding a capability for that time. When the
//! committer's input frontier passes `b - 1`, no description of `b` can
//! still be on its way, so all `W` per operator are there (anything else is
//! [`TimelyError::MissingFragments`]). The committer holds a capability for
//! `b - 1` until the manifest is written, so a probe downstream passes
//! `b - 1` only once checkpoint `b` is committed.

use std::collections::BTreeMap;
use std::rc::Rc;

use state_runtime::StateError;
use state_runtime::checkpoint::durable::{
    SubtaskFile, commit_checkpoint_create_only, referenced_files,
};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::error::TimelyError;
use crate::fault::{Fault, FaultPoint};
use crate::keyed::KEYED_INDEX;
use crate::shared::Shared;
use crate::source::SOURCE_OPERATOR;

/// The committer on `fragments`; its output carries each committed
/// checkpoint's id at time `id - 1` (on worker 0).
pub(crate) fn committer<'s>(
    fragments: Stream<'s, u64, Vec<Vec<u8>>>,
    shared: Rc<Shared>,
) -> Stream<'s, u64, Vec<u64>> {
    let pact = Exchange::new(|_: &Vec<u8>| 0);
    fragments.unary_frontier::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
        pact,
        "rescale-commit",
        move |_cap, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Vec<u8>>)> = BTreeMap::new();
            move |(input, frontier), output| {
                let index = output.output_index();
                input.for_each(|cap, data| {
                    let (Some(&t), Some(retained)) = (cap.least(), cap.retain_least(index)) else {
                        return;
                    };
                    pending
                        .entry(t)
                        .or_insert_with(|| (retained, Vec::new()))
                        .1
                        .append(data);
                });
                while let Some((&t, _)) = pending.first_key_value() {
                    if frontier.less_equal(&t) || shared.failed() {
                        break;
                    }
                    let (cap, fragments) = pending.pop_first().expect("a first entry").1;
                    let id = t + 1;
                    match commit(&shared, id, &fragments) {
                        Ok(()) => output.session(&cap).give(id),
                        Err(e) => shared.fail(e),
                    }
                }
            }
        },
    )
}

/// Checks and commits checkpoint `id` from its data file descriptions.
fn commit(shared: &Shared, id: u64, fragments: &[Vec<u8>]) -> Result<(), TimelyError> {
    let worker = shared.worker;
    let mut by_operator: [Vec<SubtaskFile>; 2] = [Vec::new(), Vec::new()];
    for bytes in fragments {
        let file = SubtaskFile::from_bytes(bytes).map_err(TimelyError::state(
            worker,
            format!("reading a data file description of checkpoint {id}"),
        ))?;
        let index = file.operator_index();
        if file.checkpoint_id() != id || index > KEYED_INDEX {
            return Err(TimelyError::State {
                worker,
                during: format!("collecting the data files of checkpoint {id}"),
                source: StateError::InvalidOperators {
                    reason: format!(
                        "file {} is for checkpoint {} and operator {index}",
                        file.name(),
                        file.checkpoint_id()
                    ),
                },
            });
        }
        by_operator[index].push(file);
    }
    let names = [SOURCE_OPERATOR, shared.operator.as_str()];
    for (index, files) in by_operator.iter_mut().enumerate() {
        // One per worker; a duplicate (with a missing one) is refused by
        // the commit's check that the files are the subtasks 0..W in order.
        files.sort_by_key(SubtaskFile::subtask);
        if files.len() != shared.workers {
            return Err(TimelyError::MissingFragments {
                checkpoint_id: id,
                operator: names[index].to_owned(),
                expected: shared.workers,
                found: files.len(),
            });
        }
    }
    Fault::check(&shared.fault, FaultPoint::BeforeManifest, id, worker);
    let storage = &*shared.storage;
    // Fencing: a run that finds this or a newer checkpoint committed has
    // been overtaken by another run and must not add to its history.
    let latest = storage
        .latest()
        .map_err(TimelyError::state(worker, "listing checkpoints"))?;
    if let Some(latest) = latest.filter(|l| *l >= id) {
        return Err(TimelyError::Fenced {
            run_id: shared.run_id.clone(),
            checkpoint_id: id,
            latest,
        });
    }
    let operators = [
        (names[0], by_operator[0].as_slice()),
        (names[1], by_operator[1].as_slice()),
    ];
    match commit_checkpoint_create_only(storage, id, &operators) {
        Ok(_) => {}
        Err(StateError::CheckpointAlreadyCommitted { .. }) => {
            return Err(TimelyError::Fenced {
                run_id: shared.run_id.clone(),
                checkpoint_id: id,
                latest: id,
            });
        }
        Err(e) => {
            return Err(TimelyError::state(
                worker,
                format!("committing checkpoint {id}"),
            )(e));
        }
    }
    shared.committed.set(Some(id));
    tracing::debug!(checkpoint_id = id, "checkpoint committed");
    Fault::check(&shared.fault, FaultPoint::AfterManifest, id, worker);
    // Retire checkpoints beyond the newest `retain` (and interrupted
    // attempts older than this one). A failure here leaves extra files,
    // never a broken checkpoint: the job goes on.
    if let Err(e) = storage.retain_last(shared.retain, &referenced_files) {
        tracing::warn!(checkpoint_id = id, error = %e, "could not retire old checkpoints");
    }
    Ok(())
}
