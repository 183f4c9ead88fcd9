use state_runtime::prelude::*;

#[derive(Keyed)]
struct Purchase {
    customer: u32,
    cents: i64,
}

fn main() {}
