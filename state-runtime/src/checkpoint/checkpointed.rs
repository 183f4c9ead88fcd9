//! [`Checkpointed`]: the contract between an operator and the checkpoints of
//! its state, and [`RestoreContext`], what a restore tells the operator.

use super::{RestoredState, SnapshotWriter, SubtaskSnapshot};
use crate::error::StateError;
use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};
use crate::operator::StateDescriptor;

/// What a restoring operator learns about the restore besides its state.
///
/// A source uses it to tell that it got an empty share (for example, more
/// subtasks than partitions), or that the job was rescaled.
///
/// ```
/// use state_runtime::prelude::*;
///
/// #[derive(Checkpointed, Default)]
/// #[checkpointed(on_restore = restored)]
/// struct Source {
///     #[state(split)]
///     offsets: Vec<(u32, u64)>,
///     #[state(skip)]
///     idle: bool,
/// }
///
/// impl Source {
///     fn restored(&mut self, ctx: &RestoreContext) {
///         self.idle = self.offsets.is_empty();
///         assert!(ctx.subtask < ctx.parallelism);
///     }
/// }
///
/// let old = Source { offsets: vec![(0, 10)], idle: false };
/// let checkpoint = Checkpoint::from_subtasks(vec![old.snapshot()?])?.with_checkpoint_id(7);
/// let mut second = Source::default();
/// let report = checkpoint.restore_into(&mut second, 1, 2)?;
/// assert!(second.idle);
/// assert_eq!(report.context.old_parallelism, 1);
/// assert_eq!(report.context.checkpoint_id, 7);
/// assert!(report.context.is_rescale());
/// # Ok::<(), StateError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreContext {
    /// The index of the restoring subtask, in `0..parallelism`.
    pub subtask: usize,
    /// The new parallelism.
    pub parallelism: usize,
    /// The parallelism the checkpoint was taken at.
    pub old_parallelism: usize,
    /// The id of the checkpoint being restored.
    pub checkpoint_id: u64,
}

impl RestoreContext {
    /// Whether the parallelism changed.
    pub fn is_rescale(&self) -> bool {
        self.parallelism != self.old_parallelism
    }
}

/// An operator whose state can be snapshotted and restored at another
/// parallelism. Derive it with `#[derive(Checkpointed)]` (see the derive's
/// documentation for the attributes).
///
/// By hand, [`snapshot`](Checkpointed::snapshot) writes each state through a
/// [`SnapshotWriter`] and
/// [`restore`](Checkpointed::restore) takes each state back from the
/// [`RestoredState`]:
///
/// ```
/// use state_runtime::prelude::*;
///
/// struct Counter { seen: Vec<u64>, label: &'static str }
///
/// impl Checkpointed for Counter {
///     fn state_descriptors() -> Vec<StateDescriptor> {
///         vec![StateDescriptor::new("seen", StateMode::Union, std::any::type_name::<u64>())]
///     }
///     fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
///         w.union("seen", &self.seen)?;
///         Ok(())
///     }
///     fn restore(&mut self, state: &mut RestoredState<'_>) -> Result<(), StateError> {
///         self.seen = state.list("seen")?;
///         Ok(())
///     }
/// }
///
/// let a = Counter { seen: vec![1, 2], label: "a" };
/// let b = Counter { seen: vec![3], label: "b" };
/// let cp = Checkpoint::from_subtasks(vec![a.snapshot()?, b.snapshot()?])?;
/// let mut c = Counter { seen: vec![], label: "c" };
/// cp.restore_into(&mut c, 0, 1)?;
/// assert_eq!((c.seen, c.label), (vec![1, 2, 3], "c"));
/// # Ok::<(), StateError>(())
/// ```
pub trait Checkpointed {
    /// The operator's states, in declaration order. Names are unique.
    fn state_descriptors() -> Vec<StateDescriptor>
    where
        Self: Sized;

