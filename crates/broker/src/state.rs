//! Everything the request processors and background tasks of one broker share: its config, the
//! message store, and the tables (topics, groups, offsets, clients, locks, POP state) with their
//! persistence. One value behind an `Arc`; each table guards itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferrymq_protocol::command_header;
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::message::msg_id::UniqKeyGenerator;
use ferrymq_protocol::message::RecordView;
use ferrymq_protocol::{LanguageCode, RemotingCommand, RequestCode};
use ferrymq_store::config_file::{ConfigFile, DelayOffsetTable};
use ferrymq_store::{MessageInner, MessageStore};
use tokio::sync::Notify;

use crate::client_registry::ClientRegistry;
use crate::config::BrokerConfig;
use crate::long_polling::ArrivalSignals;
use crate::offsets::ConsumerOffsets;
use crate::queue_lock::QueueLocks;
use crate::stats::BrokerStats;
use crate::subscription_groups::SubscriptionGroups;
use crate::topic_table::TopicTable;

pub struct BrokerState {
    /// Current configuration; runtime-changeable keys can be replaced by UPDATE_BROKER_CONFIG.
    pub config: std::sync::RwLock<Arc<BrokerConfig>>,
    pub store: Arc<MessageStore>,
    pub topics: TopicTable,
    pub groups: SubscriptionGroups,
    pub offsets: ConsumerOffsets,
    pub clients: ClientRegistry,
    pub locks: QueueLocks,
    pub arrivals: Arc<ArrivalSignals>,
    /// POP consumption: in-flight checkpoints, orderly state, pop long polling.
    pub pop: crate::processor::PopState,
    pub stats: BrokerStats,
    /// `brokerIP1:listenPort`, what clients and the NameServers are told.
    pub broker_addr: String,
    /// `brokerIP2:haPort`, where slaves replicate from (told to the NameServers).
    pub ha_server_addr: String,
    /// Slave: the master's broker address from the last registration answer; `None` while
    /// the NameServers know no live master. A watch, so the metadata sync starts at once.
    pub master_addr: tokio::sync::watch::Sender<Option<String>>,
    pub store_host: SocketAddr,
    pub uniq_keys: UniqKeyGenerator,
    /// Wakes the registration task for an immediate re-registration.
    pub register_now: Notify,
    /// Bytes behind the commit-log head still counted as "in memory" (40 % of RAM, Java's
    /// accessMessageInMemoryMaxRatio), for the new-group start offset.
    pub in_memory_window: i64,
    pub boot: Instant,
    pub boot_timestamp: i64,
    pub config_dir: PathBuf,
    /// ACL 2.0 users and policies (config/auth.json), managed by the AUTH_* requests.
    pub auth: Arc<ferrymq_auth::AuthStore>,
    /// Controller mode: the id the controller assigned this broker (`None` otherwise).
    pub controller_broker_id: Option<u64>,
    /// Controller mode: the role this broker takes when elected (SYNC_MASTER or ASYNC_MASTER,
    /// from `brokerRole`/`allAckInSyncStateSet` as configured).
    pub elected_role: &'static str,
    /// Controller mode: wakes the role loop (NOTIFY_BROKER_ROLE_CHANGED arrived).
    pub role_changed: Notify,
    /// Counters behind `/metrics`.
    pub metrics: crate::metrics::BrokerMetrics,
}

command_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40), broker → consumer.
    pub struct NotifyConsumerIdsChangedHeader {
        consumer_group: String => "consumerGroup",
    }
}

