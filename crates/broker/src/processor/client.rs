//! Client management: heartbeats (group membership, subscriptions, retry topics),
//! unregistration, consumer lists for rebalance, and the queue locks orderly consumers hold.

use std::sync::Arc;

use ferrymq_protocol::body::{
    ConsumerIdList, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody, MessageModel,
};
use ferrymq_protocol::header::{ConsumerGroupHeader, UnregisterClientRequestHeader};
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::{naming, RemotingCommand, ResponseCode};
use ferrymq_remoting::Connection;

use super::{err, header, json_body, json_reply, ok, Reply};
use crate::client_registry::ClientChannel;
use crate::state::BrokerState;
use crate::topic_table::Created;

pub(super) async fn heartbeat(
    s: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
) -> Reply {
    let hb: HeartbeatData = json_body(req)?;
    let mut topics_created = false;
    let mut groups_created = false;
    for consumer in &hb.consumer_data_set {
        let Some((group, created)) = s.groups.find_or_create(&consumer.group_name) else {
            continue;
        };
        groups_created |= created;
        if group.retry_queue_nums > 0 {
            let retry = naming::retry_topic(&consumer.group_name);
            let rw = perm::READ | perm::WRITE;
            if let Created::New(_) = s
                .topics
                .create_internal(&retry, group.retry_queue_nums, rw, 0)
            {
                topics_created = true;
            }
        }
        let channel = ClientChannel::new(
            hb.client_id.clone(),
            conn.clone(),
            req.language,
            req.version,
        );
        let outcome = s
            .clients
            .register_consumer(consumer, channel, !hb.without_sub);
        if outcome.new_channel {
            tracing::info!(group = %consumer.group_name, client = %hb.client_id, "consumer joined");
        }
        if (outcome.new_channel || outcome.subscriptions_changed)
            && consumer.message_model != MessageModel::Broadcasting
            && group.notify_consumer_ids_changed_enable
        {
            s.notify_consumer_ids_changed(&consumer.group_name);
        }
    }
    for producer in &hb.producer_data_set {
        let channel = ClientChannel::new(
            hb.client_id.clone(),
            conn.clone(),
            req.language,
            req.version,
        );
        s.clients.register_producer(&producer.group_name, channel);
    }
    if topics_created {
        s.topics_changed().await;
    }
    if groups_created {
        s.groups_changed().await;
    }
    let mut resp = ok(req);
    resp.ext_fields.insert("IS_SUPPORT_HEART_BEAT_V2", "true");
    resp.ext_fields.insert("IS_SUB_CHANGE", "true");
    Ok(resp)
}

pub(super) fn unregister_client(
    s: &BrokerState,
    conn: &Connection,
    req: &RemotingCommand,
) -> Reply {
    let h: UnregisterClientRequestHeader = header(req)?;
    if let Some(group) = h.producer_group.as_deref().filter(|g| !g.is_empty()) {
        s.clients.unregister_producer(group, conn.id());
    }
    if let Some(group) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
        if s.clients.unregister_consumer(group, conn.id()) {
            tracing::info!(group, client = %h.client_id, "consumer left");
            let notify = s
                .groups
                .get(group)
                .is_none_or(|g| g.notify_consumer_ids_changed_enable);
            if notify {
                s.notify_consumer_ids_changed(group);
            }
        }
    }
    Ok(ok(req))
}

pub(super) fn consumer_list(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: ConsumerGroupHeader = header(req)?;
    let ids = s.clients.consumer_ids(&h.consumer_group);
    if ids.is_empty() {
        return Err(err(
            req,
            ResponseCode::SystemError,
            format!("no consumer for this group, {}", h.consumer_group),
        ));
    }
    Ok(json_reply(
        req,
        &ConsumerIdList {
            consumer_id_list: ids,
        },
    ))
}

pub(super) fn lock_batch(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let body: LockBatchRequestBody = json_body(req)?;
    let locked = s
        .locks
        .try_lock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Ok(json_reply(
        req,
        &LockBatchResponseBody {
            lock_ok_mq_set: locked,
        },
    ))
}

pub(super) fn unlock_batch(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let body: LockBatchRequestBody = json_body(req)?;
    s.locks
        .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Ok(ok(req))
}

/// CHECK_CLIENT_CONFIG: a consumer asks before using SQL92 whether the broker can filter by it.
pub(super) fn check_client_config(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let body: serde_json::Value = json_body(req)?;
    let sub = body.get("subscriptionData");
    let expression_type = sub
        .and_then(|d| d.get("expressionType"))
        .and_then(|v| v.as_str())
        .unwrap_or("TAG");
    if expression_type.eq_ignore_ascii_case("SQL92") {
        if !s.config().enable_property_filter {
            return Err(err(
                req,
                ResponseCode::SystemError,
                "The broker does not support consumer to filter message by SQL92",
            ));
        }
        let expr = sub
            .and_then(|d| d.get("subString"))
            .and_then(|v| v.as_str());
        if let Some(expr) = expr {
            if let Err(e) = ferrymq_protocol::filter::SqlFilter::parse(expr) {
                return Err(err(
                    req,
                    ResponseCode::SubscriptionParseFailed,
                    e.to_string(),
                ));
            }
        }
    }
    Ok(ok(req))
}
