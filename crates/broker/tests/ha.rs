//! Classic master/slave replication end to end: a real NameServer, a master and a slave broker
//! on ephemeral ports with separate store directories, and the Rust client.
//!
//! Every wait polls with a deadline, so a failure is a bounded timeout, never a hang.

use std::path::Path;
use std::time::{Duration, Instant};

use ferrymq_broker::{Broker, BrokerConfig};
use ferrymq_client::consumer::{ConsumeFrom, LitePullConsumer};
use ferrymq_client::producer::SendStatus;
use ferrymq_client::{Message, Producer};
use ferrymq_namesrv::{NameServer, NamesrvConfig};
use ferrymq_protocol::header::GetRouteInfoRequestHeader;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

mod common;

const SEGMENT: u64 = 1 << 20;
const FIRST_SEGMENT: &str = "commitlog/00000000000000000000";

async fn namesrv(dir: &Path) -> NameServer {
    let config = NamesrvConfig {
        kv_config_path: dir.join("kvConfig.json").to_string_lossy().into_owned(),
        ..NamesrvConfig::default()
    };
    NameServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn broker_config(namesrv: &str, dir: &Path, role: &str, id: i64) -> BrokerConfig {
    BrokerConfig {
        broker_name: "ha-broker".into(),
        broker_role: role.into(),
        broker_id: id,
        namesrv_addr: Some(namesrv.to_owned()),
        mapped_file_size_commit_log: SEGMENT,
        ha_send_heartbeat_interval: 200,
        sync_flush_timeout: 3000,
        ..common::test_config(dir)
    }
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn same_commit_log(master: &Path, slave: &Path) -> bool {
    match (
        std::fs::read(master.join(FIRST_SEGMENT)),
        std::fs::read(slave.join(FIRST_SEGMENT)),
    ) {
        (Ok(m), Ok(s)) => m == s,
        _ => false,
    }
}

/// Waits until the NameServer routes TBW102 (so auto-created topics) to `broker`.
async fn registered(namesrv: &str, broker: &Broker) {
    let header = GetRouteInfoRequestHeader {
        topic: "TBW102".into(),
        accept_standard_json_only: None,
    };
    wait_for("registration", Duration::from_secs(15), async || {
        let req = RemotingCommand::request_with_header(RequestCode::GetRouteinfoByTopic, &header);
        let resp = call(namesrv, req).await;
        String::from_utf8_lossy(&resp.body.to_bytes()).contains(broker.broker_addr())
    })
    .await;
}

async fn producer(namesrv: &str) -> Producer {
    Producer::builder("ha-producer")
        .namesrv_addr(namesrv)
        .send_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

async fn send_all(p: &Producer, range: std::ops::Range<usize>) {
    for i in range {
        let r = p
            .send(Message::new("HaTopic", format!("message-{i}")))
            .await
            .unwrap();
        assert_eq!(r.status, SendStatus::SendOk, "message {i}");
    }
}

/// A raw SEND_MESSAGE_V2 to one broker address.
async fn raw_send(addr: &str, topic: &str) -> RemotingCommand {
    call(addr, common::send_request(topic, b"x", "", 0)).await
}

async fn call(addr: &str, req: RemotingCommand) -> RemotingCommand {
    let client = RemotingClient::new(ClientConfig::default());
    let resp = client
        .invoke(addr, req, Duration::from_secs(5))
        .await
        .unwrap();
    client.shutdown();
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_replicates_refuses_writes_resumes_and_serves_after_master_loss() {
    let ns_dir = tempfile::tempdir().unwrap();
    let mdir = tempfile::tempdir().unwrap();
    let sdir = tempfile::tempdir().unwrap();
    let ns = namesrv(ns_dir.path()).await;
    let ns_addr = ns.local_addr().to_string();

    let master = Broker::start(broker_config(&ns_addr, mdir.path(), "ASYNC_MASTER", 0))
        .await
        .unwrap();
    registered(&ns_addr, &master).await;
    let p = producer(&ns_addr).await;
    send_all(&p, 0..30).await;

    // The master is registered by now, so the slave learns it from its first registration.
    let slave_config = broker_config(&ns_addr, sdir.path(), "SLAVE", 1);
    let slave = Broker::start(slave_config.clone()).await.unwrap();
    let slave_addr = slave.broker_addr().to_owned();
    wait_for("the slave's copy", Duration::from_secs(15), async || {
        same_commit_log(mdir.path(), sdir.path())
    })
    .await;
    assert!(slave.ha_status().connected_to_master);

    // A slave takes no writes of its own.
    let refused = raw_send(&slave_addr, "HaTopic").await;
    assert_eq!(refused.response_code(), ResponseCode::ServiceNotAvailable);
    assert!(
        refused.remark.as_deref().unwrap_or("").contains("slave"),
        "{:?}",
        refused.remark
    );

    // A restarted slave resumes from its own end.
    slave.shutdown().await;
    send_all(&p, 30..40).await;
    let slave = Broker::start(slave_config).await.unwrap();
    let slave_addr = slave.broker_addr().to_owned();
    wait_for(
        "the restarted slave's copy",
        Duration::from_secs(15),
        async || same_commit_log(mdir.path(), sdir.path()),
    )
    .await;

    // The slave copies topics (and groups, offsets) from its master.
    wait_for(
        "the slave's metadata sync",
        Duration::from_secs(15),
        async || {
            let resp = call(
                &slave_addr,
                RemotingCommand::request(RequestCode::GetAllTopicConfig),
            )
            .await;
            String::from_utf8_lossy(&resp.body.to_bytes()).contains("\"HaTopic\"")
        },
    )
    .await;

    // The master goes away; everything can still be consumed from the slave.
    p.shutdown().await;
    master.shutdown().await;
    let consumer = LitePullConsumer::builder("ha-consumer")
        .namesrv_addr(&ns_addr)
        .consume_from(ConsumeFrom::FirstOffset)
        .start()
        .await
        .unwrap();
    consumer.subscribe("HaTopic", "*").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    wait_for(
        "consumption from the slave",
        Duration::from_secs(30),
        async || {
            for m in consumer
                .poll(Duration::from_millis(200))
                .await
                .unwrap_or_default()
            {
                seen.insert(String::from_utf8_lossy(m.body()).into_owned());
            }
            seen.len() == 40
        },
    )
    .await;
    assert!(seen.contains("message-0") && seen.contains("message-39"));
    consumer.shutdown().await;
    slave.shutdown().await;
    ns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_answers_slave_not_available_until_a_slave_acks() {
    let ns_dir = tempfile::tempdir().unwrap();
    let mdir = tempfile::tempdir().unwrap();
    let sdir = tempfile::tempdir().unwrap();
    let ns = namesrv(ns_dir.path()).await;
    let ns_addr = ns.local_addr().to_string();
    let master = Broker::start(broker_config(&ns_addr, mdir.path(), "SYNC_MASTER", 0))
        .await
        .unwrap();
    registered(&ns_addr, &master).await;
    let p = producer(&ns_addr).await;

    // No slave: stored, but SLAVE_NOT_AVAILABLE.
    let r = p.send(Message::new("SyncTopic", "alone")).await.unwrap();
    assert_eq!(r.status, SendStatus::SlaveNotAvailable);

    let slave = Broker::start(broker_config(&ns_addr, sdir.path(), "SLAVE", 1))
        .await
        .unwrap();
    wait_for(
        "the slave to connect",
        Duration::from_secs(15),
        async || {
            master
                .ha_status()
                .slaves
                .iter()
                .any(|(_, acked)| *acked >= 0)
        },
    )
    .await;
    for i in 0..10 {
        let r = p
            .send(Message::new("SyncTopic", format!("replicated-{i}")))
            .await
            .unwrap();
        assert_eq!(r.status, SendStatus::SendOk, "message {i}");
    }
    wait_for("the slave's copy", Duration::from_secs(15), async || {
        same_commit_log(mdir.path(), sdir.path())
    })
    .await;
    p.shutdown().await;
    slave.shutdown().await;
    master.shutdown().await;
    ns.shutdown().await;
}
