//! Messages as applications see them: [`Message`] to send, [`MessageExt`] as received.
//!
//! A `Message` is a topic, a body, a user flag and a property map; the well-known properties
//! (tags, keys, delay level, delivery time, sharding key…) have typed setters so applications
//! never spell RocketMQ's property names. A `MessageExt` is a message decoded from a commit-log
//! record (pull, query, view-by-id, transaction check) together with where and when it was
//! stored. Bodies compressed by a producer are inflated on decoding.
//!
//! Received messages are cheap to build because a consumer decodes hundreds of thousands a
//! second: the body is a slice of the pull response (no copy), the topic is shared by the
//! messages of one response, and the properties stay in their wire form until something asks
//! for the whole map or changes one (single lookups such as `tags()` scan the wire text).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use ferrymq_protocol::body::MessageQueue;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::{msg_id, sys_flag, RecordIter, RecordView};

use crate::compression::Compression;
use crate::error::{ClientError, Result};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A message to send.
///
/// ```
/// use ferrymq_client::Message;
/// let msg = Message::new("Orders", "order 42 paid")
///     .with_tags("Paid")
///     .with_keys(["order-42"])
///     .with_property("region", "eu");
/// assert_eq!(msg.tags(), Some("Paid"));
/// ```
#[derive(Clone)]
pub struct Message {
    topic: Topic,
    body: Bytes,
    flag: i32,
    properties: Properties,
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.topic() == other.topic()
            && self.body == other.body
            && self.flag == other.flag
            && self.properties() == other.properties()
    }
}

impl Eq for Message {}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("body", &self.body)
            .field("flag", &self.flag)
            .field("properties", self.properties())
            .finish()
    }
}

/// A topic name: owned for messages the application builds, shared by all the messages decoded
/// from one pull response (they nearly always have the same topic, and one allocation per
/// message for it showed up in consumer profiles).
#[derive(Clone)]
enum Topic {
    Owned(String),
    Shared(Arc<str>),
}

impl Topic {
    fn as_str(&self) -> &str {
        match self {
            Topic::Owned(s) => s,
            Topic::Shared(s) => s,
        }
    }
}

/// Message properties.
///
/// Applications' messages hold a map. Received messages keep the wire text (`name U+0001 value
/// U+0002…`) borrowed from the pull response and build the map only when it is asked for
/// (`properties()`) or changed; until then single lookups scan the text, which is short. The
/// map built for `properties()` is cached so it is built at most once.
#[derive(Clone, Default)]
struct Properties {
    /// The authoritative map: always for built messages, and for received ones once changed.
    owned: Option<BTreeMap<String, String>>,
    /// Received messages (while `owned` is `None`): the record's properties text…
    wire: Bytes,
    /// …and properties the client adds to every message of a pull (MIN_OFFSET/MAX_OFFSET),
    /// shared by the whole batch. Pairs here win over the record's, like a later `put`.
    wire_extra: Bytes,
    /// `wire` + `wire_extra` parsed, built on first use of the whole map.
    parsed: OnceLock<BTreeMap<String, String>>,
}

impl Properties {
    fn from_map(map: BTreeMap<String, String>) -> Properties {
        Properties {
            owned: Some(map),
            ..Properties::default()
        }
    }

    /// Wire text that the caller has checked to be UTF-8 (record properties are checked when
    /// the record is parsed).
    fn from_wire(wire: Bytes) -> Properties {
        Properties {
            wire,
            ..Properties::default()
        }
    }

