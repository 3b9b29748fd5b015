//! The client instance: what producers, consumers and the admin client of one process share.
//!
//! An instance owns one [`RemotingClient`] (so one connection per broker), the client id
//! `ip@instance` brokers know it by, the name server list, and the topic route cache. Two
//! background tasks keep it current: every topic in use has its route refreshed every 30 s, and
//! every broker serving this instance's groups gets a heartbeat (all producer and consumer groups
//! in one body) every 30 s and whenever a group joins or changes its subscriptions.
//!
//! The instance also answers what brokers send on their own: NOTIFY_CONSUMER_IDS_CHANGED triggers
//! a rebalance of that consumer group, CHECK_TRANSACTION_STATE asks the group's transaction
//! checker and answers with END_TRANSACTION, RESET_CONSUMER_CLIENT_OFFSET moves a consumer, and
//! PUSH_REPLY_MESSAGE_TO_CLIENT completes a producer's request waiting for that reply.
//!
//! Builders create a private instance unless one is passed in with `.instance(…)`; a private
//! instance shuts down with its only user.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use ferrymq_protocol::body::{
    decode_reset_offset_body, ConsumerData, HeartbeatData, MessageQueue, ProducerData,
    TopicRouteData,
};
use ferrymq_protocol::header::{
    CheckTransactionStateRequestHeader, ConsumeMessageDirectlyResultRequestHeader,
    ConsumerGroupHeader, EndTransactionRequestHeader, GetConsumerRunningInfoRequestHeader,
    GetRouteInfoRequestHeader, ReplyMessageRequestHeader, ResetOffsetRequestHeader,
    UnregisterClientRequestHeader,
};
use ferrymq_protocol::message::{keys, RecordView, UniqKeyGenerator};
use ferrymq_protocol::{naming, RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{Connection, RemotingClient, RequestHandler};

use crate::config::ClientOptions;
use crate::error::{ClientError, Result};
use crate::message::MessageExt;
use crate::route::{auto_create_route, subscribe_queues, PublishInfo};
use crate::transaction::TransactionState;

/// Queue count a producer asks for when its first message auto-creates a topic.
pub(crate) const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// Boxed future returned by the object-safe member traits.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A consumer registered with an instance, seen through what the instance needs from it.
pub(crate) trait ConsumerMember: Send + Sync + 'static {
    /// The group's entry in the heartbeat.
    fn consumer_data(&self) -> ConsumerData;
    /// Topics whose routes must be kept fresh.
    fn topics(&self) -> Vec<String>;
    /// Asks for a rebalance soon (group membership changed).
    fn trigger_rebalance(&self);
    /// Moves the consumer to these offsets (admin reset relayed by a broker).
    fn reset_offsets(&self, topic: &str, offsets: BTreeMap<MessageQueue, i64>);
    /// The ConsumerRunningInfo JSON an admin asks for (GET_CONSUMER_RUNNING_INFO).
    fn running_info(&self) -> String;
    /// Consumes one message on an admin's request (CONSUME_MESSAGE_DIRECTLY); the
    /// ConsumeMessageDirectlyResult JSON, or `None` if this consumer has no listener.
    fn consume_directly(&self, msg: MessageExt) -> BoxFuture<'static, Option<String>>;
}

/// Answers the broker's question about an unresolved transaction.
pub(crate) trait TransactionCheck: Send + Sync + 'static {
    fn check<'a>(&'a self, msg: &'a MessageExt) -> BoxFuture<'a, TransactionState>;
}

#[derive(Default)]
struct Members {
    producers: Mutex<HashMap<String, Option<Arc<dyn TransactionCheck>>>>,
    consumers: Mutex<HashMap<String, Arc<dyn ConsumerMember>>>,
    /// Requests waiting for their reply, by correlation id.
    replies: Mutex<HashMap<String, tokio::sync::oneshot::Sender<MessageExt>>>,
}

/// Serves broker-initiated requests on the instance's connections.
struct Callbacks {
    members: Arc<Members>,
    /// Requests this side starts on a broker's connection (END_TRANSACTION after a check)
    /// are signed like every other request.
    credentials: Option<ferrymq_protocol::acl::Credentials>,
}

