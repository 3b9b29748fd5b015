//! Request, response and language codes as typed enums.
//!
//! RocketMQ evolves by adding codes, and a broker must still answer (with
//! `REQUEST_CODE_NOT_SUPPORTED`) or relay codes it does not know, so every enum here keeps an
//! `Unknown(n)` variant and round-trips any number unchanged.

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident : $repr:ty { $($(#[$vmeta:meta])* $variant:ident = $value:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A code this build does not know; kept so it can be answered or relayed.
            Unknown($repr),
        }

        impl $name {
            /// The number carried on the wire.
            pub const fn value(self) -> $repr {
                match self {
                    $($name::$variant => $value,)*
                    $name::Unknown(v) => v,
                }
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $(x if x == $value => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                v.value()
            }
        }
    };
}

wire_enum! {
    /// Codes of requests, from clients, brokers and admin tools (request-codes.md §1).
    RequestCode: i32 {
        SendMessage = 10,
        PullMessage = 11,
        QueryMessage = 12,
        QueryConsumerOffset = 14,
        UpdateConsumerOffset = 15,
        UpdateAndCreateTopic = 17,
        UpdateAndCreateTopicList = 18,
        GetAllTopicConfig = 21,
        UpdateBrokerConfig = 25,
        GetBrokerConfig = 26,
        GetBrokerRuntimeInfo = 28,
        SearchOffsetByTimestamp = 29,
        GetMaxOffset = 30,
        GetMinOffset = 31,
        GetEarliestMsgStoretime = 32,
        ViewMessageById = 33,
        HeartBeat = 34,
        UnregisterClient = 35,
        ConsumerSendMsgBack = 36,
        EndTransaction = 37,
        GetConsumerListByGroup = 38,
        CheckTransactionState = 39,
        NotifyConsumerIdsChanged = 40,
        LockBatchMq = 41,
        UnlockBatchMq = 42,
        GetAllConsumerOffset = 43,
        GetAllDelayOffset = 45,
        CheckClientConfig = 46,
        PutKvConfig = 100,
        GetKvConfig = 101,
        DeleteKvConfig = 102,
        RegisterBroker = 103,
        UnregisterBroker = 104,
        GetRouteinfoByTopic = 105,
        GetBrokerClusterInfo = 106,
        UpdateAndCreateSubscriptiongroup = 200,
        GetAllSubscriptiongroupConfig = 201,
        GetTopicStatsInfo = 202,
        GetConsumerConnectionList = 203,
        GetProducerConnectionList = 204,
        WipeWritePermOfBroker = 205,
        GetAllTopicListFromNameserver = 206,
        DeleteSubscriptiongroup = 207,
        GetConsumeStats = 208,
        DeleteTopicInBroker = 215,
        DeleteTopicInNamesrv = 216,
        RegisterTopicInNamesrv = 217,
        GetKvlistByNamespace = 219,
        ResetConsumerClientOffset = 220,
        GetConsumerStatusFromClient = 221,
        InvokeBrokerToResetOffset = 222,
        InvokeBrokerToGetConsumerStatus = 223,
        GetTopicsByCluster = 224,
        UpdateAndCreateSubscriptiongroupList = 225,
        QueryTopicConsumeByWho = 300,
        QueryConsumeTimeSpan = 303,
        GetSystemTopicListFromNs = 304,
        GetSystemTopicListFromBroker = 305,
        CleanExpiredConsumequeue = 306,
        GetConsumerRunningInfo = 307,
        QueryCorrectionOffset = 308,
        ConsumeMessageDirectly = 309,
        SendMessageV2 = 310,
        GetUnitTopicList = 311,
        GetHasUnitSubTopicList = 312,
        GetHasUnitSubUnunitTopicList = 313,
        CloneGroupOffset = 314,
        ViewBrokerStatsData = 315,
        CleanUnusedTopic = 316,
        GetBrokerConsumeStats = 317,
        UpdateNamesrvConfig = 318,
        GetNamesrvConfig = 319,
        SendBatchMessage = 320,
        QueryConsumeQueue = 321,
        QueryDataVersion = 322,
        ResumeCheckHalfMessage = 323,
        SendReplyMessage = 324,
        SendReplyMessageV2 = 325,
        PushReplyMessageToClient = 326,
        AddWritePermOfBroker = 327,
        GetAllProducerInfo = 328,
        DeleteExpiredCommitlog = 329,
        QueryTopicsByConsumer = 343,
        QuerySubscriptionByConsumer = 345,
        GetTopicConfig = 351,
        GetSubscriptiongroupConfig = 352,
        LitePullMessage = 361,
        RecallMessage = 370,
        QueryAssignment = 400,
        SetMessageRequestMode = 401,
        GetAllMessageRequestMode = 402,
        AuthCreateUser = 3001,
        AuthUpdateUser = 3002,
        AuthDeleteUser = 3003,
        AuthGetUser = 3004,
        AuthListUser = 3005,
        AuthCreateAcl = 3006,
        AuthUpdateAcl = 3007,
        AuthDeleteAcl = 3008,
        AuthGetAcl = 3009,
        AuthListAcl = 3010,
        GetBrokerMemberGroup = 901,
        BrokerHeartbeat = 904,
        NotifyMinBrokerIdChange = 905,
        ControllerAlterSyncStateSet = 1001,
        ControllerElectMaster = 1002,
        ControllerRegisterBroker = 1003,
        ControllerGetReplicaInfo = 1004,
        ControllerGetMetadataInfo = 1005,
        ControllerGetSyncStateData = 1006,
        GetBrokerEpochCache = 1007,
        NotifyBrokerRoleChanged = 1008,
        UpdateControllerConfig = 1009,
        GetControllerConfig = 1010,
        CleanBrokerData = 1011,
        ControllerGetNextBrokerId = 1012,
        ControllerApplyBrokerId = 1013,
        /// ferrymq-internal, controller peer port only: openraft AppendEntries.
        RaftAppendEntries = 9001,
        /// ferrymq-internal, controller peer port only: openraft Vote.
        RaftVote = 9002,
        /// ferrymq-internal, controller peer port only: openraft InstallSnapshot.
        RaftInstallSnapshot = 9003,
        PopMessage = 200050,
        AckMessage = 200051,
        PeekMessage = 200052,
        ChangeMessageInvisibletime = 200053,
        Notification = 200054,
        PollingInfo = 200055,
        PopRollback = 200056,
        BatchAckMessage = 200151,
    }
}

wire_enum! {
    /// Codes of responses (remoting.md §7).
    ResponseCode: i32 {
        Success = 0,
        SystemError = 1,
        SystemBusy = 2,
        RequestCodeNotSupported = 3,
        TransactionFailed = 4,
        FlushDiskTimeout = 10,
        SlaveNotAvailable = 11,
        FlushSlaveTimeout = 12,
        MessageIllegal = 13,
        ServiceNotAvailable = 14,
        VersionNotSupported = 15,
        NoPermission = 16,
        TopicNotExist = 17,
        TopicExistAlready = 18,
        PullNotFound = 19,
        PullRetryImmediately = 20,
        PullOffsetMoved = 21,
        QueryNotFound = 22,
        SubscriptionParseFailed = 23,
        SubscriptionNotExist = 24,
        SubscriptionNotLatest = 25,
        SubscriptionGroupNotExist = 26,
        FilterDataNotExist = 27,
        FilterDataNotLatest = 28,
        InvalidParameter = 29,
        TransactionShouldCommit = 200,
        TransactionShouldRollback = 201,
        TransactionStateUnknow = 202,
        TransactionStateGroupWrong = 203,
        NoBuyerId = 204,
        NotInCurrentUnit = 205,
        ConsumerNotOnline = 206,
        ConsumeMsgTimeout = 207,
        NoMessage = 208,
        PollingFull = 209,
        PollingTimeout = 210,
        BrokerNotExist = 211,
        BrokerDispatchNotComplete = 212,
        BroadcastConsumption = 213,
        FlowControl = 215,
        NotLeaderForQueue = 501,
        IllegalOperation = 604,
        GoAway = 1500,
        ControllerFencedMasterEpoch = 2000,
        ControllerFencedSyncStateSetEpoch = 2001,
        ControllerInvalidMaster = 2002,
        ControllerInvalidReplicas = 2003,
        ControllerMasterNotAvailable = 2004,
        ControllerInvalidRequest = 2005,
        ControllerBrokerNotAlive = 2006,
        ControllerNotLeader = 2007,
        ControllerBrokerMetadataNotExist = 2008,
        ControllerInvalidCleanBrokerMetadata = 2009,
        ControllerBrokerNeedToBeRegistered = 2010,
        ControllerMasterStillExist = 2011,
        ControllerElectMasterFailed = 2012,
        ControllerAlterSyncStateSetFailed = 2013,
        ControllerBrokerIdInvalid = 2014,
    }
}

wire_enum! {
    /// The sender's implementation language. JSON headers carry the name, binary headers the byte.
    LanguageCode: u8 {
        Java = 0,
        Cpp = 1,
        Dotnet = 2,
        Python = 3,
        Delphi = 4,
        Erlang = 5,
        Ruby = 6,
        Other = 7,
        Http = 8,
        Go = 9,
        Php = 10,
        Oms = 11,
        Rust = 12,
        NodeJs = 13,
    }
}

impl LanguageCode {
    /// The enum name Java writes in JSON headers.
    pub fn name(self) -> &'static str {
        match self {
            LanguageCode::Java => "JAVA",
            LanguageCode::Cpp => "CPP",
            LanguageCode::Dotnet => "DOTNET",
            LanguageCode::Python => "PYTHON",
            LanguageCode::Delphi => "DELPHI",
            LanguageCode::Erlang => "ERLANG",
            LanguageCode::Ruby => "RUBY",
            LanguageCode::Other | LanguageCode::Unknown(_) => "OTHER",
            LanguageCode::Http => "HTTP",
            LanguageCode::Go => "GO",
            LanguageCode::Php => "PHP",
            LanguageCode::Oms => "OMS",
            LanguageCode::Rust => "RUST",
            LanguageCode::NodeJs => "NODE_JS",
        }
    }

    /// Parses a JSON-header language name; unknown names map to `OTHER` as Java's lenient
    /// readers do, rather than failing the whole request.
    pub fn from_name(name: &str) -> LanguageCode {
        match name {
            "JAVA" => LanguageCode::Java,
            "CPP" => LanguageCode::Cpp,
            "DOTNET" => LanguageCode::Dotnet,
            "PYTHON" => LanguageCode::Python,
            "DELPHI" => LanguageCode::Delphi,
            "ERLANG" => LanguageCode::Erlang,
            "RUBY" => LanguageCode::Ruby,
            "HTTP" => LanguageCode::Http,
            "GO" => LanguageCode::Go,
            "PHP" => LanguageCode::Php,
            "OMS" => LanguageCode::Oms,
            "RUST" => LanguageCode::Rust,
            "NODE_JS" => LanguageCode::NodeJs,
            _ => LanguageCode::Other,
        }
    }
}

