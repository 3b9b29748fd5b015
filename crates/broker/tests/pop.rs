//! POP consumption over real sockets: an in-process broker on ephemeral ports with its own store
//! directory, driven with the remoting requests a 5.x client or the gRPC proxy sends.

use std::time::{Duration, Instant};

use ferrymq_protocol::body::{AckBitSet, BatchAck, BatchAckMessageRequestBody};
use ferrymq_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader, POP_INIT_MODE_MIN,
};
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::record::RecordIter;
use ferrymq_protocol::pop::{ExtraInfo, RetryFlag};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

mod common;
use common::{TestBroker, T};

const GROUP: &str = "popGroup";

/// The shared harness, plus the POP requests.
struct Harness(TestBroker);

impl std::ops::Deref for Harness {
    type Target = TestBroker;
    fn deref(&self) -> &TestBroker {
        &self.0
    }
}

/// One popped message as a client sees it.
#[derive(Debug, Clone)]
struct Popped {
    topic: String,
    body: Vec<u8>,
    handle: ExtraInfo,
    reconsume_times: i32,
    first_pop_time: Option<String>,
}

impl Harness {
    async fn start() -> Harness {
        // Deterministic: the retry topic is read after the topic, never before.
        Harness(TestBroker::start(|c| c.pop_from_retry_probability = 0).await)
    }

    /// Graceful stop and start on the same store directory.
    async fn restart(&mut self) {
        self.0.restart().await
    }

    async fn send(&self, topic: &str, body: &str, queue_id: i32) {
        let props = properties::encode([(keys::TAGS, "TagA")]);
        let resp = self.0.send(topic, body.as_bytes(), &props, queue_id).await;
        assert_eq!(resp.response_code(), ResponseCode::Success, "{resp:?}");
    }

    #[allow(clippy::too_many_arguments)]
    async fn pop_with(
        &self,
        topic: &str,
        queue_id: i32,
        invisible_ms: i64,
        poll_ms: i64,
        order: bool,
        attempt: Option<&str>,
        max: i32,
    ) -> (RemotingCommand, Vec<Popped>) {
        let h = PopMessageRequestHeader {
            consumer_group: GROUP.into(),
            topic: topic.into(),
            queue_id,
            max_msg_nums: max,
            invisible_time: invisible_ms,
            poll_time: poll_ms,
            born_time: now_ms(),
            init_mode: POP_INIT_MODE_MIN,
            exp_type: Some("TAG".into()),
            exp: Some("*".into()),
            order: Some(order),
            attempt_id: attempt.map(str::to_owned),
        };
        let resp = self
            .call(RemotingCommand::request_with_header(
                RequestCode::PopMessage,
                &h,
            ))
            .await;
        let body = resp.body.to_bytes();
        let msgs = RecordIter::new(&body)
            .map(|r| {
                let v = r.unwrap();
                Popped {
                    topic: v.topic().to_owned(),
                    body: v.body().to_vec(),
                    handle: ExtraInfo::parse(v.property(keys::POP_CK).unwrap()).unwrap(),
                    reconsume_times: v.reconsume_times(),
                    first_pop_time: v.property(keys::FIRST_POP_TIME).map(str::to_owned),
                }
            })
            .collect();
        (resp, msgs)
    }

    async fn pop(&self, topic: &str, invisible_ms: i64, poll_ms: i64) -> Vec<Popped> {
        let (resp, msgs) = self
            .pop_with(topic, -1, invisible_ms, poll_ms, false, None, 32)
            .await;
        if msgs.is_empty() {
            assert_eq!(
                resp.response_code(),
                ResponseCode::PollingTimeout,
                "{resp:?}"
            );
        }
        msgs
    }

