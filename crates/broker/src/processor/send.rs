//! Producing: SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE with RocketMQ's checks in
//! RocketMQ's order (request-codes.md §2), topic auto-creation from TBW102, retry-topic sends
//! that go to the DLQ when exhausted, delay levels (parked in SCHEDULE_TOPIC_XXXX), transaction
//! half messages, and CONSUMER_SEND_MSG_BACK for consumers that failed a message.

use std::sync::Arc;

use bytes::Bytes;
use ferrymq_protocol::header::{
    ConsumerSendMsgBackRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use ferrymq_protocol::message::flag::{perm, sys_flag};
use ferrymq_protocol::message::properties::{self, keys, MAX_PROPERTIES_LEN};
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::{naming, RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::Connection;
use ferrymq_store::{MessageBatch, MessageInner, PutMessageResult, PutMessageStatus};
use rand::Rng;

use super::{err, header, ok, Reply};
use crate::state::BrokerState;
use crate::topic_table::Created;

pub(super) async fn send_message(
    s: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
) -> Reply {
    let code = req.request_code();
    let h = match code {
        RequestCode::SendMessageV2
        | RequestCode::SendBatchMessage
        | RequestCode::SendReplyMessageV2 => SendMessageRequestHeader::read_v2(&req.ext_fields)
            .map_err(|e| err(req, ResponseCode::SystemError, e.to_string()))?,
        _ => header::<SendMessageRequestHeader>(req)?,
    };
    let is_batch = code == RequestCode::SendBatchMessage || h.batch == Some(true);

    refuse_on_slave(s, req)?;
    if !s.broker_writable() {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] sending message is forbidden",
                s.config().broker_name
            ),
        ));
    }
    if let Err(e) = naming::validate_topic(&h.topic) {
        return Err(err(req, ResponseCode::InvalidParameter, e.0));
    }
    if naming::is_send_forbidden(&h.topic) {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("Sending message to topic[{}] is forbidden.", h.topic),
        ));
    }
    let topic = topic_for_send(s, req, &h).await?;
    if !perm::is_writeable(topic.perm) {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!("the topic[{}] sending message is forbidden", h.topic),
        ));
    }
    let queues = topic.write_queue_nums.max(topic.read_queue_nums);
    if h.queue_id >= queues {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!(
                "request queueId[{}] is illegal, {:?} Producer: {}",
                h.queue_id,
                topic,
                req_peer(conn)
            ),
        ));
    }
    let queue_id = if h.queue_id < 0 {
        rand::thread_rng().gen_range(0..topic.write_queue_nums.max(1))
    } else {
        h.queue_id
    };
    let body = req.body.to_bytes();
    if body.len() > s.config().max_message_size {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            format!(
                "the message body size {} is larger than the limit {}",
                body.len(),
                s.config().max_message_size
            ),
        ));
    }
    let props = h.properties.clone().unwrap_or_default();
    if props.len() > MAX_PROPERTIES_LEN {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            format!(
                "the message properties length {} is larger than {}",
                props.len(),
                MAX_PROPERTIES_LEN
            ),
        ));
    }

    if is_batch {
        return send_batch(s, conn, req, &h, queue_id, body, props).await;
    }

    let mut msg = MessageInner {
        topic: h.topic.clone(),
        queue_id,
        flag: h.flag,
        body,
        properties: props,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: conn.peer_addr(),
        store_host: s.store_host,
        reconsume_times: h.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
    };
    if matches!(
        code,
        RequestCode::SendReplyMessage | RequestCode::SendReplyMessageV2
    ) {
        return super::reply::reply(s, conn, req, &h, msg).await;
    }
    if naming::is_retry_topic(&h.topic) {
        redirect_exhausted_retry(s, req, &h, &mut msg).await?;
    }
    add_broker_properties(s, &mut msg.properties);
    if properties::get(&msg.properties, keys::TRANSACTION_PREPARED) == Some("true") {
        if s.config().reject_transaction_message {
            return Err(err(
                req,
                ResponseCode::NoPermission,
                format!(
                    "the broker[{}] sending transaction message is forbidden",
                    s.config().broker_name
                ),
            ));
        }
        to_half_message(&mut msg);
    }
    let transaction_id = properties::uniq_key(&msg.properties).map(str::to_owned);
    let body_len = msg.body.len() as u64;
    let (result, recall_handle) = put_parked(s, msg).await;
    if result.status.is_stored() {
        s.metrics.produced(&h.topic, 1, body_len);
    }
    Ok(send_response(
        s,
        req,
        &result,
        queue_id,
        transaction_id,
        recall_handle,
    ))
}

