//! The commit-log record (message-format.md §1): the unit the store appends and the bytes a
//! consumer receives from a pull, unchanged.
//!
//! Encoding writes into a caller-provided buffer whose size the caller learns up front from
//! [`MessageRecord::encoded_len`], so the store can encode straight into its mapped file.
//! Decoding ([`RecordView::parse`]) borrows the input and only records where the variable-length
//! parts start; it checks every length against the buffer and returns [`RecordError`] instead of
//! panicking, because the input may be a torn file tail or a hostile pull body.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use bytes::BufMut;

use super::flag::sys_flag;
use super::msg_id;

/// Magic of records whose topic length is one byte.
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic of records whose topic length is two bytes.
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Magic of the end-of-file marker `[int32 remaining][int32 BLANK_MAGIC]`.
pub const BLANK_MAGIC: i32 = 0xCBD4_3194_u32 as i32;
/// Size of the end-of-file marker; a record is placed only if `size + BLANK_RECORD_LEN` fits.
pub const BLANK_RECORD_LEN: usize = 8;
/// Topics longer than this (in bytes) need [`RecordVersion::V2`].
pub const MAX_V1_TOPIC_LEN: usize = 127;
/// The properties length is a Java `short`.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

pub const POS_TOTAL_SIZE: usize = 0;
pub const POS_MAGIC: usize = 4;
pub const POS_BODY_CRC: usize = 8;
pub const POS_QUEUE_ID: usize = 12;
pub const POS_FLAG: usize = 16;
pub const POS_QUEUE_OFFSET: usize = 20;
pub const POS_PHYSICAL_OFFSET: usize = 28;
pub const POS_SYS_FLAG: usize = 36;
pub const POS_BORN_TIMESTAMP: usize = 40;
pub const POS_BORN_HOST: usize = 48;

/// Smallest possible record: IPv4 hosts, V1, empty body/topic/properties.
pub const MIN_RECORD_LEN: usize = 91;

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: need {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("unknown magic code {0:#010x}")]
    BadMagic(i32),
    #[error("invalid record total size {0}")]
    BadTotalSize(i32),
    #[error("record total size {declared} does not match its fields ({actual})")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("invalid body length {0}")]
    BadBodyLength(i32),
    #[error("invalid properties length {0}")]
    BadPropertiesLength(i16),
    #[error("body CRC mismatch: stored {stored}, computed {computed}")]
    BodyCrcMismatch { stored: i32, computed: i32 },
    #[error("topic is not valid UTF-8")]
    TopicNotUtf8,
    #[error("properties are not valid UTF-8")]
    PropertiesNotUtf8,
    #[error("topic too long ({0} bytes)")]
    TopicTooLong(usize),
    #[error("properties too long ({0} bytes, max 32767)")]
    PropertiesTooLong(usize),
    #[error("body too long ({0} bytes)")]
    BodyTooLong(usize),
    #[error("output buffer too small: need {needed} bytes, {available} available")]
    BufferTooSmall { needed: usize, available: usize },
}

/// Record format version, chosen by topic length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordVersion {
    V1,
    V2,
}

impl RecordVersion {
    pub const fn magic(self) -> i32 {
        match self {
            RecordVersion::V1 => MAGIC_V1,
            RecordVersion::V2 => MAGIC_V2,
        }
    }

    pub const fn from_magic(magic: i32) -> Option<RecordVersion> {
        match magic {
            MAGIC_V1 => Some(RecordVersion::V1),
            MAGIC_V2 => Some(RecordVersion::V2),
            _ => None,
        }
    }

    /// Width of the topic length field.
    pub const fn topic_len_size(self) -> usize {
        match self {
            RecordVersion::V1 => 1,
            RecordVersion::V2 => 2,
        }
    }

    /// V1 unless the topic does not fit Java's signed one-byte length (`autoMessageVersionOnTopicLen`).
    pub const fn for_topic_len(len: usize) -> RecordVersion {
        if len > MAX_V1_TOPIC_LEN {
            RecordVersion::V2
        } else {
            RecordVersion::V1
        }
    }
}

/// Java `CRC32` of the stored body, masked to a non-negative int as the record stores it.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Bytes a socket address takes in a record (address + int32 port).
pub const fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

fn put_host<B: BufMut>(buf: &mut B, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => buf.put_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.put_slice(&ip.octets()),
    }
    buf.put_i32(i32::from(addr.port()));
}

