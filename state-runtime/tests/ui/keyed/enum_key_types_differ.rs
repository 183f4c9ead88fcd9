use state_runtime::prelude::*;

#[derive(Keyed)]
enum Event {
    Buy {
        #[key]
        customer: u64,
        cents: i64,
    },
    Refund(#[key] u32, i64),
    Tag(#[key] u64, #[key] String),
}

fn main() {}
