//! Operator state: state that is not scoped to a key, held by each parallel
//! instance (subtask) as a collection of independently redistributable items.
//!
//! An operator declares its state by implementing [`Checkpointed`], usually
//! with `#[derive(Checkpointed)]`. Each state has a name and a [`StateMode`]
//! that says how its items are redistributed when the parallelism changes:
//!
//! | mode | field type | on restore into `M` subtasks |
//! |---|---|---|
//! | [`Split`](StateMode::Split) | a [`ListState`] collection | the items of all old subtasks are dealt into `M` contiguous runs (Flink's `SPLIT_DISTRIBUTE`) |
//! | [`Union`](StateMode::Union) | a [`ListState`] collection | every new subtask gets every item of every old subtask |
//! | [`Broadcast`](StateMode::Broadcast) | any serde value | new subtask `j` gets the copy of old subtask `j % N` |
//!
//! ```
//! use std::collections::BTreeSet;
//! use state_runtime::prelude::*;
//!
//! #[derive(Checkpointed)]
//! struct Source {
//!     #[state(split)]
//!     offsets: Vec<(u32, u64)>,
//!     #[state(union, name = "schemas")]
//!     seen_schemas: BTreeSet<String>,
//!     #[state(skip)]
//!     polls: u64,
//! }
//!
//! let names: Vec<_> = Source::state_descriptors().iter().map(|d| d.name).collect();
//! assert_eq!(names, ["offsets", "schemas"]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::{RestoredState, SnapshotWriter, SubtaskSnapshot};
use crate::error::StateError;
use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};

/// How the items of one operator state are redistributed on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateMode {
    /// Flink's `SPLIT_DISTRIBUTE`: the items of all old subtasks, in old
    /// subtask order, are dealt into contiguous runs whose sizes differ by at
    /// most one. With unchanged parallelism each subtask gets its own items
    /// back.
    Split,
    /// Every new subtask gets all items of all old subtasks.
    Union,
    /// One value per subtask, the same on all of them by contract: new
    /// subtask `j` gets the copy of old subtask `j % N`.
    Broadcast,
    /// Keyed state (`KeyedValue`, `KeyedList`, `KeyedMap`): stored by key
    /// group; each new subtask gets the key groups it owns.
    Keyed,
}

impl StateMode {
    /// The mode as written in `#[state(..)]`: `"split"`, `"union"` or
    /// `"broadcast"`.
    ///
    /// ```
    /// assert_eq!(state_runtime::StateMode::Split.as_str(), "split");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            StateMode::Split => "split",
            StateMode::Union => "union",
            StateMode::Broadcast => "broadcast",
            StateMode::Keyed => "keyed",
        }
    }
}

impl fmt::Display for StateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The declaration of one operator state: its stable name, its mode and the
/// Rust type of its items (informational, from [`std::any::type_name`]).
///
/// ```
/// use state_runtime::{StateDescriptor, StateMode};
///
/// let d = StateDescriptor::new("offsets", StateMode::Split, std::any::type_name::<(u32, u64)>());
/// assert_eq!((d.name, d.mode, d.item_type), ("offsets", StateMode::Split, "(u32, u64)"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateDescriptor {
    /// The state's name, unique within the operator.
    pub name: &'static str,
    /// How its items are redistributed.
    pub mode: StateMode,
    /// The item type's name (`std::any::type_name`); not checked on restore,
    /// since it may change between compiler versions.
    pub item_type: &'static str,
}

impl StateDescriptor {
    /// A descriptor.
    pub fn new(name: &'static str, mode: StateMode, item_type: &'static str) -> Self {
        Self {
            name,
            mode,
            item_type,
        }
    }
}

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

    /// Replaces the state fields with the restored ones. Everything else (the
    /// fields the constructor set, `skip` fields) is left untouched, as in
    /// Flink's `initializeState`.
    ///
    /// Called by [`Checkpoint::restore_into`](crate::Checkpoint::restore_into),
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

