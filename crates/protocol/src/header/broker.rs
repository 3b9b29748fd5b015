//! Headers of the client ↔ broker and admin ↔ broker requests (request-codes.md §2–§9).

use crate::command::ExtFields;
use crate::command_header;
use crate::header::{CommandHeader, HeaderError, HeaderField};

/// SEND_MESSAGE (10) header, in its long-named form. SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE carry
/// the same fields under one-letter keys; [`SendMessageRequestHeader::read_v2`] reads those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendMessageRequestHeader {
    pub producer_group: String,
    pub topic: String,
    pub default_topic: String,
    pub default_topic_queue_nums: i32,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub flag: i32,
    pub properties: Option<String>,
    pub reconsume_times: Option<i32>,
    pub unit_mode: Option<bool>,
    pub batch: Option<bool>,
    pub max_reconsume_times: Option<i32>,
    pub broker_name: Option<String>,
}

/// Wire names of the send header fields: (long name, V2 short name).
const SEND_KEYS: [(&str, &str); 14] = [
    ("producerGroup", "a"),
    ("topic", "b"),
    ("defaultTopic", "c"),
    ("defaultTopicQueueNums", "d"),
    ("queueId", "e"),
    ("sysFlag", "f"),
    ("bornTimestamp", "g"),
    ("flag", "h"),
    ("properties", "i"),
    ("reconsumeTimes", "j"),
    ("unitMode", "k"),
    ("maxReconsumeTimes", "l"),
    ("batch", "m"),
    ("brokerName", "n"),
];

impl SendMessageRequestHeader {
    fn read_with(ext: &ExtFields, short: bool) -> Result<Self, HeaderError> {
        let key = |i: usize| {
            if short {
                SEND_KEYS[i].1
            } else {
                SEND_KEYS[i].0
            }
        };
        Ok(SendMessageRequestHeader {
            producer_group: HeaderField::read_field(ext, key(0))?,
            topic: HeaderField::read_field(ext, key(1))?,
            // Some clients omit the template topic; the broker falls back to TBW102.
            default_topic: Option::<String>::read_field(ext, key(2))?
                .unwrap_or_else(|| "TBW102".to_owned()),
            default_topic_queue_nums: Option::<i32>::read_field(ext, key(3))?.unwrap_or(4),
            queue_id: HeaderField::read_field(ext, key(4))?,
            sys_flag: Option::<i32>::read_field(ext, key(5))?.unwrap_or(0),
            born_timestamp: Option::<i64>::read_field(ext, key(6))?.unwrap_or(0),
            flag: Option::<i32>::read_field(ext, key(7))?.unwrap_or(0),
            properties: HeaderField::read_field(ext, key(8))?,
            reconsume_times: HeaderField::read_field(ext, key(9))?,
            unit_mode: HeaderField::read_field(ext, key(10))?,
            max_reconsume_times: HeaderField::read_field(ext, key(11))?,
            batch: HeaderField::read_field(ext, key(12))?,
            broker_name: HeaderField::read_field(ext, key(13))?,
        })
    }

    fn write_with(&self, ext: &mut ExtFields, short: bool) {
        let key = |i: usize| {
            if short {
                SEND_KEYS[i].1
            } else {
                SEND_KEYS[i].0
            }
        };
        self.producer_group.write_field(ext, key(0));
        self.topic.write_field(ext, key(1));
        self.default_topic.write_field(ext, key(2));
        self.default_topic_queue_nums.write_field(ext, key(3));
        self.queue_id.write_field(ext, key(4));
        self.sys_flag.write_field(ext, key(5));
        self.born_timestamp.write_field(ext, key(6));
        self.flag.write_field(ext, key(7));
        self.properties.write_field(ext, key(8));
        self.reconsume_times.write_field(ext, key(9));
        self.unit_mode.write_field(ext, key(10));
        self.max_reconsume_times.write_field(ext, key(11));
        self.batch.write_field(ext, key(12));
        self.broker_name.write_field(ext, key(13));
    }

    /// Reads the one-letter form of SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE.
    pub fn read_v2(ext: &ExtFields) -> Result<Self, HeaderError> {
        Self::read_with(ext, true)
    }

    /// Writes the one-letter form of SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE.
    pub fn write_v2(&self, ext: &mut ExtFields) {
        self.write_with(ext, true)
    }
}

impl CommandHeader for SendMessageRequestHeader {
    fn write(&self, ext: &mut ExtFields) {
        self.write_with(ext, false)
    }
    fn read(ext: &ExtFields) -> Result<Self, HeaderError> {
        Self::read_with(ext, false)
    }
}

