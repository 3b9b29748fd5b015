//! Issue #4, items 4 and 5: a consumer restarted mid-stream resumes from its committed offset;
//! a broker restarted mid-stream (SIGTERM, and SIGKILL with SYNC_FLUSH) loses nothing the
//! producer got SEND_OK for.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cheetah_string::CheetahString;
use common::client::{
    body_for, ensure_topic, start_concurrent_consumer, ClientEnv, Collector, Delivery,
};
use common::raw::{self, RawConn};
use common::{wait_until, BrokerOptions, Ferrymq};
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;

fn message(topic: &str, prefix: &str, i: usize) -> Message {
    let id = format!("{prefix}-{i:05}");
    let mut m = Message::builder()
        .topic(topic.to_owned())
        .body(body_for(&id, i as u64, 64 + i % 200))
        .tags("R")
        .key(id)
        .build_unchecked();
    m.put_user_property(
        CheetahString::from("idx"),
        CheetahString::from(i.to_string()),
    )
    .unwrap();
    m
}

fn idx_of(d: &Delivery) -> Option<usize> {
    d.user_property("idx").and_then(|s| s.parse().ok())
}

fn ids(c: &Collector) -> HashSet<usize> {
    c.snapshot().iter().filter_map(idx_of).collect()
}

/// Item 4. Consumer A consumes part of a stream and is shut down while the producer keeps
/// sending; consumer B of the same group must continue from the offsets A committed: nothing
/// lost, and re-delivered only what A had consumed beyond its committed offsets (in flight).
#[test]
fn consumer_restart_resumes_from_committed_offset() {
    const N: usize = 3000;
    const STOP_A_AFTER: usize = 1000;
    // At most what can be in flight in a consumer: one pull batch (32) per queue.
    const MAX_REDELIVERED: usize = 4 * 32;
    let topic = "CompatConsumerRestart";
    let group = "compat_restart_cg";
    let broker = Ferrymq::start("consumer-restart");
    let ns = broker.namesrv_addr();
    let env = ClientEnv::new("consumer-restart");
    let col_a = Collector::new();
    let col_b = Collector::new();
    let (committed, b_done) = env.block_on(async {
        let producer = Arc::new(env.producer(&ns, "compat_restart_pg").await);
        ensure_topic(&producer, &ns, topic).await;
        let mut a =
            start_concurrent_consumer(&env, &ns, group, topic, "*", "restart-A", col_a.clone())
                .await;

        let p = producer.clone();
        let sender = tokio::spawn(async move {
            for i in 0..N {
                let r = p.send(message(topic, "cr", i)).await;
                assert!(
                    matches!(&r, Ok(Some(s)) if s.send_status == SendStatus::SendOk),
                    "send cr-{i:05}: {r:?}"
                );
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });

        let ca = col_a.clone();
        let reached = wait_until(Duration::from_secs(60), move || {
            ids(&ca).len() >= STOP_A_AFTER
        })
        .await;
        assert!(
            reached,
            "consumer A got only {} messages in 60 s",
            ids(&col_a).len()
        );
        a.shutdown().await;
        eprintln!(
            "[consumer-restart] A shut down after {} deliveries",
            col_a.len()
        );

        // What the broker now holds as committed offsets of the group.
        let queues = raw::route_queue_count(&ns, topic).expect("route");
        let mut conn = RawConn::connect(&broker.broker_addr()).expect("connect");
        let committed: BTreeMap<i32, Option<i64>> = (0..queues)
            .map(|q| {
                (
                    q,
                    raw::query_consumer_offset(&mut conn, group, topic, q)
                        .unwrap_or_else(|e| panic!("queue {q}: {e}")),
                )
            })
            .collect();
        let a_len_at_stop = col_a.len();

        let mut b =
            start_concurrent_consumer(&env, &ns, group, topic, "*", "restart-B", col_b.clone())
                .await;
        sender.await.expect("sender");
        let (ca, cb) = (col_a.clone(), col_b.clone());
        let b_done = wait_until(Duration::from_secs(60), move || {
            let mut all = ids(&ca);
            all.extend(ids(&cb));
            all.len() >= N
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.shutdown().await;
        assert_eq!(
            col_a.len(),
            a_len_at_stop,
            "consumer A kept consuming after its shutdown returned"
        );
        if let Ok(mut p) = Arc::try_unwrap(producer) {
            p.shutdown().await;
        }
        (committed, b_done)
    });
    env.shutdown();

    // all of A's deliveries (the warm-up message included) for the offset analysis
    let a_all: Vec<Delivery> = col_a.snapshot();
    let a: Vec<Delivery> = a_all
        .iter()
        .filter(|d| idx_of(d).is_some())
        .cloned()
        .collect();
    let b: Vec<Delivery> = col_b
        .snapshot()
        .into_iter()
        .filter(|d| idx_of(d).is_some())
        .collect();
    let a_ids: HashSet<usize> = a.iter().filter_map(idx_of).collect();
    let b_ids: HashSet<usize> = b.iter().filter_map(idx_of).collect();
    let missing: Vec<usize> = (0..N)
        .filter(|i| !a_ids.contains(i) && !b_ids.contains(i))
        .collect();

    // per queue: what A consumed, the first offset A had not consumed, what B started at
    let mut table = String::new();
    let mut problems = Vec::new();
    let mut redelivered_total = 0usize;
    for (q, c) in &committed {
        let a_offs: HashSet<i64> = a_all
            .iter()
            .filter(|d| d.queue_id == *q)
            .map(|d| d.queue_offset)
            .collect();
        let mut gap = 0i64;
        while a_offs.contains(&gap) {
            gap += 1;
        }
        let b_min = b
            .iter()
            .filter(|d| d.queue_id == *q)
            .map(|d| d.queue_offset)
            .min();
        let redelivered = match c {
            Some(c) => a_offs.iter().filter(|o| **o >= *c).count(),
            None => a_offs.len(),
        };
        redelivered_total += redelivered;
        table.push_str(&format!(
            "  queue {q}: A consumed {} (max offset {:?}, first gap {gap}), committed {c:?}, B first offset {b_min:?}, re-delivered {redelivered}\n",
            a_offs.len(),
            a_offs.iter().max()
        ));
        match c {
            None if !a_offs.is_empty() => problems.push(format!(
                "queue {q}: no committed offset (QUERY_CONSUMER_OFFSET → QUERY_NOT_FOUND) although A consumed {} messages",
                a_offs.len()
            )),
            Some(c) if *c > gap => problems.push(format!("queue {q}: committed offset {c} skips unconsumed offset {gap}")),
            Some(c) if b_min.is_some_and(|m| m != *c) => problems.push(format!(
                "queue {q}: B started at offset {} instead of the committed offset {c}",
                b_min.unwrap()
            )),
            _ => {}
        }
    }
    eprintln!("[consumer-restart] per-queue:\n{table}");
    if !problems.is_empty() {
        // Where did the messages A skipped go? (first few per queue)
        for q in committed.keys() {
            let a_offs: HashSet<i64> = a_all
                .iter()
                .filter(|d| d.queue_id == *q && d.user_property("RETRY_TOPIC").is_none())
                .map(|d| d.queue_offset)
                .collect();
            let max = a_offs.iter().max().copied().unwrap_or(-1);
            let holes: Vec<i64> = (0..max).filter(|o| !a_offs.contains(o)).take(3).collect();
            for h in holes {
                let in_b: Vec<String> = b
                    .iter()
                    .filter(|d| {
                        d.queue_id == *q
                            && d.queue_offset == h
                            && d.user_property("RETRY_TOPIC").is_none()
                    })
                    .map(|d| {
                        format!(
                            "idx {:?} topic {} reconsume {}",
                            idx_of(d),
                            d.topic,
                            d.reconsume_times
                        )
                    })
                    .collect();
                eprintln!(
                    "  queue {q} offset {h}: not consumed by A; B got it at that place: {in_b:?}"
                );
            }
        }
        let retried: Vec<String> = a_all
            .iter()
            .chain(b.iter())
            .filter(|d| d.reconsume_times > 0 || d.user_property("RETRY_TOPIC").is_some())
            .take(5)
            .map(|d| {
                format!(
                    "{} idx {:?} q{}@{} reconsume {} props {:?}",
                    d.consumer,
                    idx_of(d),
                    d.queue_id,
                    d.queue_offset,
                    d.reconsume_times,
                    d.properties
                )
            })
            .collect();
        eprintln!("  re-consumed deliveries (first 5): {retried:#?}");
    }
    assert!(
        b_done && missing.is_empty(),
        "{} messages lost across the consumer restart, first {:?}\n{table}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        problems.is_empty(),
        "offset problems: {problems:#?}\n{table}"
    );
    let dup_ids = a_ids.intersection(&b_ids).count();
    assert!(
        redelivered_total <= MAX_REDELIVERED && dup_ids <= MAX_REDELIVERED,
        "{dup_ids} messages consumed by A were re-delivered to B (allowed: {MAX_REDELIVERED} in flight)\n{table}"
    );
    drop(broker);
}

/// Shared body of the broker restart tests.
fn broker_restart_mid_stream(name: &'static str, options: BrokerOptions, crash: bool) {
    const BEFORE: usize = 800;
    const AFTER: usize = 500;
    let topic = "CompatBrokerRestart";
    let broker = Ferrymq::start_with(name, options);
    let ns = broker.namesrv_addr();
    let env = ClientEnv::new(name);
    let live = Collector::new();
    let verify = Collector::new();
    let acked: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
    let failed: Arc<Mutex<Vec<(usize, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let broker = Arc::new(Mutex::new(broker));
    let (live_ok, verify_ok) = env.block_on(async {
        let producer: Arc<DefaultMQProducer> =
            Arc::new(env.producer(&ns, "compat_brestart_pg").await);
        ensure_topic(&producer, &ns, topic).await;
        let mut consumer = start_concurrent_consumer(
            &env,
            &ns,
            "compat_brestart_live",
            topic,
            "*",
            "live",
            live.clone(),
        )
        .await;

        let stop = Arc::new(AtomicBool::new(false));
        let (p, st, ack, fail) = (
            producer.clone(),
            stop.clone(),
            acked.clone(),
            failed.clone(),
        );
        let sender = tokio::spawn(async move {
            let mut i = 0usize;
            while !st.load(Ordering::SeqCst) {
                match p.send_with_timeout(message(topic, "br", i), 3000).await {
                    Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                        ack.lock().unwrap().push(i)
                    }
                    other => {
                        fail.lock().unwrap().push((i, format!("{other:?}")));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                i += 1;
            }
        });

        let a2 = acked.clone();
        assert!(
            wait_until(Duration::from_secs(60), move || a2.lock().unwrap().len()
                >= BEFORE)
            .await,
            "producer got only {} acks before the restart",
            acked.lock().unwrap().len()
        );
        let acked_at_restart = acked.lock().unwrap().len();
        let b = broker.clone();
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || {
            let mut b = b.lock().unwrap();
            if crash {
                b.restart_crash();
            } else {
                b.restart_clean();
            }
        })
        .await
        .expect("restart");
        let recovery = broker
            .lock()
            .unwrap()
            .read_log()
            .lines()
            .find(|l| l.contains("recovered"))
            .map(str::to_owned)
            .unwrap_or_default();
        eprintln!(
            "[{name}] broker back after {:?}; {acked_at_restart} acked before; {recovery}",
            t0.elapsed()
        );

        let a3 = acked.clone();
        let resumed = wait_until(Duration::from_secs(60), move || {
            a3.lock().unwrap().len() >= acked_at_restart + AFTER
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        sender.await.expect("sender");
        assert!(
            resumed,
            "producer got only {} acks in 60 s after the broker restart; failures: {:?}",
            acked.lock().unwrap().len() - acked_at_restart,
            failed
                .lock()
                .unwrap()
                .iter()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
        );
        let want: HashSet<usize> = acked.lock().unwrap().iter().copied().collect();
        eprintln!(
            "[{name}] acked {} sends, {} failed (during the restart)",
            want.len(),
            failed.lock().unwrap().len()
        );

        // A fresh group reading from the first offset checks what the store holds, apart from
        // the live consumer's reconnection behaviour.
        let mut verifier = start_concurrent_consumer(
            &env,
            &ns,
            "compat_brestart_verify",
            topic,
            "*",
            "verify",
            verify.clone(),
        )
        .await;
        let (l2, w2) = (live.clone(), want.clone());
        let live_ok = wait_until(Duration::from_secs(60), move || ids(&l2).is_superset(&w2)).await;
        let (v2, w3) = (verify.clone(), want.clone());
        let verify_ok =
            wait_until(Duration::from_secs(30), move || ids(&v2).is_superset(&w3)).await;
        consumer.shutdown().await;
        verifier.shutdown().await;
        if let Ok(mut p) = Arc::try_unwrap(producer) {
            p.shutdown().await;
        }
        (live_ok, verify_ok)
    });
    env.shutdown();

    let want: HashSet<usize> = acked.lock().unwrap().iter().copied().collect();
    let live_ids = ids(&live);
    let verify_ids = ids(&verify);
    let mut lost_store: Vec<usize> = want.difference(&verify_ids).copied().collect();
    lost_store.sort_unstable();
    let mut lost_live: Vec<usize> = want.difference(&live_ids).copied().collect();
    lost_live.sort_unstable();
    let broker = broker.lock().unwrap();
    assert!(
        verify_ok && lost_store.is_empty(),
        "{}: {} acknowledged messages are not in the store after the restart (fresh consumer group from the first offset): first {:?}; live consumer missed {}; logs {}",
        name,
        lost_store.len(),
        &lost_store[..lost_store.len().min(10)],
        lost_live.len(),
        broker.dir().display()
    );
    assert!(
        live_ok && lost_live.is_empty(),
        "{}: the consumer running across the restart never got {} acknowledged messages (a fresh group got all): first {:?}; logs {}",
        name,
        lost_live.len(),
        &lost_live[..lost_live.len().min(10)],
        broker.dir().display()
    );
}

/// Item 5a: clean restart (SIGTERM), default ASYNC_FLUSH.
#[test]
fn broker_clean_restart_mid_stream_loses_no_acked_message() {
    broker_restart_mid_stream("broker-sigterm", BrokerOptions::default(), false);
}

/// Item 5b: kill -9 with SYNC_FLUSH: SEND_OK means on disk.
#[test]
fn broker_kill9_sync_flush_mid_stream_loses_no_acked_message() {
    broker_restart_mid_stream(
        "broker-kill9",
        BrokerOptions::default()
            .with("flushDiskType", "SYNC_FLUSH")
            // small commit-log files, so that the stream crosses file boundaries too
            .with("mappedFileSizeCommitLog", &(256 * 1024).to_string()),
        true,
    );
}
