//! Compile errors of the derives: each `.rs` under `tests/ui/` must fail to
//! compile with exactly the messages in its `.stderr` file.

#[test]
fn checkpointed_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/checkpointed/*.rs");
}
