//! Consumption through the broker's POP requests (grpc-v5.md §10, pop-and-timer.md):
//! ReceiveMessage → POP_MESSAGE, AckMessage → ACK_MESSAGE, ChangeInvisibleDuration →
//! CHANGE_MESSAGE_INVISIBLETIME, ForwardMessageToDeadLetterQueue → CONSUMER_SEND_MSG_BACK to
//! the DLQ plus an ack.
//!
//! The receipt handle a client gets is the broker's `POP_CK` extra info with the message's
//! commit-log offset appended (the Java proxy's form): it names the broker, queue, offsets and
//! pop time, so ack and change-invisible need no state in the proxy.

use std::time::Duration;

use ferrymq_client::MessageExt;
use ferrymq_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    ConsumerSendMsgBackRequestHeader, PopMessageRequestHeader, PopMessageResponseHeader,
    POP_INIT_MODE_MAX,
};
use ferrymq_protocol::message::keys;
use ferrymq_protocol::pop::{parse_start_offset_info, ExtraInfo, RetryFlag, MAX_POP_BATCH};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use tracing::{debug, warn};

use crate::convert::{self, now_ms};
use crate::pb::{self, receive_message_response::Content, Code, FilterType};
use crate::send::{check_group, check_topic};
use crate::service::Context;
use crate::status::{self, broker_code, Failure};

/// Long-polling bounds (`grpcClientConsumerMinLongPollingTimeoutMillis` / max).
const MIN_POLL: Duration = Duration::from_secs(5);
const MAX_POLL: Duration = Duration::from_secs(20);
/// Invisible time of auto-renewed (push consumer) receives (`defaultInvisibleTimeMills`).
const DEFAULT_INVISIBLE: Duration = Duration::from_secs(60);
/// Bounds of a client-chosen invisible time.
const MIN_INVISIBLE: Duration = Duration::from_secs(10);
const MAX_INVISIBLE: Duration = Duration::from_secs(12 * 3600);
/// Room left in the client's deadline for the answer to travel back.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// How long the broker may hold a POP, from the request and the client's gRPC deadline.
pub(crate) fn poll_time(long_polling: Option<Duration>, remaining: Option<Duration>) -> Duration {
    let mut poll = long_polling.unwrap_or(MAX_POLL).clamp(MIN_POLL, MAX_POLL);
    if let Some(rem) = remaining {
        // A client waiting less than the minimum still gets an answer before it gives up.
        poll = poll.min(rem.saturating_sub(DEADLINE_MARGIN));
    }
    poll
}

/// The invisible time of a receive (grpc-v5.md §10.1).
pub(crate) fn invisible_time(req: &pb::ReceiveMessageRequest) -> Result<Duration, Failure> {
    if req.auto_renew {
        return Ok(DEFAULT_INVISIBLE);
    }
    let Some(d) = &req.invisible_duration else {
        return Err(Failure::new(
            Code::IllegalInvisibleTime,
            "invisible duration is required",
        ));
    };
    let d = Duration::from_millis(convert::duration_ms(d) as u64);
    if d < MIN_INVISIBLE || d > MAX_INVISIBLE {
        return Err(Failure::new(
            Code::IllegalInvisibleTime,
            format!("invisible duration must be within [{MIN_INVISIBLE:?}, {MAX_INVISIBLE:?}]"),
        ));
    }
    Ok(d)
}

/// The broker's (expression type, expression) for a request's filter: SQL92 must not be
/// empty; an empty or missing tag filter means every tag.
pub(crate) fn filter(
    filter_expression: Option<&pb::FilterExpression>,
) -> Result<(String, String), Failure> {
    let Some(f) = filter_expression else {
        return Ok(("TAG".into(), "*".into()));
    };
    let expr = f.expression.trim();
    match FilterType::try_from(f.r#type) {
        Ok(FilterType::Sql) => {
            if expr.is_empty() {
                return Err(Failure::new(
                    Code::IllegalFilterExpression,
                    "empty SQL filter",
                ));
            }
            Ok(("SQL92".into(), expr.to_owned()))
        }
        _ => Ok((
            "TAG".into(),
            if expr.is_empty() {
                "*".into()
            } else {
                expr.to_owned()
            },
        )),
    }
}

