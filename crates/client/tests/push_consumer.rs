//! Push consumers against an in-process NameServer and broker: clustering groups sharing a
//! topic, tag filters, broadcasting, orderly consumption, redelivery through the retry topic,
//! rebalancing as members join and leave, and pulled batches split into listener calls.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, messages, unique, Cluster};
use ferrymq_client::consumer::{
    ConsumeFrom, ConsumeResult, Expression, MessageModel, PushConsumer,
};
use ferrymq_client::{Message, MessageExt, Producer};

/// One delivery: (body, topic, reconsume times, queue id).
type Delivery = (String, String, i32, i32);

/// What a listener saw, in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Delivery>>>);

impl Seen {
    fn record(&self, msgs: &[MessageExt]) {
        let mut v = self.0.lock().unwrap();
        for m in msgs {
            v.push((
                String::from_utf8_lossy(m.body()).into_owned(),
                m.topic().to_owned(),
                m.reconsume_times,
                m.queue_id,
            ));
        }
    }
    fn bodies(&self) -> HashSet<String> {
        self.0.lock().unwrap().iter().map(|e| e.0.clone()).collect()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn all(&self) -> Vec<Delivery> {
        self.0.lock().unwrap().clone()
    }
}

fn listener(seen: &Seen) -> impl Fn(&[MessageExt]) -> ConsumeResult + Send + Sync + 'static {
    let seen = seen.clone();
    move |msgs: &[MessageExt]| {
        seen.record(msgs);
        ConsumeResult::Success
    }
}

async fn producer(cluster: &Cluster) -> Producer {
    Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap()
}

