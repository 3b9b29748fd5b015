//! Bodies of the client ↔ broker group protocol: heartbeats and subscriptions, consumer lists,
//! queue locks, group configs, connections and consume statistics.
//!
//! Heartbeats arrive from every client family with its own accent (C++ writes enums as ordinals
//! and `subVersion` as a string, Go may send `"UNKNOWN"`), so the enums and numbers here read
//! leniently and write the Java form.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! lenient_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),* $(,)? } default $default:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The Java enum name.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            /// Parses a Java enum name; `None` if unknown.
            pub fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            /// Accepts the name, the ordinal (C++), or anything else as the default, as the
            /// Java server's fastjson does not reject such heartbeats either.
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name or ordinal"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::from_name(v).unwrap_or_default())
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        Ok(usize::try_from(v).ok().and_then(|i| $name::ALL.get(i).copied()).unwrap_or_default())
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_i64(v as i64)
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

lenient_enum! {
    /// How a consumer gets messages.
    ConsumeType {
        /// Pull and lite-pull consumers.
        Actively = "CONSUME_ACTIVELY",
        /// Push consumers.
        #[default]
        Passively = "CONSUME_PASSIVELY",
        Pop = "CONSUME_POP",
    } default Passively
}

lenient_enum! {
    /// Whether a group shares its queues or every member reads everything.
    MessageModel {
        Broadcasting = "BROADCASTING",
        #[default]
        Clustering = "CLUSTERING",
    } default Clustering
}

lenient_enum! {
    /// Where a new group starts reading.
    ConsumeFromWhere {
        #[default]
        LastOffset = "CONSUME_FROM_LAST_OFFSET",
        LastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        MinOffset = "CONSUME_FROM_MIN_OFFSET",
        MaxOffset = "CONSUME_FROM_MAX_OFFSET",
        FirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        Timestamp = "CONSUME_FROM_TIMESTAMP",
    } default LastOffset
}

/// Reads an i64 given as a number or a numeric string (C++ sends `subVersion` as a string).
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or a numeric string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(v as i64)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            Ok(v as i64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            Ok(v.trim().parse().unwrap_or(0))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

/// One subscription of a consumer group to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub topic: String,
    pub sub_string: String,
    pub tags_set: Vec<String>,
    pub code_set: Vec<i32>,
    #[serde(deserialize_with = "lenient_i64")]
    pub sub_version: i64,
    pub expression_type: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            topic: String::new(),
            sub_string: "*".to_owned(),
            tags_set: Vec::new(),
            code_set: Vec::new(),
            sub_version: 0,
            expression_type: "TAG".to_owned(),
        }
    }
}

/// A consumer group as one client describes it in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub group_name: String,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

/// A producer group of a client.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    pub group_name: String,
}

/// HEART_BEAT body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub producer_data_set: Vec<ProducerData>,
    pub consumer_data_set: Vec<ConsumerData>,
    #[serde(deserialize_with = "lenient_i64")]
    pub heartbeat_fingerprint: i64,
    pub without_sub: bool,
}

/// A message queue: identity (topic, brokerName, queueId). Fields are declared in fastjson's
/// alphabetical order so the JSON matches Java's byte for byte; ordering is Java's (topic, then
/// broker name, then queue id), which rebalance allocation depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

impl Ord for MessageQueue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.topic, &self.broker_name, self.queue_id).cmp(&(
            &other.topic,
            &other.broker_name,
            other.queue_id,
        ))
    }
}

impl PartialOrd for MessageQueue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// GET_CONSUMER_LIST_BY_GROUP response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerIdList {
    pub consumer_id_list: Vec<String>,
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ request body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    pub only_this_broker: bool,
    pub mq_set: Vec<MessageQueue>,
}

/// LOCK_BATCH_MQ response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// A consumer group's broker-side configuration (subscriptionGroup.json entries). Fields this
/// build does not know are kept so a file written by Java survives a round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    pub consume_message_orderly: bool,
    pub retry_queue_nums: i32,
    pub retry_max_times: i32,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    pub group_sys_flag: i32,
    pub consume_timeout_minute: i32,
    pub attributes: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            attributes: BTreeMap::new(),
            extra: serde_json::Map::new(),
        }
    }
}

impl SubscriptionGroupConfig {
    pub fn new(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            ..Default::default()
        }
    }
}

/// One client connection as admin tools see it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientConnection {
    pub client_id: String,
    pub client_addr: String,
    pub language: String,
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    pub connection_set: Vec<ClientConnection>,
    pub subscription_table: BTreeMap<String, SubscriptionData>,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
}

/// GET_PRODUCER_CONNECTION_LIST response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    pub connection_set: Vec<ClientConnection>,
}

