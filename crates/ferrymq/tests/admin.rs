//! `ferrymq admin` end to end: the real binary runs a standalone server (and, for the cluster
//! case, a NameServer and two brokers as separate processes), and every admin command is run
//! as its own process against it; assertions read `--json` output, tables, stderr and exit
//! codes. Test data is produced and consumed with the Rust client.
//!
//! Every wait polls with a deadline; every process is killed when its guard drops.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrymq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use ferrymq_client::{Message, MessageExt, Producer, SendResult};
use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_ferrymq");

/// Ports handed out in this test binary, so parallel tests never pick the same one.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn port_is_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// A free port `p` whose `p - 2` (the broker's fast port) is free too.
fn broker_port() -> u16 {
    for _ in 0..200 {
        let p = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if p < 2000 || !port_is_free(p - 2) {
            continue;
        }
        let mut taken = TAKEN.lock().unwrap();
        if taken.contains(&p) || taken.contains(&(p - 2)) {
            continue;
        }
        taken.insert(p);
        taken.insert(p - 2);
        return p;
    }
    panic!("no free port pair found");
}

/// A free port for a name server.
fn namesrv_port() -> u16 {
    for _ in 0..200 {
        let p = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if p != 0 && TAKEN.lock().unwrap().insert(p) {
            return p;
        }
    }
    panic!("no free port found");
}

/// A server process, killed (SIGKILL) and reaped on drop.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], log: &Path) -> Proc {
    let out = File::create(log).unwrap();
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

