//! Message trace end to end against a real `ferrymq standalone` (`traceTopicEnable=true`): a
//! producer and a push consumer with tracing on write Pub, SubBefore and SubAfter records to
//! `RMQ_SYS_TRACE_TOPIC`, and `ferrymq admin queryMsgTraceById` finds them by message id. A
//! record written in the Java client's own layout (as another client would) is found too.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrymq_client::{ConsumeResult, Message, MessageExt, Producer, PushConsumer, SendStatus};
use serde_json::Value;

mod common;

use common::{Proc, BIN};
const TOPIC: &str = "TracedTopic";

fn start(dir: &Path) -> (Proc, String) {
    common::standalone(
        dir,
        "TraceCluster",
        "trace-b",
        "traceTopicEnable=true\n",
        &["--no-grpc", "--no-dashboard"],
    )
}

/// `ferrymq admin queryMsgTraceById -i id --json`, or `None` while nothing is found.
fn trace_of(namesrv: &str, id: &str) -> Option<Vec<Value>> {
    let out = Command::new(BIN)
        .args([
            "admin",
            "queryMsgTraceById",
            "-i",
            id,
            "--json",
            "-n",
            namesrv,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()?
        .as_array()
        .cloned()
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn types(records: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = records
        .iter()
        .map(|r| r["traceType"].as_str().unwrap_or("").to_owned())
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_and_consumption_are_traced_and_found_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, namesrv) = start(dir.path());
    let producer = Producer::builder("tracedProducer")
        .namesrv_addr(namesrv.as_str())
        .enable_msg_trace(true)
        .start()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let m = Message::new(TOPIC, "traced-0").with_keys(["order-0"]);
        match producer.send(m).await {
            Ok(r) if r.status == SendStatus::SendOk => break r,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("first send failed: {other:?}"),
        }
    };
    let mut ids = vec![first.msg_id.clone()];
    for i in 1..3 {
        let m = Message::new(TOPIC, format!("traced-{i}")).with_keys([format!("order-{i}")]);
        ids.push(producer.send(m).await.unwrap().msg_id);
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let consumer = PushConsumer::builder("tracedConsumer")
        .namesrv_addr(namesrv.as_str())
        .subscribe(TOPIC, "*")
        .consume_from(ferrymq_client::ConsumeFrom::FirstOffset)
        .enable_msg_trace(true)
        .start(move |msgs: &[MessageExt]| {
            s.lock()
                .unwrap()
                .extend(msgs.iter().map(|m| m.msg_id().to_owned()));
            ConsumeResult::Success
        })
        .await
        .unwrap();
    eventually("all three consumed", || {
        (seen.lock().unwrap().len() >= 3).then_some(())
    })
    .await;

    for id in &ids {
        let records = eventually("the full trace", || {
            trace_of(&namesrv, id).filter(|r| types(r) == ["Pub", "SubAfter", "SubBefore"])
        })
        .await;
        let publish = records.iter().find(|r| r["traceType"] == "Pub").unwrap();
        assert_eq!(publish["group"], "tracedProducer");
        assert_eq!(publish["topic"], TOPIC);
        assert_eq!(publish["success"], true);
        assert!(!publish["offsetMsgId"].as_str().unwrap().is_empty());
        let after = records
            .iter()
            .find(|r| r["traceType"] == "SubAfter")
            .unwrap();
        assert_eq!(after["group"], "tracedConsumer");
        assert_eq!(after["success"], true);
        let before = records
            .iter()
            .find(|r| r["traceType"] == "SubBefore")
            .unwrap();
        assert_eq!(before["requestId"], after["requestId"]);
    }
    consumer.shutdown().await;

    // A record another client wrote, in the Java client's layout (5.x Pub with clientHost),
    // keyed by the message id as Java's dispatcher does.
    let foreign_id = "7F0000010001180A1B2C3D4E5F600000";
    let record = [
        "Pub",
        "1700000000000",
        "DefaultRegion",
        "javaProducer",
        TOPIC,
        foreign_id,
        "TagA",
        "k1",
        "10.0.0.1:10911",
        "64",
        "4",
        "0",
        "0A0000010000291F0000000000000000",
        "true",
        "10.0.0.9@12345",
    ]
    .join("\u{1}")
        + "\u{2}";
    let r = producer
        .send(Message::new("RMQ_SYS_TRACE_TOPIC", record).with_keys([foreign_id, "k1"]))
        .await
        .unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    let records = eventually("the foreign record", || trace_of(&namesrv, foreign_id)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["group"], "javaProducer");
    assert_eq!(records[0]["clientHost"], "10.0.0.9@12345");
    producer.shutdown().await;
}
