use state_runtime::checkpoint::Checkpointed;

#[derive(Checkpointed)]
struct Source {
    #[state(split)]
    offsets: Vec<u64>,
    #[state(union, name = "offsets")]
    seen: Vec<u64>,
    #[state(broadcast, name = "offsets")]
    rules: u8,
}

fn main() {}
