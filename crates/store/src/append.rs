//! The commit-log appender and the file allocator.
//!
//! The [`Appender`] is the single writer of the commit log. It lives behind one lock in the
//! store and runs on the caller's thread, as RocketMQ's putMessageLock does: the critical section
//! is one record encoded straight into the mapped file (a memcpy-sized job), so a dedicated
//! append thread would cost more in wake-ups and hand-offs (two context switches per message)
//! than it saves. Queue offsets are assigned in append order under the same lock, and the new end
//! is published before the lock is released, so readers never see a gap.
//!
//! The allocator thread creates and reserves the next segment while the current one fills, so
//! rolling to a new file costs the appender nothing but a hand-over. It also keeps the page cache
//! warm a little ahead of the appender ([`WARM_AHEAD`]), paced by the append rate: warming a
//! whole 1 GiB segment at once competed with request handling for memory and CPU and stalled
//! appends for tens of milliseconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymq_protocol::message::record::{
    self, write_blank, MessageRecord, RecordHead, BLANK_RECORD_LEN,
};
use ferrymq_protocol::message::{batch, sys_flag, RecordView};
use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::ha::HaError;
use crate::mapped_file::MappedFile;
use crate::put::{
    AppendMessageResult, MessageBatch, MessageInner, PutMessageResult, PutMessageStatus,
};
use crate::store::StoreInner;
use crate::util::now_ms;

#[derive(Default)]
struct AllocState {
    wanted: Option<i64>,
    in_progress: Option<i64>,
    ready: Option<(i64, Result<Arc<MappedFile>>)>,
    stop: bool,
}

/// Prepares the next commit-log segment in the background.
pub(crate) struct Allocator {
    dir: PathBuf,
    file_size: usize,
    warm: bool,
    state: Mutex<AllocState>,
    cv: Condvar,
}

impl Allocator {
    pub fn new(dir: PathBuf, file_size: usize, warm: bool) -> Allocator {
        Allocator {
            dir,
            file_size,
            warm,
            state: Mutex::new(AllocState::default()),
            cv: Condvar::new(),
        }
    }

    /// Asks for the segment at `offset` to be prepared.
    pub fn request(&self, offset: i64) {
        let mut st = self.state.lock();
        if st.ready.as_ref().is_some_and(|(o, _)| *o == offset) || st.in_progress == Some(offset) {
            return;
        }
        st.wanted = Some(offset);
        self.cv.notify_all();
    }

    /// The segment at `offset`: the prepared one if it matches, else created here.
    ///
    /// Waits for any allocation in flight, not only one at `offset`: a segment for another offset
    /// (a slave's guess before the master said where its log starts) finishing after this call
    /// would leave a stray zero-filled file in the log directory, and recovery starts at the
    /// first file it finds.
    pub fn take(&self, offset: i64) -> Result<Arc<MappedFile>> {
        let mut st = self.state.lock();
        while st.in_progress.is_some() {
            self.cv.wait(&mut st);
        }
        let ready = st.ready.take();
        // Asked for under the same lock, so a stale wish cannot start in between.
        st.wanted = Some(offset + self.file_size as i64);
        self.cv.notify_all();
        drop(st);
        match ready {
            Some((o, r)) if o == offset => r,
            stale => {
                if let Some((_, Ok(f))) = stale {
                    discard(&f);
                }
                Ok(Arc::new(MappedFile::create(
                    &self.dir,
                    offset,
                    self.file_size,
                )?))
            }
        }
    }