    fn wire_str(bytes: &Bytes) -> &str {
        // Checked when the message was decoded; an empty string is the panic-free fallback.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    fn parse_wire(&self) -> BTreeMap<String, String> {
        properties::iter(Self::wire_str(&self.wire))
            .chain(properties::iter(Self::wire_str(&self.wire_extra)))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn get(&self, name: &str) -> Option<&str> {
        if let Some(map) = &self.owned {
            return map.get(name).map(String::as_str);
        }
        if let Some(map) = self.parsed.get() {
            return map.get(name).map(String::as_str);
        }
        properties::get(Self::wire_str(&self.wire_extra), name)
            .or_else(|| properties::get(Self::wire_str(&self.wire), name))
    }

    fn map(&self) -> &BTreeMap<String, String> {
        match &self.owned {
            Some(map) => map,
            None => self.parsed.get_or_init(|| self.parse_wire()),
        }
    }

    fn map_mut(&mut self) -> &mut BTreeMap<String, String> {
        if self.owned.is_none() {
            let map = self.parsed.take().unwrap_or_else(|| self.parse_wire());
            // The response buffer need not be kept alive for the text any more.
            self.wire = Bytes::new();
            self.wire_extra = Bytes::new();
            self.owned = Some(map);
        }
        self.owned.get_or_insert_with(BTreeMap::new)
    }

    /// Sets the pull-added pairs of a received message without building its map.
    fn set_extra(&mut self, extra: &Bytes, pairs: [(&str, &str); 2]) {
        match &mut self.owned {
            Some(map) => {
                for (k, v) in pairs {
                    map.insert(k.to_owned(), v.to_owned());
                }
            }
            None => {
                self.wire_extra = extra.clone();
                self.parsed = OnceLock::new();
            }
        }
    }
}

impl Message {
    /// A message for `topic`. Like Java's, it asks the broker to confirm storage (`WAIT=true`).
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Message {
        let mut properties = BTreeMap::new();
        properties.insert(keys::WAIT_STORE_MSG_OK.to_owned(), "true".to_owned());
        Message {
            topic: Topic::Owned(topic.into()),
            body: body.into(),
            flag: 0,
            properties: Properties::from_map(properties),
        }
    }

    /// Sets the tag (one per message; consumers filter by it).
    pub fn with_tags(self, tags: impl Into<String>) -> Message {
        self.with_property(keys::TAGS, tags)
    }

    /// Sets the business keys; each is indexed by the broker and can be queried.
    pub fn with_keys<I, K>(self, keys_iter: I) -> Message
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let joined = keys_iter
            .into_iter()
            .map(|k| k.as_ref().to_owned())
            .filter(|k| !k.is_empty())
            .collect::<Vec<_>>()
            .join(keys::KEY_SEPARATOR);
        self.with_property(keys::KEYS, joined)
    }