/// The client-facing receipt handle of a popped message.
fn receipt_handle(msg: &MessageExt, header: &PopMessageResponseHeader) -> String {
    if let Some(ck) = msg.property(keys::POP_CK) {
        match ExtraInfo::parse(ck) {
            Ok(mut info) => {
                info.commit_log_offset = Some(msg.commit_log_offset);
                return info.encode();
            }
            Err(e) => warn!(error = %e, "popped message with an unreadable POP_CK"),
        }
    }
    // No POP_CK: rebuild the handle from the response header's start offsets.
    let ck_queue_offset = header
        .start_offset_info
        .as_deref()
        .and_then(|s| parse_start_offset_info(s).ok())
        .and_then(|entries| {
            entries
                .into_iter()
                .find(|e| e.queue_id == msg.queue_id && e.retry == RetryFlag::Normal)
                .map(|e| e.start_offset)
        })
        .unwrap_or(msg.queue_offset);
    ExtraInfo {
        ck_queue_offset,
        pop_time: header.pop_time,
        invisible_time: header.invisible_time,
        revive_qid: header.revive_qid,
        retry: RetryFlag::Normal,
        broker_name: msg.broker_name.clone(),
        queue_id: msg.queue_id,
        queue_offset: msg.queue_offset,
        commit_log_offset: Some(msg.commit_log_offset),
    }
    .encode()
}

fn response(content: Content) -> pb::ReceiveMessageResponse {
    pb::ReceiveMessageResponse {
        content: Some(content),
    }
}

/// The whole answer of one ReceiveMessage: `status`, the messages, `delivery_timestamp`.
pub(crate) async fn receive(
    ctx: &Context,
    client_id: &str,
    req: pb::ReceiveMessageRequest,
    remaining: Option<Duration>,
) -> Vec<pb::ReceiveMessageResponse> {
    let started = now_ms();
    match pop(ctx, client_id, &req, remaining).await {
        Ok(messages) if messages.is_empty() => vec![
            response(Content::Status(status::status(
                Code::MessageNotFound,
                "no new message",
            ))),
            response(Content::DeliveryTimestamp(convert::timestamp(started))),
        ],
        Ok(messages) => {
            let mut out = Vec::with_capacity(messages.len() + 2);
            out.push(response(Content::Status(status::ok())));
            out.extend(messages.into_iter().map(|m| response(Content::Message(m))));
            out.push(response(Content::DeliveryTimestamp(convert::timestamp(
                started,
            ))));
            out
        }
        Err(f) => vec![response(Content::Status(f.to_status()))],
    }
}

