//! [`MessageStore`]: opens (locks, loads, recovers) a store directory, runs the flush, dispatch,
//! allocation and maintenance threads, and answers puts, pulls and queries.
//!
//! Appends run on the caller's thread under the append lock ([`crate::append`]): encoding one
//! record into the mapped file is cheaper than handing it to another thread and back. Everything
//! that can block on the disk runs on the store's own threads:
//! * flush + watchdog — durability and SYNC_FLUSH acknowledgements ([`crate::flush`]);
//! * dispatch — consume queues and index, arrival notifications ([`crate::dispatch`]);
//! * allocate — the next commit-log segment, created ahead of need, and page-cache warming a
//!   little ahead of the appender;
//! * maintenance — consume-queue/index flush, checkpoint, retention.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::{batch, body_crc, RecordView};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::append::{Allocator, Appender, QueueOffsets};
use crate::checkpoint::Checkpoint;
use crate::commit_log::CommitLog;
use crate::config::{BrokerRole, FlushDiskType, RoleCell, StoreConfig};
use crate::consume_queue::{ConsumeQueueTable, CQ_ENTRY_SIZE};
use crate::dispatch::{recover, run_dispatcher};
use crate::epoch::{consistent_end, Epoch, EpochFile};
use crate::error::{IoContext, Result, StoreError};
use crate::flush::{run_flush, run_watchdog, FlushWaiter, GroupCommit};
use crate::get::{
    GetMessageResult, GetMessageStatus, MessageArrival, MessageFilter, QueryMessageResult,
    StoreStats,
};
use crate::ha::{HaMaster, HaService, HaSlave, HaStatus};
use crate::index::IndexService;
use crate::mapped_file::MappedFileQueue;
use crate::put::{MessageBatch, MessageInner, PutHandle, PutMessageResult, PutMessageStatus};
use crate::util::{disk_used_ratio, local_hour_of_day, now_ms, total_physical_memory, Signal};

/// Called by the dispatcher for each message added to a consume queue (long-poll wake-up).
pub type ArrivalListener = Arc<dyn Fn(&MessageArrival<'_>) + Send + Sync>;

pub(crate) struct StoreInner {
    pub config: StoreConfig,
    /// The role now: `config.broker_role` at open, switched later in controller mode.
    pub role: RoleCell,
    pub commit_log: CommitLog,
    pub consume_queues: ConsumeQueueTable,
    pub index: IndexService,
    pub checkpoint: Checkpoint,
    pub group_commit: GroupCommit,
    pub allocator: Allocator,
    pub dispatch_signal: Signal,
    pub dispatched_signal: Signal,
    pub queue_offsets: Mutex<QueueOffsets>,
    pub reput_offset: AtomicI64,
    pub last_store_timestamp: AtomicI64,
    pub last_dispatched_timestamp: AtomicI64,
    pub dispatch_stop: AtomicBool,
    pub running: AtomicBool,
    pub disk_full: AtomicBool,
    pub arrival_listener: RwLock<Option<ArrivalListener>>,
    pub delay_levels_ms: Vec<i64>,
    memory_bytes: u64,
    maintenance_signal: Signal,
    maintenance_stop: AtomicBool,
    put_count: AtomicU64,
    put_bytes: AtomicU64,
    put_failures: AtomicU64,
    lock_watch: LockWatch,
}

/// How long appends hold the commit-log lock: RocketMQ's `pageCacheLockTimeMills` (the current
/// holder's time so far) plus the total held, for metrics. Three atomic operations per append.
struct LockWatch {
    clock: Instant,
    /// When the current holder took the lock, in ns since `clock` plus one; 0 while free.
    held_since: AtomicU64,
    held_total_ns: AtomicU64,
}

struct LockHeld<'a> {
    watch: &'a LockWatch,
    at: u64,
}

impl Drop for LockHeld<'_> {
    fn drop(&mut self) {
        let w = self.watch;
        w.held_since.store(0, Ordering::Relaxed);
        w.held_total_ns
            .fetch_add(w.now().saturating_sub(self.at), Ordering::Relaxed);
    }
}

impl LockWatch {
    fn new() -> LockWatch {
        LockWatch {
            clock: Instant::now(),
            held_since: AtomicU64::new(0),
            held_total_ns: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Marks the lock taken until the returned guard drops (also if the append panics, so a
    /// failed append cannot leave every later one refused as busy).
    fn taken(&self) -> LockHeld<'_> {
        let at = self.now();
        self.held_since.store(at, Ordering::Relaxed);
        LockHeld { watch: self, at }
    }

    /// How long the current holder has held the lock (zero while it is free).
    fn current(&self) -> Duration {
        match self.held_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_nanos(self.now().saturating_sub(since)),
        }
    }
}

#[derive(Default)]
struct Threads {
    dispatch: Option<JoinHandle<()>>,
    flush: Option<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
    allocate: Option<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
}

/// The commit-log writer behind the append lock; `None` once shut down. Shared with a slave's
/// replication thread, which appends through the same writer.
pub(crate) type SharedAppender = Arc<Mutex<Option<Appender>>>;

/// The message store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct MessageStore {
    inner: Arc<StoreInner>,
    /// The commit-log writer; `None` once shut down.
    appender: SharedAppender,
    /// Replication: the HA server of a master with `ha_listen_addr`, the client of a slave.
    /// Replaced when the role switches (controller mode); read once per SYNC_MASTER put.
    ha: RwLock<Option<HaService>>,
    /// Controller mode: where each master epoch starts in this commit log.
    epochs: Mutex<Option<EpochFile>>,
    threads: Mutex<Threads>,
    _lock: File,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .context(|| format!("spawn thread {name}"))
}

fn lock_store(path: &Path) -> Result<File> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on an open descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Locked(path.to_owned()));
    }
    let _ = f.write_all(b"lock");
    Ok(f)
}

