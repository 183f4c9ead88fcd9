//! In-memory checkpoints of operator state: one [`SubtaskSnapshot`] per
//! parallel instance, gathered into a [`Checkpoint`] that can be restored at
//! any parallelism.
//!
//! A subtask snapshot is one byte buffer holding every item of every state,
//! each encoded on its own (bincode 2 over serde), back to back, plus per
//! state its name, [`StateMode`], item type name and item boundaries (offsets
//! into the buffer). That is all a restore needs: planning moves item
//! references (byte ranges) between subtasks without decoding anything, and
//! a restoring subtask reads and decodes only the ranges it receives, each
//! item once. An on-disk format stores exactly this information, and can
//! serve the byte ranges lazily from files.
//!
//! ```
//! use state_runtime::prelude::*;
//!
//! #[derive(Checkpointed, Default)]
//! struct Source {
//!     #[state(split)]
//!     offsets: Vec<(u32, u64)>,
//! }
//!
//! // Parallelism 2: partitions 0..4 split over two subtasks.
//! let a = Source { offsets: vec![(0, 100), (1, 200)] };
//! let b = Source { offsets: vec![(2, 300), (3, 400)] };
//! let checkpoint = Checkpoint::from_subtasks(vec![a.snapshot()?, b.snapshot()?])?;
//!
//! // Restore at parallelism 3.
//! let mut restored = Vec::new();
//! for subtask in 0..3 {
//!     let mut s = Source::default();
//!     checkpoint.restore_into(&mut s, subtask, 3)?;
//!     restored.push(s.offsets);
//! }
//! assert_eq!(restored, [vec![(0, 100), (1, 200)], vec![(2, 300)], vec![(3, 400)]]);
//! # Ok::<(), StateError>(())
//! ```

mod capture;
mod checkpointed;
pub mod durable;
mod layers;
mod matching;
pub(crate) mod plan;
mod restore;
pub(crate) mod source;
mod writer;

use std::collections::HashSet;
use std::ops::Range;

use crate::error::StateError;
use crate::keygroup::{KeyGroup, KeyGroupAssigner, KeyGroupRange};
use crate::operator::StateMode;
use crate::schema::StateType;

pub use capture::{CapturedSnapshot, WriteSnapshot};
#[doc(hidden)]
pub use checkpointed::derive_support;
pub use checkpointed::{Checkpointed, RestoreContext};
pub use layers::KeyedLayer;
pub(crate) use layers::{Layers, Parts, check_layers};
pub use restore::{RestoreOptions, RestoreReport, RestoredState};
pub use source::Restore;
/// The derive of [`Checkpointed`] (the trait and the derive share the name).
#[cfg(feature = "derive")]
pub use state_macros::Checkpointed;
pub use writer::SnapshotWriter;

/// One state in a [`SubtaskSnapshot`]: its declaration and where its items
/// are in the snapshot's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMeta {
    name: String,
    mode: StateMode,
    item_type: String,
    /// The recorded version and shape (`None`: a format v1 checkpoint).
    ty: Option<StateType>,
    /// `len + 1` offsets into the data: item `i` is `bounds[i]..bounds[i + 1]`.
    bounds: Vec<u64>,
}

impl StateMeta {
    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the state is redistributed.
    pub fn mode(&self) -> StateMode {
        self.mode
    }

    /// The item type's name when the snapshot was taken.
    pub fn item_type(&self) -> &str {
        &self.item_type
    }

    /// The version and shape of its items, as recorded (`None` in format
    /// version 1 checkpoints, which restore unchecked).
    ///
    /// ```
    /// use state_runtime::checkpoint::SnapshotWriter;
    ///
    /// let mut w = SnapshotWriter::new();
    /// w.split("offsets", &vec![(0u32, 7u64)])?;
    /// let ty = w.finish().states()[0].recorded_type().cloned().unwrap();
    /// assert_eq!((ty.version(), ty.shape()), (1, Some("tuple(u32,u64)")));
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn recorded_type(&self) -> Option<&StateType> {
        self.ty.as_ref()
    }