async fn pop(
    ctx: &Context,
    client_id: &str,
    req: &pb::ReceiveMessageRequest,
    remaining: Option<Duration>,
) -> Result<Vec<pb::Message>, Failure> {
    let group = req.group.as_ref().map(|g| g.name.as_str()).unwrap_or("");
    check_group(group)?;
    let mq = req
        .message_queue
        .as_ref()
        .ok_or_else(|| Failure::new(Code::BadRequest, "message queue is missing"))?;
    let topic = mq.topic.as_ref().map(|t| t.name.as_str()).unwrap_or("");
    check_topic(topic)?;
    let broker_name = mq.broker.as_ref().map(|b| b.name.as_str()).unwrap_or("");
    let invisible = invisible_time(req)?;
    let (exp_type, exp) = filter(req.filter_expression.as_ref())?;
    let poll = poll_time(
        req.long_polling_timeout
            .as_ref()
            .map(|d| Duration::from_millis(convert::duration_ms(d) as u64)),
        remaining,
    );
    let addr = ctx
        .instance
        .master_addr_or_refresh(broker_name, topic)
        .await?;
    let policy = crate::group::policy(ctx, group, &addr).await;
    let header = PopMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        // The Java proxy pops any queue of the chosen broker.
        queue_id: -1,
        max_msg_nums: req.batch_size.clamp(1, MAX_POP_BATCH),
        invisible_time: invisible.as_millis() as i64,
        poll_time: poll.as_millis() as i64,
        born_time: now_ms(),
        init_mode: POP_INIT_MODE_MAX,
        exp_type: Some(exp_type),
        exp: Some(exp),
        order: Some(policy.fifo),
        attempt_id: req.attempt_id.clone().filter(|a| !a.is_empty()),
    };
    let request = RemotingCommand::request_with_header(RequestCode::PopMessage, &header);
    let timeout = poll + ctx.request_timeout;
    let resp = ctx.instance.invoke(&addr, request, timeout).await?;
    match resp.response_code() {
        ResponseCode::Success => {}
        ResponseCode::PollingTimeout | ResponseCode::NoMessage | ResponseCode::PullNotFound => {
            return Ok(Vec::new())
        }
        code => {
            return Err(Failure::new(
                broker_code(code),
                resp.remark.clone().unwrap_or_default(),
            ))
        }
    }
    let rh: PopMessageResponseHeader = resp.decode_header().map_err(|e| {
        Failure::new(
            Code::InternalServerError,
            format!("bad POP response header: {e}"),
        )
    })?;
    let body = resp.body.to_bytes();
    let popped = MessageExt::decode_bytes(&body, broker_name);
    let mut out = Vec::with_capacity(popped.len());
    for msg in popped {
        let handle = receipt_handle(&msg, &rh);
        if msg.reconsume_times >= policy.max_attempts {
            // Exhausted: dead-letter it instead of delivering (grpc-v5.md §10.1).
            if let Err(f) = dead_letter(
                ctx,
                group,
                topic,
                &handle,
                msg.msg_id(),
                policy.max_attempts,
            )
            .await
            {
                warn!(%topic, %group, error = %f.message, "could not dead-letter an exhausted message");
            }
            continue;
        }
        if req.auto_renew {
            // Push consumers never extend visibility themselves (grpc-v5.md §10.3).
            ctx.renewals
                .hold(client_id, group, topic, msg.msg_id(), &handle);
        }
        out.push(convert::to_pb(&msg, Some(handle), Some(invisible)));
    }
    Ok(out)
}

/// A receipt handle the client gave back, checked as the Java proxy does.
pub(crate) fn parse_handle(handle: &str) -> Result<ExtraInfo, Failure> {
    let info = ExtraInfo::parse(handle).map_err(|e| {
        Failure::new(
            Code::InvalidReceiptHandle,
            format!("cannot decode receipt handle: {e}"),
        )
    })?;
    if info.is_expired(now_ms()) {
        return Err(Failure::new(
            Code::InvalidReceiptHandle,
            "receipt handle is expired",
        ));
    }
    Ok(info)
}

/// The handle as the broker wrote it (without the proxy's commit-log offset).
fn broker_extra_info(info: &ExtraInfo) -> String {
    ExtraInfo {
        commit_log_offset: None,
        ..info.clone()
    }
    .encode()
}

async fn ack_one(ctx: &Context, group: &str, topic: &str, handle: &str) -> Result<(), Failure> {
    let info = parse_handle(handle)?;
    let addr = ctx
        .instance
        .master_addr_or_refresh(&info.broker_name, topic)
        .await?;
    let header = AckMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: info.real_topic(topic, group),
        queue_id: info.queue_id,
        extra_info: broker_extra_info(&info),
        offset: info.queue_offset,
    };
    let request = RemotingCommand::request_with_header(RequestCode::AckMessage, &header);
    let resp = ctx
        .instance
        .invoke(&addr, request, ctx.request_timeout)
        .await?;
    match resp.response_code() {
        ResponseCode::Success => Ok(()),
        code => Err(Failure::new(
            broker_code(code),
            resp.remark.clone().unwrap_or_default(),
        )),
    }
}

pub(crate) async fn ack(
    ctx: &Context,
    client_id: &str,
    req: pb::AckMessageRequest,
) -> pb::AckMessageResponse {
    let group = req
        .group
        .as_ref()
        .map(|g| g.name.clone())
        .unwrap_or_default();
    let topic = req
        .topic
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    if let Err(f) = check_group(&group).and_then(|_| check_topic(&topic)) {
        return pb::AckMessageResponse {
            status: Some(f.to_status()),
            entries: Vec::new(),
        };
    }
    let calls = req.entries.iter().map(|e| {
        let (group, topic) = (&group, &topic);
        async move {
            // A renewed message is acked with its newest handle.
            let handle = ctx
                .renewals
                .release(client_id, &e.message_id)
                .unwrap_or_else(|| e.receipt_handle.clone());
            let st = match ack_one(ctx, group, topic, &handle).await {
                Ok(()) => status::ok(),
                Err(f) => {
                    debug!(%topic, %group, error = %f.message, "ack refused");
                    f.to_status()
                }
            };
            pb::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(st),
            }
        }
    });
    let entries = futures::future::join_all(calls).await;
    pb::AckMessageResponse {
        status: Some(status::summarize(
            entries.iter().filter_map(|e| e.status.as_ref()),
        )),
        entries,
    }
}

