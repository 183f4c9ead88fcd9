//! Incremental checkpoints: a subtask's keyed state written as the changes
//! since its previous checkpoint, on top of that checkpoint's layers.
//!
//! Each subtask's chain starts with a full data file; every later file
//! holds a rolling share of the key groups whole (each key group once every
//! [`IncrementalPolicy::rewrite_every`] checkpoints, at its own phase) and
//! the rest as deltas, and lists (in the manifest) the earlier files it
//! builds on: for each key group, the last file holding it whole and the
//! deltas after it. Files no key group needs any more leave the chain, so
//! a chain settles at `rewrite_every` files and no checkpoint after the
//! first rewrites the whole state. A delta is written only when it
//! continues the chain exactly: the previous data file of the subtask was
//! written from the previous frozen snapshot of every keyed state.
//! Otherwise the subtask writes a full file and starts a new chain.

use super::write::{SubtaskFile, Target};
use crate::checkpoint::{CapturedSnapshot, KeyedLayer, Layers, Parts};
use crate::error::StateError;
use crate::storage::CheckpointStorage;

use super::DATA_HEADER_LEN;

/// Which key groups an incremental checkpoint writes whole.
///
/// * **Rolling rewrites**: key group `g` of a subtask's `n` is written
///   whole when the snapshot's sequence number is `g * rewrite_every / n`
///   modulo `rewrite_every`, so about `n / rewrite_every` key groups per
///   checkpoint, and each one at least once every `rewrite_every`
///   checkpoints.
/// * **A bound on restore reads**: if the deltas a restore would read on
///   top of the whole sections (this checkpoint's estimated as the size of
///   each key group's last) exceed `max_delta_ratio` of those sections'
///   bytes, the key groups with the most delta bytes are written whole too,
///   until they do not. A restore then reads about `1 + max_delta_ratio`
///   times a full checkpoint's keyed bytes.
///
/// With changes spread over all keys, a fraction `d` of the keyed bytes per
/// checkpoint, a checkpoint writes about `1 / rewrite_every + d` of a full
/// one, a restore reads about `1 + (rewrite_every - 1) d / 2`, and `W`
/// retained checkpoints hold about `(1 / rewrite_every + d) (W +
/// rewrite_every - 1)` full checkpoints' bytes.
///
/// ```
/// use state_runtime::checkpoint::durable::IncrementalPolicy;
/// let policy = IncrementalPolicy::default();
/// assert_eq!((policy.rewrite_every, policy.max_delta_ratio), (20, 0.5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncrementalPolicy {
    /// Every key group is written whole at least once in this many
    /// checkpoints (1: every checkpoint is full).
    pub rewrite_every: u64,
    /// The most delta bytes a restore reads, as a fraction of the whole
    /// sections' bytes it reads.
    pub max_delta_ratio: f64,
}

impl Default for IncrementalPolicy {
    fn default() -> Self {
        Self {
            rewrite_every: 20,
            max_delta_ratio: 0.5,
        }
    }
}

/// Whether `snapshot` continues the chain of `previous` (the subtask's data
/// file of the previous checkpoint): every keyed state's snapshot follows
/// the one `previous` was written from, and knows what changed since.
fn continues_chain(previous: &SubtaskFile, snapshot: &CapturedSnapshot) -> bool {
    let positions = snapshot.positions();
    previous.keyed.is_some()
        && positions.len() == previous.positions.len()
        && positions
            .iter()
            .zip(&previous.positions)
            .all(|(now, before)| match (now, before) {
                (Some(now), Some(before)) => {
                    now.lineage == before.lineage && now.seq == before.seq + 1
                }
                _ => false,
            })
        && snapshot.knows_changes()
}

/// One key group in a chain: the bytes of its last whole section, of the
/// deltas after it, and of the last of those (0 if it was whole last), and
/// how many deltas there are.
#[derive(Debug, Clone, Copy)]
struct KeyGroupChain {
    whole: u64,
    deltas: u64,
    last: u64,
    age: u64,
}

/// Each key group's place in the chain of `previous`.
fn key_group_chains(previous: &SubtaskFile) -> Option<Vec<KeyGroupChain>> {
    let keyed = previous.keyed.as_ref()?;
    let key_groups = keyed.key_groups();
    let starts = keyed.layers.starts(key_groups.len() as usize)?;
    let views: Vec<_> = keyed.views().collect();
    let own = views.len() - 1;
    key_groups
        .iter()
        .zip(starts)
        .map(|(kg, start)| {
            let start = start.unwrap_or(own);
            let size = |i: usize| views[i].key_group_range(kg).map(|r| r.end - r.start);
            let deltas = (start + 1..=own).map(size).sum::<Option<u64>>()?;
            Some(KeyGroupChain {
                whole: size(start)?,
                deltas,
                last: if start < own { size(own)? } else { 0 },
                age: (own - start) as u64,
            })
        })
        .collect()
}

