//! The NameServer's request handler: decodes each NameServer request (request-codes.md §11),
//! applies it to the route table or the KV config, and answers the way Java's
//! DefaultRequestProcessor/ClientRequestProcessor do — same codes, same remarks, same bodies.
//!
//! It also owns broker liveness: it remembers which connection each broker registered over, so
//! a closed connection removes its brokers at once, and [`NamesrvHandler::scan_not_active_brokers`]
//! (run periodically by the server) removes brokers whose heartbeat timed out and closes their
//! connections.
//!
//! Errors never panic or drop a connection: a missing or malformed header or body is answered
//! with SYSTEM_ERROR and the reason as remark, which is what Java's remoting layer sends when a
//! processor throws.

// The error side *is* the response, moved out exactly once per request; boxing it would only add
// an allocation to every error reply.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferrymq_protocol::body::{
    from_java_json, DataVersion, GetBrokerMemberGroupResponseBody, RegisterBrokerBody,
    TopicRouteData,
};
use ferrymq_protocol::header::{
    AddWritePermOfBrokerResponseHeader, BrokerHeartbeatRequestHeader, BrokerIdentityHeader,
    BrokerNameHeader, CommandHeader, DeleteTopicFromNamesrvRequestHeader,
    GetBrokerMemberGroupRequestHeader, GetKvConfigResponseHeader,
    GetKvListByNamespaceRequestHeader, GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader,
    KvConfigKeyHeader, PutKvConfigRequestHeader, QueryDataVersionResponseHeader,
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, RegisterTopicRequestHeader,
    WipeWritePermOfBrokerResponseHeader,
};
use ferrymq_protocol::java_properties;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{Connection, RequestHandler, SharedHandler};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::{NamesrvConfig, IGNORED_JAVA_KEYS, STARTUP_ONLY_KEYS};
use crate::file::write_atomically;
use crate::kv::{KvStore, ORDER_TOPIC_CONFIG};
use crate::route::{BrokerRegistration, RegisterOutcome, RouteOptions, RouteTable};

/// Java's FAQ hint appended to "no route" remarks (FAQUrl.suggestTodo(APPLY_TOPIC_URL)).
const APPLY_TOPIC_HINT: &str =
    "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

/// A request either answered normally or cut short with an error response; both are replies.
type Reply = Result<RemotingCommand, RemotingCommand>;

/// Serves every NameServer request code and tracks broker connections.
pub struct NamesrvHandler {
    config: RwLock<NamesrvConfig>,
    routes: RwLock<RouteTable>,
    kv: KvStore,
    /// Connections that carried a broker registration, by connection id: closed on expiry.
    broker_connections: Mutex<HashMap<u64, Connection>>,
    /// Serializes UPDATE_NAMESRV_CONFIG (read-modify-write plus file write).
    config_update: tokio::sync::Mutex<()>,
    started: Instant,
    /// `enableControllerInNamesrv`: the embedded controller, which serves the controller codes
    /// (1001–1013) and the brokers' controller heartbeats on this port, as in RocketMQ.
    controller: Option<SharedHandler>,
    /// `rocketmq_rpc_latency` of the requests served here.
    pub(crate) rpc: ferrymq_metrics::series::RpcLatency,
}

impl std::fmt::Debug for NamesrvHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamesrvHandler")
            .field("live_brokers", &self.routes.read().live_count())
            .finish_non_exhaustive()
    }
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::Success)
}

fn error(req: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::error_response(req, code, remark)
}

fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>()
        .map_err(|e| error(req, ResponseCode::SystemError, e.to_string()))
}

fn json<T: Serialize>(req: &RemotingCommand, value: &T) -> Result<Vec<u8>, RemotingCommand> {
    serde_json::to_vec(value).map_err(|e| {
        error(
            req,
            ResponseCode::SystemError,
            format!("cannot encode body: {e}"),
        )
    })
}

