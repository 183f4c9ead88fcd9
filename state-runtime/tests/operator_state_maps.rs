//! Maps and sets as `split` and `union` operator state: a map or set keeps
//! one item per key, so restoring items that share a key must never drop
//! one silently. Identical copies (a union state's copies of one entry)
//! collapse; differing values for one key are a typed error.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use state_runtime::prelude::*;

#[derive(Checkpointed, Default, Debug, PartialEq)]
struct Watermarks {
    /// Every subtask holds every partition's watermark.
    #[state(union)]
    watermarks: BTreeMap<u32, i64>,
    #[state(union)]
    seen: HashSet<String>,
}

#[derive(Checkpointed, Default, Debug, PartialEq)]
struct Owned {
    #[state(split)]
    offsets: HashMap<u32, u64>,
}

#[derive(Checkpointed, Default, Debug, PartialEq)]
struct UnionList {
    #[state(union)]
    watermarks: Vec<(u32, i64)>,
}

fn checkpoint<T: Checkpointed>(subtasks: &[T]) -> Checkpoint {
    Checkpoint::from_subtasks(subtasks.iter().map(|s| s.snapshot().unwrap()).collect()).unwrap()
}

fn watermarks(entries: &[(u32, i64)], seen: &[&str]) -> Watermarks {
    Watermarks {
        watermarks: entries.iter().copied().collect(),
        seen: seen.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn union_copies_of_one_entry_collapse_and_are_counted() {
    // After a first rescale every subtask holds the same union map.
    let same = [(0, 10), (1, 20), (2, 30)];
    let cp = checkpoint(&[
        watermarks(&same, &["a", "b"]),
        watermarks(&same, &["a", "b"]),
        watermarks(&same, &["b", "a"]),
    ]);
    for j in 0..2 {
        let mut op = Watermarks::default();
        let report = cp.restore_into(&mut op, j, 2).unwrap();
        assert_eq!(op, watermarks(&same, &["a", "b"]));
        // Three copies of five items: five decoded, ten skipped.
        assert_eq!(report.items_restored, 5);
        assert_eq!(report.identical_items_skipped, 10);
    }
}

#[test]
fn differing_values_for_one_key_are_an_error_not_a_lost_value() {
    // Subtask 1 advanced partition 1's watermark; subtask 0 holds a stale
    // copy. Keeping either silently would be wrong.
    let cp = checkpoint(&[
        watermarks(&[(0, 10), (1, 20)], &[]),
        watermarks(&[(0, 10), (1, 25)], &[]),
    ]);
    let mut op = watermarks(&[(9, 9)], &["constructed"]);
    let err = cp.restore_into(&mut op, 0, 3).unwrap_err();
    match &err {
        StateError::ConflictingItems { state, conflicting } => {
            assert_eq!((state.as_str(), *conflicting), ("watermarks", 1));
        }
        other => panic!("expected ConflictingItems, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`watermarks`") && message.contains("Vec"),
        "{message}"
    );
    // A failed restore leaves the operator as constructed.
    assert_eq!(op, watermarks(&[(9, 9)], &["constructed"]));
}

#[test]
fn split_maps_with_one_key_in_two_subtasks_are_an_error_when_merged() {
    let a = Owned {
        offsets: [(0, 100), (2, 102)].into(),
    };
    let b = Owned {
        offsets: [(1, 101), (2, 7)].into(),
    };
    let cp = checkpoint(&[a, b]);
    let err = cp.restore_into(&mut Owned::default(), 0, 1).unwrap_err();
    assert!(
        matches!(&err, StateError::ConflictingItems { state, conflicting: 1 } if state == "offsets"),
        "{err:?}"
    );
    // Spread over enough subtasks, no subtask gets both: nothing conflicts.
    let mut all = BTreeMap::new();
    for j in 0..4 {
        let mut op = Owned::default();
        cp.restore_into(&mut op, j, 4).unwrap();
        for (k, v) in op.offsets {
            assert!(all.insert((k, v), j).is_none());
        }
    }
    assert_eq!(all.len(), 4);
}

#[test]
fn a_union_list_keeps_every_copy_for_the_operator_to_choose() {
    let cp = checkpoint(&[
        UnionList {
            watermarks: vec![(0, 10), (1, 20)],
        },
        UnionList {
            watermarks: vec![(0, 10), (1, 25)],
        },
    ]);
    let mut op = UnionList::default();
    let report = cp.restore_into(&mut op, 0, 1).unwrap();
    assert_eq!(op.watermarks, [(0, 10), (1, 20), (0, 10), (1, 25)]);
    assert_eq!(
        (report.items_restored, report.identical_items_skipped),
        (4, 0)
    );
    let highest: BTreeMap<u32, i64> =
        op.watermarks
            .iter()
            .fold(BTreeMap::new(), |mut m, &(p, w)| {
                let e = m.entry(p).or_insert(w);
                *e = (*e).max(w);
                m
            });
    assert_eq!(highest, BTreeMap::from([(0, 10), (1, 25)]));
}

#[test]
fn sets_collapse_identical_items() {
    #[derive(Checkpointed, Default)]
    struct Tags {
        #[state(union)]
        tags: BTreeSet<String>,
    }
    let t = |v: &[&str]| Tags {
        tags: v.iter().map(|s| s.to_string()).collect(),
    };
    let cp = checkpoint(&[t(&["x", "y"]), t(&["y", "z"])]);
    let mut op = Tags::default();
    let report = cp.restore_into(&mut op, 1, 2).unwrap();
    assert_eq!(op.tags.into_iter().collect::<Vec<_>>(), ["x", "y", "z"]);
    assert_eq!(
        (report.items_restored, report.identical_items_skipped),
        (3, 1)
    );
}

#[test]
fn a_union_map_checkpoint_restores_into_a_union_vec_of_pairs() {
    // Switching a union map whose copies may differ to a Vec of pairs is a
    // code change only: the same name, mode and item type.
    let cp = checkpoint(&[
        watermarks(&[(0, 10), (1, 20)], &["a"]),
        watermarks(&[(0, 10), (1, 25)], &["a"]),
    ]);
    #[derive(Checkpointed, Default)]
    struct Migrated {
        #[state(union)]
        watermarks: Vec<(u32, i64)>,
        #[state(union)]
        seen: Vec<String>,
    }
    let mut op = Migrated::default();
    cp.restore_into(&mut op, 0, 1).unwrap();
    assert_eq!(op.watermarks, [(0, 10), (1, 20), (0, 10), (1, 25)]);
    assert_eq!(op.seen, ["a", "a"]);
}

#[test]
fn without_a_rescale_a_split_map_comes_back_whole_and_uncompared() {
    // Both old subtasks hold key 2; at the same parallelism each new
    // subtask gets one old subtask's items, so nothing meets its copy.
    let owned = checkpoint(&[
        Owned {
            offsets: [(0, 1), (2, 3)].into(),
        },
        Owned {
            offsets: [(1, 2), (2, 3)].into(),
        },
    ]);
    for j in 0..2 {
        let mut op = Owned::default();
        let report = owned.restore_into(&mut op, j, 2).unwrap();
        assert_eq!(report.identical_items_skipped, 0);
        assert_eq!((report.items_restored, op.offsets.len()), (2, 2));
    }
}
