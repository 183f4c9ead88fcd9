//! [`Restore`]: the one restore entry of every operator checkpoint, whether
//! its bytes are in memory ([`Checkpoint`]), in storage
//! ([`StoredOperator`](crate::checkpoint::durable::StoredOperator)) or behind
//! a runner's handle
//! ([`OperatorCheckpoint`](crate::runner::OperatorCheckpoint)).

use super::restore::{self, StateBytes};
use super::{Checkpointed, KeyedSection, RestoreOptions, RestoreReport, StateMeta};
use crate::error::StateError;

pub(crate) mod sealed {
    use super::*;

    /// What a restore reads: the checkpoint's metadata, validated, and where
    /// its bytes come from.
    pub struct RestoreSource<'a> {
        pub(crate) checkpoint_id: u64,
        /// Per old subtask, its operator states.
        pub(crate) metas: Vec<&'a [StateMeta]>,
        /// Per old subtask, its keyed section.
        pub(crate) keyed: Vec<Option<&'a KeyedSection>>,
        pub(crate) bytes: &'a dyn StateBytes,
    }

    /// Implemented by the crate's operator checkpoints only.
    pub trait Source {
        /// Runs `f` on this checkpoint's [`RestoreSource`].
        fn with_source<R>(
            &self,
            f: impl FnOnce(RestoreSource<'_>) -> Result<R, StateError>,
        ) -> Result<R, StateError>;
    }
}

/// Restoring an operator checkpoint into new subtasks: one implementation,
/// whatever holds the bytes. In the prelude.
///
/// Implemented by [`Checkpoint`](super::Checkpoint) (in memory),
/// [`StoredOperator`](crate::checkpoint::durable::StoredOperator) (in
/// storage: it reads only the byte ranges the restoring subtask receives,
/// each checked against its CRC-32C before it is decoded) and
/// [`OperatorCheckpoint`](crate::runner::OperatorCheckpoint) (a runner's
/// checkpoint, either of the two).
pub trait Restore: sealed::Source {
    /// Restores subtask `subtask` of `parallelism` into `op`: the state fields
    /// get the items this subtask is now responsible for; everything else in
    /// `op` stays as constructed.
    ///
    /// A state `op` declares that the checkpoint lacks starts empty (a
    /// broadcast one keeps its constructed value) and is listed in
    /// [`RestoreReport::missing_states`]. A state in the checkpoint that `op`
    /// does not declare is [`StateError::UnknownState`] (see
    /// [`restore_into_with`](Restore::restore_into_with) to drop it); a
    /// state declared with another mode is [`StateError::ModeMismatch`].
    /// `parallelism == 0` is [`StateError::ZeroParallelism`] and
    /// `subtask >= parallelism` is [`StateError::SubtaskOutOfRange`]; corrupt
    /// item bytes are [`StateError::Decode`], naming the state.
    fn restore_into<T: Checkpointed>(
        &self,
        op: &mut T,
        subtask: usize,
        parallelism: usize,
    ) -> Result<RestoreReport, StateError> {
        self.restore_into_with(op, subtask, parallelism, &RestoreOptions::default())
    }

    /// Checks, without restoring anything, that operators of type `T` can be
    /// restored from this checkpoint with `options`: the errors
    /// [`restore_into_with`](Restore::restore_into_with) would give for
    /// the checkpoint's states against `T`'s declarations
    /// ([`StateError::UnknownState`], [`StateError::ModeMismatch`],
    /// [`StateError::DuplicateState`], and, through the descriptors' type
    /// checks, [`StateError::TypeChanged`] and
    /// [`StateError::KeyTypeChanged`]) and for a new assigner
    /// ([`StateError::MaxParallelismChanged`],
    /// [`StateError::AssignerKindChanged`]). A job checks this before it
    /// starts any instance.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// #[derive(Checkpointed, Default)]
    /// struct V1 { #[state(split)] offsets: Vec<u64>, #[state(union)] legacy: Vec<u8> }
    /// #[derive(Checkpointed, Default)]
    /// struct V2 { #[state(split)] offsets: Vec<u64> }
    ///
    /// let cp = Checkpoint::from_subtasks(vec![V1::default().snapshot()?])?;
    /// assert!(matches!(
    ///     cp.check_restore::<V2>(&RestoreOptions::default()),
    ///     Err(StateError::UnknownState { state }) if state == "legacy"
    /// ));
    /// cp.check_restore::<V2>(&RestoreOptions::default().allow_non_restored_state(true))?;
    /// # Ok::<(), StateError>(())
    /// ```
    fn check_restore<T: Checkpointed>(&self, options: &RestoreOptions) -> Result<(), StateError> {
        self.with_source(|source| {
            let first = source.metas.first().ok_or(StateError::ZeroParallelism)?;
            restore::check_restore::<T>(first, source.keyed[0], options)
        })
    }

    /// [`restore_into`](Restore::restore_into) with options.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// #[derive(Checkpointed, Default)]
    /// struct V1 {
    ///     #[state(split)] offsets: Vec<u64>,
    ///     #[state(union)] legacy: Vec<u8>,
    /// }
    /// #[derive(Checkpointed, Default)]
    /// struct V2 {
    ///     #[state(split)] offsets: Vec<u64>,
    ///     #[state(union)] schemas: Vec<String>,
    /// }
    ///
    /// let cp = Checkpoint::from_subtasks(vec![V1 { offsets: vec![7], legacy: vec![1] }.snapshot()?])?;
    /// let mut op = V2::default();
    /// assert!(matches!(cp.restore_into(&mut op, 0, 1), Err(StateError::UnknownState { .. })));
    ///
    /// let options = RestoreOptions::default().allow_non_restored_state(true);
    /// let report = cp.restore_into_with(&mut op, 0, 1, &options)?;
    /// assert_eq!(op.offsets, [7]);
    /// assert_eq!(report.dropped_states, ["legacy"]);
    /// assert_eq!(report.missing_states, ["schemas"]);
    /// # Ok::<(), StateError>(())
    /// ```
    fn restore_into_with<T: Checkpointed>(
        &self,
        op: &mut T,
        subtask: usize,
        parallelism: usize,
        options: &RestoreOptions,
    ) -> Result<RestoreReport, StateError> {
        self.with_source(|source| {
            restore::restore_operator(
                source.checkpoint_id,
                &source.metas,
                &source.keyed,
                source.bytes,
                op,
                subtask,
                parallelism,
                options,
            )
        })
    }
}
