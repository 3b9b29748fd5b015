//! Test harness: runs a real `ferrymq standalone` process (name server + broker in one
//! process) on private ports and a private data directory, and tears it down on drop.
//!
//! The binary is `FERRYMQ_BIN` if set, else the most recently built of
//! `../target/{debug,release}/ferrymq` (next to this crate), `$CARGO_TARGET_DIR/{debug,release}/ferrymq`
//! and `~/.cache/ferrymq-target/{debug,release}/ferrymq`. Build it first with
//! `cargo build -p ferrymq` in the main workspace.
//!
//! Ports are chosen at random in 12000..32000 (below the kernel's ephemeral range, so an
//! outgoing client connection cannot take a port while the broker is down for a restart) and
//! checked free by binding; the broker port `P` is chosen with `P - 2` (fast port) free too.
//!
//! Multi-process deployments (separate `ferrymq namesrv` and `ferrymq broker` processes) are
//! in `cluster.rs`.
//!
//! Environment knobs: `FERRYMQ_LOG` (RUST_LOG of the broker, default `info`), `FERRYMQ_KEEP`
//! (keep data and logs; they are always kept when a test fails), `COMPAT_CLIENT_LOG`
//! (tracing filter for the crates.io client's own logs, see `client.rs`).

#![allow(dead_code)]

pub mod client;
pub mod cluster;
pub mod raw;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a start (process spawn until "standalone ready" and the broker port answering)
/// may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd broker may take to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds the `ferrymq` executable.
pub fn ferrymq_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRYMQ_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "FERRYMQ_BIN={} is not a file", p.display());
        return p;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = Vec::new();
    for profile in ["debug", "release"] {
        candidates.push(
            manifest
                .join("..")
                .join("target")
                .join(profile)
                .join("ferrymq"),
        );
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        for profile in ["debug", "release"] {
            candidates.push(PathBuf::from(&dir).join(profile).join("ferrymq"));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        for profile in ["debug", "release"] {
            candidates.push(
                PathBuf::from(&home)
                    .join(".cache/ferrymq-target")
                    .join(profile)
                    .join("ferrymq"),
            );
        }
    }
    // The most recently built candidate wins (a stale `target/debug/ferrymq` next to a fresh
    // CI target directory must not be picked).
    let newest = candidates
        .iter()
        .filter(|c| c.is_file())
        .max_by_key(|c| fs::metadata(c).and_then(|m| m.modified()).ok());
    if let Some(c) = newest {
        return c.clone();
    }
    panic!(
        "ferrymq binary not found; build it (`cargo build -p ferrymq` in the main workspace) or set FERRYMQ_BIN. \
         Looked at: {candidates:#?}"
    );
}

/// Ports handed out by this process, so that parallel tests never pick the same one.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    t ^ (u64::from(std::process::id()) << 32)
}

/// Picks a free port `p` such that every `p - d` for `d` in `offsets` is free too. Ports are
/// taken below the kernel's ephemeral range so that outgoing client connections cannot grab
/// them while the broker is down during a restart.
fn pick_port(offsets: &[u16]) -> u16 {
    let mut state = seed() | 1;
    let mut guard = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        // xorshift
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let p = 12_000 + (state % 20_000) as u16; // 12000..32000
        let all: Vec<u16> = offsets.iter().map(|d| p - d).collect();
        if all.iter().all(|q| !used.contains(q) && port_is_free(*q)) {
            used.extend(all);
            return p;
        }
    }
    panic!("no free port found");
}

/// Extra `broker.conf` lines for a test.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    pub conf: Vec<(String, String)>,
    /// Value of `RUST_LOG` for the broker process (default `info`, or inherited `FERRYMQ_LOG`).
    pub rust_log: Option<String>,
}

impl BrokerOptions {
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.conf.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running (or stopped) `ferrymq standalone` with its own ports and data directory.
pub struct Ferrymq {
    name: String,
    bin: PathBuf,
    dir: Option<tempfile::TempDir>,
    pub namesrv_port: u16,
    pub broker_port: u16,
    /// Port of the embedded gRPC endpoint (5.x SDKs), private like the others.
    pub grpc_port: u16,
    /// Master HA port (RocketMQ's default listenPort + 1 could belong to another test).
    pub ha_port: u16,
    options: BrokerOptions,
    child: Option<Child>,
    /// Incremented on every start; each start logs to its own file.
    generation: u32,
}

impl Ferrymq {
    /// Starts a fresh broker and waits until it serves.
    pub fn start(name: &str) -> Ferrymq {
        Self::start_with(name, BrokerOptions::default())
    }