/// ChangeInvisibleDuration; the new receipt handle on success.
pub(crate) async fn change_invisible(
    ctx: &Context,
    client_id: &str,
    req: pb::ChangeInvisibleDurationRequest,
) -> Result<String, Failure> {
    let group = req.group.as_ref().map(|g| g.name.as_str()).unwrap_or("");
    let topic = req.topic.as_ref().map(|t| t.name.as_str()).unwrap_or("");
    check_group(group)?;
    check_topic(topic)?;
    let invisible = req
        .invisible_duration
        .as_ref()
        .map(convert::duration_ms)
        .ok_or_else(|| {
            Failure::new(Code::IllegalInvisibleTime, "invisible duration is required")
        })?;
    if invisible > MAX_INVISIBLE.as_millis() as i64 {
        return Err(Failure::new(
            Code::IllegalInvisibleTime,
            format!("invisible duration exceeds {MAX_INVISIBLE:?}"),
        ));
    }
    // The client decides now (extend or nack): stop renewing, and act on the newest handle.
    let handle = ctx
        .renewals
        .release(client_id, &req.message_id)
        .unwrap_or(req.receipt_handle);
    change_invisible_raw(ctx, group, topic, &handle, invisible).await
}

/// CHANGE_MESSAGE_INVISIBLETIME for one handle; the new handle.
pub(crate) async fn change_invisible_raw(
    ctx: &Context,
    group: &str,
    topic: &str,
    handle: &str,
    invisible_ms: i64,
) -> Result<String, Failure> {
    let info = parse_handle(handle)?;
    let addr = ctx
        .instance
        .master_addr_or_refresh(&info.broker_name, topic)
        .await?;
    let header = ChangeInvisibleTimeRequestHeader {
        consumer_group: group.to_owned(),
        topic: info.real_topic(topic, group),
        queue_id: info.queue_id,
        extra_info: broker_extra_info(&info),
        offset: info.queue_offset,
        invisible_time: invisible_ms,
    };
    let request =
        RemotingCommand::request_with_header(RequestCode::ChangeMessageInvisibletime, &header);
    let resp = ctx
        .instance
        .invoke(&addr, request, ctx.request_timeout)
        .await?;
    match resp.response_code() {
        ResponseCode::Success => {}
        // The broker no longer has the message in flight (acked, revived, or the handle was
        // already moved and forgotten): the handle is dead, which is what the client must hear.
        ResponseCode::NoMessage => {
            return Err(Failure::new(
                Code::InvalidReceiptHandle,
                resp.remark
                    .clone()
                    .unwrap_or_else(|| "the message is no longer in flight".into()),
            ))
        }
        code => {
            return Err(Failure::new(
                broker_code(code),
                resp.remark.clone().unwrap_or_default(),
            ))
        }
    }
    let rh: ChangeInvisibleTimeResponseHeader = resp.decode_header().map_err(|e| {
        Failure::new(
            Code::InternalServerError,
            format!("bad CHANGE_MESSAGE_INVISIBLETIME response header: {e}"),
        )
    })?;
    // The new checkpoint covers this one message: it starts at the message's own offset.
    Ok(ExtraInfo {
        ck_queue_offset: info.queue_offset,
        pop_time: rh.pop_time,
        invisible_time: rh.invisible_time,
        revive_qid: rh.revive_qid,
        ..info
    }
    .encode())
}

