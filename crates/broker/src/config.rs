//! Broker configuration under RocketMQ's own `broker.conf` keys, so operators can bring their
//! files across. Keys RocketMQ has but that mean nothing here (thread-pool sizes, JVM-specific
//! switches) are accepted silently; truly unknown keys are reported for a warning.

use std::path::PathBuf;

use ferrymq_protocol::java_properties::{refuse_unsupported, Unsupported};
use ferrymq_protocol::properties_struct;

/// The default delay levels (`messageDelayLevel`).
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

properties_struct! {
    /// Everything a broker is configured with.
    pub struct BrokerConfig {
        broker_cluster_name: String = "DefaultCluster".to_owned() => "brokerClusterName",
        broker_name: String = "broker-a".to_owned() => "brokerName",
        /// 0 = master, ≥ 1 = slave.
        broker_id: i64 = 0 => "brokerId",
        /// ASYNC_MASTER, SYNC_MASTER or SLAVE.
        broker_role: String = "ASYNC_MASTER".to_owned() => "brokerRole",
        /// `host:port;host:port`.
        namesrv_addr: Option<String> = None => "namesrvAddr",
        listen_port: u16 = 10911 => "listenPort",
        /// Address clients are told to connect to; detected when unset.
        broker_ip1: Option<String> = None => "brokerIP1",
        /// Address slaves replicate from.
        broker_ip2: Option<String> = None => "brokerIP2",
        /// Where slaves replicate from; 0 (default) = listenPort + 1, so 10912. With
        /// `listenPort = 0` (tests) any free port is used.
        ha_listen_port: u16 = 0 => "haListenPort",
        /// Slave: the master's HA `host:port`; normally learned from the NameServer.
        ha_master_address: Option<String> = None => "haMasterAddress",
        ha_send_heartbeat_interval: u64 = 5000 => "haSendHeartbeatInterval",
        ha_housekeeping_interval: u64 = 20_000 => "haHousekeepingInterval",
        ha_transfer_batch_size: usize = 32 * 1024 => "haTransferBatchSize",
        /// SYNC_MASTER: a slave further behind than this many bytes counts as unavailable.
        ha_max_gap_not_in_sync: i64 = 256 * 1024 * 1024 => "haMaxGapNotInSync",
        /// Let consumers read from slaves when the master is slow (message no longer in memory).
        slave_read_enable: bool = false => "slaveReadEnable",
        store_path_root_dir: String = default_store_root() => "storePathRootDir",
        store_path_commit_log: Option<String> = None => "storePathCommitLog",
        mapped_file_size_commit_log: u64 = 1024 * 1024 * 1024 => "mappedFileSizeCommitLog",
        mapped_file_size_consume_queue: u64 = 300_000 * 20 => "mappedFileSizeConsumeQueue",
        /// Prime each new commit-log segment into the page cache (by reading it, off the append
        /// path) before the appender reaches it. Unlike RocketMQ's write-touching, this dirties
        /// nothing, so it is on by default.
        warm_mapped_file_enable: bool = true => "warmMapedFileEnable",
        /// ASYNC_FLUSH or SYNC_FLUSH.
        flush_disk_type: String = "ASYNC_FLUSH".to_owned() => "flushDiskType",
        flush_interval_commit_log: u64 = 500 => "flushIntervalCommitLog",
        sync_flush_timeout: u64 = 5000 => "syncFlushTimeout",
        auto_create_topic_enable: bool = true => "autoCreateTopicEnable",
        auto_create_subscription_group: bool = true => "autoCreateSubscriptionGroup",
        /// Queues of the TBW102 template and so the ceiling for auto-created topics.
        default_topic_queue_nums: i32 = 8 => "defaultTopicQueueNums",
        /// Hours a commit-log file is kept.
        file_reserved_time: u64 = 72 => "fileReservedTime",
        /// Hour(s) of the day expired files are deleted, e.g. `04` or `01;04`.
        delete_when: String = "04".to_owned() => "deleteWhen",
        disk_max_used_space_ratio: u32 = 75 => "diskMaxUsedSpaceRatio",
        max_message_size: usize = 4 * 1024 * 1024 => "maxMessageSize",
        /// 2 = write, 4 = read, 6 = both.
        broker_permission: i32 = 6 => "brokerPermission",
        register_name_server_period: u64 = 30_000 => "registerNameServerPeriod",
        long_polling_enable: bool = true => "longPollingEnable",
        short_polling_time_mills: u64 = 1000 => "shortPollingTimeMills",
        message_delay_level: String = DEFAULT_DELAY_LEVELS.to_owned() => "messageDelayLevel",
        /// Longest timer delay (TIMER_DELIVER_MS / _DELAY_SEC / _DELAY_MS, 5.x delay messages).
        timer_max_delay_sec: u64 = 3 * 24 * 3600 => "timerMaxDelaySec",
        trace_topic_enable: bool = false => "traceTopicEnable",
        msg_trace_topic_name: String = "RMQ_SYS_TRACE_TOPIC".to_owned() => "msgTraceTopicName",
        cluster_topic_enable: bool = true => "clusterTopicEnable",
        broker_topic_enable: bool = true => "brokerTopicEnable",
        transaction_time_out: u64 = 6000 => "transactionTimeOut",
        transaction_check_max: i32 = 15 => "transactionCheckMax",
        transaction_check_interval: u64 = 30_000 => "transactionCheckInterval",
        reject_transaction_message: bool = false => "rejectTransactionMessage",
        flush_consumer_offset_interval: u64 = 5000 => "flushConsumerOffsetInterval",
        channel_expired_timeout: u64 = 120_000 => "channelExpiredTimeout",
        region_id: String = "DefaultRegion".to_owned() => "regionId",
        trace_on: bool = true => "traceOn",
        max_transfer_bytes_on_message_in_memory: usize = 256 * 1024 => "maxTransferBytesOnMessageInMemory",
        max_transfer_count_on_message_in_memory: usize = 32 => "maxTransferCountOnMessageInMemory",
        server_channel_max_idle_time_seconds: u64 = 120 => "serverChannelMaxIdleTimeSeconds",
        use_server_side_reset_offset: bool = true => "useServerSideResetOffset",
        message_index_enable: bool = true => "messageIndexEnable",
        enable_property_filter: bool = false => "enablePropertyFilter",
        /// Reply serialization: JSON (default, every client reads it) or ROCKETMQ.
        serialize_type: String = "JSON".to_owned() => "serializeType",
        /// Appends queued longer than this are refused with SYSTEM_BUSY.
        wait_time_mills_in_send_queue: u64 = 200 => "waitTimeMillsInSendQueue",
        os_page_cache_busy_timeout_mills: u64 = 1000 => "osPageCacheBusyTimeOutMills",
        /// Request-reply: also store replies in `<cluster>_REPLY_TOPIC` (besides pushing them
        /// to the requester).
        store_reply_message_enable: bool = true => "storeReplyMessageEnable",
        /// Percent of POP requests that read the POP retry topic before the topic itself.
        pop_from_retry_probability: u32 = 20 => "popFromRetryProbability",
        /// Parked POP requests per `topic@group@queueId` before POLLING_FULL.
        pop_polling_size: usize = 1024 => "popPollingSize",
        /// Parked POP requests in total before POLLING_FULL.
        max_pop_polling_size: usize = 100_000 => "maxPopPollingSize",
        /// ACL 1.0: check every request's signature and permissions against `plain_acl.yml`.
        acl_enable: bool = false => "aclEnable",
        /// The ACL file (Java's `rocketmq.acl.plain.file`); the binary defaults it to
        /// `$ROCKETMQ_HOME/conf/plain_acl.yml`, else `plain_acl.yml` beside broker.conf.
        plain_acl_file: Option<String> = None => "rocketmq.acl.plain.file",
        /// ACL 2.0: every request must be signed by a known, enabled user (auth.json).
        authentication_enabled: bool = false => "authenticationEnabled",
        /// ACL 2.0: non-Super users need an Allow policy for what each request touches.
        authorization_enabled: bool = false => "authorizationEnabled",
        /// ACL 2.0 bootstrap: JSON `{"username":..,"password":..}` created as a Super user.
        init_authentication_user: Option<String> = None => "initAuthenticationUser",
        /// ACL 2.0: JSON `{"accessKey":..,"secretKey":..}` the broker signs its own requests
        /// with (created as a Super user when missing).
        inner_client_authentication_credentials: Option<String> = None => "innerClientAuthenticationCredentials",
        /// Request codes (comma separated) that skip authentication.
        authentication_whitelist: String = String::new() => "authenticationWhitelist",
        /// Request codes (comma separated) that skip authorization.
        authorization_whitelist: String = String::new() => "authorizationWhitelist",
        /// Java strategy class; stateless and stateful both check every request here.
        authentication_strategy: String = String::new() => "authenticationStrategy",
        authorization_strategy: String = String::new() => "authorizationStrategy",
        /// disabled | permissive (TLS and plaintext on one port) | enforcing (TLS only).
        tls_server_mode: String = "permissive".to_owned() => "tls.server.mode",
        /// PEM certificate chain; without it (and the key) TLS uses a self-signed certificate.
        tls_server_cert_path: Option<String> = None => "tls.server.certPath",
        /// PEM private key (unencrypted: `tls.server.keyPassword` is not supported).
        tls_server_key_path: Option<String> = None => "tls.server.keyPath",
        /// Dial NameServers and other brokers with TLS (Java's client-side `tls.enable`).
        tls_enable: bool = false => "tls.enable",
        /// Controller mode: the controllers elect this group's master and assign broker ids.
        enable_controller_mode: bool = false => "enableControllerMode",
        /// Controller addresses (`host:port;host:port`), any of them; the leader is found.
        controller_addr: String = String::new() => "controllerAddr",
        /// A SYNC put is acknowledged once every SyncStateSet member has it.
        all_ack_in_sync_state_set: bool = false => "allAckInSyncStateSet",
        /// The controller declares this broker dead after this long without a heartbeat.
        controller_heart_beat_timeout_mills: u64 = 10_000 => "controllerHeartBeatTimeoutMills",
        /// Lower is preferred when the controller picks among equally fresh replicas.
        broker_election_priority: i32 = i32::MAX => "brokerElectionPriority",
        /// How often (ms) the broker asks the controller for its group's master and SyncStateSet.
        sync_broker_metadata_period: u64 = 5_000 => "syncBrokerMetadataPeriod",
        /// How often (ms) a master checks whether its SyncStateSet should grow or shrink.
        check_sync_state_set_period: u64 = 5_000 => "checkSyncStateSetPeriod",
        /// A replica not caught up with the master for this long (ms) leaves the SyncStateSet.
        ha_max_time_slave_not_catchup: u64 = 15_000 => "haMaxTimeSlaveNotCatchup",
        /// DISABLE, or PROM: serve `/metrics` (Prometheus text) on `metricsPromExporterPort`.
        metrics_exporter_type: String = "DISABLE".to_owned() => "metricsExporterType",
        metrics_prom_exporter_host: String = String::new() => "metricsPromExporterHost",
        metrics_prom_exporter_port: u16 = 5557 => "metricsPromExporterPort",
        /// ferrymq's short name for `metricsPromExporterPort` (wins when both are set).
        metrics_port: Option<u16> = None => "metricsPort",
        /// Serve the built-in web dashboard (ferrymq's own key).
        dashboard_enable: bool = true => "dashboardEnable",
        /// Its HTTP port; unset: 8080 when free (a warning when taken), set: must bind.
        dashboard_port: Option<u16> = None => "dashboardPort",
    }
}

