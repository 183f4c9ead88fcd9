use state_runtime::prelude::*;

#[derive(Clone, PartialEq, Eq)]
struct Customer(u64);

#[derive(Keyed)]
struct Purchase {
    #[key]
    customer: Customer,
    cents: i64,
}

#[derive(Keyed)]
struct Visit {
    #[key]
    site: u32,
    #[key]
    customer: Customer,
}

fn main() {}
