//! The RocketMQ-compatible broker: it stores what producers send, serves consumers' pulls (with
//! long polling), keeps consumer groups, offsets and queue locks, answers admin requests, and
//! registers itself with every NameServer.

pub mod client_registry;
pub mod config;
pub mod long_polling;
pub mod queue_lock;
