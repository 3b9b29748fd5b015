//! SendMessage (grpc-v5.md §9): validation in the Java proxy's order, mapping of the gRPC
//! system properties to RocketMQ message properties, then a send through the proxy's
//! producer of group = topic (gRPC producers have no group of their own). The client's
//! `queue_id` is ignored: queues are chosen here — round robin with retries, or a hash of
//! the message group for FIFO messages; several messages go as one batch.

use std::io::Read as _;
use std::time::Duration;

use ferrymq_client::producer::SendStatus;
use ferrymq_client::{Message, SendResult};
use ferrymq_protocol::message::keys;
use ferrymq_protocol::naming;

use crate::convert::{self, is_system_property, now_ms, BORN_TIMESTAMP};
use crate::pb::{self, Code, Encoding, MessageType, SendResultEntry};
use crate::service::Context;
use crate::status::{self, Failure};

/// Largest body accepted (Java proxy `maxMessageSize`).
pub(crate) const MAX_BODY_SIZE: usize = 4 * 1024 * 1024;
/// At most this many user properties (`userPropertyMaxNum`).
const MAX_USER_PROPERTIES: usize = 128;
/// User properties plus tag and keys at most this large (`maxUserPropertySize`).
const MAX_PROPERTIES_SIZE: usize = 16 * 1024;
/// Longest message group (`maxMessageGroupSize`).
const MAX_MESSAGE_GROUP_SIZE: usize = 64;
/// How far ahead a delivery time may be by default (Java proxy's `maxDelayTimeMills`).
pub(crate) const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Longest orphaned-transaction check immunity (`maxTransactionRecoverySecond`).
const MAX_TRANSACTION_RECOVERY_SECS: i64 = 3600;

/// How a message must be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Normal,
    Fifo(String),
    Delay,
    Transaction,
}

/// A validated message ready for the producer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub message: Message,
    pub kind: Kind,
    pub message_id: String,
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Topic checks shared by every RPC naming a topic (grpc-v5.md §13.4).
pub(crate) fn check_topic(topic: &str) -> Result<(), Failure> {
    if topic.is_empty() {
        return Err(Failure::new(Code::IllegalTopic, "topic name is empty"));
    }
    naming::validate_topic(topic).map_err(|e| Failure::new(Code::IllegalTopic, e.to_string()))?;
    if naming::is_system_topic(topic) || naming::is_send_forbidden(topic) {
        return Err(Failure::new(
            Code::IllegalTopic,
            format!("cannot access system topic {topic}"),
        ));
    }
    Ok(())
}

/// Group checks (grpc-v5.md §13.4).
pub(crate) fn check_group(group: &str) -> Result<(), Failure> {
    if group.is_empty() {
        return Err(Failure::new(
            Code::IllegalConsumerGroup,
            "group name is empty",
        ));
    }
    naming::validate_group(group)
        .map_err(|e| Failure::new(Code::IllegalConsumerGroup, e.to_string()))?;
    if group.starts_with("CID_RMQ_SYS_") {
        return Err(Failure::new(
            Code::IllegalConsumerGroup,
            format!("cannot access system group {group}"),
        ));
    }
    Ok(())
}

