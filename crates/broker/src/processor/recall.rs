//! RECALL_MESSAGE (370, RocketMQ 5.3): cancels a parked timer message before it is due. The
//! handle from the send response names topic, broker, due time and message id; a delete
//! marker parked beside the target makes the timer drop it (see [`crate::timer`]).

use ferrymq_protocol::header::{RecallMessageRequestHeader, RecallMessageResponseHeader};
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::recall::RecallHandle;
use ferrymq_protocol::{RemotingCommand, ResponseCode};
use ferrymq_remoting::Connection;
use ferrymq_store::PutMessageStatus;

use super::{err, header, ok, Reply};
use crate::state::BrokerState;

pub(super) async fn recall_message(
    s: &BrokerState,
    conn: &Connection,
    req: &RemotingCommand,
) -> Reply {
    let h: RecallMessageRequestHeader = header(req)?;
    let c = s.config();
    if c.is_slave() {
        return Err(err(
            req,
            ResponseCode::SlaveNotAvailable,
            "recall failed, broker service not available",
        ));
    }
    if !perm::is_writeable(c.broker_permission) {
        return Err(err(
            req,
            ResponseCode::ServiceNotAvailable,
            "recall failed, broker service not available",
        ));
    }
    if s.topics.get(&h.topic).is_none() {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("recall failed, the topic[{}] not exist", h.topic),
        ));
    }
    let handle = RecallHandle::decode(&h.recall_handle)
        .map_err(|e| err(req, ResponseCode::IllegalOperation, e.to_string()))?;
    if handle.topic != h.topic {
        return Err(err(
            req,
            ResponseCode::IllegalOperation,
            "recall failed, topic not match",
        ));
    }
    if handle.broker_name != c.broker_name {
        return Err(err(
            req,
            ResponseCode::IllegalOperation,
            format!(
                "recall failed, the handle is of broker {}, this is {}",
                handle.broker_name, c.broker_name
            ),
        ));
    }
    let left = handle
        .timestamp_ms()
        .map_or(-1, |t| t - BrokerState::now_ms());
    // Stricter than Java's `left <= 0`: within the last precision step the timer may be
    // delivering the message while the marker is written.
    if left < crate::timer::RECALL_MIN_LEAD_MS
        || left >= (c.timer_max_delay_sec as i64).saturating_mul(1000)
    {
        return Err(err(
            req,
            ResponseCode::IllegalOperation,
            "recall failed, timestamp invalid: the message is due (or about to be) or was never parked",
        ));
    }
    let mut marker = crate::timer::recall_marker(&handle, h.producer_group.as_deref());
    marker.born_host = conn.peer_addr();
    marker.store_host = s.store_host;
    let result = super::send::put_internal(s, marker).await;
    if !result.status.is_stored() {
        let code = match result.status {
            PutMessageStatus::QueueTimeout | PutMessageStatus::OsPageCacheBusy => {
                ResponseCode::SystemBusy
            }
            PutMessageStatus::ServiceNotAvailable => ResponseCode::ServiceNotAvailable,
            _ => ResponseCode::SystemError,
        };
        return Err(err(
            req,
            code,
            format!(
                "recall failed, execute error: {}",
                result.remark.unwrap_or(result.status.as_str())
            ),
        ));
    }
    Ok(ok(req).with_header(&RecallMessageResponseHeader {
        msg_id: handle.message_id,
    }))
}