fn body_text(req: &RemotingCommand) -> Result<String, RemotingCommand> {
    String::from_utf8(req.body.to_bytes().to_vec())
        .map_err(|_| error(req, ResponseCode::SystemError, "body is not UTF-8"))
}

/// Java's `UtilAll.crc32`: CRC32 with the sign bit masked off.
fn masked_crc32(bytes: &[u8]) -> i32 {
    (crc32fast::hash(bytes) & 0x7FFF_FFFF) as i32
}

impl NamesrvHandler {
    pub fn new(config: NamesrvConfig, kv: KvStore) -> NamesrvHandler {
        NamesrvHandler {
            config: RwLock::new(config),
            routes: RwLock::new(RouteTable::new()),
            kv,
            broker_connections: Mutex::new(HashMap::new()),
            config_update: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            controller: None,
            rpc: ferrymq_metrics::series::RpcLatency::default(),
        }
    }

    /// Brokers whose registration is live now.
    pub(crate) fn live_brokers(&self) -> usize {
        self.routes.read().live_count()
    }

    /// Hands the controller's requests on this port to `controller`.
    pub fn with_controller(mut self, controller: SharedHandler) -> NamesrvHandler {
        self.controller = Some(controller);
        self
    }

    /// Whether the embedded controller takes this request: its own codes, and heartbeats
    /// that name a broker id (a controller-mode broker's).
    fn for_controller(&self, req: &RemotingCommand) -> Option<&SharedHandler> {
        let controller = self.controller.as_ref()?;
        let code = req.code;
        let heartbeat = code == RequestCode::BrokerHeartbeat.value()
            && req.ext_fields.get("brokerId").is_some();
        ((1001..=1013).contains(&code) || heartbeat).then_some(controller)
    }

    /// The current configuration (it changes through UPDATE_NAMESRV_CONFIG).
    pub fn config(&self) -> NamesrvConfig {
        self.config.read().clone()
    }

    fn route_options(&self) -> RouteOptions {
        let c = self.config.read();
        RouteOptions {
            default_heartbeat_timeout: c.default_heartbeat_timeout(),
            delete_topic_with_broker_registration: c.delete_topic_with_broker_registration,
            support_acting_master: c.support_acting_master,
        }
    }

    /// Removes brokers silent for longer than their heartbeat timeout and closes their
    /// connections. Returns how many were removed.
    pub fn scan_not_active_brokers(&self) -> usize {
        let expired = self.routes.write().expire(Instant::now());
        for (key, live) in &expired {
            warn!(
                broker = %key,
                timeout_ms = live.heartbeat_timeout.as_millis() as u64,
                silent_ms = live.last_update.elapsed().as_millis() as u64,
                "broker heartbeat expired; broker removed"
            );
            let conn = live
                .connection_id
                .and_then(|id| self.broker_connections.lock().get(&id).cloned());
            if let Some(conn) = conn {
                // A broker that stopped heartbeating is not trusted with its socket either;
                // closing it also removes anything else registered over it.
                conn.close();
            }
        }
        expired.len()
    }

