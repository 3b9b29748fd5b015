//! Fuzz entry points: one function per target, each feeding arbitrary bytes to the decoders
//! that read what arrives from the network or the disk. None may panic, loop forever or
//! allocate without bound, whatever the input. `fuzz/` (cargo-fuzz, libFuzzer) drives them
//! for long runs; `tests/short_run.rs` drives them in every CI run with a fixed-seed sample
//! and replays every input a fuzzer ever found (`regressions/<target>/`).
//!
//! The targets: [`frame`] (the remoting frame codec, JSON and ROCKETMQ binary headers),
//! [`headers`] (every typed request/response header), [`bodies`] (every request-body parser),
//! [`record`] (commit-log records, properties, ids and handles), [`sql92`] (the SQL92 filter),
//! and [`grpc`] (the gRPC endpoint's protobuf decoding and conversions).

use bytes::{Bytes, BytesMut};
use ferrymq_protocol::body::{self, from_java_json};
use ferrymq_protocol::codec::{decode_frame, encode_frame, RemotingCodec};
use ferrymq_protocol::header::*;
use ferrymq_protocol::message::{self, properties, RecordIter, RecordView};
use ferrymq_protocol::{ExtFields, RemotingCommand};
use tokio_util::codec::Decoder;

/// One fuzz target: bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `regressions/<name>/` call them.
pub const TARGETS: [(&str, Target); 6] = [
    ("frame", frame),
    ("headers", headers),
    ("bodies", bodies),
    ("record", record),
    ("sql92", sql92),
    ("grpc", grpc),
];

/// A stream of length-prefixed frames through the server's codec; every decoded command is
/// encoded again and must decode.
pub fn frame(data: &[u8]) {
    let mut codec = RemotingCodec::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = codec.decode(&mut buf) {
        headers_of(&cmd);
        if let Ok(again) = encode_frame(&cmd) {
            let again = again.freeze();
            let decoded = decode_frame(again.slice(4..));
            assert!(
                decoded.is_ok(),
                "a re-encoded command does not decode: {decoded:?}"
            );
        }
    }
    // The same bytes as one frame without its length prefix.
    if let Ok(cmd) = decode_frame(Bytes::copy_from_slice(data)) {
        headers_of(&cmd);
    }
}

/// Header fields as text lines `key=value` (what a JSON or binary header carries), decoded
/// into every typed header.
pub fn headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut ext = ExtFields::new();
    for line in text.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        ext.insert(k, v);
    }
    let mut cmd = RemotingCommand::request(ferrymq_protocol::RequestCode::SendMessage);
    cmd.ext_fields = ext;
    headers_of(&cmd);
}

fn headers_of(cmd: &RemotingCommand) {
    let _ = SendMessageRequestHeader::read_v2(&cmd.ext_fields);
    macro_rules! each {
        ($($t:ty),* $(,)?) => { $( let _ = cmd.decode_header::<$t>(); )* };
    }
    each!(
        SendMessageRequestHeader,
        SendMessageResponseHeader,
        ReplyMessageRequestHeader,
        RecallMessageRequestHeader,
        RecallMessageResponseHeader,
        PullMessageRequestHeader,
        PullMessageResponseHeader,
        UnregisterClientRequestHeader,
        ConsumerGroupHeader,
        ProducerGroupHeader,
        QueryConsumerOffsetRequestHeader,
        UpdateConsumerOffsetRequestHeader,
        OffsetResponseHeader,
        QueueRequestHeader,
        SearchOffsetRequestHeader,
        TimestampResponseHeader,
        ConsumerSendMsgBackRequestHeader,
        EndTransactionRequestHeader,
        CheckTransactionStateRequestHeader,
        CreateTopicRequestHeader,
        TopicHeader,
        GetConsumeStatsRequestHeader,
        DeleteSubscriptionGroupRequestHeader,
        GroupHeader,
        QueryMessageRequestHeader,
        QueryMessageResponseHeader,
        ViewMessageRequestHeader,
        ResetOffsetRequestHeader,
        GetBrokerConfigResponseHeader,
        GetConsumerRunningInfoRequestHeader,
        ConsumeMessageDirectlyResultRequestHeader,
        QueryConsumeTimeSpanRequestHeader,
        GetNextBrokerIdRequestHeader,
        ApplyBrokerIdRequestHeader,
        RegisterBrokerToControllerRequestHeader,
        GetReplicaInfoRequestHeader,
        AlterSyncStateSetRequestHeader,
        ElectMasterRequestHeader,
        CleanControllerBrokerDataRequestHeader,
        GetRouteInfoRequestHeader,
        RegisterBrokerRequestHeader,
        RegisterBrokerResponseHeader,
        BrokerIdentityHeader,
        QueryDataVersionResponseHeader,
        BrokerHeartbeatRequestHeader,
        PutKvConfigRequestHeader,
        KvConfigKeyHeader,
        GetKvListByNamespaceRequestHeader,
        DeleteTopicFromNamesrvRequestHeader,
        GetTopicsByClusterRequestHeader,
        BrokerNameHeader,
        RegisterTopicRequestHeader,
        GetBrokerMemberGroupRequestHeader,
        PopMessageRequestHeader,
        PopMessageResponseHeader,
        AckMessageRequestHeader,
        ChangeInvisibleTimeRequestHeader,
        ChangeInvisibleTimeResponseHeader,
        NotificationRequestHeader,
        NotificationResponseHeader,
    );
}

