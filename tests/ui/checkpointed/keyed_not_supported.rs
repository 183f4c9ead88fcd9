use state_runtime::Checkpointed;

#[derive(Checkpointed)]
struct Totals {
    #[state(keyed)]
    sum: Vec<(u32, i64)>,
}

fn main() {}
