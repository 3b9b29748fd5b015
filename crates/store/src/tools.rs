//! Offline inspection of a store directory (ours or Apache RocketMQ's): [`verify`] checks every
//! commit-log record's CRC and framing and that consume-queue and index entries agree with the
//! log; [`dump`] walks records for display. Nothing here writes; the store must not be running
//! (or at least not be trusted to be consistent while it is).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::record::{RecordError, RecordHead};
use ferrymq_protocol::message::{record, sys_flag, tags_code, RecordView};
use serde::Serialize;

use crate::consume_queue::{CqEntry, CQ_ENTRY_SIZE};
use crate::error::Result;
use crate::index::{key_hash, IndexHeader, HASH_SLOT_SIZE, INDEX_ENTRY_SIZE, INDEX_HEADER_SIZE};
use crate::mapped_file::{list_segments, MappedFile};

const MAX_PROBLEMS: usize = 200;

/// The commit-log segments of a directory, mapped.
pub struct CommitLogFiles {
    files: Vec<Arc<MappedFile>>,
    /// Size of the first segment, taken as the configured file size.
    pub file_size: usize,
}

impl CommitLogFiles {
    pub fn open(root: &Path) -> Result<CommitLogFiles> {
        let mut files = Vec::new();
        for (off, path) in list_segments(&root.join("commitlog"))? {
            files.push(Arc::new(MappedFile::open_any_size(&path, off)?));
        }
        let file_size = files.first().map_or(0, |f| f.file_size());
        Ok(CommitLogFiles { files, file_size })
    }

    pub fn min_offset(&self) -> i64 {
        self.files.first().map_or(0, |f| f.file_from_offset())
    }

    fn find(&self, offset: i64) -> Option<&Arc<MappedFile>> {
        self.files
            .iter()
            .find(|f| f.file_from_offset() <= offset && offset < f.end_offset())
    }

    /// Bytes of the record starting at `offset`, if one parses there.
    pub fn record_at(&self, offset: i64) -> Option<RecordView<'_>> {
        let f = self.find(offset)?;
        let pos = (offset - f.file_from_offset()) as usize;
        RecordView::parse(f.bytes(pos, f.file_size() - pos)).ok()
    }

    /// Walks records from `from` (a record start or a segment start) in log order. `visit` gets
    /// each record's offset and parse result (CRC checked); returning false stops the walk. The
    /// walk stops by itself at the end of data or at the first undecodable record.
    pub fn scan(&self, from: i64, mut visit: impl FnMut(ScanItem<'_>) -> bool) {
        for (i, f) in self.files.iter().enumerate() {
            if f.end_offset() <= from {
                continue;
            }
            let mut pos = (from - f.file_from_offset()).max(0) as usize;
            loop {
                let offset = f.file_from_offset() + pos as i64;
                let buf = f.bytes(pos, f.file_size().saturating_sub(pos));
                if buf.is_empty() {
                    break;
                }
                match record::peek(buf) {
                    Ok(RecordHead::Blank) => {
                        if !visit(ScanItem::Blank { offset }) {
                            return;
                        }
                        break;
                    }
                    Ok(RecordHead::End) => {
                        let trailing = buf.iter().any(|&b| b != 0);
                        // Pre-allocated empty files may follow the end legitimately.
                        let later_data = self.files[i + 1..]
                            .iter()
                            .any(|f| f.bytes(0, 8).iter().any(|&b| b != 0));
                        visit(ScanItem::End {
                            offset,
                            later_data,
                            trailing_garbage: trailing,
                        });
                        return;
                    }
                    Ok(RecordHead::Message { .. }) | Err(_) => match RecordView::parse_checked(buf)
                    {
                        Ok(v) => {
                            let n = v.total_size();
                            if !visit(ScanItem::Record { offset, view: v }) {
                                return;
                            }
                            pos += n;
                        }
                        Err(error) => {
                            // A record whose framing is intact but whose body fails the CRC can
                            // be stepped over, so one flipped byte does not hide the rest.
                            let framed = RecordView::parse(buf).ok().map(|v| v.total_size());
                            if !visit(ScanItem::Damaged { offset, error }) {
                                return;
                            }
                            match framed {
                                Some(n) => pos += n,
                                None => return,
                            }
                        }
                    },
                }
            }
        }
    }
}

