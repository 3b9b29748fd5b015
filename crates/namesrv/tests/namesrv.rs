//! NameServer behaviour over real loopback sockets: every NameServer request code, both header
//! encodings, broker liveness (expiry, connection close), KV persistence across restarts, and
//! isolation between instances. Servers listen on ephemeral ports with their files in temporary
//! directories; anything time-based polls with a deadline instead of sleeping a fixed time.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use ferrymq_namesrv::{NameServer, NamesrvConfig};
use ferrymq_protocol::body::{
    from_java_json, ClusterInfo, DataVersion, GetBrokerMemberGroupResponseBody, KvTable, QueueData,
    RegisterBrokerBody, TopicConfig, TopicList, TopicRouteData,
};
use ferrymq_protocol::header::{
    BrokerHeartbeatRequestHeader, BrokerIdentityHeader, BrokerNameHeader, CommandHeader,
    DeleteTopicFromNamesrvRequestHeader, GetBrokerMemberGroupRequestHeader,
    GetKvListByNamespaceRequestHeader, GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader,
    KvConfigKeyHeader, PutKvConfigRequestHeader, RegisterBrokerRequestHeader,
    RegisterTopicRequestHeader,
};
use ferrymq_protocol::message::{perm, topic_sys_flag};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use ferrymq_remoting::{ClientConfig, RemotingClient};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);
const CLUSTER: &str = "DefaultCluster";

/// A NameServer with its files in a temporary directory.
struct Fixture {
    ns: NameServer,
    dir: TempDir,
    addr: String,
}

fn conf_text(dir: &Path, extra: &str) -> String {
    format!(
        "kvConfigPath={}\nconfigStorePath={}\n{extra}",
        dir.join("kvConfig.json").display(),
        dir.join("namesrv.properties").display()
    )
}

async fn start_in(dir: TempDir, extra: &str) -> Fixture {
    let (config, unknown) = NamesrvConfig::from_conf(&conf_text(dir.path(), extra)).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    let ns = NameServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = ns.local_addr().to_string();
    Fixture { ns, dir, addr }
}

async fn start(extra: &str) -> Fixture {
    start_in(tempfile::tempdir().unwrap(), extra).await
}

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default())
}

async fn call(client: &RemotingClient, addr: &str, cmd: RemotingCommand) -> RemotingCommand {
    let resp = client.invoke(addr, cmd, T).await.unwrap();
    assert!(resp.is_response());
    resp
}

fn request(code: RequestCode, header: &impl CommandHeader) -> RemotingCommand {
    RemotingCommand::request_with_header(code, header)
}

fn code(resp: &RemotingCommand) -> ResponseCode {
    resp.response_code()
}

