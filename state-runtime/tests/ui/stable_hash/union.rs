use state_runtime::hash::StableHash;

#[derive(StableHash)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
