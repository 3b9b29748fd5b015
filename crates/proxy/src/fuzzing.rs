//! Entry points for the fuzz targets (`crates/fuzz`): what every client-supplied gRPC message
//! goes through before any broker is asked — protobuf decoding, the send checks and
//! conversion, receive parameters, receipt and recall handles — callable without a server.
//! Each returns nothing and must never panic, whatever the bytes.

use std::time::Duration;

use prost::Message as _;

use crate::pb;

/// A SendMessageRequest as it arrives: every message validated and converted.
pub fn send_message_request(bytes: &[u8]) {
    let Ok(req) = pb::SendMessageRequest::decode(bytes) else {
        return;
    };
    for m in &req.messages {
        for max_delay in [Duration::ZERO, Duration::from_secs(86_400)] {
            let _ = crate::send::to_outgoing(m, 1_700_000_000_000, max_delay);
        }
    }
}

/// A ReceiveMessageRequest: invisible time, filter and long-polling bounds.
pub fn receive_message_request(bytes: &[u8]) {
    let Ok(req) = pb::ReceiveMessageRequest::decode(bytes) else {
        return;
    };
    let _ = crate::receive::invisible_time(&req);
    let _ = crate::receive::filter(req.filter_expression.as_ref());
    let long = req
        .long_polling_timeout
        .as_ref()
        .map(|d| Duration::from_millis(crate::convert::duration_ms(d).max(0) as u64));
    let _ = crate::receive::poll_time(long, Some(Duration::from_secs(3)));
}

/// Ack, change-invisible and recall requests: their handles are parsed from client text.
pub fn handle_requests(bytes: &[u8]) {
    if let Ok(req) = pb::AckMessageRequest::decode(bytes) {
        for e in &req.entries {
            let _ = crate::receive::parse_handle(&e.receipt_handle);
        }
    }
    if let Ok(req) = pb::ChangeInvisibleDurationRequest::decode(bytes) {
        let _ = crate::receive::parse_handle(&req.receipt_handle);
    }
    if let Ok(req) = pb::RecallMessageRequest::decode(bytes) {
        let _ = ferrymq_protocol::recall::RecallHandle::decode(&req.recall_handle);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = crate::receive::parse_handle(text);
    }
}

/// A stored record as a gRPC client would receive it.
pub fn stored_record(bytes: &[u8]) {
    for msg in ferrymq_client::MessageExt::decode_all(bytes, "broker-a") {
        let _ = crate::convert::to_pb(&msg, Some("handle".into()), Some(Duration::from_secs(30)));
    }
}