/// A slave's commit log is a copy of its master's: it takes no writes of its own (RocketMQ
/// answers SERVICE_NOT_AVAILABLE from the store for them).
fn refuse_on_slave(s: &BrokerState, req: &RemotingCommand) -> Result<(), RemotingCommand> {
    let c = s.config();
    if !c.is_slave() {
        return Ok(());
    }
    Err(err(
        req,
        ResponseCode::ServiceNotAvailable,
        format!(
            "service not available now: broker[{}] is a slave (brokerId={}, brokerRole=SLAVE); \
             send messages to the master of {}",
            c.broker_name, c.broker_id, c.broker_name
        ),
    ))
}

fn req_peer(conn: &Connection) -> String {
    conn.peer_addr().to_string()
}

/// The topic's config, auto-creating it from the template topic when allowed.
async fn topic_for_send(
    s: &Arc<BrokerState>,
    req: &RemotingCommand,
    h: &SendMessageRequestHeader,
) -> Result<ferrymq_protocol::body::TopicConfig, RemotingCommand> {
    if let Some(tc) = s.topics.get(&h.topic) {
        return Ok(tc);
    }
    let created = if naming::is_retry_topic(&h.topic) {
        Some(
            s.topics
                .create_internal(&h.topic, 1, perm::READ | perm::WRITE, 0),
        )
    } else if s.config().auto_create_topic_enable {
        let template = if h.default_topic.is_empty() {
            naming::AUTO_CREATE_TOPIC_KEY
        } else {
            &h.default_topic
        };
        s.topics
            .create_from_template(&h.topic, template, h.default_topic_queue_nums)
    } else {
        None
    };
    match created {
        Some(Created::New(tc)) => {
            tracing::info!(topic = %tc.topic_name, queues = tc.write_queue_nums, "topic auto-created");
            s.topics_changed().await;
            Ok(tc)
        }
        Some(Created::Existing(tc)) => Ok(tc),
        None => Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist, apply first please! https://rocketmq.apache.org/docs/bestPractice/06FAQ", h.topic),
        )),
    }
}

/// A client re-sending a failed message to `%RETRY%group` (the old send-back path): once past
/// the group's retry budget, or while the group consumes orderly, it goes to the DLQ instead.
async fn redirect_exhausted_retry(
    s: &Arc<BrokerState>,
    req: &RemotingCommand,
    h: &SendMessageRequestHeader,
    msg: &mut MessageInner,
) -> Result<(), RemotingCommand> {
    let group = &h.topic[naming::RETRY_GROUP_TOPIC_PREFIX.len()..];
    let Some((config, _)) = s.groups.find_or_create(group) else {
        return Err(err(
            req,
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {group}"),
        ));
    };
    let max = h.max_reconsume_times.unwrap_or(config.retry_max_times);
    if msg.reconsume_times > max || s.locks.group_holds_lock(group) {
        let dlq = naming::dlq_topic(group);
        if let Created::New(_) = s
            .topics
            .create_internal(&dlq, 1, perm::READ | perm::WRITE, 0)
        {
            s.topics_changed().await;
        }
        msg.topic = dlq;
        msg.queue_id = 0;
        msg.properties = properties::without(&msg.properties, keys::DELAY_TIME_LEVEL);
    }
    Ok(())
}

