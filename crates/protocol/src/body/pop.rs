//! BATCH_ACK_MESSAGE (200151) body: `{"acks":[{"c":…,"t":…,"r":…,"so":…,"q":…,"rq":…,"pt":…,
//! "it":…,"b":…}],"brokerName":…}`, as Java's `BatchAckMessageRequestBody` is written by
//! fastjson. Short keys are written; the long field names are accepted too. `b` is a
//! `java.util.BitSet` of `queueOffset − startOffset`, serialized as its little-endian byte array
//! (`BitSet.toByteArray`) in base64.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The request body of BATCH_ACK_MESSAGE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchAckMessageRequestBody {
    pub broker_name: String,
    pub acks: Vec<BatchAck>,
}

/// The acks of one popped batch (one queue, one pop time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchAck {
    #[serde(rename = "c", alias = "consumerGroup")]
    pub consumer_group: String,
    /// The user topic (not the retry topic; `retry` says which one was read).
    #[serde(rename = "t", alias = "topic")]
    pub topic: String,
    /// Retry flag as on the wire: "0", "1" or "2".
    #[serde(rename = "r", alias = "retry")]
    pub retry: String,
    #[serde(rename = "so", alias = "startOffset")]
    pub start_offset: i64,
    #[serde(rename = "q", alias = "queueId")]
    pub queue_id: i32,
    #[serde(rename = "rq", alias = "reviveQueueId")]
    pub revive_queue_id: i32,
    #[serde(rename = "pt", alias = "popTime")]
    pub pop_time: i64,
    #[serde(rename = "it", alias = "invisibleTime")]
    pub invisible_time: i64,
    #[serde(rename = "b", alias = "bitSet")]
    pub bit_set: AckBitSet,
}

/// Java's `BitSet` of acked positions (`queueOffset − startOffset`) in its
/// `toByteArray` form: bit `i` is bit `i % 8` of byte `i / 8`, no trailing zero bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckBitSet(Vec<u8>);

impl AckBitSet {
    pub fn from_bytes(mut bytes: Vec<u8>) -> Self {
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        AckBitSet(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn insert(&mut self, index: u32) {
        let byte = (index / 8) as usize;
        if self.0.len() <= byte {
            self.0.resize(byte + 1, 0);
        }
        self.0[byte] |= 1 << (index % 8);
    }

    pub fn contains(&self, index: u32) -> bool {
        self.0
            .get((index / 8) as usize)
            .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }

    /// Set positions in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, b)| {
            (0..8u32).filter_map(move |bit| (b & (1 << bit) != 0).then_some(i as u32 * 8 + bit))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl FromIterator<u32> for AckBitSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut set = AckBitSet::default();
        for i in iter {
            set.insert(i);
        }
        set
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl Serialize for AckBitSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64_encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for AckBitSet {
    /// fastjson reads a `byte[]` from a base64 string or from an array of (signed) numbers.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AckBitSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a base64 string or an array of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AckBitSet, E> {
                base64_decode(v)
                    .map(AckBitSet::from_bytes)
                    .ok_or_else(|| E::custom("invalid base64 in bit set"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<AckBitSet, E> {
                Ok(AckBitSet::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AckBitSet, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<i16>()? {
                    bytes.push(b as u8);
                }
                Ok(AckBitSet::from_bytes(bytes))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_java_batch_ack() {
        // BitSet {0, 2, 9} → bytes [0b101, 0b10] → "BQI=".
        let json = r#"{"acks":[{"b":"BQI=","c":"G","it":30000,"pt":1700000000000,"q":1,
            "r":"0","rq":3,"so":10,"t":"T"}],"brokerName":"broker-a"}"#;
        let body: BatchAckMessageRequestBody = serde_json::from_str(json).unwrap();
        assert_eq!(body.broker_name, "broker-a");
        let ack = &body.acks[0];
        assert_eq!(ack.bit_set.iter().collect::<Vec<_>>(), vec![0, 2, 9]);
        assert_eq!(
            (ack.start_offset, ack.queue_id, ack.revive_queue_id),
            (10, 1, 3)
        );
        let back = serde_json::to_string(&body).unwrap();
        assert!(back.contains(r#""b":"BQI=""#), "{back}");
        assert_eq!(
            serde_json::from_str::<BatchAckMessageRequestBody>(&back).unwrap(),
            body
        );
    }

    #[test]
    fn long_names_and_byte_arrays() {
        let json = r#"{"acks":[{"bitSet":[1,-128],"consumerGroup":"G","topic":"T",
            "retry":"1","startOffset":4,"queueId":0,"reviveQueueId":0,"popTime":1,
            "invisibleTime":2}]}"#;
        let body: BatchAckMessageRequestBody = serde_json::from_str(json).unwrap();
        assert_eq!(body.acks[0].bit_set.iter().collect::<Vec<_>>(), vec![0, 15]);
        assert_eq!(body.acks[0].retry, "1");
    }

    proptest! {
        #[test]
        fn bit_sets_round_trip(mut idx in proptest::collection::vec(0u32..256, 0..20)) {
            let set: AckBitSet = idx.iter().copied().collect();
            idx.sort_unstable();
            idx.dedup();
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), idx);
            let json = serde_json::to_string(&set).unwrap();
            prop_assert_eq!(serde_json::from_str::<AckBitSet>(&json).unwrap(), set);
        }

        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(base64_decode(&base64_encode(&bytes)), Some(bytes));
        }
    }
}
