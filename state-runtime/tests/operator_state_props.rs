//! Conservation of operator state for any `N -> M` in `1..=16`.

use std::collections::HashMap;

use proptest::prelude::*;
use state_runtime::prelude::*;

/// Items are `(old subtask, position)`, so that every item is unique and
/// its origin is visible.
type Origin = (u32, u32);

#[derive(Checkpointed, Default)]
struct Op {
    #[state(split)]
    first: Vec<Origin>,
    #[state(split)]
    second: HashMap<Origin, String>,
    #[state(union)]
    union: Vec<Origin>,
    #[state(broadcast)]
    copy: Vec<u32>,
    #[state(skip)]
    untouched: u8,
}

fn items(subtask: usize, n: usize) -> Vec<Origin> {
    (0..n).map(|j| (subtask as u32, j as u32)).collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn counts_strategy() -> impl Strategy<Value = (Vec<(usize, usize, usize)>, usize)> {
    (
        prop::collection::vec((0usize..20, 0usize..12, 0usize..6), 1..=16),
        1usize..=16,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_item_is_conserved((counts, new_p) in counts_strategy()) {
        let old_p = counts.len();
        let old: Vec<Op> = counts
            .iter()
            .enumerate()
            .map(|(i, &(a, b, u))| Op {
                first: items(i, a),
                second: items(i, b).into_iter().map(|o| (o, format!("{o:?}"))).collect(),
                union: items(i, u),
                // By contract broadcast copies are equal; make them differ to
                // see which one arrives.
                copy: vec![i as u32; 3],
                untouched: 0,
            })
            .collect();
        let cp = Checkpoint::from_subtasks(old.iter().map(|o| o.snapshot().unwrap()).collect())
            .unwrap()
            .with_checkpoint_id(9);

        let mut first = Vec::new();
        let mut second = Vec::new();
        let all_union: Vec<Origin> = (0..old_p).flat_map(|i| items(i, counts[i].2)).collect();
        #[allow(clippy::needless_range_loop)] // `j` is a subtask index first
        for j in 0..new_p {
            let mut op = Op { untouched: 7, ..Op::default() };
            let report = cp.restore_into(&mut op, j, new_p).unwrap();
            prop_assert_eq!(report.context.checkpoint_id, 9);
            prop_assert!(report.missing_states.is_empty() && report.dropped_states.is_empty());
            prop_assert_eq!(op.untouched, 7);
            // Origin order within a subtask.
            prop_assert_eq!(&op.first, &sorted(op.first.clone()));
            // Union: everything, in origin order.
            prop_assert_eq!(&op.union, &all_union);
            // Broadcast: the copy of old subtask j % N.
            prop_assert_eq!(&op.copy, &vec![(j % old_p) as u32; 3]);
            if old_p == new_p {
                prop_assert_eq!(&op.first, &items(j, counts[j].0));
                prop_assert_eq!(op.second.len(), counts[j].1);
            }
            first.push(op.first);
            second.push(op.second);
        }
        // Split: every item exactly once, balanced when rescaled.
        let total_first: usize = counts.iter().map(|c| c.0).sum();
        let all_first: Vec<Origin> = (0..old_p).flat_map(|i| items(i, counts[i].0)).collect();
        prop_assert_eq!(sorted(first.concat()), all_first);
        let all_second: Vec<Origin> = (0..old_p).flat_map(|i| items(i, counts[i].1)).collect();
        let got_second: Vec<Origin> = second.iter().flat_map(|m| m.keys().copied()).collect();
        prop_assert_eq!(sorted(got_second), all_second);
        for m in &second {
            for (k, v) in m {
                prop_assert_eq!(v, &format!("{k:?}"));
            }
        }
        if old_p != new_p {
            let sizes: Vec<usize> = first.iter().map(Vec::len).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{sizes:?}");
            prop_assert_eq!(sizes.iter().sum::<usize>(), total_first);
        }
    }

    /// The same state gives byte-identical snapshots, hash maps included.
    #[test]
    fn snapshots_are_deterministic(keys in prop::collection::vec(any::<(u32, u32)>(), 0..40)) {
        let a = Op {
            second: keys.iter().map(|k| (*k, k.0.to_string())).collect(),
            ..Op::default()
        };
        let b = Op {
            second: keys.iter().rev().map(|k| (*k, k.0.to_string())).collect(),
            ..Op::default()
        };
        prop_assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
    }
}
