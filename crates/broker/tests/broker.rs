//! The broker over real sockets: an in-process broker on ephemeral ports with its own store
//! directory, driven by the transport client exactly as a RocketMQ client drives it.

use std::time::{Duration, Instant};

use ferrymq_broker::BrokerConfig;
use ferrymq_protocol::body::{ConsumerData, HeartbeatData, SubscriptionData};
use ferrymq_protocol::header::{
    ConsumerSendMsgBackRequestHeader, CreateTopicRequestHeader, EndTransactionRequestHeader,
    OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueueRequestHeader, SendMessageRequestHeader,
    SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use ferrymq_protocol::message::batch::{self, BatchElement};
use ferrymq_protocol::message::flag::{pull_sys_flag, sys_flag};
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::record::RecordIter;
use ferrymq_protocol::message::{OffsetMsgId, RecordView};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

mod common;
use common::{TestBroker as Harness, T};

/// The shared harness with short delay levels, so retries come back within a second.
async fn start(tweak: impl FnOnce(&mut BrokerConfig)) -> Harness {
    Harness::start(|c| {
        c.message_delay_level = "1s 2s".into();
        tweak(c)
    })
    .await
}

/// PULL_MESSAGE, a test-only extension of the shared harness.
trait Pull {
    async fn pull(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        sub: &str,
        suspend_ms: i64,
    ) -> RemotingCommand;
}

impl Pull for Harness {
    async fn pull(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        sub: &str,
        suspend_ms: i64,
    ) -> RemotingCommand {
        let h = PullMessageRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: pull_sys_flag::build(false, suspend_ms > 0, true, false, false),
            commit_offset: 0,
            suspend_timeout_millis: suspend_ms,
            subscription: Some(sub.into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
        };
        self.call(RemotingCommand::request_with_header(
            RequestCode::PullMessage,
            &h,
        ))
        .await
    }
}

fn records(resp: &RemotingCommand) -> Vec<(String, Vec<u8>, String, i64)> {
    let body = resp.body.to_bytes();
    RecordIter::new(&body)
        .map(|r| {
            let v = r.unwrap();
            (
                v.topic().to_owned(),
                v.body().to_vec(),
                v.properties().to_owned(),
                v.queue_offset(),
            )
        })
        .collect()
}

#[tokio::test]
async fn send_then_pull_round_trips_with_offsets_and_ids() {
    let h = start(|_| {}).await;
    let props = properties::encode([
        (keys::TAGS, "TagA"),
        (keys::KEYS, "k1 k2"),
        ("color", "blue"),
    ]);
    let resp = h.send("Orders", b"hello", &props, 1).await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    let sh: SendMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(sh.queue_id, 1);
    assert_eq!(sh.queue_offset, 0);
    assert!(sh.transaction_id.is_some());
    let id = OffsetMsgId::decode(&sh.msg_id).unwrap();
    assert_eq!(
        id.store_host.port(),
        h.broker.as_ref().unwrap().local_addr().port()
    );

    let resp = h.pull("cg", "Orders", 1, 0, "*", 3000).await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(
        (ph.next_begin_offset, ph.min_offset, ph.max_offset),
        (1, 0, 1)
    );
    let got = records(&resp);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"hello");
    assert_eq!(properties::get(&got[0].2, "color"), Some("blue"));
    assert_eq!(properties::get(&got[0].2, keys::KEYS), Some("k1 k2"));

    // Tag filtering happens on the consume queue.
    let resp = h.pull("cg", "Orders", 1, 0, "TagB", 0).await;
    assert_ne!(resp.response_code(), ResponseCode::Success);
    // At the end of the queue: PULL_NOT_FOUND with the full header.
    let resp = h.pull("cg", "Orders", 1, 1, "*", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::PullNotFound);
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(ph.next_begin_offset, 1);
    // Past the end: OFFSET_MOVED.
    let resp = h.pull("cg", "Orders", 1, 7, "*", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::PullOffsetMoved);

    let q = QueueRequestHeader {
        topic: "Orders".into(),
        queue_id: 1,
        committed: None,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::GetMaxOffset,
            &q,
        ))
        .await;
    assert_eq!(
        resp.decode_header::<OffsetResponseHeader>().unwrap().offset,
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn long_polling_pull_wakes_on_arrival() {
    let h = start(|_| {}).await;
    assert_eq!(
        h.send("Poll", b"first", "", 0).await.response_code(),
        ResponseCode::Success
    );
    // Wait until the first message is in the consume queue, so offset 1 is the queue's end.
    let first = h.pull("cg", "Poll", 0, 0, "*", 3000).await;
    assert_eq!(first.response_code(), ResponseCode::Success);
    let start = Instant::now();
    let (pull, _) = tokio::join!(h.pull("cg", "Poll", 0, 1, "*", 5000), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.send("Poll", b"second", "", 0).await
    });
    assert_eq!(pull.response_code(), ResponseCode::Success);
    assert_eq!(records(&pull)[0].1, b"second");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "held for {:?}",
        start.elapsed()
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_rocketmq_error_codes() {
    let h = start(|c| c.max_message_size = 1024).await;
    let resp = h.send("bad topic!", b"x", "", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    assert!(resp.remark.unwrap().contains("topic"));
    let resp = h.send("Big", &vec![0u8; 2048], "", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::MessageIllegal);
    let resp = h.send("SCHEDULE_TOPIC_XXXX", b"x", "", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::NoPermission);
    assert_eq!(
        h.send("Small", b"ok", "", 0).await.response_code(),
        ResponseCode::Success
    );
    let resp = h.send("Small", b"x", "", 99).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    let resp = h.pull("cg", "Small", 99, 0, "*", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    let resp = h.pull("cg", "Nope", 0, 0, "*", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::TopicNotExist);
    // A header that is missing required fields is an error response, not a dropped connection.
    let resp = h
        .call(RemotingCommand::request(RequestCode::PullMessage))
        .await;
    assert_eq!(resp.response_code(), ResponseCode::SystemError);
    let resp = h
        .call(RemotingCommand::request(RequestCode::Unknown(55555)))
        .await;
    assert_eq!(resp.response_code(), ResponseCode::RequestCodeNotSupported);
    // Still serving.
    assert_eq!(
        h.send("Small", b"ok", "", 0).await.response_code(),
        ResponseCode::Success
    );
    h.stop().await;
}

#[tokio::test]
async fn offsets_persist_across_restart_and_auto_create_is_switchable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    let h = start(|c| c.store_path_root_dir = root.clone()).await;
    assert_eq!(
        h.send("Kept", b"a", "", 0).await.response_code(),
        ResponseCode::Success
    );
    let up = UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: "Kept".into(),
        queue_id: 0,
        commit_offset: 1,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::UpdateConsumerOffset,
            &up,
        ))
        .await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    h.stop().await;

    let h = start(|c| {
        c.store_path_root_dir = root.clone();
        c.auto_create_topic_enable = false;
    })
    .await;
    let q = QueryConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: "Kept".into(),
        queue_id: 0,
        set_zero_if_not_found: None,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::QueryConsumerOffset,
            &q,
        ))
        .await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert_eq!(
        resp.decode_header::<OffsetResponseHeader>().unwrap().offset,
        1
    );
    let resp = h.pull("cg", "Kept", 0, 0, "*", 3000).await;
    assert_eq!(records(&resp)[0].1, b"a");
    // Auto-create is off now: unknown topics are refused, created ones work.
    assert_eq!(
        h.send("Fresh", b"x", "", 0).await.response_code(),
        ResponseCode::TopicNotExist
    );
    let ct = CreateTopicRequestHeader {
        topic: "Fresh".into(),
        default_topic: Some("TBW102".into()),
        read_queue_nums: 2,
        write_queue_nums: 2,
        perm: 6,
        topic_filter_type: Some("SINGLE_TAG".into()),
        topic_sys_flag: None,
        order: None,
        attributes: None,
        force: None,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::UpdateAndCreateTopic,
            &ct,
        ))
        .await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert_eq!(
        h.send("Fresh", b"x", "", 1).await.response_code(),
        ResponseCode::Success
    );
    h.stop().await;
}

