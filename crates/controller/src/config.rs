//! Controller configuration under RocketMQ's `controller.conf` keys (ControllerConfig), so a
//! Java controller's file works here. The Raft group is described as DLedger describes it
//! (`controllerDLegerPeers=n0-host:port;n1-host:port;…`, `controllerDLegerSelfId=n0`); ferrymq
//! runs it on openraft whichever `controllerType` the file names, since both Java choices
//! (DLedger, jRaft) are Raft and the wire between controllers is internal to the group.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ferrymq_protocol::java_properties::{self, refuse_unsupported, Unsupported};
use ferrymq_protocol::properties_struct;

use crate::raft::NodeId;

properties_struct! {
    /// Everything a controller is configured with.
    pub struct ControllerConfig {
        rocketmq_home: String = std::env::var("ROCKETMQ_HOME").unwrap_or_default() => "rocketmqHome",
        /// DLedger | jRaft in Java; both mean "a Raft group" here.
        controller_type: String = "DLedger".to_owned() => "controllerType",
        /// Name of the Raft group (informational: one process serves one group).
        controller_dleger_group: String = "DefaultControllerGroup".to_owned() => "controllerDLegerGroup",
        /// `n0-127.0.0.1:9878;n1-127.0.0.1:9868;…`: every member's id and peer (Raft) address.
        controller_dleger_peers: String = "n0-127.0.0.1:9878".to_owned() => "controllerDLegerPeers",
        /// This controller's id in `controllerDLegerPeers`.
        controller_dleger_self_id: String = "n0".to_owned() => "controllerDLegerSelfId",
        /// Where the Raft log, vote and snapshot are kept.
        controller_store_path: String = default_store_path() => "controllerStorePath",
        /// Elect a replica outside the SyncStateSet when none inside is alive (may lose data).
        enable_elect_unclean_master: bool = false => "enableElectUncleanMaster",
        /// Milliseconds between scans for brokers whose heartbeats stopped.
        scan_not_active_broker_interval: u64 = 5000 => "scanNotActiveBrokerInterval",
        /// Tell brokers of a new master at once (they also poll their replica info).
        notify_broker_role_changed: bool = true => "notifyBrokerRoleChanged",
        /// Heartbeat timeout (ms) for brokers that do not send `heartbeatTimeoutMills`.
        default_broker_heartbeat_timeout_mills: u64 = 10_000 => "controllerBrokerHeartbeatTimeoutMills",
        /// Remoting port brokers and admin tools talk to (standalone controller).
        listen_port: u16 = 19876 => "listenPort",
        bind_address: String = "0.0.0.0".to_owned() => "bindAddress",
        /// How many log entries between snapshots of the replicas info.
        snapshot_threshold: u64 = 1000 => "snapshotThreshold",
        /// How many times an election proposal is retried when it races another.
        elect_master_max_retry_count: u32 = 3 => "electMasterMaxRetryCount",
    }
}

/// Keys whose non-default values ferrymq does not implement and that change what is safe.
pub const UNSUPPORTED_JAVA_KEYS: &[Unsupported] = &[Unsupported {
    key: "jRaftInitConf",
    accepted: &[""],
    why: "give the group as controllerDLegerPeers (n0-host:port;…): ferrymq runs one Raft implementation",
}];

/// Java runtime and DLedger tuning keys with no counterpart here.
pub const IGNORED_JAVA_KEYS: &[&str] = &[
    "controllerThreadPoolNums",
    "controllerRequestThreadPoolQueueCapacity",
    "mappedFileSize",
    "isProcessReadEvent",
    "configBlackList",
    "metricsExporterType",
    "jRaftGroupId",
    "jRaftServerId",
    "jRaftAddress",
    "jRaftCliAddress",
    "jRaftElectionTimeoutMs",
    "jRaftSnapshotIntervalSecs",
];

/// A `controller.conf` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Syntax(#[from] java_properties::ConfigError),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn default_store_path() -> String {
    let mut p = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    p.push("DledgerController");
    p.to_string_lossy().into_owned()
}

