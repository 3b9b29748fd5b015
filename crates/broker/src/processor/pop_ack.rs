//! ACK_MESSAGE (200051), BATCH_ACK_MESSAGE (200151) and CHANGE_MESSAGE_INVISIBLETIME (200053)
//! for popped messages (spec §4–5).
//!
//! Acks are idempotent: acking a message that is already acked, already revived or unknown
//! succeeds and does nothing, as in the Java broker (which does not check expiry either; the
//! proxy answers INVALID_RECEIPT_HANDLE for expired handles itself). A change of invisible time
//! stores a new one-message checkpoint, then acks the old handle, so the old handle is useless
//! afterwards; the response carries what the caller needs for the new handle.

use std::sync::Arc;

use ferrymq_protocol::body::{BatchAck, BatchAckMessageRequestBody};
use ferrymq_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
};
use ferrymq_protocol::pop::{ExtraInfo, RetryFlag, POP_ORDER_REVIVE_QUEUE};
use ferrymq_protocol::{RemotingCommand, ResponseCode};

use super::pop::lock_key;
use super::pop_checkpoint::{append_ack, append_checkpoint, CkKey};
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

pub(super) async fn ack_message(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: AckMessageRequestHeader = header(req)?;
    check_queue(s, req, &h.topic, h.queue_id)?;
    let handle = parse_handle(req, &h.extra_info)?;
    let topic = real_topic(&h.topic, &h.consumer_group, &handle);
    let min = s.store.min_offset_in_queue(&topic, h.queue_id);
    let max = s.store.max_offset_in_queue(&topic, h.queue_id);
    if h.offset < min || h.offset > max {
        return Err(err(
            req,
            ResponseCode::NoMessage,
            format!(
                "offset is illegal, key:{topic}@{}, commit:{}, store:{min}~{max}",
                h.queue_id, h.offset
            ),
        ));
    }
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
    if let Some(revive_qid) = s.pop.checkpoints.ack(&key, h.offset) {
        append_ack(s, &key, revive_qid, &[h.offset])
            .await
            .map_err(|e| err(req, ResponseCode::SystemError, e))?;
    }
    Ok(ok(req))
}

/// Acks one offset of an orderly batch; the consumer offset moves to the first un-acked message
/// and a fully acked batch unblocks the queue.
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
            if s.offsets
                .query(topic, group, queue_id)
                .is_none_or(|c| c < next_offset)
            {
                s.offsets.commit(topic, group, queue_id, next_offset);
            }
            if done {
                s.pop.unblocked.notify_waiters();
            }
        }
    }
}

pub(super) async fn batch_ack_message(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
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
    let offsets = a
        .bit_set
        .iter()
        .map(|i| a.start_offset + i64::from(i))
        .filter(|o| *o >= min && *o <= max);
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
    let mut acked = Vec::new();
    let mut revive_qid = a.revive_queue_id;
    for o in offsets {
        if let Some(rq) = s.pop.checkpoints.ack(&key, o) {
            revive_qid = rq;
            acked.push(o);
        }
    }
    if acked.is_empty() {
        return Ok(());
    }
    append_ack(s, &key, revive_qid, &acked).await
}

pub(super) async fn change_invisible_time(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: ChangeInvisibleTimeRequestHeader = header(req)?;
    check_queue(s, req, &h.topic, h.queue_id)?;
    let handle = parse_handle(req, &h.extra_info)?;
    let topic = real_topic(&h.topic, &h.consumer_group, &handle);
    let min = s.store.min_offset_in_queue(&topic, h.queue_id);
    let max = s.store.max_offset_in_queue(&topic, h.queue_id);
    if h.offset < min || h.offset >= max {
        return Err(err(
            req,
            ResponseCode::NoMessage,
            format!(
                "offset is illegal, key:{topic}@{}, commit:{}, store:{min}~{max}",
                h.queue_id, h.offset
            ),
        ));
    }
    let group = h.consumer_group.as_str();
    // A new pop time distinct from the old one keeps the new checkpoint's key distinct.
    let now = BrokerState::now_ms().max(handle.pop_time + 1);
    if handle.is_order() {
        // Orderly: only this message's next-visible time moves; the handle keeps its pop time.
        let _lock = s.pop.lock(lock_key(&topic, group, h.queue_id)).await;
        let committed = s.offsets.query(&topic, group, h.queue_id).unwrap_or(0);
        let mut invisible = handle.invisible_time;
        if h.offset >= committed {
            let next_visible = now + h.invisible_time;
            if s.pop.order.set_next_visible(
                &topic,
                group,
                h.queue_id,
                h.offset,
                handle.pop_time,
                next_visible,
            ) {
                invisible = next_visible - handle.pop_time;
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
    let reply = ok(req).with_header(&ChangeInvisibleTimeResponseHeader {
        pop_time: now,
        invisible_time: h.invisible_time,
        revive_qid: handle.revive_qid,
    });
    let Some(ck) = s
        .pop
        .checkpoints
        .get(&old)
        .filter(|_| s.pop.checkpoints.is_unacked(&old, h.offset))
    else {
        // Already acked or revived: making it invisible again would resurrect it.
        return Ok(reply.with_remark("the message is no longer in flight"));
    };
    let new = CkKey {
        topic,
        group: group.to_owned(),
        queue_id: h.queue_id,
        start_offset: h.offset,
        pop_time: now,
    };
    append_checkpoint(s, new, ck.revive_qid, h.invisible_time, vec![h.offset])
        .await
        .map_err(|e| err(req, ResponseCode::SystemError, e))?;
    if let Some(revive_qid) = s.pop.checkpoints.ack(&old, h.offset) {
        // The new checkpoint is stored: if this ack record is lost the message is at worst
        // delivered once more when the old checkpoint revives.
        if let Err(e) = append_ack(s, &old, revive_qid, &[h.offset]).await {
            tracing::warn!(error = %e, "ack of the changed handle not stored");
        }
    }
    Ok(reply)
}
