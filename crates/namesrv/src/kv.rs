//! KV config: string key/value pairs grouped in namespaces (PUT/GET/DELETE_KV_CONFIG,
//! GET_KVLIST_BY_NAMESPACE). The one namespace with meaning to the server is
//! [`ORDER_TOPIC_CONFIG`], which holds per-topic ordered-queue layouts.
//!
//! The table is persisted to `kvConfigPath` in Java's file format,
//! `{"configTable":{"<namespace>":{"<key>":"<value>"}}}`, so a Java NameServer's file can be
//! taken over. Every change rewrites the file atomically before the request is answered; the
//! writes run on the blocking pool and are serialized so an older snapshot never lands after a
//! newer one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferrymq_protocol::body::{from_java_json, KvTable};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::file::write_atomically;

/// Namespace whose keys are topics and values `brokerName:queueNums;…` ordered-queue layouts.
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

type Namespaces = BTreeMap<String, BTreeMap<String, String>>;

/// The file's shape (Java's KVConfigSerializeWrapper).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct KvFile {
    config_table: Namespaces,
}

/// Why the KV config could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("cannot read KV config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("KV config file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write KV config file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The KV namespaces and their file.
#[derive(Debug)]
pub struct KvStore {
    path: PathBuf,
    table: RwLock<Namespaces>,
    /// Held across snapshot + write, so writes reach the disk in the order they were taken.
    persist: tokio::sync::Mutex<()>,
}

impl KvStore {
    /// Loads `path`. A missing file is an empty store (first start); an unreadable or corrupt
    /// one is an error, because starting empty would silently lose the operator's config on
    /// the next write. Blocking.
    pub fn load(path: impl Into<PathBuf>) -> Result<KvStore, KvError> {
        let path = path.into();
        let table = match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Namespaces::new(),
            Ok(text) => {
                let file: KvFile = from_java_json(&text).map_err(|source| KvError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
                info!(path = %path.display(), namespaces = file.config_table.len(), "KV config loaded");
                file.config_table
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Namespaces::new(),
            Err(source) => return Err(KvError::Read { path, source }),
        };
        Ok(KvStore {
            path,
            table: RwLock::new(table),
            persist: tokio::sync::Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.table.read().get(namespace)?.get(key).cloned()
    }

    /// A namespace's entries, `None` when it has none.
    pub fn namespace(&self, namespace: &str) -> Option<KvTable> {
        let table = self.table.read();
        let entries = table.get(namespace).filter(|e| !e.is_empty())?;
        Some(KvTable {
            table: entries.clone(),
        })
    }

    /// Sets a value and persists. On a write error the value stays set in memory (it is
    /// written with the next successful change) and the error is returned for the caller to
    /// report.
    pub async fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), KvError> {
        {
            let mut table = self.table.write();
            let prev = table
                .entry(namespace.to_owned())
                .or_default()
                .insert(key.to_owned(), value.to_owned());
            info!(
                namespace,
                key,
                value,
                updated = prev.is_some(),
                "KV config put"
            );
        }
        self.persist().await
    }

    /// Removes a value (and its namespace once empty) and persists.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        {
            let mut table = self.table.write();
            let Some(entries) = table.get_mut(namespace) else {
                return Ok(());
            };
            if entries.remove(key).is_none() {
                return Ok(());
            }
            info!(namespace, key, "KV config deleted");
            if entries.is_empty() {
                table.remove(namespace);
            }
        }
        self.persist().await
    }

    async fn persist(&self) -> Result<(), KvError> {
        let _order = self.persist.lock().await;
        // Snapshot under the order lock: whoever writes last writes the newest state.
        let json = {
            let table = self.table.read();
            serde_json::to_vec(&KvFileRef {
                config_table: &table,
            })
            .unwrap_or_default()
        };
        let path = self.path.clone();
        let write_path = path.clone();
        let result = tokio::task::spawn_blocking(move || write_atomically(&write_path, &json))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        result.map_err(|source| KvError::Write { path, source })
    }
}

/// Serializes the table without cloning it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KvFileRef<'a> {
    config_table: &'a Namespaces,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn persists_and_reloads_in_java_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("namesrv/kvConfig.json");
        let kv = KvStore::load(&path).unwrap();
        assert!(kv.namespace(ORDER_TOPIC_CONFIG).is_none());
        kv.put(ORDER_TOPIC_CONFIG, "T1", "broker-a:4")
            .await
            .unwrap();
        kv.put("ns", "k", "v").await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            r#"{"configTable":{"ORDER_TOPIC_CONFIG":{"T1":"broker-a:4"},"ns":{"k":"v"}}}"#
        );

        let again = KvStore::load(&path).unwrap();
        assert_eq!(again.get("ns", "k").as_deref(), Some("v"));
        again.delete("ns", "k").await.unwrap();
        again.delete("ns", "absent").await.unwrap();
        assert!(again.namespace("ns").is_none(), "empty namespace removed");
        let third = KvStore::load(&path).unwrap();
        assert!(third.get("ns", "k").is_none());
        assert_eq!(
            third.namespace(ORDER_TOPIC_CONFIG).unwrap().table["T1"],
            "broker-a:4"
        );
    }

    #[test]
    fn corrupt_file_names_its_path_and_empty_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = KvStore::load(&path).unwrap_err();
        assert!(matches!(err, KvError::Corrupt { .. }));
        assert!(err.to_string().contains("kv.json"), "{err}");
        std::fs::write(&path, "  \n").unwrap();
        assert!(KvStore::load(&path).unwrap().namespace("x").is_none());
    }

    #[tokio::test]
    async fn write_failure_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be makes the rename fail.
        let path = dir.path().join("kv.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("blocker"), "x").unwrap();
        let kv = KvStore::load(dir.path().join("other.json")).unwrap();
        let kv = KvStore {
            path: path.clone(),
            ..kv
        };
        let err = kv.put("ns", "k", "v").await.unwrap_err();
        assert!(matches!(err, KvError::Write { .. }), "{err}");
        assert_eq!(kv.get("ns", "k").as_deref(), Some("v"), "kept in memory");
    }
}
