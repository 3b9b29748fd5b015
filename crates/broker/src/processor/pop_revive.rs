//! The revive task (Java's `PopReviveService`): when an in-flight POP batch's invisible time has
//! passed, its un-acked messages are stored again in the POP retry topic
//! `%RETRY%<group>_<topic>` (1 queue, created on demand) with `reconsumeTimes + 1` and
//! `1ST_POP_TIME`, and a `bAck` record marks them revived so a replay after a restart does not
//! copy them again. It also commits the revive progress offsets and writes
//! `consumerOrderInfo.json` when the orderly state changed.
//!
//! [`recover`] runs once at start, before the ports open, and rebuilds the in-flight index.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::naming;
use ferrymq_protocol::pop::pop_retry_topic_v1;
use ferrymq_store::config_file::ConfigFile;
use ferrymq_store::GetMessageStatus;
use tokio_util::sync::CancellationToken;

use super::pop_checkpoint::{
    self, append_ack, append_checkpoint, revive_topic, Checkpoint, CkKey, REVIVE_GROUP,
};
use crate::state::BrokerState;
use crate::topic_table::{Created, REVIVE_QUEUES};

/// Longest sleep between passes (Java's `reviveInterval`).
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Checkpoints handled per pass before progress is committed.
const BATCH: usize = 256;
/// Back-off in seconds for a checkpoint whose revive failed, by attempt (Java's table).
const RE_PUT_BACKOFF_S: [i64; 17] = [
    10, 20, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
];

fn order_info_file(s: &BrokerState) -> ConfigFile {
    ConfigFile::new(s.config_dir.join("consumerOrderInfo.json"))
}

/// Start-up: loads the orderly state and replays the revive log (blocking).
pub fn recover(s: &BrokerState) -> pop_checkpoint::Recovered {
    match order_info_file(s).load::<serde_json::Value>() {
        Ok(v) => s.pop.order.load(v),
        Err(e) => tracing::error!(error = %e, "cannot read consumerOrderInfo.json"),
    }
    let r = pop_checkpoint::recover(s);
    tracing::info!(
        records = r.records,
        in_flight = r.in_flight,
        "pop checkpoints recovered"
    );
    r
}

/// The message at `offset` of a queue, or `None` when it no longer exists.
fn read_at(s: &BrokerState, topic: &str, queue_id: i32, offset: i64) -> Option<Bytes> {
    let r = s
        .store
        .get_messages(topic, queue_id, offset, 1, usize::MAX, None);
    match r.status {
        GetMessageStatus::Found if r.queue_offsets.first() == Some(&offset) => {
            r.messages.into_iter().next()
        }
        _ => None,
    }
}

/// Stores the retry copy of one message; false when the store refused it.
async fn re_put(s: &BrokerState, key: &CkKey, retry_topic: &str, record: &Bytes) -> bool {
    let Ok(view) = RecordView::parse(record) else {
        return true;
    };
    let mut msg = s.restore(record, &view);
    msg.topic = retry_topic.to_owned();
    msg.queue_id = 0;
    msg.reconsume_times = view.reconsume_times().saturating_add(1);
    let mut props = properties::without(view.properties(), keys::POP_CK);
    if view.reconsume_times() == 0 || properties::get(&props, keys::FIRST_POP_TIME).is_none() {
        props = properties::with(&props, keys::FIRST_POP_TIME, &key.pop_time.to_string());
    }
    msg.properties = props;
    let stored = s.store.put_message(msg).await.status.is_stored();
    if stored {
        s.record_puts(1);
    }
    stored
}

/// Revives one due batch.
async fn revive(s: &Arc<BrokerState>, key: &CkKey, ck: &Checkpoint) {
    let cks = &s.pop.checkpoints;
    let now = BrokerState::now_ms();
    if !s.topics.contains(&key.topic) || s.groups.get(&key.group).is_none() {
        // Topic or group deleted: nothing to deliver any more (and no retry topic to create).
        tracing::info!(topic = %key.topic, group = %key.group, "pop checkpoint of a deleted topic or group dropped");
        let gone: Vec<i64> = ck.unacked().filter(|o| cks.claim(key, *o)).collect();
        cks.ack_persisted(key, &gone, true);
        cks.finish(key, now);
        return;
    }
    let retry_topic = if naming::is_retry_topic(&key.topic) {
        key.topic.clone()
    } else {
        pop_retry_topic_v1(&key.topic, &key.group)
    };
    if let Created::New(_) = s
        .topics
        .create_internal(&retry_topic, 1, perm::READ | perm::WRITE, 0)
    {
        s.topics_changed().await;
    }
    let mut revived = Vec::new();
    let mut failed = Vec::new();
    for offset in ck.unacked() {
        // Claimed first, so a change of invisible time cannot move it while it is copied.
        if !cks.claim(key, offset) {
            continue;
        }
        if !failed.is_empty() {
            failed.push(offset);
            continue;
        }
        match read_at(s, &key.topic, key.queue_id, offset) {
            None => {
                tracing::warn!(topic = %key.topic, queue = key.queue_id, offset, "popped message gone before revive");
                revived.push(offset);
            }
            Some(record) => {
                if re_put(s, key, &retry_topic, &record).await {
                    revived.push(offset);
                } else {
                    failed.push(offset);
                }
            }
        }
    }
    if !failed.is_empty() && !re_put_checkpoint(s, key, ck, &failed).await {
        // Not even the new checkpoint could be stored: keep the batch and try again later.
        cks.ack_persisted(key, &failed, false);
        let step = backoff_s(ck.re_put_times);
        tracing::warn!(topic = %key.topic, group = %key.group, retry_in_s = step, "revive failed");
        cks.reschedule(key, now.saturating_add(step * 1000));
        failed.clear();
    }
    // The re-put offsets are done in this batch, like the revived ones.
    revived.extend_from_slice(&failed);
    if !revived.is_empty() {
        if let Err(e) = append_ack(s, key, ck.revive_qid, &revived).await {
            // The copies are stored; a replay would only copy these messages once more.
            tracing::warn!(error = %e, "revive record not stored");
        }
        cks.ack_persisted(key, &revived, true);
    }
    if cks.get(key).is_some_and(|c| c.unacked().next().is_none()) {
        cks.finish(key, now);
    }
}