    async fn dispatch(&self, conn: &Connection, req: &RemotingCommand) -> Reply {
        match req.request_code() {
            RequestCode::PutKvConfig => self.put_kv_config(req).await,
            RequestCode::GetKvConfig => self.get_kv_config(req),
            RequestCode::DeleteKvConfig => self.delete_kv_config(req).await,
            RequestCode::GetKvlistByNamespace => self.get_kv_list(req),
            RequestCode::RegisterBroker => self.register_broker(conn, req),
            RequestCode::UnregisterBroker => self.unregister_broker(conn, req),
            RequestCode::QueryDataVersion => self.query_data_version(req),
            RequestCode::BrokerHeartbeat => self.broker_heartbeat(req),
            RequestCode::GetBrokerMemberGroup => self.broker_member_group(req),
            RequestCode::GetRouteinfoByTopic => self.route_by_topic(req),
            RequestCode::GetBrokerClusterInfo => {
                let info = self.routes.read().cluster_info();
                // Quoted broker-id keys: Java writes them bare, but every client family
                // (fastjson included) accepts quoted ones, and Go's JSON reader needs them.
                Ok(ok(req).with_body(json(req, &info)?))
            }
            RequestCode::WipeWritePermOfBroker => self.change_write_perm(conn, req, false),
            RequestCode::AddWritePermOfBroker => self.change_write_perm(conn, req, true),
            RequestCode::GetAllTopicListFromNameserver => {
                if !self.config.read().enable_all_topic_list {
                    return Err(error(req, ResponseCode::SystemError, "disable"));
                }
                let list = self.routes.read().all_topics();
                Ok(ok(req).with_body(json(req, &list)?))
            }
            RequestCode::GetTopicsByCluster => {
                self.topic_list_enabled(req)?;
                let h: GetTopicsByClusterRequestHeader = header(req)?;
                let list = self.routes.read().topics_by_cluster(&h.cluster);
                Ok(ok(req).with_body(json(req, &list)?))
            }
            RequestCode::GetSystemTopicListFromNs => {
                let list = self.routes.read().system_topics();
                Ok(ok(req).with_body(json(req, &list)?))
            }
            RequestCode::GetUnitTopicList => {
                self.topic_list_enabled(req)?;
                let list = self.routes.read().unit_topics();
                Ok(ok(req).with_body(json(req, &list)?))
            }
            RequestCode::GetHasUnitSubTopicList => {
                self.topic_list_enabled(req)?;
                let list = self.routes.read().has_unit_sub_topics();
                Ok(ok(req).with_body(json(req, &list)?))
            }
            RequestCode::GetHasUnitSubUnunitTopicList => {
                self.topic_list_enabled(req)?;
                let list = self.routes.read().has_unit_sub_ununit_topics();
                Ok(ok(req).with_body(json(req, &list)?))
            }
            RequestCode::DeleteTopicInNamesrv => self.delete_topic(conn, req),
            RequestCode::RegisterTopicInNamesrv => self.register_topic(req),
            RequestCode::GetNamesrvConfig => {
                let text = self.config.read().to_properties_text();
                Ok(ok(req).with_body(text))
            }
            RequestCode::UpdateNamesrvConfig => self.update_config(conn, req).await,
            _ => Ok(RemotingCommand::unsupported(req)),
        }
    }

    fn topic_list_enabled(&self, req: &RemotingCommand) -> Result<(), RemotingCommand> {
        if self.config.read().enable_topic_list {
            Ok(())
        } else {
            Err(error(req, ResponseCode::SystemError, "disable"))
        }
    }

    async fn put_kv_config(&self, req: &RemotingCommand) -> Reply {
        let h: PutKvConfigRequestHeader = header(req)?;
        self.kv
            .put(&h.namespace, &h.key, &h.value)
            .await
            .map_err(|e| error(req, ResponseCode::SystemError, e.to_string()))?;
        Ok(ok(req))
    }

    fn get_kv_config(&self, req: &RemotingCommand) -> Reply {
        let h: KvConfigKeyHeader = header(req)?;
        match self.kv.get(&h.namespace, &h.key) {
            Some(value) => {
                Ok(ok(req).with_header(&GetKvConfigResponseHeader { value: Some(value) }))
            }
            None => Err(error(
                req,
                ResponseCode::QueryNotFound,
                format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
            )),
        }
    }

    async fn delete_kv_config(&self, req: &RemotingCommand) -> Reply {
        let h: KvConfigKeyHeader = header(req)?;
        self.kv
            .delete(&h.namespace, &h.key)
            .await
            .map_err(|e| error(req, ResponseCode::SystemError, e.to_string()))?;
        Ok(ok(req))
    }

    fn get_kv_list(&self, req: &RemotingCommand) -> Reply {
        let h: GetKvListByNamespaceRequestHeader = header(req)?;
        match self.kv.namespace(&h.namespace) {
            Some(table) => Ok(ok(req).with_body(json(req, &table)?)),
            None => Err(error(
                req,
                ResponseCode::QueryNotFound,
                format!("No config item, Namespace: {}", h.namespace),
            )),
        }
    }

