use state_runtime::prelude::*;

#[derive(Keyed)]
union Raw {
    a: u32,
    b: f32,
}

fn main() {}
