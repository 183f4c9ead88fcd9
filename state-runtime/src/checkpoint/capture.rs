//! Asynchronous snapshots: [`CapturedSnapshot`], a snapshot taken now and
//! written later, and [`WriteSnapshot`], what a snapshot is written from.

use std::sync::Arc;

use super::{Checkpointed, Parts, SnapshotWriter, SubtaskSnapshot};
use crate::error::StateError;
use crate::keyed::{FrozenKeyGroups, SnapshotPosition};

/// A snapshot of an operator taken at one moment and written later,
/// possibly on another thread, while the operator goes on changing: what
/// [`Checkpointed::capture`] gives.
///
/// Taking it encodes the operator states (small: offsets, buffers) and
/// freezes the keyed states without copying an entry: each keyed state's
/// pages (up to 512 entries each) are shared with the snapshot, and a
/// page the operator changes before the snapshot is written is first
/// encoded for it. Writing it gives the bytes a snapshot taken at capture
/// time would have had. It is written once; memory beyond the live state
/// is the pages the operator changed before they were written, encoded.
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
/// for k in 0..10_000u64 {
///     op.counts.insert(k, 1)?;
/// }
/// let at_capture = op.snapshot()?;
/// let captured = op.capture()?; // copies no entry
/// // The operator goes on; the snapshot keeps the capture's state.
/// for k in 0..10_000u64 {
///     *op.counts.get_mut(&k)?.unwrap() += 1;
/// }
/// op.counts.insert(10_000u64, 5)?;
/// let written = std::thread::spawn(move || captured.into_snapshot()).join().unwrap()?;
/// assert_eq!(written, at_capture);
/// # Ok::<(), StateError>(())
/// ```
pub struct CapturedSnapshot {
    /// The operator states, and the keyed states' metadata without data.
    snapshot: SubtaskSnapshot,
    /// The keyed states, in the order of the metadata.
    keyed: Vec<Arc<dyn FrozenKeyGroups>>,
}

impl std::fmt::Debug for CapturedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturedSnapshot")
            .field("operator_states", &self.snapshot.states().len())
            .field("keyed_states", &self.keyed.len())
            .finish()
    }
}

impl CapturedSnapshot {
    pub(crate) fn capture<T: Checkpointed + ?Sized>(
        op: &T,
        track_changes: bool,
    ) -> Result<Self, StateError> {
        let mut writer = SnapshotWriter::capturing(track_changes);
        op.write_snapshot(&mut writer)?;
        let (snapshot, keyed) = writer.finish_capture()?;
        Ok(Self { snapshot, keyed })
    }

    /// Where each keyed state's snapshot sits in its state's chain (`None`
    /// for a state that keeps none).
    pub(crate) fn positions(&self) -> Vec<Option<SnapshotPosition>> {
        self.keyed.iter().map(|k| k.position()).collect()
    }

    /// Whether every keyed state knows what changed since the previous
    /// snapshot of its chain, so that the snapshot can be written as a
    /// delta.
    pub(crate) fn knows_changes(&self) -> bool {
        self.keyed.iter().all(|k| k.knows_changes())
    }

    /// Writes the keyed states' key groups whole or as deltas, as `parts`
    /// says (see [`SnapshotWriter::write_captured`]).
    pub(crate) fn write_parts_to(
        &self,
        writer: &mut SnapshotWriter<'_>,
        parts: &Parts,
    ) -> Result<(), StateError> {
        writer.write_captured(&self.snapshot, &self.keyed, parts)
    }

    /// Writes the snapshot into memory.
    pub fn into_snapshot(self) -> Result<SubtaskSnapshot, StateError> {
        let mut writer = SnapshotWriter::new();
        self.write_to(&mut writer)?;
        Ok(writer.finish())
    }
}

/// What a snapshot is written from: any [`Checkpointed`] operator (its
/// state now), or a [`CapturedSnapshot`] (an operator's state when it was
/// captured). Checkpoint stores and `write_subtask` take it.
pub trait WriteSnapshot {
    /// Writes every state into `writer`.
    fn write_to(&self, writer: &mut SnapshotWriter<'_>) -> Result<(), StateError>;

    /// The captured snapshot this is, if it is one: only those can be
    /// written as deltas of an incremental checkpoint.
    fn as_captured(&self) -> Option<&CapturedSnapshot> {
        None
    }
}

impl<T: Checkpointed + ?Sized> WriteSnapshot for T {
    fn write_to(&self, writer: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        self.write_snapshot(writer)
    }
}

impl WriteSnapshot for CapturedSnapshot {
    fn write_to(&self, writer: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        writer.write_captured(&self.snapshot, &self.keyed, &Parts::Whole)
    }

    fn as_captured(&self) -> Option<&CapturedSnapshot> {
        Some(self)
    }
}