impl BrokerState {
    /// The configuration now in force.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn topics_file(&self) -> ConfigFile {
        ConfigFile::new(self.config_dir.join("topics.json"))
    }

    pub fn groups_file(&self) -> ConfigFile {
        ConfigFile::new(self.config_dir.join("subscriptionGroup.json"))
    }

    pub fn offsets_file(&self) -> ConfigFile {
        ConfigFile::new(self.config_dir.join("consumerOffset.json"))
    }

    pub fn delay_offsets_file(&self) -> ConfigFile {
        ConfigFile::new(self.config_dir.join("delayOffset.json"))
    }

    pub fn broker_writable(&self) -> bool {
        perm::is_writeable(self.config().broker_permission) && !self.config().is_slave()
    }

    /// Slave: whether its master is up (known to the NameServers and replicating to it).
    pub fn master_alive(&self) -> bool {
        self.master_addr.borrow().is_some() && self.store.ha_status().connected_to_master
    }

    pub fn broker_readable(&self) -> bool {
        perm::is_readable(self.config().broker_permission)
    }

    /// Persists the topic table off the async workers and asks for a re-registration.
    pub async fn topics_changed(self: &Arc<Self>) {
        let snapshot = self.topics.snapshot();
        let file = self.topics_file();
        let result = tokio::task::spawn_blocking(move || file.persist(&snapshot)).await;
        if let Ok(Err(e)) = result {
            tracing::error!(error = %e, "cannot persist topics.json");
        }
        self.register_now.notify_one();
    }

    pub async fn groups_changed(&self) {
        let snapshot = self.groups.snapshot();
        let file = self.groups_file();
        let result = tokio::task::spawn_blocking(move || file.persist(&snapshot)).await;
        if let Ok(Err(e)) = result {
            tracing::error!(error = %e, "cannot persist subscriptionGroup.json");
        }
    }

    /// Writes consumer offsets if they changed.
    pub async fn persist_offsets(&self) {
        let Some(snapshot) = self.offsets.take_dirty_snapshot() else {
            return;
        };
        let file = self.offsets_file();
        let result = tokio::task::spawn_blocking(move || file.persist(&snapshot)).await;
        if let Ok(Err(e)) = result {
            tracing::error!(error = %e, "cannot persist consumerOffset.json");
        }
    }

    pub fn persist_delay_offsets(&self, table: &DelayOffsetTable) {
        if let Err(e) = self.delay_offsets_file().persist(table) {
            tracing::error!(error = %e, "cannot persist delayOffset.json");
        }
    }

    /// Tells every member of a clustering group that membership changed so it rebalances now.
    pub fn notify_consumer_ids_changed(&self, group: &str) {
        let header = NotifyConsumerIdsChangedHeader {
            consumer_group: group.to_owned(),
        };
        for conn in self.clients.consumer_connections(group) {
            let cmd = RemotingCommand::request_with_header(
                RequestCode::NotifyConsumerIdsChanged,
                &header,
            )
            .with_language(LanguageCode::Java);
            tokio::spawn(async move {
                let _ = conn.invoke_oneway(cmd).await;
            });
        }
    }

    /// 40 % of physical memory, from /proc/meminfo (1 GiB when unreadable).
    pub fn default_in_memory_window() -> i64 {
        let total_kb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<i64>().ok())
            })
            .unwrap_or(1 << 20);
        total_kb * 1024 * 4 / 10
    }

    /// A new message carrying a stored record's body, flags, properties, born data and retry
    /// count, to be stored again by this broker (delayed delivery, retries, transactions).
    /// Callers then point it at its new topic and queue.
    pub fn restore(&self, record: &bytes::Bytes, view: &RecordView<'_>) -> MessageInner {
        MessageInner {
            topic: view.topic().to_owned(),
            queue_id: view.queue_id(),
            flag: view.flag(),
            body: record.slice(view.body_range()),
            properties: view.properties().to_owned(),
            sys_flag: view.sys_flag(),
            born_timestamp: view.born_timestamp(),
            born_host: view.born_host(),
            store_host: self.store_host,
            reconsume_times: view.reconsume_times(),
            prepared_transaction_offset: 0,
        }
    }

    pub fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    pub fn record_puts(&self, n: u64) {
        self.stats.msg_put_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_gets(&self, n: u64) {
        self.stats.msg_get_total.fetch_add(n, Ordering::Relaxed);
    }
}
