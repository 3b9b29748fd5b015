//! Queue allocation strategies for clustering consumers.
//!
//! Every member of a group runs the same strategy over the same sorted inputs (all queues, all
//! client ids) and takes its own share, so the group divides the queues without talking to
//! each other. The results must match the Java client's exactly, or mixed-language groups would
//! double-consume or starve queues.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use ferrymq_protocol::body::MessageQueue;

/// How a clustering group divides its queues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllocateStrategy {
    /// Contiguous ranges, the first `n % c` consumers taking one extra (Java "AVG", the default).
    #[default]
    Averagely,
    /// Queue k to consumer k % c ("AVG_BY_CIRCLE").
    AveragelyByCircle,
    /// A hash ring of client ids with this many virtual nodes each ("CONSISTENT_HASH", 10).
    ConsistentHash {
        /// Ring positions per client id.
        virtual_nodes: usize,
    },
    /// A fixed list, whatever the group looks like ("CONFIG").
    Config(Vec<MessageQueue>),
}

impl AllocateStrategy {
    /// The strategy name Java reports.
    pub fn name(&self) -> &'static str {
        match self {
            AllocateStrategy::Averagely => "AVG",
            AllocateStrategy::AveragelyByCircle => "AVG_BY_CIRCLE",
            AllocateStrategy::ConsistentHash { .. } => "CONSISTENT_HASH",
            AllocateStrategy::Config(_) => "CONFIG",
        }
    }

    /// The queues `me` should consume. `all_queues` and `all_clients` must be sorted (queues by
    /// topic, broker name, queue id; client ids lexicographically). Returns nothing when `me` is
    /// not in the group (it has not heart-beaten this broker yet).
    pub fn allocate(
        &self,
        me: &str,
        all_queues: &[MessageQueue],
        all_clients: &[String],
    ) -> Vec<MessageQueue> {
        if let AllocateStrategy::Config(list) = self {
            return list.clone();
        }
        let Some(index) = all_clients.iter().position(|c| c == me) else {
            return Vec::new();
        };
        if all_queues.is_empty() {
            return Vec::new();
        }
        let n = all_queues.len();
        let c = all_clients.len();
        match self {
            AllocateStrategy::Averagely => {
                let rem = n % c;
                let size = if n <= c {
                    1
                } else if index < rem {
                    n / c + 1
                } else {
                    n / c
                };
                let start = if index < rem {
                    index * size
                } else {
                    index * size + rem
                };
                let take = size.min(n.saturating_sub(start));
                all_queues[start.min(n)..start.min(n) + take].to_vec()
            }
            AllocateStrategy::AveragelyByCircle => all_queues
                .iter()
                .enumerate()
                .filter(|(k, _)| k % c == index)
                .map(|(_, mq)| mq.clone())
                .collect(),
            AllocateStrategy::ConsistentHash { virtual_nodes } => {
                let mut ring: BTreeMap<i64, &str> = BTreeMap::new();
                for client in all_clients {
                    for replica in 0..*virtual_nodes {
                        ring.insert(md5_hash(&format!("{client}-{replica}")), client);
                    }
                }
                all_queues
                    .iter()
                    .filter(|mq| {
                        let h = md5_hash(&queue_key(mq));
                        let owner = ring.range(h..).next().or_else(|| ring.iter().next());
                        owner.is_some_and(|(_, c)| *c == me)
                    })
                    .cloned()
                    .collect()
            }
            AllocateStrategy::Config(_) => unreachable!("handled above"),
        }
    }
}

/// `MessageQueue.toString()` in Java, the key the hash ring places queues by.
fn queue_key(mq: &MessageQueue) -> String {
    format!(
        "MessageQueue [topic={}, brokerName={}, queueId={}]",
        mq.topic, mq.broker_name, mq.queue_id
    )
}

/// First four MD5 bytes as an unsigned big-endian number, as RocketMQ's ring hashes keys.
fn md5_hash(key: &str) -> i64 {
    let digest = Md5::digest(key.as_bytes());
    digest[..4].iter().fold(0i64, |h, b| (h << 8) | *b as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|q| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: q,
            })
            .collect()
    }

    fn clients(c: usize) -> Vec<String> {
        (0..c).map(|i| format!("cid{i}")).collect()
    }

    fn ids(v: &[MessageQueue]) -> Vec<i32> {
        v.iter().map(|m| m.queue_id).collect()
    }

    #[test]
    fn averagely_matches_java() {
        let q = queues(8);
        let c = clients(3);
        let s = AllocateStrategy::Averagely;
        assert_eq!(ids(&s.allocate("cid0", &q, &c)), vec![0, 1, 2]);
        assert_eq!(ids(&s.allocate("cid1", &q, &c)), vec![3, 4, 5]);
        assert_eq!(ids(&s.allocate("cid2", &q, &c)), vec![6, 7]);
        // More consumers than queues: the tail gets nothing.
        let c = clients(5);
        let q = queues(3);
        assert_eq!(ids(&s.allocate("cid2", &q, &c)), vec![2]);
        assert!(s.allocate("cid4", &q, &c).is_empty());
        assert!(s.allocate("stranger", &q, &c).is_empty());
    }

    #[test]
    fn by_circle() {
        let s = AllocateStrategy::AveragelyByCircle;
        assert_eq!(
            ids(&s.allocate("cid1", &queues(8), &clients(3))),
            vec![1, 4, 7]
        );
    }

    #[test]
    fn md5_hash_matches_java() {
        // MD5("abc") = 900150983cd24fb0…; first four bytes 0x90015098.
        assert_eq!(md5_hash("abc"), 0x9001_5098);
    }

    proptest::proptest! {
        #[test]
        fn every_queue_has_exactly_one_owner(n in 0i32..40, c in 1usize..9, ring in proptest::bool::ANY) {
            let q = queues(n);
            let cl = clients(c);
            let strategies = if ring {
                vec![AllocateStrategy::ConsistentHash { virtual_nodes: 10 }]
            } else {
                vec![AllocateStrategy::Averagely, AllocateStrategy::AveragelyByCircle]
            };
            for s in strategies {
                let mut seen = HashSet::new();
                for me in &cl {
                    for mq in s.allocate(me, &q, &cl) {
                        proptest::prop_assert!(seen.insert(mq.queue_id), "queue assigned twice");
                    }
                }
                proptest::prop_assert_eq!(seen.len(), n as usize);
            }
        }
    }
}
