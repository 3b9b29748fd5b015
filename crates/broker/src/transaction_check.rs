//! Transaction check-back (behaviour.md §6): half messages whose producer never committed or
//! rolled back are asked about. Every `transactionCheckInterval` the half queue is walked from
//! the service's progress offset; settled messages (an op record names them) are skipped, a
//! pending one older than `transactionTimeOut` is re-appended with its check count raised — so the
//! walk can move past it — and CHECK_TRANSACTION_STATE goes to a live producer of its group.
//! After `transactionCheckMax` checks it is parked in TRANS_CHECK_MAX_TIME_TOPIC for good.
//!
//! Progress is kept as the offsets of group CID_RMQ_SYS_TRANS on the half and op queues, as
//! RocketMQ keeps it, so it survives restarts in consumerOffset.json.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::header::CheckTransactionStateRequestHeader;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::{MessageRecord, RecordView};
use ferrymq_protocol::{naming, LanguageCode, RemotingCommand, RequestCode};
use ferrymq_store::{GetMessageStatus, MessageInner};
use tokio_util::sync::CancellationToken;

use crate::state::BrokerState;

const GROUP: &str = naming::TRANS_CHECK_GROUP;
/// Upper bound on half messages handled per queue scan, so one scan cannot run away.
const MAX_PER_SCAN: usize = 10_000;

/// Reads up to `max` records of a queue from `offset`, with their queue offsets.
fn read(s: &BrokerState, topic: &str, offset: i64) -> (Vec<(Bytes, i64)>, i64) {
    let r = s.store.get_messages(topic, 0, offset, 32, usize::MAX, None);
    match r.status {
        GetMessageStatus::Found => (
            r.messages.into_iter().zip(r.queue_offsets).collect(),
            r.next_begin_offset,
        ),
        GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetOverflowBadly => {
            (Vec::new(), r.next_begin_offset)
        }
        _ => (Vec::new(), offset),
    }
}

/// Half-queue offsets that op records mark as settled, from the op progress onwards.
fn settled(s: &BrokerState, mut op_offset: i64) -> HashSet<i64> {
    let mut done = HashSet::new();
    loop {
        let (records, next) = read(s, naming::TRANS_OP_HALF_TOPIC, op_offset);
        if records.is_empty() {
            if next == op_offset {
                return done;
            }
            op_offset = next;
            continue;
        }
        for (record, _) in &records {
            if let Ok(v) = RecordView::parse(record) {
                if let Some(off) = std::str::from_utf8(v.body())
                    .ok()
                    .and_then(|b| b.trim().parse::<i64>().ok())
                {
                    done.insert(off);
                }
            }
        }
        op_offset = next;
    }
}

/// Marks a half message settled (committed or rolled back) with an op record.
pub(crate) async fn write_op(s: &BrokerState, half_queue_offset: i64) {
    let mut op = MessageInner::new(
        naming::TRANS_OP_HALF_TOPIC,
        0,
        half_queue_offset.to_string().into_bytes(),
    );
    op.properties = properties::encode([(keys::TAGS, "d")]);
    op.store_host = s.store_host;
    let result = s.store.put_message(op).await;
    if !result.status.is_stored() {
        tracing::warn!(status = %result.status, "cannot write transaction op record");
    }
}

/// Stores a copy of a half message (same body and properties) under `topic`, with `props`.
async fn re_put(s: &BrokerState, record: &Bytes, topic: &str, props: String) -> Option<(i64, i64)> {
    let v = RecordView::parse(record).ok()?;
    let mut msg = s.restore(record, &v);
    msg.topic = topic.to_owned();
    msg.queue_id = 0;
    msg.properties = props;
    let r = s.store.put_message(msg).await;
    let a = r.append?;
    Some((a.logics_offset, a.wrote_offset))
}

/// Asks a producer of the half message's group what became of it.
fn send_check(s: &BrokerState, copy: &Bytes) {
    let Ok(v) = RecordView::parse(copy) else {
        return;
    };
    let Some(group) = v.property(keys::PRODUCER_GROUP) else {
        return;
    };
    let Some(conn) = s.clients.any_producer(group) else {
        tracing::debug!(group, "no live producer to check a transaction with");
        return;
    };
    // The producer sees the message as it was sent: real topic and queue.
    let real_topic = v.property(keys::REAL_TOPIC).unwrap_or(v.topic());
    let real_queue = v
        .property(keys::REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0);
    let mut rec: MessageRecord<'_> = v.to_record();
    rec.topic = real_topic;
    rec.queue_id = real_queue;
    rec.body_crc = None;
    let Ok(body) = rec.to_vec() else { return };
    let uniq = properties::uniq_key(v.properties()).map(str::to_owned);
    let header = CheckTransactionStateRequestHeader {
        topic: Some(v.topic().to_owned()),
        tran_state_table_offset: v.queue_offset(),
        commit_log_offset: v.physical_offset(),
        msg_id: uniq.clone(),
        transaction_id: v.property(keys::TRANSACTION_ID).map(str::to_owned).or(uniq),
        offset_msg_id: Some(v.offset_msg_id()),
        broker_name: Some(s.config().broker_name.clone()),
    };
    let cmd = RemotingCommand::request_with_header(RequestCode::CheckTransactionState, &header)
        .with_body(body)
        .with_language(LanguageCode::Java);
    tokio::spawn(async move {
        let _ = conn.invoke_oneway(cmd).await;
    });
}

