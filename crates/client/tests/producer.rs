//! Producer against an in-process NameServer and broker(s): sync, async, callback, one-way,
//! batch, ordered and chosen-queue sends, auto-created topics, compression, retries on another
//! broker.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{eventually, messages, unique, Cluster};
use ferrymq_client::consumer::{ConsumeFrom, LitePullConsumer};
use ferrymq_client::{ClientError, Compression, Message, MessageExt, Producer, SendStatus};
use ferrymq_protocol::header::{
    OffsetResponseHeader, QueueRequestHeader, ViewMessageRequestHeader,
};
use ferrymq_protocol::message::{sys_flag, OffsetMsgId, RecordView};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Reads a stored message back by its offset id (VIEW_MESSAGE_BY_ID on broker 0).
async fn view(cluster: &Cluster, offset_msg_id: &str) -> (MessageExt, i32) {
    let id = OffsetMsgId::decode(offset_msg_id).unwrap();
    let h = ViewMessageRequestHeader {
        offset: id.physical_offset,
        topic: None,
    };
    let req = RemotingCommand::request_with_header(RequestCode::ViewMessageById, &h);
    let resp = cluster.call_broker(0, req).await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    let body = resp.body.to_bytes();
    let record = RecordView::parse(&body).unwrap();
    (MessageExt::decode(&record, "").unwrap(), record.sys_flag())
}

