//! The durable side of non-orderly POP: checkpoint (`ck`) and ack (`ack`/`bAck`) records in the
//! revive topic `rmq_sys_REVIVE_LOG_<cluster>`, and the in-memory index of in-flight batches
//! rebuilt from them at start.
//!
//! Records are ordinary messages in the revive topic's queues (not timer messages as in Java),
//! with Java's JSON bodies and tags, so `mqadmin`-style tools can still read them. A batch's
//! acks always follow its checkpoint in the same revive queue, so replaying a queue from its
//! progress offset (the offset of group `CID_RMQ_SYS_REVIVE_GROUP`) sees every live checkpoint
//! before any ack that refers to it. The progress offset is the lowest revive-queue offset of a
//! checkpoint still in flight; it never passes a checkpoint whose append has not finished yet.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_store::{GetMessageStatus, MessageInner};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::state::BrokerState;
use crate::topic_table::REVIVE_QUEUES;

/// Group whose offsets on the revive topic are the revive progress.
pub const REVIVE_GROUP: &str = "CID_RMQ_SYS_REVIVE_GROUP";
pub const CK_TAG: &str = "ck";
pub const ACK_TAG: &str = "ack";
pub const BATCH_ACK_TAG: &str = "bAck";

/// `rmq_sys_REVIVE_LOG_<brokerClusterName>`.
pub fn revive_topic(cluster: &str) -> String {
    format!("rmq_sys_REVIVE_LOG_{cluster}")
}

/// Java's `PopCheckPoint` JSON (short keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CkRecord {
    #[serde(rename = "so")]
    pub start_offset: i64,
    #[serde(rename = "pt")]
    pub pop_time: i64,
    #[serde(rename = "it")]
    pub invisible_time: i64,
    #[serde(rename = "bm", default)]
    pub bit_map: i32,
    #[serde(rename = "n")]
    pub num: u8,
    #[serde(rename = "q")]
    pub queue_id: i32,
    /// The topic actually read: the user topic or its POP retry topic.
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "c")]
    pub group: String,
    #[serde(rename = "ro", default)]
    pub revive_offset: i64,
    /// Each message's `queueOffset − startOffset`.
    #[serde(rename = "d", default)]
    pub diffs: Vec<i64>,
    #[serde(rename = "bn", default)]
    pub broker_name: String,
    #[serde(rename = "rp", default)]
    pub re_put_times: i32,
}

/// Java's `AckMsg` / `BatchAckMsg` JSON (short keys); `aol` only in batch acks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    #[serde(rename = "ao", default)]
    pub ack_offset: i64,
    #[serde(rename = "so")]
    pub start_offset: i64,
    #[serde(rename = "c")]
    pub group: String,
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "q")]
    pub queue_id: i32,
    #[serde(rename = "pt")]
    pub pop_time: i64,
    #[serde(rename = "bn", default)]
    pub broker_name: String,
    #[serde(rename = "aol", default, skip_serializing_if = "Vec::is_empty")]
    pub ack_offsets: Vec<i64>,
}

/// Identifies one popped batch: what Java keys its revive map by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CkKey {
    /// The topic actually read (user topic or POP retry topic).
    pub topic: String,
    pub group: String,
    pub queue_id: i32,
    pub start_offset: i64,
    pub pop_time: i64,
}

/// One in-flight batch.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub invisible_time: i64,
    pub revive_qid: i32,
    /// Queue offset of the `ck` record in its revive queue.
    pub revive_offset: i64,
    pub broker_name: String,
    /// Queue offsets of the popped messages (≤ 32).
    pub offsets: Vec<i64>,
    /// Bit i set = `offsets[i]` acked.
    pub acked: u32,
    pub re_put_times: i32,
}

impl Checkpoint {
    fn all_acked(&self) -> bool {
        self.offsets.len() <= 32 && self.acked.count_ones() as usize >= self.offsets.len()
    }

    /// Offsets not acked yet.
    pub fn unacked(&self) -> impl Iterator<Item = i64> + '_ {
        self.offsets
            .iter()
            .enumerate()
            .filter(|(i, _)| self.acked & (1 << i) == 0)
            .map(|(_, o)| *o)
    }
}