/// Every body a broker, name server or controller parses from a request.
pub fn bodies(data: &[u8]) {
    let _ = body::RegisterBrokerBody::decode(data, false);
    let _ = body::RegisterBrokerBody::decode(data, true);
    let _ = body::TopicRouteData::decode(data);
    let _ = message::batch::decode_all(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    macro_rules! each {
        ($($t:ty),* $(,)?) => { $( let _ = from_java_json::<$t>(text); )* };
    }
    each!(
        body::HeartbeatData,
        body::LockBatchRequestBody,
        body::SubscriptionGroupConfig,
        body::BatchAckMessageRequestBody,
        body::auth::UserInfo,
        body::auth::AclInfo,
        body::DataVersion,
        body::TopicConfigSerializeWrapper,
        body::KvTable,
        body::SyncStateSet,
        body::BrokerReplicasInfo,
        body::EpochEntryCache,
        body::ClusterInfo,
        body::TopicList,
        body::ConsumerConnection,
        body::ProducerConnection,
        body::SubscriptionGroupWrapper,
        body::GetBrokerMemberGroupResponseBody,
        serde_json::Value,
    );
    let _ = body::TopicConfig::decode_text(text);
    let _ = body::decode_reset_offset_body(text);
    let _ = body::decode_topic_stats(text);
    let _ = body::decode_consume_stats(text);
    let _ = body::quote_numeric_keys(text);
    let _ = ferrymq_protocol::java_properties::parse(text);
    let _ = ferrymq_protocol::trace::decode(text);
}

/// Commit-log records and the strings stored with or derived from them.
pub fn record(data: &[u8]) {
    if let Ok(v) = RecordView::parse(data) {
        let _ = (
            v.topic(),
            v.body(),
            v.properties(),
            v.store_host(),
            v.born_host(),
        );
        for (_k, _v) in properties::iter(v.properties()) {}
    }
    let _ = RecordView::parse_checked(data);
    for r in RecordIter::new(data).take(1024) {
        if r.is_err() {
            break;
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (_k, _v) in properties::iter(text) {}
    let _ = properties::to_map(text);
    let _ = message::OffsetMsgId::decode(text);
    let _ = ferrymq_protocol::pop::ExtraInfo::parse(text);
    let _ = ferrymq_protocol::pop::parse_start_offset_info(text);
    let _ = ferrymq_protocol::pop::parse_msg_offset_info(text);
    let _ = ferrymq_protocol::pop::parse_order_count_info(text);
    let _ = ferrymq_protocol::recall::RecallHandle::decode(text);
    let tags = message::tag::SubscriptionTags::parse(text);
    let _ = tags.matches_tag(Some("TagA"));
}

/// An SQL92 expression, parsed and, when it parses, evaluated against properties taken from
/// the same input.
pub fn sql92(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (expr, props) = text
        .split_once('\n')
        .unwrap_or((&text, "a=1\nb=x\nTAGS=TagA"));
    let Ok(filter) = ferrymq_protocol::filter::SqlFilter::parse(expr) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = props
        .lines()
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();
    let _ = filter.matches(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v));
}

/// What the gRPC endpoint decodes from clients: the requests (protobuf) and their handles.
pub fn grpc(data: &[u8]) {
    use ferrymq_proxy::fuzzing;
    fuzzing::send_message_request(data);
    fuzzing::receive_message_request(data);
    fuzzing::handle_requests(data);
    fuzzing::stored_record(data);
}
