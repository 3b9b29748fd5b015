//! The RocketMQ-compatible broker: it stores what producers send, serves consumers' pulls (with
//! long polling), keeps consumer groups, offsets and queue locks, answers admin requests, and
//! registers itself with every NameServer.
//!
//! [`Broker::start`] opens the store, loads the config files, binds the main and fast ports and
//! starts the background tasks; [`Broker::shutdown`] stops them in order and leaves nothing
//! unflushed.

pub mod client_registry;
pub mod config;
pub mod controller_mode;
pub mod long_polling;
pub mod metrics;
pub mod offsets;
mod processor;
pub mod queue_lock;
mod registration;
mod schedule;
mod slave_sync;
pub mod state;
pub mod stats;
pub mod subscription_groups;
pub mod timer;
pub mod topic_table;
mod transaction_check;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymq_protocol::acl::Credentials;
use ferrymq_protocol::message::msg_id::UniqKeyGenerator;
use ferrymq_remoting::{
    ClientConfig, ClientTls, ConnectionConfig, RemotingClient, RemotingServer, ServerConfig,
    ServerTls,
};
use ferrymq_store::{BrokerRole, FlushDiskType, MessageStore, StoreConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::BrokerConfig;
use state::BrokerState;
use stats::BrokerStats;

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] config::InvalidConfig),
    #[error("cannot open the store: {0}")]
    Store(#[from] ferrymq_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("`brokerIP1` value `{0}` is not an IP address")]
    BadAddress(String),
    #[error("the store could not be opened: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Acl(#[from] ferrymq_auth::AclFileError),
    #[error("aclEnable=true but no ACL file is configured (rocketmq.acl.plain.file)")]
    NoAclFile,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("ACL 2.0 store: {0}")]
    Auth(String),
    #[error(transparent)]
    ControllerMode(#[from] controller_mode::ControllerModeError),
}

/// A running broker.
pub struct Broker {
    state: Arc<BrokerState>,
    access: Option<ferrymq_auth::AccessControl>,
    own_credentials: Option<Credentials>,
    servers: Vec<RemotingServer>,
    namesrv: RemotingClient,
    stop: CancellationToken,
    tasks: TaskTracker,
}

fn store_config(c: &BrokerConfig) -> StoreConfig {
    let mut s = StoreConfig::new(PathBuf::from(&c.store_path_root_dir));
    s.mapped_file_size_commit_log = c.mapped_file_size_commit_log as usize;
    s.mapped_file_size_consume_queue = c.mapped_file_size_consume_queue as usize;
    s.warm_mapped_file_enable = c.warm_mapped_file_enable;
    s.flush_disk_type = if c.sync_flush() {
        FlushDiskType::SyncFlush
    } else {
        FlushDiskType::AsyncFlush
    };
    s.flush_interval_commit_log = Duration::from_millis(c.flush_interval_commit_log.max(1));
    s.sync_flush_timeout = Duration::from_millis(c.sync_flush_timeout.max(1));
    s.max_message_size = c.max_message_size;
    s.message_index_enable = c.message_index_enable;
    s.file_reserved_time = Duration::from_secs(c.file_reserved_time * 3600);
    s.delete_when = c.delete_when.clone();
    s.disk_max_used_space_ratio = f64::from(c.disk_max_used_space_ratio) / 100.0;
    s.max_transfer_bytes_on_message_in_memory = c.max_transfer_bytes_on_message_in_memory;
    s.max_transfer_count_on_message_in_memory = c.max_transfer_count_on_message_in_memory;
    s.message_delay_level = c.message_delay_level.clone();
    s.wait_time_in_queue = Duration::from_millis(c.wait_time_mills_in_send_queue.max(1));
    s.os_page_cache_busy_timeout = Duration::from_millis(c.os_page_cache_busy_timeout_mills.max(1));
    s.broker_role = BrokerRole::parse(&c.broker_role).unwrap_or_default();
    s.ha_master_address = c.ha_master_address.clone().filter(|a| !a.is_empty());
    s.ha_send_heartbeat_interval = Duration::from_millis(c.ha_send_heartbeat_interval.max(10));
    s.ha_housekeeping_interval = Duration::from_millis(c.ha_housekeeping_interval.max(1000));
    s.ha_transfer_batch_size = c.ha_transfer_batch_size.max(1024);
    s.ha_max_gap_not_in_sync = c.ha_max_gap_not_in_sync;
    s.all_ack_in_sync_state_set = c.all_ack_in_sync_state_set;
    s.ha_max_time_slave_not_catchup =
        Duration::from_millis(c.ha_max_time_slave_not_catchup.max(100));
    s
}