#[tokio::test]
async fn batch_send_stores_each_element() {
    let h = start(|_| {}).await;
    let p0 = properties::encode([(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "A1")]);
    let p1 = properties::encode([(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "A2")]);
    let elems = [
        BatchElement {
            flag: 0,
            body: b"one",
            properties: &p0,
        },
        BatchElement {
            flag: 0,
            body: b"two",
            properties: &p1,
        },
    ];
    let body = batch::encode(elems.iter()).unwrap();
    let hdr = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "Batch".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1,
        flag: 0,
        properties: None,
        reconsume_times: None,
        unit_mode: None,
        batch: Some(true),
        max_reconsume_times: None,
        broker_name: None,
    };
    let mut req = RemotingCommand::request(RequestCode::SendBatchMessage).with_body(body);
    hdr.write_v2(&mut req.ext_fields);
    let resp = h.call(req).await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    let sh: SendMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(sh.msg_id.split(',').count(), 2);
    // The consume queue is built asynchronously; a pull may see the first element alone.
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = h.pull("cg", "Batch", 0, got.len() as i64, "*", 1000).await;
        got.extend(records(&r));
    }
    assert_eq!(
        got.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    assert_eq!(got[1].3, 1);
    h.stop().await;
}

#[tokio::test]
async fn failed_message_comes_back_through_the_retry_topic_after_its_delay() {
    let h = start(|_| {}).await;
    let hb = HeartbeatData {
        client_id: "127.0.0.1@test".into(),
        consumer_data_set: vec![ConsumerData {
            group_name: "cg".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "Work".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = h
        .call(
            RemotingCommand::request(RequestCode::HeartBeat)
                .with_body(serde_json::to_vec(&hb).unwrap()),
        )
        .await;
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert_eq!(
        h.send("Work", b"job", "", 0).await.response_code(),
        ResponseCode::Success
    );
    let pulled = h.pull("cg", "Work", 0, 0, "*", 3000).await;
    let body = pulled.body.to_bytes();
    let view = RecordView::parse(&body).unwrap();
    let back = ConsumerSendMsgBackRequestHeader {
        offset: view.physical_offset(),
        group: "cg".into(),
        delay_level: 1,
        origin_msg_id: None,
        origin_topic: Some("Work".into()),
        unit_mode: None,
        max_reconsume_times: None,
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::ConsumerSendMsgBack,
            &back,
        ))
        .await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    // Level 1 is 1 s here; the long poll is woken when the delayed copy is delivered.
    let deadline = Instant::now() + Duration::from_secs(8);
    let got = loop {
        let r = h.pull("cg", "%RETRY%cg", 0, 0, "*", 2000).await;
        if r.response_code() == ResponseCode::Success {
            break records(&r);
        }
        assert!(Instant::now() < deadline, "retry message never arrived");
    };
    assert_eq!(got[0].1, b"job");
    assert_eq!(properties::get(&got[0].2, keys::RETRY_TOPIC), Some("Work"));
    h.stop().await;
}

#[tokio::test]
async fn transaction_half_message_is_invisible_until_commit() {
    let h = start(|_| {}).await;
    let props = properties::encode([
        (keys::TRANSACTION_PREPARED, "true"),
        (keys::PRODUCER_GROUP, "pg"),
    ]);
    let hdr = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "Tx".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: sys_flag::TRANSACTION_PREPARED_TYPE,
        born_timestamp: 1,
        flag: 0,
        properties: Some(props),
        reconsume_times: None,
        unit_mode: None,
        batch: None,
        max_reconsume_times: None,
        broker_name: None,
    };
    let mut req = RemotingCommand::request(RequestCode::SendMessage).with_body(b"tx-body".to_vec());
    ferrymq_protocol::header::CommandHeader::write(&hdr, &mut req.ext_fields);
    let resp = h.call(req).await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    let sh: SendMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(
        h.pull("cg", "Tx", 0, 0, "*", 0).await.response_code(),
        ResponseCode::PullNotFound
    );
    let end = EndTransactionRequestHeader {
        topic: Some("Tx".into()),
        producer_group: "pg".into(),
        tran_state_table_offset: sh.queue_offset,
        commit_log_offset: OffsetMsgId::decode(&sh.msg_id).unwrap().physical_offset,
        commit_or_rollback: sys_flag::TRANSACTION_COMMIT_TYPE,
        from_transaction_check: None,
        msg_id: sh.transaction_id.clone().unwrap_or_default(),
        transaction_id: sh.transaction_id.clone(),
    };
    let resp = h
        .call(RemotingCommand::request_with_header(
            RequestCode::EndTransaction,
            &end,
        ))
        .await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    let got = records(&h.pull("cg", "Tx", 0, 0, "*", 3000).await);
    assert_eq!(got[0].1, b"tx-body");
    h.stop().await;
}

/// Plays a transactional producer: answers CHECK_TRANSACTION_STATE with a COMMIT.
struct CommittingProducer {
    checks: tokio::sync::mpsc::UnboundedSender<i64>,
}

impl ferrymq_remoting::RequestHandler for CommittingProducer {
    async fn handle(
        &self,
        conn: &ferrymq_remoting::Connection,
        req: RemotingCommand,
    ) -> Option<RemotingCommand> {
        if req.request_code() != RequestCode::CheckTransactionState {
            return Some(RemotingCommand::unsupported(&req));
        }
        let h: ferrymq_protocol::header::CheckTransactionStateRequestHeader =
            req.decode_header().unwrap();
        let body = req.body.to_bytes();
        let view = RecordView::parse(&body).unwrap();
        assert_eq!(view.topic(), "TxCheck");
        let _ = self.checks.send(h.tran_state_table_offset);
        let end = EndTransactionRequestHeader {
            topic: Some("TxCheck".into()),
            producer_group: "pg".into(),
            tran_state_table_offset: h.tran_state_table_offset,
            commit_log_offset: h.commit_log_offset,
            commit_or_rollback: sys_flag::TRANSACTION_COMMIT_TYPE,
            from_transaction_check: Some(true),
            msg_id: h.msg_id.clone().unwrap_or_default(),
            transaction_id: h.transaction_id.clone(),
        };
        let conn = conn.clone();
        tokio::spawn(async move {
            let _ = conn
                .invoke_oneway(RemotingCommand::request_with_header(
                    RequestCode::EndTransaction,
                    &end,
                ))
                .await;
        });
        None
    }
}

#[tokio::test]
async fn unresolved_half_message_is_checked_back_with_its_producer() {
    let h = start(|c| {
        c.transaction_time_out = 100;
        c.transaction_check_interval = 200;
    })
    .await;
    let (tx, mut checks) = tokio::sync::mpsc::unbounded_channel();
    let producer = RemotingClient::with_handler(
        ClientConfig::default(),
        std::sync::Arc::new(CommittingProducer { checks: tx }),
    );
    let hb = HeartbeatData {
        client_id: "127.0.0.1@tx".into(),
        producer_data_set: vec![ferrymq_protocol::body::ProducerData {
            group_name: "pg".into(),
        }],
        ..Default::default()
    };
    let resp = producer
        .invoke(
            &h.addr,
            RemotingCommand::request(RequestCode::HeartBeat)
                .with_body(serde_json::to_vec(&hb).unwrap()),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success);
    let props = properties::encode([
        (keys::TRANSACTION_PREPARED, "true"),
        (keys::PRODUCER_GROUP, "pg"),
    ]);
    let hdr = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "TxCheck".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: sys_flag::TRANSACTION_PREPARED_TYPE,
        born_timestamp: ferrymq_broker::state::BrokerState::now_ms(),
        flag: 0,
        properties: Some(props),
        reconsume_times: None,
        unit_mode: None,
        batch: None,
        max_reconsume_times: None,
        broker_name: None,
    };
    let mut req =
        RemotingCommand::request(RequestCode::SendMessageV2).with_body(b"unsure".to_vec());
    hdr.write_v2(&mut req.ext_fields);
    let resp = producer.invoke(&h.addr, req, T).await.unwrap();
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    // The broker asks, the producer commits, the message becomes visible exactly once.
    tokio::time::timeout(Duration::from_secs(8), checks.recv())
        .await
        .expect("no check-back")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let r = h.pull("cg", "TxCheck", 0, 0, "*", 500).await;
        if r.response_code() == ResponseCode::Success {
            let got = records(&r);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].1, b"unsure");
            break;
        }
        assert!(Instant::now() < deadline, "committed message never visible");
    }
    // Settled: no further checks arrive.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(checks.try_recv().is_err(), "checked again after commit");
    producer.shutdown();
    h.stop().await;
}

