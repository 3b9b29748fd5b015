//! Stored messages as gRPC `Message`s (grpc-v5.md §10.1 "Delivered Message"): system
//! properties from the RocketMQ property map, everything else as user properties, an MD5
//! digest of the body as delivered, and the receipt handle when the message was popped.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymq_client::MessageExt;
use ferrymq_protocol::message::keys;
use md5::{Digest as _, Md5};

use crate::pb::{self, DigestType, Encoding, MessageType};

/// `DLQ_ORIGIN_TOPIC` / `DLQ_ORIGIN_MESSAGE_ID`: where a dead-lettered message came from.
pub(crate) const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
pub(crate) const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
/// `BORN_TIMESTAMP`: the producer's clock, as the Java proxy records it.
pub(crate) const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";

/// Property names RocketMQ reserves for itself: a client may not set them as user properties
/// and they are not handed back as user properties (Java `MessageConst.STRING_HASH_SET`).
pub(crate) const SYSTEM_PROPERTIES: &[&str] = &[
    keys::KEYS,
    keys::TAGS,
    keys::WAIT_STORE_MSG_OK,
    keys::DELAY_TIME_LEVEL,
    keys::RETRY_TOPIC,
    keys::REAL_TOPIC,
    keys::REAL_QUEUE_ID,
    keys::TRANSACTION_PREPARED,
    keys::PRODUCER_GROUP,
    keys::MIN_OFFSET,
    keys::MAX_OFFSET,
    keys::BUYER_ID,
    keys::ORIGIN_MESSAGE_ID,
    keys::TRANSFER_FLAG,
    keys::CORRECTION_FLAG,
    keys::MQ2_FLAG,
    keys::RECONSUME_TIME,
    keys::MSG_REGION,
    keys::TRACE_SWITCH,
    keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    keys::EXTEND_UNIQ_INFO,
    keys::MAX_RECONSUME_TIMES,
    keys::CONSUME_START_TIMESTAMP,
    keys::INNER_NUM,
    keys::INNER_BASE,
    keys::DUP_INFO,
    keys::CHECK_IMMUNITY_TIME_IN_SECONDS,
    keys::TRANSACTION_PREPARED_QUEUE_OFFSET,
    keys::TRANSACTION_ID,
    keys::TRANSACTION_CHECK_TIMES,
    keys::INSTANCE_ID,
    keys::CORRELATION_ID,
    keys::MESSAGE_REPLY_TO_CLIENT,
    keys::MESSAGE_TTL,
    keys::REPLY_MESSAGE_ARRIVE_TIME,
    keys::PUSH_REPLY_TIME,
    keys::CLUSTER,
    keys::MESSAGE_TYPE,
    keys::POP_CK,
    keys::POP_CK_OFFSET,
    keys::FIRST_POP_TIME,
    keys::SHARDING_KEY,
    keys::FORWARD_QUEUE_ID,
    keys::REDIRECT,
    keys::INNER_MULTI_DISPATCH,
    keys::INNER_MULTI_QUEUE_OFFSET,
    keys::TRACE_CONTEXT,
    keys::TIMER_DELAY_SEC,
    keys::TIMER_DELAY_MS,
    keys::TIMER_DELIVER_MS,
    keys::TIMER_ENQUEUE_MS,
    keys::TIMER_DEQUEUE_MS,
    keys::TIMER_ROLL_TIMES,
    keys::TIMER_OUT_MS,
    keys::TIMER_DEL_UNIQKEY,
    keys::TIMER_DELAY_LEVEL,
    keys::BORN_HOST,
    BORN_TIMESTAMP,
    DLQ_ORIGIN_TOPIC,
    DLQ_ORIGIN_MESSAGE_ID,
];

pub(crate) fn is_system_property(name: &str) -> bool {
    SYSTEM_PROPERTIES.contains(&name)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

/// Seconds beyond which a delivery timestamp's `seconds` field must hold milliseconds: 10^11 s
/// is the year 5138, while 10^11 ms is 1973.
const SECONDS_THAT_ARE_MILLIS: i64 = 100_000_000_000;

/// A message's delivery time in ms. The official Python SDK (5.1.x) documents
/// `Message.delivery_timestamp` in milliseconds but copies the value into
/// `Timestamp.seconds` unchanged; such a value (thousands of years ahead, no nanos) is read
/// as the milliseconds its sender meant. Every other value is a plain Timestamp.
pub(crate) fn delivery_timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    if t.seconds > SECONDS_THAT_ARE_MILLIS && t.nanos == 0 {
        t.seconds
    } else {
        timestamp_ms(t)
    }
}

pub(crate) fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A protobuf duration in milliseconds (negative durations count as zero).
pub(crate) fn duration_ms(d: &prost_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos) / 1_000_000)
        .max(0)
}

/// A topic name as a Resource: `ns%topic` splits into namespace and name (grpc-v5.md §14).
pub(crate) fn resource(name: &str) -> pb::Resource {
    let is_special = name.starts_with(ferrymq_protocol::naming::RETRY_GROUP_TOPIC_PREFIX)
        || name.starts_with(ferrymq_protocol::naming::DLQ_GROUP_TOPIC_PREFIX);
    match name.split_once('%') {
        Some((ns, rest)) if !is_special && !ns.is_empty() => pb::Resource {
            resource_namespace: ns.to_owned(),
            name: rest.to_owned(),
        },
        _ => pb::Resource {
            resource_namespace: String::new(),
            name: name.to_owned(),
        },
    }
}

