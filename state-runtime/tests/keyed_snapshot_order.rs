//! Snapshots of keyed state are byte-for-byte the same for the same content,
//! whatever the history that led to it: the order of a key group's entries
//! depends on the key set only, not on insertion order, earlier snapshots,
//! removals (which shift entries back in their tables), table growth,
//! restores or clones.

use state_runtime::prelude::*;

#[derive(Checkpointed, Default, Clone)]
struct Op {
    #[state(keyed)]
    sums: KeyedValue<u64, i64>,
    #[state(keyed)]
    names: KeyedList<String, u32>,
    #[state(keyed)]
    maps: KeyedMap<u64, u8, i32>,
}

const KEYS: u64 = 3000;

fn assigner() -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(16).unwrap())
}

fn bound() -> Op {
    let mut op = Op::default();
    let a = assigner();
    op.bind_keyed(a, a.max_parallelism().all_key_groups())
        .unwrap();
    op
}

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Sets key `i`'s state in every container to its final content.
fn put(op: &mut Op, i: u64) {
    op.sums.insert(key(i), i as i64 * 3).unwrap();
    op.names.remove(format!("k{i}")).unwrap();
    op.names.push(format!("k{i}"), i as u32).unwrap();
    op.maps.insert(key(i), (i % 7) as u8, -(i as i32)).unwrap();
}

fn remove(op: &mut Op, i: u64) {
    op.sums.remove(key(i)).unwrap();
    op.names.remove(format!("k{i}")).unwrap();
    op.maps.remove_map(key(i)).unwrap();
}

#[test]
fn same_content_same_snapshot_whatever_the_history() {
    let mut reference = bound();
    for i in 0..KEYS {
        put(&mut reference, i);
    }
    let want = reference.snapshot().unwrap();

    // Reverse order, with extra keys and other values first, snapshots in
    // between, then the extras removed and the values set.
    let mut op = bound();
    for i in (0..KEYS + 500).rev() {
        put(&mut op, i);
        op.sums.insert(key(i), 0).unwrap();
    }
    op.snapshot().unwrap();
    for i in KEYS..KEYS + 500 {
        remove(&mut op, i);
    }
    op.snapshot().unwrap();
    for i in (0..KEYS).step_by(5) {
        remove(&mut op, i);
    }
    op.snapshot().unwrap();
    for i in 0..KEYS {
        put(&mut op, i);
    }
    assert_eq!(op.snapshot().unwrap(), want);
    assert_eq!(op.snapshot().unwrap(), want, "a second time");

    // A clone, and a restore, of a state that was snapshotted.
    assert_eq!(op.clone().snapshot().unwrap(), want, "clone");
    let cp = Checkpoint::from_subtasks(vec![op.snapshot().unwrap()]).unwrap();
    let mut restored = Op::default();
    cp.restore_into(&mut restored, 0, 1).unwrap();
    assert_eq!(restored.snapshot().unwrap(), want, "restored");

    // Cleared and refilled in another order.
    op.sums.clear();
    op.names.clear();
    op.maps.clear();
    op.snapshot().unwrap();
    for i in (0..KEYS).filter(|i| i % 2 == 1).chain((0..KEYS).step_by(2)) {
        put(&mut op, i);
    }
    assert_eq!(op.snapshot().unwrap(), want, "cleared and refilled");
}
