//! The client-side state of one assigned queue: messages pulled but not yet consumed (for flow
//! control and offset computation; orderly queues keep the messages, concurrent ones only their
//! offsets and sizes while the messages travel to the consume pool), the orderly lock state, and
//! the "dropped" mark that stops every task working on a queue the consumer no longer owns.
//!
//! The committable offset of a queue is the smallest offset still cached (anything before it is
//! consumed), or one past the largest offset ever cached when nothing is left — Java's
//! `ProcessQueue.removeMessage` rule, which may redeliver after a restart but never skips.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use ferrymq_protocol::body::MessageQueue;

use crate::message::MessageExt;

#[derive(Default)]
struct Cached {
    /// Concurrent: offset → body size of every message pulled and not yet consumed (the
    /// messages themselves travel to the consume pool; this is the bookkeeping for flow
    /// control and the committable offset, so nothing is cloned per message).
    pending: BTreeMap<i64, usize>,
    /// Orderly: pulled messages waiting to be taken.
    msgs: BTreeMap<i64, MessageExt>,
    /// Orderly: taken by the running consume task, not yet committed.
    taken: BTreeMap<i64, MessageExt>,
    bytes: usize,
    /// Largest offset ever cached.
    max_offset: i64,
}

impl Cached {
    fn contains(&self, offset: i64) -> bool {
        self.pending.contains_key(&offset)
            || self.msgs.contains_key(&offset)
            || self.taken.contains_key(&offset)
    }
}

/// One assigned queue.
pub(crate) struct ProcessQueue {
    /// Shared so each listener call's context gets it without copying its strings.
    pub(crate) queue: Arc<MessageQueue>,
    cached: Mutex<Cached>,
    dropped: AtomicBool,
    /// Orderly: the broker lock is held (as of the last lock call).
    locked: AtomicBool,
    last_lock: Mutex<Option<Instant>>,
    /// Orderly: a consume task is running for this queue.
    consuming: AtomicBool,
    /// Orderly: held while a batch is being consumed, so the queue is not unlocked mid-batch.
    pub(crate) consume_lock: tokio::sync::Mutex<()>,
    /// Cancelled when the queue is dropped: stops its pull loop at once.
    pub(crate) stop: CancellationToken,
}

/// How long a successful lock counts as held (Java `rebalance.lockMaxLiveTime`, 30 s).
const LOCK_VALIDITY: Duration = Duration::from_secs(30);

impl ProcessQueue {
    pub(crate) fn new(queue: MessageQueue, stop: CancellationToken) -> ProcessQueue {
        ProcessQueue {
            queue: Arc::new(queue),
            cached: Mutex::new(Cached {
                max_offset: -1,
                ..Cached::default()
            }),
            dropped: AtomicBool::new(false),
            locked: AtomicBool::new(false),
            last_lock: Mutex::new(None),
            consuming: AtomicBool::new(false),
            consume_lock: tokio::sync::Mutex::new(()),
            stop,
        }
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Marks the queue dropped, stops its pull loop and forgets its messages.
    pub(crate) fn drop_queue(&self) {
        self.dropped.store(true, Ordering::Release);
        self.stop.cancel();
        let mut c = self.cached.lock();
        c.pending.clear();
        c.msgs.clear();
        c.taken.clear();
        c.bytes = 0;
    }

    /// Concurrent: records pulled messages (which go on to the consume pool); returns how
    /// many were new.
    pub(crate) fn put(&self, msgs: &[MessageExt]) -> usize {
        let mut c = self.cached.lock();
        let mut added = 0;
        for m in msgs {
            if c.contains(m.queue_offset) {
                continue;
            }
            let size = m.body().len();
            c.bytes += size;
            c.max_offset = c.max_offset.max(m.queue_offset);
            c.pending.insert(m.queue_offset, size);
            added += 1;
        }
        added
    }

    /// Orderly: caches pulled messages until the consume task takes them; returns how many
    /// were new.
    pub(crate) fn put_owned(&self, msgs: Vec<MessageExt>) -> usize {
        let mut c = self.cached.lock();
        let mut added = 0;
        for m in msgs {
            if c.contains(m.queue_offset) {
                continue;
            }
            c.bytes += m.body().len();
            c.max_offset = c.max_offset.max(m.queue_offset);
            c.msgs.insert(m.queue_offset, m);
            added += 1;
        }
        added
    }

    /// Concurrent: forgets consumed messages; returns the offset to commit, or `None` if
    /// nothing was cached.
    pub(crate) fn remove(&self, offsets: impl IntoIterator<Item = i64>) -> Option<i64> {
        let mut c = self.cached.lock();
        if c.pending.is_empty() {
            return None;
        }
        for o in offsets {
            if let Some(size) = c.pending.remove(&o) {
                c.bytes = c.bytes.saturating_sub(size);
            }
        }
        Some(match c.pending.keys().next() {
            Some(first) => *first,
            None => c.max_offset + 1,
        })
    }

    /// Messages cached (waiting or in flight).
    pub(crate) fn cached_count(&self) -> usize {
        let c = self.cached.lock();
        c.pending.len() + c.msgs.len() + c.taken.len()
    }

    /// Bytes of cached bodies.
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cached.lock().bytes
    }

