//! Admin and query requests used by mqadmin, dashboards and clients: topics and groups (create,
//! delete, list), runtime info and config, topic and consume statistics, connections, message
//! queries by key and by offset id, and offset reset (request-codes.md §8, §9).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrymq_protocol::body::{
    encode_consume_stats, encode_reset_offset_body, encode_topic_stats, GroupList, KvTable,
    MessageQueue, OffsetWrapper, SubscriptionGroupConfig, TopicConfig, TopicList, TopicOffset,
};
use ferrymq_protocol::command::Body;
use ferrymq_protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, ConsumerGroupHeader, CreateTopicRequestHeader,
    DeleteSubscriptionGroupRequestHeader, GetConsumeStatsRequestHeader,
    GetConsumerRunningInfoRequestHeader, GroupHeader, ProducerGroupHeader,
    QueryConsumeTimeSpanRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    ResetOffsetRequestHeader, TopicHeader, ViewMessageRequestHeader,
};
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::{
    code::version, naming, LanguageCode, RemotingCommand, RequestCode, ResponseCode,
};

use super::{err, header, json_body, json_reply, ok, Reply};
use crate::state::BrokerState;

pub(super) async fn create_topic(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: CreateTopicRequestHeader = header(req)?;
    if let Err(e) = naming::validate_topic(&h.topic) {
        return Err(err(req, ResponseCode::InvalidParameter, e.0));
    }
    if naming::is_send_forbidden(&h.topic) {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!("The topic[{}] is conflict with system topic.", h.topic),
        ));
    }
    if h.read_queue_nums < 0
        || h.write_queue_nums < 0
        || h.read_queue_nums.max(h.write_queue_nums) == 0
    {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            "readQueueNums and writeQueueNums must be positive",
        ));
    }
    let mut attributes = BTreeMap::new();
    for attr in h
        .attributes
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|a| !a.is_empty())
    {
        let attr = attr.trim_start_matches('+');
        if let Some((k, v)) = attr.split_once('=') {
            attributes.insert(format!("+{k}"), v.to_owned());
        }
    }
    let config = TopicConfig {
        attributes,
        order: h.order.unwrap_or(false),
        perm: h.perm & (perm::READ | perm::WRITE | perm::INHERIT),
        read_queue_nums: h.read_queue_nums,
        topic_filter_type: h
            .topic_filter_type
            .clone()
            .unwrap_or_else(|| "SINGLE_TAG".into()),
        topic_name: h.topic.clone(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        write_queue_nums: h.write_queue_nums,
    };
    tracing::info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums, perm = h.perm, "topic updated by admin");
    s.topics.upsert(config);
    s.topics_changed().await;
    Ok(ok(req))
}

pub(super) async fn delete_topic(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: TopicHeader = header(req)?;
    if naming::is_system_topic(&h.topic) || naming::is_send_forbidden(&h.topic) {
        return Err(err(
            req,
            ResponseCode::InvalidParameter,
            format!("The topic[{}] is a system topic", h.topic),
        ));
    }
    s.topics.remove(&h.topic);
    s.offsets.remove_topic(&h.topic);
    let store = s.store.clone();
    let topic = h.topic.clone();
    let _ = tokio::task::spawn_blocking(move || store.delete_topic(&topic)).await;
    s.arrivals.notify_all();
    s.topics_changed().await;
    Ok(ok(req))
}

pub(super) fn all_topic_config(s: &BrokerState, req: &RemotingCommand) -> Reply {
    Ok(json_reply(req, &s.topics.snapshot().with_mapping_fields()))
}

pub(super) fn topic_config(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: TopicHeader = header(req)?;
    let Some(tc) = s.topics.get(&h.topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("No topic in this broker. topic: {}", h.topic),
        ));
    };
    // TopicConfigAndQueueMapping: the topic config itself (no static-topic mapping here).
    Ok(json_reply(req, &tc))
}

