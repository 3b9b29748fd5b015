//! Request-reply (SEND_REPLY_MESSAGE 324 / _V2 325): a consumer answers a request message; the
//! broker pushes the reply at once to the requesting client instance named by its
//! `REPLY_TO_CLIENT` property (PUSH_REPLY_MESSAGE_TO_CLIENT 326 on that client's own
//! connection) and, with `storeReplyMessageEnable`, stores it in the reply topic as well.
//! The push decides the answer, as in RocketMQ: a requester that is gone makes it SYSTEM_ERROR.

use std::net::SocketAddr;
use std::time::Duration;

use ferrymq_protocol::header::{
    ReplyMessageRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::Connection;
use ferrymq_store::MessageInner;

use super::{err, Reply};
use crate::state::BrokerState;

/// How long the requester gets to take the pushed reply (Java's callClient default).
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Java renders an `InetSocketAddress` as `/ip:port`; clients parse that form.
fn java_addr(addr: SocketAddr) -> String {
    format!("/{addr}")
}

pub(super) async fn reply(
    s: &BrokerState,
    conn: &Connection,
    req: &RemotingCommand,
    h: &SendMessageRequestHeader,
    msg: MessageInner,
) -> Reply {
    let pushed = push(s, conn, h, &msg).await;
    let queue_id = msg.queue_id;
    let stored = if s.config().store_reply_message_enable {
        let result = super::send::put_internal(s, msg).await;
        if !result.status.is_stored() {
            tracing::warn!(
                status = result.status.as_str(),
                "a reply message was not stored"
            );
        }
        result.append.filter(|_| result.status.is_stored())
    } else {
        None
    };
    if let Err(remark) = pushed {
        tracing::debug!(%remark, "reply not pushed");
        return Err(err(req, ResponseCode::SystemError, remark));
    }
    let header = SendMessageResponseHeader {
        // "0" when not stored: the requester's id is the correlation id, not this.
        msg_id: stored
            .as_ref()
            .map_or_else(|| "0".to_owned(), |a| a.msg_id()),
        queue_id,
        queue_offset: stored.as_ref().map_or(0, |a| a.logics_offset),
        transaction_id: None,
        batch_uniq_id: None,
        msg_region: Some(s.config().region_id.clone()),
        trace_on: Some(s.config().trace_on.to_string()),
        recall_handle: None,
    };
    Ok(RemotingCommand::response_to(req, ResponseCode::Success).with_header(&header))
}

async fn push(
    s: &BrokerState,
    conn: &Connection,
    h: &SendMessageRequestHeader,
    msg: &MessageInner,
) -> Result<(), String> {
    let Some(requester) = properties::get(&msg.properties, keys::MESSAGE_REPLY_TO_CLIENT) else {
        return Err(format!(
            "reply message properties[{}] is null",
            keys::MESSAGE_REPLY_TO_CLIENT
        ));
    };
    let Some(channel) = s.clients.producer_by_client_id(requester) else {
        return Err(format!(
            "push reply message fail, channel of <{requester}> not found."
        ));
    };
    let mut props = msg.properties.clone();
    properties::push(
        &mut props,
        keys::PUSH_REPLY_TIME,
        &BrokerState::now_ms().to_string(),
    );
    let header = ReplyMessageRequestHeader {
        producer_group: h.producer_group.clone(),
        topic: h.topic.clone(),
        default_topic: h.default_topic.clone(),
        default_topic_queue_nums: h.default_topic_queue_nums,
        queue_id: h.queue_id,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        flag: h.flag,
        properties: Some(props),
        reconsume_times: h.reconsume_times,
        unit_mode: h.unit_mode,
        born_host: java_addr(conn.peer_addr()),
        store_host: java_addr(s.store_host),
        store_timestamp: BrokerState::now_ms(),
    };
    let request =
        RemotingCommand::request_with_header(RequestCode::PushReplyMessageToClient, &header)
            .with_body(msg.body.clone());
    match channel.invoke(request, PUSH_TIMEOUT).await {
        Ok(resp) if resp.response_code() == ResponseCode::Success => Ok(()),
        Ok(resp) => Err(format!(
            "push reply message to {requester} fail: {}",
            resp.remark.unwrap_or_default()
        )),
        Err(e) => Err(format!("push reply message to {requester} fail: {e}")),
    }
}
