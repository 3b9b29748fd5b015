//! `RemotingCommand`: the one envelope every RocketMQ request and response travels in.
//!
//! A command is a code, a few routing fields, a string map of header fields ("extFields") and an
//! opaque body. Typed headers (see [`crate::header`]) are views over the extFields map, so the
//! envelope itself stays schema-free like Java's.

use bytes::Bytes;

use crate::code::{version, LanguageCode, RequestCode, ResponseCode};
use crate::header::{CommandHeader, HeaderError};

/// Flag bit 0: set on responses.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit 1: set on one-way requests, which must never be answered.
pub const FLAG_ONEWAY: i32 = 0x2;

/// How a frame's header is serialized (the high byte of the header-length word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// Type 0, the default of every client; the only one C++ clients can read.
    #[default]
    Json,
    /// Type 1, RocketMQ's compact binary header.
    RocketMq,
}

impl SerializeType {
    pub fn byte(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }
}

/// The header field map. Small (a handful to ~20 entries), so a vector with linear lookup beats
/// a hash map and keeps insertion order; inserting an existing key replaces it (last one wins, as
/// in Java when a binary header carries a key twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtFields(Vec<(String, String)>);

impl ExtFields {
    pub fn new() -> Self {
        ExtFields(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        ExtFields(Vec::with_capacity(n))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let idx = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(idx).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut ext = ExtFields::new();
        for (k, v) in iter {
            ext.insert(k, v);
        }
        ext
    }
}

/// A command body: usually one buffer, but a pull response is a run of record slices borrowed
/// from the mapped commit log, kept apart so the transport can write them without copying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    first: Bytes,
    rest: Vec<Bytes>,
}

impl Body {
    pub fn len(&self) -> usize {
        self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends another part without copying it.
    pub fn push(&mut self, part: Bytes) {
        if self.first.is_empty() && self.rest.is_empty() {
            self.first = part;
        } else {
            self.rest.push(part);
        }
    }

    /// The parts in order.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// The body as one contiguous buffer (copies only when it has several parts).
    pub fn to_bytes(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.first.clone();
        }
        let mut out = Vec::with_capacity(self.len());
        for p in self.parts() {
            out.extend_from_slice(p);
        }
        Bytes::from(out)
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body {
            first: b,
            rest: Vec::new(),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code on requests, response code on responses.
    pub code: i32,
    pub language: LanguageCode,
    /// Sender's `MQVersion` ordinal.
    pub version: i32,
    /// Correlates a response with its request.
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Body,
    /// How the header was (or will be) serialized.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    fn blank(code: i32, flag: i32) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: version::CURRENT,
            opaque: 0,
            flag,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Body::default(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A request with no header fields; the transport assigns the opaque.
    pub fn request(code: RequestCode) -> Self {
        Self::blank(code.value(), 0)
    }

    /// A request carrying a typed header.
    pub fn request_with_header(code: RequestCode, header: &impl CommandHeader) -> Self {
        let mut cmd = Self::request(code);
        header.write(&mut cmd.ext_fields);
        cmd
    }

    /// A response to `request`: same opaque and serialize type, response flag set.
    pub fn response_to(request: &RemotingCommand, code: ResponseCode) -> Self {
        let mut cmd = Self::blank(code.value(), FLAG_RESPONSE);
        cmd.opaque = request.opaque;
        cmd
    }

    /// A response with a remark, the usual shape of an error.
    pub fn error_response(
        request: &RemotingCommand,
        code: ResponseCode,
        remark: impl Into<String>,
    ) -> Self {
        let mut cmd = Self::response_to(request, code);
        cmd.remark = Some(remark.into());
        cmd
    }

    /// The answer to a request code this server does not handle, worded as Java words it.
    pub fn unsupported(request: &RemotingCommand) -> Self {
        Self::error_response(
            request,
            ResponseCode::RequestCodeNotSupported,
            format!(" request type {} not supported", request.code),
        )
    }

    pub fn with_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_header(mut self, header: &impl CommandHeader) -> Self {
        header.write(&mut self.ext_fields);
        self
    }

    pub fn with_oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn request_code(&self) -> RequestCode {
        RequestCode::from(self.code)
    }

    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::from(self.code)
    }

    /// Reads the extFields as a typed header.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::read(&self.ext_fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_fields_last_insert_wins() {
        let mut ext = ExtFields::new();
        ext.insert("a", "1");
        ext.insert("b", "2");
        ext.insert("a", "3");
        assert_eq!(ext.get("a"), Some("3"));
        assert_eq!(ext.len(), 2);
        assert_eq!(ext.remove("a").as_deref(), Some("3"));
        assert_eq!(ext.get("a"), None);
    }

    #[test]
    fn body_parts_concatenate() {
        let mut body = Body::default();
        assert!(body.is_empty());
        body.push(Bytes::from_static(b"ab"));
        body.push(Bytes::from_static(b"cd"));
        assert_eq!(body.len(), 4);
        assert_eq!(&body.to_bytes()[..], b"abcd");
    }

    #[test]
    fn response_mirrors_request() {
        let mut req = RemotingCommand::request(RequestCode::GetRouteinfoByTopic);
        req.opaque = 42;
        let resp = RemotingCommand::error_response(&req, ResponseCode::TopicNotExist, "nope");
        assert!(resp.is_response());
        assert_eq!(resp.opaque, 42);
        assert_eq!(resp.response_code(), ResponseCode::TopicNotExist);
    }
}