command_header! {
    /// Send response header.
    pub struct SendMessageResponseHeader {
        msg_id: String => "msgId",
        queue_id: i32 => "queueId",
        queue_offset: i64 => "queueOffset",
        transaction_id: Option<String> => "transactionId",
        batch_uniq_id: Option<String> => "batchUniqId",
        msg_region: Option<String> => "MSG_REGION",
        trace_on: Option<String> => "TRACE_ON",
        recall_handle: Option<String> => "recallHandle",
    }
}

command_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326): a broker hands a reply to the requester's client
    /// instance; the body is the reply's body. Hosts are Java's `InetSocketAddress` text
    /// (`/ip:port`).
    pub struct ReplyMessageRequestHeader {
        producer_group: String => "producerGroup",
        topic: String => "topic",
        default_topic: String => "defaultTopic",
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        queue_id: i32 => "queueId",
        sys_flag: i32 => "sysFlag",
        born_timestamp: i64 => "bornTimestamp",
        flag: i32 => "flag",
        properties: Option<String> => "properties",
        reconsume_times: Option<i32> => "reconsumeTimes",
        unit_mode: Option<bool> => "unitMode",
        born_host: String => "bornHost",
        store_host: String => "storeHost",
        store_timestamp: i64 => "storeTimestamp",
    }
}

command_header! {
    /// RECALL_MESSAGE (370): cancels a parked timer message by its recall handle.
    pub struct RecallMessageRequestHeader {
        producer_group: Option<String> => "producerGroup",
        topic: String => "topic",
        recall_handle: String => "recallHandle",
        broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// RECALL_MESSAGE response: the recalled message's UNIQ_KEY.
    pub struct RecallMessageResponseHeader {
        msg_id: String => "msgId",
    }
}

command_header! {
    /// PULL_MESSAGE (11) / LITE_PULL_MESSAGE (361).
    pub struct PullMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        queue_offset: i64 => "queueOffset",
        max_msg_nums: i32 => "maxMsgNums",
        sys_flag: i32 => "sysFlag",
        commit_offset: i64 => "commitOffset",
        suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        subscription: Option<String> => "subscription",
        sub_version: i64 => "subVersion",
        expression_type: Option<String> => "expressionType",
        max_msg_bytes: Option<i32> => "maxMsgBytes",
    }
}

command_header! {
    /// Pull response header: all four mandatory fields go on every result code.
    pub struct PullMessageResponseHeader {
        suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        next_begin_offset: i64 => "nextBeginOffset",
        min_offset: i64 => "minOffset",
        max_offset: i64 => "maxOffset",
        forbidden_type: Option<i32> => "forbiddenType",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35).
    pub struct UnregisterClientRequestHeader {
        client_id: String => "clientID",
        producer_group: Option<String> => "producerGroup",
        consumer_group: Option<String> => "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38), NOTIFY_CONSUMER_IDS_CHANGED (40),
    /// GET_CONSUMER_CONNECTION_LIST (203).
    pub struct ConsumerGroupHeader {
        consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204).
    pub struct ProducerGroupHeader {
        producer_group: String => "producerGroup",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15).
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        commit_offset: i64 => "commitOffset",
    }
}

command_header! {
    /// Response header carrying one offset (QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET,
    /// GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP).
    pub struct OffsetResponseHeader {
        offset: i64 => "offset",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32).
    pub struct QueueRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        committed: Option<bool> => "committed",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        timestamp: i64 => "timestamp",
        boundary_type: Option<String> => "boundaryType",
    }
}

command_header! {
    /// GET_EARLIEST_MSG_STORETIME response.
    pub struct TimestampResponseHeader {
        timestamp: i64 => "timestamp",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36).
    pub struct ConsumerSendMsgBackRequestHeader {
        offset: i64 => "offset",
        group: String => "group",
        delay_level: i32 => "delayLevel",
        origin_msg_id: Option<String> => "originMsgId",
        origin_topic: Option<String> => "originTopic",
        unit_mode: Option<bool> => "unitMode",
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
    }
}

