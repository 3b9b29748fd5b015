//! The lite pull consumer: the application polls for messages instead of registering a
//! listener.
//!
//! ```no_run
//! # async fn demo() -> ferrymq_client::Result<()> {
//! use std::time::Duration;
//! use ferrymq_client::consumer::{Expression, LitePullConsumer};
//! let consumer = LitePullConsumer::builder("my-pull-group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .start()
//!     .await?;
//! consumer.subscribe("TopicTest", Expression::All).await?;
//! loop {
//!     let msgs = consumer.poll(Duration::from_secs(1)).await?;
//!     if msgs.is_empty() { break; }
//!     for m in &msgs { println!("{}", m.msg_id()); }
//!     consumer.commit().await?;
//! }
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Queues come either from a subscription (the group rebalances them like a push consumer, or
//! takes all of them when broadcasting) or from [`LitePullConsumer::assign`]. Either way a
//! background task long-polls every queue (20 s suspend) into a bounded buffer that
//! [`LitePullConsumer::poll`] drains. Polled messages count as consumed: with auto-commit (the
//! default) their offsets are committed every 5 s, otherwise by [`LitePullConsumer::commit`].
//! [`LitePullConsumer::seek`] moves a queue, discarding what was buffered for it.
//! [`LitePullConsumer::pull`] is the low-level single pull of any queue at any offset.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use ferrymq_protocol::body::{
    ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use ferrymq_protocol::message::pull_sys_flag;
use ferrymq_protocol::naming;

use super::offset_store::{default_local_dir, OffsetStore};
use super::pull::{PullResult, PullStatus};
use super::push::StopOnDrop;
use super::requests::{self, PullArgs};
use super::{allocate, start_offset, ConsumeFrom, Expression};
use crate::config::{client_option_setters, ClientOptions};
use crate::error::{ClientError, Result};
use crate::instance::{BoxFuture, ClientInstance, ConsumerMember};
use crate::message::MessageExt;
use crate::rebalance::AllocateStrategy;

/// Lite pull consumer tunables.
#[derive(Debug, Clone)]
pub struct LitePullSettings {
    /// Clustering (share subscribed queues, the default) or broadcasting.
    pub message_model: MessageModel,
    /// Where a group without committed offsets starts.
    pub consume_from: ConsumeFrom,
    /// How a clustering group divides subscribed queues.
    pub allocate_strategy: AllocateStrategy,
    /// Messages per pull, and so at most per poll (10, as Java).
    pub pull_batch_size: i32,
    /// Stop pulling a queue while this many of its messages wait to be polled (1000).
    pub pull_threshold_for_queue: usize,
    /// Commit polled offsets automatically (true).
    pub auto_commit: bool,
    /// Period of automatic commits (5 s).
    pub auto_commit_interval: Duration,
    /// Periodic rebalance in subscribe mode (20 s).
    pub rebalance_interval: Duration,
    /// How long a broker may hold a pull (20 s).
    pub broker_suspend: Duration,
    /// Client timeout of a pull (30 s).
    pub pull_timeout: Duration,
    /// Broadcasting: directory of the local offsets file.
    pub offset_store_dir: Option<PathBuf>,
}

impl Default for LitePullSettings {
    fn default() -> Self {
        LitePullSettings {
            message_model: MessageModel::Clustering,
            consume_from: ConsumeFrom::LastOffset,
            allocate_strategy: AllocateStrategy::Averagely,
            pull_batch_size: 10,
            pull_threshold_for_queue: 1000,
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(20),
            broker_suspend: Duration::from_secs(20),
            pull_timeout: Duration::from_secs(30),
            offset_store_dir: None,
        }
    }
}

/// Builds and starts a [`LitePullConsumer`].
#[derive(Debug)]
pub struct LitePullConsumerBuilder {
    group: String,
    options: ClientOptions,
    instance: Option<ClientInstance>,
    settings: LitePullSettings,
}

impl LitePullConsumerBuilder {
    client_option_setters!();

    consumer_group_setters!();

    /// Messages per pull and at most per poll (default 10).
    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.settings.pull_batch_size = n.max(1);
        self
    }

    /// Commit polled offsets automatically (default true).
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.settings.auto_commit = on;
        self
    }

    /// Period of automatic commits (default 5 s).
    pub fn auto_commit_interval(mut self, every: Duration) -> Self {
        self.settings.auto_commit_interval = every;
        self
    }

    /// Broadcasting: where the local offsets file lives.
    pub fn offset_store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.offset_store_dir = Some(dir.into());
        self
    }

    /// All tunables at once.
    pub fn settings(mut self, settings: LitePullSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Starts the consumer (it pulls nothing until [`LitePullConsumer::subscribe`] or
    /// [`LitePullConsumer::assign`]).
    pub async fn start(self) -> Result<LitePullConsumer> {
        let group = self.group;
        naming::validate_group(&group).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let (instance, owns_instance) = match self.instance {
            Some(i) => (i, false),
            None => (ClientInstance::start(self.options)?, true),
        };
        let settings = self.settings;
        let offsets = if settings.message_model == MessageModel::Clustering {
            OffsetStore::remote(&group)
        } else {
            let dir = settings
                .offset_store_dir
                .clone()
                .unwrap_or_else(default_local_dir);
            OffsetStore::local(dir, instance.client_id(), &group)
        };
        let stop = instance.stop_token().child_token();
        let (tx, rx) = mpsc::channel(256);
        let inner = Arc::new(LiteInner {
            group: group.clone(),
            instance: instance.clone(),
            owns_instance,
            settings,
            mode: Mutex::new(None),
            subscriptions: RwLock::new(BTreeMap::new()),
            queues: Mutex::new(HashMap::new()),
            offsets,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            rebalance_now: Notify::new(),
            stop: stop.clone(),
            running: AtomicBool::new(true),
        });
        instance.register_consumer(
            &group,
            Arc::new(Member {
                inner: Arc::downgrade(&inner),
            }),
        )?;
        tokio::spawn(commit_loop(inner.clone()));
        info!(%group, client_id = %instance.client_id(), "lite pull consumer started");
        Ok(LitePullConsumer {
            inner,
            _guard: Arc::new(StopOnDrop(stop)),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Subscribe,
    Assign,
}

struct Position {
    /// Where the next pull starts (`None` until the start offset is known).
    next_pull: Option<i64>,
    /// Next message to consume: one past the last polled message.
    consumed: Option<i64>,
    /// Bumped by every seek; buffered results of older generations are discarded.
    generation: u64,
}

struct LiteQueue {
    queue: MessageQueue,
    position: Mutex<Position>,
    /// Messages of this queue waiting in the buffer.
    buffered: AtomicUsize,
    /// Interrupts an in-flight pull after a seek.
    seeked: Notify,
    stop: CancellationToken,
}

impl LiteQueue {
    fn dropped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

struct Batch {
    queue: Arc<LiteQueue>,
    generation: u64,
    msgs: Vec<MessageExt>,
}

struct LiteInner {
    group: String,
    instance: ClientInstance,
    owns_instance: bool,
    settings: LitePullSettings,
    mode: Mutex<Option<Mode>>,
    subscriptions: RwLock<BTreeMap<String, SubscriptionData>>,
    queues: Mutex<HashMap<MessageQueue, Arc<LiteQueue>>>,
    offsets: OffsetStore,
    tx: mpsc::Sender<Batch>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Batch>>,
    rebalance_now: Notify,
    stop: CancellationToken,
    running: AtomicBool,
}

/// A running lite pull consumer; cheap to clone.
#[derive(Clone)]
pub struct LitePullConsumer {
    inner: Arc<LiteInner>,
    _guard: Arc<StopOnDrop>,
}

impl std::fmt::Debug for LitePullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullConsumer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id())
            .finish()
    }
}

struct Member {
    inner: Weak<LiteInner>,
}

impl ConsumerMember for Member {
    fn consumer_data(&self) -> ConsumerData {
        let Some(inner) = self.inner.upgrade() else {
            return ConsumerData::default();
        };
        let subscription_data_set = inner.subscriptions.read().values().cloned().collect();
        ConsumerData {
            group_name: inner.group.clone(),
            consume_type: ConsumeType::Actively,
            message_model: inner.settings.message_model,
            consume_from_where: inner.settings.consume_from.wire(),
            subscription_data_set,
            unit_mode: false,
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
        for (mq, offset) in offsets {
            if mq.topic == topic {
                inner.seek_local(&mq, offset);
            }
        }
    }

    fn running_info(&self) -> String {
        let Some(inner) = self.inner.upgrade() else {
            return "{}".to_owned();
        };
        let subs: Vec<SubscriptionData> = inner.subscriptions.read().values().cloned().collect();
        serde_json::json!({
            "jstack": "",
            "mqTable": {},
            "properties": {
                "PROP_CONSUME_TYPE": "CONSUME_ACTIVELY",
                "PROP_NAMESERVER_ADDR": inner.instance.namesrv_addrs().join(";"),
                "consumerGroup": inner.group,
                "messageModel": inner.settings.message_model.name(),
            },
            "statusTable": {},
            "subscriptionSet": subs,
        })
        .to_string()
    }

    fn consume_directly(&self, _msg: MessageExt) -> BoxFuture<'static, Option<String>> {
        Box::pin(async { None })
    }
}

impl LitePullConsumer {
    /// A builder for a consumer of `group`.
    pub fn builder(group: impl Into<String>) -> LitePullConsumerBuilder {
        LitePullConsumerBuilder {
            group: group.into(),
            options: ClientOptions::default(),
            instance: None,
            settings: LitePullSettings::default(),
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

    fn set_mode(&self, mode: Mode) -> Result<()> {
        let mut m = self.inner.mode.lock();
        match *m {
            Some(current) if current != mode => Err(ClientError::InvalidArgument(
                "subscribe and assign cannot be mixed on one consumer".into(),
            )),
            _ => {
                *m = Some(mode);
                Ok(())
            }
        }
    }

    /// Subscribes to `topic`; its queues are divided with the group (or all taken when
    /// broadcasting) now and whenever the group changes.
    pub async fn subscribe(&self, topic: &str, expression: impl Into<Expression>) -> Result<()> {
        naming::validate_topic(topic).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        self.set_mode(Mode::Subscribe)?;
        let first = {
            let mut subs = self.inner.subscriptions.write();
            let first = subs.is_empty();
            subs.insert(topic.to_owned(), expression.into().subscription_data(topic));
            first
        };
        let _ = self.inner.instance.update_route(topic).await;
        self.inner.instance.send_heartbeat_to_all().await;
        if first {
            tokio::spawn(rebalance_loop(self.inner.clone()));
        } else {
            self.inner.rebalance_now.notify_one();
        }
        Ok(())
    }

    /// Reads exactly these queues (no rebalancing), every message of them.
    pub async fn assign(&self, queues: Vec<MessageQueue>) -> Result<()> {
        self.set_mode(Mode::Assign)?;
        {
            let mut subs = self.inner.subscriptions.write();
            for q in &queues {
                subs.entry(q.topic.clone())
                    .or_insert_with(|| Expression::All.subscription_data(&q.topic));
            }
        }
        for topic in queues
            .iter()
            .map(|q| q.topic.clone())
            .collect::<HashSet<_>>()
        {
            let _ = self.inner.instance.update_route(&topic).await;
        }
        self.inner.instance.send_heartbeat_to_all().await;
        let by_topic: BTreeMap<String, Vec<MessageQueue>> =
            queues.into_iter().fold(BTreeMap::new(), |mut m, q| {
                m.entry(q.topic.clone()).or_default().push(q);
                m
            });
        let previous: HashSet<String> = self
            .inner
            .queues
            .lock()
            .keys()
            .map(|q| q.topic.clone())
            .collect();
        for topic in previous {
            if !by_topic.contains_key(&topic) {
                self.inner.update_queues(&topic, Vec::new()).await;
            }
        }
        for (topic, qs) in by_topic {
            self.inner.update_queues(&topic, qs).await;
        }
        Ok(())
    }

    /// The queues this consumer currently reads.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        let mut q: Vec<_> = self.inner.queues.lock().keys().cloned().collect();
        q.sort();
        q
    }

    /// The readable queues of a topic.
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.inner.instance.update_route(topic).await?;
        self.inner.instance.subscribe_queues(topic).await
    }

    /// Waits up to `timeout` for messages; returns an empty list if none arrived. The
    /// messages returned count as consumed.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>> {
        if !self.inner.running.load(Ordering::Relaxed) {
            return Err(ClientError::Shutdown);
        }
        let deadline = Instant::now() + timeout;
        let mut rx = self.inner.rx.lock().await;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let batch = tokio::select! {
                _ = self.inner.stop.cancelled() => return Err(ClientError::Shutdown),
                b = tokio::time::timeout(remaining, rx.recv()) => match b {
                    Ok(Some(b)) => b,
                    Ok(None) => return Err(ClientError::Shutdown),
                    Err(_) => return Ok(Vec::new()),
                },
            };
            let q = &batch.queue;
            q.buffered.fetch_sub(batch.msgs.len(), Ordering::AcqRel);
            if q.dropped() {
                continue;
            }
            let next = batch.msgs.last().map(|m| m.queue_offset + 1);
            {
                let mut pos = q.position.lock();
                if pos.generation != batch.generation {
                    continue;
                }
                if let Some(n) = next {
                    pos.consumed = Some(n);
                }
            }
            if let (Some(n), true) = (next, self.inner.settings.auto_commit) {
                self.inner.offsets.update(&q.queue, n, false);
            }
            return Ok(batch.msgs);
        }
    }

    /// Moves `queue` (which must be assigned) to `offset`: the next poll returns its messages
    /// from there. The offset must lie within the queue's stored range.
    pub async fn seek(&self, queue: &MessageQueue, offset: i64) -> Result<()> {
        if !self.inner.queues.lock().contains_key(queue) {
            return Err(ClientError::InvalidArgument(format!(
                "queue {queue:?} is not assigned to this consumer"
            )));
        }
        let min = requests::min_offset(&self.inner.instance, queue).await?;
        let max = requests::max_offset(&self.inner.instance, queue).await?;
        if offset < min || offset > max {
            return Err(ClientError::InvalidArgument(format!(
                "offset {offset} is outside [{min}, {max}] of {queue:?}"
            )));
        }
        self.inner.seek_local(queue, offset);
        Ok(())
    }

    /// Moves `queue` to its first stored message.
    pub async fn seek_to_begin(&self, queue: &MessageQueue) -> Result<()> {
        let min = requests::min_offset(&self.inner.instance, queue).await?;
        self.seek(queue, min).await
    }

    /// Moves `queue` past its last stored message.
    pub async fn seek_to_end(&self, queue: &MessageQueue) -> Result<()> {
        let max = requests::max_offset(&self.inner.instance, queue).await?;
        self.seek(queue, max).await
    }

    /// Commits the offsets of everything polled so far, and waits for the brokers.
    pub async fn commit(&self) -> Result<()> {
        let inner = &self.inner;
        let queues: Vec<Arc<LiteQueue>> = inner.queues.lock().values().cloned().collect();
        let mut mqs = Vec::with_capacity(queues.len());
        for q in queues {
            if let Some(c) = q.position.lock().consumed {
                inner.offsets.update(&q.queue, c, false);
                mqs.push(q.queue.clone());
            }
        }
        inner.offsets.persist(&inner.instance, &mqs, true).await;
        Ok(())
    }

    /// The group's committed offset of `queue` as the broker (or local file) has it.
    pub async fn committed(&self, queue: &MessageQueue) -> Result<Option<i64>> {
        if self.inner.offsets.is_local() {
            return Ok(self.inner.offsets.read_memory(queue));
        }
        requests::query_offset(&self.inner.instance, &self.inner.group, queue, true).await
    }

    /// One pull of `max` messages of `queue` from `offset`, selected by `expression`, without
    /// waiting for new messages: the low-level pull that ignores assignment and offsets.
    pub async fn pull(
        &self,
        queue: &MessageQueue,
        expression: impl Into<Expression>,
        offset: i64,
        max: i32,
    ) -> Result<PullResult> {
        let sub = expression.into().subscription_data(&queue.topic);
        requests::pull(
            &self.inner.instance,
            PullArgs {
                group: &self.inner.group,
                queue,
                subscription: &sub,
                offset,
                max_nums: max.max(1),
                sys_flag: pull_sys_flag::build(false, false, true, false, true),
                commit_offset: 0,
                suspend: Duration::ZERO,
                timeout: self.inner.instance.options().request_timeout,
                broker_id: 0,
            },
        )
        .await
    }

    /// Stops pulling, commits polled offsets and leaves the group.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if !inner.running.swap(false, Ordering::SeqCst) {
            return;
        }
        if inner.settings.auto_commit {
            let _ = self.commit().await;
        }
        inner.stop.cancel();
        for q in inner.queues.lock().drain().map(|(_, q)| q) {
            q.stop.cancel();
        }
        inner.instance.unregister_consumer(&inner.group).await;
        if inner.owns_instance {
            inner.instance.shutdown().await;
        }
        info!(group = %inner.group, "lite pull consumer stopped");
    }
}

