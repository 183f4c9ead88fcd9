use state_runtime::checkpoint::Checkpointed;

#[derive(Checkpointed)]
#[checkpointed(on_restore = first, on_restore = second)]
#[checkpointed(crate = 42)]
struct Source {
    #[state(split, name = "")]
    offsets: Vec<u64>,
    #[state(union, name = "a", name = "b")]
    watermarks: Vec<i64>,
}

fn main() {}
