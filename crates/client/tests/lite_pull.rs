//! Lite pull consumers against an in-process NameServer and broker: assigned queues with poll,
//! commit and seek; subscriptions shared by a group; the low-level single pull.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{messages, unique, Cluster};
use ferrymq_client::consumer::{ConsumeFrom, LitePullConsumer, PullStatus};
use ferrymq_client::{ClientError, MessageExt, Producer};

/// Polls until `n` messages arrived (or 20 s passed).
async fn poll_n(c: &LitePullConsumer, n: usize) -> Vec<MessageExt> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} polled",
            out.len()
        );
        out.extend(c.poll(Duration::from_millis(500)).await.unwrap());
    }
    out
}

fn bodies(msgs: &[MessageExt]) -> HashSet<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_poll_commit_seek_and_low_level_pull() {
    let cluster = Cluster::start(1).await;
    let topic = unique("LiteT");
    cluster.create_topic(&topic, 2).await;
    let p = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    for m in messages(&topic, "A", "l", 20) {
        p.send(m).await.unwrap();
    }
    let group = unique("lg");
    let c = LitePullConsumer::builder(&group)
        .options(cluster.options())
        .consume_from(ConsumeFrom::FirstOffset)
        .auto_commit(false)
        .start()
        .await
        .unwrap();
    let queues = c.fetch_queues(&topic).await.unwrap();
    assert_eq!(queues.len(), 2);
    c.assign(queues.clone()).await.unwrap();
    assert_eq!(c.assignment(), queues);

    let got = poll_n(&c, 20).await;
    assert_eq!(got.len(), 20, "no duplicates");
    assert_eq!(bodies(&got).len(), 20);
    // Per queue in offset order.
    for q in &queues {
        let offs: Vec<i64> = got
            .iter()
            .filter(|m| m.queue_id == q.queue_id)
            .map(|m| m.queue_offset)
            .collect();
        assert_eq!(offs, (0..offs.len() as i64).collect::<Vec<_>>());
    }
    assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());

    // Nothing is committed until commit().
    assert_eq!(c.committed(&queues[0]).await.unwrap(), None);
    c.commit().await.unwrap();
    let total: i64 = {
        let mut t = 0;
        for q in &queues {
            t += c.committed(q).await.unwrap().unwrap();
        }
        t
    };
    assert_eq!(total, 20);

    // Seek back: the queue is read again from there.
    let q0 = &queues[0];
    let in_q0 = got.iter().filter(|m| m.queue_id == q0.queue_id).count() as i64;
    c.seek(q0, in_q0 - 3).await.unwrap();
    let again = poll_n(&c, 3).await;
    assert_eq!(
        again.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        vec![in_q0 - 3, in_q0 - 2, in_q0 - 1]
    );
    let err = c.seek(q0, in_q0 + 100).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    c.seek_to_end(q0).await.unwrap();
    c.seek_to_begin(q0).await.unwrap();
    assert_eq!(poll_n(&c, in_q0 as usize).await.len(), in_q0 as usize);

    // The low-level pull reads anywhere, without assignment or offsets.
    let r = c.pull(q0, "*", 1, 4).await.unwrap();
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(r.messages.len(), 4);
    assert_eq!(r.messages[0].queue_offset, 1);
    assert_eq!(r.next_begin_offset, 5);
    assert_eq!(r.max_offset, in_q0);
    let r = c.pull(q0, "*", in_q0, 4).await.unwrap();
    assert_eq!(r.status, PullStatus::NoNewMessage);
    let r = c.pull(q0, "Nope", 0, 4).await.unwrap();
    assert!(r.messages.is_empty(), "tag filter applies");
    let r = c.pull(q0, "*", in_q0 + 50, 4).await.unwrap();
    assert_eq!(r.status, PullStatus::OffsetIllegal);
    assert_eq!(r.next_begin_offset, in_q0);

    c.shutdown().await;
    assert!(matches!(
        c.poll(Duration::from_millis(10)).await,
        Err(ClientError::Shutdown)
    ));
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_group_shares_queues_and_auto_commits() {
    let cluster = Cluster::start(1).await;
    let topic = unique("LiteSubT");
    cluster.create_topic(&topic, 4).await;
    let group = unique("lsg");
    let start = || async {
        let c = LitePullConsumer::builder(&group)
            .options(cluster.options())
            .consume_from(ConsumeFrom::FirstOffset)
            .auto_commit_interval(Duration::from_millis(200))
            .start()
            .await
            .unwrap();
        c.subscribe(&topic, "*").await.unwrap();
        c
    };
    let a = start().await;
    let b = start().await;
    common::eventually(Duration::from_secs(15), "queues split 2/2", || async {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    let p = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    for m in messages(&topic, "A", "s", 40) {
        p.send(m).await.unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 40 {
        assert!(Instant::now() < deadline, "only {} polled", got.len());
        got.extend(a.poll(Duration::from_millis(200)).await.unwrap());
        got.extend(b.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(got.len(), 40);
    assert_eq!(bodies(&got).len(), 40);
    // Auto-commit reaches the broker.
    let queues = a.fetch_queues(&topic).await.unwrap();
    common::eventually(Duration::from_secs(10), "offsets committed", || async {
        let mut t = 0;
        for q in &queues {
            t += a.committed(q).await.unwrap().unwrap_or(0);
        }
        t == 40
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

/// A new group that starts from a timestamp gets only what was stored at or after it, even on
/// a young queue (whose first message is still in memory), where a LAST_OFFSET group still
/// starts at 0 by RocketMQ's young-queue rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_from_timestamp_on_a_young_queue_skips_older_messages() {
    let cluster = Cluster::start(1).await;
    let topic = unique("LiteTsT");
    cluster.create_topic(&topic, 1).await;
    let p = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    for m in messages(&topic, "A", "old", 5) {
        p.send(m).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let from = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for m in messages(&topic, "A", "new", 5) {
        p.send(m).await.unwrap();
    }
    let consume = |group: String, from: ConsumeFrom, want: usize| {
        let options = cluster.options();
        let topic = topic.clone();
        async move {
            let c = LitePullConsumer::builder(&group)
                .options(options)
                .consume_from(from)
                .start()
                .await
                .unwrap();
            c.subscribe(&topic, "*").await.unwrap();
            let got = poll_n(&c, want).await;
            // Nothing more arrives.
            let extra = c.poll(Duration::from_millis(500)).await.unwrap();
            c.shutdown().await;
            (bodies(&got), extra.len())
        }
    };
    let (got, extra) = consume(unique("tsg"), ConsumeFrom::Timestamp(from), 5).await;
    assert_eq!(extra, 0);
    assert!(got.iter().all(|b| b.starts_with("new")), "{got:?}");
    assert_eq!(got.len(), 5);
    let (got, extra) = consume(unique("lastg"), ConsumeFrom::LastOffset, 10).await;
    assert_eq!(
        (got.len(), extra),
        (10, 0),
        "young-queue rule kept for LAST_OFFSET"
    );
    p.shutdown().await;
    cluster.shutdown().await;
}
