//! PULL_MESSAGE / LITE_PULL_MESSAGE: validation, tag and SQL92 filtering, the status mapping of
//! request-codes.md §3, and long polling — a pull that finds nothing new is held until a message
//! arrives on its queue or its suspend time runs out. Bodies are slices of the mapped commit log,
//! handed to the socket without copying.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymq_protocol::body::{SubscriptionData, SubscriptionGroupConfig};
use ferrymq_protocol::command::Body;
use ferrymq_protocol::filter::SqlFilter;
use ferrymq_protocol::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use ferrymq_protocol::message::flag::{perm, pull_sys_flag};
use ferrymq_protocol::message::{RecordView, SubscriptionTags};
use ferrymq_protocol::{RemotingCommand, ResponseCode};
use ferrymq_store::{GetMessageResult, GetMessageStatus, MessageFilter};

use super::{err, header, Reply};
use crate::state::BrokerState;

/// A pull's filter: tag codes from the consume queue, or a SQL92 expression on properties.
pub(super) enum PullFilter {
    Tags(SubscriptionTags),
    Sql(SqlFilter),
}

impl MessageFilter for PullFilter {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool {
        match self {
            PullFilter::Tags(t) => t.matches_code(tags_code),
            PullFilter::Sql(_) => true,
        }
    }

    fn is_matched_by_commit_log(&self, record: &RecordView<'_>) -> bool {
        match self {
            PullFilter::Tags(_) => true,
            PullFilter::Sql(sql) => sql.matches(|name| record.property(name)),
        }
    }
}

pub(super) fn build_filter(
    req: &RemotingCommand,
    expression_type: &str,
    expression: &str,
) -> Result<PullFilter, RemotingCommand> {
    if expression_type.eq_ignore_ascii_case("SQL92") {
        SqlFilter::parse(expression)
            .map(PullFilter::Sql)
            .map_err(|e| {
                err(
                    req,
                    ResponseCode::SubscriptionParseFailed,
                    format!("parse the consumer's subscription failed: {e}"),
                )
            })
    } else {
        Ok(PullFilter::Tags(SubscriptionTags::parse(expression)))
    }
}

pub(super) async fn pull_message(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: PullMessageRequestHeader = header(req)?;
    if !s.broker_readable() {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] pulling message is forbidden",
                s.config().broker_name
            ),
        ));
    }
    let Some((group, created)) = s.groups.find_or_create(&h.consumer_group) else {
        return Err(err(
            req,
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group [{}] does not exist", h.consumer_group),
        ));
    };
    if created {
        s.groups_changed().await;
    }
    if !group.consume_enable {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("subscription group no permission, {}", h.consumer_group),
        ));
    }
    let Some(topic) = s.topics.get(&h.topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist, apply first please! https://rocketmq.apache.org/docs/bestPractice/06FAQ", h.topic),
        ));
    };
    if !perm::is_readable(topic.perm) {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("the topic[{}] pulling message is forbidden", h.topic),
        ));
    }
    if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                h.queue_id, h.topic, topic.read_queue_nums, h.consumer_group
            ),
        ));
    }

    let filter = if pull_sys_flag::has(h.sys_flag, pull_sys_flag::SUBSCRIPTION) {
        let expression_type = h.expression_type.as_deref().unwrap_or("TAG");
        build_filter(
            req,
            expression_type,
            h.subscription.as_deref().unwrap_or("*"),
        )?
    } else {
        let Some(sub): Option<SubscriptionData> =
            s.clients.subscription(&h.consumer_group, &h.topic)
        else {
            return Err(err(
                req,
                ResponseCode::SubscriptionNotExist,
                format!(
                    "the consumer's subscription not exist, group: {} topic: {}",
                    h.consumer_group, h.topic
                ),
            ));
        };
        if sub.sub_version < h.sub_version {
            return Err(err(
                req,
                ResponseCode::SubscriptionNotLatest,
                format!(
                    "the consumer's subscription not latest, group: {} topic: {}",
                    h.consumer_group, h.topic
                ),
            ));
        }
        build_filter(req, &sub.expression_type, &sub.sub_string)?
    };

    // A slave whose master is up serves pulls only with slaveReadEnable (RocketMQ 4.x answers
    // PULL_RETRY_IMMEDIATELY pointing at the master); with the master down it serves them, so
    // consumers can drain what was replicated.
    if s.config().is_slave() && !s.config().slave_read_enable && s.master_alive() {
        let min = s.store.min_offset_in_queue(&h.topic, h.queue_id);
        let max = s.store.max_offset_in_queue(&h.topic, h.queue_id);
        return Ok(pull_response(
            req,
            ResponseCode::PullRetryImmediately,
            "slave read is disabled (slaveReadEnable=false): pull from the master",
            h.queue_offset,
            min,
            max,
        ));
    }

    if pull_sys_flag::has(h.sys_flag, pull_sys_flag::COMMIT_OFFSET) && s.broker_writable() {
        s.offsets
            .commit(&h.topic, &h.consumer_group, h.queue_id, h.commit_offset);
    }

    let suspend = pull_sys_flag::has(h.sys_flag, pull_sys_flag::SUSPEND);
    let hold = if !suspend {
        Duration::ZERO
    } else if s.config().long_polling_enable {
        Duration::from_millis(h.suspend_timeout_millis.max(0) as u64)
    } else {
        Duration::from_millis(s.config().short_polling_time_mills)
    };
    let deadline = Instant::now() + hold;
    let max_count = h.max_msg_nums.max(1) as usize;
    let max_bytes = h
        .max_msg_bytes
        .filter(|b| *b > 0)
        .map(|b| b as usize)
        .unwrap_or(usize::MAX);
    let signal = s.arrivals.signal(&h.topic, h.queue_id);
    loop {
        // Checked on every wake-up too: an admin reset answers a parked pull at once.
        if let Some(reset) = s
            .offsets
            .take_reset(&h.topic, &h.consumer_group, h.queue_id)
        {
            let min = s.store.min_offset_in_queue(&h.topic, h.queue_id);
            let max = s.store.max_offset_in_queue(&h.topic, h.queue_id);
            return Ok(pull_response(
                req,
                ResponseCode::PullOffsetMoved,
                "reset offset",
                reset,
                min,
                max,
            ));
        }
        // Armed before reading so an arrival between the read and the wait still wakes us.
        let mut notified = pin!(signal.notified());
        notified.as_mut().enable();
        let result = s.store.get_messages(
            &h.topic,
            h.queue_id,
            h.queue_offset,
            max_count,
            max_bytes,
            Some(&filter),
        );
        // Every PULL_NOT_FOUND is held, as in RocketMQ: also an empty or not-yet-created queue
        // at offset 0, or a consumer would spin on it. When the hold time is up the last read
        // is the answer.
        let now = Instant::now();
        if status_code(result.status, h.queue_offset) == ResponseCode::PullNotFound
            && now < deadline
        {
            if s.config().long_polling_enable {
                let _ = tokio::time::timeout(deadline - now, notified).await;
            } else {
                tokio::time::sleep(deadline - now).await;
            }
            continue;
        }
        let suggest = suggest_broker_id(s, &group, &result);
        return Ok(found_response(s, req, &h, result, suggest));
    }
}

