//! Timer messages (5.x): a message with `TIMER_DELIVER_MS`, `TIMER_DELAY_SEC` or `TIMER_DELAY_MS`
//! is parked in `rmq_sys_wheel_timer` queue 0 with its due time in `TIMER_OUT_MS`, and stored
//! again under its real topic when due (message-format.md §8).
//!
//! RocketMQ keeps a time wheel file for this; clients only see the delivery time, so here the
//! parked messages are simply indexed in memory — a min-heap of due times rebuilt at start by
//! reading the timer queue from the delivered-up-to offset, which is kept as the consumer offset
//! of group `CID_RMQ_SYS_TIMER` (so it survives restarts with the other offsets).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::naming;
use ferrymq_protocol::recall::{self, RecallHandle};
use ferrymq_store::{GetMessageStatus, MessageInner, PutMessageResult, PutMessageStatus};
use tokio_util::sync::CancellationToken;

use crate::state::BrokerState;

const PROGRESS_GROUP: &str = "CID_RMQ_SYS_TIMER";
/// `timerPrecisionMs`.
const PRECISION_MS: i64 = 1000;
const TICK: Duration = Duration::from_millis(100);

const TIMER_KEYS: [&str; 3] = [
    keys::TIMER_DELIVER_MS,
    keys::TIMER_DELAY_SEC,
    keys::TIMER_DELAY_MS,
];

/// Strips timer properties (when a delay level wins).
pub fn without_timer_properties(props: &str) -> String {
    let mut out = props.to_owned();
    for k in TIMER_KEYS {
        if properties::get(&out, k).is_some() {
            out = properties::without(&out, k);
        }
    }
    out
}

/// The due time a message asks for, if it is a timer message; `Err` when the value is unusable.
fn due_time(props: &str, now: i64) -> Option<Result<i64, &'static str>> {
    if properties::get(props, keys::TIMER_OUT_MS).is_some() {
        // Already went through the timer (a delivered copy, e.g. sent back for a retry).
        return None;
    }
    let parse = |k: &str| properties::get(props, k).map(|v| v.trim().parse::<i64>());
    if let Some(v) = parse(keys::TIMER_DELAY_SEC) {
        return Some(
            v.map(|s| now.saturating_add(s.saturating_mul(1000)))
                .map_err(|_| "bad TIMER_DELAY_SEC"),
        );
    }
    if let Some(v) = parse(keys::TIMER_DELAY_MS) {
        return Some(
            v.map(|ms| now.saturating_add(ms))
                .map_err(|_| "bad TIMER_DELAY_MS"),
        );
    }
    parse(keys::TIMER_DELIVER_MS).map(|v| v.map_err(|_| "bad TIMER_DELIVER_MS"))
}

/// Rewrites a timer message whose time lies ahead into the timer topic. `Err` is the put result
/// to answer with when the timer value is illegal.
pub fn park_if_timer(msg: &mut MessageInner, max_delay_sec: u64) -> Result<(), PutMessageResult> {
    let now = BrokerState::now_ms();
    let Some(due) = due_time(&msg.properties, now) else {
        return Ok(());
    };
    let due = due.map_err(|why| PutMessageResult::failed(PutMessageStatus::MessageIllegal, why))?;
    if due <= now {
        return Ok(());
    }
    if due - now > (max_delay_sec as i64).saturating_mul(1000) {
        return Err(PutMessageResult::failed(
            PutMessageStatus::MessageIllegal,
            "timer message delay exceeds timerMaxDelaySec",
        ));
    }
    // Round down to the precision; an exact multiple moves one step earlier, as RocketMQ does.
    let rounded = if due % PRECISION_MS == 0 {
        due - PRECISION_MS
    } else {
        due - due % PRECISION_MS
    };
    let mut props = std::mem::take(&mut msg.properties);
    properties::push(
        &mut props,
        keys::TIMER_OUT_MS,
        &rounded.max(now).to_string(),
    );
    properties::push(&mut props, keys::REAL_TOPIC, &msg.topic);
    properties::push(&mut props, keys::REAL_QUEUE_ID, &msg.queue_id.to_string());
    msg.properties = props;
    msg.topic = naming::TIMER_TOPIC.to_owned();
    msg.queue_id = 0;
    Ok(())
}

/// The recall handle of a message [`park_if_timer`] parked (none for retries and recall
/// markers, which cannot be recalled).
pub fn recall_handle(msg: &MessageInner, broker_name: &str) -> Option<String> {
    if msg.topic != naming::TIMER_TOPIC
        || properties::get(&msg.properties, keys::TIMER_DEL_UNIQKEY).is_some()
    {
        return None;
    }
    let real_topic = properties::get(&msg.properties, keys::REAL_TOPIC)?;
    if naming::is_retry_topic(real_topic) {
        return None;
    }
    let out_ms = properties::get(&msg.properties, keys::TIMER_OUT_MS)?
        .parse()
        .ok()?;
    let uniq = properties::uniq_key(&msg.properties)?;
    Some(RecallHandle::for_parked(real_topic, broker_name, out_ms, uniq).encode())
}

