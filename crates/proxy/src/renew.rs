//! Auto-renew of invisible time for push consumers (grpc-v5.md §10.3 point 6). A push
//! consumer receives with `auto_renew` and never extends visibility itself, so the proxy keeps
//! each delivered message invisible while the client works on it: every [`PERIOD`] the handles
//! that become visible within [`RENEW_AHEAD`] are extended with growing durations
//! ([`SCHEDULE`]), for at most [`MAX_TOTAL`]. Ack, nack (ChangeInvisibleDuration) and
//! dead-lettering take the newest handle from here, because an ack with a superseded handle
//! does not settle the message. Handles of a client that goes away are dropped: the messages
//! reappear after their current invisible time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::debug;

use crate::convert::now_ms;
use crate::pb::Code;
use crate::receive::{change_invisible_raw, parse_handle};
use crate::service::Context;

/// How often handles are checked.
pub(crate) const PERIOD: Duration = Duration::from_secs(5);
/// Handles becoming visible within this are renewed.
const RENEW_AHEAD: Duration = Duration::from_secs(10);
/// Successive renewal durations; the last one repeats.
const SCHEDULE: [Duration; 6] = [
    Duration::from_secs(60),
    Duration::from_secs(180),
    Duration::from_secs(300),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];
/// After this long a message is let go even if the client still holds it.
const MAX_TOTAL: Duration = Duration::from_secs(3 * 3600);
/// Failed renewals of one handle before it is given up.
const MAX_FAILURES: u32 = 3;

struct Held {
    group: String,
    topic: String,
    handle: String,
    since: Instant,
    renewals: usize,
    failures: u32,
}

/// One renewal to make.
struct Due {
    client_id: String,
    message_id: String,
    group: String,
    topic: String,
    handle: String,
    duration: Duration,
}

/// Handles held for push consumers: client id → message id → handle.
#[derive(Default)]
pub(crate) struct Renewals {
    table: Mutex<HashMap<String, HashMap<String, Held>>>,
}

impl Renewals {
    pub fn hold(&self, client_id: &str, group: &str, topic: &str, message_id: &str, handle: &str) {
        self.table
            .lock()
            .entry(client_id.to_owned())
            .or_default()
            .insert(
                message_id.to_owned(),
                Held {
                    group: group.to_owned(),
                    topic: topic.to_owned(),
                    handle: handle.to_owned(),
                    since: Instant::now(),
                    renewals: 0,
                    failures: 0,
                },
            );
    }

    /// Stops renewing a message; its newest handle if it was held.
    pub fn release(&self, client_id: &str, message_id: &str) -> Option<String> {
        let mut t = self.table.lock();
        let held = t.get_mut(client_id)?.remove(message_id)?;
        if t.get(client_id).is_some_and(HashMap::is_empty) {
            t.remove(client_id);
        }
        Some(held.handle)
    }

    pub fn drop_client(&self, client_id: &str) {
        self.table.lock().remove(client_id);
    }

    /// Collects due renewals and forgets handles past [`MAX_TOTAL`] or already expired.
    fn due(&self, now_ms: i64) -> Vec<Due> {
        let mut out = Vec::new();
        let mut t = self.table.lock();
        for (client_id, held) in t.iter_mut() {
            held.retain(|message_id, h| {
                let Ok(info) = parse_handle(&h.handle) else {
                    return false;
                };
                if h.since.elapsed() >= MAX_TOTAL {
                    return false;
                }
                if info.next_visible_time() - now_ms <= RENEW_AHEAD.as_millis() as i64 {
                    out.push(Due {
                        client_id: client_id.clone(),
                        message_id: message_id.clone(),
                        group: h.group.clone(),
                        topic: h.topic.clone(),
                        handle: h.handle.clone(),
                        duration: SCHEDULE[h.renewals.min(SCHEDULE.len() - 1)],
                    });
                }
                true
            });
        }
        t.retain(|_, held| !held.is_empty());
        out
    }

    /// Records the outcome of a renewal, unless the client settled the message meanwhile.
    fn renewed(&self, due: &Due, result: Result<String, Code>) {
        let mut t = self.table.lock();
        let Some(h) = t
            .get_mut(&due.client_id)
            .and_then(|m| m.get_mut(&due.message_id))
        else {
            return;
        };
        if h.handle != due.handle {
            return;
        }
        match result {
            Ok(handle) => {
                h.handle = handle;
                h.renewals += 1;
                h.failures = 0;
            }
            Err(code) => {
                h.failures += 1;
                if code == Code::InvalidReceiptHandle || h.failures >= MAX_FAILURES {
                    if let Some(m) = t.get_mut(&due.client_id) {
                        m.remove(&due.message_id);
                    }
                }
            }
        }
    }
}

/// One pass: renews every handle about to become visible.
pub(crate) async fn renew_due(ctx: &Context) {
    for due in ctx.renewals.due(now_ms()) {
        let result = change_invisible_raw(
            ctx,
            &due.group,
            &due.topic,
            &due.handle,
            due.duration.as_millis() as i64,
        )
        .await
        .map_err(|f| {
            debug!(message_id = %due.message_id, error = %f.message, "renewal failed");
            f.code
        });
        ctx.renewals.renewed(&due, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(pop_time: i64, invisible: i64) -> String {
        format!("0 {pop_time} {invisible} 1 0 b 0 5 77")
    }

    #[test]
    fn due_handles_are_renewed_with_growing_durations() {
        let r = Renewals::default();
        let now = now_ms();
        r.hold("c", "g", "t", "m1", &handle(now, 5_000));
        r.hold("c", "g", "t", "m2", &handle(now, 60_000));
        let due = r.due(now);
        assert_eq!(due.len(), 1, "only the handle expiring soon");
        assert_eq!(due[0].message_id, "m1");
        assert_eq!(due[0].duration, SCHEDULE[0]);
        let renewed = handle(now, 65_000);
        r.renewed(&due[0], Ok(renewed.clone()));
        assert!(r.due(now).is_empty());
        assert_eq!(r.release("c", "m1"), Some(renewed));
        assert_eq!(r.release("c", "m1"), None);
    }

    #[test]
    fn invalid_handles_are_given_up_and_clients_dropped() {
        let r = Renewals::default();
        let now = now_ms();
        r.hold("c", "g", "t", "m1", &handle(now, 1_000));
        let due = r.due(now);
        r.renewed(&due[0], Err(Code::InvalidReceiptHandle));
        assert_eq!(r.release("c", "m1"), None);
        r.hold("c", "g", "t", "m2", &handle(now, 1_000));
        r.drop_client("c");
        assert_eq!(r.release("c", "m2"), None);
    }
}