impl RequestHandler for Callbacks {
    async fn handle(&self, conn: &Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        match request.request_code() {
            RequestCode::NotifyConsumerIdsChanged => {
                if let Ok(h) = request.decode_header::<ConsumerGroupHeader>() {
                    debug!(group = %h.consumer_group, "consumer ids changed");
                    if let Some(member) = self.consumer(&h.consumer_group) {
                        member.trigger_rebalance();
                    }
                }
                None
            }
            RequestCode::CheckTransactionState => {
                self.check_transaction(conn, &request);
                None
            }
            RequestCode::PushReplyMessageToClient => Some(self.take_reply(&request)),
            RequestCode::ResetConsumerClientOffset => {
                let h = request.decode_header::<ResetOffsetRequestHeader>().ok()?;
                let body = request.body.to_bytes();
                let text = String::from_utf8_lossy(&body);
                match decode_reset_offset_body(&text) {
                    Ok(table) => {
                        if let Some(member) = self.consumer(&h.group) {
                            member.reset_offsets(&h.topic, table);
                        }
                    }
                    Err(e) => warn!(error = %e, "malformed reset-offset body"),
                }
                if request.is_oneway() {
                    None
                } else {
                    Some(RemotingCommand::response_to(
                        &request,
                        ResponseCode::Success,
                    ))
                }
            }
            RequestCode::GetConsumerRunningInfo => {
                let h = request
                    .decode_header::<GetConsumerRunningInfoRequestHeader>()
                    .ok()?;
                let Some(member) = self.consumer(&h.consumer_group) else {
                    return Some(no_such_group(&request, &h.consumer_group));
                };
                let body = member.running_info();
                Some(RemotingCommand::response_to(&request, ResponseCode::Success).with_body(body))
            }
            RequestCode::ConsumeMessageDirectly => {
                let h = request
                    .decode_header::<ConsumeMessageDirectlyResultRequestHeader>()
                    .ok()?;
                let Some(member) = self.consumer(&h.consumer_group) else {
                    return Some(no_such_group(&request, &h.consumer_group));
                };
                let body = request.body.to_bytes();
                let broker = h.broker_name.as_deref().unwrap_or("");
                let msg = match RecordView::parse(&body)
                    .map_err(|e| ClientError::Malformed(e.to_string()))
                    .and_then(|v| MessageExt::decode(&v, broker))
                {
                    Ok(m) => m,
                    Err(e) => {
                        return Some(RemotingCommand::error_response(
                            &request,
                            ResponseCode::SystemError,
                            format!("cannot decode the message: {e}"),
                        ))
                    }
                };
                match member.consume_directly(msg).await {
                    Some(result) => Some(
                        RemotingCommand::response_to(&request, ResponseCode::Success)
                            .with_body(result),
                    ),
                    None => Some(RemotingCommand::unsupported(&request)),
                }
            }
            _ => Some(RemotingCommand::unsupported(&request)),
        }
    }
}

fn no_such_group(request: &RemotingCommand, group: &str) -> RemotingCommand {
    RemotingCommand::error_response(
        request,
        ResponseCode::SystemError,
        format!("The Consumer Group <{group}> not exist in this consumer"),
    )
}

impl Callbacks {
    fn consumer(&self, group: &str) -> Option<Arc<dyn ConsumerMember>> {
        self.members.consumers.lock().get(group).cloned()
    }

