//! What the runner runs: the [`KeyedProcessor`] trait, and what the factory
//! learns about each instance.

use crate::checkpoint::Checkpointed;
use crate::error::StateError;
use crate::key::Keyed;
use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};

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
    /// The input events its sources read.
    type Event: Keyed + Send + 'static;
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