pub(super) fn system_topics(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let topic_list = s
        .topics
        .names()
        .into_iter()
        .filter(|t| naming::is_system_topic(t) || naming::is_send_forbidden(t))
        .collect();
    Ok(json_reply(
        req,
        &TopicList {
            broker_addr: None,
            topic_list,
        },
    ))
}

pub(super) fn runtime_info(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let stats = s.store.stats();
    let traffic = s.stats.snapshot();
    let mut t = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        t.insert(k.to_owned(), v);
    };
    let tps = |r: [f64; 3]| format!("{:.2} {:.2} {:.2}", r[0], r[1], r[2]);
    set("brokerVersionDesc", "V5_3_3".into());
    set("brokerVersion", version::CURRENT.to_string());
    set("brokerActive", "true".into());
    set(
        "msgPutTotalYesterdayMorning",
        traffic.put_yesterday_morning.to_string(),
    );
    set(
        "msgPutTotalTodayMorning",
        traffic.put_today_morning.to_string(),
    );
    set("msgPutTotalTodayNow", traffic.put_total.to_string());
    set(
        "msgGetTotalYesterdayMorning",
        traffic.get_yesterday_morning.to_string(),
    );
    set(
        "msgGetTotalTodayMorning",
        traffic.get_today_morning.to_string(),
    );
    set("msgGetTotalTodayNow", traffic.get_total.to_string());
    set("putTps", tps(traffic.put_tps));
    set("getTransferredTps", tps(traffic.get_tps));
    // Found = transferred: every message found for a pull is sent to the consumer.
    set("getFoundTps", tps(traffic.get_tps));
    set(
        "commitLogDiskRatio",
        format!("{:?}", stats.commit_log_disk_ratio),
    );
    set(
        "consumeQueueDiskRatio",
        format!("{:?}", stats.commit_log_disk_ratio),
    );
    let earliest = s
        .store
        .lookup_message_by_offset(stats.commit_log_min_offset)
        .and_then(|r| {
            ferrymq_protocol::message::RecordView::parse(&r)
                .ok()
                .map(|v| v.store_timestamp())
        })
        .unwrap_or(0);
    set("earliestMessageTimeStamp", earliest.to_string());
    set(
        "pageCacheLockTimeMills",
        stats.page_cache_lock_time.as_millis().to_string(),
    );
    for k in [
        "sendThreadPoolQueueSize",
        "pullThreadPoolQueueSize",
        "queryThreadPoolQueueSize",
    ] {
        set(k, "0".into());
    }
    for k in [
        "sendThreadPoolQueueHeadWaitTimeMills",
        "pullThreadPoolQueueHeadWaitTimeMills",
        "queryThreadPoolQueueHeadWaitTimeMills",
    ] {
        set(k, "0".into());
    }
    for k in ["timerReadBehind", "timerOffsetBehind", "timerCongestNum"] {
        set(k, "0".into());
    }
    set("timerEnqueueTps", "0.0".into());
    set("timerDequeueTps", "0.0".into());
    let avg = stats
        .put_message_bytes
        .checked_div(stats.put_message_count)
        .unwrap_or(0);
    set("putMessageAverageSize", avg.to_string());
    set("putMessageTimesTotal", stats.put_message_count.to_string());
    set("putMessageSizeTotal", stats.put_message_bytes.to_string());
    set(
        "totalMemKBytes",
        (s.in_memory_window * 10 / 4 / 1024).to_string(),
    );
    set(
        "commitLogMinOffset",
        stats.commit_log_min_offset.to_string(),
    );
    set(
        "commitLogMaxOffset",
        stats.commit_log_max_offset.to_string(),
    );
    set(
        "dispatchBehindBytes",
        (stats.commit_log_max_offset - stats.dispatch_offset)
            .max(0)
            .to_string(),
    );
    set("bootTimestamp", s.boot_timestamp.to_string());
    set(
        "runtime",
        format!("[ {} seconds ]", s.boot.elapsed().as_secs()),
    );
    set("brokerName", s.config().broker_name.clone());
    Ok(json_reply(req, &KvTable { table: t }))
}