/// Back-off of the `n`th re-put of a checkpoint, in seconds (Java's table, last step repeated).
fn backoff_s(re_put_times: i32) -> i64 {
    RE_PUT_BACKOFF_S[(re_put_times.max(0) as usize).min(RE_PUT_BACKOFF_S.len() - 1)]
}

/// Java's `rePutCK`: the messages whose retry copy could not be stored get a new checkpoint
/// (`rp + 1`, revived after the back-off) so the old one can be settled and the revive
/// progress move on. False when that checkpoint could not be stored either.
async fn re_put_checkpoint(s: &BrokerState, key: &CkKey, ck: &Checkpoint, failed: &[i64]) -> bool {
    let Some(&first) = failed.first() else {
        return true;
    };
    let step = backoff_s(ck.re_put_times);
    // A pop time after the old one keeps the new key distinct even when it starts at the same
    // offset.
    let pop_time = BrokerState::now_ms().max(key.pop_time.saturating_add(1));
    let new = CkKey {
        start_offset: first,
        pop_time,
        ..key.clone()
    };
    tracing::warn!(topic = %key.topic, group = %key.group, messages = failed.len(), retry_in_s = step, re_put = ck.re_put_times + 1, "revive failed, checkpoint rewritten");
    match append_checkpoint(
        s,
        new,
        ck.revive_qid,
        step * 1000,
        failed.to_vec(),
        ck.re_put_times.saturating_add(1),
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "rewritten pop checkpoint not stored");
            false
        }
    }
}

async fn persist_order_info(s: &Arc<BrokerState>) {
    if let Some(snapshot) = s.pop.order.take_dirty_snapshot() {
        let file = order_info_file(s);
        let result = tokio::task::spawn_blocking(move || file.persist(&snapshot)).await;
        if let Ok(Err(e)) = result {
            tracing::error!(error = %e, "cannot persist consumerOrderInfo.json");
        }
    }
}

/// Order infos of deleted topics or groups are dropped every so often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

fn prune_deleted(s: &BrokerState) {
    let exists =
        |topic: &str, group: &str| s.topics.contains(topic) && s.groups.get(group).is_some();
    if s.pop.order.retain(exists) > 0 {
        tracing::info!("orderly pop state of deleted topics or groups dropped");
    }
}

fn commit_progress(s: &BrokerState, topic: &str, last: &mut [i64]) {
    for qid in 0..REVIVE_QUEUES {
        if let Some(p) = s.pop.checkpoints.progress(qid) {
            if last[qid as usize] != p {
                s.offsets.commit(topic, REVIVE_GROUP, qid, p);
                last[qid as usize] = p;
            }
        }
    }
}

pub async fn run(s: Arc<BrokerState>, stop: CancellationToken) {
    let topic = revive_topic(&s.config().broker_cluster_name);
    let mut last = vec![-1i64; REVIVE_QUEUES as usize];
    let mut pruned = std::time::Instant::now();
    loop {
        let now = BrokerState::now_ms();
        for (key, ck) in s.pop.checkpoints.take_due(now, BATCH) {
            revive(&s, &key, &ck).await;
        }
        s.pop.checkpoints.prune_moved(now);
        if pruned.elapsed() >= PRUNE_EVERY {
            prune_deleted(&s);
            pruned = std::time::Instant::now();
        }
        commit_progress(&s, &topic, &mut last);
        persist_order_info(&s).await;
        let wait = s
            .pop
            .checkpoints
            .next_due()
            .map(|t| Duration::from_millis((t - BrokerState::now_ms()).clamp(0, 1000) as u64))
            .unwrap_or(MAX_IDLE);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = s.pop.checkpoints.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    commit_progress(&s, &topic, &mut last);
    persist_order_info(&s).await;
}
