//! NameServer configuration under RocketMQ's own `namesrv.conf` keys, so operators can bring
//! their files (and their `mqadmin updateNamesrvConfig` habits) across unchanged.
//!
//! Keys that tune the Java runtime (thread pools, Netty buffers) mean nothing here and are
//! accepted without a warning; keys nobody knows are handed back to the caller to warn about.
//! One key is ferrymq's own: `brokerChannelExpiredTime`, the default broker heartbeat timeout
//! that Java hard-codes (120 s), made configurable so tests and small deployments can shorten it.

use std::path::PathBuf;
use std::time::Duration;

use ferrymq_protocol::java_properties::{self, refuse_unsupported, Unsupported};
use ferrymq_protocol::properties_struct;

properties_struct! {
    /// Everything a NameServer is configured with.
    pub struct NamesrvConfig {
        /// RocketMQ installation directory; informational only.
        rocketmq_home: String = default_rocketmq_home() => "rocketmqHome",
        /// Where KV config namespaces are persisted.
        kv_config_path: String = home_path(&["namesrv", "kvConfig.json"]) => "kvConfigPath",
        /// Where UPDATE_NAMESRV_CONFIG writes the effective configuration.
        config_store_path: String = home_path(&["namesrv", "namesrv.properties"]) => "configStorePath",
        /// Environment name of the cluster-test mode; informational only.
        product_env_name: String = "center".to_owned() => "productEnvName",
        /// Java's cluster-test mode (forwarding unknown routes to another name server); accepted
        /// for file compatibility, not implemented.
        cluster_test: bool = false => "clusterTest",
        /// Add `orderTopicConf` (KV namespace ORDER_TOPIC_CONFIG) to route answers.
        order_message_enable: bool = false => "orderMessageEnable",
        /// Answer REGISTER_BROKER with the ORDER_TOPIC_CONFIG namespace.
        return_order_topic_config_to_broker: bool = true => "returnOrderTopicConfigToBroker",
        /// Milliseconds between scans for brokers whose heartbeat timed out.
        scan_not_active_broker_interval: u64 = 5000 => "scanNotActiveBrokerInterval",
        /// Heartbeat timeout (ms) of brokers that do not send `heartbeatTimeoutMillis`.
        broker_channel_expired_time: u64 = 120_000 => "brokerChannelExpiredTime",
        /// Slave-acting-master route rewriting (a read-only slave is shown as id 0).
        support_acting_master: bool = false => "supportActingMaster",
        /// Serve GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
        enable_all_topic_list: bool = true => "enableAllTopicList",
        /// Serve GET_TOPICS_BY_CLUSTER and the unit topic lists.
        enable_topic_list: bool = true => "enableTopicList",
        /// Answer route queries with "name server not ready" for `waitSecondsForService` after
        /// start, giving brokers time to register first.
        need_wait_for_service: bool = false => "needWaitForService",
        wait_seconds_for_service: u64 = 45 => "waitSecondsForService",
        /// Drop a broker's topics that are missing from its registration.
        delete_topic_with_broker_registration: bool = false => "deleteTopicWithBrokerRegistration",
        /// `;`-separated keys UPDATE_NAMESRV_CONFIG may not change (besides the fixed ones).
        config_black_list: String = "configBlackList;configStorePath;kvConfigPath".to_owned() => "configBlackList",
        /// Address the binary binds (NettyServerConfig `bindAddress`).
        bind_address: String = "0.0.0.0".to_owned() => "bindAddress",
        listen_port: u16 = 9876 => "listenPort",
        /// Connections silent this long are closed; 0 disables the check.
        server_channel_max_idle_time_seconds: u64 = 120 => "serverChannelMaxIdleTimeSeconds",
        /// disabled | permissive (TLS and plaintext on one port) | enforcing (TLS only).
        tls_server_mode: String = "permissive".to_owned() => "tls.server.mode",
        /// PEM certificate chain; without it (and the key) TLS uses a self-signed certificate.
        tls_server_cert_path: Option<String> = None => "tls.server.certPath",
        /// PEM private key (unencrypted).
        tls_server_key_path: Option<String> = None => "tls.server.keyPath",
        /// Run a controller in this process, serving the controller codes on this port; its
        /// keys (`controllerDLegerPeers`, ...) come from the same file.
        enable_controller_in_namesrv: bool = false => "enableControllerInNamesrv",
        /// DISABLE, or PROM: serve `/metrics` on `metricsPromExporterPort` (as the broker).
        metrics_exporter_type: String = "DISABLE".to_owned() => "metricsExporterType",
        metrics_prom_exporter_host: String = String::new() => "metricsPromExporterHost",
        metrics_prom_exporter_port: u16 = 5557 => "metricsPromExporterPort",
    }
}

