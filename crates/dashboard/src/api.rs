//! The JSON API behind the page. Each handler is a thin shaping of [`Admin`] calls (the
//! ones `ferrymq admin` makes) into what a page shows; nothing here talks to a broker or a
//! name server by itself.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrymq_client::admin::{SubscriptionGroupConfig, TopicSpec};
use ferrymq_client::{Admin, ClientOptions};
use ferrymq_protocol::body::ClusterInfo;
use ferrymq_protocol::naming;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::DashboardError;
use crate::session::{set_cookie, Caller, LoginMode, Sessions};
use crate::DashboardConfig;

type ApiResult<T = Json<Value>> = Result<T, DashboardError>;
type AppRef = State<std::sync::Arc<AppState>>;

/// How many cluster calls one page request runs at once.
const FAN_OUT: usize = 8;
/// Most messages one search returns.
const MAX_MESSAGES: usize = 256;
/// Bodies longer than this are cut in listings (the full size is reported).
const BODY_PREVIEW: usize = 64 * 1024;

pub(crate) struct AppState {
    pub sessions: Sessions,
    trace_topic: String,
}

impl AppState {
    pub async fn new(config: DashboardConfig) -> Result<AppState, DashboardError> {
        let template = ClientOptions {
            credentials: match config.login {
                LoginMode::Open => config.client.credentials.clone(),
                LoginMode::Required => None,
            },
            ..config.client
        };
        Ok(AppState {
            sessions: Sessions::new(config.login, template).await?,
            trace_topic: config.trace_topic,
        })
    }

