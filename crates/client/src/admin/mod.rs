//! The admin client: what `mqadmin` does — topics, routes, clusters, broker statistics,
//! consumer progress and connections, message queries and offset resets.
//!
//! ```no_run
//! # async fn demo() -> ferrymq_client::Result<()> {
//! use ferrymq_client::admin::{Admin, TopicSpec};
//! let admin = Admin::builder().namesrv_addr("127.0.0.1:9876").start().await?;
//! admin.create_topic(&TopicSpec::new("Orders", 8), "DefaultCluster").await?;
//! let progress = admin.consumer_progress("order-consumers", None).await?;
//! println!("lag: {}", progress.lag());
//! admin.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Topic changes follow behaviour.md §9: a topic is created on every master broker of a
//! cluster (which registers it with the name servers at once) and deleted from those brokers
//! first and from every name server after, so the next broker registration cannot bring it back.

mod acl;
mod controller;

pub use controller::{ControllerMetadata, ElectedMaster};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrymq_protocol::body::{
    decode_consume_stats, decode_reset_offset_body, decode_topic_stats, from_java_json,
    object_keys_to_pairs, to_java_json, ClusterInfo, ConsumerConnection, KvTable,
    ProducerConnection, TopicList, TopicRouteData,
};
use ferrymq_protocol::header::{
    ConsumeMessageDirectlyResultRequestHeader, ConsumerGroupHeader, CreateTopicRequestHeader,
    DeleteSubscriptionGroupRequestHeader, DeleteTopicFromNamesrvRequestHeader,
    GetConsumeStatsRequestHeader, GetConsumerRunningInfoRequestHeader, GroupHeader,
    ProducerGroupHeader, PutKvConfigRequestHeader, QueryMessageRequestHeader,
    ResetOffsetRequestHeader, TopicHeader, ViewMessageRequestHeader,
};
use ferrymq_protocol::message::{perm, pull_sys_flag, OffsetMsgId, RecordView};
use ferrymq_protocol::{java_properties, naming, RemotingCommand, RequestCode, ResponseCode};

pub use ferrymq_protocol::body::auth::{AclInfo, PolicyEntryInfo, PolicyInfo, UserInfo};
pub use ferrymq_protocol::body::{
    OffsetWrapper, SubscriptionGroupConfig, SubscriptionGroupWrapper, TopicOffset,
};

use crate::body_text;
use crate::config::{client_option_setters, ClientOptions};
use crate::consumer::requests::{self, PullArgs};
use crate::consumer::{Expression, PullStatus};
use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;
use crate::message::{now_ms, MessageExt};
use crate::MessageQueue;

/// The consumer group mqadmin reads single messages with (`queryMsgByOffset`).
pub const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";

/// A topic to create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Readable queues per broker.
    pub read_queue_nums: i32,
    /// Writable queues per broker.
    pub write_queue_nums: i32,
    /// Permission bits (`perm::READ | perm::WRITE` by default).
    pub perm: i32,
    /// Whether the topic is ordered.
    pub order: bool,
    /// Topic attributes as mqadmin writes them (`+message.type=FIFO,+k=v`), if any.
    pub attributes: Option<String>,
}

impl TopicSpec {
    /// A read-write topic with `queues` read and write queues per broker.
    pub fn new(name: impl Into<String>, queues: i32) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: perm::READ | perm::WRITE,
            order: false,
            attributes: None,
        }
    }
}

/// A consumer group's position on every queue it consumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerProgress {
    /// Per queue: broker (max) offset, committed offset, pull offset, last consume time.
    pub queues: BTreeMap<MessageQueue, OffsetWrapper>,
    /// Sum of the brokers' consume TPS figures.
    pub consume_tps: f64,
}

impl ConsumerProgress {
    /// Messages not yet consumed: Σ (broker offset − committed offset).
    pub fn lag(&self) -> i64 {
        self.queues
            .values()
            .map(|o| (o.broker_offset - o.consumer_offset).max(0))
            .sum()
    }
}

/// Builds and starts an [`Admin`] client.
#[derive(Debug, Default)]
pub struct AdminBuilder {
    options: ClientOptions,
    instance: Option<ClientInstance>,
}

