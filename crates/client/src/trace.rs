//! Message trace (opt-in, RocketMQ's `enableMsgTrace`): producers record a Pub for every send,
//! push consumers a SubBefore and a SubAfter for every listener call, transactional producers
//! an EndTransaction; a background task batches the records and sends them to the trace topic
//! (`RMQ_SYS_TRACE_TOPIC` unless configured) in the Java client's format
//! ([`ferrymq_protocol::trace`]), keyed by the traced message ids so `queryMsgTraceById` finds
//! them.
//!
//! Tracing never slows or fails the traced call: records go through a bounded queue and are
//! dropped (and counted) when it is full or the trace topic cannot be written.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrymq_protocol::trace::TraceRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::instance::ClientInstance;
use crate::message::Message;
use crate::producer::Producer;

/// Records waiting to be sent; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Records per trace message at most, and how long a batch waits to fill.
const BATCH: usize = 100;
const LINGER: Duration = Duration::from_millis(50);
/// Java's cap on one trace message body.
const MAX_BODY: usize = 128 * 1024;

/// Where a client sends its trace records.
pub(crate) struct TraceDispatcher {
    tx: mpsc::Sender<TraceRecord>,
    dropped: AtomicU64,
    stop: CancellationToken,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for TraceDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceDispatcher")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl TraceDispatcher {
    /// Starts the sender: a producer of group `_INNER_TRACE_PRODUCER-<owner>` on `instance`.
    pub(crate) async fn start(
        instance: ClientInstance,
        owner_group: &str,
        topic: String,
    ) -> crate::Result<TraceDispatcher> {
        // Boxed: starting a producer may start a dispatcher (never for this one, which traces
        // nothing), and the future type may not contain itself.
        let producer = Box::pin(
            Producer::builder(format!("_INNER_TRACE_PRODUCER-{owner_group}"))
                .instance(instance)
                .start(),
        )
        .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(rx, producer, topic, stop.clone()));
        Ok(TraceDispatcher {
            tx,
            dropped: AtomicU64::new(0),
            stop,
            task: parking_lot::Mutex::new(Some(task)),
        })
    }

    /// Queues a record; never waits.
    pub(crate) fn record(&self, record: TraceRecord) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued (bounded) and stops.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<TraceRecord>,
    producer: Producer,
    topic: String,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        send(&producer, &topic, &batch).await;
    }
    // Stopping: whatever is still queued goes out first.
    let mut rest = Vec::new();
    while let Ok(r) = rx.try_recv() {
        rest.push(r);
    }
    for chunk in rest.chunks(BATCH) {
        send(&producer, &topic, chunk).await;
    }
    producer.shutdown().await;
}

/// One trace message per `MAX_BODY` of records, keyed by all their message ids and keys.
async fn send(producer: &Producer, topic: &str, records: &[TraceRecord]) {
    let mut body = String::new();
    let mut keys = BTreeSet::new();
    for r in records {
        r.encode_into(&mut body);
        keys.extend(r.index_keys().map(str::to_owned));
        if body.len() >= MAX_BODY {
            send_one(
                producer,
                topic,
                std::mem::take(&mut body),
                std::mem::take(&mut keys),
            )
            .await;
        }
    }
    if !body.is_empty() {
        send_one(producer, topic, body, keys).await;
    }
}

async fn send_one(producer: &Producer, topic: &str, body: String, keys: BTreeSet<String>) {
    let msg = Message::new(topic, body).with_keys(keys);
    if let Err(e) = producer.send(msg).await {
        debug!(%topic, error = %e, "trace message not sent");
    }
}
