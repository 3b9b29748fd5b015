//! The broker requests of consumption, one function each: pulls, offsets (query, update, max,
//! min, search by time), group membership, queue locks and sending failed messages back.
//! Every request goes to the master of the queue's broker name unless stated otherwise.

use std::time::Duration;

use bytes::Bytes;

use ferrymq_protocol::body::{
    ConsumerIdList, LockBatchRequestBody, LockBatchResponseBody, MessageQueue, SubscriptionData,
};
use ferrymq_protocol::header::{
    ConsumerGroupHeader, ConsumerSendMsgBackRequestHeader, OffsetResponseHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    QueueRequestHeader, SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use ferrymq_protocol::message::{keys, properties};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};

use super::filter_by_tags;
use super::pull::{PullResult, PullStatus};
use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;
use crate::message::MessageExt;

/// Largest byte total a pull asks for (Java `pullBatchSizeInBytes`).
pub(crate) const PULL_MAX_BYTES: i32 = 256 * 1024;

/// One PULL_MESSAGE.
pub(crate) struct PullArgs<'a> {
    pub group: &'a str,
    pub queue: &'a MessageQueue,
    pub subscription: &'a SubscriptionData,
    pub offset: i64,
    pub max_nums: i32,
    pub sys_flag: i32,
    pub commit_offset: i64,
    /// How long the broker may hold the request (long polling).
    pub suspend: Duration,
    /// Client-side timeout of the request.
    pub timeout: Duration,
    /// Broker id to read from (the broker's last suggestion; 0 = master).
    pub broker_id: i64,
}

/// Broker `id` of the queue's broker name, else its master, else its lowest-id slave (a master
/// absent from the route is down; reads and offset commits then go to a slave).
async fn addr_of(instance: &ClientInstance, queue: &MessageQueue, id: i64) -> Result<String> {
    if let Some(a) = instance.broker_addr(&queue.broker_name, id) {
        return Ok(a);
    }
    instance.update_route(&queue.topic).await?;
    instance
        .broker_addr(&queue.broker_name, id)
        .ok_or_else(|| ClientError::BrokerNotFound(queue.broker_name.clone()))
}

/// Pulls messages. Found messages are filtered by exact tag and carry MIN_OFFSET/MAX_OFFSET.
pub(crate) async fn pull(instance: &ClientInstance, args: PullArgs<'_>) -> Result<PullResult> {
    let addr = addr_of(instance, args.queue, args.broker_id).await?;
    let sub = args.subscription;
    let header = PullMessageRequestHeader {
        consumer_group: args.group.to_owned(),
        topic: args.queue.topic.clone(),
        queue_id: args.queue.queue_id,
        queue_offset: args.offset,
        max_msg_nums: args.max_nums,
        sys_flag: args.sys_flag,
        commit_offset: args.commit_offset,
        suspend_timeout_millis: args.suspend.as_millis() as i64,
        subscription: Some(sub.sub_string.clone()),
        sub_version: sub.sub_version,
        expression_type: Some(sub.expression_type.clone()),
        max_msg_bytes: Some(PULL_MAX_BYTES),
    };
    let req = RemotingCommand::request_with_header(RequestCode::PullMessage, &header);
    let resp = instance.invoke(&addr, req, args.timeout).await?;
    let status = match resp.response_code() {
        ResponseCode::Success => PullStatus::Found,
        ResponseCode::PullNotFound => PullStatus::NoNewMessage,
        ResponseCode::PullRetryImmediately => PullStatus::NoMatchedMessage,
        ResponseCode::PullOffsetMoved => PullStatus::OffsetIllegal,
        _ => return Err(ClientError::broker(&addr, &resp)),
    };
    let h: PullMessageResponseHeader = resp
        .decode_header()
        .map_err(|e| ClientError::header(&addr, e))?;
    let mut messages = Vec::new();
    if status == PullStatus::Found {
        // The messages keep slices of the response instead of copies.
        let body = resp.body.to_bytes();
        messages = MessageExt::decode_bytes(&body, &args.queue.broker_name);
        filter_by_tags(sub, &mut messages);
        // Every message gets the same two pairs: built once, shared by all of them.
        let (min, max) = (h.min_offset.to_string(), h.max_offset.to_string());
        let mut extra = String::new();
        properties::push(&mut extra, keys::MIN_OFFSET, &min);
        properties::push(&mut extra, keys::MAX_OFFSET, &max);
        let extra = Bytes::from(extra);
        for m in &mut messages {
            m.set_pull_offsets(&extra, &min, &max);
        }
    }
    Ok(PullResult {
        status,
        next_begin_offset: h.next_begin_offset,
        min_offset: h.min_offset,
        max_offset: h.max_offset,
        suggest_which_broker_id: h.suggest_which_broker_id,
        messages,
    })
}

