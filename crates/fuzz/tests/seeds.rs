//! Writes the seed inputs of every target (`seeds/<target>/`): valid frames, headers, bodies,
//! records, SQL92 expressions and gRPC requests, built with the crates' own encoders, so the
//! fuzzers start from inputs that reach deep into each decoder. The seeds are checked in;
//! `cargo test -p ferrymq-fuzz --test seeds -- --ignored` writes them again.

use std::net::SocketAddr;
use std::path::Path;

use ferrymq_protocol::codec::encode_frame;
use ferrymq_protocol::header::{PullMessageRequestHeader, SendMessageRequestHeader};
use ferrymq_protocol::message::batch::{self, BatchElement};
use ferrymq_protocol::message::MessageRecord;
use ferrymq_protocol::{RemotingCommand, RequestCode, SerializeType};
use ferrymq_proxy::pb;
use prost::Message as _;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn send_request(ty: SerializeType) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "TopicA".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 1,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(
            "UNIQ_KEY\u{1}7F00000100002A9F0000000000001234\u{2}TAGS\u{1}TagA\u{2}".into(),
        ),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    };
    let mut cmd = RemotingCommand::request(RequestCode::SendMessageV2).with_body(b"hello".to_vec());
    header.write_v2(&mut cmd.ext_fields);
    cmd.serialize_type = ty;
    cmd
}

fn record(topic: &str, body: &[u8], properties: &str, v6: bool) -> Vec<u8> {
    let host: SocketAddr = if v6 { "[::1]:10911" } else { "127.0.0.1:10911" }
        .parse()
        .unwrap();
    let r = MessageRecord {
        topic,
        queue_id: 2,
        flag: 0,
        queue_offset: 7,
        physical_offset: 4096,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: host,
        store_timestamp: 1_700_000_000_100,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        body_crc: None,
        properties,
    };
    let mut out = Vec::new();
    r.encode_to(&mut out).unwrap();
    out
}

fn grpc_message(body: &[u8]) -> pb::Message {
    pb::Message {
        topic: Some(pb::Resource {
            name: "TopicA".into(),
            ..Default::default()
        }),
        user_properties: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
        system_properties: Some(pb::SystemProperties {
            tag: Some("TagA".into()),
            keys: vec!["k1".into()],
            message_id: "01F4A8C2B10000000000000000".into(),
            body_encoding: pb::Encoding::Identity as i32,
            message_type: pb::MessageType::Normal as i32,
            born_host: "127.0.0.1".into(),
            ..Default::default()
        }),
        body: body.to_vec(),
    }
}