    /// Smallest and largest cached offsets (waiting or taken).
    pub(crate) fn cached_range(&self) -> Option<(i64, i64)> {
        let c = self.cached.lock();
        let first = [
            c.pending.keys().next(),
            c.taken.keys().next(),
            c.msgs.keys().next(),
        ]
        .into_iter()
        .flatten()
        .min()
        .copied()?;
        let last = [
            c.pending.keys().next_back(),
            c.taken.keys().next_back(),
            c.msgs.keys().next_back(),
        ]
        .into_iter()
        .flatten()
        .max()
        .copied()?;
        Some((first, last))
    }

    /// Concurrent: distance between the first and last cached offsets.
    pub(crate) fn span(&self) -> i64 {
        let c = self.cached.lock();
        match (c.pending.keys().next(), c.pending.keys().next_back()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    // ----- orderly --------------------------------------------------------------------------

    /// Orderly: takes up to `n` messages, in offset order, for consumption.
    pub(crate) fn take(&self, n: usize) -> Vec<MessageExt> {
        let mut c = self.cached.lock();
        let keys: Vec<i64> = c.msgs.keys().take(n).copied().collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(m) = c.msgs.remove(&k) {
                out.push(m.clone());
                c.taken.insert(k, m);
            }
        }
        out
    }

    /// Orderly: the taken messages are consumed; returns the offset to commit.
    pub(crate) fn commit(&self) -> Option<i64> {
        let mut c = self.cached.lock();
        let next = c.taken.keys().next_back().map(|last| last + 1);
        let taken = std::mem::take(&mut c.taken);
        for m in taken.values() {
            c.bytes = c.bytes.saturating_sub(m.body().len());
        }
        next
    }

    /// Orderly: the taken messages go back in front of the queue with one more reconsume.
    pub(crate) fn reconsume_later(&self) {
        let mut c = self.cached.lock();
        let taken = std::mem::take(&mut c.taken);
        for (k, mut m) in taken {
            m.reconsume_times += 1;
            c.msgs.insert(k, m);
        }
    }

    /// Orderly: claims the right to run the consume task; false if one is running.
    pub(crate) fn start_consuming(&self) -> bool {
        self.consuming
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Orderly: the consume task ends. Returns true if it must go on after all (messages
    /// arrived meanwhile and it re-claimed the right).
    pub(crate) fn stop_consuming(&self) -> bool {
        self.consuming.store(false, Ordering::Release);
        !self.cached.lock().msgs.is_empty() && !self.is_dropped() && self.start_consuming()
    }

    /// Orderly: records the outcome of a lock call.
    pub(crate) fn set_locked(&self, locked: bool) {
        self.locked.store(locked, Ordering::Release);
        if locked {
            *self.last_lock.lock() = Some(Instant::now());
        }
    }

    /// Orderly: whether consumption may proceed (locked within the validity window).
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
            && self
                .last_lock
                .lock()
                .is_some_and(|t| t.elapsed() < LOCK_VALIDITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn msg(offset: i64) -> MessageExt {
        MessageExt {
            message: Message::new("T", "xx"),
            broker_name: "b".into(),
            queue_id: 0,
            queue_offset: offset,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "1.1.1.1:1".parse().unwrap(),
            store_timestamp: 0,
            store_host: "1.1.1.1:1".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            offset_msg_id: String::new(),
        }
    }

    fn pq() -> ProcessQueue {
        ProcessQueue::new(
            MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: 0,
            },
            CancellationToken::new(),
        )
    }

    #[test]
    fn commit_offset_is_the_smallest_unconsumed() {
        let q = pq();
        assert_eq!(q.remove([1]), None);
        assert_eq!(q.put(&[msg(5), msg(6), msg(7)]), 3);
        assert_eq!(q.put(&[msg(7)]), 0, "duplicates ignored");
        assert_eq!(q.cached_bytes(), 6);
        assert_eq!(q.span(), 2);
        assert_eq!(q.cached_range(), Some((5, 7)));
        assert_eq!(q.remove([6]), Some(5), "5 still in flight");
        assert_eq!(q.remove([5]), Some(7));
        assert_eq!(q.remove([7]), Some(8));
        assert_eq!(q.cached_bytes(), 0);
        assert_eq!(q.cached_count(), 0);
        q.drop_queue();
        assert!(q.is_dropped() && q.stop.is_cancelled());
    }

    #[test]
    fn orderly_take_commit_and_retry() {
        let q = pq();
        assert_eq!(q.put_owned(vec![msg(0), msg(1), msg(2)]), 3);
        assert_eq!(q.put_owned(vec![msg(1)]), 0, "duplicates ignored");
        let batch = q.take(2);
        assert_eq!(batch.len(), 2);
        assert_eq!(q.cached_count(), 3);
        q.reconsume_later();
        let again = q.take(1);
        assert_eq!(again[0].queue_offset, 0);
        assert_eq!(again[0].reconsume_times, 1);
        assert_eq!(q.commit(), Some(1));
        assert_eq!(q.take(5).len(), 2);
        assert_eq!(q.commit(), Some(3));
        assert_eq!(q.commit(), None);
        assert!(q.start_consuming());
        assert!(!q.start_consuming());
        assert!(!q.stop_consuming(), "nothing left");
        assert!(!q.is_locked());
        q.set_locked(true);
        assert!(q.is_locked());
    }
}
