use state_runtime::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Old {
    id: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct New {
    id: u64,
}

#[derive(Checkpointed)]
struct Op {
    // Not state: nothing to migrate.
    #[state(skip, migrate_from(Old))]
    cache: Vec<u8>,
    // No older type.
    #[state(split, migrate_from())]
    a: Vec<New>,
    // Not a list.
    #[state(split, migrate_from = Old)]
    b: Vec<New>,
    // Twice.
    #[state(union, migrate_from(Old), migrate_from(Old))]
    c: Vec<New>,
}

fn main() {}