/// Everything a record holds, borrowed. The store fills `queue_offset`, `physical_offset`,
/// `store_timestamp` and `store_host` at append time.
#[derive(Debug, Clone)]
pub struct MessageRecord<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    /// The IPv6 host bits are derived from `born_host`/`store_host` when encoding.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// Precomputed [`body_crc`] (lets the caller compute it off the append path); `None` = compute.
    pub body_crc: Option<i32>,
    /// Properties string (message-format.md §3).
    pub properties: &'a str,
}

impl MessageRecord<'_> {
    pub fn version(&self) -> RecordVersion {
        RecordVersion::for_topic_len(self.topic.len())
    }

    /// The SYSFLAG as written: the caller's flags with the host-family bits set to match the hosts.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= sys_flag::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= sys_flag::STOREHOST_V6;
        }
        f
    }

    /// Total record size (the TOTALSIZE field), or why it cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize, RecordError> {
        if self.topic.len() > u16::MAX as usize {
            return Err(RecordError::TopicTooLong(self.topic.len()));
        }
        if self.properties.len() > MAX_PROPERTIES_LEN {
            return Err(RecordError::PropertiesTooLong(self.properties.len()));
        }
        let len = record_len(
            self.version(),
            host_len(&self.born_host),
            host_len(&self.store_host),
            self.body.len(),
            self.topic.len(),
            self.properties.len(),
        );
        if len > i32::MAX as usize {
            return Err(RecordError::BodyTooLong(self.body.len()));
        }
        Ok(len)
    }

    /// Encodes into the start of `buf`, returning the record size. Nothing is written on error.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, RecordError> {
        let len = self.encoded_len()?;
        if buf.len() < len {
            return Err(RecordError::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        }
        let mut out = &mut buf[..len];
        self.write(&mut out, len);
        Ok(len)
    }

    /// Appends the encoded record to `buf`, returning the record size.
    pub fn encode_to<B: BufMut>(&self, buf: &mut B) -> Result<usize, RecordError> {
        let len = self.encoded_len()?;
        if buf.remaining_mut() < len {
            return Err(RecordError::BufferTooSmall {
                needed: len,
                available: buf.remaining_mut(),
            });
        }
        self.write(buf, len);
        Ok(len)
    }

    /// Encodes into a fresh vector (tests, tools; the store uses `encode_into`).
    pub fn to_vec(&self) -> Result<Vec<u8>, RecordError> {
        let mut v = Vec::with_capacity(self.encoded_len()?);
        self.encode_to(&mut v)?;
        Ok(v)
    }

    fn write<B: BufMut>(&self, buf: &mut B, len: usize) {
        let version = self.version();
        buf.put_i32(len as i32);
        buf.put_i32(version.magic());
        buf.put_i32(self.body_crc.unwrap_or_else(|| body_crc(self.body)));
        buf.put_i32(self.queue_id);
        buf.put_i32(self.flag);
        buf.put_i64(self.queue_offset);
        buf.put_i64(self.physical_offset);
        buf.put_i32(self.effective_sys_flag());
        buf.put_i64(self.born_timestamp);
        put_host(buf, &self.born_host);
        buf.put_i64(self.store_timestamp);
        put_host(buf, &self.store_host);
        buf.put_i32(self.reconsume_times);
        buf.put_i64(self.prepared_transaction_offset);
        buf.put_i32(self.body.len() as i32);
        buf.put_slice(self.body);
        match version {
            RecordVersion::V1 => buf.put_u8(self.topic.len() as u8),
            RecordVersion::V2 => buf.put_u16(self.topic.len() as u16),
        }
        buf.put_slice(self.topic.as_bytes());
        buf.put_i16(self.properties.len() as i16);
        buf.put_slice(self.properties.as_bytes());
    }
}