/// Parses `n0`, `n12`: the number is the Raft node id.
pub fn parse_node_id(text: &str) -> Option<NodeId> {
    text.trim().strip_prefix('n')?.parse().ok()
}

impl ControllerConfig {
    /// Reads `controller.conf` text; returns the config and unknown keys worth a warning.
    pub fn from_conf(text: &str) -> Result<(ControllerConfig, Vec<String>), ConfigError> {
        refuse_unsupported(text, UNSUPPORTED_JAVA_KEYS)?;
        let (config, unknown) = ControllerConfig::from_properties_text(text)?;
        config.validate()?;
        let unknown = unknown
            .into_iter()
            .filter(|k| !IGNORED_JAVA_KEYS.contains(&k.as_str()))
            .collect();
        Ok((config, unknown))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let peers = self.peers()?;
        let me = self.self_id()?;
        if !peers.contains_key(&me) {
            return Err(ConfigError::Invalid {
                key: "controllerDLegerSelfId",
                reason: format!(
                    "{} is not one of controllerDLegerPeers",
                    self.controller_dleger_self_id
                ),
            });
        }
        if self.scan_not_active_broker_interval == 0 {
            return Err(ConfigError::Invalid {
                key: "scanNotActiveBrokerInterval",
                reason: "must be positive".to_owned(),
            });
        }
        if !matches!(self.controller_type.as_str(), "DLedger" | "jRaft") {
            return Err(ConfigError::Invalid {
                key: "controllerType",
                reason: format!("`{}` is neither DLedger nor jRaft", self.controller_type),
            });
        }
        Ok(())
    }

    /// Every member: Raft id → peer address.
    pub fn peers(&self) -> Result<BTreeMap<NodeId, String>, ConfigError> {
        let mut peers = BTreeMap::new();
        for part in self
            .controller_dleger_peers
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let parsed = part
                .split_once('-')
                .and_then(|(id, addr)| Some((parse_node_id(id)?, addr.trim())))
                .filter(|(_, addr)| addr.contains(':'));
            let Some((id, addr)) = parsed else {
                return Err(ConfigError::Invalid {
                    key: "controllerDLegerPeers",
                    reason: format!("`{part}` is not n<id>-host:port"),
                });
            };
            if peers.insert(id, addr.to_owned()).is_some() {
                return Err(ConfigError::Invalid {
                    key: "controllerDLegerPeers",
                    reason: format!("n{id} is listed twice"),
                });
            }
        }
        if peers.is_empty() {
            return Err(ConfigError::Invalid {
                key: "controllerDLegerPeers",
                reason: "names no controller".to_owned(),
            });
        }
        Ok(peers)
    }

    pub fn self_id(&self) -> Result<NodeId, ConfigError> {
        parse_node_id(&self.controller_dleger_self_id).ok_or_else(|| ConfigError::Invalid {
            key: "controllerDLegerSelfId",
            reason: format!("`{}` is not n<id>", self.controller_dleger_self_id),
        })
    }

    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_not_active_broker_interval.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_self_id_are_read_as_dledger_writes_them() {
        let (c, unknown) = ControllerConfig::from_conf(
            "controllerDLegerGroup=group1\ncontrollerDLegerPeers=n0-127.0.0.1:9877;n1-127.0.0.1:9878;n2-127.0.0.1:9879\ncontrollerDLegerSelfId=n1\nenableElectUncleanMaster=false\n",
        )
        .unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.self_id().unwrap(), 1);
        assert_eq!(c.peers().unwrap()[&2], "127.0.0.1:9879");
    }

    #[test]
    fn a_self_id_outside_the_peers_or_a_bad_peer_is_refused() {
        let bad = ControllerConfig::from_conf(
            "controllerDLegerPeers=n0-127.0.0.1:9877\ncontrollerDLegerSelfId=n3\n",
        );
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                key: "controllerDLegerSelfId",
                ..
            })
        ));
        let bad = ControllerConfig::from_conf("controllerDLegerPeers=n0:127.0.0.1\n");
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                key: "controllerDLegerPeers",
                ..
            })
        ));
    }
}