fn body_json<T: serde::de::DeserializeOwned>(resp: &RemotingCommand) -> T {
    let text = String::from_utf8(resp.body.to_bytes().to_vec()).unwrap();
    from_java_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls `check` until it returns true or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broker identity used to build requests.
#[derive(Clone)]
struct Broker {
    cluster: &'static str,
    name: &'static str,
    id: i64,
    addr: &'static str,
    heartbeat_timeout_ms: Option<i64>,
}

const MASTER_A: Broker = Broker {
    cluster: CLUSTER,
    name: "broker-a",
    id: 0,
    addr: "10.0.0.1:10911",
    heartbeat_timeout_ms: None,
};

const SLAVE_A: Broker = Broker {
    id: 1,
    addr: "10.0.0.2:10911",
    ..MASTER_A
};

const MASTER_B: Broker = Broker {
    name: "broker-b",
    addr: "10.0.0.3:10911",
    ..MASTER_A
};

fn topics_body(counter: i64, topics: &[(&str, i32)]) -> RegisterBrokerBody {
    let mut body = RegisterBrokerBody::default();
    let w = &mut body.topic_config_serialize_wrapper;
    w.data_version.counter = counter;
    w.data_version.timestamp = 1_700_000_000_000;
    for (name, queues) in topics {
        w.topic_config_table
            .insert((*name).to_owned(), TopicConfig::new(*name, *queues));
    }
    body
}

/// The `bodyCrc32` a Java broker sends: CRC32 with the sign bit masked off.
fn crc(bytes: &[u8]) -> i32 {
    (crc32fast::hash(bytes) & 0x7FFF_FFFF) as i32
}

impl Broker {
    fn register_with(&self, body: Vec<u8>, compressed: bool) -> RemotingCommand {
        let header = RegisterBrokerRequestHeader {
            broker_name: self.name.into(),
            broker_addr: self.addr.into(),
            cluster_name: self.cluster.into(),
            ha_server_addr: format!("{}-ha", self.addr),
            broker_id: self.id,
            heartbeat_timeout_millis: self.heartbeat_timeout_ms,
            enable_acting_master: Some(false),
            compressed: Some(compressed),
            body_crc32: Some(crc(&body)),
            zone_name: None,
        };
        request(RequestCode::RegisterBroker, &header).with_body(body)
    }

    fn register(&self, counter: i64, topics: &[(&str, i32)]) -> RemotingCommand {
        self.register_with(topics_body(counter, topics).encode(), false)
    }

    fn identity(&self) -> BrokerIdentityHeader {
        BrokerIdentityHeader {
            broker_name: self.name.into(),
            broker_addr: self.addr.into(),
            cluster_name: self.cluster.into(),
            broker_id: self.id,
        }
    }
}

fn route_request(topic: &str) -> RemotingCommand {
    request(
        RequestCode::GetRouteinfoByTopic,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    )
}

async fn route(client: &RemotingClient, addr: &str, topic: &str) -> Option<TopicRouteData> {
    let resp = call(client, addr, route_request(topic)).await;
    match code(&resp) {
        ResponseCode::Success => Some(TopicRouteData::decode(&resp.body.to_bytes()).unwrap()),
        ResponseCode::TopicNotExist => None,
        other => panic!("unexpected {other:?}: {:?}", resp.remark),
    }
}

async fn cluster_info(client: &RemotingClient, addr: &str) -> ClusterInfo {
    let resp = call(
        client,
        addr,
        RemotingCommand::request(RequestCode::GetBrokerClusterInfo),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success);
    body_json(&resp)
}

async fn topic_list(client: &RemotingClient, addr: &str, cmd: RemotingCommand) -> Vec<String> {
    let resp = call(client, addr, cmd).await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);
    body_json::<TopicList>(&resp)
        .topic_list
        .into_iter()
        .collect()
}

