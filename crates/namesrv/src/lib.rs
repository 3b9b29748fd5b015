//! NameServer: the broker registry and topic route table that clients and brokers talk to.
//!
//! Brokers register their topics here every 30 s; clients ask for the route of each topic they
//! use. Instances are independent (no replication between name servers, as in RocketMQ): a
//! broker registers with every one of them.
//!
//! [`NameServer`] wires the pieces together: the [`processor`] serving requests over a
//! [`ferrymq_remoting::RemotingServer`], the [`route`] table, the [`kv`] config store, and a
//! periodic scan that removes brokers whose heartbeat timed out.

pub mod config;
mod file;
pub mod kv;
pub mod processor;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;

use ferrymq_remoting::{ConnectionConfig, RemotingServer, ServerConfig, ServerTls, SharedHandler};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{ConfigError, NamesrvConfig};
pub use kv::{KvError, KvStore, ORDER_TOPIC_CONFIG};
pub use processor::NamesrvHandler;

/// Why a NameServer could not start.
#[derive(Debug, thiserror::Error)]
pub enum NamesrvError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running NameServer. Dropping it does not stop it; call [`NameServer::shutdown`].
pub struct NameServer {
    server: RemotingServer,
    handler: Arc<NamesrvHandler>,
    stop: CancellationToken,
    scan: JoinHandle<()>,
}

impl std::fmt::Debug for NameServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameServer")
            .field("local_addr", &self.server.local_addr())
            .field("handler", &self.handler)
            .finish()
    }
}

/// Encodes the NameServer's metrics at scrape time.
#[derive(Debug)]
struct NamesrvCollector {
    handler: std::sync::Weak<NamesrvHandler>,
    node_id: String,
}

impl ferrymq_metrics::prometheus_client::collector::Collector for NamesrvCollector {
    fn encode(
        &self,
        mut encoder: ferrymq_metrics::prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use ferrymq_metrics::{label, series};
        let Some(h) = self.handler.upgrade() else {
            return Ok(());
        };
        let node = |mut extra: series::Labels| {
            let mut labels = vec![
                (label::NODE_TYPE, "namesrv".to_owned()),
                (label::NODE_ID, self.node_id.clone()),
            ];
            labels.append(&mut extra);
            labels
        };
        h.rpc.encode(&mut encoder, "remoting", node)?;
        series::encode_gauge(
            &mut encoder,
            "rocketmq_namesrv_broker_number",
            "Brokers whose registration is live on this NameServer",
            &[(node(Vec::new()), h.live_brokers() as i64)],
        )
    }
}

impl NameServer {
    /// Adds the NameServer's metrics to `registry` (read at each scrape of `/metrics`).
    pub fn register_metrics(
        &self,
        registry: &mut ferrymq_metrics::prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(NamesrvCollector {
            handler: Arc::downgrade(&self.handler),
            node_id: self.server.local_addr().to_string(),
        }));
    }

    /// Loads the KV config, binds `listen` (port 0 picks a free one) and starts serving and
    /// scanning for inactive brokers. `config.listen_port`/`bind_address` are for the caller
    /// that builds `listen`; they are not consulted here.
    pub async fn start(
        config: NamesrvConfig,
        listen: SocketAddr,
    ) -> Result<NameServer, NamesrvError> {
        Self::start_with_controller(config, listen, None).await
    }

    /// [`NameServer::start`] with an embedded controller (`enableControllerInNamesrv`) that
    /// serves the controller request codes arriving on this port.
    pub async fn start_with_controller(
        config: NamesrvConfig,
        listen: SocketAddr,
        controller: Option<SharedHandler>,
    ) -> Result<NameServer, NamesrvError> {
        config.validate()?;
        // One small file read at start-up; nothing is being served yet.
        let kv = KvStore::load(&config.kv_config_path)?;
        let connection = ConnectionConfig {
            idle_timeout: config.idle_timeout(),
            ..ConnectionConfig::default()
        };
        let tls = ServerTls::from_keys(
            &config.tls_server_mode,
            config.tls_server_cert_path.as_deref(),
            config.tls_server_key_path.as_deref(),
            Vec::new(),
        )
        .map_err(|reason| ConfigError::Invalid {
            key: "tls.server.certPath",
            reason,
        })?;
        let mut handler = NamesrvHandler::new(config, kv);
        if let Some(controller) = controller {
            handler = handler.with_controller(controller);
        }
        let handler = Arc::new(handler);
        let server_config = ServerConfig {
            listen,
            connection,
            tls: Some(Arc::new(tls)),
        };
        let server = RemotingServer::bind(server_config, handler.clone())
            .await
            .map_err(|source| NamesrvError::Bind {
                addr: listen,
                source,
            })?;
        let stop = CancellationToken::new();
        let scan = tokio::spawn(scan_loop(handler.clone(), stop.clone()));
        info!(addr = %server.local_addr(), "name server started");
        Ok(NameServer {
            server,
            handler,
            stop,
            scan,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The current configuration (including runtime updates).
    pub fn config(&self) -> NamesrvConfig {
        self.handler.config()
    }

    /// Stops the scan, stops accepting, lets in-flight requests finish and closes connections.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.scan.await;
        let addr = self.server.local_addr();
        self.server.shutdown().await;
        info!(%addr, "name server stopped");
    }
}

/// Removes brokers whose heartbeat timed out, every `scanNotActiveBrokerInterval`. The interval
/// is re-read each round so a runtime configuration update takes effect.
async fn scan_loop(handler: Arc<NamesrvHandler>, stop: CancellationToken) {
    loop {
        let interval = handler.config().scan_interval();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        handler.scan_not_active_brokers();
    }
}
