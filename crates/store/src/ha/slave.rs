//! The slave side of replication (RocketMQ's HAClient): one thread connects to the master's HA
//! address, reports this commit log's end, and appends every frame it receives at exactly the
//! offset the frame names. A frame that does not continue the log closes the connection; the
//! next one starts again from this log's own end, so a restarted slave resumes where its
//! recovered log stops.
//!
//! Appends go through the store's single commit-log writer (the append lock), which publishes
//! only whole records: the master cuts frames at byte counts, not record boundaries, and readers
//! and the dispatcher must never see half a record.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::frame::{decode_frame, encode_report};
use super::{HaError, HaStatus};
use crate::error::{IoContext, Result};
use crate::store::{SharedAppender, StoreInner};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Read timeout, so the thread notices shutdown and sends its periodic report.
const READ_POLL: Duration = Duration::from_millis(200);
/// Pause before reconnecting after a failure.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

struct Shared {
    inner: Arc<StoreInner>,
    appender: SharedAppender,
    master: Mutex<Option<String>>,
    /// The live connection, so shutdown or a new master address can cut it.
    socket: Mutex<Option<TcpStream>>,
    connected: AtomicBool,
    stop: AtomicBool,
}

/// The replication client of a slave.
pub(crate) struct HaSlave {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl HaSlave {
    pub fn start(inner: Arc<StoreInner>, appender: SharedAppender) -> Result<HaSlave> {
        let master = inner.config.ha_master_address.clone();
        let shared = Arc::new(Shared {
            inner,
            appender,
            master: Mutex::new(master),
            socket: Mutex::new(None),
            connected: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-ha-client".to_owned())
            .spawn(move || run(&s))
            .context(|| "spawn HA client".to_owned())?;
        Ok(HaSlave {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Points replication at `addr` (`host:port` of the master's HA port); a different address
    /// than the current one drops the current connection.
    pub fn set_master_address(&self, addr: &str) {
        let mut master = self.shared.master.lock();
        if master.as_deref() == Some(addr) {
            return;
        }
        tracing::info!(old = ?master.as_deref(), new = addr, "HA master address changed");
        *master = Some(addr.to_owned());
        drop(master);
        if let Some(sock) = self.shared.socket.lock().as_ref() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    pub fn status(&self) -> HaStatus {
        HaStatus {
            master_address: self.shared.master.lock().clone(),
            connected_to_master: self.shared.connected.load(Ordering::Acquire),
            ..HaStatus::default()
        }
    }

    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(sock) = self.shared.socket.lock().as_ref() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for HaSlave {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps up to `d`, returning early on shutdown.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    fn append(&self, start: i64, data: &[u8]) -> Result<i64, HaError> {
        let mut guard = self.appender.lock();
        let appender = guard.as_mut().ok_or(HaError::Shutdown)?;
        appender.append_replicated(start, data)
    }
}

fn run(s: &Shared) {
    while !s.stopped() {
        let Some(addr) = s.master.lock().clone() else {
            s.pause(Duration::from_millis(100));
            continue;
        };
        let result = replicate(s, &addr);
        s.connected.store(false, Ordering::Release);
        *s.socket.lock() = None;
        match result {
            Err(e) if !s.stopped() => {
                tracing::warn!(master = %addr, error = %e, "replication from master interrupted");
                s.pause(RECONNECT_DELAY);
            }
            _ => {}
        }
    }
}

/// One connection's life: returns `Ok` when stopped or switched to another master.
fn replicate(s: &Shared, addr: &str) -> Result<(), HaError> {
    let cfg = &s.inner.config;
    let target = addr.to_socket_addrs()?.next().ok_or_else(|| {
        HaError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} does not resolve"),
        ))
    })?;
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_POLL))?;
    *s.socket.lock() = Some(stream.try_clone()?);
    if s.stopped() {
        return Ok(());
    }
    s.connected.store(true, Ordering::Release);
    let file_size = s.inner.commit_log.file_size();
    // Where the log's whole records end; bytes of a half record past it are fetched again.
    let mut written = s.inner.commit_log.max_offset();
    tracing::info!(master = %addr, offset = written, "connected to master for replication");
    if let Some(id) = cfg.controller_broker_id {
        // Controller mode: name ourselves first, so the master counts our acknowledgements
        // for our SyncStateSet membership.
        stream.write_all(&(id as i64).to_be_bytes())?;
    }
    stream.write_all(&encode_report(written))?;
    let mut last_report = Instant::now();
    let mut last_read = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut buf: Vec<u8> = Vec::with_capacity(2 * chunk.len());
    loop {
        if s.stopped() || s.master.lock().as_deref() != Some(addr) {
            return Ok(());
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(HaError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "master closed the connection",
                )))
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last_read = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        let mut consumed = 0;
        let mut received = false;
        while let Some(frame) = decode_frame(&buf[consumed..], file_size)? {
            // An empty log takes whatever segment start the master begins with.
            if frame.start != written && written != 0 {
                return Err(HaError::Discontinuity {
                    expected: written,
                    got: frame.start,
                });
            }
            if !frame.body.is_empty() {
                written = s.append(frame.start, frame.body)?;
                received = true;
            }
            consumed += frame.len();
        }
        buf.drain(..consumed);
        if received || last_report.elapsed() >= cfg.ha_send_heartbeat_interval {
            stream.write_all(&encode_report(written))?;
            last_report = Instant::now();
        }
        if last_read.elapsed() > cfg.ha_housekeeping_interval {
            return Err(HaError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "master silent longer than haHousekeepingInterval",
            )));
        }
    }
}