    pub fn start_with(name: &str, options: BrokerOptions) -> Ferrymq {
        let bin = ferrymq_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferrymq-compat-{name}-"))
            .tempdir()
            .expect("create temp dir");
        let namesrv_port = pick_port(&[0]);
        let broker_port = pick_port(&[0, 2]);
        let grpc_port = pick_port(&[0]);
        let ha_port = pick_port(&[0]);
        let mut f = Ferrymq {
            name: name.to_owned(),
            bin,
            dir: Some(dir),
            namesrv_port,
            broker_port,
            grpc_port,
            ha_port,
            options,
            child: None,
            generation: 0,
        };
        f.write_conf();
        f.spawn_and_wait();
        f
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir().join("store")
    }

    fn conf_path(&self) -> PathBuf {
        self.dir().join("broker.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join(format!("ferrymq-{}.log", self.generation))
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    pub fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// The gRPC endpoint, `127.0.0.1:port`.
    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    fn write_conf(&self) {
        let mut conf = String::new();
        writeln!(conf, "brokerClusterName=DefaultCluster").unwrap();
        writeln!(
            conf,
            "brokerName=broker-{}",
            self.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        )
        .unwrap();
        writeln!(conf, "brokerId=0").unwrap();
        writeln!(conf, "listenPort={}", self.broker_port).unwrap();
        writeln!(conf, "brokerIP1=127.0.0.1").unwrap();
        writeln!(conf, "storePathRootDir={}", self.store_dir().display()).unwrap();
        writeln!(conf, "haListenPort={}", self.ha_port).unwrap();
        // 64 MiB segments instead of 1 GiB: tests run in parallel and every store pre-allocates
        // its next segment, which at the default size could fill a small CI disk.
        writeln!(conf, "mappedFileSizeCommitLog={}", 64 << 20).unwrap();
        for (k, v) in &self.options.conf {
            writeln!(conf, "{k}={v}").unwrap();
        }
        fs::write(self.conf_path(), conf).expect("write broker.conf");
    }

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.generation += 1;
        let log = File::create(self.log_path()).expect("create log file");
        let rust_log = self
            .options
            .rust_log
            .clone()
            .or_else(|| std::env::var("FERRYMQ_LOG").ok())
            .unwrap_or_else(|| "info".to_owned());
        let child = Command::new(&self.bin)
            .arg("standalone")
            .arg("-c")
            .arg(self.conf_path())
            .arg("--namesrv-listen")
            .arg(self.namesrv_addr())
            .arg("--grpc-listen")
            .arg(self.grpc_addr())
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let broker: SocketAddr = self.broker_addr().parse().unwrap();
        let namesrv: SocketAddr = self.namesrv_addr().parse().unwrap();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                panic!(
                    "ferrymq exited during startup with {status}; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(60)
                );
            }
            let ready = self.read_log().contains("standalone ready")
                && TcpStream::connect_timeout(&broker, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&namesrv, Duration::from_millis(200)).is_ok();
            if ready {
                eprintln!(
                    "[harness] ferrymq '{}' #{} ({}) ready: namesrv {} broker {} log {}",
                    self.name,
                    self.generation,
                    self.bin.display(),
                    self.namesrv_addr(),
                    self.broker_addr(),
                    self.log_path().display()
                );
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "ferrymq not ready after {START_TIMEOUT:?}; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn read_log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// All logs of all generations, oldest first.
    pub fn read_all_logs(&self) -> String {
        let mut s = String::new();
        for g in 1..=self.generation {
            let p = self.dir().join(format!("ferrymq-{g}.log"));
            let _ = writeln!(s, "===== {} =====", p.display());
            if let Ok(t) = fs::read_to_string(&p) {
                s.push_str(&t);
            }
        }
        s
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.read_log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("ferrymq is not running");
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                eprintln!(
                    "[harness] ferrymq '{}' #{} stopped: {status}",
                    self.name, self.generation
                );
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ferrymq did not exit within {STOP_TIMEOUT:?} of SIGTERM; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as in a crash or power loss of the process.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("ferrymq is not running");
        };
        let _ = child.kill();
        let status = child.wait().expect("wait");
        eprintln!(
            "[harness] ferrymq '{}' #{} killed: {status}",
            self.name, self.generation
        );
    }

    /// Starts again on the same ports and data directory.
    pub fn restart_after_stop(&mut self) {
        self.spawn_and_wait();
    }

    /// Clean restart: SIGTERM, wait, start again; asserts the clean exit.
    pub fn restart_clean(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "ferrymq exited with {status} on SIGTERM; log {}:\n{}",
            self.log_path().display(),
            self.log_tail(40)
        );
        self.spawn_and_wait();
    }

    /// Crash restart: SIGKILL, start again on the same data.
    pub fn restart_crash(&mut self) {
        self.kill9();
        self.spawn_and_wait();
    }
}

impl Drop for Ferrymq {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if std::thread::panicking() || std::env::var_os("FERRYMQ_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "[harness] kept ferrymq data and logs of '{}' in {}",
                    self.name,
                    kept.display()
                );
            }
        }
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
