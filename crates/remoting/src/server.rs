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
use crate::{Connection, RequestHandler};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub connection: ConnectionConfig,
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
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let handler: Arc<dyn ErasedHandler> = handler;
        tasks.spawn(accept_loop(
            listener,
            handler,
            config.connection,
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
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "accepted connection");
                stream
            }
            Err(e) => {
                // Usually EMFILE or a connection reset before accept; back off instead of
                // spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Connection::spawn(stream, handler.clone(), config.clone(), stop.clone()) {
            Ok(conn) => {
                tasks.spawn(async move { conn.closed().await });
            }
            Err(e) => debug!(error = %e, "connection closed before it was set up"),
        }
    }
}
