//! The master side of replication: accepts slaves on `haListenPort`, one connection per slave,
//! each served by two threads (as RocketMQ's HAConnection has a read and a write service):
//!
//! * the reader takes the slave's 8-byte offset reports; the first one says where to start,
//!   every later one acknowledges data and releases SYNC_MASTER puts waiting for it. In
//!   controller mode a slave's very first word is its broker id instead (ferrymq's stand-in
//!   for the Java auto-switch handshake), so acknowledgements are known per SyncStateSet
//!   member and, with `allAckInSyncStateSet`, a put waits for every member;
//! * the writer pushes commit-log data from that offset in frames of at most
//!   `haTransferBatchSize`, never across a segment end, and an empty frame every
//!   `haSendHeartbeatInterval` when there is nothing to send. It sleeps on the dispatcher's
//!   "dispatched" signal, so puts pay nothing for replication; with no slave connected nobody
//!   sleeps on that signal and it costs the dispatcher one atomic load per round.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::frame::{decode_report, encode_header, HEADER_LEN, REPORT_LEN};
use super::{HaStatus, ReplicaAck};
use crate::config::BrokerRole;
use crate::error::{IoContext, Result};
use crate::put::PutMessageStatus;
use crate::store::StoreInner;

/// How long the writer sleeps at most between looks at the commit log end.
const WRITER_POLL: Duration = Duration::from_millis(100);
/// Read timeout of the report reader, so it notices shutdown and silent slaves.
const READER_POLL: Duration = Duration::from_millis(500);

/// A SYNC_MASTER put waiting for a slave to acknowledge its end offset.
struct Waiter {
    end_offset: i64,
    deadline: Instant,
    tx: oneshot::Sender<PutMessageStatus>,
}

struct Slave {
    peer: SocketAddr,
    /// Shutting this down wakes both threads of the connection.
    socket: TcpStream,
    /// Offset of the last report; -1 until the first.
    acked: AtomicI64,
    closed: AtomicBool,
    /// Controller mode: the broker id the slave named; -1 until then.
    broker_id: AtomicI64,
    /// The master's end of log when the previous report came: a report reaching it means
    /// the slave had caught up then.
    master_end_at_report: AtomicI64,
    caught_up_at: Mutex<Option<Instant>>,
}