pub(super) fn broker_config(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let mut text = String::new();
    for (k, v) in s.config().to_pairs() {
        text.push_str(k);
        text.push('=');
        text.push_str(&v);
        text.push('\n');
    }
    let version = serde_json::to_string(&s.topics.data_version()).unwrap_or_default();
    Ok(ok(req)
        .with_header(&ferrymq_protocol::header::GetBrokerConfigResponseHeader { version })
        .with_body(text))
}

fn mq(s: &BrokerState, topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: topic.to_owned(),
        broker_name: s.config().broker_name.clone(),
        queue_id,
    }
}

pub(super) fn topic_stats(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: TopicHeader = header(req)?;
    let Some(tc) = s.topics.get(&h.topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", h.topic),
        ));
    };
    let mut table = BTreeMap::new();
    for q in 0..tc.write_queue_nums.max(tc.read_queue_nums) {
        let min = s.store.min_offset_in_queue(&h.topic, q);
        let max = s.store.max_offset_in_queue(&h.topic, q);
        let last = if max > 0 {
            s.store
                .message_store_timestamp(&h.topic, q, max - 1)
                .unwrap_or(0)
        } else {
            0
        };
        table.insert(
            mq(s, &h.topic, q),
            TopicOffset {
                min_offset: min,
                max_offset: max,
                last_update_timestamp: last,
            },
        );
    }
    let body = encode_topic_stats(&table).unwrap_or_default();
    Ok(ok(req).with_body(body))
}

pub(super) fn consume_stats(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: GetConsumeStatsRequestHeader = header(req)?;
    let topics: Vec<String> = match (&h.topic, &h.topic_list) {
        (Some(t), _) if !t.is_empty() => vec![t.clone()],
        (_, Some(list)) if !list.is_empty() => list.split(',').map(|t| t.to_owned()).collect(),
        _ => s
            .offsets
            .topic_groups()
            .into_iter()
            .filter(|(_, g)| *g == h.consumer_group)
            .map(|(t, _)| t)
            .collect(),
    };
    let mut table = BTreeMap::new();
    for topic in topics {
        let Some(tc) = s.topics.get(&topic) else {
            continue;
        };
        for q in 0..tc.read_queue_nums {
            let broker_offset = s.store.max_offset_in_queue(&topic, q);
            let consumer_offset = s
                .offsets
                .query(&topic, &h.consumer_group, q)
                .unwrap_or(0)
                .max(0);
            let last_timestamp = if consumer_offset > 0 {
                s.store
                    .message_store_timestamp(&topic, q, consumer_offset - 1)
                    .unwrap_or(0)
            } else {
                0
            };
            table.insert(
                mq(s, &topic, q),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    pull_offset: consumer_offset,
                    last_timestamp,
                },
            );
        }
    }
    Ok(ok(req).with_body(encode_consume_stats(0.0, &table).unwrap_or_default()))
}

pub(super) fn consumer_connections(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: ConsumerGroupHeader = header(req)?;
    match s.clients.consumer_connection(&h.consumer_group) {
        Some(c) if !c.connection_set.is_empty() => Ok(json_reply(req, &c)),
        _ => Err(err(
            req,
            ResponseCode::ConsumerNotOnline,
            format!("the consumer group[{}] not online", h.consumer_group),
        )),
    }
}

pub(super) fn producer_connections(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: ProducerGroupHeader = header(req)?;
    match s.clients.producer_connections(&h.producer_group) {
        Some(set) if !set.is_empty() => Ok(json_reply(
            req,
            &ferrymq_protocol::body::ProducerConnection {
                connection_set: set,
            },
        )),
        _ => Err(err(
            req,
            ResponseCode::SystemError,
            format!("the producer group[{}] not exist", h.producer_group),
        )),
    }
}

pub(super) async fn create_group(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let config: SubscriptionGroupConfig = json_body(req)?;
    if let Err(e) = naming::validate_group(&config.group_name) {
        return Err(err(req, ResponseCode::InvalidParameter, e.0));
    }
    tracing::info!(group = %config.group_name, "subscription group updated by admin");
    s.groups.upsert(config);
    s.groups_changed().await;
    Ok(ok(req))
}

