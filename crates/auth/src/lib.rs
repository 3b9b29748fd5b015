//! Access control shared by the broker (remoting requests) and the proxy (gRPC calls): one rule
//! engine, so an account means the same on port 10911 and on 8081.
//!
//! [`plain`] is RocketMQ's ACL 1.0: accounts, white lists and PUB/SUB permissions from
//! `plain_acl.yml`, hot reloaded. [`grpc`] verifies the 5.x SDKs' `authorization` header
//! against the same accounts. [`rbac`] is ACL 2.0: users and policies kept in the broker's
//! `auth.json`. [`access`] is the one check servers call, whichever generation is configured.

pub mod access;
pub mod grpc;
pub mod plain;
pub mod rbac;

pub use access::{AccessControl, Rbac};
pub use plain::{Account, AclError, AclFileError, AclRules, Perm, PlainAcl, Resource};
pub use rbac::{AclInfo, AuthAdminError, AuthStore, UserInfo};
