//! Compile errors of `#[derive(Keyed)]`: each case in `tests/ui/keyed/` with
//! its expected `.stderr` (regenerate with `TRYBUILD=overwrite`, then read
//! them: every message must point at the offending field or attribute).

#[test]
fn keyed_ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/keyed/*.rs");
}
