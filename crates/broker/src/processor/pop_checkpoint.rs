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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_store::{GetMessageStatus, MessageInner, PutHandle};
use futures::FutureExt;
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

/// Slack between `popTime + invisibleTime` and the revive. Java writes a checkpoint's timer
/// record to fire ~1 s after an ack could still land (`ackTimeInterval` 1000 ms), so an ack sent
/// right at the deadline still wins; we keep the same grace.
pub const REVIVE_GRACE_MS: i64 = 1000;
/// How long a moved handle (CHANGE_MESSAGE_INVISIBLETIME) is remembered after the old batch's
/// revive time, so a retried change answers the same new handle.
const MOVED_KEEP_MS: i64 = 60_000;

/// When a batch popped at `pop_time` revives. Request-supplied times never overflow here.
pub fn revive_time(pop_time: i64, invisible_time: i64) -> i64 {
    pop_time
        .saturating_add(invisible_time)
        .saturating_add(REVIVE_GRACE_MS)
}

/// One in-flight batch.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub invisible_time: i64,
    pub revive_qid: i32,
    /// Queue offset of the `ck` record in its revive queue (a lower bound of it while its
    /// append is still being flushed).
    pub revive_offset: i64,
    pub broker_name: String,
    /// Queue offsets of the popped messages (≤ 32).
    pub offsets: Vec<i64>,
    /// Bit i set = `offsets[i]` acked (or revived, or moved to a new checkpoint).
    pub acked: u32,
    /// Bits acked in memory whose record is not stored yet: the batch stays indexed until they
    /// are, and a failed append clears them again so a retried ack writes its record.
    pub persisting: u32,
    pub re_put_times: i32,
    /// When it revives (its due-list entry).
    pub due_at: i64,
}

impl Checkpoint {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pop_time: i64,
        invisible_time: i64,
        revive_qid: i32,
        revive_offset: i64,
        broker_name: String,
        offsets: Vec<i64>,
        acked: u32,
        re_put_times: i32,
    ) -> Checkpoint {
        Checkpoint {
            invisible_time,
            revive_qid,
            revive_offset,
            broker_name,
            offsets,
            acked,
            persisting: 0,
            re_put_times,
            due_at: revive_time(pop_time, invisible_time),
        }
    }

    fn all_acked(&self) -> bool {
        self.offsets.len() <= 32 && self.acked.count_ones() as usize >= self.offsets.len()
    }

    fn bit(&self, offset: i64) -> Option<u32> {
        self.offsets
            .iter()
            .position(|o| *o == offset)
            .filter(|i| *i < 32)
            .map(|i| 1u32 << i)
    }

    /// Offsets not acked yet.
    pub fn unacked(&self) -> impl Iterator<Item = i64> + '_ {
        self.offsets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 32 && self.acked & (1 << i) == 0)
            .map(|(_, o)| *o)
    }
}

/// A multiset of revive-queue offsets.
#[derive(Default)]
struct Offsets(BTreeMap<i64, u32>);

impl Offsets {
    fn add(&mut self, o: i64) {
        *self.0.entry(o).or_default() += 1;
    }
    fn remove(&mut self, o: i64) {
        if let Some(n) = self.0.get_mut(&o) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&o);
            }
        }
    }
    fn first(&self) -> Option<i64> {
        self.0.keys().next().copied()
    }
}

#[derive(Default)]
struct ReviveQueueProgress {
    /// Revive offsets of live checkpoints.
    live: Offsets,
    /// Checkpoint appends under way: lower bounds of the offsets they will get.
    writing: Offsets,
    /// Just past the last checkpoint record known.
    end: i64,
}

/// Where CHANGE_MESSAGE_INVISIBLETIME moved one message of a batch.
#[derive(Debug, Clone)]
struct Moved {
    pop_time: i64,
    invisible_time: i64,
    revive_qid: i32,
    /// The new checkpoint is stored and indexed.
    recorded: bool,
    /// An ack with the old handle arrived before that: the new checkpoint is acked at once.
    acked_early: bool,
    forget_at: i64,
}

