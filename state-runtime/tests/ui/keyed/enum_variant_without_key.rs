use state_runtime::prelude::*;

#[derive(Keyed)]
enum Event {
    Buy(#[key] u64),
    Heartbeat,
    Refund { customer: u64 },
}

#[derive(Keyed)]
enum Never {}

fn main() {}