#[derive(Default)]
struct ReviveQueueProgress {
    /// Revive offsets of live checkpoints.
    live: BTreeSet<i64>,
    /// Checkpoint appends under way: their offsets are not known yet.
    writing: usize,
    /// Just past the last checkpoint record known.
    end: i64,
}

#[derive(Default)]
struct Index {
    cks: HashMap<CkKey, Checkpoint>,
    /// (revive time, key), earliest first.
    due: BTreeSet<(i64, CkKey)>,
    queues: Vec<ReviveQueueProgress>,
}

impl Index {
    fn remove(&mut self, key: &CkKey) -> Option<Checkpoint> {
        let ck = self.cks.remove(key)?;
        self.due
            .remove(&(key.pop_time + ck.invisible_time, key.clone()));
        if let Some(q) = self.queues.get_mut(ck.revive_qid as usize) {
            q.live.remove(&ck.revive_offset);
        }
        Some(ck)
    }
}

/// The in-flight index of non-orderly POP batches.
pub struct Checkpoints {
    inner: Mutex<Index>,
    /// Woken when a checkpoint due earlier than the revive task's sleep is added.
    pub wake: Notify,
}

impl Default for Checkpoints {
    fn default() -> Self {
        let mut index = Index::default();
        index
            .queues
            .resize_with(REVIVE_QUEUES as usize, ReviveQueueProgress::default);
        Checkpoints {
            inner: Mutex::new(index),
            wake: Notify::new(),
        }
    }
}

/// Held while a checkpoint is being appended, so revive progress cannot pass it.
pub struct WriteGuard<'a> {
    cks: &'a Checkpoints,
    qid: usize,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(q) = self.cks.inner.lock().queues.get_mut(self.qid) {
            q.writing = q.writing.saturating_sub(1);
        }
    }
}

impl Checkpoints {
    pub fn begin_write(&self, revive_qid: i32) -> WriteGuard<'_> {
        let qid = revive_qid.clamp(0, REVIVE_QUEUES - 1) as usize;
        self.inner.lock().queues[qid].writing += 1;
        WriteGuard { cks: self, qid }
    }

    /// Adds a stored checkpoint. A key already present is kept as is.
    pub fn insert(&self, key: CkKey, ck: Checkpoint) {
        let revive_time = key.pop_time + ck.invisible_time;
        let mut g = self.inner.lock();
        let earliest = g.due.first().map(|(t, _)| *t);
        if let Some(q) = g.queues.get_mut(ck.revive_qid as usize) {
            q.end = q.end.max(ck.revive_offset + 1);
        }
        if g.cks.contains_key(&key) {
            return;
        }
        if let Some(q) = g.queues.get_mut(ck.revive_qid as usize) {
            q.live.insert(ck.revive_offset);
        }
        g.due.insert((revive_time, key.clone()));
        g.cks.insert(key, ck);
        drop(g);
        if earliest.is_none_or(|t| revive_time < t) {
            self.wake.notify_one();
        }
    }

    /// Marks one offset of a batch acked; a fully acked batch leaves the index. Returns the
    /// batch's revive queue when the message was in flight, `None` when it was already acked,
    /// revived or never known (acks are idempotent).
    pub fn ack(&self, key: &CkKey, offset: i64) -> Option<i32> {
        let mut g = self.inner.lock();
        let ck = g.cks.get_mut(key)?;
        let i = ck.offsets.iter().position(|o| *o == offset)?;
        if ck.acked & (1 << i) != 0 {
            return None;
        }
        ck.acked |= 1 << i;
        let revive_qid = ck.revive_qid;
        if ck.all_acked() {
            g.remove(key);
        }
        Some(revive_qid)
    }

    /// The batch's checkpoint, if it is still in flight.
    pub fn get(&self, key: &CkKey) -> Option<Checkpoint> {
        self.inner.lock().cks.get(key).cloned()
    }

    /// Whether `offset` of the batch is in flight and not acked.
    pub fn is_unacked(&self, key: &CkKey, offset: i64) -> bool {
        let g = self.inner.lock();
        g.cks.get(key).is_some_and(|ck| {
            ck.offsets
                .iter()
                .position(|o| *o == offset)
                .is_some_and(|i| ck.acked & (1 << i) == 0)
        })
    }

    /// Takes up to `max` checkpoints whose revive time has come off the due list. They stay in
    /// the index (acks still land) until [`Checkpoints::finish`] or a reschedule.
    pub fn take_due(&self, now: i64, max: usize) -> Vec<(CkKey, Checkpoint)> {
        let mut g = self.inner.lock();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((t, key)) = g.due.first().cloned() else {
                break;
            };
            if t > now {
                break;
            }
            g.due.pop_first();
            if let Some(ck) = g.cks.get(&key) {
                out.push((key, ck.clone()));
            }
        }
        out
    }

    /// Puts a taken checkpoint back on the due list (its revive failed).
    pub fn reschedule(&self, key: &CkKey, at: i64) {
        let mut g = self.inner.lock();
        if let Some(ck) = g.cks.get_mut(key) {
            // Moving the revive time keeps the due-list entry and the checkpoint consistent.
            ck.invisible_time = at - key.pop_time;
            ck.re_put_times += 1;
            g.due.insert((at, key.clone()));
        }
    }

    /// Drops a revived checkpoint.
    pub fn finish(&self, key: &CkKey) {
        self.inner.lock().remove(key);
    }

    /// When the next checkpoint is due.
    pub fn next_due(&self) -> Option<i64> {
        self.inner.lock().due.first().map(|(t, _)| *t)
    }

    /// The revive queue's safe progress offset, or `None` while an append is under way.
    pub fn progress(&self, revive_qid: i32) -> Option<i64> {
        let g = self.inner.lock();
        let q = g.queues.get(revive_qid as usize)?;
        if q.writing > 0 {
            return None;
        }
        Some(q.live.first().copied().unwrap_or(q.end))
    }

    fn set_end(&self, revive_qid: i32, end: i64) {
        if let Some(q) = self.inner.lock().queues.get_mut(revive_qid as usize) {
            q.end = q.end.max(end);
        }
    }

    /// Number of in-flight batches (tests, stats).
    pub fn len(&self) -> usize {
        self.inner.lock().cks.len()
    }
}

