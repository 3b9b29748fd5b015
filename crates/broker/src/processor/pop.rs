//! POP_MESSAGE (200050) and NOTIFICATION (200054): RocketMQ 5.x consumption where the broker,
//! not the client, balances queues (pop-and-timer.md §1–6).
//!
//! # Design
//!
//! * **Handed out = committed.** For POP the group's consumer offset means "handed out"
//!   (spec §3). A pop reads from it, stores a checkpoint for the batch, and only then moves the
//!   offset past the batch; un-acked messages come back through revive, never by rewinding.
//! * **Checkpoints instead of timer records** (spec §9): a batch's checkpoint and every ack are
//!   appended as JSON records (Java's `ck`/`ack`/`bAck` shapes) to the revive topic
//!   `rmq_sys_REVIVE_LOG_<cluster>` through the store, so they are as durable as messages. An
//!   in-memory index ([`super::pop_checkpoint::Checkpoints`]) holds the in-flight batches and
//!   is rebuilt at start by replaying the revive queues from their progress offsets.
//! * **Revive** ([`super::pop_revive`]): when a batch's `popTime + invisibleTime` passes, its
//!   un-acked messages are stored again in `%RETRY%<group>_<topic>` with `reconsumeTimes + 1`
//!   and `1ST_POP_TIME`, a `bAck` record marks them done, and the revive progress moves on.
//!   A crash between the copy and the record only duplicates; nothing handed out is lost.
//! * **Handles**: each returned record is re-encoded with `POP_CK` = the Java receipt handle
//!   ([`ferrymq_protocol::pop::ExtraInfo`]); retry copies are shown under the user topic.
//! * **Orderly pop** keeps no checkpoints: the offset moves only on acks and a queue stays
//!   blocked while its batch is in flight ([`super::pop_order`]).
//! * **Long polling**: a pop that finds nothing waits on the store's arrival signals of the
//!   queues it read (and of the retry queue), on orderly unblocks, or until a blocked queue's
//!   batch expires; when `pollTime` is over it answers POLLING_TIMEOUT.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymq_protocol::body::TopicConfig;
use ferrymq_protocol::command::Body;
use ferrymq_protocol::header::{
    NotificationRequestHeader, NotificationResponseHeader, PopMessageRequestHeader,
    PopMessageResponseHeader, POP_INIT_MODE_MIN,
};
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::pop::{
    pop_retry_topic_v1, push_msg_offset_info, push_order_count_info, push_start_offset_info,
    ExtraInfo, RetryFlag, MAX_POP_BATCH, POP_ORDER_REVIVE_QUEUE,
};
use ferrymq_protocol::{naming, RemotingCommand, ResponseCode};
use ferrymq_store::{GetMessageStatus, MessageFilter};
use parking_lot::Mutex;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::pop_ack::{refuse_on_slave, MAX_INVISIBLE_MS};
use super::pop_checkpoint::{start_checkpoint, Checkpoints, CkKey, CkWrite};
use super::pop_order::OrderInfoTable;
use super::pull::{build_filter, PullFilter};
use super::{err, header, ok, Reply};
use crate::state::BrokerState;
use crate::topic_table::REVIVE_QUEUES;

/// A request whose `bornTime + pollTime` lies further back than this is answered at once.
const BORN_TIME_SLACK_MS: i64 = 500;
/// Longest long poll honoured (the proxy asks for at most 20 s, Java clients for 15–20 s).
const MAX_POLL_MS: i64 = 60_000;
/// Shortest invisible time of a pop: below it un-acked messages would come back before a
/// client could possibly ack them, over and over.
const MIN_POP_INVISIBLE_MS: i64 = 1000;

/// Everything POP shares between requests and the revive task.
pub struct PopState {
    pub checkpoints: Checkpoints,
    pub order: OrderInfoTable,
    /// `topic@group@queueId` locks of queues being popped or acked (orderly) right now; an
    /// entry lives while someone holds or waits for it.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Parked requests per polling key, and in total.
    polling: Mutex<HashMap<String, usize>>,
    polling_total: AtomicUsize,
    revive_counter: AtomicU64,
    /// Cancelled at shutdown so parked requests answer at once.
    pub stop: CancellationToken,
}