    pub fn stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_all();
    }

    /// The allocator thread. `current` returns the segment being appended to.
    pub fn run(&self, current: impl Fn() -> Option<Arc<MappedFile>>) {
        lower_thread_priority();
        let mut warmer = Warmer::default();
        loop {
            let offset = {
                let mut st = self.state.lock();
                if st.stop {
                    return;
                }
                match st.wanted.take() {
                    Some(o) => {
                        st.in_progress = Some(o);
                        Some(o)
                    }
                    None => {
                        if !self.warm || warmer.caught_up {
                            // An idle log needs no warming: look less often until it moves.
                            let tick = if warmer.appending {
                                WARM_TICK
                            } else {
                                WARM_TICK * 20
                            };
                            self.cv.wait_for(&mut st, tick);
                        }
                        None
                    }
                }
            };
            if let Some(offset) = offset {
                let started = Instant::now();
                let r = MappedFile::create(&self.dir, offset, self.file_size).map(Arc::new);
                let mut st = self.state.lock();
                st.in_progress = None;
                if let Some((_, Ok(stale))) = st.ready.replace((offset, r)) {
                    discard(&stale);
                }
                self.cv.notify_all();
                drop(st);
                tracing::debug!(offset, elapsed = ?started.elapsed(), "pre-allocated commit log file");
            }
            if self.warm {
                let next = self
                    .state
                    .lock()
                    .ready
                    .as_ref()
                    .and_then(|(_, r)| r.as_ref().ok().cloned());
                warmer.step(current(), next);
            }
        }
    }
}

/// Deletes a prepared segment nobody took, so it does not stay behind as part of the log.
fn discard(file: &MappedFile) {
    if let Err(e) = file.destroy() {
        tracing::warn!(
            "cannot delete unused commit log file {}: {e}",
            file.path().display()
        );
    }
}

/// How far ahead of the append position pages are kept warm.
const WARM_AHEAD: usize = 32 << 20;
/// Most bytes warmed per step, so a request for the next segment is never kept waiting long.
const WARM_STEP: usize = 1 << 20;
/// How often the warmer looks at the append position while it is caught up.
const WARM_TICK: Duration = Duration::from_millis(10);

/// Warm-ahead progress of the allocator thread.
#[derive(Default)]
struct Warmer {
    /// Start offset and warmed-up-to position of the segment being appended to.
    current: Option<(i64, usize)>,
    /// The same for the prepared next segment.
    next: Option<(i64, usize)>,
    caught_up: bool,
    /// Whether the append position moved since the previous step.
    appending: bool,
    last_seen: Option<(i64, usize)>,
}

impl Warmer {
    fn step(&mut self, current: Option<Arc<MappedFile>>, next: Option<Arc<MappedFile>>) {
        self.caught_up = true;
        let Some(cur) = current else { return };
        let wrote = cur.wrote_position();
        let seen = Some((cur.file_from_offset(), wrote));
        self.appending = self.last_seen != seen;
        self.last_seen = seen;
        let warmed = match (self.current, self.next) {
            (Some((off, w)), _) if off == cur.file_from_offset() => w.max(wrote),
            // The prepared segment became the current one: keep what was warmed of it.
            (_, Some((off, w))) if off == cur.file_from_offset() => w.max(wrote),
            _ => wrote,
        };
        let target = (wrote + WARM_AHEAD).min(cur.file_size());
        let upto = target.min(warmed + WARM_STEP);
        if warmed < upto {
            cur.warm_range(warmed, upto);
        }
        self.current = Some((cur.file_from_offset(), upto.max(warmed)));
        if upto < target {
            self.caught_up = false;
            return;
        }
        // Close to the end of this segment: warm the head of the next one too.
        let spill = (wrote + WARM_AHEAD).saturating_sub(cur.file_size());
        if let (true, Some(n)) = (spill > 0, next) {
            let done = match self.next {
                Some((off, w)) if off == n.file_from_offset() => w,
                _ => 0,
            };
            let upto = spill.min(n.file_size()).min(done + WARM_STEP);
            if done < upto {
                n.warm_range(done, upto);
                self.caught_up = upto >= spill.min(n.file_size());
            }
            self.next = Some((n.file_from_offset(), upto.max(done)));
        }
    }
}

