use state_runtime::StableHash;

#[derive(StableHash)]
struct Key {
    id: u64,
    weight: f64,
}

fn main() {}
