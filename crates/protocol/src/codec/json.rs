//! JSON header (serialize type 0), read leniently and written the way fastjson writes it.
//!
//! Real clients disagree on details: C++ cores send numbers and booleans inside extFields, Go
//! sends `"remark":""`, some headers end in a newline, languages come as names or numbers. The
//! reader accepts all of them without building an intermediate JSON tree.

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{FrameError, HeaderFields};
use crate::code::LanguageCode;
use crate::command::{ExtFields, RemotingCommand};

/// Any JSON value reduced to what a header field can hold.
enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Null,
    Nested,
}

impl Scalar {
    fn as_i32(&self) -> i32 {
        match self {
            Scalar::Int(v) => *v as i32,
            Scalar::Float(v) => *v as i32,
            Scalar::Str(s) => s.trim().parse().unwrap_or(0),
            Scalar::Bool(b) => *b as i32,
            Scalar::Null | Scalar::Nested => 0,
        }
    }

    /// The string Java's `toString()` would give; `None` for null and nested values.
    fn into_string(self) -> Option<String> {
        match self {
            Scalar::Int(v) => Some(v.to_string()),
            Scalar::Float(v) => Some(v.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Str(s) => Some(s),
            Scalar::Null | Scalar::Nested => None,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v as i64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A JSON object key, borrowed from the input when it has no escapes (nearly always).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Writes one extFields value straight into the map's buffer, turning numbers and booleans
/// into the strings Java would have sent.
struct ValueInto<'a> {
    ext: &'a mut ExtFields,
    key: &'a str,
}

impl<'de> de::DeserializeSeed<'de> for ValueInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an extFields value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.ext.push(self.key, v);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.ext
            .push_with(self.key, |t| t.push_str(itoa_buf(v).as_str()));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.ext.push_with(self.key, |t| t.push_str(&v.to_string()));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.ext.push_with(self.key, |t| t.push_str(&v.to_string()));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.ext.push(self.key, if v { "true" } else { "false" });
        Ok(())
    }
    /// Null means "no such field".
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    /// Nested values are not header fields; skip them rather than fail the request.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

struct ExtVisitor;

impl<'de> Visitor<'de> for ExtVisitor {
    type Value = ExtFields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an extFields object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
        Ok(ExtFields::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
        // Room for a signed send (its 14 fields, properties and the ACL fields) without growing.
        let mut ext = ExtFields::with_capacity(24, 512);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            map.next_value_seed(ValueInto {
                ext: &mut ext,
                key: &key,
            })?;
        }
        Ok(ext)
    }
}

fn lenient_ext<'de, D: Deserializer<'de>>(d: D) -> Result<ExtFields, D::Error> {
    d.deserialize_any(ExtVisitor)
}

fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    Ok(Scalar::deserialize(d)?.as_i32())
}

fn lenient_language<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Str(s) => LanguageCode::from_name(&s),
        Scalar::Int(v) => LanguageCode::from(v as u8),
        _ => LanguageCode::Java,
    })
}

fn lenient_remark<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(d)?.into_string())
}

fn default_language() -> LanguageCode {
    LanguageCode::Java
}

#[derive(Deserialize)]
struct JsonHeader {
    #[serde(default, deserialize_with = "lenient_i32")]
    code: i32,
    #[serde(default = "default_language", deserialize_with = "lenient_language")]
    language: LanguageCode,
    #[serde(default, deserialize_with = "lenient_i32")]
    version: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    opaque: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    flag: i32,
    #[serde(default, deserialize_with = "lenient_remark")]
    remark: Option<String>,
    #[serde(default, rename = "extFields", deserialize_with = "lenient_ext")]
    ext_fields: ExtFields,
}

/// Decodes a JSON header. Unknown keys are ignored and missing ones take defaults.
pub(crate) fn decode_json_header(bytes: &[u8]) -> Result<HeaderFields, FrameError> {
    let h: JsonHeader =
        serde_json::from_slice(bytes).map_err(|e| FrameError::Json(e.to_string()))?;
    Ok(HeaderFields {
        code: h.code,
        language: h.language,
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark,
        ext_fields: h.ext_fields,
    })
}

