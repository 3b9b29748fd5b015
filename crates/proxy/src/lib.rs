//! The RocketMQ 5.x gRPC endpoint: `apache.rocketmq.v2.MessagingService`, the protocol the
//! official 5.x SDKs (Java, Go, Rust `rocketmq`, Python, Node, C#, C++) speak, served in front
//! of ferrymq (or Apache RocketMQ) brokers.
//!
//! The proxy is stateless "cluster mode" (grpc-v5.md §15): it holds no messages. Routes come
//! from the name servers, sends become SEND_MESSAGE requests, receive/ack/change-invisible
//! become the broker's POP requests, pull-by-offset (PullMessage, Update/Get/QueryOffset)
//! becomes PULL_MESSAGE and the offset requests, RecallMessage becomes RECALL_MESSAGE, all over
//! RocketMQ remoting through one [`ferrymq_client::ClientInstance`]. What it keeps in memory is per gRPC client: the Settings
//! it reported, its Telemetry stream (for broker-initiated transaction checks), the transaction
//! ids of half messages sent through it and, for push consumers, the receipt handles it keeps
//! invisible on their behalf (auto-renew); plus a short cache of consumer-group configs.
//!
//! One port (8081 by default) serves TLS and plaintext: the first byte of a connection decides
//! (0x16 = TLS ClientHello), because the Java and Go SDKs default to TLS and the others do not.
//! Without a configured certificate a self-signed one is generated on the first TLS
//! connection.

pub mod pb {
    //! Types generated from `proto/apache/rocketmq/v2/*.proto` (our own rendering of the
    //! spec's field tables; names and numbers are the wire contract).
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("apache.rocketmq.v2");
}

mod convert;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod metrics;
mod offset;
mod receive;
mod renew;
mod route;
mod send;
mod server;
mod service;
mod session;
mod status;
mod tls;
mod transaction;

pub use error::ProxyError;
pub use server::{Proxy, ProxyConfig, TlsFiles, TlsMode};
