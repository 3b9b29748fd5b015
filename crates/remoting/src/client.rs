//! The dialling side: one connection per remote address, created on first use and re-created
//! after it closes, so callers only name addresses. Callers that find no connection at the same
//! time wait for one dial instead of each opening a socket (a producer's senders all start at
//! once; dozens of racing connects, all but one closed again, used to stall its first sends).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use ferrymq_protocol::acl::{Credentials, Signer};
use ferrymq_protocol::RemotingCommand;

use crate::connection::{ConnectionConfig, ErasedHandler};
use crate::tls::{ClientTls, MaybeTlsStream};
use crate::{Connection, RequestHandler, TransportError};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub connection: ConnectionConfig,
    /// Dial with TLS (RocketMQ's `tls.enable`).
    pub tls: Option<ClientTls>,
    /// Sign every request for ACL (Java's `AclClientRPCHook`).
    pub credentials: Option<Credentials>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            connection: ConnectionConfig::default(),
            tls: None,
            credentials: None,
        }
    }
}

/// Answers every server-initiated request with REQUEST_CODE_NOT_SUPPORTED.
struct NoRequests;

impl RequestHandler for NoRequests {
    async fn handle(
        &self,
        _conn: &Connection,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        Some(RemotingCommand::unsupported(&request))
    }
}

/// Serialises the dials of one address; holds why the last one failed.
type DialGate = tokio::sync::Mutex<Option<DialFailure>>;

/// A failed dial, kept to fail the callers that waited for it the same way.
enum DialFailure {
    InvalidAddress,
    Connect(std::io::ErrorKind, String),
    Other(String),
}

impl DialFailure {
    fn of(e: &TransportError) -> DialFailure {
        match e {
            TransportError::InvalidAddress(_) => DialFailure::InvalidAddress,
            TransportError::Connect { source, .. } => {
                DialFailure::Connect(source.kind(), source.to_string())
            }
            other => DialFailure::Other(other.to_string()),
        }
    }

    fn error(&self, addr: &str) -> TransportError {
        let source = match self {
            DialFailure::InvalidAddress => return TransportError::InvalidAddress(addr.to_owned()),
            DialFailure::Connect(kind, message) => std::io::Error::new(*kind, message.clone()),
            DialFailure::Other(message) => std::io::Error::other(message.clone()),
        };
        TransportError::Connect {
            addr: addr.to_owned(),
            source,
        }
    }
}

struct Inner {
    config: ClientConfig,
    /// Prepared once from `config.credentials`.
    signer: Option<Signer>,
    handler: Arc<dyn ErasedHandler>,
    connections: Mutex<HashMap<String, Connection>>,
    /// One dial at a time per address (entries live only while a dial is wanted).
    dialling: Mutex<HashMap<String, Arc<DialGate>>>,
    /// Stops every connection when the client shuts down.
    stop: CancellationToken,
}

/// A remoting client; cheap to clone, all clones share connections.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

impl RemotingClient {
    /// A client that does not serve requests from servers.
    pub fn new(config: ClientConfig) -> Self {
        Self::with_handler(config, Arc::new(NoRequests))
    }

    /// A client whose connections hand server-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED,
    /// CHECK_TRANSACTION_STATE, …) to `handler`.
    pub fn with_handler<H: RequestHandler>(config: ClientConfig, handler: Arc<H>) -> Self {
        RemotingClient {
            inner: Arc::new(Inner {
                signer: config.credentials.as_ref().map(Signer::new),
                config,
                handler,
                connections: Mutex::new(HashMap::new()),
                dialling: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The open connection to `addr`, dialling it if there is none.
    pub async fn connection(&self, addr: &str) -> Result<Connection, TransportError> {
        if let Some(conn) = self.cached(addr) {
            return Ok(conn);
        }
        let gate = self.dialling().entry(addr.to_owned()).or_default().clone();
        let result = {
            let mut failed = gate.lock().await;
            // Whoever held the gate before may have connected already, or failed: then the
            // callers that waited for that dial fail with it instead of dialling one by one.
            match (self.cached(addr), failed.as_ref()) {
                (Some(conn), _) => Ok(conn),
                (None, Some(f)) => Err(f.error(addr)),
                (None, None) => {
                    let r = self.dial(addr).await;
                    if let Err(e) = &r {
                        *failed = Some(DialFailure::of(e));
                    }
                    r
                }
            }
        };
        let mut dialling = self.dialling();
        // Only the map and this caller hold the gate: nobody else waits, forget it.
        if Arc::strong_count(&gate) == 2 {
            dialling.remove(addr);
        }
        result
    }

    async fn dial(&self, addr: &str) -> Result<Connection, TransportError> {
        let socket_addr: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| TransportError::InvalidAddress(addr.to_owned()))?;
        let tls = self.inner.config.tls.clone();
        let connect = async {
            let tcp = TcpStream::connect(socket_addr).await?;
            match &tls {
                None => Ok(MaybeTlsStream::Plain(tcp)),
                Some(tls) => {
                    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    tls.connect(host, tcp).await
                }
            }
        };
        let stream = tokio::time::timeout(self.inner.config.connect_timeout, connect)
            .await
            .map_err(|_| TransportError::Connect {
                addr: addr.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|source| TransportError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let conn = Connection::spawn(
            stream,
            self.inner.handler.clone(),
            self.inner.config.connection.clone(),
            self.inner.stop.child_token(),
        )
        .map_err(|source| TransportError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
        let mut connections = self.connections();
        // Another caller may have connected meanwhile; keep one connection per address.
        match connections.get(addr) {
            Some(existing) if !existing.is_closed() => {
                conn.close();
                Ok(existing.clone())
            }
            _ => {
                connections.insert(addr.to_owned(), conn.clone());
                Ok(conn)
            }
        }
    }

    fn cached(&self, addr: &str) -> Option<Connection> {
        let mut connections = self.connections();
        match connections.get(addr) {
            Some(conn) if !conn.is_closed() => Some(conn.clone()),
            Some(_) => {
                connections.remove(addr);
                None
            }
            None => None,
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn dialling(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DialGate>>> {
        self.inner
            .dialling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a request to `addr` and waits up to `timeout` for the response.
    pub async fn invoke(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, TransportError> {
        let conn = self.connection(addr).await?;
        self.sign(&mut request);
        conn.invoke(request, timeout).await
    }

    /// Signs a request when the client has credentials (every request: the broker checks
    /// each one, heartbeats and route queries included).
    fn sign(&self, request: &mut RemotingCommand) {
        if let Some(signer) = &self.inner.signer {
            signer.sign(request);
        }
    }

    /// Sends a one-way request to `addr`.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        mut request: RemotingCommand,
    ) -> Result<(), TransportError> {
        let conn = self.connection(addr).await?;
        self.sign(&mut request);
        conn.invoke_oneway(request).await
    }

    /// Sends a request and runs `callback` with the outcome on a background task, returning at
    /// once (the async-send style of RocketMQ clients).
    pub fn invoke_with_callback<F>(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
        callback: F,
    ) where
        F: FnOnce(Result<RemotingCommand, TransportError>) + Send + 'static,
    {
        let client = self.clone();
        let addr = addr.to_owned();
        tokio::spawn(async move { callback(client.invoke(&addr, request, timeout).await) });
    }

    /// Closes the connection to `addr`, if any.
    pub fn close_connection(&self, addr: &str) {
        if let Some(conn) = self.connections().remove(addr) {
            conn.close();
        }
    }

    /// Closes every connection.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
        for (_, conn) in self.connections().drain() {
            conn.close();
        }
    }
}
