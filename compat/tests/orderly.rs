//! Issue #4, item 3: ordered messages. Messages are sharded by key onto queues with a queue
//! selector; an orderly push consumer (which locks its queues on the broker) must see each
//! key's messages in send order, and never run two batches of one queue at the same time.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheetah_string::CheetahString;
use common::client::{ensure_topic, start_orderly_consumer, ClientEnv};
use common::{wait_until, Ferrymq};
use rocketmq_client_rust::{ConsumeOrderlyStatus, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::message::MessageQueue;

const KEYS: usize = 16;
const PER_KEY: usize = 125;

#[derive(Debug, Clone)]
struct Seen {
    key: usize,
    seq: usize,
    queue_id: i32,
    queue_offset: i64,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    busy: HashSet<i32>,
    overlaps: Vec<String>,
    foreign: usize,
}

#[test]
fn orderly_consumer_sees_per_key_send_order() {
    let topic = "CompatOrderly";
    let broker = Ferrymq::start("orderly");
    let ns = broker.namesrv_addr();
    let env = ClientEnv::new("orderly");
    let state = Arc::new(Mutex::new(State::default()));
    let mut chosen_queue: HashMap<usize, i32> = HashMap::new();
    let done = env.block_on(async {
        let producer = env.producer(&ns, "compat_orderly_pg").await;
        ensure_topic(&producer, &ns, topic).await;
        let st = state.clone();
        let mut consumer = start_orderly_consumer(
            &env,
            &ns,
            "compat_orderly_cg",
            topic,
            "*",
            "orderly-c1",
            move |msgs, ctx| {
                let q = ctx.get_message_queue().queue_id();
                {
                    let mut s = st.lock().unwrap();
                    if !s.busy.insert(q) {
                        s.overlaps.push(format!("queue {q} entered twice at once"));
                    }
                }
                // hold the queue a little so that an overlapping dispatch would be noticed
                std::thread::sleep(Duration::from_millis(1));
                let mut s = st.lock().unwrap();
                for m in msgs {
                    let key = m
                        .get_user_property("key")
                        .and_then(|v| v.parse::<usize>().ok());
                    let seq = m
                        .get_user_property("seq")
                        .and_then(|v| v.parse::<usize>().ok());
                    match (key, seq) {
                        (Some(key), Some(seq)) => {
                            s.seen.push(Seen {
                                key,
                                seq,
                                queue_id: m.queue_id(),
                                queue_offset: m.queue_offset(),
                            });
                            if m.queue_id() != q {
                                s.overlaps.push(format!(
                                    "message of queue {} delivered in a batch for queue {q}",
                                    m.queue_id()
                                ));
                            }
                        }
                        _ => s.foreign += 1,
                    }
                }
                s.busy.remove(&q);
                ConsumeOrderlyStatus::Success
            },
        )
        .await;

        // Interleave keys; each key's messages are sent one after another (synchronously), so
        // send order per key is well defined.
        for seq in 0..PER_KEY {
            for key in 0..KEYS {
                let mut m = Message::builder()
                    .topic(topic.to_owned())
                    .body(format!("key={key};seq={seq}").into_bytes())
                    .tags("Ord")
                    .key(format!("order-{key}"))
                    .build_unchecked();
                m.put_user_property(
                    CheetahString::from("key"),
                    CheetahString::from(key.to_string()),
                )
                .unwrap();
                m.put_user_property(
                    CheetahString::from("seq"),
                    CheetahString::from(seq.to_string()),
                )
                .unwrap();
                let r = producer
                    .send_with_selector(
                        m,
                        |mqs: &[MessageQueue], _m: &Message, k: &usize| {
                            mqs.get(k % mqs.len()).cloned()
                        },
                        key,
                    )
                    .await;
                match r {
                    Ok(Some(res)) if res.send_status == SendStatus::SendOk => {
                        let q = res
                            .message_queue
                            .as_ref()
                            .map(|mq| mq.queue_id())
                            .unwrap_or(-1);
                        let prev = *chosen_queue.entry(key).or_insert(q);
                        assert_eq!(
                            prev, q,
                            "selector sent key {key} to queue {q}, earlier to {prev}"
                        );
                    }
                    other => panic!("send key {key} seq {seq}: {other:?}"),
                }
            }
        }
        let st2 = state.clone();
        let done = wait_until(Duration::from_secs(60), move || {
            let s = st2.lock().unwrap();
            s.seen
                .iter()
                .map(|x| (x.key, x.seq))
                .collect::<HashSet<_>>()
                .len()
                >= KEYS * PER_KEY
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        consumer.shutdown().await;
        let mut producer = producer;
        producer.shutdown().await;
        done
    });
    env.shutdown();

    let s = state.lock().unwrap();
    let distinct: HashSet<(usize, usize)> = s.seen.iter().map(|x| (x.key, x.seq)).collect();
    assert!(
        done,
        "orderly consumer got {} of {} messages in 60 s (broker log {})",
        distinct.len(),
        KEYS * PER_KEY,
        broker.log_path().display()
    );
    assert!(
        s.overlaps.is_empty(),
        "orderly dispatch violations: {:?}",
        &s.overlaps[..s.overlaps.len().min(10)]
    );

    let mut per_key: BTreeMap<usize, Vec<&Seen>> = BTreeMap::new();
    for x in &s.seen {
        per_key.entry(x.key).or_default().push(x);
    }
    let want: Vec<usize> = (0..PER_KEY).collect();
    for (key, list) in &per_key {
        let got: Vec<usize> = list.iter().map(|x| x.seq).collect();
        if got != want {
            let first_bad = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "key {key}: delivered sequence differs from send order at position {first_bad}: got {:?} (len {}), want 0..{PER_KEY}",
                &got[first_bad.saturating_sub(3)..(first_bad + 5).min(got.len())],
                got.len()
            );
        }
        let queues: HashSet<i32> = list.iter().map(|x| x.queue_id).collect();
        assert_eq!(
            queues.len(),
            1,
            "key {key} delivered from several queues {queues:?}"
        );
        assert_eq!(
            Some(list[0].queue_id),
            chosen_queue.get(key).copied(),
            "key {key} delivered from another queue than it was sent to"
        );
    }
    // per-queue order: queue offsets strictly increase in delivery order
    let mut last: HashMap<i32, i64> = HashMap::new();
    for x in &s.seen {
        if let Some(prev) = last.insert(x.queue_id, x.queue_offset) {
            assert!(
                x.queue_offset > prev,
                "queue {}: offset {} delivered after {}",
                x.queue_id,
                x.queue_offset,
                prev
            );
        }
    }
    drop(s);
    drop(broker);
}
