use state_runtime::hash::StableHash;

#[derive(StableHash)]
#[stable_hash(crate = state_runtime, seed = 7)]
struct Key {
    id: u64,
}

fn main() {}
