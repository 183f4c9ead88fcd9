use state_runtime::checkpoint::Checkpointed;

#[derive(Checkpointed)]
#[checkpointed(on_snapshot = snap)]
struct Source {
    #[state(spilt)]
    offsets: Vec<u64>,
    #[state(union, rename = "x")]
    seen: Vec<u64>,
    #[state(split, union)]
    both: Vec<u64>,
    #[state(skip, name = "cache")]
    cache: u8,
}

fn main() {}
