//! Consumption by offset for the 5.x PullConsumer (proto 2.0.3): PullMessage → PULL_MESSAGE
//! with the subscription in the request (no heartbeat needed), UpdateOffset →
//! UPDATE_CONSUMER_OFFSET, GetOffset → QUERY_CONSUMER_OFFSET, and QueryOffset →
//! GET_MIN_OFFSET / GET_MAX_OFFSET / SEARCH_OFFSET_BY_TIMESTAMP. The client owns its queues
//! and offsets here; the proxy only forwards to the broker the queue names.

use std::time::Duration;

use ferrymq_client::MessageExt;
use ferrymq_protocol::header::{
    OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueueRequestHeader, SearchOffsetRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use ferrymq_protocol::message::flag::pull_sys_flag;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::convert;
use crate::pb::{self, pull_message_response::Content, Code, QueryOffsetPolicy};
use crate::receive;
use crate::send::{check_group, check_topic};
use crate::service::Context;
use crate::status::{self, broker_code, Failure};

/// Most messages one PullMessage returns (the broker's own per-pull cap).
const MAX_PULL_BATCH: i32 = 32;
/// Longest a pull is held at the broker when nothing is there.
const MAX_SUSPEND: Duration = Duration::from_secs(20);
/// Room left in the client's deadline for the answer to travel back.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// The queue a request names: (topic, broker name, queue id).
fn queue(mq: &Option<pb::MessageQueue>) -> Result<(&str, &str, i32), Failure> {
    let mq = mq
        .as_ref()
        .ok_or_else(|| Failure::new(Code::BadRequest, "message queue is missing"))?;
    let topic = mq.topic.as_ref().map_or("", |t| t.name.as_str());
    check_topic(topic)?;
    let broker = mq.broker.as_ref().map_or("", |b| b.name.as_str());
    if broker.is_empty() {
        return Err(Failure::new(
            Code::BadRequest,
            "message queue names no broker",
        ));
    }
    if mq.id < 0 {
        return Err(Failure::new(
            Code::BadRequest,
            format!("queue id {} is negative", mq.id),
        ));
    }
    Ok((topic, broker, mq.id))
}

fn check_offset(offset: i64) -> Result<(), Failure> {
    if offset < 0 {
        return Err(Failure::new(
            Code::IllegalOffset,
            format!("offset {offset} is negative"),
        ));
    }
    Ok(())
}

fn group(g: &Option<pb::Resource>) -> Result<&str, Failure> {
    let name = g.as_ref().map_or("", |g| g.name.as_str());
    check_group(name)?;
    Ok(name)
}

/// Sends `request` to the master of `broker` and answers its response if it is SUCCESS.
async fn call(
    ctx: &Context,
    broker: &str,
    topic: &str,
    request: RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, Failure> {
    let addr = ctx.instance.master_addr_or_refresh(broker, topic).await?;
    Ok(ctx.instance.invoke(&addr, request, timeout).await?)
}

fn refused(resp: &RemotingCommand) -> Failure {
    Failure::new(
        broker_code(resp.response_code()),
        resp.remark.clone().unwrap_or_default(),
    )
}

fn offset_of(resp: &RemotingCommand) -> Result<i64, Failure> {
    resp.decode_header::<OffsetResponseHeader>()
        .map(|h| h.offset)
        .map_err(|e| {
            Failure::new(
                Code::InternalServerError,
                format!("bad offset response header: {e}"),
            )
        })
}

fn pull_response(content: Content) -> pb::PullMessageResponse {
    pb::PullMessageResponse {
        content: Some(content),
    }
}

/// The whole answer of one PullMessage: `status`, the messages found, then `next_offset`
/// (also after MESSAGE_NOT_FOUND and ILLEGAL_OFFSET, so the client knows where to go on).
pub(crate) async fn pull(
    ctx: &Context,
    req: pb::PullMessageRequest,
    remaining: Option<Duration>,
) -> Vec<pb::PullMessageResponse> {
    match pull_from_broker(ctx, &req, remaining).await {
        Ok((code, messages, next)) => {
            let mut out = Vec::with_capacity(messages.len() + 2);
            out.push(pull_response(Content::Status(match code {
                Code::Ok => status::ok(),
                Code::IllegalOffset => {
                    status::status(code, "the offset is out of the queue's range")
                }
                _ => status::status(code, "no new message"),
            })));
            out.extend(
                messages
                    .iter()
                    .map(|m| pull_response(Content::Message(convert::to_pb(m, None, None)))),
            );
            out.push(pull_response(Content::NextOffset(next)));
            out
        }
        Err(f) => vec![pull_response(Content::Status(f.to_status()))],
    }
}

async fn pull_from_broker(
    ctx: &Context,
    req: &pb::PullMessageRequest,
    remaining: Option<Duration>,
) -> Result<(Code, Vec<MessageExt>, i64), Failure> {
    let group = group(&req.group)?;
    let (topic, broker, queue_id) = queue(&req.message_queue)?;
    check_offset(req.offset)?;
    let (expression_type, expression) = receive::filter(req.filter_expression.as_ref())?;
    let mut suspend = req
        .long_polling_timeout
        .as_ref()
        .map_or(Duration::ZERO, |d| {
            Duration::from_millis(convert::duration_ms(d).max(0) as u64)
        })
        .min(MAX_SUSPEND);
    if let Some(rem) = remaining {
        suspend = suspend.min(rem.saturating_sub(DEADLINE_MARGIN));
    }
    let header = PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id,
        queue_offset: req.offset,
        max_msg_nums: if req.batch_size <= 0 {
            MAX_PULL_BATCH
        } else {
            req.batch_size.min(MAX_PULL_BATCH)
        },
        sys_flag: pull_sys_flag::build(false, !suspend.is_zero(), true, false, false),
        commit_offset: 0,
        suspend_timeout_millis: suspend.as_millis() as i64,
        subscription: Some(expression),
        sub_version: convert::now_ms(),
        expression_type: Some(expression_type),
        max_msg_bytes: None,
    };
    let request = RemotingCommand::request_with_header(RequestCode::PullMessage, &header);
    let resp = call(ctx, broker, topic, request, suspend + ctx.request_timeout).await?;
    let code = match resp.response_code() {
        ResponseCode::Success => Code::Ok,
        ResponseCode::PullNotFound | ResponseCode::PullRetryImmediately => Code::MessageNotFound,
        ResponseCode::PullOffsetMoved => Code::IllegalOffset,
        _ => return Err(refused(&resp)),
    };
    let rh: PullMessageResponseHeader = resp.decode_header().map_err(|e| {
        Failure::new(
            Code::InternalServerError,
            format!("bad PULL response header: {e}"),
        )
    })?;
    let messages = if code == Code::Ok {
        MessageExt::decode_bytes(&resp.body.to_bytes(), broker)
    } else {
        Vec::new()
    };
    Ok((code, messages, rh.next_begin_offset))
}

pub(crate) async fn update(ctx: &Context, req: pb::UpdateOffsetRequest) -> Result<(), Failure> {
    let group = group(&req.group)?;
    let (topic, broker, queue_id) = queue(&req.message_queue)?;
    check_offset(req.offset)?;
    let header = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id,
        commit_offset: req.offset,
    };
    let request = RemotingCommand::request_with_header(RequestCode::UpdateConsumerOffset, &header);
    let resp = call(ctx, broker, topic, request, ctx.request_timeout).await?;
    match resp.response_code() {
        ResponseCode::Success => Ok(()),
        _ => Err(refused(&resp)),
    }
}

