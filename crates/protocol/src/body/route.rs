//! Bodies of the NameServer protocol and of topic configuration: data versions, topic configs and
//! their registration wrapper (plain JSON and the zlib-compressed form), topic routes, cluster
//! info, topic/group lists and KV tables.
//!
//! Field names and order follow fastjson's alphabetical bean order. Route data is always written
//! with quoted broker-id keys, which every client family accepts; reading goes through
//! [`from_java_json`] so Java's unquoted keys parse too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::consumer::{lenient_i32, lenient_i64};
use super::java_json::from_java_json;
use crate::message::perm;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RocketMQ `DataVersion`: bumped on every change of a versioned table so peers can tell
/// whether they hold the latest copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    #[serde(deserialize_with = "lenient_i64")]
    pub counter: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub state_version: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub timestamp: i64,
}

impl DataVersion {
    /// A fresh version stamped now.
    pub fn new() -> DataVersion {
        DataVersion {
            counter: 0,
            state_version: 0,
            timestamp: now_ms(),
        }
    }

    /// Records a change: bump the counter, refresh the timestamp.
    pub fn next_version(&mut self) {
        self.counter += 1;
        self.timestamp = now_ms();
    }
}

/// `TopicFilterType` of a topic config.
pub const SINGLE_TAG: &str = "SINGLE_TAG";

/// One topic as a broker configures it (topics.json, registrations, admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub attributes: BTreeMap<String, String>,
    pub order: bool,
    #[serde(deserialize_with = "lenient_i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient_i32")]
    pub read_queue_nums: i32,
    pub topic_filter_type: String,
    pub topic_name: String,
    #[serde(deserialize_with = "lenient_i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient_i32")]
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: perm::READ | perm::WRITE,
            read_queue_nums: 16,
            topic_filter_type: SINGLE_TAG.to_owned(),
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: 16,
        }
    }
}

impl TopicConfig {
    /// A read-write topic with `queues` read and write queues.
    pub fn new(name: impl Into<String>, queues: i32) -> TopicConfig {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            ..TopicConfig::default()
        }
    }

    /// The single-line text form used inside compressed registrations:
    /// `name readQ writeQ perm filterType [attributesJson]`.
    pub fn encode_text(&self) -> String {
        let mut s = format!(
            "{} {} {} {} {}",
            self.topic_name,
            self.read_queue_nums,
            self.write_queue_nums,
            self.perm,
            self.topic_filter_type
        );
        if !self.attributes.is_empty() {
            s.push(' ');
            s.push_str(&serde_json::to_string(&self.attributes).unwrap_or_else(|_| "{}".into()));
        }
        s
    }

    /// Parses [`TopicConfig::encode_text`]'s form.
    pub fn decode_text(text: &str) -> Result<TopicConfig, BodyError> {
        let mut parts = text.splitn(6, ' ');
        let bad = || BodyError::Malformed(format!("bad topic config text: {text:?}"));
        let topic_name = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(bad)?
            .to_owned();
        let mut num = || -> Result<i32, BodyError> {
            parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)
        };
        let read_queue_nums = num()?;
        let write_queue_nums = num()?;
        let perm = num()?;
        let topic_filter_type = parts.next().unwrap_or(SINGLE_TAG).to_owned();
        let attributes = match parts.next() {
            Some(json) if !json.trim().is_empty() => from_java_json(json).map_err(|_| bad())?,
            _ => BTreeMap::new(),
        };
        Ok(TopicConfig {
            attributes,
            order: false,
            perm,
            read_queue_nums,
            topic_filter_type,
            topic_name,
            topic_sys_flag: 0,
            write_queue_nums,
        })
    }
}

/// A broker's whole topic table with its version (topics.json, GET_ALL_TOPIC_CONFIG, and the
/// inner part of a registration). The static-topic mapping fields are carried empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub data_version: DataVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_data_version: Option<DataVersion>,
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_detail_map: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_info_map: Option<BTreeMap<String, serde_json::Value>>,
}

impl TopicConfigSerializeWrapper {
    /// The shape GET_ALL_TOPIC_CONFIG answers with (TopicConfigAndMappingSerializeWrapper).
    pub fn with_mapping_fields(mut self) -> Self {
        self.mapping_data_version
            .get_or_insert_with(DataVersion::default);
        self.topic_queue_mapping_detail_map
            .get_or_insert_with(BTreeMap::new);
        self.topic_queue_mapping_info_map
            .get_or_insert_with(BTreeMap::new);
        self
    }
}