/// The delete marker RECALL_MESSAGE stores for `handle` (Java's layout: tag `_RECALL_TAG_`,
/// `TIMER_DEL_UNIQKEY`, delivery at the handle's time, so it is parked beside its target).
pub fn recall_marker(handle: &RecallHandle, producer_group: Option<&str>) -> MessageInner {
    let mut msg = MessageInner::new(handle.topic.clone(), 0, &b"0"[..]);
    let mut props = String::new();
    properties::push(&mut props, keys::TAGS, RECALL_TAG);
    properties::push(
        &mut props,
        keys::TIMER_DEL_UNIQKEY,
        &recall::delete_key(&handle.topic, &handle.message_id),
    );
    properties::push(
        &mut props,
        keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
        &handle.message_id,
    );
    properties::push(&mut props, keys::TIMER_DELIVER_MS, &handle.timestamp);
    if let Some(group) = producer_group.filter(|g| !g.is_empty()) {
        properties::push(&mut props, keys::PRODUCER_GROUP, group);
    }
    msg.properties = props;
    msg
}

const RECALL_TAG: &str = "_RECALL_TAG_";
/// How long a recall marker whose target never showed up is remembered past its due time.
const RECALL_MEMORY_MS: i64 = 60_000;
/// Most recalls remembered at once (each is about a hundred bytes).
const MAX_RECALLED: usize = 1_000_000;
/// A recall this close to the due time is refused: the timer may already be delivering.
pub const RECALL_MIN_LEAD_MS: i64 = PRECISION_MS + 2 * TICK.as_millis() as i64;

struct Pending {
    /// (due ms, queue offset, commit-log offset), earliest first.
    heap: BinaryHeap<Reverse<(i64, i64, i64)>>,
    /// Queue offsets not yet delivered, for the progress mark.
    offsets: BTreeSet<i64>,
    /// Next timer-queue offset to read.
    read: i64,
    /// Delete keys (`topic+uniqKey`) of recalled messages, with the marker's due time. Markers
    /// are taken in as soon as they are read, so a target due in the same second is dropped.
    recalled: HashMap<String, i64>,
}

impl Pending {
    fn progress(&self) -> i64 {
        self.offsets.first().copied().unwrap_or(self.read)
    }
}

/// Indexes newly parked messages.
fn read_new(s: &BrokerState, p: &mut Pending) {
    loop {
        let r = s
            .store
            .get_messages(naming::TIMER_TOPIC, 0, p.read, 32, usize::MAX, None);
        match r.status {
            GetMessageStatus::Found => {
                for (record, qo) in r.messages.iter().zip(r.queue_offsets.iter()) {
                    if let Ok(v) = RecordView::parse(record) {
                        let due = v
                            .property(keys::TIMER_OUT_MS)
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0);
                        if let Some(key) = v.property(keys::TIMER_DEL_UNIQKEY) {
                            // A marker is never delivered itself. It counts only for its own
                            // topic (what RECALL_MESSAGE writes; clients cannot send the
                            // property), so nobody cancels messages of a topic they cannot
                            // publish to.
                            let own = v.property(keys::REAL_TOPIC).is_some_and(|t| {
                                key.strip_prefix(t).is_some_and(|r| r.starts_with('+'))
                            });
                            if !own {
                                tracing::warn!(%key, "ignoring a recall marker for another topic");
                            } else if p.recalled.len() >= MAX_RECALLED {
                                tracing::warn!(%key, "too many pending recalls; this one is ignored");
                            } else {
                                p.recalled.insert(key.to_owned(), due);
                            }
                            continue;
                        }
                        p.heap.push(Reverse((due, *qo, v.physical_offset())));
                        p.offsets.insert(*qo);
                    }
                }
                p.read = r.next_begin_offset;
            }
            GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetOverflowBadly => {
                p.read = r.next_begin_offset
            }
            _ => return,
        }
    }
}

