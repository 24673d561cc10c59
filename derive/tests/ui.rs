//! Compile-fail tests of the derive macros (the code they accept is `tests/pass`).
//!
//! Each file holds several independent cases, one module or type each: every derive
//! reports its own mistakes, so one file compiles many cases in one go. Compile-fail
//! cases alone let trybuild check the dependencies instead of building them, and check
//! every file in one cargo run. `TRYBUILD=overwrite` rewrites the `.stderr` files.

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