fn expected(prefix: &str, n: usize) -> HashSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustering_group_receives_everything_once_between_members() {
    let cluster = Cluster::start(1).await;
    let topic = unique("PushT");
    cluster.create_topic(&topic, 4).await;
    let group = unique("cg");
    let (a, b) = (Seen::default(), Seen::default());
    let mut consumers = Vec::new();
    for seen in [&a, &b] {
        consumers.push(
            PushConsumer::builder(&group)
                .options(cluster.options())
                .subscribe(&topic, "*")
                .consume_from(ConsumeFrom::FirstOffset)
                .start(listener(seen))
                .await
                .unwrap(),
        );
    }
    // Both members hold two queues each before anything is sent.
    eventually(Duration::from_secs(15), "queues split 2/2", || async {
        consumers.iter().all(|c| {
            c.assigned_queues()
                .iter()
                .filter(|q| q.topic == topic)
                .count()
                == 2
        })
    })
    .await;
    let p = producer(&cluster).await;
    for m in messages(&topic, "A", "m", 80) {
        p.send(m).await.unwrap();
    }
    eventually(Duration::from_secs(20), "all 80 consumed", || async {
        a.len() + b.len() >= 80
    })
    .await;
    let mut all = a.bodies();
    all.extend(b.bodies());
    assert_eq!(all, expected("m", 80));
    assert!(a.len() > 0 && b.len() > 0, "both members consumed");
    assert_eq!(a.len() + b.len(), 80, "no duplicates without rebalancing");
    // Offsets committed on shutdown: a new member of the group starts after them.
    for c in &consumers {
        c.shutdown().await;
    }
    let late = Seen::default();
    let c = PushConsumer::builder(&group)
        .options(cluster.options())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(listener(&late))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "late member owns all queues",
        || async {
            c.assigned_queues()
                .iter()
                .filter(|q| q.topic == topic)
                .count()
                == 4
        },
    )
    .await;
    p.send(Message::new(&topic, "after")).await.unwrap();
    eventually(
        Duration::from_secs(15),
        "late member sees the new message",
        || async { late.bodies().contains("after") },
    )
    .await;
    assert_eq!(late.len(), 1, "nothing consumed twice: {:?}", late.all());
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filter_selects_messages() {
    let cluster = Cluster::start(1).await;
    let topic = unique("TagT");
    cluster.create_topic(&topic, 2).await;
    let seen = Seen::default();
    let c = PushConsumer::builder(unique("cg"))
        .options(cluster.options())
        .subscribe(&topic, Expression::tags("TagA || TagC"))
        .consume_from(ConsumeFrom::FirstOffset)
        .start(listener(&seen))
        .await
        .unwrap();
    let p = producer(&cluster).await;
    for tag in ["TagA", "TagB", "TagC"] {
        for m in messages(&topic, tag, tag, 10) {
            p.send(m).await.unwrap();
        }
    }
    p.send(Message::new(&topic, "untagged")).await.unwrap();
    let mut want = expected("TagA", 10);
    want.extend(expected("TagC", 10));
    eventually(
        Duration::from_secs(15),
        "TagA and TagC consumed",
        || async { seen.bodies() == want },
    )
    .await;
    // A last TagA message marks the end: nothing filtered out was delivered meanwhile.
    p.send(Message::new(&topic, "end").with_tags("TagA"))
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "end marker", || async {
        seen.bodies().contains("end")
    })
    .await;
    assert_eq!(seen.len(), 21, "{:?}", seen.all());
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_delivers_everything_to_every_member() {
    let cluster = Cluster::start(1).await;
    let topic = unique("BcT");
    cluster.create_topic(&topic, 3).await;
    let group = unique("bg");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Seen::default(), Seen::default());
    let mut consumers = Vec::new();
    for seen in [&a, &b] {
        consumers.push(
            PushConsumer::builder(&group)
                .options(cluster.options())
                .subscribe(&topic, "*")
                .message_model(MessageModel::Broadcasting)
                .consume_from(ConsumeFrom::FirstOffset)
                .offset_store_dir(dir.path())
                .persist_interval(Duration::from_millis(200))
                .start(listener(seen))
                .await
                .unwrap(),
        );
    }
    let p = producer(&cluster).await;
    for m in messages(&topic, "A", "b", 30) {
        p.send(m).await.unwrap();
    }
    eventually(Duration::from_secs(15), "both saw all 30", || async {
        a.bodies() == expected("b", 30) && b.bodies() == expected("b", 30)
    })
    .await;
    assert!(
        consumers[0].assigned_queues().len() == 3,
        "broadcasting owns every queue, no retry topic"
    );
    // Offsets are kept in local files, one per client.
    for c in &consumers {
        c.shutdown().await;
    }
    let files: Vec<_> = walk(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with("{\"offsetTable\":{{"), "{text}");
    p.shutdown().await;
    cluster.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_consumption_keeps_per_key_order() {
    let cluster = Cluster::start(1).await;
    let topic = unique("OrdT");
    cluster.create_topic(&topic, 4).await;
    let p = producer(&cluster).await;
    let keys = ["k0", "k1", "k2", "k3", "k4"];
    for i in 0..20 {
        for k in keys {
            p.send_ordered(Message::new(&topic, format!("{k}:{i}")), k)
                .await
                .unwrap();
        }
    }
    let seen = Seen::default();
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let overlap = Arc::new(Mutex::new(false));
    let (s, f, o) = (seen.clone(), in_flight.clone(), overlap.clone());
    let c = PushConsumer::builder(unique("og"))
        .options(cluster.options())
        .subscribe(&topic, "*")
        .orderly(true)
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |msgs: &[MessageExt]| {
            let q = msgs[0].queue_id;
            if !f.lock().unwrap().insert(q) {
                *o.lock().unwrap() = true;
            }
            std::thread::sleep(Duration::from_millis(1));
            s.record(msgs);
            f.lock().unwrap().remove(&q);
            ConsumeResult::Success
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "100 consumed", || async {
        seen.len() >= 100
    })
    .await;
    assert!(!*overlap.lock().unwrap(), "one batch per queue at a time");
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (body, ..) in seen.all() {
        let (k, i) = body.split_once(':').unwrap();
        per_key
            .entry(k.into())
            .or_default()
            .push(i.parse().unwrap());
    }
    for (k, seq) in per_key {
        assert_eq!(seq, (0..20).collect::<Vec<_>>(), "order of {k}");
    }
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconsume_later_redelivers_through_the_retry_topic() {
    let cluster = Cluster::start(1).await;
    let topic = unique("RetryT");
    cluster.create_topic(&topic, 2).await;
    let seen = Seen::default();
    let failed_once = Arc::new(Mutex::new(HashSet::new()));
    let (s, f) = (seen.clone(), failed_once.clone());
    let c = PushConsumer::builder(unique("rg"))
        .options(cluster.options())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |msgs: &[MessageExt]| {
            s.record(msgs);
            let first = f.lock().unwrap().insert(msgs[0].msg_id().to_owned());
            if first {
                ConsumeResult::ReconsumeLater
            } else {
                ConsumeResult::Success
            }
        })
        .await
        .unwrap();
    let p = producer(&cluster).await;
    let mut ids = HashSet::new();
    for m in messages(&topic, "A", "r", 5) {
        ids.insert(p.send(m).await.unwrap().msg_id);
    }
    eventually(
        Duration::from_secs(30),
        "each message delivered twice",
        || async { seen.len() >= 10 },
    )
    .await;
    let all = seen.all();
    let mut count: HashMap<String, Vec<i32>> = HashMap::new();
    for (body, t, reconsume, _) in &all {
        assert_eq!(t, &topic, "retried messages keep their original topic");
        count.entry(body.clone()).or_default().push(*reconsume);
    }
    assert_eq!(count.len(), 5);
    for (body, times) in count {
        assert_eq!(times, vec![0, 1], "{body}");
    }
    assert_eq!(
        *failed_once.lock().unwrap(),
        ids,
        "same msg ids on redelivery"
    );
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_as_members_join_and_leave_loses_nothing() {
    let cluster = Cluster::start(1).await;
    let topic = unique("RbT");
    cluster.create_topic(&topic, 8).await;
    let group = unique("rbg");
    let seen = Seen::default();
    let start = |name: &'static str| {
        let opts = cluster.options();
        let group = group.clone();
        let topic = topic.clone();
        let seen = seen.clone();
        async move {
            PushConsumer::builder(group)
                .options(opts)
                .instance_name(name)
                .subscribe(topic, "*")
                .consume_from(ConsumeFrom::FirstOffset)
                .persist_interval(Duration::from_millis(500))
                .start(listener(&seen))
                .await
                .unwrap()
        }
    };
    let owned = |cs: &[&PushConsumer]| -> Vec<usize> {
        cs.iter()
            .map(|c| {
                c.assigned_queues()
                    .iter()
                    .filter(|q| q.topic == topic)
                    .count()
            })
            .collect()
    };
    let p = producer(&cluster).await;
    let c1 = start("one").await;
    let c2 = start("two").await;
    eventually(Duration::from_secs(15), "two members split 4/4", || async {
        owned(&[&c1, &c2]) == [4, 4]
    })
    .await;
    let mut sent = 0;
    for m in messages(&topic, "A", "rb", 60) {
        p.send(m).await.unwrap();
        sent += 1;
    }
    let c3 = start("three").await;
    for m in messages(&topic, "A", "rb2", 60) {
        p.send(m).await.unwrap();
        sent += 1;
    }
    eventually(
        Duration::from_secs(15),
        "three members own all 8 queues",
        || async {
            let o = owned(&[&c1, &c2, &c3]);
            o.iter().sum::<usize>() == 8 && o.iter().all(|n| *n >= 2)
        },
    )
    .await;
    c2.shutdown().await;
    for m in messages(&topic, "A", "rb3", 60) {
        p.send(m).await.unwrap();
        sent += 1;
    }
    eventually(
        Duration::from_secs(15),
        "two members own all 8 queues",
        || async { owned(&[&c1, &c3]) == [4, 4] },
    )
    .await;
    let mut want = expected("rb", 60);
    want.extend(expected("rb2", 60));
    want.extend(expected("rb3", 60));
    eventually(
        Duration::from_secs(30),
        "every message consumed",
        || async { seen.bodies() == want },
    )
    .await;
    assert!(seen.len() >= sent, "duplicates are allowed, losses are not");
    c1.shutdown().await;
    c3.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_retries_locally_and_members_hold_disjoint_locks() {
    let cluster = Cluster::start(1).await;
    let topic = unique("OrdRetryT");
    cluster.create_topic(&topic, 4).await;
    let group = unique("org");
    let seen = Seen::default();
    let failed = Arc::new(Mutex::new(false));
    let mut consumers = Vec::new();
    for name in ["a", "b"] {
        let (s, f) = (seen.clone(), failed.clone());
        consumers.push(
            PushConsumer::builder(&group)
                .options(cluster.options())
                .instance_name(name)
                .subscribe(&topic, "*")
                .orderly(true)
                .consume_from(ConsumeFrom::FirstOffset)
                .start(move |msgs: &[MessageExt]| {
                    let body = String::from_utf8_lossy(msgs[0].body()).into_owned();
                    if body == "k0:3" && !std::mem::replace(&mut *f.lock().unwrap(), true) {
                        s.record(msgs);
                        return ConsumeResult::ReconsumeLater;
                    }
                    s.record(msgs);
                    ConsumeResult::Success
                })
                .await
                .unwrap(),
        );
    }
    eventually(
        Duration::from_secs(15),
        "locked queues split 2/2",
        || async {
            consumers.iter().all(|c| {
                c.assigned_queues()
                    .iter()
                    .filter(|q| q.topic == topic)
                    .count()
                    == 2
            })
        },
    )
    .await;
    let a: HashSet<_> = consumers[0].assigned_queues().into_iter().collect();
    assert!(consumers[1]
        .assigned_queues()
        .iter()
        .all(|q| !a.contains(q)));
    let p = producer(&cluster).await;
    for i in 0..8 {
        for k in ["k0", "k1", "k2"] {
            p.send_ordered(Message::new(&topic, format!("{k}:{i}")), k)
                .await
                .unwrap();
        }
    }
    eventually(Duration::from_secs(20), "25 deliveries", || async {
        seen.len() >= 25
    })
    .await;
    let mut per_key: BTreeMap<String, Vec<(u32, i32)>> = BTreeMap::new();
    for (body, _, reconsume, _) in seen.all() {
        let (k, i) = body.split_once(':').unwrap();
        per_key
            .entry(k.into())
            .or_default()
            .push((i.parse().unwrap(), reconsume));
    }
    let k0: Vec<(u32, i32)> = per_key["k0"].clone();
    assert_eq!(
        k0,
        vec![
            (0, 0),
            (1, 0),
            (2, 0),
            (3, 0),
            (3, 1),
            (4, 0),
            (5, 0),
            (6, 0),
            (7, 0)
        ],
        "the failed message is retried in place, later ones wait"
    );
    for k in ["k1", "k2"] {
        let seq: Vec<u32> = per_key[k].iter().map(|e| e.0).collect();
        assert_eq!(seq, (0..8).collect::<Vec<_>>(), "order of {k}");
    }
    for c in &consumers {
        c.shutdown().await;
    }
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_end_in_the_dead_letter_queue() {
    let cluster = Cluster::start(1).await;
    let topic = unique("DlqT");
    cluster.create_topic(&topic, 1).await;
    let group = unique("dg");
    let seen = Seen::default();
    let s = seen.clone();
    let c = PushConsumer::builder(&group)
        .options(cluster.options())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .max_reconsume_times(1)
        .start(move |msgs: &[MessageExt]| {
            s.record(msgs);
            ConsumeResult::ReconsumeLater
        })
        .await
        .unwrap();
    let p = producer(&cluster).await;
    let sent = p.send(Message::new(&topic, "doomed")).await.unwrap();
    let dlq = format!("%DLQ%{group}");
    let reader = ferrymq_client::LitePullConsumer::builder(unique("reader"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let read_dlq = || async {
        let mut found = Vec::new();
        if let Ok(queues) = reader.fetch_queues(&dlq).await {
            for q in &queues {
                if let Ok(r) = reader.pull(q, "*", 0, 32).await {
                    found.extend(r.messages);
                }
            }
        }
        found
    };
    eventually(Duration::from_secs(30), "message in the DLQ", || async {
        !read_dlq().await.is_empty()
    })
    .await;
    let in_dlq = read_dlq().await;
    assert_eq!(in_dlq.len(), 1);
    assert_eq!(&in_dlq[0].body()[..], b"doomed");
    assert_eq!(in_dlq[0].msg_id(), sent.msg_id);
    let tries: Vec<i32> = seen.all().iter().map(|e| e.2).collect();
    assert_eq!(tries, vec![0, 1], "one delivery plus one retry");
    reader.shutdown().await;
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_subscription_filters_by_property() {
    let cluster = Cluster::start_with(1, |c| c.enable_property_filter = true).await;
    let topic = unique("SqlT");
    cluster.create_topic(&topic, 2).await;
    let seen = Seen::default();
    let c = PushConsumer::builder(unique("sg"))
        .options(cluster.options())
        .subscribe(&topic, Expression::sql92("a >= 5 AND color = 'red'"))
        .consume_from(ConsumeFrom::FirstOffset)
        .start(listener(&seen))
        .await
        .unwrap();
    let p = producer(&cluster).await;
    for i in 0..10 {
        let color = if i % 2 == 0 { "red" } else { "blue" };
        let m = Message::new(&topic, format!("s-{i}"))
            .with_property("a", i.to_string())
            .with_property("color", color);
        p.send(m).await.unwrap();
    }
    let want: HashSet<String> = ["s-6", "s-8"].iter().map(|s| s.to_string()).collect();
    eventually(Duration::from_secs(15), "filtered messages", || async {
        seen.bodies() == want
    })
    .await;
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_share_one_instance() {
    let cluster = Cluster::start(1).await;
    let topic = unique("SharedT");
    cluster.create_topic(&topic, 2).await;
    let instance = ferrymq_client::ClientInstance::start(cluster.options()).unwrap();
    let group = unique("pg");
    let p = Producer::builder(&group)
        .instance(instance.clone())
        .start()
        .await
        .unwrap();
    let again = Producer::builder(&group)
        .instance(instance.clone())
        .start()
        .await;
    assert!(again.is_err(), "one producer per group per instance");
    let seen = Seen::default();
    let c = PushConsumer::builder(unique("cg"))
        .instance(instance.clone())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(listener(&seen))
        .await
        .unwrap();
    assert_eq!(c.instance().client_id(), p.instance().client_id());
    for m in messages(&topic, "A", "sh", 10) {
        p.send(m).await.unwrap();
    }
    eventually(Duration::from_secs(15), "all 10 consumed", || async {
        seen.bodies() == expected("sh", 10)
    })
    .await;
    c.shutdown().await;
    p.shutdown().await;
    assert!(
        !instance.is_shutdown(),
        "a shared instance outlives its clients"
    );
    instance.shutdown().await;
    assert!(instance.is_shutdown());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_listener_calls_cover_every_message_and_commit_the_end() {
    let cluster = Cluster::start(1).await;
    let topic = unique("BatchT");
    cluster.create_topic(&topic, 1).await;
    let p = producer(&cluster).await;
    // Sent before the consumer starts, so pulls return full batches that are split into
    // listener calls of 7 (the last one shorter).
    for m in messages(&topic, "A", "b", 100) {
        p.send(m).await.unwrap();
    }
    let seen = Seen::default();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let (s, z) = (seen.clone(), sizes.clone());
    let c = PushConsumer::builder(unique("cg"))
        .options(cluster.options())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .consume_batch_size(7)
        .consume_threads(3)
        .start(move |msgs: &[MessageExt]| {
            z.lock().unwrap().push(msgs.len());
            s.record(msgs);
            ConsumeResult::Success
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "all 100 consumed", || async {
        seen.len() >= 100
    })
    .await;
    assert_eq!(seen.bodies(), expected("b", 100));
    assert_eq!(seen.len(), 100, "each message once");
    assert!(sizes.lock().unwrap().iter().all(|n| (1..=7).contains(n)));
    let queue = c
        .assigned_queues()
        .into_iter()
        .find(|q| q.topic == topic)
        .unwrap();
    eventually(Duration::from_secs(10), "offset at the end", || async {
        c.committable_offset(&queue) == Some(100)
    })
    .await;
    c.shutdown().await;
    p.shutdown().await;
    cluster.shutdown().await;
}
