//! Consume queues (store-format.md §3): per topic/queue logs of 20-byte entries
//! `[int64 commitlog offset][int32 size][int64 tag code]`, where entry n (the queue offset) sits
//! at byte n × 20. They are written only by the dispatcher, which follows the commit log, and read
//! by pulls; files are `consumequeue/<topic>/<queueId>/<20-digit byte offset>`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{IoContext, Result, StoreError};
use crate::mapped_file::{MappedFile, MappedFileQueue};

pub const CQ_ENTRY_SIZE: usize = 20;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub commit_log_offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl CqEntry {
    /// Filler written before the first real entry of a queue that starts past offset 0.
    pub const BLANK: CqEntry = CqEntry {
        commit_log_offset: 0,
        size: i32::MAX,
        tags_code: 0,
    };

    pub fn is_blank(&self) -> bool {
        *self == CqEntry::BLANK
    }

    /// Java's recovery test for an entry that was written.
    pub fn is_valid(&self) -> bool {
        self.commit_log_offset >= 0 && self.size > 0
    }

    pub fn decode(b: &[u8]) -> Option<CqEntry> {
        let b: &[u8; CQ_ENTRY_SIZE] = b.get(..CQ_ENTRY_SIZE)?.try_into().ok()?;
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[0..8]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        Some(CqEntry {
            commit_log_offset: i64::from_be_bytes(o),
            size: i32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            tags_code: i64::from_be_bytes(t),
        })
    }

    pub fn encode(&self) -> [u8; CQ_ENTRY_SIZE] {
        let mut b = [0u8; CQ_ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.commit_log_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        b
    }
}

/// Entries of one consume-queue file starting at a logical offset (a pull reads one file).
pub struct CqBuffer {
    file: Arc<MappedFile>,
    pos: usize,
    len: usize,
    /// Queue offset of the first entry.
    pub start_offset: i64,
}

impl CqBuffer {
    pub fn len(&self) -> usize {
        self.len / CQ_ENTRY_SIZE
    }
    pub fn is_empty(&self) -> bool {
        self.len < CQ_ENTRY_SIZE
    }
    pub fn iter(&self) -> impl Iterator<Item = CqEntry> + '_ {
        self.file
            .bytes(self.pos, self.len)
            .chunks_exact(CQ_ENTRY_SIZE)
            .filter_map(CqEntry::decode)
    }
}

/// One topic/queue.
pub struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    files: MappedFileQueue,
    min_logic_offset: AtomicI64,
    /// Commit-log end (offset + size) of the newest entry; duplicates below it are ignored.
    max_physic_offset: AtomicI64,
    write_lock: Mutex<()>,
}

