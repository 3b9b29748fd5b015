//! POP consumption vocabulary shared by the broker, the gRPC proxy and clients: the receipt
//! handle ("extra info", stored on each popped message as property `POP_CK`), the retry-topic
//! flag, POP retry-topic naming and the offset-info strings of the POP_MESSAGE response header
//! (pop-and-timer.md §2, request-codes.md §10, grpc-v5.md §13.3).
//!
//! All layouts are Java's: fields separated by a single space, entries by `;`. Parsing never
//! panics; a malformed string is a [`PopInfoError`].

use std::fmt;
use std::str::FromStr;

use crate::naming::RETRY_GROUP_TOPIC_PREFIX;

/// reviveQid written into handles of an orderly (FIFO) pop: no checkpoint exists for them.
pub const POP_ORDER_REVIVE_QUEUE: i32 = 999;
/// Most messages one POP_MESSAGE may ask for; above it the broker answers INVALID_PARAMETER.
pub const MAX_POP_BATCH: i32 = 32;
/// Separator of the fields inside one handle or one offset-info entry.
const FIELD_SEPARATOR: char = ' ';
/// Separator of the entries of an offset-info string.
const ENTRY_SEPARATOR: char = ';';

/// Why a handle or an offset-info string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopInfoError {
    #[error("receipt handle `{0}` has fewer than 8 fields")]
    TooFewFields(String),
    #[error("receipt handle field `{field}` has an invalid value `{value}`")]
    InvalidField { field: &'static str, value: String },
    #[error("offset info entry `{0}` is malformed")]
    MalformedEntry(String),
}

/// Which topic a popped message was read from: the normal topic or one of the POP retry topics.
/// On the wire it is `"0"`, `"1"` or `"2"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetryFlag {
    #[default]
    Normal,
    /// `%RETRY%<group>_<topic>` (the default).
    RetryV1,
    /// `%RETRY%<group>+<topic>` (`enableRetryTopicV2`).
    RetryV2,
}

impl RetryFlag {
    /// The flag of the topic a message was actually read from (Java's `ExtraInfoUtil.getRetry`).
    pub fn of_topic(topic: &str) -> Self {
        if is_pop_retry_topic_v2(topic) {
            RetryFlag::RetryV2
        } else if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            RetryFlag::RetryV1
        } else {
            RetryFlag::Normal
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RetryFlag::Normal => "0",
            RetryFlag::RetryV1 => "1",
            RetryFlag::RetryV2 => "2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "0" => Some(RetryFlag::Normal),
            "1" => Some(RetryFlag::RetryV1),
            "2" => Some(RetryFlag::RetryV2),
            _ => None,
        }
    }

    pub fn is_retry(self) -> bool {
        self != RetryFlag::Normal
    }

    /// The topic a handle with this flag refers to, given the user topic and the group.
    pub fn real_topic(self, topic: &str, group: &str) -> String {
        match self {
            RetryFlag::Normal => topic.to_owned(),
            RetryFlag::RetryV1 => pop_retry_topic_v1(topic, group),
            RetryFlag::RetryV2 => pop_retry_topic_v2(topic, group),
        }
    }
}

impl fmt::Display for RetryFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `%RETRY%<group>_<topic>`: where the broker re-puts POP messages whose invisible time ran out.
pub fn pop_retry_topic_v1(topic: &str, group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}_{topic}")
}

/// `%RETRY%<group>+<topic>` (only with `enableRetryTopicV2`).
pub fn pop_retry_topic_v2(topic: &str, group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}+{topic}")
}

pub fn is_pop_retry_topic_v2(topic: &str) -> bool {
    topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) && topic.contains('+')
}

/// The receipt handle of one popped message, Java's "extra info":
/// `ckQueueOffset popTime invisibleTime reviveQid retryFlag brokerName queueId queueOffset`
/// plus the commit-log offset the proxy appends as a ninth field.
///
/// `ck_queue_offset` is the queue offset where the popped batch started (Java writes the batch's
/// start offset there); `queue_offset` is this message's own offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtraInfo {
    pub ck_queue_offset: i64,
    pub pop_time: i64,
    pub invisible_time: i64,
    pub revive_qid: i32,
    pub retry: RetryFlag,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// Present only in handles built by the proxy.
    pub commit_log_offset: Option<i64>,
}