    pub async fn shutdown(&self) {
        self.sessions.shutdown().await;
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, DashboardError> {
        self.sessions.caller(headers)
    }
}

// ----- session ------------------------------------------------------------------------------

pub(crate) async fn session_info(State(app): AppRef, headers: HeaderMap) -> Json<Value> {
    let required = app.sessions.mode() == LoginMode::Required;
    let user = app.caller(&headers).ok().and_then(|c| c.user);
    Json(json!({
        "loginRequired": required,
        "signedIn": !required || user.is_some(),
        "user": user,
        "traceTopic": app.trace_topic,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoginForm {
    access_key: String,
    secret_key: String,
}

pub(crate) async fn login(State(app): AppRef, Json(form): Json<LoginForm>) -> ApiResult<Response> {
    let token = app
        .sessions
        .sign_in(form.access_key.trim(), &form.secret_key)
        .await?;
    Ok((
        [(header::SET_COOKIE, set_cookie(Some(&token)))],
        Json(json!({ "user": form.access_key.trim() })),
    )
        .into_response())
}

pub(crate) async fn logout(State(app): AppRef, headers: HeaderMap) -> Response {
    app.sessions.sign_out(&headers).await;
    ([(header::SET_COOKIE, set_cookie(None))], Json(json!({}))).into_response()
}

// ----- cluster ------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerView {
    cluster: String,
    broker_name: String,
    broker_id: i64,
    addr: String,
    version: Option<String>,
    /// Messages/s put over 10 s, 60 s, 600 s.
    put_tps: Vec<f64>,
    get_tps: Vec<f64>,
    put_total: Option<u64>,
    get_total: Option<u64>,
    /// Fraction of the commit-log disk in use.
    disk_ratio: Option<f64>,
    commit_log_max_offset: Option<i64>,
    earliest_message_time: Option<i64>,
    error: Option<String>,
}

pub(crate) async fn overview(State(app): AppRef, headers: HeaderMap) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let clusters = admin.cluster_info().await?;
    let mut targets = Vec::new();
    for (cluster, names) in &clusters.cluster_addr_table {
        for name in names {
            if let Some(data) = clusters.broker_addr_table.get(name) {
                for (id, addr) in &data.broker_addrs {
                    targets.push((cluster.clone(), name.clone(), *id, addr.clone()));
                }
            }
        }
    }
    let brokers: Vec<BrokerView> = stream::iter(targets)
        .map(|(cluster, broker_name, broker_id, addr)| {
            let admin = admin.clone();
            async move {
                let info = admin.broker_runtime_info(&addr).await;
                broker_view(cluster, broker_name, broker_id, addr, info)
            }
        })
        .buffered(FAN_OUT)
        .collect()
        .await;
    let namesrv = admin.instance().options().namesrv_addr.clone();
    Ok(Json(json!({ "namesrv": namesrv, "brokers": brokers })))
}

fn broker_view(
    cluster: String,
    broker_name: String,
    broker_id: i64,
    addr: String,
    info: ferrymq_client::Result<BTreeMap<String, String>>,
) -> BrokerView {
    let mut view = BrokerView {
        cluster,
        broker_name,
        broker_id,
        addr,
        version: None,
        put_tps: Vec::new(),
        get_tps: Vec::new(),
        put_total: None,
        get_total: None,
        disk_ratio: None,
        commit_log_max_offset: None,
        earliest_message_time: None,
        error: None,
    };
    match info {
        Ok(t) => {
            let num = |k: &str| t.get(k).and_then(|v| v.trim().parse::<f64>().ok());
            let tps = |k: &str| {
                t.get(k)
                    .map(|v| {
                        v.split_whitespace()
                            .filter_map(|x| x.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            view.version = t.get("brokerVersionDesc").cloned();
            view.put_tps = tps("putTps");
            view.get_tps = tps("getTransferredTps");
            view.put_total = num("msgPutTotalTodayNow").map(|v| v as u64);
            view.get_total = num("msgGetTotalTodayNow").map(|v| v as u64);
            view.disk_ratio = num("commitLogDiskRatio");
            view.commit_log_max_offset = num("commitLogMaxOffset").map(|v| v as i64);
            view.earliest_message_time = num("earliestMessageTimeStamp").map(|v| v as i64);
        }
        Err(e) => view.error = Some(e.to_string()),
    }
    view
}

// ----- topics -------------------------------------------------------------------------------

fn topic_kind(topic: &str) -> &'static str {
    if naming::is_retry_topic(topic) {
        "retry"
    } else if naming::is_dlq_topic(topic) {
        "dlq"
    } else if naming::is_system_topic(topic)
        || naming::is_trace_topic(topic)
        || topic.ends_with("_REPLY_TOPIC")
    {
        "system"
    } else {
        "normal"
    }
}

pub(crate) async fn topics(State(app): AppRef, headers: HeaderMap) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let clusters = admin.cluster_info().await?;
    // The name server lists cluster and broker names as topics too (Java's send-to-cluster
    // and send-to-broker routes); they are not topics anyone created.
    let names: BTreeSet<&String> = clusters
        .cluster_addr_table
        .keys()
        .chain(clusters.broker_addr_table.keys())
        .collect();
    let topics: Vec<Value> = admin
        .topic_list()
        .await?
        .into_iter()
        .filter(|t| !names.contains(t))
        .map(|t| json!({ "name": t, "kind": topic_kind(&t) }))
        .collect();
    Ok(Json(json!({
        "topics": topics,
        "clusters": clusters.cluster_addr_table.keys().collect::<Vec<_>>(),
    })))
}

pub(crate) async fn topic_detail(
    State(app): AppRef,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let route = admin.topic_route(&topic).await?;
    let stats = admin.topic_stats(&topic).await?;
    let queues = ferrymq_client::admin::topic_stats_json(&stats);
    let messages: i64 = stats.values().map(|o| o.max_offset - o.min_offset).sum();
    Ok(Json(json!({
        "topic": topic,
        "kind": topic_kind(&topic),
        "route": route,
        "queues": queues,
        "messages": messages,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewTopic {
    topic: String,
    #[serde(default = "default_queues")]
    queues: i32,
    cluster: Option<String>,
    #[serde(default)]
    order: bool,
}

fn default_queues() -> i32 {
    8
}

/// The cluster to act in: the one named, else the only one there is.
fn pick_cluster(clusters: &ClusterInfo, named: Option<String>) -> Result<String, DashboardError> {
    if let Some(c) = named.filter(|c| !c.trim().is_empty()) {
        let c = c.trim().to_owned();
        if !clusters.cluster_addr_table.contains_key(&c) {
            return Err(DashboardError::NotFound(format!("no cluster named {c}")));
        }
        return Ok(c);
    }
    let mut names = clusters.cluster_addr_table.keys();
    match (names.next(), names.next()) {
        (Some(only), None) => Ok(only.clone()),
        (None, _) => Err(DashboardError::NotFound(
            "no broker is registered with the name servers".into(),
        )),
        _ => Err(DashboardError::BadRequest(
            "several clusters are registered: name one".into(),
        )),
    }
}

pub(crate) async fn create_topic(
    State(app): AppRef,
    headers: HeaderMap,
    Json(form): Json<NewTopic>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let topic = form.topic.trim().to_owned();
    naming::validate_topic(&topic).map_err(|e| DashboardError::BadRequest(e.to_string()))?;
    if !(1..=1024).contains(&form.queues) {
        return Err(DashboardError::BadRequest(
            "queues must be between 1 and 1024".into(),
        ));
    }
    let cluster = pick_cluster(&admin.cluster_info().await?, form.cluster)?;
    let mut spec = TopicSpec::new(&topic, form.queues);
    spec.order = form.order;
    let brokers = admin.create_topic(&spec, &cluster).await?;
    tracing::info!(topic, cluster, "topic created from the dashboard");
    Ok(Json(
        json!({ "topic": topic, "cluster": cluster, "brokers": brokers }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct ClusterQuery {
    cluster: Option<String>,
}

pub(crate) async fn delete_topic(
    State(app): AppRef,
    headers: HeaderMap,
    Path(topic): Path<String>,
    Query(q): Query<ClusterQuery>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let cluster = pick_cluster(&admin.cluster_info().await?, q.cluster)?;
    admin.delete_topic(&topic, &cluster).await?;
    tracing::info!(topic, cluster, "topic deleted from the dashboard");
    Ok(Json(json!({ "topic": topic, "cluster": cluster })))
}

// ----- consumer groups ----------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct GroupsQuery {
    #[serde(default)]
    all: bool,
}

/// Every master broker of every cluster.
async fn all_masters(admin: &Admin) -> ApiResult<Vec<String>> {
    let clusters = admin.cluster_info().await?;
    Ok(clusters
        .broker_addr_table
        .values()
        .filter_map(|b| b.broker_addrs.get(&0).cloned())
        .collect())
}

pub(crate) async fn groups(
    State(app): AppRef,
    headers: HeaderMap,
    Query(q): Query<GroupsQuery>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let mut configs: BTreeMap<String, SubscriptionGroupConfig> = BTreeMap::new();
    for addr in all_masters(&admin).await? {
        configs.extend(admin.subscription_groups(&addr).await?);
    }
    configs.retain(|name, _| q.all || !naming::is_system_group(name));
    let rows: Vec<Value> = stream::iter(configs)
        .map(|(group, config)| {
            let admin = admin.clone();
            async move {
                // A group that never consumed has no retry topic, hence no progress: not an
                // error for a listing.
                let progress = admin.consumer_progress(&group, None).await.ok();
                let conn = admin.consumer_connections(&group).await.ok();
                json!({
                    "group": group,
                    "lag": progress.as_ref().map(|p| p.lag()),
                    "consumeTps": progress.as_ref().map(|p| p.consume_tps),
                    "clients": conn.as_ref().map_or(0, |c| c.connection_set.len()),
                    "consumeType": conn.as_ref().map(|c| c.consume_type),
                    "messageModel": conn.as_ref().map(|c| c.message_model),
                    "orderly": config.consume_message_orderly,
                    "retryMaxTimes": config.retry_max_times,
                    "consumeEnable": config.consume_enable,
                })
            }
        })
        .buffered(FAN_OUT)
        .collect()
        .await;
    Ok(Json(json!({ "groups": rows })))
}

pub(crate) async fn group_detail(
    State(app): AppRef,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let progress = admin.consumer_progress(&group, None).await?;
    let queues: Vec<Value> = progress
        .queues
        .iter()
        .map(|(mq, o)| {
            json!({
                "topic": mq.topic,
                "brokerName": mq.broker_name,
                "queueId": mq.queue_id,
                "brokerOffset": o.broker_offset,
                "consumerOffset": o.consumer_offset,
                "pullOffset": o.pull_offset,
                "lag": (o.broker_offset - o.consumer_offset).max(0),
                "lastTimestamp": o.last_timestamp,
            })
        })
        .collect();
    let connection = admin.consumer_connections(&group).await.ok();
    Ok(Json(json!({
        "group": group,
        "lag": progress.lag(),
        "consumeTps": progress.consume_tps,
        "queues": queues,
        "connection": connection,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResetForm {
    topic: String,
    /// Milliseconds since the epoch.
    timestamp: i64,
    #[serde(default = "yes")]
    force: bool,
}

fn yes() -> bool {
    true
}

pub(crate) async fn reset_offset(
    State(app): AppRef,
    headers: HeaderMap,
    Path(group): Path<String>,
    Json(form): Json<ResetForm>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let offsets = admin
        .reset_offset_by_time(&group, form.topic.trim(), form.timestamp, form.force)
        .await?;
    let rows: Vec<Value> = offsets
        .iter()
        .map(|(mq, offset)| {
            json!({ "brokerName": mq.broker_name, "queueId": mq.queue_id, "offset": offset })
        })
        .collect();
    tracing::info!(
        group,
        topic = form.topic,
        timestamp = form.timestamp,
        "offsets reset from the dashboard"
    );
    Ok(Json(json!({ "group": group, "offsets": rows })))
}

// ----- messages -----------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct MessageQuery {
    topic: String,
    id: Option<String>,
    key: Option<String>,
    /// Milliseconds since the epoch.
    begin: Option<i64>,
    end: Option<i64>,
}

pub(crate) async fn messages(
    State(app): AppRef,
    headers: HeaderMap,
    Query(q): Query<MessageQuery>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let topic = q.topic.trim();
    if topic.is_empty() {
        return Err(DashboardError::BadRequest("topic is required".into()));
    }
    let now = now_ms();
    let found = if let Some(id) = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        admin
            .query_message_by_id(topic, id)
            .await?
            .into_iter()
            .collect()
    } else if let Some(key) = q.key.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        admin
            .query_messages_by_key(
                topic,
                key,
                MAX_MESSAGES as i32,
                q.begin.unwrap_or(0),
                q.end.unwrap_or(now + 1),
            )
            .await?
    } else {
        let end = q.end.unwrap_or(now + 1);
        let begin = q.begin.unwrap_or(end - 3_600_000);
        if begin >= end {
            return Err(DashboardError::BadRequest(
                "begin must be before end".into(),
            ));
        }
        admin
            .query_messages_by_time(topic, begin, end, MAX_MESSAGES)
            .await?
    };
    let list: Vec<Value> = found.iter().map(|m| m.to_json(BODY_PREVIEW)).collect();
    Ok(Json(json!({ "messages": list })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TraceQuery {
    msg_id: String,
    trace_topic: Option<String>,
}

pub(crate) async fn trace(
    State(app): AppRef,
    headers: HeaderMap,
    Query(q): Query<TraceQuery>,
) -> ApiResult {
    let admin = app.caller(&headers)?.admin;
    let topic = q
        .trace_topic
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| app.trace_topic.clone());
    let records = match admin.query_msg_trace(q.msg_id.trim(), &topic).await {
        Ok(r) => r,
        // No trace topic yet: no trace.
        Err(ferrymq_client::ClientError::NoRoute(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(json!({ "traceTopic": topic, "records": records })))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_kinds() {
        assert_eq!(topic_kind("Orders"), "normal");
        assert_eq!(topic_kind("%RETRY%g"), "retry");
        assert_eq!(topic_kind("%DLQ%g"), "dlq");
        assert_eq!(topic_kind("RMQ_SYS_TRACE_TOPIC"), "system");
        assert_eq!(topic_kind("TBW102"), "system");
    }

    #[test]
    fn cluster_is_named_or_the_only_one() {
        let mut c = ClusterInfo::default();
        assert!(matches!(
            pick_cluster(&c, None),
            Err(DashboardError::NotFound(_))
        ));
        c.cluster_addr_table.insert("A".into(), BTreeSet::new());
        assert_eq!(pick_cluster(&c, None).unwrap(), "A");
        assert!(pick_cluster(&c, Some("B".into())).is_err());
        c.cluster_addr_table.insert("B".into(), BTreeSet::new());
        assert!(matches!(
            pick_cluster(&c, None),
            Err(DashboardError::BadRequest(_))
        ));
        assert_eq!(pick_cluster(&c, Some(" B ".into())).unwrap(), "B");
    }
}
