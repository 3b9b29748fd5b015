//! An in-process cluster for the client's integration tests: one NameServer and one or more
//! brokers on ephemeral loopback ports, each with its files in a temporary directory. Anything
//! time-based is awaited by polling with a deadline, never by sleeping a fixed time.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use ferrymq_broker::{Broker, BrokerConfig};
use ferrymq_client::{ClientOptions, Message};
use ferrymq_namesrv::{NameServer, NamesrvConfig};
use ferrymq_protocol::body::TopicRouteData;
use ferrymq_protocol::header::{CreateTopicRequestHeader, GetRouteInfoRequestHeader};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};
use tempfile::TempDir;

/// Generous per-request timeout of the raw test client.
pub const T: Duration = Duration::from_secs(10);

/// A NameServer and its brokers.
pub struct Cluster {
    ns: Option<NameServer>,
    pub brokers: Vec<Option<Broker>>,
    pub namesrv_addr: String,
    raw: RemotingClient,
    _dirs: Vec<TempDir>,
}

/// Logs to stderr when `RUST_LOG` is set (shown for failing tests).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Broker settings every test uses: small files, fast delay levels.
pub fn base_broker_config(dir: &TempDir, namesrv: &str, name: &str) -> BrokerConfig {
    BrokerConfig {
        listen_port: 0,
        broker_ip1: Some("127.0.0.1".into()),
        broker_name: name.into(),
        store_path_root_dir: dir.path().to_string_lossy().into_owned(),
        namesrv_addr: Some(namesrv.to_owned()),
        mapped_file_size_commit_log: 4 << 20,
        mapped_file_size_consume_queue: 20 * 1000,
        message_delay_level: "1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s".into(),
        ..BrokerConfig::default()
    }
}

impl Cluster {
    /// A NameServer with `brokers` brokers (broker-a, broker-b, …).
    pub async fn start(brokers: usize) -> Cluster {
        Self::start_with(brokers, |_| {}).await
    }

    /// Like [`Cluster::start`], with every broker config passed through `tweak` first.
    pub async fn start_with(brokers: usize, tweak: impl Fn(&mut BrokerConfig)) -> Cluster {
        init_logging();
        let ns_dir = tempfile::tempdir().unwrap();
        let ns_config = NamesrvConfig {
            kv_config_path: ns_dir
                .path()
                .join("kvConfig.json")
                .to_string_lossy()
                .into_owned(),
            config_store_path: ns_dir
                .path()
                .join("namesrv.properties")
                .to_string_lossy()
                .into_owned(),
            ..NamesrvConfig::default()
        };
        let ns = NameServer::start(ns_config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let namesrv_addr = ns.local_addr().to_string();
        let mut dirs = vec![ns_dir];
        let mut started = Vec::new();
        for i in 0..brokers {
            let dir = tempfile::tempdir().unwrap();
            let name = format!("broker-{}", (b'a' + i as u8) as char);
            let mut config = base_broker_config(&dir, &namesrv_addr, &name);
            tweak(&mut config);
            started.push(Some(Broker::start(config).await.unwrap()));
            dirs.push(dir);
        }
        let cluster = Cluster {
            ns: Some(ns),
            brokers: started,
            namesrv_addr,
            raw: RemotingClient::new(ClientConfig::default()),
            _dirs: dirs,
        };
        // Every broker has registered once the template topic routes to all of them.
        let n = brokers;
        cluster
            .wait_route("TBW102", |r| r.broker_datas.len() == n)
            .await;
        cluster
    }

    /// Client options pointing at this cluster.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            namesrv_addr: Some(self.namesrv_addr.clone()),
            ..ClientOptions::default()
        }
    }

    /// The address of broker `i`.
    pub fn broker_addr(&self, i: usize) -> String {
        self.brokers[i].as_ref().unwrap().broker_addr().to_owned()
    }

    /// The raw route as the NameServer answers it.
    pub async fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let h = GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        };
        let req = RemotingCommand::request_with_header(RequestCode::GetRouteinfoByTopic, &h);
        let resp = self.raw.invoke(&self.namesrv_addr, req, T).await.unwrap();
        (resp.response_code() == ResponseCode::Success)
            .then(|| TopicRouteData::decode(&resp.body.to_bytes()).unwrap())
    }

    /// Waits until the NameServer's route of `topic` satisfies `pred`.
    pub async fn wait_route(&self, topic: &str, pred: impl Fn(&TopicRouteData) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = self.route(topic).await {
                if pred(&r) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "route of {topic} never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates `topic` with `queues` read/write queues on every broker and waits for its route.
    pub async fn create_topic(&self, topic: &str, queues: i32) {
        for b in self.brokers.iter().flatten() {
            let h = CreateTopicRequestHeader {
                topic: topic.into(),
                default_topic: Some("TBW102".into()),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_filter_type: Some("SINGLE_TAG".into()),
                topic_sys_flag: Some(0),
                order: Some(false),
                attributes: None,
                force: None,
            };
            let req = RemotingCommand::request_with_header(RequestCode::UpdateAndCreateTopic, &h);
            let resp = self.raw.invoke(b.broker_addr(), req, T).await.unwrap();
            assert_eq!(resp.response_code(), ResponseCode::Success, "{resp:?}");
        }
        let n = self.brokers.iter().flatten().count();
        self.wait_route(topic, |r| r.queue_datas.len() == n).await;
    }

    /// Sends a raw request to broker `i`.
    pub async fn call_broker(&self, i: usize, req: RemotingCommand) -> RemotingCommand {
        self.raw.invoke(&self.broker_addr(i), req, T).await.unwrap()
    }

    /// Stops broker `i`.
    pub async fn stop_broker(&mut self, i: usize) {
        if let Some(b) = self.brokers[i].take() {
            b.shutdown().await;
        }
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        self.raw.shutdown();
        for b in self.brokers.iter_mut() {
            if let Some(b) = b.take() {
                b.shutdown().await;
            }
        }
        if let Some(ns) = self.ns.take() {
            ns.shutdown().await;
        }
    }
}

/// Polls `check` until it returns true or `within` elapses (then panics with `what`).
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` messages `prefix-0 … prefix-(n-1)` for `topic`, tagged `tag`.
pub fn messages(topic: &str, tag: &str, prefix: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            Message::new(topic, format!("{prefix}-{i}"))
                .with_tags(tag)
                .with_keys([format!("{prefix}-key-{i}")])
        })
        .collect()
}

/// A fresh, valid group or topic name.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