fn broker_conf(dir: &Path, name: &str, port: u16, namesrv: Option<&str>) -> std::path::PathBuf {
    let store = dir.join(format!("store-{name}"));
    let mut text = format!(
        "brokerName={name}\nbrokerIP1=127.0.0.1\nlistenPort={port}\nhaListenPort={}\n\
         storePathRootDir={}\nmappedFileSizeCommitLog=4194304\nmappedFileSizeConsumeQueue=60000\n",
        broker_port(),
        store.display()
    );
    if let Some(ns) = namesrv {
        text.push_str(&format!("namesrvAddr={ns}\n"));
    }
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

/// What one `ferrymq admin` run printed.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `ferrymq admin -n <ns> <args…>` (off the async workers).
async fn admin(ns: &str, args: &[&str]) -> Out {
    let mut full = vec!["admin".to_owned(), "-n".to_owned(), ns.to_owned()];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .args(&full)
            .env_remove("NAMESRV_ADDR")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// Runs a command that must succeed; returns its stdout.
async fn ok(ns: &str, args: &[&str]) -> String {
    let out = admin(ns, args).await;
    assert_eq!(out.code, 0, "admin {args:?} failed: {out:?}");
    assert!(
        out.stderr.is_empty(),
        "admin {args:?} wrote to stderr: {out:?}"
    );
    out.stdout
}

/// Runs a command with `--json` that must succeed; returns the parsed output.
async fn json(ns: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let text = ok(ns, &a).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("admin {args:?}: not JSON ({e}): {text}"))
}

/// Runs a command that must fail with `code`; returns its one stderr line.
async fn fails(ns: &str, args: &[&str], code: i32) -> String {
    let out = admin(ns, args).await;
    assert_eq!(out.code, code, "admin {args:?}: {out:?}");
    assert!(
        out.stdout.is_empty(),
        "admin {args:?} printed output: {out:?}"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "admin {args:?}: not one line: {out:?}");
    assert!(lines[0].starts_with("error: "), "admin {args:?}: {out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    lines[0].to_owned()
}

/// Polls `check` every 100 ms until it yields a value or `within` passes.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `clusterList` shows `brokers` brokers (each registered with the name server).
async fn wait_brokers(ns: &str, brokers: usize, logs: &[&Path]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = admin(ns, &["clusterList", "--json"]).await;
        if out.code == 0 {
            let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            let active = v
                .as_array()
                .map_or(0, |a| a.iter().filter(|b| b["active"] == true).count());
            if active == brokers {
                return;
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect();
            panic!(
                "servers never came up: {out:?}\nlogs:\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the route of `topic` has `brokers` brokers with `queues` write queues each.
async fn wait_route(ns: &str, topic: &str, brokers: usize, queues: i64) -> Value {
    eventually(Duration::from_secs(15), "topic route", || async {
        let out = admin(ns, &["topicRoute", "-t", topic, "--json"]).await;
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        let qd = v["queueDatas"].as_array()?;
        (qd.len() == brokers && qd.iter().all(|q| q["writeQueueNums"] == queues)).then_some(v)
    })
    .await
}

fn unique(prefix: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

async fn producer(ns: &str, group: &str) -> Producer {
    Producer::builder(group)
        .namesrv_addr(ns)
        .start()
        .await
        .unwrap()
}

async fn send_n(p: &Producer, topic: &str, prefix: &str, n: usize) -> Vec<SendResult> {
    let mut out = Vec::new();
    for i in 0..n {
        let m = Message::new(topic, format!("{prefix}-{i}"))
            .with_tags("TagA")
            .with_keys([format!("{prefix}-key-{i}")]);
        out.push(p.send(m).await.unwrap());
    }
    out
}

/// A push consumer of `topic` from the first offset, committing every 200 ms; counts messages.
async fn consumer(ns: &str, group: &str, topic: &str) -> (PushConsumer, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let c = PushConsumer::builder(group)
        .namesrv_addr(ns)
        .subscribe(topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .persist_interval(Duration::from_millis(200))
        .start(move |msgs: &[MessageExt]| {
            s.fetch_add(msgs.len(), Ordering::SeqCst);
            ConsumeResult::Success
        })
        .await
        .unwrap();
    (c, seen)
}

fn sum(v: &Value, array: &str, field: &str) -> i64 {
    v[array]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q[field].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_unreachable_name_server_fail_with_one_line() {
    let ns = format!("127.0.0.1:{}", namesrv_port()); // nobody listens here
    let e = fails(&ns, &["topicList"], 1).await;
    assert!(e.contains(&ns) && e.contains("refused"), "{e}");
    let e = fails(&ns, &["updateTopic", "-t", "T", "--bogus"], 2).await;
    assert!(e.contains("--bogus"), "{e}");
    let e = fails(&ns, &["topicRoute"], 2).await;
    assert!(e.contains("--topic"), "{e}");
    let e = fails(&ns, &["updateTopic", "-t", "T"], 2).await;
    assert!(e.contains("--clusterName"), "{e}");
    let e = fails(&ns, &["updateTopic", "-t", "T", "-b", "x:1", "-c", "C"], 2).await;
    assert!(e.contains("cannot be used with"), "{e}");
    let e = fails(&ns, &["updateTopic", "-t", "T", "-c", "C", "-r", "many"], 2).await;
    assert!(e.contains("many"), "{e}");
    fails(&ns, &["noSuchCommand"], 2).await;
    let e = fails(
        &ns,
        &["resetOffsetByTime", "-g", "g", "-t", "T", "-s", "yesterday"],
        1,
    )
    .await;
    assert!(e.contains("invalid timestamp"), "{e}");
    let e = fails(&ns, &["queryMsgById", "-i", "not-an-id"], 1).await;
    assert!(e.contains("-t"), "{e}");
    let help = ok(&ns, &["--help"]).await;
    assert!(
        help.contains("updateTopic") && help.contains("resetOffsetByTime"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_standalone() {
    let dir = TempDir::new().unwrap();
    let port = broker_port();
    let ns_port = namesrv_port();
    let ns = format!("127.0.0.1:{ns_port}");
    let addr = format!("127.0.0.1:{port}");
    let conf = broker_conf(dir.path(), "broker-a", port, None);
    let log = dir.path().join("standalone.log");
    let _server = spawn(
        &[
            "standalone",
            "-c",
            conf.to_str().unwrap(),
            "--namesrv-listen",
            &ns,
        ],
        &log,
    );
    wait_brokers(&ns, 1, &[&log]).await;

    // Cluster and broker.
    let v = json(&ns, &["clusterList"]).await;
    assert_eq!(v[0]["cluster"], "DefaultCluster");
    assert_eq!(v[0]["brokerName"], "broker-a");
    assert_eq!(v[0]["brokerId"], 0);
    assert_eq!(v[0]["addr"], addr.as_str());
    assert_eq!(v[0]["version"], "V5_3_3");
    let text = ok(&ns, &["clusterList"]).await;
    assert!(text.starts_with("#Cluster Name"), "{text}");
    assert!(
        text.contains(&addr) && text.contains("DefaultCluster"),
        "{text}"
    );
    let v = json(&ns, &["brokerStatus", "-b", &addr]).await;
    assert_eq!(v[&addr]["brokerVersionDesc"], "V5_3_3");
    assert!(v[&addr]["msgPutTotalTodayNow"].is_string(), "{v}");
    let text = ok(&ns, &["brokerStatus", "-c", "DefaultCluster"]).await;
    assert!(
        text.contains("brokerVersionDesc") && text.contains(&addr),
        "{text}"
    );

    // Topics: on the cluster, on one broker, listed, routed.
    let topic = unique("AdminTopic");
    let v = json(
        &ns,
        &[
            "updateTopic",
            "-c",
            "DefaultCluster",
            "-t",
            &topic,
            "-r",
            "4",
            "-w",
            "4",
        ],
    )
    .await;
    assert_eq!(v["brokers"], serde_json::json!([addr]));
    let route = wait_route(&ns, &topic, 1, 4).await;
    assert_eq!(route["queueDatas"][0]["readQueueNums"], 4);
    assert_eq!(route["queueDatas"][0]["perm"], 6);
    assert_eq!(route["brokerDatas"][0]["brokerAddrs"]["0"], addr.as_str());
    let text = ok(&ns, &["topicRoute", "-t", &topic]).await;
    assert!(text.starts_with("#ClusterName"), "{text}");
    assert!(
        text.contains("broker-a") && text.contains("Total:"),
        "{text}"
    );
    let read_only = unique("AdminReadOnly");
    let text = ok(
        &ns,
        &[
            "updateTopic",
            "-b",
            &addr,
            "-t",
            &read_only,
            "-r",
            "2",
            "-w",
            "2",
            "-p",
            "4",
        ],
    )
    .await;
    assert!(
        text.contains(&format!("create topic to {addr} success.")),
        "{text}"
    );
    let route = wait_route(&ns, &read_only, 1, 2).await;
    assert_eq!(route["queueDatas"][0]["perm"], 4);
    let list = json(&ns, &["topicList"]).await;
    let list: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        list.contains(&topic.as_str()) && list.contains(&read_only.as_str()),
        "{list:?}"
    );
    assert!(ok(&ns, &["topicList"]).await.lines().any(|l| l == topic));

    // Messages: stats, by offset id, by UNIQ_KEY, by key, by queue offset.
    let pg = unique("admin_pg");
    let p = producer(&ns, &pg).await;
    let sent = send_n(&p, &topic, "m", 10).await;
    let stats = eventually(Duration::from_secs(10), "10 messages in stats", || async {
        let v = json(&ns, &["topicStatus", "-t", &topic]).await;
        let total: i64 = v
            .as_array()?
            .iter()
            .map(|q| q["maxOffset"].as_i64().unwrap())
            .sum();
        (total == 10).then_some(v)
    })
    .await;
    assert_eq!(stats.as_array().unwrap().len(), 4);
    let text = ok(&ns, &["topicStatus", "-t", &topic]).await;
    assert!(
        text.starts_with("#Broker Name") && text.contains("#Max Offset"),
        "{text}"
    );

    let r = &sent[3];
    let v = json(&ns, &["queryMsgById", "-i", &r.offset_msg_id]).await;
    assert_eq!(v[0]["body"], "m-3");
    assert_eq!(v[0]["topic"], topic.as_str());
    assert_eq!(v[0]["tags"], "TagA");
    assert_eq!(v[0]["queueId"], r.queue.queue_id);
    assert_eq!(v[0]["queueOffset"], r.queue_offset);
    let v = json(&ns, &["queryMsgById", "-t", &topic, "-i", &r.msg_id]).await;
    assert_eq!(v[0]["body"], "m-3");
    assert_eq!(v[0]["msgId"], r.msg_id.as_str());
    let text = ok(&ns, &["queryMsgById", "-i", &r.offset_msg_id]).await;
    assert!(text.contains("Message Body:        m-3"), "{text}");
    assert!(
        text.contains(&format!("OffsetID:            {}", r.offset_msg_id)),
        "{text}"
    );
    let v = eventually(Duration::from_secs(10), "key indexed", || async {
        let v = json(&ns, &["queryMsgByKey", "-t", &topic, "-k", "m-key-7"]).await;
        (v.as_array()?.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(v[0]["body"], "m-7");
    assert_eq!(v[0]["keys"], serde_json::json!(["m-key-7"]));
    let text = ok(&ns, &["queryMsgByKey", "-t", &topic, "-k", "m-key-7"]).await;
    assert!(
        text.starts_with("#Message ID") && text.contains(&sent[7].msg_id),
        "{text}"
    );
    let none = json(&ns, &["queryMsgByKey", "-t", &topic, "-k", "no-such-key"]).await;
    assert_eq!(none, serde_json::json!([]));
    let q = sent[5].queue.queue_id.to_string();
    let off = sent[5].queue_offset.to_string();
    let v = json(
        &ns,
        &[
            "queryMsgByOffset",
            "-t",
            &topic,
            "-b",
            "broker-a",
            "-i",
            &q,
            "-o",
            &off,
        ],
    )
    .await;
    assert_eq!(v["body"], "m-5");
    assert_eq!(v["offsetMsgId"], sent[5].offset_msg_id.as_str());
    let e = fails(
        &ns,
        &[
            "queryMsgByOffset",
            "-t",
            &topic,
            "-b",
            "broker-a",
            "-i",
            &q,
            "-o",
            "999",
        ],
        1,
    )
    .await;
    assert!(e.contains("no message at offset 999"), "{e}");
    let e = fails(
        &ns,
        &[
            "queryMsgByOffset",
            "-t",
            &topic,
            "-b",
            "broker-z",
            "-i",
            "0",
            "-o",
            "0",
        ],
        1,
    )
    .await;
    assert!(e.contains("broker-z"), "{e}");

    // Producers and consumers online; progress, lag and reset.
    let v = eventually(Duration::from_secs(10), "producer online", || async {
        let out = admin(
            &ns,
            &["producerConnection", "-g", &pg, "-t", &topic, "--json"],
        )
        .await;
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        (v["connectionSet"].as_array()?.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(v["connectionSet"][0]["clientId"], p.instance().client_id());
    assert_eq!(v["connectionSet"][0]["language"], "RUST");
    let text = ok(&ns, &["producerConnection", "-g", &pg, "-t", &topic]).await;
    assert!(
        text.contains("0001") && text.contains(p.instance().client_id()),
        "{text}"
    );

    let cg = unique("admin_cg");
    let (c, seen) = consumer(&ns, &cg, &topic).await;
    let v = eventually(Duration::from_secs(20), "group caught up", || async {
        let out = admin(
            &ns,
            &["consumerProgress", "-g", &cg, "-t", &topic, "--json"],
        )
        .await;
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        (v["diffTotal"] == 0 && sum(&v, "queues", "consumerOffset") == 10).then_some(v)
    })
    .await;
    assert_eq!(v["queues"].as_array().unwrap().len(), 4);
    assert_eq!(sum(&v, "queues", "brokerOffset"), 10);
    assert!(seen.load(Ordering::SeqCst) >= 10);
    let text = ok(&ns, &["consumerProgress", "-g", &cg, "-t", &topic]).await;
    assert!(text.starts_with("#Topic"), "{text}");
    assert!(text.contains("Consume Diff Total: 0"), "{text}");
    let all = json(&ns, &["consumerProgress", "-g", &cg]).await;
    assert!(all["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["topic"] == topic.as_str()));
    let groups = eventually(Duration::from_secs(10), "group listed", || async {
        let v = json(&ns, &["consumerProgress"]).await;
        let g = v
            .as_array()?
            .iter()
            .find(|g| g["group"] == cg.as_str())?
            .clone();
        (g["count"] == 1).then_some(g)
    })
    .await;
    assert_eq!(groups["consumeType"], "PUSH");
    assert_eq!(groups["messageModel"], "CLUSTERING");
    let v = json(&ns, &["consumerConnection", "-g", &cg]).await;
    assert_eq!(v["connectionSet"].as_array().unwrap().len(), 1);
    assert_eq!(v["connectionSet"][0]["clientId"], c.instance().client_id());
    assert!(v["subscriptionTable"][&topic].is_object(), "{v}");
    assert_eq!(v["messageModel"], "CLUSTERING");
    let text = ok(&ns, &["consumerConnection", "-g", &cg]).await;
    assert!(
        text.contains("Below is subscription:") && text.contains(&topic),
        "{text}"
    );
    let text = ok(&ns, &["consumerConnection", "-g", &cg, "-b", &addr]).await;
    assert!(text.contains(c.instance().client_id()), "{text}");

    c.shutdown().await;
    let v = json(
        &ns,
        &["resetOffsetByTime", "-g", &cg, "-t", &topic, "-s", "0"],
    )
    .await;
    let offsets = v["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 4);
    assert!(offsets.iter().all(|o| o["offset"] == 0), "{v}");
    let v = json(&ns, &["consumerProgress", "-g", &cg, "-t", &topic]).await;
    assert_eq!(v["diffTotal"], 10, "{v}");
    let text = ok(
        &ns,
        &["resetOffsetByTime", "-g", &cg, "-t", &topic, "-s", "now"],
    )
    .await;
    assert!(
        text.contains("#brokerName") && text.contains("broker-a"),
        "{text}"
    );
    let v = json(&ns, &["consumerProgress", "-g", &cg, "-t", &topic]).await;
    assert_eq!(v["diffTotal"], 0, "{v}");
    ok(
        &ns,
        &[
            "resetOffsetByTime",
            "-g",
            &cg,
            "-t",
            &topic,
            "-s",
            "2000-01-01#00:00:00:000",
        ],
    )
    .await;
    let v = json(&ns, &["consumerProgress", "-g", &cg, "-t", &topic]).await;
    assert_eq!(v["diffTotal"], 10, "{v}");

    // Subscription groups.
    let sg = unique("admin_sg");
    let v = json(
        &ns,
        &[
            "updateSubGroup",
            "-c",
            "DefaultCluster",
            "-g",
            &sg,
            "-q",
            "2",
            "-r",
            "5",
            "-o",
            "true",
        ],
    )
    .await;
    assert_eq!(v["brokers"], serde_json::json!([addr]));
    let v = json(&ns, &["getConsumerConfig", "-g", &sg]).await;
    assert_eq!(v[0]["addr"], addr.as_str());
    assert_eq!(v[0]["config"]["retryQueueNums"], 2);
    assert_eq!(v[0]["config"]["retryMaxTimes"], 5);
    assert_eq!(v[0]["config"]["consumeMessageOrderly"], true);
    assert_eq!(v[0]["config"]["consumeBroadcastEnable"], false);
    let text = ok(&ns, &["deleteSubGroup", "-b", &addr, "-g", &sg]).await;
    assert!(
        text.contains(&format!(
            "delete subscription group [{sg}] from broker [{addr}] success."
        )),
        "{text}"
    );
    let e = fails(&ns, &["getConsumerConfig", "-g", &sg], 1).await;
    assert!(e.contains("SUBSCRIPTION_GROUP_NOT_EXIST"), "{e}");

    // Broker config: read, change a runtime key, refuse a restart-only one.
    let v = json(&ns, &["getBrokerConfig", "-b", &addr]).await;
    assert_eq!(v[&addr]["brokerName"], "broker-a");
    assert_eq!(v[&addr]["listenPort"], port.to_string().as_str());
    let text = ok(&ns, &["getBrokerConfig", "-c", "DefaultCluster"]).await;
    assert!(
        text.contains(&format!("============{addr}============")),
        "{text}"
    );
    let text = ok(
        &ns,
        &[
            "updateBrokerConfig",
            "-b",
            &addr,
            "-k",
            "maxMessageSize",
            "-v",
            "1048576",
        ],
    )
    .await;
    assert_eq!(text, format!("update broker config success, {addr}\n"));
    let v = json(&ns, &["getBrokerConfig", "-b", &addr]).await;
    assert_eq!(v[&addr]["maxMessageSize"], "1048576");
    let e = fails(
        &ns,
        &[
            "updateBrokerConfig",
            "-c",
            "DefaultCluster",
            "-k",
            "listenPort",
            "-v",
            "1",
        ],
        1,
    )
    .await;
    assert!(
        e.contains("listenPort") && e.contains("(INVALID_PARAMETER)"),
        "{e}"
    );

    // Errors from the servers: unknown topic, group, cluster.
    let e = fails(&ns, &["topicRoute", "-t", "NoSuchTopic"], 1).await;
    assert_eq!(e, "error: topic [NoSuchTopic] not exist (TOPIC_NOT_EXIST)");
    let e = fails(&ns, &["topicStatus", "-t", "NoSuchTopic"], 1).await;
    assert_eq!(e, "error: topic [NoSuchTopic] not exist (TOPIC_NOT_EXIST)");
    let e = fails(
        &ns,
        &["deleteTopic", "-t", "NoSuchTopic", "-c", "DefaultCluster"],
        1,
    )
    .await;
    assert!(e.contains("TOPIC_NOT_EXIST"), "{e}");
    let e = fails(&ns, &["updateTopic", "-c", "NoSuchCluster", "-t", "X"], 1).await;
    assert!(e.contains("cluster [NoSuchCluster] not exist"), "{e}");
    let e = fails(
        &ns,
        &["updateTopic", "-c", "DefaultCluster", "-t", "bad topic!"],
        1,
    )
    .await;
    assert!(e.contains("invalid topic name"), "{e}");
    let e = fails(&ns, &["consumerConnection", "-g", "nobody"], 1).await;
    assert!(e.contains("CONSUMER_NOT_ONLINE"), "{e}");
    let e = fails(
        &ns,
        &["producerConnection", "-g", "nobody", "-t", &topic],
        1,
    )
    .await;
    assert!(e.contains("not exist"), "{e}");
    let e = fails(&ns, &["consumerProgress", "-g", "nobody"], 1).await;
    assert!(e.contains("nobody"), "{e}");

    // Deleting a topic removes its route.
    let text = ok(
        &ns,
        &["deleteTopic", "-t", &read_only, "-c", "DefaultCluster"],
    )
    .await;
    assert!(text.contains("from NameServer success."), "{text}");
    let e = fails(&ns, &["topicRoute", "-t", &read_only], 1).await;
    assert!(e.contains("TOPIC_NOT_EXIST"), "{e}");

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_broker_cluster() {
    let dir = TempDir::new().unwrap();
    let ns = format!("127.0.0.1:{}", namesrv_port());
    let ns_conf = dir.path().join("namesrv.conf");
    std::fs::write(
        &ns_conf,
        format!(
            "kvConfigPath={}\nconfigStorePath={}\n",
            dir.path().join("kvConfig.json").display(),
            dir.path().join("namesrv.properties").display()
        ),
    )
    .unwrap();
    let ns_log = dir.path().join("namesrv.log");
    let _namesrv = spawn(
        &["namesrv", "--listen", &ns, "-c", ns_conf.to_str().unwrap()],
        &ns_log,
    );
    let (pa, pb) = (broker_port(), broker_port());
    let (addr_a, addr_b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let conf_a = broker_conf(dir.path(), "broker-a", pa, Some(&ns));
    let conf_b = broker_conf(dir.path(), "broker-b", pb, Some(&ns));
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let _a = spawn(&["broker", "-c", conf_a.to_str().unwrap()], &log_a);
    let _b = spawn(&["broker", "-c", conf_b.to_str().unwrap()], &log_b);
    wait_brokers(&ns, 2, &[&ns_log, &log_a, &log_b]).await;

    let v = json(&ns, &["clusterList"]).await;
    let rows: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["brokerName"].as_str().unwrap(),
                b["addr"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("broker-a", addr_a.as_str()), ("broker-b", addr_b.as_str())]
    );
    let text = ok(&ns, &["clusterList", "-c", "DefaultCluster"]).await;
    assert_eq!(text.lines().count(), 3, "{text}");

    // A topic created on the cluster lands on both brokers.
    let topic = unique("ClusterTopic");
    let v = json(
        &ns,
        &[
            "updateTopic",
            "-c",
            "DefaultCluster",
            "-t",
            &topic,
            "-r",
            "4",
            "-w",
            "4",
        ],
    )
    .await;
    let brokers: BTreeSet<&str> = v["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(brokers, BTreeSet::from([addr_a.as_str(), addr_b.as_str()]));
    let route = wait_route(&ns, &topic, 2, 4).await;
    assert_eq!(route["brokerDatas"].as_array().unwrap().len(), 2);
    let text = ok(&ns, &["topicRoute", "-t", &topic]).await;
    assert!(
        text.contains("broker-a") && text.contains("broker-b"),
        "{text}"
    );
    let total = text.lines().find(|l| l.starts_with("Total:")).unwrap();
    assert_eq!(
        total.split_whitespace().collect::<Vec<_>>(),
        ["Total:", "2", "8", "8"]
    );
    for addr in [&addr_a, &addr_b] {
        let v = json(&ns, &["getBrokerConfig", "-b", addr]).await;
        assert_eq!(v[addr.as_str()]["brokerClusterName"], "DefaultCluster");
    }

    // Messages spread over both brokers; one group consumes them all.
    let p = producer(&ns, &unique("cluster_pg")).await;
    send_n(&p, &topic, "c", 16).await;
    let stats = eventually(Duration::from_secs(10), "16 messages in stats", || async {
        let v = json(&ns, &["topicStatus", "-t", &topic]).await;
        let total: i64 = v
            .as_array()?
            .iter()
            .map(|q| q["maxOffset"].as_i64().unwrap())
            .sum();
        (total == 16).then_some(v)
    })
    .await;
    let per_broker = |name: &str| -> i64 {
        stats
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["brokerName"] == name)
            .map(|q| q["maxOffset"].as_i64().unwrap())
            .sum()
    };
    assert!(
        per_broker("broker-a") > 0 && per_broker("broker-b") > 0,
        "{stats}"
    );

    let cg = unique("cluster_cg");
    let (c, _seen) = consumer(&ns, &cg, &topic).await;
    let v = eventually(
        Duration::from_secs(20),
        "group caught up on both",
        || async {
            let out = admin(
                &ns,
                &["consumerProgress", "-g", &cg, "-t", &topic, "--json"],
            )
            .await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            (v["diffTotal"] == 0 && sum(&v, "queues", "consumerOffset") == 16).then_some(v)
        },
    )
    .await;
    let names: BTreeSet<&str> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["brokerName"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["broker-a", "broker-b"]));
    assert_eq!(v["queues"].as_array().unwrap().len(), 8);
    // Without -t: found through the retry topic, which both brokers serve.
    let v = eventually(
        Duration::from_secs(10),
        "progress without topic",
        || async {
            let out = admin(&ns, &["consumerProgress", "-g", &cg, "--json"]).await;
            let v: Value = serde_json::from_str(&out.stdout).ok()?;
            let n = v["queues"]
                .as_array()?
                .iter()
                .filter(|q| q["topic"] == topic.as_str())
                .count();
            (n == 8).then_some(v)
        },
    )
    .await;
    assert_eq!(v["diffTotal"], 0, "{v}");
    let text = ok(&ns, &["consumerProgress", "-g", &cg, "-t", &topic]).await;
    assert!(
        text.contains("broker-a") && text.contains("broker-b"),
        "{text}"
    );
    c.shutdown().await;

    let v = json(
        &ns,
        &["resetOffsetByTime", "-g", &cg, "-t", &topic, "-s", "0"],
    )
    .await;
    assert_eq!(v["offsets"].as_array().unwrap().len(), 8, "{v}");
    let v = json(&ns, &["consumerProgress", "-g", &cg, "-t", &topic]).await;
    assert_eq!(v["diffTotal"], 16, "{v}");

    // Groups and config changes go to every master.
    let sg = unique("cluster_sg");
    ok(&ns, &["updateSubGroup", "-c", "DefaultCluster", "-g", &sg]).await;
    let v = json(&ns, &["getConsumerConfig", "-g", &sg]).await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let text = ok(&ns, &["deleteSubGroup", "-c", "DefaultCluster", "-g", &sg]).await;
    assert_eq!(text.lines().count(), 2, "{text}");
    let v = json(
        &ns,
        &[
            "updateBrokerConfig",
            "-c",
            "DefaultCluster",
            "-k",
            "maxMessageSize",
            "-v",
            "2097152",
        ],
    )
    .await;
    assert_eq!(v["brokers"].as_array().unwrap().len(), 2);
    let v = json(&ns, &["getBrokerConfig", "-c", "DefaultCluster"]).await;
    for addr in [&addr_a, &addr_b] {
        assert_eq!(v[addr.as_str()]["maxMessageSize"], "2097152");
    }

    // Deleting on the cluster removes it from both brokers and the route.
    ok(&ns, &["deleteTopic", "-t", &topic, "-c", "DefaultCluster"]).await;
    let e = fails(&ns, &["topicRoute", "-t", &topic], 1).await;
    assert!(e.contains("TOPIC_NOT_EXIST"), "{e}");
    p.shutdown().await;
}