impl ExtraInfo {
    /// Parses a handle; fields after the ninth are ignored, as Java does.
    pub fn parse(s: &str) -> Result<Self, PopInfoError> {
        let fields: Vec<&str> = s.split(FIELD_SEPARATOR).collect();
        if fields.len() < 8 {
            return Err(PopInfoError::TooFewFields(s.to_owned()));
        }
        fn num<T: FromStr>(field: &'static str, v: &str) -> Result<T, PopInfoError> {
            v.parse().map_err(|_| PopInfoError::InvalidField {
                field,
                value: v.to_owned(),
            })
        }
        Ok(ExtraInfo {
            ck_queue_offset: num("ckQueueOffset", fields[0])?,
            pop_time: num("popTime", fields[1])?,
            invisible_time: num("invisibleTime", fields[2])?,
            revive_qid: num("reviveQid", fields[3])?,
            retry: RetryFlag::parse(fields[4]).ok_or_else(|| PopInfoError::InvalidField {
                field: "retryFlag",
                value: fields[4].to_owned(),
            })?,
            broker_name: fields[5].to_owned(),
            queue_id: num("queueId", fields[6])?,
            queue_offset: num("queueOffset", fields[7])?,
            commit_log_offset: match fields.get(8) {
                Some(v) => Some(num("commitLogOffset", v)?),
                None => None,
            },
        })
    }

    /// The handle string; with `commit_log_offset` it is the proxy's nine-field form.
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// True for handles of an orderly pop (reviveQid 999).
    pub fn is_order(&self) -> bool {
        self.revive_qid == POP_ORDER_REVIVE_QUEUE
    }

    /// When the message becomes visible again unless acked: popTime + invisibleTime.
    pub fn next_visible_time(&self) -> i64 {
        self.pop_time.saturating_add(self.invisible_time)
    }

    /// The handle no longer holds the message (Java: `nextVisibleTime <= now`).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.next_visible_time() <= now_ms
    }

    /// The topic the message was actually read from, given the user topic and group.
    pub fn real_topic(&self, topic: &str, group: &str) -> String {
        self.retry.real_topic(topic, group)
    }
}

impl fmt::Display for ExtraInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {} {}",
            self.ck_queue_offset,
            self.pop_time,
            self.invisible_time,
            self.revive_qid,
            self.retry,
            self.broker_name,
            self.queue_id,
            self.queue_offset
        )?;
        if let Some(c) = self.commit_log_offset {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

impl FromStr for ExtraInfo {
    type Err = PopInfoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExtraInfo::parse(s)
    }
}

/// One `startOffsetInfo` entry: where the batch read from one queue started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOffsetEntry {
    pub retry: RetryFlag,
    pub queue_id: i32,
    pub start_offset: i64,
}

/// One `msgOffsetInfo` entry: the queue offsets of the messages popped from one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgOffsetEntry {
    pub retry: RetryFlag,
    pub queue_id: i32,
    pub offsets: Vec<i64>,
}

/// What an `orderCountInfo` entry counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderCountTarget {
    /// `<flag> <queueId> <count>`: minimum count of the queue's batch (compatibility form).
    Queue(i32),
    /// `<flag> qo<queueId>%<queueOffset> <count>`: one message.
    Offset { queue_id: i32, queue_offset: i64 },
}

/// One `orderCountInfo` entry: how often an orderly message was handed out before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCountEntry {
    pub retry: RetryFlag,
    pub target: OrderCountTarget,
    pub count: i32,
}

fn push_entry(buf: &mut String, entry: fmt::Arguments<'_>) {
    use fmt::Write;
    if !buf.is_empty() {
        buf.push(ENTRY_SEPARATOR);
    }
    let _ = buf.write_fmt(entry);
}

/// Appends `<flag> <queueId> <startOffset>` to a startOffsetInfo string.
pub fn push_start_offset_info(buf: &mut String, retry: RetryFlag, queue_id: i32, start: i64) {
    push_entry(buf, format_args!("{retry} {queue_id} {start}"));
}

/// Appends `<flag> <queueId> <off1>,<off2>,…` to a msgOffsetInfo string.
pub fn push_msg_offset_info(buf: &mut String, retry: RetryFlag, queue_id: i32, offsets: &[i64]) {
    let list = offsets
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    push_entry(buf, format_args!("{retry} {queue_id} {list}"));
}

/// Appends one orderCountInfo entry (per message `qo<queueId>%<offset>` or per queue).
pub fn push_order_count_info(buf: &mut String, entry: &OrderCountEntry) {
    let retry = entry.retry;
    let count = entry.count;
    match entry.target {
        OrderCountTarget::Queue(q) => push_entry(buf, format_args!("{retry} {q} {count}")),
        OrderCountTarget::Offset {
            queue_id,
            queue_offset,
        } => push_entry(
            buf,
            format_args!("{retry} qo{queue_id}%{queue_offset} {count}"),
        ),
    }
}