impl Default for PopState {
    fn default() -> Self {
        PopState {
            checkpoints: Checkpoints::default(),
            order: OrderInfoTable::default(),
            locks: Mutex::new(HashMap::new()),
            polling: Mutex::new(HashMap::new()),
            polling_total: AtomicUsize::new(0),
            revive_counter: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }
}

/// Holds a `topic@group@queueId` lock until dropped.
pub struct QueueGuard<'a> {
    pop: &'a PopState,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.pop.locks.lock();
        drop(self.guard.take());
        // Waiters clone the entry under this same lock, so a count of one means nobody else.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

/// Counts one parked request until dropped.
struct PollingGuard<'a> {
    pop: &'a PopState,
    key: String,
}

impl Drop for PollingGuard<'_> {
    fn drop(&mut self) {
        let mut p = self.pop.polling.lock();
        if let Some(n) = p.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.remove(&self.key);
            }
        }
        self.pop.polling_total.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn lock_key(topic: &str, group: &str, queue_id: i32) -> String {
    format!("{topic}@{group}@{queue_id}")
}

impl PopState {
    fn lock_entry(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(key.to_owned()).or_default().clone()
    }

    pub fn try_lock(&self, key: String) -> Option<QueueGuard<'_>> {
        let m = self.lock_entry(&key);
        let guard = m.clone().try_lock_owned().ok();
        // Dropping the guard (or `m`) cleans the entry up when nobody else uses it.
        let g = QueueGuard {
            pop: self,
            key,
            guard,
        };
        drop(m);
        g.guard.is_some().then_some(g)
    }

    /// Waits for a queue lock (acks must not be skipped the way busy pops skip a queue).
    pub async fn lock(&self, key: String) -> QueueGuard<'_> {
        let m = self.lock_entry(&key);
        let guard = m.lock_owned().await;
        QueueGuard {
            pop: self,
            key,
            guard: Some(guard),
        }
    }

    fn next_revive_qid(&self) -> i32 {
        (self.revive_counter.fetch_add(1, Ordering::Relaxed) % REVIVE_QUEUES as u64) as i32
    }

    /// Registers a parked request, or `None` when the polling limits are reached.
    fn enter_polling(&self, key: String, per_key: usize, total: usize) -> Option<PollingGuard<'_>> {
        let mut p = self.polling.lock();
        if self.polling_total.load(Ordering::Acquire) >= total {
            return None;
        }
        if p.get(&key).is_some_and(|n| *n >= per_key) {
            return None;
        }
        *p.entry(key.clone()).or_default() += 1;
        self.polling_total.fetch_add(1, Ordering::AcqRel);
        Some(PollingGuard { pop: self, key })
    }
}

/// What one pass over the queues produced.
struct PopBatch {
    pop_time: i64,
    revive_qid: i32,
    messages: Vec<Bytes>,
    start_info: String,
    msg_info: String,
    order_info: String,
    rest: i64,
    /// Earliest time a blocked orderly queue unblocks by expiry.
    wake_at: Option<i64>,
    /// Checkpoints appended for this batch whose durability is still awaited.
    writes: Vec<CkWrite>,
}

impl PopBatch {
    fn response_header(&self, invisible_time: i64, order: bool) -> PopMessageResponseHeader {
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        PopMessageResponseHeader {
            pop_time: self.pop_time,
            invisible_time,
            revive_qid: self.revive_qid,
            rest_num: self.rest.max(0),
            start_offset_info: some(&self.start_info),
            msg_offset_info: some(&self.msg_info),
            order_count_info: if order { some(&self.order_info) } else { None },
        }
    }
}

/// The request after validation.
struct PopRequest<'a> {
    h: &'a PopMessageRequestHeader,
    topic: TopicConfig,
    filter: PullFilter,
    max: usize,
}

fn polling_response(
    req: &RemotingCommand,
    code: ResponseCode,
    remark: &str,
    header: &PopMessageResponseHeader,
) -> RemotingCommand {
    RemotingCommand::response_to(req, code)
        .with_header(header)
        .with_remark(remark)
}

fn empty_header(h: &PopMessageRequestHeader) -> PopMessageResponseHeader {
    PopMessageResponseHeader {
        pop_time: BrokerState::now_ms(),
        invisible_time: h.invisible_time,
        revive_qid: 0,
        rest_num: 0,
        start_offset_info: None,
        msg_offset_info: None,
        order_count_info: None,
    }
}

