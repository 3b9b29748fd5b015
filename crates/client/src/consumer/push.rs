//! The push consumer: subscribes to topics, divides their queues with the rest of its group,
//! long-polls every queue it owns and hands the messages to a listener.
//!
//! ```no_run
//! # async fn demo() -> ferrymq_client::Result<()> {
//! use ferrymq_client::consumer::{ConsumeResult, Expression, PushConsumer};
//! let consumer = PushConsumer::builder("my-consumer-group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .subscribe("TopicTest", Expression::tags("TagA || TagB"))
//!     .start(|msgs: &[ferrymq_client::MessageExt]| {
//!         for m in msgs {
//!             println!("{} {:?}", m.msg_id(), m.body());
//!         }
//!         ConsumeResult::Success
//!     })
//!     .await?;
//! // … later
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! How it works (behaviour.md §3–§7):
//! * **Rebalance** at start, every 20 s and whenever a broker reports that the group changed:
//!   clustering groups split each topic's queues with the allocation strategy over the sorted
//!   client ids a broker reports; broadcasting consumers take every queue. Clustering consumers
//!   also subscribe to their group's retry topic `%RETRY%<group>`.
//! * **Pull loop** per owned queue: long-polling PULL_MESSAGE (15 s suspend, 30 s timeout),
//!   paused while more than 1000 messages or 100 MiB are cached for the queue.
//! * **Concurrent** consumption runs batches on a bounded pool (20 by default): that many
//!   long-lived worker tasks take listener-call-sized slices of pulled batches from one FIFO
//!   queue, like Java's consume thread pool (a task spawned per batch cost more than a cheap
//!   listener call). A failed batch is sent back (CONSUMER_SEND_MSG_BACK) for redelivery
//!   through the retry topic, or re-sent there directly if that fails. **Orderly** consumption
//!   holds a broker lock per queue (renewed every 20 s), consumes one batch of a queue at a time
//!   in offset order and retries failures locally after a pause.
//! * **Offsets** ("next to consume": the smallest offset still in flight) are committed every 5 s
//!   and at shutdown — to the brokers, or to a local file when broadcasting.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use ferrymq_protocol::body::{
    ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use ferrymq_protocol::message::{keys, pull_sys_flag};
use ferrymq_protocol::{naming, ResponseCode};

use super::offset_store::{default_local_dir, OffsetStore};
use super::process_queue::ProcessQueue;
use super::pull::PullStatus;
use super::requests::{self, PullArgs};
use super::{
    allocate, start_offset, ConsumeContext, ConsumeFrom, ConsumeResult, ErasedListener, Expression,
    Listener, MessageListener,
};
use crate::config::{client_option_setters, ClientOptions};
use crate::error::{ClientError, Result};
use crate::instance::{BoxFuture, ClientInstance, ConsumerMember};
use crate::message::{Message, MessageExt};
use crate::producer::Producer;
use crate::rebalance::AllocateStrategy;

/// Push consumer tunables (behaviour.md §11 defaults).
#[derive(Debug, Clone)]
pub struct PushConsumerSettings {
    /// Clustering (share queues, the default) or broadcasting (everyone reads everything).
    pub message_model: MessageModel,
    /// Where a group without committed offsets starts.
    pub consume_from: ConsumeFrom,
    /// How a clustering group divides queues.
    pub allocate_strategy: AllocateStrategy,
    /// Orderly consumption (per-queue locks and serial consumption).
    pub orderly: bool,
    /// Listener calls running at once (20).
    pub consume_threads: usize,
    /// Messages per listener call (1).
    pub consume_batch_size: usize,
    /// Messages per pull (32).
    pub pull_batch_size: i32,
    /// Pause pulling a queue above this many cached messages (1000).
    pub pull_threshold_for_queue: usize,
    /// Pause pulling a queue above this many cached body bytes (100 MiB).
    pub pull_threshold_size_for_queue: usize,
    /// Concurrent: pause pulling when cached offsets span more than this (2000).
    pub consume_concurrently_max_span: i64,
    /// Redeliveries before a message goes to the dead-letter queue (`None`: 16 concurrent,
    /// unlimited orderly).
    pub max_reconsume_times: Option<i32>,
    /// Orderly: pause after a failed batch (1 s).
    pub suspend_current_queue: Duration,
    /// Wait between pulls of a queue (0).
    pub pull_interval: Duration,
    /// How long a broker may hold a pull (15 s).
    pub broker_suspend: Duration,
    /// Client timeout of a pull (30 s).
    pub pull_timeout: Duration,
    /// Periodic rebalance (20 s).
    pub rebalance_interval: Duration,
    /// Periodic offset commit (5 s).
    pub persist_interval: Duration,
    /// Orderly: periodic lock renewal (20 s).
    pub lock_interval: Duration,
    /// Broadcasting: directory of the local offsets file (`~/.rocketmq_offsets`).
    pub offset_store_dir: Option<PathBuf>,
}

impl Default for PushConsumerSettings {
    fn default() -> Self {
        PushConsumerSettings {
            message_model: MessageModel::Clustering,
            consume_from: ConsumeFrom::LastOffset,
            allocate_strategy: AllocateStrategy::Averagely,
            orderly: false,
            consume_threads: 20,
            consume_batch_size: 1,
            pull_batch_size: 32,
            pull_threshold_for_queue: 1000,
            pull_threshold_size_for_queue: 100 << 20,
            consume_concurrently_max_span: 2000,
            max_reconsume_times: None,
            suspend_current_queue: Duration::from_secs(1),
            pull_interval: Duration::ZERO,
            broker_suspend: Duration::from_secs(15),
            pull_timeout: Duration::from_secs(30),
            rebalance_interval: Duration::from_secs(20),
            persist_interval: Duration::from_secs(5),
            lock_interval: Duration::from_secs(20),
            offset_store_dir: None,
        }
    }
}

