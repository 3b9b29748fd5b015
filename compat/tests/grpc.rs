//! The 5.x gRPC endpoint against the official crates.io `rocketmq` crate (5.0.0, the Apache
//! RocketMQ Rust SDK for the proxy protocol): a real `ferrymq standalone` process serves
//! `apache.rocketmq.v2.MessagingService` on a private port; topics are created with
//! `ferrymq admin updateTopic` because gRPC clients never auto-create them.
//!
//! Covered: route errors for unknown topics, normal sends with tag/keys/properties, batch
//! sends, FIFO sends received in order by an orderly group, transactional sends, a SimpleConsumer receiving and acking everything with
//! bodies intact, redelivery of an unacked message after its invisible time with a higher
//! delivery attempt, a committed transaction becoming visible, and an orphaned transaction
//! resolved by the broker's check relayed over the Telemetry stream.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ferrymq_bin, BrokerOptions, Ferrymq};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::{MessageBuilder, MessageView};
use rocketmq::model::transaction::{Transaction, TransactionResolution};
use rocketmq::{Producer, SimpleConsumer};

/// Upper bound of one receive call (long polling is 5 s, see `client_option`).
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(15);

fn create_topic(broker: &Ferrymq, topic: &str) {
    let out = Command::new(ferrymq_bin())
        .args(["admin", "updateTopic", "-n"])
        .arg(broker.namesrv_addr())
        .args(["-c", "DefaultCluster", "-t", topic, "-r", "4", "-w", "4"])
        .output()
        .expect("run ferrymq admin updateTopic");
    assert!(
        out.status.success(),
        "updateTopic {topic} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create_orderly_group(broker: &Ferrymq, group: &str) {
    let out = Command::new(ferrymq_bin())
        .args(["admin", "updateSubGroup", "-n"])
        .arg(broker.namesrv_addr())
        .args(["-c", "DefaultCluster", "-g", group, "-o", "true"])
        .output()
        .expect("run ferrymq admin updateSubGroup");
    assert!(
        out.status.success(),
        "updateSubGroup {group} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn client_option(broker: &Ferrymq) -> ClientOption {
    let mut o = ClientOption::default();
    o.set_access_url(broker.grpc_addr());
    o.set_enable_tls(false);
    o.set_timeout(Duration::from_secs(5));
    o.set_long_polling_timeout(Duration::from_secs(5));
    o
}

async fn producer(broker: &Ferrymq, topics: &[&str]) -> Producer {
    let mut option = ProducerOption::default();
    option.set_topics(topics.to_vec());
    let mut p = Producer::new(option, client_option(broker)).expect("producer");
    p.start().await.expect("producer start");
    p
}

async fn consumer(broker: &Ferrymq, group: &str, topic: &str) -> SimpleConsumer {
    let mut option = SimpleConsumerOption::default();
    option.set_topics(vec![topic]);
    option.set_consumer_group(group);
    let mut c = SimpleConsumer::new(option, client_option(broker)).expect("consumer");
    c.start().await.expect("consumer start");
    c
}

/// Receives until `want` distinct messages arrived or `timeout` passed, acking each one
/// unless `ack` is false.
async fn receive_all(
    c: &SimpleConsumer,
    topic: &str,
    want: usize,
    invisible: Duration,
    ack: bool,
    timeout: Duration,
) -> HashMap<String, MessageView> {
    let deadline = Instant::now() + timeout;
    let mut got: HashMap<String, MessageView> = HashMap::new();
    let all = FilterExpression::new(FilterType::Tag, "*");
    while got.len() < want && Instant::now() < deadline {
        let batch =
            tokio::time::timeout(RECEIVE_TIMEOUT, c.receive_with(topic, &all, 32, invisible))
                .await
                .expect("receive answered in time")
                .expect("receive");
        for m in batch {
            if ack {
                c.ack(&m).await.expect("ack");
            }
            got.insert(m.message_id().to_owned(), m);
        }
    }
    got
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn unknown_topic_fails_producer_start() {
    let broker = Ferrymq::start("grpc-unknown");
    runtime().block_on(async {
        let mut option = ProducerOption::default();
        option.set_topics(vec!["NoSuchTopic"]);
        let mut p = Producer::new(option, client_option(&broker)).expect("producer");
        let err = p
            .start()
            .await
            .expect_err("start must fail for an unknown topic");
        let text = format!("{err:?}");
        assert!(
            text.contains("40402") || text.contains("TOPIC_NOT_FOUND") || text.contains("NotFound"),
            "{text}"
        );
    });
}

#[test]
fn send_receive_ack_and_redelivery() {
    let broker = Ferrymq::start("grpc-basic");
    let topic = "GrpcTopic";
    create_topic(&broker, topic);
    runtime().block_on(async {
        let p = producer(&broker, &[topic]).await;
        const N: usize = 20;
        let mut sent: HashMap<String, (Vec<u8>, String)> = HashMap::new();
        for i in 0..N {
            let body = format!("grpc message {i} {}", "x".repeat(i * 100)).into_bytes();
            let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
            let msg = MessageBuilder::builder()
                .set_topic(topic)
                .set_body(body.clone())
                .set_tag(tag)
                .set_keys(vec![format!("key-{i}"), format!("alt-{i}")])
                .set_properties(HashMap::from([
                    ("index", i.to_string()),
                    ("origin", "compat".to_owned()),
                ]))
                .build()
                .expect("message");
            let receipt = p.send(msg).await.expect("send");
            assert!(!receipt.message_id().is_empty());
            sent.insert(receipt.message_id().to_owned(), (body, tag.to_owned()));
        }
        // A batch of three in one request.
        let batch: Vec<_> = (0..3)
            .map(|i| {
                MessageBuilder::builder()
                    .set_topic(topic)
                    .set_body(format!("batch {i}").into_bytes())
                    .set_tag("TagC")
                    .build()
                    .expect("message")
            })
            .collect();
        let receipts = p.batch_send(batch).await.expect("batch send");
        assert_eq!(receipts.len(), 3);
        for (i, r) in receipts.iter().enumerate() {
            sent.insert(
                r.message_id().to_owned(),
                (format!("batch {i}").into_bytes(), "TagC".into()),
            );
        }

        let c = consumer(&broker, "GrpcGroup", topic).await;
        let got = receive_all(
            &c,
            topic,
            sent.len(),
            Duration::from_secs(30),
            true,
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(got.len(), sent.len(), "every message received once");
        for (id, m) in &got {
            let (body, tag) = sent
                .get(id)
                .unwrap_or_else(|| panic!("unexpected message {id}"));
            assert_eq!(m.body(), &body[..], "body of {id}");
            assert_eq!(m.tag(), Some(tag.as_str()));
            assert_eq!(m.topic(), topic);
            assert_eq!(m.delivery_attempt(), 1);
            if tag != "TagC" {
                let i = &m.properties()["index"];
                assert_eq!(m.keys(), &[format!("key-{i}"), format!("alt-{i}")]);
                assert_eq!(m.properties()["origin"], "compat");
            }
        }

        // Acked messages do not come back.
        let again = receive_all(
            &c,
            topic,
            1,
            Duration::from_secs(30),
            true,
            Duration::from_secs(6),
        )
        .await;
        assert!(
            again.is_empty(),
            "acked messages redelivered: {:?}",
            again.keys().collect::<Vec<_>>()
        );

        // Not acked within the invisible time: redelivered with a higher attempt.
        let receipt = p
            .send(
                MessageBuilder::builder()
                    .set_topic(topic)
                    .set_body(b"unacked".to_vec())
                    .build()
                    .expect("message"),
            )
            .await
            .expect("send");
        let first = receive_all(
            &c,
            topic,
            1,
            Duration::from_secs(10),
            false,
            Duration::from_secs(20),
        )
        .await;
        let m = first.get(receipt.message_id()).expect("first delivery");
        assert_eq!(m.delivery_attempt(), 1);
        let second = receive_all(
            &c,
            topic,
            1,
            Duration::from_secs(10),
            true,
            Duration::from_secs(40),
        )
        .await;
        let m = second
            .get(receipt.message_id())
            .expect("redelivered after the invisible time");
        assert_eq!(m.body(), b"unacked");
        assert!(
            m.delivery_attempt() >= 2,
            "attempt {}",
            m.delivery_attempt()
        );

        c.shutdown().await.expect("consumer shutdown");
        p.shutdown().await.expect("producer shutdown");
    });
}

#[test]
fn fifo_and_transactional_sends() {
    let broker = Ferrymq::start("grpc-tx");
    let (fifo_topic, tx_topic) = ("GrpcFifo", "GrpcTx");
    create_topic(&broker, fifo_topic);
    create_topic(&broker, tx_topic);
    runtime().block_on(async {
        let p = producer(&broker, &[fifo_topic]).await;
        for i in 0..5 {
            let msg = MessageBuilder::fifo_message_builder(
                fifo_topic,
                format!("fifo {i}").into_bytes(),
                "group-1",
            )
            .build()
            .expect("message");
            p.send(msg).await.expect("fifo send");
        }
        p.shutdown().await.expect("producer shutdown");

        let mut option = ProducerOption::default();
        option.set_topics(vec![tx_topic]);
        let mut tp = Producer::new_transaction_producer(
            option,
            client_option(&broker),
            Box::new(|_, _| TransactionResolution::ROLLBACK),
        )
        .expect("transaction producer");
        tp.start().await.expect("transaction producer start");
        let committed = tp
            .send_transaction_message(
                MessageBuilder::transaction_message_builder(tx_topic, b"committed".to_vec())
                    .build()
                    .expect("message"),
            )
            .await
            .expect("half message");
        let committed_id = committed.message_id().to_owned();
        committed.commit().await.expect("commit");
        let rolled_back = tp
            .send_transaction_message(
                MessageBuilder::transaction_message_builder(tx_topic, b"rolled back".to_vec())
                    .build()
                    .expect("message"),
            )
            .await
            .expect("half message");
        rolled_back.rollback().await.expect("rollback");

        let c = consumer(&broker, "GrpcTxGroup", tx_topic).await;
        let got = receive_all(
            &c,
            tx_topic,
            1,
            Duration::from_secs(30),
            true,
            Duration::from_secs(30),
        )
        .await;
        let ids: HashSet<&String> = got.keys().collect();
        assert!(
            ids.contains(&committed_id),
            "committed message visible: {ids:?}"
        );
        assert_eq!(got[&committed_id].body(), b"committed");
        let more = receive_all(
            &c,
            tx_topic,
            1,
            Duration::from_secs(30),
            true,
            Duration::from_secs(6),
        )
        .await;
        assert!(more.is_empty(), "rolled-back message delivered");
        c.shutdown().await.expect("consumer shutdown");
        tp.shutdown().await.expect("producer shutdown");
    });
}

/// Calls of the checker in `orphaned_transaction_is_checked_over_telemetry`.
static CHECKS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn orphaned_transaction_is_checked_over_telemetry() {
    // Check half messages after 1 s, every second, so the test stays short.
    let options = BrokerOptions::default()
        .with("transactionTimeOut", "1000")
        .with("transactionCheckInterval", "1000");
    let broker = Ferrymq::start_with("grpc-orphan", options);
    let topic = "GrpcOrphan";
    create_topic(&broker, topic);
    runtime().block_on(async {
        let mut option = ProducerOption::default();
        option.set_topics(vec![topic]);
        let mut tp = Producer::new_transaction_producer(
            option,
            client_option(&broker),
            Box::new(|_, message| {
                CHECKS.fetch_add(1, Ordering::SeqCst);
                if message.body() == b"orphan" {
                    TransactionResolution::COMMIT
                } else {
                    TransactionResolution::ROLLBACK
                }
            }),
        )
        .expect("transaction producer");
        tp.start().await.expect("transaction producer start");
        // Sent, never committed or rolled back by the client.
        let half = tp
            .send_transaction_message(
                MessageBuilder::transaction_message_builder(topic, b"orphan".to_vec())
                    .build()
                    .expect("message"),
            )
            .await
            .expect("half message");
        let id = half.message_id().to_owned();
        drop(half);

        let c = consumer(&broker, "GrpcOrphanGroup", topic).await;
        let got = receive_all(
            &c,
            topic,
            1,
            Duration::from_secs(30),
            true,
            Duration::from_secs(45),
        )
        .await;
        assert!(
            got.contains_key(&id),
            "the checker's COMMIT made the message visible (checks: {})",
            CHECKS.load(Ordering::SeqCst)
        );
        assert!(CHECKS.load(Ordering::SeqCst) >= 1);
        c.shutdown().await.expect("consumer shutdown");
        tp.shutdown().await.expect("producer shutdown");
    });
}

#[test]
fn fifo_messages_of_one_group_arrive_in_order() {
    let broker = Ferrymq::start("grpc-fifo");
    let topic = "GrpcFifoOrder";
    let group = "GrpcFifoGroup";
    create_topic(&broker, topic);
    // An orderly group: the proxy pops in order and answers `fifo` in the Settings.
    create_orderly_group(&broker, group);
    runtime().block_on(async {
        let p = producer(&broker, &[topic]).await;
        const N: usize = 10;
        let mut ids = Vec::new();
        for i in 0..N {
            let msg = MessageBuilder::fifo_message_builder(
                topic,
                format!("step {i}").into_bytes(),
                "order-1",
            )
            .build()
            .expect("message");
            ids.push(
                p.send(msg)
                    .await
                    .expect("fifo send")
                    .message_id()
                    .to_owned(),
            );
        }
        let c = consumer(&broker, group, topic).await;
        let all = FilterExpression::new(FilterType::Tag, "*");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut order = Vec::new();
        while order.len() < N && Instant::now() < deadline {
            let batch = tokio::time::timeout(
                RECEIVE_TIMEOUT,
                c.receive_with(topic, &all, 4, Duration::from_secs(20)),
            )
            .await
            .expect("receive answered in time")
            .expect("receive");
            for m in batch {
                assert_eq!(m.message_group(), Some("order-1"));
                order.push(m.message_id().to_owned());
                c.ack(&m).await.expect("ack");
            }
        }
        assert_eq!(order, ids, "messages of one group in send order");
        c.shutdown().await.expect("consumer shutdown");
        p.shutdown().await.expect("producer shutdown");
    });
}
