//! What the controller port answers: broker registration, heartbeats, replica info, SyncStateSet
//! changes and elections (RocketMQ codes 1001–1013 and 904), and the leader's scan for brokers
//! whose heartbeats stopped.
//!
//! Only the Raft leader serves them (others answer CONTROLLER_NOT_LEADER, so brokers look for
//! the leader); changes go through the Raft log, reads come from the applied replicas info.
//! Liveness is not replicated: it is the leader's own table of recent heartbeats, filled again
//! by brokers within one heartbeat period after a new leader takes over, which is why a new
//! leader waits one heartbeat timeout before it declares anybody dead.

// The error side *is* the response, moved out once per request; boxing it would only add an
// allocation to every error reply.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use ferrymq_protocol::body::{
    BrokerMemberGroup, BrokerReplicasInfo, ReplicaIdentity, ReplicasInfo, SyncStateSet,
};
use ferrymq_protocol::header::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ApplyBrokerIdRequestHeader,
    BrokerHeartbeatRequestHeader, CleanControllerBrokerDataRequestHeader, CommandHeader,
    ElectMasterRequestHeader, ElectMasterResponseHeader, GetMetaDataResponseHeader,
    GetNextBrokerIdRequestHeader, GetNextBrokerIdResponseHeader, GetReplicaInfoRequestHeader,
    GetReplicaInfoResponseHeader, RegisterBrokerToControllerRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, Connection, RemotingClient, RequestHandler};

use crate::config::ControllerConfig;
use crate::raft::{NodeId, Raft};
use crate::replicas::{choose_master, BrokerSet, Command, Liveness, Refusal, Replicas};

/// What the leader knows of one broker from its last heartbeat.
#[derive(Debug, Clone)]
struct BrokerLive {
    address: String,
    last_seen: Instant,
    timeout: Duration,
    /// The connection the heartbeats come on; its close means the broker is gone.
    connection: u64,
    epoch: i32,
    max_offset: i64,
    election_priority: i32,
}

impl BrokerLive {
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < self.timeout
    }
}

type LiveKey = (String, u64);

/// Why a request was not carried out.
enum Rejection {
    Refused(Refusal),
    NotLeader,
    Internal(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotLeader => f.write_str("this controller is not the leader"),
            Rejection::Internal(e) => f.write_str(e),
            Rejection::Refused(r) => write!(f, "{r}"),
        }
    }
}

impl Rejection {
    fn response(self, request: &RemotingCommand) -> RemotingCommand {
        let code = match &self {
            Rejection::NotLeader => ResponseCode::ControllerNotLeader,
            Rejection::Internal(_) => ResponseCode::SystemError,
            Rejection::Refused(r) => refusal_code(r),
        };
        RemotingCommand::error_response(request, code, self.to_string())
    }
}

fn refusal_code(r: &Refusal) -> ResponseCode {
    match r {
        Refusal::UnknownBrokerSet(_) => ResponseCode::ControllerBrokerMetadataNotExist,
        Refusal::BrokerIdInvalid { .. } => ResponseCode::ControllerBrokerIdInvalid,
        Refusal::NeedToBeRegistered { .. } => ResponseCode::ControllerBrokerNeedToBeRegistered,
        Refusal::FencedEpoch { what, .. } if what.starts_with("master") => {
            ResponseCode::ControllerFencedMasterEpoch
        }
        Refusal::FencedEpoch { .. } => ResponseCode::ControllerFencedSyncStateSetEpoch,
        Refusal::NotMaster { .. } => ResponseCode::ControllerInvalidMaster,
        Refusal::Invalid(_) => ResponseCode::ControllerInvalidRequest,
        Refusal::NoCandidate(_) => ResponseCode::ControllerElectMasterFailed,
    }
}