/// Stores a due message under its real topic (or drops it if it was recalled); false when it
/// must be retried.
async fn deliver(
    s: &BrokerState,
    physical_offset: i64,
    recalled: &mut HashMap<String, i64>,
) -> bool {
    let Some(record) = s.store.lookup_message_by_offset(physical_offset) else {
        return true;
    };
    let Ok(v) = RecordView::parse(&record) else {
        return true;
    };
    let (Some(topic), Some(queue_id)) = (
        v.property(keys::REAL_TOPIC),
        v.property(keys::REAL_QUEUE_ID)
            .and_then(|q| q.parse::<i32>().ok()),
    ) else {
        return true;
    };
    if !recalled.is_empty() {
        if let Some(uniq) = properties::uniq_key(v.properties()) {
            // Kept after a match: a resent copy with the same id is recalled too.
            if recalled.contains_key(&recall::delete_key(topic, uniq)) {
                tracing::debug!(%topic, %uniq, "timer message recalled; not delivered");
                return true;
            }
        }
    }
    // The delivered copy keeps the timer properties (5.x consumers read the delivery time and
    // type from them); its TIMER_OUT_MS keeps it from being parked again, as in RocketMQ.
    let mut props = properties::without(
        &properties::without(v.properties(), keys::REAL_TOPIC),
        keys::REAL_QUEUE_ID,
    );
    properties::push(
        &mut props,
        keys::TIMER_DEQUEUE_MS,
        &BrokerState::now_ms().to_string(),
    );
    let mut msg = s.restore(&record, &v);
    msg.topic = topic.to_owned();
    msg.queue_id = queue_id;
    msg.properties = props;
    let stored = s.store.put_message(msg).await.status.is_stored();
    if stored {
        s.record_puts(1);
    }
    stored
}

pub async fn run(s: Arc<BrokerState>, stop: CancellationToken) {
    let start = s
        .offsets
        .query(naming::TIMER_TOPIC, PROGRESS_GROUP, 0)
        .unwrap_or(0);
    let mut p = Pending {
        heap: BinaryHeap::new(),
        offsets: BTreeSet::new(),
        read: start,
        recalled: HashMap::new(),
    };
    loop {
        read_new(&s, &mut p);
        let now = BrokerState::now_ms();
        let before = p.progress();
        while let Some(Reverse((due, qo, phy))) = p.heap.peek().copied() {
            if due > now {
                break;
            }
            if !deliver(&s, phy, &mut p.recalled).await {
                break;
            }
            p.heap.pop();
            p.offsets.remove(&qo);
        }
        // A marker outlives its due time while anything due no later is still waiting (a
        // failed delivery, a late restart), and for a while after, for resent copies.
        let earliest = p.heap.peek().map(|Reverse((due, _, _))| *due);
        p.recalled
            .retain(|_, due| *due + RECALL_MEMORY_MS > now || earliest.is_some_and(|e| e <= *due));
        if p.progress() != before {
            s.offsets
                .commit(naming::TIMER_TOPIC, PROGRESS_GROUP, 0, p.progress());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_DAYS: u64 = 3 * 24 * 3600;

    #[test]
    fn timer_messages_are_parked_with_a_rounded_due_time() {
        let now = BrokerState::now_ms();
        let mut msg = MessageInner::new("T", 2, &b"x"[..]);
        msg.properties =
            properties::encode([(keys::TIMER_DELIVER_MS, &*(now + 5_500).to_string())]);
        park_if_timer(&mut msg, THREE_DAYS).unwrap();
        assert_eq!(msg.topic, naming::TIMER_TOPIC);
        assert_eq!(
            properties::get(&msg.properties, keys::REAL_TOPIC),
            Some("T")
        );
        assert_eq!(
            properties::get(&msg.properties, keys::REAL_QUEUE_ID),
            Some("2")
        );
        let out: i64 = properties::get(&msg.properties, keys::TIMER_OUT_MS)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out % PRECISION_MS, 0);
        assert!(out > now && out <= now + 5_500);

        let mut past = MessageInner::new("T", 0, &b"x"[..]);
        past.properties = properties::encode([(keys::TIMER_DELIVER_MS, "1")]);
        park_if_timer(&mut past, THREE_DAYS).unwrap();
        assert_eq!(past.topic, "T");

        let mut far = MessageInner::new("T", 0, &b"x"[..]);
        far.properties = properties::encode([(keys::TIMER_DELAY_SEC, "999999")]);
        assert!(park_if_timer(&mut far, THREE_DAYS).is_err());
        let mut two_days = MessageInner::new("T", 0, &b"x"[..]);
        two_days.properties = properties::encode([(keys::TIMER_DELAY_SEC, "172800")]);
        assert!(park_if_timer(&mut two_days, THREE_DAYS).is_ok());
        let mut two_days = MessageInner::new("T", 0, &b"x"[..]);
        two_days.properties = properties::encode([(keys::TIMER_DELAY_SEC, "172800")]);
        assert!(park_if_timer(&mut two_days, 86_400).is_err());
        let mut bad = MessageInner::new("T", 0, &b"x"[..]);
        bad.properties = properties::encode([(keys::TIMER_DELAY_MS, "soon")]);
        assert!(park_if_timer(&mut bad, THREE_DAYS).is_err());
    }
}
