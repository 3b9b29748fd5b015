//! ACK_MESSAGE (200051), BATCH_ACK_MESSAGE (200151) and CHANGE_MESSAGE_INVISIBLETIME (200053)
//! for popped messages (spec §4–5).
//!
//! Acks are idempotent: acking a message that is already acked, already revived or unknown
//! succeeds and does nothing, as in the Java broker (which does not check expiry either; the
//! proxy answers INVALID_RECEIPT_HANDLE for expired handles itself). An ack is applied in memory
//! first and undone if its record cannot be stored, so a retry writes it.
//!
//! A change of invisible time moves the message to a new one-message checkpoint in one atomic
//! index step (checked in flight, marked moved), stores that checkpoint, then acks the old
//! handle. The move is remembered: a retried change (lost response, proxy renewal retry) gets
//! the same new handle, and an ack with the old handle reaches the new checkpoint, also when it
//! races with the change. A message no longer in flight (acked, revived) answers NO_MESSAGE,
//! which the proxy reports as INVALID_RECEIPT_HANDLE: a success would hand out a dead handle.

use std::sync::Arc;

use ferrymq_protocol::body::{BatchAck, BatchAckMessageRequestBody};
use ferrymq_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
};
use ferrymq_protocol::pop::{ExtraInfo, RetryFlag, POP_ORDER_REVIVE_QUEUE};
use ferrymq_protocol::{RemotingCommand, ResponseCode};

use super::pop::lock_key;
use super::pop_checkpoint::{append_ack, append_checkpoint, persist_acks, CkKey, MoveOutcome};
use super::pop_order::OrderAck;
use super::{err, header, json_body, ok, Reply};
use crate::state::BrokerState;

fn parse_handle(req: &RemotingCommand, extra_info: &str) -> Result<ExtraInfo, RemotingCommand> {
    ExtraInfo::parse(extra_info).map_err(|e| {
        err(
            req,
            ResponseCode::SystemError,
            format!("invalid extraInfo: {e}"),
        )
    })
}

/// The topic the handle's message was read from. Java clients already send the retry topic for
/// retry copies; a caller sending the user topic gets it derived from the handle's flag.
fn real_topic(topic: &str, group: &str, handle: &ExtraInfo) -> String {
    if RetryFlag::of_topic(topic) == handle.retry {
        topic.to_owned()
    } else {
        handle.real_topic(topic, group)
    }
}

/// Java's checks: the topic exists and the queue id is one of its read queues.
fn check_queue(
    s: &BrokerState,
    req: &RemotingCommand,
    topic: &str,
    queue_id: i32,
) -> Result<(), RemotingCommand> {
    let Some(tc) = s.topics.get(topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{topic}] not exist, apply first please! https://rocketmq.apache.org/docs/bestPractice/06FAQ"),
        ));
    };
    if queue_id < 0 || queue_id >= tc.read_queue_nums {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
                tc.read_queue_nums
            ),
        ));
    }
    Ok(())
}

/// Most a popped message may stay invisible (the Java proxy's `maxInvisibleTimeMills`).
pub const MAX_INVISIBLE_MS: i64 = 12 * 3600 * 1000;

/// A slave stores no checkpoints, acks or orderly offsets of its own (Java's escape bridge
/// refuses such writes there unless the slave acts as master).
pub(super) fn refuse_on_slave(
    s: &BrokerState,
    req: &RemotingCommand,
    what: &str,
) -> Result<(), RemotingCommand> {
    if s.config().is_slave() {
        return Err(err(
            req,
            ResponseCode::ServiceNotAvailable,
            format!("{what} is not allowed on a slave broker, use its master"),
        ));
    }
    Ok(())
}

/// The queue offset is within the queue (Java: NO_MESSAGE otherwise; an ack may name the max
/// offset itself, a change of invisible time may not).
fn check_offset(
    s: &BrokerState,
    req: &RemotingCommand,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max_included: bool,
) -> Result<(), RemotingCommand> {
    let min = s.store.min_offset_in_queue(topic, queue_id);
    let max = s.store.max_offset_in_queue(topic, queue_id);
    if offset < min || offset > max || (offset == max && !max_included) {
        return Err(err(
            req,
            ResponseCode::NoMessage,
            format!(
                "offset is illegal, key:{topic}@{queue_id}, commit:{offset}, store:{min}~{max}"
            ),
        ));
    }
    Ok(())
}

