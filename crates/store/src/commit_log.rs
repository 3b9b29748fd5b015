//! The commit log (store-format.md §2): every message of every topic, appended as
//! message-format.md §1 records into `commitlog/<20-digit start offset>` segments. A record never
//! spans segments; the tail of a segment that cannot take the next record carries an 8-byte
//! end-of-file marker.
//!
//! This type owns reading and the published/flushed positions; writing is done by the single
//! append thread in [`crate::store`], which publishes with [`CommitLog::publish`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferrymq_protocol::message::record::{self, RecordHead, RecordView};

use crate::error::{IoContext, Result};
use crate::mapped_file::{MappedFile, MappedFileQueue};

pub struct CommitLog {
    files: MappedFileQueue,
    /// End of the last complete record; readers never look past it.
    max_offset: AtomicI64,
    flushed_offset: AtomicI64,
}

/// What lies at a commit-log position.
pub enum LogEntry<'a> {
    Record(RecordView<'a>),
    /// End-of-file marker: continue at this offset (start of the next segment).
    NextFile(i64),
    /// No data here.
    End,
    /// Malformed bytes.
    Invalid(record::RecordError),
}

impl CommitLog {
    pub fn new(files: MappedFileQueue) -> CommitLog {
        CommitLog {
            files,
            max_offset: AtomicI64::new(0),
            flushed_offset: AtomicI64::new(0),
        }
    }

    pub fn files(&self) -> &MappedFileQueue {
        &self.files
    }
    pub fn file_size(&self) -> usize {
        self.files.file_size()
    }

    /// Start of the oldest segment still present.
    pub fn min_offset(&self) -> i64 {
        self.files.min_offset()
    }
    pub fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    /// Makes records up to `offset` visible (append thread, after setting file positions).
    pub fn publish(&self, offset: i64) {
        self.max_offset.store(offset, Ordering::Release);
    }

    /// Recovery sets both positions to the stop point.
    pub fn reset_offsets(&self, offset: i64) {
        self.max_offset.store(offset, Ordering::Release);
        self.flushed_offset.store(offset, Ordering::Release);
    }

    /// Start of the segment after the one holding `offset`.
    pub fn roll_next_file(&self, offset: i64) -> i64 {
        let fs = self.file_size() as i64;
        offset + fs - offset % fs
    }

    /// Zero-copy bytes of `[offset, offset + size)` if published and within one segment.
    pub fn read(&self, offset: i64, size: usize) -> Option<Bytes> {
        let (f, pos) = self.locate(offset, size)?;
        Some(f.slice_bytes(pos, size))
    }

    /// Runs `f` on the published bytes `[offset, offset + size)`.
    pub fn with_bytes<R>(&self, offset: i64, size: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (file, pos) = self.locate(offset, size)?;
        Some(f(file.bytes(pos, size)))
    }

    fn locate(&self, offset: i64, size: usize) -> Option<(Arc<MappedFile>, usize)> {
        if offset < 0 || offset + size as i64 > self.max_offset() {
            return None;
        }
        let f = self.files.find(offset)?;
        let pos = (offset - f.file_from_offset()) as usize;
        if pos + size > f.file_size() {
            return None;
        }
        Some((f, pos))
    }

    /// The record starting at `offset` (size read from the record itself), validated.
    pub fn read_record(&self, offset: i64) -> Option<Bytes> {
        let size = self.with_bytes(offset, 4, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
        if size <= 0 {
            return None;
        }
        let bytes = self.read(offset, size as usize)?;
        RecordView::parse(&bytes).ok()?;
        Some(bytes)
    }

    /// Store timestamp of the record at `offset` (used by time searches).
    pub fn pickup_store_timestamp(&self, offset: i64, size: usize) -> Option<i64> {
        self.with_bytes(offset, size, |b| {
            RecordView::parse(b).ok().map(|v| v.store_timestamp())
        })
        .flatten()
    }

    /// Classifies the published data at `offset` (the dispatcher's view).
    pub fn entry_at(file: &MappedFile, pos: usize, limit: usize, check_crc: bool) -> LogEntry<'_> {
        let buf = file.bytes(pos, limit.saturating_sub(pos));
        match record::peek(buf) {
            Ok(RecordHead::Blank) => LogEntry::NextFile(file.end_offset()),
            Ok(RecordHead::End) => LogEntry::End,
            Ok(RecordHead::Message { .. }) => {
                let parsed = if check_crc {
                    RecordView::parse_checked(buf)
                } else {
                    RecordView::parse(buf)
                };
                match parsed {
                    Ok(v) => LogEntry::Record(v),
                    Err(e) => LogEntry::Invalid(e),
                }
            }
            Err(e) => {
                if buf.is_empty() || buf.iter().all(|&b| b == 0) {
                    LogEntry::End
                } else {
                    LogEntry::Invalid(e)
                }
            }
        }
    }

    /// Flushes everything published; returns the durable offset.
    pub fn flush(&self) -> Result<i64> {
        let target = self.max_offset();
        for f in self.files.files() {
            if f.wrote_position() > f.flushed_position() {
                f.flush()
                    .context(|| format!("flush {}", f.path().display()))?;
            }
        }
        self.flushed_offset.fetch_max(target, Ordering::AcqRel);
        Ok(target)
    }

    /// Bytes published but not yet flushed.
    pub fn unflushed_bytes(&self) -> i64 {
        self.max_offset() - self.flushed_offset()
    }
}