/// Properties the broker stamps on every message: the cluster, and a UNIQ_KEY when the client
/// sent none (so the message can be found by id).
fn add_broker_properties(s: &BrokerState, props: &mut String) {
    properties::push(props, keys::CLUSTER, &s.config().broker_cluster_name);
    if properties::uniq_key(props).is_none() {
        let id = s.uniq_keys.next_id();
        properties::push(props, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &id);
    }
    if properties::get(props, keys::POP_CK).is_some() {
        *props = properties::without(props, keys::POP_CK);
    }
    // Only RECALL_MESSAGE writes recall markers.
    if properties::get(props, keys::TIMER_DEL_UNIQKEY).is_some() {
        *props = properties::without(props, keys::TIMER_DEL_UNIQKEY);
    }
}

/// Parks a half message in RMQ_SYS_TRANS_HALF_TOPIC until the producer commits or rolls back.
fn to_half_message(msg: &mut MessageInner) {
    if let Some(uniq) = properties::uniq_key(&msg.properties).map(str::to_owned) {
        properties::push(&mut msg.properties, keys::TRANSACTION_ID, &uniq);
    }
    properties::push(&mut msg.properties, keys::REAL_TOPIC, &msg.topic);
    properties::push(
        &mut msg.properties,
        keys::REAL_QUEUE_ID,
        &msg.queue_id.to_string(),
    );
    msg.sys_flag = sys_flag::with_transaction_type(msg.sys_flag, sys_flag::TRANSACTION_NOT_TYPE);
    msg.topic = naming::TRANS_HALF_TOPIC.to_owned();
    msg.queue_id = 0;
}

/// Stores a message, first parking it when it asks for later delivery: a delay level moves it to
/// SCHEDULE_TOPIC_XXXX, a 5.x timer property to the timer topic (the level wins when both are set).
pub(crate) async fn put_internal(s: &BrokerState, msg: MessageInner) -> PutMessageResult {
    put_parked(s, msg).await.0
}

/// [`put_internal`], with the recall handle of a message parked by the timer (not of a retry).
async fn put_parked(s: &BrokerState, mut msg: MessageInner) -> (PutMessageResult, Option<String>) {
    let tx_type = sys_flag::transaction_type(msg.sys_flag);
    let transactional =
        tx_type != sys_flag::TRANSACTION_NOT_TYPE && tx_type != sys_flag::TRANSACTION_COMMIT_TYPE;
    let level = properties::get(&msg.properties, keys::DELAY_TIME_LEVEL)
        .and_then(|l| l.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let internal = msg.topic == naming::SCHEDULE_TOPIC || msg.topic == naming::TIMER_TOPIC;
    if level > 0 && !transactional && !internal {
        let max_level = s.config().delay_levels_ms().len() as i32;
        let level = level.min(max_level);
        let mut props = crate::timer::without_timer_properties(&msg.properties);
        props = properties::without(&props, keys::DELAY_TIME_LEVEL);
        properties::push(&mut props, keys::DELAY_TIME_LEVEL, &level.to_string());
        properties::push(&mut props, keys::REAL_TOPIC, &msg.topic);
        properties::push(&mut props, keys::REAL_QUEUE_ID, &msg.queue_id.to_string());
        msg.properties = props;
        msg.topic = naming::SCHEDULE_TOPIC.to_owned();
        msg.queue_id = level - 1;
    } else if !transactional && !internal {
        if let Err(refused) = crate::timer::park_if_timer(&mut msg, s.config().timer_max_delay_sec)
        {
            return (refused, None);
        }
    }
    if msg.topic != naming::TIMER_TOPIC
        && properties::get(&msg.properties, keys::TIMER_DEL_UNIQKEY).is_some()
    {
        // A recall marker whose time passed on the way: stored as is it would reach consumers.
        return (
            PutMessageResult::failed(
                PutMessageStatus::MessageIllegal,
                "recall marker is past its delivery time",
            ),
            None,
        );
    }
    let recall_handle = crate::timer::recall_handle(&msg, &s.config().broker_name);
    let result = s.store.put_message(msg).await;
    if result.status.is_stored() {
        s.record_puts(1);
    }
    (result, recall_handle)
}

async fn send_batch(
    s: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
    h: &SendMessageRequestHeader,
    queue_id: i32,
    body: Bytes,
    props: String,
) -> Reply {
    if naming::is_retry_topic(&h.topic) {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            "batch request does not support retry group",
        ));
    }
    if properties::get(&props, keys::TRANSACTION_PREPARED) == Some("true")
        || sys_flag::transaction_type(h.sys_flag) != sys_flag::TRANSACTION_NOT_TYPE
    {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            "batch message does not support transaction",
        ));
    }
    if properties::get(&props, keys::DELAY_TIME_LEVEL).is_some_and(|l| l.trim() != "0") {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            "batch message does not support delay level",
        ));
    }
    if let Err(e) = ferrymq_protocol::message::batch::decode_all(&body) {
        return Err(err(
            req,
            ResponseCode::MessageIllegal,
            format!("malformed batch body: {e}"),
        ));
    }
    let batch = MessageBatch {
        topic: h.topic.clone(),
        queue_id,
        body,
        properties: props,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: conn.peer_addr(),
        store_host: s.store_host,
        reconsume_times: h.reconsume_times.unwrap_or(0),
    };
    let body_len = batch.body.len() as u64;
    let result = s.store.put_messages(batch).await;
    if let Some(a) = &result.append {
        s.record_puts(a.msg_num as u64);
        if result.status.is_stored() {
            s.metrics.produced(&h.topic, a.msg_num as u64, body_len);
        }
    }
    Ok(send_response(s, req, &result, queue_id, None, None))
}

