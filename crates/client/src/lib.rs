//! Async Rust client for RocketMQ-compatible clusters (ferrymq, Apache RocketMQ 4.x/5.x).
//!
//! * [`Producer`] — sync, async, one-way, batch and ordered sends, with retries and optional
//!   latency fault tolerance; [`TransactionProducer`] for transactional messages.
//! * [`PushConsumer`] — subscribes and hands messages to a listener, concurrently or in queue
//!   order, clustering or broadcasting; [`LitePullConsumer`] — the application polls.
//! * [`Admin`] — topics, routes, clusters, statistics, consumer progress, message queries,
//!   offset resets.
//! * [`ClientInstance`] — what the clients of one process share: connections, routes, the
//!   client id and heartbeats. Builders create one per client unless given one.
//!
//! Every client finds brokers through the name servers given on its builder (`host:port;…`)
//! or in the `NAMESRV_ADDR` environment variable. All calls are `async` and need a Tokio
//! runtime.

#![warn(missing_docs)]

pub mod admin;
pub mod compression;
pub mod config;
pub mod consumer;
pub mod error;
pub mod instance;
pub mod message;
pub mod producer;
pub mod rebalance;
pub mod route;
mod trace;
pub mod transaction;

pub use admin::{Admin, AdminBuilder, ConsumerProgress, TopicSpec};
pub use compression::Compression;
pub use config::ClientOptions;
pub use consumer::{
    ConsumeContext, ConsumeFrom, ConsumeResult, Expression, LitePullConsumer, MessageListener,
    MessageModel, PullResult, PullStatus, PushConsumer,
};
pub use error::{ClientError, Result};
pub use ferrymq_protocol::body::MessageQueue;
pub use instance::ClientInstance;
pub use message::{Message, MessageExt};
pub use producer::{
    Producer, ProducerBuilder, ProducerSettings, SendHandle, SendResult, SendStatus,
};
pub use rebalance::AllocateStrategy;
pub use transaction::{
    HalfMessage, TransactionChecker, TransactionProducer, TransactionProducerBuilder,
    TransactionSendResult, TransactionState,
};

/// A response body as text (JSON bodies are UTF-8).
pub(crate) fn body_text(cmd: &ferrymq_protocol::RemotingCommand) -> String {
    String::from_utf8_lossy(&cmd.body.to_bytes()).into_owned()
}