/// Errors reading a body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("malformed JSON body: {0}")]
    Json(#[from] serde_json::Error),
}

/// REGISTER_BROKER body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    pub filter_server_list: Vec<String>,
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

fn read_block<'a>(buf: &mut &'a [u8], what: &str) -> Result<&'a [u8], BodyError> {
    let short = || BodyError::Malformed(format!("compressed registration truncated at {what}"));
    if buf.len() < 4 {
        return Err(short());
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(len).map_err(|_| short())?;
    if buf.len() < 4 + len {
        return Err(short());
    }
    let block = &buf[4..4 + len];
    *buf = &buf[4 + len..];
    Ok(block)
}

fn read_count(buf: &mut &[u8], what: &str) -> Result<usize, BodyError> {
    if buf.len() < 4 {
        return Err(BodyError::Malformed(format!(
            "compressed registration truncated at {what}"
        )));
    }
    let n = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    *buf = &buf[4..];
    usize::try_from(n).map_err(|_| BodyError::Malformed(format!("negative {what}")))
}

/// Largest inflated registration accepted (guards against zip bombs).
const MAX_INFLATED: u64 = 256 << 20;

impl RegisterBrokerBody {
    /// Parses a registration body. `compressed` is the request's header flag; brokers older than
    /// V3_0_11 sent a bare [`TopicConfigSerializeWrapper`], which is accepted too.
    pub fn decode(body: &[u8], compressed: bool) -> Result<RegisterBrokerBody, BodyError> {
        if compressed {
            return Self::decode_compressed(body);
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| BodyError::Malformed("registration body is not UTF-8".into()))?;
        let value: serde_json::Value = from_java_json(text)?;
        if value.get("topicConfigSerializeWrapper").is_some()
            || value.get("filterServerList").is_some()
        {
            Ok(serde_json::from_value(value)?)
        } else {
            Ok(RegisterBrokerBody {
                filter_server_list: Vec::new(),
                topic_config_serialize_wrapper: serde_json::from_value(value)?,
            })
        }
    }

    fn decode_compressed(body: &[u8]) -> Result<RegisterBrokerBody, BodyError> {
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(body)
            .take(MAX_INFLATED)
            .read_to_end(&mut raw)
            .map_err(|e| BodyError::Malformed(format!("bad zlib stream: {e}")))?;
        let mut buf = raw.as_slice();
        let utf8 = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| BodyError::Malformed("not UTF-8".into()))
        };
        let data_version: DataVersion =
            from_java_json(&utf8(read_block(&mut buf, "data version")?)?)?;
        let topics = read_count(&mut buf, "topic count")?;
        let mut table = BTreeMap::new();
        for _ in 0..topics {
            let tc = TopicConfig::decode_text(&utf8(read_block(&mut buf, "topic config")?)?)?;
            table.insert(tc.topic_name.clone(), tc);
        }
        let filter_server_list = if buf.is_empty() {
            Vec::new()
        } else {
            from_java_json(&utf8(read_block(&mut buf, "filter servers")?)?)?
        };
        Ok(RegisterBrokerBody {
            filter_server_list,
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version,
                topic_config_table: table,
                ..Default::default()
            },
        })
    }

    /// JSON form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The zlib form (`compressed=true`), with an empty static-topic mapping section.
    pub fn encode_compressed(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut block = |bytes: &[u8]| {
            raw.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            raw.extend_from_slice(bytes);
        };
        let w = &self.topic_config_serialize_wrapper;
        block(&serde_json::to_vec(&w.data_version).unwrap_or_default());
        raw.extend_from_slice(&(w.topic_config_table.len() as i32).to_be_bytes());
        for tc in w.topic_config_table.values() {
            let text = tc.encode_text();
            raw.extend_from_slice(&(text.len() as i32).to_be_bytes());
            raw.extend_from_slice(text.as_bytes());
        }
        let filters = serde_json::to_vec(&self.filter_server_list).unwrap_or_default();
        raw.extend_from_slice(&(filters.len() as i32).to_be_bytes());
        raw.extend_from_slice(&filters);
        raw.extend_from_slice(&0i32.to_be_bytes());
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&raw);
        enc.finish().unwrap_or_default()
    }
}

/// The queues one broker name serves for a topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    pub broker_name: String,
    #[serde(deserialize_with = "lenient_i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient_i32")]
    pub read_queue_nums: i32,
    #[serde(deserialize_with = "lenient_i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient_i32")]
    pub write_queue_nums: i32,
}

