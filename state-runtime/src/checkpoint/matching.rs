//! How a checkpoint's states meet an operator's declarations: what a restore
//! and its up-front check refuse before anything is read.

use super::{KeyedSection, RestoreOptions, StateMeta};
use crate::checkpoint::Checkpointed;
use crate::error::StateError;
use crate::operator::{StateDescriptor, StateMode};
use crate::schema::StateType;

/// How a checkpoint's states meet an operator's declarations.
pub(crate) struct StateMatch {
    /// Per operator state of the checkpoint (in its order): whether the
    /// operator declares it (so it is restored).
    pub(crate) restored: Vec<bool>,
    /// Checkpointed states the operator does not declare, dropped (only with
    /// [`RestoreOptions::allow_non_restored_state`]).
    pub(crate) dropped_states: Vec<String>,
    /// Declared states the checkpoint lacks.
    pub(crate) missing_states: Vec<String>,
}

/// Matches the states of a checkpoint (the operator states of one old
/// subtask, all agree, and its keyed section) against an operator's
/// declarations: duplicate declarations, undeclared states (unless
/// dropping them is allowed), changed modes and changed types (through each
/// descriptor's type check) are errors.
pub(crate) fn match_states(
    declared: &[StateDescriptor],
    states: &[StateMeta],
    keyed: Option<&KeyedSection>,
    options: &RestoreOptions,
) -> Result<StateMatch, StateError> {
    if let Some((_, d)) = declared
        .iter()
        .enumerate()
        .find(|(i, d)| declared[..*i].iter().any(|e| e.name == d.name))
    {
        return Err(StateError::DuplicateState {
            state: d.name.to_owned(),
        });
    }
    let keyed_names: Vec<&str> =
        keyed.map_or_else(Vec::new, |k| k.states().iter().map(|s| s.name()).collect());
    let mut dropped_states = Vec::new();
    // Whether a checkpointed state is restored (declared) or dropped.
    let mut restores = |name: &str, mode: StateMode, recorded: Option<&StateType>| match declared
        .iter()
        .find(|d| d.name == name)
    {
        None if options.allow_non_restored_state => {
            dropped_states.push(name.to_owned());
            Ok(false)
        }
        None => Err(StateError::UnknownState {
            state: name.to_owned(),
        }),
        Some(d) if d.mode != mode => Err(StateError::ModeMismatch {
            state: name.to_owned(),
            declared: d.mode,
            found: mode,
        }),
        Some(d) => {
            if let Some(check) = d.type_check {
                check(name, recorded)?;
            }
            Ok(true)
        }
    };
    // In the checkpoint's order: operator states, then keyed states.
    let restored = states
        .iter()
        .map(|s| restores(s.name(), s.mode(), s.recorded_type()))
        .collect::<Result<Vec<bool>, StateError>>()?;
    for s in keyed.map_or(&[][..], |k| k.states()) {
        restores(s.name(), StateMode::Keyed, s.recorded_type())?;
    }
    let missing_states = declared
        .iter()
        .filter(|d| match d.mode {
            StateMode::Keyed => !keyed_names.contains(&d.name),
            _ => !states.iter().any(|s| s.name() == d.name),
        })
        .map(|d| d.name.to_owned())
        .collect();
    Ok(StateMatch {
        restored,
        dropped_states,
        missing_states,
    })
}

/// What `Restore::check_restore` checks,
/// given the states of the checkpoint's first old subtask (all agree).
pub(crate) fn check_restore<T: Checkpointed>(
    states: &[StateMeta],
    keyed: Option<&KeyedSection>,
    options: &RestoreOptions,
) -> Result<(), StateError> {
    let declared = T::state_descriptors();
    match_states(&declared, states, keyed, options)?;
    // As restore: the assigner matters only to an operator with keyed
    // state (all of a checkpoint's keyed states may have been dropped).
    let declares_keyed = declared.iter().any(|d| d.mode == StateMode::Keyed);
    if let (true, Some(keyed), Some(new)) = (declares_keyed, keyed, options.assigner) {
        keyed.assigner().check_restore_as(new)?;
    }
    Ok(())
}
