//! Issue #4, cluster item: two NameServers and two broker groups (`broker-a`, `broker-b` of
//! `DefaultCluster`), all separate `ferrymq` processes. The brokers register with both name
//! servers; one topic is spread over both brokers; a producer and a clustering push consumer
//! configured with both name servers spread and receive the messages over both brokers; and
//! when one name server is stopped (SIGTERM) mid-way, old and new clients keep working through
//! the other.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cheetah_string::CheetahString;
use common::client::{body_for, start_concurrent_consumer, ClientEnv, Collector, Delivery};
use common::cluster::{BrokerProc, NameServerProc};
use common::raw::{self, RawConn};
use common::{wait_until, BrokerOptions};
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use serde_json::Value;

const TOPIC: &str = "CompatCluster";
const QUEUES: i32 = 4;
/// PERM_READ | PERM_WRITE
const PERM_RW: i32 = 6;
/// Messages sent while both name servers run.
const PHASE1: usize = 2000;
/// Messages sent after the first name server was stopped.
const PHASE2: usize = 500;
/// Concurrent synchronous senders per producer.
const SENDERS: usize = 4;
/// Least share of a phase's sends each broker must get ("substantial"; round robin over the
/// 2 × 4 write queues gives one half each).
const MIN_SHARE: f64 = 0.25;
const CLUSTER: &str = "DefaultCluster";

fn message(i: usize) -> Message {
    let id = format!("cl-{i:05}");
    let mut m = Message::builder()
        .topic(TOPIC.to_owned())
        .body(body_for(&id, i as u64, 48 + i % 160))
        .tags("C")
        .key(id)
        .build_unchecked();
    m.put_user_property(
        CheetahString::from("idx"),
        CheetahString::from(i.to_string()),
    )
    .expect("idx");
    m
}

fn idx_of(d: &Delivery) -> Option<usize> {
    d.user_property("idx").and_then(|s| s.parse().ok())
}

fn ids(c: &Collector) -> HashSet<usize> {
    c.snapshot().iter().filter_map(idx_of).collect()
}

/// One broker's part of a topic route as a name server returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RoutePart {
    cluster: String,
    master_addr: Option<String>,
    read_queues: i64,
    write_queues: i64,
    perm: i64,
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn int_field(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(-1)
}

