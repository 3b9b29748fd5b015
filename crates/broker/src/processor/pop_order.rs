//! Orderly (FIFO) POP state: per (topic, group, queue) the batch handed out last, which of its
//! messages are acked, how often each was handed out, and per-message visibility overrides
//! (spec §5, Java's `ConsumerOrderInfoManager`). A queue is blocked while its batch has an
//! un-acked message still invisible; the consumer offset only moves on acks, so it always points
//! at the first un-acked message and nothing is lost if this state is.
//!
//! The table is kept in `config/consumerOrderInfo.json` so blocking and delivery counts survive
//! a restart; it is written by the revive task when it changed and at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use ferrymq_protocol::pop::{OrderCountEntry, OrderCountTarget, RetryFlag};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The batch last handed out from one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrderInfo {
    pub pop_time: i64,
    pub invisible_time: i64,
    pub offsets: Vec<i64>,
    pub attempt_id: Option<String>,
    /// Bit i set = `offsets[i]` acked.
    pub acked: u64,
    /// Times each offset was handed out before this batch (only counts > 0).
    pub consumed_counts: BTreeMap<i64, i32>,
    /// Per-offset next-visible time set by CHANGE_MESSAGE_INVISIBLETIME.
    pub next_visible: BTreeMap<i64, i64>,
}

impl OrderInfo {
    fn is_acked(&self, i: usize) -> bool {
        i < 64 && self.acked & (1 << i) != 0
    }

    /// When the queue unblocks, if it is blocked now for a pop with `attempt_id`.
    pub fn blocked_until(&self, attempt_id: Option<&str>, now: i64) -> Option<i64> {
        if self.offsets.is_empty() {
            return None;
        }
        if self.attempt_id.is_some() && self.attempt_id.as_deref() == attempt_id {
            return None;
        }
        self.offsets
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_acked(*i))
            .map(|(_, o)| {
                self.next_visible
                    .get(o)
                    .copied()
                    .unwrap_or(self.pop_time.saturating_add(self.invisible_time))
            })
            .filter(|t| *t > now)
            .max()
    }

    /// The consumer offset after the acks so far: the first un-acked message, or past the batch.
    pub fn next_offset(&self) -> i64 {
        self.offsets
            .iter()
            .enumerate()
            .find(|(i, _)| !self.is_acked(*i))
            .map(|(_, o)| *o)
            .unwrap_or_else(|| self.offsets.last().map_or(0, |o| o.saturating_add(1)))
    }

    pub fn all_acked(&self) -> bool {
        (0..self.offsets.len()).all(|i| self.is_acked(i))
    }
}

/// Result of an orderly ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAck {
    /// The handle's batch is no longer the current one (or the offset is not in it).
    Stale,
    /// Acked; commit this offset. `done` = the whole batch is acked (queue unblocked).
    Commit { next_offset: i64, done: bool },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OrderInfoWrapper {
    /// `topic@group` → queue id → info.
    table: BTreeMap<String, BTreeMap<i32, OrderInfo>>,
}

/// Order infos of every orderly-popped queue.
#[derive(Default)]
pub struct OrderInfoTable {
    table: Mutex<HashMap<String, HashMap<i32, OrderInfo>>>,
    dirty: AtomicBool,
}

