//! Consumer offsets (behaviour.md §4.2): the "next message to consume" per queue, kept in
//! memory and persisted periodically — on the brokers for clustering groups, in a local JSON file
//! for broadcasting ones (`<dir>/<clientId>/<group>/offsets.json`, Java's
//! `{"offsetTable":{{mq}:offset}}` layout, so the file is interchangeable with Java's).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use parking_lot::Mutex;
use tracing::{debug, warn};

use ferrymq_protocol::body::{decode_reset_offset_body, encode_reset_offset_body, MessageQueue};

use super::requests;
use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    /// Changed since the last persist.
    dirty: bool,
}

enum Kind {
    Remote,
    Local { path: PathBuf },
}

/// Offsets of one consumer group.
pub(crate) struct OffsetStore {
    group: String,
    kind: Kind,
    table: Mutex<HashMap<MessageQueue, Entry>>,
    /// Serialises local file writes.
    file_lock: tokio::sync::Mutex<()>,
}

/// The default directory of local offset files (Java `~/.rocketmq_offsets`).
pub(crate) fn default_local_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".rocketmq_offsets")
}

impl OffsetStore {
    /// Offsets stored on the brokers.
    pub(crate) fn remote(group: &str) -> OffsetStore {
        OffsetStore {
            group: group.to_owned(),
            kind: Kind::Remote,
            table: Mutex::new(HashMap::new()),
            file_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Offsets stored in `dir/<client_id>/<group>/offsets.json`, loaded now.
    pub(crate) fn local(dir: PathBuf, client_id: &str, group: &str) -> OffsetStore {
        let path = dir.join(client_id).join(group).join("offsets.json");
        let mut table = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => match decode_reset_offset_body(&text) {
                Ok(loaded) => {
                    for (mq, offset) in loaded {
                        table.insert(
                            mq,
                            Entry {
                                offset,
                                dirty: false,
                            },
                        );
                    }
                }
                Err(e) => warn!(path = %path.display(), error = %e, "unreadable offsets file"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "cannot read offsets file"),
        }
        OffsetStore {
            group: group.to_owned(),
            kind: Kind::Local { path },
            table: Mutex::new(table),
            file_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local { .. })
    }

    /// Records a new offset; with `increase_only` an older offset never replaces a newer one.
    pub(crate) fn update(&self, queue: &MessageQueue, offset: i64, increase_only: bool) {
        let mut table = self.table.lock();
        match table.get_mut(queue) {
            Some(e) if increase_only && offset <= e.offset => {}
            Some(e) => {
                if e.offset != offset {
                    e.offset = offset;
                    e.dirty = true;
                }
            }
            None => {
                table.insert(
                    queue.clone(),
                    Entry {
                        offset,
                        dirty: true,
                    },
                );
            }
        }
    }

    /// The offset in memory.
    pub(crate) fn read_memory(&self, queue: &MessageQueue) -> Option<i64> {
        self.table.lock().get(queue).map(|e| e.offset)
    }

    /// The persisted offset (broker query or local file contents); `None` if there is none.
    pub(crate) async fn read_store(
        &self,
        instance: &ClientInstance,
        queue: &MessageQueue,
    ) -> Result<Option<i64>> {
        match self.kind {
            Kind::Local { .. } => Ok(self.read_memory(queue)),
            Kind::Remote => {
                let offset = requests::query_offset(instance, &self.group, queue, false).await?;
                if let Some(o) = offset {
                    self.table.lock().insert(
                        queue.clone(),
                        Entry {
                            offset: o,
                            dirty: false,
                        },
                    );
                }
                Ok(offset)
            }
        }
    }

    /// Forgets a queue's offset (it was handed to another consumer).
    pub(crate) fn remove(&self, queue: &MessageQueue) {
        if !self.is_local() {
            self.table.lock().remove(queue);
        }
    }

    /// Persists changed offsets of `queues` (all queues for a local file). Remote commits are
    /// one-way unless `wait`.
    pub(crate) async fn persist(
        &self,
        instance: &ClientInstance,
        queues: &[MessageQueue],
        wait: bool,
    ) {
        match &self.kind {
            Kind::Remote => {
                let pending: Vec<(MessageQueue, i64)> = {
                    let mut table = self.table.lock();
                    queues
                        .iter()
                        .filter_map(|q| {
                            let e = table.get_mut(q)?;
                            let take = e.dirty || wait;
                            e.dirty = false;
                            take.then(|| (q.clone(), e.offset))
                        })
                        .collect()
                };
                let calls = pending.iter().map(|(q, offset)| async move {
                    if let Err(e) =
                        requests::update_offset(instance, &self.group, q, *offset, wait).await
                    {
                        debug!(queue = ?q, error = %e, "offset commit failed");
                        self.mark_dirty(q);
                    }
                });
                futures::future::join_all(calls).await;
            }
            Kind::Local { path } => {
                let _guard = self.file_lock.lock().await;
                let snapshot: BTreeMap<MessageQueue, i64> = {
                    let mut table = self.table.lock();
                    if !wait && !table.values().any(|e| e.dirty) {
                        return;
                    }
                    table
                        .iter_mut()
                        .map(|(q, e)| {
                            e.dirty = false;
                            (q.clone(), e.offset)
                        })
                        .collect()
                };
                if let Err(e) = write_local(path.clone(), snapshot).await {
                    warn!(path = %path.display(), error = %e, "cannot write offsets file");
                }
            }
        }
    }

    fn mark_dirty(&self, queue: &MessageQueue) {
        if let Some(e) = self.table.lock().get_mut(queue) {
            e.dirty = true;
        }
    }
}

async fn write_local(path: PathBuf, table: BTreeMap<MessageQueue, i64>) -> Result<()> {
    let text = encode_reset_offset_body(&table)
        .map_err(|e| ClientError::Malformed(format!("offsets: {e}")))?;
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(|_| ClientError::Shutdown)?
    .map_err(|e| ClientError::InvalidArgument(format!("offsets file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: id,
        }
    }

    #[test]
    fn increase_only_never_goes_back() {
        let s = OffsetStore::remote("g");
        s.update(&q(0), 5, true);
        s.update(&q(0), 3, true);
        assert_eq!(s.read_memory(&q(0)), Some(5));
        s.update(&q(0), 3, false);
        assert_eq!(s.read_memory(&q(0)), Some(3));
        s.remove(&q(0));
        assert_eq!(s.read_memory(&q(0)), None);
    }

    #[tokio::test]
    async fn local_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = OffsetStore::local(dir.path().to_owned(), "c@1", "g");
        s.update(&q(0), 7, true);
        s.update(&q(1), 2, true);
        let snapshot: BTreeMap<_, _> = [(q(0), 7), (q(1), 2)].into();
        let OffsetStore {
            kind: Kind::Local { path },
            ..
        } = &s
        else {
            unreachable!()
        };
        write_local(path.clone(), snapshot).await.unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with(r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:7"#));
        let again = OffsetStore::local(dir.path().to_owned(), "c@1", "g");
        assert_eq!(again.read_memory(&q(1)), Some(2));
    }
}
