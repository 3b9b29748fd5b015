//! Message-arrival notification for long-polling pulls.
//!
//! A pull that finds nothing parks on its queue's [`Notify`] and is re-run when the store
//! dispatches a new entry to that queue (or when its suspend time runs out). The waiter arms its
//! notification *before* it reads the queue, so an arrival between the read and the wait cannot
//! be missed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

/// Per-queue arrival signals.
///
/// Keyed topic → queue id so the dispatcher's lookup per message borrows the topic instead of
/// allocating a key.
#[derive(Default)]
pub struct ArrivalSignals {
    queues: RwLock<HashMap<String, HashMap<i32, Arc<Notify>>>>,
}

impl ArrivalSignals {
    /// The signal of one queue, created on first use.
    pub fn signal(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        if let Some(n) = self
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .and_then(|q| q.get(&queue_id))
        {
            return n.clone();
        }
        self.queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_default()
            .clone()
    }

    /// Wakes every pull parked on the queue. Called by the store's dispatcher.
    pub fn notify_arrival(&self, topic: &str, queue_id: i32) {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = queues.get(topic).and_then(|q| q.get(&queue_id)) {
            n.notify_waiters();
        }
    }

    /// Wakes every parked pull (shutdown, topic deletion).
    pub fn notify_all(&self) {
        for queues in self
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            for n in queues.values() {
                n.notify_waiters();
            }
        }
    }
}
