use state_runtime::checkpoint::Checkpointed;

#[derive(Checkpointed)]
struct Tuple(#[state(split)] Vec<u64>);

#[derive(Checkpointed)]
struct Unit;

#[derive(Checkpointed)]
enum Modes {
    A,
}

#[derive(Checkpointed)]
union Bits {
    a: u32,
}

// The fallback impls keep errors from cascading: these compile.
fn uses<T: Checkpointed>() {}

fn main() {
    uses::<Tuple>();
    uses::<Unit>();
    uses::<Modes>();
    uses::<Bits>();
}