    /// The number of items (1 for a broadcast state).
    pub fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Whether the state has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte range of item `index` in the snapshot's data.
    ///
    /// ```
    /// use state_runtime::checkpoint::SnapshotWriter;
    ///
    /// let mut w = SnapshotWriter::new();
    /// w.split("s", &vec![1u32, 300u32])?;
    /// let snap = w.finish();
    /// let meta = &snap.states()[0];
    /// assert_eq!(meta.item_range(0), Some(0..1));
    /// assert_eq!(meta.item_range(1), Some(1..4)); // 300: a 3-byte varint
    /// assert_eq!(meta.item_range(2), None);
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn item_range(&self, index: usize) -> Option<Range<u64>> {
        Some(*self.bounds.get(index)?..*self.bounds.get(index + 1)?)
    }

    /// The bytes of all its items in the snapshot's data.
    ///
    /// ```
    /// use state_runtime::checkpoint::SnapshotWriter;
    ///
    /// let mut w = SnapshotWriter::new();
    /// w.split("s", &vec![1u32, 300u32])?;
    /// assert_eq!(w.finish().states()[0].byte_len(), 4);
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn byte_len(&self) -> u64 {
        match (self.bounds.first(), self.bounds.last()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    /// The byte range of items `items` (which must be in `0..=len`).
    pub(crate) fn items_range(&self, items: &Range<u64>) -> Range<u64> {
        self.bounds[items.start as usize]..self.bounds[items.end as usize]
    }
}

/// The operator state of one subtask: every item of every state, encoded one
/// by one into one buffer, and per state its [`StateMeta`].
///
/// Made by [`Checkpointed::snapshot`] (or a [`SnapshotWriter`]). The same
/// state always gives the same bytes, hash collections included.
///
/// ```
/// use std::collections::HashSet;
/// use state_runtime::prelude::*;
///
/// #[derive(Checkpointed)]
/// struct Seen {
///     #[state(union)]
///     ids: HashSet<u64>,
/// }
///
/// let a = Seen { ids: (0..100).collect() };
/// let b = Seen { ids: (0..100).rev().collect() };
/// let snap = a.snapshot()?;
/// assert_eq!(snap, b.snapshot()?);
/// assert_eq!(snap.states()[0].name(), "ids");
/// assert_eq!(snap.states()[0].len(), 100);
/// # Ok::<(), StateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubtaskSnapshot {
    data: Vec<u8>,
    states: Vec<StateMeta>,
    keyed: Option<KeyedSection>,
}

impl SubtaskSnapshot {
    /// Every item of every operator state, back to back, then the keyed
    /// section (key group by key group).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The operator states, in the order they were written (declaration
    /// order).
    pub fn states(&self) -> &[StateMeta] {
        &self.states
    }

    /// The keyed state, if the operator has any.
    pub fn keyed(&self) -> Option<&KeyedSection> {
        self.keyed.as_ref()
    }
}

/// The keyed state of one subtask: for each key group it owned, in order,
/// the section of every keyed state (in declaration order), back to back in
/// the snapshot's data, with an offsets index.
///
/// Because a key group's sections are contiguous, and consecutive key groups
/// too, a restoring subtask reads one byte range per run of key groups it
/// takes over from an old subtask: the bytes of exactly those key groups.
///
/// ```
/// use state_runtime::prelude::*;
///
/// #[derive(Checkpointed, Default)]
/// struct Totals {
///     #[state(keyed)]
///     sums: KeyedValue<u64, i64>,
/// }
///
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(8)?);
/// let mut t = Totals::default();
/// t.bind_keyed(assigner, assigner.range_for_subtask(1, 0)?)?;
/// t.sums.insert(7, 70)?;
/// let snap = t.snapshot()?;
/// let keyed = snap.keyed().unwrap();
/// assert_eq!(keyed.assigner(), assigner);
/// assert_eq!(keyed.key_groups().len(), 8);
/// let kg = assigner.key_group(&7u64)?;
/// assert!(!keyed.key_group_range(kg).unwrap().is_empty());
/// assert!(keyed.key_group_range((kg + 1) % 8).unwrap().is_empty());
/// # Ok::<(), StateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedSection {
    assigner: KeyGroupAssigner,
    key_groups: KeyGroupRange,
    states: Vec<KeyedStateMeta>,
    /// `key_groups.len() * states.len() + 1` offsets into the data: the
    /// section of state `s` in the `g`-th owned key group is
    /// `bounds[g * S + s]..bounds[g * S + s + 1]`.
    bounds: Vec<u64>,
    /// Which key groups are whole (the others deltas), and the layers they
    /// build on.
    layers: Layers,
}

/// One keyed state in a [`KeyedSection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedStateMeta {
    name: String,
    state_type: String,
    /// The recorded version and key and value shapes (`None`: format v1).
    ty: Option<StateType>,
}

