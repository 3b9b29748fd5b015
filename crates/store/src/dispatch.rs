//! The dispatcher ("reput") and recovery.
//!
//! The dispatcher follows the commit log from `reput_offset` up to the published end and, for
//! every record, writes its consume-queue entry and index keys and tells the arrival listener.
//! Consume queues are therefore always a function of the commit log, which is what makes
//! recovery simple: find where the valid log ends, cut everything after it, and re-dispatch the
//! scanned range (entries that already exist are skipped).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::{sys_flag, tags_code, RecordView};

use crate::commit_log::{CommitLog, LogEntry};
use crate::consume_queue::CqEntry;
use crate::error::Result;
use crate::get::MessageArrival;
use crate::mapped_file::MappedFile;
use crate::store::StoreInner;

pub(crate) const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The per-message facts dispatch needs, read from a record in one pass over its properties.
struct DispatchFacts<'a> {
    tags: Option<&'a str>,
    keys: Option<&'a str>,
    uniq_key: Option<&'a str>,
    delay_level: Option<&'a str>,
}

fn facts<'a>(props: &'a str) -> DispatchFacts<'a> {
    let mut f = DispatchFacts {
        tags: None,
        keys: None,
        uniq_key: None,
        delay_level: None,
    };
    for (name, value) in properties::iter(props) {
        match name {
            keys::TAGS => f.tags = Some(value),
            keys::KEYS => f.keys = Some(value),
            keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX => f.uniq_key = Some(value),
            keys::DELAY_TIME_LEVEL => f.delay_level = Some(value),
            _ => {}
        }
    }
    f
}

/// Writes the consume-queue entry and index keys of one record.
pub(crate) fn dispatch_record(
    inner: &StoreInner,
    view: &RecordView<'_>,
    notify: bool,
) -> Result<()> {
    let offset = view.physical_offset();
    let topic = view.topic();
    let sys = view.sys_flag();
    let tran = sys_flag::transaction_type(sys);
    let props = view.properties();
    let f = facts(props);
    let mut code = tags_code(f.tags);
    if topic == SCHEDULE_TOPIC {
        if let Some(level) = f.delay_level.and_then(|l| l.trim().parse::<i64>().ok()) {
            let levels = &inner.delay_levels_ms;
            if level > 0 && !levels.is_empty() {
                let idx = (level as usize).min(levels.len()) - 1;
                code = view.store_timestamp() + levels[idx];
            }
        }
    }
    if tran == sys_flag::TRANSACTION_NOT_TYPE || tran == sys_flag::TRANSACTION_COMMIT_TYPE {
        let cq = inner.consume_queues.find_or_create(topic, view.queue_id());
        cq.put(
            view.queue_offset(),
            CqEntry {
                commit_log_offset: offset,
                size: view.total_size() as i32,
                tags_code: code,
            },
        )?;
        if notify {
            if let Some(listener) = inner.arrival_listener.read().as_ref() {
                listener(&MessageArrival {
                    topic,
                    queue_id: view.queue_id(),
                    next_offset: view.queue_offset() + 1,
                    tags_code: code,
                    store_timestamp: view.store_timestamp(),
                    properties: props,
                });
            }
        }
    }
    if inner.config.message_index_enable && tran != sys_flag::TRANSACTION_ROLLBACK_TYPE {
        let business = f
            .keys
            .unwrap_or("")
            .split(keys::KEY_SEPARATOR)
            .filter(|k| !k.is_empty());
        if f.uniq_key.is_some() || f.keys.is_some() {
            inner.index.build_index(
                topic,
                f.uniq_key.into_iter().chain(business),
                offset,
                view.store_timestamp(),
            )?;
        }
    }
    inner
        .last_dispatched_timestamp
        .fetch_max(view.store_timestamp(), Ordering::AcqRel);
    Ok(())
}

/// Dispatches published records in `[from, to)`; returns where it stopped.
fn dispatch_range(inner: &StoreInner, from: i64, to: i64) -> i64 {
    let cl: &CommitLog = &inner.commit_log;
    let mut off = from;
    while off < to {
        let Some(file) = cl.files().find(off) else {
            // The segment was deleted under us (retention); skip to the next one.
            off = cl.roll_next_file(off);
            continue;
        };
        let pos = (off - file.file_from_offset()) as usize;
        let limit = ((to - file.file_from_offset()) as usize).min(file.file_size());
        match CommitLog::entry_at(&file, pos, limit, false) {
            LogEntry::Record(v) => {
                if let Err(e) = dispatch_record(inner, &v, true) {
                    tracing::error!("dispatch at {off} failed: {e}");
                }
                off += v.total_size() as i64;
            }
            LogEntry::NextFile(next) => off = next,
            LogEntry::End | LogEntry::Invalid(_) => {
                tracing::error!("unreadable commit log data at {off} below the published end {to}");
                off = file.end_offset().min(to);
            }
        }
    }
    off
}

