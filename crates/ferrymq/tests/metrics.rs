//! `/metrics` of a real `ferrymq standalone` process (`metricsExporterType=PROM`): scraped while
//! messages flow, the RocketMQ 5.x series must count exactly what was sent and consumed, the
//! latency histogram must have seen every send, and consumer lag must fall to zero.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ferrymq_client::{Message, Producer, SendStatus};

mod common;

use common::{free_port, Proc};
const TOPIC: &str = "MetricsTopic";
const GROUP: &str = "metricsGroup";
const BODY: &str = "0123456789abcdef0123456789abcdef"; // 32 bytes

fn start(dir: &Path) -> (Proc, String, u16) {
    let (metrics, grpc) = (free_port(), free_port());
    let (proc, namesrv) = common::standalone(
        dir,
        "MetricsCluster",
        "metrics-b",
        &format!("metricsExporterType=PROM\nmetricsPromExporterPort={metrics}\n"),
        &[
            "--grpc-listen",
            &format!("127.0.0.1:{grpc}"),
            "--no-dashboard",
        ],
    );
    (proc, namesrv, metrics)
}

/// GET /metrics over a plain socket; `None` until the endpoint answers.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The value of the series `name` whose labels contain every `label="value"` of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| v.parse().ok())?
        })
        .next()
}

async fn eventually(what: &str, mut f: impl FnMut() -> Option<()>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while f().is_none() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_flows() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, namesrv, port) = start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(port).is_none() {
        // On failure the server's log is printed as the process is dropped.
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the metrics endpoint on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer = Producer::builder("metricsProducer")
        .namesrv_addr(namesrv.as_str())
        .start()
        .await
        .unwrap();
    // The route may take a moment to appear (the topic is created by the first send).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match producer.send(Message::new(TOPIC, BODY)).await {
            Ok(r) if r.status == SendStatus::SendOk => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("first send failed: {other:?}"),
        }
    }
    let topic = [("topic", TOPIC)];
    for round in 1..=2u64 {
        for _ in 0..if round == 1 { 99 } else { 100 } {
            let r = producer.send(Message::new(TOPIC, BODY)).await.unwrap();
            assert_eq!(r.status, SendStatus::SendOk);
        }
        // Sends are synchronous: the counters are exact after them.
        let text = scrape(port).unwrap();
        let sent = (round * 100) as f64;
        assert_eq!(
            value(&text, "rocketmq_messages_in_total", &topic),
            Some(sent)
        );
        assert_eq!(
            value(&text, "rocketmq_throughput_in_total", &topic),
            Some(sent * BODY.len() as f64)
        );
        let sends = value(
            &text,
            "rocketmq_rpc_latency_count",
            &[("request_code", "310"), ("response_code", "0")],
        )
        .unwrap_or(0.0);
        assert!(sends >= sent, "rpc latency saw {sends} sends of {sent}");
        let send_series = [
            ("request_code", "310"),
            ("response_code", "0"),
            ("le", "+Inf"),
        ];
        assert_eq!(
            value(&text, "rocketmq_rpc_latency_bucket", &send_series),
            Some(sends),
            "the +Inf bucket holds every observation"
        );
        assert!(text.contains("node_type=\"broker\""));
        assert!(text.contains("rocketmq_namesrv_broker_number"));
        // Appends held the commit-log lock for some time; none holds it between sends.
        let held = value(
            &text,
            "rocketmq_storage_pagecache_lock_held_microseconds_total",
            &[],
        )
        .unwrap_or(0.0);
        assert!(held > 0.0, "the commit-log lock was never seen held");
        assert_eq!(
            value(
                &text,
                "rocketmq_storage_pagecache_lock_time_milliseconds",
                &[]
            ),
            Some(0.0)
        );
        // The gRPC endpoint of the same process reports on the same page.
        assert_eq!(
            value(&text, "rocketmq_proxy_up", &[("node_type", "proxy")]),
            Some(1.0)
        );
    }
    producer.shutdown().await;

    let (consumer, got) = common::consume(&namesrv, GROUP, TOPIC, 200).await;
    assert_eq!(got, 200);
    let consumed = [("topic", TOPIC), ("consumer_group", GROUP)];
    eventually("out counters and zero lag", || {
        let text = scrape(port)?;
        let out = value(&text, "rocketmq_messages_out_total", &consumed)?;
        let lag = value(&text, "rocketmq_consumer_lag_messages", &consumed)?;
        (out == 200.0 && lag == 0.0).then_some(())
    })
    .await;
    let text = scrape(port).unwrap();
    // Out bytes are whole stored records, so more than the bodies alone.
    let out_bytes = value(&text, "rocketmq_throughput_out_total", &consumed).unwrap();
    assert!(out_bytes > 200.0 * BODY.len() as f64, "{out_bytes}");
    consumer.shutdown().await;
}
