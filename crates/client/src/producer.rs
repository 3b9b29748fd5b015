//! The producer: sends messages to the queues of a topic.
//!
//! ```no_run
//! # async fn demo() -> ferrymq_client::Result<()> {
//! use ferrymq_client::{Message, Producer};
//! let producer = Producer::builder("my-producer-group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     .start()
//!     .await?;
//! let result = producer.send(Message::new("TopicTest", "hello").with_tags("TagA")).await?;
//! println!("{} stored at {:?} offset {}", result.msg_id, result.queue, result.queue_offset);
//! producer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Queue selection is round robin over the topic's writable queues; a failed attempt is retried
//! (2 more times for sync and async sends, within the 3 s send timeout) on a queue of another
//! broker when there is one, for transport failures and the broker codes Java retries
//! (behaviour.md §2.2). With latency fault tolerance on, brokers that were slow or failing are
//! avoided for a while. Bodies over 4 KiB are compressed (zlib, or LZ4/ZSTD when asked); every message gets a `UNIQ_KEY`.
//! Ordered (partitioned) sends pick the queue with a selector — e.g. [`Producer::send_ordered`]
//! hashes a sharding key — and are not moved to another queue on failure.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tracing::debug;

use ferrymq_protocol::acl;
use ferrymq_protocol::body::MessageQueue;
use ferrymq_protocol::header::{SendMessageRequestHeader, SendMessageResponseHeader};
use ferrymq_protocol::message::batch::{self, BatchElement};
use ferrymq_protocol::message::{java_string_hash, keys, sys_flag};
use ferrymq_protocol::{naming, ExtFields, RemotingCommand, RequestCode, ResponseCode};

use crate::compression::Compression;
use crate::config::{client_option_setters, ClientOptions};
use crate::error::{ClientError, Result};
use crate::instance::{ClientInstance, TransactionCheck, DEFAULT_TOPIC_QUEUE_NUMS};
use crate::message::{now_ms, Message, MessageExt};
use crate::route::PublishInfo;

/// How a stored message was acknowledged (behaviour.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Stored (and flushed/replicated if the broker is configured to wait).
    SendOk,
    /// Stored, but the synchronous flush did not finish in time.
    FlushDiskTimeout,
    /// Stored, but the slave did not acknowledge in time.
    FlushSlaveTimeout,
    /// Stored, but no slave was available for synchronous replication.
    SlaveNotAvailable,
}

impl SendStatus {
    fn from_code(code: ResponseCode) -> Option<SendStatus> {
        match code {
            ResponseCode::Success => Some(SendStatus::SendOk),
            ResponseCode::FlushDiskTimeout => Some(SendStatus::FlushDiskTimeout),
            ResponseCode::FlushSlaveTimeout => Some(SendStatus::FlushSlaveTimeout),
            ResponseCode::SlaveNotAvailable => Some(SendStatus::SlaveNotAvailable),
            _ => None,
        }
    }
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// Acknowledgement level.
    pub status: SendStatus,
    /// The message's `UNIQ_KEY` (for batches: the elements' keys, comma-separated).
    pub msg_id: String,
    /// The broker-assigned id(s): store host + commit-log offset (comma-separated for batches).
    pub offset_msg_id: String,
    /// The queue written.
    pub queue: MessageQueue,
    /// Offset of the (first) message in the queue; for a transaction half message, its offset
    /// in the half topic.
    pub queue_offset: i64,
    /// Transaction id (the `UNIQ_KEY`) when the broker reports one.
    pub transaction_id: Option<String>,
    /// Region of the broker (`MSG_REGION`).
    pub region_id: Option<String>,
    /// For a message the broker parked for later delivery (a 5.x timer message): the handle
    /// that [`Producer::recall_message`] takes to cancel it before it is due.
    pub recall_handle: Option<String>,
}

/// A request's correlation id: a random UUID in its text form, as Java's `CorrelationIdUtil`.
fn correlation_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // Version 4 and the RFC 4122 variant, as `UUID.randomUUID()`.
    let variant = ["8", "9", "a", "b"][(b[8] & 3) as usize];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    )
}

