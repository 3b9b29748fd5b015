//! END_TRANSACTION: the producer's verdict on a half message. COMMIT stores the real message in
//! its topic; ROLLBACK drops it; both write an "op" record to RMQ_SYS_TRANS_OP_HALF_TOPIC so the
//! half message counts as settled (message-format.md §9, request-codes.md §7.1).

use std::sync::Arc;

use ferrymq_protocol::header::EndTransactionRequestHeader;
use ferrymq_protocol::message::flag::sys_flag;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::{RemotingCommand, ResponseCode};

use super::{err, header, ok, put_internal, Reply};
use crate::state::BrokerState;

pub(super) async fn end_transaction(s: &Arc<BrokerState>, req: &RemotingCommand) -> Reply {
    let h: EndTransactionRequestHeader = header(req)?;
    if s.config().is_slave() {
        return Err(err(
            req,
            ResponseCode::SlaveNotAvailable,
            "Transaction end is not allowed on a slave broker",
        ));
    }
    let commit = match h.commit_or_rollback {
        sys_flag::TRANSACTION_COMMIT_TYPE => true,
        sys_flag::TRANSACTION_ROLLBACK_TYPE => false,
        _ => return Ok(ok(req)),
    };
    let Some(record) = s.store.lookup_message_by_offset(h.commit_log_offset) else {
        return Err(err(
            req,
            ResponseCode::SystemError,
            "Find prepared transaction message failed",
        ));
    };
    let view = RecordView::parse(&record).map_err(|e| {
        err(
            req,
            ResponseCode::SystemError,
            format!("Find prepared transaction message failed: {e}"),
        )
    })?;
    if view.property(keys::PRODUCER_GROUP) != Some(h.producer_group.as_str()) {
        return Err(err(
            req,
            ResponseCode::SystemError,
            "The producer group wrong",
        ));
    }
    if view.queue_offset() != h.tran_state_table_offset {
        return Err(err(
            req,
            ResponseCode::SystemError,
            "The transaction state table offset wrong",
        ));
    }
    if view.physical_offset() != h.commit_log_offset {
        return Err(err(
            req,
            ResponseCode::SystemError,
            "The commit log offset wrong",
        ));
    }
    if commit {
        let (Some(topic), Some(queue_id)) = (
            view.property(keys::REAL_TOPIC),
            view.property(keys::REAL_QUEUE_ID)
                .and_then(|q| q.parse::<i32>().ok()),
        ) else {
            return Err(err(
                req,
                ResponseCode::SystemError,
                "the half message has no real topic",
            ));
        };
        let mut props = properties::without(view.properties(), keys::REAL_TOPIC);
        props = properties::without(&props, keys::REAL_QUEUE_ID);
        props = properties::without(&props, keys::TRANSACTION_PREPARED);
        let mut msg = s.restore(&record, &view);
        msg.topic = topic.to_owned();
        msg.queue_id = queue_id;
        msg.properties = props;
        msg.sys_flag =
            sys_flag::with_transaction_type(view.sys_flag(), sys_flag::TRANSACTION_COMMIT_TYPE);
        msg.prepared_transaction_offset = h.commit_log_offset;
        let result = put_internal(s, msg).await;
        if !result.status.is_stored() {
            return Err(err(req, ResponseCode::SystemError, result.status.as_str()));
        }
    }
    crate::transaction_check::write_op(s, view.queue_offset()).await;
    Ok(ok(req))
}