/// A revive-topic message carrying a JSON record.
pub fn record_message(s: &BrokerState, revive_qid: i32, tag: &str, body: Vec<u8>) -> MessageInner {
    let mut msg = MessageInner::new(
        revive_topic(&s.config().broker_cluster_name),
        revive_qid,
        Bytes::from(body),
    );
    msg.properties = properties::encode([(keys::TAGS, tag)]);
    msg.born_host = s.store_host;
    msg.store_host = s.store_host;
    msg
}

/// Appends a checkpoint and indexes it. `Err` carries the remark when the store refused it.
pub async fn append_checkpoint(
    s: &BrokerState,
    key: CkKey,
    revive_qid: i32,
    invisible_time: i64,
    offsets: Vec<i64>,
) -> Result<(), String> {
    let broker_name = s.config().broker_name.clone();
    let record = CkRecord {
        start_offset: key.start_offset,
        pop_time: key.pop_time,
        invisible_time,
        bit_map: 0,
        num: offsets.len() as u8,
        queue_id: key.queue_id,
        topic: key.topic.clone(),
        group: key.group.clone(),
        revive_offset: -1,
        diffs: offsets.iter().map(|o| o - key.start_offset).collect(),
        broker_name: broker_name.clone(),
        re_put_times: 0,
    };
    let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    let msg = record_message(s, revive_qid, CK_TAG, body);
    let guard = s.pop.checkpoints.begin_write(revive_qid);
    let result = s.store.put_message(msg).await;
    let Some(append) = result.append.filter(|_| result.status.is_stored()) else {
        return Err(format!(
            "cannot store the pop checkpoint: {}",
            result.remark.unwrap_or(result.status.as_str())
        ));
    };
    s.pop.checkpoints.insert(
        key,
        Checkpoint {
            invisible_time,
            revive_qid,
            revive_offset: append.logics_offset,
            broker_name,
            offsets,
            acked: 0,
            re_put_times: 0,
        },
    );
    drop(guard);
    Ok(())
}

