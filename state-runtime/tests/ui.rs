//! Compile errors of the derives (`Checkpointed`, `Keyed`, `StableHash`):
//! each `.rs` under `tests/ui/<derive>/` must fail to compile with exactly
//! the messages in its `.stderr` file, every message pointing at the
//! offending field or attribute. Regenerate with `TRYBUILD=overwrite`, then
//! read them. One harness, so that the cases share one build. The messages
//! list trait implementations, which other features add to: run it with the
//! default features, as `cargo test --workspace` does.

#[test]
fn derive_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/checkpointed/*.rs");
    t.compile_fail("tests/ui/keyed/*.rs");
    t.compile_fail("tests/ui/stable_hash/*.rs");
}