/// Encodes the header of `cmd` as fastjson does: keys sorted, nulls omitted, enums by name.
pub(crate) fn encode_json_header(cmd: &RemotingCommand, dst: &mut BytesMut) {
    dst.put_slice(b"{\"code\":");
    put_int(dst, cmd.code as i64);
    if !cmd.ext_fields.is_empty() {
        dst.put_slice(b",\"extFields\":{");
        for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            put_json_string(dst, k);
            dst.put_u8(b':');
            put_json_string(dst, v);
        }
        dst.put_u8(b'}');
    }
    dst.put_slice(b",\"flag\":");
    put_int(dst, cmd.flag as i64);
    dst.put_slice(b",\"language\":\"");
    dst.put_slice(cmd.language.name().as_bytes());
    dst.put_slice(b"\",\"opaque\":");
    put_int(dst, cmd.opaque as i64);
    if let Some(remark) = &cmd.remark {
        dst.put_slice(b",\"remark\":");
        put_json_string(dst, remark);
    }
    dst.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    put_int(dst, cmd.version as i64);
    dst.put_u8(b'}');
}

fn put_int(dst: &mut BytesMut, v: i64) {
    dst.put_slice(itoa_buf(v).as_str().as_bytes());
}

/// Small stack formatter for integers, to avoid a `String` per number.
struct IntBuf {
    bytes: [u8; 20],
    start: usize,
}

impl IntBuf {
    fn as_str(&self) -> &str {
        // Only ASCII digits and '-' are ever written.
        std::str::from_utf8(&self.bytes[self.start..]).unwrap_or("0")
    }
}

fn itoa_buf(v: i64) -> IntBuf {
    let mut bytes = [0u8; 20];
    let mut pos = bytes.len();
    let negative = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        pos -= 1;
        bytes[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        pos -= 1;
        bytes[pos] = b'-';
    }
    IntBuf { bytes, start: pos }
}

/// Writes a JSON string literal. Non-ASCII text is written as UTF-8 (fastjson's default).
pub(crate) fn put_json_string(dst: &mut BytesMut, s: &str) {
    dst.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        dst.put_slice(&bytes[run_start..i]);
        match escape {
            Some(e) => dst.put_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                dst.put_slice(b"\\u00");
                dst.put_u8(HEX[(b >> 4) as usize]);
                dst.put_u8(HEX[(b & 0xf) as usize]);
            }
        }
        run_start = i + 1;
    }
    dst.put_slice(&bytes[run_start..]);
    dst.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_format_like_display() {
        for v in [0i64, 7, -1, 479, i64::MIN, i64::MAX, i32::MIN as i64] {
            assert_eq!(itoa_buf(v).as_str(), v.to_string());
        }
    }

    #[test]
    fn string_escaping_is_valid_json() {
        for s in ["plain", "q\"uote", "back\\slash", "ctl\u{1}\u{2}\n", "中文"] {
            let mut dst = BytesMut::new();
            put_json_string(&mut dst, s);
            let back: String = serde_json::from_slice(&dst).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn lenient_values_from_cpp_and_go() {
        let raw = br#"{"code":"310","language":1,"version":333,"opaque":9,"flag":0,
            "remark":"","extFields":{"d":4,"e":-1,"k":true,"Signature":"","x":null,"o":{"a":1}}}
"#;
        let h = decode_json_header(raw).unwrap();
        assert_eq!(h.code, 310);
        assert_eq!(h.language, LanguageCode::Cpp);
        assert_eq!(h.ext_fields.get("d"), Some("4"));
        assert_eq!(h.ext_fields.get("e"), Some("-1"));
        assert_eq!(h.ext_fields.get("k"), Some("true"));
        assert_eq!(h.ext_fields.get("Signature"), Some(""));
        assert_eq!(h.ext_fields.get("x"), None);
        assert_eq!(h.ext_fields.get("o"), None);
        assert_eq!(h.remark.as_deref(), Some(""));
    }

    #[test]
    fn missing_fields_take_defaults() {
        let h = decode_json_header(b"{}").unwrap();
        assert_eq!((h.code, h.opaque, h.flag, h.version), (0, 0, 0, 0));
        assert_eq!(h.language, LanguageCode::Java);
        assert!(h.ext_fields.is_empty());
        assert!(h.remark.is_none());
    }
}