impl KeyedStateMeta {
    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's type name when the snapshot was taken.
    pub fn state_type(&self) -> &str {
        &self.state_type
    }

    /// The version and the key and value shapes, as recorded (`None` in
    /// format version 1 checkpoints, which restore unchecked).
    pub fn recorded_type(&self) -> Option<&StateType> {
        self.ty.as_ref()
    }
}

impl KeyedSection {
    /// How keys were assigned to key groups.
    pub fn assigner(&self) -> KeyGroupAssigner {
        self.assigner
    }

    /// The key groups the subtask owned.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The keyed states, in declaration order.
    pub fn states(&self) -> &[KeyedStateMeta] {
        &self.states
    }

    /// The byte range (in the snapshot's data) of every state's section of
    /// the owned key group `key_group`.
    pub fn key_group_range(&self, key_group: KeyGroup) -> Option<Range<u64>> {
        self.own_view().key_group_range(key_group)
    }

    /// The byte range of the owned key groups `key_groups` (all states).
    pub(crate) fn key_groups_bytes(&self, key_groups: KeyGroupRange) -> Option<Range<u64>> {
        self.own_view().key_groups_bytes(key_groups)
    }

    /// The byte range of state `state`'s section of the owned `key_group`.
    pub(crate) fn state_range(&self, key_group: KeyGroup, state: usize) -> Option<Range<u64>> {
        self.own_view().state_range(key_group, state)
    }

    /// The bytes of keyed state `state` (an index into
    /// [`states`](Self::states)) over all owned key groups; 0 for an index
    /// out of range.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// #[derive(Checkpointed, Default)]
    /// struct Op {
    ///     #[state(keyed)] a: KeyedValue<u64, u64>,
    ///     #[state(keyed)] b: KeyedValue<u64, String>,
    /// }
    ///
    /// let assigner = KeyGroupAssigner::native(MaxParallelism::new(4)?);
    /// let mut op = Op::default();
    /// op.bind_keyed(assigner, assigner.range_for_subtask(1, 0)?)?;
    /// op.a.insert(1, 1)?;
    /// op.b.insert(1, "x".repeat(100))?;
    /// let snap = op.snapshot()?;
    /// let k = snap.keyed().unwrap();
    /// assert!(k.state_bytes(1) > k.state_bytes(0));
    /// assert_eq!(k.state_bytes(0) + k.state_bytes(1), k.total_bytes());
    /// # Ok::<(), StateError>(())
    /// ```
    pub fn state_bytes(&self, state: usize) -> u64 {
        if state >= self.states.len() {
            return 0;
        }
        self.key_groups
            .iter()
            .filter_map(|kg| self.state_range(kg, state))
            .map(|r| r.end - r.start)
            .sum()
    }

    /// The bytes of the whole section.
    pub fn total_bytes(&self) -> u64 {
        self.bounds[self.bounds.len() - 1] - self.bounds[0]
    }

    /// Builds a section from its parts (for readers of the on-disk format,
    /// which validate it with the rest of the snapshot).
    pub(crate) fn from_parts(
        assigner: KeyGroupAssigner,
        key_groups: KeyGroupRange,
        states: Vec<(String, String, Option<StateType>)>,
        bounds: Vec<u64>,
    ) -> Self {
        Self {
            assigner,
            key_groups,
            states: states
                .into_iter()
                .map(|(name, state_type, ty)| KeyedStateMeta {
                    name,
                    state_type,
                    ty,
                })
                .collect(),
            bounds,
            layers: Layers::default(),
        }
    }

    /// The section with `layers` (as a manifest gives them).
    pub(crate) fn with_layers(mut self, layers: Layers) -> Self {
        self.layers = layers;
        self
    }

    /// The offsets index.
    pub(crate) fn bounds(&self) -> &[u64] {
        &self.bounds
    }
}

