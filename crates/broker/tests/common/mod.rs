//! What the broker's integration tests share: an in-process broker on ephemeral ports with its
//! own store directory (small segments), and a transport client to drive it the way a RocketMQ
//! client does.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ferrymq_broker::{Broker, BrokerConfig};
use ferrymq_protocol::header::SendMessageRequestHeader;
use ferrymq_protocol::{RemotingCommand, RequestCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

/// Timeout of every request a test makes.
pub const T: Duration = Duration::from_secs(15);

/// A broker config for tests: ephemeral ports, loopback address, 4 MiB commit-log segments.
pub fn test_config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        listen_port: 0,
        broker_ip1: Some("127.0.0.1".into()),
        store_path_root_dir: dir.to_string_lossy().into_owned(),
        mapped_file_size_commit_log: 4 << 20,
        mapped_file_size_consume_queue: 20 * 1000,
        ..BrokerConfig::default()
    }
}

/// A running broker, its store directory and a client connected to it.
pub struct TestBroker {
    pub broker: Option<Broker>,
    pub client: RemotingClient,
    pub addr: String,
    pub dir: tempfile::TempDir,
    config: BrokerConfig,
}

impl TestBroker {
    /// Starts a broker on a new directory; `tweak` adjusts [`test_config`].
    pub async fn start(tweak: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let broker = Broker::start(config.clone()).await.unwrap();
        TestBroker {
            addr: broker.broker_addr().to_owned(),
            broker: Some(broker),
            client: RemotingClient::new(ClientConfig::default()),
            dir,
            config,
        }
    }

    /// Graceful stop and start with the same config (and so the same store directory).
    pub async fn restart(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
        let broker = Broker::start(self.config.clone()).await.unwrap();
        self.addr = broker.broker_addr().to_owned();
        self.broker = Some(broker);
    }

    pub async fn call(&self, req: RemotingCommand) -> RemotingCommand {
        self.client.invoke(&self.addr, req, T).await.unwrap()
    }

    /// SEND_MESSAGE_V2 of one message with encoded `props` to `queue_id`.
    pub async fn send(
        &self,
        topic: &str,
        body: &[u8],
        props: &str,
        queue_id: i32,
    ) -> RemotingCommand {
        self.call(send_request(topic, body, props, queue_id)).await
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }
}

/// A SEND_MESSAGE_V2 request of one message with encoded `props` to `queue_id`.
pub fn send_request(topic: &str, body: &[u8], props: &str, queue_id: i32) -> RemotingCommand {
    let h = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: 1,
        flag: 0,
        properties: Some(props.into()),
        reconsume_times: None,
        unit_mode: None,
        batch: None,
        max_reconsume_times: None,
        broker_name: None,
    };
    let mut req = RemotingCommand::request(RequestCode::SendMessageV2).with_body(body.to_vec());
    h.write_v2(&mut req.ext_fields);
    req
}