/// TOTALSIZE of a record with these variable parts.
pub const fn record_len(
    version: RecordVersion,
    born_host_len: usize,
    store_host_len: usize,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> usize {
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + born_host_len
        + 8
        + store_host_len
        + 4
        + 8
        + 4
        + body_len
        + version.topic_len_size()
        + topic_len
        + 2
        + properties_len
}

/// Writes the end-of-file marker for a file with `remaining` bytes left at this position.
pub fn write_blank(buf: &mut [u8], remaining: i32) -> Result<(), RecordError> {
    if buf.len() < BLANK_RECORD_LEN {
        return Err(RecordError::BufferTooSmall {
            needed: BLANK_RECORD_LEN,
            available: buf.len(),
        });
    }
    buf[0..4].copy_from_slice(&remaining.to_be_bytes());
    buf[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    Ok(())
}

/// What the first eight bytes at a commit-log position say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordHead {
    /// A message record of this total size (not yet validated beyond the magic).
    Message {
        total_size: usize,
        version: RecordVersion,
    },
    /// End-of-file marker: skip to the next file.
    Blank,
    /// Zero total size: unwritten space, the end of the data.
    End,
}

/// Classifies the record header at the start of `buf`.
pub fn peek(buf: &[u8]) -> Result<RecordHead, RecordError> {
    if buf.len() < 8 {
        if buf.len() >= 4 && read_i32(buf, 0) == 0 {
            return Ok(RecordHead::End);
        }
        return Err(RecordError::Truncated {
            needed: 8,
            available: buf.len(),
        });
    }
    let total = read_i32(buf, 0);
    let magic = read_i32(buf, 4);
    if magic == BLANK_MAGIC {
        return Ok(RecordHead::Blank);
    }
    if total == 0 && magic == 0 {
        return Ok(RecordHead::End);
    }
    let version = RecordVersion::from_magic(magic).ok_or(RecordError::BadMagic(magic))?;
    if total < MIN_RECORD_LEN as i32 {
        return Err(RecordError::BadTotalSize(total));
    }
    Ok(RecordHead::Message {
        total_size: total as usize,
        version,
    })
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

fn read_host(buf: &[u8], at: usize, v6: bool) -> SocketAddr {
    if v6 {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&buf[at..at + 16]);
        let port = read_i32(buf, at + 16);
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port as u16)
    } else {
        let ip = Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
        let port = read_i32(buf, at + 4);
        SocketAddr::new(IpAddr::V4(ip), port as u16)
    }
}

/// A validated record borrowed from a buffer. Fixed fields are read on access; the variable
/// parts were located (and their UTF-8 checked) by [`RecordView::parse`].
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    buf: &'a [u8],
    version: RecordVersion,
    store_timestamp_at: usize,
    store_host_at: usize,
    body_at: usize,
    body_len: usize,
    topic_at: usize,
    topic_len: usize,
    properties_at: usize,
    properties_len: usize,
}

