//! The recall handle of a timer (delay) message (RocketMQ 5.3, grpc-v5.md §12): the send
//! response of a parked timer message carries it, and RECALL_MESSAGE (370) or gRPC
//! RecallMessage hands it back to cancel the message before it is due.
//!
//! The layout is Java's `RecallMessageHandle.HandleV1`: URL-safe base64 of
//! `v1 <topic> <brokerName> <timestamp> <uniqKey>`, space separated, where the timestamp is
//! the message's rounded due time (`TIMER_OUT_MS`) plus one, in epoch ms.

use base64::Engine as _;

const VERSION_1: &str = "v1";

/// Why a recall handle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecallHandleError {
    #[error("recall handle is invalid: not URL-safe base64 text")]
    NotBase64,
    #[error("recall handle is invalid: expected `v1 topic brokerName timestamp messageId`")]
    Malformed,
}

/// A decoded v1 recall handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallHandle {
    /// The message's real topic.
    pub topic: String,
    /// The broker group holding the parked message.
    pub broker_name: String,
    /// Epoch ms as written: the due time plus one. Kept as text, as Java compares it.
    pub timestamp: String,
    /// The message's UNIQ_KEY.
    pub message_id: String,
}

impl RecallHandle {
    /// The handle of a message parked until `timer_out_ms` (its `TIMER_OUT_MS`).
    pub fn for_parked(topic: &str, broker_name: &str, timer_out_ms: i64, uniq_key: &str) -> Self {
        RecallHandle {
            topic: topic.to_owned(),
            broker_name: broker_name.to_owned(),
            timestamp: timer_out_ms.saturating_add(1).to_string(),
            message_id: uniq_key.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        let raw = [
            VERSION_1,
            &self.topic,
            &self.broker_name,
            &self.timestamp,
            &self.message_id,
        ]
        .join(" ");
        base64::engine::general_purpose::URL_SAFE.encode(raw)
    }

    /// Reads a handle; padding is optional, as for Java's URL decoder.
    pub fn decode(handle: &str) -> Result<RecallHandle, RecallHandleError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(handle.trim().trim_end_matches('='))
            .map_err(|_| RecallHandleError::NotBase64)?;
        let raw = String::from_utf8(bytes).map_err(|_| RecallHandleError::NotBase64)?;
        let items: Vec<&str> = raw.split(' ').collect();
        if items.len() < 5 || items[0] != VERSION_1 || items[1..5].iter().any(|s| s.is_empty()) {
            return Err(RecallHandleError::Malformed);
        }
        Ok(RecallHandle {
            topic: items[1].to_owned(),
            broker_name: items[2].to_owned(),
            timestamp: items[3].to_owned(),
            message_id: items[4].to_owned(),
        })
    }

    /// The timestamp as epoch ms, if it is a number.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp.parse().ok()
    }
}

/// The `TIMER_DEL_UNIQKEY` value of the delete marker that recalls `uniq_key` of `topic`.
pub fn delete_key(topic: &str, uniq_key: &str) -> String {
    format!("{topic}+{uniq_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_layout() {
        let h = RecallHandle::for_parked("orders", "broker-a", 1_888_825_599_999, "ABC");
        // base64url("v1 orders broker-a 1888825600000 ABC")
        assert_eq!(
            h.encode(),
            "djEgb3JkZXJzIGJyb2tlci1hIDE4ODg4MjU2MDAwMDAgQUJD"
        );
        assert_eq!(RecallHandle::decode(&h.encode()).unwrap(), h);
        assert_eq!(h.timestamp_ms(), Some(1_888_825_600_000));
    }

    #[test]
    fn bad_handles_are_errors() {
        assert_eq!(RecallHandle::decode(""), Err(RecallHandleError::Malformed));
        assert_eq!(
            RecallHandle::decode("v1 a b c d"),
            Err(RecallHandleError::NotBase64)
        );
        let v2 = base64::engine::general_purpose::URL_SAFE.encode("v2 a b c d");
        assert_eq!(RecallHandle::decode(&v2), Err(RecallHandleError::Malformed));
        let short = base64::engine::general_purpose::URL_SAFE.encode("v1 a b c");
        assert_eq!(
            RecallHandle::decode(&short),
            Err(RecallHandleError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,200}") {
            let _ = RecallHandle::decode(&s);
        }

        #[test]
        fn round_trip(topic in "[A-Za-z0-9_%-]{1,40}", broker in "[a-z0-9-]{1,20}",
                      ts in 0i64..i64::MAX - 1, id in "[0-9A-F]{32}") {
            let h = RecallHandle::for_parked(&topic, &broker, ts, &id);
            prop_assert_eq!(RecallHandle::decode(&h.encode()).unwrap(), h);
        }
    }
}