/// Validates one gRPC message and maps it to a RocketMQ message (grpc-v5.md §9 steps 2–4).
pub(crate) fn to_outgoing(
    m: &pb::Message,
    now: i64,
    max_delay: Duration,
) -> Result<Outgoing, Failure> {
    let topic = m.topic.as_ref().map(|t| t.name.as_str()).unwrap_or("");
    let sys = m
        .system_properties
        .as_ref()
        .ok_or_else(|| Failure::new(Code::MessageCorrupted, "system properties are missing"))?;
    let body = if sys.body_encoding == Encoding::Gzip as i32 {
        // Stored inflated: consumers of every protocol then read it without knowing gzip.
        // Inflating stops one byte past the limit, so a small bomb cannot take the memory.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&m.body[..])
            .take(MAX_BODY_SIZE as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Failure::new(Code::MessageCorrupted, format!("bad gzip body: {e}")))?;
        out
    } else {
        m.body.clone()
    };
    if body.is_empty() {
        return Err(Failure::new(
            Code::MessageBodyEmpty,
            "message body is empty",
        ));
    }
    if body.len() > MAX_BODY_SIZE {
        return Err(Failure::new(
            Code::MessageBodyTooLarge,
            format!(
                "message body is {} bytes, more than {MAX_BODY_SIZE}",
                body.len()
            ),
        ));
    }
    if sys.message_id.is_empty() {
        return Err(Failure::new(Code::IllegalMessageId, "message id is empty"));
    }
    if m.user_properties.len() > MAX_USER_PROPERTIES {
        return Err(Failure::new(
            Code::MessagePropertiesTooLarge,
            format!("more than {MAX_USER_PROPERTIES} user properties"),
        ));
    }
    let mut size = 0usize;
    for (k, v) in &m.user_properties {
        if k.is_empty() || is_system_property(k) {
            return Err(Failure::new(
                Code::IllegalMessagePropertyKey,
                format!("property key `{k}` is reserved"),
            ));
        }
        if has_control(k) || has_control(v) {
            return Err(Failure::new(
                Code::IllegalMessagePropertyKey,
                format!("property `{k}` contains control characters"),
            ));
        }
        size += k.len() + v.len();
    }
    if let Some(tag) = &sys.tag {
        if blank(tag) || tag.contains('|') || has_control(tag) {
            return Err(Failure::new(
                Code::IllegalMessageTag,
                format!("illegal tag `{tag}`"),
            ));
        }
        size += tag.len();
    }
    for key in &sys.keys {
        if blank(key) || has_control(key) {
            return Err(Failure::new(
                Code::IllegalMessageKey,
                format!("illegal key `{key}`"),
            ));
        }
        size += key.len();
    }
    if size > MAX_PROPERTIES_SIZE {
        return Err(Failure::new(
            Code::MessagePropertiesTooLarge,
            format!("properties are {size} bytes, more than {MAX_PROPERTIES_SIZE}"),
        ));
    }
    if let Some(group) = &sys.message_group {
        if blank(group) || has_control(group) || group.len() > MAX_MESSAGE_GROUP_SIZE {
            return Err(Failure::new(
                Code::IllegalMessageGroup,
                format!("illegal message group `{group}`"),
            ));
        }
    }
    let deliver_at = sys
        .delivery_timestamp
        .as_ref()
        .map(convert::delivery_timestamp_ms);
    if let Some(at) = deliver_at {
        if at - now > max_delay.as_millis() as i64 {
            return Err(Failure::new(
                Code::IllegalDeliveryTime,
                format!(
                    "delivery time is more than {}s ahead (maxDelayTimeMills / timerMaxDelaySec)",
                    max_delay.as_secs()
                ),
            ));
        }
    }
    let is_transaction = sys.message_type == MessageType::Transaction as i32;
    if is_transaction && (sys.message_group.is_some() || deliver_at.is_some()) {
        return Err(Failure::new(
            Code::MessagePropertyConflictWithType,
            "a transactional message cannot have a message group or a delivery time",
        ));
    }
    if sys.message_group.is_some() && deliver_at.is_some() {
        return Err(Failure::new(
            Code::MessagePropertyConflictWithType,
            "a FIFO message cannot have a delivery time",
        ));
    }

    let mut msg = Message::new(topic, body);
    for (k, v) in &m.user_properties {
        msg.set_property(k.clone(), v.clone());
    }
    msg.set_property(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, sys.message_id.clone());
    if let Some(tag) = &sys.tag {
        msg.set_property(keys::TAGS, tag.clone());
    }
    if !sys.keys.is_empty() {
        msg.set_property(keys::KEYS, sys.keys.join(" "));
    }
    if let Some(trace) = sys.trace_context.as_ref().filter(|t| !t.is_empty()) {
        msg.set_property(keys::TRACE_CONTEXT, trace.clone());
    }
    if !sys.born_host.is_empty() {
        msg.set_property(keys::BORN_HOST, sys.born_host.clone());
    }
    if let Some(born) = &sys.born_timestamp {
        msg.set_property(BORN_TIMESTAMP, convert::timestamp_ms(born).to_string());
    }
    if let Some(attempt) = sys.delivery_attempt.filter(|a| *a > 0) {
        msg.set_property(keys::RECONSUME_TIME, attempt.to_string());
    }
    let kind = if is_transaction {
        if let Some(d) = &sys.orphaned_transaction_recovery_duration {
            let secs = (convert::duration_ms(d) / 1000).min(MAX_TRANSACTION_RECOVERY_SECS);
            msg.set_property(keys::CHECK_IMMUNITY_TIME_IN_SECONDS, secs.to_string());
        }
        Kind::Transaction
    } else if let Some(group) = &sys.message_group {
        msg.set_property(keys::SHARDING_KEY, group.clone());
        Kind::Fifo(group.clone())
    } else if let Some(at) = deliver_at {
        msg.set_property(keys::TIMER_DELIVER_MS, at.to_string());
        Kind::Delay
    } else {
        Kind::Normal
    };
    Ok(Outgoing {
        message: msg,
        kind,
        message_id: sys.message_id.clone(),
    })
}