impl<'a> RecordView<'a> {
    /// Parses the record at the start of `buf` (which may continue past it). Checks lengths, magic
    /// and UTF-8, not the body CRC (see [`RecordView::verify_body_crc`]).
    pub fn parse(buf: &'a [u8]) -> Result<RecordView<'a>, RecordError> {
        let (total, version) = match peek(buf)? {
            RecordHead::Message {
                total_size,
                version,
            } => (total_size, version),
            RecordHead::Blank => return Err(RecordError::BadMagic(BLANK_MAGIC)),
            RecordHead::End => return Err(RecordError::BadTotalSize(0)),
        };
        if buf.len() < total {
            return Err(RecordError::Truncated {
                needed: total,
                available: buf.len(),
            });
        }
        let buf = &buf[..total];
        // Every read below is bounds-checked against `total` first.
        let need = |at: usize, n: usize| -> Result<(), RecordError> {
            if at + n > total {
                Err(RecordError::SizeMismatch {
                    declared: total,
                    actual: at + n,
                })
            } else {
                Ok(())
            }
        };
        let sys = read_i32(buf, POS_SYS_FLAG);
        let born_len = if sys & sys_flag::BORNHOST_V6 != 0 {
            20
        } else {
            8
        };
        let store_ts_at = POS_BORN_HOST + born_len;
        let store_host_at = store_ts_at + 8;
        let store_len = if sys & sys_flag::STOREHOST_V6 != 0 {
            20
        } else {
            8
        };
        let body_len_at = store_host_at + store_len + 4 + 8;
        need(body_len_at, 4)?;
        let body_len = read_i32(buf, body_len_at);
        if body_len < 0 {
            return Err(RecordError::BadBodyLength(body_len));
        }
        let body_at = body_len_at + 4;
        let body_len = body_len as usize;
        need(body_at, body_len)?;
        let topic_len_at = body_at + body_len;
        need(topic_len_at, version.topic_len_size())?;
        let topic_len = match version {
            RecordVersion::V1 => usize::from(buf[topic_len_at]),
            RecordVersion::V2 => usize::from(u16::from_be_bytes([
                buf[topic_len_at],
                buf[topic_len_at + 1],
            ])),
        };
        let topic_at = topic_len_at + version.topic_len_size();
        need(topic_at, topic_len)?;
        let props_len_at = topic_at + topic_len;
        need(props_len_at, 2)?;
        let props_len = i16::from_be_bytes([buf[props_len_at], buf[props_len_at + 1]]);
        if props_len < 0 {
            return Err(RecordError::BadPropertiesLength(props_len));
        }
        let props_at = props_len_at + 2;
        let props_len = props_len as usize;
        need(props_at, props_len)?;
        if props_at + props_len != total {
            return Err(RecordError::SizeMismatch {
                declared: total,
                actual: props_at + props_len,
            });
        }
        std::str::from_utf8(&buf[topic_at..topic_at + topic_len])
            .map_err(|_| RecordError::TopicNotUtf8)?;
        std::str::from_utf8(&buf[props_at..props_at + props_len])
            .map_err(|_| RecordError::PropertiesNotUtf8)?;
        Ok(RecordView {
            buf,
            version,
            store_timestamp_at: store_ts_at,
            store_host_at,
            body_at,
            body_len,
            topic_at,
            topic_len,
            properties_at: props_at,
            properties_len: props_len,
        })
    }

    /// Parses and also checks the body CRC.
    pub fn parse_checked(buf: &'a [u8]) -> Result<RecordView<'a>, RecordError> {
        let view = RecordView::parse(buf)?;
        view.verify_body_crc()?;
        Ok(view)
    }

    pub fn verify_body_crc(&self) -> Result<(), RecordError> {
        let computed = body_crc(self.body());
        if computed != self.body_crc() {
            return Err(RecordError::BodyCrcMismatch {
                stored: self.body_crc(),
                computed,
            });
        }
        Ok(())
    }

    /// The whole record.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn total_size(&self) -> usize {
        self.buf.len()
    }
    pub fn version(&self) -> RecordVersion {
        self.version
    }
    pub fn magic(&self) -> i32 {
        self.version.magic()
    }
    pub fn body_crc(&self) -> i32 {
        read_i32(self.buf, POS_BODY_CRC)
    }
    pub fn queue_id(&self) -> i32 {
        read_i32(self.buf, POS_QUEUE_ID)
    }
    pub fn flag(&self) -> i32 {
        read_i32(self.buf, POS_FLAG)
    }
    pub fn queue_offset(&self) -> i64 {
        read_i64(self.buf, POS_QUEUE_OFFSET)
    }
    pub fn physical_offset(&self) -> i64 {
        read_i64(self.buf, POS_PHYSICAL_OFFSET)
    }
    pub fn sys_flag(&self) -> i32 {
        read_i32(self.buf, POS_SYS_FLAG)
    }
    pub fn born_timestamp(&self) -> i64 {
        read_i64(self.buf, POS_BORN_TIMESTAMP)
    }
    pub fn born_host(&self) -> SocketAddr {
        read_host(
            self.buf,
            POS_BORN_HOST,
            self.sys_flag() & sys_flag::BORNHOST_V6 != 0,
        )
    }
    pub fn store_timestamp(&self) -> i64 {
        read_i64(self.buf, self.store_timestamp_at)
    }
    pub fn store_host(&self) -> SocketAddr {
        read_host(
            self.buf,
            self.store_host_at,
            self.sys_flag() & sys_flag::STOREHOST_V6 != 0,
        )
    }
    /// Byte position of the store timestamp (depends on the born host family).
    pub fn store_timestamp_pos(&self) -> usize {
        self.store_timestamp_at
    }
    pub fn reconsume_times(&self) -> i32 {
        read_i32(self.buf, self.body_at - 16)
    }
    pub fn prepared_transaction_offset(&self) -> i64 {
        read_i64(self.buf, self.body_at - 12)
    }
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body_range()]
    }
    pub fn body_range(&self) -> Range<usize> {
        self.body_at..self.body_at + self.body_len
    }
    pub fn topic(&self) -> &'a str {
        // Checked in `parse`; the fallback is unreachable but keeps this panic-free.
        std::str::from_utf8(&self.buf[self.topic_range()]).unwrap_or_default()
    }
    pub fn topic_range(&self) -> Range<usize> {
        self.topic_at..self.topic_at + self.topic_len
    }
    pub fn properties(&self) -> &'a str {
        std::str::from_utf8(&self.buf[self.properties_range()]).unwrap_or_default()
    }
    pub fn properties_range(&self) -> Range<usize> {
        self.properties_at..self.properties_at + self.properties_len
    }
    /// A property value (see [`super::properties::get`]).
    pub fn property(&self, name: &str) -> Option<&'a str> {
        super::properties::get(self.properties(), name)
    }
    /// The broker-assigned id: store host + physical offset (message-format.md §7.1).
    pub fn offset_msg_id(&self) -> String {
        msg_id::offset_msg_id(&self.store_host(), self.physical_offset())
    }
    /// Borrowed fields, e.g. to re-encode the record elsewhere.
    pub fn to_record(&self) -> MessageRecord<'a> {
        MessageRecord {
            topic: self.topic(),
            queue_id: self.queue_id(),
            flag: self.flag(),
            queue_offset: self.queue_offset(),
            physical_offset: self.physical_offset(),
            sys_flag: self.sys_flag(),
            born_timestamp: self.born_timestamp(),
            born_host: self.born_host(),
            store_timestamp: self.store_timestamp(),
            store_host: self.store_host(),
            reconsume_times: self.reconsume_times(),
            prepared_transaction_offset: self.prepared_transaction_offset(),
            body: self.body(),
            body_crc: Some(self.body_crc()),
            properties: self.properties(),
        }
    }
}

