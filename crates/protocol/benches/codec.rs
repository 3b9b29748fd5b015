//! Hot-path codec benchmarks: decoding a producer's SEND_MESSAGE_V2 frame (JSON and binary
//! headers), reading its typed header, encoding the send response, and encoding / parsing a
//! 1 KiB message record, and signing / verifying a send under ACL.
//!
//! Run: `cargo bench -p ferrymq-protocol --bench codec`.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferrymq_protocol::codec::{encode_frame, RemotingCodec};
use ferrymq_protocol::header::{SendMessageRequestHeader, SendMessageResponseHeader};
use ferrymq_protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode, SerializeType};
use tokio_util::codec::Decoder;

fn send_request(ty: SerializeType) -> RemotingCommand {
    send_request_of(ty, 1024)
}

fn send_request_of(ty: SerializeType, body_len: usize) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "benchmark_producer_group".into(),
        topic: "BenchmarkTopic".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("UNIQ_KEY\u{1}7F0000010B2C18B4AAC2713D54F70000\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}".into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    };
    let mut cmd =
        RemotingCommand::request(RequestCode::SendMessageV2).with_body(vec![b'x'; body_len]);
    // Sized as the producer sizes it.
    cmd.ext_fields = ExtFields::with_capacity(17, 300);
    header.write_v2(&mut cmd.ext_fields);
    cmd.opaque = 12345;
    cmd.serialize_type = ty;
    cmd
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_send_frame");
    group.throughput(Throughput::Elements(1));
    for (name, ty) in [
        ("json", SerializeType::Json),
        ("binary", SerializeType::RocketMq),
    ] {
        let frame = encode_frame(&send_request(ty)).unwrap().freeze();
        group.bench_function(name, |b| {
            let mut codec = RemotingCodec::default();
            b.iter(|| {
                let mut buf = BytesMut::from(&frame[..]);
                let cmd = codec.decode(&mut buf).unwrap().unwrap();
                black_box(SendMessageRequestHeader::read_v2(&cmd.ext_fields).unwrap())
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let request = send_request(SerializeType::Json);
    c.bench_function("encode_send_response", |b| {
        b.iter(|| {
            let response = RemotingCommand::response_to(&request, ResponseCode::Success)
                .with_header(&SendMessageResponseHeader {
                    msg_id: "7F00000100002A9F0000000000001234".into(),
                    queue_id: 3,
                    queue_offset: 123_456,
                    transaction_id: None,
                    batch_uniq_id: None,
                    msg_region: Some("DefaultRegion".into()),
                    trace_on: Some("true".into()),
                    recall_handle: None,
                });
            black_box(encode_frame(&response).unwrap())
        })
    });
}

/// Encoding a 1 KiB message record into a buffer (the append path) and parsing it back (the
/// pull/consume path).
fn record(c: &mut Criterion) {
    use ferrymq_protocol::message::{MessageRecord, RecordView};
    let body = vec![b'x'; 1024];
    let props =
        "UNIQ_KEY\u{1}7F0000010B2C18B4AAC2713D54F70000\u{2}TAGS\u{1}TagA\u{2}KEYS\u{1}order-1\u{2}";
    let record = MessageRecord {
        topic: "BenchmarkTopic",
        queue_id: 3,
        flag: 0,
        queue_offset: 42,
        physical_offset: 1 << 30,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.0.0.5:53422".parse().unwrap(),
        store_timestamp: 1_700_000_000_001,
        store_host: "10.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        body_crc: None,
        properties: props,
    };
    let mut buf = vec![0u8; record.encoded_len().unwrap()];
    let mut group = c.benchmark_group("record_1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_with_crc", |b| {
        b.iter(|| black_box(record.encode_into(black_box(&mut buf)).unwrap()))
    });
    group.bench_function("parse", |b| {
        b.iter(|| black_box(RecordView::parse(black_box(&buf)).unwrap().queue_offset()))
    });
    group.finish();
}

/// ACL 1.0: the client signing a send and the broker verifying it (128 B and 1 KiB bodies).
fn acl(c: &mut Criterion) {
    use ferrymq_protocol::acl::{Credentials, Signer, SigningKey};
    let creds = Credentials::new("benchmark-access-key", "benchmark-secret-key");
    let signer = Signer::new(&creds);
    let key = SigningKey::new(&creds.secret_key);
    for (name, len) in [("acl_send_128B", 128), ("acl_send_1KiB", 1024)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        group.bench_function("sign", |b| {
            b.iter_batched(
                || send_request_of(SerializeType::Json, len),
                |mut req| {
                    signer.sign(&mut req);
                    black_box(req)
                },
                criterion::BatchSize::SmallInput,
            )
        });
        let mut signed = send_request_of(SerializeType::Json, len);
        signer.sign(&mut signed);
        group.bench_function("verify", |b| {
            b.iter(|| {
                assert!(black_box(&key).verifies(black_box(&signed)));
            })
        });
        // The floor: HMAC-SHA1 of the same bytes laid out in one buffer.
        let mut flat = Vec::new();
        signed.ext_fields.for_each_sorted(|k, v| {
            flat.extend_from_slice(if k == "Signature" { b"" } else { v.as_bytes() })
        });
        flat.extend(std::iter::repeat_n(b'x', len));
        group.bench_function("hmac_only", |b| {
            b.iter(|| black_box(black_box(&key).mac(&[black_box(&flat)])))
        });
        group.bench_function("fields_in_order", |b| {
            b.iter(|| {
                let mut n = 0usize;
                black_box(&signed)
                    .ext_fields
                    .for_each_sorted_bytes(|_, v| n += v.len());
                black_box(n)
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = decode, encode, record, acl
}
criterion_main!(benches);
