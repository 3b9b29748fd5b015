//! Harness for multi-process deployments: a `ferrymq namesrv` and a `ferrymq broker` as
//! separate processes, each with its own private ports, data directory and log file, stopped
//! (SIGTERM, bounded, then SIGKILL) on drop.
//!
//! Ports and the binary are chosen as for [`super::Ferrymq`]; `FERRYMQ_LOG` and `FERRYMQ_KEEP`
//! apply the same way (data and logs are always kept when a test fails).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{ferrymq_bin, pick_port, BrokerOptions, START_TIMEOUT, STOP_TIMEOUT};

/// One `ferrymq` process started with fixed arguments; ready when its log contains
/// `ready_marker` and every port in `ports` accepts connections.
pub struct Proc {
    label: String,
    bin: PathBuf,
    dir: Option<tempfile::TempDir>,
    args: Vec<OsString>,
    ready_marker: &'static str,
    ports: Vec<u16>,
    rust_log: Option<String>,
    child: Option<Child>,
    generation: u32,
}

impl Proc {
    fn new(label: &str, rust_log: Option<String>) -> Proc {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferrymq-compat-{label}-"))
            .tempdir()
            .expect("create temp dir");
        Proc {
            label: label.to_owned(),
            bin: ferrymq_bin(),
            dir: Some(dir),
            args: Vec::new(),
            ready_marker: "",
            ports: Vec::new(),
            rust_log,
            child: None,
            generation: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join(format!("ferrymq-{}.log", self.generation))
    }

    pub fn read_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
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

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.label);
        self.generation += 1;
        let log = File::create(self.log_path()).expect("create log file");
        let rust_log = self
            .rust_log
            .clone()
            .or_else(|| std::env::var("FERRYMQ_LOG").ok())
            .unwrap_or_else(|| "info".to_owned());
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir())
            .env_remove("NAMESRV_ADDR")
            .env_remove("ROCKETMQ_HOME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let addrs: Vec<SocketAddr> = self
            .ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                panic!(
                    "ferrymq '{}' exited during startup with {status}; log {}:\n{}",
                    self.label,
                    self.log_path().display(),
                    self.log_tail(60)
                );
            }
            let ready = self.read_log().contains(self.ready_marker)
                && addrs
                    .iter()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
            if ready {
                eprintln!(
                    "[harness] ferrymq '{}' #{} ready: ports {:?} log {}",
                    self.label,
                    self.generation,
                    self.ports,
                    self.log_path().display()
                );
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "ferrymq '{}' not ready after {START_TIMEOUT:?}; log {}:\n{}",
                    self.label,
                    self.log_path().display(),
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("ferrymq '{}' is not running", self.label);
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
                    self.label, self.generation
                );
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ferrymq '{}' did not exit within {STOP_TIMEOUT:?} of SIGTERM; log {}:\n{}",
                    self.label,
                    self.log_path().display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and asserts a clean (zero) exit.
    pub fn stop_clean(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "ferrymq '{}' exited with {status} on SIGTERM; log {}:\n{}",
            self.label,
            self.log_path().display(),
            self.log_tail(40)
        );
    }
}

impl Drop for Proc {
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
                    "[harness] kept data and logs of ferrymq '{}' in {}",
                    self.label,
                    kept.display()
                );
            }
        }
    }
}

/// A `ferrymq namesrv --listen 127.0.0.1:PORT` process.
pub struct NameServerProc {
    pub proc: Proc,
    pub port: u16,
}

impl NameServerProc {
    pub fn start(label: &str) -> NameServerProc {
        let mut proc = Proc::new(label, None);
        let port = pick_port(&[0]);
        let conf = proc.dir().join("namesrv.conf");
        let mut text = String::new();
        writeln!(text, "listenPort={port}").unwrap();
        writeln!(
            text,
            "kvConfigPath={}",
            proc.dir().join("namesrv/kvConfig.json").display()
        )
        .unwrap();
        writeln!(
            text,
            "configStorePath={}",
            proc.dir().join("namesrv/namesrv.properties").display()
        )
        .unwrap();
        fs::write(&conf, text).expect("write namesrv.conf");
        proc.args = vec![
            "namesrv".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}").into(),
            "-c".into(),
            conf.into_os_string(),
        ];
        proc.ready_marker = "name server ready";
        proc.ports = vec![port];
        proc.spawn_and_wait();
        NameServerProc { proc, port }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A `ferrymq broker -c broker.conf` process (master, `brokerId=0`) of `DefaultCluster`.
pub struct BrokerProc {
    pub proc: Proc,
    pub port: u16,
    pub broker_name: String,
}

impl BrokerProc {
    /// `namesrv_addr` is the `namesrvAddr` value, `host:port;host:port`.
    pub fn start(broker_name: &str, namesrv_addr: &str, options: BrokerOptions) -> BrokerProc {
        let mut proc = Proc::new(broker_name, options.rust_log.clone());
        let port = pick_port(&[0, 2]);
        let conf = proc.dir().join(format!("{broker_name}.conf"));
        let mut text = String::new();
        writeln!(text, "brokerClusterName=DefaultCluster").unwrap();
        writeln!(text, "brokerName={broker_name}").unwrap();
        writeln!(text, "brokerId=0").unwrap();
        writeln!(text, "namesrvAddr={namesrv_addr}").unwrap();
        writeln!(text, "brokerIP1=127.0.0.1").unwrap();
        writeln!(text, "listenPort={port}").unwrap();
        writeln!(
            text,
            "storePathRootDir={}",
            proc.dir().join("store").display()
        )
        .unwrap();
        for (k, v) in &options.conf {
            writeln!(text, "{k}={v}").unwrap();
        }
        fs::write(&conf, text).expect("write broker conf");
        proc.args = vec!["broker".into(), "-c".into(), conf.into_os_string()];
        proc.ready_marker = "broker started";
        proc.ports = vec![port, port - 2];
        proc.spawn_and_wait();
        BrokerProc {
            proc,
            port,
            broker_name: broker_name.to_owned(),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