/// Uppercase hex MD5, the digest the Java proxy sends and every SDK verifies.
pub(crate) fn md5_upper_hex(body: &[u8]) -> String {
    let digest = Md5::digest(body);
    let mut s = String::with_capacity(32);
    for b in digest {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

fn host_port(addr: &SocketAddr) -> String {
    addr.to_string()
}

/// The message type a stored message was sent as.
pub(crate) fn message_type(msg: &MessageExt) -> MessageType {
    let is_true = |k: &str| {
        msg.property(k)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    if is_true(keys::TRANSACTION_PREPARED) {
        MessageType::Transaction
    } else if msg.property(keys::TIMER_DELIVER_MS).is_some()
        || msg.property(keys::TIMER_DELAY_SEC).is_some()
        || msg.property(keys::TIMER_DELAY_MS).is_some()
        || msg.property(keys::DELAY_TIME_LEVEL).is_some()
    {
        MessageType::Delay
    } else if msg.property(keys::SHARDING_KEY).is_some() {
        MessageType::Fifo
    } else {
        MessageType::Normal
    }
}

/// A stored message as the gRPC clients see it. `receipt_handle` and `invisible` are set for
/// popped messages.
pub(crate) fn to_pb(
    msg: &MessageExt,
    receipt_handle: Option<String>,
    invisible: Option<Duration>,
) -> pb::Message {
    let user_properties = msg
        .properties()
        .iter()
        .filter(|(k, _)| !is_system_property(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let keys_list = msg.keys().into_iter().map(str::to_owned).collect();
    let born_host = msg
        .property(keys::BORN_HOST)
        .map(str::to_owned)
        .unwrap_or_else(|| msg.born_host.ip().to_string());
    let delivery_timestamp = msg
        .property(keys::TIMER_DELIVER_MS)
        .and_then(|v| v.parse::<i64>().ok())
        .map(timestamp);
    let dead_letter_queue = match (
        msg.property(DLQ_ORIGIN_TOPIC),
        msg.property(DLQ_ORIGIN_MESSAGE_ID),
    ) {
        (Some(topic), Some(id)) => Some(pb::DeadLetterQueue {
            topic: topic.to_owned(),
            message_id: id.to_owned(),
        }),
        _ => None,
    };
    let system = pb::SystemProperties {
        tag: msg.tags().map(str::to_owned),
        keys: keys_list,
        message_id: msg.msg_id().to_owned(),
        body_digest: Some(pb::Digest {
            r#type: DigestType::Md5 as i32,
            checksum: md5_upper_hex(msg.body()),
        }),
        // The body was inflated when it was decoded.
        body_encoding: Encoding::Identity as i32,
        message_type: message_type(msg) as i32,
        born_timestamp: Some(timestamp(msg.born_timestamp)),
        born_host,
        store_timestamp: Some(timestamp(msg.store_timestamp)),
        store_host: host_port(&msg.store_host),
        delivery_timestamp,
        receipt_handle,
        queue_id: msg.queue_id,
        queue_offset: Some(msg.queue_offset),
        invisible_duration: invisible.map(duration),
        delivery_attempt: Some(msg.reconsume_times.saturating_add(1)),
        message_group: msg.property(keys::SHARDING_KEY).map(str::to_owned),
        trace_context: msg.property(keys::TRACE_CONTEXT).map(str::to_owned),
        orphaned_transaction_recovery_duration: None,
        dead_letter_queue,
        lite_topic: None,
        priority: None,
    };
    pb::Message {
        topic: Some(resource(msg.topic())),
        user_properties,
        system_properties: Some(system),
        body: msg.body().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_uppercase_hex() {
        assert_eq!(md5_upper_hex(b""), "D41D8CD98F00B204E9800998ECF8427E");
        assert_eq!(md5_upper_hex(b"abc"), "900150983CD24FB0D6963F7D28E17F72");
    }

    #[test]
    fn namespaced_topics_split() {
        assert_eq!(resource("ns%T").resource_namespace, "ns");
        assert_eq!(resource("ns%T").name, "T");
        assert_eq!(resource("T").name, "T");
        assert_eq!(resource("%RETRY%g").name, "%RETRY%g");
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1] {
            assert_eq!(timestamp_ms(&timestamp(ms)), ms);
        }
        assert_eq!(duration_ms(&duration(Duration::from_millis(1500))), 1500);
    }

    #[test]
    fn delivery_timestamps_in_seconds_or_python_sdk_milliseconds() {
        let now = 1_796_000_000_123;
        assert_eq!(delivery_timestamp_ms(&timestamp(now)), now);
        // What the Python SDK sends for delivery_timestamp = now (ms): seconds = now.
        let python = prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        };
        assert_eq!(delivery_timestamp_ms(&python), now);
        // Its seconds-valued use keeps working.
        let secs = prost_types::Timestamp {
            seconds: now / 1000,
            nanos: 0,
        };
        assert_eq!(delivery_timestamp_ms(&secs), now / 1000 * 1000);
    }

    #[test]
    fn reserved_names_are_system() {
        assert!(is_system_property("UNIQ_KEY"));
        assert!(is_system_property("TAGS"));
        assert!(!is_system_property("orderId"));
    }
}
