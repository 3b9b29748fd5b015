//! fastjson's dialect of JSON. Java writes integer map keys unquoted (`{"brokerAddrs":{0:"…"}}`),
//! which standard parsers reject; every body and config file that may carry them goes through
//! [`from_java_json`], and [`to_java_json`] writes them the Java way for files Java tools read.
//! String keys always stay quoted, so a topic named "123" is still a string.

use std::io::{self, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// Parses JSON that may contain fastjson's unquoted integer object keys.
pub fn from_java_json<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(&quote_numeric_keys(text))
}

/// Serializes compactly with integer map keys unquoted, as fastjson does.
pub fn to_java_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JavaFormatter::default());
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Wraps bare numeric object keys in quotes; everything else is copied unchanged.
pub fn quote_numeric_keys(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut stack: Vec<u8> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                expect_key = false;
                continue;
            }
            b'{' => {
                stack.push(b'{');
                expect_key = true;
            }
            b'[' => {
                stack.push(b'[');
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&b'{'),
            b':' => expect_key = false,
            c if expect_key && (c.is_ascii_digit() || c == b'-') => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"-+.".contains(&b[i])) {
                    i += 1;
                }
                out.push_str(&text[copied..start]);
                out.push('"');
                out.push_str(&text[start..i]);
                out.push('"');
                copied = i;
                expect_key = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// Rewrites fastjson's object-keyed maps (`{{"brokerName":"b","queueId":0,"topic":"T"}:5}`, the
/// default form of maps keyed by `MessageQueue`) as arrays of `[key, value]` pairs
/// (`[[{"brokerName":"b","queueId":0,"topic":"T"},5]]`), which standard parsers read. An object
/// is taken to be such a map when its first key is itself an object; empty maps stay `{}`.
pub fn object_keys_to_pairs(text: &str) -> String {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 16);
    // One entry per open container: true for an object-keyed map being rewritten.
    let mut stack: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                out.extend_from_slice(&b[start..i]);
                continue;
            }
            b'{' => {
                let next = b[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if next == Some(&b'{') {
                    stack.push(true);
                    out.extend_from_slice(b"[[");
                } else {
                    stack.push(false);
                    out.push(b'{');
                }
            }
            b'[' => {
                stack.push(false);
                out.push(b'[');
            }
            b'}' => {
                if stack.pop() == Some(true) {
                    out.extend_from_slice(b"]]");
                } else {
                    out.push(b'}');
                }
            }
            b']' => {
                stack.pop();
                out.push(b']');
            }
            b':' if stack.last() == Some(&true) => out.push(b','),
            b',' if stack.last() == Some(&true) => out.extend_from_slice(b"],["),
            _ => out.push(c),
        }
        i += 1;
    }
    // Only ASCII bytes were replaced, so the output is still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Compact output, except that object keys produced from integers are left unquoted.
#[derive(Default)]
struct JavaFormatter {
    in_key: bool,
    quote_pending: bool,
    numeric_key: bool,
}

impl JavaFormatter {
    fn flush_quote<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.quote_pending {
            self.quote_pending = false;
            w.write_all(b"\"")?;
        }
        Ok(())
    }

    fn number_key(&mut self) {
        if self.in_key && self.quote_pending {
            self.quote_pending = false;
            self.numeric_key = true;
        }
    }
}

macro_rules! int_writer {
    ($($name:ident: $t:ty),*) => {$(
        fn $name<W: ?Sized + Write>(&mut self, w: &mut W, v: $t) -> io::Result<()> {
            self.number_key();
            CompactFormatter.$name(w, v)
        }
    )*};
}

impl Formatter for JavaFormatter {
    int_writer!(write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64,
                write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64);

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.in_key = true;
        CompactFormatter.begin_object_key(w, first)
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.in_key = false;
        Ok(())
    }

    fn begin_string<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.in_key {
            self.quote_pending = true;
            self.numeric_key = false;
            return Ok(());
        }
        w.write_all(b"\"")
    }

    fn end_string<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.in_key {
            if self.numeric_key {
                self.numeric_key = false;
                return Ok(());
            }
            self.flush_quote(w)?;
        }
        w.write_all(b"\"")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        self.flush_quote(w)?;
        w.write_all(fragment.as_bytes())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        self.flush_quote(w)?;
        CompactFormatter.write_char_escape(w, escape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn unquoted_integer_keys_read_and_write() {
        let text = r#"{"a":{0:"x",-1:"y"},"s":"{1:2}","b":[{3:4}]}"#;
        let v: serde_json::Value = from_java_json(text).unwrap();
        assert_eq!(v["a"]["0"], "x");
        assert_eq!(v["a"]["-1"], "y");
        assert_eq!(v["s"], "{1:2}");
        assert_eq!(v["b"][0]["3"], 4);
        let mut m = BTreeMap::new();
        m.insert(7i64, "q".to_owned());
        assert_eq!(to_java_json(&m).unwrap(), r#"{7:"q"}"#);
        let mut s = BTreeMap::new();
        s.insert("7".to_owned(), 1);
        assert_eq!(to_java_json(&s).unwrap(), r#"{"7":1}"#);
    }

    #[test]
    fn object_keyed_maps_become_pairs() {
        let text = r#"{"t":{ {"q":1,"s":"{x:1}"}:{"a":2},{"q":2}:3},"e":{},"n":{"k":[{"z":1}]}}"#;
        let v: serde_json::Value = serde_json::from_str(&object_keys_to_pairs(text)).unwrap();
        assert_eq!(v["t"][0][0]["q"], 1);
        assert_eq!(v["t"][0][0]["s"], "{x:1}");
        assert_eq!(v["t"][0][1]["a"], 2);
        assert_eq!(v["t"][1][1], 3);
        assert_eq!(v["e"], serde_json::json!({}));
        assert_eq!(v["n"]["k"][0]["z"], 1);
    }
}
