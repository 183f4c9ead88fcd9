use state_runtime::prelude::*;

// Three mistakes, three messages in one build.
#[derive(Keyed)]
#[keyed(krate = state_runtime)]
struct Purchase {
    #[key(hash = "fast")]
    customer: u32,
    #[key]
    #[key]
    region: u8,
}

fn main() {}