impl AdminBuilder {
    client_option_setters!();

    /// Starts the admin client.
    pub async fn start(self) -> Result<Admin> {
        let (instance, owns_instance) = match self.instance {
            Some(i) => (i, false),
            None => (ClientInstance::start(self.options)?, true),
        };
        Ok(Admin {
            instance,
            owns_instance,
        })
    }
}

/// Administers topics, groups and brokers through the name servers.
#[derive(Debug, Clone)]
pub struct Admin {
    instance: ClientInstance,
    owns_instance: bool,
}

impl Admin {
    /// A builder.
    pub fn builder() -> AdminBuilder {
        AdminBuilder::default()
    }

    /// The client instance this admin runs on.
    pub fn instance(&self) -> &ClientInstance {
        &self.instance
    }

    fn timeout(&self) -> Duration {
        self.instance.options().request_timeout
    }

    /// Sends `req` to a broker and decodes its JSON body (`what` names it in errors).
    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        req: RemotingCommand,
        what: &str,
    ) -> Result<T> {
        let resp = self.instance.invoke_ok(addr, req, self.timeout()).await?;
        json_body(&resp, what)
    }

    /// Sends `req` to a broker for its success alone.
    async fn invoke_unit(&self, addr: &str, req: RemotingCommand) -> Result<()> {
        self.instance
            .invoke_ok(addr, req, self.timeout())
            .await
            .map(|_| ())
    }

    /// Stops the client instance if this admin created it.
    pub async fn shutdown(&self) {
        if self.owns_instance {
            self.instance.shutdown().await;
        }
    }

    /// The cluster → broker names → addresses table of the name servers.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let req = RemotingCommand::request(RequestCode::GetBrokerClusterInfo);
        let resp = self.instance.invoke_namesrv(req, self.timeout()).await?;
        if resp.response_code() != ResponseCode::Success {
            return Err(ClientError::broker("name server", &resp));
        }
        json_body(&resp, "cluster info")
    }

    /// Master addresses of the brokers of `cluster`.
    pub async fn cluster_masters(&self, cluster: &str) -> Result<Vec<String>> {
        let info = self.cluster_info().await?;
        let names = info.cluster_addr_table.get(cluster).ok_or_else(|| {
            ClientError::InvalidArgument(format!("cluster {cluster} is unknown to the name server"))
        })?;
        Ok(names
            .iter()
            .filter_map(|n| info.broker_addr_table.get(n))
            .filter_map(|b| b.broker_addrs.get(&0).cloned())
            .collect())
    }

    /// Creates or updates a topic on one broker.
    pub async fn create_topic_on_broker(&self, broker_addr: &str, spec: &TopicSpec) -> Result<()> {
        naming::validate_topic(&spec.name)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let header = CreateTopicRequestHeader {
            topic: spec.name.clone(),
            default_topic: Some(naming::AUTO_CREATE_TOPIC_KEY.to_owned()),
            read_queue_nums: spec.read_queue_nums,
            write_queue_nums: spec.write_queue_nums,
            perm: spec.perm,
            topic_filter_type: Some("SINGLE_TAG".to_owned()),
            topic_sys_flag: Some(0),
            order: Some(spec.order),
            attributes: spec.attributes.clone().filter(|a| !a.is_empty()),
            force: None,
        };
        let req = RemotingCommand::request_with_header(RequestCode::UpdateAndCreateTopic, &header);
        self.invoke_unit(broker_addr, req).await
    }

    /// Creates or updates a topic on every master of `cluster`; returns their addresses.
    pub async fn create_topic(&self, spec: &TopicSpec, cluster: &str) -> Result<Vec<String>> {
        let masters = self.cluster_masters(cluster).await?;
        for addr in &masters {
            self.create_topic_on_broker(addr, spec).await?;
        }
        Ok(masters)
    }

    /// Deletes a topic from every master of `cluster`, then from every name server.
    pub async fn delete_topic(&self, topic: &str, cluster: &str) -> Result<()> {
        for addr in self.cluster_masters(cluster).await? {
            self.delete_topic_in_broker(&addr, topic).await?;
        }
        self.delete_topic_in_namesrv(topic, Some(cluster)).await
    }

    /// Deletes a topic (its config, offsets and queues) from one broker.
    pub async fn delete_topic_in_broker(&self, broker_addr: &str, topic: &str) -> Result<()> {
        let req = RemotingCommand::request_with_header(
            RequestCode::DeleteTopicInBroker,
            &TopicHeader {
                topic: topic.to_owned(),
            },
        );
        self.invoke_unit(broker_addr, req).await
    }

    /// Removes a topic's route from every name server: only the queues of `cluster`'s brokers
    /// when a cluster is given, else entirely.
    pub async fn delete_topic_in_namesrv(&self, topic: &str, cluster: Option<&str>) -> Result<()> {
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_owned(),
            cluster_name: cluster.map(str::to_owned),
        };
        for addr in self.instance.namesrv_addrs().to_vec() {
            let req =
                RemotingCommand::request_with_header(RequestCode::DeleteTopicInNamesrv, &header);
            self.instance.invoke_ok(&addr, req, self.timeout()).await?;
        }
        Ok(())
    }

    /// Stores a KV config entry (e.g. namespace `ORDER_TOPIC_CONFIG`) on every name server.
    pub async fn put_kv_config(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        let header = PutKvConfigRequestHeader {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        };
        for addr in self.instance.namesrv_addrs().to_vec() {
            let req = RemotingCommand::request_with_header(RequestCode::PutKvConfig, &header);
            self.instance.invoke_ok(&addr, req, self.timeout()).await?;
        }
        Ok(())
    }

    /// The topic's route, fresh from the name servers.
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRouteData> {
        self.instance
            .fetch_route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute(topic.to_owned()))
    }

    /// Every topic the name servers know.
    pub async fn topic_list(&self) -> Result<BTreeSet<String>> {
        let req = RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver);
        let resp = self.instance.invoke_namesrv(req, self.timeout()).await?;
        if resp.response_code() != ResponseCode::Success {
            return Err(ClientError::broker("name server", &resp));
        }
        let list: TopicList = json_body(&resp, "topic list")?;
        Ok(list.topic_list)
    }

    /// A broker's runtime statistics (GET_BROKER_RUNTIME_INFO: versions, TPS, disk ratios…).
    pub async fn broker_runtime_info(&self, broker_addr: &str) -> Result<BTreeMap<String, String>> {
        let req = RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo);
        let resp = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        let table: KvTable = json_body(&resp, "runtime info")?;
        Ok(table.table)
    }

    fn masters_of(route: &TopicRouteData) -> Vec<String> {
        route
            .broker_datas
            .iter()
            .filter_map(|b| b.broker_addrs.get(&0).cloned())
            .collect()
    }

    /// Min/max offsets of every queue of a topic.
    pub async fn topic_stats(&self, topic: &str) -> Result<BTreeMap<MessageQueue, TopicOffset>> {
        let route = self.topic_route(topic).await?;
        let mut all = BTreeMap::new();
        for addr in Self::masters_of(&route) {
            let req = RemotingCommand::request_with_header(
                RequestCode::GetTopicStatsInfo,
                &TopicHeader {
                    topic: topic.to_owned(),
                },
            );
            let resp = self.instance.invoke_ok(&addr, req, self.timeout()).await?;
            let table = decode_topic_stats(&body_text(&resp))
                .map_err(|e| ClientError::Malformed(format!("topic stats from {addr}: {e}")))?;
            all.extend(table);
        }
        Ok(all)
    }

    /// A group's progress (committed vs max offsets, hence lag) on `topic`, or on every topic
    /// it consumes when `topic` is `None` (found through its retry topic's brokers).
    pub async fn consumer_progress(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumerProgress> {
        let route_topic = topic
            .map(str::to_owned)
            .unwrap_or_else(|| naming::retry_topic(group));
        let route = self.topic_route(&route_topic).await?;
        let mut progress = ConsumerProgress::default();
        for addr in Self::masters_of(&route) {
            let header = GetConsumeStatsRequestHeader {
                consumer_group: group.to_owned(),
                topic: topic.map(str::to_owned),
                topic_list: None,
            };
            let req = RemotingCommand::request_with_header(RequestCode::GetConsumeStats, &header);
            let resp = self.instance.invoke_ok(&addr, req, self.timeout()).await?;
            let (tps, table) = decode_consume_stats(&body_text(&resp))
                .map_err(|e| ClientError::Malformed(format!("consume stats from {addr}: {e}")))?;
            progress.consume_tps += tps;
            progress.queues.extend(table);
        }
        Ok(progress)
    }

    /// The online members of a consumer group and their subscriptions.
    pub async fn consumer_connections(&self, group: &str) -> Result<ConsumerConnection> {
        let route = self.topic_route(&naming::retry_topic(group)).await?;
        let mut last = None;
        for addr in Self::masters_of(&route) {
            let req = RemotingCommand::request_with_header(
                RequestCode::GetConsumerConnectionList,
                &ConsumerGroupHeader {
                    consumer_group: group.to_owned(),
                },
            );
            match self.instance.invoke_ok(&addr, req, self.timeout()).await {
                Ok(resp) => return json_body(&resp, "consumer connections"),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::NoRoute(naming::retry_topic(group))))
    }

    /// What a consumer client reports about itself (Java's ConsumerRunningInfo: properties,
    /// subscriptions, per-queue state), relayed by a broker serving the group.
    pub async fn consumer_running_info(
        &self,
        group: &str,
        client_id: &str,
    ) -> Result<serde_json::Value> {
        let route = self.topic_route(&naming::retry_topic(group)).await?;
        let addr = Self::masters_of(&route)
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::NoRoute(naming::retry_topic(group)))?;
        let header = GetConsumerRunningInfoRequestHeader {
            consumer_group: group.to_owned(),
            client_id: client_id.to_owned(),
            jstack_enable: Some(false),
        };
        let req =
            RemotingCommand::request_with_header(RequestCode::GetConsumerRunningInfo, &header);
        let resp = self
            .instance
            .invoke_ok(&addr, req, Duration::from_secs(15))
            .await?;
        from_java_json(&object_keys_to_pairs(&body_text(&resp)))
            .map_err(|e| ClientError::Malformed(format!("running info: {e}")))
    }

    /// Asks a consumer client to consume one stored message now (by its offset id) and
    /// returns its ConsumeMessageDirectlyResult (`consumeResult`: `CR_SUCCESS`, `CR_LATER`…).
    pub async fn consume_message_directly(
        &self,
        group: &str,
        client_id: &str,
        topic: &str,
        offset_msg_id: &str,
    ) -> Result<serde_json::Value> {
        let id = OffsetMsgId::decode(offset_msg_id)
            .map_err(|e| ClientError::InvalidArgument(format!("{offset_msg_id}: {e}")))?;
        let header = ConsumeMessageDirectlyResultRequestHeader {
            consumer_group: group.to_owned(),
            client_id: Some(client_id.to_owned()),
            msg_id: Some(offset_msg_id.to_owned()),
            broker_name: None,
            topic: Some(topic.to_owned()),
        };
        let req =
            RemotingCommand::request_with_header(RequestCode::ConsumeMessageDirectly, &header);
        let addr = id.store_host.to_string();
        let resp = self
            .instance
            .invoke_ok(&addr, req, Duration::from_secs(15))
            .await?;
        json_body(&resp, "consume result")
    }

    /// A message by its offset id (store host + commit-log offset), from the broker that
    /// stored it.
    pub async fn view_message(&self, offset_msg_id: &str) -> Result<MessageExt> {
        let id = OffsetMsgId::decode(offset_msg_id)
            .map_err(|e| ClientError::InvalidArgument(format!("{offset_msg_id}: {e}")))?;
        let addr = id.store_host.to_string();
        let req = RemotingCommand::request_with_header(
            RequestCode::ViewMessageById,
            &ViewMessageRequestHeader {
                offset: id.physical_offset,
                topic: None,
            },
        );
        let resp = self.instance.invoke_ok(&addr, req, self.timeout()).await?;
        let body = resp.body.to_bytes();
        let view = RecordView::parse(&body).map_err(|e| ClientError::Malformed(e.to_string()))?;
        MessageExt::decode(&view, "")
    }

    /// A message by id: an offset id is viewed directly; a client id (`UNIQ_KEY`) is looked up
    /// in `topic`'s index. `None` if not found.
    pub async fn query_message_by_id(&self, topic: &str, id: &str) -> Result<Option<MessageExt>> {
        if OffsetMsgId::decode(id).is_ok() {
            if let Ok(m) = self.view_message(id).await {
                if m.topic() == topic || topic.is_empty() {
                    return Ok(Some(m));
                }
            }
        }
        let found = self.query_index(topic, id, 32, 0, i64::MAX, true).await?;
        Ok(found.into_iter().find(|m| m.uniq_key() == Some(id)))
    }

    /// Messages of `topic` whose keys include `key`, stored between the two times (ms).
    pub async fn query_messages_by_key(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MessageExt>> {
        let mut found = self
            .query_index(topic, key, max, begin_ms, end_ms, false)
            .await?;
        found.retain(|m| m.keys().contains(&key));
        Ok(found)
    }

    /// The trace of message `msg_id`: every record about it in `trace_topic`
    /// (`RMQ_SYS_TRACE_TOPIC` unless the clients were told otherwise), oldest first. Records
    /// in any RocketMQ client's format are read.
    pub async fn query_msg_trace(
        &self,
        msg_id: &str,
        trace_topic: &str,
    ) -> Result<Vec<ferrymq_protocol::trace::TraceRecord>> {
        let messages = self
            .query_messages_by_key(trace_topic, msg_id, 64, 0, i64::MAX)
            .await?;
        let mut records: Vec<_> = messages
            .iter()
            .filter_map(|m| std::str::from_utf8(m.body()).ok())
            .flat_map(ferrymq_protocol::trace::decode)
            .filter(|r| r.msg_id == msg_id)
            .collect();
        records.sort_by_key(|r| r.timestamp);
        records.dedup();
        Ok(records)
    }

    async fn query_index(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        begin_ms: i64,
        end_ms: i64,
        unique: bool,
    ) -> Result<Vec<MessageExt>> {
        let route = self.topic_route(topic).await?;
        let mut out = Vec::new();
        for bd in &route.broker_datas {
            let Some(addr) = bd.broker_addrs.get(&0) else {
                continue;
            };
            let header = QueryMessageRequestHeader {
                topic: topic.to_owned(),
                key: key.to_owned(),
                max_num: max,
                begin_timestamp: begin_ms,
                end_timestamp: end_ms.min(now_ms() + 60_000),
            };
            let mut req = RemotingCommand::request_with_header(RequestCode::QueryMessage, &header);
            if unique {
                req.ext_fields.insert("_UNIQUE_KEY_QUERY", "true");
            }
            let resp = self.instance.invoke(addr, req, self.timeout()).await?;
            match resp.response_code() {
                ResponseCode::Success => {
                    let body = resp.body.to_bytes();
                    out.extend(MessageExt::decode_all(&body, &bd.broker_name));
                }
                ResponseCode::QueryNotFound => {}
                _ => return Err(ClientError::broker(addr, &resp)),
            }
        }
        out.retain(|m| m.topic() == topic);
        Ok(out)
    }

    /// Moves a group's offsets on `topic` to the first message stored at or after
    /// `timestamp_ms` (`force`: also forward; otherwise only backwards). Online consumers pick
    /// the new offsets up on their next pull. Returns the new offsets.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
    ) -> Result<BTreeMap<MessageQueue, i64>> {
        let route = self.topic_route(topic).await?;
        let mut all = BTreeMap::new();
        for addr in Self::masters_of(&route) {
            let header = ResetOffsetRequestHeader {
                group: group.to_owned(),
                topic: topic.to_owned(),
                queue_id: Some(-1),
                offset: None,
                timestamp: timestamp_ms,
                is_force: Some(force),
            };
            let req = RemotingCommand::request_with_header(
                RequestCode::InvokeBrokerToResetOffset,
                &header,
            );
            let resp = self.instance.invoke_ok(&addr, req, self.timeout()).await?;
            let table = decode_reset_offset_body(&body_text(&resp))
                .map_err(|e| ClientError::Malformed(format!("reset offsets from {addr}: {e}")))?;
            all.extend(table);
        }
        Ok(all)
    }

    /// Every subscription group (consumer group config) one broker knows, by name.
    pub async fn subscription_groups(
        &self,
        broker_addr: &str,
    ) -> Result<BTreeMap<String, SubscriptionGroupConfig>> {
        let req = RemotingCommand::request(RequestCode::GetAllSubscriptiongroupConfig);
        let wrapper: SubscriptionGroupWrapper = self
            .fetch_json(broker_addr, req, "subscription groups")
            .await?;
        Ok(wrapper.subscription_group_table)
    }

    /// Messages of `topic` stored between the two times (ms, end exclusive), at most `max`
    /// of them, oldest first per queue: each queue's offsets at both times are looked up,
    /// then the range in between is read with the tools consumer group (nothing committed).
    pub async fn query_messages_by_time(
        &self,
        topic: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        const BATCH: i32 = 32;
        let queues = self.topic_stats(topic).await?;
        let mut out = Vec::new();
        for (queue, offsets) in &queues {
            if out.len() >= max {
                break;
            }
            if offsets.max_offset <= offsets.min_offset {
                continue;
            }
            let mut from = requests::search_offset(&self.instance, queue, begin_ms)
                .await?
                .max(offsets.min_offset);
            let to = requests::search_offset(&self.instance, queue, end_ms)
                .await?
                .min(offsets.max_offset);
            while from < to && out.len() < max {
                let result = self.tools_pull(queue, from, BATCH).await?;
                if result.status != PullStatus::Found || result.next_begin_offset <= from {
                    break;
                }
                out.extend(result.messages.into_iter().filter(|m| {
                    m.queue_offset < to
                        && m.store_timestamp >= begin_ms
                        && m.store_timestamp < end_ms
                }));
                from = result.next_begin_offset;
            }
        }
        out.truncate(max);
        Ok(out)
    }

    /// Creates or updates a subscription group (consumer group config) on one broker.
    pub async fn create_subscription_group(
        &self,
        broker_addr: &str,
        config: &SubscriptionGroupConfig,
    ) -> Result<()> {
        naming::validate_group(&config.group_name)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let body = to_java_json(config)
            .map_err(|e| ClientError::InvalidArgument(format!("group config: {e}")))?;
        let req =
            RemotingCommand::request(RequestCode::UpdateAndCreateSubscriptiongroup).with_body(body);
        self.invoke_unit(broker_addr, req).await
    }

    /// A subscription group's config on one broker.
    pub async fn subscription_group(
        &self,
        broker_addr: &str,
        group: &str,
    ) -> Result<SubscriptionGroupConfig> {
        let req = RemotingCommand::request_with_header(
            RequestCode::GetSubscriptiongroupConfig,
            &GroupHeader {
                group: group.to_owned(),
            },
        );
        self.fetch_json(broker_addr, req, "group config").await
    }

    /// Deletes a subscription group from one broker (and its committed offsets with
    /// `clean_offset`).
    pub async fn delete_subscription_group(
        &self,
        broker_addr: &str,
        group: &str,
        clean_offset: bool,
    ) -> Result<()> {
        let header = DeleteSubscriptionGroupRequestHeader {
            group_name: group.to_owned(),
            clean_offset: Some(clean_offset),
        };
        let req =
            RemotingCommand::request_with_header(RequestCode::DeleteSubscriptiongroup, &header);
        self.invoke_unit(broker_addr, req).await
    }

    /// The online members of a consumer group as one broker sees them.
    pub async fn consumer_connections_on_broker(
        &self,
        broker_addr: &str,
        group: &str,
    ) -> Result<ConsumerConnection> {
        let req = RemotingCommand::request_with_header(
            RequestCode::GetConsumerConnectionList,
            &ConsumerGroupHeader {
                consumer_group: group.to_owned(),
            },
        );
        self.fetch_json(broker_addr, req, "consumer connections")
            .await
    }

    /// The online producers of `group`, as the masters serving `topic` see them (merged, one
    /// entry per client id).
    pub async fn producer_connections(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<ProducerConnection> {
        let route = self.topic_route(topic).await?;
        let mut merged = ProducerConnection::default();
        let mut last = None;
        for addr in Self::masters_of(&route) {
            let req = RemotingCommand::request_with_header(
                RequestCode::GetProducerConnectionList,
                &ProducerGroupHeader {
                    producer_group: group.to_owned(),
                },
            );
            match self.instance.invoke_ok(&addr, req, self.timeout()).await {
                Ok(resp) => {
                    let pc: ProducerConnection = json_body(&resp, "producer connections")?;
                    for c in pc.connection_set {
                        if !merged
                            .connection_set
                            .iter()
                            .any(|m| m.client_id == c.client_id)
                        {
                            merged.connection_set.push(c);
                        }
                    }
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) if merged.connection_set.is_empty() => Err(e),
            _ => Ok(merged),
        }
    }

    /// A broker's configuration (GET_BROKER_CONFIG), key → value.
    pub async fn broker_config(&self, broker_addr: &str) -> Result<BTreeMap<String, String>> {
        let req = RemotingCommand::request(RequestCode::GetBrokerConfig);
        let resp = self
            .instance
            .invoke_ok(broker_addr, req, self.timeout())
            .await?;
        Ok(java_properties::parse(&body_text(&resp))
            .into_iter()
            .collect())
    }

    /// Changes runtime-changeable keys of a broker's configuration (UPDATE_BROKER_CONFIG). The
    /// broker applies all pairs or none and refuses restart-only keys (INVALID_PARAMETER).
    pub async fn update_broker_config(
        &self,
        broker_addr: &str,
        pairs: &[(&str, &str)],
    ) -> Result<()> {
        let body = java_properties::render(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let req = RemotingCommand::request(RequestCode::UpdateBrokerConfig).with_body(body);
        self.invoke_unit(broker_addr, req).await
    }

    /// The message stored at `offset` of `queue`, read with one pull as the tools consumer
    /// group (`TOOLS_CONSUMER`) without committing anything; `None` if the queue has none
    /// there. A queue the broker does not have is an error.
    pub async fn message_at(
        &self,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<Option<MessageExt>> {
        let result = self.tools_pull(queue, offset, 1).await?;
        Ok(match result.status {
            PullStatus::Found => result
                .messages
                .into_iter()
                .find(|m| m.queue_offset == offset),
            _ => None,
        })
    }
}

impl Admin {
    /// One pull of up to `max_nums` messages as the tools consumer group, committing nothing.
    async fn tools_pull(
        &self,
        queue: &MessageQueue,
        offset: i64,
        max_nums: i32,
    ) -> Result<crate::consumer::PullResult> {
        let sub = Expression::All.subscription_data(&queue.topic);
        requests::pull(
            &self.instance,
            PullArgs {
                group: TOOLS_CONSUMER_GROUP,
                queue,
                subscription: &sub,
                offset,
                max_nums,
                sys_flag: pull_sys_flag::build(false, false, true, false, false),
                commit_offset: 0,
                suspend: Duration::ZERO,
                timeout: self.timeout(),
                broker_id: 0,
            },
        )
        .await
    }
}

/// [`Admin::topic_stats`] as JSON rows, mqadmin's field names (`brokerName`, `queueId`,
/// `minOffset`, `maxOffset`, `lastUpdateTimestamp`), in queue order.
pub fn topic_stats_json(stats: &BTreeMap<MessageQueue, TopicOffset>) -> Vec<serde_json::Value> {
    stats
        .iter()
        .map(|(mq, o)| {
            serde_json::json!({
                "brokerName": mq.broker_name,
                "queueId": mq.queue_id,
                "minOffset": o.min_offset,
                "maxOffset": o.max_offset,
                "lastUpdateTimestamp": o.last_update_timestamp,
            })
        })
        .collect()
}

/// Decodes a response's fastjson body (`what` names it in errors).
fn json_body<T: serde::de::DeserializeOwned>(resp: &RemotingCommand, what: &str) -> Result<T> {
    from_java_json(&body_text(resp)).map_err(|e| ClientError::Malformed(format!("{what}: {e}")))
}
