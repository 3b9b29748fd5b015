//! Topic and group names: validation rules, system topics and the retry/DLQ naming scheme
//! (message-format.md §6). Shared by the broker (which enforces) and the client (which checks
//! before sending).

/// Template topic for auto-creation.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// Group the broker reads half/op topics as.
pub const TRANS_CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Producer group every Java client heartbeats.
pub const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";

/// Topics producers may not send to (NO_PERMISSION).
pub const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    SCHEDULE_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];

/// Longest topic name.
pub const TOPIC_MAX_LEN: usize = 127;
/// Longest retry/DLQ topic name (group name + prefix).
pub const RETRY_TOPIC_MAX_LEN: usize = 255;
/// Longest group name.
pub const GROUP_MAX_LEN: usize = 120;

/// Why a name is refused; the text is the remark sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

fn valid_chars(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// Checks a topic name: not blank, `[%|a-zA-Z0-9_-]` only, at most 127 characters (255 for
/// retry and dead-letter topics).
pub fn validate_topic(topic: &str) -> Result<(), InvalidName> {
    if topic.trim().is_empty() {
        return Err(InvalidName("The specified topic is blank.".into()));
    }
    if !valid_chars(topic) {
        return Err(InvalidName(format!(
            "The specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        )));
    }
    let max = if is_retry_topic(topic) || is_dlq_topic(topic) {
        RETRY_TOPIC_MAX_LEN
    } else {
        TOPIC_MAX_LEN
    };
    if topic.len() > max {
        return Err(InvalidName(format!(
            "The specified topic[{topic}] is longer than topic max length {max}."
        )));
    }
    Ok(())
}

/// Checks a consumer or producer group name.
pub fn validate_group(group: &str) -> Result<(), InvalidName> {
    if group.trim().is_empty() {
        return Err(InvalidName("the specified group is blank".into()));
    }
    if !valid_chars(group) {
        return Err(InvalidName(format!(
            "the specified group[{group}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        )));
    }
    if group.len() > GROUP_MAX_LEN {
        return Err(InvalidName(format!(
            "the specified group[{group}] is longer than group max length {GROUP_MAX_LEN}."
        )));
    }
    Ok(())
}

/// Groups RocketMQ creates at start-up for its own tools and internal services.
pub const SYSTEM_GROUPS: &[&str] = &[
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_RMQ_SYS_TRANS",
];

/// Whether a consumer group is one of RocketMQ's own (hidden from user listings).
pub fn is_system_group(group: &str) -> bool {
    SYSTEM_GROUPS.contains(&group)
        || group.starts_with("CID_RMQ_SYS_")
        || group.starts_with("_INNER_TRACE_")
}

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// The topic a cluster's brokers create for request-reply (`<cluster>_REPLY_TOPIC`); replies
/// are addressed to it by the replier.
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}_REPLY_TOPIC")
}

pub fn is_retry_topic(topic: &str) -> bool {
    topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
}

pub fn is_dlq_topic(topic: &str) -> bool {
    topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

/// Whether producers are refused this topic.
pub fn is_send_forbidden(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// Topics the broker keeps for itself (hidden from user listings).
/// The default trace topic, or one a client named (`..._TRACE_TOPIC` by convention).
pub fn is_trace_topic(topic: &str) -> bool {
    topic == TRACE_TOPIC || topic.starts_with("RMQ_SYS_TRACE_TOPIC")
}

pub fn is_system_topic(topic: &str) -> bool {
    topic == AUTO_CREATE_TOPIC_KEY
        || NOT_ALLOWED_SEND_TOPICS.contains(&topic)
        || topic.starts_with(SYSTEM_TOPIC_PREFIX)
        || topic == TRACE_TOPIC
        || topic == BENCHMARK_TOPIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules() {
        assert!(validate_topic("Topic_A-1%|x").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("  ").is_err());
        assert!(validate_topic("bad topic").is_err());
        assert!(validate_topic("tópico").is_err());
        assert!(validate_topic(&"a".repeat(127)).is_ok());
        assert!(validate_topic(&"a".repeat(128)).is_err());
        let long_retry = format!("%RETRY%{}", "g".repeat(200));
        assert!(validate_topic(&long_retry).is_ok());
        assert!(validate_topic(&format!("%DLQ%{}", "g".repeat(300))).is_err());
    }

    #[test]
    fn group_rules_and_names() {
        assert!(validate_group("cg-1").is_ok());
        assert!(validate_group("cg 1").is_err());
        assert!(validate_group(&"g".repeat(121)).is_err());
        assert_eq!(retry_topic("g"), "%RETRY%g");
        assert_eq!(dlq_topic("g"), "%DLQ%g");
        assert!(is_send_forbidden(SCHEDULE_TOPIC));
        assert!(!is_send_forbidden("T"));
        assert!(is_system_topic(AUTO_CREATE_TOPIC_KEY));
    }
}
