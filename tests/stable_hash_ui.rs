//! Misuse of `#[derive(StableHash)]` is a compile error at the offending span.

#[test]
fn stable_hash_ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/stable_hash/*.rs");
}