/// A broker name (master/slave set) and the addresses of its members by broker id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    pub cluster: String,
    pub enable_acting_master: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The master's address, else the lowest-id member's (what clients pick for reads).
    pub fn select_addr(&self) -> Option<&str> {
        self.broker_addrs
            .get(&0)
            .or_else(|| self.broker_addrs.values().next())
            .map(String::as_str)
    }
}

/// The members of one broker name (GET_BROKER_MEMBER_GROUP).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerMemberGroup {
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    pub cluster: String,
}

/// GET_BROKER_MEMBER_GROUP body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetBrokerMemberGroupResponseBody {
    pub broker_member_group: BrokerMemberGroup,
}

/// GET_ROUTEINFO_BY_TOPIC body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    pub broker_datas: Vec<BrokerData>,
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<BTreeMap<String, serde_json::Value>>,
}

impl TopicRouteData {
    /// Parses a route body, accepting Java's unquoted keys.
    pub fn decode(body: &[u8]) -> Result<TopicRouteData, BodyError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| BodyError::Malformed("route body is not UTF-8".into()))?;
        Ok(from_java_json(text)?)
    }
}

/// GET_BROKER_CLUSTER_INFO body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A list of topic names, optionally with the broker that answered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    pub topic_list: BTreeSet<String>,
}

/// A list of group names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    pub group_list: BTreeSet<String>,
}

/// String key → string value table (KV namespaces, broker runtime info).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KvTable {
    pub table: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn route_data_matches_spec_shape() {
        let mut addrs = BTreeMap::new();
        addrs.insert(0, "10.0.0.1:10911".to_owned());
        addrs.insert(1, "10.0.0.2:10911".to_owned());
        let route = TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: addrs,
                broker_name: "broker-a".into(),
                cluster: "DefaultCluster".into(),
                ..Default::default()
            }],
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&route).unwrap();
        assert_eq!(
            json,
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        );
        let java = json.replace(r#""0":"#, "0:").replace(r#""1":"#, "1:");
        assert_eq!(TopicRouteData::decode(java.as_bytes()).unwrap(), route);
    }

    #[test]
    fn register_body_forms() {
        let legacy = r#"{"dataVersion":{"counter":"3","timestamp":1},"topicConfigTable":{"T":{"topicName":"T","readQueueNums":"4","writeQueueNums":4,"perm":6}}}"#;
        let b = RegisterBrokerBody::decode(legacy.as_bytes(), false).unwrap();
        assert_eq!(b.topic_config_serialize_wrapper.data_version.counter, 3);
        assert_eq!(
            b.topic_config_serialize_wrapper.topic_config_table["T"].read_queue_nums,
            4
        );
        let again = RegisterBrokerBody::decode(&b.encode(), false).unwrap();
        assert_eq!(again, b);
        assert!(RegisterBrokerBody::decode(b"\x78\x9c garbage", true).is_err());
        assert!(RegisterBrokerBody::decode(b"{not json", false).is_err());
    }

    fn arb_topic() -> impl Strategy<Value = TopicConfig> {
        (
            "[A-Za-z0-9_%|-]{1,20}",
            0..64i32,
            0..64i32,
            0..8i32,
            proptest::option::of("[a-z.+]{1,8}"),
        )
            .prop_map(|(name, r, w, p, attr)| {
                let mut tc = TopicConfig::new(name, r);
                tc.write_queue_nums = w;
                tc.perm = p;
                if let Some(a) = attr {
                    tc.attributes.insert(a, "NORMAL".into());
                }
                tc
            })
    }

    proptest! {
        #[test]
        fn compressed_registration_round_trips(topics in proptest::collection::vec(arb_topic(), 0..20), counter in any::<i64>()) {
            let mut body = RegisterBrokerBody::default();
            body.topic_config_serialize_wrapper.data_version.counter = counter;
            for t in topics {
                body.topic_config_serialize_wrapper.topic_config_table.insert(t.topic_name.clone(), t);
            }
            let back = RegisterBrokerBody::decode(&body.encode_compressed(), true).unwrap();
            prop_assert_eq!(back, body);
        }

        #[test]
        fn arbitrary_compressed_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RegisterBrokerBody::decode(&bytes, true);
            let _ = RegisterBrokerBody::decode(&bytes, false);
        }
    }
}
