use state_runtime::Checkpointed;

#[derive(Checkpointed)]
#[checkpointed(on_restore = no_such_method)]
struct Source {
    #[state(split)]
    offsets: Vec<u64>,
}

fn main() {}