/// The group's committed offset of a queue; `None` when the broker has none. With
/// `exact` the broker is asked not to substitute 0 for a missing offset of a young queue
/// (`setZeroIfNotFound=false`); without it the broker applies Java's rule.
pub(crate) async fn query_offset(
    instance: &ClientInstance,
    group: &str,
    queue: &MessageQueue,
    exact: bool,
) -> Result<Option<i64>> {
    // The master, or with the master down a slave, as RocketMQ's findBrokerAddressInSubscribe.
    let addr = addr_of(instance, queue, 0).await?;
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        set_zero_if_not_found: exact.then_some(false),
    };
    let req = RemotingCommand::request_with_header(RequestCode::QueryConsumerOffset, &header);
    let resp = instance
        .invoke(&addr, req, instance.options().request_timeout)
        .await?;
    match resp.response_code() {
        ResponseCode::Success => {
            let h: OffsetResponseHeader = resp
                .decode_header()
                .map_err(|e| ClientError::header(&addr, e))?;
            Ok(Some(h.offset))
        }
        ResponseCode::QueryNotFound => Ok(None),
        _ => Err(ClientError::broker(&addr, &resp)),
    }
}

/// Commits an offset (one-way unless `wait`).
pub(crate) async fn update_offset(
    instance: &ClientInstance,
    group: &str,
    queue: &MessageQueue,
    offset: i64,
    wait: bool,
) -> Result<()> {
    // The master, or with the master down a slave, as RocketMQ's findBrokerAddressInSubscribe.
    let addr = addr_of(instance, queue, 0).await?;
    let header = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        commit_offset: offset,
    };
    let req = RemotingCommand::request_with_header(RequestCode::UpdateConsumerOffset, &header);
    if wait {
        instance
            .invoke_ok(&addr, req, instance.options().request_timeout)
            .await
            .map(|_| ())
    } else {
        instance.invoke_oneway(&addr, req).await
    }
}

async fn queue_offset_request(
    instance: &ClientInstance,
    code: RequestCode,
    queue: &MessageQueue,
    timestamp: Option<i64>,
) -> Result<i64> {
    // The master, or with the master down a slave, as RocketMQ's findBrokerAddressInSubscribe.
    let addr = addr_of(instance, queue, 0).await?;
    let req = match timestamp {
        Some(ts) => RemotingCommand::request_with_header(
            code,
            &SearchOffsetRequestHeader {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                timestamp: ts,
                boundary_type: None,
            },
        ),
        None => RemotingCommand::request_with_header(
            code,
            &QueueRequestHeader {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                committed: None,
            },
        ),
    };
    let resp = instance
        .invoke_ok(&addr, req, instance.options().request_timeout)
        .await?;
    let h: OffsetResponseHeader = resp
        .decode_header()
        .map_err(|e| ClientError::header(&addr, e))?;
    Ok(h.offset)
}

/// The queue's max offset (the offset the next message will get).
pub(crate) async fn max_offset(instance: &ClientInstance, queue: &MessageQueue) -> Result<i64> {
    queue_offset_request(instance, RequestCode::GetMaxOffset, queue, None).await
}

/// The queue's smallest offset still stored.
pub(crate) async fn min_offset(instance: &ClientInstance, queue: &MessageQueue) -> Result<i64> {
    queue_offset_request(instance, RequestCode::GetMinOffset, queue, None).await
}

/// The first offset stored at or after `timestamp_ms`.
pub(crate) async fn search_offset(
    instance: &ClientInstance,
    queue: &MessageQueue,
    timestamp_ms: i64,
) -> Result<i64> {
    queue_offset_request(
        instance,
        RequestCode::SearchOffsetByTimestamp,
        queue,
        Some(timestamp_ms),
    )
    .await
}

