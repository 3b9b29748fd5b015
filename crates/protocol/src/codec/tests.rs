use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::code::{LanguageCode, RequestCode};
use crate::command::{ExtFields, RemotingCommand, SerializeType};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn route_request(ty: SerializeType) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic);
    cmd.language = LanguageCode::Java;
    cmd.version = 479;
    cmd.opaque = 7;
    cmd.ext_fields.insert("topic", "T1");
    cmd.serialize_type = ty;
    cmd
}

/// The worked example of remoting.md §4, byte for byte.
#[test]
fn golden_binary_route_request() {
    let golden = hex(
        "00000026 01000022 0069 00 01df 00000007 00000000 00000000 0000000d
         0005 746f706963 00000002 5431",
    );
    let encoded = encode_frame(&route_request(SerializeType::RocketMq)).unwrap();
    assert_eq!(&encoded[..], &golden[..]);

    let mut buf = BytesMut::from(&golden[..]);
    let cmd = RemotingCodec::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!(cmd, route_request(SerializeType::RocketMq));
    assert!(buf.is_empty());
}

/// The JSON form of the same example: 124 header bytes, prefix `00000080 0000007C`.
#[test]
fn golden_json_route_request() {
    let header = br#"{"code":105,"extFields":{"topic":"T1"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_eq!(header.len(), 124);
    let mut golden = hex("00000080 0000007C");
    golden.extend_from_slice(header);

    let encoded = encode_frame(&route_request(SerializeType::Json)).unwrap();
    assert_eq!(&encoded[..], &golden[..]);

    let mut buf = BytesMut::from(&golden[..]);
    let cmd = RemotingCodec::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!(cmd, route_request(SerializeType::Json));
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let frame =
        encode_frame(&route_request(SerializeType::Json).with_body(b"body".to_vec())).unwrap();
    let mut codec = RemotingCodec::default();
    let mut buf = BytesMut::new();
    for (i, b) in frame.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let out = codec.decode(&mut buf).unwrap();
        if i + 1 < frame.len() {
            assert!(out.is_none());
        } else {
            let cmd = out.unwrap();
            assert_eq!(&cmd.body.to_bytes()[..], b"body");
        }
    }
}

#[test]
fn oversize_and_malformed_frames_are_errors() {
    let mut codec = RemotingCodec::new(1024);
    let mut buf = BytesMut::from(&hex("00010000 00000000")[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::TooLarge(65536, 1024))
    ));

    let mut buf = BytesMut::from(&hex("ffffffff")[..]);
    assert!(codec.decode(&mut buf).is_err());

    // Header length larger than the frame.
    let mut buf = BytesMut::from(&hex("00000008 00000010 00000000")[..]);
    assert!(codec.decode(&mut buf).is_err());

    // Unknown serialize type.
    let mut buf = BytesMut::from(&hex("00000006 07000002 7b7d")[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::UnknownSerializeType(7))
    ));

    // Not JSON.
    let mut buf = BytesMut::from(&hex("00000006 00000002 7b7b")[..]);
    assert!(matches!(codec.decode(&mut buf), Err(FrameError::Json(_))));
}

#[test]
fn large_codes_fall_back_to_json() {
    let mut cmd = RemotingCommand::request(RequestCode::PopMessage);
    cmd.serialize_type = SerializeType::RocketMq;
    let frame = encode_frame(&cmd).unwrap();
    assert_eq!(
        frame[4], 0,
        "POP codes do not fit int16 and must go as JSON"
    );
    let mut buf = frame;
    let back = RemotingCodec::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!(back.code, 200050);
}

fn arb_command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        0u8..14,
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        proptest::option::of("[^\u{0}]{1,20}"),
        proptest::collection::vec(("[a-zA-Z_]{1,8}", "[ -~]{1,16}"), 0..6),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(
            |(code, lang, version, opaque, flag, remark, ext, body, binary)| RemotingCommand {
                code: code as i32,
                language: LanguageCode::from(lang),
                version: version as i32,
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect::<ExtFields>(),
                body: Bytes::from(body).into(),
                serialize_type: if binary {
                    SerializeType::RocketMq
                } else {
                    SerializeType::Json
                },
            },
        )
}

proptest! {
    #[test]
    fn commands_round_trip(cmd in arb_command()) {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(cmd.clone(), &mut buf).unwrap();
        let back = codec.decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(back, cmd);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut codec = RemotingCodec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }

    #[test]
    fn arbitrary_headers_never_panic(
        ty in 0u8..2,
        header in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut frame = Vec::new();
        frame.extend_from_slice(&(((ty as u32) << 24) | header.len() as u32).to_be_bytes());
        frame.extend_from_slice(&header);
        let _ = decode_frame(Bytes::from(frame));
    }
}
