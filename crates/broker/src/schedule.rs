//! Delayed delivery by level (`messageDelayLevel`): a delayed message waits in queue `level − 1`
//! of SCHEDULE_TOPIC_XXXX; this task walks each level's queue in order and, once a message's
//! delay has passed, stores it again under its real topic and queue. Progress per level is kept
//! in `config/delayOffset.json`, so a restart neither loses nor re-delivers many.

use std::sync::Arc;
use std::time::Duration;

use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::naming;
use ferrymq_store::config_file::DelayOffsetTable;
use ferrymq_store::GetMessageStatus;
use tokio_util::sync::CancellationToken;

use crate::processor::put_internal;
use crate::state::BrokerState;

const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Re-stores a parked message under its real topic; false when it must be retried later.
async fn deliver(s: &BrokerState, record: &bytes::Bytes) -> bool {
    let Ok(view) = RecordView::parse(record) else {
        return true;
    };
    let (Some(topic), Some(queue_id)) = (
        view.property(keys::REAL_TOPIC),
        view.property(keys::REAL_QUEUE_ID)
            .and_then(|q| q.parse::<i32>().ok()),
    ) else {
        tracing::warn!(
            offset = view.physical_offset(),
            "delayed message without real topic dropped"
        );
        return true;
    };
    let mut msg = s.restore(record, &view);
    msg.topic = topic.to_owned();
    msg.queue_id = queue_id;
    msg.properties = crate::timer::without_timer_properties(&properties::without(
        view.properties(),
        keys::DELAY_TIME_LEVEL,
    ));
    put_internal(s, msg).await.status.is_stored()
}

/// Delivers what is due on every level; returns the time until the next message is due.
async fn deliver_due(
    s: &BrokerState,
    levels: &[u64],
    table: &mut DelayOffsetTable,
) -> (Duration, bool) {
    let now = BrokerState::now_ms();
    let mut wait = IDLE_WAIT;
    let mut progressed = false;
    for (i, delay) in levels.iter().enumerate() {
        let level = i as i32 + 1;
        let queue_id = level - 1;
        let mut offset = table.offset_table.get(&level).copied().unwrap_or(0);
        'level: loop {
            let r = s.store.get_messages(
                naming::SCHEDULE_TOPIC,
                queue_id,
                offset,
                32,
                usize::MAX,
                None,
            );
            match r.status {
                GetMessageStatus::Found => {}
                GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetOverflowBadly => {
                    offset = r.next_begin_offset;
                    progressed = true;
                    continue;
                }
                _ => break,
            }
            for (record, queue_offset) in r.messages.iter().zip(r.queue_offsets.iter()) {
                let Ok(view) = RecordView::parse(record) else {
                    offset = queue_offset + 1;
                    continue;
                };
                let due = view.store_timestamp() + *delay as i64;
                if due > now {
                    wait = wait.min(Duration::from_millis((due - now) as u64));
                    break 'level;
                }
                if !deliver(s, record).await {
                    break 'level;
                }
                offset = queue_offset + 1;
                progressed = true;
            }
        }
        table.offset_table.insert(level, offset);
    }
    (wait, progressed)
}

pub async fn run(s: Arc<BrokerState>, stop: CancellationToken) {
    let levels = s.config().delay_levels_ms();
    let mut table: DelayOffsetTable = s
        .delay_offsets_file()
        .load()
        .ok()
        .flatten()
        .unwrap_or_default();
    loop {
        let (wait, progressed) = deliver_due(&s, &levels, &mut table).await;
        if progressed {
            let snapshot = table.clone();
            let state = s.clone();
            let _ =
                tokio::task::spawn_blocking(move || state.persist_delay_offsets(&snapshot)).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