impl LiteInner {
    fn seek_local(&self, queue: &MessageQueue, offset: i64) {
        let Some(q) = self.queues.lock().get(queue).cloned() else {
            return;
        };
        {
            let mut pos = q.position.lock();
            pos.generation += 1;
            pos.next_pull = Some(offset);
            pos.consumed = Some(offset);
        }
        self.offsets.update(queue, offset, false);
        q.seeked.notify_one();
    }

    async fn update_queues(self: &Arc<Self>, topic: &str, mine: Vec<MessageQueue>) {
        let wanted: HashSet<MessageQueue> = mine.iter().cloned().collect();
        let removed: Vec<Arc<LiteQueue>> = {
            let mut queues = self.queues.lock();
            let gone: Vec<MessageQueue> = queues
                .keys()
                .filter(|q| q.topic == topic && !wanted.contains(*q))
                .cloned()
                .collect();
            gone.iter().filter_map(|q| queues.remove(q)).collect()
        };
        for q in removed {
            q.stop.cancel();
            if let Some(c) = q.position.lock().consumed {
                if self.settings.auto_commit {
                    self.offsets.update(&q.queue, c, false);
                }
            }
            self.offsets
                .persist(&self.instance, std::slice::from_ref(&q.queue), false)
                .await;
            self.offsets.remove(&q.queue);
        }
        for mq in mine {
            let q = {
                let mut queues = self.queues.lock();
                if queues.contains_key(&mq) {
                    continue;
                }
                let q = Arc::new(LiteQueue {
                    queue: mq.clone(),
                    position: Mutex::new(Position {
                        next_pull: None,
                        consumed: None,
                        generation: 0,
                    }),
                    buffered: AtomicUsize::new(0),
                    seeked: Notify::new(),
                    stop: self.stop.child_token(),
                });
                queues.insert(mq, q.clone());
                q
            };
            tokio::spawn(pull_loop(self.clone(), q));
        }
    }
}