#[tokio::test]
async fn timer_message_is_delivered_at_its_time_not_before() {
    let h = start(|_| {}).await;
    let due = ferrymq_broker::state::BrokerState::now_ms() + 1500;
    let props = properties::encode([(keys::TIMER_DELIVER_MS, due.to_string().as_str())]);
    let resp = h.send("Later", b"tick", &props, 0).await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    assert_ne!(
        h.pull("cg", "Later", 0, 0, "*", 0).await.response_code(),
        ResponseCode::Success
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let r = h.pull("cg", "Later", 0, 0, "*", 1000).await;
        if r.response_code() == ResponseCode::Success {
            let (topic, body, props, _) = &records(&r)[0];
            assert_eq!((topic.as_str(), body.as_slice()), ("Later", &b"tick"[..]));
            // The delivered copy keeps its delivery time (5.x consumers report it) and is marked
            // as having passed the timer; the parking coordinates are gone.
            let due_text = due.to_string();
            assert_eq!(
                properties::get(props, keys::TIMER_DELIVER_MS),
                Some(due_text.as_str())
            );
            assert!(properties::get(props, keys::TIMER_OUT_MS).is_some());
            assert!(properties::get(props, keys::TIMER_DEQUEUE_MS).is_some());
            assert_eq!(properties::get(props, keys::REAL_TOPIC), None);
            // Rounded down to whole seconds, never more than a second early.
            assert!(ferrymq_broker::state::BrokerState::now_ms() >= due - 1000);
            break;
        }
        assert!(Instant::now() < deadline, "timer message never delivered");
    }
    let props = properties::encode([(keys::TIMER_DELAY_SEC, "9999999")]);
    assert_eq!(
        h.send("Later", b"x", &props, 0).await.response_code(),
        ResponseCode::MessageIllegal
    );
    h.stop().await;
}

