//! Access control shared by the broker (remoting requests) and the proxy (gRPC calls): one rule
//! engine, so an account means the same on port 10911 and on 8081.
//!
//! [`plain`] is RocketMQ's ACL 1.0: accounts, white lists and PUB/SUB permissions from
//! `plain_acl.yml`, hot reloaded. [`grpc`] verifies the 5.x SDKs' `authorization` header
//! against the same accounts.

pub mod grpc;
pub mod plain;

pub use plain::{Account, AclError, AclFileError, AclRules, Perm, PlainAcl, Resource};