/// Producer tunables (behaviour.md §11 defaults).
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Budget of one sync send including retries (3 s).
    pub send_timeout: Duration,
    /// Extra attempts of a sync send (2).
    pub retry_times: u32,
    /// Extra attempts of an async send (2).
    pub retry_times_async: u32,
    /// Bodies larger than this are compressed (4 KiB).
    pub compress_threshold: usize,
    /// The codec they are compressed with (zlib, as Java's `rocketmq.message.compressType`
    /// default; LZ4 and ZSTD are read by 5.x Java clients and ferrymq only).
    pub compression: Compression,
    /// Largest body (or batch) accepted (4 MiB).
    pub max_message_size: usize,
    /// Avoid brokers that recently failed or were slow (off, as in Java).
    pub latency_fault_tolerance: bool,
    /// Retry on another broker when a message was stored but not flushed/replicated in time.
    pub retry_another_broker_when_not_store_ok: bool,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            send_timeout: Duration::from_secs(3),
            retry_times: 2,
            retry_times_async: 2,
            compress_threshold: 4096,
            compression: Compression::Zlib,
            max_message_size: 4 * 1024 * 1024,
            latency_fault_tolerance: false,
            retry_another_broker_when_not_store_ok: false,
        }
    }
}

/// Builds and starts a [`Producer`].
#[derive(Debug)]
pub struct ProducerBuilder {
    group: String,
    options: ClientOptions,
    instance: Option<ClientInstance>,
    settings: ProducerSettings,
    /// Message trace: the trace topic, when on.
    trace_topic: Option<String>,
}

impl ProducerBuilder {
    client_option_setters!();

    /// Records a trace of every send to the trace topic (RocketMQ's `enableMsgTrace`).
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

    /// Budget of one sync send including its retries (default 3 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.settings.send_timeout = timeout;
        self
    }

    /// Extra attempts after a failed sync send (default 2).
    pub fn retry_times(mut self, n: u32) -> Self {
        self.settings.retry_times = n;
        self
    }

    /// Extra attempts after a failed async send (default 2).
    pub fn retry_times_async(mut self, n: u32) -> Self {
        self.settings.retry_times_async = n;
        self
    }

    /// Compress bodies with this codec (default zlib).
    pub fn compression(mut self, codec: Compression) -> Self {
        self.settings.compression = codec;
        self
    }

    /// Compress bodies larger than this many bytes (default 4096).
    pub fn compress_threshold(mut self, bytes: usize) -> Self {
        self.settings.compress_threshold = bytes;
        self
    }

    /// Refuse bodies larger than this (default 4 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// Avoid brokers that recently failed or answered slowly (default off).
    pub fn latency_fault_tolerance(mut self, on: bool) -> Self {
        self.settings.latency_fault_tolerance = on;
        self
    }

    /// Retry on another broker when a message was stored without the requested durability.
    pub fn retry_another_broker_when_not_store_ok(mut self, on: bool) -> Self {
        self.settings.retry_another_broker_when_not_store_ok = on;
        self
    }

    /// All tunables at once.
    pub fn settings(mut self, settings: ProducerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Starts the producer: registers its group with the client instance and heartbeats.
    pub async fn start(self) -> Result<Producer> {
        self.start_with_checker(None).await
    }

    pub(crate) async fn start_with_checker(
        self,
        checker: Option<Arc<dyn TransactionCheck>>,
    ) -> Result<Producer> {
        naming::validate_group(&self.group)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let (instance, owns_instance) = match self.instance {
            Some(i) => (i, false),
            None => (ClientInstance::start(self.options)?, true),
        };
        instance.register_producer(&self.group, checker)?;
        instance.send_heartbeat_to_all().await;
        let trace = match self.trace_topic {
            Some(topic) => Some(
                crate::trace::TraceDispatcher::start(instance.clone(), &self.group, topic).await?,
            ),
            None => None,
        };
        Ok(Producer {
            inner: Arc::new(ProducerInner {
                group: self.group,
                instance,
                owns_instance,
                settings: self.settings,
                trace,
                counter: AtomicUsize::new(rand::random::<u16>() as usize),
                faults: LatencyFaults::default(),
                running: AtomicBool::new(true),
            }),
        })
    }
}