    /// Sets a property (user or system). Empty names or values are ignored, as no reader would
    /// see them.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.set_property(name, value);
        self
    }

    /// Delays delivery by a broker delay level (1..=18: 1s 5s 10s 30s 1m … 2h).
    pub fn with_delay_level(self, level: i32) -> Message {
        self.with_property(keys::DELAY_TIME_LEVEL, level.to_string())
    }

    /// Delivers at an absolute time (5.x timer messages, `TIMER_DELIVER_MS`).
    pub fn with_deliver_time(self, at: SystemTime) -> Message {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.with_property(keys::TIMER_DELIVER_MS, ms.to_string())
    }

    /// Delivers after `delay` (5.x timer messages, `TIMER_DELAY_MS`).
    pub fn with_delay(self, delay: Duration) -> Message {
        self.with_property(keys::TIMER_DELAY_MS, delay.as_millis().to_string())
    }

    /// Sets the sharding key of an ordered message (`__SHARDINGKEY`).
    pub fn with_sharding_key(self, key: impl Into<String>) -> Message {
        self.with_property(keys::SHARDING_KEY, key)
    }

    /// Whether the broker should wait for flush/replication before answering (default true).
    pub fn with_wait_store_ok(self, wait: bool) -> Message {
        self.with_property(keys::WAIT_STORE_MSG_OK, wait.to_string())
    }

    /// Sets the user flag (an opaque int carried with the message).
    pub fn with_flag(mut self, flag: i32) -> Message {
        self.flag = flag;
        self
    }

    /// Sets a property in place.
    pub fn set_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        if !name.is_empty() && !value.is_empty() {
            self.properties.map_mut().insert(name, value);
        }
    }

    /// Removes a property, returning its value.
    pub fn remove_property(&mut self, name: &str) -> Option<String> {
        // Nothing to remove: keep a received message's properties in wire form.
        self.properties.get(name)?;
        self.properties.map_mut().remove(name)
    }

    /// Changes the topic.
    pub fn set_topic(&mut self, topic: impl Into<String>) {
        self.topic = Topic::Owned(topic.into());
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The user flag.
    pub fn flag(&self) -> i32 {
        self.flag
    }

    /// All properties.
    pub fn properties(&self) -> &BTreeMap<String, String> {
        self.properties.map()
    }

    /// One property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name)
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.property(keys::TAGS)
    }

    /// The business keys.
    pub fn keys(&self) -> Vec<&str> {
        self.property(keys::KEYS)
            .unwrap_or("")
            .split(keys::KEY_SEPARATOR)
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// The delay level, 0 when not delayed.
    pub fn delay_level(&self) -> i32 {
        self.property(keys::DELAY_TIME_LEVEL)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Whether this is a reply of request-reply (`MSG_TYPE=reply`, see
    /// [`MessageExt::create_reply`]); producers send it with SEND_REPLY_MESSAGE_V2.
    pub fn is_reply(&self) -> bool {
        self.property(keys::MESSAGE_TYPE) == Some(REPLY_MESSAGE_FLAG)
    }

    /// The client-generated unique id (`UNIQ_KEY`), set by the producer when sending.
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
    }

    /// Whether the broker waits for storage before answering.
    pub fn wait_store_ok(&self) -> bool {
        self.property(keys::WAIT_STORE_MSG_OK)
            .is_none_or(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The properties in the wire format (sorted by name, transient ones left out).
    pub(crate) fn encode_properties(&self) -> String {
        properties::encode(
            self.properties
                .map()
                .iter()
                .filter(|(k, _)| !k.starts_with(keys::TRANSIENT_PREFIX))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// A message as stored by a broker: the [`Message`] plus its storage coordinates. Dereferences to
/// the message, so `msg.topic()`, `msg.body()`, `msg.tags()` work directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// Topic, (inflated) body, flag and properties.
    pub message: Message,
    /// The broker name the message was pulled from (empty when unknown, e.g. view by id).
    pub broker_name: String,
    /// Queue id within the topic.
    pub queue_id: i32,
    /// Logical offset within the queue.
    pub queue_offset: i64,
    /// Physical offset in the broker's commit log.
    pub commit_log_offset: i64,
    /// Record `SYSFLAG` (with the compression bit cleared once the body is inflated).
    pub sys_flag: i32,
    /// Producer timestamp (ms).
    pub born_timestamp: i64,
    /// Producer address as the broker saw it.
    pub born_host: SocketAddr,
    /// Broker timestamp (ms).
    pub store_timestamp: i64,
    /// Broker address that stored the message.
    pub store_host: SocketAddr,
    /// How often the message has been redelivered.
    pub reconsume_times: i32,
    /// For committed transaction messages: the half message's commit-log offset.
    pub prepared_transaction_offset: i64,
    /// CRC32 of the stored body.
    pub body_crc: i32,
    /// The broker-assigned id (store host + commit-log offset).
    pub offset_msg_id: String,
}

impl std::ops::Deref for MessageExt {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

impl std::ops::DerefMut for MessageExt {
    fn deref_mut(&mut self) -> &mut Message {
        &mut self.message
    }
}

/// `MSG_TYPE` of a reply message.
pub(crate) const REPLY_MESSAGE_FLAG: &str = "reply";

/// Java's `InetSocketAddress` text (`/ip:port`, or `host/ip:port`) as an address; unspecified
/// when unreadable (the address is informational).
fn java_socket_addr(text: &str) -> SocketAddr {
    text.rsplit('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

impl MessageExt {
    /// The message as JSON, mqadmin's field names (`msgId`, `offsetMsgId`, `queueOffset`,
    /// `storeTimestamp`, `properties`, ...): the body as text when it is UTF-8, else as hex
    /// (`bodyHex`), at most `body_limit` bytes of it (`bodyLength` is always the full size).
    pub fn to_json(&self, body_limit: usize) -> serde_json::Value {
        let body = self.body();
        let shown = &body[..body.len().min(body_limit)];
        // A cut may split a character: cut back to the last whole one.
        let text = match std::str::from_utf8(shown) {
            Ok(t) => Some(t),
            Err(e) if e.error_len().is_none() && shown.len() < body.len() => {
                std::str::from_utf8(&shown[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        let mut v = serde_json::json!({
            "msgId": self.msg_id(),
            "offsetMsgId": self.offset_msg_id,
            "topic": self.topic(),
            "tags": self.tags(),
            "keys": self.keys(),
            "brokerName": self.broker_name,
            "queueId": self.queue_id,
            "queueOffset": self.queue_offset,
            "commitLogOffset": self.commit_log_offset,
            "reconsumeTimes": self.reconsume_times,
            "bornTimestamp": self.born_timestamp,
            "storeTimestamp": self.store_timestamp,
            "bornHost": self.born_host.to_string(),
            "storeHost": self.store_host.to_string(),
            "sysFlag": self.sys_flag,
            "properties": self.properties(),
            "bodyLength": body.len(),
            "body": text,
        });
        if text.is_none() {
            v["bodyHex"] =
                serde_json::json!(shown.iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
        v
    }

    /// Builds the reply to this request message (Java's `MessageUtil.createReplyMessage`):
    /// addressed to `<cluster>_REPLY_TOPIC` of the cluster that stored the request, with the
    /// request's correlation id, requester and TTL. Send it with any producer; the broker
    /// pushes it to the waiting [`crate::Producer::request`].
    pub fn create_reply(&self, body: impl Into<Bytes>) -> Result<Message> {
        let cluster = self.property(keys::CLUSTER).ok_or_else(|| {
            ClientError::InvalidMessage(format!(
                "create reply message fail, requestMessage error, property[{}] is null",
                keys::CLUSTER
            ))
        })?;
        let mut reply = Message::new(ferrymq_protocol::naming::reply_topic(cluster), body);
        for key in [
            keys::CORRELATION_ID,
            keys::MESSAGE_REPLY_TO_CLIENT,
            keys::MESSAGE_TTL,
        ] {
            if let Some(v) = self.property(key) {
                reply.set_property(key, v.to_owned());
            }
        }
        reply.set_property(keys::MESSAGE_TYPE, REPLY_MESSAGE_FLAG);
        Ok(reply)
    }

    /// A reply a broker pushed (PUSH_REPLY_MESSAGE_TO_CLIENT), its body inflated.
    pub(crate) fn from_pushed_reply(
        h: &ferrymq_protocol::header::ReplyMessageRequestHeader,
        body: Bytes,
    ) -> Result<MessageExt> {
        let mut sys = h.sys_flag;
        let body = match Compression::of_sys_flag(sys)? {
            Some(codec) => {
                sys &= !(sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK);
                Bytes::from(codec.decompress(&body)?)
            }
            None => body,
        };
        let props = h.properties.clone().unwrap_or_default();
        let store_host = java_socket_addr(&h.store_host);
        Ok(MessageExt {
            message: Message {
                topic: Topic::Owned(h.topic.clone()),
                body,
                flag: h.flag,
                properties: if props.is_empty() {
                    Properties::default()
                } else {
                    Properties::from_wire(Bytes::from(props))
                },
            },
            broker_name: String::new(),
            queue_id: h.queue_id,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: sys,
            born_timestamp: h.born_timestamp,
            born_host: java_socket_addr(&h.born_host),
            store_timestamp: h.store_timestamp,
            store_host,
            reconsume_times: h.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
            body_crc: 0,
            offset_msg_id: String::new(),
        })
    }

    /// The id applications know a message by: its `UNIQ_KEY`, else the offset id.
    pub fn msg_id(&self) -> &str {
        self.message.uniq_key().unwrap_or(&self.offset_msg_id)
    }

    /// The queue the message was read from.
    pub fn queue(&self) -> MessageQueue {
        MessageQueue {
            topic: self.message.topic().to_owned(),
            broker_name: self.broker_name.clone(),
            queue_id: self.queue_id,
        }
    }

    /// Decodes one commit-log record (inflating a compressed body). The body and properties
    /// are copied out of `view`; decoding a whole response with [`MessageExt::decode_bytes`]
    /// shares its buffer instead.
    pub fn decode(view: &RecordView<'_>, broker_name: &str) -> Result<MessageExt> {
        let record = Bytes::copy_from_slice(view.as_bytes());
        let view = RecordView::parse(&record)
            .map_err(|e| ClientError::Malformed(format!("record: {e}")))?;
        let topic = Topic::Owned(view.topic().to_owned());
        MessageExt::decode_shared(&view, &record, topic, broker_name)
    }

    /// Decodes a record whose bytes are part of `buf` (so the body and properties can be
    /// slices of it).
    fn decode_shared(
        view: &RecordView<'_>,
        buf: &Bytes,
        topic: Topic,
        broker_name: &str,
    ) -> Result<MessageExt> {
        let mut sys = view.sys_flag();
        let raw = view.body();
        let body = match Compression::of_sys_flag(sys)? {
            Some(codec) => {
                sys &= !(sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK);
                Bytes::from(codec.decompress(raw)?)
            }
            None => buf.slice_ref(raw),
        };
        // `RecordView::parse` checked that the properties are UTF-8.
        let props = view.properties();
        let properties = if props.is_empty() {
            Properties::default()
        } else {
            Properties::from_wire(buf.slice_ref(props.as_bytes()))
        };
        let store_host = view.store_host();
        let physical_offset = view.physical_offset();
        Ok(MessageExt {
            message: Message {
                topic,
                body,
                flag: view.flag(),
                properties,
            },
            broker_name: broker_name.to_owned(),
            queue_id: view.queue_id(),
            queue_offset: view.queue_offset(),
            commit_log_offset: physical_offset,
            sys_flag: sys,
            born_timestamp: view.born_timestamp(),
            born_host: view.born_host(),
            store_timestamp: view.store_timestamp(),
            store_host,
            reconsume_times: view.reconsume_times(),
            prepared_transaction_offset: view.prepared_transaction_offset(),
            body_crc: view.body_crc(),
            offset_msg_id: msg_id::offset_msg_id(&store_host, physical_offset),
        })
    }

    /// Decodes every record of a pull/query body. A malformed record ends the list (as the Java
    /// client silently stops) after the records before it.
    pub fn decode_all(body: &[u8], broker_name: &str) -> Vec<MessageExt> {
        MessageExt::decode_bytes(&Bytes::copy_from_slice(body), broker_name)
    }

    /// [`MessageExt::decode_all`] without copying: the messages' bodies and properties are
    /// slices of `body`, which stays allocated while any of them lives.
    pub fn decode_bytes(body: &Bytes, broker_name: &str) -> Vec<MessageExt> {
        let mut out = Vec::new();
        let mut topic: Option<Arc<str>> = None;
        for view in RecordIter::new(body) {
            match view {
                Ok(view) => {
                    let shared = match &topic {
                        Some(t) if **t == *view.topic() => t.clone(),
                        _ => topic.insert(Arc::from(view.topic())).clone(),
                    };
                    match MessageExt::decode_shared(&view, body, Topic::Shared(shared), broker_name)
                    {
                        Ok(m) => out.push(m),
                        Err(e) => tracing::warn!(error = %e, "skipping an undecodable message"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "malformed record in a message body");
                    break;
                }
            }
        }
        out
    }

    /// Adds the MIN_OFFSET/MAX_OFFSET pairs a pull gives every message. `extra` is their wire
    /// form, built once per pull and shared by its messages.
    pub(crate) fn set_pull_offsets(&mut self, extra: &Bytes, min: &str, max: &str) {
        self.message
            .properties
            .set_extra(extra, [(keys::MIN_OFFSET, min), (keys::MAX_OFFSET, max)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::message::MessageRecord;

    #[test]
    fn builder_sets_well_known_properties() {
        let m = Message::new("T", "b")
            .with_tags("A")
            .with_keys(["k1", "", "k2"])
            .with_delay_level(3)
            .with_wait_store_ok(false)
            .with_flag(7);
        assert_eq!(m.tags(), Some("A"));
        assert_eq!(m.keys(), ["k1", "k2"]);
        assert_eq!(m.delay_level(), 3);
        assert!(!m.wait_store_ok());
        assert_eq!(m.flag(), 7);
        let props = m.encode_properties();
        assert_eq!(properties::get(&props, "KEYS"), Some("k1 k2"));
        assert_eq!(properties::get(&props, "WAIT"), Some("false"));
        let t = m
            .with_property("__RMQ.TRANSIENT.X", "1")
            .encode_properties();
        assert!(!t.contains("TRANSIENT"));
    }

    fn record(props: &str, body: &[u8], offset: i64) -> Vec<u8> {
        MessageRecord {
            topic: "T",
            queue_id: 1,
            flag: 3,
            queue_offset: offset,
            physical_offset: 100 + offset,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "1.2.3.4:5".parse().unwrap(),
            store_timestamp: 2,
            store_host: "10.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            body_crc: None,
            properties: props,
        }
        .to_vec()
        .unwrap()
    }

    #[test]
    fn received_messages_share_the_response_and_read_wire_properties() {
        // UNIQ_KEY twice: the later pair wins, as in Java's map.
        let props = properties::encode([("TAGS", "A"), ("UNIQ_KEY", "U0"), ("UNIQ_KEY", "U1")]);
        let mut buf = record(&props, b"hello", 7);
        buf.extend_from_slice(&record("", b"world", 8));
        let buf = Bytes::from(buf);
        let mut msgs = MessageExt::decode_bytes(&buf, "b");
        assert_eq!(msgs.len(), 2);
        let range = buf.as_ptr_range();
        assert!(range.contains(&msgs[0].body().as_ptr()), "body not copied");
        assert_eq!(&msgs[0].body()[..], b"hello");
        assert_eq!(msgs[0].tags(), Some("A"));
        assert_eq!(msgs[0].msg_id(), "U1");
        assert_eq!(msgs[0].flag(), 3);
        assert_eq!(msgs[1].property("TAGS"), None);
        assert_eq!(msgs[1].msg_id(), msgs[1].offset_msg_id);
        assert_eq!(msgs[1].offset_msg_id, "0A00000100002A9F000000000000006C");

        let extra = Bytes::from(properties::encode([
            ("MIN_OFFSET", "0"),
            ("MAX_OFFSET", "9"),
        ]));
        for m in &mut msgs {
            m.set_pull_offsets(&extra, "0", "9");
        }
        let m = &msgs[0];
        assert_eq!(m.property("MAX_OFFSET"), Some("9"));
        let expected: BTreeMap<String, String> = [
            ("MAX_OFFSET", "9"),
            ("MIN_OFFSET", "0"),
            ("TAGS", "A"),
            ("UNIQ_KEY", "U1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(m.properties(), &expected);
        assert_eq!(msgs[1].properties().len(), 2);

        // Changing a property turns the wire form into a map that keeps everything else.
        let mut changed = m.clone();
        assert_eq!(&changed, m);
        changed.set_property("TAGS", "B");
        assert_eq!(changed.tags(), Some("B"));
        assert_eq!(changed.uniq_key(), Some("U1"));
        assert_eq!(changed.remove_property("MIN_OFFSET").as_deref(), Some("0"));
        assert_eq!(changed.remove_property("nope"), None);
        assert_eq!(changed.properties().len(), 3);
        assert_ne!(&changed, m);
        assert_eq!(m.tags(), Some("A"), "the original is untouched");
        assert!(format!("{m:?}").contains("UNIQ_KEY"));

        // Re-encoding for a send sees the effective properties.
        let wire = changed.encode_properties();
        assert_eq!(properties::get(&wire, "TAGS"), Some("B"));
        assert_eq!(properties::get(&wire, "MIN_OFFSET"), None);

        // `decode` of one view copies, with the same result.
        let view = RecordView::parse(&buf).unwrap();
        let single = MessageExt::decode(&view, "b").unwrap();
        assert_eq!(single.message, MessageExt::decode_all(&buf, "b")[0].message);
        assert!(!range.contains(&single.body().as_ptr()));
    }

    #[test]
    fn decodes_compressed_records() {
        for codec in [Compression::Zlib, Compression::Lz4, Compression::Zstd] {
            decodes_compressed_record(codec);
        }
    }

    fn decodes_compressed_record(codec: Compression) {
        let body = vec![b'x'; 10_000];
        let packed = codec.compress(&body).unwrap();
        let props = properties::encode([("TAGS", "A"), ("UNIQ_KEY", "U1")]);
        let rec = MessageRecord {
            topic: "T",
            queue_id: 2,
            flag: 0,
            queue_offset: 5,
            physical_offset: 100,
            sys_flag: codec.sys_flag(),
            born_timestamp: 1,
            born_host: "1.2.3.4:5".parse().unwrap(),
            store_timestamp: 2,
            store_host: "10.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &packed,
            body_crc: None,
            properties: &props,
        };
        let mut bytes = rec.to_vec().unwrap();
        bytes.extend_from_slice(&bytes.clone());
        let msgs = MessageExt::decode_all(&bytes, "b");
        assert_eq!(msgs.len(), 2);
        let m = &msgs[0];
        assert_eq!(&m.body()[..], &body[..]);
        assert_eq!(
            m.sys_flag & (sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK),
            0
        );
        assert_eq!(m.msg_id(), "U1");
        assert_eq!(m.tags(), Some("A"));
        assert_eq!(m.queue().queue_id, 2);
        assert_eq!(m.offset_msg_id, "0A00000100002A9F0000000000000064");
        // A torn tail stops decoding after the good records.
        let torn = &bytes[..bytes.len() - 3];
        assert_eq!(MessageExt::decode_all(torn, "b").len(), 1);
    }
}