impl Slave {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

struct Shared {
    inner: Arc<StoreInner>,
    stop: AtomicBool,
    slaves: Mutex<Vec<Arc<Slave>>>,
    slave_count: AtomicUsize,
    /// The highest offset any slave acknowledged (Java's push2SlaveMaxOffset).
    acked: AtomicI64,
    waiters: Mutex<VecDeque<Waiter>>,
    waiters_cv: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Controller mode: slaves name themselves first.
    identified: bool,
    /// `allAckInSyncStateSet`: puts wait for every id in `sync_set`.
    all_ack: bool,
    /// The other SyncStateSet members (this master excluded). Lock order: waiters, then
    /// sync_set, then slaves.
    sync_set: Mutex<BTreeSet<u64>>,
}

/// The HA server of a master.
pub(crate) struct HaMaster {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

impl HaMaster {
    /// Binds the HA port and starts accepting slaves (and, for SYNC_MASTER, the thread that
    /// times out unacknowledged puts).
    pub fn start(inner: Arc<StoreInner>, addr: SocketAddr) -> Result<HaMaster> {
        let listener = TcpListener::bind(addr).context(|| format!("bind HA port {addr}"))?;
        let local_addr = listener
            .local_addr()
            .context(|| format!("HA port {addr}"))?;
        let identified = inner.config.controller_broker_id.is_some();
        let all_ack = identified && inner.config.all_ack_in_sync_state_set;
        // A controller-mode store may become SYNC_MASTER after starting its HA server.
        let sync = identified || inner.role.get() == BrokerRole::SyncMaster;
        let shared = Arc::new(Shared {
            inner,
            stop: AtomicBool::new(false),
            slaves: Mutex::new(Vec::new()),
            slave_count: AtomicUsize::new(0),
            acked: AtomicI64::new(0),
            waiters: Mutex::new(VecDeque::new()),
            waiters_cv: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            identified,
            all_ack,
            sync_set: Mutex::new(BTreeSet::new()),
        });
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(
            spawn("store-ha-accept", move || accept_loop(s, listener))
                .context(|| "spawn HA acceptor".to_owned())?,
        );
        if sync {
            let s = shared.clone();
            threads.push(
                spawn("store-ha-timeouts", move || timeout_loop(&s))
                    .context(|| "spawn HA timeout thread".to_owned())?,
            );
        }
        tracing::info!(%local_addr, "HA service listening for slaves");
        Ok(HaMaster {
            shared,
            local_addr,
            threads: Mutex::new(threads),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Registers a SYNC_MASTER put that ends at `end_offset`; the receiver yields PUT_OK once a
    /// slave acknowledged it or FLUSH_SLAVE_TIMEOUT after `syncFlushTimeout`. Answers
    /// SLAVE_NOT_AVAILABLE at once when no slave is connected or the best one is more than
    /// `haMaxGapNotInSync` behind (RocketMQ's isSlaveOK).
    pub fn wait_for_slave(
        &self,
        end_offset: i64,
    ) -> std::result::Result<oneshot::Receiver<PutMessageStatus>, PutMessageStatus> {
        let s = &self.shared;
        let cfg = &s.inner.config;
        if s.all_ack {
            return Ok(self.wait_for_sync_state_set(end_offset));
        }
        if s.slave_count.load(Ordering::Acquire) == 0
            || end_offset - s.acked.load(Ordering::Acquire) >= cfg.ha_max_gap_not_in_sync
        {
            return Err(PutMessageStatus::SlaveNotAvailable);
        }
        let (tx, rx) = oneshot::channel();
        let mut waiters = s.waiters.lock();
        // Checked under the lock: a report that raised `acked` before we queued could not have
        // seen this waiter, and no later report may come.
        if s.acked.load(Ordering::Acquire) >= end_offset {
            let _ = tx.send(PutMessageStatus::PutOk);
            return Ok(rx);
        }
        waiters.push_back(Waiter {
            end_offset,
            deadline: Instant::now() + cfg.sync_flush_timeout,
            tx,
        });
        if waiters.len() == 1 {
            s.waiters_cv.notify_one();
        }
        Ok(rx)
    }

    /// `allAckInSyncStateSet`: the put is acknowledged once every other SyncStateSet member
    /// has it; at once when the master is the only member.
    fn wait_for_sync_state_set(&self, end_offset: i64) -> oneshot::Receiver<PutMessageStatus> {
        let s = &self.shared;
        let (tx, rx) = oneshot::channel();
        let mut waiters = s.waiters.lock();
        match s.confirmed() {
            Some(c) if c < end_offset => {
                waiters.push_back(Waiter {
                    end_offset,
                    deadline: Instant::now() + s.inner.config.sync_flush_timeout,
                    tx,
                });
                if waiters.len() == 1 {
                    s.waiters_cv.notify_one();
                }
            }
            _ => {
                let _ = tx.send(PutMessageStatus::PutOk);
            }
        }
        rx
    }

    /// Replaces the SyncStateSet members (other than this master) whose acknowledgements
    /// puts wait for, and returns the commit-log end at the moment of the change: every put
    /// acknowledged before it ends at or below that offset, so a member added here holds
    /// everything acknowledged once it has acknowledged that offset.
    pub fn set_sync_state_set(&self, others: BTreeSet<u64>) -> i64 {
        let s = &self.shared;
        let mut waiters = s.waiters.lock();
        *s.sync_set.lock() = others;
        let fence = s.inner.commit_log.max_offset();
        s.release(&mut waiters);
        fence
    }

    pub fn status(&self) -> HaStatus {
        let s = &self.shared;
        let now = Instant::now();
        // One lock at a time: guards in a struct literal would live to its end.
        let sync_state_set = s.sync_set.lock().clone();
        let connected: Vec<Arc<Slave>> = s.slaves.lock().clone();
        HaStatus {
            replicas: connected
                .iter()
                .map(|c| ReplicaAck {
                    peer: c.peer,
                    broker_id: u64::try_from(c.broker_id.load(Ordering::Acquire)).ok(),
                    acked: c.acked.load(Ordering::Acquire),
                    caught_up_ago: c.caught_up_at.lock().map(|t| now.duration_since(t)),
                })
                .collect(),
            sync_state_set,
            slaves: connected
                .iter()
                .map(|c| (c.peer, c.acked.load(Ordering::Acquire)))
                .collect(),
            acked_offset: s.acked.load(Ordering::Acquire),
            master_address: None,
            connected_to_master: false,
        }
    }

    /// Stops accepting, closes every slave connection, joins the threads and answers waiting
    /// puts with FLUSH_SLAVE_TIMEOUT. Idempotent.
    pub fn shutdown(&self) {
        let s = &self.shared;
        if s.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // A blocking accept only returns for a connection: make one.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        {
            // Notified under the lock, so the timeout thread cannot miss it between its check
            // of `stop` and its wait.
            let _waiters = s.waiters.lock();
            s.waiters_cv.notify_all();
        }
        // The acceptor first: once it is gone no connection can be added behind our back.
        let own: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for h in own {
            let _ = h.join();
        }
        for slave in s.slaves.lock().iter() {
            slave.close();
        }
        s.inner.dispatched_signal.notify();
        let connections: Vec<JoinHandle<()>> = s.threads.lock().drain(..).collect();
        for h in connections {
            let _ = h.join();
        }
        for w in s.waiters.lock().drain(..) {
            let _ = w.tx.send(PutMessageStatus::FlushSlaveTimeout);
        }
    }
}

impl Drop for HaMaster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(s: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if s.stop.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "HA accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = serve(&s, stream) {
            tracing::warn!(error = %e, "cannot serve a slave connection");
        }
    }
}

fn serve(s: &Arc<Shared>, stream: TcpStream) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READER_POLL))?;
    let slave = Arc::new(Slave {
        peer,
        socket: stream.try_clone()?,
        acked: AtomicI64::new(-1),
        closed: AtomicBool::new(false),
        broker_id: AtomicI64::new(-1),
        master_end_at_report: AtomicI64::new(i64::MAX),
        caught_up_at: Mutex::new(None),
    });
    let reader = stream.try_clone()?;
    tracing::info!(slave = %peer, "slave connected for replication");
    {
        let mut slaves = s.slaves.lock();
        slaves.push(slave.clone());
        s.slave_count.store(slaves.len(), Ordering::Release);
    }
    let mut threads = s.threads.lock();
    threads.retain(|h| !h.is_finished());
    let (s1, c1) = (s.clone(), slave.clone());
    threads.push(spawn("store-ha-read", move || {
        read_reports(&s1, &c1, reader);
        s1.remove(&c1);
    })?);
    let (s2, c2) = (s.clone(), slave);
    threads.push(spawn("store-ha-write", move || {
        if let Err(e) = push_data(&s2, &c2, stream) {
            if !c2.closed.load(Ordering::Acquire) {
                tracing::warn!(slave = %c2.peer, error = %e, "replication to slave stopped");
            }
        }
        c2.close();
    })?);
    Ok(())
}