/// One step of [`CommitLogFiles::scan`].
pub enum ScanItem<'a> {
    Record {
        offset: i64,
        view: RecordView<'a>,
    },
    /// End-of-file marker at `offset`.
    Blank {
        offset: i64,
    },
    /// No more data; `trailing_garbage` if non-zero bytes follow in the same file.
    End {
        offset: i64,
        later_data: bool,
        trailing_garbage: bool,
    },
    Damaged {
        offset: i64,
        error: RecordError,
    },
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub root: PathBuf,
    pub commit_log_files: usize,
    pub commit_log_file_size: usize,
    pub commit_log_min_offset: i64,
    /// End of the last valid record.
    pub commit_log_max_offset: i64,
    pub records: u64,
    pub record_bytes: u64,
    pub consume_queues: usize,
    pub consume_queue_entries: u64,
    pub index_files: usize,
    pub index_entries: u64,
    pub problems: Vec<String>,
    /// Problems beyond the first 200 are only counted.
    pub more_problems: usize,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }
}

/// Checks a store directory. I/O errors opening it are errors; damage is reported.
pub fn verify(root: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        root: root.to_owned(),
        ..VerifyReport::default()
    };
    let cl = CommitLogFiles::open(root)?;
    report.commit_log_files = cl.files.len();
    report.commit_log_file_size = cl.file_size;
    report.commit_log_min_offset = cl.min_offset();
    report.commit_log_max_offset = cl.min_offset();
    let mut expected = cl.min_offset();
    for f in &cl.files {
        if f.file_size() != cl.file_size {
            report.problem(format!(
                "{}: size {} differs from {} (truncated?)",
                f.path().display(),
                f.file_size(),
                cl.file_size
            ));
        }
        if f.file_from_offset() != expected {
            report.problem(format!(
                "{}: expected a file starting at {expected}",
                f.path().display()
            ));
        }
        expected = f.file_from_offset() + cl.file_size as i64;
    }

    let mut starts: HashSet<i64> = HashSet::new();
    let mut problems = Vec::new();
    cl.scan(cl.min_offset(), |item| {
        match item {
            ScanItem::Record { offset, view } => {
                if view.physical_offset() != offset {
                    problems.push(format!(
                        "commitlog {offset}: record says its offset is {}",
                        view.physical_offset()
                    ));
                }
                starts.insert(offset);
                report.records += 1;
                report.record_bytes += view.total_size() as u64;
                report.commit_log_max_offset = offset + view.total_size() as i64;
            }
            ScanItem::Blank { offset } => {
                let fs = cl.file_size.max(1) as i64;
                report.commit_log_max_offset = offset - offset % fs + fs;
            }
            ScanItem::End {
                offset,
                later_data,
                trailing_garbage,
            } => {
                if later_data {
                    problems.push(format!(
                        "commitlog {offset}: data ends before the last file"
                    ));
                }
                if trailing_garbage {
                    problems.push(format!(
                        "commitlog {offset}: non-zero bytes after the end of the log"
                    ));
                }
            }
            ScanItem::Damaged { offset, error } => {
                problems.push(format!("commitlog {offset}: damaged record: {error}"));
                starts.insert(offset);
            }
        }
        true
    });
    for p in problems {
        report.problem(p);
    }

    verify_consume_queues(root, &cl, &starts, &mut report)?;
    verify_index(root, &cl, &starts, &mut report)?;
    Ok(report)
}

