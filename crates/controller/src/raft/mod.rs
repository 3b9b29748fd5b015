//! The Raft plumbing of the controller, on openraft: the type configuration, the durable log
//! ([`log_store`]), the state machine that applies [`Command`]s to the replicas info
//! ([`state_machine`]) and the peer transport over RocketMQ remoting frames ([`network`]).

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use crate::replicas::{Command, Outcome};

/// A controller's id in the Raft group: the number in `controllerDLegerSelfId` (`n0` → 0).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type set for the controller group.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;
