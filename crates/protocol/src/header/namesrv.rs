//! Headers of the NameServer requests (request-codes.md §11).

use crate::command_header;

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct GetRouteInfoRequestHeader {
        topic: String => "topic",
        accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
    }
}

command_header! {
    /// REGISTER_BROKER (103).
    pub struct RegisterBrokerRequestHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        ha_server_addr: String => "haServerAddr",
        broker_id: i64 => "brokerId",
        heartbeat_timeout_millis: Option<i64> => "heartbeatTimeoutMillis",
        enable_acting_master: Option<bool> => "enableActingMaster",
        compressed: Option<bool> => "compressed",
        body_crc32: Option<i32> => "bodyCrc32",
        zone_name: Option<String> => "__ZONE_NAME",
    }
}

command_header! {
    /// REGISTER_BROKER response: filled for slaves with their master's addresses.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: Option<String> => "haServerAddr",
        master_addr: Option<String> => "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104) and QUERY_DATA_VERSION (322) share this shape.
    pub struct BrokerIdentityHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        broker_id: i64 => "brokerId",
    }
}

command_header! {
    /// QUERY_DATA_VERSION response.
    pub struct QueryDataVersionResponseHeader {
        changed: bool => "changed",
    }
}

command_header! {
    /// BROKER_HEARTBEAT (904): a lightweight keep-alive.
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: String => "clusterName",
        broker_addr: String => "brokerAddr",
        broker_name: String => "brokerName",
        broker_id: Option<i64> => "brokerId",
        epoch: Option<i32> => "epoch",
        max_offset: Option<i64> => "maxOffset",
        confirm_offset: Option<i64> => "confirmOffset",
        heartbeat_timeout_mills: Option<i64> => "heartbeatTimeoutMills",
        election_priority: Option<i32> => "electionPriority",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKvConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
        value: String => "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102).
    pub struct KvConfigKeyHeader {
        namespace: String => "namespace",
        key: String => "key",
    }
}

command_header! {
    /// GET_KV_CONFIG response.
    pub struct GetKvConfigResponseHeader {
        value: Option<String> => "value",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219).
    pub struct GetKvListByNamespaceRequestHeader {
        namespace: String => "namespace",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String => "topic",
        cluster_name: Option<String> => "clusterName",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224).
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String => "cluster",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327).
    pub struct BrokerNameHeader {
        broker_name: String => "brokerName",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER response.
    pub struct WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: i32 => "wipeTopicCount",
    }
}

command_header! {
    /// ADD_WRITE_PERM_OF_BROKER response.
    pub struct AddWritePermOfBrokerResponseHeader {
        add_topic_count: i32 => "addTopicCount",
    }
}

command_header! {
    /// REGISTER_TOPIC_IN_NAMESRV (217).
    pub struct RegisterTopicRequestHeader {
        topic: String => "topic",
    }
}

command_header! {
    /// GET_BROKER_MEMBER_GROUP (901): the members of one broker name, asked by brokers.
    pub struct GetBrokerMemberGroupRequestHeader {
        cluster_name: String => "clusterName",
        broker_name: String => "brokerName",
    }
}
