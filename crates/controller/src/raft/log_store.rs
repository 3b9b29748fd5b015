//! The controller's durable Raft log and vote, in two files under the controller's store path.
//!
//! * `raft-vote.json`: the last vote, replaced atomically (write, fsync, rename).
//! * `raft-log`: records `u32 length | u32 crc32 | JSON entry`, appended and fsynced before
//!   openraft is told an entry is on disk. A torn or corrupt tail (kill -9 during a write) ends
//!   the log at the last whole record; Raft then re-replicates whatever that lost, since an
//!   entry is only acknowledged to the leader after its fsync.
//!
//! The whole log also lives in memory: controller metadata is small and snapshots purge the
//! log every few hundred entries. Truncation (a conflicting suffix) and purge rewrite the
//! file, which is rare and small. File writes run on tokio's blocking pool, never on a worker.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{Entry, NodeId, TypeConfig};

const VOTE_FILE: &str = "raft-vote.json";
const LOG_FILE: &str = "raft-log";
/// An entry larger than this is corruption, not data (controller commands are tiny).
const MAX_RECORD: usize = 16 << 20;

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Entry),
    /// Everything up to this id is in a snapshot and gone from the log.
    Purged(LogId<NodeId>),
}

#[derive(Default)]
struct Memory {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId<NodeId>>,
}

/// The log and vote store handed to openraft.
#[derive(Clone)]
pub struct LogStore {
    memory: Arc<RwLock<Memory>>,
    file: Arc<Mutex<File>>,
    dir: PathBuf,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, dropping a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut memory = Memory::default();
        let mut good_len = 0u64;
        if let Ok(mut f) = File::open(&path) {
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            let mut pos = 0usize;
            while let Some((record, next)) = decode_record(&data, pos) {
                match record {
                    Record::Entry(e) => {
                        // A later entry at an index replaces the suffix from there (only a
                        // rewrite produces that, but be safe).
                        memory.entries.split_off(&e.log_id.index);
                        memory.entries.insert(e.log_id.index, e);
                    }
                    Record::Purged(id) => {
                        memory.entries = memory.entries.split_off(&(id.index + 1));
                        memory.last_purged = Some(id);
                    }
                }
                pos = next;
            }
            if pos < data.len() {
                tracing::warn!(
                    path = %path.display(),
                    kept = pos,
                    dropped = data.len() - pos,
                    "raft log ends in a torn or corrupt record; cutting it there"
                );
            }
            good_len = pos as u64;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.set_len(good_len)?;
        let mut file = file;
        use std::io::Seek;
        file.seek(io::SeekFrom::End(0))?;
        Ok(LogStore {
            memory: Arc::new(RwLock::new(memory)),
            file: Arc::new(Mutex::new(file)),
            dir: dir.to_owned(),
        })
    }

    /// Replaces the log file with what memory holds.
    async fn rewrite(&self) -> Result<(), StorageError<NodeId>> {
        let mut buf = Vec::new();
        {
            let m = self.memory.read();
            if let Some(p) = m.last_purged {
                encode_record(&Record::Purged(p), &mut buf);
            }
            for e in m.entries.values() {
                encode_record(&Record::Entry(e.clone()), &mut buf);
            }
        }
        let file = self.file.clone();
        let dir = self.dir.clone();
        blocking(move || {
            let mut f = file.lock();
            let tmp = dir.join(format!("{LOG_FILE}.tmp"));
            write_synced(&tmp, &buf)?;
            fs::rename(&tmp, dir.join(LOG_FILE))?;
            sync_dir(&dir)?;
            let mut reopened = OpenOptions::new().append(true).open(dir.join(LOG_FILE))?;
            reopened.flush()?;
            *f = reopened;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    // Serialising our own types to a Vec cannot fail.
    serde_json::to_writer(&mut *out, record).expect("raft record serialises");
    let payload = &out[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

fn decode_record(data: &[u8], pos: usize) -> Option<(Record, usize)> {
    let head = data.get(pos..pos + 8)?;
    let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(head[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = data.get(pos + 8..pos + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = serde_json::from_slice(payload).ok()?;
    Some((record, pos + 8 + len))
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let m = self.memory.read();
        Ok(m.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let m = self.memory.read();
        let last = m.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: m.last_purged,
            last_log_id: last.or(m.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let data = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let dir = self.dir.clone();
        blocking(move || {
            let tmp = dir.join(format!("{VOTE_FILE}.tmp"));
            write_synced(&tmp, &data)?;
            fs::rename(&tmp, dir.join(VOTE_FILE))?;
            sync_dir(&dir)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        match fs::read(self.dir.join(VOTE_FILE)) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| StorageIOError::read_vote(&e).into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageIOError::read_vote(&e).into()),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut buf = Vec::new();
        {
            let mut m = self.memory.write();
            for e in entries {
                encode_record(&Record::Entry(e.clone()), &mut buf);
                m.entries.insert(e.log_id.index, e);
            }
        }
        let file = self.file.clone();
        let result = blocking(move || {
            let mut f = file.lock();
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.memory.write().entries.split_off(&log_id.index);
        self.rewrite().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        {
            let mut m = self.memory.write();
            m.entries = m.entries.split_off(&(log_id.index + 1));
            m.last_purged = Some(log_id);
        }
        self.rewrite().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        for i in 1..=3 {
            encode_record(&Record::Entry(entry(i)), &mut buf);
        }
        let whole = buf.len();
        encode_record(&Record::Entry(entry(4)), &mut buf);
        buf.truncate(whole + 5);
        fs::write(dir.path().join(LOG_FILE), &buf).unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .memory
                .read()
                .entries
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            whole as u64
        );
    }

    #[tokio::test]
    async fn entries_truncation_and_purge_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            let mut buf = Vec::new();
            for i in 1..=6 {
                encode_record(&Record::Entry(entry(i)), &mut buf);
                store.memory.write().entries.insert(i, entry(i));
            }
            store.file.lock().write_all(&buf).unwrap();
            store
                .truncate(LogId::new(CommittedLeaderId::new(1, 1), 5))
                .await
                .unwrap();
            store
                .purge(LogId::new(CommittedLeaderId::new(1, 1), 2))
                .await
                .unwrap();
            let mut more = Vec::new();
            encode_record(&Record::Entry(entry(5)), &mut more);
            store.file.lock().write_all(&more).unwrap();
        }
        let mut store = LogStore::open(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
        let got: Vec<u64> = store
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, vec![3, 4, 5]);
    }
}