    fn register_broker(&self, conn: &Connection, req: &RemotingCommand) -> Reply {
        let h: RegisterBrokerRequestHeader = header(req)?;
        let raw = req.body.to_bytes();
        let crc = h.body_crc32.unwrap_or(0);
        if crc != 0 && masked_crc32(&raw) != crc {
            warn!(peer = %conn.peer_addr(), broker = %h.broker_addr, "registration body crc32 does not match");
            return Err(error(req, ResponseCode::SystemError, "crc32 not match"));
        }
        // An empty body is a registration without topics (Java: an all-zero data version).
        let body = if raw.is_empty() {
            RegisterBrokerBody::default()
        } else {
            RegisterBrokerBody::decode(&raw, h.compressed.unwrap_or(false)).map_err(|e| {
                error(
                    req,
                    ResponseCode::SystemError,
                    format!("Failed to decode RegisterBrokerBody: {e}"),
                )
            })?
        };
        let registration = BrokerRegistration {
            cluster: h.cluster_name,
            broker_addr: h.broker_addr,
            broker_name: h.broker_name,
            broker_id: h.broker_id,
            ha_server_addr: h.ha_server_addr,
            zone_name: h.zone_name,
            heartbeat_timeout: h
                .heartbeat_timeout_millis
                .and_then(|ms| u64::try_from(ms).ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            enable_acting_master: h.enable_acting_master,
            topics: body.topic_config_serialize_wrapper,
            filter_servers: body.filter_server_list,
            connection_id: Some(conn.id()),
        };
        let options = self.route_options();
        let outcome = self
            .routes
            .write()
            .register(registration, &options, Instant::now());
        let (master_addr, master_ha_addr) = match outcome {
            RegisterOutcome::Rejected => {
                return Err(error(
                    req,
                    ResponseCode::SystemError,
                    "register broker failed",
                ))
            }
            RegisterOutcome::Ignored => (None, None),
            RegisterOutcome::Registered {
                master_addr,
                master_ha_addr,
            } => {
                self.track_broker_connection(conn);
                (master_addr, master_ha_addr)
            }
        };
        let mut response = ok(req).with_header(&RegisterBrokerResponseHeader {
            ha_server_addr: master_ha_addr,
            master_addr,
        });
        if self.config.read().return_order_topic_config_to_broker {
            if let Some(table) = self.kv.namespace(ORDER_TOPIC_CONFIG) {
                response = response.with_body(json(req, &table)?);
            }
        }
        Ok(response)
    }

    /// Remembers a broker's connection. A registration can race with the close of its
    /// connection; checking after the insert guarantees one of the two sides cleans up.
    fn track_broker_connection(&self, conn: &Connection) {
        self.broker_connections
            .lock()
            .insert(conn.id(), conn.clone());
        if conn.is_closed() {
            self.forget_connection(conn);
        }
    }

    fn forget_connection(&self, conn: &Connection) {
        if self.broker_connections.lock().remove(&conn.id()).is_none() {
            // Never carried a registration (clients, admin tools): nothing to clean up.
            return;
        }
        let removed = self.routes.write().remove_connection(conn.id());
        for key in removed {
            info!(broker = %key, peer = %conn.peer_addr(), "broker connection closed; broker removed");
        }
    }

    fn unregister_broker(&self, conn: &Connection, req: &RemotingCommand) -> Reply {
        let h: BrokerIdentityHeader = header(req)?;
        let removed =
            self.routes
                .write()
                .unregister(&h.cluster_name, &h.broker_addr, &h.broker_name);
        info!(
            cluster = %h.cluster_name, broker = %h.broker_name, addr = %h.broker_addr,
            id = h.broker_id, peer = %conn.peer_addr(), was_live = removed.is_some(),
            "broker unregistered"
        );
        Ok(ok(req))
    }

    fn query_data_version(&self, req: &RemotingCommand) -> Reply {
        let h: BrokerIdentityHeader = header(req)?;
        let theirs: DataVersion = from_java_json(&body_text(req)?).map_err(|e| {
            error(
                req,
                ResponseCode::SystemError,
                format!("malformed DataVersion body: {e}"),
            )
        })?;
        let (changed, ours) = {
            let mut routes = self.routes.write();
            let ours = routes
                .data_version(&h.cluster_name, &h.broker_addr)
                .cloned();
            routes.touch(&h.cluster_name, &h.broker_addr, Instant::now());
            (ours.as_ref() != Some(&theirs), ours)
        };
        let mut response = ok(req).with_header(&QueryDataVersionResponseHeader { changed });
        if let Some(ours) = ours {
            response = response.with_body(json(req, &ours)?);
        }
        Ok(response)
    }

    fn broker_heartbeat(&self, req: &RemotingCommand) -> Reply {
        let h: BrokerHeartbeatRequestHeader = header(req)?;
        self.routes
            .write()
            .touch(&h.cluster_name, &h.broker_addr, Instant::now());
        Ok(ok(req))
    }

    fn broker_member_group(&self, req: &RemotingCommand) -> Reply {
        let h: GetBrokerMemberGroupRequestHeader = header(req)?;
        let group = self
            .routes
            .read()
            .broker_member_group(&h.cluster_name, &h.broker_name);
        let body = GetBrokerMemberGroupResponseBody {
            broker_member_group: group,
        };
        Ok(ok(req).with_body(json(req, &body)?))
    }

    fn route_by_topic(&self, req: &RemotingCommand) -> Reply {
        let h: GetRouteInfoRequestHeader = header(req)?;
        let (wait, order_enabled) = {
            let c = self.config.read();
            let wait = c
                .need_wait_for_service
                .then(|| Duration::from_secs(c.wait_seconds_for_service));
            (wait, c.order_message_enable)
        };
        if wait.is_some_and(|w| self.started.elapsed() < w) {
            return Err(error(
                req,
                ResponseCode::SystemError,
                "name server not ready",
            ));
        }
        let options = self.route_options();
        let Some(mut route) = self.routes.read().route(&h.topic, &options) else {
            return Err(error(
                req,
                ResponseCode::TopicNotExist,
                format!(
                    "No topic route info in name server for the topic: {}{APPLY_TOPIC_HINT}",
                    h.topic
                ),
            ));
        };
        if order_enabled {
            route.order_topic_conf = self.kv.get(ORDER_TOPIC_CONFIG, &h.topic);
        }
        Ok(ok(req).with_body(encode_route(req, &h, &route)?))
    }

    fn change_write_perm(&self, conn: &Connection, req: &RemotingCommand, add: bool) -> Reply {
        let h: BrokerNameHeader = header(req)?;
        let mut routes = self.routes.write();
        let count = if add {
            routes.add_write_perm(&h.broker_name)
        } else {
            routes.wipe_write_perm(&h.broker_name)
        };
        drop(routes);
        info!(broker = %h.broker_name, peer = %conn.peer_addr(), topics = count, add, "write permission of broker changed");
        let response = ok(req);
        Ok(if add {
            response.with_header(&AddWritePermOfBrokerResponseHeader {
                add_topic_count: count,
            })
        } else {
            response.with_header(&WipeWritePermOfBrokerResponseHeader {
                wipe_topic_count: count,
            })
        })
    }

    fn delete_topic(&self, conn: &Connection, req: &RemotingCommand) -> Reply {
        let h: DeleteTopicFromNamesrvRequestHeader = header(req)?;
        let mut routes = self.routes.write();
        match h.cluster_name.as_deref() {
            Some(cluster) => {
                let n = routes.delete_topic_in_cluster(&h.topic, cluster);
                drop(routes);
                info!(topic = %h.topic, cluster, brokers = n, peer = %conn.peer_addr(), "topic deleted from cluster");
            }
            None => {
                let existed = routes.delete_topic(&h.topic);
                drop(routes);
                info!(topic = %h.topic, existed, peer = %conn.peer_addr(), "topic deleted");
            }
        }
        Ok(ok(req))
    }

    fn register_topic(&self, req: &RemotingCommand) -> Reply {
        let h: RegisterTopicRequestHeader = header(req)?;
        if req.body.is_empty() {
            return Ok(ok(req));
        }
        let route = TopicRouteData::decode(&req.body.to_bytes()).map_err(|e| {
            error(
                req,
                ResponseCode::SystemError,
                format!("malformed TopicRouteData body: {e}"),
            )
        })?;
        self.routes
            .write()
            .register_topic(&h.topic, &route.queue_datas);
        Ok(ok(req))
    }

    async fn update_config(&self, conn: &Connection, req: &RemotingCommand) -> Reply {
        if req.body.is_empty() {
            return Ok(ok(req));
        }
        let text = body_text(req)?;
        let pairs = java_properties::parse(&text);
        // One update at a time, so two admins cannot overwrite each other's change.
        let _serial = self.config_update.lock().await;
        let mut config = self.config();
        if pairs.iter().any(|(k, _)| config.is_black_listed(k)) {
            return Err(error(
                req,
                ResponseCode::NoPermission,
                "Can not update config in black list.",
            ));
        }
        for (key, value) in &pairs {
            if STARTUP_ONLY_KEYS.contains(&key.as_str()) {
                return Err(error(
                    req,
                    ResponseCode::InvalidParameter,
                    format!("configuration key `{key}` only takes effect at start; change it in the config file and restart"),
                ));
            }
            if IGNORED_JAVA_KEYS.contains(&key.as_str()) {
                continue;
            }
            config
                .set(key, value)
                .map_err(|e| error(req, ResponseCode::InvalidParameter, e.to_string()))?;
        }
        config
            .validate()
            .map_err(|e| error(req, ResponseCode::InvalidParameter, e.to_string()))?;
        *self.config.write() = config.clone();
        info!(peer = %conn.peer_addr(), changes = ?pairs, "name server configuration updated");

        // Like Java, keep the effective configuration in configStorePath.
        let path = std::path::PathBuf::from(&config.config_store_path);
        let content = config.to_properties_text().into_bytes();
        let write_path = path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&write_path, &content))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "updated configuration not persisted");
            return Err(error(
                req,
                ResponseCode::SystemError,
                format!(
                    "configuration applied but not persisted to {}: {e}",
                    path.display()
                ),
            ));
        }
        Ok(ok(req))
    }
}

