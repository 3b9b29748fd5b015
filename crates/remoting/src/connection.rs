//! A live remoting connection: a reader task, a writer task and a table of calls awaiting their
//! responses.
//!
//! The reader decodes frames; responses complete the matching pending call by opaque, requests
//! run concurrently (one task each, bounded per connection) and their responses go back through
//! the writer. The writer owns the socket's write half alone, batches small frames into one
//! write, and writes large bodies (pulled records) straight from their buffers without copying.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use ferrymq_protocol::codec::{encode_frame_head, RemotingCodec, DEFAULT_MAX_FRAME};
use ferrymq_protocol::command::{FLAG_ONEWAY, FLAG_RESPONSE};
use ferrymq_protocol::{RemotingCommand, ResponseCode, SerializeType};

use crate::tls::MaybeTlsStream;
use crate::TransportError;

/// The halves of a socket, plaintext or TLS. Plaintext TCP splits without a lock; a TLS stream
/// shares one session between the halves.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Serves requests that arrive on a connection.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request. The transport copies the opaque and sets the response flag on what
    /// is returned; it sends nothing for one-way requests or when `None` is returned. Unknown
    /// codes should get [`RemotingCommand::unsupported`].
    fn handle(
        &self,
        conn: &Connection,
        request: RemotingCommand,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send;

    /// Called once when the connection has closed.
    fn on_connection_closed(&self, _conn: &Connection) {}
}

type BoxFuture = Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send>>;

/// Object-safe form of [`RequestHandler`], so a connection need not be generic.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn handle_boxed(self: Arc<Self>, conn: Connection, request: RemotingCommand) -> BoxFuture;
    fn closed(&self, conn: &Connection);
}

impl<H: RequestHandler> ErasedHandler for H {
    fn handle_boxed(self: Arc<Self>, conn: Connection, request: RemotingCommand) -> BoxFuture {
        Box::pin(async move { self.handle(&conn, request).await })
    }
    fn closed(&self, conn: &Connection) {
        self.on_connection_closed(conn)
    }
}

/// A request handler behind a pointer, for a server that hands some request codes to another
/// component it hosts (a NameServer with an embedded controller) without being generic over it.
#[derive(Clone)]
pub struct SharedHandler(Arc<dyn ErasedHandler>);

impl SharedHandler {
    pub fn new<H: RequestHandler>(handler: Arc<H>) -> SharedHandler {
        SharedHandler(handler)
    }
}

impl std::fmt::Debug for SharedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedHandler")
    }
}

impl RequestHandler for SharedHandler {
    async fn handle(&self, conn: &Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        self.0.clone().handle_boxed(conn.clone(), request).await
    }

    fn on_connection_closed(&self, conn: &Connection) {
        self.0.closed(conn)
    }
}

/// Tunables of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Close when nothing was read or written for this long (server side: 120 s).
    pub idle_timeout: Option<Duration>,
    /// Requests handled concurrently; beyond this a request gets SYSTEM_BUSY.
    pub max_in_flight: usize,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Header serialization of responses; `None` mirrors the request's. JSON by default, the
    /// one form every client (C++ included) reads.
    pub reply_serialize_type: Option<SerializeType>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            idle_timeout: None,
            max_in_flight: 10_000,
            max_frame: DEFAULT_MAX_FRAME,
            reply_serialize_type: Some(SerializeType::Json),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(1);

/// Bodies at least this large are written from their own buffers instead of being copied.
const ZERO_COPY_BODY: usize = 16 * 1024;
/// Frames queued for one write are flushed once the batch buffer reaches this size.
const WRITE_BATCH: usize = 256 * 1024;
/// Requests awaiting answers on a connection at which its writer, before writing, waits once for
/// other senders' frames so that one write carries them all.
const BATCH_WHEN_AWAITING: usize = 16;
/// Requests a connection reader serves between yields, so that the writer sends their responses
/// while the rest are served: a peer with many requests in flight gets its first answers early
/// instead of all of them after the whole batch.
const YIELD_EVERY: u32 = 16;
/// Outbound frames a connection buffers before senders wait (back-pressure on slow peers).
const OUTBOUND_QUEUE: usize = 4096;

struct Shared {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    outbound: mpsc::Sender<RemotingCommand>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    closed: CancellationToken,
    epoch: Instant,
    last_active_ms: AtomicU64,
    tls: bool,
}