/// Starts the background tasks of a role: a master runs delays, transaction check-backs,
/// timers and POP revives; a slave writes nothing of its own and copies the master's
/// metadata instead.
pub(crate) fn spawn_role_tasks(
    state: &Arc<BrokerState>,
    namesrv: &RemotingClient,
    tasks: &TaskTracker,
    stop: CancellationToken,
    slave: bool,
) {
    if slave {
        tasks.spawn(slave_sync::run(state.clone(), namesrv.clone(), stop));
    } else {
        tasks.spawn(schedule::run(state.clone(), stop.clone()));
        tasks.spawn(transaction_check::run(state.clone(), stop.clone()));
        tasks.spawn(timer::run(state.clone(), stop.clone()));
        tasks.spawn(processor::run_pop_revive(state.clone(), stop));
    }
}

/// A free TCP port (the HA port of a controller-mode broker started with `listenPort=0`).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port())
}

/// The address clients are told: `brokerIP1`, else the first non-loopback IPv4 of this host.
fn advertised_ip(c: &BrokerConfig) -> Result<IpAddr, BrokerError> {
    if let Some(ip) = c.broker_ip1.as_deref().filter(|s| !s.is_empty()) {
        return ip
            .parse()
            .map_err(|_| BrokerError::BadAddress(ip.to_owned()));
    }
    // Connecting a UDP socket sends nothing; it only asks the kernel which source it would use.
    let detected = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:1").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    Ok(detected.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

/// A free port for `listenPort = 0` (tests): the fast port must then be free too.
fn pick_port() -> std::io::Result<u16> {
    loop {
        let l = std::net::TcpListener::bind("0.0.0.0:0")?;
        let port = l.local_addr()?.port();
        if port > 2 && std::net::TcpListener::bind(("0.0.0.0", port - 2)).is_ok() {
            return Ok(port);
        }
    }
}

impl Broker {
    pub async fn start(mut config: BrokerConfig) -> Result<Broker, BrokerError> {
        config.validate()?;
        // Security settings are checked before anything else is opened: a broker that was
        // asked for ACL or TLS must not come up without them.
        let acl = match (config.acl_enable, config.plain_acl_file.as_deref()) {
            (false, _) => None,
            (true, None) => return Err(BrokerError::NoAclFile),
            (true, Some(path)) => {
                let acl = Arc::new(ferrymq_auth::PlainAcl::load(std::path::Path::new(path))?);
                tracing::info!(file = %path, "ACL enabled (plain_acl.yml)");
                Some(acl)
            }
        };
        let tls = Arc::new(
            ServerTls::from_keys(
                &config.tls_server_mode,
                config.tls_server_cert_path.as_deref(),
                config.tls_server_key_path.as_deref(),
                Vec::new(),
            )
            .map_err(BrokerError::Tls)?,
        );
        let picked_ports = config.listen_port == 0;
        let controller_mode = config.enable_controller_mode;
        // Read before brokerRole is forced to SLAVE below: what an elected master becomes.
        let elected_role = config.elected_role();
        if controller_mode {
            // Every controller-mode broker starts as a slave; the controller makes one master.
            config.broker_role = "SLAVE".to_owned();
        } else if !config.is_slave() {
            // As RocketMQ: a master is broker 0 whatever the file says.
            config.broker_id = 0;
        }
        if config.listen_port == 0 {
            config.listen_port = pick_port().map_err(|source| BrokerError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        }
        let ip = advertised_ip(&config)?;
        let store_host = SocketAddr::new(ip, config.listen_port);
        let mut sc = store_config(&config);
        let config_dir = sc.config_dir();
        let controller_client = RemotingClient::new(ClientConfig {
            tls: if config.tls_enable {
                Some(ClientTls::trust_any().map_err(BrokerError::Tls)?)
            } else {
                None
            },
            ..ClientConfig::default()
        });
        let controller_link = Arc::new(controller_mode::ControllerLink::new(
            config.controller_addrs(),
            controller_client.clone(),
        ));
        let controller_broker_id = if controller_mode {
            let id = controller_mode::resolve_identity(
                &config,
                &controller_link,
                &config_dir,
                &store_host.to_string(),
                Duration::from_secs(120),
            )
            .await?;
            config.broker_id = id as i64;
            sc.controller_broker_id = Some(id);
            // Bound when this broker becomes master, so it must be known beforehand.
            let ha_port = if picked_ports {
                free_port().map_err(|source| BrokerError::Bind {
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source,
                })?
            } else {
                config.ha_port()
            };
            config.ha_listen_port = ha_port;
            sc.ha_listen_addr = Some(SocketAddr::from(([0, 0, 0, 0], ha_port)));
            Some(id)
        } else {
            if !config.is_slave() {
                let ha_port = if picked_ports { 0 } else { config.ha_port() };
                sc.ha_listen_addr = Some(SocketAddr::from(([0, 0, 0, 0], ha_port)));
            }
            None
        };
        let store = Arc::new(tokio::task::spawn_blocking(move || MessageStore::open(sc)).await??);

        let topics_file =
            ferrymq_store::config_file::ConfigFile::new(config_dir.join("topics.json"));
        let groups_file =
            ferrymq_store::config_file::ConfigFile::new(config_dir.join("subscriptionGroup.json"));
        let offsets_file =
            ferrymq_store::config_file::ConfigFile::new(config_dir.join("consumerOffset.json"));
        let topics = topic_table::TopicTable::new(&config, topics_file.load()?);
        let groups = subscription_groups::SubscriptionGroups::new(
            groups_file.load()?,
            config.auto_create_subscription_group,
        );
        let offsets = offsets::ConsumerOffsets::new(offsets_file.load()?);

        // ACL 2.0 users and policies: always open, so AUTH_* admin requests work before
        // authentication is switched on (as operators prepare users first).
        let init_user = config.init_authentication_user()?;
        let inner_user = config.inner_client_credentials()?;
        let auth_dir = config_dir.clone();
        let bootstrap = [init_user.clone(), inner_user.clone()];
        let auth = tokio::task::spawn_blocking(move || {
            let store = ferrymq_auth::AuthStore::open(&auth_dir)?;
            for (user, password) in bootstrap.iter().flatten() {
                store.ensure_super_user(user, password)?;
            }
            Ok::<_, ferrymq_auth::AuthAdminError>(Arc::new(store))
        })
        .await?
        .map_err(|e| BrokerError::Auth(e.to_string()))?;
        let access = match acl {
            Some(acl) => Some(ferrymq_auth::AccessControl::Plain(acl)),
            None if config.authentication_enabled || config.authorization_enabled => {
                let (authn_white, authz_white) = config.auth_whitelists()?;
                tracing::info!(
                    authentication = config.authentication_enabled,
                    authorization = config.authorization_enabled,
                    "ACL 2.0 enabled (users and policies in config/auth.json)"
                );
                Some(ferrymq_auth::AccessControl::Rbac(Arc::new(
                    ferrymq_auth::Rbac {
                        store: auth.clone(),
                        authentication: config.authentication_enabled,
                        authorization: config.authorization_enabled,
                        cluster: config.broker_cluster_name.clone(),
                        authentication_whitelist: authn_white,
                        authorization_whitelist: authz_white,
                    },
                )))
            }
            None => None,
        };
        // The broker's own requests (registration, a slave's metadata sync from its master)
        // sign with the ACL file's admin account, or ACL 2.0's inner (else initial) user, so
        // a group sharing one configuration needs nothing else.
        let own_credentials = match &access {
            Some(ferrymq_auth::AccessControl::Plain(acl)) => acl
                .rules()
                .admin_account()
                .map(|a| Credentials::new(&a.access_key, a.secret_key())),
            Some(ferrymq_auth::AccessControl::Rbac(_)) => inner_user
                .or(init_user)
                .map(|(user, password)| Credentials::new(user, password)),
            None => None,
        };

        let arrivals = Arc::new(long_polling::ArrivalSignals::default());
        let listener_arrivals = arrivals.clone();
        store.set_arrival_listener(Arc::new(move |a: &ferrymq_store::MessageArrival<'_>| {
            listener_arrivals.notify_arrival(a.topic, a.queue_id);
        }));

        let ha_ip = config
            .broker_ip2
            .clone()
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| ip.to_string());
        let ha_port = store.ha_local_addr().map_or(config.ha_port(), |a| a.port());
        let state = Arc::new(BrokerState {
            broker_addr: store_host.to_string(),
            ha_server_addr: format!("{ha_ip}:{ha_port}"),
            master_addr: tokio::sync::watch::Sender::new(None),
            store_host,
            uniq_keys: UniqKeyGenerator::for_process(ip),
            store,
            topics,
            groups,
            offsets,
            clients: client_registry::ClientRegistry::default(),
            locks: queue_lock::QueueLocks::new(Duration::from_secs(60)),
            arrivals,
            pop: processor::PopState::default(),
            stats: BrokerStats::default(),
            register_now: tokio::sync::Notify::new(),
            in_memory_window: BrokerState::default_in_memory_window(),
            boot: Instant::now(),
            boot_timestamp: BrokerState::now_ms(),
            config_dir,
            auth,
            controller_broker_id,
            elected_role,
            role_changed: tokio::sync::Notify::new(),
            metrics: metrics::BrokerMetrics::new(config.metrics_addr().is_some()),
            config: std::sync::RwLock::new(Arc::new(config)),
        });
        state.topics_changed().await;
        // Un-acked POP batches must be known before anyone can pop or ack again.
        let recovering = state.clone();
        tokio::task::spawn_blocking(move || processor::recover_pop(&recovering)).await?;

        let processor = Arc::new(processor::Processor::new(state.clone(), access.clone()));
        let connection = ConnectionConfig {
            idle_timeout: Some(Duration::from_secs(
                state.config().server_channel_max_idle_time_seconds.max(1),
            )),
            ..ConnectionConfig::default()
        };
        let mut servers = Vec::new();
        for port in [
            state.config().listen_port,
            state.config().fast_listen_port(),
        ] {
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            let server = RemotingServer::bind(
                ServerConfig {
                    listen: addr,
                    connection: connection.clone(),
                    tls: Some(tls.clone()),
                },
                processor.clone(),
            )
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
            servers.push(server);
        }

        let namesrv = RemotingClient::new(ClientConfig {
            tls: if state.config().tls_enable {
                Some(ClientTls::trust_any().map_err(BrokerError::Tls)?)
            } else {
                None
            },
            credentials: own_credentials.clone(),
            ..ClientConfig::default()
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        if let Some(ferrymq_auth::AccessControl::Plain(acl)) = &access {
            tasks.spawn(acl.clone().watch(stop.clone()));
        }
        tasks.spawn(registration::run(
            state.clone(),
            namesrv.clone(),
            stop.clone(),
        ));
        if controller_mode {
            // The role loop starts the role's tasks once the controller has said the role.
            let role_tasks =
                controller_mode::RoleTasks::new(tasks.clone(), stop.clone(), namesrv.clone());
            tasks.spawn(controller_mode::heartbeat_loop(
                state.clone(),
                controller_link.clone(),
                stop.clone(),
            ));
            tasks.spawn(controller_mode::run(
                state.clone(),
                controller_link,
                namesrv.clone(),
                role_tasks,
                stop.clone(),
            ));
        } else {
            let slave = state.config().is_slave();
            spawn_role_tasks(&state, &namesrv, &tasks, stop.clone(), slave);
        }
        tasks.spawn(persist_offsets_loop(state.clone(), stop.clone()));
        tasks.spawn(expire_clients_loop(state.clone(), stop.clone()));
        tasks.spawn(sample_traffic_loop(state.clone(), stop.clone()));
        tracing::info!(
            broker = %state.config().broker_name,
            cluster = %state.config().broker_cluster_name,
            addr = %state.broker_addr,
            listen = state.config().listen_port,
            fast = state.config().fast_listen_port(),
            store = %state.config().store_path_root_dir,
            flush = %state.config().flush_disk_type,
            role = %state.config().broker_role,
            ha = %state.ha_server_addr,
            namesrv = ?state.config().namesrv_addrs(),
            "broker started"
        );
        Ok(Broker {
            state,
            access,
            own_credentials,
            servers,
            namesrv,
            stop,
            tasks,
        })
    }

    /// Where this broker's config asks `/metrics` to be served (`metricsExporterType=PROM`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.state.config().metrics_addr()
    }

    /// Adds the broker's metrics to `registry` (read at each scrape of `/metrics`).
    pub fn register_metrics(
        &self,
        registry: &mut ferrymq_metrics::prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(metrics::BrokerCollector {
            state: Arc::downgrade(&self.state),
        }));
    }

    /// The access control this broker runs, for a gRPC endpoint in the same process.
    pub fn access_control(&self) -> Option<ferrymq_auth::AccessControl> {
        self.access.clone()
    }

    /// The credentials the broker signs its own requests with (an ACL admin / Super user).
    pub fn own_credentials(&self) -> Option<Credentials> {
        self.own_credentials.clone()
    }

    /// The address clients use (`brokerIP1:listenPort`).
    pub fn broker_addr(&self) -> &str {
        &self.state.broker_addr
    }

    /// The main port's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.servers[0].local_addr()
    }

    /// Replication as the store sees it: connected slaves and their acknowledged offsets on a
    /// master, the master's HA address on a slave.
    pub fn ha_status(&self) -> ferrymq_store::ha::HaStatus {
        self.state.store.ha_status()
    }

    /// Stops serving, unregisters, persists offsets and closes the store (flushing it).
    pub async fn shutdown(self) {
        let s = self.state;
        registration::unregister_all(&s, &self.namesrv).await;
        self.stop.cancel();
        s.pop.stop.cancel();
        s.arrivals.notify_all();
        for server in self.servers {
            server.shutdown().await;
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.namesrv.shutdown();
        s.persist_offsets().await;
        let final_offsets = s.offsets.snapshot();
        let file = s.offsets_file();
        let store = s.store.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let persisted = file.persist(&final_offsets);
            (persisted, store.shutdown())
        })
        .await;
        match closed {
            Ok((Ok(()), Ok(()))) => {
                tracing::info!(broker = %s.config().broker_name, "broker stopped, store flushed")
            }
            Ok((p, st)) => {
                tracing::error!(offsets = ?p.err(), store = ?st.err(), "broker shutdown incomplete")
            }
            Err(e) => tracing::error!(error = %e, "broker shutdown task failed"),
        }
    }
}

async fn persist_offsets_loop(s: Arc<BrokerState>, stop: CancellationToken) {
    let period = Duration::from_millis(s.config().flush_consumer_offset_interval.max(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => s.persist_offsets().await,
        }
    }
}

/// Reads the put/get counters once a second for runtime info's TPS figures.
async fn sample_traffic_loop(s: Arc<BrokerState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => s.stats.sample(Instant::now(), stats::utc_day_now()),
        }
    }
}

/// Drops client channels silent for `channelExpiredTimeout` and tells their groups.
async fn expire_clients_loop(s: Arc<BrokerState>, stop: CancellationToken) {
    let timeout = Duration::from_millis(s.config().channel_expired_timeout.max(1000));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                for group in s.clients.remove_expired(timeout) {
                    tracing::info!(group, "expired silent consumer channels");
                    s.notify_consumer_ids_changed(&group);
                }
            }
        }
    }
}