/// Makes the calling thread yield the CPU to request handling: preparing files ahead is useful
/// only with spare CPU; on a saturated machine the appender faults its pages in itself.
fn lower_thread_priority() {
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// The commit-log writer's state; owned by the store's append lock.
pub(crate) struct Appender {
    inner: Arc<StoreInner>,
    file: Option<Arc<MappedFile>>,
    last_store_timestamp: i64,
}

impl Appender {
    pub fn new(inner: Arc<StoreInner>) -> Appender {
        let file = inner.commit_log.files().last_file();
        let last = inner.last_store_timestamp.load(Ordering::Acquire);
        Appender {
            inner,
            file,
            last_store_timestamp: last,
        }
    }

    /// Appends one message and publishes the new end.
    pub fn put(&mut self, msg: &MessageInner, body_crc: i32) -> PutMessageResult {
        let inner = self.inner.clone();
        let result = self.append_one(msg, body_crc, &mut inner.queue_offsets.lock());
        self.publish();
        result
    }

    /// Appends every element of a batch (all or none) and publishes the new end.
    pub fn put_batch(&mut self, batch: &MessageBatch, body_crcs: &[i32]) -> PutMessageResult {
        let inner = self.inner.clone();
        let result = self.append_batch(batch, body_crcs, &mut inner.queue_offsets.lock());
        self.publish();
        result
    }

    fn publish(&mut self) {
        if let Some(f) = &self.file {
            self.inner
                .commit_log
                .publish(f.file_from_offset() + f.wrote_position() as i64);
        }
        self.inner
            .last_store_timestamp
            .store(self.last_store_timestamp, Ordering::Release);
    }

    /// Slave only: writes bytes replicated from the master at exactly `start` (the end of what
    /// was written before, or the start of the next segment) and publishes every record now
    /// complete. Returns the new end of the written bytes, which may stop inside a record.
    pub fn append_replicated(&mut self, start: i64, data: &[u8]) -> Result<i64, HaError> {
        let file_size = self.inner.commit_log.file_size() as i64;
        let placement = |reason: &str| HaError::Placement {
            offset: start,
            reason: reason.to_owned(),
        };
        let file = match &self.file {
            Some(f) if f.file_from_offset() <= start && start < f.end_offset() => f.clone(),
            current => {
                if start.rem_euclid(file_size) != 0
                    || current.as_ref().is_some_and(|f| f.end_offset() != start)
                {
                    return Err(placement("not the end of this commit log"));
                }
                let f = self
                    .inner
                    .allocator
                    .take(start)
                    .map_err(|e| HaError::Placement {
                        offset: start,
                        reason: e.to_string(),
                    })?;
                self.inner.commit_log.files().push(f.clone());
                self.file = Some(f.clone());
                f
            }
        };
        let pos = (start - file.file_from_offset()) as usize;
        if !file.write_at(pos, data) {
            return Err(placement("the data runs past the end of a segment"));
        }
        file.set_wrote_position(pos + data.len());
        self.publish_replicated()?;
        Ok(start + data.len() as i64)
    }

    /// Publishes the whole records written past the published end (a replicated frame may end
    /// inside a record) and wakes the dispatcher.
    fn publish_replicated(&mut self) -> Result<(), HaError> {
        let cl = &self.inner.commit_log;
        let published = cl.max_offset();
        let mut at = published.max(cl.files().min_offset());
        while let Some(f) = cl.files().find(at) {
            let pos = (at - f.file_from_offset()) as usize;
            let buf = f.bytes(pos, f.wrote_position().saturating_sub(pos));
            match record::peek(buf) {
                Ok(RecordHead::Message { total_size, .. }) => {
                    if total_size > f.file_size() - pos {
                        return Err(HaError::Placement {
                            offset: at,
                            reason: format!("record of {total_size} bytes crosses a segment end"),
                        });
                    }
                    let Some(rec) = buf.get(..total_size) else {
                        break; // the rest of this record comes with the next frame
                    };
                    if let Ok(v) = RecordView::parse(rec) {
                        self.last_store_timestamp = v.store_timestamp();
                    }
                    at += total_size as i64;
                }
                // The end-of-segment marker: the segment is complete once its tail arrived.
                Ok(RecordHead::Blank) if f.is_full() => at = f.end_offset(),
                Ok(_) => break,
                Err(_) if buf.len() < BLANK_RECORD_LEN => break,
                Err(e) => {
                    return Err(HaError::Placement {
                        offset: at,
                        reason: format!("replicated bytes are not a record: {e}"),
                    })
                }
            }
        }
        if at > published {
            cl.publish(at);
            self.inner
                .last_store_timestamp
                .store(self.last_store_timestamp, Ordering::Release);
            self.inner.dispatch_signal.notify();
        }
        Ok(())
    }

    fn store_timestamp(&mut self) -> i64 {
        // Monotonic so time searches over a file stay ordered even if the clock steps back.
        self.last_store_timestamp = now_ms().max(self.last_store_timestamp);
        self.last_store_timestamp
    }

    /// Returns the file and position where `len` bytes fit, rolling to a new file (after writing
    /// the end-of-file marker) when the current one cannot take `len + 8`.
    fn reserve(&mut self, len: usize) -> Result<(Arc<MappedFile>, usize), PutMessageResult> {
        let file_size = self.inner.commit_log.file_size();
        if len + BLANK_RECORD_LEN > file_size {
            return Err(PutMessageResult::failed(
                PutMessageStatus::MessageIllegal,
                "message larger than a commit log file",
            ));
        }
        if let Some(f) = &self.file {
            let pos = f.wrote_position();
            let remaining = file_size - pos;
            if len + BLANK_RECORD_LEN <= remaining {
                return Ok((f.clone(), pos));
            }
            if remaining >= BLANK_RECORD_LEN {
                // SAFETY: single writer, bytes past the published position.
                let area = unsafe { f.write_area(pos, BLANK_RECORD_LEN) };
                let _ = write_blank(area, remaining as i32);
            }
            f.set_wrote_position(file_size);
        }
        let next = match &self.file {
            Some(f) => f.end_offset(),
            None => self.inner.commit_log.max_offset() / file_size as i64 * file_size as i64,
        };
        match self.inner.allocator.take(next) {
            Ok(f) => {
                self.inner.commit_log.files().push(f.clone());
                self.file = Some(f.clone());
                Ok((f, 0))
            }
            Err(e) => {
                tracing::error!("cannot create commit log file at {next}: {e}");
                Err(PutMessageResult::failed(
                    PutMessageStatus::CreateMappedFileFailed,
                    "cannot create commit log file",
                ))
            }
        }
    }

    fn append_one(
        &mut self,
        msg: &MessageInner,
        body_crc: i32,
        offsets: &mut QueueOffsets,
    ) -> PutMessageResult {
        let counts = !sys_flag::is_prepared_or_rollback(msg.sys_flag);
        let queue_offset = if counts {
            offsets.current(&msg.topic, msg.queue_id)
        } else {
            0
        };
        let store_timestamp = self.store_timestamp();
        let mut rec = MessageRecord {
            topic: &msg.topic,
            queue_id: msg.queue_id,
            flag: msg.flag,
            queue_offset,
            physical_offset: 0,
            sys_flag: msg.sys_flag,
            born_timestamp: msg.born_timestamp,
            born_host: msg.born_host,
            store_timestamp,
            store_host: msg.store_host,
            reconsume_times: msg.reconsume_times,
            prepared_transaction_offset: msg.prepared_transaction_offset,
            body: &msg.body,
            body_crc: Some(body_crc),
            properties: &msg.properties,
        };
        let len = match rec.encoded_len() {
            Ok(l) => l,
            Err(_) => {
                return PutMessageResult::failed(
                    PutMessageStatus::MessageIllegal,
                    "message cannot be encoded",
                )
            }
        };
        let (file, pos) = match self.reserve(len) {
            Ok(x) => x,
            Err(r) => return r,
        };
        rec.physical_offset = file.file_from_offset() + pos as i64;
        // SAFETY: single writer, unpublished bytes; the slice is dropped before publishing.
        let area = unsafe { file.write_area(pos, len) };
        if rec.encode_into(area).is_err() {
            return PutMessageResult::failed(PutMessageStatus::UnknownError, "encode failed");
        }
        file.set_wrote_position(pos + len);
        if counts {
            offsets.advance(&msg.topic, msg.queue_id, 1);
        }
        PutMessageResult {
            status: PutMessageStatus::PutOk,
            append: Some(AppendMessageResult {
                wrote_offset: rec.physical_offset,
                wrote_bytes: len,
                logics_offset: queue_offset,
                store_timestamp,
                msg_num: 1,
                store_host: msg.store_host,
                element_offsets: Vec::new(),
            }),
            remark: None,
        }
    }

    fn append_batch(
        &mut self,
        b: &MessageBatch,
        crcs: &[i32],
        offsets: &mut QueueOffsets,
    ) -> PutMessageResult {
        let store_timestamp = self.store_timestamp();
        let first_queue_offset = offsets.current(&b.topic, b.queue_id);
        let mut total = 0;
        let mut count = 0;
        for (i, e) in batch::decode(&b.body).enumerate() {
            let Ok(e) = e else {
                return PutMessageResult::failed(
                    PutMessageStatus::MessageIllegal,
                    "malformed batch",
                );
            };
            match batch_record(
                b,
                e,
                first_queue_offset + i as i64,
                store_timestamp,
                crcs.get(i).copied(),
            )
            .encoded_len()
            {
                Ok(l) => total += l,
                Err(_) => {
                    return PutMessageResult::failed(
                        PutMessageStatus::MessageIllegal,
                        "batch element cannot be encoded",
                    )
                }
            }
            count += 1;
        }
        if count == 0 {
            return PutMessageResult::failed(PutMessageStatus::MessageIllegal, "empty batch");
        }
        let (file, start) = match self.reserve(total) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut pos = start;
        let mut element_offsets = Vec::with_capacity(count);
        for (i, e) in batch::decode(&b.body).enumerate() {
            let Ok(e) = e else { break };
            let mut rec = batch_record(
                b,
                e,
                first_queue_offset + i as i64,
                store_timestamp,
                crcs.get(i).copied(),
            );
            rec.physical_offset = file.file_from_offset() + pos as i64;
            let len = rec.encoded_len().unwrap_or(0);
            // SAFETY: single writer, unpublished bytes; reserve() checked the whole batch fits.
            let area = unsafe { file.write_area(pos, len) };
            if rec.encode_into(area).is_err() {
                break;
            }
            element_offsets.push(rec.physical_offset);
            pos += len;
        }
        file.set_wrote_position(pos);
        offsets.advance(&b.topic, b.queue_id, element_offsets.len() as i64);
        PutMessageResult {
            status: PutMessageStatus::PutOk,
            append: Some(AppendMessageResult {
                wrote_offset: file.file_from_offset() + start as i64,
                wrote_bytes: pos - start,
                logics_offset: first_queue_offset,
                store_timestamp,
                msg_num: element_offsets.len(),
                store_host: b.store_host,
                element_offsets,
            }),
            remark: None,
        }
    }
}

fn batch_record<'a>(
    b: &'a MessageBatch,
    e: batch::BatchElement<'a>,
    queue_offset: i64,
    store_timestamp: i64,
    body_crc: Option<i32>,
) -> MessageRecord<'a> {
    MessageRecord {
        topic: &b.topic,
        queue_id: b.queue_id,
        flag: e.flag,
        queue_offset,
        physical_offset: 0,
        sys_flag: b.sys_flag,
        born_timestamp: b.born_timestamp,
        born_host: b.born_host,
        store_timestamp,
        store_host: b.store_host,
        reconsume_times: b.reconsume_times,
        prepared_transaction_offset: 0,
        body: e.body,
        body_crc,
        properties: e.properties,
    }
}

