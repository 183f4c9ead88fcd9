use state_runtime::checkpoint::Checkpointed;

#[derive(Checkpointed)]
#[checkpointed(on_restore = no_such_method)]
struct Source {
    #[state(split)]
    offsets: Vec<u64>,
}

fn main() {}
