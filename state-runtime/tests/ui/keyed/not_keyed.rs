use state_runtime::prelude::*;

struct Purchase {
    customer: u32,
}

fn route<E: Keyed>(_: &E) {}

fn main() {
    route(&Purchase { customer: 1 });
}
