//! The message properties string: `name U+0001 value U+0002` repeated, as Java's
//! `MessageDecoder.messageProperties2String` writes it and `string2messageProperties` reads it.
//!
//! Parsing follows Java exactly (segments shorter than three characters, or whose first U+0001 is
//! the first or last character, are dropped) so that a record's properties mean the same thing to
//! the broker as to every client. Lookups work on the borrowed string, without building a map,
//! because the store reads TAGS/KEYS/UNIQ_KEY of every message it dispatches.

use std::collections::HashMap;

/// Separates a name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Terminates every name/value pair (Java writes it after the last pair too).
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// The properties length field is a Java `short`.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// Well-known property names (Java `MessageConst`).
pub mod keys {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT_STORE_MSG_OK: &str = "WAIT";
    pub const DELAY_TIME_LEVEL: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QUEUE_ID: &str = "REAL_QID";
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    pub const PRODUCER_GROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_SWITCH: &str = "TRACE_ON";
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIMESTAMP: &str = "CONSUME_START_TIME";
    pub const INNER_NUM: &str = "INNER_NUM";
    pub const INNER_BASE: &str = "INNER_BASE";
    pub const DUP_INFO: &str = "DUP_INFO";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const TRANSACTION_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const MESSAGE_REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    pub const MESSAGE_TTL: &str = "TTL";
    pub const REPLY_MESSAGE_ARRIVE_TIME: &str = "ARRIVE_TIME";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MESSAGE_TYPE: &str = "MSG_TYPE";
    pub const POP_CK: &str = "POP_CK";
    pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
    pub const REDIRECT: &str = "REDIRECT";
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
    pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
    pub const BORN_HOST: &str = "__BORNHOST";
    pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    pub const CRC32: &str = "__CRC32#";
    pub const STARTDELIVERTIME: &str = "__STARTDELIVERTIME";
    /// Properties with this prefix live only in the client and are never stored.
    pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";
    /// Separator between the business keys inside `KEYS`.
    pub const KEY_SEPARATOR: &str = " ";
}

/// Iterates the `(name, value)` pairs of a properties string in order, applying Java's parsing rule.
/// A name that appears twice yields both pairs; Java's map keeps the last one, as [`get`] does.
pub fn iter(properties: &str) -> impl Iterator<Item = (&str, &str)> {
    properties.split(PROPERTY_SEPARATOR).filter_map(|segment| {
        // Java measures in UTF-16 units; both bounds only ask "is U+0001 the first/last char and is
        // the segment at least 3 chars", which chars answer the same way.
        let at = segment.find(NAME_VALUE_SEPARATOR)?;
        let name = &segment[..at];
        let value = &segment[at + NAME_VALUE_SEPARATOR.len_utf8()..];
        if name.is_empty() || value.is_empty() {
            return None;
        }
        Some((name, value))
    })
}

/// The value of `name` (the last one if repeated, like Java's `HashMap`).
///
/// The broker looks up several properties of every message it stores and clients several of
/// every message they receive, so this searches for the name itself, from the end, instead of
/// splitting every pair. The result is the same as scanning [`iter`]: a match counts only at the
/// start of a pair and followed by U+0001, and a pair with an empty value is skipped.
pub fn get<'a>(properties: &'a str, name: &str) -> Option<&'a str> {
    if name.is_empty() || name.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]) {
        // Such a name never equals a parsed one by position alone; keep the general rule.
        return iter(properties)
            .filter(|(n, _)| *n == name)
            .last()
            .map(|(_, v)| v);
    }
    // Pairs from the last one back (the last occurrence wins), by a plain byte split: a
    // substring searcher would be built for every lookup, which costs more than scanning the
    // few pairs a message has.
    let name = name.as_bytes();
    for pair in properties
        .as_bytes()
        .rsplit(|b| *b == PROPERTY_SEPARATOR as u8)
    {
        if pair.len() > name.len()
            && pair[name.len()] == NAME_VALUE_SEPARATOR as u8
            && pair.starts_with(name)
        {
            let value = &pair[name.len() + 1..];
            if !value.is_empty() {
                // Both separators are ASCII, so the value's bounds are char boundaries of
                // `properties`: slice it there instead of validating the bytes again.
                let start = value.as_ptr() as usize - properties.as_ptr() as usize;
                return properties.get(start..start + value.len());
            }
        }
    }
    None
}