struct ProducerInner {
    group: String,
    instance: ClientInstance,
    owns_instance: bool,
    settings: ProducerSettings,
    counter: AtomicUsize,
    faults: LatencyFaults,
    running: AtomicBool,
    trace: Option<crate::trace::TraceDispatcher>,
}

/// Sends messages; cheap to clone (clones share the producer).
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sync,
    Async,
    Oneway,
}

/// A message ready for the wire: body possibly compressed, flags computed.
struct Prepared {
    message: Message,
    body: Bytes,
    sys_flag: i32,
    batch: bool,
    /// For batches: the elements' UNIQ_KEYs, comma-joined.
    batch_ids: Option<String>,
}

/// The result of [`Producer::send_async`]: a spawned send, awaitable or droppable (the send
/// completes either way).
pub struct SendHandle(JoinHandle<Result<SendResult>>);

impl Future for SendHandle {
    type Output = Result<SendResult>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(result) => result,
            Err(_) => Err(ClientError::Shutdown),
        })
    }
}

impl std::fmt::Debug for SendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendHandle")
    }
}

impl Producer {
    /// A builder for a producer of `group`.
    pub fn builder(group: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            group: group.into(),
            options: ClientOptions::default(),
            instance: None,
            settings: ProducerSettings::default(),
            trace_topic: None,
        }
    }

    /// A producer of the instance's inner group (`CLIENT_INNER_PRODUCER`) that is not
    /// registered or heartbeated: consumers use it to re-send messages to retry topics.
    pub(crate) fn internal(instance: ClientInstance) -> Producer {
        Producer {
            inner: Arc::new(ProducerInner {
                group: naming::CLIENT_INNER_PRODUCER_GROUP.to_owned(),
                instance,
                owns_instance: false,
                settings: ProducerSettings::default(),
                counter: AtomicUsize::new(rand::random::<u16>() as usize),
                faults: LatencyFaults::default(),
                running: AtomicBool::new(true),
                trace: None,
            }),
        }
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// The client instance this producer runs on.
    pub fn instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    /// The settings in use.
    pub fn settings(&self) -> &ProducerSettings {
        &self.inner.settings
    }

    /// Sends and waits for the broker's acknowledgement, retrying on failure.
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        let prepared = self.prepare(msg)?;
        self.send_default(prepared, Mode::Sync)
            .await?
            .ok_or(ClientError::Shutdown)
    }

    /// Starts a send in the background; await the handle for the result, or drop it.
    pub fn send_async(&self, msg: Message) -> SendHandle {
        let me = self.clone();
        SendHandle(tokio::spawn(async move {
            let prepared = me.prepare(msg)?;
            me.send_default(prepared, Mode::Async)
                .await?
                .ok_or(ClientError::Shutdown)
        }))
    }

    /// Starts a send in the background and calls `callback` with its outcome.
    pub fn send_with_callback<F>(&self, msg: Message, callback: F)
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let handle = self.send_async(msg);
        tokio::spawn(async move { callback(handle.await) });
    }

    /// Request-reply (RocketMQ 4.6+): sends `msg` and waits at most `timeout` in all for the
    /// reply a consumer sends back with [`MessageExt::create_reply`]. The request carries a
    /// fresh `CORRELATION_ID`, this instance's id as `REPLY_TO_CLIENT`, and `TTL`; the broker
    /// that takes the reply pushes it straight to this instance.
    pub async fn request(&self, mut msg: Message, timeout: Duration) -> Result<MessageExt> {
        let started = Instant::now();
        let instance = &self.inner.instance;
        let correlation_id = correlation_id();
        msg.set_property(keys::CORRELATION_ID, correlation_id.clone());
        msg.set_property(
            keys::MESSAGE_REPLY_TO_CLIENT,
            instance.client_id().to_owned(),
        );
        msg.set_property(keys::MESSAGE_TTL, timeout.as_millis().to_string());
        if !instance.knows_route(msg.topic()) {
            // The brokers of a new route must know this instance before a reply comes.
            instance.publish_info(msg.topic()).await?;
            instance.send_heartbeat_to_all().await;
        }
        let topic = msg.topic().to_owned();
        let reply = instance.expect_reply(&correlation_id);
        // However this future ends (also dropped by the caller), the waiter is removed.
        struct Forget<'a>(&'a crate::instance::ClientInstance, &'a str);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget_reply(self.1);
            }
        }
        let _forget = Forget(instance, &correlation_id);
        let sent = match self.prepare(msg) {
            Ok(prepared) => {
                tokio::time::timeout(
                    timeout.saturating_sub(started.elapsed()),
                    self.send_default(prepared, Mode::Sync),
                )
                .await
            }
            Err(e) => Ok(Err(e)),
        };
        match sent {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Err(ClientError::Shutdown),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ClientError::Timeout(timeout)),
        }
        match tokio::time::timeout(timeout.saturating_sub(started.elapsed()), reply).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(ClientError::Shutdown),
            Err(_) => Err(ClientError::ReplyTimeout { topic, timeout }),
        }
    }

    /// Cancels a timer message that is not due yet (RECALL_MESSAGE, RocketMQ 5.3) by the
    /// [`SendResult::recall_handle`] its send returned; answers the recalled message's id. A
    /// message already delivered, or a handle of another topic, is refused by the broker
    /// (ILLEGAL_OPERATION).
    pub async fn recall_message(&self, topic: &str, recall_handle: &str) -> Result<String> {
        use ferrymq_protocol::header::{RecallMessageRequestHeader, RecallMessageResponseHeader};
        let handle = ferrymq_protocol::recall::RecallHandle::decode(recall_handle)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let instance = &self.inner.instance;
        let addr = instance
            .master_addr_or_refresh(&handle.broker_name, topic)
            .await?;
        let header = RecallMessageRequestHeader {
            producer_group: Some(self.inner.group.clone()),
            topic: topic.to_owned(),
            recall_handle: recall_handle.to_owned(),
            broker_name: Some(handle.broker_name.clone()),
        };
        let req = RemotingCommand::request_with_header(RequestCode::RecallMessage, &header);
        let resp = instance
            .invoke(&addr, req, self.inner.settings.send_timeout)
            .await?;
        if resp.response_code() != ResponseCode::Success {
            return Err(ClientError::broker(&addr, &resp));
        }
        let h: RecallMessageResponseHeader = resp
            .decode_header()
            .map_err(|e| ClientError::header(&addr, e))?;
        Ok(h.msg_id)
    }

    /// Sends without waiting for any acknowledgement (one attempt; delivery is not confirmed).
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        let prepared = self.prepare(msg)?;
        self.send_default(prepared, Mode::Oneway).await.map(|_| ())
    }

    /// Sends to a chosen queue (one attempt).
    pub async fn send_to_queue(&self, msg: Message, queue: &MessageQueue) -> Result<SendResult> {
        if msg.topic() != queue.topic {
            return Err(ClientError::InvalidArgument(format!(
                "message topic {} differs from queue topic {}",
                msg.topic(),
                queue.topic
            )));
        }
        let prepared = self.prepare(msg)?;
        let timeout = self.inner.settings.send_timeout;
        self.send_kernel(queue, &prepared, Mode::Sync, timeout)
            .await?
            .ok_or(ClientError::Shutdown)
    }

    /// Sends to the queue `selector` picks from the topic's writable queues (its index is taken
    /// modulo the queue count). One attempt: an ordered message must not change queue.
    pub async fn send_with_selector<S>(&self, msg: Message, selector: S) -> Result<SendResult>
    where
        S: FnOnce(&[MessageQueue], &Message) -> usize,
    {
        let info = self.inner.instance.publish_info(msg.topic()).await?;
        let index = selector(&info.queues, &msg) % info.queues.len();
        let queue = info.queues[index].clone();
        self.send_to_queue(msg, &queue).await
    }

    /// Sends to the queue chosen by hashing `sharding_key` (Java `SelectMessageQueueByHash`), so
    /// all messages with one key stay in order in one queue.
    pub async fn send_ordered(&self, msg: Message, sharding_key: &str) -> Result<SendResult> {
        let key = sharding_key.to_owned();
        self.send_with_selector(msg, move |queues, _| select_by_hash(&key, queues.len()))
            .await
    }

    /// Sends several messages of one topic as one request (SEND_BATCH_MESSAGE). They land
    /// consecutively in one queue. Delayed and retry-topic messages cannot be batched.
    pub async fn send_batch<I>(&self, msgs: I) -> Result<SendResult>
    where
        I: IntoIterator<Item = Message>,
    {
        let prepared = self.prepare_batch(msgs.into_iter().collect())?;
        self.send_default(prepared, Mode::Sync)
            .await?
            .ok_or(ClientError::Shutdown)
    }

    /// The queues this producer would send `topic` to.
    pub async fn publish_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(self
            .inner
            .instance
            .publish_info(topic)
            .await?
            .queues
            .clone())
    }

    /// Unregisters the group from the brokers; shuts the instance down if this producer
    /// created it.
    pub async fn shutdown(&self) {
        if !self.inner.running.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Some(trace) = &self.inner.trace {
            trace.shutdown().await;
        }
        self.inner
            .instance
            .unregister_producer(&self.inner.group)
            .await;
        if self.inner.owns_instance {
            self.inner.instance.shutdown().await;
        }
    }

    fn check_running(&self) -> Result<()> {
        if !self.inner.running.load(Ordering::Relaxed) || self.inner.instance.is_shutdown() {
            return Err(ClientError::Shutdown);
        }
        Ok(())
    }

    fn validate(&self, msg: &Message) -> Result<()> {
        naming::validate_topic(msg.topic())
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        if naming::is_send_forbidden(msg.topic()) {
            return Err(ClientError::InvalidMessage(format!(
                "sending to topic {} is forbidden",
                msg.topic()
            )));
        }
        if msg.body().is_empty() {
            return Err(ClientError::InvalidMessage(
                "the message body is empty".into(),
            ));
        }
        if msg.body().len() > self.inner.settings.max_message_size {
            return Err(ClientError::InvalidMessage(format!(
                "the message body is {} bytes, more than the maximum {}",
                msg.body().len(),
                self.inner.settings.max_message_size
            )));
        }
        Ok(())
    }

    fn prepare(&self, mut msg: Message) -> Result<Prepared> {
        self.check_running()?;
        self.validate(&msg)?;
        if msg.uniq_key().is_none() {
            msg.set_property(
                keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                self.inner.instance.next_uniq_id(),
            );
        }
        let mut flag = 0;
        let mut body = msg.body().clone();
        if body.len() > self.inner.settings.compress_threshold {
            let codec = self.inner.settings.compression;
            body = Bytes::from(codec.compress(&body)?);
            flag |= codec.sys_flag();
        }
        if msg
            .property(keys::TRANSACTION_PREPARED)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            flag |= sys_flag::TRANSACTION_PREPARED_TYPE;
        }
        Ok(Prepared {
            message: msg,
            body,
            sys_flag: flag,
            batch: false,
            batch_ids: None,
        })
    }

    fn prepare_batch(&self, msgs: Vec<Message>) -> Result<Prepared> {
        self.check_running()?;
        let Some(first) = msgs.first() else {
            return Err(ClientError::InvalidMessage("empty batch".into()));
        };
        let topic = first.topic().to_owned();
        let wait = first.wait_store_ok();
        if naming::is_retry_topic(&topic) {
            return Err(ClientError::InvalidMessage(
                "retry-topic messages cannot be batched".into(),
            ));
        }
        let mut ids = Vec::with_capacity(msgs.len());
        let mut encoded = Vec::with_capacity(msgs.len());
        for mut m in msgs {
            self.validate(&m)?;
            if m.topic() != topic {
                return Err(ClientError::InvalidMessage(
                    "all messages of a batch must have one topic".into(),
                ));
            }
            if m.delay_level() > 0 {
                return Err(ClientError::InvalidMessage(
                    "delayed messages cannot be batched".into(),
                ));
            }
            if m.wait_store_ok() != wait {
                return Err(ClientError::InvalidMessage(
                    "all messages of a batch must have the same WAIT setting".into(),
                ));
            }
            if m.uniq_key().is_none() {
                m.set_property(
                    keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                    self.inner.instance.next_uniq_id(),
                );
            }
            ids.push(m.uniq_key().unwrap_or_default().to_owned());
            encoded.push((m.flag(), m.body().clone(), m.encode_properties()));
        }
        let elements: Vec<BatchElement<'_>> = encoded
            .iter()
            .map(|(flag, body, props)| BatchElement {
                flag: *flag,
                body,
                properties: props,
            })
            .collect();
        let body = batch::encode(&elements)
            .map_err(|e| ClientError::InvalidMessage(format!("batch: {e}")))?;
        if body.len() > self.inner.settings.max_message_size {
            return Err(ClientError::InvalidMessage(format!(
                "the batch is {} bytes, more than the maximum {}",
                body.len(),
                self.inner.settings.max_message_size
            )));
        }
        let container = Message::new(topic, body.clone())
            .with_wait_store_ok(wait)
            .with_property(
                keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                self.inner.instance.next_uniq_id(),
            );
        Ok(Prepared {
            message: container,
            body: Bytes::from(body),
            sys_flag: 0,
            batch: true,
            batch_ids: Some(ids.join(",")),
        })
    }

    /// Round-robin selection with retries on another broker (behaviour.md §2.2).
    async fn send_default(&self, msg: Prepared, mode: Mode) -> Result<Option<SendResult>> {
        let settings = &self.inner.settings;
        let started = Instant::now();
        let topic = msg.message.topic();
        let mut info = self.inner.instance.publish_info(topic).await?;
        let attempts = match mode {
            Mode::Sync => 1 + settings.retry_times,
            Mode::Async => 1 + settings.retry_times_async,
            Mode::Oneway => 1,
        };
        let mut last_broker: Option<String> = None;
        let mut last_error = None;
        for attempt in 0..attempts {
            let Some(remaining) = settings.send_timeout.checked_sub(started.elapsed()) else {
                break;
            };
            if remaining.is_zero() {
                break;
            }
            let queue = self.select_queue(&info, last_broker.as_deref());
            let begin = Instant::now();
            match self.send_kernel(&queue, &msg, mode, remaining).await {
                Ok(Some(result)) => {
                    self.inner
                        .faults
                        .update(settings, &queue.broker_name, begin.elapsed(), false);
                    let retry_not_ok = result.status != SendStatus::SendOk
                        && settings.retry_another_broker_when_not_store_ok
                        && attempt + 1 < attempts;
                    if !retry_not_ok {
                        return Ok(Some(result));
                    }
                    last_error = None;
                    last_broker = Some(queue.broker_name);
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.inner
                        .faults
                        .update(settings, &queue.broker_name, begin.elapsed(), true);
                    if !e.is_retryable_send() {
                        return Err(e);
                    }
                    debug!(%topic, attempt, error = %e, "send failed, retrying");
                    last_error = Some(e);
                    last_broker = Some(queue.broker_name);
                    if let Ok(Some(_)) = self.inner.instance.update_route(topic).await {
                        if let Ok(fresh) = self.inner.instance.publish_info(topic).await {
                            info = fresh;
                        }
                    }
                }
            }
        }
        Err(last_error.unwrap_or(ClientError::Timeout(settings.send_timeout)))
    }

    fn select_queue(&self, info: &PublishInfo, last_broker: Option<&str>) -> MessageQueue {
        let queues = &info.queues;
        let n = queues.len();
        let next = || self.inner.counter.fetch_add(1, Ordering::Relaxed) % n;
        if self.inner.settings.latency_fault_tolerance {
            for _ in 0..n {
                let q = &queues[next()];
                if self.inner.faults.is_available(&q.broker_name)
                    && Some(q.broker_name.as_str()) != last_broker
                {
                    return q.clone();
                }
            }
        }
        if let Some(last) = last_broker {
            for _ in 0..n {
                let q = &queues[next()];
                if q.broker_name != last {
                    return q.clone();
                }
            }
        }
        queues[next()].clone()
    }

    /// One attempt against one queue.
    async fn send_kernel(
        &self,
        queue: &MessageQueue,
        msg: &Prepared,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Option<SendResult>> {
        let instance = &self.inner.instance;
        let m = &msg.message;
        let addr = instance
            .master_addr_or_refresh(&queue.broker_name, m.topic())
            .await?;
        let retry_topic = naming::is_retry_topic(m.topic());
        let header = SendMessageRequestHeader {
            producer_group: self.inner.group.clone(),
            topic: m.topic().to_owned(),
            default_topic: naming::AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
            queue_id: queue.queue_id,
            sys_flag: msg.sys_flag,
            born_timestamp: now_ms(),
            flag: m.flag(),
            properties: Some(m.encode_properties()),
            reconsume_times: Some(if retry_topic {
                m.property(keys::RECONSUME_TIME)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            } else {
                0
            }),
            unit_mode: Some(false),
            batch: Some(msg.batch),
            max_reconsume_times: if retry_topic {
                m.property(keys::MAX_RECONSUME_TIMES)
                    .and_then(|v| v.parse().ok())
            } else {
                None
            },
            broker_name: Some(queue.broker_name.clone()),
        };
        let code = if msg.batch {
            RequestCode::SendBatchMessage
        } else if m.is_reply() {
            RequestCode::SendReplyMessageV2
        } else {
            RequestCode::SendMessageV2
        };
        let mut req = RemotingCommand::request(code).with_body(msg.body.clone());
        // Sized for the 14 fields up front rather than grown by doubling on every send, with
        // room for the three fields a signing client adds.
        let text = header.properties.as_ref().map_or(0, String::len)
            + header.topic.len()
            + header.producer_group.len()
            + header.broker_name.as_ref().map_or(0, String::len)
            + 96
            + acl::SIGNING_ROOM;
        req.ext_fields = ExtFields::with_capacity(14 + 3, text);
        header.write_v2(&mut req.ext_fields);
        if mode == Mode::Oneway {
            instance.invoke_oneway(&addr, req).await?;
            return Ok(None);
        }
        let started = Instant::now();
        let resp = instance.invoke(&addr, req, timeout).await?;
        let Some(status) = SendStatus::from_code(resp.response_code()) else {
            return Err(ClientError::broker(&addr, &resp));
        };
        let h: SendMessageResponseHeader = resp
            .decode_header()
            .map_err(|e| ClientError::header(&addr, e))?;
        let msg_id = match &msg.batch_ids {
            Some(ids) => ids.clone(),
            None => m.uniq_key().unwrap_or_default().to_owned(),
        };
        let result = SendResult {
            status,
            msg_id,
            offset_msg_id: h.msg_id,
            queue: MessageQueue {
                topic: m.topic().to_owned(),
                broker_name: queue.broker_name.clone(),
                queue_id: h.queue_id,
            },
            queue_offset: h.queue_offset,
            transaction_id: h.transaction_id,
            region_id: h.msg_region,
            recall_handle: h.recall_handle.filter(|r| !r.is_empty()),
        };
        if let Some(trace) = &self.inner.trace {
            trace.record(self.pub_record(msg, &result, &addr, started.elapsed()));
        }
        Ok(Some(result))
    }

    /// Records an EndTransaction trace (when tracing is on) for a verdict sent to `broker_addr`.
    pub(crate) fn trace_end_transaction(
        &self,
        topic: &str,
        result: &SendResult,
        state: &str,
        broker_addr: &str,
    ) {
        use ferrymq_protocol::trace::{message_type, TraceRecord, TraceType};
        let Some(trace) = &self.inner.trace else {
            return;
        };
        let mut r = TraceRecord::new(TraceType::EndTransaction);
        r.timestamp = now_ms();
        r.region_id = result
            .region_id
            .clone()
            .unwrap_or_else(|| "DefaultRegion".to_owned());
        r.group = self.inner.group.clone();
        r.topic = topic.to_owned();
        r.msg_id = result.msg_id.clone();
        r.store_host = broker_addr.to_owned();
        r.msg_type = message_type::TRANS_HALF;
        r.transaction_id = result
            .transaction_id
            .clone()
            .unwrap_or_else(|| result.msg_id.clone());
        r.transaction_state = state.to_owned();
        trace.record(r);
    }

    /// The Pub trace record of one acknowledged send attempt.
    fn pub_record(
        &self,
        msg: &Prepared,
        result: &SendResult,
        broker_addr: &str,
        cost: Duration,
    ) -> ferrymq_protocol::trace::TraceRecord {
        use ferrymq_protocol::trace::{message_type, TraceRecord, TraceType};
        let m = &msg.message;
        let mut r = TraceRecord::new(TraceType::Pub);
        r.timestamp = now_ms();
        r.region_id = result
            .region_id
            .clone()
            .unwrap_or_else(|| "DefaultRegion".to_owned());
        r.group = self.inner.group.clone();
        r.topic = m.topic().to_owned();
        r.msg_id = result.msg_id.clone();
        r.tags = m.tags().unwrap_or_default().to_owned();
        r.keys = m.keys().join(" ");
        r.store_host = broker_addr.to_owned();
        r.body_length = m.body().len() as i64;
        r.cost_time = cost.as_millis() as i64;
        r.msg_type = if m.property(keys::TRANSACTION_PREPARED) == Some("true") {
            message_type::TRANS_HALF
        } else if m
            .property(keys::DELAY_TIME_LEVEL)
            .is_some_and(|l| l.trim() != "0")
        {
            message_type::DELAY
        } else {
            message_type::NORMAL
        };
        r.offset_msg_id = result.offset_msg_id.clone();
        r.success = result.status == SendStatus::SendOk;
        r.client_host = self.inner.instance.client_id().to_owned();
        r
    }
}