/// A collection of serde items that can be `split` or `union` operator
/// state: it is snapshotted item by item and rebuilt from the items a
/// subtask receives.
///
/// Implemented for `Vec`, `VecDeque`, `HashMap`, `BTreeMap`, `HashSet` and
/// `BTreeSet`. A map's items are its `(key, value)` pairs. Collections whose
/// iteration order is unspecified (hash maps and sets) set
/// [`UNORDERED`](ListState::UNORDERED), so that snapshots sort their encoded
/// items and the same state always gives the same bytes.
///
/// ```
/// use std::collections::HashMap;
/// use state_runtime::ListState;
///
/// let m: HashMap<u32, String> = ListState::from_items(vec![(1, "a".to_string())]);
/// assert_eq!(m.items().collect::<Vec<_>>(), vec![(&1, &"a".to_string())]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a collection of serde items, so it cannot be `split` or `union` operator state",
    label = "not a collection of serde items",
    note = "split and union state must be a collection such as Vec<T>, VecDeque<T>, HashMap<K, V>, BTreeMap<K, V>, HashSet<T> or BTreeSet<T>, whose items implement Serialize and Deserialize",
    note = "a single value that every subtask holds a copy of is `#[state(broadcast)]`"
)]
pub trait ListState: Sized {
    /// One item, as restored.
    type Item: Serialize + DeserializeOwned;
    /// One item, as borrowed while snapshotting; it must serialize exactly as
    /// [`Item`](ListState::Item) does.
    type ItemRef<'a>: Serialize
    where
        Self: 'a;
    /// Whether iteration order is unspecified; if so, snapshots sort the
    /// encoded items by their bytes.
    const UNORDERED: bool = false;
    /// Whether the collection keeps at most one item per key (maps, sets),
    /// so that [`from_items`](ListState::from_items) would drop an item
    /// whose key an earlier item has. A restore then skips items identical
    /// to an earlier one and refuses differing items with the same key
    /// ([`StateError::ConflictingItems`]) instead of losing them. An
    /// implementation for a map or set type of your own (an `IndexMap`, say)
    /// must set it, or such items are lost silently.
    const UNIQUE_KEYS: bool = false;

    /// The items, in iteration order.
    fn items(&self) -> impl Iterator<Item = Self::ItemRef<'_>>;

    /// Rebuilds the collection from restored items, in restore order (by
    /// origin: old subtask, then position).
    fn from_items(items: impl IntoIterator<Item = Self::Item>) -> Self;
}

impl<T: Serialize + DeserializeOwned> ListState for Vec<T> {
    type Item = T;
    type ItemRef<'a>
        = &'a T
    where
        T: 'a;

    fn items(&self) -> impl Iterator<Item = &T> {
        self.iter()
    }

    fn from_items(items: impl IntoIterator<Item = T>) -> Self {
        items.into_iter().collect()
    }
}

impl<T: Serialize + DeserializeOwned> ListState for VecDeque<T> {
    type Item = T;
    type ItemRef<'a>
        = &'a T
    where
        T: 'a;

    fn items(&self) -> impl Iterator<Item = &T> {
        self.iter()
    }

    fn from_items(items: impl IntoIterator<Item = T>) -> Self {
        items.into_iter().collect()
    }
}

impl<T: Serialize + DeserializeOwned + Ord> ListState for BTreeSet<T> {
    type Item = T;
    type ItemRef<'a>
        = &'a T
    where
        T: 'a;
    const UNIQUE_KEYS: bool = true;

    fn items(&self) -> impl Iterator<Item = &T> {
        self.iter()
    }

    fn from_items(items: impl IntoIterator<Item = T>) -> Self {
        items.into_iter().collect()
    }
}

impl<K, V> ListState for BTreeMap<K, V>
where
    K: Serialize + DeserializeOwned + Ord,
    V: Serialize + DeserializeOwned,
{
    type Item = (K, V);
    type ItemRef<'a>
        = (&'a K, &'a V)
    where
        Self: 'a;
    const UNIQUE_KEYS: bool = true;

    fn items(&self) -> impl Iterator<Item = (&K, &V)> {
        self.iter()
    }

    fn from_items(items: impl IntoIterator<Item = (K, V)>) -> Self {
        items.into_iter().collect()
    }
}

impl<T, S> ListState for HashSet<T, S>
where
    T: Serialize + DeserializeOwned + Eq + Hash,
    S: BuildHasher + Default,
{
    type Item = T;
    type ItemRef<'a>
        = &'a T
    where
        Self: 'a;
    const UNORDERED: bool = true;
    const UNIQUE_KEYS: bool = true;

    fn items(&self) -> impl Iterator<Item = &T> {
        self.iter()
    }

    fn from_items(items: impl IntoIterator<Item = T>) -> Self {
        items.into_iter().collect()
    }
}