impl Shared {
    fn remove(&self, slave: &Arc<Slave>) {
        slave.close();
        let mut slaves = self.slaves.lock();
        slaves.retain(|c| !Arc::ptr_eq(c, slave));
        self.slave_count.store(slaves.len(), Ordering::Release);
        tracing::info!(slave = %slave.peer, "slave replication connection closed");
    }

    /// The offset every SyncStateSet member has acknowledged; `None` when there is no other
    /// member. A member without a connection holds it at -1.
    fn confirmed(&self) -> Option<i64> {
        let set = self.sync_set.lock();
        if set.is_empty() {
            return None;
        }
        let slaves = self.slaves.lock();
        set.iter()
            .map(|id| {
                slaves
                    .iter()
                    .filter(|c| c.broker_id.load(Ordering::Acquire) == *id as i64)
                    .map(|c| c.acked.load(Ordering::Acquire))
                    .max()
                    .unwrap_or(-1)
            })
            .min()
    }

    /// Releases the waiters the members' acknowledgements now cover (all of them when the
    /// master is alone in the set).
    fn release(&self, waiters: &mut VecDeque<Waiter>) {
        let confirmed = self.confirmed().unwrap_or(i64::MAX);
        while waiters.front().is_some_and(|w| w.end_offset <= confirmed) {
            if let Some(w) = waiters.pop_front() {
                let _ = w.tx.send(PutMessageStatus::PutOk);
            }
        }
    }

    fn on_report(&self, slave: &Slave, offset: i64) {
        slave.acked.store(offset, Ordering::Release);
        let end = self.inner.commit_log.max_offset();
        if offset >= slave.master_end_at_report.swap(end, Ordering::AcqRel) || offset >= end {
            *slave.caught_up_at.lock() = Some(Instant::now());
        }
        let before = self.acked.fetch_max(offset, Ordering::AcqRel);
        if self.all_ack {
            self.release(&mut self.waiters.lock());
            return;
        }
        if offset > before {
            let mut waiters = self.waiters.lock();
            while waiters.front().is_some_and(|w| w.end_offset <= offset) {
                if let Some(w) = waiters.pop_front() {
                    let _ = w.tx.send(PutMessageStatus::PutOk);
                }
            }
        }
    }
}