/// One pass over the half queue.
pub(crate) async fn check_once(s: &BrokerState) {
    let now = BrokerState::now_ms();
    let timeout = s.config().transaction_time_out as i64;
    let max_checks = s.config().transaction_check_max;
    let mut half = s
        .offsets
        .query(naming::TRANS_HALF_TOPIC, GROUP, 0)
        .unwrap_or(0);
    let op_progress = s
        .offsets
        .query(naming::TRANS_OP_HALF_TOPIC, GROUP, 0)
        .unwrap_or(0);
    let done = settled(s, op_progress);
    // Copies re-appended by this pass are for the next pass: their producer has not had time to
    // answer yet.
    let end = s.store.max_offset_in_queue(naming::TRANS_HALF_TOPIC, 0);
    let mut handled = 0;
    'scan: while handled < MAX_PER_SCAN && half < end {
        let (records, next) = read(s, naming::TRANS_HALF_TOPIC, half);
        if records.is_empty() {
            half = next;
            break;
        }
        for (record, queue_offset) in records {
            if queue_offset >= end {
                break 'scan;
            }
            handled += 1;
            if done.contains(&queue_offset) {
                half = queue_offset + 1;
                continue;
            }
            let Ok(v) = RecordView::parse(&record) else {
                half = queue_offset + 1;
                continue;
            };
            // Too young to ask about: the producer may still be running its local transaction.
            let wait = v
                .property(keys::CHECK_IMMUNITY_TIME_IN_SECONDS)
                .and_then(|t| t.parse::<i64>().ok())
                .map_or(timeout, |secs| secs.saturating_mul(1000));
            if now - v.born_timestamp() < wait {
                break 'scan;
            }
            let checks = v
                .property(keys::TRANSACTION_CHECK_TIMES)
                .and_then(|c| c.parse::<i32>().ok())
                .unwrap_or(0);
            if checks >= max_checks {
                tracing::warn!(
                    offset = queue_offset,
                    "half message checked too often, discarded"
                );
                let props = v.properties().to_owned();
                if re_put(s, &record, naming::TRANS_CHECK_MAX_TIME_TOPIC, props)
                    .await
                    .is_none()
                {
                    break 'scan;
                }
                half = queue_offset + 1;
                continue;
            }
            let props = properties::with(
                v.properties(),
                keys::TRANSACTION_CHECK_TIMES,
                &(checks + 1).to_string(),
            );
            let Some((_, physical)) = re_put(s, &record, naming::TRANS_HALF_TOPIC, props).await
            else {
                break 'scan;
            };
            if let Some(copy) = s.store.lookup_message_by_offset(physical) {
                send_check(s, &copy);
            }
            half = queue_offset + 1;
        }
    }
    s.offsets.commit(naming::TRANS_HALF_TOPIC, GROUP, 0, half);
    // Op records for half messages behind the progress are no longer needed for the scan.
    let op_max = s.store.max_offset_in_queue(naming::TRANS_OP_HALF_TOPIC, 0);
    let mut op = op_progress;
    while op < op_max {
        let (records, next) = read(s, naming::TRANS_OP_HALF_TOPIC, op);
        let mut stop = records.is_empty() && next == op;
        for (record, qo) in &records {
            let behind = RecordView::parse(record)
                .ok()
                .and_then(|v| {
                    std::str::from_utf8(v.body())
                        .ok()
                        .and_then(|b| b.trim().parse::<i64>().ok())
                })
                .is_none_or(|h| h < half);
            if !behind {
                stop = true;
                break;
            }
            op = qo + 1;
        }
        if stop {
            break;
        }
        if records.is_empty() {
            op = next;
        }
    }
    s.offsets.commit(naming::TRANS_OP_HALF_TOPIC, GROUP, 0, op);
}

pub async fn run(s: Arc<BrokerState>, stop: CancellationToken) {
    let period = Duration::from_millis(s.config().transaction_check_interval.max(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => check_once(&s).await,
        }
    }
}
