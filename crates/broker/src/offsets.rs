//! Committed consumer offsets (`config/consumerOffset.json`, keyed `topic@group` then queue id)
//! and offsets an admin reset is waiting to hand to the next pull (server-side reset, 5.x).
//!
//! Commits are frequent and tiny, so they only touch memory under a short lock; a periodic task
//! and shutdown persist the table.

use std::collections::{BTreeMap, HashMap};

use ferrymq_store::config_file::ConsumerOffsetTable;
use parking_lot::Mutex;

#[derive(Default)]
struct Tables {
    committed: ConsumerOffsetTable,
    /// (topic, group) → queue → offset to serve once, from an admin reset.
    pending_resets: HashMap<(String, String), BTreeMap<i32, i64>>,
    dirty: bool,
}

/// Consumer offsets of every group on this broker.
#[derive(Default)]
pub struct ConsumerOffsets {
    tables: Mutex<Tables>,
}

impl ConsumerOffsets {
    pub fn new(persisted: Option<ConsumerOffsetTable>) -> Self {
        ConsumerOffsets {
            tables: Mutex::new(Tables {
                committed: persisted.unwrap_or_default(),
                ..Tables::default()
            }),
        }
    }

    /// Stores a commit; ignored (false) while an admin reset for the queue is pending, so a
    /// consumer cannot overwrite the reset with its stale position.
    pub fn commit(&self, topic: &str, group: &str, queue_id: i32, offset: i64) -> bool {
        let mut t = self.tables.lock();
        if t.pending_resets
            .get(&(topic.to_owned(), group.to_owned()))
            .is_some_and(|q| q.contains_key(&queue_id))
        {
            return false;
        }
        t.committed.commit_offset(topic, group, queue_id, offset);
        t.dirty = true;
        true
    }

    pub fn query(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.tables
            .lock()
            .committed
            .query_offset(topic, group, queue_id)
    }

    /// Every queue offset of a (topic, group).
    pub fn queues(&self, topic: &str, group: &str) -> BTreeMap<i32, i64> {
        self.tables
            .lock()
            .committed
            .queues(topic, group)
            .cloned()
            .unwrap_or_default()
    }

    /// (topic, group) pairs that have offsets.
    pub fn topic_groups(&self) -> Vec<(String, String)> {
        self.tables
            .lock()
            .committed
            .topic_groups()
            .map(|(t, g)| (t.to_owned(), g.to_owned()))
            .collect()
    }

    /// Applies an admin reset: the offsets become the committed ones and the next pull of each
    /// queue is told to move there.
    pub fn reset(&self, topic: &str, group: &str, offsets: &BTreeMap<i32, i64>) {
        let mut t = self.tables.lock();
        for (q, off) in offsets {
            t.committed.commit_offset(topic, group, *q, *off);
        }
        t.pending_resets
            .entry((topic.to_owned(), group.to_owned()))
            .or_default()
            .extend(offsets.iter().map(|(q, o)| (*q, *o)));
        t.dirty = true;
    }

    /// Whether an admin reset of the queue waits for its next pull or pop.
    pub fn reset_pending(&self, topic: &str, group: &str, queue_id: i32) -> bool {
        let t = self.tables.lock();
        t.pending_resets
            .get(&(topic.to_owned(), group.to_owned()))
            .is_some_and(|q| q.contains_key(&queue_id))
    }

    /// Takes the pending reset of a queue, if any.
    pub fn take_reset(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        let mut t = self.tables.lock();
        let key = (topic.to_owned(), group.to_owned());
        let queues = t.pending_resets.get_mut(&key)?;
        let off = queues.remove(&queue_id);
        if queues.is_empty() {
            t.pending_resets.remove(&key);
        }
        off
    }

    pub fn remove_group(&self, group: &str) {
        let mut t = self.tables.lock();
        t.committed.remove_group(group);
        t.dirty = true;
    }

    pub fn remove_topic(&self, topic: &str) {
        let mut t = self.tables.lock();
        t.committed.remove_topic(topic);
        t.dirty = true;
    }

    /// A copy to persist, when anything changed since the last one.
    pub fn take_dirty_snapshot(&self) -> Option<ConsumerOffsetTable> {
        let mut t = self.tables.lock();
        if !t.dirty {
            return None;
        }
        t.dirty = false;
        Some(t.committed.clone())
    }

    /// Slave: takes the master's offsets (GET_ALL_CONSUMER_OFFSET), keeping entries only this
    /// broker has, as RocketMQ's slave sync does.
    pub fn merge_from_master(&self, master: ConsumerOffsetTable) {
        let mut t = self.tables.lock();
        t.committed.offset_table.extend(master.offset_table);
        t.committed.data_version = master.data_version;
        t.dirty = true;
    }

    pub fn snapshot(&self) -> ConsumerOffsetTable {
        self.tables.lock().committed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_reset_wins_over_a_stale_commit() {
        let o = ConsumerOffsets::default();
        assert!(o.commit("t", "g", 0, 10));
        let mut reset = BTreeMap::new();
        reset.insert(0, 2);
        o.reset("t", "g", &reset);
        assert!(!o.commit("t", "g", 0, 11));
        assert_eq!(o.query("t", "g", 0), Some(2));
        assert_eq!(o.take_reset("t", "g", 0), Some(2));
        assert!(o.commit("t", "g", 0, 3));
        assert_eq!(o.query("t", "g", 0), Some(3));
        assert!(o.take_dirty_snapshot().is_some());
        assert!(o.take_dirty_snapshot().is_none());
    }
}