fn verify_consume_queues(
    root: &Path,
    cl: &CommitLogFiles,
    starts: &HashSet<i64>,
    report: &mut VerifyReport,
) -> Result<()> {
    let dir = root.join("consumequeue");
    let Ok(topics) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let cl_min = cl.min_offset();
    for topic in topics.flatten() {
        let Some(topic_name) = topic.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(queues) = std::fs::read_dir(topic.path()) else {
            continue;
        };
        for q in queues.flatten() {
            let Some(queue_id) = q.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            report.consume_queues += 1;
            let segments = list_segments(&q.path())?;
            let mut file_size = 0;
            'files: for (off, path) in segments {
                let f = MappedFile::open_any_size(&path, off)?;
                if file_size == 0 {
                    file_size = f.file_size();
                }
                if f.file_size() != file_size || !file_size.is_multiple_of(CQ_ENTRY_SIZE) {
                    report.problem(format!(
                        "{}: bad consume queue file size {}",
                        path.display(),
                        f.file_size()
                    ));
                    continue;
                }
                let data = f.bytes(0, f.file_size());
                for (i, chunk) in data.chunks_exact(CQ_ENTRY_SIZE).enumerate() {
                    let Some(e) = CqEntry::decode(chunk) else {
                        break;
                    };
                    if !e.is_valid() {
                        break 'files;
                    }
                    if e.is_blank() {
                        continue;
                    }
                    report.consume_queue_entries += 1;
                    let logical = (off as usize / CQ_ENTRY_SIZE + i) as i64;
                    if e.commit_log_offset < cl_min {
                        continue; // the message was removed by retention
                    }
                    let at = format!("consumequeue {topic_name}/{queue_id} offset {logical}");
                    if !starts.contains(&e.commit_log_offset) {
                        report.problem(format!(
                            "{at}: no valid record at commitlog {}",
                            e.commit_log_offset
                        ));
                        continue;
                    }
                    let Some(v) = cl.record_at(e.commit_log_offset) else {
                        continue;
                    };
                    if v.total_size() != e.size as usize {
                        report.problem(format!(
                            "{at}: size {} but record has {}",
                            e.size,
                            v.total_size()
                        ));
                    }
                    if v.topic() != topic_name || v.queue_id() != queue_id {
                        report.problem(format!(
                            "{at}: record belongs to {}/{}",
                            v.topic(),
                            v.queue_id()
                        ));
                    }
                    if v.queue_offset() != logical {
                        report.problem(format!(
                            "{at}: record has queue offset {}",
                            v.queue_offset()
                        ));
                    }
                    let schedule = topic_name == "SCHEDULE_TOPIC_XXXX";
                    if !schedule && tags_code(properties::tags(v.properties())) != e.tags_code {
                        report.problem(format!(
                            "{at}: tag code {} does not match the record's TAGS",
                            e.tags_code
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn index_dimensions(size: usize) -> Option<(usize, usize)> {
    let default = (5_000_000, 20_000_000);
    if size == INDEX_HEADER_SIZE + default.0 * HASH_SLOT_SIZE + default.1 * INDEX_ENTRY_SIZE {
        return Some(default);
    }
    // Otherwise assume RocketMQ's 1:4 slot/entry ratio.
    let slots = size.checked_sub(INDEX_HEADER_SIZE)? / (HASH_SLOT_SIZE + 4 * INDEX_ENTRY_SIZE);
    (size == INDEX_HEADER_SIZE + slots * HASH_SLOT_SIZE + 4 * slots * INDEX_ENTRY_SIZE && slots > 0)
        .then_some((slots, 4 * slots))
}

fn verify_index(
    root: &Path,
    cl: &CommitLogFiles,
    starts: &HashSet<i64>,
    report: &mut VerifyReport,
) -> Result<()> {
    let dir = root.join("index");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let f = MappedFile::open_any_size(&path, 0)?;
        report.index_files += 1;
        let Some((slots, entries)) = index_dimensions(f.file_size()) else {
            report.problem(format!(
                "{}: unexpected index file size {}",
                path.display(),
                f.file_size()
            ));
            continue;
        };
        let Some(h) = IndexHeader::decode(f.bytes(0, INDEX_HEADER_SIZE)) else {
            continue;
        };
        if h.index_count < 0 || h.index_count as usize > entries {
            report.problem(format!(
                "{}: index count {} out of range",
                path.display(),
                h.index_count
            ));
            continue;
        }
        let entry_base = INDEX_HEADER_SIZE + slots * HASH_SLOT_SIZE;
        for n in 1..h.index_count.max(1) as usize {
            let b = f.bytes(entry_base + n * INDEX_ENTRY_SIZE, INDEX_ENTRY_SIZE);
            if b.len() < INDEX_ENTRY_SIZE {
                break;
            }
            report.index_entries += 1;
            let hash = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let mut o = [0u8; 8];
            o.copy_from_slice(&b[4..12]);
            let phy = i64::from_be_bytes(o);
            let prev = i32::from_be_bytes([b[16], b[17], b[18], b[19]]);
            let at = format!("{} entry {n}", path.display());
            if prev < 0 || prev >= h.index_count {
                report.problem(format!("{at}: bad chain link {prev}"));
            }
            if phy < cl.min_offset() || phy >= report.commit_log_max_offset {
                continue;
            }
            if !starts.contains(&phy) {
                report.problem(format!("{at}: no valid record at commitlog {phy}"));
                continue;
            }
            let Some(v) = cl.record_at(phy) else { continue };
            let topic = v.topic();
            let props = v.properties();
            let matches = properties::uniq_key(props)
                .into_iter()
                .chain(properties::business_keys(props))
                .any(|k| key_hash(&format!("{topic}#{k}")) == hash);
            if !matches
                && sys_flag::transaction_type(v.sys_flag()) != sys_flag::TRANSACTION_ROLLBACK_TYPE
            {
                report.problem(format!(
                    "{at}: key hash matches no key of the record at {phy}"
                ));
            }
        }
    }
    Ok(())
}

/// A record in readable form (for `dump`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpRecord {
    pub commit_log_offset: i64,
    pub msg_id: String,
    pub size: usize,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body_crc: i32,
    pub properties: std::collections::BTreeMap<String, String>,
    pub body_len: usize,
    /// UTF-8 body, or lossy text when it is not UTF-8 (compressed bodies stay binary-looking).
    pub body: String,
}

impl DumpRecord {
    pub fn from_view(v: &RecordView<'_>) -> DumpRecord {
        DumpRecord {
            commit_log_offset: v.physical_offset(),
            msg_id: v.offset_msg_id(),
            size: v.total_size(),
            topic: v.topic().to_owned(),
            queue_id: v.queue_id(),
            queue_offset: v.queue_offset(),
            flag: v.flag(),
            sys_flag: v.sys_flag(),
            born_timestamp: v.born_timestamp(),
            born_host: v.born_host(),
            store_timestamp: v.store_timestamp(),
            store_host: v.store_host(),
            reconsume_times: v.reconsume_times(),
            prepared_transaction_offset: v.prepared_transaction_offset(),
            body_crc: v.body_crc(),
            properties: properties::iter(v.properties())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body_len: v.body().len(),
            body: String::from_utf8_lossy(v.body()).into_owned(),
        }
    }

    /// One human-readable line.
    pub fn to_line(&self) -> String {
        let tags = self.properties.get(keys::TAGS).map_or("", String::as_str);
        let keys_ = self.properties.get(keys::KEYS).map_or("", String::as_str);
        let uniq = self
            .properties
            .get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .map_or("", String::as_str);
        let mut body: String = self.body.chars().take(80).collect();
        body = body.replace(['\n', '\r'], " ");
        format!(
            "offset={} size={} topic={} queueId={} queueOffset={} storeTime={} msgId={} uniqKey={} tags={} keys={} bodyLen={} body={:?}",
            self.commit_log_offset,
            self.size,
            self.topic,
            self.queue_id,
            self.queue_offset,
            self.store_timestamp,
            self.msg_id,
            uniq,
            tags,
            keys_,
            self.body_len,
            body
        )
    }
}

/// Options for [`dump`].
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    pub topic: Option<String>,
    /// Start at this commit-log offset (a record or file start); default the log's minimum.
    pub offset: Option<i64>,
    /// Stop after this many (matching) records.
    pub count: Option<usize>,
}

/// Calls `out` for each matching record in log order; returns how many were emitted and the
/// damage that stopped the walk, if any.
pub fn dump(
    root: &Path,
    opts: &DumpOptions,
    mut out: impl FnMut(&DumpRecord),
) -> Result<(usize, Option<String>)> {
    let cl = CommitLogFiles::open(root)?;
    let from = opts
        .offset
        .unwrap_or_else(|| cl.min_offset())
        .max(cl.min_offset());
    let mut n = 0;
    let mut damage = None;
    cl.scan(from, |item| match item {
        ScanItem::Record { view, .. } => {
            if opts.topic.as_deref().is_some_and(|t| t != view.topic()) {
                return true;
            }
            out(&DumpRecord::from_view(&view));
            n += 1;
            opts.count.is_none_or(|c| n < c)
        }
        ScanItem::Damaged { offset, error } => {
            damage = Some(format!("damaged record at {offset}: {error}"));
            false
        }
        _ => true,
    });
    Ok((n, damage))
}