/// suggestWhichBrokerId by RocketMQ's rules: with `slaveReadEnable`, a consumer that fell
/// behind (its next message no longer in memory) is sent to the group's
/// `whichBrokerWhenConsumeSlowly` (1) and others to the group's `brokerId` (0); without it,
/// always the master. A slave whose master is up sends caught-up consumers back to it.
fn suggest_broker_id(
    s: &BrokerState,
    group: &SubscriptionGroupConfig,
    r: &GetMessageResult,
) -> i64 {
    let c = s.config();
    if c.is_slave() && !r.suggest_pulling_from_slave && s.master_alive() {
        return 0;
    }
    match (c.slave_read_enable, r.suggest_pulling_from_slave) {
        (false, _) => 0,
        (true, true) => group.which_broker_when_consume_slowly,
        (true, false) => group.broker_id,
    }
}

fn pull_response(
    req: &RemotingCommand,
    code: ResponseCode,
    remark: &str,
    next: i64,
    min: i64,
    max: i64,
) -> RemotingCommand {
    pull_response_from(req, code, remark, next, min, max, 0)
}

fn pull_response_from(
    req: &RemotingCommand,
    code: ResponseCode,
    remark: &str,
    next: i64,
    min: i64,
    max: i64,
    suggest_which_broker_id: i64,
) -> RemotingCommand {
    let header = PullMessageResponseHeader {
        suggest_which_broker_id,
        next_begin_offset: next,
        min_offset: min,
        max_offset: max,
        forbidden_type: None,
    };
    RemotingCommand::response_to(req, code)
        .with_header(&header)
        .with_remark(remark)
}

fn found_response(
    s: &BrokerState,
    req: &RemotingCommand,
    h: &PullMessageRequestHeader,
    r: GetMessageResult,
    suggest_which_broker_id: i64,
) -> RemotingCommand {
    let code = status_code(r.status, h.queue_offset);
    let mut resp = pull_response_from(
        req,
        code,
        r.status.as_str(),
        r.next_begin_offset,
        r.min_offset,
        r.max_offset,
        suggest_which_broker_id,
    );
    if code == ResponseCode::Success {
        s.record_gets(r.messages.len() as u64);
        s.metrics.consumed(
            &h.topic,
            &h.consumer_group,
            r.messages.len() as u64,
            r.messages.iter().map(|m| m.len() as u64).sum(),
        );
        let mut body = Body::default();
        for m in r.messages {
            body.push(m);
        }
        resp = resp.with_body(body);
    }
    resp
}

/// The response code for a store status (request-codes.md §3).
fn status_code(status: GetMessageStatus, requested_offset: i64) -> ResponseCode {
    match status {
        GetMessageStatus::Found => ResponseCode::Success,
        GetMessageStatus::NoMatchedMessage | GetMessageStatus::MessageWasRemoving => {
            ResponseCode::PullRetryImmediately
        }
        GetMessageStatus::NoMessageInQueue | GetMessageStatus::NoMatchedLogicQueue => {
            if requested_offset != 0 {
                ResponseCode::PullOffsetMoved
            } else {
                ResponseCode::PullNotFound
            }
        }
        GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetOverflowBadly => {
            ResponseCode::PullOffsetMoved
        }
        GetMessageStatus::OffsetOverflowOne | GetMessageStatus::OffsetFoundNull => {
            ResponseCode::PullNotFound
        }
    }
}