/// Iterates the records of a pull/query body (records back to back). Yields an error once and
/// stops at the first malformed record, like the Java client's silent abort, but visibly.
pub struct RecordIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> RecordIter<'a> {
    pub fn new(buf: &'a [u8]) -> RecordIter<'a> {
        RecordIter {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match RecordView::parse(self.rest) {
            Ok(v) => {
                self.rest = &self.rest[v.total_size()..];
                Some(Ok(v))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample<'a>(topic: &'a str, body: &'a [u8], props: &'a str) -> MessageRecord<'a> {
        MessageRecord {
            topic,
            queue_id: 3,
            flag: 7,
            queue_offset: 42,
            physical_offset: 0x1234,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "192.168.1.2:50000".parse().unwrap(),
            store_timestamp: 1_700_000_000_123,
            store_host: "10.0.0.1:10911".parse().unwrap(),
            reconsume_times: 1,
            prepared_transaction_offset: 0,
            body,
            body_crc: None,
            properties: props,
        }
    }

    #[test]
    fn golden_bytes() {
        let rec = sample("T", b"hi", "A\u{1}B\u{2}");
        let bytes = rec.to_vec().unwrap();
        assert_eq!(bytes.len(), 91 + 2 + 1 + 4);
        let mut expected = Vec::new();
        expected.extend_from_slice(&98i32.to_be_bytes());
        expected.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]);
        expected.extend_from_slice(&body_crc(b"hi").to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(&42i64.to_be_bytes());
        expected.extend_from_slice(&0x1234i64.to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        expected.extend_from_slice(&[192, 168, 1, 2, 0, 0, 0xC3, 0x50]);
        expected.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        expected.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0x2A, 0x9F]);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&0i64.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"hi");
        expected.push(1);
        expected.extend_from_slice(b"T");
        expected.extend_from_slice(&4i16.to_be_bytes());
        expected.extend_from_slice(b"A\x01B\x02");
        assert_eq!(bytes, expected);
        // Java CRC32("hi") = 0xD8932AAC, masked.
        assert_eq!(body_crc(b"hi"), 0x5893_2AAC);

        let v = RecordView::parse_checked(&bytes).unwrap();
        assert_eq!(v.store_timestamp_pos(), 56);
        assert_eq!(v.offset_msg_id(), "0A00000100002A9F0000000000001234");
        assert_eq!(v.property("A"), Some("B"));
    }

    #[test]
    fn ipv6_and_v2() {
        let topic = "%RETRY%".to_owned() + &"g".repeat(150);
        let mut rec = sample(&topic, b"body", "");
        rec.born_host = "[::1]:1234".parse().unwrap();
        rec.store_host = "[fe80::1]:10911".parse().unwrap();
        let bytes = rec.to_vec().unwrap();
        let v = RecordView::parse_checked(&bytes).unwrap();
        assert_eq!(v.version(), RecordVersion::V2);
        assert_eq!(v.sys_flag(), sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        assert_eq!(v.born_host(), rec.born_host);
        assert_eq!(v.store_host(), rec.store_host);
        assert_eq!(v.topic(), topic);
        assert_eq!(v.store_timestamp_pos(), 68);
        assert_eq!(v.offset_msg_id().len(), 56);
    }

    #[test]
    fn blank_and_end() {
        let mut b = [0u8; 16];
        assert_eq!(peek(&b), Ok(RecordHead::End));
        write_blank(&mut b, 16).unwrap();
        assert_eq!(peek(&b), Ok(RecordHead::Blank));
        assert!(RecordView::parse(&b).is_err());
    }

    #[test]
    fn errors_not_panics() {
        let bytes = sample("T", b"hello", "K\u{1}V\u{2}").to_vec().unwrap();
        for cut in 0..bytes.len() {
            assert!(RecordView::parse(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = bytes.clone();
        let body_at = RecordView::parse(&bytes).unwrap().body_range().start;
        bad[body_at] ^= 0x40;
        assert!(matches!(
            RecordView::parse_checked(&bad),
            Err(RecordError::BodyCrcMismatch { .. })
        ));
        let mut too_big = bytes.clone();
        too_big[3] += 1;
        too_big.push(0);
        assert!(matches!(
            RecordView::parse(&too_big),
            Err(RecordError::SizeMismatch { .. })
        ));
        let mut small = vec![0u8; 10];
        assert!(matches!(
            sample("T", b"x", "").encode_into(&mut small),
            Err(RecordError::BufferTooSmall { .. })
        ));
        let long_props = "x".repeat(40_000);
        assert!(sample("T", b"", &long_props).encoded_len().is_err());
    }

    #[test]
    fn iterates_records() {
        let mut buf = Vec::new();
        for i in 0..3 {
            let mut r = sample("T", b"x", "");
            r.queue_offset = i;
            r.encode_to(&mut buf).unwrap();
        }
        let offsets: Vec<i64> = RecordIter::new(&buf)
            .map(|r| r.unwrap().queue_offset())
            .collect();
        assert_eq!(offsets, [0, 1, 2]);
    }

    fn host() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip(
            topic in "[A-Za-z%_-]{0,200}",
            body in proptest::collection::vec(any::<u8>(), 0..300),
            props in "[a-zA-Z\u{1}\u{2}é]{0,100}",
            ints in any::<(i32, i32, i64, i64, i32, i64, i64, i32, i64)>(),
            born in host(),
            store in host(),
        ) {
            let rec = MessageRecord {
                topic: &topic, queue_id: ints.0, flag: ints.1, queue_offset: ints.2,
                physical_offset: ints.3, sys_flag: ints.4 & !0x30, born_timestamp: ints.5,
                born_host: born, store_timestamp: ints.6, store_host: store,
                reconsume_times: ints.7, prepared_transaction_offset: ints.8,
                body: &body, body_crc: None, properties: &props,
            };
            let mut buf = vec![0u8; rec.encoded_len().unwrap() + 5];
            let n = rec.encode_into(&mut buf).unwrap();
            let v = RecordView::parse_checked(&buf).unwrap();
            prop_assert_eq!(v.total_size(), n);
            prop_assert_eq!(v.topic(), topic.as_str());
            prop_assert_eq!(v.body(), &body[..]);
            prop_assert_eq!(v.properties(), props.as_str());
            prop_assert_eq!(v.queue_id(), ints.0);
            prop_assert_eq!(v.flag(), ints.1);
            prop_assert_eq!(v.queue_offset(), ints.2);
            prop_assert_eq!(v.physical_offset(), ints.3);
            prop_assert_eq!(v.sys_flag(), rec.effective_sys_flag());
            prop_assert_eq!(v.born_timestamp(), ints.5);
            prop_assert_eq!(v.born_host(), born);
            prop_assert_eq!(v.store_timestamp(), ints.6);
            prop_assert_eq!(v.store_host(), store);
            prop_assert_eq!(v.reconsume_times(), ints.7);
            prop_assert_eq!(v.prepared_transaction_offset(), ints.8);
            let again = v.to_record().to_vec().unwrap();
            prop_assert_eq!(&again[..], &buf[..n]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = peek(&bytes);
            if let Ok(v) = RecordView::parse(&bytes) {
                let _ = (v.topic(), v.properties(), v.body(), v.born_host(), v.store_host());
                let _ = v.verify_body_crc();
            }
            let _ = RecordIter::new(&bytes).count();
        }

        #[test]
        fn mutated_records_never_panic(
            idx in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut bytes = sample("TopicTest", b"hello world", "TAGS\u{1}a\u{2}").to_vec().unwrap();
            let i = idx.index(bytes.len());
            bytes[i] = byte;
            let c = cut.index(bytes.len() + 1);
            if let Ok(v) = RecordView::parse(&bytes[..c]) {
                let _ = (v.topic(), v.properties(), v.body(), v.store_host());
            }
        }
    }
}
