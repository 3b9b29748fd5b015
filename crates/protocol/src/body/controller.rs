//! JSON bodies of the controller requests: the SyncStateSet, a broker's epoch entries and the
//! replicas view mqadmin's getSyncStateSet prints, in Java's shapes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The in-sync replicas of one broker set and the epoch of that membership.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStateSet {
    pub sync_state_set: BTreeSet<u64>,
    pub sync_state_set_epoch: i32,
}

/// One master epoch of a broker's commit log: from `startOffset` until the next epoch starts
/// (`endOffset`, or the log's end for the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
    pub end_offset: i64,
}

/// GET_BROKER_EPOCH_CACHE (1007) body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EpochEntryCache {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: u64,
    pub epoch_list: Vec<EpochEntry>,
    pub max_offset: i64,
}

/// One replica in [`ReplicasInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaIdentity {
    pub broker_name: String,
    pub broker_id: u64,
    pub broker_address: String,
    pub alive: bool,
}

/// One broker set as CONTROLLER_GET_SYNC_STATE_DATA (1006) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicasInfo {
    pub master_broker_id: Option<u64>,
    pub master_address: Option<String>,
    pub master_epoch: i32,
    pub sync_state_set_epoch: i32,
    pub in_sync_replicas: Vec<ReplicaIdentity>,
    pub not_in_sync_replicas: Vec<ReplicaIdentity>,
}

/// CONTROLLER_GET_SYNC_STATE_DATA body: the request body is a JSON list of broker names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerReplicasInfo {
    pub replicas_info_table: BTreeMap<String, ReplicasInfo>,
}
