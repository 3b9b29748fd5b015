//! Transactional producers against an in-process NameServer and broker: commit, rollback, and
//! the broker's check-back of a transaction left open, answered by the producer's checker.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, unique, Cluster};
use ferrymq_client::consumer::{LitePullConsumer, PullStatus};
use ferrymq_client::{
    Message, MessageExt, MessageQueue, SendStatus, TransactionProducer, TransactionState,
};

/// Every message currently readable in `topic`.
async fn read_all(reader: &LitePullConsumer, queues: &[MessageQueue]) -> Vec<MessageExt> {
    let mut out = Vec::new();
    for q in queues {
        let r = reader.pull(q, "*", 0, 32).await.unwrap();
        if r.status == PullStatus::Found {
            out.extend(r.messages);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_rollback() {
    let cluster = Cluster::start(1).await;
    let topic = unique("TxT");
    cluster.create_topic(&topic, 2).await;
    let producer = TransactionProducer::builder(unique("txg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let reader = LitePullConsumer::builder(unique("reader"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let queues = reader.fetch_queues(&topic).await.unwrap();

    let r = producer
        .send_in_transaction(Message::new(&topic, "committed").with_tags("T"), |res| {
            assert_eq!(res.status, SendStatus::SendOk);
            TransactionState::Commit
        })
        .await
        .unwrap();
    assert_eq!(r.state, TransactionState::Commit);
    let tx_id = r.send_result.msg_id.clone();
    let half = producer
        .send_half(Message::new(&topic, "rolled back"))
        .await
        .unwrap();
    // Half messages are invisible until committed.
    assert!(read_all(&reader, &queues)
        .await
        .iter()
        .all(|m| &m.body()[..] != b"rolled back"));
    half.rollback().await.unwrap();
    let half = producer
        .send_half(Message::new(&topic, "committed later"))
        .await
        .unwrap();
    half.commit().await.unwrap();

    eventually(
        Duration::from_secs(10),
        "two committed messages",
        || async { read_all(&reader, &queues).await.len() == 2 },
    )
    .await;
    let msgs = read_all(&reader, &queues).await;
    let mut bodies: Vec<_> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["committed", "committed later"]);
    let committed = msgs.iter().find(|m| &m.body()[..] == b"committed").unwrap();
    assert_eq!(
        committed.msg_id(),
        tx_id,
        "the transaction id is the UNIQ_KEY"
    );
    assert_eq!(committed.tags(), Some("T"));
    reader.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_is_checked_back_and_committed() {
    let cluster = Cluster::start_with(1, |c| {
        c.transaction_check_interval = 200;
        c.transaction_time_out = 300;
    })
    .await;
    let topic = unique("TxCheckT");
    cluster.create_topic(&topic, 1).await;
    let checks = Arc::new(AtomicUsize::new(0));
    let seen_checks = checks.clone();
    let producer = TransactionProducer::builder(unique("txc"))
        .options(cluster.options())
        .checker(move |msg: &MessageExt| {
            seen_checks.fetch_add(1, Ordering::SeqCst);
            if &msg.body()[..] == b"commit me" {
                TransactionState::Commit
            } else {
                TransactionState::Rollback
            }
        })
        .start()
        .await
        .unwrap();
    let reader = LitePullConsumer::builder(unique("reader"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let queues = reader.fetch_queues(&topic).await.unwrap();
    let a = producer
        .send_half(Message::new(&topic, "commit me"))
        .await
        .unwrap();
    a.end(TransactionState::Unknown).await.unwrap();
    producer
        .send_half(Message::new(&topic, "roll me back"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "checked back and committed",
        || async { read_all(&reader, &queues).await.len() == 1 },
    )
    .await;
    let msgs = read_all(&reader, &queues).await;
    assert_eq!(&msgs[0].body()[..], b"commit me");
    assert_eq!(msgs[0].msg_id(), a.result().msg_id);
    assert!(checks.load(Ordering::SeqCst) >= 2);
    // The rolled-back one never shows up, even after further check rounds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(read_all(&reader, &queues).await.len(), 1);
    reader.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}