/// Java `SelectMessageQueueByHash`: `abs(key.hashCode() % n)`.
pub fn select_by_hash(key: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (java_string_hash(key) % n as i32).unsigned_abs() as usize
}

/// Brokers to avoid after slow or failed sends (Java `LatencyFaultTolerance`, 5.x thresholds).
#[derive(Default)]
struct LatencyFaults {
    available_after: Mutex<HashMap<String, Instant>>,
}

/// Latency thresholds (ms) and how long a broker that slow is avoided (ms).
const LATENCY_MAX: [u64; 7] = [50, 100, 550, 1800, 3000, 5000, 15000];
const NOT_AVAILABLE: [u64; 7] = [0, 0, 2000, 5000, 6000, 10000, 30000];

/// How long to avoid a broker that answered after `latency_ms`.
fn not_available_for(latency_ms: u64) -> Duration {
    let ms = LATENCY_MAX
        .iter()
        .zip(NOT_AVAILABLE)
        .rev()
        .find(|(max, _)| latency_ms >= **max)
        .map(|(_, na)| na)
        .unwrap_or(0);
    Duration::from_millis(ms)
}

impl LatencyFaults {
    fn update(&self, settings: &ProducerSettings, broker: &str, latency: Duration, failed: bool) {
        if !settings.latency_fault_tolerance {
            return;
        }
        let latency_ms = if failed {
            10_000
        } else {
            latency.as_millis() as u64
        };
        let until = Instant::now() + not_available_for(latency_ms);
        self.available_after.lock().insert(broker.to_owned(), until);
    }