/// Checks a keyed section against its data length and the subtask it
/// claims to be: the range is the subtask's range at `parallelism`, the
/// offsets are complete, ordered and inside the data.
pub(crate) fn validate_keyed(
    keyed: &KeyedSection,
    data_len: u64,
    subtask: usize,
    parallelism: usize,
) -> Result<(), StateError> {
    let corrupt = |message: String| StateError::CorruptSnapshot {
        state: keyed
            .states
            .first()
            .map_or_else(|| "<keyed>".to_owned(), |s| s.name.clone()),
        subtask,
        message,
    };
    let expected = keyed.assigner.range_for_subtask(parallelism, subtask)?;
    if keyed.key_groups != expected {
        return Err(corrupt(format!(
            "keyed state covers key groups {}, but subtask {subtask} of {parallelism} owns {expected}",
            keyed.key_groups
        )));
    }
    let mut names = HashSet::new();
    for s in &keyed.states {
        if !names.insert(s.name.as_str()) {
            return Err(StateError::DuplicateState {
                state: s.name.clone(),
            });
        }
    }
    let want = keyed.key_groups.len() as usize * keyed.states.len() + 1;
    if keyed.bounds.len() != want {
        return Err(corrupt(format!(
            "keyed offsets index has {} entries, expected {want}",
            keyed.bounds.len()
        )));
    }
    if let Some(w) = keyed.bounds.windows(2).find(|w| w[0] > w[1]) {
        return Err(corrupt(format!(
            "keyed offsets out of order ({} > {})",
            w[0], w[1]
        )));
    }
    let end = keyed.bounds[keyed.bounds.len() - 1];
    if end > data_len {
        return Err(corrupt(format!(
            "keyed sections end at byte {end}, past the {data_len} bytes of data"
        )));
    }
    Ok(())
}

/// Checks one subtask's metadata against its data length: unique names,
/// item boundaries in order and inside the data, one value per broadcast
/// state.
pub(crate) fn validate_states(
    states: &[StateMeta],
    data_len: u64,
    subtask: usize,
) -> Result<(), StateError> {
    let mut names = HashSet::new();
    for s in states {
        let corrupt = |message: String| StateError::CorruptSnapshot {
            state: s.name.clone(),
            subtask,
            message,
        };
        if !names.insert(s.name.as_str()) {
            return Err(StateError::DuplicateState {
                state: s.name.clone(),
            });
        }
        if s.bounds.is_empty() {
            return Err(corrupt("no item boundaries".into()));
        }
        if let Some(w) = s.bounds.windows(2).find(|w| w[0] > w[1]) {
            return Err(corrupt(format!(
                "item boundaries out of order ({} > {})",
                w[0], w[1]
            )));
        }
        let end = s.bounds[s.bounds.len() - 1];
        if end > data_len {
            return Err(corrupt(format!(
                "items end at byte {end}, past the {data_len} bytes of data"
            )));
        }
        if s.mode == StateMode::Keyed {
            return Err(corrupt("keyed state among the item states".into()));
        }
        if s.mode == StateMode::Broadcast && s.len() != 1 {
            return Err(corrupt(format!(
                "a broadcast state holds one value, found {}",
                s.len()
            )));
        }
    }
    Ok(())
}

/// Checks that every subtask holds the same states as subtask 0: same
/// names, modes and item types, in the same order.
pub(crate) fn check_same_states(subtasks: &[&[StateMeta]]) -> Result<(), StateError> {
    let Some(first) = subtasks.first() else {
        return Err(StateError::ZeroParallelism);
    };
    for (i, states) in subtasks.iter().enumerate() {
        if states.len() != first.len() {
            let names = |s: &[StateMeta]| s.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
            return Err(StateError::SubtaskMismatch {
                subtask: i,
                detail: format!("states {:?}, expected {:?}", names(states), names(first)),
            });
        }
        for (a, b) in states.iter().zip(first.iter()) {
            let detail = if a.name != b.name {
                format!("state `{}` where `{}` was expected", a.name, b.name)
            } else if a.mode != b.mode {
                format!("state `{}` is `{}`, expected `{}`", a.name, a.mode, b.mode)
            } else if a.item_type != b.item_type {
                format!(
                    "state `{}` has items of type `{}`, expected `{}`",
                    a.name, a.item_type, b.item_type
                )
            } else if a.ty != b.ty {
                let shown = |t: &Option<StateType>| {
                    t.as_ref()
                        .map_or_else(|| "none".to_owned(), |t| t.to_string())
                };
                format!(
                    "state `{}` has the recorded type {}, expected {}",
                    a.name,
                    shown(&a.ty),
                    shown(&b.ty)
                )
            } else {
                continue;
            };
            return Err(StateError::SubtaskMismatch { subtask: i, detail });
        }
    }
    Ok(())
}