    /// Hands a pushed reply to the request waiting for it. A reply nobody waits for any more
    /// (timed out) is still acknowledged, as the Java client does.
    fn take_reply(&self, request: &RemotingCommand) -> RemotingCommand {
        let reply = request
            .decode_header::<ReplyMessageRequestHeader>()
            .map_err(|e| ClientError::Malformed(e.to_string()))
            .and_then(|h| MessageExt::from_pushed_reply(&h, request.body.to_bytes()));
        match reply {
            Ok(msg) => {
                let waiter = msg
                    .property(keys::CORRELATION_ID)
                    .and_then(|id| self.members.replies.lock().remove(id));
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(msg);
                    }
                    None => debug!(
                        correlation_id = msg.property(keys::CORRELATION_ID).unwrap_or(""),
                        "a reply arrived for no waiting request"
                    ),
                }
                RemotingCommand::response_to(request, ResponseCode::Success)
            }
            Err(e) => RemotingCommand::error_response(
                request,
                ResponseCode::SystemError,
                format!("process reply message fail: {e}"),
            ),
        }
    }

    fn check_transaction(&self, conn: &Connection, request: &RemotingCommand) {
        let header = match request.decode_header::<CheckTransactionStateRequestHeader>() {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "bad CHECK_TRANSACTION_STATE header");
                return;
            }
        };
        let body = request.body.to_bytes();
        let msg = match RecordView::parse(&body)
            .map_err(|e| ClientError::Malformed(e.to_string()))
            .and_then(|v| MessageExt::decode(&v, header.broker_name.as_deref().unwrap_or("")))
        {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "bad CHECK_TRANSACTION_STATE body");
                return;
            }
        };
        let Some(group) = msg.property(keys::PRODUCER_GROUP).map(str::to_owned) else {
            warn!("transaction check for a message without producer group");
            return;
        };
        let checker = self.members.producers.lock().get(&group).cloned().flatten();
        let Some(checker) = checker else {
            debug!(%group, "transaction check for a group without checker");
            return;
        };
        let conn = conn.clone();
        let credentials = self.credentials.clone();
        tokio::spawn(async move {
            let state = checker.check(&msg).await;
            let uniq = msg.uniq_key().map(str::to_owned);
            let end = EndTransactionRequestHeader {
                topic: Some(msg.topic().to_owned()),
                producer_group: group,
                tran_state_table_offset: header.tran_state_table_offset,
                commit_log_offset: header.commit_log_offset,
                commit_or_rollback: state.wire_value(),
                from_transaction_check: Some(true),
                msg_id: uniq.clone().unwrap_or_else(|| msg.offset_msg_id.clone()),
                transaction_id: header.transaction_id.or(uniq),
            };
            let mut req = RemotingCommand::request_with_header(RequestCode::EndTransaction, &end);
            if let Some(credentials) = &credentials {
                ferrymq_protocol::acl::sign_request(&mut req, credentials);
            }
            if let Err(e) = conn.invoke_oneway(req).await {
                warn!(error = %e, "could not answer a transaction check");
            }
        });
    }
}

struct Inner {
    client_id: String,
    options: ClientOptions,
    namesrv: Vec<String>,
    namesrv_index: AtomicUsize,
    remoting: RemotingClient,
    routes: RwLock<HashMap<String, Arc<TopicRouteData>>>,
    publish: RwLock<HashMap<String, Arc<PublishInfo>>>,
    /// broker name → broker id → address, from every cached route.
    brokers: RwLock<HashMap<String, BTreeMap<i64, String>>>,
    members: Arc<Members>,
    uniq: UniqKeyGenerator,
    stop: CancellationToken,
}

/// Shared state of producers, consumers and admin clients of one process; cheap to clone.
///
/// ```no_run
/// # async fn demo() -> ferrymq_client::Result<()> {
/// use ferrymq_client::{ClientInstance, ClientOptions, Producer};
/// let instance = ClientInstance::start(ClientOptions {
///     namesrv_addr: Some("127.0.0.1:9876".into()),
///     ..Default::default()
/// })?;
/// let producer = Producer::builder("pg").instance(instance.clone()).start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientInstance {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClientInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInstance")
            .field("client_id", &self.inner.client_id)
            .field("namesrv", &self.inner.namesrv)
            .finish()
    }
}

/// The address of this host that reaches `target` (no packet is sent).
fn local_ip_towards(target: &str) -> Option<IpAddr> {
    let addr = target.to_socket_addrs().ok()?.next()?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(addr).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn default_instance_name() -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}#{}{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        seq
    )
}

