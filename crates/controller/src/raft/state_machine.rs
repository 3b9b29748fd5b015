//! The Raft state machine: applies committed [`Command`]s to the shared [`Replicas`] and keeps
//! a snapshot (`raft-snapshot.json`: the replicas, the last applied log id and membership) so
//! the log can be purged and a lagging controller can be caught up in one transfer.
//!
//! The replicas live behind a read-write lock that request handlers read directly: reads are
//! frequent (every broker asks for its set every few seconds) and writes happen only here.

use std::fs;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Entry, NodeId, TypeConfig};
use crate::replicas::{Outcome, Replicas};

const SNAPSHOT_FILE: &str = "raft-snapshot.json";

type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    replicas: Replicas,
}

/// The state machine handed to openraft; clones share state.
#[derive(Clone)]
pub struct StateMachine {
    replicas: Arc<RwLock<Replicas>>,
    applied: Arc<RwLock<(Option<LogId<NodeId>>, Membership)>>,
    dir: PathBuf,
}

impl StateMachine {
    /// Loads the last snapshot from `dir`, if any.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        fs::create_dir_all(dir)?;
        let (replicas, applied) = match fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(data) => {
                let s: StoredSnapshot = serde_json::from_slice(&data).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", dir.join(SNAPSHOT_FILE).display()),
                    )
                })?;
                (s.replicas, (s.meta.last_log_id, s.meta.last_membership))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (Replicas::default(), (None, Membership::default()))
            }
            Err(e) => return Err(e),
        };
        Ok(StateMachine {
            replicas: Arc::new(RwLock::new(replicas)),
            applied: Arc::new(RwLock::new(applied)),
            dir: dir.to_owned(),
        })
    }

    /// The replicas info as applied on this controller.
    pub fn replicas(&self) -> Arc<RwLock<Replicas>> {
        self.replicas.clone()
    }

    fn current(&self) -> StoredSnapshot {
        // Both under their locks at once, in `apply`'s order: a snapshot labelled with a log
        // id holds exactly the state up to it.
        let replicas = self.replicas.read();
        let (last, membership) = self.applied.read().clone();
        StoredSnapshot {
            meta: Meta {
                last_log_id: last,
                last_membership: membership,
                snapshot_id: last.map_or_else(|| "empty".to_owned(), |l| l.to_string()),
            },
            replicas: replicas.clone(),
        }
    }

    async fn persist(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let data =
            serde_json::to_vec(snapshot).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            // A temp file of its own: a snapshot being built and one being installed may
            // be written at the same time.
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!("{SNAPSHOT_FILE}.{n}.tmp"));
            let mut f = fs::File::create(&tmp)?;
            io::Write::write_all(&mut f, &data)?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
            fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &io::Error::other(e.to_string())))?
        .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshot = self.current();
        self.persist(&snapshot).await?;
        let data = serde_json::to_vec(&snapshot.replicas)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta: snapshot.meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok(self.applied.read().clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        let mut replicas = self.replicas.write();
        let mut applied = self.applied.write();
        for entry in entries {
            applied.0 = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(Ok(None)),
                EntryPayload::Normal(command) => {
                    let outcome = replicas.apply(&command);
                    if let Err(refusal) = &outcome {
                        tracing::debug!(?command, %refusal, "controller command refused");
                    }
                    outcomes.push(outcome);
                }
                EntryPayload::Membership(m) => {
                    applied.1 = StoredMembership::new(Some(entry.log_id), m);
                    outcomes.push(Ok(None));
                }
            }
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let replicas: Replicas = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            replicas: replicas.clone(),
        };
        self.persist(&stored).await?;
        *self.replicas.write() = replicas;
        *self.applied.write() = (meta.last_log_id, meta.last_membership.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        match fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(data) => {
                let s: StoredSnapshot = serde_json::from_slice(&data)
                    .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
                let replicas = serde_json::to_vec(&s.replicas)
                    .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
                Ok(Some(Snapshot {
                    meta: s.meta,
                    snapshot: Box::new(Cursor::new(replicas)),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageIOError::read_snapshot(None, &e).into()),
        }
    }
}