/// Next queue offset per topic and queue id (Java's topicQueueTable).
#[derive(Default)]
pub(crate) struct QueueOffsets {
    map: HashMap<String, HashMap<i32, i64>>,
}

impl QueueOffsets {
    pub fn current(&self, topic: &str, queue_id: i32) -> i64 {
        self.map
            .get(topic)
            .and_then(|m| m.get(&queue_id))
            .copied()
            .unwrap_or(0)
    }

    pub fn advance(&mut self, topic: &str, queue_id: i32, n: i64) {
        if let Some(m) = self.map.get_mut(topic) {
            *m.entry(queue_id).or_insert(0) += n;
            return;
        }
        self.map
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, n);
    }

    pub fn set(&mut self, topic: &str, queue_id: i32, offset: i64) {
        self.map
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, offset);
    }

    pub fn remove_topic(&mut self, topic: &str) {
        self.map.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmer_keeps_a_bounded_window_ahead_and_carries_over_to_the_next_segment() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * WARM_AHEAD;
        let cur = Arc::new(MappedFile::create(dir.path(), 0, size).unwrap());
        let next = Arc::new(MappedFile::create(dir.path(), size as i64, size).unwrap());
        let mut w = Warmer::default();
        cur.set_wrote_position(1000);
        // One step per call, never past the window.
        w.step(Some(cur.clone()), Some(next.clone()));
        assert_eq!(w.current, Some((0, 1000 + WARM_STEP)));
        assert!(!w.caught_up);
        for _ in 0..WARM_AHEAD / WARM_STEP + 2 {
            w.step(Some(cur.clone()), Some(next.clone()));
        }
        assert_eq!(w.current, Some((0, 1000 + WARM_AHEAD)));
        assert!(w.caught_up);
        assert_eq!(w.next, None, "far from the end: the next segment waits");
        // Near the end of the segment the head of the next one is warmed too, and kept when
        // it becomes current.
        cur.set_wrote_position(size - WARM_STEP);
        for _ in 0..WARM_AHEAD / WARM_STEP + 2 {
            w.step(Some(cur.clone()), Some(next.clone()));
        }
        let spill = WARM_AHEAD - WARM_STEP;
        assert_eq!(w.next, Some((size as i64, spill)));
        next.set_wrote_position(10);
        w.step(Some(next.clone()), None);
        assert_eq!(w.current, Some((size as i64, spill + WARM_STEP)));
    }
}