/// Builds and starts a [`PushConsumer`].
#[derive(Debug)]
pub struct PushConsumerBuilder {
    group: String,
    options: ClientOptions,
    instance: Option<ClientInstance>,
    settings: PushConsumerSettings,
    subscriptions: Vec<(String, Expression)>,
    /// Message trace: the trace topic, when on.
    trace_topic: Option<String>,
}

impl PushConsumerBuilder {
    client_option_setters!();

    /// Records a trace of every consumption (SubBefore/SubAfter) to the trace topic
    /// (RocketMQ's `enableMsgTrace`).
    pub fn enable_msg_trace(mut self, on: bool) -> Self {
        self.trace_topic = on.then(|| {
            self.trace_topic
                .take()
                .unwrap_or_else(|| naming::TRACE_TOPIC.to_owned())
        });
        self
    }

    /// Traces to `topic` instead of `RMQ_SYS_TRACE_TOPIC` (turns tracing on).
    pub fn trace_topic(mut self, topic: impl Into<String>) -> Self {
        self.trace_topic = Some(topic.into());
        self
    }

    /// Subscribes to `topic` (call once per topic; a later call for a topic replaces it).
    pub fn subscribe(
        mut self,
        topic: impl Into<String>,
        expression: impl Into<Expression>,
    ) -> Self {
        let topic = topic.into();
        self.subscriptions.retain(|(t, _)| *t != topic);
        self.subscriptions.push((topic, expression.into()));
        self
    }

    consumer_group_setters!();

    /// Orderly consumption: one batch per queue at a time, in queue order, under a broker lock.
    pub fn orderly(mut self, orderly: bool) -> Self {
        self.settings.orderly = orderly;
        self
    }

    /// Listener calls running at once (default 20).
    pub fn consume_threads(mut self, n: usize) -> Self {
        self.settings.consume_threads = n.max(1);
        self
    }

    /// Messages per listener call (default 1).
    pub fn consume_batch_size(mut self, n: usize) -> Self {
        self.settings.consume_batch_size = n.max(1);
        self
    }

    /// Messages per pull (default 32).
    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.settings.pull_batch_size = n.max(1);
        self
    }

    /// Redeliveries before the dead-letter queue (default 16; orderly: unlimited).
    pub fn max_reconsume_times(mut self, n: i32) -> Self {
        self.settings.max_reconsume_times = Some(n);
        self
    }

    /// Periodic rebalance interval (default 20 s).
    pub fn rebalance_interval(mut self, every: Duration) -> Self {
        self.settings.rebalance_interval = every;
        self
    }

    /// Periodic offset commit interval (default 5 s).
    pub fn persist_interval(mut self, every: Duration) -> Self {
        self.settings.persist_interval = every;
        self
    }

    /// Broadcasting: where the local offsets file lives (default `~/.rocketmq_offsets`).
    pub fn offset_store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.offset_store_dir = Some(dir.into());
        self
    }

    /// All tunables at once.
    pub fn settings(mut self, settings: PushConsumerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Starts consuming with `listener`.
    pub async fn start(self, listener: impl MessageListener) -> Result<PushConsumer> {
        let group = self.group;
        naming::validate_group(&group).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        if self.subscriptions.is_empty() {
            return Err(ClientError::InvalidArgument(
                "subscribe to at least one topic before starting".into(),
            ));
        }
        let settings = self.settings;
        let (instance, owns_instance) = match self.instance {
            Some(i) => (i, false),
            None => (ClientInstance::start(self.options)?, true),
        };
        let clustering = settings.message_model == MessageModel::Clustering;
        let mut subscriptions = BTreeMap::new();
        for (topic, expr) in &self.subscriptions {
            naming::validate_topic(topic)
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
            subscriptions.insert(topic.clone(), expr.subscription_data(topic));
        }
        if clustering {
            let retry = naming::retry_topic(&group);
            subscriptions.insert(retry.clone(), Expression::All.subscription_data(&retry));
        }
        let offsets = if clustering {
            OffsetStore::remote(&group)
        } else {
            let dir = settings
                .offset_store_dir
                .clone()
                .unwrap_or_else(default_local_dir);
            OffsetStore::local(dir, instance.client_id(), &group)
        };
        let trace = match self.trace_topic {
            Some(topic) => {
                Some(crate::trace::TraceDispatcher::start(instance.clone(), &group, topic).await?)
            }
            None => None,
        };
        let stop = instance.stop_token().child_token();
        let inner = Arc::new(PushInner {
            trace,
            permits: Arc::new(Semaphore::new(settings.consume_threads)),
            pool: ConsumePool::default(),
            fallback: Producer::internal(instance.clone()),
            group: group.clone(),
            instance: instance.clone(),
            owns_instance,
            settings,
            subscriptions: RwLock::new(subscriptions),
            listener: Arc::new(Listener(listener)),
            queues: Mutex::new(HashMap::new()),
            offsets,
            rebalance_now: Notify::new(),
            stop: stop.clone(),
            running: AtomicBool::new(true),
            started_ms: crate::message::now_ms(),
        });
        instance.register_consumer(
            &group,
            Arc::new(Member {
                inner: Arc::downgrade(&inner),
            }),
        )?;
        let topics: Vec<String> = inner.subscriptions.read().keys().cloned().collect();
        for topic in &topics {
            if let Err(e) = instance.update_route(topic).await {
                debug!(%topic, error = %e, "no route yet");
            }
        }
        instance.send_heartbeat_to_all().await;
        if !inner.settings.orderly {
            for _ in 0..inner.settings.consume_threads {
                tokio::spawn(consume_worker(inner.clone()));
            }
        }
        tokio::spawn(rebalance_loop(inner.clone()));
        tokio::spawn(persist_loop(inner.clone()));
        if inner.settings.orderly && clustering {
            tokio::spawn(lock_loop(inner.clone()));
        }
        info!(%group, client_id = %instance.client_id(), "push consumer started");
        Ok(PushConsumer {
            inner,
            _guard: Arc::new(StopOnDrop(stop)),
        })
    }
}

