//! ROCKETMQ binary header (serialize type 1): a 21-byte fixed part, the remark and a
//! length-prefixed map block (remoting.md §4). Every length is checked against what is left of
//! the header before it is used.

use bytes::{BufMut, BytesMut};

use super::{FrameError, HeaderFields};
use crate::code::LanguageCode;
use crate::command::{ExtFields, RemotingCommand};

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.buf.len() - self.pos < n {
            return Err(FrameError::Binary(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, FrameError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, FrameError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len(&mut self, raw: i64, what: &'static str) -> Result<usize, FrameError> {
        usize::try_from(raw).map_err(|_| FrameError::Binary(what))
    }
    fn str(&mut self, len: usize, what: &'static str) -> Result<&'a str, FrameError> {
        let b = self.take(len, what)?;
        std::str::from_utf8(b).map_err(|_| FrameError::Binary("string is not UTF-8"))
    }
}

/// Decodes a binary header.
pub(crate) fn decode_binary_header(buf: &[u8]) -> Result<HeaderFields, FrameError> {
    let mut r = Reader { buf, pos: 0 };
    let code = r.i16("truncated fixed part")? as i32;
    let language = LanguageCode::from(r.take(1, "truncated fixed part")?[0]);
    let version = r.i16("truncated fixed part")? as i32;
    let opaque = r.i32("truncated fixed part")?;
    let flag = r.i32("truncated fixed part")?;
    let remark_len = r.i32("truncated fixed part")?;
    let remark_len = r.len(remark_len as i64, "negative remark length")?;
    let remark = match remark_len {
        0 => None,
        n => Some(r.str(n, "remark longer than header")?.to_owned()),
    };
    let ext_len = r.i32("missing extFields length")?;
    let ext_len = r.len(ext_len as i64, "negative extFields length")?;
    let block = r.take(ext_len, "extFields block longer than header")?;
    let mut ext = ExtFields::with_capacity(16, block.len());
    let mut m = Reader { buf: block, pos: 0 };
    while m.pos < block.len() {
        let klen = m.i16("truncated map key length")?;
        let klen = m.len(klen as i64, "negative map key length")?;
        let key = m.str(klen, "map key longer than block")?;
        let vlen = m.i32("truncated map value length")?;
        let vlen = m.len(vlen as i64, "negative map value length")?;
        let value = m.str(vlen, "map value longer than block")?;
        // A zero-length string decodes as null in Java; null keys or values are not fields.
        if !key.is_empty() && !value.is_empty() {
            ext.push(key, value);
        }
    }
    Ok(HeaderFields {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields: ext,
    })
}

/// Encodes the header of `cmd` in binary form. The caller guarantees code and version fit int16.
pub(crate) fn encode_binary_header(cmd: &RemotingCommand, dst: &mut BytesMut) {
    dst.put_i16(cmd.code as i16);
    dst.put_u8(cmd.language.value());
    dst.put_i16(cmd.version as i16);
    dst.put_i32(cmd.opaque);
    dst.put_i32(cmd.flag);
    match &cmd.remark {
        Some(r) if !r.is_empty() => {
            dst.put_i32(r.len() as i32);
            dst.put_slice(r.as_bytes());
        }
        _ => dst.put_i32(0),
    }
    let ext_len: usize = cmd
        .ext_fields
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| 2 + k.len() + 4 + v.len())
        .sum();
    dst.put_i32(ext_len as i32);
    for (k, v) in cmd.ext_fields.iter() {
        if k.is_empty() || v.is_empty() {
            continue;
        }
        dst.put_i16(k.len() as i16);
        dst.put_slice(k.as_bytes());
        dst.put_i32(v.len() as i32);
        dst.put_slice(v.as_bytes());
    }
}