/// A handle to a live connection; cheap to clone.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl Connection {
    /// Starts the reader and writer tasks for `stream`. `stop` ends reading (server shutdown);
    /// the connection then finishes in-flight requests, flushes and closes.
    pub(crate) fn spawn(
        stream: MaybeTlsStream,
        handler: Arc<dyn ErasedHandler>,
        config: ConnectionConfig,
        stop: CancellationToken,
    ) -> std::io::Result<Connection> {
        let peer = stream.tcp().peer_addr()?;
        let local = stream.tcp().local_addr()?;
        let _ = stream.tcp().set_nodelay(true);
        let tls = stream.is_tls();
        let (rd, wr): (ReadHalf, WriteHalf) = match stream {
            MaybeTlsStream::Plain(tcp) => {
                let (rd, wr) = tcp.into_split();
                (Box::new(rd), Box::new(wr))
            }
            tls => {
                let (rd, wr) = tokio::io::split(tls);
                (Box::new(rd), Box::new(wr))
            }
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let conn = Connection {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                local,
                outbound: tx,
                pending: Mutex::new(HashMap::new()),
                closed: CancellationToken::new(),
                epoch: Instant::now(),
                last_active_ms: AtomicU64::new(0),
                tls,
            }),
        };
        tokio::spawn(write_loop(wr, rx, conn.clone()));
        tokio::spawn(read_loop(rd, conn.clone(), handler, config, stop));
        Ok(conn)
    }

    /// Process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Whether the socket runs TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// Closes the connection; pending calls fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.shared.closed.cancel();
    }

    /// Queues a command for writing as it is (responses, or requests whose opaque is set).
    pub async fn send(&self, cmd: RemotingCommand) -> Result<(), TransportError> {
        if self.is_closed() {
            return Err(TransportError::ConnectionClosed);
        }
        self.shared
            .outbound
            .send(cmd)
            .await
            .map_err(|_| TransportError::ConnectionClosed)
    }

    /// Sends a request and waits for its response.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, TransportError> {
        let opaque = NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        request.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(opaque, tx);
        // The close path cancels first and drains the table second, so a call registered after
        // the drain sees the cancellation here.
        if self.is_closed() {
            self.pending().remove(&opaque);
            return Err(TransportError::ConnectionClosed);
        }
        if let Err(e) = self.send(request).await {
            self.pending().remove(&opaque);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(TransportError::ConnectionClosed),
            Err(_) => {
                self.pending().remove(&opaque);
                Err(TransportError::Timeout(timeout))
            }
        }
    }

    /// Sends a one-way request: no response is expected or awaited.
    pub async fn invoke_oneway(&self, mut request: RemotingCommand) -> Result<(), TransportError> {
        request.opaque = NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed);
        request.flag = (request.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        self.send(request).await
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<RemotingCommand>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn touch(&self) {
        let ms = self.shared.epoch.elapsed().as_millis() as u64;
        self.shared.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(
            now.saturating_sub(self.shared.last_active_ms.load(Ordering::Relaxed)),
        )
    }

    fn complete(&self, response: RemotingCommand) {
        match self.pending().remove(&response.opaque) {
            Some(tx) => {
                let _ = tx.send(response);
            }
            None => debug!(
                peer = %self.shared.peer,
                opaque = response.opaque,
                "response for an unknown or timed-out request dropped"
            ),
        }
    }

    fn fail_pending(&self) {
        // Dropping the senders wakes every waiter with ConnectionClosed.
        self.pending().clear();
    }
}

async fn read_loop(
    rd: ReadHalf,
    conn: Connection,
    handler: Arc<dyn ErasedHandler>,
    config: ConnectionConfig,
    stop: CancellationToken,
) {
    let mut frames = FramedRead::new(rd, RemotingCodec::new(config.max_frame));
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let idle = config.idle_timeout;
    let far_future = Duration::from_secs(86_400 * 365);
    let mut served_since_yield = 0;
    conn.touch();
    loop {
        let wait = idle.map_or(far_future, |t| t.saturating_sub(conn.idle_for()));
        tokio::select! {
            _ = conn.shared.closed.cancelled() => break,
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {
                if idle.is_some_and(|t| conn.idle_for() >= t) {
                    debug!(peer = %conn.shared.peer, "closing idle connection");
                    break;
                }
            }
            frame = frames.next() => match frame {
                None => break,
                Some(Err(e)) => {
                    warn!(peer = %conn.shared.peer, error = %e, "closing connection after a bad frame");
                    break;
                }
                Some(Ok(cmd)) => {
                    conn.touch();
                    if cmd.is_response() {
                        conn.complete(cmd);
                    } else {
                        dispatch(&conn, &handler, &in_flight, &config, cmd).await;
                        served_since_yield += 1;
                        if served_since_yield == YIELD_EVERY {
                            served_since_yield = 0;
                            tokio::task::yield_now().await;
                        }
                    }
                }
            },
        }
    }
    if stop.is_cancelled() && !conn.is_closed() {
        // Graceful shutdown: let requests already accepted finish and reach the writer.
        let all = u32::try_from(config.max_in_flight).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(3), in_flight.acquire_many(all)).await;
    }
    conn.close();
    conn.fail_pending();
    handler.closed(&conn);
}