pub(super) async fn ack_message(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: AckMessageRequestHeader = header(req)?;
    refuse_on_slave(s, req, "ACK_MESSAGE")?;
    check_queue(s, req, &h.topic, h.queue_id)?;
    let handle = parse_handle(req, &h.extra_info)?;
    let topic = real_topic(&h.topic, &h.consumer_group, &handle);
    check_offset(s, req, &topic, h.queue_id, h.offset, true)?;
    if handle.is_order() {
        ack_orderly(
            s,
            &topic,
            &h.consumer_group,
            h.queue_id,
            h.offset,
            handle.pop_time,
        )
        .await;
        return Ok(ok(req));
    }
    let key = CkKey {
        topic,
        group: h.consumer_group.clone(),
        queue_id: h.queue_id,
        start_offset: handle.ck_queue_offset,
        pop_time: handle.pop_time,
    };
    let writes = s.pop.checkpoints.ack(&key, &[h.offset]);
    persist_acks(s, writes)
        .await
        .map_err(|e| err(req, ResponseCode::SystemError, e))?;
    Ok(ok(req))
}

/// Acks one offset of an orderly batch; the consumer offset moves to the first un-acked message
/// and parked pops of the queue are woken when it stops being blocked.
async fn ack_orderly(
    s: &BrokerState,
    topic: &str,
    group: &str,
    queue_id: i32,
    offset: i64,
    pop_time: i64,
) {
    let _lock = s.pop.lock(lock_key(topic, group, queue_id)).await;
    match s.pop.order.ack(topic, group, queue_id, offset, pop_time) {
        OrderAck::Stale => {}
        OrderAck::Commit { next_offset, done } => {
            // A pending admin reset wins: the next pop moves the offset there.
            if !s.offsets.reset_pending(topic, group, queue_id)
                && s.offsets
                    .query(topic, group, queue_id)
                    .is_none_or(|c| c < next_offset)
            {
                s.offsets.commit(topic, group, queue_id, next_offset);
            }
            let now = BrokerState::now_ms();
            if done
                || s.pop
                    .order
                    .blocked_until(topic, group, queue_id, None, now)
                    .is_none()
            {
                // The queue's arrival key: parked pops and notifications of it look again.
                s.arrivals.notify_arrival(topic, queue_id);
            }
        }
    }
}

pub(super) async fn batch_ack_message(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    refuse_on_slave(s, req, "BATCH_ACK_MESSAGE")?;
    let body: BatchAckMessageRequestBody = if req.body.is_empty() {
        BatchAckMessageRequestBody::default()
    } else {
        json_body(req)?
    };
    if body.acks.is_empty() {
        return Err(err(req, ResponseCode::NoMessage, "no acks in the request"));
    }
    for a in &body.acks {
        batch_ack_one(s, a)
            .await
            .map_err(|e| err(req, ResponseCode::SystemError, e))?;
    }
    Ok(ok(req))
}

async fn batch_ack_one(s: &BrokerState, a: &BatchAck) -> Result<(), String> {
    let Some(flag) = RetryFlag::parse(&a.retry) else {
        tracing::warn!(retry = %a.retry, "batch ack with an unknown retry flag ignored");
        return Ok(());
    };
    let topic = flag.real_topic(&a.topic, &a.consumer_group);
    let min = s.store.min_offset_in_queue(&topic, a.queue_id);
    let max = s.store.max_offset_in_queue(&topic, a.queue_id);
    // Bit indexes come from the network: a huge start offset must not overflow.
    let offsets: Vec<i64> = a
        .bit_set
        .iter()
        .take(1024)
        .filter_map(|i| a.start_offset.checked_add(i64::from(i)))
        .filter(|o| *o >= min && *o <= max)
        .collect();
    if a.revive_queue_id == POP_ORDER_REVIVE_QUEUE {
        for o in offsets {
            ack_orderly(s, &topic, &a.consumer_group, a.queue_id, o, a.pop_time).await;
        }
        return Ok(());
    }
    let key = CkKey {
        topic,
        group: a.consumer_group.clone(),
        queue_id: a.queue_id,
        start_offset: a.start_offset,
        pop_time: a.pop_time,
    };
    let writes = s.pop.checkpoints.ack(&key, &offsets);
    persist_acks(s, writes).await
}

