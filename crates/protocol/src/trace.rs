//! Message trace records as RocketMQ clients write them to the trace topic
//! (`RMQ_SYS_TRACE_TOPIC`): one trace message carries several records, each ended by char 2,
//! its fields separated by char 1, in the order of the Java client's `TraceDataEncoder`. The
//! trace message's keys are every traced message id plus its own keys, so a trace is found by
//! querying the trace topic's index for the message id.
//!
//! Decoding accepts the older and newer field counts Java has written over the years (a Pub
//! without offset message id, a SubAfter without context code or timestamp, extra trailing
//! fields), and skips records it cannot read instead of failing the whole message.

/// Ends a record.
pub const FIELD_SEPARATOR: char = '\u{2}';
/// Separates the fields of a record.
pub const CONTENT_SEPARATOR: char = '\u{1}';

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TraceType {
    /// A send and its result.
    Pub,
    /// A consumer received the message and is about to consume it.
    SubBefore,
    /// The consumer's verdict and how long it took.
    SubAfter,
    /// A transactional producer committed or rolled back.
    EndTransaction,
}

impl TraceType {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceType::Pub => "Pub",
            TraceType::SubBefore => "SubBefore",
            TraceType::SubAfter => "SubAfter",
            TraceType::EndTransaction => "EndTransaction",
        }
    }

    fn parse(s: &str) -> Option<TraceType> {
        match s {
            "Pub" => Some(TraceType::Pub),
            "SubBefore" => Some(TraceType::SubBefore),
            "SubAfter" => Some(TraceType::SubAfter),
            "EndTransaction" => Some(TraceType::EndTransaction),
            _ => None,
        }
    }
}

/// Java's `MessageType` ordinals in Pub and EndTransaction records.
pub mod message_type {
    pub const NORMAL: i32 = 0;
    pub const TRANS_HALF: i32 = 1;
    pub const TRANS_COMMIT: i32 = 2;
    pub const DELAY: i32 = 3;
    pub const ORDER: i32 = 4;
}

/// One trace record. Fields a record type does not carry stay empty / zero. Serializes to
/// JSON with the Java client's field names (`traceType`, `msgId`, `costTime`, ...).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceRecord {
    pub trace_type: TraceType,
    /// Milliseconds since the epoch when it happened.
    pub timestamp: i64,
    pub region_id: String,
    /// Producer group (Pub, EndTransaction) or consumer group (SubBefore, SubAfter).
    pub group: String,
    /// Correlates a SubBefore with its SubAfter.
    pub request_id: String,
    pub topic: String,
    /// The message id (`UNIQ_KEY`).
    pub msg_id: String,
    pub tags: String,
    /// The message's keys, space-separated.
    pub keys: String,
    pub store_host: String,
    pub body_length: i64,
    /// Milliseconds the send or the consumption took.
    pub cost_time: i64,
    pub msg_type: i32,
    pub offset_msg_id: String,
    pub success: bool,
    pub retry_times: i32,
    /// SubAfter: 0 success, 1 timeout, 2 exception, 3 returned nothing, 4 failed.
    pub context_code: i32,
    pub client_host: String,
    pub transaction_id: String,
    /// EndTransaction: COMMIT_MESSAGE | ROLLBACK_MESSAGE | UNKNOW.
    pub transaction_state: String,
    pub from_transaction_check: bool,
}

impl TraceRecord {
    pub fn new(trace_type: TraceType) -> TraceRecord {
        TraceRecord {
            trace_type,
            timestamp: 0,
            region_id: String::new(),
            group: String::new(),
            request_id: String::new(),
            topic: String::new(),
            msg_id: String::new(),
            tags: String::new(),
            keys: String::new(),
            store_host: String::new(),
            body_length: 0,
            cost_time: 0,
            msg_type: message_type::NORMAL,
            offset_msg_id: String::new(),
            success: false,
            retry_times: 0,
            context_code: 0,
            client_host: String::new(),
            transaction_id: String::new(),
            transaction_state: String::new(),
            from_transaction_check: false,
        }
    }