/// Checks that every subtask has keyed state or none does, with the same
/// assigner and the same keyed states in the same order.
pub(crate) fn check_same_keyed(subtasks: &[Option<&KeyedSection>]) -> Result<(), StateError> {
    let Some(first) = subtasks.first() else {
        return Err(StateError::ZeroParallelism);
    };
    for (i, k) in subtasks.iter().enumerate() {
        let detail = match (first, k) {
            (None, None) => continue,
            (Some(_), None) => "no keyed state, but subtask 0 has some".to_owned(),
            (None, Some(_)) => "keyed state, but subtask 0 has none".to_owned(),
            (Some(a), Some(b)) if a.assigner != b.assigner => format!(
                "keyed state assigned by {}, subtask 0 by {}",
                b.assigner, a.assigner
            ),
            (Some(a), Some(b)) if a.states != b.states => {
                let names =
                    |k: &KeyedSection| k.states.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
                format!("keyed states {:?}, expected {:?}", names(b), names(a))
            }
            _ => continue,
        };
        return Err(StateError::SubtaskMismatch { subtask: i, detail });
    }
    Ok(())
}

/// One operator's checkpoint: the [`SubtaskSnapshot`]s of its `N` subtasks
/// (subtask `i` at index `i`), restorable at any parallelism.
///
/// ```
/// use state_runtime::prelude::*;
///
/// #[derive(Checkpointed, Default)]
/// struct Op {
///     #[state(union)]
///     seen: Vec<String>,
/// }
///
/// let subtasks = vec![
///     Op { seen: vec!["a".into()] }.snapshot()?,
///     Op { seen: vec!["b".into(), "c".into()] }.snapshot()?,
/// ];
/// let checkpoint = Checkpoint::from_subtasks(subtasks)?.with_checkpoint_id(42);
/// assert_eq!((checkpoint.checkpoint_id(), checkpoint.parallelism()), (42, 2));
///
/// let mut op = Op::default();
/// let report = checkpoint.restore_into(&mut op, 0, 5)?;
/// assert_eq!(op.seen, ["a", "b", "c"]);
/// assert_eq!(report.items_restored, 3);
/// # Ok::<(), StateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    checkpoint_id: u64,
    subtasks: Vec<SubtaskSnapshot>,
}

impl Checkpoint {
    /// One operator's checkpoint at parallelism `subtasks.len()`, with
    /// checkpoint id 0.
    ///
    /// Fails if there are no subtasks ([`StateError::ZeroParallelism`]), if a
    /// snapshot's metadata does not fit its data
    /// ([`StateError::CorruptSnapshot`], [`StateError::DuplicateState`]), or
    /// if the subtasks do not all hold the same states, with the same modes
    /// and item types, in the same order ([`StateError::SubtaskMismatch`]).
    pub fn from_subtasks(subtasks: Vec<SubtaskSnapshot>) -> Result<Self, StateError> {
        for (i, s) in subtasks.iter().enumerate() {
            validate_states(&s.states, s.data.len() as u64, i)?;
            if let Some(k) = &s.keyed {
                validate_keyed(k, s.data.len() as u64, i, subtasks.len())?;
            }
        }
        let metas: Vec<&[StateMeta]> = subtasks.iter().map(|s| s.states()).collect();
        check_same_states(&metas)?;
        let keyed: Vec<Option<&KeyedSection>> = subtasks.iter().map(|s| s.keyed()).collect();
        check_same_keyed(&keyed)?;
        Ok(Self {
            checkpoint_id: 0,
            subtasks,
        })
    }

    /// Sets the checkpoint id, which restoring operators see in their
    /// [`RestoreContext`].
    pub fn with_checkpoint_id(mut self, checkpoint_id: u64) -> Self {
        self.checkpoint_id = checkpoint_id;
        self
    }

    /// The checkpoint id.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// The parallelism the checkpoint was taken at.
    pub fn parallelism(&self) -> usize {
        self.subtasks.len()
    }

    /// The subtask snapshots, subtask `i` at index `i`.
    pub fn subtasks(&self) -> &[SubtaskSnapshot] {
        &self.subtasks
    }
}

impl source::sealed::Source for Checkpoint {
    fn with_source<R>(
        &self,
        f: impl FnOnce(source::sealed::RestoreSource<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        f(source::sealed::RestoreSource {
            checkpoint_id: self.checkpoint_id,
            metas: self.subtasks.iter().map(|s| s.states()).collect(),
            keyed: self.subtasks.iter().map(|s| s.keyed()).collect(),
            bytes: &self.subtasks,
        })
    }
}

impl Restore for Checkpoint {}
