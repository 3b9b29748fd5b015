//! What a producer hands the store and what it gets back: [`MessageInner`] / [`MessageBatch`]
//! (RocketMQ's MessageExtBrokerInner / MessageExtBatch), [`PutMessageResult`], and the
//! [`PutHandle`] future that resolves once the append (and, under SYNC_FLUSH, the flush) is done.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use ferrymq_protocol::message::msg_id::write_offset_msg_id;
use tokio::sync::oneshot;

/// One message to append. The store fills queue offset, physical offset, store timestamp.
#[derive(Debug, Clone)]
pub struct MessageInner {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub body: Bytes,
    /// Encoded properties string (see `ferrymq_protocol::message::properties`).
    pub properties: String,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
}

impl MessageInner {
    /// A message with loopback hosts and no properties (tests, tools, internal topics).
    pub fn new(topic: impl Into<String>, queue_id: i32, body: impl Into<Bytes>) -> MessageInner {
        MessageInner {
            topic: topic.into(),
            queue_id,
            flag: 0,
            body: body.into(),
            properties: String::new(),
            sys_flag: 0,
            born_timestamp: crate::util::now_ms(),
            born_host: SocketAddr::from(([127, 0, 0, 1], 0)),
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }
}

/// A SEND_BATCH_MESSAGE: `body` is the producer's batch encoding (message-format.md §5); every
/// element becomes its own record sharing the fields below, with consecutive queue offsets.
#[derive(Debug, Clone)]
pub struct MessageBatch {
    pub topic: String,
    pub queue_id: i32,
    pub body: Bytes,
    /// Batch-level properties: only consulted for WAIT; elements keep their own properties.
    pub properties: String,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
}

/// Java `PutMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMessageStatus {
    PutOk,
    /// Stored, but not flushed within `sync_flush_timeout`.
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
    /// Shut down, or writes refused because the disk is above the warning ratio.
    ServiceNotAvailable,
    CreateMappedFileFailed,
    MessageIllegal,
    PropertiesSizeExceeded,
    OsPageCacheBusy,
    /// Not written: it waited in the append queue longer than `wait_time_in_queue`.
    QueueTimeout,
    UnknownError,
}

impl PutMessageStatus {
    /// The Java enum constant name.
    pub fn as_str(self) -> &'static str {
        match self {
            PutMessageStatus::PutOk => "PUT_OK",
            PutMessageStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            PutMessageStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            PutMessageStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
            PutMessageStatus::ServiceNotAvailable => "SERVICE_NOT_AVAILABLE",
            PutMessageStatus::CreateMappedFileFailed => "CREATE_MAPPED_FILE_FAILED",
            PutMessageStatus::MessageIllegal => "MESSAGE_ILLEGAL",
            PutMessageStatus::PropertiesSizeExceeded => "PROPERTIES_SIZE_EXCEEDED",
            PutMessageStatus::OsPageCacheBusy => "OS_PAGE_CACHE_BUSY",
            PutMessageStatus::QueueTimeout => "QUEUE_TIMEOUT",
            PutMessageStatus::UnknownError => "UNKNOWN_ERROR",
        }
    }

    /// Whether the message is in the commit log (PUT_OK and the timeouts).
    pub fn is_stored(self) -> bool {
        matches!(
            self,
            PutMessageStatus::PutOk
                | PutMessageStatus::FlushDiskTimeout
                | PutMessageStatus::FlushSlaveTimeout
                | PutMessageStatus::SlaveNotAvailable
        )
    }
}