/// The client ids of the group, as one broker serving `topic` knows them; `None` when the
/// broker knows none (yet).
pub(crate) async fn consumer_ids(
    instance: &ClientInstance,
    group: &str,
    topic: &str,
) -> Result<Option<Vec<String>>> {
    let route = instance.route(topic).await?;
    let addrs: Vec<&str> = route
        .broker_datas
        .iter()
        .filter_map(|b| b.select_addr())
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::NoRoute(topic.to_owned()));
    }
    let addr = addrs[rand::random::<usize>() % addrs.len()].to_owned();
    let req = RemotingCommand::request_with_header(
        RequestCode::GetConsumerListByGroup,
        &ConsumerGroupHeader {
            consumer_group: group.to_owned(),
        },
    );
    let resp = instance
        .invoke(&addr, req, instance.options().request_timeout)
        .await?;
    if resp.response_code() != ResponseCode::Success {
        return Ok(None);
    }
    let body = resp.body.to_bytes();
    let list: ConsumerIdList = serde_json::from_slice(&body)
        .map_err(|e| ClientError::Malformed(format!("consumer list from {addr}: {e}")))?;
    let mut ids = list.consumer_id_list;
    ids.sort();
    Ok(Some(ids))
}

/// Locks queues of one broker for orderly consumption; returns those now held.
pub(crate) async fn lock_batch(
    instance: &ClientInstance,
    group: &str,
    broker_name: &str,
    topic: &str,
    queues: Vec<MessageQueue>,
) -> Result<Vec<MessageQueue>> {
    let addr = instance.master_addr_or_refresh(broker_name, topic).await?;
    let body = LockBatchRequestBody {
        consumer_group: group.to_owned(),
        client_id: instance.client_id().to_owned(),
        only_this_broker: false,
        mq_set: queues,
    };
    let req = RemotingCommand::request(RequestCode::LockBatchMq)
        .with_body(serde_json::to_vec(&body).unwrap_or_default());
    let resp = instance
        .invoke_ok(&addr, req, instance.options().request_timeout)
        .await?;
    let body = resp.body.to_bytes();
    let locked: LockBatchResponseBody = serde_json::from_slice(&body)
        .map_err(|e| ClientError::Malformed(format!("lock response from {addr}: {e}")))?;
    Ok(locked.lock_ok_mq_set)
}

/// Releases queue locks (one-way unless `wait`).
pub(crate) async fn unlock_batch(
    instance: &ClientInstance,
    group: &str,
    broker_name: &str,
    topic: &str,
    queues: Vec<MessageQueue>,
    wait: bool,
) -> Result<()> {
    let addr = instance.master_addr_or_refresh(broker_name, topic).await?;
    let body = LockBatchRequestBody {
        consumer_group: group.to_owned(),
        client_id: instance.client_id().to_owned(),
        only_this_broker: false,
        mq_set: queues,
    };
    let req = RemotingCommand::request(RequestCode::UnlockBatchMq)
        .with_body(serde_json::to_vec(&body).unwrap_or_default());
    if wait {
        instance
            .invoke_ok(&addr, req, instance.options().request_timeout)
            .await
            .map(|_| ())
    } else {
        instance.invoke_oneway(&addr, req).await
    }
}

/// CONSUMER_SEND_MSG_BACK: asks the broker that stored `msg` to redeliver it through the
/// group's retry topic after `delay_level` (0 = broker's choice, −1 = dead-letter queue).
pub(crate) async fn send_back(
    instance: &ClientInstance,
    group: &str,
    broker_name: &str,
    msg: &MessageExt,
    delay_level: i32,
    max_reconsume_times: i32,
) -> Result<()> {
    let addr = instance
        .master_addr_or_refresh(broker_name, msg.topic())
        .await?;
    let header = ConsumerSendMsgBackRequestHeader {
        offset: msg.commit_log_offset,
        group: group.to_owned(),
        delay_level,
        origin_msg_id: Some(msg.msg_id().to_owned()),
        origin_topic: Some(msg.topic().to_owned()),
        unit_mode: Some(false),
        max_reconsume_times: Some(max_reconsume_times),
    };
    let req = RemotingCommand::request_with_header(RequestCode::ConsumerSendMsgBack, &header);
    instance
        .invoke_ok(&addr, req, Duration::from_secs(5))
        .await
        .map(|_| ())
}
