//! The result of one pull (PULL_MESSAGE), as [`LitePullConsumer::pull`](super::LitePullConsumer::pull)
//! returns it and the push consumer's pull loops see it.

use crate::message::MessageExt;

/// What a pull found (request-codes.md §3 status mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullStatus {
    /// Messages were found (they may all have been filtered out client-side).
    Found,
    /// Nothing new at the offset (PULL_NOT_FOUND).
    NoNewMessage,
    /// Messages existed but none matched the subscription (PULL_RETRY_IMMEDIATELY).
    NoMatchedMessage,
    /// The offset is outside the queue (PULL_OFFSET_MOVED); continue at `next_begin_offset`.
    OffsetIllegal,
}

/// One pull's outcome.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// What was found.
    pub status: PullStatus,
    /// Where the next pull should start.
    pub next_begin_offset: i64,
    /// The queue's smallest stored offset.
    pub min_offset: i64,
    /// The queue's max offset (next to be written).
    pub max_offset: i64,
    /// The broker id the broker suggests pulling from next (0 = master).
    pub suggest_which_broker_id: i64,
    /// The messages, decoded and tag-filtered, in queue order.
    pub messages: Vec<MessageExt>,
}
