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

pub use ferrymq_protocol::body::{from_java_json, quote_numeric_keys, to_java_json, DataVersion};

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
