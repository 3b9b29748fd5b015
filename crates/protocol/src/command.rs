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

/// The header field map.
///
/// Every request carries one, so it is laid out for decoding speed: all keys and values live in
/// one text buffer and entries are spans into it, two allocations per command instead of two per
/// field. Maps are small (a handful to ~20 entries), so lookups scan, newest entry first; that
/// makes the last of duplicate keys win (as in Java, where a binary header may carry a key twice)
/// without a duplicate check on every decoded field.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    spans: Vec<Span>,
}

#[derive(Clone, Copy)]
struct Span {
    key: (u32, u32),
    value: (u32, u32),
}

/// Byte order of two keys, settled by the first byte when it differs (it nearly always does
/// between a header's fields) without a call into `memcmp`.
fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// A key's first eight bytes, zero-padded, as a big-endian number: ordering these orders keys
/// by their first eight bytes.
#[inline]
fn key_prefix(key: &[u8]) -> u64 {
    if let Some(head) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    // Byte by byte: a variable-length copy would be a `memcpy` call per key.
    key.iter()
        .enumerate()
        .fold(0, |v, (i, &b)| v | u64::from(b) << (56 - 8 * i))
}

/// Whether two keys are equal, by the same first-byte shortcut as [`key_order`].
pub(crate) fn key_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && key_order(a, b).is_eq()
}

impl ExtFields {
    pub fn new() -> Self {
        ExtFields::default()
    }

    pub fn with_capacity(entries: usize, text: usize) -> Self {
        ExtFields {
            text: String::with_capacity(text),
            spans: Vec::with_capacity(entries),
        }
    }

    fn slice(&self, (start, end): (u32, u32)) -> &str {
        &self.text[start as usize..end as usize]
    }

    fn position(&self, key: &str) -> Option<usize> {
        // Byte comparison: slicing the `str` would re-check char boundaries on every probe.
        let text = self.text.as_bytes();
        let key = key.as_bytes();
        self.spans
            .iter()
            .rposition(|s| key_eq(&text[s.key.0 as usize..s.key.1 as usize], key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.slice(self.spans[i].value))
    }

    /// Sets a field, replacing an earlier value of the same key.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let key = key.as_ref();
        if let Some(i) = self.position(key) {
            self.spans.remove(i);
        }
        self.push(key, value.as_ref());
    }

    /// Appends a field without looking for an earlier one (decoders; last one wins on lookup).
    pub fn push(&mut self, key: &str, value: &str) {
        let key = self.append(key);
        let value = self.append(value);
        self.spans.push(Span { key, value });
    }

