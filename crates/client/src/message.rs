//! Messages as applications see them: [`Message`] to send, [`MessageExt`] as received.
//!
//! A `Message` is a topic, a body, a user flag and a property map; the well-known properties
//! (tags, keys, delay level, delivery time, sharding key…) have typed setters so applications
//! never spell RocketMQ's property names. A `MessageExt` is a message decoded from a commit-log
//! record (pull, query, view-by-id, transaction check) together with where and when it was
//! stored. Bodies compressed by a producer are inflated on decoding.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use ferrymq_protocol::body::MessageQueue;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::{sys_flag, RecordIter, RecordView};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: String,
    body: Bytes,
    flag: i32,
    properties: BTreeMap<String, String>,
}

impl Message {
    /// A message for `topic`. Like Java's, it asks the broker to confirm storage (`WAIT=true`).
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Message {
        let mut properties = BTreeMap::new();
        properties.insert(keys::WAIT_STORE_MSG_OK.to_owned(), "true".to_owned());
        Message {
            topic: topic.into(),
            body: body.into(),
            flag: 0,
            properties,
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
            self.properties.insert(name, value);
        }
    }

    /// Removes a property, returning its value.
    pub fn remove_property(&mut self, name: &str) -> Option<String> {
        self.properties.remove(name)
    }

    /// Changes the topic.
    pub fn set_topic(&mut self, topic: impl Into<String>) {
        self.topic = topic.into();
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
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
        &self.properties
    }

    /// One property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
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

impl MessageExt {
    /// The id applications know a message by: its `UNIQ_KEY`, else the offset id.
    pub fn msg_id(&self) -> &str {
        self.message.uniq_key().unwrap_or(&self.offset_msg_id)
    }

    /// The queue the message was read from.
    pub fn queue(&self) -> MessageQueue {
        MessageQueue {
            topic: self.message.topic.clone(),
            broker_name: self.broker_name.clone(),
            queue_id: self.queue_id,
        }
    }

    /// Decodes one commit-log record (inflating a compressed body).
    pub fn decode(view: &RecordView<'_>, broker_name: &str) -> Result<MessageExt> {
        let mut sys = view.sys_flag();
        let raw = view.body();
        let body = if sys & sys_flag::COMPRESSED != 0 {
            match sys & sys_flag::COMPRESSION_TYPE_MASK {
                sys_flag::COMPRESSION_LEGACY_ZLIB | sys_flag::COMPRESSION_ZLIB => {
                    sys &= !sys_flag::COMPRESSED;
                    Bytes::from(inflate(raw)?)
                }
                // LZ4/ZSTD bodies are handed over as stored; the flag tells the caller.
                _ => Bytes::copy_from_slice(raw),
            }
        } else {
            Bytes::copy_from_slice(raw)
        };
        let properties = properties::iter(view.properties())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(MessageExt {
            message: Message {
                topic: view.topic().to_owned(),
                body,
                flag: view.flag(),
                properties,
            },
            broker_name: broker_name.to_owned(),
            queue_id: view.queue_id(),
            queue_offset: view.queue_offset(),
            commit_log_offset: view.physical_offset(),
            sys_flag: sys,
            born_timestamp: view.born_timestamp(),
            born_host: view.born_host(),
            store_timestamp: view.store_timestamp(),
            store_host: view.store_host(),
            reconsume_times: view.reconsume_times(),
            prepared_transaction_offset: view.prepared_transaction_offset(),
            body_crc: view.body_crc(),
            offset_msg_id: view.offset_msg_id(),
        })
    }

    /// Decodes every record of a pull/query body. A malformed record ends the list (as the Java
    /// client silently stops) after the records before it.
    pub fn decode_all(body: &[u8], broker_name: &str) -> Vec<MessageExt> {
        let mut out = Vec::new();
        for view in RecordIter::new(body) {
            match view {
                Ok(view) => match MessageExt::decode(&view, broker_name) {
                    Ok(m) => out.push(m),
                    Err(e) => tracing::warn!(error = %e, "skipping an undecodable message"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "malformed record in a message body");
                    break;
                }
            }
        }
        out
    }
}

/// zlib-compresses `data` (level 5, what Java uses).
pub(crate) fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Largest body inflated (guards against zip bombs): far above the 4 MiB message limit.
const MAX_INFLATED: u64 = 64 << 20;

fn inflate(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_INFLATED)
        .read_to_end(&mut out)
        .map_err(|e| ClientError::Malformed(format!("compressed body does not inflate: {e}")))?;
    Ok(out)
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

    #[test]
    fn decodes_compressed_records() {
        let body = vec![b'x'; 10_000];
        let packed = deflate(&body);
        let props = properties::encode([("TAGS", "A"), ("UNIQ_KEY", "U1")]);
        let rec = MessageRecord {
            topic: "T",
            queue_id: 2,
            flag: 0,
            queue_offset: 5,
            physical_offset: 100,
            sys_flag: sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB,
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
        assert_eq!(m.sys_flag & sys_flag::COMPRESSED, 0);
        assert_eq!(m.msg_id(), "U1");
        assert_eq!(m.tags(), Some("A"));
        assert_eq!(m.queue().queue_id, 2);
        assert_eq!(m.offset_msg_id, "0A00000100002A9F0000000000000064");
        // A torn tail stops decoding after the good records.
        let torn = &bytes[..bytes.len() - 3];
        assert_eq!(MessageExt::decode_all(torn, "b").len(), 1);
    }
}