impl ClientInstance {
    /// Starts an instance: resolves the name servers and the client id and starts the route
    /// refresh and heartbeat tasks. Must be called inside a Tokio runtime.
    pub fn start(options: ClientOptions) -> Result<ClientInstance> {
        let namesrv = options.namesrv_addrs()?;
        let ip = match &options.client_ip {
            Some(ip) => ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            None => namesrv
                .iter()
                .find_map(|a| local_ip_towards(a))
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let instance_name = options
            .instance_name
            .clone()
            .filter(|n| !n.is_empty() && n != "DEFAULT")
            .unwrap_or_else(default_instance_name);
        let client_id = format!("{ip}@{instance_name}");
        let members = Arc::new(Members::default());
        let remoting = RemotingClient::with_handler(
            options.transport()?,
            Arc::new(Callbacks {
                members: members.clone(),
                credentials: options.credentials.clone(),
            }),
        );
        let start_index = rand::random::<usize>() % namesrv.len();
        let inner = Arc::new(Inner {
            client_id,
            options,
            namesrv,
            namesrv_index: AtomicUsize::new(start_index),
            remoting,
            routes: RwLock::new(HashMap::new()),
            publish: RwLock::new(HashMap::new()),
            brokers: RwLock::new(HashMap::new()),
            members,
            uniq: UniqKeyGenerator::for_process(ip),
            stop: CancellationToken::new(),
        });
        let instance = ClientInstance { inner };
        instance.spawn_housekeeping();
        info!(client_id = %instance.client_id(), "client instance started");
        Ok(instance)
    }

    fn spawn_housekeeping(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        let every = self.inner.options.route_refresh_interval;
        tokio::spawn(periodic(
            weak.clone(),
            stop.clone(),
            Duration::from_millis(10),
            every,
            |i| async move { i.refresh_all_routes().await },
        ));
        let every = self.inner.options.heartbeat_interval;
        tokio::spawn(periodic(
            weak,
            stop,
            Duration::from_secs(1),
            every,
            |i| async move { i.send_heartbeat_to_all().await },
        ));
    }

    /// Registers a request waiting for the reply with `correlation_id`.
    pub(crate) fn expect_reply(
        &self,
        correlation_id: &str,
    ) -> tokio::sync::oneshot::Receiver<MessageExt> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .members
            .replies
            .lock()
            .insert(correlation_id.to_owned(), tx);
        rx
    }

    /// Forgets a request that gave up waiting.
    pub(crate) fn forget_reply(&self, correlation_id: &str) {
        self.inner.members.replies.lock().remove(correlation_id);
    }

    /// Whether a route of `topic` is cached.
    pub(crate) fn knows_route(&self, topic: &str) -> bool {
        self.inner.routes.read().contains_key(topic)
    }

    /// The id brokers know this client by (`ip@instance`).
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The settings the instance was started with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Whether [`ClientInstance::shutdown`] was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Stops the background tasks and closes every connection.
    pub async fn shutdown(&self) {
        if self.inner.stop.is_cancelled() {
            return;
        }
        self.inner.stop.cancel();
        self.inner.remoting.shutdown();
        info!(client_id = %self.client_id(), "client instance stopped");
    }

    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    pub(crate) fn next_uniq_id(&self) -> String {
        self.inner.uniq.next_id()
    }

    // ----- requests -------------------------------------------------------------------------

