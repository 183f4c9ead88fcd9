//! Operator state: state that is not scoped to a key, held by each parallel
//! instance (subtask) as a collection of independently redistributable items:
//! its modes, declarations and collections (re-exported at the crate root).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateError;
use crate::schema::StateType;

/// How the items of one operator state are redistributed on restore.
///
/// An operator declares its state by implementing [`Checkpointed`](crate::checkpoint::Checkpointed), usually
/// with `#[derive(Checkpointed)]`. Each state has a name and a [`StateMode`]
/// that says how its items are redistributed when the parallelism changes:
///
/// | mode | field type | on restore into `M` subtasks |
/// |---|---|---|
/// | [`Split`](StateMode::Split) | a [`ListState`] collection | the items of all old subtasks are dealt into `M` contiguous runs (Flink's `SPLIT_DISTRIBUTE`) |
/// | [`Union`](StateMode::Union) | a [`ListState`] collection | every new subtask gets every item of every old subtask |
/// | [`Broadcast`](StateMode::Broadcast) | any serde value | new subtask `j` gets the copy of old subtask `j % N` |
///
/// ```
/// use std::collections::BTreeSet;
/// use state_runtime::prelude::*;
///
/// #[derive(Checkpointed)]
/// struct Source {
///     #[state(split)]
///     offsets: Vec<(u32, u64)>,
///     #[state(union, name = "schemas")]
///     seen_schemas: BTreeSet<String>,
///     #[state(skip)]
///     polls: u64,
/// }
///
/// let names: Vec<_> = Source::state_descriptors().iter().map(|d| d.name).collect();
/// assert_eq!(names, ["offsets", "schemas"]);
/// ```
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
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StateDescriptor {
    /// The state's name, unique within the operator.
    pub name: &'static str,
    /// How its items are redistributed.
    pub mode: StateMode,
    /// The item type's name (`std::any::type_name`); not checked on restore,
    /// since it may change between compiler versions.
    pub item_type: &'static str,
    /// Checks a checkpoint's recorded type for this state (see
    /// [`crate::schema`]), so that a changed type is refused before any
    /// state is read, also by a runner's check before it starts a job. The
    /// derive sets it; without one, the type is checked when the state is
    /// decoded.
    pub type_check: Option<TypeCheck>,
}

/// A check of the type a checkpoint recorded for state `name` (`None`: a
/// format v1 checkpoint) against the declared one and its migrations.
pub type TypeCheck = fn(name: &str, recorded: Option<&StateType>) -> Result<(), StateError>;

/// Descriptors compare by name, mode and item type name (a check function
/// has no meaningful identity).
impl PartialEq for StateDescriptor {
    fn eq(&self, other: &Self) -> bool {
        (self.name, self.mode, self.item_type) == (other.name, other.mode, other.item_type)
    }
}

impl Eq for StateDescriptor {}

impl StateDescriptor {
    /// A descriptor, without a type check.
    pub fn new(name: &'static str, mode: StateMode, item_type: &'static str) -> Self {
        Self {
            name,
            mode,
            item_type,
            type_check: None,
        }
    }

    /// The same descriptor with the type check `check`.
    ///
    /// ```
    /// use state_runtime::{StateDescriptor, StateError, StateMode};
    /// use state_runtime::schema::StateType;
    ///
    /// // Accepts only checkpoints that recorded version 1.
    /// fn only_v1(name: &str, recorded: Option<&StateType>) -> Result<(), StateError> {
    ///     match recorded {
    ///         Some(t) if t.version() != 1 => Err(StateError::TypeChanged {
    ///             state: name.to_owned(),
    ///             what: "items",
    ///             recorded: t.to_string(),
    ///             declared: "v1".to_owned(),
    ///         }),
    ///         _ => Ok(()),
    ///     }
    /// }
    /// let d = StateDescriptor::new("offsets", StateMode::Split, "u64").with_type_check(only_v1);
    /// assert!(d.type_check.is_some());
    /// ```
    pub fn with_type_check(mut self, check: TypeCheck) -> Self {
        self.type_check = Some(check);
        self
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
    /// ([`StateError::ConflictingItems`](crate::StateError::ConflictingItems)) instead of losing them. An
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
