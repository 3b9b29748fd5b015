//! Controller-mode administration (mqadmin's getControllerMetaData, getSyncStateSet,
//! getBrokerEpoch, electMaster): questions to the controllers, which only their leader
//! answers, and to the brokers, which keep their own epochs.

use ferrymq_protocol::body::{BrokerReplicasInfo, EpochEntryCache};
use ferrymq_protocol::header::{
    ElectMasterRequestHeader, ElectMasterResponseHeader, GetMetaDataResponseHeader,
};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};

use super::{json_body, Admin};
use crate::error::{ClientError, Result};

/// What a controller says about its Raft group (CONTROLLER_GET_METADATA_INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerMetadata {
    /// The Raft group's name (`controllerDLegerGroup`).
    pub group: Option<String>,
    /// The leader's member id (`n0`, `n1`, ...), if one is known.
    pub leader_id: Option<String>,
    /// Where the leader serves brokers and tools.
    pub leader_address: Option<String>,
    /// Whether the controller asked is the leader.
    pub is_leader: bool,
    /// `controllerDLegerPeers` of the controller asked.
    pub peers: Option<String>,
}

/// The outcome of CONTROLLER_ELECT_MASTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectedMaster {
    /// The controller-assigned id of the master.
    pub master_broker_id: Option<u64>,
    /// The master's broker address.
    pub master_address: Option<String>,
    /// The master epoch after the election.
    pub master_epoch: Option<i32>,
    /// The SyncStateSet epoch after the election.
    pub sync_state_set_epoch: Option<i32>,
}

impl Admin {
    /// Asks one controller about its group and who leads it.
    pub async fn controller_metadata(&self, controller_addr: &str) -> Result<ControllerMetadata> {
        let req = RemotingCommand::request(RequestCode::ControllerGetMetadataInfo);
        let resp = self
            .instance
            .invoke_ok(controller_addr, req, self.timeout())
            .await?;
        let h: GetMetaDataResponseHeader = resp
            .decode_header()
            .map_err(|e| ClientError::Malformed(format!("controller metadata: {e}")))?;
        Ok(ControllerMetadata {
            group: h.group,
            leader_id: h.controller_leader_id,
            leader_address: h.controller_leader_address,
            is_leader: h.is_leader.unwrap_or(false),
            peers: h.peers,
        })
    }

    /// The leading controller among `controller_addrs` (`host:port;host:port`): the one that
    /// says it leads, else the leader address a follower names.
    pub async fn controller_leader(&self, controller_addrs: &str) -> Result<String> {
        let mut named = None;
        let mut last = None;
        for addr in controller_addrs
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match self.controller_metadata(addr).await {
                Ok(m) if m.is_leader => return Ok(addr.to_owned()),
                Ok(m) => named = named.or(m.leader_address.filter(|a| !a.is_empty())),
                Err(e) => last = Some(e),
            }
        }
        named.ok_or_else(|| {
            last.unwrap_or_else(|| {
                ClientError::InvalidArgument(format!("no controller of `{controller_addrs}` leads"))
            })
        })
    }

    /// The master, epochs and in-sync replicas of each broker set (CONTROLLER_GET_SYNC_STATE_DATA).
    pub async fn sync_state_set(
        &self,
        controller_addrs: &str,
        broker_names: &[String],
    ) -> Result<BrokerReplicasInfo> {
        let leader = self.controller_leader(controller_addrs).await?;
        let body = serde_json::to_vec(broker_names)
            .map_err(|e| ClientError::InvalidArgument(format!("broker names: {e}")))?;
        let req = RemotingCommand::request(RequestCode::ControllerGetSyncStateData).with_body(body);
        let resp = self
            .instance
            .invoke_ok(&leader, req, self.timeout())
            .await?;
        json_body(&resp, "sync state data")
    }

    /// A broker's epochs (GET_BROKER_EPOCH_CACHE); only a controller-mode master answers.
    pub async fn broker_epoch(&self, broker_addr: &str) -> Result<EpochEntryCache> {
        let req = RemotingCommand::request(RequestCode::GetBrokerEpochCache);
        let resp = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        json_body(&resp, "epoch cache")
    }

    /// Asks the controllers to elect a master for `broker_name`: `broker_id` if given (it must
    /// be alive and in sync), else whichever replica the controller prefers.
    pub async fn elect_master(
        &self,
        controller_addrs: &str,
        cluster: &str,
        broker_name: &str,
        broker_id: Option<u64>,
    ) -> Result<ElectedMaster> {
        let leader = self.controller_leader(controller_addrs).await?;
        let req = RemotingCommand::request_with_header(
            RequestCode::ControllerElectMaster,
            &ElectMasterRequestHeader {
                cluster_name: Some(cluster.to_owned()),
                broker_name: broker_name.to_owned(),
                broker_id,
                designate_elect: Some(broker_id.is_some()),
                invoke_time: Some(crate::message::now_ms()),
            },
        );
        let resp = self.instance.invoke(&leader, req, self.timeout()).await?;
        if resp.response_code() != ResponseCode::Success {
            return Err(ClientError::broker(&leader, &resp));
        }
        let h: ElectMasterResponseHeader = resp
            .decode_header()
            .map_err(|e| ClientError::Malformed(format!("elect master: {e}")))?;
        Ok(ElectedMaster {
            master_broker_id: h.master_broker_id,
            master_address: h.master_address,
            master_epoch: h.master_epoch,
            sync_state_set_epoch: h.sync_state_set_epoch,
        })
    }
}