#[tokio::test]
async fn runtime_config_update_applies_and_rejects_restart_only_keys() {
    let h = start(|_| {}).await;
    let update = |text: &str| {
        RemotingCommand::request(RequestCode::UpdateBrokerConfig).with_body(text.to_owned())
    };
    let resp = h.call(update("brokerPermission=4\n")).await;
    assert_eq!(
        resp.response_code(),
        ResponseCode::Success,
        "{:?}",
        resp.remark
    );
    assert_eq!(
        h.send("RO", b"x", "", 0).await.response_code(),
        ResponseCode::NoPermission
    );
    let resp = h
        .call(RemotingCommand::request(RequestCode::GetBrokerConfig))
        .await;
    let text = String::from_utf8(resp.body.to_bytes().to_vec()).unwrap();
    assert!(text.contains("brokerPermission=4"), "{text}");
    let resp = h.call(update("listenPort=1234\n")).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    assert!(resp.remark.unwrap().contains("listenPort"));
    let resp = h.call(update("brokerPermission=6\nnoSuchKey=1\n")).await;
    assert_eq!(resp.response_code(), ResponseCode::InvalidParameter);
    // All or nothing: the permission is still read-only.
    assert_eq!(
        h.send("RO", b"x", "", 0).await.response_code(),
        ResponseCode::NoPermission
    );
    assert_eq!(
        h.call(update("brokerPermission=6")).await.response_code(),
        ResponseCode::Success
    );
    assert_eq!(
        h.send("RO", b"x", "", 0).await.response_code(),
        ResponseCode::Success
    );
    h.stop().await;
}