impl ConsumeQueue {
    pub fn new(root: &Path, topic: &str, queue_id: i32, file_size: usize) -> ConsumeQueue {
        let dir = root.join(topic).join(queue_id.to_string());
        ConsumeQueue {
            topic: topic.to_owned(),
            queue_id,
            files: MappedFileQueue::new(dir, file_size),
            min_logic_offset: AtomicI64::new(0),
            max_physic_offset: AtomicI64::new(-1),
            write_lock: Mutex::new(()),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }
    pub fn files(&self) -> &MappedFileQueue {
        &self.files
    }

    /// Next queue offset to be written.
    pub fn max_offset(&self) -> i64 {
        self.files.max_offset() / CQ_ENTRY_SIZE as i64
    }
    pub fn min_offset(&self) -> i64 {
        self.min_logic_offset
            .load(Ordering::Acquire)
            .max(self.files.min_offset() / CQ_ENTRY_SIZE as i64)
    }
    pub fn max_physic_offset(&self) -> i64 {
        self.max_physic_offset.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Result<()> {
        self.files.load()
    }

    /// Keeps entries up to the first unwritten one (checking the last three files, like Java).
    pub fn recover(&self) -> Result<()> {
        let files = self.files.files();
        let start = files.len().saturating_sub(3);
        let mut max_phys = -1;
        let mut cut = None;
        for f in &files[start..] {
            let data = f.bytes(0, f.file_size());
            let mut pos = 0;
            while pos + CQ_ENTRY_SIZE <= data.len() {
                match CqEntry::decode(&data[pos..]) {
                    Some(e) if e.is_valid() => {
                        if !e.is_blank() {
                            max_phys = e.commit_log_offset + i64::from(e.size);
                        }
                        pos += CQ_ENTRY_SIZE;
                    }
                    _ => break,
                }
            }
            if pos + CQ_ENTRY_SIZE > data.len() {
                continue;
            }
            cut = Some(f.file_from_offset() + pos as i64);
            break;
        }
        if let Some(cut) = cut {
            self.files.truncate_dirty(cut)?;
        }
        self.max_physic_offset.store(max_phys, Ordering::Release);
        Ok(())
    }

    /// The entry at a queue offset, if written.
    pub fn entry(&self, offset: i64) -> Option<CqEntry> {
        if offset < 0 || offset >= self.max_offset() {
            return None;
        }
        let byte = offset * CQ_ENTRY_SIZE as i64;
        let f = self.files.find(byte)?;
        let pos = (byte - f.file_from_offset()) as usize;
        CqEntry::decode(f.published_from(pos))
    }

    /// Entries from `offset` to the end of its file's written part. `None` if the offset's file
    /// is gone (deleted) or nothing is written there.
    pub fn entries_from(&self, offset: i64) -> Option<CqBuffer> {
        if offset < 0 {
            return None;
        }
        let byte = offset * CQ_ENTRY_SIZE as i64;
        let f = self.files.find(byte)?;
        let pos = (byte - f.file_from_offset()) as usize;
        let wrote = f.wrote_position();
        if pos >= wrote {
            return None;
        }
        Some(CqBuffer {
            len: (wrote - pos) / CQ_ENTRY_SIZE * CQ_ENTRY_SIZE,
            file: f,
            pos,
            start_offset: offset,
        })
    }

    /// Queue offset where the file after the one holding `offset` begins.
    pub fn roll_next_file(&self, offset: i64) -> i64 {
        let per_file = (self.files.file_size() / CQ_ENTRY_SIZE) as i64;
        offset + per_file - offset % per_file
    }

    /// Writes the entry for queue offset `offset` (dispatcher only). An offset below the end is
    /// a re-dispatch and is ignored; a gap is filled with blank entries.
    pub fn put(&self, offset: i64, entry: CqEntry) -> Result<()> {
        let _guard = self.write_lock.lock();
        let max = self.max_offset();
        if offset < max {
            return Ok(());
        }
        let file_size = self.files.file_size() as i64;
        if self.files.is_empty() {
            let byte = offset * CQ_ENTRY_SIZE as i64;
            let start = byte - byte % file_size;
            self.files.create_file(start)?;
            self.min_logic_offset.store(offset, Ordering::Release);
        }
        let mut next = self.max_offset();
        while next < offset {
            self.write_entry(next, CqEntry::BLANK)?;
            next += 1;
        }
        self.write_entry(offset, entry)?;
        self.max_physic_offset.fetch_max(
            entry.commit_log_offset + i64::from(entry.size),
            Ordering::AcqRel,
        );
        Ok(())
    }

    fn write_entry(&self, offset: i64, entry: CqEntry) -> Result<()> {
        let byte = offset * CQ_ENTRY_SIZE as i64;
        let mut f = match self.files.last_file() {
            Some(f) => f,
            None => self.files.create_file(byte)?,
        };
        if f.is_full() {
            f = self.files.create_file(f.end_offset())?;
        }
        let pos = byte - f.file_from_offset();
        if pos < 0 || pos as usize != f.wrote_position() {
            return Err(StoreError::Corrupt {
                path: f.path().to_owned(),
                message: format!(
                    "consume queue write at {pos} but file ends at {}",
                    f.wrote_position()
                ),
            });
        }
        let pos = pos as usize;
        f.write_at(pos, &entry.encode());
        f.set_wrote_position(pos + CQ_ENTRY_SIZE);
        Ok(())
    }

    /// Removes entries whose commit-log offset is at or beyond `phys_offset` (after the commit log
    /// lost its tail).
    pub fn truncate_dirty(&self, phys_offset: i64) -> Result<()> {
        let _guard = self.write_lock.lock();
        loop {
            let Some(f) = self.files.last_file() else {
                break;
            };
            let data = f.published_from(0);
            let mut cut = None;
            let mut pos = 0;
            while pos + CQ_ENTRY_SIZE <= data.len() {
                let Some(e) = CqEntry::decode(&data[pos..]) else {
                    break;
                };
                if !e.is_blank() && e.commit_log_offset >= phys_offset {
                    cut = Some(pos);
                    break;
                }
                pos += CQ_ENTRY_SIZE;
            }
            match cut {
                Some(0) if self.files.files().len() > 1 => {
                    self.files.delete_last()?;
                }
                Some(pos) => {
                    self.files
                        .truncate_dirty(f.file_from_offset() + pos as i64)?;
                    break;
                }
                None => break,
            }
        }
        self.refresh_max_physic();
        Ok(())
    }

    fn refresh_max_physic(&self) {
        let max = self.max_offset();
        let mut m = -1;
        let mut o = max - 1;
        while o >= self.min_offset() && o >= max - 2 {
            if let Some(e) = self.entry(o) {
                if !e.is_blank() {
                    m = e.commit_log_offset + i64::from(e.size);
                    break;
                }
            }
            o -= 1;
        }
        self.max_physic_offset.store(m, Ordering::Release);
    }

    /// Sets the min queue offset to the first entry whose message is still in the commit log.
    pub fn correct_min_offset(&self, commit_log_min: i64) {
        let (mut lo, mut hi) = (
            self.files.min_offset() / CQ_ENTRY_SIZE as i64,
            self.max_offset(),
        );
        // Binary search for the first entry at or above the commit-log minimum; blanks count as
        // below it, so a blank prefix is skipped too.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = match self.entry(mid) {
                Some(e) => e.is_blank() || e.commit_log_offset < commit_log_min,
                None => false,
            };
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.min_logic_offset.store(lo, Ordering::Release);
    }

    /// Deletes leading files whose last entry points below `commit_log_min` (never the last file).
    pub fn delete_expired(&self, commit_log_min: i64) -> Result<usize> {
        let _guard = self.write_lock.lock();
        let files = self.files.files();
        let mut n = 0;
        for f in files.iter().take(files.len().saturating_sub(1)) {
            let last = f.bytes(f.file_size() - CQ_ENTRY_SIZE, CQ_ENTRY_SIZE);
            match CqEntry::decode(last) {
                Some(e)
                    if e.is_valid()
                        && e.commit_log_offset + i64::from(e.size) <= commit_log_min =>
                {
                    n += 1
                }
                _ => break,
            }
        }
        if n > 0 {
            self.files.delete_first(n)?;
        }
        drop(_guard);
        self.correct_min_offset(commit_log_min);
        Ok(n)
    }

    pub fn flush(&self) -> Result<()> {
        self.files.flush().map(|_| ())
    }

    pub fn destroy(&self) -> Result<()> {
        let _guard = self.write_lock.lock();
        self.files.destroy()
    }
}

type QueueMap = HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>;

/// All consume queues of the store, keyed topic → queue id (lookups borrow the topic).
pub struct ConsumeQueueTable {
    root: PathBuf,
    file_size: usize,
    queues: RwLock<QueueMap>,
}

impl ConsumeQueueTable {
    pub fn new(root: PathBuf, file_size: usize) -> ConsumeQueueTable {
        ConsumeQueueTable {
            root,
            file_size,
            queues: RwLock::new(HashMap::new()),
        }
    }

