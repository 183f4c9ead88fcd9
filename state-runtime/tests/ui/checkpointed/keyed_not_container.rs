use std::collections::HashMap;

use state_runtime::prelude::*;

#[derive(Checkpointed)]
struct Totals {
    #[state(keyed)]
    sums: HashMap<u32, i64>,
}

fn main() {}