/// Keys whose non-default values ferrymq does not implement and that change what is safe:
/// start-up stops with the reason instead of running without them.
pub const UNSUPPORTED_JAVA_KEYS: &[Unsupported] = &[
    Unsupported {
        key: "enableDLegerCommitLog",
        accepted: &["false"],
        why: "the DLedger commit log is not implemented; use master/slave replication (brokerRole)",
    },
    Unsupported {
        key: "enableSlaveActingMaster",
        accepted: &["false"],
        why: "slave acting master is not implemented",
    },
    Unsupported {
        key: "migrateAuthFromV1Enabled",
        accepted: &["false"],
        why: "plain_acl.yml is not imported into ACL 2.0; create the users and ACLs with ferrymq admin createUser/createAcl",
    },
    Unsupported {
        key: "tls.server.need.client.auth",
        accepted: &["none"],
        why: "client certificates are not checked",
    },
    Unsupported {
        key: "tls.server.keyPassword",
        accepted: &[""],
        why: "encrypted private keys are not supported; give an unencrypted PEM key",
    },
];

/// RocketMQ keys that tune the Java runtime (thread pools, Netty, JVM memory) and have no
/// counterpart here; a config file may carry them without a warning.
pub const IGNORED_JAVA_KEYS: &[&str] = &[
    // Read by the binary, which merges that file's keys into this one.
    "tls.config.file",
    // ACL 2.0 providers: users and policies always live in auth.json.
    "authenticationProvider",
    "authorizationProvider",
    "authenticationMetadataProvider",
    "authorizationMetadataProvider",
    "userCacheMaxNum",
    "userCacheExpiredSecond",
    "userCacheRefreshSecond",
    "aclCacheMaxNum",
    "aclCacheExpiredSecond",
    "aclCacheRefreshSecond",
    "statefulAuthenticationCacheMaxNum",
    "statefulAuthenticationCacheExpiredSecond",
    "statefulAuthorizationCacheMaxNum",
    "statefulAuthorizationCacheExpiredSecond",
    // Without certificate files TLS always uses a generated certificate.
    "tls.test.mode.enable",
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "processReplyMessageThreadPoolNums",
    "queryMessageThreadPoolNums",
    "adminBrokerThreadPoolNums",
    "clientManageThreadPoolNums",
    "consumerManageThreadPoolNums",
    "heartbeatThreadPoolNums",
    "endTransactionThreadPoolNums",
    "useReentrantLockWhenPutMessage",
    "transientStorePoolEnable",
    "serverWorkerThreads",
    "serverSelectorThreads",
    "serverSocketSndBufSize",
    "serverSocketRcvBufSize",
    "serverPooledByteBufAllocatorEnable",
    "useEpollNativeSelector",
    "autoMessageVersionOnTopicLen",
];

