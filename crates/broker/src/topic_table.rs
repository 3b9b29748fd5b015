//! The broker's topics: their queue counts and permissions, persisted in `config/topics.json`
//! and reported to the NameServers on every registration.
//!
//! System topics are created at start-up exactly as RocketMQ creates them, user topics come from
//! admin requests or are auto-created from the `TBW102` template on first send, and retry / DLQ
//! topics appear when a consumer group first needs them. Every change bumps the data version so
//! the next registration carries it.

use std::collections::BTreeMap;
use std::sync::RwLock;

use ferrymq_protocol::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use ferrymq_protocol::message::perm;
use ferrymq_protocol::naming;

use crate::config::BrokerConfig;

/// Queues of SCHEDULE_TOPIC_XXXX: one per delay level.
pub const SCHEDULE_TOPIC_QUEUES: i32 = 18;
/// Queues of the pop revive topic.
pub const REVIVE_QUEUES: i32 = 8;

/// What creating a topic did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// It existed already.
    Existing(TopicConfig),
    /// It was created now; the caller should persist and re-register.
    New(TopicConfig),
}

impl Created {
    pub fn config(&self) -> &TopicConfig {
        match self {
            Created::Existing(c) | Created::New(c) => c,
        }
    }
}

struct Inner {
    topics: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
}

/// All topics of this broker.
pub struct TopicTable {
    inner: RwLock<Inner>,
}

fn topic(name: &str, queues: i32, perm: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.to_owned(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm,
        ..TopicConfig::default()
    }
}

impl TopicTable {
    /// Builds the table from what was persisted plus the system topics this config implies.
    pub fn new(config: &BrokerConfig, persisted: Option<TopicConfigSerializeWrapper>) -> Self {
        let rw = perm::READ | perm::WRITE;
        let mut system = vec![
            topic(naming::SELF_TEST_TOPIC, 1, rw),
            topic(naming::BENCHMARK_TOPIC, 1024, rw),
            topic(naming::OFFSET_MOVED_EVENT, 1, rw),
            topic(naming::SCHEDULE_TOPIC, SCHEDULE_TOPIC_QUEUES, rw),
            topic(&naming::reply_topic(&config.broker_cluster_name), 1, rw),
            topic(
                &format!("rmq_sys_REVIVE_LOG_{}", config.broker_cluster_name),
                REVIVE_QUEUES,
                rw,
            ),
            topic(
                &format!("rmq_sys_SYNC_BROKER_MEMBER_{}", config.broker_name),
                1,
                perm::INHERIT,
            ),
            topic(naming::TRANS_HALF_TOPIC, 1, rw),
            topic(naming::TRANS_OP_HALF_TOPIC, 1, rw),
            topic(naming::TRANS_CHECK_MAX_TIME_TOPIC, 1, rw),
            topic(naming::TIMER_TOPIC, 1, rw),
        ];
        if config.auto_create_topic_enable {
            system.push(topic(
                naming::AUTO_CREATE_TOPIC_KEY,
                config.default_topic_queue_nums,
                perm::INHERIT | rw,
            ));
        }
        let cluster_perm = if config.cluster_topic_enable {
            perm::INHERIT | rw
        } else {
            perm::INHERIT
        };
        system.push(topic(&config.broker_cluster_name, 16, cluster_perm));
        let broker_perm = if config.broker_topic_enable {
            perm::INHERIT | rw
        } else {
            perm::INHERIT
        };
        system.push(topic(&config.broker_name, 1, broker_perm));
        if config.trace_topic_enable {
            system.push(topic(&config.msg_trace_topic_name, 1, rw));
        }

        let (mut topics, mut data_version) = match persisted {
            Some(w) => (
                w.topic_config_table.into_iter().collect::<BTreeMap<_, _>>(),
                w.data_version,
            ),
            None => (BTreeMap::new(), DataVersion::default()),
        };
        for t in system {
            topics.insert(t.topic_name.clone(), t);
        }
        if !config.auto_create_topic_enable {
            topics.remove(naming::AUTO_CREATE_TOPIC_KEY);
        }
        data_version.next_version();
        TopicTable {
            inner: RwLock::new(Inner {
                topics,
                data_version,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<TopicConfig> {
        self.read().topics.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().topics.contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.read().topics.keys().cloned().collect()
    }

    pub fn data_version(&self) -> DataVersion {
        self.read().data_version.clone()
    }

    /// Creates or replaces a topic (admin UPDATE_AND_CREATE_TOPIC).
    pub fn upsert(&self, config: TopicConfig) {
        let mut inner = self.write();
        inner.topics.insert(config.topic_name.clone(), config);
        inner.data_version.next_version();
    }

    /// Removes a topic; true when it existed.
    pub fn remove(&self, name: &str) -> bool {
        let mut inner = self.write();
        let existed = inner.topics.remove(name).is_some();
        if existed {
            inner.data_version.next_version();
        }
        existed
    }

    /// Creates `name` on first send from the template topic, as RocketMQ's auto-create does:
    /// `min(requested, template write queues)` queues, the template's permission minus INHERIT.
    /// `None` when the template is missing or not inheritable.
    pub fn create_from_template(
        &self,
        name: &str,
        template: &str,
        requested_queues: i32,
    ) -> Option<Created> {
        if let Some(existing) = self.get(name) {
            return Some(Created::Existing(existing));
        }
        let mut inner = self.write();
        if let Some(existing) = inner.topics.get(name) {
            return Some(Created::Existing(existing.clone()));
        }
        let template = inner.topics.get(template)?;
        if template.perm & perm::INHERIT == 0 {
            return None;
        }
        let queues = requested_queues.clamp(1, template.write_queue_nums.max(1));
        let created = TopicConfig {
            topic_name: name.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: template.perm & !perm::INHERIT,
            topic_sys_flag: template.topic_sys_flag,
            topic_filter_type: template.topic_filter_type.clone(),
            ..TopicConfig::default()
        };
        inner.topics.insert(name.to_owned(), created.clone());
        inner.data_version.next_version();
        Some(Created::New(created))
    }

    /// Creates a retry or DLQ topic (or any internal topic) with the given queues if missing.
    pub fn create_internal(&self, name: &str, queues: i32, perm: i32, sys_flag: i32) -> Created {
        if let Some(existing) = self.get(name) {
            return Created::Existing(existing);
        }
        let mut inner = self.write();
        if let Some(existing) = inner.topics.get(name) {
            return Created::Existing(existing.clone());
        }
        let created = TopicConfig {
            topic_name: name.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            topic_sys_flag: sys_flag,
            ..TopicConfig::default()
        };
        inner.topics.insert(name.to_owned(), created.clone());
        inner.data_version.next_version();
        Created::New(created)
    }

    /// Slave: takes the master's table (GET_ALL_TOPIC_CONFIG) when its data version differs
    /// from ours; true if anything was replaced.
    pub fn replace_from_master(&self, master: TopicConfigSerializeWrapper) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.data_version == master.data_version {
            return false;
        }
        inner.topics = master.topic_config_table.into_iter().collect();
        inner.data_version = master.data_version;
        true
    }

    /// The whole table as persisted in topics.json and sent in registrations.
    pub fn snapshot(&self) -> TopicConfigSerializeWrapper {
        let inner = self.read();
        TopicConfigSerializeWrapper {
            topic_config_table: inner.topics.clone().into_iter().collect(),
            data_version: inner.data_version.clone(),
            ..TopicConfigSerializeWrapper::default()
        }
    }
}