/// subscriptionGroup.json / GET_ALL_SUBSCRIPTIONGROUP_CONFIG body: every group a broker knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub data_version: super::DataVersion,
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

/// Offsets of one queue in GET_TOPIC_STATS_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    pub min_offset: i64,
    pub max_offset: i64,
    pub last_update_timestamp: i64,
}

/// Progress of a group on one queue in GET_CONSUME_STATS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    pub broker_offset: i64,
    pub consumer_offset: i64,
    pub pull_offset: i64,
    pub last_timestamp: i64,
}

/// Writes a map keyed by message queues the way fastjson does by default: each key is the
/// queue's JSON object itself (not valid standard JSON, but what Java admin tools parse).
pub fn write_mq_keyed_map<V: Serialize>(
    out: &mut String,
    map: &BTreeMap<MessageQueue, V>,
) -> Result<(), serde_json::Error> {
    out.push('{');
    for (i, (mq, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(mq)?);
        out.push(':');
        out.push_str(&serde_json::to_string(v)?);
    }
    out.push('}');
    Ok(())
}

/// GET_TOPIC_STATS_INFO body: `{"offsetTable":{{mq}:{...}},"topicPutTps":0.0}`.
pub fn encode_topic_stats(
    table: &BTreeMap<MessageQueue, TopicOffset>,
) -> Result<String, serde_json::Error> {
    let mut out = String::from("{\"offsetTable\":");
    write_mq_keyed_map(&mut out, table)?;
    out.push_str(",\"topicPutTps\":0.0}");
    Ok(out)
}

/// GET_CONSUME_STATS body: `{"consumeTps":…,"offsetTable":{{mq}:{...}}}`.
pub fn encode_consume_stats(
    consume_tps: f64,
    table: &BTreeMap<MessageQueue, OffsetWrapper>,
) -> Result<String, serde_json::Error> {
    let mut out = format!("{{\"consumeTps\":{consume_tps:?},\"offsetTable\":");
    write_mq_keyed_map(&mut out, table)?;
    out.push('}');
    Ok(out)
}

/// Reset-offset body: `{"offsetTable":{{mq}:offset}}`.
pub fn encode_reset_offset_body(
    table: &BTreeMap<MessageQueue, i64>,
) -> Result<String, serde_json::Error> {
    let mut out = String::from("{\"offsetTable\":");
    write_mq_keyed_map(&mut out, table)?;
    out.push('}');
    Ok(out)
}

/// Reads a map keyed by message queues from fastjson text, in the object-keyed form
/// [`write_mq_keyed_map`] writes (or standard JSON with the map as `[key, value]` pairs).
/// `field` names the map inside the top-level object; the whole object is returned alongside.
fn read_mq_keyed_field<V: serde::de::DeserializeOwned>(
    text: &str,
    field: &str,
) -> Result<(serde_json::Value, BTreeMap<MessageQueue, V>), super::BodyError> {
    let value: serde_json::Value = super::from_java_json(&super::object_keys_to_pairs(text))?;
    let mut map = BTreeMap::new();
    match value.get(field) {
        Some(serde_json::Value::Array(pairs)) => {
            for pair in pairs {
                let (mq, v): (MessageQueue, V) = serde_json::from_value(pair.clone())?;
                map.insert(mq, v);
            }
        }
        Some(serde_json::Value::Object(o)) if o.is_empty() => {}
        None | Some(serde_json::Value::Null) => {}
        Some(other) => {
            return Err(super::BodyError::Malformed(format!(
                "`{field}` is not a map keyed by message queues: {other}"
            )))
        }
    }
    Ok((value, map))
}

/// Parses a GET_TOPIC_STATS_INFO body (see [`encode_topic_stats`]).
pub fn decode_topic_stats(
    text: &str,
) -> Result<BTreeMap<MessageQueue, TopicOffset>, super::BodyError> {
    Ok(read_mq_keyed_field(text, "offsetTable")?.1)
}

/// Parses a GET_CONSUME_STATS body (see [`encode_consume_stats`]): consume TPS and the table.
pub fn decode_consume_stats(
    text: &str,
) -> Result<(f64, BTreeMap<MessageQueue, OffsetWrapper>), super::BodyError> {
    let (value, table) = read_mq_keyed_field(text, "offsetTable")?;
    let tps = value
        .get("consumeTps")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    Ok((tps, table))
}

/// Parses a reset-offset body (see [`encode_reset_offset_body`]); also the offsets file of a
/// broadcasting consumer, which has the same shape.
pub fn decode_reset_offset_body(
    text: &str,
) -> Result<BTreeMap<MessageQueue, i64>, super::BodyError> {
    Ok(read_mq_keyed_field(text, "offsetTable")?.1)
}