fn default_store_root() -> String {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join("store").to_string_lossy().into_owned()
}

/// A config value whose meaning (not just syntax) is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {reason}")]
pub struct InvalidConfig {
    pub key: &'static str,
    pub reason: String,
}

impl BrokerConfig {
    /// `initAuthenticationUser` as `(username, password)`.
    pub fn init_authentication_user(&self) -> Result<Option<(String, String)>, InvalidConfig> {
        credentials_json(
            "initAuthenticationUser",
            self.init_authentication_user.as_deref(),
            ("username", "password"),
        )
    }

    /// `innerClientAuthenticationCredentials` as `(accessKey, secretKey)`.
    pub fn inner_client_credentials(&self) -> Result<Option<(String, String)>, InvalidConfig> {
        credentials_json(
            "innerClientAuthenticationCredentials",
            self.inner_client_authentication_credentials.as_deref(),
            ("accessKey", "secretKey"),
        )
    }

    /// The request codes of `authenticationWhitelist` and `authorizationWhitelist`.
    pub fn auth_whitelists(
        &self,
    ) -> Result<
        (
            std::collections::HashSet<i32>,
            std::collections::HashSet<i32>,
        ),
        InvalidConfig,
    > {
        let parse = |key: &'static str, text: &str| {
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| {
                    c.parse::<i32>().map_err(|_| InvalidConfig {
                        key,
                        reason: format!("`{c}` is not a request code"),
                    })
                })
                .collect::<Result<std::collections::HashSet<i32>, InvalidConfig>>()
        };
        Ok((
            parse("authenticationWhitelist", &self.authentication_whitelist)?,
            parse("authorizationWhitelist", &self.authorization_whitelist)?,
        ))
    }

    /// Reads `broker.conf` text. Returns the config and the keys worth a warning.
    pub fn from_conf(text: &str) -> Result<(BrokerConfig, Vec<String>), ConfigFileError> {
        refuse_unsupported(text, UNSUPPORTED_JAVA_KEYS)?;
        let (config, unknown) = BrokerConfig::from_properties_text(text)?;
        config.validate()?;
        let unknown = unknown
            .into_iter()
            .filter(|k| !IGNORED_JAVA_KEYS.contains(&k.as_str()))
            .collect();
        Ok((config, unknown))
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |key: &'static str, reason: String| Err(InvalidConfig { key, reason });
        if self.acl_enable && (self.authentication_enabled || self.authorization_enabled) {
            return bad(
                "aclEnable",
                "ACL 1.0 (aclEnable) and ACL 2.0 (authenticationEnabled/authorizationEnabled) cannot both be on".into(),
            );
        }
        for (key, value, kind) in [
            (
                "authenticationStrategy",
                &self.authentication_strategy,
                "Authentication",
            ),
            (
                "authorizationStrategy",
                &self.authorization_strategy,
                "Authorization",
            ),
        ] {
            let known = [
                format!("Stateless{kind}Strategy"),
                format!("Stateful{kind}Strategy"),
            ];
            if !value.trim().is_empty() && !known.iter().any(|k| value.trim().ends_with(k.as_str()))
            {
                return bad(key, format!("unknown strategy `{value}`"));
            }
        }
        self.init_authentication_user()?;
        self.inner_client_credentials()?;
        self.auth_whitelists()?;
        if !matches!(self.flush_disk_type.as_str(), "ASYNC_FLUSH" | "SYNC_FLUSH") {
            return bad(
                "flushDiskType",
                format!(
                    "`{}` is neither ASYNC_FLUSH nor SYNC_FLUSH",
                    self.flush_disk_type
                ),
            );
        }
        if ferrymq_metrics::ExporterType::parse(&self.metrics_exporter_type).is_none() {
            return bad(
                "metricsExporterType",
                format!(
                    "`{}` is not supported: use PROM (Prometheus /metrics) or DISABLE",
                    self.metrics_exporter_type
                ),
            );
        }
        if self.enable_controller_mode && self.controller_addrs().is_empty() {
            return bad(
                "controllerAddr",
                "enableControllerMode=true needs the controllers' addresses".into(),
            );
        }
        if !matches!(
            self.broker_role.as_str(),
            "ASYNC_MASTER" | "SYNC_MASTER" | "SLAVE"
        ) {
            return bad(
                "brokerRole",
                format!(
                    "`{}` is not ASYNC_MASTER, SYNC_MASTER or SLAVE",
                    self.broker_role
                ),
            );
        }
        if self.broker_role == "SLAVE" && self.broker_id <= 0 {
            return bad(
                "brokerId",
                "a slave's brokerId must be greater than 0".into(),
            );
        }
        if self.broker_name.is_empty() {
            return bad("brokerName", "must not be empty".into());
        }
        if self.listen_port != 0 && self.listen_port < 3 {
            return bad(
                "listenPort",
                "must leave room for the fast port (listenPort - 2)".into(),
            );
        }
        if !self.mapped_file_size_consume_queue.is_multiple_of(20) {
            return bad(
                "mappedFileSizeConsumeQueue",
                "must be a multiple of 20 (the entry size)".into(),
            );
        }
        if !(1..=100).contains(&self.disk_max_used_space_ratio) {
            return bad("diskMaxUsedSpaceRatio", "must be between 1 and 100".into());
        }
        if self.default_topic_queue_nums <= 0 {
            return bad("defaultTopicQueueNums", "must be positive".into());
        }
        if let Err(reason) = self.tls_server_mode.parse::<ferrymq_remoting::TlsMode>() {
            return bad("tls.server.mode", reason);
        }
        if self.tls_server_cert_path.is_some() != self.tls_server_key_path.is_some() {
            return bad(
                "tls.server.certPath",
                "tls.server.certPath and tls.server.keyPath must be given together".into(),
            );
        }
        if parse_delay_levels(&self.message_delay_level).is_none() {
            return bad(
                "messageDelayLevel",
                format!(
                    "`{}` is not a list like `1s 5s 1m 2h`",
                    self.message_delay_level
                ),
            );
        }
        Ok(())
    }

    pub fn sync_flush(&self) -> bool {
        self.flush_disk_type == "SYNC_FLUSH"
    }

    pub fn is_slave(&self) -> bool {
        self.broker_role == "SLAVE"
    }

    /// Where `/metrics` is served, when `metricsExporterType=PROM`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        ferrymq_metrics::exporter_addr(
            &self.metrics_exporter_type,
            &self.metrics_prom_exporter_host,
            self.metrics_port.unwrap_or(self.metrics_prom_exporter_port),
        )
    }

    /// Controller addresses from `controllerAddr`.
    pub fn controller_addrs(&self) -> Vec<String> {
        split_addrs(&self.controller_addr)
    }

    /// The role a controller-mode broker takes when elected: SYNC_MASTER when puts wait for
    /// replicas (`brokerRole=SYNC_MASTER` or `allAckInSyncStateSet`), else ASYNC_MASTER.
    pub fn elected_role(&self) -> &'static str {
        if self.broker_role == "SYNC_MASTER" || self.all_ack_in_sync_state_set {
            "SYNC_MASTER"
        } else {
            "ASYNC_MASTER"
        }
    }

    /// Name-server addresses from `namesrvAddr`.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        split_addrs(self.namesrv_addr.as_deref().unwrap_or(""))
    }

    /// The HA port slaves connect to: `haListenPort`, or listenPort + 1 when that is 0.
    pub fn ha_port(&self) -> u16 {
        match self.ha_listen_port {
            0 => self.listen_port.saturating_add(1),
            port => port,
        }
    }

    /// The fast ("VIP") port: listenPort − 2.
    pub fn fast_listen_port(&self) -> u16 {
        self.listen_port - 2
    }

    /// Delay level durations in milliseconds, level 1 first.
    pub fn delay_levels_ms(&self) -> Vec<u64> {
        parse_delay_levels(&self.message_delay_level).unwrap_or_default()
    }
}