async fn max_offset(cluster: &Cluster, i: usize, topic: &str, queue_id: i32) -> i64 {
    let h = QueueRequestHeader {
        topic: topic.into(),
        queue_id,
        committed: None,
    };
    let req = RemotingCommand::request_with_header(RequestCode::GetMaxOffset, &h);
    let resp = cluster.call_broker(i, req).await;
    resp.decode_header::<OffsetResponseHeader>().unwrap().offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_send_round_robins_and_stores_everything() {
    let cluster = Cluster::start(1).await;
    let topic = unique("SyncT");
    cluster.create_topic(&topic, 4).await;
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();

    let mut per_queue: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for (i, msg) in messages(&topic, "TagA", "m", 12).into_iter().enumerate() {
        let r = producer.send(msg).await.unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        assert_eq!(r.queue.topic, topic);
        assert_eq!(r.queue.broker_name, "broker-a");
        assert_eq!(r.msg_id.len(), 32, "UNIQ_KEY: {}", r.msg_id);
        assert!(ids.insert(r.msg_id.clone()), "ids are unique");
        per_queue
            .entry(r.queue.queue_id)
            .or_default()
            .push(r.queue_offset);
        let (stored, _) = view(&cluster, &r.offset_msg_id).await;
        assert_eq!(stored.topic(), topic);
        assert_eq!(&stored.body()[..], format!("m-{i}").as_bytes());
        assert_eq!(stored.tags(), Some("TagA"));
        assert_eq!(stored.keys(), [format!("m-key-{i}")]);
        assert_eq!(stored.msg_id(), r.msg_id);
    }
    // Round robin: every queue got three consecutive offsets.
    assert_eq!(per_queue.len(), 4);
    for offsets in per_queue.values() {
        assert_eq!(offsets, &vec![0, 1, 2]);
    }
    producer.shutdown().await;
    // A stopped producer refuses to send.
    let err = producer.send(Message::new(&topic, "x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Shutdown), "{err}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callback_oneway_and_compression() {
    let cluster = Cluster::start(1).await;
    let topic = unique("AsyncT");
    cluster.create_topic(&topic, 2).await;
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();

    let handles: Vec<_> = messages(&topic, "A", "a", 20)
        .into_iter()
        .map(|m| producer.send_async(m))
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().status, SendStatus::SendOk);
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for m in messages(&topic, "B", "b", 5) {
        let tx = tx.clone();
        producer.send_with_callback(m, move |r| {
            let _ = tx.send(r.map(|r| r.status));
        });
    }
    for _ in 0..5 {
        assert_eq!(rx.recv().await.unwrap().unwrap(), SendStatus::SendOk);
    }

    for m in messages(&topic, "C", "c", 6) {
        producer.send_oneway(m).await.unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "one-way messages stored",
        || async {
            max_offset(&cluster, 0, &topic, 0).await + max_offset(&cluster, 0, &topic, 1).await
                == 31
        },
    )
    .await;

    // Bodies over 4 KiB travel compressed and come back inflated.
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let r = producer
        .send(Message::new(&topic, big.clone()))
        .await
        .unwrap();
    let (stored, raw_flag) = view(&cluster, &r.offset_msg_id).await;
    assert_ne!(raw_flag & sys_flag::COMPRESSED, 0, "stored compressed");
    assert_eq!(&stored.body()[..], big.as_bytes());

    // Refused before sending.
    let err = producer.send(Message::new(&topic, "")).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidMessage(_)), "{err}");
    let err = producer
        .send(Message::new("bad topic!", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidMessage(_)), "{err}");
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// LZ4 and ZSTD bodies: stored with their codec's sysFlag bits (as Java 5.x clients write
/// them), and read back intact by a consumer over the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_and_zstd_bodies_over_the_wire() {
    let cluster = Cluster::start(1).await;
    let topic = unique("CodecT");
    cluster.create_topic(&topic, 1).await;
    let big: String = (0..50_000)
        .map(|i| char::from(b'a' + ((i * 7) % 26) as u8))
        .collect();
    let mut sent = Vec::new();
    for (codec, bits) in [
        (Compression::Lz4, sys_flag::COMPRESSION_LZ4),
        (Compression::Zstd, sys_flag::COMPRESSION_ZSTD),
        (Compression::Zlib, sys_flag::COMPRESSION_ZLIB),
    ] {
        let producer = Producer::builder(unique("pg"))
            .options(cluster.options())
            .compression(codec)
            .start()
            .await
            .unwrap();
        let body = format!("{codec:?}:{big}");
        let r = producer
            .send(Message::new(&topic, body.clone()))
            .await
            .unwrap();
        let (stored, raw_flag) = view(&cluster, &r.offset_msg_id).await;
        assert_eq!(
            raw_flag & (sys_flag::COMPRESSED | sys_flag::COMPRESSION_TYPE_MASK),
            sys_flag::COMPRESSED | bits,
            "{codec:?} sysFlag"
        );
        assert_eq!(&stored.body()[..], body.as_bytes());
        sent.push(body);
        producer.shutdown().await;
    }
    let consumer = LitePullConsumer::builder(unique("cg"))
        .options(cluster.options())
        .consume_from(ConsumeFrom::FirstOffset)
        .start()
        .await
        .unwrap();
    consumer.subscribe(&topic, "*").await.unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 3 && std::time::Instant::now() < deadline {
        for m in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            got.push(String::from_utf8(m.body().to_vec()).unwrap());
        }
    }
    assert_eq!(got, sent);
    consumer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ordered_and_chosen_queue() {
    let cluster = Cluster::start(1).await;
    let topic = unique("BatchT");
    cluster.create_topic(&topic, 4).await;
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();

    let r = producer
        .send_batch(messages(&topic, "A", "batch", 5))
        .await
        .unwrap();
    assert_eq!(r.msg_id.split(',').count(), 5);
    let offset_ids: Vec<_> = r.offset_msg_id.split(',').collect();
    assert_eq!(offset_ids.len(), 5);
    for (i, id) in offset_ids.iter().enumerate() {
        let (stored, _) = view(&cluster, id).await;
        assert_eq!(&stored.body()[..], format!("batch-{i}").as_bytes());
        assert_eq!(stored.queue_offset, r.queue_offset + i as i64);
        assert_eq!(stored.queue_id, r.queue.queue_id);
        assert_eq!(stored.msg_id(), r.msg_id.split(',').nth(i).unwrap());
    }
    let mixed = vec![Message::new(&topic, "x"), Message::new("Other", "y")];
    assert!(matches!(
        producer.send_batch(mixed).await,
        Err(ClientError::InvalidMessage(_))
    ));
    let delayed = vec![Message::new(&topic, "x").with_delay_level(1)];
    assert!(producer.send_batch(delayed).await.is_err());

    // Same sharding key → same queue, in send order.
    let mut queue_of = BTreeMap::new();
    for i in 0..20 {
        let key = format!("order-{}", i % 3);
        let r = producer
            .send_ordered(Message::new(&topic, format!("{key}:{i}")), &key)
            .await
            .unwrap();
        let q = *queue_of.entry(key.clone()).or_insert(r.queue.queue_id);
        assert_eq!(q, r.queue.queue_id, "{key} stayed on its queue");
    }

    let queues = producer.publish_queues(&topic).await.unwrap();
    assert_eq!(queues.len(), 4);
    let r = producer
        .send_to_queue(Message::new(&topic, "here"), &queues[3])
        .await
        .unwrap();
    assert_eq!(r.queue, queues[3]);
    let r = producer
        .send_with_selector(Message::new(&topic, "sel"), |qs, _| qs.len() + 1)
        .await
        .unwrap();
    assert_eq!(r.queue.queue_id, 1);
    producer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_is_auto_created_through_the_template() {
    let cluster = Cluster::start(1).await;
    let topic = unique("AutoT");
    assert!(cluster.route(&topic).await.is_none());
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let r = producer.send(Message::new(&topic, "first")).await.unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    assert!(r.queue.queue_id < 4, "at most the default 4 queues");
    cluster
        .wait_route(&topic, |r| r.queue_datas[0].write_queue_nums == 4)
        .await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_retry_on_another_broker() {
    let mut cluster = Cluster::start(2).await;
    let topic = unique("RetryT");
    cluster.create_topic(&topic, 2).await;
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .latency_fault_tolerance(true)
        .start()
        .await
        .unwrap();
    // Warm the route cache so it still names broker-a after it stops.
    assert_eq!(producer.publish_queues(&topic).await.unwrap().len(), 4);
    cluster.stop_broker(0).await;
    for m in messages(&topic, "A", "r", 8) {
        let r = producer.send(m).await.unwrap();
        assert_eq!(r.queue.broker_name, "broker-b");
    }
    producer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_level_defers_delivery() {
    let cluster = Cluster::start(1).await;
    let topic = unique("DelayT");
    cluster.create_topic(&topic, 1).await;
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    let r = producer
        .send(Message::new(&topic, "later").with_delay_level(2))
        .await
        .unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    assert_eq!(
        max_offset(&cluster, 0, &topic, 0).await,
        0,
        "parked, not in the topic"
    );
    eventually(
        Duration::from_secs(10),
        "delivered after the delay",
        || async { max_offset(&cluster, 0, &topic, 0).await == 1 },
    )
    .await;
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "{:?}",
        sent.elapsed()
    );
    producer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalled_timer_message_is_never_delivered() {
    let cluster = Cluster::start(1).await;
    let topic = unique("RecallT");
    cluster.create_topic(&topic, 1).await;
    let producer = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let plain = producer.send(Message::new(&topic, "now")).await.unwrap();
    assert_eq!(plain.recall_handle, None, "only parked messages have one");
    let delay = Duration::from_millis(2500);
    let kept = producer
        .send(Message::new(&topic, "kept").with_delay(delay))
        .await
        .unwrap();
    let gone = producer
        .send(Message::new(&topic, "recalled").with_delay(delay))
        .await
        .unwrap();
    let handle = gone
        .recall_handle
        .clone()
        .expect("a timer message has a recall handle");

    // A client cannot forge a recall marker: the property is dropped from sends.
    producer
        .send(
            Message::new(&topic, "forged")
                .with_delay(delay)
                .with_property("TIMER_DEL_UNIQKEY", format!("{topic}+{}", kept.msg_id)),
        )
        .await
        .unwrap();

    // A handle of another topic, and one that is not a handle, are refused.
    let other = unique("OtherT");
    cluster.create_topic(&other, 1).await;
    match producer.recall_message(&other, &handle).await {
        Err(ClientError::Broker { code, remark, .. }) => {
            assert_eq!(code, ResponseCode::IllegalOperation, "{remark}");
            assert!(remark.contains("topic not match"), "{remark}");
        }
        other => panic!("recall with the wrong topic: {other:?}"),
    }
    assert!(matches!(
        producer.recall_message(&topic, "not a handle").await,
        Err(ClientError::InvalidArgument(_))
    ));

    assert_eq!(
        producer.recall_message(&topic, &handle).await.unwrap(),
        gone.msg_id
    );

    let consumer = LitePullConsumer::builder(unique("cg"))
        .options(cluster.options())
        .consume_from(ConsumeFrom::FirstOffset)
        .start()
        .await
        .unwrap();
    consumer.subscribe(&topic, "*").await.unwrap();
    let mut got = Vec::new();
    // Past both due times and a second more: the recalled one must not turn up.
    let until = std::time::Instant::now() + delay + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        for m in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            got.push(String::from_utf8(m.body().to_vec()).unwrap());
        }
    }
    got.sort();
    let stored = max_offset(&cluster, 0, &topic, 0).await;
    assert_eq!(got, ["forged", "kept", "now"], "{stored} stored");
    assert_eq!(stored, 3);

    // Once delivered, a message cannot be recalled any more.
    let late = producer
        .recall_message(&topic, kept.recall_handle.as_deref().unwrap())
        .await;
    assert!(
        matches!(
            &late,
            Err(ClientError::Broker {
                code: ResponseCode::IllegalOperation,
                ..
            })
        ),
        "{late:?}"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_the_reply_a_consumer_sends() {
    let cluster = Cluster::start(1).await;
    let topic = unique("RequestT");
    cluster.create_topic(&topic, 2).await;
    let requester = Producer::builder(unique("requester"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let replier = Producer::builder(unique("replier"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let consumer = LitePullConsumer::builder(unique("cg"))
        .options(cluster.options())
        .consume_from(ConsumeFrom::FirstOffset)
        .start()
        .await
        .unwrap();
    consumer.subscribe(&topic, "*").await.unwrap();

    // Nobody answers the first request: it times out as a reply timeout, after the send.
    let unanswered = requester
        .request(Message::new(&topic, "hello?"), Duration::from_millis(800))
        .await;
    assert!(
        matches!(&unanswered, Err(ClientError::ReplyTimeout { .. })),
        "{unanswered:?}"
    );

    let pending = {
        let requester = requester.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            requester
                .request(
                    Message::new(&topic, "ping").with_keys(["k1"]),
                    Duration::from_secs(10),
                )
                .await
        })
    };
    let mut answered = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while answered < 2 && std::time::Instant::now() < deadline {
        for m in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            let reply = m
                .create_reply(format!("pong to {}", String::from_utf8_lossy(m.body())))
                .unwrap();
            assert!(reply.is_reply());
            assert!(reply.topic().ends_with("_REPLY_TOPIC"), "{}", reply.topic());
            match replier.send(reply).await {
                Ok(r) => assert_eq!(r.status, SendStatus::SendOk),
                // The first request's requester gave up; the broker still stores the reply.
                Err(ClientError::Broker { code, .. }) => {
                    assert_eq!(code, ResponseCode::SystemError)
                }
                Err(e) => panic!("reply send: {e}"),
            }
            answered += 1;
        }
    }
    let reply = pending.await.unwrap().expect("the reply arrives");
    assert_eq!(reply.body().as_ref(), b"pong to ping");
    assert!(reply.property("CORRELATION_ID").is_some());
    assert!(reply.property("PUSH_REPLY_TIME").is_some());

    // A reply whose requester is not connected is refused with SYSTEM_ERROR.
    let mut orphan = Message::new(
        ferrymq_protocol::naming::reply_topic(&cluster_name(&reply)),
        "nobody",
    );
    orphan.set_property("MSG_TYPE", "reply");
    orphan.set_property("REPLY_TO_CLIENT", "10.0.0.1@gone");
    orphan.set_property("CORRELATION_ID", "x");
    match replier.send(orphan).await {
        Err(ClientError::Broker { code, remark, .. }) => {
            assert_eq!(code, ResponseCode::SystemError);
            assert!(remark.contains("not found"), "{remark}");
        }
        other => panic!("reply to a gone requester: {other:?}"),
    }
    consumer.shutdown().await;
    replier.shutdown().await;
    requester.shutdown().await;
    cluster.shutdown().await;
}

fn cluster_name(reply: &MessageExt) -> String {
    reply
        .topic()
        .strip_suffix("_REPLY_TOPIC")
        .unwrap()
        .to_owned()
}
