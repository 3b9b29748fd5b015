//! Controller-mode failover with real processes: three `ferrymq controller`s, a NameServer and
//! a broker group of three (`enableControllerMode`, SYNC_MASTER with
//! `allAckInSyncStateSet=true`) on loopback. A producer sends without pause while the test
//! kills the master with SIGKILL, waits for the controllers to elect another one, restarts the
//! old master (which must come back as a slave), and repeats; one round also kills the
//! controller leader first. At the end every acknowledged message must be consumable and the
//! three commit logs must be byte-identical, i.e. no replica forked.
//!
//! `FERRYMQ_FAILOVER_TRIALS` sets the number of master kills (CI: 3; BENCHMARKS.md: 10); each
//! trial prints the time from the kill to a new master and to the first acknowledged send.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrymq_client::{LitePullConsumer, Message, Producer, SendStatus};
use ferrymq_protocol::body::SyncStateSet;
use ferrymq_protocol::header::{
    GetMetaDataResponseHeader, GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader,
};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

const BIN: &str = env!("CARGO_BIN_EXE_ferrymq");
const CLUSTER: &str = "FailoverCluster";
const BROKER: &str = "failover-b";
const TOPIC: &str = "FailoverTopic";

struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(BIN)
            .args(args)
            .env_remove("NAMESRV_ADDR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Proc { child }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM and wait: a clean shutdown that flushes the store.
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` distinct free ports, each with its neighbours free (a broker uses p-2, p, p+1).
fn free_ports(n: usize) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    while out.len() < n {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        let taken = |q: u16| out.iter().any(|o| o.abs_diff(q) <= 3);
        if p > 3000
            && p < 65000
            && !taken(p)
            && [p - 2, p + 1]
                .iter()
                .all(|q| std::net::TcpListener::bind(("127.0.0.1", *q)).is_ok())
        {
            out.push(p);
        }
    }
    out
}

struct Cluster {
    dir: PathBuf,
    /// Controllers embedded in the NameServers (`enableControllerInNamesrv`) instead of
    /// separate `ferrymq controller` processes.
    embedded: bool,
    controllers: Vec<Option<Proc>>,
    controller_addrs: Vec<String>,
    namesrv: Option<Proc>,
    namesrv_addr: String,
    brokers: Vec<Option<Proc>>,
    broker_addrs: Vec<String>,
    client: RemotingClient,
}

impl Cluster {
    fn start(dir: &Path, embedded: bool) -> Cluster {
        let ports = free_ports(10);
        let peers: Vec<String> = (0..3)
            .map(|i| format!("n{i}-127.0.0.1:{}", ports[i]))
            .collect();
        let controller_addrs: Vec<String> = (0..3)
            .map(|i| format!("127.0.0.1:{}", ports[3 + i]))
            .collect();
        let namesrv_addr = if embedded {
            controller_addrs.join(";")
        } else {
            format!("127.0.0.1:{}", ports[6])
        };
        let broker_addrs: Vec<String> = (0..3)
            .map(|i| format!("127.0.0.1:{}", ports[7 + i]))
            .collect();
        for i in 0..3 {
            std::fs::write(
                dir.join(format!("controller{i}.conf")),
                format!(
                    "controllerDLegerGroup=failover\ncontrollerDLegerPeers={}\n\
                     controllerDLegerSelfId=n{i}\ncontrollerStorePath={}\nlistenPort={}\n\
                     scanNotActiveBrokerInterval=500\ncontrollerBrokerHeartbeatTimeoutMills=3000\n\
                     enableControllerInNamesrv={embedded}\nkvConfigPath={}\n",
                    peers.join(";"),
                    dir.join(format!("controller{i}")).display(),
                    ports[3 + i],
                    dir.join(format!("controller{i}")).join("kv.json").display(),
                ),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("broker{i}.conf")),
                format!(
                    "brokerClusterName={CLUSTER}\nbrokerName={BROKER}\nbrokerIP1=127.0.0.1\n\
                     listenPort={}\nhaListenPort={}\nstorePathRootDir={}\nnamesrvAddr={namesrv_addr}\n\
                     enableControllerMode=true\ncontrollerAddr={}\nbrokerRole=SYNC_MASTER\n\
                     allAckInSyncStateSet=true\ncontrollerHeartBeatTimeoutMills=3000\n\
                     syncBrokerMetadataPeriod=1000\ncheckSyncStateSetPeriod=500\n\
                     haMaxTimeSlaveNotCatchup=3000\nhaSendHeartbeatInterval=500\n\
                     mappedFileSizeCommitLog=8388608\nmappedFileSizeConsumeQueue=600000\n\
                     autoCreateTopicEnable=true\n",
                    ports[7 + i],
                    ports[7 + i] + 1,
                    dir.join(format!("broker{i}")).display(),
                    controller_addrs.join(";"),
                ),
            )
            .unwrap();
        }
        let mut c = Cluster {
            dir: dir.to_owned(),
            embedded,
            controllers: Vec::new(),
            controller_addrs,
            namesrv: None,
            namesrv_addr,
            brokers: Vec::new(),
            broker_addrs,
            client: RemotingClient::new(ClientConfig {
                connect_timeout: Duration::from_millis(500),
                ..ClientConfig::default()
            }),
        };
        for i in 0..3 {
            let p = c.spawn_controller(i);
            c.controllers.push(Some(p));
        }
        if !embedded {
            c.namesrv = Some(Proc::spawn(
                &["namesrv", "--listen", &c.namesrv_addr],
                &dir.join("namesrv.log"),
            ));
        }
        for i in 0..3 {
            let p = c.spawn_broker(i);
            c.brokers.push(Some(p));
        }
        c
    }

    fn spawn_controller(&self, i: usize) -> Proc {
        let conf = self.dir.join(format!("controller{i}.conf"));
        let command = if self.embedded {
            "namesrv"
        } else {
            "controller"
        };
        Proc::spawn(
            &[command, "-c", conf.to_str().unwrap()],
            &self.dir.join(format!("controller{i}.log")),
        )
    }

    fn spawn_broker(&self, i: usize) -> Proc {
        let conf = self.dir.join(format!("broker{i}.conf"));
        Proc::spawn(
            &["broker", "-c", conf.to_str().unwrap()],
            &self.dir.join(format!("broker{i}.log")),
        )
    }

    async fn call(&self, addr: &str, req: RemotingCommand) -> Option<RemotingCommand> {
        self.client
            .invoke(addr, req, Duration::from_secs(2))
            .await
            .ok()
    }

    /// The index of the controller that leads now.
    async fn controller_leader(&self) -> Option<usize> {
        for (i, addr) in self.controller_addrs.iter().enumerate() {
            if self.controllers[i].is_none() {
                continue;
            }
            let req = RemotingCommand::request(RequestCode::ControllerGetMetadataInfo);
            if let Some(resp) = self.call(addr, req).await {
                let h: GetMetaDataResponseHeader = resp.decode_header().unwrap_or_default();
                if h.is_leader == Some(true) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The group's master (index into `broker_addrs`), epoch and SyncStateSet size.
    async fn replica_info(&self) -> Option<(Option<usize>, i32, usize)> {
        let leader = self.controller_leader().await?;
        let req = RemotingCommand::request_with_header(
            RequestCode::ControllerGetReplicaInfo,
            &GetReplicaInfoRequestHeader {
                broker_name: BROKER.to_owned(),
            },
        );
        let resp = self.call(&self.controller_addrs[leader], req).await?;
        if resp.response_code() != ResponseCode::Success {
            return None;
        }
        let h: GetReplicaInfoResponseHeader = resp.decode_header().ok()?;
        let sss: SyncStateSet = serde_json::from_slice(&resp.body.to_bytes()).ok()?;
        let master = h
            .master_address
            .and_then(|a| self.broker_addrs.iter().position(|b| *b == a));
        Some((
            master,
            h.master_epoch.unwrap_or(0),
            sss.sync_state_set.len(),
        ))
    }

    async fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl AsyncFnMut(&Cluster) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(self).await {
                return v;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {within:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn dump_logs(&self) {
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("==== {} (last 40 lines)", path.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// The broker's commit-log end (GET_BROKER_RUNTIME_INFO `commitLogMaxOffset`).
    async fn max_offset(&self, i: usize) -> Option<i64> {
        let req = RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo);
        let resp = self.call(&self.broker_addrs[i], req).await?;
        let v: serde_json::Value = serde_json::from_slice(&resp.body.to_bytes()).ok()?;
        v["table"]["commitLogMaxOffset"].as_str()?.parse().ok()
    }
}

/// Sends `m<i>` for ever-growing `i`; an `i` is recorded once a send of it was acknowledged
/// SEND_OK. A failed send is retried with the same `i` (a duplicate is allowed, a loss not).
struct Load {
    acked: Arc<Mutex<BTreeSet<u64>>>,
    last_ok: Arc<Mutex<Instant>>,
    sent_ok: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_load(namesrv: &str) -> Load {
    let producer = Producer::builder("failoverProducer")
        .namesrv_addr(namesrv)
        .send_timeout(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let last_ok = Arc::new(Mutex::new(Instant::now()));
    let sent_ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, l, n, s) = (
        acked.clone(),
        last_ok.clone(),
        sent_ok.clone(),
        stop.clone(),
    );
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        while !s.load(Ordering::Acquire) {
            let m = Message::new(TOPIC, format!("m{i}")).with_keys([format!("k{i}")]);
            match producer.send(m).await {
                Ok(r) if r.status == SendStatus::SendOk => {
                    a.lock().unwrap().insert(i);
                    *l.lock().unwrap() = Instant::now();
                    n.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    // About 200 messages a second: enough to have writes in flight at the kill.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        producer.shutdown().await;
    });
    // One-way sends alongside: never acknowledged, so a killed master usually holds some the
    // replicas never got, which it must cut when it rejoins.
    let noise = Producer::builder("failoverNoise")
        .namesrv_addr(namesrv)
        .start()
        .await
        .unwrap();
    let s2 = stop.clone();
    let noise_task = tokio::spawn(async move {
        let mut i = 0u64;
        while !s2.load(Ordering::Acquire) {
            let m = Message::new(TOPIC, format!("n{i}"));
            if noise.send_oneway(m).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            i += 1;
            if i.is_multiple_of(4) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        noise.shutdown().await;
    });
    let task = tokio::spawn(async move {
        let _ = tokio::join!(task, noise_task);
    });
    Load {
        acked,
        last_ok,
        sent_ok,
        stop,
        task,
    }
}

/// Runs `ferrymq admin …` against the name server; its stdout (the command must succeed).
fn admin(namesrv: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("admin")
        .args(args)
        .args(["-n", namesrv])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferrymq admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const SEGMENT: u64 = 8 * 1024 * 1024;

fn first_segment(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .min()
        .unwrap_or(0)
}

/// Bytes `[from, to)` of the commit log in `dir` (segments named by their start offset).
fn read_log(dir: &Path, from: u64, to: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let seg = at - at % SEGMENT;
        let data = std::fs::read(dir.join(format!("{seg:020}"))).unwrap();
        let upto = to.min(seg + SEGMENT);
        out.extend_from_slice(&data[(at - seg) as usize..(upto - seg) as usize]);
        at = upto;
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The two tests start seven processes each: one at a time, so their timings stay honest.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_controller_leader_kills_lose_no_acknowledged_message() {
    let trials: usize = std::env::var("FERRYMQ_FAILOVER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let _one = ONE_AT_A_TIME.lock().await;
    failover(false, trials).await;
}

/// The same with the controllers embedded in the three NameServers
/// (`enableControllerInNamesrv=true`, controllerAddr = the NameServers' port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_controllers_embedded_in_the_name_servers() {
    let _one = ONE_AT_A_TIME.lock().await;
    failover(true, 2).await;
}

async fn failover(embedded: bool, trials: usize) {
    let tmp = tempfile::tempdir().unwrap();
    // FERRYMQ_FAILOVER_KEEP=1 keeps the directories and logs for a look afterwards.
    let tmp_keep = std::env::var_os("FERRYMQ_FAILOVER_KEEP").is_some();
    let mut c = Cluster::start(tmp.path(), embedded);

    let (first, _, _) = c
        .wait_for(
            Duration::from_secs(60),
            "a master and a full SyncStateSet",
            async |c| {
                c.replica_info()
                    .await
                    .filter(|(m, _, n)| m.is_some() && *n == 3)
            },
        )
        .await;
    assert!(first.is_some());
    let load = start_load(&c.namesrv_addr).await;
    c.wait_for(
        Duration::from_secs(30),
        "the first acknowledged sends",
        async |_| (load.sent_ok.load(Ordering::Relaxed) >= 100).then_some(()),
    )
    .await;

    let mut elect_times = Vec::new();
    let mut frozen_times = Vec::new();
    let mut resume_times = Vec::new();
    for trial in 0..trials {
        let (master, epoch, _) = c
            .wait_for(Duration::from_secs(60), "a full SyncStateSet", async |c| {
                c.replica_info()
                    .await
                    .filter(|(m, _, n)| m.is_some() && *n == 3)
            })
            .await;
        let master = master.unwrap();
        if trial == 1 {
            // The controller leader goes first: the group must still fail over afterwards.
            let leader = c
                .wait_for(Duration::from_secs(10), "a controller leader", async |c| {
                    c.controller_leader().await
                })
                .await;
            c.controllers[leader].as_mut().unwrap().kill9();
            c.controllers[leader] = None;
            let t = Instant::now();
            let next = c
                .wait_for(
                    Duration::from_secs(20),
                    "a new controller leader",
                    async |c| c.controller_leader().await,
                )
                .await;
            eprintln!(
                "trial {trial}: controller leader n{leader} killed, n{next} leads after {:?}",
                t.elapsed()
            );
            let p = c.spawn_controller(leader);
            c.controllers[leader] = Some(p);
            // The new leader's grace period: brokers must have found it before the next kill.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        let before = load.sent_ok.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            load.sent_ok.load(Ordering::Relaxed) > before,
            "no sends before the kill"
        );

        // Trial 2 freezes the master (SIGSTOP) instead: its connections stay open, so only
        // the heartbeat timeout reveals it, and it comes back still believing it is master.
        let freeze = trial == 2;
        if freeze {
            c.brokers[master].as_ref().unwrap().signal(libc::SIGSTOP);
        } else {
            c.brokers[master].as_mut().unwrap().kill9();
        }
        let killed = Instant::now();
        let (new_master, new_epoch) = c
            .wait_for(Duration::from_secs(30), "a new master", async |c| {
                c.replica_info()
                    .await
                    .and_then(|(m, e, _)| m.filter(|m| *m != master && e > epoch).map(|m| (m, e)))
            })
            .await;
        let elected = killed.elapsed();
        c.wait_for(
            Duration::from_secs(30),
            "an acknowledged send after the kill",
            async |_| (*load.last_ok.lock().unwrap() > killed).then_some(()),
        )
        .await;
        let resumed = killed.elapsed();
        let how = if freeze { "frozen" } else { "killed" };
        eprintln!(
            "trial {trial}: master {master} {how}; broker {new_master} master of epoch {new_epoch} after {elected:?}, sends acknowledged again after {resumed:?}"
        );
        if freeze {
            frozen_times.push(elected);
        } else {
            elect_times.push(elected);
            resume_times.push(resumed);
        }

        // The old master comes back and must rejoin as a replica of the new one: a frozen
        // one steps down live, a killed one is restarted.
        if freeze {
            c.brokers[master].as_ref().unwrap().signal(libc::SIGCONT);
        } else {
            let p = c.spawn_broker(master);
            c.brokers[master] = Some(p);
        }
        c.wait_for(
            Duration::from_secs(60),
            "the old master back in the SyncStateSet",
            async |c| {
                c.replica_info()
                    .await
                    .filter(|(m, _, n)| *m == Some(new_master) && *n == 3)
            },
        )
        .await;
    }

    // The mqadmin commands of controller mode, and a switchover to a chosen replica.
    let controllers = c.controller_addrs.join(";");
    let meta = admin(
        &c.namesrv_addr,
        &["getControllerMetaData", "-a", &controllers],
    );
    assert_eq!(
        meta.matches("#IsLeader           : true").count(),
        1,
        "{meta}"
    );
    let sss: serde_json::Value = serde_json::from_str(&admin(
        &c.namesrv_addr,
        &[
            "getSyncStateSet",
            "-a",
            &controllers,
            "-b",
            BROKER,
            "--json",
        ],
    ))
    .unwrap();
    let set = &sss["replicasInfoTable"][BROKER];
    assert_eq!(set["inSyncReplicas"].as_array().unwrap().len(), 3, "{sss}");
    let master_addr = set["masterAddress"].as_str().unwrap().to_owned();
    let target = set["inSyncReplicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["brokerAddress"] != master_addr.as_str())
        .unwrap();
    let target_id = target["brokerId"].as_u64().unwrap();
    let target_addr = target["brokerAddress"].as_str().unwrap().to_owned();
    let epochs: serde_json::Value = serde_json::from_str(&admin(
        &c.namesrv_addr,
        &["getBrokerEpoch", "-b", BROKER, "--json"],
    ))
    .unwrap();
    assert_eq!(
        epochs[0]["epochList"].as_array().unwrap().len(),
        trials + 1,
        "{epochs}"
    );
    let switched = Instant::now();
    let out = admin(
        &c.namesrv_addr,
        &[
            "electMaster",
            "-a",
            &controllers,
            "-c",
            CLUSTER,
            "-b",
            BROKER,
            "-i",
            &target_id.to_string(),
        ],
    );
    assert!(out.contains(&target_addr), "{out}");
    c.wait_for(
        Duration::from_secs(30),
        "sends acknowledged by the chosen master",
        async |c| {
            let (m, _, _) = c.replica_info().await?;
            (m.map(|m| c.broker_addrs[m].as_str()) == Some(target_addr.as_str())
                && *load.last_ok.lock().unwrap() > switched + Duration::from_millis(300))
            .then_some(())
        },
    )
    .await;
    c.wait_for(
        Duration::from_secs(60),
        "the demoted master back in the SyncStateSet",
        async |c| c.replica_info().await.filter(|(_, _, n)| *n == 3),
    )
    .await;
    eprintln!(
        "electMaster switched to broker {target_id} ({target_addr}) in {:?}",
        switched.elapsed()
    );

    load.stop.store(true, Ordering::Release);
    load.task.await.unwrap();
    let acked = load.acked.lock().unwrap().clone();

    // Every acknowledged message is consumable from the group.
    let consumer = LitePullConsumer::builder("failoverChecker")
        .namesrv_addr(c.namesrv_addr.as_str())
        .auto_commit(false)
        .start()
        .await
        .unwrap();
    let queues = consumer.fetch_queues(TOPIC).await.unwrap();
    consumer.assign(queues.clone()).await.unwrap();
    for q in &queues {
        consumer.seek_to_begin(q).await.unwrap();
    }
    let mut seen: HashSet<u64> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.iter().any(|i| !seen.contains(i)) && Instant::now() < deadline {
        for m in consumer
            .poll(Duration::from_millis(500))
            .await
            .unwrap_or_default()
        {
            if let Some(i) = std::str::from_utf8(m.body())
                .ok()
                .and_then(|b| b.strip_prefix('m'))
                .and_then(|n| n.parse().ok())
            {
                seen.insert(i);
            }
        }
    }
    consumer.shutdown().await;
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|i| !seen.contains(i))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );

    // No fork: once the replicas have caught up, the three commit logs are the same bytes.
    let ends: BTreeMap<usize, i64> = c
        .wait_for(
            Duration::from_secs(30),
            "the replicas to catch up",
            async |c| {
                let mut ends = BTreeMap::new();
                for i in 0..3 {
                    ends.insert(i, c.max_offset(i).await?);
                }
                let first = *ends.values().next()?;
                ends.values().all(|e| *e == first).then_some(ends)
            },
        )
        .await;
    let end = ends[&0] as u64;
    for b in c.brokers.iter_mut().flatten() {
        b.stop();
    }
    // A replica that started empty began at the master's last segment: compare from the
    // latest first segment of the three.
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("broker{i}")).join("commitlog"))
        .collect();
    let from = dirs.iter().map(|d| first_segment(d)).max().unwrap();
    let reference = read_log(&dirs[0], from, end);
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        assert!(
            read_log(dir, from, end) == reference,
            "commit log of broker {i} differs from broker 0 in [{from}, {end})"
        );
    }
    eprintln!("commit logs identical over [{from}, {end})");

    let mut e = elect_times.clone();
    e.sort();
    let mut r = resume_times.clone();
    r.sort();
    eprintln!(
        "failover over {trials} trials: new master median {:?} max {:?}; sends acknowledged again median {:?} max {:?}; {} messages acknowledged, none lost",
        percentile(&e, 0.5),
        e.last().unwrap(),
        percentile(&r, 0.5),
        r.last().unwrap(),
        acked.len()
    );
    if !frozen_times.is_empty() {
        eprintln!("frozen master (heartbeat timeout 3 s): new master after {frozen_times:?}");
    }
    assert!(
        *e.last().unwrap() < Duration::from_secs(10),
        "a new master took longer than 10 s: {e:?}"
    );
    if tmp_keep {
        eprintln!("kept {}", tmp.keep().display());
    }
}
