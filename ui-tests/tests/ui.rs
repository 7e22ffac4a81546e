//! Every `tests/pass/*.rs` compiles and runs; every `tests/fail/*.rs` fails
//! to compile with exactly the messages in its `.stderr` file.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