#[derive(Default)]
struct Index {
    cks: HashMap<CkKey, Checkpoint>,
    /// (revive time, key), earliest first.
    due: BTreeSet<(i64, CkKey)>,
    queues: Vec<ReviveQueueProgress>,
    /// (old batch, offset) → the new checkpoint of a changed invisible time.
    moved: HashMap<(CkKey, i64), Moved>,
}

impl Index {
    fn remove(&mut self, key: &CkKey) -> Option<Checkpoint> {
        let ck = self.cks.remove(key)?;
        self.due.remove(&(ck.due_at, key.clone()));
        if let Some(q) = self.queues.get_mut(ck.revive_qid as usize) {
            q.live.remove(ck.revive_offset);
        }
        Some(ck)
    }

    /// Drops a batch whose every message is acked and stored as such.
    fn remove_if_done(&mut self, key: &CkKey) {
        if self
            .cks
            .get(key)
            .is_some_and(|ck| ck.all_acked() && ck.persisting == 0)
        {
            self.remove(key);
        }
    }
}

/// Ack records to append: `offsets` of batch `key` in revive queue `revive_qid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckWrite {
    pub key: CkKey,
    pub revive_qid: i32,
    pub offsets: Vec<i64>,
}

/// Outcome of [`Checkpoints::move_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveOutcome {
    /// The message was moved before (a retried change): answer the same new handle.
    Existing {
        pop_time: i64,
        invisible_time: i64,
        revive_qid: i32,
    },
    /// Marked moved; store the new checkpoint in `revive_qid`, then call
    /// [`Checkpoints::move_recorded`] (or [`Checkpoints::move_failed`]).
    Started { revive_qid: i32 },
    /// Acked, revived or never known: the handle is dead.
    NotInFlight,
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
    bound: i64,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(q) = self.cks.inner.lock().queues.get_mut(self.qid) {
            q.writing.remove(self.bound);
        }
    }
}

