//! Helpers around `rocketmq-client-rust` (the independent crates.io client under test):
//! runtime ownership, producer and push-consumer construction, and a collector that records
//! every delivered message.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheetah_string::CheetahString;
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

static INSTANCE_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique client instance name, so that no two clients of a test share a client id.
pub fn unique_instance(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        INSTANCE_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Owns the Tokio runtime and the client runtime the crates.io client requires.
pub struct ClientEnv {
    owner: Option<RuntimeOwner>,
    telemetry: Option<TelemetryRuntimeGuard>,
    pub runtime: Arc<ClientRuntime>,
}

impl ClientEnv {
    pub fn new(scope: &'static str) -> ClientEnv {
        // Client-side logs for diagnosis: COMPAT_CLIENT_LOG=<filter>, e.g. `debug` or
        // `rocketmq_client_rust=debug` (written to stderr; use --nocapture).
        if let Ok(filter) = std::env::var("COMPAT_CLIENT_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        // The client runs listeners through the runtime's bounded blocking lanes; with the
        // default queue depths (8..32) a burst of pulled messages overflows the admission
        // queue, the listener is not called and the client sends the message back to the
        // broker for a later retry. Give the lanes room for a whole pull window.
        let mut config = RuntimeConfig {
            thread_name: format!("compat-{scope}"),
            ..RuntimeConfig::default()
        };
        for lane in [
            &mut config.blocking_lane_policies.storage_io,
            &mut config.blocking_lane_policies.metadata_io,
            &mut config.blocking_lane_policies.cpu_crypto,
        ] {
            lane.max_queue_depth = 65_536;
            lane.queue_timeout = Duration::from_secs(120);
        }
        let owner = RuntimeOwner::plan(config)
            .expect("runtime config")
            .build()
            .expect("runtime owner");
        let telemetry = TelemetryRuntimeGuard::noop();
        let runtime = ClientRuntime::try_new(
            owner.root_context().component(scope),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .expect("client runtime");
        ClientEnv {
            owner: Some(owner),
            telemetry: Some(telemetry),
            runtime,
        }
    }

    /// Runs the test body on the owned runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.owner.as_ref().expect("owner").block_on(f)
    }

    pub fn client_config(&self, namesrv: &str, instance_prefix: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set_namesrv_addr(CheetahString::from(namesrv.to_owned()));
        c.set_instance_name(CheetahString::from(unique_instance(instance_prefix)));
        // Route polling and heartbeats as frequent as this client allows (it rejects values
        // under 10 s; the defaults are 30 s), so that a restarted broker learns the consumers
        // again soon.
        c.set_poll_name_server_interval(10_000);
        c.set_heartbeat_broker_interval(10_000);
        c
    }

    pub async fn producer(&self, namesrv: &str, group: &str) -> DefaultMQProducer {
        let mut p = DefaultMQProducer::builder(self.runtime.clone())
            .client_config(self.client_config(namesrv, group))
            .producer_group(group.to_owned())
            .name_server_addr(namesrv.to_owned())
            .build();
        p.start().await.expect("producer start");
        p
    }

    /// Shuts the client runtime and the Tokio runtime down (bounded).
    pub fn shutdown(mut self) {
        let owner = self.owner.take().expect("owner");
        let runtime = self.runtime.clone();
        let _ = owner.block_on(async move {
            tokio::time::timeout(Duration::from_secs(15), runtime.shutdown()).await
        });
        let _ = owner.shutdown_runtime_blocking_with_timeout(Duration::from_secs(10));
        if let Some(t) = self.telemetry.take() {
            let _ = t.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}

/// One delivery of one message to a listener.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub msg_id: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub properties: HashMap<String, String>,
    pub body: Vec<u8>,
    pub reconsume_times: i32,
    pub store_host: std::net::SocketAddr,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    /// Which consumer instance received it (a label chosen by the test).
    pub consumer: String,
    /// Global arrival sequence number.
    pub seq: usize,
}

impl Delivery {
    pub fn from_ext(m: &MessageExt, consumer: &str, seq: usize) -> Delivery {
        let properties = m
            .get_properties()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Delivery {
            msg_id: m.msg_id().to_string(),
            topic: m.topic().to_string(),
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
            tags: m.get_tags().map(|t| t.to_string()),
            keys: m.get_keys().map(|k| k.to_string()),
            properties,
            body: m.body().map(|b| b.to_vec()).unwrap_or_default(),
            reconsume_times: m.reconsume_times(),
            store_host: m.store_host(),
            born_timestamp: m.born_timestamp(),
            store_timestamp: m.store_timestamp(),
            consumer: consumer.to_owned(),
            seq,
        }
    }

    pub fn user_property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

/// Records every delivery; shared between a listener and the test.
#[derive(Clone, Default)]
pub struct Collector {
    inner: Arc<Mutex<Vec<Delivery>>>,
    seq: Arc<AtomicUsize>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    pub fn record(&self, m: &MessageExt, consumer: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let d = Delivery::from_ext(m, consumer, seq);
        self.inner.lock().unwrap().push(d);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().clone()
    }

    /// Number of distinct values of `id(delivery)` seen (ignoring `None`).
    pub fn distinct_by(&self, id: impl Fn(&Delivery) -> Option<String>) -> usize {
        let g = self.inner.lock().unwrap();
        let mut set = std::collections::HashSet::new();
        for d in g.iter() {
            if let Some(i) = id(d) {
                set.insert(i);
            }
        }
        set.len()
    }
}

/// Which offset a brand-new consumer group starts from. Tests use the first offset so that
/// messages stored before the consumer's first rebalance are not skipped.
pub const FROM_FIRST: ConsumeFromWhere = ConsumeFromWhere::ConsumeFromFirstOffset;

/// Builds, subscribes and starts a push consumer with a concurrent listener that feeds
/// `collector`.
pub async fn start_concurrent_consumer(
    env: &ClientEnv,
    namesrv: &str,
    group: &str,
    topic: &str,
    expression: &str,
    label: &str,
    collector: Collector,
) -> DefaultMQPushConsumer {
    let mut c = DefaultMQPushConsumer::builder(env.runtime.clone())
        .client_config(env.client_config(namesrv, label))
        .consumer_group(group.to_owned())
        .name_server_addr(namesrv.to_owned())
        .consume_from_where(FROM_FIRST)
        .build();
    c.subscribe(topic.to_owned(), expression.to_owned())
        .await
        .expect("subscribe");
    let label = label.to_owned();
    c.register_message_listener_concurrently(
        move |msgs: &[&MessageExt],
              _ctx: &ConsumeConcurrentlyContext|
              -> ClientResult<ConsumeConcurrentlyStatus> {
            for m in msgs {
                collector.record(m, &label);
            }
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    c.start().await.expect("consumer start");
    c
}

/// Builds, subscribes and starts a push consumer with an orderly listener that calls
/// `on_batch(queue_id, messages)` for each batch.
pub async fn start_orderly_consumer<F>(
    env: &ClientEnv,
    namesrv: &str,
    group: &str,
    topic: &str,
    expression: &str,
    label: &str,
    on_batch: F,
) -> DefaultMQPushConsumer
where
    F: Fn(&[&MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
{
    let mut c = DefaultMQPushConsumer::builder(env.runtime.clone())
        .client_config(env.client_config(namesrv, label))
        .consumer_group(group.to_owned())
        .name_server_addr(namesrv.to_owned())
        .consume_from_where(FROM_FIRST)
        .build();
    c.subscribe(topic.to_owned(), expression.to_owned())
        .await
        .expect("subscribe");
    c.register_message_listener_orderly(
        move |msgs: &[&MessageExt],
              ctx: &mut ConsumeOrderlyContext|
              -> ClientResult<ConsumeOrderlyStatus> { Ok(on_batch(msgs, ctx)) },
    );
    c.start().await.expect("consumer start");
    c
}

/// Deterministic pseudo-random body for message `i` of length `len`, prefixed with an id.
pub fn body_for(id: &str, i: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(id.len() + 1));
    v.extend_from_slice(id.as_bytes());
    v.push(b'|');
    let mut s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.push(b'a' + (s % 26) as u8);
    }
    v
}

/// Incompressible bytes (for oversize tests: the client compresses bodies over 4 KiB).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut s = seed | 1;
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Makes sure `topic` exists and is routable: one synchronous "warm-up" send (the broker
/// auto-creates the topic), then waits until the name server returns a route for it.
/// Consumers must ignore the warm-up message (it has no `idx` property).
pub async fn ensure_topic(producer: &DefaultMQProducer, namesrv: &str, topic: &str) {
    use rocketmq_model::common::message::message_single::Message;
    let msg = Message::builder()
        .topic(topic.to_owned())
        .body_slice(b"warmup")
        .tags("warmup")
        .build_unchecked();
    let r = producer.send(msg).await;
    match &r {
        Ok(Some(res)) => assert!(
            matches!(res.send_status, rocketmq_client_rust::SendStatus::SendOk),
            "warm-up send to {topic}: {res:?}"
        ),
        other => panic!("warm-up send to {topic} failed: {other:?}"),
    }
    let ns = namesrv.to_owned();
    let t = topic.to_owned();
    let routed = super::wait_until(Duration::from_secs(15), move || {
        super::raw::route_queue_count(&ns, &t).is_some()
    })
    .await;
    assert!(routed, "name server {namesrv} has no route for auto-created topic {topic} 15 s after the first send");
}
