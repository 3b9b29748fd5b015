//! Compatibility test crate; the tests live in `tests/` and drive a real `ferrymq standalone`
//! process with the independent crates.io client `rocketmq-client-rust`.
//!
//! Run: `cargo build -p ferrymq` in the main workspace, then in `compat/`:
//! `CARGO_TARGET_DIR=/work/compat-target cargo test` (see `tests/common/mod.rs` for knobs).