#[cfg(test)]
mod allocator_tests {
    use super::*;

    const SIZE: usize = 64 * 1024;

    fn segments(dir: &std::path::Path) -> Vec<i64> {
        let mut v: Vec<i64> = crate::mapped_file::list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        v.sort();
        v
    }

    fn wait_ready(a: &Allocator, offset: i64) {
        let mut st = a.state.lock();
        while st.ready.as_ref().is_none_or(|(o, _)| *o != offset) {
            a.cv.wait_for(&mut st, Duration::from_millis(10));
        }
    }

    #[test]
    fn a_segment_prepared_for_another_offset_never_stays_behind() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(Allocator::new(dir.path().to_owned(), SIZE, false));
        let runner = {
            let a = a.clone();
            std::thread::spawn(move || a.run(|| None))
        };
        // A guess at offset 0, then the log turns out to start elsewhere (a slave learning the
        // master's offsets): the guess is deleted, not left as the head of the log.
        a.request(0);
        wait_ready(&a, 0);
        let start = 5 * SIZE as i64;
        let f = a.take(start).unwrap();
        assert_eq!(f.file_from_offset(), start);
        wait_ready(&a, start + SIZE as i64);
        assert_eq!(segments(dir.path()), vec![start, start + SIZE as i64]);
        // A prepared segment replaced by a newer wish is deleted too.
        a.request(9 * SIZE as i64);
        wait_ready(&a, 9 * SIZE as i64);
        assert_eq!(segments(dir.path()), vec![start, 9 * SIZE as i64]);
        a.stop();
        runner.join().unwrap();
    }
}