impl<K, V, S> ListState for HashMap<K, V, S>
where
    K: Serialize + DeserializeOwned + Eq + Hash,
    V: Serialize + DeserializeOwned,
    S: BuildHasher + Default,
{
    type Item = (K, V);
    type ItemRef<'a>
        = (&'a K, &'a V)
    where
        Self: 'a;
    const UNORDERED: bool = true;
    const UNIQUE_KEYS: bool = true;

    fn items(&self) -> impl Iterator<Item = (&K, &V)> {
        self.iter()
    }

    fn from_items(items: impl IntoIterator<Item = (K, V)>) -> Self {
        items.into_iter().collect()
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
    use super::*;
    use crate::checkpoint::{RestoredState, SnapshotWriter};
    use crate::keyed::KeyedState;
    use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};

    /// What the generated code does with a `split` or `union` field.
    pub struct ListOps<L> {
        /// Its descriptor.
        pub descriptor: fn(&'static str, StateMode) -> StateDescriptor,
        /// Writes it (`Split` or `Union`).
        pub write: fn(&mut SnapshotWriter<'_>, &str, StateMode, &L) -> Result<(), StateError>,
        /// Reads it back.
        pub read: fn(&mut RestoredState<'_>, &str) -> Result<L, StateError>,
    }

    /// The operations on a `split` or `union` field of type `L`.
    pub fn list_ops<L: ListState>() -> ListOps<L> {
        ListOps {
            descriptor: |name, mode| {
                StateDescriptor::new(name, mode, std::any::type_name::<L::Item>())
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
            },
            write: |w, name, value| w.broadcast(name, value).map(|_| ()),
            read: |r, name| r.broadcast(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<L: ListState>(l: &L) -> L
    where
        L::Item: Clone,
    {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for item in l.items() {
            crate::codec::encode_into(&item, &mut bytes, "t").unwrap();
            ends.push(bytes.len());
        }
        let mut start = 0;
        let items: Vec<L::Item> = ends
            .iter()
            .map(|&end| {
                let item = crate::codec::decode_exact(&bytes[start..end], "t").unwrap();
                start = end;
                item
            })
            .collect();
        L::from_items(items)
    }

    #[test]
    fn every_collection_round_trips_item_by_item() {
        let v = vec![(1u32, "a".to_string()), (2, "b".to_string())];
        assert_eq!(round_trip(&v), v);
        let d: VecDeque<i64> = [3, -1, 7].into_iter().collect();
        assert_eq!(round_trip(&d), d);
        let hm: HashMap<String, u64> = [("x".into(), 1), ("y".into(), 2)].into_iter().collect();
        assert_eq!(round_trip(&hm), hm);
        let bm: BTreeMap<u8, Vec<u8>> = [(1, vec![1]), (2, vec![])].into_iter().collect();
        assert_eq!(round_trip(&bm), bm);
        let hs: HashSet<u16> = [5, 6, 7].into_iter().collect();
        assert_eq!(round_trip(&hs), hs);
        let bs: BTreeSet<char> = ['a', 'z'].into_iter().collect();
        assert_eq!(round_trip(&bs), bs);
    }

    #[test]
    fn hash_collections_are_snapshotted_in_byte_order() {
        use crate::checkpoint::SnapshotWriter;
        // Below 251 a u32 is one byte, so byte order is numeric order.
        let set: HashSet<u32> = (0..200).rev().collect();
        let vec: Vec<u32> = (0..200).collect();
        let snap = |f: &dyn Fn(&mut SnapshotWriter)| {
            let mut w = SnapshotWriter::new();
            f(&mut w);
            w.finish().data().to_vec()
        };
        assert_eq!(
            snap(&|w| {
                w.split("s", &set).unwrap();
            }),
            snap(&|w| {
                w.split("s", &vec).unwrap();
            })
        );
        // Ordered collections keep their own order.
        let rev: Vec<u32> = (0..200).rev().collect();
        assert_ne!(
            snap(&|w| {
                w.split("s", &rev).unwrap();
            }),
            snap(&|w| {
                w.split("s", &vec).unwrap();
            })
        );
    }
}
