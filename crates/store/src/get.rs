//! What a pull or query gets back from the store: [`GetMessageResult`] with RocketMQ's
//! `GetMessageStatus` values, records as zero-copy `Bytes` slices of the mapped commit log, and
//! the [`MessageFilter`] hook that pulls use to skip messages by tag code or by record content.

use bytes::Bytes;
use ferrymq_protocol::message::{RecordView, SubscriptionTags};

/// Java `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    Found,
    NoMatchedMessage,
    MessageWasRemoving,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
}

impl GetMessageStatus {
    /// The Java enum constant name (pull responses use it as the remark).
    pub fn as_str(self) -> &'static str {
        match self {
            GetMessageStatus::Found => "FOUND",
            GetMessageStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
            GetMessageStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
            GetMessageStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
            GetMessageStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
            GetMessageStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
            GetMessageStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
            GetMessageStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
            GetMessageStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
        }
    }
}

impl std::fmt::Display for GetMessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct GetMessageResult {
    pub status: GetMessageStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Whole records, exactly as stored (a pull body is their concatenation).
    pub messages: Vec<Bytes>,
    /// Queue offset of each returned record.
    pub queue_offsets: Vec<i64>,
    pub buffer_total_size: usize,
    /// Java's hint that the consumer lags far behind (data no longer in memory).
    pub suggest_pulling_from_slave: bool,
}

impl GetMessageResult {
    pub(crate) fn empty(status: GetMessageStatus, next: i64, min: i64, max: i64) -> Self {
        GetMessageResult {
            status,
            next_begin_offset: next,
            min_offset: min,
            max_offset: max,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            buffer_total_size: 0,
            suggest_pulling_from_slave: false,
        }
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }
}

/// Decides which messages a pull returns. The tag-code check runs on consume-queue entries
/// before the commit log is touched; the record check (e.g. SQL92 on properties) after.
pub trait MessageFilter: Send + Sync {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool;

    fn is_matched_by_commit_log(&self, _record: &RecordView<'_>) -> bool {
        true
    }
}

impl MessageFilter for SubscriptionTags {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool {
        self.matches_code(tags_code)
    }
}

/// Messages found by key or unique id.
#[derive(Debug, Clone, Default)]
pub struct QueryMessageResult {
    pub messages: Vec<Bytes>,
    pub index_last_update_timestamp: i64,
    pub index_last_update_phy_offset: i64,
}

/// Passed to the arrival listener for every message the dispatcher adds to a consume queue.
#[derive(Debug, Clone, Copy)]
pub struct MessageArrival<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    /// Queue offset after this message (the queue's new max offset).
    pub next_offset: i64,
    pub tags_code: i64,
    pub store_timestamp: i64,
    pub properties: &'a str,
}

/// Runtime figures for monitoring (broker runtime info / admin).
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub commit_log_min_offset: i64,
    pub commit_log_max_offset: i64,
    pub commit_log_flushed_offset: i64,
    /// Commit-log offset the dispatcher has reached.
    pub dispatch_offset: i64,
    /// Used fraction of the file system holding the commit log.
    pub commit_log_disk_ratio: f64,
    pub disk_full: bool,
    pub put_message_count: u64,
    pub put_message_bytes: u64,
    pub put_message_failures: u64,
    /// How long the append now in progress has held the commit-log lock (zero when none is):
    /// RocketMQ's `pageCacheLockTimeMills`.
    pub page_cache_lock_time: std::time::Duration,
    /// Total time appends have held the commit-log lock since the store opened.
    pub page_cache_lock_held_total: std::time::Duration,
    pub consume_queue_count: usize,
    pub index_file_count: usize,
}