/// Reads an `int` the way fastjson does: numbers, numeric strings, null.
pub(crate) fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = lenient_i64(d)?;
    i32::try_from(v).map_err(|_| de::Error::custom(format!("{v} out of range for int")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_heartbeat_parses() {
        let raw = r#"{"clientID":"10.0.0.5@12345#1","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY",
 "groupName":"cg1","messageModel":"CLUSTERING",
 "subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG",
      "subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T1"}],
 "unitMode":false}],
 "heartbeatFingerprint":0, "producerDataSet":[{"groupName":"pg1"},{"groupName":"CLIENT_INNER_PRODUCER"}],
 "withoutSub":false}"#;
        let hb: HeartbeatData = serde_json::from_str(raw).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@12345#1");
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::Passively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscription_data_set[0].code_set, vec![2598919]);
        assert_eq!(c.subscription_data_set[0].sub_version, 1_700_000_000_000);
        assert_eq!(hb.producer_data_set.len(), 2);
    }

    #[test]
    fn cpp_heartbeat_with_ordinals_and_string_versions_parses() {
        let raw = r#"{"clientID":"cpp@1","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,
            "groupName":"g","messageModel":0,"subscriptionDataSet":[{"subString":"*","subVersion":"1700000000001",
            "tagsSet":[],"codeSet":[],"topic":"T"}]}],"producerDataSet":[]}"#;
        let hb: HeartbeatData = serde_json::from_str(raw).unwrap();
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_from_where, ConsumeFromWhere::FirstOffset);
        assert_eq!(c.consume_type, ConsumeType::Passively);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(c.subscription_data_set[0].sub_version, 1_700_000_000_001);
        assert_eq!(c.subscription_data_set[0].expression_type, "TAG");
    }

    #[test]
    fn go_unknown_enum_names_take_defaults() {
        let raw =
            r#"{"groupName":"g","consumeFromWhere":"UNKNOWN","consumeType":"CONSUME_ACTIVELY"}"#;
        let c: ConsumerData = serde_json::from_str(raw).unwrap();
        assert_eq!(c.consume_from_where, ConsumeFromWhere::LastOffset);
        assert_eq!(c.consume_type, ConsumeType::Actively);
    }

    #[test]
    fn lock_bodies_use_java_names() {
        let body = LockBatchResponseBody {
            lock_ok_mq_set: vec![MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: 1,
            }],
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"lockOKMQSet":[{"brokerName":"b","queueId":1,"topic":"T"}]}"#
        );
    }

    #[test]
    fn subscription_group_keeps_unknown_fields() {
        let raw =
            r#"{"groupName":"g1","retryMaxTimes":3,"groupRetryPolicy":{"type":"CUSTOMIZED"}}"#;
        let g: SubscriptionGroupConfig = serde_json::from_str(raw).unwrap();
        assert_eq!(g.retry_max_times, 3);
        assert!(g.consume_enable);
        let back = serde_json::to_value(&g).unwrap();
        assert_eq!(back["groupRetryPolicy"]["type"], "CUSTOMIZED");
    }

    #[test]
    fn mq_keyed_maps_use_object_keys() {
        let mut t = BTreeMap::new();
        t.insert(
            MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: 0,
            },
            5i64,
        );
        assert_eq!(
            encode_reset_offset_body(&t).unwrap(),
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:5}}"#
        );
        assert_eq!(
            decode_reset_offset_body(&encode_reset_offset_body(&t).unwrap()).unwrap(),
            t
        );
    }

    #[test]
    fn stats_bodies_round_trip() {
        let mq = MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: 3,
        };
        let mut stats = BTreeMap::new();
        stats.insert(
            mq.clone(),
            TopicOffset {
                min_offset: 1,
                max_offset: 9,
                last_update_timestamp: 7,
            },
        );
        assert_eq!(
            decode_topic_stats(&encode_topic_stats(&stats).unwrap()).unwrap(),
            stats
        );
        let mut consume = BTreeMap::new();
        consume.insert(
            mq,
            OffsetWrapper {
                broker_offset: 9,
                consumer_offset: 4,
                pull_offset: 5,
                last_timestamp: 0,
            },
        );
        let (tps, back) =
            decode_consume_stats(&encode_consume_stats(1.5, &consume).unwrap()).unwrap();
        assert_eq!((tps, back), (1.5, consume));
        assert!(
            decode_consume_stats(r#"{"consumeTps":0.0,"offsetTable":{}}"#)
                .unwrap()
                .1
                .is_empty()
        );
    }
}
