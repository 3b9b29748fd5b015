//! The broker's JSON config files under `<root>/config/` (store-format.md §8), written the way
//! RocketMQ writes them: temp file, fsync, previous version kept as `.bak`, atomic rename; loading
//! falls back to `.bak` when the main file is missing or corrupt.
//!
//! fastjson emits integer map keys unquoted (`{"offsetTable":{"t@g":{0:5}}}`), which is not JSON.
//! [`from_java_json`] accepts both forms and [`to_java_json`] writes integer keys the Java way
//! (string keys stay quoted, so a topic named "123" is still a string). Typed files are plain
//! serde structs; [`ConsumerOffsetTable`] and [`DelayOffsetTable`] are here, and topics.json /
//! subscriptionGroup.json can be added the same way on top of [`ConfigFile`].

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use crate::error::{IoContext, Result, StoreError};

/// One config file and its `.bak`.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(path: impl Into<PathBuf>) -> ConfigFile {
        ConfigFile { path: path.into() }
    }

    /// `<root>/config/<name>`.
    pub fn in_store(root: &Path, name: &str) -> ConfigFile {
        ConfigFile::new(root.join("config").join(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bak_path(&self) -> PathBuf {
        with_suffix(&self.path, ".bak")
    }

    /// Parses the main file, else the `.bak`; `None` when neither exists.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let mut first_err = None;
        for p in [self.path.clone(), self.bak_path()] {
            let text = match fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).context(|| format!("read {}", p.display())),
            };
            if text.trim().is_empty() {
                continue;
            }
            match from_java_json(&text) {
                Ok(v) => {
                    if p != self.path {
                        tracing::warn!(
                            "{} unreadable, loaded {}",
                            self.path.display(),
                            p.display()
                        );
                    }
                    return Ok(Some(v));
                }
                Err(source) => {
                    tracing::warn!("{}: {source}", p.display());
                    first_err.get_or_insert(StoreError::Json { path: p, source });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Writes `value` in fastjson's shape, atomically, keeping the previous file as `.bak`.
    pub fn persist<T: Serialize>(&self, value: &T) -> Result<()> {
        let text = to_java_json(value).map_err(|source| StoreError::Json {
            path: self.path.clone(),
            source,
        })?;
        self.persist_text(&text)
    }

    pub fn persist_text(&self, text: &str) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).context(|| format!("create {}", dir.display()))?;
        let tmp = with_suffix(&self.path, ".tmp");
        {
            let mut f = File::create(&tmp).context(|| format!("create {}", tmp.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .context(|| format!("write {}", tmp.display()))?;
        }
        if self.path.exists() {
            fs::rename(&self.path, self.bak_path())
                .context(|| format!("back up {}", self.path.display()))?;
        }
        fs::rename(&tmp, &self.path).context(|| format!("rename {}", tmp.display()))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

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

/// RocketMQ `DataVersion`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default)]
    pub counter: i64,
    #[serde(default)]
    pub state_version: i64,
    #[serde(default)]
    pub timestamp: i64,
}

impl DataVersion {
    pub fn new() -> DataVersion {
        DataVersion {
            counter: 0,
            state_version: 0,
            timestamp: crate::util::now_ms(),
        }
    }

    /// Records a change: bump the counter, refresh the timestamp.
    pub fn next_version(&mut self) {
        self.counter += 1;
        self.timestamp = crate::util::now_ms();
    }
}

/// `consumerOffset.json`: committed offsets keyed `topic@group`, then queue id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerOffsetTable {
    #[serde(default)]
    pub data_version: DataVersion,
    #[serde(default)]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

pub const TOPIC_GROUP_SEPARATOR: char = '@';

impl ConsumerOffsetTable {
    pub const FILE_NAME: &'static str = "consumerOffset.json";

    pub fn key(topic: &str, group: &str) -> String {
        format!("{topic}{TOPIC_GROUP_SEPARATOR}{group}")
    }

    pub fn commit_offset(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        self.offset_table
            .entry(Self::key(topic, group))
            .or_default()
            .insert(queue_id, offset);
    }

    /// Committed offset, or `None` (the broker answers QUERY_NOT_FOUND).
    pub fn query_offset(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.offset_table
            .get(&Self::key(topic, group))?
            .get(&queue_id)
            .copied()
    }

    pub fn queues(&self, topic: &str, group: &str) -> Option<&BTreeMap<i32, i64>> {
        self.offset_table.get(&Self::key(topic, group))
    }

    /// Every `(topic, group)` with offsets (keys split at the last '@', as group names cannot
    /// contain one but retry topics can be long).
    pub fn topic_groups(&self) -> impl Iterator<Item = (&str, &str)> {
        self.offset_table
            .keys()
            .filter_map(|k| k.rsplit_once(TOPIC_GROUP_SEPARATOR))
    }

    pub fn remove_group(&mut self, group: &str) {
        self.offset_table.retain(|k, _| {
            k.rsplit_once(TOPIC_GROUP_SEPARATOR)
                .is_none_or(|(_, g)| g != group)
        });
    }

    pub fn remove_topic(&mut self, topic: &str) {
        self.offset_table.retain(|k, _| {
            k.rsplit_once(TOPIC_GROUP_SEPARATOR)
                .is_none_or(|(t, _)| t != topic)
        });
    }
}

/// `delayOffset.json`: next offset per delay level (1..=18) of SCHEDULE_TOPIC_XXXX.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelayOffsetTable {
    #[serde(default)]
    pub data_version: DataVersion,
    #[serde(default)]
    pub offset_table: BTreeMap<i32, i64>,
}

impl DelayOffsetTable {
    pub const FILE_NAME: &'static str = "delayOffset.json";
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_shapes() {
        let java = r#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},
 "offsetTable":{"TopicTest@g4":{0:12,1:7,2:9,3:0},
                "%RETRY%g4@g4":{"0":0}}}"#;
        let t: ConsumerOffsetTable = from_java_json(java).unwrap();
        assert_eq!(t.query_offset("TopicTest", "g4", 1), Some(7));
        assert_eq!(t.query_offset("%RETRY%g4", "g4", 0), Some(0));
        let out = to_java_json(&t).unwrap();
        assert_eq!(
            out,
            r#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"offsetTable":{"%RETRY%g4@g4":{0:0},"TopicTest@g4":{0:12,1:7,2:9,3:0}}}"#
        );
        let d: DelayOffsetTable = from_java_json(r#"{"offsetTable":{1:0,2:5,-3:17}}"#).unwrap();
        assert_eq!(d.offset_table.get(&2), Some(&5));
        assert_eq!(to_java_json(&d.offset_table).unwrap(), "{-3:17,1:0,2:5}");
        // String keys that look like numbers stay quoted; arrays and strings are untouched.
        let m: BTreeMap<String, Vec<i32>> =
            from_java_json(r#"{"123":[1, 2],"a\"{1:":[]}"#).unwrap();
        assert_eq!(to_java_json(&m).unwrap(), r#"{"123":[1,2],"a\"{1:":[]}"#);
        let groups: Vec<_> = t.topic_groups().collect();
        assert!(groups.contains(&("TopicTest", "g4")));
    }

    #[test]
    fn atomic_file_with_bak() {
        let dir = tempfile::tempdir().unwrap();
        let f = ConfigFile::in_store(dir.path(), ConsumerOffsetTable::FILE_NAME);
        assert_eq!(f.load::<ConsumerOffsetTable>().unwrap(), None);
        let mut t = ConsumerOffsetTable::default();
        t.commit_offset("T", "g", 0, 5);
        f.persist(&t).unwrap();
        t.commit_offset("T", "g", 0, 6);
        t.data_version.next_version();
        f.persist(&t).unwrap();
        assert!(fs::read_to_string(f.path()).unwrap().contains("{0:6}"));
        assert!(fs::read_to_string(f.bak_path()).unwrap().contains("{0:5}"));
        fs::write(f.path(), "{corrupt").unwrap();
        let back: ConsumerOffsetTable = f.load().unwrap().unwrap();
        assert_eq!(back.query_offset("T", "g", 0), Some(5));
        fs::remove_file(f.path()).unwrap();
        assert!(f.load::<ConsumerOffsetTable>().unwrap().is_some());
    }

    proptest! {
        #[test]
        fn offsets_roundtrip(table in proptest::collection::btree_map(
            "[%A-Za-z0-9_@-]{1,20}", proptest::collection::btree_map(any::<i32>(), any::<i64>(), 0..5), 0..5)) {
            let t = ConsumerOffsetTable { data_version: DataVersion::default(), offset_table: table };
            let text = to_java_json(&t).unwrap();
            let back: ConsumerOffsetTable = from_java_json(&text).unwrap();
            prop_assert_eq!(back, t);
        }
    }
}