fn master_addr(broker_data: &Value) -> Option<String> {
    broker_data
        .get("brokerAddrs")
        .and_then(|a| a.get("0"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// GET_ROUTEINFO_BY_TOPIC (105) of `topic` at `namesrv`, per broker name.
fn route_of(namesrv: &str, topic: &str) -> Result<BTreeMap<String, RoutePart>, String> {
    let mut c = RawConn::connect(namesrv).map_err(|e| format!("connect {namesrv}: {e}"))?;
    let r = raw::route_info(&mut c, topic).map_err(|e| format!("{namesrv}: {e}"))?;
    if r.code != raw::code::SUCCESS {
        return Err(format!(
            "{namesrv}: GET_ROUTEINFO_BY_TOPIC {topic} answered code {} remark {:?}",
            r.code, r.remark
        ));
    }
    let v = raw::parse_java_json(&r.body)?;
    let mut parts = BTreeMap::new();
    for q in v
        .get("queueDatas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        parts.insert(
            str_field(q, "brokerName"),
            RoutePart {
                cluster: String::new(),
                master_addr: None,
                read_queues: int_field(q, "readQueueNums"),
                write_queues: int_field(q, "writeQueueNums"),
                perm: int_field(q, "perm"),
            },
        );
    }
    for b in v
        .get("brokerDatas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let part = parts
            .entry(str_field(b, "brokerName"))
            .or_insert(RoutePart {
                cluster: String::new(),
                master_addr: None,
                read_queues: -1,
                write_queues: -1,
                perm: -1,
            });
        part.cluster = str_field(b, "cluster");
        part.master_addr = master_addr(b);
    }
    Ok(parts)
}

/// GET_BROKER_CLUSTER_INFO (106) at `namesrv`: the broker names of `DefaultCluster` and,
/// per broker name, (cluster, master address).
type ClusterView = (BTreeSet<String>, BTreeMap<String, (String, Option<String>)>);

fn cluster_info_of(namesrv: &str) -> Result<ClusterView, String> {
    let mut c = RawConn::connect(namesrv).map_err(|e| format!("connect {namesrv}: {e}"))?;
    let r = raw::broker_cluster_info(&mut c).map_err(|e| format!("{namesrv}: {e}"))?;
    if r.code != raw::code::SUCCESS {
        return Err(format!(
            "{namesrv}: GET_BROKER_CLUSTER_INFO answered code {} remark {:?}",
            r.code, r.remark
        ));
    }
    let v = raw::parse_java_json(&r.body)?;
    let members: BTreeSet<String> = v
        .get("clusterAddrTable")
        .and_then(|t| t.get(CLUSTER))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let mut brokers = BTreeMap::new();
    if let Some(Value::Object(table)) = v.get("brokerAddrTable") {
        for (name, b) in table {
            brokers.insert(name.clone(), (str_field(b, "cluster"), master_addr(b)));
        }
    }
    Ok((members, brokers))
}

/// What the route of [`TOPIC`] must look like at every name server.
fn expected_route(brokers: &[&BrokerProc]) -> BTreeMap<String, RoutePart> {
    brokers
        .iter()
        .map(|b| {
            (
                b.broker_name.clone(),
                RoutePart {
                    cluster: CLUSTER.to_owned(),
                    master_addr: Some(b.addr()),
                    read_queues: i64::from(QUEUES),
                    write_queues: i64::from(QUEUES),
                    perm: i64::from(PERM_RW),
                },
            )
        })
        .collect()
}

fn expected_cluster(brokers: &[&BrokerProc]) -> ClusterView {
    (
        brokers.iter().map(|b| b.broker_name.clone()).collect(),
        brokers
            .iter()
            .map(|b| (b.broker_name.clone(), (CLUSTER.to_owned(), Some(b.addr()))))
            .collect(),
    )
}

/// Polls `probe` until it returns `want` or `timeout` passes; on timeout returns the last
/// answer (or error) as the failure description.
async fn wait_for<T: PartialEq + std::fmt::Debug>(
    timeout: Duration,
    want: &T,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut last = String::new();
    let ok = wait_until(timeout, || match probe() {
        Ok(v) if v == *want => true,
        Ok(v) => {
            last = format!("{v:#?}");
            false
        }
        Err(e) => {
            last = e;
            false
        }
    })
    .await;
    if ok {
        Ok(t0.elapsed())
    } else {
        Err(last)
    }
}

/// Where each acknowledged send went: idx → broker name.
type SendLog = Arc<Mutex<BTreeMap<usize, String>>>;

/// Sends messages `range` synchronously from `SENDERS` concurrent tasks; every send must be
/// SEND_OK with a message queue naming the broker.
async fn send_range(
    producer: &Arc<DefaultMQProducer>,
    range: std::ops::Range<usize>,
    log: &SendLog,
) {
    let mut tasks = Vec::new();
    for k in 0..SENDERS {
        let (p, log, range) = (producer.clone(), log.clone(), range.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for i in range.filter(|i| i % SENDERS == k) {
                match p.send_with_timeout(message(i), 5000).await {
                    Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                        match r.message_queue.as_ref() {
                            Some(q) => {
                                log.lock().unwrap().insert(i, q.broker_name().to_string());
                            }
                            None => errors.push(format!("cl-{i:05}: SEND_OK without a queue")),
                        }
                    }
                    other => errors.push(format!("cl-{i:05}: {other:?}")),
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.expect("sender task"));
    }
    assert!(
        errors.is_empty(),
        "{} of {} sends failed, first: {:#?}",
        errors.len(),
        range.len(),
        &errors[..errors.len().min(5)]
    );
}

/// Per-broker counts of the sends of `range`; asserts each broker got at least `MIN_SHARE`.
fn assert_spread(
    what: &str,
    log: &SendLog,
    range: std::ops::Range<usize>,
    brokers: &[&BrokerProc],
) {
    let log = log.lock().unwrap();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for i in range.clone() {
        let b = log.get(&i).cloned().unwrap_or_else(|| "<none>".to_owned());
        *per.entry(b).or_default() += 1;
    }
    eprintln!("[cluster] {what}: sends per broker {per:?}");
    let names: BTreeSet<&str> = brokers.iter().map(|b| b.broker_name.as_str()).collect();
    assert!(
        per.keys().all(|b| names.contains(b.as_str())),
        "{what}: sends went to unknown brokers: {per:?}"
    );
    for b in &names {
        let n = per.get(*b).copied().unwrap_or(0);
        assert!(
            n as f64 >= MIN_SHARE * range.len() as f64,
            "{what}: broker {b} got only {n} of {} sends: {per:?}",
            range.len()
        );
    }
}

/// Checks a consumer's deliveries of messages `0..n`: none missing, each consumed from the
/// broker the producer stored it on (store host), and from both brokers. Returns a summary.
fn check_consumed(
    what: &str,
    col: &Collector,
    n: usize,
    log: &SendLog,
    brokers: &[&BrokerProc],
) -> String {
    let all = col.snapshot();
    let got: HashSet<usize> = all.iter().filter_map(idx_of).collect();
    let mut missing: Vec<usize> = (0..n).filter(|i| !got.contains(i)).collect();
    missing.sort_unstable();
    let log = log.lock().unwrap();
    let by_port: HashMap<u16, &str> = brokers
        .iter()
        .map(|b| (b.port, b.broker_name.as_str()))
        .collect();
    let mut per_broker: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong_host = Vec::new();
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for d in &all {
        let Some(i) = idx_of(d) else { continue };
        *counts.entry(i).or_default() += 1;
        let from = by_port
            .get(&d.store_host.port())
            .copied()
            .unwrap_or("<unknown>");
        *per_broker.entry(from.to_owned()).or_default() += 1;
        let sent_to = log.get(&i).map(String::as_str).unwrap_or("<not acked>");
        if from != sent_to || d.topic != TOPIC {
            wrong_host.push(format!(
                "cl-{i:05}: sent to {sent_to}, delivered with store host {} ({from}), topic {}, q{}@{}",
                d.store_host, d.topic, d.queue_id, d.queue_offset
            ));
        }
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    let extra: Vec<usize> = counts.keys().filter(|i| **i >= n).copied().collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {n} messages never consumed, first {:?}; consumed per broker {per_broker:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        extra.is_empty(),
        "{what}: consumed messages that were never sent: {extra:?}"
    );
    assert!(
        wrong_host.is_empty(),
        "{what}: {} deliveries do not come from the broker the message was sent to, first {:#?}",
        wrong_host.len(),
        &wrong_host[..wrong_host.len().min(5)]
    );
    for b in brokers {
        assert!(
            per_broker.get(&b.broker_name).copied().unwrap_or(0) > 0,
            "{what}: nothing consumed from {}: {per_broker:?}",
            b.broker_name
        );
    }
    format!(
        "{what}: {} deliveries of {n} messages ({duplicates} duplicates), per broker {per_broker:?}",
        all.len()
    )
}

#[test]
fn two_namesrvs_two_brokers_spread_and_survive_a_namesrv_stop() {
    let t0 = Instant::now();
    let mut ns1 = NameServerProc::start("ns1");
    let mut ns2 = NameServerProc::start("ns2");
    let ns_list = format!("{};{}", ns1.addr(), ns2.addr());
    let mut broker_a = BrokerProc::start("broker-a", &ns_list, BrokerOptions::default());
    let mut broker_b = BrokerProc::start("broker-b", &ns_list, BrokerOptions::default());
    eprintln!(
        "[cluster] started in {:?}: namesrvAddr={ns_list}, broker-a {}, broker-b {}",
        t0.elapsed(),
        broker_a.addr(),
        broker_b.addr()
    );
    let brokers = [&broker_a, &broker_b];
    let (ns1_addr, ns2_addr) = (ns1.addr(), ns2.addr());
    let want_cluster = expected_cluster(&brokers);
    let want_route = expected_route(&brokers);

    let env = ClientEnv::new("cluster");
    let sends: SendLog = Arc::new(Mutex::new(BTreeMap::new()));
    let col = Collector::new();
    let late_col = Collector::new();
    let summary = env.block_on(async {
        // 1. Both brokers registered with each (independent) name server.
        for ns in [&ns1_addr, &ns2_addr] {
            let took = wait_for(Duration::from_secs(15), &want_cluster, || cluster_info_of(ns))
                .await
                .unwrap_or_else(|last| {
                    panic!(
                        "name server {ns}: GET_BROKER_CLUSTER_INFO does not list both brokers under {CLUSTER} \
                         15 s after they started; want {want_cluster:#?}, last answer {last}"
                    )
                });
            eprintln!("[cluster] {ns}: cluster info lists both brokers after {took:?}");
        }

        // 2. The topic, created on each broker explicitly.
        for b in &brokers {
            let mut c = RawConn::connect(&b.addr()).expect("connect broker");
            let r = raw::create_topic(&mut c, TOPIC, QUEUES, PERM_RW).expect("create topic");
            assert_eq!(
                r.code,
                raw::code::SUCCESS,
                "UPDATE_AND_CREATE_TOPIC {TOPIC} at {} ({}): code {} remark {:?}",
                b.broker_name,
                b.addr(),
                r.code,
                r.remark
            );
        }
        // 3. ... and routed over both brokers by both name servers.
        for ns in [&ns1_addr, &ns2_addr] {
            let took = wait_for(Duration::from_secs(15), &want_route, || route_of(ns, TOPIC))
                .await
                .unwrap_or_else(|last| {
                    panic!(
                        "name server {ns}: route of {TOPIC} does not list both brokers 15 s after the topic \
                         was created on both; want {want_route:#?}, last answer {last}"
                    )
                });
            eprintln!("[cluster] {ns}: route of {TOPIC} lists both brokers after {took:?}");
        }

        // 4. Producer and clustering push consumer, both configured with both name servers.
        let producer = Arc::new(env.producer(&ns_list, "compat_cluster_pg").await);
        let mut consumer = start_concurrent_consumer(
            &env,
            &ns_list,
            "compat_cluster_cg",
            TOPIC,
            "*",
            "cluster-c1",
            col.clone(),
        )
        .await;
        assert_eq!(
            format!("{:?}", consumer.message_model()),
            "Clustering",
            "the push consumer default should be clustering"
        );

        let t_send = Instant::now();
        send_range(&producer, 0..PHASE1, &sends).await;
        eprintln!("[cluster] sent {PHASE1} in {:?}", t_send.elapsed());
        assert_spread("phase 1", &sends, 0..PHASE1, &brokers);
        let c1 = col.clone();
        let all1 = wait_until(Duration::from_secs(30), move || {
            ids(&c1).len() >= PHASE1
        })
        .await;
        assert!(
            all1,
            "phase 1: consumer got only {} of {PHASE1} distinct messages in 30 s",
            ids(&col).len()
        );
        let phase1_summary = check_consumed("phase 1", &col, PHASE1, &sends, &brokers);
        eprintln!("[cluster] {phase1_summary} after {:?}", t_send.elapsed());

        // 5. Stop the first name server (SIGTERM); the second one still serves everything.
        let status = ns1.proc.stop();
        assert!(
            status.success(),
            "name server 1 exited with {status} on SIGTERM; log {}:\n{}",
            ns1.proc.log_path().display(),
            ns1.proc.log_tail(40)
        );
        assert!(
            RawConn::connect(&ns1_addr).is_err(),
            "name server 1 ({ns1_addr}) still accepts connections after it exited"
        );
        assert_eq!(
            route_of(&ns2_addr, TOPIC),
            Ok(want_route.clone()),
            "name server 2: route of {TOPIC} after name server 1 stopped"
        );
        assert_eq!(
            cluster_info_of(&ns2_addr),
            Ok(want_cluster.clone()),
            "name server 2: cluster info after name server 1 stopped"
        );

        // 6. The running producer sends on; a producer and a consumer group created now must
        //    find the route through the surviving name server (the dead one is listed first).
        let half = PHASE1 + PHASE2 / 2;
        send_range(&producer, PHASE1..half, &sends).await;
        let late_producer = Arc::new(env.producer(&ns_list, "compat_cluster_late_pg").await);
        send_range(&late_producer, half..PHASE1 + PHASE2, &sends).await;
        assert_spread("phase 2, running producer", &sends, PHASE1..half, &brokers);
        assert_spread(
            "phase 2, producer created after the stop",
            &sends,
            half..PHASE1 + PHASE2,
            &brokers,
        );
        let mut late_consumer = start_concurrent_consumer(
            &env,
            &ns_list,
            "compat_cluster_late_cg",
            TOPIC,
            "*",
            "cluster-late",
            late_col.clone(),
        )
        .await;
        let (c2, c3) = (col.clone(), late_col.clone());
        let all2 = wait_until(Duration::from_secs(30), move || {
            ids(&c2).len() >= PHASE1 + PHASE2 && ids(&c3).len() >= PHASE1 + PHASE2
        })
        .await;
        assert!(
            all2,
            "after name server 1 stopped: the running consumer got {} and the consumer group created \
             afterwards {} of {} distinct messages in 30 s",
            ids(&col).len(),
            ids(&late_col).len(),
            PHASE1 + PHASE2
        );
        // a moment for late duplicates to show up in the counts
        tokio::time::sleep(Duration::from_millis(300)).await;
        consumer.shutdown().await;
        late_consumer.shutdown().await;
        for p in [producer, late_producer] {
            if let Ok(mut p) = Arc::try_unwrap(p) {
                p.shutdown().await;
            }
        }
        phase1_summary
    });
    env.shutdown();

    let n = PHASE1 + PHASE2;
    let running = check_consumed("running consumer, both phases", &col, n, &sends, &brokers);
    let late = check_consumed(
        "consumer group created after the name server stop",
        &late_col,
        n,
        &sends,
        &brokers,
    );
    eprintln!("[cluster] {summary}\n[cluster] {running}\n[cluster] {late}");

    // Everything stops cleanly.
    for b in [&mut broker_a, &mut broker_b] {
        b.proc.stop_clean();
    }
    ns2.proc.stop_clean();
    eprintln!("[cluster] done in {:?}", t0.elapsed());
}
