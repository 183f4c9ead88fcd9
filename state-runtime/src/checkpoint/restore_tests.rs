//! Tests of the restore: planning decodes nothing, every item is decoded once, bad bytes and
//! metadata are refused.

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize};

use super::*;
use crate::checkpoint::{Checkpoint, Restore, SnapshotWriter};
use crate::codec;
use crate::operator::StateDescriptor;

thread_local! {
    static DECODED: Cell<u64> = const { Cell::new(0) };
}

/// An item that counts its decodes from bytes (not the traces of its
/// shape, which run its `Deserialize` against the shape tracer).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Counted(u64);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !std::any::type_name::<D>().contains("::shape::") {
            DECODED.with(|c| c.set(c.get() + 1));
        }
        u64::deserialize(d).map(Counted)
    }
}

#[derive(Default)]
struct Op {
    split: Vec<Counted>,
    union: Vec<Counted>,
}

impl Checkpointed for Op {
    fn state_descriptors() -> Vec<StateDescriptor> {
        vec![
            StateDescriptor::new("split", StateMode::Split, "Counted"),
            StateDescriptor::new("union", StateMode::Union, "Counted"),
        ]
    }
    fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        w.split("split", &self.split)?.union("union", &self.union)?;
        Ok(())
    }
    fn restore(&mut self, state: &mut RestoredState<'_>) -> Result<(), StateError> {
        self.split = state.list("split")?;
        self.union = state.list("union")?;
        Ok(())
    }
}

fn checkpoint() -> Checkpoint {
    let subtasks = (0..3u64)
        .map(|i| {
            Op {
                split: (0..i + 2).map(|j| Counted(100 * i + j)).collect(),
                union: vec![Counted(1000 + i)],
            }
            .snapshot()
            .unwrap()
        })
        .collect();
    Checkpoint::from_subtasks(subtasks).unwrap()
}

/// Planning reads no bytes (it is not even given the byte source) and
/// decodes nothing; a restore decodes each item it receives exactly once
/// and reads exactly their bytes.
#[test]
fn planning_decodes_nothing_and_restore_decodes_each_item_once() {
    let cp = checkpoint();
    DECODED.with(|c| c.set(0));
    let metas: Vec<&[StateMeta]> = cp.subtasks().iter().map(|s| s.states()).collect();
    let plan = RestorePlan::new(&metas, None, None, 5).unwrap();
    for j in 0..5 {
        assert_eq!(plan.items(j).len(), 2);
    }
    assert_eq!(DECODED.with(Cell::get), 0);

    let mut total_split = 0;
    for j in 0..5 {
        DECODED.with(|c| c.set(0));
        let mut op = Op::default();
        let report = cp.restore_into(&mut op, j, 5).unwrap();
        let received = (op.split.len() + op.union.len()) as u64;
        assert_eq!(DECODED.with(Cell::get), received);
        assert_eq!(report.items_restored, received);
        let expected_bytes: u64 = op
            .split
            .iter()
            .chain(&op.union)
            .map(|c| {
                let mut v = Vec::new();
                codec::encode_into(&c.0, &mut v, "t").unwrap();
                v.len() as u64
            })
            .sum();
        assert_eq!(report.bytes_read, expected_bytes);
        assert_eq!(op.union.len(), 3);
        total_split += op.split.len();
    }
    assert_eq!(total_split, 2 + 3 + 4);
}

#[test]
fn corrupt_item_bytes_are_a_decode_error_naming_the_state() {
    let mut cp = checkpoint();
    // Item 1 of "split" on old subtask 2 becomes a truncated varint.
    let range = cp.subtasks[2].states[0].item_range(1).unwrap();
    cp.subtasks[2].data[range.start as usize] = 0xfd;
    let mut op = Op::default();
    match cp.restore_into(&mut op, 0, 1) {
        Err(StateError::Decode { state, message }) => {
            assert_eq!(state, "split");
            assert!(message.starts_with("old subtask 2, item 1:"), "{message}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn metadata_that_does_not_fit_the_data_is_rejected() {
    let cp = checkpoint();
    let mut bad = cp.subtasks().to_vec();
    bad[1].states[0].bounds[1] = 10_000;
    let err = Checkpoint::from_subtasks(bad).unwrap_err();
    assert!(
        matches!(&err, StateError::CorruptSnapshot { state, subtask: 1, .. } if state == "split"),
        "{err}"
    );
    let mut bad = cp.subtasks().to_vec();
    bad[0].states[1].bounds.swap(0, 1);
    assert!(matches!(
        Checkpoint::from_subtasks(bad),
        Err(StateError::CorruptSnapshot { subtask: 0, .. })
    ));
    // The in-memory byte source refuses ranges past the data.
    let err = cp.subtasks.read("s", 0, 0..10_000).unwrap_err();
    assert!(matches!(err, StateError::CorruptSnapshot { .. }), "{err}");
}

/// A hand-written impl that repeats a name is refused when writing and
/// when restoring.
struct Twice;

impl Checkpointed for Twice {
    fn state_descriptors() -> Vec<StateDescriptor> {
        vec![StateDescriptor::new("s", StateMode::Split, "u8"); 2]
    }
    fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        w.split("s", &vec![1u8])?.union("s", &vec![2u8])?;
        Ok(())
    }
    fn restore(&mut self, _: &mut RestoredState<'_>) -> Result<(), StateError> {
        Ok(())
    }
}

#[test]
fn duplicate_state_names_are_refused() {
    assert!(matches!(
        Twice.snapshot(),
        Err(StateError::DuplicateState { state }) if state == "s"
    ));
    let cp = Checkpoint::from_subtasks(vec![SubtaskSnapshot::default()]).unwrap();
    assert!(matches!(
        cp.restore_into(&mut Twice, 0, 1),
        Err(StateError::DuplicateState { state }) if state == "s"
    ));
}
