//! Incremental checkpoints: a subtask's keyed state written as the changes
//! since its previous checkpoint, on top of that checkpoint's layers.
//!
//! Each subtask's chain is a full data file followed by delta files, one per
//! checkpoint, each listing (in the manifest) the earlier files it builds
//! on. A delta is written only when it continues the chain exactly: the
//! previous data file of the subtask was written from the previous frozen
//! snapshot of every keyed state. Otherwise, and when the chain has grown
//! past the [`IncrementalPolicy`], the subtask writes a full file and starts
//! a new chain.

use super::write::{SubtaskFile, Target};
use crate::checkpoint::{CapturedSnapshot, KeyedLayer, Layers};
use crate::error::StateError;
use crate::storage::CheckpointStorage;

use super::DATA_HEADER_LEN;

/// When an incremental checkpoint writes a full data file instead of a
/// delta: the chain of a subtask's keyed state (one full file, then deltas)
/// is bounded in length and in the bytes its deltas add to the full file:
/// a delta is written only if the deltas so far, plus one more the size of
/// the last, stay within `max_delta_ratio` of the full file's keyed bytes,
/// so that a restore reads about `1 + max_delta_ratio` times a full
/// checkpoint's keyed bytes (more only if a delta outgrows the one before).
///
/// ```
/// use state_runtime::checkpoint::durable::IncrementalPolicy;
/// let policy = IncrementalPolicy::default();
/// assert_eq!((policy.max_deltas, policy.max_delta_ratio), (16, 0.5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncrementalPolicy {
    /// The most delta files after a full one.
    pub max_deltas: usize,
    /// The most bytes of delta sections in a chain, as a fraction of its
    /// full file's keyed bytes: a chain past it starts over with a full
    /// file.
    pub max_delta_ratio: f64,
}

impl Default for IncrementalPolicy {
    fn default() -> Self {
        Self {
            max_deltas: 16,
            max_delta_ratio: 0.5,
        }
    }
}

/// Whether `snapshot` can be written as a delta on top of `previous` (the
/// subtask's data file of the previous checkpoint) under `policy`.
fn continues_chain(
    previous: &SubtaskFile,
    snapshot: &CapturedSnapshot,
    policy: &IncrementalPolicy,
) -> bool {
    let Some(prev) = previous.keyed.as_ref() else {
        return false;
    };
    let positions = snapshot.positions();
    let follows = positions.len() == previous.positions.len()
        && positions
            .iter()
            .zip(&previous.positions)
            .all(|(now, before)| match (now, before) {
                (Some(now), Some(before)) => {
                    now.lineage == before.lineage && now.seq == before.seq + 1
                }
                _ => false,
            });
    if !follows || !snapshot.knows_changes() {
        return false;
    }
    // The deltas so far, and this one estimated as the size of the last.
    let (deltas, base_bytes, delta_bytes) = if prev.layers.delta {
        let base = &prev.layers.earlier[0];
        let earlier: u64 = prev.layers.earlier[1..].iter().map(KeyedLayer::bytes).sum();
        (
            prev.layers.earlier.len(),
            base.bytes(),
            earlier + 2 * prev.total_bytes(),
        )
    } else {
        (0, prev.total_bytes(), 0)
    };
    deltas < policy.max_deltas && (delta_bytes as f64) <= policy.max_delta_ratio * base_bytes as f64
}

/// [`write_subtask`](super::write_subtask) for an incremental checkpoint:
/// writes `snapshot`'s keyed states (captured with
/// [`capture_tracking_changes`](crate::checkpoint::Checkpointed::capture_tracking_changes),
/// as was the snapshot `previous` was written from) as delta sections on
/// top of `previous`
/// (the same subtask's data file of the previous checkpoint, which must be
/// committed before this one) when that continues its chain under
/// `policy`, and as a full file otherwise. The file's manifest entry lists
/// the earlier files it builds on, so retention keeps them.
#[allow(clippy::too_many_arguments)]
pub fn write_subtask_incremental(
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
    operator_index: usize,
    operator: &str,
    subtask: usize,
    snapshot: &CapturedSnapshot,
    previous: Option<&SubtaskFile>,
    policy: &IncrementalPolicy,
) -> Result<SubtaskFile, StateError> {
    let previous = previous.filter(|p| {
        p.checkpoint_id < checkpoint_id
            && p.operator == operator
            && p.subtask == subtask
            && continues_chain(p, snapshot, policy)
    });
    let target = Target {
        checkpoint_id,
        operator_index,
        operator,
        subtask,
        staged: None,
    };
    let mut file = target.write_states(storage, |writer| match previous {
        Some(_) => snapshot.write_delta_to(writer),
        None => crate::checkpoint::WriteSnapshot::write_to(snapshot, writer),
    })?;
    file.positions = snapshot.positions();
    if let (Some(prev), Some(keyed)) = (previous, file.keyed.as_mut()) {
        let prev_keyed = prev.keyed.as_ref().expect("checked by continues_chain");
        let mut earlier = prev_keyed.layers.earlier.clone();
        earlier.push(KeyedLayer {
            checkpoint_id: prev.checkpoint_id,
            file: prev.name.clone(),
            file_len: DATA_HEADER_LEN + prev.payload_len,
            delta: prev_keyed.layers.delta,
            bounds: prev_keyed.bounds().to_vec(),
            crcs: prev.key_group_crcs.clone(),
        });
        keyed.layers = Layers {
            delta: true,
            earlier,
        };
    }
    Ok(file)
}