/// The reader thread: offset reports until the slave goes away or stays silent for
/// `haHousekeepingInterval`.
fn read_reports(s: &Shared, slave: &Slave, mut stream: TcpStream) {
    let housekeeping = s.inner.config.ha_housekeeping_interval;
    let mut buf = [0u8; REPORT_LEN];
    let mut have = 0;
    let mut last_read = Instant::now();
    while !s.stop.load(Ordering::Acquire) && !slave.closed.load(Ordering::Acquire) {
        match stream.read(&mut buf[have..]) {
            Ok(0) => return,
            Ok(n) => {
                have += n;
                last_read = Instant::now();
                if have == REPORT_LEN && s.identified && slave.broker_id.load(Ordering::Acquire) < 0
                {
                    have = 0;
                    let id = i64::from_be_bytes(buf);
                    if id < 0 {
                        tracing::warn!(slave = %slave.peer, "negative broker id, closing");
                        return;
                    }
                    tracing::info!(slave = %slave.peer, broker_id = id, "slave identified");
                    slave.broker_id.store(id, Ordering::Release);
                    continue;
                }
                if have == REPORT_LEN {
                    have = 0;
                    let Some(offset) = decode_report(buf) else {
                        tracing::warn!(slave = %slave.peer, "negative offset report, closing");
                        return;
                    };
                    s.on_report(slave, offset);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if last_read.elapsed() > housekeeping {
                    tracing::warn!(slave = %slave.peer, "slave silent for {housekeeping:?}, closing");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The writer thread: waits for the first report, then streams the commit log from there.
fn push_data(s: &Shared, slave: &Slave, mut stream: TcpStream) -> io::Result<()> {
    let cfg = &s.inner.config;
    let cl = &s.inner.commit_log;
    let file_size = cl.file_size() as i64;
    let running = || !s.stop.load(Ordering::Acquire) && !slave.closed.load(Ordering::Acquire);
    let mut next = loop {
        if !running() {
            return Ok(());
        }
        let r = slave.acked.load(Ordering::Acquire);
        if r >= 0 {
            break r;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if next == 0 {
        // An empty slave starts at the master's last segment, as in RocketMQ: copying a whole
        // retention period first would delay it from being of any use for hours.
        let max = cl.max_offset();
        next = max - max % file_size;
    }
    tracing::info!(slave = %slave.peer, from = next, "replicating to slave");
    let batch = cfg.ha_transfer_batch_size.max(1) as i64;
    let heartbeat = cfg.ha_send_heartbeat_interval;
    let mut frame: Vec<u8> = Vec::with_capacity(HEADER_LEN + batch as usize);
    let mut last_write = Instant::now();
    let mut warned_missing = false;
    let mut seen = s.inner.dispatched_signal.current();
    while running() {
        let max = cl.max_offset();
        if next < max {
            let segment_end = next - next.rem_euclid(file_size) + file_size;
            let size = (max.min(segment_end) - next).min(batch) as usize;
            frame.clear();
            frame.extend_from_slice(&encode_header(next, size));
            if cl
                .with_bytes(next, size, |data| frame.extend_from_slice(data))
                .is_some()
            {
                stream.write_all(&frame)?;
                next += size as i64;
                last_write = Instant::now();
                warned_missing = false;
                continue;
            }
            if !warned_missing {
                // Deleted by retention before the slave got it: nothing to send from there.
                tracing::warn!(slave = %slave.peer, offset = next, min = cl.min_offset(),
                    "the slave asks for commit log data this master no longer has");
                warned_missing = true;
            }
        }
        if last_write.elapsed() >= heartbeat {
            stream.write_all(&encode_header(next, 0))?;
            last_write = Instant::now();
        }
        seen = s
            .inner
            .dispatched_signal
            .wait_change(seen, WRITER_POLL.min(heartbeat));
    }
    Ok(())
}

/// SYNC_MASTER only: answers FLUSH_SLAVE_TIMEOUT to puts no slave acknowledged in time.
fn timeout_loop(s: &Shared) {
    let mut waiters = s.waiters.lock();
    while !s.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        match waiters.front().map(|w| w.deadline) {
            None => {
                s.waiters_cv.wait_for(&mut waiters, Duration::from_secs(1));
            }
            Some(deadline) if deadline > now => {
                s.waiters_cv.wait_for(&mut waiters, deadline - now);
            }
            Some(_) => {
                while waiters.front().is_some_and(|w| w.deadline <= now) {
                    if let Some(w) = waiters.pop_front() {
                        let _ = w.tx.send(PutMessageStatus::FlushSlaveTimeout);
                    }
                }
            }
        }
    }
}