/// The controller port's request handler (one per controller node).
pub struct ControllerService {
    config: ControllerConfig,
    me: NodeId,
    raft: Raft,
    replicas: Arc<RwLock<Replicas>>,
    peers: BTreeMap<NodeId, String>,
    local_addr: OnceLock<SocketAddr>,
    lives: Mutex<HashMap<LiveKey, BrokerLive>>,
    /// When this node last became leader; `None` while it is not.
    leader_since: Mutex<Option<Instant>>,
    /// Wakes the scan early (a broker's connection closed).
    scan_now: Notify,
    client: RemotingClient,
}

impl ControllerService {
    pub(crate) fn new(
        config: ControllerConfig,
        me: NodeId,
        raft: Raft,
        replicas: Arc<RwLock<Replicas>>,
        peers: BTreeMap<NodeId, String>,
    ) -> ControllerService {
        ControllerService {
            config,
            me,
            raft,
            replicas,
            peers,
            local_addr: OnceLock::new(),
            lives: Mutex::new(HashMap::new()),
            leader_since: Mutex::new(None),
            scan_now: Notify::new(),
            client: RemotingClient::new(ClientConfig {
                connect_timeout: Duration::from_secs(1),
                ..ClientConfig::default()
            }),
        }
    }

    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    /// The controller-port address other machines reach this node at: the bound address, or
    /// the peer host with the bound port when bound to every interface.
    fn advertised_addr(&self) -> String {
        let Some(addr) = self.local_addr.get() else {
            return String::new();
        };
        if !addr.ip().is_unspecified() {
            return addr.to_string();
        }
        let host = self.peers[&self.me]
            .rsplit_once(':')
            .map_or("127.0.0.1", |(h, _)| h);
        format!("{host}:{}", addr.port())
    }