    /// Appends this record in the Java client's layout.
    pub fn encode_into(&self, out: &mut String) {
        let fields: Vec<String> = match self.trace_type {
            TraceType::Pub => vec![
                self.timestamp.to_string(),
                self.region_id.clone(),
                self.group.clone(),
                self.topic.clone(),
                self.msg_id.clone(),
                self.tags.clone(),
                self.keys.clone(),
                self.store_host.clone(),
                self.body_length.to_string(),
                self.cost_time.to_string(),
                self.msg_type.to_string(),
                self.offset_msg_id.clone(),
                self.success.to_string(),
            ],
            TraceType::SubBefore => vec![
                self.timestamp.to_string(),
                self.region_id.clone(),
                self.group.clone(),
                self.request_id.clone(),
                self.msg_id.clone(),
                self.retry_times.to_string(),
                self.keys.clone(),
            ],
            TraceType::SubAfter => vec![
                self.request_id.clone(),
                self.msg_id.clone(),
                self.cost_time.to_string(),
                self.success.to_string(),
                self.keys.clone(),
                self.context_code.to_string(),
                self.timestamp.to_string(),
                self.group.clone(),
            ],
            TraceType::EndTransaction => vec![
                self.timestamp.to_string(),
                self.region_id.clone(),
                self.group.clone(),
                self.topic.clone(),
                self.msg_id.clone(),
                self.tags.clone(),
                self.keys.clone(),
                self.store_host.clone(),
                self.msg_type.to_string(),
                self.transaction_id.clone(),
                self.transaction_state.clone(),
                self.from_transaction_check.to_string(),
            ],
        };
        out.push_str(self.trace_type.as_str());
        for f in fields {
            out.push(CONTENT_SEPARATOR);
            // A separator inside a value would shift every later field for every reader.
            out.extend(
                f.chars()
                    .filter(|c| *c != CONTENT_SEPARATOR && *c != FIELD_SEPARATOR),
            );
        }
        out.push(FIELD_SEPARATOR);
    }

    /// The index keys a trace message carrying this record needs: the message id and keys.
    pub fn index_keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.msg_id.as_str())
            .chain(self.keys.split(' '))
            .filter(|k| !k.is_empty())
    }

    fn decode(line: &str) -> Option<TraceRecord> {
        let f: Vec<&str> = line.split(CONTENT_SEPARATOR).collect();
        let trace_type = TraceType::parse(f.first()?)?;
        let at = |i: usize| f.get(i).copied().unwrap_or("");
        let num = |i: usize| at(i).trim().parse::<i64>().ok();
        let flag = |i: usize| at(i).trim().eq_ignore_ascii_case("true");
        let mut r = TraceRecord::new(trace_type);
        match trace_type {
            TraceType::Pub => {
                if f.len() < 13 {
                    return None;
                }
                r.timestamp = num(1)?;
                r.region_id = at(2).to_owned();
                r.group = at(3).to_owned();
                r.topic = at(4).to_owned();
                r.msg_id = at(5).to_owned();
                r.tags = at(6).to_owned();
                r.keys = at(7).to_owned();
                r.store_host = at(8).to_owned();
                r.body_length = num(9).unwrap_or(0);
                r.cost_time = num(10).unwrap_or(0);
                r.msg_type = num(11).unwrap_or(0) as i32;
                if f.len() == 13 {
                    r.success = flag(12);
                } else {
                    r.offset_msg_id = at(12).to_owned();
                    r.success = flag(13);
                    r.client_host = at(14).to_owned();
                }
            }
            TraceType::SubBefore => {
                if f.len() < 8 {
                    return None;
                }
                r.timestamp = num(1)?;
                r.region_id = at(2).to_owned();
                r.group = at(3).to_owned();
                r.request_id = at(4).to_owned();
                r.msg_id = at(5).to_owned();
                r.retry_times = num(6).unwrap_or(0) as i32;
                r.keys = at(7).to_owned();
                r.client_host = at(8).to_owned();
            }
            TraceType::SubAfter => {
                if f.len() < 6 {
                    return None;
                }
                r.request_id = at(1).to_owned();
                r.msg_id = at(2).to_owned();
                r.cost_time = num(3).unwrap_or(0);
                r.success = flag(4);
                r.keys = at(5).to_owned();
                r.context_code = num(6).unwrap_or(0) as i32;
                r.timestamp = num(7).unwrap_or(0);
                r.group = at(8).to_owned();
            }
            TraceType::EndTransaction => {
                if f.len() < 13 {
                    return None;
                }
                r.timestamp = num(1)?;
                r.region_id = at(2).to_owned();
                r.group = at(3).to_owned();
                r.topic = at(4).to_owned();
                r.msg_id = at(5).to_owned();
                r.tags = at(6).to_owned();
                r.keys = at(7).to_owned();
                r.store_host = at(8).to_owned();
                r.msg_type = num(9).unwrap_or(0) as i32;
                r.transaction_id = at(10).to_owned();
                r.transaction_state = at(11).to_owned();
                r.from_transaction_check = flag(12);
            }
        }
        Some(r)
    }
}

