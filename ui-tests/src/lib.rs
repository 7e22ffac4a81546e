//! Compile-pass and compile-fail cases of jetflow's `#[event]` and
//! `#[handler]` macros, run with trybuild by `tests/ui.rs`
//! (`TRYBUILD=overwrite cargo test -p jetflow-ui-tests` regenerates the
//! expected `.stderr` files, which must then be read before committing).
