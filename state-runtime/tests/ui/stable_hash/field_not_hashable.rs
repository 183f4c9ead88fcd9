use state_runtime::hash::StableHash;

#[derive(StableHash)]
struct Key {
    id: u64,
    weight: f64,
}

fn main() {}