command_header! {
    /// END_TRANSACTION (37).
    pub struct EndTransactionRequestHeader {
        topic: Option<String> => "topic",
        producer_group: String => "producerGroup",
        tran_state_table_offset: i64 => "tranStateTableOffset",
        commit_log_offset: i64 => "commitLogOffset",
        commit_or_rollback: i32 => "commitOrRollback",
        from_transaction_check: Option<bool> => "fromTransactionCheck",
        msg_id: String => "msgId",
        transaction_id: Option<String> => "transactionId",
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39), broker → producer.
    pub struct CheckTransactionStateRequestHeader {
        topic: Option<String> => "topic",
        tran_state_table_offset: i64 => "tranStateTableOffset",
        commit_log_offset: i64 => "commitLogOffset",
        msg_id: Option<String> => "msgId",
        transaction_id: Option<String> => "transactionId",
        offset_msg_id: Option<String> => "offsetMsgId",
        broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        topic: String => "topic",
        default_topic: Option<String> => "defaultTopic",
        read_queue_nums: i32 => "readQueueNums",
        write_queue_nums: i32 => "writeQueueNums",
        perm: i32 => "perm",
        topic_filter_type: Option<String> => "topicFilterType",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        order: Option<bool> => "order",
        attributes: Option<String> => "attributes",
        force: Option<bool> => "force",
    }
}

command_header! {
    /// Requests naming one topic: DELETE_TOPIC_IN_BROKER (215), GET_TOPIC_STATS_INFO (202),
    /// GET_TOPIC_CONFIG (351), QUERY_TOPIC_CONSUME_BY_WHO (300).
    pub struct TopicHeader {
        topic: String => "topic",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208).
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: Option<String> => "topic",
        topic_list: Option<String> => "topicList",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: String => "groupName",
        clean_offset: Option<bool> => "cleanOffset",
    }
}

command_header! {
    /// GET_SUBSCRIPTIONGROUP_CONFIG (352), QUERY_TOPICS_BY_CONSUMER (343).
    pub struct GroupHeader {
        group: String => "group",
    }
}

command_header! {
    /// QUERY_MESSAGE (12).
    pub struct QueryMessageRequestHeader {
        topic: String => "topic",
        key: String => "key",
        max_num: i32 => "maxNum",
        begin_timestamp: i64 => "beginTimestamp",
        end_timestamp: i64 => "endTimestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE response.
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: i64 => "indexLastUpdateTimestamp",
        index_last_update_phyoffset: i64 => "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33).
    pub struct ViewMessageRequestHeader {
        offset: i64 => "offset",
        topic: Option<String> => "topic",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222) and RESET_CONSUMER_CLIENT_OFFSET (220).
    pub struct ResetOffsetRequestHeader {
        group: String => "group",
        topic: String => "topic",
        queue_id: Option<i32> => "queueId",
        offset: Option<i64> => "offset",
        timestamp: i64 => "timestamp",
        is_force: Option<bool> => "isForce",
    }
}

command_header! {
    /// GET_BROKER_CONFIG response.
    pub struct GetBrokerConfigResponseHeader {
        version: String => "version",
    }
}

command_header! {
    /// GET_CONSUMER_RUNNING_INFO (307): admin → broker, relayed to the client.
    pub struct GetConsumerRunningInfoRequestHeader {
        consumer_group: String => "consumerGroup",
        client_id: String => "clientId",
        jstack_enable: Option<bool> => "jstackEnable",
    }
}

command_header! {
    /// CONSUME_MESSAGE_DIRECTLY (309): admin → broker, relayed to the client with the message.
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: String => "consumerGroup",
        client_id: Option<String> => "clientId",
        msg_id: Option<String> => "msgId",
        broker_name: Option<String> => "brokerName",
        topic: Option<String> => "topic",
    }
}

command_header! {
    /// QUERY_CONSUME_TIME_SPAN (303).
    pub struct QueryConsumeTimeSpanRequestHeader {
        topic: String => "topic",
        group: String => "group",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_header_short_and_long_forms_agree() {
        let h = SendMessageRequestHeader {
            producer_group: "pg".into(),
            topic: "T".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 2,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: Some("KEYS\u{1}k\u{2}".into()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: None,
        };
        let mut long = ExtFields::new();
        h.write(&mut long);
        assert_eq!(long.get("producerGroup"), Some("pg"));
        assert_eq!(SendMessageRequestHeader::read(&long).unwrap(), h);

        let mut short = ExtFields::new();
        h.write_v2(&mut short);
        assert_eq!(short.get("a"), Some("pg"));
        assert_eq!(short.get("e"), Some("2"));
        assert_eq!(SendMessageRequestHeader::read_v2(&short).unwrap(), h);
    }

    #[test]
    fn send_header_requires_group_topic_queue() {
        let ext: ExtFields = [("a", "pg"), ("b", "T")].into_iter().collect();
        assert_eq!(
            SendMessageRequestHeader::read_v2(&ext),
            Err(HeaderError::Missing("e"))
        );
    }
}