pub(super) fn all_groups(s: &BrokerState, req: &RemotingCommand) -> Reply {
    Ok(json_reply(req, &s.groups.snapshot()))
}

pub(super) fn group_config(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: GroupHeader = header(req)?;
    match s.groups.get(&h.group) {
        Some(g) => Ok(json_reply(req, &g)),
        None => Err(err(
            req,
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {}", h.group),
        )),
    }
}

pub(super) async fn delete_group(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: DeleteSubscriptionGroupRequestHeader = header(req)?;
    s.groups.remove(&h.group_name);
    if h.clean_offset == Some(true) {
        s.offsets.remove_group(&h.group_name);
    }
    s.groups_changed().await;
    Ok(ok(req))
}

pub(super) fn all_consumer_offsets(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let text = ferrymq_protocol::body::to_java_json(&s.offsets.snapshot()).unwrap_or_default();
    Ok(ok(req).with_body(text))
}

pub(super) fn all_delay_offsets(s: &BrokerState, req: &RemotingCommand) -> Reply {
    match std::fs::read_to_string(s.delay_offsets_file().path()) {
        Ok(text) => Ok(ok(req).with_body(text)),
        Err(_) => Ok(ok(req).with_body(r#"{"offsetTable":{}}"#.to_owned())),
    }
}

pub(super) fn topic_consumed_by(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: TopicHeader = header(req)?;
    let mut groups: std::collections::BTreeSet<String> =
        s.clients.groups_subscribing(&h.topic).into_iter().collect();
    groups.extend(
        s.offsets
            .topic_groups()
            .into_iter()
            .filter(|(t, _)| *t == h.topic)
            .map(|(_, g)| g),
    );
    Ok(json_reply(req, &GroupList { group_list: groups }))
}

pub(super) fn topics_by_consumer(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: GroupHeader = header(req)?;
    let topic_list = s
        .offsets
        .topic_groups()
        .into_iter()
        .filter(|(_, g)| *g == h.group)
        .map(|(t, _)| t)
        .collect();
    Ok(json_reply(
        req,
        &TopicList {
            broker_addr: Some(s.broker_addr.clone()),
            topic_list,
        },
    ))
}

pub(super) fn query_message(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: QueryMessageRequestHeader = header(req)?;
    let uniq = req.ext_fields.get("_UNIQUE_KEY_QUERY") == Some("true");
    let max = if uniq { 32 } else { h.max_num.max(1) as usize };
    let found =
        s.store
            .query_messages_by_key(&h.topic, &h.key, max, h.begin_timestamp, h.end_timestamp);
    let resp_header = QueryMessageResponseHeader {
        index_last_update_timestamp: found.index_last_update_timestamp,
        index_last_update_phyoffset: found.index_last_update_phy_offset,
    };
    if found.messages.is_empty() {
        return Err(err(
            req,
            ResponseCode::QueryNotFound,
            "can not find message, maybe time range not correct",
        )
        .with_header(&resp_header));
    }
    let mut body = Body::default();
    for m in found.messages {
        body.push(m);
    }
    Ok(ok(req).with_header(&resp_header).with_body(body))
}

pub(super) fn view_message(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: ViewMessageRequestHeader = header(req)?;
    match s.store.lookup_message_by_offset(h.offset) {
        Some(record) => Ok(ok(req).with_body(record)),
        None => Err(err(
            req,
            ResponseCode::SystemError,
            format!("can not find message by the offset, {}", h.offset),
        )),
    }
}

/// INVOKE_BROKER_TO_RESET_OFFSET: the server-side reset of 5.x — committed offsets move now and
/// each queue's next pull is answered with OFFSET_MOVED to the new position.
pub(super) fn reset_offset(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: ResetOffsetRequestHeader = header(req)?;
    let Some(tc) = s.topics.get(&h.topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", h.topic),
        ));
    };
    let force = h.is_force.unwrap_or(true);
    let mut targets = BTreeMap::new();
    let mut table = BTreeMap::new();
    for q in 0..tc.read_queue_nums {
        if h.queue_id.is_some_and(|want| want >= 0 && want != q) {
            continue;
        }
        let target = match h.offset.filter(|o| *o >= 0) {
            Some(o) => o,
            None if h.timestamp < 0 => s.store.max_offset_in_queue(&h.topic, q),
            None => s.store.offset_by_timestamp(&h.topic, q, h.timestamp),
        };
        let current = s.offsets.query(&h.topic, &h.group, q);
        let offset = match current {
            Some(c) if !force && target >= c => c,
            _ => target,
        };
        targets.insert(q, offset);
        table.insert(mq(s, &h.topic, q), offset);
    }
    if s.config().use_server_side_reset_offset {
        s.offsets.reset(&h.topic, &h.group, &targets);
        // Parked pulls of the group answer with the new position right away.
        for q in targets.keys() {
            s.arrivals.notify_arrival(&h.topic, *q);
        }
    } else {
        // 4.x style: commit the new offsets and tell each online consumer to move there.
        for (q, off) in &targets {
            s.offsets.commit(&h.topic, &h.group, *q, *off);
        }
        let body = encode_reset_offset_body(&table).unwrap_or_default();
        let client_header = ResetOffsetRequestHeader {
            group: h.group.clone(),
            topic: h.topic.clone(),
            queue_id: None,
            offset: None,
            timestamp: h.timestamp,
            is_force: Some(force),
        };
        for channel in s.clients.consumer_channels(&h.group) {
            let cmd = RemotingCommand::request_with_header(
                RequestCode::ResetConsumerClientOffset,
                &client_header,
            )
            .with_body(body.clone())
            .with_language(LanguageCode::Java);
            tokio::spawn(async move {
                let _ = channel.connection.invoke_oneway(cmd).await;
            });
        }
    }
    tracing::info!(group = %h.group, topic = %h.topic, "consumer offsets reset by admin");
    Ok(ok(req).with_body(encode_reset_offset_body(&table).unwrap_or_default()))
}