/// The group's committed offset of the queue; OFFSET_NOT_FOUND when it has none.
pub(crate) async fn get(ctx: &Context, req: pb::GetOffsetRequest) -> Result<i64, Failure> {
    let group = group(&req.group)?;
    let (topic, broker, queue_id) = queue(&req.message_queue)?;
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id,
        set_zero_if_not_found: Some(false),
    };
    let request = RemotingCommand::request_with_header(RequestCode::QueryConsumerOffset, &header);
    let resp = call(ctx, broker, topic, request, ctx.request_timeout).await?;
    match resp.response_code() {
        ResponseCode::Success => offset_of(&resp),
        ResponseCode::QueryNotFound => Err(Failure::new(
            Code::OffsetNotFound,
            format!("group {group} has no offset for queue {queue_id} of {topic}"),
        )),
        _ => Err(refused(&resp)),
    }
}

/// The queue's first or next offset, or the first offset stored at or after a time.
pub(crate) async fn query(ctx: &Context, req: pb::QueryOffsetRequest) -> Result<i64, Failure> {
    let (topic, broker, queue_id) = queue(&req.message_queue)?;
    let request = match QueryOffsetPolicy::try_from(req.query_offset_policy) {
        Ok(QueryOffsetPolicy::Beginning) | Ok(QueryOffsetPolicy::End) => {
            let code = if req.query_offset_policy == QueryOffsetPolicy::End as i32 {
                RequestCode::GetMaxOffset
            } else {
                RequestCode::GetMinOffset
            };
            let header = QueueRequestHeader {
                topic: topic.to_owned(),
                queue_id,
                committed: None,
            };
            RemotingCommand::request_with_header(code, &header)
        }
        Ok(QueryOffsetPolicy::Timestamp) => {
            let ts = req.timestamp.as_ref().ok_or_else(|| {
                Failure::new(Code::IllegalOffset, "a TIMESTAMP query needs a timestamp")
            })?;
            let header = SearchOffsetRequestHeader {
                topic: topic.to_owned(),
                queue_id,
                timestamp: convert::timestamp_ms(ts),
                boundary_type: Some("lower".to_owned()),
            };
            RemotingCommand::request_with_header(RequestCode::SearchOffsetByTimestamp, &header)
        }
        Err(_) => {
            return Err(Failure::new(
                Code::BadRequest,
                format!("unknown query offset policy {}", req.query_offset_policy),
            ))
        }
    };
    let resp = call(ctx, broker, topic, request, ctx.request_timeout).await?;
    match resp.response_code() {
        ResponseCode::Success => offset_of(&resp),
        _ => Err(refused(&resp)),
    }
}
