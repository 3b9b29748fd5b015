//! The RocketMQ remoting protocol as pure data: frames, commands, request and response codes,
//! typed headers, JSON bodies and the message record layout. No sockets, no files: every other
//! crate builds on these types, and each codec here is tested against the bytes real clients send.

pub mod acl;
pub mod body;
pub mod code;
pub mod codec;
pub mod command;
pub mod filter;
pub mod header;
pub mod java_properties;
pub mod message;
pub mod naming;
pub mod pop;
pub mod recall;
pub mod trace;

pub use code::{LanguageCode, RequestCode, ResponseCode};
pub use command::{Body, ExtFields, RemotingCommand, SerializeType};
