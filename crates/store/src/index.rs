//! Index files (store-format.md §4): a hash table of message keys on disk, so messages can be
//! found by KEYS or UNIQ_KEY. Each file is a 40-byte header, `max_hash_slot_num` int32 slots, and
//! `max_index_num` 20-byte entries chained newest-first per slot; only hashes are stored, so
//! callers re-check hits against the message itself.
//!
//! The dispatcher is the only writer; queries take the same per-file mutex, which keeps the
//! slot/entry reads free of data races and costs nothing measurable next to the hashing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrymq_protocol::message::java_string_hash;
use parking_lot::{Mutex, RwLock};

use crate::error::{IoContext, Result};
use crate::mapped_file::MappedFile;
use crate::util::format_index_file_name;

pub const INDEX_HEADER_SIZE: usize = 40;
pub const HASH_SLOT_SIZE: usize = 4;
pub const INDEX_ENTRY_SIZE: usize = 20;

/// Size of an index file with these dimensions.
pub const fn index_file_size(slot_num: usize, index_num: usize) -> usize {
    INDEX_HEADER_SIZE + slot_num * HASH_SLOT_SIZE + index_num * INDEX_ENTRY_SIZE
}

/// `abs(String.hashCode())`, with `abs(Integer.MIN_VALUE)` mapped to 0 as Java does.
pub fn key_hash(key: &str) -> i32 {
    let h = java_string_hash(key);
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

/// The index key of a message key: `topic#key`.
pub fn build_key(topic: &str, key: &str) -> String {
    let mut s = String::with_capacity(topic.len() + 1 + key.len());
    s.push_str(topic);
    s.push('#');
    s.push_str(key);
    s
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexHeader {
    pub begin_timestamp: i64,
    pub end_timestamp: i64,
    pub begin_phy_offset: i64,
    pub end_phy_offset: i64,
    pub hash_slot_count: i32,
    pub index_count: i32,
}

impl IndexHeader {
    pub fn decode(b: &[u8]) -> Option<IndexHeader> {
        let b = b.get(..INDEX_HEADER_SIZE)?;
        let l = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(x)
        };
        let i = |at: usize| i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Some(IndexHeader {
            begin_timestamp: l(0),
            end_timestamp: l(8),
            begin_phy_offset: l(16),
            end_phy_offset: l(24),
            hash_slot_count: i(32),
            index_count: i(36),
        })
    }

    pub fn encode(&self) -> [u8; INDEX_HEADER_SIZE] {
        let mut b = [0u8; INDEX_HEADER_SIZE];
        b[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        b
    }
}

/// One index file.
pub struct IndexFile {
    file: MappedFile,
    slot_num: usize,
    index_num: usize,
    header: Mutex<IndexHeader>,
}

fn read_i32(f: &MappedFile, at: usize) -> i32 {
    let b = f.bytes(at, 4);
    if b.len() < 4 {
        return 0;
    }
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn read_i64(f: &MappedFile, at: usize) -> i64 {
    let b = f.bytes(at, 8);
    let mut x = [0u8; 8];
    if b.len() == 8 {
        x.copy_from_slice(b);
    }
    i64::from_be_bytes(x)
}

impl IndexFile {
    /// Creates a file continuing after a previous one (its end offset/time seed the header).
    pub fn create(
        path: &Path,
        slot_num: usize,
        index_num: usize,
        end_phy_offset: i64,
        end_timestamp: i64,
    ) -> Result<IndexFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("index");
        let size = index_file_size(slot_num, index_num);
        let file = create_named(dir, name, size)?;
        let header = IndexHeader {
            begin_timestamp: end_timestamp.max(0),
            end_timestamp: end_timestamp.max(0),
            begin_phy_offset: end_phy_offset.max(0),
            end_phy_offset: end_phy_offset.max(0),
            hash_slot_count: 0,
            index_count: 1,
        };
        let f = IndexFile {
            file,
            slot_num,
            index_num,
            header: Mutex::new(header),
        };
        f.write_header(&header);
        Ok(f)
    }

    /// Opens an existing file of the expected size.
    pub fn open(path: &Path, slot_num: usize, index_num: usize) -> Result<IndexFile> {
        let file = MappedFile::open(path, 0, index_file_size(slot_num, index_num))?;
        let mut header = IndexHeader::decode(file.bytes(0, INDEX_HEADER_SIZE)).unwrap_or_default();
        if header.index_count < 1 {
            header.index_count = 1;
        }
        Ok(IndexFile {
            file,
            slot_num,
            index_num,
            header: Mutex::new(header),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
    pub fn header(&self) -> IndexHeader {
        *self.header.lock()
    }
    pub fn is_full(&self) -> bool {
        self.header.lock().index_count as usize >= self.index_num
    }

    fn write_header(&self, h: &IndexHeader) {
        self.file.write_at(0, &h.encode());
    }

    fn entry_pos(&self, n: usize) -> usize {
        INDEX_HEADER_SIZE + self.slot_num * HASH_SLOT_SIZE + n * INDEX_ENTRY_SIZE
    }

    /// Adds a key; false when the file is full.
    pub fn put_key(&self, key: &str, phy_offset: i64, store_timestamp: i64) -> bool {
        let mut h = self.header.lock();
        let count = h.index_count;
        if count < 1 || count as usize >= self.index_num {
            return false;
        }
        let hash = key_hash(key);
        let slot_pos = INDEX_HEADER_SIZE + (hash as usize % self.slot_num) * HASH_SLOT_SIZE;
        let mut slot_value = read_i32(&self.file, slot_pos);
        if slot_value <= 0 || slot_value > count {
            slot_value = 0;
        }
        let time_diff = if h.begin_timestamp <= 0 {
            0
        } else {
            ((store_timestamp - h.begin_timestamp) / 1000).clamp(0, i64::from(i32::MAX))
        };
        let mut entry = [0u8; INDEX_ENTRY_SIZE];
        entry[0..4].copy_from_slice(&hash.to_be_bytes());
        entry[4..12].copy_from_slice(&phy_offset.to_be_bytes());
        entry[12..16].copy_from_slice(&(time_diff as i32).to_be_bytes());
        entry[16..20].copy_from_slice(&slot_value.to_be_bytes());
        self.file.write_at(self.entry_pos(count as usize), &entry);
        self.file.write_at(slot_pos, &count.to_be_bytes());
        if count <= 1 {
            h.begin_phy_offset = phy_offset;
            h.begin_timestamp = store_timestamp;
        }
        if slot_value == 0 {
            h.hash_slot_count += 1;
        }
        h.index_count += 1;
        h.end_phy_offset = phy_offset;
        h.end_timestamp = store_timestamp;
        self.write_header(&h);
        true
    }

    /// Whether `[begin, end]` overlaps the file's time range (Java `isTimeMatched`).
    pub fn is_time_matched(&self, begin: i64, end: i64) -> bool {
        let h = self.header();
        (begin < h.begin_timestamp && end > h.end_timestamp)
            || (begin >= h.begin_timestamp && begin <= h.end_timestamp)
            || (end >= h.begin_timestamp && end <= h.end_timestamp)
    }

    /// Follows the key's slot chain collecting commit-log offsets stored in `[begin, end]`.
    pub fn select_phy_offsets(
        &self,
        out: &mut Vec<i64>,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) {
        let h = self.header.lock();
        let hash = key_hash(key);
        let slot_pos = INDEX_HEADER_SIZE + (hash as usize % self.slot_num) * HASH_SLOT_SIZE;
        let slot_value = read_i32(&self.file, slot_pos);
        if slot_value <= 0 || slot_value > h.index_count || h.index_count <= 1 {
            return;
        }
        let mut next = slot_value;
        // The chain is bounded by the entry count even if the file is corrupt.
        for _ in 0..h.index_count {
            if out.len() >= max {
                break;
            }
            let pos = self.entry_pos(next as usize);
            let hash_read = read_i32(&self.file, pos);
            let phy = read_i64(&self.file, pos + 4);
            let time_diff = read_i32(&self.file, pos + 12);
            let prev = read_i32(&self.file, pos + 16);
            if time_diff < 0 {
                break;
            }
            let time = h.begin_timestamp + i64::from(time_diff) * 1000;
            if hash_read == hash && time >= begin && time <= end {
                out.push(phy);
            }
            if prev <= 0 || prev > h.index_count || prev == next || time < begin {
                break;
            }
            next = prev;
        }
    }

    pub fn flush(&self) -> Result<()> {
        let _h = self.header.lock();
        self.file
            .flush_all()
            .context(|| format!("flush {}", self.file.path().display()))
    }

    pub fn destroy(&self) -> Result<()> {
        self.file.destroy()
    }
}

fn create_named(dir: &Path, name: &str, size: usize) -> Result<MappedFile> {
    fs::create_dir_all(dir).context(|| format!("create {}", dir.display()))?;
    let path = dir.join(name);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .context(|| format!("create {}", path.display()))?;
    // Sparse, as in Java: index files are written at random positions and mostly empty.
    file.set_len(size as u64)
        .context(|| format!("size {}", path.display()))?;
    drop(file);
    MappedFile::open(&path, 0, size)
}

/// Result of a key query.
#[derive(Debug, Clone, Default)]
pub struct IndexQueryResult {
    pub phy_offsets: Vec<i64>,
    /// End timestamp / offset of the newest index file (the broker reports them to the client).
    pub index_last_update_timestamp: i64,
    pub index_last_update_phy_offset: i64,
}

/// All index files, oldest first.
pub struct IndexService {
    dir: PathBuf,
    slot_num: usize,
    index_num: usize,
    files: RwLock<Vec<Arc<IndexFile>>>,
}

impl IndexService {
    pub fn new(dir: PathBuf, slot_num: usize, index_num: usize) -> IndexService {
        IndexService {
            dir,
            slot_num,
            index_num,
            files: RwLock::new(Vec::new()),
        }
    }

    /// Loads the files; after a crash, files that may hold entries newer than the checkpointed
    /// index timestamp are dropped (re-dispatch rebuilds them).
    pub fn load(&self, last_exit_ok: bool, checkpoint_index_ts: i64) -> Result<()> {
        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        let mut names: Vec<PathBuf> = fs::read_dir(&self.dir)
            .context(|| format!("list {}", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.len() == 17 && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort();
        let mut files = Vec::new();
        for p in names {
            let f = match IndexFile::open(&p, self.slot_num, self.index_num) {
                Ok(f) => f,
                // A crash while a new index file was being sized leaves it short; an index is
                // derived data, and re-dispatch from the checkpoint rebuilds what it held.
                Err(crate::StoreError::FileSize { .. }) if !last_exit_ok => {
                    tracing::warn!("dropping index file {} cut short by a crash", p.display());
                    fs::remove_file(&p).context(|| format!("remove {}", p.display()))?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !last_exit_ok && f.header().end_timestamp > checkpoint_index_ts {
                tracing::info!(
                    "dropping index file {} written after the checkpoint",
                    p.display()
                );
                f.destroy()?;
                continue;
            }
            files.push(Arc::new(f));
        }
        *self.files.write() = files;
        Ok(())
    }

    pub fn files(&self) -> Vec<Arc<IndexFile>> {
        self.files.read().clone()
    }

    fn writable_file(&self, store_timestamp: i64) -> Result<Arc<IndexFile>> {
        if let Some(f) = self.files.read().last() {
            if !f.is_full() {
                return Ok(f.clone());
            }
        }
        let (end_phy, end_ts) = match self.files.read().last() {
            Some(f) => {
                // The full file will not change again; make it durable now.
                f.flush()?;
                let h = f.header();
                (h.end_phy_offset, h.end_timestamp)
            }
            None => (0, 0),
        };
        let mut ms = crate::util::now_ms().max(store_timestamp);
        let mut path = self.dir.join(format_index_file_name(ms));
        while path.exists() {
            ms += 1;
            path = self.dir.join(format_index_file_name(ms));
        }
        let f = Arc::new(IndexFile::create(
            &path,
            self.slot_num,
            self.index_num,
            end_phy,
            end_ts,
        )?);
        self.files.write().push(f.clone());
        Ok(f)
    }

    /// Indexes one message's keys (already `topic#key`-built by the caller is not required: pass
    /// the raw keys). Skips offsets the newest file already covers (re-dispatch after recovery).
    pub fn build_index<'a>(
        &self,
        topic: &str,
        keys: impl Iterator<Item = &'a str>,
        phy_offset: i64,
        store_timestamp: i64,
    ) -> Result<()> {
        let mut f = self.writable_file(store_timestamp)?;
        let h = f.header();
        if h.index_count > 1 && phy_offset <= h.end_phy_offset {
            return Ok(());
        }
        for key in keys {
            let k = build_key(topic, key);
            if !f.put_key(&k, phy_offset, store_timestamp) {
                f = self.writable_file(store_timestamp)?;
                if !f.put_key(&k, phy_offset, store_timestamp) {
                    tracing::warn!("index file {} refused a key", f.path().display());
                }
            }
        }
        Ok(())
    }

    /// Offsets of messages indexed under `topic#key` stored within `[begin, end]`, newest first.
    pub fn query(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> IndexQueryResult {
        let key = build_key(topic, key);
        let files = self.files();
        let mut res = IndexQueryResult::default();
        if let Some(last) = files.last() {
            let h = last.header();
            res.index_last_update_timestamp = h.end_timestamp;
            res.index_last_update_phy_offset = h.end_phy_offset;
        }
        for f in files.iter().rev() {
            if res.phy_offsets.len() >= max {
                break;
            }
            if f.is_time_matched(begin, end) {
                f.select_phy_offsets(&mut res.phy_offsets, &key, max, begin, end);
            }
            if f.header().begin_timestamp < begin {
                break;
            }
        }
        res
    }

    /// Deletes files whose entries all point below the commit-log minimum (never the newest).
    pub fn delete_expired(&self, commit_log_min: i64) -> Result<usize> {
        let victims: Vec<Arc<IndexFile>> = {
            let mut files = self.files.write();
            let n = files.len().saturating_sub(1);
            let k = files
                .iter()
                .take(n)
                .take_while(|f| f.header().end_phy_offset < commit_log_min)
                .count();
            files.drain(..k).collect()
        };
        for f in &victims {
            f.destroy()?;
        }
        Ok(victims.len())
    }

    pub fn flush(&self) -> Result<()> {
        for f in self.files() {
            f.flush()?;
        }
        Ok(())
    }

    /// Newest indexed store timestamp.
    pub fn end_timestamp(&self) -> i64 {
        self.files
            .read()
            .last()
            .map_or(0, |f| f.header().end_timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_special_case() {
        assert_eq!(key_hash("polygenelubricants"), 0);
        assert_eq!(key_hash("TagA"), 2598919);
    }

    #[test]
    fn put_query_roll_reload() {
        let dir = tempfile::tempdir().unwrap();
        let svc = IndexService::new(dir.path().to_owned(), 4, 8);
        svc.load(true, 0).unwrap();
        let base = 1_700_000_000_000;
        for i in 0..20i64 {
            let k = format!("k{}", i % 3);
            svc.build_index(
                "T",
                [k.as_str(), "all"].into_iter(),
                i * 100,
                base + i * 1000,
            )
            .unwrap();
        }
        assert!(svc.files().len() > 2);
        let r = svc.query("T", "all", 100, 0, i64::MAX);
        assert_eq!(r.phy_offsets.len(), 20);
        let r = svc.query("T", "k1", 100, base + 5000, base + 12_000);
        let mut got = r.phy_offsets.clone();
        got.sort();
        assert_eq!(got, vec![700, 1000]);
        assert_eq!(svc.query("T", "k1", 2, 0, i64::MAX).phy_offsets.len(), 2);
        assert!(svc.query("U", "k1", 10, 0, i64::MAX).phy_offsets.is_empty());
        // Re-dispatch of an indexed offset is ignored.
        svc.build_index("T", ["all"].into_iter(), 1900, base + 19_000)
            .unwrap();
        assert_eq!(
            svc.query("T", "all", 100, 0, i64::MAX).phy_offsets.len(),
            20
        );
        svc.flush().unwrap();
        drop(svc);
        let svc = IndexService::new(dir.path().to_owned(), 4, 8);
        svc.load(true, 0).unwrap();
        assert_eq!(
            svc.query("T", "all", 100, 0, i64::MAX).phy_offsets.len(),
            20
        );
        assert!(svc.delete_expired(1000).unwrap() >= 1);
        let left = svc.query("T", "all", 100, 0, i64::MAX).phy_offsets;
        assert_eq!(left.iter().filter(|&&o| o >= 1000).count(), 10);
    }
}