fn entry_for(result: &SendResult, message_id: &str, offset: i64) -> SendResultEntry {
    let st = match result.status {
        SendStatus::SendOk => status::ok(),
        SendStatus::FlushDiskTimeout => {
            status::status(Code::MasterPersistenceTimeout, "flush disk timeout")
        }
        SendStatus::FlushSlaveTimeout => {
            status::status(Code::SlavePersistenceTimeout, "flush slave timeout")
        }
        SendStatus::SlaveNotAvailable => {
            status::status(Code::HaNotAvailable, "slave not available")
        }
    };
    SendResultEntry {
        status: Some(st),
        message_id: message_id.to_owned(),
        // The Java proxy's transaction id is the message's UNIQ_KEY.
        transaction_id: message_id.to_owned(),
        offset,
        recall_handle: result.recall_handle.clone().unwrap_or_default(),
    }
}

/// RecallMessage (grpc-v5.md §12): RECALL_MESSAGE to the broker the handle names; answers the
/// recalled message's id.
pub(crate) async fn recall(
    ctx: &Context,
    req: pb::RecallMessageRequest,
) -> Result<String, Failure> {
    let topic = req.topic.as_ref().map_or("", |t| t.name.as_str());
    check_topic(topic)?;
    if req.recall_handle.trim().is_empty() {
        return Err(Failure::new(Code::BadRequest, "recall handle is missing"));
    }
    let producer = ctx.producers.get(topic).await?.producer().clone();
    producer
        .recall_message(topic, &req.recall_handle)
        .await
        .map_err(|e| match e {
            ferrymq_client::ClientError::InvalidArgument(m) => Failure::new(Code::BadRequest, m),
            ferrymq_client::ClientError::Broker {
                code: ferrymq_protocol::ResponseCode::IllegalOperation,
                remark,
                ..
            } => Failure::new(Code::BadRequest, remark),
            other => Failure::from(other),
        })
}

fn failed(n: usize, f: &Failure) -> pb::SendMessageResponse {
    pb::SendMessageResponse {
        status: Some(f.to_status()),
        entries: (0..n)
            .map(|_| SendResultEntry {
                status: Some(f.to_status()),
                ..Default::default()
            })
            .collect(),
    }
}