    fn is_available(&self, broker: &str) -> bool {
        self.available_after
            .lock()
            .get(broker)
            .is_none_or(|t| Instant::now() >= *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_selection_matches_java() {
        // "abc".hashCode() = 96354; 96354 % 4 = 2.
        assert_eq!(select_by_hash("abc", 4), 2);
        // "polygenelubricants".hashCode() = Integer.MIN_VALUE; MIN % 3 = -2 → 2.
        assert_eq!(select_by_hash("polygenelubricants", 3), 2);
        assert_eq!(select_by_hash("x", 0), 0);
    }

    #[test]
    fn latency_buckets() {
        assert_eq!(not_available_for(10), Duration::ZERO);
        assert_eq!(not_available_for(600), Duration::from_secs(2));
        assert_eq!(not_available_for(10_000), Duration::from_secs(10));
        assert_eq!(not_available_for(20_000), Duration::from_secs(30));
        let faults = LatencyFaults::default();
        let on = ProducerSettings {
            latency_fault_tolerance: true,
            ..Default::default()
        };
        faults.update(&on, "b", Duration::from_millis(1), true);
        assert!(!faults.is_available("b"));
        assert!(faults.is_available("a"));
        faults.update(&on, "b", Duration::from_millis(1), false);
        assert!(faults.is_available("b"));
    }
}
