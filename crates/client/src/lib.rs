//! Async Rust client for RocketMQ-compatible clusters.

pub mod rebalance;