/// Cancels the consumer's tasks when the last handle is dropped without a shutdown.
pub(crate) struct StopOnDrop(pub(crate) CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub(crate) struct PushInner {
    group: String,
    instance: ClientInstance,
    owns_instance: bool,
    settings: PushConsumerSettings,
    subscriptions: RwLock<BTreeMap<String, SubscriptionData>>,
    listener: Arc<dyn ErasedListener>,
    queues: Mutex<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    offsets: OffsetStore,
    /// One per listener call that may run at once; shutdown takes them all to wait for the
    /// calls in flight.
    permits: Arc<Semaphore>,
    /// Concurrent: the work of the consume workers.
    pool: ConsumePool,
    rebalance_now: Notify,
    stop: CancellationToken,
    running: AtomicBool,
    /// Re-sends failed messages to the retry topic when CONSUMER_SEND_MSG_BACK fails.
    fallback: Producer,
    /// When the consumer started (ms).
    started_ms: i64,
    /// Message trace, when on.
    trace: Option<crate::trace::TraceDispatcher>,
}

/// A running push consumer; cheap to clone. Dropping the last handle stops it, but only
/// [`PushConsumer::shutdown`] commits offsets and leaves the group cleanly.
#[derive(Clone)]
pub struct PushConsumer {
    inner: Arc<PushInner>,
    _guard: Arc<StopOnDrop>,
}

impl std::fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id())
            .finish()
    }
}

impl PushConsumer {
    /// A builder for a consumer of `group`.
    pub fn builder(group: impl Into<String>) -> PushConsumerBuilder {
        PushConsumerBuilder {
            group: group.into(),
            options: ClientOptions::default(),
            instance: None,
            settings: PushConsumerSettings::default(),
            subscriptions: Vec::new(),
            trace_topic: None,
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// The client instance this consumer runs on.
    pub fn instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    /// The queues currently assigned to this consumer.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        let mut q: Vec<_> = self.inner.queues.lock().keys().cloned().collect();
        q.sort();
        q
    }

    /// The offset this consumer would commit for `queue` (next message to consume).
    pub fn committable_offset(&self, queue: &MessageQueue) -> Option<i64> {
        self.inner.offsets.read_memory(queue)
    }

    /// Rebalances now instead of waiting for the next period.
    pub fn rebalance_now(&self) {
        self.inner.rebalance_now.notify_one();
    }

    /// Stops pulling, lets running listener calls finish (up to 10 s), commits offsets,
    /// releases orderly locks and leaves the group.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if !inner.running.swap(false, Ordering::SeqCst) {
            return;
        }
        inner.stop.cancel();
        let all = inner.settings.consume_threads as u32;
        let drained =
            tokio::time::timeout(Duration::from_secs(10), inner.permits.acquire_many(all)).await;
        if drained.is_err() {
            warn!(group = %inner.group, "listener calls still running at shutdown");
        }
        let queues: Vec<MessageQueue> = inner.queues.lock().keys().cloned().collect();
        inner.offsets.persist(&inner.instance, &queues, true).await;
        if inner.settings.orderly && inner.clustering() {
            inner.unlock_all(&queues).await;
        }
        for pq in inner.queues.lock().drain().map(|(_, pq)| pq) {
            pq.drop_queue();
        }
        if let Some(trace) = &inner.trace {
            trace.shutdown().await;
        }
        inner.instance.unregister_consumer(&inner.group).await;
        if inner.owns_instance {
            inner.instance.shutdown().await;
        }
        info!(group = %inner.group, "push consumer stopped");
    }
}

/// What the client instance sees of a push consumer.
struct Member {
    inner: Weak<PushInner>,
}

impl ConsumerMember for Member {
    fn consumer_data(&self) -> ConsumerData {
        match self.inner.upgrade() {
            Some(inner) => inner.consumer_data(),
            None => ConsumerData::default(),
        }
    }

    fn topics(&self) -> Vec<String> {
        self.inner
            .upgrade()
            .map(|i| i.subscriptions.read().keys().cloned().collect())
            .unwrap_or_default()
    }