/// Route JSON in the dialect the requester expects: clients from V4_9_4 on (or asking for
/// standard JSON) get quoted broker-id keys; older ones get fastjson's bare integer keys, which
/// is what the Java NameServer sends them and what their parsers were written against.
/// Route data always goes out with quoted broker-id keys, whatever the client's version: Java,
/// Go and C++ clients read both forms, and clients with standard JSON parsers (Node, Python,
/// Rust) read only this one.
fn encode_route(
    req: &RemotingCommand,
    _h: &GetRouteInfoRequestHeader,
    route: &TopicRouteData,
) -> Result<Vec<u8>, RemotingCommand> {
    json(req, route)
}

impl RequestHandler for NamesrvHandler {
    async fn handle(&self, conn: &Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        if let Some(controller) = self.for_controller(&request) {
            if request.request_code() == RequestCode::BrokerHeartbeat {
                // Keep the NameServer's own liveness of the broker fresh as well.
                let _ = self.broker_heartbeat(&request);
            }
            return controller.handle(conn, request).await;
        }
        let started = Instant::now();
        let response = match self.dispatch(conn, &request).await {
            Ok(response) | Err(response) => response,
        };
        self.rpc
            .observe(request.code, response.code, started.elapsed());
        Some(response)
    }

    fn on_connection_closed(&self, conn: &Connection) {
        if let Some(controller) = &self.controller {
            controller.on_connection_closed(conn);
        }
        self.forget_connection(conn);
    }
}
