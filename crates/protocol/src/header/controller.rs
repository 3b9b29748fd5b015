//! Headers of the 5.x controller requests (codes 1001–1013) and of the broker's epoch query,
//! with Java's field names so mqadmin and Java brokers read them.

use crate::command_header;

command_header! {
    /// CONTROLLER_GET_NEXT_BROKER_ID (1012).
    pub struct GetNextBrokerIdRequestHeader {
        cluster_name: String => "clusterName",
        broker_name: String => "brokerName",
    }
}

command_header! {
    /// CONTROLLER_GET_NEXT_BROKER_ID response.
    pub struct GetNextBrokerIdResponseHeader {
        cluster_name: Option<String> => "clusterName",
        broker_name: Option<String> => "brokerName",
        next_broker_id: Option<u64> => "nextBrokerId",
    }
}

command_header! {
    /// CONTROLLER_APPLY_BROKER_ID (1013).
    pub struct ApplyBrokerIdRequestHeader {
        cluster_name: String => "clusterName",
        broker_name: String => "brokerName",
        applied_broker_id: u64 => "appliedBrokerId",
        register_check_code: String => "registerCheckCode",
    }
}

command_header! {
    /// CONTROLLER_REGISTER_BROKER (1003).
    pub struct RegisterBrokerToControllerRequestHeader {
        cluster_name: String => "clusterName",
        broker_name: String => "brokerName",
        broker_id: u64 => "brokerId",
        broker_address: String => "brokerAddress",
        invoke_time: Option<i64> => "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_REGISTER_BROKER response: the set's master as the controller knows it.
    pub struct RegisterBrokerToControllerResponseHeader {
        cluster_name: Option<String> => "clusterName",
        broker_name: Option<String> => "brokerName",
        master_broker_id: Option<u64> => "masterBrokerId",
        master_address: Option<String> => "masterAddress",
        master_epoch: Option<i32> => "masterEpoch",
        sync_state_set_epoch: Option<i32> => "syncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_GET_REPLICA_INFO (1004).
    pub struct GetReplicaInfoRequestHeader {
        broker_name: String => "brokerName",
    }
}

command_header! {
    /// CONTROLLER_GET_REPLICA_INFO response; the body is the SyncStateSet.
    pub struct GetReplicaInfoResponseHeader {
        master_broker_id: Option<u64> => "masterBrokerId",
        master_address: Option<String> => "masterAddress",
        master_epoch: Option<i32> => "masterEpoch",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET (1001); the body is the proposed SyncStateSet.
    pub struct AlterSyncStateSetRequestHeader {
        broker_name: String => "brokerName",
        master_broker_id: u64 => "masterBrokerId",
        master_epoch: i32 => "masterEpoch",
        invoke_time: Option<i64> => "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET response.
    pub struct AlterSyncStateSetResponseHeader {
        new_sync_state_set_epoch: Option<i32> => "newSyncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_ELECT_MASTER (1002). `brokerId` with `designateElect=true` asks for that
    /// broker; without, the controller picks.
    pub struct ElectMasterRequestHeader {
        cluster_name: Option<String> => "clusterName",
        broker_name: String => "brokerName",
        broker_id: Option<u64> => "brokerId",
        designate_elect: Option<bool> => "designateElect",
        invoke_time: Option<i64> => "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_ELECT_MASTER response, and the header of NOTIFY_BROKER_ROLE_CHANGED (1008).
    pub struct ElectMasterResponseHeader {
        master_broker_id: Option<u64> => "masterBrokerId",
        master_address: Option<String> => "masterAddress",
        master_epoch: Option<i32> => "masterEpoch",
        sync_state_set_epoch: Option<i32> => "syncStateSetEpoch",
    }
}

command_header! {
    /// CLEAN_BROKER_DATA (1011): ids separated by `;`, all of the set when absent.
    pub struct CleanControllerBrokerDataRequestHeader {
        cluster_name: Option<String> => "clusterName",
        broker_name: String => "brokerName",
        broker_controller_ids_to_clean: Option<String> => "brokerControllerIdsToClean",
        is_clean_living_broker: Option<bool> => "isCleanLivingBroker",
        invoke_time: Option<i64> => "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_GET_METADATA_INFO (1005) response.
    pub struct GetMetaDataResponseHeader {
        group: Option<String> => "group",
        controller_leader_id: Option<String> => "controllerLeaderId",
        controller_leader_address: Option<String> => "controllerLeaderAddress",
        is_leader: Option<bool> => "isLeader",
        peers: Option<String> => "peers",
    }
}

command_header! {
    /// GET_BROKER_EPOCH_CACHE (1007) response, beside the JSON body. `haServerAddr` is a
    /// ferrymq addition: where a slave of this broker connects for replication.
    pub struct GetEpochEntryCacheResponseHeader {
        ha_server_addr: Option<String> => "haServerAddr",
    }
}