    /// Pops until `n` messages arrived (sends are dispatched to consume queues asynchronously).
    async fn pop_n(&self, topic: &str, invisible_ms: i64, n: usize) -> Vec<Popped> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(self.pop(topic, invisible_ms, 2000).await);
        }
        assert_eq!(got.len(), n, "{got:?}");
        got
    }

    /// Acks as a Java client does: the header names the topic the message was read from.
    async fn ack(&self, topic: &str, m: &Popped) -> RemotingCommand {
        let h = AckMessageRequestHeader {
            consumer_group: GROUP.into(),
            topic: m.handle.real_topic(topic, GROUP),
            queue_id: m.handle.queue_id,
            extra_info: m.handle.encode(),
            offset: m.handle.queue_offset,
        };
        self.call(RemotingCommand::request_with_header(
            RequestCode::AckMessage,
            &h,
        ))
        .await
    }

    /// CHANGE_MESSAGE_INVISIBLETIME with `m`'s handle; the response and, on success, the new
    /// handle built as the proxy does.
    async fn change(
        &self,
        topic: &str,
        m: &Popped,
        invisible_ms: i64,
    ) -> (RemotingCommand, Option<Popped>) {
        let ch = ChangeInvisibleTimeRequestHeader {
            consumer_group: GROUP.into(),
            topic: m.handle.real_topic(topic, GROUP),
            queue_id: m.handle.queue_id,
            extra_info: m.handle.encode(),
            offset: m.handle.queue_offset,
            invisible_time: invisible_ms,
        };
        let resp = self
            .call(RemotingCommand::request_with_header(
                RequestCode::ChangeMessageInvisibletime,
                &ch,
            ))
            .await;
        if resp.response_code() != ResponseCode::Success {
            return (resp, None);
        }
        let rh: ChangeInvisibleTimeResponseHeader = resp.decode_header().unwrap();
        let renewed = Popped {
            handle: ExtraInfo {
                ck_queue_offset: m.handle.queue_offset,
                pop_time: rh.pop_time,
                invisible_time: rh.invisible_time,
                revive_qid: rh.revive_qid,
                ..m.handle.clone()
            },
            ..m.clone()
        };
        (resp, Some(renewed))
    }

    /// A POP_MESSAGE on a connection of its own, in the background: for pops that park while
    /// the test acts. Resolves to the response and how long it took.
    fn spawn_pop(
        &self,
        hdr: PopMessageRequestHeader,
    ) -> tokio::task::JoinHandle<(RemotingCommand, Duration)> {
        let client = RemotingClient::new(ClientConfig::default());
        let addr = self.addr.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let req = RemotingCommand::request_with_header(RequestCode::PopMessage, &hdr);
            let resp = client.invoke(&addr, req, T).await.unwrap();
            (resp, started.elapsed())
        })
    }

    async fn stop(self) {
        self.0.stop().await
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn bodies(msgs: &[Popped]) -> Vec<String> {
    let mut v: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn pop_then_ack_is_not_redelivered() {
    let h = Harness::start().await;
    for (i, q) in [(0, 0), (1, 1), (2, 3)] {
        h.send("PopAck", &format!("m{i}"), q).await;
    }
    let (resp, first) = h.pop_with("PopAck", -1, 1000, 3000, false, None, 32).await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    let rh: PopMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(rh.invisible_time, 1000);
    assert!(rh.start_offset_info.is_some() && rh.msg_offset_info.is_some());
    assert_eq!(first[0].handle.pop_time, rh.pop_time);
    let mut msgs = first.clone();
    if msgs.len() < 3 {
        msgs.extend(h.pop_n("PopAck", 1000, 3 - msgs.len()).await);
    }
    assert_eq!(bodies(&msgs), ["m0", "m1", "m2"]);
    for m in &msgs {
        assert_eq!(m.topic, "PopAck");
        assert_eq!(m.handle.retry, RetryFlag::Normal);
        assert_eq!(m.reconsume_times, 0);
        assert_eq!(
            h.ack("PopAck", m).await.response_code(),
            ResponseCode::Success
        );
        // Idempotent.
        assert_eq!(
            h.ack("PopAck", m).await.response_code(),
            ResponseCode::Success
        );
    }
    // Nothing left and, after the invisible time, nothing revived.
    assert!(h.pop("PopAck", 1000, 0).await.is_empty());
    assert!(h.pop("PopAck", 1000, 2000).await.is_empty());

    // More than 32 per pop is refused.
    let (resp, _) = h.pop_with("PopAck", -1, 1000, 0, false, None, 33).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    let (resp, _) = h.pop_with("NoSuchTopic", -1, 1000, 0, false, None, 1).await;
    assert_eq!(resp.response_code(), ResponseCode::TopicNotExist);
    h.stop().await;
}

#[tokio::test]
async fn unacked_message_is_redelivered_from_the_retry_topic() {
    let h = Harness::start().await;
    h.send("PopRetry", "lonely", 2).await;
    let first = h.pop_n("PopRetry", 1000, 1).await;
    let popped_at = Instant::now();

    // Long poll: woken by the retry copy that appears after the invisible time.
    let again = h.pop("PopRetry", 1000, 6000).await;
    assert!(popped_at.elapsed() >= Duration::from_millis(900));
    assert_eq!(again.len(), 1, "{again:?}");
    let m = &again[0];
    assert_eq!(m.body, b"lonely");
    assert_eq!(m.topic, "PopRetry");
    assert_eq!(m.reconsume_times, 1);
    assert_eq!(m.handle.retry, RetryFlag::RetryV1);
    assert_eq!(
        m.first_pop_time.as_deref(),
        Some(first[0].handle.pop_time.to_string().as_str())
    );
    assert_eq!(
        h.ack("PopRetry", m).await.response_code(),
        ResponseCode::Success
    );
    assert!(h.pop("PopRetry", 1000, 2000).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn change_invisible_time_then_ack_with_the_new_handle() {
    let h = Harness::start().await;
    h.send("PopChange", "slow", 0).await;
    let msgs = h.pop_n("PopChange", 1000, 1).await;
    let m = &msgs[0];
    let ch = ChangeInvisibleTimeRequestHeader {
        consumer_group: GROUP.into(),
        topic: "PopChange".into(),
        queue_id: m.handle.queue_id,
        extra_info: m.handle.encode(),
        offset: m.handle.queue_offset,
        invisible_time: 3000,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::ChangeMessageInvisibletime,
            &ch,
        ))
        .await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    let rh: ChangeInvisibleTimeResponseHeader = resp.decode_header().unwrap();
    assert_eq!(rh.invisible_time, 3000);
    assert!(rh.pop_time > m.handle.pop_time);
    let renewed = Popped {
        handle: ExtraInfo {
            ck_queue_offset: m.handle.queue_offset,
            pop_time: rh.pop_time,
            invisible_time: rh.invisible_time,
            revive_qid: rh.revive_qid,
            ..m.handle.clone()
        },
        ..m.clone()
    };
    // Past the old invisible time: still invisible.
    assert!(h.pop("PopChange", 1000, 1500).await.is_empty());
    // The old handle is useless now; the new one acks.
    assert_eq!(
        h.ack("PopChange", m).await.response_code(),
        ResponseCode::Success
    );
    assert_eq!(
        h.ack("PopChange", &renewed).await.response_code(),
        ResponseCode::Success
    );
    assert!(h.pop("PopChange", 1000, 2500).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn orderly_pop_blocks_the_queue_until_ack() {
    let h = Harness::start().await;
    h.send("PopFifo", "first", 1).await;
    h.send("PopFifo", "second", 1).await;
    let (_, a) = h
        .pop_with("PopFifo", 1, 3000, 3000, true, Some("a"), 1)
        .await;
    assert_eq!(bodies(&a), ["first"]);
    assert_eq!(a[0].handle.revive_qid, 999);
    // Another attempt finds the queue blocked.
    let (resp, b) = h
        .pop_with("PopFifo", 1, 3000, 300, true, Some("b"), 1)
        .await;
    assert!(b.is_empty());
    assert_eq!(resp.response_code(), ResponseCode::PollingTimeout);
    // The same attempt (a lost response) gets the same batch again.
    let (_, a2) = h.pop_with("PopFifo", 1, 3000, 0, true, Some("a"), 1).await;
    assert_eq!(bodies(&a2), ["first"]);
    // A parked pop is woken by the ack.
    let waiter = h.spawn_pop(PopMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: "PopFifo".into(),
        queue_id: 1,
        max_msg_nums: 1,
        invisible_time: 1000,
        poll_time: 5000,
        born_time: now_ms(),
        init_mode: POP_INIT_MODE_MIN,
        exp_type: None,
        exp: None,
        order: Some(true),
        attempt_id: Some("c".into()),
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.ack("PopFifo", &a2[0]).await.response_code(),
        ResponseCode::Success
    );
    let (resp, waited) = waiter.await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert!(waited < Duration::from_millis(3000), "{waited:?}");
    let body = resp.body.to_bytes();
    let second: Vec<_> = RecordIter::new(&body)
        .map(|r| r.unwrap().body().to_vec())
        .collect();
    assert_eq!(second, vec![b"second".to_vec()]);

    // Not acked: after its invisible time the same message comes again, counted once more.
    let (resp, again) = h
        .pop_with("PopFifo", 1, 1000, 3000, true, Some("d"), 1)
        .await;
    assert_eq!(bodies(&again), ["second"], "{resp:?}");
    assert_eq!(again[0].reconsume_times, 1);
    let rh: PopMessageResponseHeader = resp.decode_header().unwrap();
    assert!(rh.order_count_info.unwrap().contains("qo1%1 1"));
    h.stop().await;
}

#[tokio::test]
async fn long_polling_pop_is_woken_by_a_send() {
    let h = Harness::start().await;
    h.send("PopWake", "seed", 0).await;
    for m in h.pop_n("PopWake", 5000, 1).await {
        h.ack("PopWake", &m).await;
    }
    let waiter = h.spawn_pop(PopMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: "PopWake".into(),
        queue_id: -1,
        max_msg_nums: 4,
        invisible_time: 5000,
        poll_time: 8000,
        born_time: now_ms(),
        init_mode: POP_INIT_MODE_MIN,
        exp_type: None,
        exp: None,
        order: None,
        attempt_id: None,
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.send("PopWake", "late", 3).await;
    let (resp, waited) = waiter.await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert!(waited < Duration::from_millis(4000), "{waited:?}");
    let body = resp.body.to_bytes();
    let got: Vec<_> = RecordIter::new(&body)
        .map(|r| r.unwrap().body().to_vec())
        .collect();
    assert_eq!(got, vec![b"late".to_vec()]);
    h.stop().await;
}

#[tokio::test]
async fn unacked_messages_survive_a_restart() {
    let mut h = Harness::start().await;
    h.send("PopRestart", "acked", 0).await;
    h.send("PopRestart", "pending", 0).await;
    let msgs = h.pop_n("PopRestart", 2000, 2).await;
    assert_eq!(bodies(&msgs), ["acked", "pending"]);
    let acked = msgs.iter().find(|m| m.body == b"acked").unwrap();
    assert_eq!(
        h.ack("PopRestart", acked).await.response_code(),
        ResponseCode::Success
    );

    h.restart().await;

    // Still invisible right after the restart, then redelivered once.
    let again = h.pop("PopRestart", 2000, 6000).await;
    assert_eq!(bodies(&again), ["pending"]);
    assert_eq!(again[0].reconsume_times, 1);
    assert_eq!(
        h.ack("PopRestart", &again[0]).await.response_code(),
        ResponseCode::Success
    );
    assert!(h.pop("PopRestart", 2000, 2500).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn change_invisible_time_retried_then_ack_with_the_returned_handle() {
    let h = Harness::start().await;
    h.send("PopChangeRetry", "m", 0).await;
    let msgs = h.pop_n("PopChangeRetry", 1000, 1).await;
    let m = &msgs[0];
    // A lost response: the same change is sent three times with the old handle.
    let (r1, n1) = h.change("PopChangeRetry", m, 3000).await;
    assert_eq!(r1.response_code(), ResponseCode::Success, "{r1:?}");
    let (r2, n2) = h.change("PopChangeRetry", m, 3000).await;
    assert_eq!(r2.response_code(), ResponseCode::Success, "{r2:?}");
    let (_, n3) = h.change("PopChangeRetry", m, 3000).await;
    let (n1, n2, n3) = (n1.unwrap(), n2.unwrap(), n3.unwrap());
    assert_eq!(n1.handle, n2.handle);
    assert_eq!(n1.handle, n3.handle);
    // Any of the returned handles acks the message for good.
    assert_eq!(
        h.ack("PopChangeRetry", &n2).await.response_code(),
        ResponseCode::Success
    );
    // Now it is no longer in flight: a change is refused instead of handing out a dead handle.
    let (r4, _) = h.change("PopChangeRetry", &n1, 3000).await;
    assert_eq!(r4.response_code(), ResponseCode::NoMessage, "{r4:?}");
    // Past both the old and the new invisible time (+ grace): never redelivered.
    assert!(h.pop("PopChangeRetry", 1000, 5000).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn batch_ack_settles_a_whole_batch() {
    let h = Harness::start().await;
    for i in 0..5 {
        h.send("PopBatchAck", &format!("b{i}"), 1).await;
    }
    let msgs = h.pop_n("PopBatchAck", 1000, 5).await;
    // Acked in two BATCH_ACK_MESSAGE entries per pop batch (Java groups by start offset).
    let mut acks: Vec<BatchAck> = Vec::new();
    for m in &msgs {
        let hd = &m.handle;
        let pos = (hd.queue_offset - hd.ck_queue_offset) as u32;
        match acks
            .iter_mut()
            .find(|a| a.start_offset == hd.ck_queue_offset && a.pop_time == hd.pop_time)
        {
            Some(a) => a.bit_set.insert(pos),
            None => {
                let mut bits = AckBitSet::default();
                bits.insert(pos);
                acks.push(BatchAck {
                    consumer_group: GROUP.into(),
                    topic: "PopBatchAck".into(),
                    retry: "0".into(),
                    start_offset: hd.ck_queue_offset,
                    queue_id: hd.queue_id,
                    revive_queue_id: hd.revive_qid,
                    pop_time: hd.pop_time,
                    invisible_time: hd.invisible_time,
                    bit_set: bits,
                });
            }
        }
    }
    let body = BatchAckMessageRequestBody {
        broker_name: "b".into(),
        acks,
    };
    let req = RemotingCommand::request(RequestCode::BatchAckMessage)
        .with_body(serde_json::to_vec(&body).unwrap());
    let resp = h.call(req).await;
    assert_eq!(resp.response_code(), ResponseCode::Success, "{resp:?}");
    assert!(h.pop("PopBatchAck", 1000, 3500).await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_error_codes() {
    let h = Harness::start().await;
    h.send("PopBad", "x", 0).await;
    let msgs = h.pop_n("PopBad", 5000, 1).await;
    let m = &msgs[0];
    // Unreadable receipt handles.
    for extra in [
        "garbage",
        "1 2 3",
        "x 1 2 3 0 b 0 1",
        "9223372036854775807 9223372036854775807 9223372036854775807 1 0 b 0 0",
    ] {
        let hd = AckMessageRequestHeader {
            consumer_group: GROUP.into(),
            topic: "PopBad".into(),
            queue_id: 0,
            extra_info: extra.into(),
            offset: 0,
        };
        let resp = h
            .call(RemotingCommand::request_with_header(
                RequestCode::AckMessage,
                &hd,
            ))
            .await;
        assert!(
            matches!(
                resp.response_code(),
                ResponseCode::SystemError | ResponseCode::Success
            ),
            "{extra}: {resp:?}"
        );
    }
    // Batch-ack bodies: not JSON, empty, a bit set far past any offset.
    for body in [
        &b"{not json"[..],
        br#"{"acks":[]}"#,
        br#"{"acks":[{"c":"popGroup","t":"PopBad","r":"0","so":9223372036854775800,"q":0,"rq":0,"pt":1,"it":1,"b":"/////w=="}]}"#,
        br#"{"acks":[{"c":"popGroup","t":"PopBad","r":"7","so":0,"q":0,"rq":0,"pt":1,"it":1,"b":"AQ=="}]}"#,
    ] {
        let resp = h
            .call(RemotingCommand::request(RequestCode::BatchAckMessage).with_body(body.to_vec()))
            .await;
        assert_ne!(resp.response_code(), ResponseCode::Unknown(-1), "{resp:?}");
    }
    // Out-of-range times.
    for invisible in [0, -5, i64::MAX, i64::MIN] {
        let (resp, got) = h.pop_with("PopBad", -1, invisible, 0, false, None, 1).await;
        assert_eq!(
            resp.response_code(),
            ResponseCode::InvalidParameter,
            "{invisible}"
        );
        assert!(got.is_empty());
        let (resp, _) = h.change("PopBad", m, invisible.min(-1)).await;
        assert_eq!(
            resp.response_code(),
            ResponseCode::InvalidParameter,
            "{invisible}"
        );
    }
    let (resp, _) = h.change("PopBad", m, i64::MAX).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    // A huge poll time or born time is no overflow either.
    let hd = PopMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: "PopBad".into(),
        queue_id: -1,
        max_msg_nums: 1,
        invisible_time: 5000,
        poll_time: i64::MIN,
        born_time: i64::MAX,
        init_mode: POP_INIT_MODE_MIN,
        exp_type: None,
        exp: None,
        order: None,
        attempt_id: None,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::PopMessage,
            &hd,
        ))
        .await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::PollingTimeout,
        "{resp:?}"
    );
    // The broker still works, and the message is still in flight for its real handle.
    assert_eq!(
        h.ack("PopBad", m).await.response_code(),
        ResponseCode::Success
    );
    h.stop().await;
}

#[tokio::test]
async fn concurrent_pops_and_acks_lose_and_duplicate_nothing() {
    let h = Harness::start().await;
    const N: usize = 60;
    for i in 0..N {
        h.send("PopConc", &format!("c{i:02}"), 0).await;
    }
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let (_, msgs) = h.pop_with("PopConc", 0, 20_000, 300, false, None, 3).await;
                if msgs.is_empty() && got.len() + 1 > 0 {
                    // Others may still hold the rest; stop after an empty poll.
                    break;
                }
                for m in msgs {
                    let resp = h.ack("PopConc", &m).await;
                    assert_eq!(resp.response_code(), ResponseCode::Success);
                    got.push(String::from_utf8_lossy(&m.body).into_owned());
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    // Pick up anything left (sends are dispatched asynchronously).
    while all.len() < N {
        let more = h.pop("PopConc", 20_000, 1000).await;
        if more.is_empty() {
            break;
        }
        for m in more {
            h.ack("PopConc", &m).await;
            all.push(String::from_utf8_lossy(&m.body).into_owned());
        }
    }
    all.sort();
    let expected: Vec<String> = (0..N).map(|i| format!("c{i:02}")).collect();
    assert_eq!(all, expected);
    let h = std::sync::Arc::try_unwrap(h).ok().unwrap();
    h.stop().await;
}