    fn trigger_rebalance(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.rebalance_now.notify_one();
        }
    }

    fn reset_offsets(&self, topic: &str, offsets: BTreeMap<MessageQueue, i64>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let topic = topic.to_owned();
        tokio::spawn(async move {
            for (mq, offset) in offsets {
                if mq.topic != topic {
                    continue;
                }
                if let Some(pq) = inner.queues.lock().remove(&mq) {
                    pq.drop_queue();
                }
                inner.offsets.update(&mq, offset, false);
                inner
                    .offsets
                    .persist(&inner.instance, std::slice::from_ref(&mq), true)
                    .await;
            }
            inner.rebalance_now.notify_one();
        });
    }

    fn running_info(&self) -> String {
        match self.inner.upgrade() {
            Some(inner) => inner.running_info(),
            None => "{}".to_owned(),
        }
    }

    fn consume_directly(&self, msg: MessageExt) -> BoxFuture<'static, Option<String>> {
        let inner = self.inner.upgrade();
        Box::pin(async move {
            let inner = inner?;
            let started = std::time::Instant::now();
            let mut ctx =
                ConsumeContext::new(Arc::new(msg.queue()), inner.settings.suspend_current_queue);
            let msgs = vec![msg];
            let result = inner.call_listener(&msgs, &mut ctx).await;
            let code = match result {
                ConsumeResult::Success => "CR_SUCCESS",
                ConsumeResult::ReconsumeLater => "CR_LATER",
            };
            Some(
                serde_json::json!({
                    "autoCommit": true,
                    "consumeResult": code,
                    "order": inner.settings.orderly,
                    "spentTimeMills": started.elapsed().as_millis() as i64,
                })
                .to_string(),
            )
        })
    }
}

impl PushInner {
    fn clustering(&self) -> bool {
        self.settings.message_model == MessageModel::Clustering
    }

    fn max_reconsume_times(&self) -> i32 {
        match self.settings.max_reconsume_times {
            Some(n) if n >= 0 => n,
            _ if self.settings.orderly => i32::MAX,
            _ => 16,
        }
    }

