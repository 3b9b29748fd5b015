//! The accepting side: binds a listener and turns every accepted socket into a [`Connection`]
//! served by one shared [`RequestHandler`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::connection::{ConnectionConfig, ErasedHandler};
use crate::tls::{MaybeTlsStream, ServerTls, TlsMode, HANDSHAKE_TIMEOUT};
use crate::{Connection, RequestHandler};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub connection: ConnectionConfig,
    /// TLS mode and certificate; `None` = plaintext only.
    pub tls: Option<Arc<ServerTls>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9876)),
            connection: ConnectionConfig {
                // serverChannelMaxIdleTimeSeconds
                idle_timeout: Some(Duration::from_secs(120)),
                ..ConnectionConfig::default()
            },
            tls: None,
        }
    }
}

/// A running server. Dropping it does not stop it; call [`RemotingServer::shutdown`].
pub struct RemotingServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl RemotingServer {
    /// Binds `config.listen` and starts accepting.
    pub async fn bind<H: RequestHandler>(
        config: ServerConfig,
        handler: Arc<H>,
    ) -> std::io::Result<RemotingServer> {
        if let Some(tls) = &config.tls {
            tls.validate().map_err(std::io::Error::other)?;
        }
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let handler: Arc<dyn ErasedHandler> = handler;
        let tls = config.tls.filter(|t| t.mode() != TlsMode::Disabled);
        tasks.spawn(accept_loop(
            listener,
            handler,
            config.connection,
            tls,
            stop.clone(),
            tasks.clone(),
        ));
        Ok(RemotingServer {
            local_addr,
            stop,
            tasks,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), flushes their
    /// responses and closes every connection.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<dyn ErasedHandler>,
    config: ConnectionConfig,
    tls: Option<Arc<ServerTls>>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "accepted connection");
                (stream, peer)
            }
            Err(e) => {
                // Usually EMFILE or a connection reset before accept; back off instead of
                // spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(tls) = tls.clone() else {
            serve(
                MaybeTlsStream::Plain(stream),
                &handler,
                &config,
                &stop,
                &tasks,
            );
            continue;
        };
        // Classifying waits for the client's first byte and a TLS handshake takes round
        // trips: neither may hold up the accept loop.
        let (handler, config, stop, inner_tasks) =
            (handler.clone(), config.clone(), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, &handler, &config, &stop, &inner_tasks),
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "connection refused before its first frame")
                }
                Err(_) => debug!(%peer, "connection silent or TLS handshake too slow"),
            }
        });
    }
}

fn serve(
    stream: MaybeTlsStream,
    handler: &Arc<dyn ErasedHandler>,
    config: &ConnectionConfig,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) {
    match Connection::spawn(stream, handler.clone(), config.clone(), stop.clone()) {
        Ok(conn) => {
            tasks.spawn(async move { conn.closed().await });
        }
        Err(e) => debug!(error = %e, "connection closed before it was set up"),
    }
}