pub(crate) async fn send_message(
    ctx: &Context,
    req: pb::SendMessageRequest,
) -> pb::SendMessageResponse {
    let n = req.messages.len();
    match send(ctx, req).await {
        Ok(entries) => pb::SendMessageResponse {
            status: Some(status::summarize(
                entries.iter().filter_map(|e| e.status.as_ref()),
            )),
            entries,
        },
        Err(f) => failed(n.max(1), &f),
    }
}

async fn send(ctx: &Context, req: pb::SendMessageRequest) -> Result<Vec<SendResultEntry>, Failure> {
    let Some(first) = req.messages.first() else {
        return Err(Failure::new(Code::MessageCorrupted, "no message to send"));
    };
    let topic = first
        .topic
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    if req
        .messages
        .iter()
        .any(|m| m.topic.as_ref().map(|t| t.name.as_str()) != Some(topic.as_str()))
    {
        return Err(Failure::new(
            Code::MessageCorrupted,
            "all messages of one request must have one topic",
        ));
    }
    check_topic(&topic)?;
    let now = now_ms();
    let outgoing = req
        .messages
        .iter()
        .map(|m| to_outgoing(m, now, ctx.max_delay))
        .collect::<Result<Vec<_>, _>>()?;
    let tx_producer = ctx.producers.get(&topic).await?;
    let producer = tx_producer.producer();

    if outgoing.len() > 1 && outgoing.iter().all(|o| o.kind == Kind::Normal) {
        let ids: Vec<String> = outgoing.iter().map(|o| o.message_id.clone()).collect();
        let result = producer
            .send_batch(outgoing.into_iter().map(|o| o.message))
            .await?;
        return Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| entry_for(&result, id, result.queue_offset + i as i64))
            .collect());
    }
    let mut entries = Vec::with_capacity(outgoing.len());
    for o in outgoing {
        let sent = match &o.kind {
            Kind::Transaction => match tx_producer.send_half(o.message).await {
                Ok(half) => {
                    ctx.transactions
                        .remember_half(&topic, &o.message_id, half.result());
                    Ok(half.result().clone())
                }
                Err(e) => Err(e),
            },
            Kind::Fifo(group) => producer.send_ordered(o.message, group).await,
            Kind::Normal | Kind::Delay => producer.send(o.message).await,
        };
        entries.push(match sent {
            Ok(result) => entry_for(&result, &o.message_id, result.queue_offset),
            Err(e) => SendResultEntry {
                status: Some(Failure::from(e).to_status()),
                message_id: o.message_id,
                ..Default::default()
            },
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &[u8]) -> pb::Message {
        pb::Message {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: "T".into(),
            }),
            user_properties: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
            system_properties: Some(pb::SystemProperties {
                tag: Some("TagA".into()),
                keys: vec!["k1".into(), "k2".into()],
                message_id: "01ABC".into(),
                message_type: MessageType::Normal as i32,
                body_encoding: Encoding::Identity as i32,
                ..Default::default()
            }),
            body: body.to_vec(),
        }
    }

    fn code(r: Result<Outgoing, Failure>) -> Code {
        match r {
            Ok(_) => Code::Ok,
            Err(f) => f.code,
        }
    }

    #[test]
    fn maps_system_properties() {
        let o = to_outgoing(&message(b"hello"), 0, DEFAULT_MAX_DELAY).unwrap();
        assert_eq!(o.kind, Kind::Normal);
        assert_eq!(o.message.property("UNIQ_KEY"), Some("01ABC"));
        assert_eq!(o.message.property("TAGS"), Some("TagA"));
        assert_eq!(o.message.property("KEYS"), Some("k1 k2"));
        assert_eq!(o.message.property("k"), Some("v"));
        assert_eq!(&o.message.body()[..], b"hello");
    }

    #[test]
    fn fifo_delay_and_transaction_kinds() {
        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().message_group = Some("g1".into());
        let o = to_outgoing(&m, 0, DEFAULT_MAX_DELAY).unwrap();
        assert_eq!(o.kind, Kind::Fifo("g1".into()));
        assert_eq!(o.message.property("__SHARDINGKEY"), Some("g1"));

        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().delivery_timestamp = Some(convert::timestamp(5_000));
        let o = to_outgoing(&m, 0, DEFAULT_MAX_DELAY).unwrap();
        assert_eq!(o.kind, Kind::Delay);
        assert_eq!(o.message.property("TIMER_DELIVER_MS"), Some("5000"));

        let mut m = message(b"x");
        let sys = m.system_properties.as_mut().unwrap();
        sys.message_type = MessageType::Transaction as i32;
        sys.orphaned_transaction_recovery_duration =
            Some(convert::duration(Duration::from_secs(7200)));
        let o = to_outgoing(&m, 0, DEFAULT_MAX_DELAY).unwrap();
        assert_eq!(o.kind, Kind::Transaction);
        assert_eq!(
            o.message.property("CHECK_IMMUNITY_TIME_IN_SECONDS"),
            Some("3600")
        );
    }

    #[test]
    fn rejects_like_the_java_proxy() {
        assert_eq!(
            code(to_outgoing(&message(b""), 0, DEFAULT_MAX_DELAY)),
            Code::MessageBodyEmpty
        );
        let big = vec![0u8; MAX_BODY_SIZE + 1];
        assert_eq!(
            code(to_outgoing(&message(&big), 0, DEFAULT_MAX_DELAY)),
            Code::MessageBodyTooLarge
        );
        // A gzip body of a few KiB that would inflate to 64 MiB is refused without inflating
        // it all.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            std::io::Write::write_all(&mut bomb, &[0u8; 1024 * 1024]).unwrap();
        }
        let mut m = message(&bomb.finish().unwrap());
        assert!(m.body.len() < 256 * 1024);
        m.system_properties.as_mut().unwrap().body_encoding = Encoding::Gzip as i32;
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::MessageBodyTooLarge
        );

        let mut m = message(b"x");
        m.user_properties.insert("UNIQ_KEY".into(), "x".into());
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::IllegalMessagePropertyKey
        );

        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().tag = Some("a||b".into());
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::IllegalMessageTag
        );

        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().keys = vec![" ".into()];
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::IllegalMessageKey
        );

        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().message_id.clear();
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::IllegalMessageId
        );

        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().message_group = Some("g".repeat(65));
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::IllegalMessageGroup
        );

        let mut m = message(b"x");
        m.system_properties.as_mut().unwrap().delivery_timestamp = Some(convert::timestamp(
            DEFAULT_MAX_DELAY.as_millis() as i64 + 10,
        ));
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::IllegalDeliveryTime
        );

        let mut m = message(b"x");
        m.user_properties
            .insert("big".into(), "v".repeat(MAX_PROPERTIES_SIZE));
        assert_eq!(
            code(to_outgoing(&m, 0, DEFAULT_MAX_DELAY)),
            Code::MessagePropertiesTooLarge
        );
    }

    #[test]
    fn gzip_bodies_are_inflated() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"compressed body").unwrap();
        let mut m = message(&enc.finish().unwrap());
        m.system_properties.as_mut().unwrap().body_encoding = Encoding::Gzip as i32;
        let o = to_outgoing(&m, 0, DEFAULT_MAX_DELAY).unwrap();
        assert_eq!(&o.message.body()[..], b"compressed body");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_topic("T").is_ok());
        assert_eq!(check_topic("TBW102").unwrap_err().code, Code::IllegalTopic);
        assert_eq!(
            check_topic("rmq_sys_x").unwrap_err().code,
            Code::IllegalTopic
        );
        assert_eq!(check_topic("a b").unwrap_err().code, Code::IllegalTopic);
        assert!(check_group("G").is_ok());
        assert_eq!(
            check_group("CID_RMQ_SYS_X").unwrap_err().code,
            Code::IllegalConsumerGroup
        );
    }
}