/// Topic, queue and group checks shared by POP_MESSAGE and NOTIFICATION, in Java's order.
async fn check_topic_and_group(
    s: &Arc<BrokerState>,
    req: &RemotingCommand,
    topic: &str,
    queue_id: i32,
    group: &str,
) -> Result<TopicConfig, RemotingCommand> {
    let Some(tc) = s.topics.get(topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{topic}] not exist, apply first please! https://rocketmq.apache.org/docs/bestPractice/06FAQ"),
        ));
    };
    if !perm::is_readable(tc.perm) {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("the topic[{topic}] peeking message is forbidden"),
        ));
    }
    if queue_id >= tc.read_queue_nums {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}] consumer:[{group}]",
                tc.read_queue_nums
            ),
        ));
    }
    let Some((g, created)) = s.groups.find_or_create(group) else {
        return Err(err(
            req,
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group [{group}] does not exist"),
        ));
    };
    if created {
        s.groups_changed().await;
    }
    if !g.consume_enable {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("subscription group no permission, {group}"),
        ));
    }
    Ok(tc)
}

/// What a parked pop or notification waits on: arrivals in the topic's queues it reads and,
/// unless orderly, in the group's POP retry queue.
fn arrival_signals(
    s: &BrokerState,
    topic: &str,
    retry_topic: &str,
    queues: &[i32],
    order: bool,
) -> Vec<Arc<tokio::sync::Notify>> {
    let mut signals: Vec<_> = queues
        .iter()
        .map(|q| s.arrivals.signal(topic, *q))
        .collect();
    if !order {
        signals.push(s.arrivals.signal(retry_topic, 0));
    }
    signals
}

/// The queues a request reads: one, or all read queues from a random start.
fn queue_order(queue_id: i32, read_queue_nums: i32, start: u32) -> Vec<i32> {
    if queue_id >= 0 {
        return vec![queue_id];
    }
    let n = read_queue_nums.max(0);
    let first = (start % n.max(1) as u32) as i32;
    (0..n).map(|i| (first + i) % n).collect()
}