async fn pull_loop(inner: Arc<LiteInner>, q: Arc<LiteQueue>) {
    let s = &inner.settings;
    let pause = |d: Duration| {
        let q = q.clone();
        async move {
            tokio::select! {
                _ = q.stop.cancelled() => {}
                _ = q.seeked.notified() => {}
                _ = tokio::time::sleep(d) => {}
            }
        }
    };
    loop {
        if q.dropped() {
            return;
        }
        let (offset, generation) = {
            let pos = q.position.lock();
            (pos.next_pull, pos.generation)
        };
        let offset = match offset {
            Some(o) => o,
            None => {
                match start_offset(&inner.instance, &inner.offsets, s.consume_from, &q.queue).await
                {
                    Ok(o) => {
                        let mut pos = q.position.lock();
                        if pos.generation == generation && pos.next_pull.is_none() {
                            pos.next_pull = Some(o);
                            pos.consumed.get_or_insert(o);
                        }
                    }
                    Err(e) => {
                        debug!(queue = ?q.queue, error = %e, "cannot compute the start offset");
                        pause(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
        };
        if q.buffered.load(Ordering::Acquire) > s.pull_threshold_for_queue {
            pause(Duration::from_millis(50)).await;
            continue;
        }
        let Some(sub) = inner.subscriptions.read().get(&q.queue.topic).cloned() else {
            return;
        };
        let args = PullArgs {
            group: &inner.group,
            queue: &q.queue,
            subscription: &sub,
            offset,
            max_nums: s.pull_batch_size,
            sys_flag: pull_sys_flag::build(false, true, true, false, true),
            commit_offset: 0,
            suspend: s.broker_suspend,
            timeout: s.pull_timeout,
            broker_id: 0,
        };
        let result = tokio::select! {
            _ = q.stop.cancelled() => return,
            _ = q.seeked.notified() => continue,
            r = requests::pull(&inner.instance, args) => r,
        };
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                debug!(queue = ?q.queue, error = %e, "pull failed");
                pause(Duration::from_secs(1)).await;
                continue;
            }
        };
        let msgs = {
            let mut pos = q.position.lock();
            if pos.generation != generation {
                continue;
            }
            pos.next_pull = Some(r.next_begin_offset);
            match r.status {
                PullStatus::Found if !r.messages.is_empty() => r.messages,
                PullStatus::OffsetIllegal => {
                    pos.consumed = Some(r.next_begin_offset);
                    Vec::new()
                }
                _ => {
                    if q.buffered.load(Ordering::Acquire) == 0
                        && pos.consumed.is_some_and(|c| c < r.next_begin_offset)
                    {
                        pos.consumed = Some(r.next_begin_offset);
                    }
                    Vec::new()
                }
            }
        };
        if msgs.is_empty() {
            continue;
        }
        q.buffered.fetch_add(msgs.len(), Ordering::AcqRel);
        let batch = Batch {
            queue: q.clone(),
            generation,
            msgs,
        };
        tokio::select! {
            _ = q.stop.cancelled() => return,
            sent = inner.tx.send(batch) => if sent.is_err() { return },
        }
    }
}

async fn rebalance_loop(inner: Arc<LiteInner>) {
    loop {
        let topics: Vec<String> = inner.subscriptions.read().keys().cloned().collect();
        let mut complete = true;
        for topic in topics {
            match allocate(
                &inner.instance,
                &inner.group,
                inner.settings.message_model,
                &inner.settings.allocate_strategy,
                &topic,
            )
            .await
            {
                Some(mine) => inner.update_queues(&topic, mine).await,
                None => complete = false,
            }
        }
        let wait = if complete {
            inner.settings.rebalance_interval
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = inner.rebalance_now.notified() => {}
        }
    }
}

async fn commit_loop(inner: Arc<LiteInner>) {
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(inner.settings.auto_commit_interval) => {}
        }
        if inner.settings.auto_commit {
            let queues: Vec<MessageQueue> = inner.queues.lock().keys().cloned().collect();
            inner.offsets.persist(&inner.instance, &queues, false).await;
        }
    }
}