/// Splits `host:port;host:port` lists.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses `1s 5s 1m 2h 1d` into milliseconds; `None` if any item is malformed or negative.
pub fn parse_delay_levels(s: &str) -> Option<Vec<u64>> {
    let levels: Option<Vec<u64>> = s
        .split_whitespace()
        .map(|tok| {
            ferrymq_store::config::parse_delay_level(tok).and_then(|ms| u64::try_from(ms).ok())
        })
        .collect();
    levels.filter(|l| !l.is_empty())
}

/// A `broker.conf` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error(transparent)]
    Syntax(#[from] ferrymq_protocol::java_properties::ConfigError),
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
}

/// A JSON object with two string fields (RocketMQ's credential-valued keys).
fn credentials_json(
    key: &'static str,
    text: Option<&str>,
    (user_field, secret_field): (&str, &str),
) -> Result<Option<(String, String)>, InvalidConfig> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = |reason: String| InvalidConfig { key, reason };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("`{name}` is missing or blank")))
    };
    Ok(Some((field(user_field)?, field(secret_field)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_rocketmq_broker_conf() {
        let text = "brokerClusterName = DefaultCluster\nbrokerName = broker-b\nbrokerId = 0\n\
                    deleteWhen = 04\nfileReservedTime = 48\nbrokerRole = ASYNC_MASTER\n\
                    flushDiskType = SYNC_FLUSH\nnamesrvAddr=127.0.0.1:9876;127.0.0.1:9877\n\
                    sendMessageThreadPoolNums=4\nmysteryKey=1\n";
        let (c, warn) = BrokerConfig::from_conf(text).unwrap();
        assert_eq!(c.broker_name, "broker-b");
        assert_eq!(c.file_reserved_time, 48);
        assert!(c.sync_flush());
        assert_eq!(c.namesrv_addrs(), vec!["127.0.0.1:9876", "127.0.0.1:9877"]);
        assert_eq!(warn, vec!["mysteryKey".to_owned()]);
        assert_eq!(c.fast_listen_port(), 10909);
    }

    #[test]
    fn replication_keys() {
        let text = "brokerRole=SLAVE\nbrokerId=2\nhaMasterAddress=10.0.0.1:10912\n\
                    haTransferBatchSize=65536\nslaveReadEnable=true\nlistenPort=20911\n";
        let (c, warn) = BrokerConfig::from_conf(text).unwrap();
        assert!(c.is_slave() && c.slave_read_enable && warn.is_empty());
        assert_eq!(c.ha_master_address.as_deref(), Some("10.0.0.1:10912"));
        assert_eq!(c.ha_transfer_batch_size, 65536);
        assert_eq!(c.ha_port(), 20912);
        assert_eq!(BrokerConfig::default().ha_port(), 10912);
        let err = BrokerConfig::from_conf("brokerRole=SLAVE\nbrokerId=0").unwrap_err();
        assert!(err.to_string().contains("brokerId"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = BrokerConfig::from_conf("listenPort=ninety").unwrap_err();
        assert!(err.to_string().contains("listenPort"), "{err}");
        let err = BrokerConfig::from_conf("flushDiskType=SOMETIMES").unwrap_err();
        assert!(err.to_string().contains("flushDiskType"), "{err}");
        let err = BrokerConfig::from_conf("messageDelayLevel=1x").unwrap_err();
        assert!(err.to_string().contains("messageDelayLevel"), "{err}");
    }

    #[test]
    fn delay_levels() {
        let c = BrokerConfig::default();
        let levels = c.delay_levels_ms();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels[0], 1000);
        assert_eq!(levels[17], 7_200_000);
    }

    #[test]
    fn acl2_keys() {
        let text = "authenticationEnabled=true\nauthorizationEnabled=true\n\
                    initAuthenticationUser={\"username\":\"root\",\"password\":\"pw\"}\n\
                    authenticationWhitelist=10,11\n";
        let (c, _) = BrokerConfig::from_conf(text).unwrap();
        assert_eq!(
            c.init_authentication_user().unwrap(),
            Some(("root".to_owned(), "pw".to_owned()))
        );
        assert!(c.auth_whitelists().unwrap().0.contains(&10));
        let err =
            BrokerConfig::from_conf("authenticationEnabled=true\naclEnable=true").unwrap_err();
        assert!(err.to_string().contains("cannot both be on"), "{err}");
        let err =
            BrokerConfig::from_conf("initAuthenticationUser={\"username\":\"root\"}").unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }
}