    /// Loads `consumequeue/<topic>/<queueId>/` directories.
    pub fn load(&self) -> Result<()> {
        fs::create_dir_all(&self.root).context(|| format!("create {}", self.root.display()))?;
        let mut map = QueueMap::new();
        for topic in fs::read_dir(&self.root).context(|| format!("list {}", self.root.display()))? {
            let topic = topic.context(|| format!("list {}", self.root.display()))?;
            let Some(name) = topic.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !topic.path().is_dir() {
                continue;
            }
            for q in
                fs::read_dir(topic.path()).context(|| format!("list {}", topic.path().display()))?
            {
                let q = q.context(|| format!("list {}", topic.path().display()))?;
                let Some(id) = q.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let cq = ConsumeQueue::new(&self.root, &name, id, self.file_size);
                cq.load()?;
                map.entry(name.clone())
                    .or_default()
                    .insert(id, Arc::new(cq));
            }
        }
        *self.queues.write() = map;
        Ok(())
    }

    pub fn find(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    pub fn find_or_create(&self, topic: &str, queue_id: i32) -> Arc<ConsumeQueue> {
        if let Some(q) = self.find(topic, queue_id) {
            return q;
        }
        self.queues
            .write()
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| {
                Arc::new(ConsumeQueue::new(
                    &self.root,
                    topic,
                    queue_id,
                    self.file_size,
                ))
            })
            .clone()
    }

