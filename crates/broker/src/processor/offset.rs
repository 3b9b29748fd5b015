//! Consumer offsets and queue positions: QUERY/UPDATE_CONSUMER_OFFSET, GET_MAX/MIN_OFFSET,
//! SEARCH_OFFSET_BY_TIMESTAMP and GET_EARLIEST_MSG_STORETIME (request-codes.md §5).

use ferrymq_protocol::body::ConsumeFromWhere;
use ferrymq_protocol::header::{
    OffsetResponseHeader, QueryConsumerOffsetRequestHeader, QueueRequestHeader,
    SearchOffsetRequestHeader, TimestampResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use ferrymq_protocol::{RemotingCommand, ResponseCode};

use super::{err, header, ok, Reply};
use crate::state::BrokerState;

pub(super) fn query_consumer_offset(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: QueryConsumerOffsetRequestHeader = header(req)?;
    if let Some(offset) = s
        .offsets
        .query(&h.topic, &h.consumer_group, h.queue_id)
        .filter(|o| *o >= 0)
    {
        return Ok(ok(req).with_header(&OffsetResponseHeader { offset }));
    }
    // A new group starts at 0 when nothing was ever deleted from the queue and its first message
    // is still in memory (4.x semantics): a young topic's backlog is delivered, an old one's not.
    // Not for a group whose clients start from a timestamp: "not found" makes them search the
    // queue by time, where 0 would deliver what was stored before that time.
    let from_timestamp =
        s.clients.consume_from_where(&h.consumer_group) == Some(ConsumeFromWhere::Timestamp);
    if h.set_zero_if_not_found != Some(false)
        && !from_timestamp
        && s.store.min_offset_in_queue(&h.topic, h.queue_id) <= 0
    {
        let hot = match s.store.commit_log_offset_in_queue(&h.topic, h.queue_id, 0) {
            None => true,
            Some(phy) => s.store.commit_log_max_offset() - phy <= s.in_memory_window,
        };
        if hot {
            return Ok(ok(req).with_header(&OffsetResponseHeader { offset: 0 }));
        }
    }
    Err(err(
        req,
        ResponseCode::QueryNotFound,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    ))
}

pub(super) fn update_consumer_offset(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: UpdateConsumerOffsetRequestHeader = header(req)?;
    if s.groups.find_or_create(&h.consumer_group).is_none() {
        return Err(err(
            req,
            ResponseCode::SubscriptionGroupNotExist,
            format!("subscription group not exist, {}", h.consumer_group),
        ));
    }
    if !s.topics.contains(&h.topic) {
        return Err(err(
            req,
            ResponseCode::TopicNotExist,
            format!("topic[{}] not exist", h.topic),
        ));
    }
    if !s
        .offsets
        .commit(&h.topic, &h.consumer_group, h.queue_id, h.commit_offset)
    {
        return Ok(ok(req).with_remark("Offset has been previously reset"));
    }
    Ok(ok(req))
}

pub(super) fn max_offset(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: QueueRequestHeader = header(req)?;
    let offset = s.store.max_offset_in_queue(&h.topic, h.queue_id);
    Ok(ok(req).with_header(&OffsetResponseHeader { offset }))
}

pub(super) fn min_offset(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: QueueRequestHeader = header(req)?;
    let offset = s.store.min_offset_in_queue(&h.topic, h.queue_id);
    Ok(ok(req).with_header(&OffsetResponseHeader { offset }))
}

pub(super) fn search_offset(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: SearchOffsetRequestHeader = header(req)?;
    let lower = s
        .store
        .offset_by_timestamp(&h.topic, h.queue_id, h.timestamp);
    let offset = if h
        .boundary_type
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("upper"))
    {
        // Last offset stored at or before the timestamp.
        let first_after =
            s.store
                .offset_by_timestamp(&h.topic, h.queue_id, h.timestamp.saturating_add(1));
        (first_after - 1).max(0)
    } else {
        lower
    };
    Ok(ok(req).with_header(&OffsetResponseHeader { offset }))
}

pub(super) fn earliest_time(s: &BrokerState, req: &RemotingCommand) -> Reply {
    let h: QueueRequestHeader = header(req)?;
    let timestamp = s
        .store
        .earliest_message_time(&h.topic, h.queue_id)
        .unwrap_or(-1);
    Ok(ok(req).with_header(&TimestampResponseHeader { timestamp }))
}
