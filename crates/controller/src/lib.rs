//! The RocketMQ 5.x controller: a Raft group (openraft) that owns, per broker set, who the
//! master is, its epoch and the SyncStateSet, and elects a new master from the in-sync
//! replicas when the master's heartbeats stop.
//!
//! * [`replicas`]: the replicated model and its commands (pure, deterministic).
//! * [`raft`]: openraft's storage, state machine and peer transport.
//! * [`service`]: the remoting requests brokers and admin tools send (codes 1001–1013, 904),
//!   the leader-local heartbeat table, and the scan that elects when a master goes silent.
//! * [`config`]: `controller.conf` under RocketMQ's keys.
//!
//! Two ports: the controller port (`listenPort`, 19876) for brokers and tools, and the peer
//! port from `controllerDLegerPeers` for Raft between controllers.

pub mod config;
pub mod raft;
pub mod replicas;
pub mod service;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrymq_remoting::{ClientConfig, RemotingClient, RemotingServer, ServerConfig, SharedHandler};
use openraft::{BasicNode, SnapshotPolicy};
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, ControllerConfig};
use raft::log_store::LogStore;
use raft::network::{Network, PeerService};
use raft::state_machine::StateMachine;
use raft::Raft;
use service::ControllerService;

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("controller store {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
}

/// A running controller node.
pub struct Controller {
    raft: Raft,
    service: Arc<ControllerService>,
    /// The controller port; `None` when embedded in a NameServer, which serves it instead.
    server: Option<RemotingServer>,
    peer_server: RemotingServer,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    addr.to_socket_addrs().ok()?.next()
}

impl Controller {
    /// Opens the store, joins the Raft group and serves brokers on `listen` (the controller
    /// port; `config.listen_port` is the caller's default for it).
    pub async fn start(
        config: ControllerConfig,
        listen: SocketAddr,
    ) -> Result<Controller, ControllerError> {
        Self::start_on(config, Some(listen)).await
    }

    /// Starts a controller without a port of its own (`enableControllerInNamesrv`): the
    /// NameServer passes it the controller requests ([`Controller::handler`]) and tells it its
    /// address ([`Controller::serving_on`]).
    pub async fn start_embedded(config: ControllerConfig) -> Result<Controller, ControllerError> {
        Self::start_on(config, None).await
    }

    /// The request handler of the controller codes, for a host server.
    pub fn handler(&self) -> SharedHandler {
        SharedHandler::new(self.service.clone())
    }

    /// Where the host server serves this controller (what brokers are told the leader is at).
    pub fn serving_on(&self, addr: SocketAddr) {
        self.service.set_local_addr(addr);
    }

    async fn start_on(
        config: ControllerConfig,
        listen: Option<SocketAddr>,
    ) -> Result<Controller, ControllerError> {
        config.validate()?;
        let peers = config.peers()?;
        let me = config.self_id()?;
        let dir = PathBuf::from(&config.controller_store_path);
        let store_err = |source| ControllerError::Store {
            path: dir.clone(),
            source,
        };
        let log_store = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || LogStore::open(&dir))
                .await
                .map_err(|e| store_err(std::io::Error::other(e.to_string())))?
                .map_err(store_err)?
        };
        let state_machine = StateMachine::open(&dir).map_err(store_err)?;
        let replicas = state_machine.replicas();

        let raft_config = openraft::Config {
            cluster_name: config.controller_dleger_group.clone(),
            heartbeat_interval: 150,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_threshold.max(10)),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| ControllerError::Raft(e.to_string()))?,
        );
        let peer_client = RemotingClient::new(ClientConfig {
            connect_timeout: Duration::from_millis(500),
            ..ClientConfig::default()
        });
        let raft = Raft::new(
            me,
            raft_config,
            Network::new(peer_client.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

        let peer_addr = &peers[&me];
        let peer_listen = resolve(peer_addr).ok_or_else(|| ControllerError::Bind {
            what: "controller peer address",
            addr: peer_addr.clone(),
            source: std::io::Error::other("does not resolve"),
        })?;
        let peer_server = RemotingServer::bind(
            ServerConfig {
                listen: peer_listen,
                ..ServerConfig::default()
            },
            Arc::new(PeerService { raft: raft.clone() }),
        )
        .await
        .map_err(|source| ControllerError::Bind {
            what: "controller peer address",
            addr: peer_addr.clone(),
            source,
        })?;

        // Every member proposes the same initial membership; openraft accepts it on a node
        // whose log is empty and refuses it (harmlessly) everywhere else.
        let members: BTreeMap<u64, BasicNode> = peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!(error = %e, "raft group already initialised");
        }

        let service = Arc::new(ControllerService::new(
            config,
            me,
            raft.clone(),
            replicas,
            peers,
        ));
        let server = match listen {
            Some(listen) => {
                let server = RemotingServer::bind(
                    ServerConfig {
                        listen,
                        ..ServerConfig::default()
                    },
                    service.clone(),
                )
                .await
                .map_err(|source| ControllerError::Bind {
                    what: "controller port",
                    addr: listen.to_string(),
                    source,
                })?;
                service.set_local_addr(server.local_addr());
                Some(server)
            }
            None => None,
        };
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(service::scan_loop(service.clone(), stop.clone())),
            tokio::spawn(service::leadership_loop(service.clone(), stop.clone())),
        ];
        tracing::info!(
            id = me,
            addr = ?server.as_ref().map(RemotingServer::local_addr),
            peer = %peer_server.local_addr(),
            "controller started"
        );
        Ok(Controller {
            raft,
            service,
            server,
            peer_server,
            stop,
            tasks,
        })
    }

    /// The controller port's bound address (`None` when embedded).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(RemotingServer::local_addr)
    }

    /// Whether this node leads the group now.
    pub fn is_leader(&self) -> bool {
        self.service.is_leader()
    }

    /// Stops serving and leaves the group.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(server) = self.server {
            server.shutdown().await;
        }
        self.peer_server.shutdown().await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
