//! ferrymq's message store: RocketMQ's commit log, consume queues, index files, checkpoint and
//! config files, byte-compatible with Apache RocketMQ's `storePathRootDir` layout so data
//! directories are portable and pulled bytes are served straight from the log.
//!
//! Entry point: [`MessageStore::open`]. Offline inspection: [`tools`]. Broker config files:
//! [`config_file`]. Master/slave replication: [`ha`].

mod append;
pub mod checkpoint;
pub mod commit_log;
pub mod config;
pub mod config_file;
pub mod consume_queue;
mod dispatch;
pub mod epoch;
pub mod error;
mod flush;
pub mod get;
pub mod ha;
pub mod index;
pub mod mapped_file;
pub mod put;
mod store;
pub mod tools;
mod util;

pub use config::{BrokerRole, FlushDiskType, StoreConfig};
pub use error::{Result, StoreError};
pub use get::{
    GetMessageResult, GetMessageStatus, MessageArrival, MessageFilter, QueryMessageResult,
    StoreStats,
};
pub use put::{
    AppendMessageResult, MessageBatch, MessageInner, PutHandle, PutMessageResult, PutMessageStatus,
};
pub use store::{ArrivalListener, MessageStore};
