//! Planning for operator (non-keyed) state.
//!
//! Input: for every state of a checkpoint, in the order the states were
//! snapshotted (declaration order), its [`StateMode`] and its item count on
//! each old subtask. Output: for one new subtask and each state, the runs of
//! items it receives, as `(old subtask, item index range)`, in origin order.
//!
//! * `split`, parallelism changed: Flink's `SPLIT_DISTRIBUTE`. The items of all
//!   old subtasks are concatenated in old-subtask order (`T` items),
//!   `base = T / M`, `rem = T % M`; chunk `k` (of `M`) has
//!   `base + (k < rem)` items and goes to new subtask `(start + k) % M`.
//!   `start` is 0 for the first split state and becomes `(start + rem) % M`
//!   after each, so the extra items rotate across split states. Flink walks
//!   the states in `java.util.HashMap` order of their names; we walk them in
//!   declaration order, so with several split states the assignment can
//!   differ from Flink's (it is the same when the two orders agree, and
//!   always the same for one split state).
//! * `split`, parallelism unchanged: every subtask gets its own items back.
//! * `union`: every new subtask gets every item of every old subtask.
//! * `broadcast`: new subtask `j` gets the items of old subtask `j % N`.

use std::ops::Range;

use crate::operator::StateMode;

/// A contiguous run of items of one state on one old subtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemRun {
    /// The old subtask holding the items.
    pub(crate) old_subtask: usize,
    /// Item indices within that subtask's list for the state.
    pub(crate) items: Range<u64>,
}

/// The shape of one state in a checkpoint: what planning needs, and nothing
/// else.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateShape<'a> {
    pub(crate) mode: StateMode,
    /// Item count per old subtask (its length is the old parallelism).
    pub(crate) counts: &'a [u64],
}