pub(super) async fn change_invisible_time(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: ChangeInvisibleTimeRequestHeader = header(req)?;
    refuse_on_slave(s, req, "CHANGE_MESSAGE_INVISIBLETIME")?;
    if !(0..=MAX_INVISIBLE_MS).contains(&h.invisible_time) {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!(
                "invisibleTime {} is out of range [0, {MAX_INVISIBLE_MS}]",
                h.invisible_time
            ),
        ));
    }
    check_queue(s, req, &h.topic, h.queue_id)?;
    let handle = parse_handle(req, &h.extra_info)?;
    let topic = real_topic(&h.topic, &h.consumer_group, &handle);
    check_offset(s, req, &topic, h.queue_id, h.offset, false)?;
    let group = h.consumer_group.as_str();
    // A new pop time distinct from the old one keeps the new checkpoint's key distinct.
    let now = BrokerState::now_ms().max(handle.pop_time.saturating_add(1));
    if handle.is_order() {
        // Orderly: only this message's next-visible time moves; the handle keeps its pop time.
        let _lock = s.pop.lock(lock_key(&topic, group, h.queue_id)).await;
        let committed = s.offsets.query(&topic, group, h.queue_id).unwrap_or(0);
        let mut invisible = handle.invisible_time;
        if h.offset >= committed {
            let next_visible = now.saturating_add(h.invisible_time);
            if s.pop.order.set_next_visible(
                &topic,
                group,
                h.queue_id,
                h.offset,
                handle.pop_time,
                next_visible,
            ) {
                invisible = next_visible.saturating_sub(handle.pop_time);
            }
        }
        return Ok(ok(req).with_header(&ChangeInvisibleTimeResponseHeader {
            pop_time: handle.pop_time,
            invisible_time: invisible,
            revive_qid: POP_ORDER_REVIVE_QUEUE,
        }));
    }
    let old = CkKey {
        topic: topic.clone(),
        group: group.to_owned(),
        queue_id: h.queue_id,
        start_offset: handle.ck_queue_offset,
        pop_time: handle.pop_time,
    };
    let cks = &s.pop.checkpoints;
    let revive_qid = match cks.move_offset(&old, h.offset, now, h.invisible_time) {
        MoveOutcome::NotInFlight => {
            // Acked or revived already: a success would hand out a handle that acks nothing.
            return Err(err(
                req,
                ResponseCode::NoMessage,
                "the message is no longer in flight (acked, revived or the handle is stale)",
            ));
        }
        MoveOutcome::Existing {
            pop_time,
            invisible_time,
            revive_qid,
        } => {
            return Ok(ok(req).with_header(&ChangeInvisibleTimeResponseHeader {
                pop_time,
                invisible_time,
                revive_qid,
            }));
        }
        MoveOutcome::Started { revive_qid } => revive_qid,
    };
    let new = CkKey {
        topic,
        group: group.to_owned(),
        queue_id: h.queue_id,
        start_offset: h.offset,
        pop_time: now,
    };
    if let Err(e) = append_checkpoint(
        s,
        new.clone(),
        revive_qid,
        h.invisible_time,
        vec![h.offset],
        0,
    )
    .await
    {
        if cks.move_failed(&old, h.offset) {
            // The client acked meanwhile: store that ack on the old batch.
            let r = append_ack(s, &old, revive_qid, &[h.offset]).await;
            cks.ack_persisted(&old, &[h.offset], r.is_ok());
        }
        return Err(err(req, ResponseCode::SystemError, e));
    }
    if cks.move_recorded(&old, h.offset) {
        // An ack with the old handle raced with this change: it applies to the new batch.
        let writes = cks.ack(&new, &[h.offset]);
        if let Err(e) = persist_acks(s, writes).await {
            tracing::warn!(error = %e, "forwarded ack of a changed handle not stored");
        }
    }
    // The new checkpoint is stored: if this ack record is lost the message is at worst
    // delivered once more when the old checkpoint revives after a restart, so the move stands.
    if let Err(e) = append_ack(s, &old, revive_qid, &[h.offset]).await {
        tracing::warn!(error = %e, "ack of the changed handle not stored");
    }
    cks.ack_persisted(&old, &[h.offset], true);
    Ok(ok(req).with_header(&ChangeInvisibleTimeResponseHeader {
        pop_time: now,
        invisible_time: h.invisible_time,
        revive_qid,
    }))
}