#[tokio::test]
async fn registration_over_json_and_route_query_over_binary_headers() {
    let f = start("").await;
    let c = client();

    let resp = call(
        &c,
        &f.addr,
        MASTER_A.register(1, &[("T1", 4), ("TBW102", 8)]),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);
    assert_eq!(
        resp.ext_fields.get("masterAddr"),
        None,
        "a master has no master"
    );

    // The slave learns its master's addresses.
    let resp = call(
        &c,
        &f.addr,
        SLAVE_A.register(1, &[("T1", 4), ("TBW102", 8)]),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert_eq!(resp.ext_fields.get("masterAddr"), Some(MASTER_A.addr));
    assert_eq!(
        resp.ext_fields.get("haServerAddr"),
        Some("10.0.0.1:10911-ha")
    );

    // The route query travels with a ROCKETMQ binary header; the reply is JSON.
    let mut query = route_request("T1");
    query.serialize_type = SerializeType::RocketMq;
    let resp = call(&c, &f.addr, query).await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert_eq!(resp.serialize_type, SerializeType::Json);
    let text = String::from_utf8(resp.body.to_bytes().to_vec()).unwrap();
    assert!(
        text.contains(r#""brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"}"#),
        "current clients get quoted broker ids: {text}"
    );
    let route: TopicRouteData = serde_json::from_str(&text).unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].cluster, CLUSTER);
    assert_eq!(
        route.queue_datas,
        vec![QueueData {
            broker_name: "broker-a".into(),
            perm: perm::READ | perm::WRITE,
            read_queue_nums: 4,
            topic_sys_flag: 0,
            write_queue_nums: 4,
        }]
    );
    assert!(route.order_topic_conf.is_none());

    // Old clients get quoted keys too: every client family parses them (remoting.md §9).
    let mut old = route_request("T1");
    old.version = 317;
    let resp = call(&c, &f.addr, old).await;
    let text = String::from_utf8(resp.body.to_bytes().to_vec()).unwrap();
    assert!(
        text.contains(r#""brokerAddrs":{"0":"10.0.0.1:10911","1":"#),
        "{text}"
    );
    assert_eq!(TopicRouteData::decode(text.as_bytes()).unwrap(), route);
    // …unless they ask for standard JSON.
    let mut standard = request(
        RequestCode::GetRouteinfoByTopic,
        &GetRouteInfoRequestHeader {
            topic: "T1".into(),
            accept_standard_json_only: Some(true),
        },
    );
    standard.version = 317;
    let resp = call(&c, &f.addr, standard).await;
    assert!(String::from_utf8_lossy(&resp.body.to_bytes()).contains(r#"{"0":"#));

    // Unknown topic.
    let resp = call(&c, &f.addr, route_request("Nope")).await;
    assert_eq!(code(&resp), ResponseCode::TopicNotExist);
    let remark = resp.remark.unwrap();
    assert!(
        remark.starts_with("No topic route info in name server for the topic: Nope"),
        "{remark}"
    );
    assert!(remark.contains("rocketmq.apache.org"), "FAQ hint: {remark}");

    let info = cluster_info(&c, &f.addr).await;
    assert_eq!(
        info.cluster_addr_table[CLUSTER].iter().collect::<Vec<_>>(),
        vec!["broker-a"]
    );
    assert_eq!(info.broker_addr_table["broker-a"].broker_addrs.len(), 2);

    let resp = call(
        &c,
        &f.addr,
        request(
            RequestCode::GetBrokerMemberGroup,
            &GetBrokerMemberGroupRequestHeader {
                cluster_name: CLUSTER.into(),
                broker_name: "broker-a".into(),
            },
        ),
    )
    .await;
    let group: GetBrokerMemberGroupResponseBody = body_json(&resp);
    assert_eq!(group.broker_member_group.broker_addrs[&1], SLAVE_A.addr);
    assert_eq!(group.broker_member_group.cluster, CLUSTER);

    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn compressed_and_rejected_registrations() {
    let f = start("").await;
    let c = client();

    let body = topics_body(3, &[("Tz", 2), ("TBW102", 8)]).encode_compressed();
    let resp = call(&c, &f.addr, MASTER_A.register_with(body.clone(), true)).await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);
    let r = route(&c, &f.addr, "Tz").await.unwrap();
    assert_eq!(r.queue_datas[0].write_queue_nums, 2);

    // A corrupted body is caught by its CRC.
    let mut bad = MASTER_B.register_with(body.clone(), true);
    bad.ext_fields
        .insert("bodyCrc32", (crc(&body) ^ 1).to_string());
    let resp = call(&c, &f.addr, bad).await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    assert_eq!(resp.remark.as_deref(), Some("crc32 not match"));

    // bodyCrc32 = 0 skips the check; then the body must still parse.
    let mut unchecked = MASTER_B.register_with(b"\x78\x9cnot zlib".to_vec(), true);
    unchecked.ext_fields.insert("bodyCrc32", "0");
    let resp = call(&c, &f.addr, unchecked).await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    assert!(resp.remark.unwrap().contains("RegisterBrokerBody"));

    // A single-topic registration from a broker that never registered fully.
    let resp = call(&c, &f.addr, MASTER_B.register(1, &[("Tb", 4)])).await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    assert_eq!(resp.remark.as_deref(), Some("register broker failed"));
    assert!(!cluster_info(&c, &f.addr)
        .await
        .broker_addr_table
        .contains_key("broker-b"));

    // A legacy body (bare TopicConfigSerializeWrapper) and an empty body both register.
    let legacy = serde_json::to_vec(
        &topics_body(1, &[("Tl", 4), ("TBW102", 8)]).topic_config_serialize_wrapper,
    )
    .unwrap();
    let resp = call(&c, &f.addr, MASTER_B.register_with(legacy, false)).await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);
    assert!(route(&c, &f.addr, "Tl").await.is_some());
    let resp = call(&c, &f.addr, SLAVE_A.register_with(Vec::new(), false)).await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);

    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn unknown_codes_and_malformed_requests_get_error_answers() {
    let f = start("").await;
    let c = client();

    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::Unknown(9999)),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::RequestCodeNotSupported);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 9999 not supported")
    );
    // A broker-only code the NameServer does not serve.
    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::SendMessage),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::RequestCodeNotSupported);

    // Missing mandatory header field.
    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetRouteinfoByTopic),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    assert!(resp.remark.unwrap().contains("topic"));

    // Unparsable number.
    let mut reg = MASTER_A.register(1, &[("T1", 4), ("T2", 4)]);
    reg.ext_fields.insert("brokerId", "zero");
    let resp = call(&c, &f.addr, reg).await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    assert!(resp.remark.unwrap().contains("brokerId"));

    // Malformed bodies.
    let resp = call(
        &c,
        &f.addr,
        request(RequestCode::QueryDataVersion, &MASTER_A.identity()).with_body(b"{".to_vec()),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    let resp = call(
        &c,
        &f.addr,
        request(
            RequestCode::RegisterTopicInNamesrv,
            &RegisterTopicRequestHeader { topic: "T".into() },
        )
        .with_body(b"[[[".to_vec()),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::SystemError);

    // The connection is still fine afterwards.
    assert!(route(&c, &f.addr, "T1").await.is_none());
    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn garbage_closes_only_its_connection() {
    let f = start("").await;
    let c = client();
    call(&c, &f.addr, MASTER_A.register(1, &[("T1", 4), ("T2", 4)])).await;

    let mut raw = tokio::net::TcpStream::connect(&f.addr).await.unwrap();
    raw.write_all(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(T, raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the server closes a connection that sent garbage");

    assert!(route(&c, &f.addr, "T1").await.is_some());
    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn silent_brokers_expire_and_heartbeats_keep_brokers_alive() {
    let f = start("scanNotActiveBrokerInterval=100\n").await;
    let silent = client();
    let beating = client();
    let observer = client();

    let a = Broker {
        heartbeat_timeout_ms: Some(500),
        ..MASTER_A
    };
    // Ten heartbeats per timeout: a busy machine cannot make broker-b miss its deadline.
    let b = Broker {
        heartbeat_timeout_ms: Some(1000),
        ..MASTER_B
    };
    call(&silent, &f.addr, a.register(1, &[("Ta", 4), ("T", 4)])).await;
    call(&beating, &f.addr, b.register(1, &[("Tb", 4), ("T", 4)])).await;
    let silent_conn = silent.connection(&f.addr).await.unwrap();

    // broker-b keeps sending BROKER_HEARTBEAT (every 100 ms) and QUERY_DATA_VERSION.
    let keep_alive = {
        let beating = beating.clone();
        let addr = f.addr.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let cmd = if i % 2 == 0 {
                    request(
                        RequestCode::BrokerHeartbeat,
                        &BrokerHeartbeatRequestHeader {
                            cluster_name: CLUSTER.into(),
                            broker_addr: MASTER_B.addr.into(),
                            broker_name: MASTER_B.name.into(),
                            broker_id: Some(0),
                            ..Default::default()
                        },
                    )
                } else {
                    let dv = topics_body(1, &[])
                        .topic_config_serialize_wrapper
                        .data_version;
                    request(RequestCode::QueryDataVersion, &MASTER_B.identity())
                        .with_body(serde_json::to_vec(&dv).unwrap())
                };
                let resp = beating.invoke(&addr, cmd, T).await.unwrap();
                assert_eq!(resp.response_code(), ResponseCode::Success);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    eventually("broker-a expires", || async {
        route(&observer, &f.addr, "Ta").await.is_none()
    })
    .await;
    // The server also closed the silent broker's connection.
    tokio::time::timeout(T, silent_conn.closed()).await.unwrap();

    // More than broker-b's whole timeout after its registration, only its heartbeats can be
    // keeping it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = route(&observer, &f.addr, "T").await.unwrap();
    assert_eq!(t.queue_datas.len(), 1);
    assert_eq!(t.queue_datas[0].broker_name, "broker-b");
    assert!(route(&observer, &f.addr, "Tb").await.is_some());
    keep_alive.abort();

    // Once b goes silent too, it expires.
    eventually("broker-b expires", || async {
        cluster_info(&observer, &f.addr)
            .await
            .broker_addr_table
            .is_empty()
    })
    .await;
    for c in [silent, beating, observer] {
        c.shutdown();
    }
    f.ns.shutdown().await;
}

#[tokio::test]
async fn closing_a_broker_connection_removes_it_at_once() {
    // Default 120 s heartbeat timeout: only the close can remove the broker in time.
    let f = start("").await;
    let broker = client();
    let observer = client();
    call(
        &broker,
        &f.addr,
        MASTER_A.register(1, &[("Ta", 4), ("T", 4)]),
    )
    .await;
    call(
        &observer,
        &f.addr,
        MASTER_B.register(1, &[("Tb", 4), ("T", 4)]),
    )
    .await;
    assert_eq!(
        cluster_info(&observer, &f.addr)
            .await
            .broker_addr_table
            .len(),
        2
    );

    broker.shutdown();
    eventually("broker-a removed", || async {
        !cluster_info(&observer, &f.addr)
            .await
            .broker_addr_table
            .contains_key("broker-a")
    })
    .await;
    assert!(route(&observer, &f.addr, "Ta").await.is_none());
    assert_eq!(
        route(&observer, &f.addr, "T")
            .await
            .unwrap()
            .queue_datas
            .len(),
        1
    );
    // broker-b registered over the observer's still-open connection.
    assert!(route(&observer, &f.addr, "Tb").await.is_some());
    observer.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn unregister_and_data_version_queries() {
    let f = start("").await;
    let c = client();
    call(&c, &f.addr, MASTER_A.register(5, &[("Ta", 4), ("T", 4)])).await;
    call(&c, &f.addr, SLAVE_A.register(5, &[("Ta", 4), ("T", 4)])).await;

    let query = |b: &Broker, counter: i64| {
        let dv = topics_body(counter, &[])
            .topic_config_serialize_wrapper
            .data_version;
        request(RequestCode::QueryDataVersion, &b.identity())
            .with_body(serde_json::to_vec(&dv).unwrap())
    };
    let resp = call(&c, &f.addr, query(&MASTER_A, 5)).await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert_eq!(resp.ext_fields.get("changed"), Some("false"));
    let stored: DataVersion = body_json(&resp);
    assert_eq!(stored.counter, 5);
    let resp = call(&c, &f.addr, query(&MASTER_A, 6)).await;
    assert_eq!(resp.ext_fields.get("changed"), Some("true"));
    // Unknown brokers: changed, and no stored version.
    let resp = call(&c, &f.addr, query(&MASTER_B, 1)).await;
    assert_eq!(resp.ext_fields.get("changed"), Some("true"));
    assert!(resp.body.is_empty());

    let resp = call(
        &c,
        &f.addr,
        request(RequestCode::UnregisterBroker, &SLAVE_A.identity()),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success);
    let r = route(&c, &f.addr, "Ta").await.unwrap();
    assert_eq!(r.broker_datas[0].broker_addrs.len(), 1);
    call(
        &c,
        &f.addr,
        request(RequestCode::UnregisterBroker, &MASTER_A.identity()),
    )
    .await;
    assert!(route(&c, &f.addr, "Ta").await.is_none());
    let info = cluster_info(&c, &f.addr).await;
    assert!(info.broker_addr_table.is_empty() && info.cluster_addr_table.is_empty());
    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn admin_topic_and_permission_codes() {
    let f = start("").await;
    let c = client();
    call(&c, &f.addr, MASTER_A.register(1, &[("T1", 4), ("Ta", 4)])).await;
    let other = Broker {
        cluster: "Other",
        name: "broker-x",
        addr: "10.0.0.9:10911",
        ..MASTER_A
    };
    let mut unit_body = topics_body(1, &[("T1", 4), ("Unit", 4)]);
    unit_body
        .topic_config_serialize_wrapper
        .topic_config_table
        .get_mut("Unit")
        .unwrap()
        .topic_sys_flag = topic_sys_flag::UNIT;
    // JSON body: the compressed form cannot carry topicSysFlag.
    call(&c, &f.addr, other.register_with(unit_body.encode(), false)).await;

    let all = topic_list(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver),
    )
    .await;
    assert_eq!(all, vec!["T1", "Ta", "Unit"]);
    let by_cluster = |cluster: &str| {
        request(
            RequestCode::GetTopicsByCluster,
            &GetTopicsByClusterRequestHeader {
                cluster: cluster.into(),
            },
        )
    };
    assert_eq!(
        topic_list(&c, &f.addr, by_cluster("Other")).await,
        vec!["T1", "Unit"]
    );
    assert!(topic_list(&c, &f.addr, by_cluster("Nope")).await.is_empty());

    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetSystemTopicListFromNs),
    )
    .await;
    let sys: TopicList = body_json(&resp);
    assert_eq!(
        sys.topic_list.iter().collect::<Vec<_>>(),
        vec!["DefaultCluster", "Other", "broker-a", "broker-x"]
    );
    assert_eq!(sys.broker_addr.as_deref(), Some(MASTER_A.addr));

    let unit = topic_list(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetUnitTopicList),
    )
    .await;
    assert_eq!(unit, vec!["Unit"]);
    for code_ in [
        RequestCode::GetHasUnitSubTopicList,
        RequestCode::GetHasUnitSubUnunitTopicList,
    ] {
        assert!(topic_list(&c, &f.addr, RemotingCommand::request(code_))
            .await
            .is_empty());
    }

    // Write permission.
    let wipe = request(
        RequestCode::WipeWritePermOfBroker,
        &BrokerNameHeader {
            broker_name: "broker-a".into(),
        },
    );
    let resp = call(&c, &f.addr, wipe).await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert_eq!(resp.ext_fields.get("wipeTopicCount"), Some("2"));
    let t1 = route(&c, &f.addr, "T1").await.unwrap();
    let a = t1
        .queue_datas
        .iter()
        .find(|q| q.broker_name == "broker-a")
        .unwrap();
    assert_eq!(a.perm, perm::READ);
    let add = request(
        RequestCode::AddWritePermOfBroker,
        &BrokerNameHeader {
            broker_name: "broker-a".into(),
        },
    );
    let resp = call(&c, &f.addr, add).await;
    assert_eq!(resp.ext_fields.get("addTopicCount"), Some("2"));
    assert_eq!(
        route(&c, &f.addr, "Ta").await.unwrap().queue_datas[0].perm,
        perm::READ | perm::WRITE
    );

    // Topic registration by route data, then deletion per cluster and entirely.
    let mut rd = TopicRouteData::default();
    rd.queue_datas.push(QueueData {
        broker_name: "broker-x".into(),
        perm: perm::READ,
        read_queue_nums: 3,
        topic_sys_flag: 0,
        write_queue_nums: 3,
    });
    let resp = call(
        &c,
        &f.addr,
        request(
            RequestCode::RegisterTopicInNamesrv,
            &RegisterTopicRequestHeader {
                topic: "New".into(),
            },
        )
        .with_body(serde_json::to_vec(&rd).unwrap()),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert_eq!(
        route(&c, &f.addr, "New").await.unwrap().queue_datas[0].read_queue_nums,
        3
    );

    let delete = |topic: &str, cluster: Option<&str>| {
        request(
            RequestCode::DeleteTopicInNamesrv,
            &DeleteTopicFromNamesrvRequestHeader {
                topic: topic.into(),
                cluster_name: cluster.map(str::to_owned),
            },
        )
    };
    call(&c, &f.addr, delete("T1", Some("Other"))).await;
    let t1 = route(&c, &f.addr, "T1").await.unwrap();
    assert_eq!(t1.queue_datas.len(), 1);
    assert_eq!(t1.queue_datas[0].broker_name, "broker-a");
    let resp = call(&c, &f.addr, delete("T1", None)).await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert!(route(&c, &f.addr, "T1").await.is_none());

    c.shutdown();
    f.ns.shutdown().await;
}

fn put_kv(ns: &str, key: &str, value: &str) -> RemotingCommand {
    request(
        RequestCode::PutKvConfig,
        &PutKvConfigRequestHeader {
            namespace: ns.into(),
            key: key.into(),
            value: value.into(),
        },
    )
}

fn kv_key(code: RequestCode, ns: &str, key: &str) -> RemotingCommand {
    request(
        code,
        &KvConfigKeyHeader {
            namespace: ns.into(),
            key: key.into(),
        },
    )
}

fn kv_list(ns: &str) -> RemotingCommand {
    request(
        RequestCode::GetKvlistByNamespace,
        &GetKvListByNamespaceRequestHeader {
            namespace: ns.into(),
        },
    )
}

#[tokio::test]
async fn kv_config_survives_a_restart() {
    let f = start("").await;
    let c = client();
    for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k1", "v1b")] {
        let resp = call(&c, &f.addr, put_kv("ns", k, v)).await;
        assert_eq!(code(&resp), ResponseCode::Success);
    }
    let resp = call(&c, &f.addr, kv_key(RequestCode::GetKvConfig, "ns", "k1")).await;
    assert_eq!(code(&resp), ResponseCode::Success);
    assert_eq!(resp.ext_fields.get("value"), Some("v1b"));
    let resp = call(&c, &f.addr, kv_key(RequestCode::GetKvConfig, "ns", "nope")).await;
    assert_eq!(code(&resp), ResponseCode::QueryNotFound);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No config item, Namespace: ns Key: nope")
    );

    let resp = call(&c, &f.addr, kv_key(RequestCode::DeleteKvConfig, "ns", "k2")).await;
    assert_eq!(code(&resp), ResponseCode::Success);
    let resp = call(&c, &f.addr, kv_list("ns")).await;
    let table: KvTable = body_json(&resp);
    assert_eq!(table.table.len(), 1);
    assert_eq!(table.table["k1"], "v1b");
    let resp = call(&c, &f.addr, kv_list("empty")).await;
    assert_eq!(code(&resp), ResponseCode::QueryNotFound);

    let file = std::fs::read_to_string(f.dir.path().join("kvConfig.json")).unwrap();
    assert_eq!(file, r#"{"configTable":{"ns":{"k1":"v1b"}}}"#);

    // Restart on the same files.
    c.shutdown();
    let Fixture { ns, dir, .. } = f;
    ns.shutdown().await;
    let f = start_in(dir, "").await;
    let c = client();
    let resp = call(&c, &f.addr, kv_key(RequestCode::GetKvConfig, "ns", "k1")).await;
    assert_eq!(resp.ext_fields.get("value"), Some("v1b"));
    let resp = call(&c, &f.addr, kv_key(RequestCode::GetKvConfig, "ns", "k2")).await;
    assert_eq!(code(&resp), ResponseCode::QueryNotFound);
    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn corrupt_kv_file_stops_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kvConfig.json"), "{\"configTable\":").unwrap();
    let (config, _) = NamesrvConfig::from_conf(&conf_text(dir.path(), "")).unwrap();
    let err = NameServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("kvConfig.json"), "{err}");
}

#[tokio::test]
async fn order_topic_config_reaches_routes_and_brokers() {
    let f = start("orderMessageEnable=true\n").await;
    let c = client();
    call(
        &c,
        &f.addr,
        put_kv("ORDER_TOPIC_CONFIG", "T1", "broker-a:4"),
    )
    .await;
    let resp = call(&c, &f.addr, MASTER_A.register(1, &[("T1", 4), ("T2", 4)])).await;
    let table: KvTable = body_json(&resp);
    assert_eq!(table.table["T1"], "broker-a:4");
    let r = route(&c, &f.addr, "T1").await.unwrap();
    assert_eq!(r.order_topic_conf.as_deref(), Some("broker-a:4"));
    assert!(route(&c, &f.addr, "T2")
        .await
        .unwrap()
        .order_topic_conf
        .is_none());
    c.shutdown();
    f.ns.shutdown().await;
}

fn update_config(text: &str) -> RemotingCommand {
    RemotingCommand::request(RequestCode::UpdateNamesrvConfig).with_body(text.as_bytes().to_vec())
}

#[tokio::test]
async fn configuration_can_be_read_and_updated_at_runtime() {
    let f = start("enableTopicList=true\n").await;
    let c = client();
    call(&c, &f.addr, MASTER_A.register(1, &[("T1", 4), ("T2", 4)])).await;

    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetNamesrvConfig),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success);
    let text = String::from_utf8(resp.body.to_bytes().to_vec()).unwrap();
    assert!(text.contains("enableAllTopicList=true\n"), "{text}");
    assert!(text.contains("listenPort=9876\n"), "{text}");

    let resp = call(
        &c,
        &f.addr,
        update_config("enableAllTopicList=false\nenableTopicList=false\n"),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);
    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::SystemError);
    assert_eq!(resp.remark.as_deref(), Some("disable"));
    let resp = call(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetUnitTopicList),
    )
    .await;
    assert_eq!(resp.remark.as_deref(), Some("disable"));
    let persisted = std::fs::read_to_string(f.dir.path().join("namesrv.properties")).unwrap();
    assert!(
        persisted.contains("enableAllTopicList=false\n"),
        "{persisted}"
    );
    assert!(!f.ns.config().enable_all_topic_list);

    // Refused updates leave everything as it was.
    let cases = [
        ("kvConfigPath=/elsewhere\n", ResponseCode::NoPermission),
        (
            "enableAllTopicList=true\nmysteryKey=1\n",
            ResponseCode::InvalidParameter,
        ),
        ("enableAllTopicList=maybe\n", ResponseCode::InvalidParameter),
        (
            "scanNotActiveBrokerInterval=0\n",
            ResponseCode::InvalidParameter,
        ),
        ("listenPort=1234\n", ResponseCode::InvalidParameter),
    ];
    for (text, want) in cases {
        let resp = call(&c, &f.addr, update_config(text)).await;
        assert_eq!(code(&resp), want, "{text}: {:?}", resp.remark);
        assert!(resp.remark.is_some());
    }
    assert!(!f.ns.config().enable_all_topic_list);
    assert_eq!(f.ns.config().scan_not_active_broker_interval, 5000);

    // Java runtime keys are accepted as no-ops.
    let resp = call(
        &c,
        &f.addr,
        update_config("defaultThreadPoolNums=4\nenableAllTopicList=true\n"),
    )
    .await;
    assert_eq!(code(&resp), ResponseCode::Success, "{:?}", resp.remark);
    let all = topic_list(
        &c,
        &f.addr,
        RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver),
    )
    .await;
    assert_eq!(all, vec!["T1", "T2"]);
    c.shutdown();
    f.ns.shutdown().await;
}

#[tokio::test]
async fn name_servers_are_independent() {
    let one = start("").await;
    let two = start("").await;
    let c = client();
    call(&c, &one.addr, MASTER_A.register(1, &[("T1", 4), ("T2", 4)])).await;
    call(&c, &one.addr, put_kv("ns", "k", "v")).await;
    assert!(route(&c, &one.addr, "T1").await.is_some());
    assert!(route(&c, &two.addr, "T1").await.is_none());
    assert!(cluster_info(&c, &two.addr)
        .await
        .broker_addr_table
        .is_empty());
    let resp = call(&c, &two.addr, kv_key(RequestCode::GetKvConfig, "ns", "k")).await;
    assert_eq!(code(&resp), ResponseCode::QueryNotFound);
    c.shutdown();
    one.ns.shutdown().await;
    two.ns.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_the_port() {
    let f = start("").await;
    let addr = f.addr.clone();
    f.ns.shutdown().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}