/// The order info of a queue if its current batch is the one popped at `pop_time` (a handle
/// of an earlier batch is stale).
fn current_batch<'a>(
    table: &'a mut HashMap<String, HashMap<i32, OrderInfo>>,
    topic: &str,
    group: &str,
    queue_id: i32,
    pop_time: i64,
) -> Option<&'a mut OrderInfo> {
    table
        .get_mut(&key(topic, group))
        .and_then(|qs| qs.get_mut(&queue_id))
        .filter(|info| info.pop_time == pop_time)
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl OrderInfoTable {
    /// Parses `consumerOrderInfo.json` content; unknown or bad content gives an empty table.
    pub fn load(&self, json: Option<serde_json::Value>) {
        let Some(w) = json.and_then(|v| serde_json::from_value::<OrderInfoWrapper>(v).ok()) else {
            return;
        };
        let mut t = self.table.lock();
        for (k, qs) in w.table {
            t.insert(k, qs.into_iter().collect());
        }
    }

    /// A snapshot to persist, when anything changed since the last one.
    pub fn take_dirty_snapshot(&self) -> Option<serde_json::Value> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        let t = self.table.lock();
        let w = OrderInfoWrapper {
            table: t
                .iter()
                .filter(|(_, qs)| !qs.is_empty())
                .map(|(k, qs)| (k.clone(), qs.iter().map(|(q, i)| (*q, i.clone())).collect()))
                .collect(),
        };
        serde_json::to_value(&w).ok()
    }

    fn changed(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    pub fn get(&self, topic: &str, group: &str, queue_id: i32) -> Option<OrderInfo> {
        self.table
            .lock()
            .get(&key(topic, group))
            .and_then(|qs| qs.get(&queue_id))
            .cloned()
    }

    /// When the queue unblocks, if a pop with `attempt_id` must skip it now.
    pub fn blocked_until(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        attempt_id: Option<&str>,
        now: i64,
    ) -> Option<i64> {
        self.table
            .lock()
            .get(&key(topic, group))
            .and_then(|qs| qs.get(&queue_id))
            .and_then(|i| i.blocked_until(attempt_id, now))
    }

    /// Records a new batch and returns its orderCountInfo entries (per message, then the
    /// per-queue minimum for old SDKs) and each message's delivery count.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        attempt_id: Option<&str>,
        pop_time: i64,
        invisible_time: i64,
        offsets: &[i64],
    ) -> (Vec<OrderCountEntry>, HashMap<i64, i32>) {
        let mut t = self.table.lock();
        let qs = t.entry(key(topic, group)).or_default();
        let prev = qs.remove(&queue_id);
        let counts: BTreeMap<i64, i32> = match prev {
            // The same attempt asking again: the earlier answer was lost, counts stay.
            Some(p) if p.attempt_id.is_some() && p.attempt_id.as_deref() == attempt_id => {
                p.consumed_counts
            }
            Some(p) => offsets
                .iter()
                .filter(|o| p.offsets.contains(o))
                .map(|o| {
                    let c = p.consumed_counts.get(o).copied().unwrap_or(0);
                    (*o, c.saturating_add(1))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let retry = RetryFlag::of_topic(topic);
        let mut entries: Vec<OrderCountEntry> = counts
            .iter()
            .map(|(o, c)| OrderCountEntry {
                retry,
                target: OrderCountTarget::Offset {
                    queue_id,
                    queue_offset: *o,
                },
                count: *c,
            })
            .collect();
        let min = if counts.len() == offsets.len() {
            counts.values().copied().min().unwrap_or(0)
        } else {
            0
        };
        entries.push(OrderCountEntry {
            retry,
            target: OrderCountTarget::Queue(queue_id),
            count: min,
        });
        let per_message = counts.iter().map(|(o, c)| (*o, *c)).collect();
        qs.insert(
            queue_id,
            OrderInfo {
                pop_time,
                invisible_time,
                offsets: offsets.to_vec(),
                attempt_id: attempt_id.map(str::to_owned),
                acked: 0,
                consumed_counts: counts,
                next_visible: BTreeMap::new(),
            },
        );
        drop(t);
        self.changed();
        (entries, per_message)
    }

    /// Acks one offset of the current batch (Java's `commitAndNext`).
    pub fn ack(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        pop_time: i64,
    ) -> OrderAck {
        let mut t = self.table.lock();
        let Some(info) = current_batch(&mut t, topic, group, queue_id, pop_time) else {
            return OrderAck::Stale;
        };
        let Some(i) = info.offsets.iter().position(|o| *o == offset) else {
            return OrderAck::Stale;
        };
        if i < 64 {
            info.acked |= 1 << i;
        }
        let result = OrderAck::Commit {
            next_offset: info.next_offset(),
            done: info.all_acked(),
        };
        drop(t);
        self.changed();
        result
    }

    /// Moves one message's next-visible time; false when the handle's batch is not current.
    pub fn set_next_visible(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        pop_time: i64,
        next_visible: i64,
    ) -> bool {
        let mut t = self.table.lock();
        let Some(info) = current_batch(&mut t, topic, group, queue_id, pop_time) else {
            return false;
        };
        if !info.offsets.contains(&offset) {
            return false;
        }
        info.next_visible.insert(offset, next_visible);
        drop(t);
        self.changed();
        true
    }

    /// Keeps only the queues whose (topic, group) passes `keep`; returns how many were dropped.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) -> usize {
        let mut t = self.table.lock();
        let before = t.len();
        t.retain(|k, _| {
            k.split_once('@')
                .is_none_or(|(topic, group)| keep(topic, group))
        });
        let dropped = before - t.len();
        drop(t);
        if dropped > 0 {
            self.changed();
        }
        dropped
    }

    /// Forgets a queue's batch (offset reset).
    pub fn clear(&self, topic: &str, group: &str, queue_id: i32) {
        if let Some(qs) = self.table.lock().get_mut(&key(topic, group)) {
            if qs.remove(&queue_id).is_some() {
                self.changed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_until_acked_or_expired_and_counts_redeliveries() {
        let t = OrderInfoTable::default();
        let (entries, counts) = t.update("T", "G", 0, Some("a1"), 1000, 500, &[3, 4]);
        assert!(counts.is_empty());
        assert_eq!(entries.len(), 1);
        assert_eq!(t.blocked_until("T", "G", 0, Some("a2"), 1200), Some(1500));
        assert_eq!(t.blocked_until("T", "G", 0, Some("a1"), 1200), None);
        assert_eq!(t.blocked_until("T", "G", 0, None, 1600), None);

        assert_eq!(
            t.ack("T", "G", 0, 3, 1000),
            OrderAck::Commit {
                next_offset: 4,
                done: false
            }
        );
        assert_eq!(t.ack("T", "G", 0, 3, 999), OrderAck::Stale);
        // Expired: the same messages again, both counted once more.
        let (entries, counts) = t.update("T", "G", 0, Some("a3"), 2000, 500, &[4, 5]);
        assert_eq!(counts.get(&4), Some(&1));
        assert_eq!(counts.get(&5), None);
        let mut s = String::new();
        for e in &entries {
            ferrymq_protocol::pop::push_order_count_info(&mut s, e);
        }
        assert_eq!(s, "0 qo0%4 1;0 0 0");
        assert!(t.set_next_visible("T", "G", 0, 5, 2000, 9000));
        t.ack("T", "G", 0, 4, 2000);
        assert_eq!(t.blocked_until("T", "G", 0, None, 3000), Some(9000));
        assert_eq!(
            t.ack("T", "G", 0, 5, 2000),
            OrderAck::Commit {
                next_offset: 6,
                done: true
            }
        );
        assert_eq!(t.blocked_until("T", "G", 0, None, 3000), None);
    }

    #[test]
    fn persists_and_loads() {
        let t = OrderInfoTable::default();
        assert!(t.take_dirty_snapshot().is_none());
        t.update("T", "G", 1, None, 1, 2, &[7]);
        let snap = t.take_dirty_snapshot().unwrap();
        let back = OrderInfoTable::default();
        back.load(Some(snap));
        assert_eq!(back.get("T", "G", 1), t.get("T", "G", 1));
        back.load(Some(serde_json::json!({"nonsense": 1})));
    }
}