impl Checkpoints {
    /// Registers an append to revive queue `revive_qid` that will land at or after `bound`.
    pub fn begin_write(&self, revive_qid: i32, bound: i64) -> WriteGuard<'_> {
        let qid = revive_qid.clamp(0, REVIVE_QUEUES - 1) as usize;
        self.inner.lock().queues[qid].writing.add(bound);
        WriteGuard {
            cks: self,
            qid,
            bound,
        }
    }

    /// Adds a stored checkpoint. A key already present is kept as is (returns false).
    pub fn insert(&self, key: CkKey, ck: Checkpoint) -> bool {
        let revive_time = ck.due_at;
        let mut g = self.inner.lock();
        let earliest = g.due.first().map(|(t, _)| *t);
        if let Some(q) = g.queues.get_mut(ck.revive_qid as usize) {
            q.end = q.end.max(ck.revive_offset.saturating_add(1));
        }
        if g.cks.contains_key(&key) {
            return false;
        }
        if let Some(q) = g.queues.get_mut(ck.revive_qid as usize) {
            q.live.add(ck.revive_offset);
        }
        let done = ck.all_acked();
        g.due.insert((revive_time, key.clone()));
        g.cks.insert(key.clone(), ck);
        if done {
            // A replayed record whose bitmap is already full.
            g.remove(&key);
            return true;
        }
        drop(g);
        if earliest.is_none_or(|t| revive_time < t) {
            self.wake.notify_one();
        }
        true
    }

    /// Replaces a checkpoint's provisional revive offset with the real one.
    pub fn set_revive_offset(&self, key: &CkKey, real: i64) {
        let mut g = self.inner.lock();
        let Some(ck) = g.cks.get_mut(key) else {
            return;
        };
        let (qid, old) = (ck.revive_qid, ck.revive_offset);
        ck.revive_offset = real;
        if let Some(q) = g.queues.get_mut(qid as usize) {
            q.live.remove(old);
            q.live.add(real);
            q.end = q.end.max(real.saturating_add(1));
        }
    }

    /// Marks offsets of a batch acked and returns the records to append; then call
    /// [`Checkpoints::ack_persisted`] with each. Offsets already acked, revived or unknown are
    /// skipped (acks are idempotent); an offset moved by a change of invisible time acks its
    /// new checkpoint instead (the client may ack the handle it had while a renewal raced).
    pub fn ack(&self, key: &CkKey, offsets: &[i64]) -> Vec<AckWrite> {
        let mut g = self.inner.lock();
        let mut out: Vec<AckWrite> = Vec::new();
        for &offset in offsets {
            let (mut key, mut offset_key) = (key.clone(), offset);
            // Follow moves (a message can be changed several times), bounded.
            for _ in 0..64 {
                let Some(m) = g.moved.get_mut(&(key.clone(), offset_key)) else {
                    break;
                };
                if !m.recorded {
                    m.acked_early = true;
                    offset_key = i64::MIN;
                    break;
                }
                key = CkKey {
                    start_offset: offset_key,
                    pop_time: m.pop_time,
                    ..key
                };
            }
            if offset_key == i64::MIN {
                continue;
            }
            let Some(ck) = g.cks.get_mut(&key) else {
                continue;
            };
            let Some(bit) = ck.bit(offset_key) else {
                continue;
            };
            if ck.acked & bit != 0 {
                continue;
            }
            ck.acked |= bit;
            ck.persisting |= bit;
            let revive_qid = ck.revive_qid;
            match out.iter_mut().find(|w| w.key == key) {
                Some(w) => w.offsets.push(offset_key),
                None => out.push(AckWrite {
                    key,
                    revive_qid,
                    offsets: vec![offset_key],
                }),
            }
        }
        out
    }

    /// The ack record of `offsets` was stored (`ok`) or not: on failure the offsets count as
    /// un-acked again, so the client's retry writes the record.
    pub fn ack_persisted(&self, key: &CkKey, offsets: &[i64], ok: bool) {
        let mut g = self.inner.lock();
        let Some(ck) = g.cks.get_mut(key) else {
            return;
        };
        for o in offsets {
            if let Some(bit) = ck.bit(*o) {
                ck.persisting &= !bit;
                if !ok {
                    ck.acked &= !bit;
                }
            }
        }
        g.remove_if_done(key);
    }

    /// Marks offsets acked without a pending record (replay of stored acks).
    pub fn mark_acked(&self, key: &CkKey, offsets: &[i64]) {
        let mut g = self.inner.lock();
        let Some(ck) = g.cks.get_mut(key) else {
            return;
        };
        for o in offsets {
            if let Some(bit) = ck.bit(*o) {
                ck.acked |= bit;
            }
        }
        g.remove_if_done(key);
    }

    /// Claims one un-acked offset for revive (acks and changes then see it as gone); `false`
    /// when it is acked, moved or revived already. Release with [`Checkpoints::ack_persisted`].
    pub fn claim(&self, key: &CkKey, offset: i64) -> bool {
        let mut g = self.inner.lock();
        let Some(ck) = g.cks.get_mut(key) else {
            return false;
        };
        match ck.bit(offset) {
            Some(bit) if ck.acked & bit == 0 => {
                ck.acked |= bit;
                ck.persisting |= bit;
                true
            }
            _ => false,
        }
    }

    /// One atomic step of CHANGE_MESSAGE_INVISIBLETIME: if `offset` of batch `old` is in flight
    /// it is marked moved to a new checkpoint popped at `new_pop_time`; a retried change of the
    /// same handle gets the first answer again.
    pub fn move_offset(
        &self,
        old: &CkKey,
        offset: i64,
        new_pop_time: i64,
        invisible_time: i64,
    ) -> MoveOutcome {
        let mut g = self.inner.lock();
        let mk = (old.clone(), offset);
        if let Some(m) = g.moved.get(&mk) {
            return MoveOutcome::Existing {
                pop_time: m.pop_time,
                invisible_time: m.invisible_time,
                revive_qid: m.revive_qid,
            };
        }
        let Some(ck) = g.cks.get_mut(old) else {
            return MoveOutcome::NotInFlight;
        };
        let Some(bit) = ck.bit(offset).filter(|b| ck.acked & b == 0) else {
            return MoveOutcome::NotInFlight;
        };
        ck.acked |= bit;
        ck.persisting |= bit;
        let revive_qid = ck.revive_qid;
        let forget_at = ck.due_at.saturating_add(MOVED_KEEP_MS);
        g.moved.insert(
            mk,
            Moved {
                pop_time: new_pop_time,
                invisible_time,
                revive_qid,
                recorded: false,
                acked_early: false,
                forget_at,
            },
        );
        MoveOutcome::Started { revive_qid }
    }

    /// The new checkpoint of a move is indexed. Returns true when an ack with the old handle
    /// arrived meanwhile: the caller must ack the new checkpoint at once.
    pub fn move_recorded(&self, old: &CkKey, offset: i64) -> bool {
        let mut g = self.inner.lock();
        let Some(m) = g.moved.get_mut(&(old.clone(), offset)) else {
            return false;
        };
        m.recorded = true;
        m.acked_early
    }

    /// The new checkpoint of a move could not be stored: the message stays in its old batch.
    /// Returns true when an ack arrived meanwhile (the old offset then stays acked and the
    /// caller stores that ack).
    pub fn move_failed(&self, old: &CkKey, offset: i64) -> bool {
        let mut g = self.inner.lock();
        let acked = g
            .moved
            .remove(&(old.clone(), offset))
            .is_some_and(|m| m.acked_early);
        if !acked {
            if let Some(ck) = g.cks.get_mut(old) {
                if let Some(bit) = ck.bit(offset) {
                    ck.acked &= !bit;
                    ck.persisting &= !bit;
                }
            }
        }
        acked
    }

    /// Forgets moves whose old handles cannot be used any more.
    pub fn prune_moved(&self, now: i64) {
        self.inner.lock().moved.retain(|_, m| m.forget_at > now);
    }

    /// Whether `offset` of the batch is in flight and not acked.
    pub fn is_unacked(&self, key: &CkKey, offset: i64) -> bool {
        let g = self.inner.lock();
        g.cks
            .get(key)
            .and_then(|ck| ck.bit(offset).map(|b| ck.acked & b == 0))
            .unwrap_or(false)
    }

    /// The batch's checkpoint, if it is still in flight.
    pub fn get(&self, key: &CkKey) -> Option<Checkpoint> {
        self.inner.lock().cks.get(key).cloned()
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

    /// Puts a taken checkpoint back on the due list.
    pub fn reschedule(&self, key: &CkKey, at: i64) {
        let mut g = self.inner.lock();
        if let Some(ck) = g.cks.get_mut(key) {
            ck.due_at = at;
            g.due.insert((at, key.clone()));
        }
    }

    /// Drops a revived checkpoint; one with acks still being stored is looked at again in a
    /// second (such an ack may fail and leave its message to revive).
    pub fn finish(&self, key: &CkKey, now: i64) {
        let mut g = self.inner.lock();
        let Some(ck) = g.cks.get_mut(key) else {
            return;
        };
        if ck.persisting == 0 {
            g.remove(key);
        } else {
            let at = now.saturating_add(1000);
            ck.due_at = at;
            g.due.insert((at, key.clone()));
        }
    }

    /// When the next checkpoint is due.
    pub fn next_due(&self) -> Option<i64> {
        self.inner.lock().due.first().map(|(t, _)| *t)
    }

    /// The revive queue's safe progress offset: below every live checkpoint and every append
    /// still under way, so a replay from it sees all of them.
    pub fn progress(&self, revive_qid: i32) -> Option<i64> {
        let g = self.inner.lock();
        let q = g.queues.get(revive_qid as usize)?;
        let mut p = q.end;
        for o in [q.live.first(), q.writing.first()].into_iter().flatten() {
            p = p.min(o);
        }
        Some(p)
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

    /// Drops every batch of a deleted group or topic (`None` matches any).
    pub fn forget(&self, topic: Option<&str>, group: Option<&str>) -> usize {
        let mut g = self.inner.lock();
        let keys: Vec<CkKey> = g
            .cks
            .keys()
            .filter(|k| topic.is_none_or(|t| k.topic == t) && group.is_none_or(|c| k.group == c))
            .cloned()
            .collect();
        for k in &keys {
            g.remove(k);
        }
        g.moved.retain(|(k, _), _| {
            !(topic.is_none_or(|t| k.topic == t) && group.is_none_or(|c| k.group == c))
        });
        keys.len()
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

/// A checkpoint appended and indexed whose durability (flush, replication) is still awaited.
#[must_use = "await durability before handing the batch out"]
pub struct CkWrite {
    key: CkKey,
    handle: Option<PutHandle>,
}

impl CkWrite {
    /// Waits until the record is flushed/replicated as the store's mode requires. The batch is
    /// indexed either way (it revives if unacked); `Err` only reports a failed wait.
    pub async fn durable(self, s: &BrokerState) -> Result<(), String> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        let r = handle.await;
        if let Some(a) = &r.append {
            s.pop
                .checkpoints
                .set_revive_offset(&self.key, a.logics_offset);
        }
        if r.status.is_stored() {
            Ok(())
        } else {
            Err(format!(
                "pop checkpoint not made durable: {}",
                r.remark.unwrap_or(r.status.as_str())
            ))
        }
    }
}

/// Appends a checkpoint and indexes it at once; await [`CkWrite::durable`] before handing
/// the batch out. `Err` carries the remark when the store refused the record.
pub fn start_checkpoint(
    s: &BrokerState,
    key: CkKey,
    revive_qid: i32,
    invisible_time: i64,
    offsets: Vec<i64>,
    re_put_times: i32,
) -> Result<CkWrite, String> {
    let broker_name = s.config().broker_name.clone();
    let record = CkRecord {
        start_offset: key.start_offset,
        pop_time: key.pop_time,
        invisible_time,
        bit_map: 0,
        num: offsets.len().min(u8::MAX as usize) as u8,
        queue_id: key.queue_id,
        topic: key.topic.clone(),
        group: key.group.clone(),
        revive_offset: -1,
        diffs: offsets
            .iter()
            .map(|o| o.saturating_sub(key.start_offset))
            .collect(),
        broker_name: broker_name.clone(),
        re_put_times,
    };
    let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    let qid = revive_qid.clamp(0, REVIVE_QUEUES - 1);
    let msg = record_message(s, qid, CK_TAG, body);
    // Queue offsets are assigned in append order and dispatch lags behind: the record lands at
    // or after the dispatched end, so that is a safe progress bound until its offset is known.
    let bound = s
        .store
        .max_offset_in_queue(&revive_topic(&s.config().broker_cluster_name), qid);
    let _guard = s.pop.checkpoints.begin_write(qid, bound);
    let mut handle = s.store.put_message(msg);
    // The append itself is synchronous; only a flush or replica wait leaves the handle pending,
    // and those exist only for records already in the commit log.
    let (revive_offset, handle) = match (&mut handle).now_or_never() {
        Some(r) => {
            let Some(append) = r.append.filter(|_| r.status.is_stored()) else {
                return Err(format!(
                    "cannot store the pop checkpoint: {}",
                    r.remark.unwrap_or(r.status.as_str())
                ));
            };
            (append.logics_offset, None)
        }
        None => (bound, Some(handle)),
    };
    s.pop.checkpoints.insert(
        key.clone(),
        Checkpoint::new(
            key.pop_time,
            invisible_time,
            qid,
            revive_offset,
            broker_name,
            offsets,
            0,
            re_put_times,
        ),
    );
    Ok(CkWrite { key, handle })
}

/// Appends a checkpoint, indexes it and waits for it to be durable.
pub async fn append_checkpoint(
    s: &BrokerState,
    key: CkKey,
    revive_qid: i32,
    invisible_time: i64,
    offsets: Vec<i64>,
    re_put_times: i32,
) -> Result<(), String> {
    start_checkpoint(s, key, revive_qid, invisible_time, offsets, re_put_times)?
        .durable(s)
        .await
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

/// Stores the records of [`Checkpoints::ack`]; on failure the acks are undone in memory so a
/// retry writes them. The first failure is returned after every record was tried.
pub async fn persist_acks(s: &BrokerState, writes: Vec<AckWrite>) -> Result<(), String> {
    let mut first_err = None;
    for w in writes {
        let r = append_ack(s, &w.key, w.revive_qid, &w.offsets).await;
        s.pop
            .checkpoints
            .ack_persisted(&w.key, &w.offsets, r.is_ok());
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
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
            let offsets: Vec<i64> = r
                .diffs
                .iter()
                .take(32)
                .map(|d| r.start_offset.saturating_add(*d))
                .collect();
            let end = offsets
                .iter()
                .max()
                .map_or(r.start_offset, |m| m.saturating_add(1));
            let key = CkKey {
                topic: r.topic.clone(),
                group: r.group.clone(),
                queue_id: r.queue_id,
                start_offset: r.start_offset,
                pop_time: r.pop_time,
            };
            cks.insert(
                key,
                Checkpoint::new(
                    r.pop_time,
                    r.invisible_time,
                    qid,
                    queue_offset,
                    r.broker_name,
                    offsets,
                    r.bit_map as u32,
                    r.re_put_times,
                ),
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
                cks.mark_acked(&key, &[r.ack_offset]);
            } else {
                cks.mark_acked(&key, &r.ack_offsets);
            }
            None
        }
        _ => None,
    }
}

/// Blocks until the store has dispatched everything in the commit log, however long that takes:
/// replaying a revive queue that is only partly indexed would lose the batches not indexed yet.
fn wait_fully_dispatched(s: &BrokerState) {
    let started = std::time::Instant::now();
    while !s.store.wait_dispatched(std::time::Duration::from_secs(10)) {
        tracing::warn!(
            dispatched = s.store.dispatch_offset(),
            end = s.store.commit_log_max_offset(),
            waited_s = started.elapsed().as_secs(),
            "waiting for the store to dispatch the commit log before recovering pop checkpoints"
        );
    }
}

/// Rebuilds the in-flight index from the revive log (blocking: run it off the async workers,
/// before the ports open). Consumer offsets are moved past everything a replayed checkpoint
/// handed out, since the offsets file may be older than the log after a crash.
pub fn recover(s: &BrokerState) -> Recovered {
    let topic = revive_topic(&s.config().broker_cluster_name);
    wait_fully_dispatched(s);
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
        // `offset` is just past the last record replayed: never claim more than that.
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
        ck_at(0, revive_offset, offsets)
    }

    fn ck_at(pop_time: i64, revive_offset: i64, offsets: Vec<i64>) -> Checkpoint {
        Checkpoint::new(pop_time, 1000, 1, revive_offset, "b".into(), offsets, 0, 0)
    }

    fn ack_ok(cks: &Checkpoints, k: &CkKey, offsets: &[i64]) -> usize {
        let writes = cks.ack(k, offsets);
        let n = writes.iter().map(|w| w.offsets.len()).sum();
        for w in writes {
            cks.ack_persisted(&w.key, &w.offsets, true);
        }
        n
    }

    #[test]
    fn acks_are_idempotent_and_full_batches_leave() {
        let cks = Checkpoints::default();
        cks.insert(key(0, 10), ck(5, vec![0, 1, 3]));
        assert_eq!(cks.progress(1), Some(5));
        assert_eq!(ack_ok(&cks, &key(0, 10), &[1]), 1);
        assert_eq!(ack_ok(&cks, &key(0, 10), &[1]), 0);
        assert_eq!(ack_ok(&cks, &key(0, 10), &[2]), 0);
        assert_eq!(ack_ok(&cks, &key(0, 99), &[0]), 0);
        assert!(cks.is_unacked(&key(0, 10), 3));
        assert_eq!(ack_ok(&cks, &key(0, 10), &[0, 3]), 2);
        assert_eq!(cks.len(), 0);
        assert_eq!(cks.progress(1), Some(6));
        assert!(cks.take_due(i64::MAX, 10).is_empty());
    }

    #[test]
    fn a_failed_ack_record_leaves_the_message_unacked() {
        let cks = Checkpoints::default();
        cks.insert(key(0, 10), ck(5, vec![0]));
        let w = cks.ack(&key(0, 10), &[0]);
        assert_eq!(w.len(), 1);
        // Not durable yet: the batch stays indexed, and a second ack does not write again.
        assert!(cks.ack(&key(0, 10), &[0]).is_empty());
        cks.ack_persisted(&key(0, 10), &[0], false);
        assert!(cks.is_unacked(&key(0, 10), 0));
        // The retry writes the record.
        assert_eq!(ack_ok(&cks, &key(0, 10), &[0]), 1);
        assert_eq!(cks.len(), 0);
    }

    #[test]
    fn due_order_grace_and_progress_waits_for_appends() {
        let cks = Checkpoints::default();
        cks.insert(key(10, 2000), ck_at(2000, 7, vec![10]));
        cks.insert(key(0, 1000), ck_at(1000, 8, vec![0, 1]));
        // popTime + invisibleTime + grace.
        assert_eq!(cks.next_due(), Some(1000 + 1000 + REVIVE_GRACE_MS));
        assert!(cks.take_due(2000, 10).is_empty());
        let due = cks.take_due(3000, 10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, key(0, 1000));
        cks.reschedule(&key(0, 1000), 9000);
        assert_eq!(cks.next_due(), Some(4000));
        // An append under way pins progress at its lower bound, never blocks it entirely.
        let guard = cks.begin_write(1, 6);
        assert_eq!(cks.progress(1), Some(6));
        drop(guard);
        assert_eq!(cks.progress(1), Some(7));
        let guard = cks.begin_write(1, 12);
        assert_eq!(cks.progress(1), Some(7));
        cks.finish(&key(10, 2000), 0);
        assert_eq!(cks.progress(1), Some(8));
        let unacked: Vec<i64> = cks.get(&key(0, 1000)).unwrap().unacked().collect();
        assert_eq!(unacked, vec![0, 1]);
        cks.finish(&key(0, 1000), 0);
        assert_eq!(cks.progress(1), Some(9));
        drop(guard);
        assert_eq!(cks.progress(1), Some(9));
    }

    #[test]
    fn change_is_atomic_idempotent_and_forwards_racing_acks() {
        let cks = Checkpoints::default();
        cks.insert(key(0, 10), ck(5, vec![0, 1]));
        assert_eq!(
            cks.move_offset(&key(0, 10), 1, 50, 3000),
            MoveOutcome::Started { revive_qid: 1 }
        );
        // A retry while the first is under way, or after, gets the same answer.
        assert_eq!(
            cks.move_offset(&key(0, 10), 1, 60, 9999),
            MoveOutcome::Existing {
                pop_time: 50,
                invisible_time: 3000,
                revive_qid: 1
            }
        );
        // An ack with the old handle before the new checkpoint is indexed is remembered.
        assert!(cks.ack(&key(0, 10), &[1]).is_empty());
        cks.insert(key(1, 50), ck(6, vec![1]));
        assert!(cks.move_recorded(&key(0, 10), 1));
        cks.ack_persisted(&key(0, 10), &[1], true);
        // Later acks with the old handle reach the new checkpoint.
        let w = cks.ack(&key(0, 10), &[1]);
        assert_eq!(w[0].key, key(1, 50));
        // Acked or revived offsets cannot move.
        ack_ok(&cks, &key(0, 10), &[0]);
        assert_eq!(
            cks.move_offset(&key(0, 10), 0, 70, 1000),
            MoveOutcome::NotInFlight
        );
        assert!(cks.claim(&key(1, 50), 1) || !cks.is_unacked(&key(1, 50), 1));
        // A failed move puts the message back in its batch.
        cks.insert(key(5, 10), ck(9, vec![5]));
        cks.move_offset(&key(5, 10), 5, 80, 1000);
        assert!(!cks.move_failed(&key(5, 10), 5));
        assert!(cks.is_unacked(&key(5, 10), 5));
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