    /// Encodes every state, item by item, into `writer` (what the derive
    /// generates). The writer may stream into a data file through a bounded
    /// buffer, so that a durable checkpoint never holds a second copy of the
    /// state in memory.
    fn write_snapshot(&self, writer: &mut SnapshotWriter<'_>) -> Result<(), StateError>;

    /// The snapshot in memory: [`write_snapshot`](Checkpointed::write_snapshot)
    /// into a fresh [`SnapshotWriter`]. Not meant to be overridden: durable
    /// checkpoints call `write_snapshot` directly.
    fn snapshot(&self) -> Result<SubtaskSnapshot, StateError> {
        let mut writer = SnapshotWriter::new();
        self.write_snapshot(&mut writer)?;
        Ok(writer.finish())
    }

    /// A snapshot of the state now, to be written later while the operator
    /// goes on: the synchronous part of an asynchronous snapshot. Its cost
    /// does not grow with the keyed state (see
    /// [`CapturedSnapshot`](crate::checkpoint::CapturedSnapshot)).
    fn capture(&self) -> Result<super::CapturedSnapshot, StateError> {
        super::CapturedSnapshot::capture(self, false)
    }

    /// [`capture`](Checkpointed::capture), and from now on the keyed states
    /// record which keys change (a hash per write), so that the next such
    /// capture can be written as a delta of this one by
    /// [`write_subtask_incremental`](crate::checkpoint::durable::write_subtask_incremental).
    /// A plain `capture` stops the recording.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// #[derive(Checkpointed, Default)]
    /// struct Counts {
    ///     #[state(keyed)]
    ///     counts: KeyedValue<u64, u64>,
    /// }
    ///
    /// let a = KeyGroupAssigner::native(MaxParallelism::new(8)?);
    /// let mut op = Counts::default();
    /// op.bind_keyed(a, a.range_for_subtask(1, 0)?)?;
    /// op.counts.insert(1u64, 1)?;
    /// let first = op.capture_tracking_changes()?;
    /// op.counts.insert(2u64, 1)?;
    /// let second = op.capture_tracking_changes()?; // knows that key 2 changed
    /// # drop((first, second));
    /// # Ok::<(), StateError>(())
    /// ```
    fn capture_tracking_changes(&self) -> Result<super::CapturedSnapshot, StateError> {
        super::CapturedSnapshot::capture(self, true)
    }

    /// Replaces the state fields with the restored ones. Everything else (the
    /// fields the constructor set, `skip` fields) is left untouched, as in
    /// Flink's `initializeState`.
    ///
    /// Called by [`Restore::restore_into`](crate::checkpoint::Restore::restore_into),
    /// which has already checked the checkpoint's states against
    /// [`state_descriptors`](Checkpointed::state_descriptors).
    fn restore(&mut self, state: &mut RestoredState<'_>) -> Result<(), StateError>;

    /// Binds every keyed state to `assigner` and the key groups `range` this
    /// instance owns (the field's state name is set too). A runner calls it
    /// when an instance starts without a checkpoint; a restore binds keyed
    /// state itself. Operators without keyed state do nothing.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// #[derive(Checkpointed, Default)]
    /// struct Totals {
    ///     #[state(keyed)]
    ///     sums: KeyedValue<u32, i64>,
    /// }
    ///
    /// let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
    /// let mut op = Totals::default();
    /// op.bind_keyed(assigner, assigner.range_for_subtask(2, 1)?)?;
    /// assert_eq!(op.sums.binding(), Some((assigner, KeyGroupRange::new(64, 127))));
    /// # Ok::<(), StateError>(())
    /// ```
    fn bind_keyed(
        &mut self,
        assigner: KeyGroupAssigner,
        range: KeyGroupRange,
    ) -> Result<(), StateError> {
        let _ = (assigner, range);
        Ok(())
    }
}

/// Helpers the derive's generated code calls; not public API.
///
/// Each state field's type meets its trait bound in exactly one generic
/// function, `list_ops` or `broadcast_ops`, which hands back plain
/// function pointers. So a field type that does not fit its mode gives one
/// error (the same diagnostic from each generated method, which the compiler
/// reports once), spanned at the field type.
#[doc(hidden)]
pub mod derive_support {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::checkpoint::{RestoredState, SnapshotWriter};
    use crate::error::StateError;
    use crate::keyed::KeyedState;
    use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};
    use crate::operator::{ListState, StateDescriptor, StateMode};
    use crate::schema::{self, Migrations, Part, StateType};

    /// What the generated code does with a `split` or `union` field.
    pub struct ListOps<L> {
        /// Its descriptor.
        pub descriptor: fn(&'static str, StateMode) -> StateDescriptor,
        /// Writes it (`Split` or `Union`).
        pub write: fn(&mut SnapshotWriter<'_>, &str, StateMode, &L) -> Result<(), StateError>,
        /// Reads it back.
        pub read: fn(&mut RestoredState<'_>, &str) -> Result<L, StateError>,
    }

    /// Checks a recorded item type against `T` and the declared
    /// `migrations` (the descriptors' type check).
    pub fn check_item_type<T: DeserializeOwned>(
        name: &str,
        recorded: Option<&StateType>,
        migrations: Option<&Migrations<T>>,
    ) -> Result<(), StateError> {
        schema::check(name, Part::Items, recorded, None, migrations).map(|_| ())
    }

    /// Checks a recorded keyed type against a fresh `T` named `name`, after
    /// `setup` (which declares its migrations, if any).
    pub fn check_keyed_type<T: KeyedState + Default>(
        name: &str,
        recorded: Option<&StateType>,
        setup: impl FnOnce(&mut T),
    ) -> Result<(), StateError> {
        let mut state = T::default();
        state.set_state_name(name);
        setup(&mut state);
        state.prepare_restore(recorded)
    }

    /// The operations on a `split` or `union` field of type `L`.
    pub fn list_ops<L: ListState>() -> ListOps<L> {
        ListOps {
            descriptor: |name, mode| {
                StateDescriptor::new(name, mode, std::any::type_name::<L::Item>())
                    .with_type_check(|n, r| check_item_type::<L::Item>(n, r, None))
            },
            write: |w, name, mode, state| {
                match mode {
                    StateMode::Union => w.union(name, state)?,
                    _ => w.split(name, state)?,
                };
                Ok(())
            },
            read: |r, name| r.list(name),
        }
    }

    /// What the generated code does with a `broadcast` field.
    pub struct BroadcastOps<T> {
        /// Its descriptor.
        pub descriptor: fn(&'static str) -> StateDescriptor,
        /// Writes it.
        pub write: fn(&mut SnapshotWriter<'_>, &str, &T) -> Result<(), StateError>,
        /// Reads it back (`None`: not in the checkpoint).
        pub read: fn(&mut RestoredState<'_>, &str) -> Result<Option<T>, StateError>,
    }

    /// What the generated code does with a `keyed` field.
    pub struct KeyedOps<T> {
        /// Its descriptor.
        pub descriptor: fn(&'static str) -> StateDescriptor,
        /// The field as the writer takes it.
        pub as_dyn: fn(&T) -> &dyn KeyedState,
        /// Names and binds it.
        pub bind: fn(&mut T, &str, KeyGroupAssigner, KeyGroupRange) -> Result<(), StateError>,
        /// A fresh, unbound `T` to restore into.
        pub new: fn() -> T,
        /// The field as a restore fills it
        /// ([`RestoredState::keyed_states`]).
        pub as_dyn_mut: fn(&mut T) -> &mut dyn KeyedState,
    }

    /// The operations on a `keyed` field of type `T`.
    pub fn keyed_ops<T: KeyedState + Default>() -> KeyedOps<T> {
        KeyedOps {
            descriptor: |name| {
                StateDescriptor::new(name, StateMode::Keyed, std::any::type_name::<T>())
                    .with_type_check(|n, r| check_keyed_type::<T>(n, r, |_| ()))
            },
            as_dyn: |t| t,
            bind: |t, name, assigner, range| {
                t.set_state_name(name);
                t.bind(assigner, range)
            },
            new: T::default,
            as_dyn_mut: |t| t,
        }
    }

    /// The operations on a `broadcast` field of type `T`.
    pub fn broadcast_ops<T: Serialize + DeserializeOwned>() -> BroadcastOps<T> {
        BroadcastOps {
            descriptor: |name| {
                StateDescriptor::new(name, StateMode::Broadcast, std::any::type_name::<T>())
                    .with_type_check(|n, r| check_item_type::<T>(n, r, None))
            },
            write: |w, name, value| w.broadcast(name, value).map(|_| ()),
            read: |r, name| r.broadcast(name),
        }
    }
}