fn entries(s: &str) -> impl Iterator<Item = Result<[&str; 3], PopInfoError>> {
    s.split(ENTRY_SEPARATOR).filter(|e| !e.is_empty()).map(|e| {
        let mut it = e.split(FIELD_SEPARATOR);
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(a), Some(b), Some(c), None) => Ok([a, b, c]),
            _ => Err(PopInfoError::MalformedEntry(e.to_owned())),
        }
    })
}

fn bad(e: &[&str; 3]) -> PopInfoError {
    PopInfoError::MalformedEntry(e.join(" "))
}

fn flag(e: &[&str; 3]) -> Result<RetryFlag, PopInfoError> {
    RetryFlag::parse(e[0]).ok_or_else(|| bad(e))
}

/// Parses a startOffsetInfo string (empty ⇒ no entries).
pub fn parse_start_offset_info(s: &str) -> Result<Vec<StartOffsetEntry>, PopInfoError> {
    entries(s)
        .map(|e| {
            let e = e?;
            Ok(StartOffsetEntry {
                retry: flag(&e)?,
                queue_id: e[1].parse().map_err(|_| bad(&e))?,
                start_offset: e[2].parse().map_err(|_| bad(&e))?,
            })
        })
        .collect()
}

/// Parses a msgOffsetInfo string (empty ⇒ no entries).
pub fn parse_msg_offset_info(s: &str) -> Result<Vec<MsgOffsetEntry>, PopInfoError> {
    entries(s)
        .map(|e| {
            let e = e?;
            let offsets = e[2]
                .split(',')
                .map(|o| o.parse().map_err(|_| bad(&e)))
                .collect::<Result<_, _>>()?;
            Ok(MsgOffsetEntry {
                retry: flag(&e)?,
                queue_id: e[1].parse().map_err(|_| bad(&e))?,
                offsets,
            })
        })
        .collect()
}