/// Appends an ack record (`ack` for one offset, `bAck` for several).
pub async fn append_ack(
    s: &BrokerState,
    key: &CkKey,
    revive_qid: i32,
    offsets: &[i64],
) -> Result<(), String> {
    let (tag, ack_offset, list) = match offsets {
        [one] => (ACK_TAG, *one, Vec::new()),
        many => (BATCH_ACK_TAG, -1, many.to_vec()),
    };
    let record = AckRecord {
        ack_offset,
        start_offset: key.start_offset,
        group: key.group.clone(),
        topic: key.topic.clone(),
        queue_id: key.queue_id,
        pop_time: key.pop_time,
        broker_name: s.config().broker_name.clone(),
        ack_offsets: list,
    };
    let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    let qid = revive_qid.clamp(0, REVIVE_QUEUES - 1);
    let result = s.store.put_message(record_message(s, qid, tag, body)).await;
    if result.status.is_stored() {
        Ok(())
    } else {
        Err(format!(
            "cannot store the pop ack: {}",
            result.remark.unwrap_or(result.status.as_str())
        ))
    }
}

/// What start-up replay found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub records: usize,
    pub in_flight: usize,
}

/// Applies one revive-log record during replay; returns the checkpoint end it implies, if any.
fn replay_record(
    cks: &Checkpoints,
    qid: i32,
    queue_offset: i64,
    view: &RecordView<'_>,
) -> Option<(String, String, i32, i64)> {
    let tag = view.property(keys::TAGS).unwrap_or_default();
    match tag {
        CK_TAG => {
            let r: CkRecord = serde_json::from_slice(view.body()).ok()?;
            let offsets: Vec<i64> = r.diffs.iter().map(|d| r.start_offset + d).collect();
            let end = offsets.iter().max().map_or(r.start_offset, |m| m + 1);
            let key = CkKey {
                topic: r.topic.clone(),
                group: r.group.clone(),
                queue_id: r.queue_id,
                start_offset: r.start_offset,
                pop_time: r.pop_time,
            };
            cks.insert(
                key,
                Checkpoint {
                    invisible_time: r.invisible_time,
                    revive_qid: qid,
                    revive_offset: queue_offset,
                    broker_name: r.broker_name,
                    offsets,
                    acked: r.bit_map as u32,
                    re_put_times: r.re_put_times,
                },
            );
            Some((r.topic, r.group, r.queue_id, end))
        }
        ACK_TAG | BATCH_ACK_TAG => {
            let r: AckRecord = serde_json::from_slice(view.body()).ok()?;
            let key = CkKey {
                topic: r.topic,
                group: r.group,
                queue_id: r.queue_id,
                start_offset: r.start_offset,
                pop_time: r.pop_time,
            };
            if r.ack_offsets.is_empty() {
                cks.ack(&key, r.ack_offset);
            }
            for o in r.ack_offsets {
                cks.ack(&key, o);
            }
            None
        }
        _ => None,
    }
}

