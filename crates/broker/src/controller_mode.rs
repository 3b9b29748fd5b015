//! Controller mode (`enableControllerMode=true`): the controllers, not the config file, say who
//! the master of this broker group is. This module is the broker's half of that:
//!
//! * identity — the broker id comes from the controller (CONTROLLER_GET_NEXT_BROKER_ID, then
//!   CONTROLLER_APPLY_BROKER_ID) and is kept in `config/brokerIdentity.json`; the applied id is
//!   written before it is applied, so a crash in between re-applies the same id;
//! * the role loop — registers (CONTROLLER_REGISTER_BROKER), heartbeats every second
//!   (BROKER_HEARTBEAT with epoch and max offset, which the controller elects by), polls the
//!   replica info and reacts at once to NOTIFY_BROKER_ROLE_CHANGED; it switches the store and
//!   the role's background tasks live, master ↔ slave;
//! * a new slave first asks its master for the master's epochs (GET_BROKER_EPOCH_CACHE) and
//!   cuts its own log where the two stop agreeing, so an old master never forks the log;
//! * as master, it grows and shrinks the SyncStateSet with the controller
//!   (CONTROLLER_ALTER_SYNC_STATE_SET): grow locally first, shrink at the controller first,
//!   so the controller never counts a replica as in sync that might lack an acknowledged
//!   message.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymq_protocol::body::{EpochEntry, EpochEntryCache, SyncStateSet};
use ferrymq_protocol::header::{
    AlterSyncStateSetRequestHeader, ApplyBrokerIdRequestHeader, BrokerHeartbeatRequestHeader,
    GetEpochEntryCacheResponseHeader, GetMetaDataResponseHeader, GetNextBrokerIdRequestHeader,
    GetNextBrokerIdResponseHeader, GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader,
    RegisterBrokerToControllerRequestHeader, RegisterBrokerToControllerResponseHeader,
};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::RemotingClient;
use ferrymq_store::epoch::Epoch;
use ferrymq_store::BrokerRole;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BrokerConfig;
use crate::state::BrokerState;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// Why controller mode could not get going.
#[derive(Debug, thiserror::Error)]
pub enum ControllerModeError {
    #[error("controller: {0}")]
    Controller(String),
    #[error("{path}: {source}")]
    Identity {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Talks to whichever controller leads, finding it again when it moves.
pub struct ControllerLink {
    addrs: Vec<String>,
    client: RemotingClient,
    leader: parking_lot::Mutex<Option<String>>,
}

impl ControllerLink {
    pub fn new(addrs: Vec<String>, client: RemotingClient) -> ControllerLink {
        ControllerLink {
            addrs,
            client,
            leader: parking_lot::Mutex::new(None),
        }
    }

    /// Asks every configured controller; the one that says it leads wins, else the leader
    /// address a follower names.
    async fn find_leader(&self) -> Result<String, String> {
        let mut named = None;
        for addr in &self.addrs {
            let req = RemotingCommand::request(RequestCode::ControllerGetMetadataInfo);
            match self.client.invoke(addr, req, Duration::from_secs(1)).await {
                Ok(resp) if resp.response_code() == ResponseCode::Success => {
                    let h: GetMetaDataResponseHeader = resp.decode_header().unwrap_or_default();
                    if h.is_leader == Some(true) {
                        return Ok(addr.clone());
                    }
                    named = named.or(h.controller_leader_address.filter(|a| !a.is_empty()));
                }
                Ok(resp) => {
                    tracing::debug!(controller = %addr, code = resp.code, "metadata refused")
                }
                Err(e) => tracing::debug!(controller = %addr, error = %e, "controller unreachable"),
            }
        }
        named.ok_or_else(|| format!("no controller of {:?} leads", self.addrs))
    }

    /// Sends `request` to the leader; a NOT_LEADER answer or a dead leader makes it look
    /// for the leader once more and retry.
    pub async fn call(&self, request: RemotingCommand) -> Result<RemotingCommand, String> {
        let mut last = String::new();
        for _ in 0..2 {
            let cached = self.leader.lock().clone();
            let leader = match cached {
                Some(l) => l,
                None => {
                    let l = self.find_leader().await?;
                    *self.leader.lock() = Some(l.clone());
                    l
                }
            };
            match self
                .client
                .invoke(&leader, request.clone(), CALL_TIMEOUT)
                .await
            {
                Ok(resp) if resp.response_code() == ResponseCode::ControllerNotLeader => {
                    last = format!("{leader} is no longer the leader");
                }
                Ok(resp) => return Ok(resp),
                Err(e) => last = format!("{leader}: {e}"),
            }
            *self.leader.lock() = None;
        }
        Err(last)
    }
}

/// What `config/brokerIdentity.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    cluster_name: String,
    broker_name: String,
    broker_id: u64,
    register_check_code: String,
    /// False between choosing the id and the controller accepting it.
    applied: bool,
}

fn read_identity(path: &Path) -> Result<Option<Identity>, ControllerModeError> {
    match std::fs::read(path) {
        Ok(data) => {
            serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| ControllerModeError::Identity {
                    path: path.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ControllerModeError::Identity {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_identity(path: &Path, id: &Identity) -> Result<(), ControllerModeError> {
    let err = |source| ControllerModeError::Identity {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec_pretty(id).unwrap_or_default();
    std::fs::write(&tmp, data).map_err(err)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn expect_success(resp: &RemotingCommand, what: &str) -> Result<(), String> {
    if resp.response_code() == ResponseCode::Success {
        Ok(())
    } else {
        Err(format!(
            "{what}: code {} {}",
            resp.code,
            resp.remark.as_deref().unwrap_or("")
        ))
    }
}

/// The broker id this broker holds in controller mode: from `config/brokerIdentity.json`,
/// else applied for at the controller (retrying until `deadline`).
pub async fn resolve_identity(
    config: &BrokerConfig,
    link: &ControllerLink,
    config_dir: &Path,
    broker_addr: &str,
    deadline: Duration,
) -> Result<u64, ControllerModeError> {
    let path = config_dir.join("brokerIdentity.json");
    let mut identity = read_identity(&path)?;
    if let Some(id) = &identity {
        if id.broker_name != config.broker_name || id.cluster_name != config.broker_cluster_name {
            return Err(ControllerModeError::Controller(format!(
                "{} belongs to broker {}/{}, not {}/{}",
                path.display(),
                id.cluster_name,
                id.broker_name,
                config.broker_cluster_name,
                config.broker_name
            )));
        }
        if id.applied {
            return Ok(id.broker_id);
        }
    }
    let give_up = Instant::now() + deadline;
    loop {
        match apply_for_id(config, link, &path, &mut identity, broker_addr).await {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() < give_up => {
                tracing::warn!(error = %e, "cannot get a broker id from the controller yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn apply_for_id(
    config: &BrokerConfig,
    link: &ControllerLink,
    path: &Path,
    identity: &mut Option<Identity>,
    broker_addr: &str,
) -> Result<u64, ControllerModeError> {
    let fail = ControllerModeError::Controller;
    let chosen = match identity.clone() {
        Some(id) => id,
        None => {
            let req = RemotingCommand::request_with_header(
                RequestCode::ControllerGetNextBrokerId,
                &GetNextBrokerIdRequestHeader {
                    cluster_name: config.broker_cluster_name.clone(),
                    broker_name: config.broker_name.clone(),
                },
            );
            let resp = link.call(req).await.map_err(fail)?;
            expect_success(&resp, "get next broker id").map_err(fail)?;
            let h: GetNextBrokerIdResponseHeader = resp
                .decode_header()
                .map_err(|e| fail(format!("get next broker id: {e}")))?;
            let next = h
                .next_broker_id
                .ok_or_else(|| fail("the controller named no broker id".to_owned()))?;
            let id = Identity {
                cluster_name: config.broker_cluster_name.clone(),
                broker_name: config.broker_name.clone(),
                broker_id: next,
                register_check_code: format!("{broker_addr};{}", BrokerState::now_ms()),
                applied: false,
            };
            write_identity(path, &id)?;
            *identity = Some(id.clone());
            id
        }
    };
    let req = RemotingCommand::request_with_header(
        RequestCode::ControllerApplyBrokerId,
        &ApplyBrokerIdRequestHeader {
            cluster_name: chosen.cluster_name.clone(),
            broker_name: chosen.broker_name.clone(),
            applied_broker_id: chosen.broker_id,
            register_check_code: chosen.register_check_code.clone(),
        },
    );
    let resp = link.call(req).await.map_err(fail)?;
    if resp.response_code() == ResponseCode::ControllerBrokerIdInvalid {
        // Someone else took the id first: choose again.
        *identity = None;
        let _ = std::fs::remove_file(path);
    }
    expect_success(&resp, "apply broker id").map_err(fail)?;
    let done = Identity {
        applied: true,
        ..chosen
    };
    write_identity(path, &done)?;
    tracing::info!(
        broker_id = done.broker_id,
        "broker id assigned by the controller"
    );
    Ok(done.broker_id)
}

/// The controller's view of this broker's group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupView {
    master_id: Option<u64>,
    master_addr: Option<String>,
    master_epoch: i32,
    sync_state_set: SyncStateSet,
}

/// What this broker currently is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Unknown,
    Master {
        epoch: i32,
    },
    Slave {
        master: u64,
        epoch: i32,
        replicating: bool,
    },
    /// The controller knows no master (none can be elected now).
    Orphan,
}

/// A replica added to the local SyncStateSet, waiting to acknowledge `fence` before the
/// controller is asked to add it.
struct Joining {
    id: u64,
    fence: i64,
    since: Instant,
}

/// Runs the background tasks of the current role, replacing them on a switch.
pub struct RoleTasks {
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
    pub namesrv: RemotingClient,
    current: parking_lot::Mutex<Option<CancellationToken>>,
}

impl RoleTasks {
    pub fn new(tasks: TaskTracker, stop: CancellationToken, namesrv: RemotingClient) -> RoleTasks {
        RoleTasks {
            tasks,
            stop,
            namesrv,
            current: parking_lot::Mutex::new(None),
        }
    }

    pub fn switch(&self, s: &Arc<BrokerState>, slave: bool) {
        let token = self.stop.child_token();
        if let Some(old) = self.current.lock().replace(token.clone()) {
            old.cancel();
        }
        crate::spawn_role_tasks(s, &self.namesrv, &self.tasks, token, slave);
    }
}

struct RoleLoop {
    s: Arc<BrokerState>,
    link: Arc<ControllerLink>,
    /// Dials other brokers (the master's epoch query).
    brokers: RemotingClient,
    role_tasks: RoleTasks,
    me: u64,
    role: Role,
    view: Option<GroupView>,
    joining: Option<Joining>,
    registered: bool,
    last_sync_check: Instant,
    last_poll: Instant,
}

/// The role loop; ends when `stop` fires.
pub async fn run(
    s: Arc<BrokerState>,
    link: Arc<ControllerLink>,
    brokers: RemotingClient,
    role_tasks: RoleTasks,
    stop: CancellationToken,
) {
    let Some(me) = s.controller_broker_id else {
        return;
    };
    let mut r = RoleLoop {
        s,
        link,
        brokers,
        role_tasks,
        me,
        role: Role::Unknown,
        view: None,
        joining: None,
        registered: false,
        last_sync_check: Instant::now(),
        last_poll: Instant::now(),
    };
    loop {
        r.round().await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_PERIOD) => {}
            _ = r.s.role_changed.notified() => r.last_poll = Instant::now() - Duration::from_secs(3600),
        }
    }
}

impl RoleLoop {
    async fn round(&mut self) {
        let cfg = self.s.config();
        if !self.registered {
            match self.register(&cfg).await {
                Ok(view) => {
                    self.registered = true;
                    self.last_poll = Instant::now();
                    self.apply(view).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register with the controller");
                    return;
                }
            }
        }
        let poll_period = Duration::from_millis(cfg.sync_broker_metadata_period.clamp(200, 60_000));
        let retry = matches!(
            self.role,
            Role::Slave {
                replicating: false,
                ..
            } | Role::Unknown
        );
        if retry || self.last_poll.elapsed() >= poll_period {
            self.last_poll = Instant::now();
            match self.replica_info(&cfg).await {
                Ok(view) => self.apply(view).await,
                Err(e) => tracing::debug!(error = %e, "cannot read replica info"),
            }
        }
        let check_period =
            Duration::from_millis(cfg.check_sync_state_set_period.clamp(200, 60_000));
        if matches!(self.role, Role::Master { .. })
            && self.last_sync_check.elapsed() >= check_period
        {
            self.last_sync_check = Instant::now();
            self.maintain_sync_state_set(&cfg).await;
        }
    }

    async fn register(&self, cfg: &BrokerConfig) -> Result<GroupView, String> {
        let req = RemotingCommand::request_with_header(
            RequestCode::ControllerRegisterBroker,
            &RegisterBrokerToControllerRequestHeader {
                cluster_name: cfg.broker_cluster_name.clone(),
                broker_name: cfg.broker_name.clone(),
                broker_id: self.me,
                broker_address: self.s.broker_addr.clone(),
                invoke_time: Some(BrokerState::now_ms()),
            },
        );
        let resp = self.link.call(req).await?;
        expect_success(&resp, "register")?;
        let h: RegisterBrokerToControllerResponseHeader =
            resp.decode_header().map_err(|e| e.to_string())?;
        Ok(GroupView {
            master_id: h.master_broker_id,
            master_addr: h.master_address,
            master_epoch: h.master_epoch.unwrap_or(0),
            sync_state_set: sync_state_set_of(&resp)?,
        })
    }
}

/// Heartbeats to the controller leader every second, on their own task so that a slow role
/// switch never makes this broker look dead.
pub async fn heartbeat_loop(
    s: Arc<BrokerState>,
    link: Arc<ControllerLink>,
    stop: CancellationToken,
) {
    let Some(me) = s.controller_broker_id else {
        return;
    };
    loop {
        if let Err(e) = heartbeat(&s, &link, me).await {
            tracing::debug!(error = %e, "controller heartbeat failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_PERIOD) => {}
        }
    }
}

async fn heartbeat(s: &BrokerState, link: &ControllerLink, me: u64) -> Result<(), String> {
    let cfg = s.config();
    let max = s.store.commit_log_max_offset();
    let req = RemotingCommand::request_with_header(
        RequestCode::BrokerHeartbeat,
        &BrokerHeartbeatRequestHeader {
            cluster_name: cfg.broker_cluster_name.clone(),
            broker_addr: s.broker_addr.clone(),
            broker_name: cfg.broker_name.clone(),
            broker_id: Some(me as i64),
            // The epoch of this log's newest data and its end: what the controller elects by.
            epoch: Some(
                s.store
                    .epoch_entries()
                    .iter()
                    .rev()
                    .find(|e| e.start_offset <= max)
                    .map_or(0, |e| e.epoch),
            ),
            max_offset: Some(max),
            confirm_offset: Some(max),
            heartbeat_timeout_mills: Some(cfg.controller_heart_beat_timeout_mills as i64),
            election_priority: Some(cfg.broker_election_priority),
        },
    );
    let resp = link.call(req).await?;
    expect_success(&resp, "heartbeat")
}

impl RoleLoop {
    async fn replica_info(&self, cfg: &BrokerConfig) -> Result<GroupView, String> {
        let req = RemotingCommand::request_with_header(
            RequestCode::ControllerGetReplicaInfo,
            &GetReplicaInfoRequestHeader {
                broker_name: cfg.broker_name.clone(),
            },
        );
        let resp = self.link.call(req).await?;
        expect_success(&resp, "get replica info")?;
        let h: GetReplicaInfoResponseHeader = resp.decode_header().map_err(|e| e.to_string())?;
        Ok(GroupView {
            master_id: h.master_broker_id,
            master_addr: h.master_address,
            master_epoch: h.master_epoch.unwrap_or(0),
            sync_state_set: sync_state_set_of(&resp)?,
        })
    }

    /// Takes the role the controller's view gives this broker. A view older than the last
    /// one (a lagging or deposed controller answered) is ignored: epochs only go forward.
    async fn apply(&mut self, view: GroupView) {
        if let Some(prev) = &self.view {
            let age = |v: &GroupView| (v.master_epoch, v.sync_state_set.sync_state_set_epoch);
            if age(&view) < age(prev) {
                tracing::debug!(?view, ?prev, "ignoring an older controller view");
                return;
            }
        }
        self.view = Some(view.clone());
        match view.master_id {
            Some(m) if m == self.me => {
                if self.role
                    != (Role::Master {
                        epoch: view.master_epoch,
                    })
                {
                    self.become_master(view.master_epoch).await;
                }
                if matches!(self.role, Role::Master { .. }) {
                    self.sync_local_set();
                }
            }
            Some(m) => {
                let settled = Role::Slave {
                    master: m,
                    epoch: view.master_epoch,
                    replicating: true,
                };
                if self.role != settled {
                    self.become_slave(m, view.master_epoch, view.master_addr.as_deref())
                        .await;
                }
            }
            None => {
                if self.role != Role::Orphan {
                    tracing::warn!("the controller knows no master for this group");
                    self.step_down().await;
                    self.role = Role::Orphan;
                }
            }
        }
    }

    fn set_config(&self, role: &str, broker_id: i64) {
        let mut guard = self.s.config.write().unwrap_or_else(|p| p.into_inner());
        if guard.broker_role == role && guard.broker_id == broker_id {
            return;
        }
        let mut next = (**guard).clone();
        next.broker_role = role.to_owned();
        next.broker_id = broker_id;
        *guard = Arc::new(next);
    }

    async fn become_master(&mut self, epoch: i32) {
        let role = BrokerRole::parse(self.s.elected_role).unwrap_or(BrokerRole::SyncMaster);
        let store = self.s.store.clone();
        let switched = tokio::task::spawn_blocking(move || store.become_master(role, epoch)).await;
        match switched {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot become master");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot become master");
                return;
            }
        }
        let was_master = matches!(self.role, Role::Master { .. });
        self.role = Role::Master { epoch };
        self.joining = None;
        self.set_config(self.s.elected_role, 0);
        self.s.master_addr.send_replace(None);
        if !was_master {
            self.role_tasks.switch(&self.s, false);
        }
        self.s.register_now.notify_one();
        tracing::info!(broker_id = self.me, epoch, "this broker is now the master");
    }

    /// Stops taking writes (and replicating): the first half of every switch to slave.
    async fn step_down(&mut self) {
        let store = self.s.store.clone();
        match tokio::task::spawn_blocking(move || store.become_slave()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot step down"),
            Err(e) => tracing::error!(error = %e, "cannot step down"),
        }
        self.joining = None;
        self.set_config("SLAVE", self.me as i64);
        if matches!(self.role, Role::Master { .. } | Role::Unknown) {
            self.role_tasks.switch(&self.s, true);
        }
        self.s.register_now.notify_one();
    }

    async fn become_slave(&mut self, master: u64, epoch: i32, master_addr: Option<&str>) {
        self.step_down().await;
        self.role = Role::Slave {
            master,
            epoch,
            replicating: false,
        };
        let Some(addr) = master_addr.filter(|a| !a.is_empty()) else {
            return;
        };
        self.s.master_addr.send_replace(Some(addr.to_owned()));
        let (epochs, master_max, ha_addr) = match self.master_epochs(addr).await {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(master = %addr, error = %e, "master not ready to replicate from yet");
                return;
            }
        };
        let store = self.s.store.clone();
        let ha = ha_addr.clone();
        let reconciled = tokio::task::spawn_blocking(move || {
            let cut = store.reconcile_with_master(&epochs, master_max)?;
            store.replicate_from(&ha)?;
            Ok::<_, ferrymq_store::StoreError>(cut)
        })
        .await;
        match reconciled {
            Ok(Ok(cut)) => {
                if let Some(at) = cut {
                    tracing::warn!(
                        offset = at,
                        "commit log cut back to where it agrees with the new master"
                    );
                }
                self.role = Role::Slave {
                    master,
                    epoch,
                    replicating: true,
                };
                tracing::info!(master = %addr, ha = %ha_addr, epoch, "this broker is now a slave");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot start replicating from the new master")
            }
            Err(e) => tracing::error!(error = %e, "cannot start replicating from the new master"),
        }
    }

    /// GET_BROKER_EPOCH_CACHE on the master: its epochs, end of log and HA address.
    async fn master_epochs(&self, addr: &str) -> Result<(Vec<Epoch>, i64, String), String> {
        let req = RemotingCommand::request(RequestCode::GetBrokerEpochCache);
        let resp = self
            .brokers
            .invoke(addr, req, CALL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        expect_success(&resp, "get epoch cache")?;
        let h: GetEpochEntryCacheResponseHeader =
            resp.decode_header().map_err(|e| e.to_string())?;
        let cache: EpochEntryCache =
            serde_json::from_slice(&resp.body.to_bytes()).map_err(|e| e.to_string())?;
        if cache.epoch_list.is_empty() {
            return Err("the master has not recorded its epoch yet".to_owned());
        }
        let ha = h
            .ha_server_addr
            .filter(|a| !a.is_empty())
            .ok_or_else(|| "the master did not say where it replicates".to_owned())?;
        let epochs: Vec<Epoch> = cache
            .epoch_list
            .iter()
            .map(|e| Epoch {
                epoch: e.epoch,
                start_offset: e.start_offset,
            })
            .collect();
        // The list decides what this log cuts: refuse anything but a well-formed history.
        let ordered = epochs
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset);
        let in_range = epochs
            .iter()
            .all(|e| e.start_offset >= 0 && e.start_offset <= cache.max_offset);
        if !ordered || !in_range || cache.max_offset < 0 {
            return Err(format!(
                "the master's epochs are malformed: {:?} (max offset {})",
                cache.epoch_list, cache.max_offset
            ));
        }
        Ok((epochs, cache.max_offset, ha))
    }

    /// The store waits for the controller's SyncStateSet (and a joining replica).
    fn sync_local_set(&self) {
        let Some(view) = &self.view else { return };
        let mut others: BTreeSet<u64> = view.sync_state_set.sync_state_set.clone();
        others.remove(&self.me);
        if let Some(j) = &self.joining {
            others.insert(j.id);
        }
        self.s.store.set_sync_state_set(others);
    }

    async fn alter(&mut self, cfg: &BrokerConfig, new_set: BTreeSet<u64>) -> bool {
        let (Some(view), Role::Master { epoch }) = (&self.view, &self.role) else {
            return false;
        };
        let req = RemotingCommand::request_with_header(
            RequestCode::ControllerAlterSyncStateSet,
            &AlterSyncStateSetRequestHeader {
                broker_name: cfg.broker_name.clone(),
                master_broker_id: self.me,
                master_epoch: *epoch,
                invoke_time: Some(BrokerState::now_ms()),
            },
        )
        .with_body(Bytes::from(
            serde_json::to_vec(&SyncStateSet {
                sync_state_set: new_set.clone(),
                sync_state_set_epoch: view.sync_state_set.sync_state_set_epoch,
            })
            .unwrap_or_default(),
        ));
        match self.link.call(req).await {
            Ok(resp) if resp.response_code() == ResponseCode::Success => {
                match sync_state_set_of(&resp) {
                    Ok(set) => {
                        tracing::info!(set = ?set.sync_state_set, epoch = set.sync_state_set_epoch, "SyncStateSet changed");
                        if let Some(v) = self.view.as_mut() {
                            v.sync_state_set = set;
                        }
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "bad SyncStateSet answer");
                        false
                    }
                }
            }
            Ok(resp) => {
                tracing::warn!(code = resp.code, remark = ?resp.remark, "SyncStateSet change refused");
                // The view is stale (a fenced epoch): read it again next round.
                self.last_poll = Instant::now() - Duration::from_secs(3600);
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "SyncStateSet change failed");
                self.last_poll = Instant::now() - Duration::from_secs(3600);
                false
            }
        }
    }

    /// One step of keeping the SyncStateSet to the replicas that are caught up.
    async fn maintain_sync_state_set(&mut self, cfg: &BrokerConfig) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let current = view.sync_state_set.sync_state_set.clone();
        let status = self.s.store.ha_status();
        let limit = Duration::from_millis(cfg.ha_max_time_slave_not_catchup.max(100));
        let replica = |id: u64| status.replicas.iter().find(|r| r.broker_id == Some(id));

        if let Some(j) = &self.joining {
            let (id, fence, since) = (j.id, j.fence, j.since);
            let ready = replica(id).is_some_and(|r| r.acked >= fence);
            if ready {
                let mut grown = current.clone();
                grown.insert(id);
                self.joining = None;
                // On failure the replica stays in the local set: the controller may have
                // taken the change anyway (an answer lost in transit), and counting a replica
                // too many only makes puts wait longer. The next view decides.
                if self.alter(cfg, grown).await {
                    self.sync_local_set();
                }
            } else if replica(id).is_none() || since.elapsed() > limit {
                self.joining = None;
                self.sync_local_set();
            }
            return;
        }
        for id in current.iter().copied().filter(|id| *id != self.me) {
            let lagging = replica(id).is_none_or(|r| r.caught_up_ago.is_none_or(|ago| ago > limit));
            if lagging {
                tracing::warn!(
                    broker_id = id,
                    "replica fell behind; removing it from the SyncStateSet"
                );
                let mut shrunk = current.clone();
                shrunk.remove(&id);
                if self.alter(cfg, shrunk).await {
                    self.sync_local_set();
                }
                return;
            }
        }
        let candidate = status.replicas.iter().find(|r| {
            r.broker_id
                .is_some_and(|id| !current.contains(&id) && id != self.me)
                && r.caught_up_ago.is_some_and(|ago| ago <= limit)
        });
        if let Some(id) = candidate.and_then(|r| r.broker_id) {
            let mut others = current.clone();
            others.remove(&self.me);
            others.insert(id);
            if let Some(fence) = self.s.store.set_sync_state_set(others) {
                self.joining = Some(Joining {
                    id,
                    fence,
                    since: Instant::now(),
                });
            }
        }
    }
}

fn sync_state_set_of(resp: &RemotingCommand) -> Result<SyncStateSet, String> {
    let body = resp.body.to_bytes();
    if body.is_empty() {
        return Ok(SyncStateSet::default());
    }
    serde_json::from_slice(&body).map_err(|e| format!("bad SyncStateSet body: {e}"))
}

/// GET_BROKER_EPOCH_CACHE (1007): this broker's epochs with their ends, and where its
/// slaves replicate from.
pub fn epoch_cache(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let cfg = s.config();
    let entries = s.store.epoch_entries();
    let max = s.store.commit_log_max_offset();
    let epoch_list = entries
        .iter()
        .enumerate()
        .map(|(i, e)| EpochEntry {
            epoch: e.epoch,
            start_offset: e.start_offset,
            end_offset: entries.get(i + 1).map_or(max, |n| n.start_offset),
        })
        .collect();
    let cache = EpochEntryCache {
        cluster_name: cfg.broker_cluster_name.clone(),
        broker_name: cfg.broker_name.clone(),
        broker_id: s.controller_broker_id.unwrap_or(cfg.broker_id as u64),
        epoch_list,
        max_offset: max,
    };
    // Only a master hands out its epochs: a slave's would name a replication source that
    // is not taking writes.
    if s.store.role() == BrokerRole::Slave {
        return RemotingCommand::error_response(
            req,
            ResponseCode::ControllerInvalidMaster,
            "this broker is not a master",
        );
    }
    RemotingCommand::response_to(req, ResponseCode::Success)
        .with_header(&GetEpochEntryCacheResponseHeader {
            ha_server_addr: Some(s.ha_server_addr.clone()),
        })
        .with_body(Bytes::from(serde_json::to_vec(&cache).unwrap_or_default()))
}

/// NOTIFY_BROKER_ROLE_CHANGED (1008): look at the controller's view now.
pub fn role_changed(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    s.role_changed.notify_one();
    RemotingCommand::response_to(req, ResponseCode::Success)
}