    pub(crate) fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.me)
    }

    fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.config.default_broker_heartbeat_timeout_mills.max(1))
    }

    /// Whether absence from the heartbeat table means death yet: not during the first
    /// heartbeat timeout of a leadership, while brokers are still finding the new leader.
    fn absence_is_death(&self) -> bool {
        self.leader_since
            .lock()
            .is_some_and(|since| since.elapsed() >= self.default_timeout())
    }

    fn liveness(&self, broker_name: &str, id: u64) -> Option<Liveness> {
        let lives = self.lives.lock();
        let live = lives.get(&(broker_name.to_owned(), id))?;
        live.alive(Instant::now()).then_some(Liveness {
            epoch: live.epoch,
            max_offset: live.max_offset,
            election_priority: live.election_priority,
        })
    }

    /// A master is dead when its heartbeats expired, or when it never sent one to this
    /// leader within the grace period.
    fn master_is_dead(&self, set: &BrokerSet) -> bool {
        let Some(master) = set.master else {
            return false;
        };
        let lives = self.lives.lock();
        match lives.get(&(set.broker_name.clone(), master)) {
            Some(live) => !live.alive(Instant::now()),
            None => self.absence_is_death(),
        }
    }

    fn touch(
        &self,
        conn: &Connection,
        broker_name: &str,
        id: u64,
        address: &str,
        heartbeat: Option<&BrokerHeartbeatRequestHeader>,
    ) {
        let mut lives = self.lives.lock();
        let live = lives
            .entry((broker_name.to_owned(), id))
            .or_insert_with(|| BrokerLive {
                address: address.to_owned(),
                last_seen: Instant::now(),
                timeout: self.default_timeout(),
                connection: conn.id(),
                epoch: -1,
                max_offset: -1,
                election_priority: i32::MAX,
            });
        live.address = address.to_owned();
        live.last_seen = Instant::now();
        live.connection = conn.id();
        if let Some(h) = heartbeat {
            if let Some(t) = h.heartbeat_timeout_mills.filter(|t| *t > 0) {
                live.timeout = Duration::from_millis(t as u64);
            }
            live.epoch = h.epoch.unwrap_or(live.epoch);
            live.max_offset = h.max_offset.unwrap_or(live.max_offset);
            live.election_priority = h.election_priority.unwrap_or(live.election_priority);
        }
    }

    async fn propose(&self, command: Command) -> Result<Option<BrokerSet>, Rejection> {
        match self.raft.client_write(command).await {
            Ok(response) => response.data.map_err(Rejection::Refused),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(Rejection::NotLeader)
            }
            Err(e) => Err(Rejection::Internal(e.to_string())),
        }
    }

    /// Elects a master for `broker_name` from the live in-sync replicas (or `designated`),
    /// retrying when another decision changed the set meanwhile; tells the set's brokers.
    async fn elect(
        &self,
        broker_name: &str,
        designated: Option<u64>,
    ) -> Result<BrokerSet, Rejection> {
        let retries = self.config.elect_master_max_retry_count.max(1);
        let mut last = Rejection::Internal("election not attempted".to_owned());
        for _ in 0..retries {
            let Some(set) = self.replicas.read().get(broker_name).cloned() else {
                return Err(Rejection::Refused(Refusal::UnknownBrokerSet(
                    broker_name.to_owned(),
                )));
            };
            let chosen = choose_master(
                &set,
                |id| self.liveness(broker_name, id),
                designated,
                self.config.enable_elect_unclean_master,
            );
            if designated.is_some() && chosen.is_none() {
                return Err(Rejection::Refused(Refusal::NoCandidate(
                    broker_name.to_owned(),
                )));
            }
            if chosen.is_none() && set.master.is_none() {
                // Still nobody to elect: nothing to record.
                return Ok(set);
            }
            match self
                .propose(Command::ElectMaster {
                    broker_name: broker_name.to_owned(),
                    new_master: chosen,
                    expected_master_epoch: set.master_epoch,
                })
                .await
            {
                Ok(Some(after)) => {
                    if after.master_epoch != set.master_epoch {
                        tracing::info!(
                            broker = broker_name,
                            old = ?set.master,
                            new = ?after.master,
                            epoch = after.master_epoch,
                            "master elected"
                        );
                        self.notify_role_changed(&after);
                    }
                    return Ok(after);
                }
                Ok(None) => return Err(Rejection::Internal("broker set vanished".to_owned())),
                Err(Rejection::Refused(r @ Refusal::FencedEpoch { .. })) => {
                    last = Rejection::Refused(r);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// NOTIFY_BROKER_ROLE_CHANGED to every live member, without waiting: they also poll.
    fn notify_role_changed(&self, set: &BrokerSet) {
        if !self.config.notify_broker_role_changed {
            return;
        }
        let targets: Vec<String> = {
            let lives = self.lives.lock();
            let now = Instant::now();
            set.members
                .keys()
                .filter_map(|id| lives.get(&(set.broker_name.clone(), *id)))
                .filter(|l| l.alive(now))
                .map(|l| l.address.clone())
                .collect()
        };
        let header = master_header(set);
        let body = sync_state_set_body(set);
        for addr in targets {
            let request =
                RemotingCommand::request_with_header(RequestCode::NotifyBrokerRoleChanged, &header)
                    .with_body(body.clone());
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.invoke(&addr, request, Duration::from_secs(3)).await {
                    tracing::debug!(broker = %addr, error = %e, "role change notification failed");
                }
            });
        }
    }

    /// One pass of the scan: elect where the master is dead; drop long-expired entries.
    async fn scan(&self) {
        if !self.is_leader() {
            return;
        }
        let sets: Vec<BrokerSet> = self.replicas.read().sets.values().cloned().collect();
        for set in sets {
            // A set left without a master (nobody was electable) is retried every scan, so
            // it gets one as soon as an in-sync replica is back.
            let orphan = set.master.is_none() && !set.members.is_empty();
            if orphan {
                if let Err(e) = self.elect(&set.broker_name, None).await {
                    tracing::debug!(broker = %set.broker_name, why = %e, "no master yet");
                }
                continue;
            }
            if self.master_is_dead(&set) {
                tracing::warn!(
                    broker = %set.broker_name,
                    master = ?set.master,
                    "master of broker set is not alive; electing"
                );
                if let Err(e) = self.elect(&set.broker_name, None).await {
                    tracing::warn!(broker = %set.broker_name, why = %e, "election failed");
                }
            }
        }
        let now = Instant::now();
        self.lives
            .lock()
            .retain(|_, l| now.duration_since(l.last_seen) < l.timeout * 10);
    }

    fn require_leader(&self, request: &RemotingCommand) -> Result<(), RemotingCommand> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(Rejection::NotLeader.response(request))
        }
    }

    /// Before answering from the applied state: confirms leadership with a quorum and waits
    /// until everything committed is applied, so a new or deposed leader never hands out a
    /// view older than one a broker already acted on.
    async fn linearizable(&self, request: &RemotingCommand) -> Result<(), RemotingCommand> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|_| Rejection::NotLeader.response(request))
    }

    async fn serve(
        &self,
        conn: &Connection,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingCommand> {
        let code = request.request_code();
        if code == RequestCode::ControllerGetMetadataInfo {
            return Ok(self.metadata(request));
        }
        if !matches!(
            code,
            RequestCode::ControllerAlterSyncStateSet
                | RequestCode::ControllerElectMaster
                | RequestCode::ControllerRegisterBroker
                | RequestCode::ControllerGetReplicaInfo
                | RequestCode::ControllerGetSyncStateData
                | RequestCode::CleanBrokerData
                | RequestCode::ControllerGetNextBrokerId
                | RequestCode::ControllerApplyBrokerId
                | RequestCode::BrokerHeartbeat
        ) {
            return Ok(RemotingCommand::unsupported(request));
        }
        self.require_leader(request)?;
        if matches!(
            code,
            RequestCode::ControllerGetReplicaInfo
                | RequestCode::ControllerGetSyncStateData
                | RequestCode::ControllerGetNextBrokerId
                | RequestCode::ControllerRegisterBroker
        ) {
            self.linearizable(request).await?;
        }
        match code {
            RequestCode::BrokerHeartbeat => {
                let h: BrokerHeartbeatRequestHeader = header(request)?;
                let id =
                    h.broker_id.filter(|id| *id >= 0).ok_or_else(|| {
                        invalid(request, "brokerId is required in controller mode")
                    })? as u64;
                self.touch(conn, &h.broker_name, id, &h.broker_addr, Some(&h));
                Ok(RemotingCommand::response_to(request, ResponseCode::Success))
            }
            RequestCode::ControllerGetNextBrokerId => {
                let h: GetNextBrokerIdRequestHeader = header(request)?;
                let next = self
                    .replicas
                    .read()
                    .get(&h.broker_name)
                    .map_or(1, BrokerSet::next_broker_id);
                Ok(
                    RemotingCommand::response_to(request, ResponseCode::Success).with_header(
                        &GetNextBrokerIdResponseHeader {
                            cluster_name: Some(h.cluster_name),
                            broker_name: Some(h.broker_name),
                            next_broker_id: Some(next),
                        },
                    ),
                )
            }
            RequestCode::ControllerApplyBrokerId => {
                let h: ApplyBrokerIdRequestHeader = header(request)?;
                self.propose(Command::ApplyBrokerId {
                    cluster_name: h.cluster_name.clone(),
                    broker_name: h.broker_name.clone(),
                    broker_id: h.applied_broker_id,
                    register_check_code: h.register_check_code,
                })
                .await
                .map_err(|e| e.response(request))?;
                Ok(RemotingCommand::response_to(request, ResponseCode::Success))
            }
            RequestCode::ControllerRegisterBroker => self.register(conn, request).await,
            RequestCode::ControllerGetReplicaInfo => {
                let h: GetReplicaInfoRequestHeader = header(request)?;
                let set = self.known_set(request, &h.broker_name)?;
                Ok(RemotingCommand::response_to(request, ResponseCode::Success)
                    .with_header(&GetReplicaInfoResponseHeader {
                        master_broker_id: set.master,
                        master_address: set.master_address().map(str::to_owned),
                        master_epoch: Some(set.master_epoch),
                    })
                    .with_body(sync_state_set_body(&set)))
            }
            RequestCode::ControllerAlterSyncStateSet => self.alter_sync_state_set(request).await,
            RequestCode::ControllerElectMaster => {
                let h: ElectMasterRequestHeader = header(request)?;
                let designated = if h.designate_elect.unwrap_or(false) {
                    Some(
                        h.broker_id
                            .ok_or_else(|| invalid(request, "designateElect needs a brokerId"))?,
                    )
                } else {
                    h.broker_id
                };
                let set = self
                    .elect(&h.broker_name, designated)
                    .await
                    .map_err(|e| e.response(request))?;
                if set.master.is_none() {
                    return Err(RemotingCommand::error_response(
                        request,
                        ResponseCode::ControllerMasterNotAvailable,
                        format!("no replica of {} can be master now", h.broker_name),
                    ));
                }
                Ok(RemotingCommand::response_to(request, ResponseCode::Success)
                    .with_header(&master_header(&set))
                    .with_body(json(&BrokerMemberGroup {
                        broker_addrs: set
                            .members
                            .iter()
                            .map(|(id, m)| (*id as i64, m.address.clone()))
                            .collect(),
                        broker_name: set.broker_name.clone(),
                        cluster: set.cluster_name.clone(),
                    })))
            }
            RequestCode::ControllerGetSyncStateData => {
                let names: Vec<String> = serde_json::from_slice(&request.body.to_bytes())
                    .map_err(|e| invalid(request, &format!("body is not a list of names: {e}")))?;
                Ok(RemotingCommand::response_to(request, ResponseCode::Success)
                    .with_body(json(&self.replicas_info(&names))))
            }
            RequestCode::CleanBrokerData => self.clean(request).await,
            _ => Ok(RemotingCommand::unsupported(request)),
        }
    }

    fn known_set(
        &self,
        request: &RemotingCommand,
        name: &str,
    ) -> Result<BrokerSet, RemotingCommand> {
        self.replicas.read().get(name).cloned().ok_or_else(|| {
            Rejection::Refused(Refusal::UnknownBrokerSet(name.to_owned())).response(request)
        })
    }

    async fn register(
        &self,
        conn: &Connection,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingCommand> {
        let h: RegisterBrokerToControllerRequestHeader = header(request)?;
        let set = self.known_set(request, &h.broker_name)?;
        if !set.members.contains_key(&h.broker_id) {
            return Err(Rejection::Refused(Refusal::NeedToBeRegistered {
                broker_name: h.broker_name,
                id: h.broker_id,
            })
            .response(request));
        }
        self.touch(conn, &h.broker_name, h.broker_id, &h.broker_address, None);
        let mut set = self
            .propose(Command::RegisterBroker {
                broker_name: h.broker_name.clone(),
                broker_id: h.broker_id,
                address: h.broker_address.clone(),
                elect: set.master.is_none(),
            })
            .await
            .map_err(|e| e.response(request))?
            .unwrap_or(set);
        if set.master.is_none() || self.master_is_dead(&set) {
            if let Ok(after) = self.elect(&h.broker_name, None).await {
                set = after;
            }
        }
        Ok(RemotingCommand::response_to(request, ResponseCode::Success)
            .with_header(&RegisterBrokerToControllerResponseHeader {
                cluster_name: Some(set.cluster_name.clone()),
                broker_name: Some(set.broker_name.clone()),
                master_broker_id: set.master,
                master_address: set.master_address().map(str::to_owned),
                master_epoch: Some(set.master_epoch),
                sync_state_set_epoch: Some(set.sync_state_set_epoch),
            })
            .with_body(sync_state_set_body(&set)))
    }

    async fn alter_sync_state_set(
        &self,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, RemotingCommand> {
        let h: AlterSyncStateSetRequestHeader = header(request)?;
        let proposed: SyncStateSet = serde_json::from_slice(&request.body.to_bytes())
            .map_err(|e| invalid(request, &format!("body is not a SyncStateSet: {e}")))?;
        // A replica joins only while it is alive: an in-sync replica must be electable.
        if let Some(dead) = proposed
            .sync_state_set
            .iter()
            .find(|id| **id != h.master_broker_id && self.liveness(&h.broker_name, **id).is_none())
        {
            return Err(RemotingCommand::error_response(
                request,
                ResponseCode::ControllerInvalidReplicas,
                format!("broker {dead} of {} is not alive", h.broker_name),
            ));
        }
        let set = self
            .propose(Command::AlterSyncStateSet {
                broker_name: h.broker_name.clone(),
                master_id: h.master_broker_id,
                master_epoch: h.master_epoch,
                sync_state_set_epoch: proposed.sync_state_set_epoch,
                new_set: proposed.sync_state_set,
            })
            .await
            .map_err(|e| e.response(request))?
            .ok_or_else(|| invalid(request, "broker set vanished"))?;
        Ok(RemotingCommand::response_to(request, ResponseCode::Success)
            .with_header(&AlterSyncStateSetResponseHeader {
                new_sync_state_set_epoch: Some(set.sync_state_set_epoch),
            })
            .with_body(sync_state_set_body(&set)))
    }

    async fn clean(&self, request: &RemotingCommand) -> Result<RemotingCommand, RemotingCommand> {
        let h: CleanControllerBrokerDataRequestHeader = header(request)?;
        let mut ids = Vec::new();
        for part in h
            .broker_controller_ids_to_clean
            .as_deref()
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            ids.push(
                part.parse::<u64>()
                    .map_err(|_| invalid(request, &format!("`{part}` is not a broker id")))?,
            );
        }
        if !h.is_clean_living_broker.unwrap_or(false) {
            let set = self.known_set(request, &h.broker_name)?;
            let living = set
                .members
                .keys()
                .filter(|id| ids.is_empty() || ids.contains(id))
                .find(|id| self.liveness(&h.broker_name, **id).is_some());
            if let Some(id) = living {
                return Err(RemotingCommand::error_response(
                    request,
                    ResponseCode::ControllerInvalidCleanBrokerMetadata,
                    format!(
                        "broker {id} of {} is alive; set isCleanLivingBroker",
                        h.broker_name
                    ),
                ));
            }
        }
        self.propose(Command::CleanBrokerData {
            broker_name: h.broker_name,
            broker_ids: ids,
        })
        .await
        .map_err(|e| e.response(request))?;
        Ok(RemotingCommand::response_to(request, ResponseCode::Success))
    }

    fn metadata(&self, request: &RemotingCommand) -> RemotingCommand {
        let leader = self.raft.metrics().borrow().current_leader;
        let leader_address = leader.and_then(|l| {
            if l == self.me {
                Some(self.advertised_addr())
            } else {
                self.replicas.read().controllers.get(&l).cloned()
            }
        });
        RemotingCommand::response_to(request, ResponseCode::Success).with_header(
            &GetMetaDataResponseHeader {
                group: Some(self.config.controller_dleger_group.clone()),
                controller_leader_id: leader.map(|l| format!("n{l}")),
                controller_leader_address: leader_address,
                is_leader: Some(self.is_leader()),
                peers: Some(self.config.controller_dleger_peers.clone()),
            },
        )
    }

    fn replicas_info(&self, names: &[String]) -> BrokerReplicasInfo {
        let replicas = self.replicas.read();
        let mut table = BTreeMap::new();
        for name in names {
            let Some(set) = replicas.get(name) else {
                continue;
            };
            let identity = |id: &u64| ReplicaIdentity {
                broker_name: name.clone(),
                broker_id: *id,
                broker_address: set.members[id].address.clone(),
                alive: self.liveness(name, *id).is_some(),
            };
            table.insert(
                name.clone(),
                ReplicasInfo {
                    master_broker_id: set.master,
                    master_address: set.master_address().map(str::to_owned),
                    master_epoch: set.master_epoch,
                    sync_state_set_epoch: set.sync_state_set_epoch,
                    in_sync_replicas: set
                        .members
                        .keys()
                        .filter(|id| set.sync_state_set.contains(id))
                        .map(identity)
                        .collect(),
                    not_in_sync_replicas: set
                        .members
                        .keys()
                        .filter(|id| !set.sync_state_set.contains(id))
                        .map(identity)
                        .collect(),
                },
            );
        }
        BrokerReplicasInfo {
            replicas_info_table: table,
        }
    }
}

fn header<H: CommandHeader>(request: &RemotingCommand) -> Result<H, RemotingCommand> {
    request
        .decode_header::<H>()
        .map_err(|e| invalid(request, &e.to_string()))
}

fn invalid(request: &RemotingCommand, why: &str) -> RemotingCommand {
    RemotingCommand::error_response(request, ResponseCode::ControllerInvalidRequest, why)
}

fn json<T: Serialize>(value: &T) -> Bytes {
    // Serialising plain data structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn master_header(set: &BrokerSet) -> ElectMasterResponseHeader {
    ElectMasterResponseHeader {
        master_broker_id: set.master,
        master_address: set.master_address().map(str::to_owned),
        master_epoch: Some(set.master_epoch),
        sync_state_set_epoch: Some(set.sync_state_set_epoch),
    }
}

fn sync_state_set_body(set: &BrokerSet) -> Bytes {
    json(&SyncStateSet {
        sync_state_set: set
            .sync_state_set
            .iter()
            .copied()
            .collect::<BTreeSet<u64>>(),
        sync_state_set_epoch: set.sync_state_set_epoch,
    })
}

impl RequestHandler for ControllerService {
    async fn handle(&self, conn: &Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        Some(match self.serve(conn, &request).await {
            Ok(r) | Err(r) => r,
        })
    }

    fn on_connection_closed(&self, conn: &Connection) {
        let id = conn.id();
        let before = {
            let mut lives = self.lives.lock();
            let before = lives.len();
            lives.retain(|_, l| l.connection != id);
            before - lives.len()
        };
        if before > 0 {
            // A broker's heartbeat connection is gone: do not wait for its timeout.
            self.scan_now.notify_one();
        }
    }
}

/// The leader's periodic scan (`scanNotActiveBrokerInterval`), woken early when a broker's
/// connection closes.
pub(crate) async fn scan_loop(service: Arc<ControllerService>, stop: CancellationToken) {
    let interval = service.config.scan_interval();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = service.scan_now.notified() => {}
        }
        service.scan().await;
    }
}

/// Follows leadership: a node that becomes leader starts a fresh heartbeat table (with its
/// grace period) and records its address for the others to hand out.
pub(crate) async fn leadership_loop(service: Arc<ControllerService>, stop: CancellationToken) {
    let mut metrics = service.raft.metrics();
    let mut was_leader = false;
    loop {
        let leader = service.is_leader();
        if leader != was_leader {
            was_leader = leader;
            service.lives.lock().clear();
            *service.leader_since.lock() = leader.then(Instant::now);
            if leader {
                tracing::info!(id = service.me, "this controller is now the leader");
                let address = service.advertised_addr();
                let known = service
                    .replicas
                    .read()
                    .controllers
                    .get(&service.me)
                    .cloned();
                if known.as_deref() != Some(address.as_str()) {
                    let s = service.clone();
                    tokio::spawn(async move {
                        let _ = s
                            .propose(Command::AnnounceController { id: s.me, address })
                            .await;
                    });
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