/// Rebuilds the in-flight index from the revive log (blocking: run it off the async workers).
/// Consumer offsets are moved past everything a replayed checkpoint handed out, since the
/// offsets file may be older than the log after a crash.
pub fn recover(s: &BrokerState) -> Recovered {
    let topic = revive_topic(&s.config().broker_cluster_name);
    if !s.store.wait_dispatched(std::time::Duration::from_secs(30)) {
        tracing::warn!("store dispatch still behind while recovering pop checkpoints");
    }
    let mut out = Recovered::default();
    let mut handed_out: HashMap<(String, String, i32), i64> = HashMap::new();
    for qid in 0..REVIVE_QUEUES {
        let mut offset = s.offsets.query(&topic, REVIVE_GROUP, qid).unwrap_or(0);
        loop {
            let r = s
                .store
                .get_messages(&topic, qid, offset, 64, usize::MAX, None);
            match r.status {
                GetMessageStatus::Found => {
                    for (record, qo) in r.messages.iter().zip(&r.queue_offsets) {
                        let Ok(view) = RecordView::parse(record) else {
                            continue;
                        };
                        out.records += 1;
                        if let Some((t, g, q, end)) =
                            replay_record(&s.pop.checkpoints, qid, *qo, &view)
                        {
                            let e = handed_out.entry((t, g, q)).or_insert(end);
                            *e = (*e).max(end);
                        }
                    }
                }
                GetMessageStatus::OffsetTooSmall
                | GetMessageStatus::OffsetOverflowBadly
                | GetMessageStatus::OffsetFoundNull
                | GetMessageStatus::NoMatchedMessage
                | GetMessageStatus::MessageWasRemoving
                    if r.next_begin_offset > offset => {}
                _ => break,
            }
            if r.next_begin_offset <= offset {
                break;
            }
            offset = r.next_begin_offset;
        }
        s.pop.checkpoints.set_end(qid, offset);
    }
    for ((t, g, q), end) in handed_out {
        if s.offsets.query(&t, &g, q).is_none_or(|c| c < end) {
            s.offsets.commit(&t, &g, q, end);
        }
    }
    out.in_flight = s.pop.checkpoints.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: i64, pt: i64) -> CkKey {
        CkKey {
            topic: "T".into(),
            group: "G".into(),
            queue_id: 0,
            start_offset: start,
            pop_time: pt,
        }
    }

    fn ck(revive_offset: i64, offsets: Vec<i64>) -> Checkpoint {
        Checkpoint {
            invisible_time: 1000,
            revive_qid: 1,
            revive_offset,
            broker_name: "b".into(),
            offsets,
            acked: 0,
            re_put_times: 0,
        }
    }

    #[test]
    fn acks_are_idempotent_and_full_batches_leave() {
        let cks = Checkpoints::default();
        cks.insert(key(0, 10), ck(5, vec![0, 1, 3]));
        assert_eq!(cks.progress(1), Some(5));
        assert_eq!(cks.ack(&key(0, 10), 1), Some(1));
        assert_eq!(cks.ack(&key(0, 10), 1), None);
        assert_eq!(cks.ack(&key(0, 10), 2), None);
        assert_eq!(cks.ack(&key(0, 99), 0), None);
        assert!(cks.is_unacked(&key(0, 10), 3));
        cks.ack(&key(0, 10), 0);
        cks.ack(&key(0, 10), 3);
        assert_eq!(cks.len(), 0);
        assert_eq!(cks.progress(1), Some(6));
        assert!(cks.take_due(i64::MAX, 10).is_empty());
    }

    #[test]
    fn due_order_and_progress_waits_for_appends() {
        let cks = Checkpoints::default();
        cks.insert(key(10, 2000), ck(7, vec![10]));
        cks.insert(key(0, 1000), ck(8, vec![0, 1]));
        assert_eq!(cks.next_due(), Some(2000));
        let due = cks.take_due(2500, 10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, key(0, 1000));
        cks.reschedule(&key(0, 1000), 4000);
        assert_eq!(cks.next_due(), Some(3000));
        let guard = cks.begin_write(1);
        assert_eq!(cks.progress(1), None);
        drop(guard);
        assert_eq!(cks.progress(1), Some(7));
        cks.finish(&key(10, 2000));
        assert_eq!(cks.progress(1), Some(8));
        let unacked: Vec<i64> = cks.get(&key(0, 1000)).unwrap().unacked().collect();
        assert_eq!(unacked, vec![0, 1]);
    }

    #[test]
    fn records_use_java_keys() {
        let r = CkRecord {
            start_offset: 4,
            pop_time: 1,
            invisible_time: 2,
            bit_map: 0,
            num: 2,
            queue_id: 3,
            topic: "T".into(),
            group: "G".into(),
            revive_offset: -1,
            diffs: vec![0, 2],
            broker_name: "b".into(),
            re_put_times: 0,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#""so":4"#) && json.contains(r#""d":[0,2]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<CkRecord>(&json).unwrap(), r);
        let a: AckRecord =
            serde_json::from_str(r#"{"ao":5,"so":4,"c":"G","t":"T","q":3,"pt":1,"bn":"b"}"#)
                .unwrap();
        assert_eq!(a.ack_offset, 5);
        assert!(a.ack_offsets.is_empty());
    }
}