    /// Appends a field whose value is written by `write` straight into the buffer.
    pub(crate) fn push_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let key = self.append(key);
        let start = self.text.len() as u32;
        write(&mut self.text);
        let value = (start, self.text.len() as u32);
        self.spans.push(Span { key, value });
    }

    /// Sets a field, replacing every earlier value of the key, at its place in key order when
    /// the fields before it are in order: a signer that keeps a sorted header sorted spares the
    /// verifier (and itself) the work of sorting. `write` writes the value into the buffer.
    pub(crate) fn set_in_order_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        self.discard(key);
        let key_span = self.append(key);
        let start = self.text.len() as u32;
        write(&mut self.text);
        let value = (start, self.text.len() as u32);
        let at = self
            .spans
            .iter()
            .position(|s| key_order(self.bytes(s.key), key.as_bytes()).is_gt())
            .unwrap_or(self.spans.len());
        self.spans.insert(
            at,
            Span {
                key: key_span,
                value,
            },
        );
    }

    /// Room for `entries` more fields with `text` more bytes of keys and values.
    pub(crate) fn reserve(&mut self, entries: usize, text: usize) {
        self.spans.reserve(entries);
        self.text.reserve(text);
    }

    /// Removes every entry of `key` (the text stays in the buffer until the map is dropped).
    pub(crate) fn discard(&mut self, key: &str) {
        while let Some(i) = self.position(key) {
            self.spans.remove(i);
        }
    }

    fn append(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        (start, self.text.len() as u32)
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key)?;
        let value = self.slice(self.spans[i].value).to_owned();
        // Drop shadowed duplicates too, so the key is really gone.
        self.discard(key);
        Some(value)
    }

    /// Number of entries (a key pushed twice counts twice).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Effective entries (the last of duplicate keys) in byte order of their keys: what a
    /// request signature covers. One sort instead of [`ExtFields::iter`]'s shadow checks.
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::with_capacity(self.spans.len());
        self.for_each_sorted(|k, v| out.push((k, v)));
        out
    }

    /// [`ExtFields::sorted`] without building the list.
    pub fn for_each_sorted<'a>(&'a self, mut f: impl FnMut(&'a str, &'a str)) {
        self.for_each_sorted_span(|span| f(self.slice(span.key), self.slice(span.value)));
    }

    /// [`ExtFields::for_each_sorted`] as bytes, which is what a signature hashes: no char
    /// boundary checks per field.
    pub fn for_each_sorted_bytes<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a [u8])) {
        self.for_each_sorted_span(|span| f(self.bytes(span.key), self.bytes(span.value)));
    }

    /// Signing every request must not allocate, and it sorts every request's fields. A request
    /// has a dozen or two, so the order is an insertion sort on the stack (more than that, which
    /// only a hostile peer sends, sorts on the heap). Each entry carries its key's first eight
    /// bytes as a big-endian number, so nearly every comparison is one integer compare instead
    /// of two slice look-ups and a byte loop.
    #[inline]
    fn for_each_sorted_span(&self, mut f: impl FnMut(&Span)) {
        const ON_STACK: usize = 48;
        // Already in strict key order (our signer keeps a sorted header sorted): no sort, and
        // no duplicates to skip.
        if self
            .spans
            .windows(2)
            .all(|w| key_order(self.bytes(w[0].key), self.bytes(w[1].key)).is_lt())
        {
            self.spans.iter().for_each(f);
            return;
        }
        let n = self.spans.len();
        let mut stack = [(0u64, 0u32); ON_STACK];
        let mut heap = Vec::new();
        let order: &mut [(u64, u32)] = if n <= ON_STACK {
            &mut stack[..n]
        } else {
            heap.resize(n, (0, 0));
            &mut heap
        };
        for ((at, span), i) in order.iter_mut().zip(&self.spans).zip(0u32..) {
            *at = (key_prefix(self.bytes(span.key)), i);
        }
        // Zero padding keeps prefix order consistent with byte order; equal prefixes (a key
        // that is a prefix of another, or longer keys sharing eight bytes) compare in full.
        let cmp = |a: &(u64, u32), b: &(u64, u32)| {
            a.0.cmp(&b.0).then_with(|| {
                self.bytes(self.spans[a.1 as usize].key)
                    .cmp(self.bytes(self.spans[b.1 as usize].key))
            })
        };
        // Both sorts are stable: an equal key stays after the earlier one, so the last one wins
        // below.
        if n <= ON_STACK {
            for i in 1..n {
                let item = order[i];
                let mut j = i;
                while j > 0 && cmp(&order[j - 1], &item).is_gt() {
                    order[j] = order[j - 1];
                    j -= 1;
                }
                order[j] = item;
            }
        } else {
            order.sort_by(cmp);
        }
        for (i, at) in order.iter().enumerate() {
            if order.get(i + 1).is_some_and(|next| cmp(next, at).is_eq()) {
                continue;
            }
            f(&self.spans[at.1 as usize]);
        }
    }

    #[inline]
    fn bytes(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.text.as_bytes()[start as usize..end as usize]
    }

    fn key_bytes(&self, i: usize) -> &[u8] {
        self.bytes(self.spans[i].key)
    }

    /// Entries in insertion order; for duplicate keys only the winning (last) one.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().enumerate().filter_map(move |(i, s)| {
            let key = self.key_bytes(i);
            let shadowed = (i + 1..self.spans.len()).any(|j| key_eq(self.key_bytes(j), key));
            (!shadowed).then(|| (self.slice(s.key), self.slice(s.value)))
        })
    }
}

impl PartialEq for ExtFields {
    /// Equal when both hold the same effective key → value map, whatever the order.
    fn eq(&self, other: &Self) -> bool {
        let mine: Vec<_> = self.iter().collect();
        let theirs: Vec<_> = other.iter().collect();
        mine.len() == theirs.len() && mine.iter().all(|(k, v)| other.get(k) == Some(*v))
    }
}

impl Eq for ExtFields {}

impl std::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
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
    ///
    /// Responses declare the language `JAVA`: nothing reads it, but Java clients older than
    /// 4.9.4 do not know the code `RUST` and some of their parsers stumble on unknown enum names.
    pub fn response_to(request: &RemotingCommand, code: ResponseCode) -> Self {
        let mut cmd = Self::blank(code.value(), FLAG_RESPONSE);
        cmd.opaque = request.opaque;
        cmd.language = LanguageCode::Java;
        cmd
    }

    /// Sets the declared language (servers calling clients back declare `JAVA`, see
    /// [`RemotingCommand::response_to`]).
    pub fn with_language(mut self, language: LanguageCode) -> Self {
        self.language = language;
        self
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
        ext.push("b", "4");
        assert_eq!(ext.get("b"), Some("4"), "pushed duplicates: last wins");
        assert_eq!(ext.iter().collect::<Vec<_>>(), vec![("b", "4")]);
        let same: ExtFields = [("b", "4")].into_iter().collect();
        assert_eq!(ext, same);
    }

    proptest::proptest! {
        #[test]
        fn sorted_is_iter_in_key_order(
            // Short keys, keys that are prefixes of others, NULs (equal zero-padded prefixes)
            // and long keys sharing their first eight bytes.
            pushes in proptest::collection::vec(
                ("(abcdefgh)?[a-d\\x00]{0,10}", "[0-9]{0,2}"),
                0..80,
            )
        ) {
            let mut ext = ExtFields::new();
            for (k, v) in &pushes {
                ext.push(k, v);
            }
            let mut expected: Vec<_> = ext.iter().collect();
            expected.sort();
            proptest::prop_assert_eq!(ext.sorted(), expected);
        }
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
