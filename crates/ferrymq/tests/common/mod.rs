//! What the process-level tests share: a child process killed when dropped, free ports, and
//! a `ferrymq standalone` started on its own ports and directory.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferrymq");

/// A child process, killed when dropped. When the test is failing, the tail of its log (if it
/// has one) is printed first, so a CI failure shows what the server saw.
pub struct Proc(pub Child, pub Option<std::path::PathBuf>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            if let Some(text) = self
                .1
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
            {
                let tail: Vec<&str> = text.lines().rev().take(80).collect();
                eprintln!(
                    "--- last lines of {} ---",
                    self.1.as_ref().unwrap().display()
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A free loopback port whose port − 2 is free too (the broker's fast port), never one this
/// test process handed out before (the kernel may offer a released port again).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if p > 3000
            && std::net::TcpListener::bind(("127.0.0.1", p - 2)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", p + 1)).is_ok()
        {
            let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
            // The broker also takes p + 1 (HA) and p − 2 (fast port).
            if given.iter().any(|g| g.abs_diff(p) <= 3) {
                continue;
            }
            given.push(p);
            return p;
        }
    }
}

/// Starts `ferrymq standalone` in `dir` (broker `cluster`/`name` on a free port, small commit
/// log files, `conf` appended to broker.conf, `args` after the standard ones); returns the
/// process and the name server address. Its log is `dir/standalone.log`.
pub fn standalone(
    dir: &Path,
    cluster: &str,
    name: &str,
    conf: &str,
    args: &[&str],
) -> (Proc, String) {
    // The HA port is given too: its default, listenPort + 1 on every address, may have been
    // taken by another socket since the pick.
    let (broker, namesrv, ha) = (free_port(), free_port(), free_port());
    let file = dir.join("broker.conf");
    std::fs::write(
        &file,
        format!(
            "brokerClusterName={cluster}\nbrokerName={name}\nlistenPort={broker}\nhaListenPort={ha}\n\
             storePathRootDir={}\nmappedFileSizeCommitLog=8388608\n{conf}",
            dir.join("store").display()
        ),
    )
    .unwrap();
    let log_path = dir.join("standalone.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(BIN)
        .args([
            "standalone",
            "-c",
            file.to_str().unwrap(),
            "--namesrv-listen",
            &format!("127.0.0.1:{namesrv}"),
        ])
        .args(args)
        .env_remove("NAMESRV_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    (Proc(child, Some(log_path)), format!("127.0.0.1:{namesrv}"))
}

/// Starts an auto-committing lite pull consumer of `group` on `topic` and polls until `want`
/// messages arrived (30 s at most); returns it with the count it got.
pub async fn consume(
    namesrv: &str,
    group: &str,
    topic: &str,
    want: usize,
) -> (ferrymq_client::LitePullConsumer, usize) {
    let consumer = ferrymq_client::LitePullConsumer::builder(group)
        .namesrv_addr(namesrv)
        .auto_commit(true)
        .auto_commit_interval(std::time::Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    consumer.subscribe(topic, "*").await.unwrap();
    let mut got = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got < want && std::time::Instant::now() < deadline {
        got += consumer
            .poll(std::time::Duration::from_millis(500))
            .await
            .unwrap_or_default()
            .len();
    }
    (consumer, got)
}