    /// Java's ConsumerRunningInfo: settings, subscriptions and the state of every owned queue.
    fn running_info(&self) -> String {
        let s = &self.settings;
        let mut props = BTreeMap::new();
        props.insert(
            "PROP_NAMESERVER_ADDR",
            self.instance.namesrv_addrs().join(";"),
        );
        props.insert("PROP_THREADPOOL_CORE_SIZE", s.consume_threads.to_string());
        props.insert("PROP_CONSUMEORDERLY", s.orderly.to_string());
        props.insert("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY".to_owned());
        props.insert(
            "PROP_CLIENT_VERSION",
            concat!("ferrymq-client ", env!("CARGO_PKG_VERSION")).to_owned(),
        );
        props.insert("PROP_CONSUMER_START_TIMESTAMP", self.started_ms.to_string());
        props.insert("consumerGroup", self.group.clone());
        props.insert("messageModel", s.message_model.name().to_owned());
        props.insert("consumeFromWhere", s.consume_from.wire().name().to_owned());
        props.insert("pullBatchSize", s.pull_batch_size.to_string());
        props.insert(
            "consumeMessageBatchMaxSize",
            s.consume_batch_size.to_string(),
        );
        props.insert("maxReconsumeTimes", self.max_reconsume_times().to_string());
        let queues: BTreeMap<MessageQueue, serde_json::Value> = self
            .queues
            .lock()
            .iter()
            .map(|(mq, pq)| {
                let (min, max) = pq.cached_range().unwrap_or((0, 0));
                let info = serde_json::json!({
                    "cachedMsgCount": pq.cached_count(),
                    "cachedMsgMaxOffset": max,
                    "cachedMsgMinOffset": min,
                    "cachedMsgSizeInMiB": pq.cached_bytes() >> 20,
                    "commitOffset": self.offsets.read_memory(mq).unwrap_or(-1),
                    "droped": pq.is_dropped(),
                    "lastConsumeTimestamp": 0,
                    "lastLockTimestamp": 0,
                    "lastPullTimestamp": 0,
                    "locked": pq.is_locked(),
                    "transactionMsgCount": 0,
                    "transactionMsgMaxOffset": 0,
                    "transactionMsgMinOffset": 0,
                    "tryUnlockTimes": 0,
                });
                (mq.clone(), info)
            })
            .collect();
        let mut mq_table = String::new();
        let _ = ferrymq_protocol::body::write_mq_keyed_map(&mut mq_table, &queues);
        let subs: Vec<SubscriptionData> = self.subscriptions.read().values().cloned().collect();
        format!(
            "{{\"jstack\":\"\",\"mqTable\":{mq_table},\"properties\":{},\"statusTable\":{{}},\"subscriptionSet\":{}}}",
            serde_json::to_string(&props).unwrap_or_else(|_| "{}".into()),
            serde_json::to_string(&subs).unwrap_or_else(|_| "[]".into()),
        )
    }

    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            group_name: self.group.clone(),
            consume_type: ConsumeType::Passively,
            message_model: self.settings.message_model,
            consume_from_where: self.settings.consume_from.wire(),
            subscription_data_set: self.subscriptions.read().values().cloned().collect(),
            unit_mode: false,
        }
    }

    // ----- rebalance ------------------------------------------------------------------------

    /// One rebalance of every subscribed topic; returns false if some topic could not be
    /// balanced (no route or no member list yet), so the caller retries soon.
    async fn rebalance(self: &Arc<Self>) -> bool {
        let topics: Vec<String> = self.subscriptions.read().keys().cloned().collect();
        let mut complete = true;
        for topic in topics {
            match allocate(
                &self.instance,
                &self.group,
                self.settings.message_model,
                &self.settings.allocate_strategy,
                &topic,
            )
            .await
            {
                Some(mine) => complete &= self.update_queues(&topic, mine).await,
                None => complete = false,
            }
        }
        complete
    }

    /// Starts and stops queues to match `mine`; false if some queue could not be taken yet
    /// (orderly: still locked by its previous owner).
    async fn update_queues(self: &Arc<Self>, topic: &str, mine: Vec<MessageQueue>) -> bool {
        let mut all_taken = true;
        let wanted: HashSet<MessageQueue> = mine.iter().cloned().collect();
        let removed: Vec<(MessageQueue, Arc<ProcessQueue>)> = {
            let mut queues = self.queues.lock();
            let gone: Vec<MessageQueue> = queues
                .keys()
                .filter(|q| q.topic == topic && !wanted.contains(*q))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|q| queues.remove(&q).map(|pq| (q, pq)))
                .collect()
        };
        for (mq, pq) in removed {
            debug!(group = %self.group, queue = ?mq, "queue released");
            pq.drop_queue();
            self.offsets
                .persist(&self.instance, std::slice::from_ref(&mq), false)
                .await;
            self.offsets.remove(&mq);
            if self.settings.orderly && self.clustering() {
                let me = self.clone();
                tokio::spawn(async move {
                    // Unlock only after the batch in flight (if any) is done.
                    let _done = pq.consume_lock.lock().await;
                    let _ = requests::unlock_batch(
                        &me.instance,
                        &me.group,
                        &mq.broker_name,
                        &mq.topic,
                        vec![mq.clone()],
                        false,
                    )
                    .await;
                });
            }
        }
        for mq in mine {
            if self.queues.lock().contains_key(&mq) {
                continue;
            }
            let pq = Arc::new(ProcessQueue::new(mq.clone(), self.stop.child_token()));
            if self.settings.orderly && self.clustering() && !self.lock_one(&pq).await {
                debug!(group = %self.group, queue = ?mq, "queue is locked by another consumer");
                all_taken = false;
                continue;
            }
            if self.clustering() {
                // Forget any stale in-memory offset; the broker's is authoritative.
                self.offsets.remove(&mq);
            }
            let offset = match self.start_offset(&mq).await {
                Ok(o) => o,
                Err(e) => {
                    debug!(queue = ?mq, error = %e, "cannot compute the start offset");
                    all_taken = false;
                    continue;
                }
            };
            debug!(group = %self.group, queue = ?mq, offset, "queue assigned");
            self.queues.lock().insert(mq, pq.clone());
            tokio::spawn(pull_loop(self.clone(), pq, offset));
        }
        all_taken
    }

    async fn start_offset(&self, mq: &MessageQueue) -> Result<i64> {
        start_offset(
            &self.instance,
            &self.offsets,
            self.settings.consume_from,
            mq,
        )
        .await
    }

    // ----- orderly locks --------------------------------------------------------------------

    async fn lock_one(&self, pq: &ProcessQueue) -> bool {
        let mq: &MessageQueue = &pq.queue;
        match requests::lock_batch(
            &self.instance,
            &self.group,
            &mq.broker_name,
            &mq.topic,
            vec![(*mq).clone()],
        )
        .await
        {
            Ok(locked) => {
                let ok = locked.contains(mq);
                pq.set_locked(ok);
                ok
            }
            Err(e) => {
                debug!(queue = ?mq, error = %e, "lock failed");
                false
            }
        }
    }

    /// Renews the locks of every owned queue, one request per broker.
    async fn lock_all(&self) {
        let by_broker: HashMap<String, Vec<Arc<ProcessQueue>>> = {
            let mut m: HashMap<String, Vec<Arc<ProcessQueue>>> = HashMap::new();
            for pq in self.queues.lock().values() {
                m.entry(pq.queue.broker_name.clone())
                    .or_default()
                    .push(pq.clone());
            }
            m
        };
        for (broker, pqs) in by_broker {
            let topic = pqs[0].queue.topic.clone();
            let mqs: Vec<MessageQueue> = pqs.iter().map(|p| (*p.queue).clone()).collect();
            match requests::lock_batch(&self.instance, &self.group, &broker, &topic, mqs).await {
                Ok(locked) => {
                    let locked: HashSet<MessageQueue> = locked.into_iter().collect();
                    for pq in pqs {
                        pq.set_locked(locked.contains(&pq.queue));
                    }
                }
                Err(e) => debug!(%broker, error = %e, "lock renewal failed"),
            }
        }
    }

    async fn unlock_all(&self, queues: &[MessageQueue]) {
        let mut by_broker: HashMap<(String, String), Vec<MessageQueue>> = HashMap::new();
        for q in queues {
            by_broker
                .entry((q.broker_name.clone(), q.topic.clone()))
                .or_default()
                .push(q.clone());
        }
        for ((broker, topic), mqs) in by_broker {
            let _ = requests::unlock_batch(&self.instance, &self.group, &broker, &topic, mqs, true)
                .await;
        }
    }

    // ----- consumption ----------------------------------------------------------------------

    async fn call_listener(&self, msgs: &[MessageExt], ctx: &mut ConsumeContext) -> ConsumeResult {
        let traced = self.trace.as_ref().map(|t| (t, self.trace_before(t, msgs)));
        let started = Instant::now();
        let call = AssertUnwindSafe(self.listener.consume(msgs, ctx)).catch_unwind();
        let (result, context_code) = match call.await {
            Ok(r) => (r, if r == ConsumeResult::Success { 0 } else { 4 }),
            Err(_) => {
                warn!(group = %self.group, "listener panicked; messages will be retried");
                (ConsumeResult::ReconsumeLater, 2)
            }
        };
        if let Some((trace, request_id)) = traced {
            self.trace_after(
                trace,
                msgs,
                &request_id,
                started.elapsed(),
                result,
                context_code,
            );
        }
        result
    }

    /// SubBefore records for one listener call (trace topic messages are never traced);
    /// returns the request id that ties them to the SubAfter.
    fn trace_before(&self, trace: &crate::trace::TraceDispatcher, msgs: &[MessageExt]) -> String {
        use ferrymq_protocol::trace::{TraceRecord, TraceType};
        // Unique per call (Java uses a UUID): concurrent calls in one millisecond must not
        // share an id, or their SubBefore and SubAfter records could not be paired.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let request_id = format!(
            "{}-{}-{}",
            self.instance.client_id(),
            crate::message::now_ms(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        );
        for m in msgs.iter().filter(|m| !naming::is_trace_topic(m.topic())) {
            let mut r = TraceRecord::new(TraceType::SubBefore);
            r.timestamp = crate::message::now_ms();
            r.region_id = m
                .property(ferrymq_protocol::message::properties::keys::MSG_REGION)
                .unwrap_or("DefaultRegion")
                .to_owned();
            r.group = self.group.clone();
            r.request_id = request_id.clone();
            r.msg_id = m.msg_id().to_owned();
            r.retry_times = m.reconsume_times;
            r.keys = m.keys().join(" ");
            r.client_host = self.instance.client_id().to_owned();
            trace.record(r);
        }
        request_id
    }

    /// SubAfter records: the verdict and how long the call took (Java's context code: 0
    /// success, 2 exception, 4 failed).
    fn trace_after(
        &self,
        trace: &crate::trace::TraceDispatcher,
        msgs: &[MessageExt],
        request_id: &str,
        cost: Duration,
        result: ConsumeResult,
        context_code: i32,
    ) {
        use ferrymq_protocol::trace::{TraceRecord, TraceType};
        for m in msgs.iter().filter(|m| !naming::is_trace_topic(m.topic())) {
            let mut r = TraceRecord::new(TraceType::SubAfter);
            r.request_id = request_id.to_owned();
            r.msg_id = m.msg_id().to_owned();
            r.cost_time = cost.as_millis() as i64;
            r.success = result == ConsumeResult::Success;
            r.keys = m.keys().join(" ");
            r.context_code = context_code;
            r.timestamp = crate::message::now_ms();
            r.group = self.group.clone();
            trace.record(r);
        }
    }

    /// Concurrent consumption of one batch (on a consume worker). Messages that could be
    /// neither sent back nor re-sent are queued again after 5 s.
    async fn consume_concurrently(self: &Arc<Self>, req: ConsumeRequest) {
        let ConsumeRequest { pq, msgs, range } = req;
        let Some(batch) = msgs.get(range) else {
            return;
        };
        let permit = tokio::select! {
            _ = self.stop.cancelled() => return,
            p = self.permits.acquire() => match p { Ok(p) => p, Err(_) => return },
        };
        if pq.is_dropped() {
            return;
        }
        let mut ctx = ConsumeContext::new(pq.queue.clone(), self.settings.suspend_current_queue);
        let result = self.call_listener(batch, &mut ctx).await;
        if pq.is_dropped() {
            return;
        }
        let mut failed = Vec::new();
        if result == ConsumeResult::ReconsumeLater {
            if self.clustering() {
                for m in batch {
                    if !self
                        .send_back(&pq.queue.broker_name, m, ctx.delay_level())
                        .await
                    {
                        failed.push(m.clone());
                    }
                }
            } else {
                warn!(group = %self.group, "broadcast consumption failed; messages dropped");
            }
        }
        let done = batch
            .iter()
            .filter(|m| !failed.iter().any(|f| f.queue_offset == m.queue_offset))
            .map(|m| m.queue_offset);
        if let Some(offset) = pq.remove(done) {
            if !pq.is_dropped() {
                self.offsets.update(&pq.queue, offset, true);
            }
        }
        // Held until the offset is recorded, so a shutdown that drained the permits
        // commits this batch too.
        drop(permit);
        if failed.is_empty() {
            return;
        }
        // Still cached in the queue (so the offset cannot pass them): consumed again later.
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = me.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            for m in &mut failed {
                m.reconsume_times += 1;
            }
            let range = 0..failed.len();
            me.pool.push(
                [ConsumeRequest {
                    pq,
                    msgs: Arc::new(failed),
                    range,
                }],
                1,
            );
        });
    }

    /// Sends a failed message back for redelivery; falls back to re-sending it to the retry
    /// topic. False if both failed.
    async fn send_back(&self, broker_name: &str, msg: &MessageExt, delay_level: i32) -> bool {
        let max = self.max_reconsume_times();
        match requests::send_back(
            &self.instance,
            &self.group,
            broker_name,
            msg,
            delay_level,
            max,
        )
        .await
        {
            Ok(()) => true,
            Err(e) => {
                debug!(error = %e, "send-back failed; re-sending to the retry topic");
                let retry = retry_message(&self.group, msg, max);
                match self.fallback.send(retry).await {
                    Ok(_) => true,
                    Err(e) => {
                        warn!(error = %e, "could not re-send a failed message");
                        false
                    }
                }
            }
        }
    }

    /// Orderly consumption of one queue until it is empty (one task per queue at a time).
    async fn consume_orderly(self: Arc<Self>, pq: Arc<ProcessQueue>) {
        loop {
            if pq.is_dropped() || self.stop.is_cancelled() {
                pq.stop_consuming();
                return;
            }
            if self.clustering() && !pq.is_locked() && !self.lock_one(&pq).await {
                tokio::select! {
                    _ = pq.stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let guard = pq.consume_lock.lock().await;
            if pq.is_dropped() {
                continue;
            }
            let msgs = pq.take(self.settings.consume_batch_size);
            if msgs.is_empty() {
                drop(guard);
                if pq.stop_consuming() {
                    continue;
                }
                return;
            }
            let permit = tokio::select! {
                _ = self.stop.cancelled() => { pq.reconsume_later(); continue; }
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let mut ctx =
                ConsumeContext::new(pq.queue.clone(), self.settings.suspend_current_queue);
            let result = self.call_listener(&msgs, &mut ctx).await;
            if pq.is_dropped() {
                continue;
            }
            match result {
                ConsumeResult::Success => {
                    if let Some(offset) = pq.commit() {
                        self.offsets.update(&pq.queue, offset, false);
                    }
                }
                ConsumeResult::ReconsumeLater => {
                    let max = self.max_reconsume_times();
                    if msgs.iter().any(|m| m.reconsume_times >= max) {
                        // Out of retries: to the dead-letter queue, then move on.
                        let mut all_sent = true;
                        for m in &msgs {
                            all_sent &= requests::send_back(
                                &self.instance,
                                &self.group,
                                &pq.queue.broker_name,
                                m,
                                -1,
                                max,
                            )
                            .await
                            .is_ok();
                        }
                        if all_sent {
                            if let Some(offset) = pq.commit() {
                                self.offsets.update(&pq.queue, offset, false);
                            }
                            continue;
                        }
                    }
                    pq.reconsume_later();
                    drop(permit);
                    drop(guard);
                    tokio::select! {
                        _ = pq.stop.cancelled() => {}
                        _ = tokio::time::sleep(ctx.suspend()) => {}
                    }
                }
            }
        }
    }

    /// Caches freshly pulled messages in their queue and hands them to consumption; false if
    /// the queue was dropped meanwhile.
    fn dispatch(self: &Arc<Self>, pq: &Arc<ProcessQueue>, msgs: Vec<MessageExt>) -> bool {
        if self.settings.orderly {
            pq.put_owned(msgs);
            if pq.is_dropped() {
                return false;
            }
            if pq.start_consuming() {
                tokio::spawn(self.clone().consume_orderly(pq.clone()));
            }
            return true;
        }
        pq.put(&msgs);
        if pq.is_dropped() {
            return false;
        }
        // One request per listener call, all sharing the pulled vector.
        let size = self.settings.consume_batch_size;
        let n = msgs.len();
        let msgs = Arc::new(msgs);
        let requests = (0..n).step_by(size).map(|start| ConsumeRequest {
            pq: pq.clone(),
            msgs: msgs.clone(),
            range: start..n.min(start.saturating_add(size)),
        });
        self.pool.push(
            requests,
            n.div_ceil(size).min(self.settings.consume_threads),
        );
        true
    }
}

/// One listener call's worth of concurrent work: a slice of a pulled batch.
struct ConsumeRequest {
    pq: Arc<ProcessQueue>,
    msgs: Arc<Vec<MessageExt>>,
    range: Range<usize>,
}

/// The FIFO queue of the concurrent consume workers.
#[derive(Default)]
struct ConsumePool {
    queue: Mutex<VecDeque<ConsumeRequest>>,
    /// Wakes idle workers.
    ready: Notify,
}

impl ConsumePool {
    /// Queues requests and wakes up to `wake` idle workers.
    fn push(&self, requests: impl IntoIterator<Item = ConsumeRequest>, wake: usize) {
        self.queue.lock().extend(requests);
        for _ in 0..wake {
            self.ready.notify_one();
        }
    }

    fn pop(&self) -> Option<ConsumeRequest> {
        self.queue.lock().pop_front()
    }
}

/// A concurrent consume worker: runs requests from the pool until the consumer stops.
async fn consume_worker(inner: Arc<PushInner>) {
    loop {
        let request = match inner.pool.pop() {
            Some(r) => r,
            None => {
                let notified = inner.pool.ready.notified();
                tokio::pin!(notified);
                // Registered before the second look, so a push in between still wakes us.
                notified.as_mut().enable();
                match inner.pool.pop() {
                    Some(r) => r,
                    None => {
                        tokio::select! {
                            _ = inner.stop.cancelled() => return,
                            _ = notified => continue,
                        }
                    }
                }
            }
        };
        if inner.stop.is_cancelled() {
            return;
        }
        inner.consume_concurrently(request).await;
    }
}

/// The message Java re-sends to `%RETRY%<group>` when CONSUMER_SEND_MSG_BACK fails.
fn retry_message(group: &str, msg: &MessageExt, max: i32) -> Message {
    let mut m = msg.message.clone();
    let origin_topic = m.topic().to_owned();
    if m.property(keys::RETRY_TOPIC).is_none() {
        m.set_property(keys::RETRY_TOPIC, origin_topic);
    }
    if m.property(keys::ORIGIN_MESSAGE_ID).is_none() {
        m.set_property(keys::ORIGIN_MESSAGE_ID, msg.msg_id());
    }
    m.remove_property(keys::MIN_OFFSET);
    m.remove_property(keys::MAX_OFFSET);
    m.set_topic(naming::retry_topic(group));
    m.set_property(keys::RECONSUME_TIME, (msg.reconsume_times + 1).to_string());
    m.set_property(keys::MAX_RECONSUME_TIMES, max.to_string());
    m.set_property(
        keys::DELAY_TIME_LEVEL,
        (3 + msg.reconsume_times).to_string(),
    );
    m
}

/// Messages of the retry topic are handed over under their original topic.
fn restore_retry_topic(group: &str, msgs: &mut [MessageExt]) {
    let retry = naming::retry_topic(group);
    for m in msgs {
        if m.topic() == retry {
            if let Some(original) = m.property(keys::RETRY_TOPIC).map(str::to_owned) {
                m.set_topic(original);
            }
        }
    }
}

/// Long-polls one queue until it is dropped or the consumer stops.
async fn pull_loop(inner: Arc<PushInner>, pq: Arc<ProcessQueue>, mut offset: i64) {
    let s = &inner.settings;
    let mq = pq.queue.clone();
    let mut broker_id = 0;
    let pause = |d: Duration| {
        let pq = pq.clone();
        async move {
            tokio::select! {
                _ = pq.stop.cancelled() => {}
                _ = tokio::time::sleep(d) => {}
            }
        }
    };
    loop {
        if pq.is_dropped() || inner.stop.is_cancelled() {
            return;
        }
        if pq.cached_count() > s.pull_threshold_for_queue
            || pq.cached_bytes() > s.pull_threshold_size_for_queue
            || (!s.orderly && pq.span() > s.consume_concurrently_max_span)
        {
            pause(Duration::from_millis(50)).await;
            continue;
        }
        let Some(sub) = inner.subscriptions.read().get(&mq.topic).cloned() else {
            return;
        };
        let clustering = inner.clustering();
        let commit_offset = if clustering {
            inner.offsets.read_memory(&mq).unwrap_or(0)
        } else {
            0
        };
        let sys_flag = pull_sys_flag::build(commit_offset > 0, true, false, false, false);
        let args = PullArgs {
            group: &inner.group,
            queue: &mq,
            subscription: &sub,
            offset,
            max_nums: s.pull_batch_size,
            sys_flag,
            commit_offset,
            suspend: s.broker_suspend,
            timeout: s.pull_timeout,
            broker_id,
        };
        let result = tokio::select! {
            _ = pq.stop.cancelled() => return,
            r = requests::pull(&inner.instance, args) => r,
        };
        match result {
            Ok(r) => {
                broker_id = r.suggest_which_broker_id;
                match r.status {
                    PullStatus::Found => {
                        offset = r.next_begin_offset;
                        let mut msgs = r.messages;
                        if msgs.is_empty() {
                            if pq.cached_count() == 0 {
                                inner.offsets.update(&mq, offset, true);
                            }
                            continue;
                        }
                        if naming::is_retry_topic(&mq.topic) {
                            restore_retry_topic(&inner.group, &mut msgs);
                        }
                        if !inner.dispatch(&pq, msgs) {
                            return;
                        }
                    }
                    PullStatus::NoNewMessage | PullStatus::NoMatchedMessage => {
                        offset = r.next_begin_offset;
                        if pq.cached_count() == 0 {
                            inner.offsets.update(&mq, offset, true);
                        }
                    }
                    PullStatus::OffsetIllegal => {
                        warn!(queue = ?mq, requested = offset, next = r.next_begin_offset,
                              "pull offset illegal; restarting the queue there");
                        pq.drop_queue();
                        inner.queues.lock().remove(&mq);
                        inner.offsets.update(&mq, r.next_begin_offset, false);
                        inner
                            .offsets
                            .persist(&inner.instance, std::slice::from_ref(&mq), true)
                            .await;
                        inner.rebalance_now.notify_one();
                        return;
                    }
                }
            }
            Err(e) => {
                if e.response_code() == Some(ResponseCode::FlowControl) {
                    pause(Duration::from_millis(20)).await;
                } else {
                    debug!(queue = ?mq, error = %e, "pull failed");
                    pause(Duration::from_secs(3)).await;
                }
                continue;
            }
        }
        if !s.pull_interval.is_zero() {
            pause(s.pull_interval).await;
        }
    }
}

async fn rebalance_loop(inner: Arc<PushInner>) {
    loop {
        let complete = inner.rebalance().await;
        // An incomplete round (no route or member list yet, a queue still locked by its
        // previous owner) is retried soon, as Java's `rebalanceLater(500)`.
        let wait = if complete {
            inner.settings.rebalance_interval
        } else {
            Duration::from_millis(500).min(inner.settings.rebalance_interval)
        };
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = inner.rebalance_now.notified() => {}
        }
    }
}

async fn persist_loop(inner: Arc<PushInner>) {
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(inner.settings.persist_interval) => {}
        }
        let queues: Vec<MessageQueue> = inner.queues.lock().keys().cloned().collect();
        inner.offsets.persist(&inner.instance, &queues, false).await;
    }
}

async fn lock_loop(inner: Arc<PushInner>) {
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(inner.settings.lock_interval) => {}
        }
        inner.lock_all().await;
    }
}