/// Which key groups of `snapshot`, the next of `previous`'s chain with
/// sequence number `seq`, to write whole under `policy`; `None` if all of
/// them (a full file).
fn plan_parts(previous: &SubtaskFile, seq: u64, policy: &IncrementalPolicy) -> Option<Parts> {
    let chains = key_group_chains(previous)?;
    let n = chains.len() as u64;
    let every = policy.rewrite_every.max(1);
    let mut whole: Vec<bool> = (0..n)
        .zip(&chains)
        .map(|(g, c)| seq % every == g * every / n.max(1) || c.age + 1 >= every)
        .collect();
    // The bound on restore reads: the delta key groups with the most delta
    // bytes become whole until the rest fit.
    let whole_bytes: u64 = chains.iter().map(|c| c.whole).sum();
    let next = |c: &KeyGroupChain| c.deltas + c.last;
    let mut excess: u64 = (chains.iter().zip(&whole))
        .filter(|(_, w)| !**w)
        .map(|(c, _)| next(c))
        .sum();
    let mut candidates: Vec<usize> = (0..chains.len()).filter(|&g| !whole[g]).collect();
    candidates.sort_by_key(|&g| std::cmp::Reverse(next(&chains[g])));
    for g in candidates {
        if excess as f64 <= policy.max_delta_ratio * whole_bytes as f64 {
            break;
        }
        whole[g] = true;
        excess -= next(&chains[g]);
    }
    match Parts::from_flags(whole) {
        Parts::Whole => None,
        parts => Some(parts),
    }
}

/// [`write_subtask`](super::write_subtask) for an incremental checkpoint:
/// writes `snapshot`'s keyed states (captured with
/// [`capture_tracking_changes`](crate::checkpoint::Checkpointed::capture_tracking_changes),
/// as was the snapshot `previous` was written from) on top of `previous`
/// (the same subtask's data file of the previous checkpoint, which must be
/// committed before this one) when it continues that file's chain: the key
/// groups `policy` picks whole, the others as delta sections. Otherwise,
/// or when `policy` picks every key group, it writes a full file. The
/// file's manifest entry lists the earlier files some key group still
/// reads, so retention keeps them.
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
    let seq = snapshot.positions().iter().flatten().next().map(|p| p.seq);
    let plan = previous
        .filter(|p| {
            p.checkpoint_id < checkpoint_id
                && p.operator == operator
                && p.subtask == subtask
                && continues_chain(p, snapshot)
        })
        .zip(seq)
        .and_then(|(p, seq)| Some((p, plan_parts(p, seq, policy)?)));
    let target = Target {
        checkpoint_id,
        operator_index,
        operator,
        subtask,
        staged: None,
    };
    let mut file = target.write_states(storage, |writer| match &plan {
        Some((_, parts)) => snapshot.write_parts_to(writer, parts),
        None => crate::checkpoint::WriteSnapshot::write_to(snapshot, writer),
    })?;
    file.positions = snapshot.positions();
    if let (Some((prev, parts)), Some(keyed)) = (plan, file.keyed.as_mut()) {
        let prev_keyed = prev.keyed.as_ref().expect("checked by continues_chain");
        let mut earlier = prev_keyed.layers.earlier.clone();
        earlier.push(KeyedLayer {
            checkpoint_id: prev.checkpoint_id,
            file: prev.name.clone(),
            file_len: DATA_HEADER_LEN + prev.payload_len,
            parts: prev_keyed.layers.parts.clone(),
            bounds: prev_keyed.bounds().to_vec(),
            crcs: prev.key_group_crcs.clone(),
        });
        let mut layers = Layers { parts, earlier };
        // The files no key group reads any more leave the chain.
        let needed = layers
            .starts(keyed.key_groups().len() as usize)
            .and_then(|starts| starts.iter().map(|s| s.unwrap_or(usize::MAX)).min())
            .unwrap_or(0)
            .min(layers.earlier.len());
        layers.earlier.drain(..needed);
        keyed.layers = layers;
    }
    Ok(file)
}
