//! Commit-log flushing. ASYNC_FLUSH: a thread flushes every `flush_interval_commit_log` when at
//! least `flush_commit_log_least_pages` are dirty (or everything every thorough interval).
//! SYNC_FLUSH: the append thread queues a waiter per acknowledged put; the flush thread takes
//! whatever has accumulated, issues one msync for all of it (group commit) and answers every
//! waiter it covered. A watchdog thread answers FLUSH_DISK_TIMEOUT to waiters past their deadline
//! even while the flush thread is stuck in a slow sync.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::config::FlushDiskType;
use crate::put::{PutMessageResult, PutMessageStatus};
use crate::store::StoreInner;

pub(crate) struct FlushWaiter {
    pub end_offset: i64,
    pub deadline: Instant,
    pub result: PutMessageResult,
    pub tx: oneshot::Sender<PutMessageResult>,
}

#[derive(Default)]
struct State {
    waiters: VecDeque<FlushWaiter>,
    stop: bool,
}

/// Shared between the append thread (producer of waiters), the flush thread and the watchdog.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    flush_cv: Condvar,
    watchdog_cv: Condvar,
}

impl GroupCommit {
    /// Queues waiters (append thread, in offset order) and wakes the flusher.
    pub fn enqueue(&self, waiters: impl IntoIterator<Item = FlushWaiter>) {
        let mut st = self.state.lock();
        let before = st.waiters.len();
        st.waiters.extend(waiters);
        if st.waiters.len() > before {
            self.flush_cv.notify_one();
            if before == 0 {
                self.watchdog_cv.notify_one();
            }
        }
    }

    /// Wakes the flusher without a waiter (e.g. for WAIT=false messages under SYNC_FLUSH).
    pub fn wake(&self) {
        self.flush_cv.notify_one();
    }

    pub fn stop(&self) {
        let mut st = self.state.lock();
        st.stop = true;
        self.flush_cv.notify_all();
        self.watchdog_cv.notify_all();
    }

    fn complete_up_to(&self, flushed: i64) {
        let done: Vec<FlushWaiter> = {
            let mut st = self.state.lock();
            let n = st
                .waiters
                .iter()
                .take_while(|w| w.end_offset <= flushed)
                .count();
            st.waiters.drain(..n).collect()
        };
        for w in done {
            let _ = w.tx.send(w.result);
        }
    }

    fn fail_all(&self, status: PutMessageStatus) {
        let all: Vec<FlushWaiter> = self.state.lock().waiters.drain(..).collect();
        for mut w in all {
            w.result.status = status;
            let _ = w.tx.send(w.result);
        }
    }
}

/// The flush thread.
pub(crate) fn run_flush(inner: Arc<StoreInner>) {
    let cfg = &inner.config;
    let gc = &inner.group_commit;
    let least = (cfg.flush_commit_log_least_pages * 4096) as i64;
    let mut last_thorough = Instant::now();
    loop {
        let (stop, has_waiters) = {
            let mut st = gc.state.lock();
            if st.waiters.is_empty() && !st.stop {
                gc.flush_cv.wait_for(&mut st, cfg.flush_interval_commit_log);
            }
            (st.stop, !st.waiters.is_empty())
        };
        let dirty = inner.commit_log.unflushed_bytes();
        let thorough = last_thorough.elapsed() >= cfg.flush_commit_log_thorough_interval;
        let should = stop
            || has_waiters
            || match cfg.flush_disk_type {
                FlushDiskType::SyncFlush => dirty > 0,
                FlushDiskType::AsyncFlush => dirty >= least || (thorough && dirty > 0),
            };
        if should {
            // Read the timestamp first: it then belongs to a record at or below what we flush.
            let ts = inner.last_store_timestamp.load(Ordering::Acquire);
            match inner.commit_log.flush() {
                Ok(flushed) => {
                    inner.checkpoint.set_physic_msg_timestamp(ts);
                    gc.complete_up_to(flushed);
                }
                Err(e) => tracing::error!("commit log flush failed: {e}"),
            }
            if thorough {
                last_thorough = Instant::now();
            }
        }
        if stop {
            // Anything still waiting was appended after the final flush could see it.
            gc.fail_all(PutMessageStatus::FlushDiskTimeout);
            break;
        }
    }
}

/// The watchdog: times out waiters the flusher has not answered.
pub(crate) fn run_watchdog(inner: Arc<StoreInner>) {
    let gc = &inner.group_commit;
    let mut st = gc.state.lock();
    loop {
        if st.stop {
            break;
        }
        let Some(deadline) = st.waiters.front().map(|w| w.deadline) else {
            gc.watchdog_cv.wait(&mut st);
            continue;
        };
        let now = Instant::now();
        if deadline > now {
            gc.watchdog_cv
                .wait_for(&mut st, (deadline - now).max(Duration::from_millis(1)));
            continue;
        }
        let n = st.waiters.iter().take_while(|w| w.deadline <= now).count();
        let expired: Vec<FlushWaiter> = st.waiters.drain(..n).collect();
        drop(st);
        for mut w in expired {
            w.result.status = PutMessageStatus::FlushDiskTimeout;
            let _ = w.tx.send(w.result);
        }
        st = gc.state.lock();
    }
}