/// Parses an orderCountInfo string (empty ⇒ no entries).
pub fn parse_order_count_info(s: &str) -> Result<Vec<OrderCountEntry>, PopInfoError> {
    entries(s)
        .map(|e| {
            let e = e?;
            let target = match e[1].strip_prefix("qo") {
                Some(rest) => {
                    let (q, o) = rest.split_once('%').ok_or_else(|| bad(&e))?;
                    OrderCountTarget::Offset {
                        queue_id: q.parse().map_err(|_| bad(&e))?,
                        queue_offset: o.parse().map_err(|_| bad(&e))?,
                    }
                }
                None => OrderCountTarget::Queue(e[1].parse().map_err(|_| bad(&e))?),
            };
            Ok(OrderCountEntry {
                retry: flag(&e)?,
                target,
                count: e[2].parse().map_err(|_| bad(&e))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_handle_layout() {
        let h = ExtraInfo::parse("10 1700000000000 30000 3 1 broker-a 2 12").unwrap();
        assert_eq!(h.ck_queue_offset, 10);
        assert_eq!(h.pop_time, 1_700_000_000_000);
        assert_eq!(h.invisible_time, 30_000);
        assert_eq!(h.revive_qid, 3);
        assert_eq!(h.retry, RetryFlag::RetryV1);
        assert_eq!(h.broker_name, "broker-a");
        assert_eq!(h.queue_id, 2);
        assert_eq!(h.queue_offset, 12);
        assert_eq!(h.commit_log_offset, None);
        assert_eq!(h.real_topic("T", "G"), "%RETRY%G_T");
        assert_eq!(h.next_visible_time(), 1_700_000_030_000);
        assert!(h.is_expired(1_700_000_030_000));
        assert!(!h.is_order());

        let proxy = ExtraInfo::parse("10 1 2 999 0 b 0 11 4096").unwrap();
        assert!(proxy.is_order());
        assert_eq!(proxy.commit_log_offset, Some(4096));
        assert_eq!(proxy.encode(), "10 1 2 999 0 b 0 11 4096");
    }

    #[test]
    fn bad_handles_are_errors() {
        assert!(matches!(
            ExtraInfo::parse("1 2 3"),
            Err(PopInfoError::TooFewFields(_))
        ));
        assert!(matches!(
            ExtraInfo::parse("x 2 3 4 0 b 0 1"),
            Err(PopInfoError::InvalidField {
                field: "ckQueueOffset",
                ..
            })
        ));
        assert!(ExtraInfo::parse("1 2 3 4 7 b 0 1").is_err());
        assert!(ExtraInfo::parse("").is_err());
    }

    #[test]
    fn retry_topics() {
        assert_eq!(pop_retry_topic_v1("T", "G"), "%RETRY%G_T");
        assert_eq!(pop_retry_topic_v2("T", "G"), "%RETRY%G+T");
        assert_eq!(RetryFlag::of_topic("%RETRY%G_T"), RetryFlag::RetryV1);
        assert_eq!(RetryFlag::of_topic("%RETRY%G+T"), RetryFlag::RetryV2);
        assert_eq!(RetryFlag::of_topic("T"), RetryFlag::Normal);
    }

    #[test]
    fn offset_info_java_strings() {
        let mut start = String::new();
        push_start_offset_info(&mut start, RetryFlag::Normal, 1, 5);
        push_start_offset_info(&mut start, RetryFlag::RetryV1, 0, 7);
        assert_eq!(start, "0 1 5;1 0 7");
        let mut msgs = String::new();
        push_msg_offset_info(&mut msgs, RetryFlag::Normal, 1, &[5, 6, 9]);
        assert_eq!(msgs, "0 1 5,6,9");
        let mut order = String::new();
        push_order_count_info(
            &mut order,
            &OrderCountEntry {
                retry: RetryFlag::Normal,
                target: OrderCountTarget::Offset {
                    queue_id: 1,
                    queue_offset: 5,
                },
                count: 2,
            },
        );
        push_order_count_info(
            &mut order,
            &OrderCountEntry {
                retry: RetryFlag::Normal,
                target: OrderCountTarget::Queue(1),
                count: 2,
            },
        );
        assert_eq!(order, "0 qo1%5 2;0 1 2");
        assert_eq!(parse_order_count_info(&order).unwrap().len(), 2);
        assert!(parse_start_offset_info("").unwrap().is_empty());
        assert!(parse_msg_offset_info("0 1").is_err());
        assert!(parse_order_count_info("0 qo1 2").is_err());
    }

    fn flag_strategy() -> impl Strategy<Value = RetryFlag> {
        prop_oneof![
            Just(RetryFlag::Normal),
            Just(RetryFlag::RetryV1),
            Just(RetryFlag::RetryV2)
        ]
    }

    proptest! {
        #[test]
        fn extra_info_round_trips(
            ck in any::<i64>(), pt in any::<i64>(), it in any::<i64>(), rq in any::<i32>(),
            retry in flag_strategy(), bn in "[a-zA-Z0-9_-]{1,20}", q in any::<i32>(),
            off in any::<i64>(), clo in proptest::option::of(any::<i64>()),
        ) {
            let h = ExtraInfo {
                ck_queue_offset: ck, pop_time: pt, invisible_time: it, revive_qid: rq, retry,
                broker_name: bn, queue_id: q, queue_offset: off, commit_log_offset: clo,
            };
            prop_assert_eq!(ExtraInfo::parse(&h.encode()), Ok(h));
        }

        #[test]
        fn extra_info_parse_never_panics(s in "[ -~]{0,80}") {
            let _ = ExtraInfo::parse(&s);
        }

        #[test]
        fn offset_infos_round_trip(
            rows in proptest::collection::vec(
                (flag_strategy(), any::<i32>(), proptest::collection::vec(any::<i64>(), 1..5),
                 any::<i32>()),
                0..5),
        ) {
            let (mut start, mut msgs, mut order) = (String::new(), String::new(), String::new());
            let mut want_start = Vec::new();
            let mut want_msgs = Vec::new();
            let mut want_order = Vec::new();
            for (retry, q, offs, count) in rows {
                push_start_offset_info(&mut start, retry, q, offs[0]);
                push_msg_offset_info(&mut msgs, retry, q, &offs);
                let e = OrderCountEntry {
                    retry,
                    target: OrderCountTarget::Offset { queue_id: q, queue_offset: offs[0] },
                    count,
                };
                push_order_count_info(&mut order, &e);
                want_start.push(StartOffsetEntry { retry, queue_id: q, start_offset: offs[0] });
                want_msgs.push(MsgOffsetEntry { retry, queue_id: q, offsets: offs });
                want_order.push(e);
            }
            prop_assert_eq!(parse_start_offset_info(&start), Ok(want_start));
            prop_assert_eq!(parse_msg_offset_info(&msgs), Ok(want_msgs));
            prop_assert_eq!(parse_order_count_info(&order), Ok(want_order));
        }
    }
}
