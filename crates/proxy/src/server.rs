//! Starting and stopping the endpoint: the client instance towards the cluster, the listener
//! (TLS and plaintext on one port), the tonic server and the housekeeping task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrymq_client::{ClientInstance, ClientOptions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::ProxyError;
use crate::pb::messaging_service_server::MessagingServiceServer;
use crate::renew;
use crate::service::{Context, Messaging};
use crate::session::Sessions;
use crate::tls;
use crate::transaction::{Producers, Transactions};
use ferrymq_auth::{AccessControl, PlainAcl};
use ferrymq_protocol::acl::Credentials;
pub use ferrymq_remoting::tls::{ServerTls, TlsFiles, TlsMode};

/// Largest gRPC message accepted (the Java proxy's 130 MiB: batches of 4 MiB bodies).
const MAX_INBOUND_MESSAGE: usize = 130 * 1024 * 1024;
/// How often idle clients and stale transactions are swept.
const HOUSEKEEPING: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight calls (long polls end within 20 s anyway).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where the endpoint listens and which cluster it fronts.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// gRPC listen address (RocketMQ's default port is 8081).
    pub listen: SocketAddr,
    /// Name servers, `host:port;host:port`.
    pub namesrv_addr: String,
    /// Certificate and key; `None` generates a self-signed certificate on the first TLS
    /// connection.
    pub tls: Option<TlsFiles>,
    /// `tls.server.mode`: permissive (default) serves TLS and plaintext on the port.
    pub tls_mode: TlsMode,
    /// Reach name servers and brokers over TLS.
    pub upstream_tls: bool,
    /// Access control: check every call's credentials and permissions against this
    /// `plain_acl.yml` (reloaded when it changes), and sign the proxy's own broker requests
    /// with its admin account.
    pub acl_file: Option<std::path::PathBuf>,
    /// Access control shared with a broker in the same process (ACL 1.0 or 2.0), with the
    /// credentials to sign upstream requests; takes precedence over `acl_file`.
    pub shared_access: Option<(AccessControl, Option<Credentials>)>,
    /// Timeout of ordinary broker requests.
    pub request_timeout: Duration,
    /// Count calls for `/metrics` ([`Proxy::register_metrics`]).
    pub metrics: bool,
    /// How far ahead a delay message's delivery time may be: Java proxy's `maxDelayTimeMills`
    /// (24 h); standalone uses the broker's `timerMaxDelaySec`.
    pub max_delay: Duration,
}

impl ProxyConfig {
    /// Defaults: listen on `0.0.0.0:8081`, self-signed TLS, 3 s broker requests.
    pub fn new(namesrv_addr: impl Into<String>) -> ProxyConfig {
        ProxyConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            namesrv_addr: namesrv_addr.into(),
            tls: None,
            tls_mode: TlsMode::Permissive,
            upstream_tls: false,
            acl_file: None,
            shared_access: None,
            request_timeout: Duration::from_secs(3),
            metrics: false,
            max_delay: crate::send::DEFAULT_MAX_DELAY,
        }
    }
}

/// A running gRPC endpoint.
pub struct Proxy {
    local_addr: SocketAddr,
    ctx: Arc<Context>,
    metrics: Arc<crate::metrics::ProxyMetrics>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Proxy {
    /// Binds the listener and starts serving. Must be called inside a Tokio runtime.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        // gRPC needs HTTP/2; Java and Go clients ask for it by ALPN.
        let tls_source = Arc::new(ServerTls::new(
            config.tls_mode,
            config.tls.clone(),
            vec![b"h2".to_vec()],
        ));
        tls_source.validate().map_err(ProxyError::Tls)?;
        let (acl, upstream_credentials) = match (&config.shared_access, &config.acl_file) {
            (Some((access, credentials)), _) => (Some(access.clone()), credentials.clone()),
            (None, Some(path)) => {
                let plain = Arc::new(PlainAcl::load(path)?);
                let credentials = plain
                    .rules()
                    .admin_account()
                    .map(|a| Credentials::new(&a.access_key, a.secret_key()));
                (Some(AccessControl::Plain(plain)), credentials)
            }
            (None, None) => (None, None),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = tls::bound(&listener).unwrap_or(config.listen);
        let instance = ClientInstance::start(ClientOptions {
            namesrv_addr: Some(config.namesrv_addr.clone()),
            instance_name: Some(format!("ferrymq-proxy-{}", std::process::id())),
            request_timeout: config.request_timeout,
            tls: config.upstream_tls,
            credentials: upstream_credentials,
            ..ClientOptions::default()
        })?;
        let sessions = Arc::new(Sessions::default());
        let transactions = Arc::new(Transactions::default());
        let ctx = Arc::new(Context {
            acl: acl.clone(),
            producers: Producers::new(instance.clone(), sessions.clone(), transactions.clone()),
            instance,
            sessions,
            transactions,
            groups: Default::default(),
            renewals: Default::default(),
            request_timeout: config.request_timeout,
            max_delay: config.max_delay,
        });
        let metrics = Arc::new(crate::metrics::ProxyMetrics::new(config.metrics));
        let service = crate::metrics::Timed {
            inner: MessagingServiceServer::new(Messaging { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_INBOUND_MESSAGE)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            metrics: metrics.clone(),
        };
        let stop = CancellationToken::new();
        if let (None, Some(AccessControl::Plain(plain))) = (&config.shared_access, &acl) {
            // A file of its own: follow its edits. A shared one is watched by its broker.
            tokio::spawn(plain.clone().watch(stop.clone()));
        }
        let rx = tls::incoming(listener, tls_source);
        let incoming = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let signal = stop.clone();
        let server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                // Client keepalive pings are answered by HTTP/2 itself; our own pings find
                // dead peers of long-lived Telemetry streams.
                .http2_keepalive_interval(Some(Duration::from_secs(60)))
                .http2_keepalive_timeout(Some(Duration::from_secs(20)))
                .serve_with_incoming_shutdown(service, incoming, signal.cancelled_owned())
                .await;
            if let Err(e) = result {
                warn!(error = %e, "gRPC server stopped with an error");
            }
        });
        let housekeeping = ctx.clone();
        let hk_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hk_stop.cancelled() => return,
                    _ = tokio::time::sleep(HOUSEKEEPING) => {}
                }
                for client_id in housekeeping.sessions.expire() {
                    housekeeping.renewals.drop_client(&client_id);
                }
                housekeeping.transactions.expire();
            }
        });
        let renewing = ctx.clone();
        let renew_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = renew_stop.cancelled() => return,
                    _ = tokio::time::sleep(renew::PERIOD) => {}
                }
                renew::renew_due(&renewing).await;
            }
        });
        info!(addr = %local_addr, "gRPC proxy ready (TLS and plaintext)");
        Ok(Proxy {
            local_addr,
            ctx,
            metrics,
            stop,
            server,
        })
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds the endpoint's metrics to `registry` (counted only with `ProxyConfig::metrics`).
    pub fn register_metrics(
        &self,
        registry: &mut ferrymq_metrics::prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(crate::metrics::ProxyCollector {
            metrics: self.metrics.clone(),
            node_id: self.local_addr.to_string(),
        }));
    }

    /// Stops accepting, lets in-flight calls finish (bounded), unregisters the proxy's
    /// producers and closes the broker connections.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let mut server = self.server;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        self.ctx.producers.shutdown().await;
        self.ctx.instance.shutdown().await;
        info!("gRPC proxy stopped");
    }
}
