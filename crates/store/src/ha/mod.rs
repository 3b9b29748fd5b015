//! Classic master/slave replication: RocketMQ's HA service in its non-controller mode
//! (request-codes.md §1.4). The store owns it, as in RocketMQ, because replication is a copy of
//! the commit log byte for byte: a slave's log is the master's, at the same physical offsets,
//! and its consume queues and index are rebuilt from it by the ordinary dispatcher.
//!
//! * [`master`]: a master (ASYNC_MASTER / SYNC_MASTER) listens on `haListenPort`; per slave a
//!   reader thread takes the slave's offset reports and a writer thread pushes commit-log data
//!   from there. SYNC_MASTER puts wait here for a slave's acknowledgement.
//! * [`slave`]: a slave connects to the master's HA address (configured or learned from the
//!   NameServer), reports its end offset, and appends what it receives at exactly that offset.
//!
//! Everything here runs on the store's own threads with blocking sockets, like the rest of the
//! store's disk work, so no async worker ever waits on a page fault of the commit log.

mod frame;
mod master;
mod slave;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) use master::HaMaster;
pub(crate) use slave::HaSlave;

/// Why a replication connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HA frame: {0}")]
    BadFrame(String),
    #[error("master sent data for offset {got}, but this commit log ends at {expected}")]
    Discontinuity { expected: i64, got: i64 },
    #[error("cannot append replicated data at offset {offset}: {reason}")]
    Placement { offset: i64, reason: String },
    #[error("the store is shut down")]
    Shutdown,
}

/// A snapshot of replication, for runtime info and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaStatus {
    /// Master: each connected slave and the offset it last acknowledged (-1 before its first
    /// report).
    pub slaves: Vec<(SocketAddr, i64)>,
    /// Master: the highest offset any slave acknowledged (Java's push2SlaveMaxOffset).
    pub acked_offset: i64,
    /// Slave: the master HA address it replicates from.
    pub master_address: Option<String>,
    /// Slave: whether a replication connection is up.
    pub connected_to_master: bool,
    /// Master: every connected slave with what it named itself (controller mode).
    pub replicas: Vec<ReplicaAck>,
    /// Master in controller mode: the other SyncStateSet members puts wait for.
    pub sync_state_set: BTreeSet<u64>,
}

/// One slave connection of a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAck {
    pub peer: SocketAddr,
    /// Controller mode: the broker id the slave named.
    pub broker_id: Option<u64>,
    /// The offset it last acknowledged (-1 before its first report).
    pub acked: i64,
    /// How long ago it last had everything the master had.
    pub caught_up_ago: Option<Duration>,
}

/// The running side of replication a store has, by role.
pub(crate) enum HaService {
    Master(HaMaster),
    Slave(HaSlave),
}

impl HaService {
    pub fn status(&self) -> HaStatus {
        match self {
            HaService::Master(m) => m.status(),
            HaService::Slave(s) => s.status(),
        }
    }

    pub fn shutdown(&self) {
        match self {
            HaService::Master(m) => m.shutdown(),
            HaService::Slave(s) => s.shutdown(),
        }
    }
}