    pub fn all(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    pub fn topics(&self) -> Vec<String> {
        self.queues.read().keys().cloned().collect()
    }

    pub fn queues_of(&self, topic: &str) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .get(topic)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a topic's queues from the table and deletes their files.
    pub fn remove_topic(&self, topic: &str) -> Result<bool> {
        let removed = self.queues.write().remove(topic);
        let Some(removed) = removed else {
            return Ok(false);
        };
        for q in removed.values() {
            q.destroy()?;
        }
        let _ = fs::remove_dir_all(self.root.join(topic));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(off: i64) -> CqEntry {
        CqEntry {
            commit_log_offset: off,
            size: 100,
            tags_code: off * 7,
        }
    }

    #[test]
    fn put_read_recover_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let q = ConsumeQueue::new(dir.path(), "T", 0, 5 * CQ_ENTRY_SIZE);
        q.load().unwrap();
        for i in 0..12 {
            q.put(i, e(i * 100)).unwrap();
        }
        q.put(3, e(999)).unwrap(); // duplicate ignored
        assert_eq!(q.max_offset(), 12);
        assert_eq!(q.entry(3), Some(e(300)));
        assert_eq!(q.entries_from(6).unwrap().len(), 4);
        assert_eq!(q.roll_next_file(6), 10);
        assert_eq!(q.max_physic_offset(), 1200);
        drop(q);

        let q = ConsumeQueue::new(dir.path(), "T", 0, 5 * CQ_ENTRY_SIZE);
        q.load().unwrap();
        q.recover().unwrap();
        assert_eq!(q.max_offset(), 12);
        q.truncate_dirty(550).unwrap();
        assert_eq!(q.max_offset(), 6);
        assert_eq!(q.max_physic_offset(), 600);
        q.truncate_dirty(500).unwrap();
        assert_eq!(q.max_offset(), 5);
        q.correct_min_offset(250);
        assert_eq!(q.min_offset(), 3);
        for i in 5..12 {
            q.put(i, e(i * 100)).unwrap();
        }
        assert_eq!(q.delete_expired(1000).unwrap(), 2);
        assert_eq!(q.min_offset(), 10);
        assert_eq!(q.entry(11), Some(e(1100)));
    }

    #[test]
    fn starts_past_zero_with_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let q = ConsumeQueue::new(dir.path(), "T", 1, 5 * CQ_ENTRY_SIZE);
        q.load().unwrap();
        q.put(7, e(5000)).unwrap();
        assert_eq!(q.min_offset(), 7);
        assert_eq!(q.max_offset(), 8);
        assert!(q.entry(5).unwrap().is_blank());
        q.correct_min_offset(0);
        assert_eq!(q.min_offset(), 7);
    }
}