    /// Sends a request and waits for the answer (transport failures become errors; response
    /// codes are left to the caller). Public for components that speak to brokers on the
    /// instance's connections with requests the clients here do not wrap (the gRPC proxy's POP
    /// calls).
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        if self.is_shutdown() {
            return Err(ClientError::Shutdown);
        }
        self.inner
            .remoting
            .invoke(addr, request, timeout)
            .await
            .map_err(|e| ClientError::transport(addr, e))
    }

    /// Like [`ClientInstance::invoke`] but any code other than SUCCESS is an error.
    pub(crate) async fn invoke_ok(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let response = self.invoke(addr, request, timeout).await?;
        if response.response_code() != ResponseCode::Success {
            return Err(ClientError::broker(addr, &response));
        }
        Ok(response)
    }

    /// Sends a one-way request (no answer is awaited).
    pub async fn invoke_oneway(&self, addr: &str, request: RemotingCommand) -> Result<()> {
        if self.is_shutdown() {
            return Err(ClientError::Shutdown);
        }
        self.inner
            .remoting
            .invoke_oneway(addr, request)
            .await
            .map_err(|e| ClientError::transport(addr, e))
    }

    /// Sends a request to a name server: the current one first, then the others in turn when it
    /// cannot be reached.
    pub(crate) async fn invoke_namesrv(
        &self,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let n = self.inner.namesrv.len();
        let start = self.inner.namesrv_index.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let addr = &self.inner.namesrv[i];
            match self.invoke(addr, request.clone(), timeout).await {
                Ok(resp) => {
                    self.inner.namesrv_index.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => {
                    debug!(%addr, error = %e, "name server unreachable");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ClientError::NoNameServer))
    }

    /// The configured name server addresses.
    pub(crate) fn namesrv_addrs(&self) -> &[String] {
        &self.inner.namesrv
    }

    // ----- routes ---------------------------------------------------------------------------

    /// Asks the name servers for a topic's route; `None` if they know no such topic.
    pub(crate) async fn fetch_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        };
        let req = RemotingCommand::request_with_header(RequestCode::GetRouteinfoByTopic, &header);
        let resp = self
            .invoke_namesrv(req, self.inner.options.request_timeout)
            .await?;
        match resp.response_code() {
            ResponseCode::Success => {
                let body = resp.body.to_bytes();
                TopicRouteData::decode(&body)
                    .map(Some)
                    .map_err(|e| ClientError::Malformed(format!("route of {topic}: {e}")))
            }
            ResponseCode::TopicNotExist => Ok(None),
            _ => Err(ClientError::broker("name server", &resp)),
        }
    }

    /// Refreshes a topic's route from the name servers. A topic they do not know keeps its
    /// cached route (possibly the auto-create one) and yields `None` if there is none.
    pub(crate) async fn update_route(&self, topic: &str) -> Result<Option<Arc<TopicRouteData>>> {
        match self.fetch_route(topic).await? {
            Some(route) => Ok(Some(self.store_route(topic, route))),
            None => Ok(self.cached_route(topic)),
        }
    }

    fn store_route(&self, topic: &str, route: TopicRouteData) -> Arc<TopicRouteData> {
        let route = Arc::new(route);
        let publish = Arc::new(PublishInfo::from_route(topic, &route));
        let changed = {
            let mut routes = self.inner.routes.write();
            let changed = routes.get(topic).map(|old| **old != *route) != Some(false);
            routes.insert(topic.to_owned(), route.clone());
            changed
        };
        self.inner.publish.write().insert(topic.to_owned(), publish);
        if changed && self.rebuild_broker_table() {
            // A broker this instance has not talked to yet: introduce our groups now rather
            // than at the next periodic heartbeat (it may need them, e.g. for check-backs).
            let me = self.clone();
            tokio::spawn(async move { me.send_heartbeat_to_all().await });
        }
        route
    }

    /// Rebuilds the broker address table from the cached routes; true if an address appeared.
    fn rebuild_broker_table(&self) -> bool {
        let mut table: HashMap<String, BTreeMap<i64, String>> = HashMap::new();
        for route in self.inner.routes.read().values() {
            for bd in &route.broker_datas {
                table
                    .entry(bd.broker_name.clone())
                    .or_default()
                    .extend(bd.broker_addrs.iter().map(|(k, v)| (*k, v.clone())));
            }
        }
        let mut brokers = self.inner.brokers.write();
        let known: HashSet<&String> = brokers.values().flat_map(|ids| ids.values()).collect();
        let added = table
            .values()
            .flat_map(|ids| ids.values())
            .any(|a| !known.contains(a));
        *brokers = table;
        added
    }

    /// The cached route of a topic.
    pub(crate) fn cached_route(&self, topic: &str) -> Option<Arc<TopicRouteData>> {
        self.inner.routes.read().get(topic).cloned()
    }

    /// The cached route, fetched first if there is none (cached routes are refreshed every
    /// `route_refresh_interval`).
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRouteData>> {
        if let Some(r) = self.cached_route(topic) {
            return Ok(r);
        }
        self.update_route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute(topic.to_owned()))
    }

    /// Where a producer may send `topic`: from its route, else from the auto-create template's.
    pub(crate) async fn publish_info(&self, topic: &str) -> Result<Arc<PublishInfo>> {
        if let Some(p) = self.inner.publish.read().get(topic) {
            if !p.queues.is_empty() {
                return Ok(p.clone());
            }
        }
        if let Some(route) = self.fetch_route(topic).await? {
            self.store_route(topic, route);
        } else if let Some(template) = self.fetch_route(naming::AUTO_CREATE_TOPIC_KEY).await? {
            debug!(%topic, "topic unknown to the name server; using the auto-create template");
            self.store_route(
                topic,
                auto_create_route(&template, DEFAULT_TOPIC_QUEUE_NUMS),
            );
        }
        match self.inner.publish.read().get(topic) {
            Some(p) if !p.queues.is_empty() => Ok(p.clone()),
            _ => Err(ClientError::NoRoute(topic.to_owned())),
        }
    }

    /// The readable queues of a topic (fetching its route if needed).
    pub(crate) async fn subscribe_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let route = self.route(topic).await?;
        Ok(subscribe_queues(topic, &route))
    }

    async fn refresh_all_routes(&self) {
        let mut topics: HashSet<String> = self.inner.routes.read().keys().cloned().collect();
        let consumers: Vec<_> = self
            .inner
            .members
            .consumers
            .lock()
            .values()
            .cloned()
            .collect();
        for c in consumers {
            topics.extend(c.topics());
        }
        for topic in topics {
            if let Err(e) = self.update_route(&topic).await {
                debug!(%topic, error = %e, "route refresh failed");
            }
        }
    }

    /// The master address of a broker name.
    pub(crate) fn master_addr(&self, broker_name: &str) -> Option<String> {
        self.inner
            .brokers
            .read()
            .get(broker_name)
            .and_then(|ids| ids.get(&0).cloned())
    }

    /// The address of broker `id` of a broker name, else its master, else any member.
    pub(crate) fn broker_addr(&self, broker_name: &str, id: i64) -> Option<String> {
        let brokers = self.inner.brokers.read();
        let ids = brokers.get(broker_name)?;
        ids.get(&id)
            .or_else(|| ids.get(&0))
            .or_else(|| ids.values().next())
            .cloned()
    }

    /// The master address, refreshing `topic`'s route once if it is unknown.
    pub async fn master_addr_or_refresh(&self, broker_name: &str, topic: &str) -> Result<String> {
        if let Some(a) = self.master_addr(broker_name) {
            return Ok(a);
        }
        self.update_route(topic).await?;
        self.master_addr(broker_name)
            .ok_or_else(|| ClientError::BrokerNotFound(broker_name.to_owned()))
    }

    /// Every known broker name and its master address.
    pub(crate) fn masters(&self) -> Vec<(String, String)> {
        self.inner
            .brokers
            .read()
            .iter()
            .filter_map(|(name, ids)| ids.get(&0).map(|a| (name.clone(), a.clone())))
            .collect()
    }

    // ----- members and heartbeats -----------------------------------------------------------

    pub(crate) fn register_producer(
        &self,
        group: &str,
        checker: Option<Arc<dyn TransactionCheck>>,
    ) -> Result<()> {
        let mut producers = self.inner.members.producers.lock();
        if producers.contains_key(group) {
            return Err(ClientError::InvalidArgument(format!(
                "producer group {group} is already running on client {}",
                self.client_id()
            )));
        }
        producers.insert(group.to_owned(), checker);
        Ok(())
    }

    pub(crate) fn register_consumer(
        &self,
        group: &str,
        member: Arc<dyn ConsumerMember>,
    ) -> Result<()> {
        let mut consumers = self.inner.members.consumers.lock();
        if consumers.contains_key(group) {
            return Err(ClientError::InvalidArgument(format!(
                "consumer group {group} is already running on client {}",
                self.client_id()
            )));
        }
        consumers.insert(group.to_owned(), member);
        Ok(())
    }

    /// Removes a producer group and tells every master broker.
    pub(crate) async fn unregister_producer(&self, group: &str) {
        self.inner.members.producers.lock().remove(group);
        let header = UnregisterClientRequestHeader {
            client_id: self.client_id().to_owned(),
            producer_group: Some(group.to_owned()),
            consumer_group: None,
        };
        let addrs: Vec<String> = self.masters().into_iter().map(|(_, a)| a).collect();
        self.unregister_at(addrs, header).await;
    }

    /// Removes a consumer group and tells every broker.
    pub(crate) async fn unregister_consumer(&self, group: &str) {
        self.inner.members.consumers.lock().remove(group);
        let header = UnregisterClientRequestHeader {
            client_id: self.client_id().to_owned(),
            producer_group: None,
            consumer_group: Some(group.to_owned()),
        };
        let addrs = self.all_broker_addrs();
        self.unregister_at(addrs, header).await;
    }

    async fn unregister_at(&self, addrs: Vec<String>, header: UnregisterClientRequestHeader) {
        let timeout = self.inner.options.request_timeout;
        let calls = addrs.into_iter().map(|addr| {
            let req = RemotingCommand::request_with_header(RequestCode::UnregisterClient, &header);
            async move {
                if let Err(e) = self.invoke_ok(&addr, req, timeout).await {
                    debug!(%addr, error = %e, "unregister failed");
                }
            }
        });
        futures::future::join_all(calls).await;
    }

    fn all_broker_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .inner
            .brokers
            .read()
            .values()
            .flat_map(|ids| ids.values().cloned())
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        let producer_data_set = self
            .inner
            .members
            .producers
            .lock()
            .keys()
            .map(|g| ProducerData {
                group_name: g.clone(),
            })
            .collect();
        let consumers: Vec<_> = self
            .inner
            .members
            .consumers
            .lock()
            .values()
            .cloned()
            .collect();
        HeartbeatData {
            client_id: self.client_id().to_owned(),
            producer_data_set,
            consumer_data_set: consumers.iter().map(|c| c.consumer_data()).collect(),
            heartbeat_fingerprint: 0,
            without_sub: false,
        }
    }

    /// Sends one heartbeat (every group of this instance) to every broker that needs it:
    /// all members of every known broker when consumers are registered, masters otherwise.
    pub(crate) async fn send_heartbeat_to_all(&self) {
        let data = self.heartbeat_data();
        if data.producer_data_set.is_empty() && data.consumer_data_set.is_empty() {
            return;
        }
        let addrs = if data.consumer_data_set.is_empty() {
            self.masters().into_iter().map(|(_, a)| a).collect()
        } else {
            self.all_broker_addrs()
        };
        let body = match serde_json::to_vec(&data) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot encode heartbeat");
                return;
            }
        };
        let timeout = self.inner.options.request_timeout;
        let calls = addrs.into_iter().map(|addr| {
            let req = RemotingCommand::request(RequestCode::HeartBeat).with_body(body.clone());
            async move {
                if let Err(e) = self.invoke_ok(&addr, req, timeout).await {
                    debug!(%addr, error = %e, "heartbeat failed");
                }
            }
        });
        futures::future::join_all(calls).await;
    }
}

impl ClientInstance {
    fn from_inner(inner: Arc<Inner>) -> ClientInstance {
        ClientInstance { inner }
    }
}

impl Drop for Inner {
    /// The last handle is gone: stop the tasks and close the connections even without an
    /// explicit shutdown.
    fn drop(&mut self) {
        self.stop.cancel();
        self.remoting.shutdown();
    }
}

/// Runs `task` after `initial`, then every `period`, until the instance stops or is dropped.
async fn periodic<F, Fut>(
    weak: Weak<Inner>,
    stop: CancellationToken,
    initial: Duration,
    period: Duration,
    task: F,
) where
    F: Fn(ClientInstance) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut wait = initial;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        task(ClientInstance::from_inner(inner)).await;
        wait = period;
    }
}