/// Sends a popped message to `%DLQ%<group>` and acks it (grpc-v5.md §10.4).
async fn dead_letter(
    ctx: &Context,
    group: &str,
    topic: &str,
    handle: &str,
    message_id: &str,
    max_attempts: i32,
) -> Result<(), Failure> {
    let info = ExtraInfo::parse(handle).map_err(|e| {
        Failure::new(
            Code::InvalidReceiptHandle,
            format!("cannot decode receipt handle: {e}"),
        )
    })?;
    let Some(commit_log_offset) = info.commit_log_offset else {
        return Err(Failure::new(
            Code::InvalidReceiptHandle,
            "receipt handle has no commit-log offset",
        ));
    };
    let addr = ctx
        .instance
        .master_addr_or_refresh(&info.broker_name, topic)
        .await?;
    let header = ConsumerSendMsgBackRequestHeader {
        offset: commit_log_offset,
        group: group.to_owned(),
        // A negative level sends the message straight to the DLQ.
        delay_level: -1,
        origin_msg_id: Some(message_id.to_owned()),
        origin_topic: Some(info.real_topic(topic, group)),
        unit_mode: Some(false),
        max_reconsume_times: Some(max_attempts),
    };
    let request = RemotingCommand::request_with_header(RequestCode::ConsumerSendMsgBack, &header);
    let resp = ctx
        .instance
        .invoke(&addr, request, ctx.request_timeout)
        .await?;
    if resp.response_code() != ResponseCode::Success {
        return Err(Failure::new(
            broker_code(resp.response_code()),
            resp.remark.clone().unwrap_or_default(),
        ));
    }
    // The copy is in the DLQ; the original must not come back. An already expired handle
    // cannot be acked, but then the revived copy is dead-lettered on its next receive.
    match ack_one(ctx, group, topic, handle).await {
        Err(f) if f.code != Code::InvalidReceiptHandle => Err(f),
        _ => Ok(()),
    }
}

pub(crate) async fn forward_to_dlq(
    ctx: &Context,
    client_id: &str,
    req: pb::ForwardMessageToDeadLetterQueueRequest,
) -> Result<(), Failure> {
    let group = req.group.as_ref().map(|g| g.name.as_str()).unwrap_or("");
    let topic = req.topic.as_ref().map(|t| t.name.as_str()).unwrap_or("");
    check_group(group)?;
    check_topic(topic)?;
    let handle = ctx
        .renewals
        .release(client_id, &req.message_id)
        .unwrap_or_else(|| req.receipt_handle.clone());
    dead_letter(
        ctx,
        group,
        topic,
        &handle,
        &req.message_id,
        req.max_delivery_attempts,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_time_is_clamped_and_fits_the_deadline() {
        assert_eq!(poll_time(None, None), MAX_POLL);
        assert_eq!(poll_time(Some(Duration::from_secs(1)), None), MIN_POLL);
        assert_eq!(poll_time(Some(Duration::from_secs(60)), None), MAX_POLL);
        assert_eq!(
            poll_time(Some(Duration::from_secs(15)), Some(Duration::from_secs(8))),
            Duration::from_millis(7500)
        );
        assert_eq!(
            poll_time(None, Some(Duration::from_millis(100))),
            Duration::ZERO
        );
    }

    #[test]
    fn invisible_time_rules() {
        let mut req = pb::ReceiveMessageRequest {
            auto_renew: true,
            ..Default::default()
        };
        assert_eq!(invisible_time(&req).unwrap(), DEFAULT_INVISIBLE);
        req.auto_renew = false;
        assert_eq!(
            invisible_time(&req).unwrap_err().code,
            Code::IllegalInvisibleTime
        );
        req.invisible_duration = Some(convert::duration(Duration::from_secs(5)));
        assert_eq!(
            invisible_time(&req).unwrap_err().code,
            Code::IllegalInvisibleTime
        );
        req.invisible_duration = Some(convert::duration(Duration::from_secs(30)));
        assert_eq!(invisible_time(&req).unwrap(), Duration::from_secs(30));
    }

    #[test]
    fn handles_are_checked() {
        assert_eq!(
            parse_handle("garbage").unwrap_err().code,
            Code::InvalidReceiptHandle
        );
        let expired = "0 1000 1000 0 0 b 0 5 77";
        assert_eq!(
            parse_handle(expired).unwrap_err().message,
            "receipt handle is expired"
        );
        let live = format!("0 {} 60000 0 0 b 0 5 77", now_ms());
        let info = parse_handle(&live).unwrap();
        assert_eq!(info.commit_log_offset, Some(77));
        assert_eq!(broker_extra_info(&info).split(' ').count(), 8);
    }
}