#[test]
#[ignore = "writes the checked-in seed files"]
fn write_seeds() {
    for (name, ty) in [
        ("send_json", SerializeType::Json),
        ("send_binary", SerializeType::RocketMq),
    ] {
        write("frame", name, &encode_frame(&send_request(ty)).unwrap());
    }
    let pull = PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: "TopicA".into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: 6,
        commit_offset: 0,
        suspend_timeout_millis: 20_000,
        subscription: Some("TagA || TagB".into()),
        sub_version: 1,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let cmd = RemotingCommand::request_with_header(RequestCode::PullMessage, &pull);
    write("frame", "pull_json", &encode_frame(&cmd).unwrap());

    write(
        "headers",
        "send_v2",
        b"a=pg\nb=TopicA\nc=TBW102\nd=4\ne=1\nf=0\ng=1700000000000\nh=0\ni=TAGS\x01A\x02\nj=0\nk=false\nm=false\n",
    );
    write(
        "headers",
        "pull",
        b"consumerGroup=cg\ntopic=TopicA\nqueueId=0\nqueueOffset=12\nmaxMsgNums=32\nsysFlag=6\ncommitOffset=0\nsuspendTimeoutMillis=20000\nsubscription=*\nsubVersion=1\nexpressionType=TAG\n",
    );
    write(
        "headers",
        "pop_ack",
        b"consumerGroup=cg\ntopic=TopicA\nqueueId=-1\nmaxMsgNums=32\ninvisibleTime=60000\npollTime=5000\nbornTime=1\ninitMode=0\nextraInfo=0 1700000000000 60000 0 0 broker-a 0 12\noffset=12\nrecallHandle=djEgb3JkZXJz\n",
    );

    write(
        "bodies",
        "heartbeat",
        br#"{"clientID":"127.0.0.1@1","producerDataSet":[{"groupName":"pg"}],"consumerDataSet":[{"groupName":"cg","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"classFilterMode":false,"topic":"TopicA","subString":"*","tagsSet":[],"codeSet":[],"subVersion":1,"expressionType":"TAG"}],"unitMode":false}]}"#,
    );
    write(
        "bodies",
        "register_broker",
        br#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"TopicA":{"topicName":"TopicA","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false}},"dataVersion":{"timestamp":1,"counter":2}},"filterServerList":[]}"#,
    );
    write(
        "bodies",
        "route",
        br#"{"orderTopicConf":null,"queueDatas":[{"brokerName":"broker-a","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicSysFlag":0}],"brokerDatas":[{"cluster":"c","brokerName":"broker-a","brokerAddrs":{0:"127.0.0.1:10911"}}]}"#,
    );
    write(
        "bodies",
        "reset_offset",
        br#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicA"}:12}}"#,
    );
    write("bodies", "lock_batch", br#"{"consumerGroup":"cg","clientId":"c1","mqSet":[{"topic":"TopicA","brokerName":"broker-a","queueId":1}]}"#);
    let elements = [
        BatchElement {
            flag: 0,
            body: b"one",
            properties: "TAGS\u{1}A\u{2}",
        },
        BatchElement {
            flag: 1,
            body: b"two",
            properties: "",
        },
    ];
    write("bodies", "batch", &batch::encode(&elements).unwrap());

    write(
        "record",
        "v4",
        &record(
            "TopicA",
            b"hello",
            "TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}ABC\u{2}",
            false,
        ),
    );
    write("record", "v6", &record("TopicB", b"", "", true));
    let mut two = record("TopicA", b"x", "", false);
    two.extend(record("TopicA", b"y", "KEYS\u{1}k\u{2}", false));
    write("record", "two_records", &two);
    write(
        "record",
        "extra_info",
        b"0 1700000000000 60000 0 0 broker-a 0 12 4096",
    );
    write(
        "record",
        "offset_msg_id",
        b"7F00000100002A9F0000000000001234",
    );

    write("sql92", "compare", b"a > 1 AND b = 'x'\na=2\nb=x");
    write(
        "sql92",
        "between_in",
        b"(a BETWEEN 1 AND 3) OR b IN ('x', 'y') OR c IS NULL\na=2",
    );
    write(
        "sql92",
        "like_not",
        b"NOT (TAGS LIKE 'Tag%') AND a <> 3.5\nTAGS=TagB\na=1",
    );

    let send = pb::SendMessageRequest {
        messages: vec![grpc_message(b"hello")],
    };
    write("grpc", "send", &send.encode_to_vec());
    let receive = pb::ReceiveMessageRequest {
        group: Some(pb::Resource {
            name: "cg".into(),
            ..Default::default()
        }),
        message_queue: Some(pb::MessageQueue {
            topic: Some(pb::Resource {
                name: "TopicA".into(),
                ..Default::default()
            }),
            id: -1,
            ..Default::default()
        }),
        filter_expression: Some(pb::FilterExpression {
            r#type: pb::FilterType::Sql as i32,
            expression: "a > 1".into(),
        }),
        batch_size: 16,
        invisible_duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        auto_renew: false,
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 20,
            nanos: 0,
        }),
        attempt_id: None,
    };
    write("grpc", "receive", &receive.encode_to_vec());
    let ack = pb::AckMessageRequest {
        entries: vec![pb::AckMessageEntry {
            message_id: "01".into(),
            receipt_handle: "0 1700000000000 60000 0 0 broker-a 0 12 4096".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    write("grpc", "ack", &ack.encode_to_vec());
    write(
        "grpc",
        "record",
        &record("TopicA", b"hello", "TAGS\u{1}TagA\u{2}", false),
    );
}