async fn dispatch(
    conn: &Connection,
    handler: &Arc<dyn ErasedHandler>,
    in_flight: &Arc<Semaphore>,
    config: &ConnectionConfig,
    request: RemotingCommand,
) {
    let oneway = request.is_oneway();
    let opaque = request.opaque;
    let reply_type = config
        .reply_serialize_type
        .unwrap_or(request.serialize_type);
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        if !oneway {
            let busy = RemotingCommand::error_response(
                &request,
                ResponseCode::SystemBusy,
                "[OVERLOAD]system busy, start flow control for a while",
            );
            let _ = conn.send(with_reply_fields(busy, opaque, reply_type)).await;
        }
        return;
    };
    let conn = conn.clone();
    let mut future = handler.clone().handle_boxed(conn.clone(), request);
    // Most requests (sends under ASYNC_FLUSH, heartbeats, offset commits) complete without
    // waiting: answer those here rather than paying for a task, its scheduling and a wake-up.
    // Only requests that must wait (long polls, flush waits, calls to other servers) get a task.
    if let Poll::Ready(response) = futures::poll!(future.as_mut()) {
        drop(permit);
        if let (false, Some(response)) = (oneway, response) {
            let _ = conn
                .send(with_reply_fields(response, opaque, reply_type))
                .await;
        }
        return;
    }
    tokio::spawn(async move {
        let response = future.await;
        drop(permit);
        if let (false, Some(response)) = (oneway, response) {
            let _ = conn
                .send(with_reply_fields(response, opaque, reply_type))
                .await;
        }
    });
}

fn with_reply_fields(
    mut response: RemotingCommand,
    opaque: i32,
    ty: SerializeType,
) -> RemotingCommand {
    response.opaque = opaque;
    response.flag |= FLAG_RESPONSE;
    response.serialize_type = ty;
    response
}

async fn write_loop(mut wr: WriteHalf, mut rx: mpsc::Receiver<RemotingCommand>, conn: Connection) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            cmd = rx.recv() => cmd,
            _ = conn.shared.closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        // Tokio runs a woken task next, so the sender that queued `first` woke this task at
        // once and the queue holds that one frame: a write (a syscall, a TCP segment, a TLS
        // record) per request. With many requests awaiting answers the pipe is full anyway, so
        // one yield, letting the other ready tasks queue theirs, costs no latency; with few, a
        // frame that waited for company would only stall the peer.
        if rx.is_empty() && conn.pending().len() >= BATCH_WHEN_AWAITING {
            tokio::task::yield_now().await;
        }
        let mut next = Some(first);
        let mut failed = false;
        while let Some(cmd) = next.take() {
            if write_command(&mut wr, &mut buf, &cmd).await.is_err() {
                failed = true;
                break;
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if failed || flush(&mut wr, &mut buf).await.is_err() {
            conn.close();
            break;
        }
        conn.touch();
    }
    // Responses queued before the close still go out (graceful shutdown).
    while let Ok(cmd) = rx.try_recv() {
        if write_command(&mut wr, &mut buf, &cmd).await.is_err() {
            break;
        }
    }
    let _ = flush(&mut wr, &mut buf).await;
    let _ = wr.shutdown().await;
}

async fn write_command(
    wr: &mut WriteHalf,
    buf: &mut BytesMut,
    cmd: &RemotingCommand,
) -> std::io::Result<()> {
    if let Err(e) = encode_frame_head(cmd, buf) {
        warn!(code = cmd.code, error = %e, "a command cannot be encoded");
        if cmd.is_response() {
            // The requester is waiting: tell it why instead of leaving it to time out.
            let mut error = RemotingCommand::response_to(cmd, ResponseCode::SystemError);
            error.remark = Some(format!("response cannot be encoded: {e}"));
            error.flag = cmd.flag;
            encode_frame_head(&error, buf).map_err(std::io::Error::other)?;
        }
        return Ok(());
    }
    if cmd.body.len() < ZERO_COPY_BODY {
        for part in cmd.body.parts() {
            buf.extend_from_slice(part);
        }
        return Ok(());
    }
    flush(wr, buf).await?;
    for part in cmd.body.parts() {
        wr.write_all(part).await?;
    }
    Ok(())
}

async fn flush(wr: &mut WriteHalf, buf: &mut BytesMut) -> std::io::Result<()> {
    if !buf.is_empty() {
        wr.write_all(buf).await?;
        buf.clear();
    }
    Ok(())
}
