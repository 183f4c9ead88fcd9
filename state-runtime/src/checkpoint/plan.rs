//! The one restore planner: from a checkpoint's metadata alone, what each new
//! subtask receives of every operator state (item runs) and of the keyed
//! state (key groups to own and old key groups to read). The restore, the
//! stored checkpoint's `plan_reads` and `statectl plan` all use it.

use super::{KeyedSection, StateMeta};
use crate::error::StateError;
use crate::keyed::plan::{KeyedRescalePlan, SubtaskRestore};
use crate::keygroup::KeyGroupAssigner;
use crate::repartition::operator::{ItemRun, StateShape, plan_subtask};

/// A rescale of one operator checkpoint to a new parallelism.
pub(crate) struct RestorePlan {
    /// Per state of the checkpoint (all of them, so that every new subtask
    /// sees the same split rotation), its mode and item count per old
    /// subtask.
    states: Vec<(crate::operator::StateMode, Vec<u64>)>,
    /// The keyed plan, if the checkpoint has keyed state.
    keyed: Option<KeyedRescalePlan>,
    parallelism: usize,
}

impl RestorePlan {
    /// Plans the restore of `metas` (per old subtask, its operator states)
    /// and, if `keyed` is given, of the keyed state (per old subtask, its
    /// keyed section) into `parallelism` subtasks, under `assigner` (the
    /// checkpoint's when `None`). A restore whose operator declares no keyed
    /// state passes no sections: their key groups are not planned.
    pub(crate) fn new(
        metas: &[&[StateMeta]],
        keyed: Option<&[Option<&KeyedSection>]>,
        assigner: Option<KeyGroupAssigner>,
        parallelism: usize,
    ) -> Result<Self, StateError> {
        if parallelism == 0 {
            return Err(StateError::ZeroParallelism);
        }
        let first = metas.first().copied().ok_or(StateError::ZeroParallelism)?;
        let states = (0..first.len())
            .map(|i| {
                let counts = metas.iter().map(|m| m[i].len() as u64).collect();
                (first[i].mode(), counts)
            })
            .collect();
        let old_keyed: Vec<&KeyedSection> =
            keyed.into_iter().flatten().flatten().copied().collect();
        let keyed = match old_keyed.first() {
            None => None,
            Some(_) if old_keyed.len() != metas.len() => {
                return Err(StateError::SubtaskMismatch {
                    subtask: 0,
                    detail: "only some subtasks have keyed state".into(),
                });
            }
            Some(k) => {
                let old = k.assigner();
                let new = assigner.unwrap_or(old);
                Some(KeyedRescalePlan::new(old, metas.len(), new, parallelism)?)
            }
        };
        Ok(Self {
            states,
            keyed,
            parallelism,
        })
    }

    /// The item runs new subtask `subtask` receives, per state of the
    /// checkpoint (in its order).
    pub(crate) fn items(&self, subtask: usize) -> Vec<Vec<ItemRun>> {
        let shapes: Vec<StateShape<'_>> = self
            .states
            .iter()
            .map(|(mode, counts)| StateShape {
                mode: *mode,
                counts,
            })
            .collect();
        plan_subtask(&shapes, subtask, self.parallelism)
    }

    /// What new subtask `subtask` restores of the keyed state, if the
    /// checkpoint has keyed state.
    pub(crate) fn keyed(&self, subtask: usize) -> Option<&SubtaskRestore> {
        self.keyed.as_ref().map(|p| &p.subtasks()[subtask])
    }
}