/// Maps a put result to the send response (request-codes.md §2.3).
fn send_response(
    s: &BrokerState,
    req: &RemotingCommand,
    result: &PutMessageResult,
    queue_id: i32,
    transaction_id: Option<String>,
    recall_handle: Option<String>,
) -> RemotingCommand {
    if result.status != PutMessageStatus::PutOk {
        s.metrics.refused(result.status.as_str());
    }
    let code = match result.status {
        PutMessageStatus::PutOk => ResponseCode::Success,
        PutMessageStatus::FlushDiskTimeout => ResponseCode::FlushDiskTimeout,
        PutMessageStatus::FlushSlaveTimeout => ResponseCode::FlushSlaveTimeout,
        PutMessageStatus::SlaveNotAvailable => ResponseCode::SlaveNotAvailable,
        PutMessageStatus::ServiceNotAvailable => {
            return err(
                req,
                ResponseCode::ServiceNotAvailable,
                format!(
                    "service not available now: {}",
                    result
                        .remark
                        .unwrap_or("the disk may be full or the store is shutting down")
                ),
            )
        }
        PutMessageStatus::CreateMappedFileFailed => {
            return err(
                req,
                ResponseCode::SystemError,
                "create mapped file failed, server is busy or broken.",
            )
        }
        PutMessageStatus::MessageIllegal | PutMessageStatus::PropertiesSizeExceeded => {
            return err(
                req,
                ResponseCode::MessageIllegal,
                format!(
                    "the message is illegal: {}",
                    result
                        .remark
                        .unwrap_or("maybe msg body or properties length too long")
                ),
            )
        }
        PutMessageStatus::QueueTimeout => {
            return err(
                req,
                ResponseCode::SystemBusy,
                format!(
                    "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue over {}ms",
                    s.config().wait_time_mills_in_send_queue
                ),
            )
        }
        PutMessageStatus::OsPageCacheBusy => {
            return err(
                req,
                ResponseCode::SystemBusy,
                "[PC_SYNCHRONIZED]broker busy, start flow control for a while",
            )
        }
        PutMessageStatus::UnknownError => {
            return err(
                req,
                ResponseCode::SystemError,
                format!("UNKNOWN_ERROR: {}", result.remark.unwrap_or("")),
            )
        }
    };
    let Some(append) = &result.append else {
        return err(
            req,
            ResponseCode::SystemError,
            "the store returned no append result",
        );
    };
    let header = SendMessageResponseHeader {
        msg_id: append.msg_id(),
        queue_id,
        queue_offset: append.logics_offset,
        transaction_id,
        batch_uniq_id: None,
        msg_region: Some(s.config().region_id.clone()),
        trace_on: Some(s.config().trace_on.to_string()),
        recall_handle,
    };
    RemotingCommand::response_to(req, code).with_header(&header)
}