/// The runs new subtask `subtask` of `parallelism` receives, per state (same
/// order as `states`). Every shape must have the same, non-zero, number of
/// old subtasks; `subtask < parallelism`.
pub(crate) fn plan_subtask(
    states: &[StateShape<'_>],
    subtask: usize,
    parallelism: usize,
) -> Vec<Vec<ItemRun>> {
    debug_assert!(subtask < parallelism);
    let mut start = 0usize;
    states
        .iter()
        .map(|shape| {
            let old_parallelism = shape.counts.len();
            match shape.mode {
                StateMode::Split if old_parallelism == parallelism => {
                    own_runs(shape.counts, subtask)
                }
                StateMode::Split => {
                    let total: u64 = shape.counts.iter().sum();
                    let m = parallelism as u64;
                    let (base, rem) = (total / m, total % m);
                    // Chunk k goes to subtask (start + k) % M.
                    let k = ((subtask + parallelism - start) % parallelism) as u64;
                    let first = k * base + k.min(rem);
                    let len = base + u64::from(k < rem);
                    start = ((start as u64 + rem) % m) as usize;
                    slice_concatenation(shape.counts, first..first + len)
                }
                StateMode::Union => (0..old_parallelism)
                    .flat_map(|old| own_runs(shape.counts, old))
                    .collect(),
                StateMode::Broadcast => own_runs(shape.counts, subtask % old_parallelism),
                // Keyed state is planned by key group (`keyed::plan`), never
                // as items; snapshots hold no keyed `StateMeta`.
                StateMode::Keyed => Vec::new(),
            }
        })
        .collect()
}

/// All items of one old subtask (nothing if it has none).
fn own_runs(counts: &[u64], old_subtask: usize) -> Vec<ItemRun> {
    let n = counts[old_subtask];
    if n == 0 {
        return Vec::new();
    }
    vec![ItemRun {
        old_subtask,
        items: 0..n,
    }]
}

/// The runs covering `range` of the concatenation of all old subtasks' items.
fn slice_concatenation(counts: &[u64], range: Range<u64>) -> Vec<ItemRun> {
    let mut runs = Vec::new();
    let mut offset = 0u64;
    for (old_subtask, &n) in counts.iter().enumerate() {
        let (lo, hi) = (range.start.max(offset), range.end.min(offset + n));
        if lo < hi {
            runs.push(ItemRun {
                old_subtask,
                items: lo - offset..hi - offset,
            });
        }
        offset += n;
        if offset >= range.end {
            break;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// Flink's vectors (copied from the shared ground truth into the repo).
    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/flink/operator_state_repartition.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn mode(flink: &str) -> StateMode {
        match flink {
            "SPLIT_DISTRIBUTE" => StateMode::Split,
            "UNION" => StateMode::Union,
            "BROADCAST" => StateMode::Broadcast,
            other => panic!("unknown mode {other}"),
        }
    }

    type Origins = Vec<(u64, u64)>;

    fn expand(runs: &[ItemRun]) -> Origins {
        runs.iter()
            .flat_map(|r| r.items.clone().map(move |i| (r.old_subtask as u64, i)))
            .collect()
    }

    fn origins(v: &Value) -> Origins {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
            .collect()
    }

    /// Every Flink case, states walked in Flink's HashMap order (so that the
    /// rotation across several split states is Flink's too), compared with
    /// `output_elements_sorted_by_origin`: items, their subtask and their
    /// order. The one case left out is a subtask that reported no state at
    /// all, which our snapshots cannot express (every subtask snapshot holds
    /// every declared state).
    #[test]
    fn matches_flink_round_robin_repartitioner() {
        let v = vectors();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            if name == "BROADCAST_partly_reported_3to3" {
                continue;
            }
            let old_p = case["oldParallelism"].as_u64().unwrap() as usize;
            let new_p = case["newParallelism"].as_u64().unwrap() as usize;
            let order: Vec<&str> = case["java_hashmap_state_name_order"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            // Mode per state, from any handle that has it.
            let mut modes = BTreeMap::new();
            for handles in case["input"].as_array().unwrap() {
                for h in handles.as_array().unwrap() {
                    for (s, meta) in h["states"].as_object().unwrap() {
                        modes.insert(s.clone(), mode(meta["mode"].as_str().unwrap()));
                    }
                }
            }
            let counts: Vec<Vec<u64>> = order
                .iter()
                .map(|s| {
                    (0..old_p)
                        .map(|i| {
                            let input = &case["input_elements"][i][*s];
                            let o = if input.is_null() {
                                vec![]
                            } else {
                                origins(input)
                            };
                            assert!(
                                o.iter()
                                    .enumerate()
                                    .all(|(j, p)| *p == (i as u64, j as u64))
                            );
                            o.len() as u64
                        })
                        .collect()
                })
                .collect();
            let shapes: Vec<StateShape<'_>> = order
                .iter()
                .zip(&counts)
                .map(|(s, c)| StateShape {
                    mode: modes[*s],
                    counts: c,
                })
                .collect();
            for j in 0..new_p {
                let plan = plan_subtask(&shapes, j, new_p);
                for (s, runs) in order.iter().zip(&plan) {
                    let want = &case["output_elements_sorted_by_origin"][j][*s];
                    let want = if want.is_null() {
                        vec![]
                    } else {
                        origins(want)
                    };
                    assert_eq!(expand(runs), want, "{name}: new subtask {j}, state {s}");
                }
            }
            checked += 1;
        }
        assert_eq!(checked, v["cases"].as_array().unwrap().len() - 1);
    }

    #[test]
    fn split_is_contiguous_and_balanced() {
        let counts = [3, 0, 4];
        let shape = [StateShape {
            mode: StateMode::Split,
            counts: &counts,
        }];
        let plans: Vec<_> = (0..2).map(|j| plan_subtask(&shape, j, 2)).collect();
        assert_eq!(
            plans[0][0],
            vec![
                ItemRun {
                    old_subtask: 0,
                    items: 0..3
                },
                ItemRun {
                    old_subtask: 2,
                    items: 0..1
                }
            ]
        );
        assert_eq!(
            plans[1][0],
            vec![ItemRun {
                old_subtask: 2,
                items: 1..4
            }]
        );
    }

    #[test]
    fn rotation_moves_the_extra_items_across_split_states() {
        // Three split states of 1 item per old subtask, 3 -> 2: the extra item
        // goes to subtask 0, then 1, then 0 again.
        let counts = [1, 1, 1];
        let shape = StateShape {
            mode: StateMode::Split,
            counts: &counts,
        };
        let sizes = |j| -> Vec<usize> {
            plan_subtask(&[shape; 3], j, 2)
                .iter()
                .map(|r| expand(r).len())
                .collect()
        };
        assert_eq!(sizes(0), vec![2, 1, 2]);
        assert_eq!(sizes(1), vec![1, 2, 1]);
        // Union and broadcast states do not move the rotation.
        let union = StateShape {
            mode: StateMode::Union,
            counts: &counts,
        };
        let sizes0: Vec<usize> = plan_subtask(&[shape, union, shape], 0, 2)
            .iter()
            .map(|r| expand(r).len())
            .collect();
        assert_eq!(sizes0, vec![2, 3, 1]);
    }
}