/// `MQVersion` ordinals that matter to compatibility decisions (remoting.md §6).
pub mod version {
    /// Version this implementation puts in every command: the current Java release (5.3.3), so
    /// clients enable every feature (SQL92 filtering needs ≥ 232).
    pub const CURRENT: i32 = 479;
    /// Up to this version, clients sign QUERY_MESSAGE before adding its unique-key flag.
    pub const V4_9_3: i32 = 399;
    /// From this version on, clients expect standard JSON (quoted map keys) in route data.
    pub const V4_9_4: i32 = 401;
    /// Brokers at or above this send RegisterBrokerBody rather than a bare wrapper.
    pub const V3_0_11: i32 = 37;
    /// Only clients above this understand GO_AWAY.
    pub const V5_3_1: i32 = 475;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_known_and_unknown() {
        for v in [10, 105, 200050, 310, 7777, -3] {
            assert_eq!(RequestCode::from(v).value(), v);
        }
        assert_eq!(RequestCode::from(105), RequestCode::GetRouteinfoByTopic);
        assert_eq!(RequestCode::from(7777), RequestCode::Unknown(7777));
        assert_eq!(ResponseCode::from(17), ResponseCode::TopicNotExist);
        assert_eq!(ResponseCode::from(-1000), ResponseCode::Unknown(-1000));
    }

    #[test]
    fn language_names_round_trip() {
        for b in 0u8..=13 {
            let l = LanguageCode::from(b);
            if l != LanguageCode::Other {
                assert_eq!(LanguageCode::from_name(l.name()), l);
            }
        }
        assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::Other);
    }
}
