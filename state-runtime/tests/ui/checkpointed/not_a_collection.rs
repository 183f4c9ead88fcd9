use state_runtime::checkpoint::Checkpointed;

struct NotSerde;

#[derive(Checkpointed)]
struct Source {
    #[state(split)]
    offset: u64,
    #[state(union)]
    handles: Vec<NotSerde>,
    #[state(broadcast)]
    rules: NotSerde,
}

fn main() {}