/// Forwards an admin request to one consumer client over its own connection and relays the
/// answer (GET_CONSUMER_RUNNING_INFO, CONSUME_MESSAGE_DIRECTLY).
async fn call_consumer(
    s: &BrokerState,
    req: &RemotingCommand,
    group: &str,
    client_id: &str,
) -> Reply {
    let Some(channel) = s
        .clients
        .consumer_channels(group)
        .into_iter()
        .find(|c| c.client_id == client_id)
    else {
        return Err(err(
            req,
            ResponseCode::SystemError,
            format!("The Consumer <{group}> <{client_id}> not online"),
        ));
    };
    let mut forward =
        RemotingCommand::request(req.request_code()).with_language(LanguageCode::Java);
    forward.ext_fields = req.ext_fields.clone();
    forward.body = req.body.clone();
    match channel
        .connection
        .invoke(forward, std::time::Duration::from_secs(10))
        .await
    {
        Ok(mut resp) => {
            resp.opaque = req.opaque;
            Ok(resp)
        }
        Err(ferrymq_remoting::TransportError::Timeout(_)) => Err(err(
            req,
            ResponseCode::ConsumeMsgTimeout,
            format!("consumer <{group}> <{client_id}> Timeout"),
        )),
        Err(e) => Err(err(
            req,
            ResponseCode::SystemError,
            format!("invoke consumer <{group}> <{client_id}> Exception: {e}"),
        )),
    }
}

pub(super) async fn consumer_running_info(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: GetConsumerRunningInfoRequestHeader = header(req)?;
    call_consumer(s, req, &h.consumer_group, &h.client_id).await
}

pub(super) async fn consume_message_directly(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: ConsumeMessageDirectlyResultRequestHeader = header(req)?;
    let mut forward = req.clone();
    forward
        .ext_fields
        .insert("brokerName", &s.config().broker_name);
    let record = h
        .msg_id
        .as_deref()
        .and_then(|id| ferrymq_protocol::message::OffsetMsgId::decode(id).ok())
        .and_then(|id| s.store.lookup_message_by_offset(id.physical_offset));
    if let Some(record) = record {
        forward.body = record.into();
    }
    call_consumer(
        s,
        &forward,
        &h.consumer_group,
        h.client_id.as_deref().unwrap_or(""),
    )
    .await
}