impl MessageStore {
    /// Opens the store: locks it, loads every file, recovers (abnormally if the `abort` file of a
    /// crashed run is present), re-dispatches what the consume queues miss, and starts the threads.
    pub fn open(config: StoreConfig) -> Result<MessageStore> {
        if config.mapped_file_size_consume_queue == 0
            || !config
                .mapped_file_size_consume_queue
                .is_multiple_of(CQ_ENTRY_SIZE)
        {
            return Err(StoreError::Config(
                "mapped_file_size_consume_queue must be a positive multiple of 20".into(),
            ));
        }
        if config.mapped_file_size_commit_log < 4096 {
            return Err(StoreError::Config(
                "mapped_file_size_commit_log too small".into(),
            ));
        }
        let root = &config.store_path_root_dir;
        fs::create_dir_all(root).context(|| format!("create {}", root.display()))?;
        let lock = lock_store(&config.lock_path())?;
        let last_exit_ok = !config.abort_path().exists();
        if !last_exit_ok {
            tracing::warn!(
                "{} exists: the last run did not shut down cleanly",
                config.abort_path().display()
            );
        }

        let commit_log = CommitLog::new(MappedFileQueue::new(
            config.commit_log_dir(),
            config.mapped_file_size_commit_log,
        ));
        commit_log.files().load()?;
        let consume_queues = ConsumeQueueTable::new(
            config.consume_queue_dir(),
            config.mapped_file_size_consume_queue,
        );
        consume_queues.load()?;
        let checkpoint = Checkpoint::open(&config.checkpoint_path())?;
        let index = IndexService::new(
            config.index_dir(),
            config.max_hash_slot_num,
            config.max_index_num,
        );
        index.load(last_exit_ok, checkpoint.index_msg_timestamp())?;
        for cq in consume_queues.all() {
            cq.recover()?;
        }

        let inner = Arc::new(StoreInner {
            allocator: Allocator::new(
                config.commit_log_dir(),
                config.mapped_file_size_commit_log,
                config.warm_mapped_file_enable,
            ),
            delay_levels_ms: config.delay_levels_ms(),
            role: RoleCell::new(config.broker_role),
            config,
            commit_log,
            consume_queues,
            index,
            checkpoint,
            group_commit: GroupCommit::default(),
            dispatch_signal: Signal::default(),
            dispatched_signal: Signal::default(),
            queue_offsets: Mutex::new(QueueOffsets::default()),
            reput_offset: AtomicI64::new(0),
            last_store_timestamp: AtomicI64::new(0),
            last_dispatched_timestamp: AtomicI64::new(0),
            dispatch_stop: AtomicBool::new(false),
            running: AtomicBool::new(true),
            disk_full: AtomicBool::new(false),
            arrival_listener: RwLock::new(None),
            memory_bytes: total_physical_memory(),
            maintenance_signal: Signal::default(),
            maintenance_stop: AtomicBool::new(false),
            put_count: AtomicU64::new(0),
            put_bytes: AtomicU64::new(0),
            put_failures: AtomicU64::new(0),
            lock_watch: LockWatch::new(),
        });

        let started = Instant::now();
        let end = recover(&inner, last_exit_ok)?;
        let cl_min = inner.commit_log.min_offset();
        {
            let mut offsets = inner.queue_offsets.lock();
            for cq in inner.consume_queues.all() {
                offsets.set(cq.topic(), cq.queue_id(), cq.max_offset());
                cq.correct_min_offset(cl_min);
            }
        }
        inner.reput_offset.store(end, Ordering::Release);
        let last_ts = inner.last_dispatched_timestamp.load(Ordering::Acquire);
        inner.last_store_timestamp.store(last_ts, Ordering::Release);
        tracing::info!(
            normal = last_exit_ok,
            commit_log_end = end,
            elapsed = ?started.elapsed(),
            "store recovered"
        );
        File::create(inner.config.abort_path())
            .context(|| format!("create {}", inner.config.abort_path().display()))?;

        let mut threads = Threads::default();
        let i = inner.clone();
        threads.allocate = Some(spawn("store-allocate", move || {
            i.allocator.run(|| i.commit_log.files().last_file())
        })?);
        let file_size = inner.config.mapped_file_size_commit_log as i64;
        match inner.commit_log.files().last_file() {
            // An empty slave learns where its log starts from the master's first frame.
            None if inner.config.broker_role == BrokerRole::Slave
                || inner.config.controller_broker_id.is_some() => {}
            None => inner.allocator.request(0),
            Some(f) if f.is_full() => inner.allocator.request(f.end_offset()),
            Some(f) => inner.allocator.request(f.file_from_offset() + file_size),
        }
        let i = inner.clone();
        threads.flush = Some(spawn("store-flush", move || run_flush(i))?);
        let i = inner.clone();
        threads.watchdog = Some(spawn("store-flush-watchdog", move || run_watchdog(i))?);
        let i = inner.clone();
        threads.dispatch = Some(spawn("store-dispatch", move || run_dispatcher(i))?);
        let i = inner.clone();
        threads.maintenance = Some(spawn("store-maintenance", move || run_maintenance(i))?);
        let appender = Arc::new(Mutex::new(Some(Appender::new(inner.clone()))));
        // In controller mode nothing replicates until the controller names the master.
        let ha = match (inner.config.broker_role, inner.config.ha_listen_addr) {
            _ if inner.config.controller_broker_id.is_some() => None,
            (BrokerRole::Slave, _) => Some(HaService::Slave(HaSlave::start(
                inner.clone(),
                appender.clone(),
            )?)),
            (_, Some(addr)) => Some(HaService::Master(HaMaster::start(inner.clone(), addr)?)),
            (_, None) => None,
        };
        let epochs = match inner.config.controller_broker_id {
            Some(_) => Some(EpochFile::load(&inner.config.epoch_path())?),
            None => None,
        };

        Ok(MessageStore {
            inner,
            appender,
            ha: RwLock::new(ha),
            epochs: Mutex::new(epochs),
            threads: Mutex::new(threads),
            _lock: lock,
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Registers the callback the dispatcher calls for every message it adds to a queue.
    pub fn set_arrival_listener(&self, listener: ArrivalListener) {
        *self.inner.arrival_listener.write() = Some(listener);
    }

    fn check_put(
        &self,
        topic: &str,
        props_len: usize,
        body_len: usize,
    ) -> Option<PutMessageResult> {
        if !self.inner.running.load(Ordering::Acquire) {
            return Some(PutMessageResult::failed(
                PutMessageStatus::ServiceNotAvailable,
                "message store is shut down",
            ));
        }
        if self.inner.role.get() == BrokerRole::Slave {
            return Some(PutMessageResult::failed(
                PutMessageStatus::ServiceNotAvailable,
                "this broker is a slave (brokerRole=SLAVE): messages are written to its master",
            ));
        }
        if self.inner.disk_full.load(Ordering::Acquire) {
            return Some(PutMessageResult::failed(
                PutMessageStatus::ServiceNotAvailable,
                "disk full: commit log disk usage is above diskSpaceWarningLevelRatio",
            ));
        }
        if topic.is_empty() || topic.len() > u16::MAX as usize {
            return Some(PutMessageResult::failed(
                PutMessageStatus::MessageIllegal,
                "invalid topic length",
            ));
        }
        if props_len > i16::MAX as usize {
            return Some(PutMessageResult::failed(
                PutMessageStatus::PropertiesSizeExceeded,
                "properties longer than 32767 bytes",
            ));
        }
        if body_len > self.inner.config.max_message_size {
            return Some(PutMessageResult::failed(
                PutMessageStatus::MessageIllegal,
                "message body larger than maxMessageSize",
            ));
        }
        None
    }

    /// Runs `put` under the append lock and turns its result into a handle: ready at once, or
    /// (SYNC_FLUSH with WAIT) resolved by the group-commit flusher, and (SYNC_MASTER with WAIT)
    /// by a slave's acknowledgement.
    fn append(&self, wait: bool, put: impl FnOnce(&mut Appender) -> PutMessageResult) -> PutHandle {
        let asked = Instant::now();
        // A writer stuck this long in the page cache will not free the lock soon: refuse now
        // (RocketMQ's OS_PAGE_CACHE_BUSY) rather than queue behind it.
        if self.inner.lock_watch.current() > self.inner.config.os_page_cache_busy_timeout {
            self.inner.put_failures.fetch_add(1, Ordering::Relaxed);
            return PutHandle::ready(PutMessageResult::failed(
                PutMessageStatus::OsPageCacheBusy,
                "the commit log writer has held its lock longer than osPageCacheBusyTimeOutMills",
            ));
        }
        // The role as it is under the writer lock decides both whether to write and whether
        // to wait for replicas: a master stepping down takes this lock once after changing
        // its role, so a put that saw the master role here is waited for (and, with the
        // replication gone, never answered PUT_OK), and any later one is refused.
        let (role, mut result) = {
            let mut guard = self.appender.lock();
            let held = self.inner.lock_watch.taken();
            let role = self.inner.role.get();
            let result = match guard.as_mut() {
                None => PutMessageResult::failed(
                    PutMessageStatus::ServiceNotAvailable,
                    "message store is shut down",
                ),
                Some(_) if role == BrokerRole::Slave => PutMessageResult::failed(
                    PutMessageStatus::ServiceNotAvailable,
                    "this broker is a slave: messages are written to its master",
                ),
                // A put that waited this long for the writer is refused unwritten: the producer
                // retries elsewhere instead of piling onto a stalled writer (RocketMQ's queue
                // clean, answered as SYSTEM_BUSY by the broker).
                Some(_) if asked.elapsed() > self.inner.config.wait_time_in_queue => {
                    PutMessageResult::failed(
                        PutMessageStatus::QueueTimeout,
                        "waited for the commit log writer longer than waitTimeMillsInSendQueue",
                    )
                }
                Some(appender) => put(appender),
            };
            drop(held);
            (role, result)
        };
        if !result.status.is_stored() {
            self.inner.put_failures.fetch_add(1, Ordering::Relaxed);
            return PutHandle::ready(result);
        }
        self.inner.dispatch_signal.notify();
        // Only SYNC_MASTER puts look at replication; every other put skips it on one compare.
        let replica = match &result.append {
            Some(a) if wait && role == BrokerRole::SyncMaster => {
                match &*self.ha.read() {
                    Some(HaService::Master(ha)) => match ha.wait_for_slave(a.end_offset()) {
                        Ok(rx) => Some(rx),
                        Err(status) => {
                            result.status = status;
                            None
                        }
                    },
                    // A controller-mode master between roles: nobody can acknowledge.
                    _ if self.inner.config.controller_broker_id.is_some() => {
                        result.status = PutMessageStatus::SlaveNotAvailable;
                        None
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if self.inner.config.flush_disk_type != FlushDiskType::SyncFlush {
            return PutHandle::ready(result).with_replica(replica);
        }
        match (&result.append, wait) {
            (Some(a), true) => {
                let (tx, rx) = oneshot::channel();
                self.inner.group_commit.enqueue([FlushWaiter {
                    end_offset: a.end_offset(),
                    deadline: Instant::now() + self.inner.config.sync_flush_timeout,
                    result,
                    tx,
                }]);
                PutHandle {
                    rx: Some(rx),
                    ready: None,
                    replica,
                }
            }
            _ => {
                self.inner.group_commit.wake();
                PutHandle::ready(result).with_replica(replica)
            }
        }
    }

    /// Appends one message. The append is done before this returns; await (or `wait()`) the
    /// handle for the result, which under SYNC_FLUSH comes after the flush unless the message's
    /// WAIT property is false.
    pub fn put_message(&self, msg: MessageInner) -> PutHandle {
        if let Some(r) = self.check_put(&msg.topic, msg.properties.len(), msg.body.len()) {
            self.inner.put_failures.fetch_add(1, Ordering::Relaxed);
            return PutHandle::ready(r);
        }
        self.inner.put_count.fetch_add(1, Ordering::Relaxed);
        self.inner
            .put_bytes
            .fetch_add(msg.body.len() as u64, Ordering::Relaxed);
        let crc = body_crc(&msg.body);
        let wait = properties::wait_store_msg_ok(&msg.properties);
        self.append(wait, |a| a.put(&msg, crc))
    }

    /// Appends a batch (SEND_BATCH_MESSAGE body): all elements land in one commit-log file with
    /// consecutive queue offsets, or none does.
    pub fn put_messages(&self, batch: MessageBatch) -> PutHandle {
        if let Some(r) = self.check_put(&batch.topic, batch.properties.len(), 0) {
            self.inner.put_failures.fetch_add(1, Ordering::Relaxed);
            return PutHandle::ready(r);
        }
        let mut crcs = Vec::new();
        for e in batch::decode(&batch.body) {
            match e {
                Ok(e) if e.body.len() <= self.inner.config.max_message_size => {
                    crcs.push(body_crc(e.body))
                }
                Ok(_) => {
                    return PutHandle::ready(PutMessageResult::failed(
                        PutMessageStatus::MessageIllegal,
                        "batch element larger than maxMessageSize",
                    ))
                }
                Err(_) => {
                    return PutHandle::ready(PutMessageResult::failed(
                        PutMessageStatus::MessageIllegal,
                        "malformed batch body",
                    ))
                }
            }
        }
        self.inner
            .put_count
            .fetch_add(crcs.len() as u64, Ordering::Relaxed);
        self.inner
            .put_bytes
            .fetch_add(batch.body.len() as u64, Ordering::Relaxed);
        let wait = properties::wait_store_msg_ok(&batch.properties);
        self.append(wait, |a| a.put_batch(&batch, &crcs))
    }

    /// Reads up to `max_count` messages (and about `max_bytes`) of a queue from `offset`,
    /// following RocketMQ's `getMessage`: one consume-queue file per call, filtered entries
    /// count against a scan budget, smaller limits for data no longer in memory.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_count: usize,
        max_bytes: usize,
        filter: Option<&dyn MessageFilter>,
    ) -> GetMessageResult {
        let Some(cq) = self.inner.consume_queues.find(topic, queue_id) else {
            return GetMessageResult::empty(GetMessageStatus::NoMatchedLogicQueue, 0, 0, 0);
        };
        let min = cq.min_offset();
        let max = cq.max_offset();
        if max == 0 {
            return GetMessageResult::empty(GetMessageStatus::NoMessageInQueue, 0, min, max);
        }
        if offset < min {
            return GetMessageResult::empty(GetMessageStatus::OffsetTooSmall, min, min, max);
        }
        if offset == max {
            return GetMessageResult::empty(GetMessageStatus::OffsetOverflowOne, offset, min, max);
        }
        if offset > max {
            return GetMessageResult::empty(GetMessageStatus::OffsetOverflowBadly, max, min, max);
        }
        let Some(buf) = cq.entries_from(offset) else {
            let next = cq.roll_next_file(offset);
            return GetMessageResult::empty(GetMessageStatus::OffsetFoundNull, next, min, max);
        };
        let cfg = &self.inner.config;
        let cl = &self.inner.commit_log;
        let max_offset_py = cl.max_offset();
        let memory =
            (self.inner.memory_bytes as f64 * cfg.access_message_in_memory_max_ratio) as i64;
        let max_filter_bytes = 16_000usize.max(max_count * CQ_ENTRY_SIZE);
        let mut result =
            GetMessageResult::empty(GetMessageStatus::NoMatchedMessage, offset, min, max);
        let mut next_phy_file_start = i64::MIN;
        let mut max_phy_pulling = 0;
        let mut scanned = 0usize;
        for entry in buf.iter() {
            if scanned >= buf.len() * CQ_ENTRY_SIZE || scanned >= max_filter_bytes {
                break;
            }
            let entry_offset = offset + (scanned / CQ_ENTRY_SIZE) as i64;
            let size = entry.size.max(0) as usize;
            let py = entry.commit_log_offset;
            if entry.is_blank() {
                scanned += CQ_ENTRY_SIZE;
                continue;
            }
            max_phy_pulling = py;
            if next_phy_file_start != i64::MIN && py < next_phy_file_start {
                scanned += CQ_ENTRY_SIZE;
                continue;
            }
            let in_disk = max_offset_py - py > memory;
            if self.is_batch_full(size, max_count, max_bytes, &result, in_disk) {
                break;
            }
            if let Some(f) = filter {
                if !f.is_matched_by_consume_queue(entry.tags_code) {
                    scanned += CQ_ENTRY_SIZE;
                    continue;
                }
            }
            let Some(bytes) = cl.read(py, size) else {
                if result.buffer_total_size == 0 {
                    result.status = GetMessageStatus::MessageWasRemoving;
                }
                next_phy_file_start = cl.roll_next_file(py);
                scanned += CQ_ENTRY_SIZE;
                continue;
            };
            if let Some(f) = filter {
                let matched = RecordView::parse(&bytes)
                    .map(|v| f.is_matched_by_commit_log(&v))
                    .unwrap_or(false);
                if !matched {
                    scanned += CQ_ENTRY_SIZE;
                    continue;
                }
            }
            result.buffer_total_size += bytes.len();
            result.messages.push(bytes);
            result.queue_offsets.push(entry_offset);
            result.status = GetMessageStatus::Found;
            next_phy_file_start = i64::MIN;
            scanned += CQ_ENTRY_SIZE;
        }
        result.next_begin_offset = offset + (scanned / CQ_ENTRY_SIZE) as i64;
        result.suggest_pulling_from_slave = max_offset_py - max_phy_pulling > memory;
        result
    }

    fn is_batch_full(
        &self,
        size: usize,
        max_count: usize,
        max_bytes: usize,
        r: &GetMessageResult,
        in_disk: bool,
    ) -> bool {
        let cfg = &self.inner.config;
        let (total, count) = (r.buffer_total_size, r.messages.len());
        if total == 0 || count == 0 {
            return false;
        }
        if count >= max_count || total + size > max_bytes {
            return true;
        }
        if in_disk {
            total + size > cfg.max_transfer_bytes_on_message_in_disk
                || count > cfg.max_transfer_count_on_message_in_disk - 1
        } else {
            total + size > cfg.max_transfer_bytes_on_message_in_memory
                || count > cfg.max_transfer_count_on_message_in_memory - 1
        }
    }

    /// Next queue offset of a queue (0 if unknown).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .consume_queues
            .find(topic, queue_id)
            .map_or(0, |q| q.max_offset())
    }

    /// First readable queue offset (0 if unknown).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner
            .consume_queues
            .find(topic, queue_id)
            .map_or(0, |q| q.min_offset())
    }

    /// Commit-log offset of the message at a queue offset.
    pub fn commit_log_offset_in_queue(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> Option<i64> {
        let e = self
            .inner
            .consume_queues
            .find(topic, queue_id)?
            .entry(offset)?;
        (!e.is_blank()).then_some(e.commit_log_offset)
    }

    /// Store timestamp of the message at a queue offset.
    pub fn message_store_timestamp(&self, topic: &str, queue_id: i32, offset: i64) -> Option<i64> {
        let e = self
            .inner
            .consume_queues
            .find(topic, queue_id)?
            .entry(offset)?;
        if e.is_blank() {
            return None;
        }
        self.inner
            .commit_log
            .pickup_store_timestamp(e.commit_log_offset, e.size as usize)
    }

    /// Store timestamp of the oldest readable message of a queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let min = self.min_offset_in_queue(topic, queue_id);
        self.message_store_timestamp(topic, queue_id, min)
    }

    /// The first queue offset whose message was stored at or after `timestamp` (binary search
    /// over store timestamps); the max offset if every message is older, the min offset if the
    /// queue holds nothing readable.
    pub fn offset_by_timestamp(&self, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
        let Some(cq) = self.inner.consume_queues.find(topic, queue_id) else {
            return 0;
        };
        let (mut lo, mut hi) = (cq.min_offset(), cq.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.message_store_timestamp(topic, queue_id, mid) {
                Some(ts) if ts < timestamp => lo = mid + 1,
                Some(_) => hi = mid,
                // Removed from the commit log: treat as older.
                None => lo = mid + 1,
            }
        }
        lo
    }

    /// Raw published commit-log bytes `[offset, offset + len)` within one segment (tools and
    /// replication checks; Java's getCommitLogData).
    pub fn commit_log_data(&self, offset: i64, len: usize) -> Option<Bytes> {
        self.inner.commit_log.read(offset, len)
    }

    /// The record at a commit-log offset (VIEW_MESSAGE_BY_ID).
    pub fn lookup_message_by_offset(&self, commit_log_offset: i64) -> Option<Bytes> {
        self.inner.commit_log.read_record(commit_log_offset)
    }

    /// Messages of `topic` indexed under `key` (a KEYS token or a UNIQ_KEY) stored within
    /// `[begin, end]`, newest first; hits are re-checked against the record.
    pub fn query_messages_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> QueryMessageResult {
        let r = self.inner.index.query(topic, key, max, begin, end);
        let mut out = QueryMessageResult {
            messages: Vec::new(),
            index_last_update_timestamp: r.index_last_update_timestamp,
            index_last_update_phy_offset: r.index_last_update_phy_offset,
        };
        for off in r.phy_offsets {
            let Some(bytes) = self.lookup_message_by_offset(off) else {
                continue;
            };
            let matches = RecordView::parse(&bytes).is_ok_and(|v| {
                v.topic() == topic
                    && (properties::uniq_key(v.properties()) == Some(key)
                        || properties::business_keys(v.properties()).any(|k| k == key))
            });
            if matches {
                out.messages.push(bytes);
            }
        }
        out
    }

    /// The message with this UNIQ_KEY (client message id).
    pub fn message_by_uniq_key(&self, topic: &str, uniq_key: &str) -> Option<Bytes> {
        let r = self.inner.index.query(topic, uniq_key, 32, 0, i64::MAX);
        r.phy_offsets.into_iter().find_map(|off| {
            let bytes = self.lookup_message_by_offset(off)?;
            let v = RecordView::parse(&bytes).ok()?;
            (v.topic() == topic
                && v.property(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == Some(uniq_key))
            .then_some(bytes)
        })
    }

    /// Drops a topic's consume queues (commit-log records stay until retention removes them).
    pub fn delete_topic(&self, topic: &str) -> Result<bool> {
        self.inner.queue_offsets.lock().remove_topic(topic);
        self.inner.consume_queues.remove_topic(topic)
    }

    /// Topics that have consume queues.
    pub fn topics(&self) -> Vec<String> {
        self.inner.consume_queues.topics()
    }

    /// Queue ids of a topic that have consume queues.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .inner
            .consume_queues
            .queues_of(topic)
            .iter()
            .map(|q| q.queue_id())
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn commit_log_min_offset(&self) -> i64 {
        self.inner.commit_log.min_offset()
    }
    pub fn commit_log_max_offset(&self) -> i64 {
        self.inner.commit_log.max_offset()
    }
    /// Commit-log offset up to which consume queues and index are built.
    pub fn dispatch_offset(&self) -> i64 {
        self.inner.reput_offset.load(Ordering::Acquire)
    }

    /// Blocks until everything appended so far is dispatched (tests, tools, shutdown).
    pub fn wait_dispatched(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let target = self.commit_log_max_offset();
        let mut seen = self.inner.dispatched_signal.current();
        while self.dispatch_offset() < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            seen = self
                .inner
                .dispatched_signal
                .wait_change(seen, (deadline - now).min(Duration::from_millis(20)));
        }
        true
    }

    pub fn stats(&self) -> StoreStats {
        let i = &self.inner;
        StoreStats {
            commit_log_min_offset: i.commit_log.min_offset(),
            commit_log_max_offset: i.commit_log.max_offset(),
            commit_log_flushed_offset: i.commit_log.flushed_offset(),
            dispatch_offset: self.dispatch_offset(),
            commit_log_disk_ratio: disk_used_ratio(&i.config.commit_log_dir()).unwrap_or(0.0),
            disk_full: i.disk_full.load(Ordering::Acquire),
            put_message_count: i.put_count.load(Ordering::Relaxed),
            put_message_bytes: i.put_bytes.load(Ordering::Relaxed),
            put_message_failures: i.put_failures.load(Ordering::Relaxed),
            page_cache_lock_time: i.lock_watch.current(),
            page_cache_lock_held_total: Duration::from_nanos(
                i.lock_watch.held_total_ns.load(Ordering::Relaxed),
            ),
            consume_queue_count: i.consume_queues.all().len(),
            index_file_count: i.index.files().len(),
        }
    }

    /// Where a master's HA server listens (`None` for a slave or without `ha_listen_addr`).
    pub fn ha_local_addr(&self) -> Option<std::net::SocketAddr> {
        match &*self.ha.read() {
            Some(HaService::Master(m)) => Some(m.local_addr()),
            _ => None,
        }
    }

    /// Slave: the master's HA address (`host:port`) to replicate from, as learned from the
    /// NameServer; a change reconnects. Ignored by a master.
    pub fn set_ha_master_address(&self, addr: &str) {
        if let Some(HaService::Slave(s)) = &*self.ha.read() {
            s.set_master_address(addr);
        }
    }

    /// Replication status (default when replication is off).
    pub fn ha_status(&self) -> HaStatus {
        self.ha
            .read()
            .as_ref()
            .map(HaService::status)
            .unwrap_or_default()
    }

    /// The role now (`brokerRole`, or what the controller made this store).
    pub fn role(&self) -> BrokerRole {
        self.inner.role.get()
    }

    /// Controller mode: makes this store the master of `epoch` with `role` (ASYNC_MASTER or
    /// SYNC_MASTER). Stops replicating from the old master, waits for the dispatcher, cuts a
    /// half-replicated record off the end, records where the epoch starts and opens the HA
    /// port for slaves. Blocks (thread joins, file writes): call it off the async workers.
    pub fn become_master(&self, role: BrokerRole, epoch: i32) -> Result<()> {
        if role == BrokerRole::Slave {
            return Err(StoreError::RoleSwitch(
                "become_master needs a master role".into(),
            ));
        }
        let record_epoch = || -> Result<()> {
            if let Some(epochs) = self.epochs.lock().as_mut() {
                if epochs.last_epoch().is_none_or(|e| e < epoch) {
                    epochs.begin(epoch, self.inner.commit_log.max_offset())?;
                }
            }
            Ok(())
        };
        if self.role() != BrokerRole::Slave {
            // Re-elected while serving: same log, a new epoch from here; nothing to cut.
            record_epoch()?;
            self.inner.role.set(role);
        } else {
            let old = self.ha.write().take();
            if let Some(ha) = old {
                ha.shutdown();
            }
            let end = self.settle_dispatch()?;
            self.truncate_tail(end)?;
            record_epoch()?;
            let ha = match self.inner.config.ha_listen_addr {
                Some(addr) => Some(HaService::Master(HaMaster::start(
                    self.inner.clone(),
                    addr,
                )?)),
                None => None,
            };
            *self.ha.write() = ha;
            // Last: writes are taken only once replication can acknowledge them.
            self.inner.role.set(role);
        }
        tracing::info!(
            role = role.name(),
            epoch,
            end = self.inner.commit_log.max_offset(),
            "store is master"
        );
        Ok(())
    }

    /// Controller mode: stops taking writes and serving slaves; the caller then reconciles
    /// with the new master ([`MessageStore::reconcile_with_master`]) and starts replication
    /// ([`MessageStore::replicate_from`]). Puts waiting for slaves are answered
    /// FLUSH_SLAVE_TIMEOUT: they were never acknowledged. Blocks.
    pub fn become_slave(&self) -> Result<()> {
        self.inner.role.set(BrokerRole::Slave);
        // Taking the writer once waits for an append in flight, after which none can start.
        drop(self.appender.lock());
        // Serving slaves or replicating from a master that is no longer the master: both end.
        // The lock is released first: shutting down joins threads, and puts read it.
        let old = self.ha.write().take();
        if let Some(ha) = old {
            ha.shutdown();
        }
        Ok(())
    }

    /// Controller mode, as a slave that is not replicating yet: cuts this commit log where it
    /// stops agreeing with the master's epochs, and takes the master's epochs over. Returns
    /// the offset cut at, if anything was cut. Blocks.
    pub fn reconcile_with_master(&self, master: &[Epoch], master_max: i64) -> Result<Option<i64>> {
        if self.role() != BrokerRole::Slave || self.ha.read().is_some() {
            return Err(StoreError::RoleSwitch(
                "reconcile only a slave that is not replicating".into(),
            ));
        }
        // The epochs lock is not held while the dispatcher settles or the log is cut: the
        // heartbeat reads the epochs meanwhile.
        let Some(local) = self.epochs.lock().as_ref().map(|e| e.entries().to_vec()) else {
            return Ok(None);
        };
        let local_max = self.settle_dispatch()?;
        let mut cut = None;
        if let Some(end) = consistent_end(&local, local_max, master, master_max) {
            if end < local_max {
                tracing::warn!(
                    from = end,
                    to = local_max,
                    "cutting the commit log tail that the new master does not have"
                );
                self.truncate_tail(end)?;
                cut = Some(end);
            }
        }
        if let Some(epochs) = self.epochs.lock().as_mut() {
            epochs.adopt(master)?;
        }
        Ok(cut)
    }

    /// Controller mode: replicate from the master's HA address (`host:port`), starting the
    /// replication client if it is not running.
    pub fn replicate_from(&self, master_ha_addr: &str) -> Result<()> {
        let mut ha = self.ha.write();
        if !matches!(&*ha, Some(HaService::Slave(_))) {
            if let Some(old) = ha.take() {
                old.shutdown();
            }
            *ha = Some(HaService::Slave(HaSlave::start(
                self.inner.clone(),
                self.appender.clone(),
            )?));
        }
        if let Some(HaService::Slave(s)) = &*ha {
            s.set_master_address(master_ha_addr);
        }
        Ok(())
    }

    /// Controller mode, master: the other SyncStateSet members SYNC_MASTER puts wait for
    /// (with `allAckInSyncStateSet`). Returns the commit-log end at the change: a member just
    /// added holds every acknowledged message once it has acknowledged that offset.
    pub fn set_sync_state_set(&self, others: std::collections::BTreeSet<u64>) -> Option<i64> {
        match &*self.ha.read() {
            Some(HaService::Master(m)) => Some(m.set_sync_state_set(others)),
            _ => None,
        }
    }

    /// Controller mode: this log's epochs with their end offsets (GET_BROKER_EPOCH_CACHE).
    pub fn epoch_entries(&self) -> Vec<Epoch> {
        self.epochs
            .lock()
            .as_ref()
            .map(|e| e.entries().to_vec())
            .unwrap_or_default()
    }

    /// Waits (bounded) until the dispatcher has caught up with the commit log; returns the
    /// end of the whole records.
    fn settle_dispatch(&self) -> Result<i64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let end = self.inner.commit_log.max_offset();
            if self.inner.reput_offset.load(Ordering::Acquire) >= end {
                return Ok(end);
            }
            if Instant::now() > deadline {
                return Err(StoreError::RoleSwitch(
                    "the dispatcher did not catch up with the commit log in 30 s".into(),
                ));
            }
            self.inner.dispatch_signal.notify();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Cuts the commit log at `offset` (a record boundary) with the consume queues, while no
    /// writer runs: the dispatcher is stopped and restarted around it, the writer re-reads
    /// its position, and queue offsets are taken from the cut queues.
    fn truncate_tail(&self, offset: i64) -> Result<()> {
        let mut threads = self.threads.lock();
        let i = &self.inner;
        i.dispatch_stop.store(true, Ordering::Release);
        i.dispatch_signal.notify();
        if let Some(h) = threads.dispatch.take() {
            let _ = h.join();
        }
        let result = (|| -> Result<()> {
            let mut writer = self.appender.lock();
            let offset = offset.min(i.commit_log.max_offset());
            i.commit_log.files().truncate_written(offset)?;
            i.commit_log.reset_offsets(offset);
            let mut queue_offsets = i.queue_offsets.lock();
            for cq in i.consume_queues.all() {
                cq.truncate_dirty(offset)?;
                queue_offsets.set(cq.topic(), cq.queue_id(), cq.max_offset());
            }
            i.reput_offset.fetch_min(offset, Ordering::AcqRel);
            if writer.is_some() {
                *writer = Some(Appender::new(i.clone()));
            }
            Ok(())
        })();
        i.dispatch_stop.store(false, Ordering::Release);
        let inner = i.clone();
        threads.dispatch = Some(spawn("store-dispatch", move || run_dispatcher(inner))?);
        result
    }

    pub fn is_disk_full(&self) -> bool {
        self.inner.disk_full.load(Ordering::Acquire)
    }

    /// Runs one retention pass now, deleting expired files regardless of `deleteWhen` (admin
    /// "delete expired commit log"). Returns the number of commit-log files deleted.
    pub fn clean_expired_files(&self) -> Result<usize> {
        clean(&self.inner, true)
    }

    /// Flushes consume queues, index and checkpoint now (normally done every second).
    pub fn flush_logics(&self) -> Result<()> {
        flush_logics(&self.inner, true)
    }

    /// Stops accepting puts, drains the append queue, waits for dispatch, flushes everything,
    /// writes the checkpoint and removes the abort file. Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        let first = self.inner.running.swap(false, Ordering::AcqRel);
        // Replication first: a slave's thread appends, a master's threads read the log.
        let old = self.ha.write().take();
        if let Some(ha) = old {
            ha.shutdown();
        }
        let mut t = self.threads.lock();
        // Taking the writer waits for an append in progress; later puts are refused.
        let writer = self.appender.lock().take();
        if !first && writer.is_none() {
            return Ok(());
        }
        self.inner.dispatch_stop.store(true, Ordering::Release);
        self.inner.dispatch_signal.notify();
        if let Some(h) = t.dispatch.take() {
            let _ = h.join();
        }
        self.inner.group_commit.stop();
        for h in [t.flush.take(), t.watchdog.take()].into_iter().flatten() {
            let _ = h.join();
        }
        self.inner.allocator.stop();
        if let Some(h) = t.allocate.take() {
            let _ = h.join();
        }
        self.inner.maintenance_stop.store(true, Ordering::Release);
        self.inner.maintenance_signal.notify();
        if let Some(h) = t.maintenance.take() {
            let _ = h.join();
        }
        let i = &self.inner;
        i.commit_log.flush()?;
        i.checkpoint
            .set_physic_msg_timestamp(i.last_store_timestamp.load(Ordering::Acquire));
        flush_logics(i, true)?;
        let abort = i.config.abort_path();
        if abort.exists() {
            fs::remove_file(&abort).context(|| format!("remove {}", abort.display()))?;
        }
        tracing::info!(
            "store shut down at commit log offset {}",
            i.commit_log.max_offset()
        );
        Ok(())
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("store shutdown failed: {e}");
        }
    }
}

/// How often the maintenance thread syncs the index files. Keys hash to random slots, so a
/// sync writes back nearly every slot page however few keys were added; syncing every tenth
/// consume-queue flush cuts that random I/O tenfold, at the price of re-indexing up to this much
/// commit log after a crash.
const INDEX_FLUSH_EVERY: u32 = 10;

fn flush_logics(i: &StoreInner, with_index: bool) -> Result<()> {
    let ts = i.last_dispatched_timestamp.load(Ordering::Acquire);
    for cq in i.consume_queues.all() {
        cq.flush()?;
    }
    i.checkpoint.set_logics_msg_timestamp(ts);
    if with_index {
        i.index.flush()?;
        i.checkpoint.set_index_msg_timestamp(ts);
    }
    i.checkpoint.flush()
}

fn run_maintenance(i: Arc<StoreInner>) {
    let mut seen = i.maintenance_signal.current();
    let mut last_clean = Instant::now();
    let mut rounds = 0u32;
    while !i.maintenance_stop.load(Ordering::Acquire) {
        seen = i
            .maintenance_signal
            .wait_change(seen, i.config.flush_interval_consume_queue);
        if i.maintenance_stop.load(Ordering::Acquire) {
            break;
        }
        rounds = rounds.wrapping_add(1);
        if let Err(e) = flush_logics(&i, rounds.is_multiple_of(INDEX_FLUSH_EVERY)) {
            tracing::error!("consume queue / index flush failed: {e}");
        }
        if last_clean.elapsed() >= i.config.clean_resource_interval {
            last_clean = Instant::now();
            if let Err(e) = clean(&i, false) {
                tracing::error!("retention pass failed: {e}");
            }
        }
    }
}

/// One retention pass (store-format.md §7).
fn clean(i: &StoreInner, manual: bool) -> Result<usize> {
    let cfg = &i.config;
    let ratio = disk_used_ratio(&cfg.commit_log_dir()).unwrap_or(0.0);
    let full = ratio > cfg.disk_space_warning_level_ratio;
    if full != i.disk_full.swap(full, Ordering::AcqRel) {
        if full {
            tracing::error!(
                "commit log disk usage {:.1}% is above {:.0}%: refusing writes",
                ratio * 100.0,
                cfg.disk_space_warning_level_ratio * 100.0
            );
        } else {
            tracing::info!(
                "commit log disk usage back to {:.1}%: accepting writes",
                ratio * 100.0
            );
        }
    }
    let hour = local_hour_of_day(now_ms());
    let time_up = cfg
        .delete_when
        .split(';')
        .filter_map(|h| h.trim().parse::<i64>().ok())
        .any(|h| h == hour);
    let space_full = ratio > cfg.disk_max_used_space_ratio;
    let force = ratio > cfg.disk_space_clean_forcibly_ratio;
    if !(time_up || space_full || manual) {
        return Ok(0);
    }
    let files = i.commit_log.files().files();
    // Never the file being written, and never anything not yet flushed and dispatched.
    let safe_end = i
        .commit_log
        .flushed_offset()
        .min(i.reput_offset.load(Ordering::Acquire));
    let now = SystemTime::now();
    let mut n = 0;
    for f in files.iter().take(files.len().saturating_sub(1)) {
        if n >= cfg.delete_file_batch_max || f.end_offset() > safe_end {
            break;
        }
        let expired = f
            .last_modified()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= cfg.file_reserved_time);
        if !(expired || force) {
            break;
        }
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    i.commit_log.files().delete_first(n)?;
    let min = i.commit_log.min_offset();
    tracing::info!(deleted = n, min_offset = min, "deleted commit log files");
    for cq in i.consume_queues.all() {
        cq.delete_expired(min)?;
    }
    i.index.delete_expired(min)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_holding_the_lock_too_long_is_measured_and_makes_new_puts_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        config.mapped_file_size_commit_log = 1024 * 1024;
        config.warm_mapped_file_enable = false;
        config.os_page_cache_busy_timeout = Duration::from_millis(300);
        let store = Arc::new(MessageStore::open(config).unwrap());
        assert!(store
            .put_message(MessageInner::new("T", 0, "a"))
            .wait()
            .status
            .is_stored());
        assert_eq!(store.stats().page_cache_lock_time, Duration::ZERO);

        // Stands in for a writer stalled in the page cache: it holds the lock for 800 ms.
        let stalled = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.append(true, |_| {
                    std::thread::sleep(Duration::from_millis(800));
                    PutMessageResult::failed(PutMessageStatus::UnknownError, "stalled")
                })
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        assert!(store.stats().page_cache_lock_time >= Duration::from_millis(400));
        let refused = store.put_message(MessageInner::new("T", 0, "b")).wait();
        assert_eq!(refused.status, PutMessageStatus::OsPageCacheBusy);

        stalled.join().unwrap().wait();
        let stats = store.stats();
        assert_eq!(stats.page_cache_lock_time, Duration::ZERO);
        assert!(stats.page_cache_lock_held_total >= Duration::from_millis(800));
        assert!(store
            .put_message(MessageInner::new("T", 0, "c"))
            .wait()
            .status
            .is_stored());
        store.shutdown().unwrap();
    }
}