/// Every readable record of a trace message body.
pub fn decode(body: &str) -> Vec<TraceRecord> {
    body.split(FIELD_SEPARATOR)
        .map(|line| line.trim_start_matches(['\r', '\n']))
        .filter(|line| !line.is_empty())
        .filter_map(TraceRecord::decode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn join(fields: &[&str]) -> String {
        let mut s = fields.join("\u{1}");
        s.push('\u{2}');
        s
    }

    #[test]
    fn records_in_the_java_layouts_are_read() {
        // Pub as Java 4.9+/5.x writes it (14 fields), an old Pub (13) and one with clientHost.
        let body = [
            join(&[
                "Pub",
                "1700000000000",
                "DefaultRegion",
                "PG",
                "T",
                "MID1",
                "TagA",
                "k1 k2",
                "10.0.0.1:10911",
                "128",
                "3",
                "0",
                "0A00000100002A9F0000000000000000",
                "true",
            ]),
            join(&[
                "Pub",
                "1700000000001",
                "DefaultRegion",
                "PG",
                "T",
                "MID2",
                "",
                "",
                "h:1",
                "5",
                "1",
                "3",
                "false",
            ]),
            join(&[
                "SubBefore",
                "1700000000002",
                "DefaultRegion",
                "CG",
                "req-1",
                "MID1",
                "0",
                "k1 k2",
            ]),
            join(&[
                "SubAfter",
                "req-1",
                "MID1",
                "7",
                "true",
                "k1 k2",
                "0",
                "1700000000009",
                "CG",
            ]),
            // SubAfter of an old client: no context code, timestamp or group.
            join(&["SubAfter", "req-2", "MID2", "2", "false", "dKey"]),
            join(&[
                "EndTransaction",
                "1700000000003",
                "DefaultRegion",
                "PG",
                "T",
                "MID3",
                "",
                "",
                "h:1",
                "1",
                "MID3",
                "COMMIT_MESSAGE",
                "false",
            ]),
            join(&["Nonsense", "x"]),
            join(&["Pub", "not-a-number"]),
        ]
        .concat();
        let records = decode(&body);
        assert_eq!(records.len(), 6);
        assert_eq!(records[0].offset_msg_id, "0A00000100002A9F0000000000000000");
        assert!(records[0].success);
        assert_eq!(
            records[0].index_keys().collect::<Vec<_>>(),
            ["MID1", "k1", "k2"]
        );
        assert_eq!(records[1].msg_type, message_type::DELAY);
        assert!(!records[1].success);
        assert_eq!(records[2].request_id, "req-1");
        assert_eq!(records[3].cost_time, 7);
        assert_eq!(records[3].group, "CG");
        assert_eq!(records[4].context_code, 0);
        assert_eq!(records[5].transaction_state, "COMMIT_MESSAGE");
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 :._-]{0,12}"
    }

    proptest! {
        #[test]
        fn records_round_trip(
            kind in 0..4usize, timestamp in 0i64..i64::MAX, group in text(), topic in text(),
            msg_id in "[A-F0-9]{1,32}", keys in text(), cost in 0i64..1_000_000, success in any::<bool>(),
        ) {
            let trace_type = [TraceType::Pub, TraceType::SubBefore, TraceType::SubAfter, TraceType::EndTransaction][kind];
            let mut r = TraceRecord::new(trace_type);
            r.timestamp = timestamp;
            r.group = group;
            r.msg_id = msg_id;
            r.keys = keys;
            match trace_type {
                TraceType::Pub => { r.topic = topic; r.cost_time = cost; r.success = success; }
                TraceType::SubBefore => { r.request_id = "r".into(); }
                TraceType::SubAfter => { r.request_id = "r".into(); r.cost_time = cost; r.success = success; }
                TraceType::EndTransaction => { r.topic = topic; r.transaction_state = "COMMIT_MESSAGE".into(); }
            }
            let mut body = String::new();
            r.encode_into(&mut body);
            r.encode_into(&mut body);
            prop_assert_eq!(decode(&body), vec![r.clone(), r]);
        }

        #[test]
        fn decoding_never_panics(body in any::<String>()) {
            let _ = decode(&body);
        }
    }
}