impl std::fmt::Display for PutMessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an append landed (Java `AppendMessageResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessageResult {
    /// Commit-log offset of the (first) record.
    pub wrote_offset: i64,
    /// Bytes written (all records of a batch, excluding any end-of-file marker).
    pub wrote_bytes: usize,
    /// Queue offset of the (first) message.
    pub logics_offset: i64,
    pub store_timestamp: i64,
    pub msg_num: usize,
    pub store_host: SocketAddr,
    /// Commit-log offset of every batch element (empty for a single message).
    pub element_offsets: Vec<i64>,
}

impl AppendMessageResult {
    /// offsetMsgId(s): one id, or the comma-joined ids of a batch in element order.
    pub fn msg_id(&self) -> String {
        let mut out = String::with_capacity(33 * self.msg_num.max(1));
        if self.element_offsets.is_empty() {
            write_offset_msg_id(&mut out, &self.store_host, self.wrote_offset);
        } else {
            for (i, off) in self.element_offsets.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_offset_msg_id(&mut out, &self.store_host, *off);
            }
        }
        out
    }

    /// Commit-log offset just past the last record.
    pub fn end_offset(&self) -> i64 {
        self.wrote_offset + self.wrote_bytes as i64
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutMessageResult {
    pub status: PutMessageStatus,
    /// Present when the message was stored.
    pub append: Option<AppendMessageResult>,
    /// Why a put was refused, for the response remark.
    pub remark: Option<&'static str>,
}

impl PutMessageResult {
    pub fn failed(status: PutMessageStatus, remark: &'static str) -> PutMessageResult {
        PutMessageResult {
            status,
            append: None,
            remark: Some(remark),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == PutMessageStatus::PutOk
    }
}

/// Resolves to the put's result. Created by `put_message`/`put_messages`, which enqueue the
/// append immediately, so appends happen in call order whether or not the handle is polled.
pub struct PutHandle {
    pub(crate) rx: Option<oneshot::Receiver<PutMessageResult>>,
    pub(crate) ready: Option<PutMessageResult>,
    /// SYNC_MASTER: the slave acknowledgement, combined with the flush outcome at the end.
    pub(crate) replica: Option<oneshot::Receiver<PutMessageStatus>>,
}

impl PutHandle {
    pub(crate) fn ready(result: PutMessageResult) -> PutHandle {
        PutHandle {
            rx: None,
            ready: Some(result),
            replica: None,
        }
    }

    pub(crate) fn with_replica(
        mut self,
        replica: Option<oneshot::Receiver<PutMessageStatus>>,
    ) -> PutHandle {
        self.replica = replica;
        self
    }

    /// Blocks the current thread until the result is known. Must not be called from async code
    /// (await the handle there).
    pub fn wait(mut self) -> PutMessageResult {
        let mut r = match (self.ready.take(), self.rx.take()) {
            (Some(r), _) => r,
            (None, Some(rx)) => rx.blocking_recv().unwrap_or_else(|_| lost()),
            (None, None) => lost(),
        };
        if let Some(rx) = self.replica.take() {
            combine_replica(&mut r, rx.blocking_recv());
        }
        r
    }
}

/// As RocketMQ combines the flush and replica futures: a replication failure is what the
/// producer hears, even when the flush succeeded.
fn combine_replica(
    r: &mut PutMessageResult,
    replica: Result<PutMessageStatus, oneshot::error::RecvError>,
) {
    let status = replica.unwrap_or(PutMessageStatus::FlushSlaveTimeout);
    if status != PutMessageStatus::PutOk && r.status.is_stored() {
        r.status = status;
    }
}

fn lost() -> PutMessageResult {
    PutMessageResult::failed(
        PutMessageStatus::UnknownError,
        "store stopped before answering",
    )
}

impl Future for PutHandle {
    type Output = PutMessageResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PutMessageResult> {
        if let Some(rx) = self.rx.as_mut() {
            let r = std::task::ready!(Pin::new(rx).poll(cx)).unwrap_or_else(|_| lost());
            self.rx = None;
            self.ready = Some(r);
        }
        let Some(mut r) = self.ready.take() else {
            return Poll::Ready(lost());
        };
        if let Some(rx) = self.replica.as_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Pending => {
                    self.ready = Some(r);
                    return Poll::Pending;
                }
                Poll::Ready(status) => {
                    self.replica = None;
                    combine_replica(&mut r, status);
                }
            }
        }
        Poll::Ready(r)
    }
}