/// Keys whose non-default values ferrymq does not implement and that change what is safe.
pub const UNSUPPORTED_JAVA_KEYS: &[Unsupported] = &[
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

/// RocketMQ keys that tune the Java runtime and have no counterpart here; a config file may
/// carry them without a warning.
pub const IGNORED_JAVA_KEYS: &[&str] = &[
    // Read by the binary, which merges that file's keys into this one.
    "tls.config.file",
    // Without certificate files TLS always uses a generated certificate.
    "tls.test.mode.enable",
    "clientRequestThreadPoolNums",
    "defaultThreadPoolNums",
    "clientRequestThreadPoolQueueCapacity",
    "defaultThreadPoolQueueCapacity",
    "unRegisterBrokerQueueCapacity",
    "serverWorkerThreads",
    "serverCallbackExecutorThreads",
    "serverSelectorThreads",
    "serverOnewaySemaphoreValue",
    "serverAsyncSemaphoreValue",
    "serverSocketSndBufSize",
    "serverSocketRcvBufSize",
    "serverSocketBacklog",
    "writeBufferHighWaterMark",
    "writeBufferLowWaterMark",
    "serverPooledByteBufAllocatorEnable",
    "useEpollNativeSelector",
];

/// Keys that only take effect at start (the listener and files are set up once), so a runtime
/// update could only pretend to apply them.
pub const STARTUP_ONLY_KEYS: &[&str] = &[
    "listenPort",
    "bindAddress",
    "serverChannelMaxIdleTimeSeconds",
    "tls.server.mode",
    "tls.server.certPath",
    "tls.server.keyPath",
];

/// Keys UPDATE_NAMESRV_CONFIG always refuses, whatever `configBlackList` says (as Java does):
/// changing them at runtime would point the server at other files.
const FIXED_BLACK_LIST: &[&str] = &[
    "configBlackList",
    "configStorePath",
    "kvConfigPath",
    "rocketmqHome",
];

/// A `namesrv.conf` (or a runtime update) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Unknown key or a value of the wrong type.
    #[error(transparent)]
    Syntax(#[from] java_properties::ConfigError),
    /// A value that parses but makes no sense.
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn default_rocketmq_home() -> String {
    std::env::var("ROCKETMQ_HOME").unwrap_or_default()
}

fn home_path(parts: &[&str]) -> String {
    let mut path = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    for p in parts {
        path.push(p);
    }
    path.to_string_lossy().into_owned()
}

impl NamesrvConfig {
    /// Reads `namesrv.conf` text. Returns the config and the unknown keys worth a warning;
    /// a bad value is an error naming its key.
    pub fn from_conf(text: &str) -> Result<(NamesrvConfig, Vec<String>), ConfigError> {
        refuse_unsupported(text, UNSUPPORTED_JAVA_KEYS)?;
        let (config, unknown) = NamesrvConfig::from_properties_text(text)?;
        config.validate()?;
        let unknown = unknown
            .into_iter()
            .filter(|k| !IGNORED_JAVA_KEYS.contains(&k.as_str()))
            .collect();
        Ok((config, unknown))
    }

    /// Checks values that parse but would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.scan_not_active_broker_interval == 0 {
            // A zero interval would make the scan task spin.
            return bad("scanNotActiveBrokerInterval", "must be positive");
        }
        if self.broker_channel_expired_time == 0 {
            return bad("brokerChannelExpiredTime", "must be positive");
        }
        if let Err(reason) = self.tls_server_mode.parse::<ferrymq_remoting::TlsMode>() {
            return Err(ConfigError::Invalid {
                key: "tls.server.mode",
                reason,
            });
        }
        if self.kv_config_path.trim().is_empty() {
            return bad("kvConfigPath", "must not be empty");
        }
        if ferrymq_metrics::ExporterType::parse(&self.metrics_exporter_type).is_none() {
            return bad(
                "metricsExporterType",
                "only PROM (Prometheus /metrics) and DISABLE are supported",
            );
        }
        Ok(())
    }

    /// Where `/metrics` is served, when `metricsExporterType=PROM`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        ferrymq_metrics::exporter_addr(
            &self.metrics_exporter_type,
            &self.metrics_prom_exporter_host,
            self.metrics_prom_exporter_port,
        )
    }

    /// Period of the inactive-broker scan.
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_not_active_broker_interval.max(1))
    }

    /// Heartbeat timeout of a broker that registered without `heartbeatTimeoutMillis`.
    pub fn default_heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_channel_expired_time)
    }

    /// Idle timeout of connections, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.server_channel_max_idle_time_seconds > 0)
            .then(|| Duration::from_secs(self.server_channel_max_idle_time_seconds))
    }

    /// Whether UPDATE_NAMESRV_CONFIG must refuse `key` (Java answers NO_PERMISSION).
    pub fn is_black_listed(&self, key: &str) -> bool {
        FIXED_BLACK_LIST.contains(&key)
            || self
                .config_black_list
                .split(';')
                .map(str::trim)
                .any(|k| !k.is_empty() && k == key)
    }

    /// The configuration as properties text (GET_NAMESRV_CONFIG body, persisted copy).
    pub fn to_properties_text(&self) -> String {
        java_properties::render(self.to_pairs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rocketmq() {
        let c = NamesrvConfig::default();
        assert_eq!(c.listen_port, 9876);
        assert_eq!(c.scan_interval(), Duration::from_secs(5));
        assert_eq!(c.default_heartbeat_timeout(), Duration::from_secs(120));
        assert!(c.kv_config_path.ends_with("kvConfig.json"));
        assert!(c.enable_all_topic_list && c.enable_topic_list);
        assert!(c.return_order_topic_config_to_broker);
        assert!(!c.order_message_enable && !c.delete_topic_with_broker_registration);
    }

    #[test]
    fn reads_keys_and_reports_unknown_ones() {
        let text = "listenPort=19876\nkvConfigPath=/tmp/kv.json\norderMessageEnable=true\n\
                    defaultThreadPoolNums=32\nmysteryKey=1\n";
        let (c, unknown) = NamesrvConfig::from_conf(text).unwrap();
        assert_eq!(c.listen_port, 19876);
        assert_eq!(c.kv_config_path, "/tmp/kv.json");
        assert!(c.order_message_enable);
        assert_eq!(unknown, vec!["mysteryKey".to_owned()]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = NamesrvConfig::from_conf("listenPort=abc").unwrap_err();
        assert!(err.to_string().contains("`listenPort`"), "{err}");
        let err = NamesrvConfig::from_conf("enableAllTopicList=yes").unwrap_err();
        assert!(err.to_string().contains("`enableAllTopicList`"), "{err}");
        let err = NamesrvConfig::from_conf("scanNotActiveBrokerInterval=0").unwrap_err();
        assert!(
            err.to_string().contains("`scanNotActiveBrokerInterval`"),
            "{err}"
        );
    }

    #[test]
    fn properties_text_round_trips() {
        let (c, _) = NamesrvConfig::from_conf("listenPort=1\nclusterTest=true\n").unwrap();
        let (back, unknown) = NamesrvConfig::from_conf(&c.to_properties_text()).unwrap();
        assert_eq!(back, c);
        assert!(unknown.is_empty());
    }

    #[test]
    fn black_list_has_fixed_and_configured_keys() {
        let mut c = NamesrvConfig::default();
        assert!(c.is_black_listed("kvConfigPath"));
        assert!(c.is_black_listed("rocketmqHome"));
        assert!(!c.is_black_listed("orderMessageEnable"));
        c.config_black_list = "orderMessageEnable; enableTopicList".into();
        assert!(c.is_black_listed("orderMessageEnable"));
        assert!(c.is_black_listed("enableTopicList"));
        assert!(c.is_black_listed("configStorePath"), "fixed entries stay");
    }
}
