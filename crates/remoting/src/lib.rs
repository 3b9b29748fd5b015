//! Tokio transport for the RocketMQ remoting protocol.
//!
//! One [`Connection`] type serves both ends of a socket: either side may send requests and
//! receive responses on it (brokers call back into clients over the client's own connection), so
//! the server and the client are thin layers that create connections — by accepting or by
//! dialling — and hand incoming requests to a [`RequestHandler`].

mod client;
mod connection;
mod error;
mod server;
pub mod tls;

pub use client::{ClientConfig, RemotingClient};
pub use connection::{Connection, ConnectionConfig, RequestHandler, SharedHandler};
pub use error::TransportError;
pub use server::{RemotingServer, ServerConfig};
pub use tls::{ClientTls, ServerTls, TlsFiles, TlsMode};
