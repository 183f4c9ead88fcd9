use state_runtime::checkpoint::Checkpointed;

#[derive(Checkpointed)]
struct Source {
    offsets: Vec<u64>,
    #[state(split)]
    fine: Vec<u64>,
    #[state(name = "only-a-name")]
    named: Vec<u64>,
}

fn main() {}
