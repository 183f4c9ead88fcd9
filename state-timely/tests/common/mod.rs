//! What the timely job tests share: the event and the keyed operator.

use serde::{Deserialize, Serialize};
use state_runtime::checkpoint::durable::StoredCheckpoint;
use state_runtime::prelude::*;
use state_runtime::runner::KeyedProcessor;
use state_runtime::storage::CheckpointStorage;

#[derive(Clone, Serialize, Deserialize, Keyed)]
pub struct Purchase {
    #[key]
    pub customer: u32,
    pub cents: i64,
}

/// Each customer's total; emits `()` per purchase (the tests count
/// outputs).
#[derive(Checkpointed, Default)]
pub struct Totals {
    #[state(keyed)]
    pub sums: KeyedValue<u32, i64>,
}

impl KeyedProcessor for Totals {
    type Event = Purchase;
    type Output = ();
    fn process(&mut self, p: Purchase, out: &mut impl FnMut(())) -> Result<(), StateError> {
        *self.sums.get_or_insert_with(p.key(), || 0)? += p.cents;
        out(());
        Ok(())
    }
}

/// The operator `totals` of the newest checkpoint, restored at parallelism
/// 1: every customer's sum.
pub fn newest_totals(storage: &dyn CheckpointStorage) -> Totals {
    let stored = StoredCheckpoint::latest(storage).unwrap().unwrap();
    let mut all = Totals::default();
    stored
        .operator("totals")
        .unwrap()
        .restore_into(&mut all, 0, 1)
        .unwrap();
    all
}