pub(super) async fn pop_message(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: PopMessageRequestHeader = header(req)?;
    refuse_on_slave(s, req, "POP_MESSAGE")?;
    let now = BrokerState::now_ms();
    let ip = s.store_host.ip();
    if !(MIN_POP_INVISIBLE_MS..=MAX_INVISIBLE_MS).contains(&h.invisible_time) {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!(
                "invisibleTime {} is out of range [{MIN_POP_INVISIBLE_MS}, {MAX_INVISIBLE_MS}]",
                h.invisible_time
            ),
        ));
    }
    if h.born_time > 0
        && now
            .saturating_sub(h.born_time)
            .saturating_sub(h.poll_time.max(0))
            > BORN_TIME_SLACK_MS
    {
        return Ok(polling_response(
            req,
            ResponseCode::PollingTimeout,
            &format!("the broker[{ip}] pop message is timeout too much"),
            &empty_header(&h),
        ));
    }
    if !s.broker_readable() {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("the broker[{ip}] pop message is forbidden"),
        ));
    }
    if h.max_msg_nums > MAX_POP_BATCH {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!("the broker[{ip}] pop message's num is greater than {MAX_POP_BATCH}"),
        ));
    }
    let topic = check_topic_and_group(s, req, &h.topic, h.queue_id, &h.consumer_group).await?;
    let filter = build_filter(
        req,
        h.exp_type.as_deref().unwrap_or("TAG"),
        h.exp.as_deref().unwrap_or("*"),
    )?;
    let p = PopRequest {
        h: &h,
        topic,
        filter,
        max: h.max_msg_nums.clamp(1, MAX_POP_BATCH) as usize,
    };

    let order = h.is_order();
    let retry_topic = pop_retry_topic_v1(&h.topic, &h.consumer_group);
    let queues = queue_order(h.queue_id, p.topic.read_queue_nums, 0);
    let signals = arrival_signals(s, &h.topic, &retry_topic, &queues, order);
    let deadline = Instant::now() + Duration::from_millis(h.poll_time.clamp(0, MAX_POLL_MS) as u64);
    let cfg = s.config();
    let mut parked = None;
    loop {
        // Armed before reading so an arrival during the read still wakes this request (orderly
        // acks that unblock a queue signal its arrival key too).
        let mut waits: Vec<_> = signals.iter().map(|n| Box::pin(n.notified())).collect();
        for w in &mut waits {
            w.as_mut().enable();
        }

        let mut batch = pop_once(s, &p, &retry_topic).await;
        // The queue locks are released; nothing goes out before its checkpoint is durable.
        for w in batch.writes.drain(..) {
            if let Err(e) = w.durable(s).await {
                // Java hands the batch out on flush/replica timeouts too; it is indexed and
                // revives if un-acked.
                tracing::warn!(error = %e, "pop checkpoint durability wait failed");
            }
        }
        if !batch.messages.is_empty() {
            s.record_gets(batch.messages.len() as u64);
            s.metrics.consumed(
                &h.topic,
                &h.consumer_group,
                batch.messages.len() as u64,
                batch.messages.iter().map(|m| m.len() as u64).sum(),
            );
            if batch.rest > 0 {
                // Let other parked pollers of these queues pick up the backlog.
                for q in &queues {
                    s.arrivals.notify_arrival(&h.topic, *q);
                }
            }
            let mut body = Body::default();
            for m in &batch.messages {
                body.push(m.clone());
            }
            return Ok(ok(req)
                .with_header(&batch.response_header(h.invisible_time, order))
                .with_remark("FOUND")
                .with_body(body));
        }
        let now = Instant::now();
        if now >= deadline || s.pop.stop.is_cancelled() {
            return Ok(polling_response(
                req,
                ResponseCode::PollingTimeout,
                "NO_MESSAGE_IN_QUEUE",
                &batch.response_header(h.invisible_time, order),
            ));
        }
        if parked.is_none() {
            parked = s.pop.enter_polling(
                lock_key(&h.topic, &h.consumer_group, h.queue_id),
                cfg.pop_polling_size,
                cfg.max_pop_polling_size,
            );
            if parked.is_none() {
                return Ok(polling_response(
                    req,
                    ResponseCode::PollingFull,
                    "POLLING_FULL",
                    &batch.response_header(h.invisible_time, order),
                ));
            }
        }
        let mut until = deadline;
        if let Some(t) = batch.wake_at {
            let ms = t.saturating_sub(BrokerState::now_ms()).max(1) as u64;
            until = until.min(now + Duration::from_millis(ms));
        }
        tokio::select! {
            _ = futures::future::select_all(waits) => {}
            _ = s.pop.stop.cancelled() => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

/// One pass: the retry topic first with probability `popFromRetryProbability`, else after the
/// normal topic when the batch is not full (orderly pops never read the retry topic).
async fn pop_once(s: &Arc<BrokerState>, p: &PopRequest<'_>, retry_topic: &str) -> PopBatch {
    let order = p.h.is_order();
    let (draw, start): (u32, u32) = {
        let mut rng = rand::thread_rng();
        (rng.gen_range(0..100), rng.gen())
    };
    let mut batch = PopBatch {
        pop_time: BrokerState::now_ms(),
        revive_qid: if order {
            POP_ORDER_REVIVE_QUEUE
        } else {
            s.pop.next_revive_qid()
        },
        messages: Vec::new(),
        start_info: String::new(),
        msg_info: String::new(),
        order_info: String::new(),
        rest: 0,
        wake_at: None,
        writes: Vec::new(),
    };
    let retry = if order {
        None
    } else {
        s.topics.get(retry_topic)
    };
    let retry_first = draw < s.config().pop_from_retry_probability;
    if retry_first {
        if let Some(rt) = &retry {
            for q in queue_order(-1, rt.read_queue_nums, start) {
                pop_queue(s, p, &mut batch, retry_topic, true, q).await;
            }
        }
    }
    for q in queue_order(p.h.queue_id, p.topic.read_queue_nums, start) {
        pop_queue(s, p, &mut batch, &p.h.topic, false, q).await;
    }
    if !retry_first && batch.messages.len() < p.max {
        if let Some(rt) = &retry {
            for q in queue_order(-1, rt.read_queue_nums, start) {
                pop_queue(s, p, &mut batch, retry_topic, true, q).await;
            }
        }
    }
    batch
}

/// Where a pop of this queue starts: a pending admin reset, else the committed offset, else the
/// init position for `initMode` (Java's `getPopOffset`/`getInitOffset`).
fn pop_offset(s: &BrokerState, topic: &str, group: &str, queue_id: i32, init_mode: i32) -> i64 {
    if let Some(reset) = s.offsets.take_reset(topic, group, queue_id) {
        s.pop.order.clear(topic, group, queue_id);
        s.offsets.commit(topic, group, queue_id, reset);
        return reset;
    }
    if let Some(o) = s.offsets.query(topic, group, queue_id).filter(|o| *o >= 0) {
        return o;
    }
    if init_mode == POP_INIT_MODE_MIN || naming::is_retry_topic(topic) {
        return s.store.min_offset_in_queue(topic, queue_id);
    }
    // MAX: only the newest message onward, unless the queue still starts at 0 and that is in
    // memory (a young queue is read from the start, as Java's initPopOffsetByCheckMsgInMem).
    if s.store.min_offset_in_queue(topic, queue_id) <= 0 {
        let hot = match s.store.commit_log_offset_in_queue(topic, queue_id, 0) {
            None => true,
            Some(phy) => s.store.commit_log_max_offset() - phy <= s.in_memory_window,
        };
        if hot {
            return 0;
        }
    }
    (s.store.max_offset_in_queue(topic, queue_id) - 1).max(0)
}

fn backlog(s: &BrokerState, topic: &str, group: &str, queue_id: i32) -> i64 {
    let max = s.store.max_offset_in_queue(topic, queue_id);
    let committed = s.offsets.query(topic, group, queue_id).unwrap_or(0);
    (max - committed).max(0)
}

/// Pops what it can from one queue into the batch.
async fn pop_queue(
    s: &BrokerState,
    p: &PopRequest<'_>,
    batch: &mut PopBatch,
    topic: &str,
    is_retry: bool,
    queue_id: i32,
) {
    let h = p.h;
    let group = h.consumer_group.as_str();
    let remaining = p.max.saturating_sub(batch.messages.len());
    if remaining == 0 {
        batch.rest += backlog(s, topic, group, queue_id);
        return;
    }
    let Some(_lock) = s.pop.try_lock(lock_key(topic, group, queue_id)) else {
        batch.rest += backlog(s, topic, group, queue_id);
        return;
    };
    let order = h.is_order();
    if order {
        let now = BrokerState::now_ms();
        if let Some(t) =
            s.pop
                .order
                .blocked_until(topic, group, queue_id, h.attempt_id.as_deref(), now)
        {
            batch.wake_at = Some(batch.wake_at.map_or(t, |w| w.min(t)));
            batch.rest += backlog(s, topic, group, queue_id);
            return;
        }
    }
    let filter: Option<&dyn MessageFilter> = if is_retry { None } else { Some(&p.filter) };
    let mut offset = pop_offset(s, topic, group, queue_id, h.init_mode);
    let mut r = s
        .store
        .get_messages(topic, queue_id, offset, remaining, usize::MAX, filter);
    if matches!(
        r.status,
        GetMessageStatus::OffsetTooSmall
            | GetMessageStatus::OffsetOverflowBadly
            | GetMessageStatus::OffsetFoundNull
    ) {
        // The committed offset is outside the queue (files expired, queue recreated): move it.
        tracing::warn!(
            topic,
            group,
            queue_id,
            from = offset,
            to = r.next_begin_offset,
            "pop offset corrected"
        );
        offset = r.next_begin_offset;
        s.offsets.commit(topic, group, queue_id, offset);
        r = s
            .store
            .get_messages(topic, queue_id, offset, remaining, usize::MAX, filter);
    }
    let retry_flag = RetryFlag::of_topic(topic);
    if r.status == GetMessageStatus::Found {
        let mut counts = HashMap::new();
        if order {
            let (entries, per_message) = s.pop.order.update(
                topic,
                group,
                queue_id,
                h.attempt_id.as_deref(),
                batch.pop_time,
                h.invisible_time,
                &r.queue_offsets,
            );
            for e in &entries {
                push_order_count_info(&mut batch.order_info, e);
            }
            counts = per_message;
            s.offsets.commit(topic, group, queue_id, offset);
        } else {
            let key = CkKey {
                topic: topic.to_owned(),
                group: group.to_owned(),
                queue_id,
                start_offset: offset,
                pop_time: batch.pop_time,
            };
            // Appended and indexed under the queue lock; its flush/replication is awaited after
            // the lock is released, before the batch is handed out.
            match start_checkpoint(
                s,
                key,
                batch.revive_qid,
                h.invisible_time,
                r.queue_offsets.clone(),
                0,
            ) {
                Ok(w) => batch.writes.push(w),
                Err(e) => {
                    // Nothing is handed out without its checkpoint.
                    tracing::warn!(topic, group, queue_id, error = %e, "pop skipped a queue");
                    batch.rest += r.max_offset.saturating_sub(offset).max(0);
                    return;
                }
            }
            s.offsets
                .commit(topic, group, queue_id, r.next_begin_offset);
        }
        push_start_offset_info(&mut batch.start_info, retry_flag, queue_id, offset);
        push_msg_offset_info(&mut batch.msg_info, retry_flag, queue_id, &r.queue_offsets);
        let broker_name = s.config().broker_name.clone();
        for (record, qo) in r.messages.iter().zip(&r.queue_offsets) {
            let handle = ExtraInfo {
                ck_queue_offset: offset,
                pop_time: batch.pop_time,
                invisible_time: h.invisible_time,
                revive_qid: batch.revive_qid,
                retry: retry_flag,
                broker_name: broker_name.clone(),
                queue_id,
                queue_offset: *qo,
                commit_log_offset: None,
            };
            let count = counts.get(qo).copied().filter(|c| *c > 0);
            batch
                .messages
                .push(with_receipt_handle(record, &h.topic, &handle, count));
        }
    } else if matches!(
        r.status,
        GetMessageStatus::NoMatchedMessage
            | GetMessageStatus::OffsetFoundNull
            | GetMessageStatus::MessageWasRemoving
            | GetMessageStatus::NoMatchedLogicQueue
    ) && r.next_begin_offset > offset
    {
        // Only filtered-out messages: nothing to revive, just move past them.
        s.offsets
            .commit(topic, group, queue_id, r.next_begin_offset);
    }
    batch.rest += (r.max_offset - r.next_begin_offset).max(0);
}

/// The record as handed out: `POP_CK` set to the receipt handle, a retry copy shown under the
/// user topic, and for orderly pops the delivery count as `reconsumeTimes` (Java clients only
/// read orderCountInfo for messages without `POP_CK`). Falls back to the stored bytes if the
/// record cannot be re-encoded.
fn with_receipt_handle(
    record: &Bytes,
    user_topic: &str,
    handle: &ExtraInfo,
    order_count: Option<i32>,
) -> Bytes {
    let Ok(view) = RecordView::parse(record) else {
        return record.clone();
    };
    let props = properties::with(view.properties(), keys::POP_CK, &handle.encode());
    let mut out = view.to_record();
    out.topic = user_topic;
    out.properties = &props;
    if let Some(c) = order_count {
        out.reconsume_times = c;
    }
    out.to_vec()
        .map(Bytes::from)
        .unwrap_or_else(|_| record.clone())
}

/// NOTIFICATION: whether a POP of these queues would find something, waiting up to `pollTime`.
pub(super) async fn notification(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: NotificationRequestHeader = header(req)?;
    if !s.broker_readable() {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] peeking message is forbidden",
                s.store_host.ip()
            ),
        ));
    }
    let topic = check_topic_and_group(s, req, &h.topic, h.queue_id, &h.consumer_group).await?;
    let order = h.order.unwrap_or(false);
    let retry_topic = pop_retry_topic_v1(&h.topic, &h.consumer_group);
    let queues = queue_order(h.queue_id, topic.read_queue_nums, 0);
    let signals = arrival_signals(s, &h.topic, &retry_topic, &queues, order);
    let deadline = Instant::now() + Duration::from_millis(h.poll_time.clamp(0, MAX_POLL_MS) as u64);
    let cfg = s.config();
    let reply = |has_msg: bool, polling_full: bool| {
        ok(req).with_header(&NotificationResponseHeader {
            has_msg,
            polling_full: polling_full.then_some(true),
        })
    };
    let mut parked = None;
    loop {
        let mut waits: Vec<_> = signals.iter().map(|n| Box::pin(n.notified())).collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let now_ms = BrokerState::now_ms();
        // Earliest expiry of a blocked orderly queue: the notification looks again then.
        let mut wake_at: Option<i64> = None;
        let has = queues.iter().any(|q| {
            let blocked = if order {
                s.pop.order.blocked_until(
                    &h.topic,
                    &h.consumer_group,
                    *q,
                    h.attempt_id.as_deref(),
                    now_ms,
                )
            } else {
                None
            };
            if let Some(t) = blocked {
                wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            }
            blocked.is_none() && backlog(s, &h.topic, &h.consumer_group, *q) > 0
        }) || (!order
            && s.topics.contains(&retry_topic)
            && backlog(s, &retry_topic, &h.consumer_group, 0) > 0);
        let now = Instant::now();
        if has || now >= deadline || s.pop.stop.is_cancelled() {
            return Ok(reply(has, false));
        }
        if parked.is_none() {
            parked = s.pop.enter_polling(
                lock_key(&h.topic, &h.consumer_group, h.queue_id),
                cfg.pop_polling_size,
                cfg.max_pop_polling_size,
            );
            if parked.is_none() {
                return Ok(reply(false, true));
            }
        }
        let mut until = deadline;
        if let Some(t) = wake_at {
            let ms = t.saturating_sub(BrokerState::now_ms()).max(1) as u64;
            until = until.min(now + Duration::from_millis(ms));
        }
        // Orderly unblocks by ack signal the queue's arrival key, so they wake this too.
        tokio::select! {
            _ = futures::future::select_all(waits) => {}
            _ = s.pop.stop.cancelled() => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_covers_every_queue_once() {
        assert_eq!(queue_order(2, 4, 7), vec![2]);
        let mut all = queue_order(-1, 4, 7);
        assert_eq!(all[0], 3);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        assert!(queue_order(-1, 0, 1).is_empty());
        let mut high = queue_order(-1, 4, u32::MAX);
        high.sort_unstable();
        assert_eq!(high, vec![0, 1, 2, 3]);
    }

    #[test]
    fn queue_locks_and_polling_limits() {
        let pop = PopState::default();
        let g = pop.try_lock("k".into()).unwrap();
        assert!(pop.try_lock("k".into()).is_none());
        drop(g);
        assert!(pop.try_lock("k".into()).is_some());

        let a = pop.enter_polling("q".into(), 1, 2).unwrap();
        assert!(pop.enter_polling("q".into(), 1, 2).is_none());
        let b = pop.enter_polling("r".into(), 1, 2).unwrap();
        assert!(pop.enter_polling("s".into(), 1, 2).is_none());
        drop(a);
        drop(b);
        assert!(pop.enter_polling("q".into(), 1, 2).is_some());
    }

    #[test]
    fn handed_out_records_carry_the_handle() {
        let props = properties::encode([(keys::TAGS, "A")]);
        let rec = ferrymq_protocol::message::MessageRecord {
            topic: "%RETRY%G_T",
            queue_id: 0,
            flag: 0,
            queue_offset: 3,
            physical_offset: 100,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 2,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 1,
            prepared_transaction_offset: 0,
            body: b"x",
            body_crc: None,
            properties: &props,
        }
        .to_vec()
        .unwrap();
        let handle = ExtraInfo {
            ck_queue_offset: 3,
            pop_time: 10,
            invisible_time: 20,
            revive_qid: 1,
            retry: RetryFlag::RetryV1,
            broker_name: "b".into(),
            queue_id: 0,
            queue_offset: 3,
            commit_log_offset: None,
        };
        let out = with_receipt_handle(&Bytes::from(rec), "T", &handle, Some(4));
        let v = RecordView::parse(&out).unwrap();
        assert_eq!(v.topic(), "T");
        assert_eq!(v.property(keys::POP_CK), Some("3 10 20 1 1 b 0 3"));
        assert_eq!(v.property(keys::TAGS), Some("A"));
        assert_eq!(v.reconsume_times(), 4);
        assert_eq!(v.queue_offset(), 3);
    }
}