/// How long the dispatcher pauses after a round that found work.
const DISPATCH_LINGER: Duration = Duration::from_micros(500);

/// The dispatcher thread.
pub(crate) fn run_dispatcher(inner: Arc<StoreInner>) {
    let mut seen = inner.dispatch_signal.current();
    loop {
        let from = inner.reput_offset.load(Ordering::Acquire);
        let to = inner.commit_log.max_offset();
        if from < to {
            let reached = dispatch_range(&inner, from, to);
            inner.reput_offset.store(reached, Ordering::Release);
            inner.dispatched_signal.notify();
            // While messages keep coming, let a few accumulate instead of being woken by every
            // append (a wake-up costs more than dispatching one message); not registered as a
            // sleeper meanwhile, appenders skip the wake-up entirely. Bounds the added
            // visibility delay for consumers to this pause, as RocketMQ's reput loop does (1 ms).
            std::thread::sleep(DISPATCH_LINGER);
            continue;
        }
        if inner.dispatch_stop.load(Ordering::Acquire) {
            break;
        }
        seen = inner
            .dispatch_signal
            .wait_change(seen, Duration::from_millis(100));
    }
}

/// Deletes empty segments at the head of the log that a hole separates from the rest: a
/// segment created for a guessed offset (an older allocator could leave one behind on a slave
/// that learned the master's offsets later). Recovery would otherwise start there, stop at the
/// hole and cut away the whole log behind it.
fn drop_stray_leading_segments(
    cl: &CommitLog,
    mut files: Vec<Arc<MappedFile>>,
) -> Result<Vec<Arc<MappedFile>>> {
    let mut stray = 0;
    while let [first, second, ..] = &files[stray..] {
        let empty = matches!(
            CommitLog::entry_at(first, 0, first.file_size(), false),
            LogEntry::End
        );
        if !empty || second.file_from_offset() == first.end_offset() {
            break;
        }
        tracing::warn!(
            "deleting empty commit log file {} before a hole in the log",
            first.path().display()
        );
        stray += 1;
    }
    if stray > 0 {
        cl.files().delete_first(stray)?;
        files.drain(..stray);
    }
    Ok(files)
}

/// Recovers the commit log after load: finds the end of valid data, re-dispatches the scanned
/// range, cuts the log and the consume queues there. Returns the recovered end offset.
pub(crate) fn recover(inner: &StoreInner, last_exit_ok: bool) -> Result<i64> {
    let cl = &inner.commit_log;
    let files = cl.files().files();
    if files.is_empty() {
        cl.reset_offsets(0);
        for cq in inner.consume_queues.all() {
            cq.truncate_dirty(0)?;
        }
        return Ok(0);
    }
    let files = drop_stray_leading_segments(cl, files)?;
    let start_idx = if last_exit_ok {
        files.len().saturating_sub(3)
    } else {
        let min_ts = inner
            .checkpoint
            .min_timestamp(inner.config.message_index_enable);
        files
            .iter()
            .rposition(|f| match CommitLog::entry_at(f, 0, f.file_size(), false) {
                LogEntry::Record(v) => v.store_timestamp() != 0 && v.store_timestamp() <= min_ts,
                _ => false,
            })
            .unwrap_or(0)
    };
    let check_crc = inner.config.check_crc_on_recover;
    let mut stop = files[start_idx].file_from_offset();
    'files: for f in &files[start_idx..] {
        if f.file_from_offset() != stop {
            // A hole between segments: nothing after it can be trusted.
            break;
        }
        let mut pos = 0usize;
        loop {
            match CommitLog::entry_at(f, pos, f.file_size(), check_crc) {
                LogEntry::Record(v) => {
                    if v.physical_offset() != f.file_from_offset() + pos as i64 {
                        tracing::warn!("record at {} claims offset {}", stop, v.physical_offset());
                        break 'files;
                    }
                    dispatch_record(inner, &v, false)?;
                    pos += v.total_size();
                    stop = f.file_from_offset() + pos as i64;
                }
                LogEntry::NextFile(next) => {
                    stop = next;
                    continue 'files;
                }
                LogEntry::End => break 'files,
                LogEntry::Invalid(e) => {
                    tracing::warn!("commit log ends at {stop}: {e}");
                    break 'files;
                }
            }
        }
    }
    cl.files().truncate_dirty(stop)?;
    cl.reset_offsets(stop);
    for cq in inner.consume_queues.all() {
        cq.truncate_dirty(stop)?;
    }
    Ok(stop)
}
