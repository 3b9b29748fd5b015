//! Queue locks for orderly consumers: (group, queue) → owning client, expiring 60 s after the
//! owner's last renewal. Locks are never pushed out; an expired lock is simply free to take.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrymq_protocol::body::MessageQueue;

/// `rocketmq.broker.rebalance.lockMaxLiveTime`.
pub const LOCK_MAX_LIVE: Duration = Duration::from_secs(60);

struct Lock {
    client_id: String,
    renewed: Instant,
}

/// The lock table.
pub struct QueueLocks {
    max_live: Duration,
    table: Mutex<HashMap<String, HashMap<MessageQueue, Lock>>>,
}

impl Default for QueueLocks {
    fn default() -> Self {
        QueueLocks::new(LOCK_MAX_LIVE)
    }
}

impl QueueLocks {
    pub fn new(max_live: Duration) -> Self {
        QueueLocks {
            max_live,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<MessageQueue, Lock>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks (or renews) every queue that is free, expired or already held by `client_id`;
    /// returns those now held by it.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &[MessageQueue],
        client_id: &str,
    ) -> Vec<MessageQueue> {
        let now = Instant::now();
        let mut table = self.table();
        let locks = table.entry(group.to_owned()).or_default();
        let mut ok = Vec::new();
        for mq in mqs {
            match locks.get_mut(mq) {
                Some(lock) if lock.client_id == client_id => {
                    lock.renewed = now;
                    ok.push(mq.clone());
                }
                Some(lock) if now.duration_since(lock.renewed) <= self.max_live => {}
                _ => {
                    locks.insert(
                        mq.clone(),
                        Lock {
                            client_id: client_id.to_owned(),
                            renewed: now,
                        },
                    );
                    ok.push(mq.clone());
                }
            }
        }
        ok
    }

    /// Releases the queues held by `client_id`; others' locks are untouched.
    pub fn unlock_batch(&self, group: &str, mqs: &[MessageQueue], client_id: &str) {
        let mut table = self.table();
        if let Some(locks) = table.get_mut(group) {
            for mq in mqs {
                if locks.get(mq).is_some_and(|l| l.client_id == client_id) {
                    locks.remove(mq);
                }
            }
        }
    }

    /// Whether `group` holds any unexpired lock (a retry send from such a group goes to the DLQ).
    pub fn group_holds_lock(&self, group: &str) -> bool {
        let now = Instant::now();
        self.table().get(group).is_some_and(|locks| {
            locks
                .values()
                .any(|l| now.duration_since(l.renewed) <= self.max_live)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: q,
        }
    }

    #[test]
    fn locks_are_exclusive_until_expiry() {
        let locks = QueueLocks::new(Duration::from_millis(50));
        assert_eq!(locks.try_lock_batch("g", &[mq(0), mq(1)], "c1").len(), 2);
        assert_eq!(
            locks.try_lock_batch("g", &[mq(1), mq(2)], "c2"),
            vec![mq(2)]
        );
        assert_eq!(
            locks.try_lock_batch("g", &[mq(0)], "c1"),
            vec![mq(0)],
            "renewal"
        );
        assert_eq!(
            locks.try_lock_batch("other", &[mq(0)], "c2"),
            vec![mq(0)],
            "groups are separate"
        );
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            locks.try_lock_batch("g", &[mq(0)], "c2"),
            vec![mq(0)],
            "expired lock is free"
        );
    }

    #[test]
    fn unlock_only_releases_own_locks() {
        let locks = QueueLocks::default();
        locks.try_lock_batch("g", &[mq(0)], "c1");
        locks.unlock_batch("g", &[mq(0)], "c2");
        assert!(locks.try_lock_batch("g", &[mq(0)], "c2").is_empty());
        assert!(locks.group_holds_lock("g"));
        locks.unlock_batch("g", &[mq(0)], "c1");
        assert_eq!(locks.try_lock_batch("g", &[mq(0)], "c2"), vec![mq(0)]);
    }
}