/// QUERY_CONSUME_TIME_SPAN: per queue, the store times of the oldest, newest and last consumed
/// message, and how far behind the group is.
pub(super) fn consume_time_span(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: QueryConsumeTimeSpanRequestHeader = header(req)?;
    let Some(tc) = s.topics.get(&h.topic) else {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", h.topic),
        ));
    };
    let now = BrokerState::now_ms();
    let mut spans = Vec::new();
    for q in 0..tc.write_queue_nums {
        let min_time = s.store.earliest_message_time(&h.topic, q).unwrap_or(-1);
        let max = s.store.max_offset_in_queue(&h.topic, q);
        let max_time = s
            .store
            .message_store_timestamp(&h.topic, q, max - 1)
            .unwrap_or(-1);
        let consumer = s.offsets.query(&h.topic, &h.group, q).unwrap_or(-1);
        let consume_time = if consumer > 0 {
            s.store
                .message_store_timestamp(&h.topic, q, consumer - 1)
                .unwrap_or(-1)
        } else {
            min_time
        };
        let delay = if consumer < max {
            s.store
                .message_store_timestamp(&h.topic, q, consumer.max(0))
                .map_or(0, |t| now - t)
        } else {
            0
        };
        spans.push(serde_json::json!({
            "consumeTimeStamp": consume_time,
            "delayTime": delay,
            "maxTimeStamp": max_time,
            "messageQueue": mq(s, &h.topic, q),
            "minTimeStamp": min_time,
        }));
    }
    Ok(json_reply(
        req,
        &serde_json::json!({ "consumeTimeSpanSet": spans }),
    ))
}

/// Keys UPDATE_BROKER_CONFIG may change while running: the ones the broker reads per request.
/// Store geometry, paths, ports and identity need a restart.
const RUNTIME_KEYS: &[&str] = &[
    "brokerPermission",
    "autoCreateTopicEnable",
    "autoCreateSubscriptionGroup",
    "defaultTopicQueueNums",
    "longPollingEnable",
    "shortPollingTimeMills",
    "rejectTransactionMessage",
    "enablePropertyFilter",
    "transactionTimeOut",
    "transactionCheckMax",
    "maxMessageSize",
    "traceOn",
    "regionId",
    "useServerSideResetOffset",
];

/// UPDATE_BROKER_CONFIG: body `key=value` lines. All or nothing: an unknown, restart-only or
/// invalid key rejects the whole update with a remark naming it.
pub(super) async fn update_broker_config(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let bytes = req.body.to_bytes();
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        err(
            req,
            ResponseCode::InvalidParameter,
            "config body is not UTF-8",
        )
    })?;
    let mut next = (*s.config()).clone();
    let mut changed = Vec::new();
    for (key, value) in ferrymq_protocol::java_properties::parse(text) {
        if !RUNTIME_KEYS.contains(&key.as_str()) {
            let why = if next.to_pairs().iter().any(|(k, _)| *k == key) {
                "cannot be changed at runtime, edit broker.conf and restart"
            } else {
                "is not a broker config key"
            };
            return Err(err(
                req,
                ResponseCode::InvalidParameter,
                format!("`{key}` {why}"),
            ));
        }
        next.set(&key, &value)
            .map_err(|e| err(req, ResponseCode::InvalidParameter, e.to_string()))?;
        changed.push(key);
    }
    next.validate()
        .map_err(|e| err(req, ResponseCode::InvalidParameter, e.to_string()))?;
    let perm_changed = next.broker_permission != s.config().broker_permission;
    *s.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    tracing::info!(keys = ?changed, "broker config updated at runtime");
    if perm_changed {
        s.register_now.notify_one();
    }
    Ok(ok(req))
}