/// Parses into an owned map (later duplicates win).
pub fn to_map(properties: &str) -> HashMap<String, String> {
    iter(properties)
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Appends one pair in Java's format. Empty names or values would be dropped by every reader, so
/// they are not written.
pub fn push(out: &mut String, name: &str, value: &str) {
    if name.is_empty() || value.is_empty() {
        return;
    }
    out.push_str(name);
    out.push(NAME_VALUE_SEPARATOR);
    out.push_str(value);
    out.push(PROPERTY_SEPARATOR);
}

/// Encodes pairs in the given order.
pub fn encode<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::new();
    for (n, v) in pairs {
        push(&mut out, n, v);
    }
    out
}

/// Encodes a map with names sorted, so the output is deterministic.
pub fn encode_map(map: &HashMap<String, String>) -> String {
    let mut pairs: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.sort_unstable();
    encode(pairs)
}

/// `properties` with `name` set to `value` (replacing earlier occurrences).
pub fn with(properties: &str, name: &str, value: &str) -> String {
    let mut out = without(properties, name);
    push(&mut out, name, value);
    out
}

/// `properties` with every pair named `name` removed; other pairs keep their order.
pub fn without(properties: &str, name: &str) -> String {
    let mut out = String::with_capacity(properties.len());
    for (n, v) in iter(properties) {
        if n != name {
            push(&mut out, n, v);
        }
    }
    out
}

/// The TAGS property.
pub fn tags(properties: &str) -> Option<&str> {
    get(properties, keys::TAGS)
}

/// The non-empty space-separated tokens of KEYS (each is indexed by the store).
pub fn business_keys(properties: &str) -> impl Iterator<Item = &str> {
    get(properties, keys::KEYS)
        .unwrap_or("")
        .split(keys::KEY_SEPARATOR)
        .filter(|k| !k.is_empty())
}

/// The UNIQ_KEY property (client-generated message id).
pub fn uniq_key(properties: &str) -> Option<&str> {
    get(properties, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
}

/// WAIT: absent means true; only the exact Java `Boolean.parseBoolean` "true" (case-insensitive)
/// is true when present.
pub fn wait_store_msg_ok(properties: &str) -> bool {
    match get(properties, keys::WAIT_STORE_MSG_OK) {
        None => true,
        Some(v) => v.eq_ignore_ascii_case("true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_format() {
        let s = encode([("TAGS", "TagA"), ("KEYS", "k1 k2"), ("WAIT", "true")]);
        assert_eq!(s, "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}WAIT\u{1}true\u{2}");
        assert_eq!(tags(&s), Some("TagA"));
        assert_eq!(business_keys(&s).collect::<Vec<_>>(), ["k1", "k2"]);
        assert!(wait_store_msg_ok(&s));
    }

    #[test]
    fn java_parsing_rule() {
        // Segment too short, empty name, empty value, no separator, value containing U+0001.
        let s = "a\u{2}\u{1}x\u{2}y\u{1}\u{2}noval\u{2}k\u{1}v\u{1}w\u{2}K\u{1}V";
        let pairs: Vec<_> = iter(s).collect();
        assert_eq!(pairs, [("k", "v\u{1}w"), ("K", "V")]);
        assert_eq!(get("a\u{1}1\u{2}a\u{1}2\u{2}", "a"), Some("2"));
        assert!(!wait_store_msg_ok("WAIT\u{1}false\u{2}"));
        assert!(wait_store_msg_ok("WAIT\u{1}TRUE\u{2}"));
    }

    #[test]
    fn with_and_without() {
        let s = encode([("A", "1"), ("B", "2")]);
        assert_eq!(with(&s, "A", "3"), "B\u{1}2\u{2}A\u{1}3\u{2}");
        assert_eq!(without(&s, "B"), "A\u{1}1\u{2}");
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_#.]{1,12}"
    }

    proptest! {
        #[test]
        fn roundtrip(map in proptest::collection::hash_map(name(), "[^\u{1}\u{2}]{1,20}", 0..8)) {
            let s = encode_map(&map);
            prop_assert_eq!(to_map(&s), map);
        }

        #[test]
        fn get_agrees_with_parsing_every_pair(
            s in "[abé\u{1}\u{2}]{0,24}",
            name in "[abé\u{1}]{0,3}",
        ) {
            let expected = iter(&s).filter(|(n, _)| *n == name).last().map(|(_, v)| v);
            prop_assert_eq!(get(&s, &name), expected);
        }

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>()) {
            let _ = iter(&s).count();
            let _ = get(&s, "TAGS");
        }
    }
}