/// CONSUMER_SEND_MSG_BACK (request-codes.md §6): a consumer could not process a message; store a
/// copy for redelivery through `%RETRY%group` after a delay, or in the DLQ once retries run out.
pub(super) async fn consumer_send_back(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: ConsumerSendMsgBackRequestHeader = header(req)?;
    let Some((group, _)) = s.groups.find_or_create(&h.group) else {
        return Err(err(
            req,
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {}", h.group),
        ));
    };
    refuse_on_slave(s, req)?;
    if !s.broker_writable() {
        return Err(err(
            req,
            ResponseCode::NoPermission,
            format!(
                "the broker[{}] sending message is forbidden",
                s.config().broker_name
            ),
        ));
    }
    if group.retry_queue_nums <= 0 {
        return Ok(ok(req));
    }
    let Some(record) = s.store.lookup_message_by_offset(h.offset) else {
        return Err(err(
            req,
            ResponseCode::SystemError,
            format!("look message by offset failed, {}", h.offset),
        ));
    };
    let view = RecordView::parse(&record).map_err(|e| {
        err(
            req,
            ResponseCode::SystemError,
            format!("look message by offset failed: {e}"),
        )
    })?;
    let mut props = view.properties().to_owned();
    if properties::get(&props, keys::RETRY_TOPIC).is_none() {
        properties::push(&mut props, keys::RETRY_TOPIC, view.topic());
    }
    let max = h
        .max_reconsume_times
        .filter(|m| *m >= 0)
        .unwrap_or(group.retry_max_times);
    let reconsume_times = view.reconsume_times();
    let (topic, queue_id, delay) = if reconsume_times >= max || h.delay_level < 0 {
        let dlq = naming::dlq_topic(&h.group);
        if let Created::New(_) = s
            .topics
            .create_internal(&dlq, 1, perm::READ | perm::WRITE, 0)
        {
            s.topics_changed().await;
        }
        (dlq, 0, 0)
    } else {
        let retry = naming::retry_topic(&h.group);
        let rw = perm::READ | perm::WRITE;
        let tc = match s
            .topics
            .create_internal(&retry, group.retry_queue_nums, rw, 0)
        {
            Created::New(tc) => {
                s.topics_changed().await;
                tc
            }
            Created::Existing(tc) => tc,
        };
        let q = rand::thread_rng().gen_range(0..tc.write_queue_nums.max(1));
        let delay = if h.delay_level > 0 {
            h.delay_level
        } else {
            3 + reconsume_times
        };
        (retry, q, delay)
    };
    if properties::get(&props, keys::ORIGIN_MESSAGE_ID).is_none() {
        let origin = h
            .origin_msg_id
            .clone()
            .or_else(|| properties::uniq_key(view.properties()).map(str::to_owned))
            .unwrap_or_else(|| view.offset_msg_id());
        properties::push(&mut props, keys::ORIGIN_MESSAGE_ID, &origin);
    }
    props = properties::without(&props, keys::DELAY_TIME_LEVEL);
    if delay > 0 {
        properties::push(&mut props, keys::DELAY_TIME_LEVEL, &delay.to_string());
    }
    let mut msg = s.restore(&record, &view);
    msg.topic = topic;
    msg.queue_id = queue_id;
    msg.properties = props;
    msg.reconsume_times = reconsume_times + 1;
    let result = put_internal(s, msg).await;
    if result.status.is_stored() {
        Ok(ok(req))
    } else {
        Err(err(req, ResponseCode::SystemError, result.status.as_str()))
    }
}
