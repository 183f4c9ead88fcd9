use state_runtime::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct OldOrder {
    id: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
}

struct NotSerde;

#[derive(Checkpointed)]
struct Op {
    // `Order` has no `From<OldOrder>`.
    #[state(split, migrate_from(OldOrder))]
    orders: Vec<Order>,
    // An older type that cannot be decoded.
    #[state(keyed, migrate_from(NotSerde => convert))]
    totals: KeyedValue<u64, u64>,
}

fn convert(_: NotSerde) -> u64 {
    0
}

fn main() {}
