//! Frame codec: `int32 length | int32 (type << 24 | headerLen) | header | body`.
//!
//! Decoding accepts both header serializations (JSON and ROCKETMQ binary) and never panics on
//! malformed input: every defect is a [`FrameError`], after which the transport closes that one
//! connection, exactly as the Java server does. The body is handed out as a zero-copy slice of
//! the read buffer.

mod binary;
mod json;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{RemotingCommand, SerializeType};

use binary::{decode_binary_header, encode_binary_header};
use json::{decode_json_header, encode_json_header};

/// Default maximum frame length (`com.rocketmq.remoting.frameMaxLength`): 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// A frame that cannot be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("invalid JSON header: {0}")]
    Json(String),
    #[error("invalid ROCKETMQ binary header: {0}")]
    Binary(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The parts of a header that are not the command itself, produced by the header decoders.
pub(crate) struct HeaderFields {
    pub code: i32,
    pub language: crate::code::LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: crate::command::ExtFields,
}

/// Decodes one frame (without its 4-byte length prefix).
pub fn decode_frame(frame: Bytes) -> Result<RemotingCommand, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::Malformed(
            "frame shorter than its header-length word",
        ));
    }
    let word = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let type_byte = (word >> 24) as u8;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if header_len > frame.len() - 4 {
        return Err(FrameError::Malformed("header length exceeds frame length"));
    }
    let serialize_type =
        SerializeType::from_byte(type_byte).ok_or(FrameError::UnknownSerializeType(type_byte))?;
    let header = &frame[4..4 + header_len];
    let fields = match serialize_type {
        SerializeType::Json => decode_json_header(header)?,
        SerializeType::RocketMq => decode_binary_header(header)?,
    };
    Ok(RemotingCommand {
        code: fields.code,
        language: fields.language,
        version: fields.version,
        opaque: fields.opaque,
        flag: fields.flag,
        remark: fields.remark,
        ext_fields: fields.ext_fields,
        body: frame.slice(4 + header_len..).into(),
        serialize_type,
    })
}

/// Writes the length prefix, header-length word and header of `cmd` into `dst`; the caller
/// writes the body (so large bodies can go to the socket without being copied).
///
/// Commands whose code or version does not fit the binary header's int16 are written as JSON
/// whatever their serialize type says, since the binary form would corrupt them.
pub fn encode_frame_head(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u64(0); // placeholder for the two length words
    let fits_binary = i16::try_from(cmd.code).is_ok() && i16::try_from(cmd.version).is_ok();
    let ty = match cmd.serialize_type {
        SerializeType::RocketMq if fits_binary => {
            encode_binary_header(cmd, dst);
            SerializeType::RocketMq
        }
        _ => {
            encode_json_header(cmd, dst);
            SerializeType::Json
        }
    };
    let header_len = dst.len() - start - 8;
    if header_len > 0x00FF_FFFF {
        dst.truncate(start);
        return Err(FrameError::TooLarge(header_len, 0x00FF_FFFF));
    }
    let frame_len = 4 + header_len + cmd.body.len();
    let frame_len =
        i32::try_from(frame_len).map_err(|_| FrameError::TooLarge(frame_len, i32::MAX as usize))?;
    dst[start..start + 4].copy_from_slice(&frame_len.to_be_bytes());
    let word = ((ty.byte() as u32) << 24) | header_len as u32;
    dst[start + 4..start + 8].copy_from_slice(&word.to_be_bytes());
    Ok(())
}

/// Encodes a whole frame (head and body) into a new buffer.
pub fn encode_frame(cmd: &RemotingCommand) -> Result<BytesMut, FrameError> {
    let mut dst = BytesMut::with_capacity(128 + cmd.body.len());
    encode_frame_head(cmd, &mut dst)?;
    for part in cmd.body.parts() {
        dst.extend_from_slice(part);
    }
    Ok(dst)
}

/// `tokio_util` codec for RocketMQ frames.
#[derive(Debug, Clone)]
pub struct RemotingCodec {
    max_frame: usize,
}

impl RemotingCodec {
    pub fn new(max_frame: usize) -> Self {
        RemotingCodec { max_frame }
    }
}

impl Default for RemotingCodec {
    fn default() -> Self {
        RemotingCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let len =
            usize::try_from(len).map_err(|_| FrameError::Malformed("negative frame length"))?;
        if len > self.max_frame {
            return Err(FrameError::TooLarge(len, self.max_frame));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len).freeze();
        decode_frame(frame).map(Some)
    }
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = FrameError;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame_head(&cmd, dst)?;
        for part in cmd.body.parts() {
            dst.extend_from_slice(part);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
