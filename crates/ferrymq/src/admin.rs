//! `ferrymq admin …`: the operator commands of RocketMQ's `mqadmin`, under their names and
//! flags (`-n` name servers, `-c` cluster, `-b` broker, `-t` topic, `-g` group). Tables by
//! default, `--json` for scripts; any failure is one `error: …` line on stderr and a non-zero
//! exit status (1 for a failed command, 2 for bad arguments).
//!
//! This module only parses, calls [`ferrymq_client::Admin`] and prints; every request lives in
//! the client crate.

#[path = "admin_acl.rs"]
mod acl;
#[path = "admin_controller.rs"]
mod controller;
#[path = "admin_fmt.rs"]
mod fmt;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args, Subcommand};
use ferrymq_client::admin::{SubscriptionGroupConfig, TopicSpec};
use ferrymq_client::{Admin, ClientError, MessageExt, MessageQueue};
use ferrymq_protocol::body::{ConsumeType, MessageModel};
use ferrymq_protocol::naming;
use ferrymq_protocol::ResponseCode;
use serde_json::{json, Value};

use fmt::{describe, human_ms, human_secs, version_desc, Table};

/// Namespace of the name servers' KV config holding ordered topics' queue layout.
const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Arguments of `ferrymq admin`.
#[derive(Debug, Args)]
pub struct AdminCommand {
    /// Name server addresses, `host:port;host:port`.
    #[arg(
        short = 'n',
        long = "namesrvAddr",
        visible_alias = "namesrv-addr",
        env = "NAMESRV_ADDR",
        default_value = "127.0.0.1:9876",
        global = true
    )]
    namesrv_addr: String,
    #[command(flatten)]
    security: crate::connect::SecurityArgs,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminSub,
}

/// Where a topic or group change goes: one broker, or every master of a cluster.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["broker_addr", "cluster_name"])))]
struct Target {
    /// Broker address (`ip:port`).
    #[arg(short = 'b', long = "brokerAddr")]
    broker_addr: Option<String>,
    /// Cluster name (every master broker of it).
    #[arg(short = 'c', long = "clusterName")]
    cluster_name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AdminSub {
    /// Create or update a topic on a broker or on every master of a cluster.
    #[command(name = "updateTopic")]
    UpdateTopic {
        #[command(flatten)]
        target: Target,
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Read queues per broker.
        #[arg(short = 'r', long = "readQueueNums", default_value_t = 8,
              value_parser = clap::value_parser!(i32).range(1..=65535))]
        read_queue_nums: i32,
        /// Write queues per broker.
        #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8,
              value_parser = clap::value_parser!(i32).range(1..=65535))]
        write_queue_nums: i32,
        /// Permission: 2 write, 4 read, 6 read-write.
        #[arg(short = 'p', long = "perm", default_value_t = 6,
              value_parser = clap::value_parser!(i32).range(0..=7))]
        perm: i32,
        /// Ordered topic (true|false).
        #[arg(short = 'o', long = "order", default_value_t = false, action = clap::ArgAction::Set)]
        order: bool,
        /// Attributes, e.g. `+message.type=FIFO`.
        #[arg(short = 'a', long = "attributes")]
        attributes: Option<String>,
    },
    /// Delete a topic from a cluster's brokers and from the name servers.
    #[command(name = "deleteTopic")]
    DeleteTopic {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Cluster name.
        #[arg(short = 'c', long = "clusterName")]
        cluster_name: String,
    },
    /// List every topic the name servers know.
    #[command(name = "topicList")]
    TopicList,
    /// Show a topic's route: brokers, addresses, queues, permission.
    #[command(name = "topicRoute")]
    TopicRoute {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// List format (the default here; accepted for mqadmin compatibility).
        #[arg(short = 'l', long = "list")]
        _list: bool,
    },
    /// Show min/max offsets and last update time of every queue of a topic.
    #[command(name = "topicStatus")]
    TopicStatus {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// List the brokers of every cluster with their version, load and disk use.
    #[command(name = "clusterList")]
    ClusterList {
        /// Only this cluster.
        #[arg(short = 'c', long = "clusterName")]
        cluster_name: Option<String>,
    },
    /// Print a broker's runtime statistics.
    #[command(name = "brokerStatus")]
    BrokerStatus {
        #[command(flatten)]
        target: Target,
    },
    /// Create or update a subscription (consumer) group.
    #[command(name = "updateSubGroup")]
    UpdateSubGroup {
        #[command(flatten)]
        target: Target,
        /// Consumer group name.
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Consumption allowed (true|false).
        #[arg(short = 's', long = "consumeEnable", action = clap::ArgAction::Set)]
        consume_enable: Option<bool>,
        /// New consumers start from the min offset (true|false).
        #[arg(short = 'm', long = "consumeFromMinEnable", action = clap::ArgAction::Set)]
        consume_from_min_enable: Option<bool>,
        /// Broadcast consumption allowed (true|false).
        #[arg(short = 'd', long = "consumeBroadcastEnable", action = clap::ArgAction::Set)]
        consume_broadcast_enable: Option<bool>,
        /// Orderly consumption (true|false).
        #[arg(short = 'o', long = "consumeMessageOrderly", action = clap::ArgAction::Set)]
        consume_message_orderly: Option<bool>,
        /// Retry queues.
        #[arg(short = 'q', long = "retryQueueNums")]
        retry_queue_nums: Option<i32>,
        /// Redeliveries before a message goes to the dead-letter queue.
        #[arg(short = 'r', long = "retryMaxTimes")]
        retry_max_times: Option<i32>,
        /// Broker id to consume from.
        #[arg(short = 'i', long = "brokerId")]
        broker_id: Option<i64>,
        /// Broker id to consume from when consumption is slow.
        #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly")]
        which_broker_when_consume_slowly: Option<i64>,
        /// Tell consumers when the group's members change (true|false).
        #[arg(short = 'a', long = "notifyConsumerIdsChanged", action = clap::ArgAction::Set)]
        notify_consumer_ids_changed: Option<bool>,
        /// Attributes, e.g. `+k=v,+k2=v2`.
        #[arg(long = "attributes")]
        attributes: Option<String>,
    },
    /// Delete a subscription group (on a cluster: also its retry and dead-letter topics).
    #[command(name = "deleteSubGroup")]
    DeleteSubGroup {
        #[command(flatten)]
        target: Target,
        /// Consumer group name.
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Also remove the group's committed offsets (true|false).
        #[arg(short = 'r', long = "removeOffset", default_value_t = false, action = clap::ArgAction::Set)]
        remove_offset: bool,
    },
    /// Show a subscription group's config on every broker that has it.
    #[command(name = "getConsumerConfig")]
    GetConsumerConfig {
        /// Consumer group name.
        #[arg(short = 'g', long = "groupName")]
        group: String,
    },
    /// A group's progress (broker vs committed offsets, lag) per queue; without -g, every
    /// group with a retry topic.
    #[command(name = "consumerProgress")]
    ConsumerProgress {
        /// Consumer group name.
        #[arg(short = 'g', long = "groupName")]
        group: Option<String>,
        /// Only this topic.
        #[arg(short = 't', long = "topicName")]
        topic: Option<String>,
    },
    /// The online members of a consumer group and their subscriptions.
    #[command(name = "consumerConnection")]
    ConsumerConnection {
        /// Consumer group name.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Ask only this broker.
        #[arg(short = 'b', long = "brokerAddr")]
        broker_addr: Option<String>,
    },
    /// The online producers of a group.
    #[command(name = "producerConnection")]
    ProducerConnection {
        /// Producer group name.
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        /// A topic the group sends to (finds the brokers to ask).
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Show messages by offset id, or by client id (UNIQ_KEY) with -t.
    #[command(name = "queryMsgById")]
    QueryMsgById {
        /// Message id(s), comma-separated.
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        /// Topic (needed for a UNIQ_KEY).
        #[arg(short = 't', long = "topic")]
        topic: Option<String>,
    },
    /// Print the message trace of a message id (Pub, SubBefore, SubAfter, EndTransaction).
    #[command(name = "queryMsgTraceById")]
    QueryMsgTraceById {
        /// Message id (the producer's UNIQ_KEY).
        #[arg(short = 'i', long = "msgId")]
        msg_id: String,
        /// Trace topic.
        #[arg(short = 't', long = "traceTopic", default_value = naming::TRACE_TOPIC)]
        trace_topic: String,
    },
    /// List messages of a topic by key.
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Message key.
        #[arg(short = 'k', long = "msgKey")]
        key: String,
        /// Stored at or after (epoch ms).
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: i64,
        /// Stored at or before (epoch ms).
        #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
        end: i64,
        /// Most messages to return.
        #[arg(short = 'm', long = "maxNum", default_value_t = 64,
              value_parser = clap::value_parser!(i32).range(1..))]
        max: i32,
    },
    /// Send one message (mqadmin's sendMessage), e.g. to try a topic out.
    #[command(name = "sendMessage")]
    SendMessage {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Message body (UTF-8 text).
        #[arg(short = 'p', long = "body")]
        body: String,
        /// Message key(s), space-separated.
        #[arg(short = 'k', long = "key")]
        keys: Option<String>,
        /// Message tag.
        #[arg(short = 'c', long = "tags")]
        tags: Option<String>,
        /// Broker name (with -i: send to that queue).
        #[arg(short = 'b', long = "broker", requires = "queue_id")]
        broker_name: Option<String>,
        /// Queue id (with -b).
        #[arg(short = 'i', long = "qid", requires = "broker_name")]
        queue_id: Option<i32>,
        /// Write a message trace (to RMQ_SYS_TRACE_TOPIC).
        #[arg(short = 'm', long = "msgTraceEnable", default_value_t = false, action = clap::ArgAction::Set)]
        msg_trace_enable: bool,
    },
    /// Show the message at an offset of a queue.
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Broker name.
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        /// Queue id.
        #[arg(short = 'i', long = "queueId")]
        queue_id: i32,
        /// Queue offset.
        #[arg(short = 'o', long = "offset")]
        offset: i64,
    },
    /// Move a group's offsets on a topic to the first message stored at or after a time.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime {
        /// Consumer group name.
        #[arg(short = 'g', long = "group")]
        group: String,
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// now, epoch milliseconds, or yyyy-MM-dd#HH:mm:ss:SSS (local time).
        #[arg(short = 's', long = "timestamp", allow_hyphen_values = true)]
        timestamp: String,
        /// Also move forward (true|false); false only moves offsets back.
        #[arg(short = 'f', long = "force", default_value_t = true, action = clap::ArgAction::Set)]
        force: bool,
    },
    /// Print a broker's configuration.
    #[command(name = "getBrokerConfig")]
    GetBrokerConfig {
        #[command(flatten)]
        target: Target,
    },
    /// Change a runtime-changeable key of a broker's configuration.
    #[command(name = "updateBrokerConfig")]
    UpdateBrokerConfig {
        #[command(flatten)]
        target: Target,
        /// Config key.
        #[arg(short = 'k', long = "key")]
        key: String,
        /// Config value.
        #[arg(short = 'v', long = "value", allow_hyphen_values = true)]
        value: String,
    },
    #[command(flatten)]
    Acl(acl::AclSub),
    #[command(flatten)]
    Controller(controller::ControllerSub),
}

/// Runs one admin command: prints its result on stdout, or one error line on stderr.
/// The producer group `sendMessage` sends as (mqadmin's).
const SEND_MESSAGE_GROUP: &str = "PID_SMSC";

pub fn run(cmd: AdminCommand) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        eprintln!("error: internal error: {}", fmt::one_line(&what));
    }));
    if std::env::var_os("RUST_LOG").is_some() {
        crate::logging::init("warn");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let admin = Admin::builder()
            .options(cmd.security.client_options(&cmd.namesrv_addr))
            .start()
            .await
            .map_err(|e| anyhow!(describe(&e)))?;
        let ctx = Ctx {
            admin,
            json: cmd.json,
        };
        let out = ctx.exec(cmd.command).await;
        ctx.admin.shutdown().await;
        out
    });
    match result {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {}", fmt::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Handles a command-line parse failure. For `ferrymq admin …` the message is one line
/// (status 2); help and version print as usual; other subcommands keep clap's own output.
pub fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let is_admin = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .as_deref()
        == Some("admin");
    if !is_admin
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        e.exit();
    }
    let rendered = e.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") || line.starts_with("For more information") {
            continue;
        }
        parts.push(line.to_owned());
    }
    let mut msg = parts.join(" ");
    if !msg.starts_with("error:") {
        msg = format!("error: {msg}");
    }
    eprintln!("{msg} (see --help)");
    ExitCode::from(2)
}

struct Ctx {
    admin: Admin,
    json: bool,
}

/// A client call's failure as one line, prefixed with what was being done.
fn ctx_err(what: impl std::fmt::Display, e: &ClientError) -> anyhow::Error {
    anyhow!("{what}: {}", describe(e))
}

fn plain(e: ClientError) -> anyhow::Error {
    anyhow!(describe(&e))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".to_owned());
    s.push('\n');
    s
}

impl Ctx {
    async fn exec(&self, cmd: AdminSub) -> Result<String> {
        match cmd {
            AdminSub::UpdateTopic {
                target,
                topic,
                read_queue_nums,
                write_queue_nums,
                perm,
                order,
                attributes,
            } => {
                let spec = TopicSpec {
                    name: topic,
                    read_queue_nums,
                    write_queue_nums,
                    perm,
                    order,
                    attributes,
                };
                self.update_topic(&target, &spec).await
            }
            AdminSub::DeleteTopic {
                topic,
                cluster_name,
            } => self.delete_topic(&topic, &cluster_name).await,
            AdminSub::TopicList => self.topic_list().await,
            AdminSub::TopicRoute { topic, .. } => self.topic_route(&topic).await,
            AdminSub::TopicStatus { topic } => self.topic_status(&topic).await,
            AdminSub::ClusterList { cluster_name } => {
                self.cluster_list(cluster_name.as_deref()).await
            }
            AdminSub::BrokerStatus { target } => self.broker_status(&target).await,
            AdminSub::UpdateSubGroup {
                target,
                group,
                consume_enable,
                consume_from_min_enable,
                consume_broadcast_enable,
                consume_message_orderly,
                retry_queue_nums,
                retry_max_times,
                broker_id,
                which_broker_when_consume_slowly,
                notify_consumer_ids_changed,
                attributes,
            } => {
                // mqadmin's defaults: broadcast and from-min off unless asked for.
                let mut c = SubscriptionGroupConfig::new(group.trim());
                c.consume_broadcast_enable = false;
                c.consume_from_min_enable = false;
                if let Some(v) = consume_enable {
                    c.consume_enable = v;
                }
                if let Some(v) = consume_from_min_enable {
                    c.consume_from_min_enable = v;
                }
                if let Some(v) = consume_broadcast_enable {
                    c.consume_broadcast_enable = v;
                }
                if let Some(v) = consume_message_orderly {
                    c.consume_message_orderly = v;
                }
                if let Some(v) = retry_queue_nums {
                    c.retry_queue_nums = v;
                }
                if let Some(v) = retry_max_times {
                    c.retry_max_times = v;
                }
                if let Some(v) = broker_id {
                    c.broker_id = v;
                }
                if let Some(v) = which_broker_when_consume_slowly {
                    c.which_broker_when_consume_slowly = v;
                }
                if let Some(v) = notify_consumer_ids_changed {
                    c.notify_consumer_ids_changed_enable = v;
                }
                if let Some(a) = attributes {
                    c.attributes = parse_attributes(&a)?;
                }
                self.update_sub_group(&target, &c).await
            }
            AdminSub::DeleteSubGroup {
                target,
                group,
                remove_offset,
            } => self.delete_sub_group(&target, &group, remove_offset).await,
            AdminSub::GetConsumerConfig { group } => self.get_consumer_config(&group).await,
            AdminSub::ConsumerProgress { group, topic } => match group {
                Some(g) => self.consumer_progress(&g, topic.as_deref()).await,
                None => self.all_groups_progress().await,
            },
            AdminSub::ConsumerConnection { group, broker_addr } => {
                self.consumer_connection(&group, broker_addr.as_deref())
                    .await
            }
            AdminSub::ProducerConnection { group, topic } => {
                self.producer_connection(&group, &topic).await
            }
            AdminSub::QueryMsgById { msg_id, topic } => {
                self.query_msg_by_id(&msg_id, topic.as_deref()).await
            }
            AdminSub::QueryMsgByKey {
                topic,
                key,
                begin,
                end,
                max,
            } => self.query_msg_by_key(&topic, &key, begin, end, max).await,
            AdminSub::SendMessage {
                topic,
                body,
                keys,
                tags,
                broker_name,
                queue_id,
                msg_trace_enable,
            } => {
                let mut msg = ferrymq_client::Message::new(topic.trim(), body.into_bytes());
                if let Some(k) = keys.filter(|k| !k.trim().is_empty()) {
                    msg = msg.with_keys(k.split_whitespace());
                }
                if let Some(t) = tags.filter(|t| !t.trim().is_empty()) {
                    msg = msg.with_tags(t.trim());
                }
                let queue = broker_name.zip(queue_id).map(|(b, q)| MessageQueue {
                    topic: topic.trim().to_owned(),
                    broker_name: b,
                    queue_id: q,
                });
                self.send_message(msg, queue, msg_trace_enable).await
            }
            AdminSub::QueryMsgTraceById {
                msg_id,
                trace_topic,
            } => self.query_msg_trace(msg_id.trim(), &trace_topic).await,
            AdminSub::QueryMsgByOffset {
                topic,
                broker_name,
                queue_id,
                offset,
            } => {
                self.query_msg_by_offset(&topic, &broker_name, queue_id, offset)
                    .await
            }
            AdminSub::ResetOffsetByTime {
                group,
                topic,
                timestamp,
                force,
            } => {
                let ts = fmt::parse_timestamp(&timestamp).map_err(|e| anyhow!(e))?;
                self.reset_offset_by_time(&group, &topic, &timestamp, ts, force)
                    .await
            }
            AdminSub::GetBrokerConfig { target } => self.get_broker_config(&target).await,
            AdminSub::UpdateBrokerConfig { target, key, value } => {
                self.update_broker_config(&target, key.trim(), value.trim())
                    .await
            }
            AdminSub::Acl(cmd) => self.exec_acl(cmd).await,
            AdminSub::Controller(cmd) => self.exec_controller(cmd).await,
        }
    }

    // ----- helpers ------------------------------------------------------------------------

    /// Master addresses of a cluster; an unknown cluster or one without masters is an error.
    async fn masters(&self, cluster: &str) -> Result<Vec<String>> {
        let info = self.admin.cluster_info().await.map_err(plain)?;
        let Some(names) = info.cluster_addr_table.get(cluster) else {
            bail!("cluster [{cluster}] not exist");
        };
        let masters: Vec<String> = names
            .iter()
            .filter_map(|n| info.broker_addr_table.get(n))
            .filter_map(|b| b.broker_addrs.get(&0).cloned())
            .collect();
        if masters.is_empty() {
            bail!("cluster [{cluster}] has no master broker");
        }
        Ok(masters)
    }

    /// Every member address (masters and slaves) of a cluster, ordered by broker name and id.
    async fn all_members(&self, cluster: &str) -> Result<Vec<String>> {
        let info = self.admin.cluster_info().await.map_err(plain)?;
        let Some(names) = info.cluster_addr_table.get(cluster) else {
            bail!("cluster [{cluster}] not exist");
        };
        let addrs: Vec<String> = names
            .iter()
            .filter_map(|n| info.broker_addr_table.get(n))
            .flat_map(|b| b.broker_addrs.values().cloned())
            .collect();
        if addrs.is_empty() {
            bail!("cluster [{cluster}] has no broker");
        }
        Ok(addrs)
    }

    /// The brokers a `-b`/`-c` target names (masters only for a cluster).
    async fn target_masters(&self, target: &Target) -> Result<Vec<String>> {
        match (&target.broker_addr, &target.cluster_name) {
            (Some(addr), _) => Ok(vec![addr.trim().to_owned()]),
            (None, Some(cluster)) => self.masters(cluster.trim()).await,
            (None, None) => bail!("one of -b/--brokerAddr or -c/--clusterName is required"),
        }
    }

    /// The brokers a `-b`/`-c` target names (all members for a cluster).
    async fn target_members(&self, target: &Target) -> Result<Vec<String>> {
        match (&target.broker_addr, &target.cluster_name) {
            (Some(addr), _) => Ok(vec![addr.trim().to_owned()]),
            (None, Some(cluster)) => self.all_members(cluster.trim()).await,
            (None, None) => bail!("one of -b/--brokerAddr or -c/--clusterName is required"),
        }
    }

    // ----- topics -------------------------------------------------------------------------

    async fn update_topic(&self, target: &Target, spec: &TopicSpec) -> Result<String> {
        naming::validate_topic(&spec.name).map_err(|e| anyhow!("invalid topic name: {e}"))?;
        let brokers = self.target_masters(target).await?;
        for addr in &brokers {
            self.admin
                .create_topic_on_broker(addr, spec)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
        }
        let mut order_conf = None;
        if let (true, Some(cluster)) = (spec.order, &target.cluster_name) {
            // mqadmin records an ordered topic's layout per broker name on the name servers.
            let info = self.admin.cluster_info().await.map_err(plain)?;
            let conf = info
                .cluster_addr_table
                .get(cluster.trim())
                .into_iter()
                .flatten()
                .map(|name| format!("{name}:{}", spec.write_queue_nums))
                .collect::<Vec<_>>()
                .join(";");
            self.admin
                .put_kv_config(ORDER_TOPIC_CONFIG, &spec.name, &conf)
                .await
                .map_err(|e| ctx_err("set the order conf", &e))?;
            order_conf = Some(conf);
        }
        if self.json {
            return Ok(pretty(&json!({
                "topic": spec.name,
                "readQueueNums": spec.read_queue_nums,
                "writeQueueNums": spec.write_queue_nums,
                "perm": spec.perm,
                "order": spec.order,
                "attributes": spec.attributes,
                "orderConf": order_conf,
                "brokers": brokers,
            })));
        }
        let mut out = String::new();
        for addr in &brokers {
            out.push_str(&format!("create topic to {addr} success.\n"));
        }
        if let Some(conf) = order_conf {
            out.push_str(&format!(
                "set cluster orderConf. isOrder=true, orderConf=[{conf}]\n"
            ));
        }
        out.push_str(&format!(
            "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, topicFilterType=SINGLE_TAG, topicSysFlag=0, order={}, attributes={}]\n",
            spec.name,
            spec.read_queue_nums,
            spec.write_queue_nums,
            fmt::perm_string(spec.perm),
            spec.order,
            spec.attributes.as_deref().unwrap_or("{}"),
        ));
        Ok(out)
    }

    async fn delete_topic(&self, topic: &str, cluster: &str) -> Result<String> {
        let topics = self.admin.topic_list().await.map_err(plain)?;
        if !topics.contains(topic) {
            bail!("topic [{topic}] not exist (TOPIC_NOT_EXIST)");
        }
        for addr in self.masters(cluster).await? {
            self.admin
                .delete_topic_in_broker(&addr, topic)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
        }
        self.admin
            .delete_topic_in_namesrv(topic, Some(cluster))
            .await
            .map_err(|e| ctx_err("name server", &e))?;
        if self.json {
            return Ok(pretty(
                &json!({ "topic": topic, "cluster": cluster, "deleted": true }),
            ));
        }
        Ok(format!(
            "delete topic [{topic}] from cluster [{cluster}] success.\ndelete topic [{topic}] from NameServer success.\n"
        ))
    }

    async fn topic_list(&self) -> Result<String> {
        let topics = self.admin.topic_list().await.map_err(plain)?;
        if self.json {
            return Ok(pretty(&json!(topics)));
        }
        Ok(topics.iter().map(|t| format!("{t}\n")).collect())
    }

    async fn topic_route(&self, topic: &str) -> Result<String> {
        let route = self.admin.topic_route(topic).await.map_err(plain)?;
        if self.json {
            return Ok(pretty(&serde_json::to_value(&route)?));
        }
        let mut brokers = route.broker_datas.clone();
        brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        let mut t = Table::new(&[
            "#ClusterName",
            "#BrokerName",
            "#BrokerAddrs",
            "#ReadQueue",
            "#WriteQueue",
            "#Perm",
        ]);
        let (mut total_r, mut total_w, mut n) = (0, 0, 0);
        for b in &brokers {
            let Some(q) = route
                .queue_datas
                .iter()
                .find(|q| q.broker_name == b.broker_name)
            else {
                continue;
            };
            n += 1;
            total_r += q.read_queue_nums;
            total_w += q.write_queue_nums;
            let addrs = b
                .broker_addrs
                .iter()
                .map(|(id, a)| format!("{id}={a}"))
                .collect::<Vec<_>>()
                .join(", ");
            t.row(vec![
                b.cluster.clone(),
                b.broker_name.clone(),
                format!("{{{addrs}}}"),
                q.read_queue_nums.to_string(),
                q.write_queue_nums.to_string(),
                q.perm.to_string(),
            ]);
        }
        t.row(vec![]);
        t.row(vec![
            "Total:".into(),
            n.to_string(),
            String::new(),
            total_r.to_string(),
            total_w.to_string(),
        ]);
        Ok(t.render())
    }

    async fn topic_status(&self, topic: &str) -> Result<String> {
        let stats = self.admin.topic_stats(topic).await.map_err(plain)?;
        if self.json {
            let rows = ferrymq_client::admin::topic_stats_json(&stats);
            return Ok(pretty(&json!(rows)));
        }
        let mut sorted: Vec<_> = stats.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.0.broker_name, a.0.queue_id).cmp(&(&b.0.broker_name, b.0.queue_id))
        });
        let mut t = Table::new(&[
            "#Broker Name",
            "#QID",
            "#Min Offset",
            "#Max Offset",
            "#Last Updated",
        ]);
        for (mq, o) in sorted {
            t.row(vec![
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                o.min_offset.to_string(),
                o.max_offset.to_string(),
                human_ms(o.last_update_timestamp),
            ]);
        }
        Ok(t.render())
    }

    // ----- cluster and brokers ------------------------------------------------------------

    async fn cluster_list(&self, only: Option<&str>) -> Result<String> {
        let info = self.admin.cluster_info().await.map_err(plain)?;
        if let Some(c) = only {
            if !info.cluster_addr_table.contains_key(c) {
                bail!("cluster [{c}] not exist");
            }
        }
        let mut rows = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            if only.is_some_and(|c| c != cluster) {
                continue;
            }
            for name in names {
                let Some(bd) = info.broker_addr_table.get(name) else {
                    continue;
                };
                for (id, addr) in &bd.broker_addrs {
                    let runtime = self.admin.broker_runtime_info(addr).await;
                    rows.push(BrokerRow::new(cluster, name, *id, addr, runtime));
                }
            }
        }
        if self.json {
            return Ok(pretty(&json!(rows
                .iter()
                .map(BrokerRow::json)
                .collect::<Vec<_>>())));
        }
        let mut t = Table::new(&[
            "#Cluster Name",
            "#Broker Name",
            "#BID",
            "#Addr",
            "#Version",
            "#InTPS(LOAD)",
            "#OutTPS(LOAD)",
            "#PCWait(ms)",
            "#Hour",
            "#SPACE",
            "#ACTIVATED",
        ]);
        for r in &rows {
            t.row(r.cells());
        }
        Ok(t.render())
    }

    async fn broker_status(&self, target: &Target) -> Result<String> {
        let addrs = self.target_members(target).await?;
        let single = target.broker_addr.is_some();
        let mut all = serde_json::Map::new();
        let mut out = String::new();
        for addr in &addrs {
            let table = self
                .admin
                .broker_runtime_info(addr)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
            if self.json {
                all.insert(addr.clone(), json!(table));
                continue;
            }
            let width = table.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in &table {
                if single {
                    out.push_str(&format!("{k:<width$}: {v}\n"));
                } else {
                    out.push_str(&format!("{addr:<21}  {k:<width$}: {v}\n"));
                }
            }
        }
        if self.json {
            return Ok(pretty(&Value::Object(all)));
        }
        Ok(out)
    }

    async fn get_broker_config(&self, target: &Target) -> Result<String> {
        let addrs = self.target_members(target).await?;
        let mut all = serde_json::Map::new();
        let mut out = String::new();
        for addr in &addrs {
            let config = self
                .admin
                .broker_config(addr)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
            if self.json {
                all.insert(addr.clone(), json!(config));
                continue;
            }
            out.push_str(&format!("============{addr}============\n"));
            let width = config.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in &config {
                out.push_str(&format!("{k:<width$} = {v}\n"));
            }
            out.push('\n');
        }
        if self.json {
            return Ok(pretty(&Value::Object(all)));
        }
        Ok(out)
    }

    async fn update_broker_config(
        &self,
        target: &Target,
        key: &str,
        value: &str,
    ) -> Result<String> {
        if key.is_empty() {
            bail!("the config key must not be empty");
        }
        let addrs = self.target_masters(target).await?;
        let mut out = String::new();
        for addr in &addrs {
            self.admin
                .update_broker_config(addr, &[(key, value)])
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
            out.push_str(&format!("update broker config success, {addr}\n"));
        }
        if self.json {
            return Ok(pretty(
                &json!({ "key": key, "value": value, "brokers": addrs }),
            ));
        }
        Ok(out)
    }

    // ----- groups -------------------------------------------------------------------------

    async fn update_sub_group(
        &self,
        target: &Target,
        config: &SubscriptionGroupConfig,
    ) -> Result<String> {
        naming::validate_group(&config.group_name)
            .map_err(|e| anyhow!("invalid group name: {e}"))?;
        let brokers = self.target_masters(target).await?;
        for addr in &brokers {
            self.admin
                .create_subscription_group(addr, config)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
        }
        let config_json = serde_json::to_value(config)?;
        if self.json {
            return Ok(pretty(
                &json!({ "brokers": brokers, "config": config_json }),
            ));
        }
        let mut out = String::new();
        for addr in &brokers {
            out.push_str(&format!("create subscription group to {addr} success.\n"));
        }
        out.push_str(&serde_json::to_string(&config_json)?);
        out.push('\n');
        Ok(out)
    }

    async fn delete_sub_group(&self, target: &Target, group: &str, clean: bool) -> Result<String> {
        let brokers = self.target_masters(target).await?;
        let mut out = String::new();
        for addr in &brokers {
            self.admin
                .delete_subscription_group(addr, group, clean)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
            match &target.cluster_name {
                Some(c) => out.push_str(&format!(
                    "delete subscription group [{group}] from broker [{addr}] in cluster [{c}] success.\n"
                )),
                None => out.push_str(&format!(
                    "delete subscription group [{group}] from broker [{addr}] success.\n"
                )),
            }
        }
        let mut deleted_topics = Vec::new();
        if let (None, Some(cluster)) = (&target.broker_addr, &target.cluster_name) {
            // As mqadmin: the group's retry and dead-letter topics go too (best effort).
            let known = self.admin.topic_list().await.unwrap_or_default();
            for topic in [naming::retry_topic(group), naming::dlq_topic(group)] {
                if !known.contains(&topic) {
                    continue;
                }
                let mut ok = true;
                for addr in &brokers {
                    ok &= self
                        .admin
                        .delete_topic_in_broker(addr, &topic)
                        .await
                        .is_ok();
                }
                ok &= self
                    .admin
                    .delete_topic_in_namesrv(&topic, Some(cluster.trim()))
                    .await
                    .is_ok();
                if ok {
                    out.push_str(&format!(
                        "delete topic [{topic}] from cluster [{}] success.\n",
                        cluster.trim()
                    ));
                    deleted_topics.push(topic);
                }
            }
        }
        if self.json {
            return Ok(pretty(&json!({
                "group": group,
                "brokers": brokers,
                "removeOffset": clean,
                "deletedTopics": deleted_topics,
            })));
        }
        Ok(out)
    }

    async fn get_consumer_config(&self, group: &str) -> Result<String> {
        let info = self.admin.cluster_info().await.map_err(plain)?;
        let mut found = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            for name in names {
                let Some(addr) = info
                    .broker_addr_table
                    .get(name)
                    .and_then(|b| b.broker_addrs.get(&0))
                else {
                    continue;
                };
                match self.admin.subscription_group(addr, group).await {
                    Ok(c) => found.push((cluster.clone(), name.clone(), addr.clone(), c)),
                    Err(e)
                        if e.response_code() == Some(ResponseCode::SubscriptionGroupNotExist) => {}
                    Err(e) => return Err(ctx_err(format!("broker {addr}"), &e)),
                }
            }
        }
        if found.is_empty() {
            bail!("consumer group [{group}] not exist (SUBSCRIPTION_GROUP_NOT_EXIST)");
        }
        if self.json {
            let rows: Vec<Value> = found
                .iter()
                .map(|(cluster, name, addr, c)| {
                    json!({ "cluster": cluster, "brokerName": name, "addr": addr, "config": c })
                })
                .collect();
            return Ok(pretty(&json!(rows)));
        }
        let mut out = String::new();
        for (cluster, name, addr, c) in &found {
            out.push_str(&format!(
                "============cluster: {cluster} broker: {name} addr: {addr}============\n"
            ));
            if let Value::Object(fields) = serde_json::to_value(c)? {
                let width = fields.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in fields {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.push_str(&format!("{k:<width$} = {v}\n"));
                }
            }
            out.push('\n');
        }
        Ok(out)
    }

    async fn consumer_progress(&self, group: &str, topic: Option<&str>) -> Result<String> {
        let progress = match self.admin.consumer_progress(group, topic).await {
            Ok(p) => p,
            Err(ClientError::NoRoute(t)) if topic.is_none() => bail!(
                "consumer group [{group}] not found: the name server has no route of {t} (has the group ever connected?)"
            ),
            Err(e) => return Err(plain(e)),
        };
        if progress.queues.is_empty() {
            bail!(
                "consumer group [{group}] has no consume progress: no offsets committed{}",
                topic
                    .map(|t| format!(" on topic [{t}]"))
                    .unwrap_or_default()
            );
        }
        let mut rows = Vec::new();
        let (mut diff_total, mut inflight_total) = (0i64, 0i64);
        for (mq, o) in &progress.queues {
            let diff = o.broker_offset - o.consumer_offset;
            let inflight = o.pull_offset - o.consumer_offset;
            diff_total += diff;
            inflight_total += inflight;
            rows.push((mq, o, diff, inflight));
        }
        if self.json {
            let queues: Vec<Value> = rows
                .iter()
                .map(|(mq, o, diff, inflight)| {
                    json!({
                        "topic": mq.topic,
                        "brokerName": mq.broker_name,
                        "queueId": mq.queue_id,
                        "brokerOffset": o.broker_offset,
                        "consumerOffset": o.consumer_offset,
                        "pullOffset": o.pull_offset,
                        "diff": diff,
                        "inflight": inflight,
                        "lastTimestamp": o.last_timestamp,
                    })
                })
                .collect();
            return Ok(pretty(&json!({
                "group": group,
                "topic": topic,
                "consumeTps": progress.consume_tps,
                "diffTotal": diff_total,
                "inflightTotal": inflight_total,
                "queues": queues,
            })));
        }
        let mut t = Table::new(&[
            "#Topic",
            "#Broker Name",
            "#QID",
            "#Broker Offset",
            "#Consumer Offset",
            "#Diff",
            "#Inflight",
            "#LastTime",
        ]);
        for (mq, o, diff, inflight) in &rows {
            t.row(vec![
                mq.topic.clone(),
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                o.broker_offset.to_string(),
                o.consumer_offset.to_string(),
                diff.to_string(),
                inflight.to_string(),
                human_secs(o.last_timestamp),
            ]);
        }
        let mut out = t.render();
        out.push_str(&format!(
            "\nConsume TPS: {:.2}\nConsume Diff Total: {diff_total}\nConsume Inflight Total: {inflight_total}\n",
            progress.consume_tps
        ));
        Ok(out)
    }

    /// `consumerProgress` without a group: one line per group that has a retry topic.
    async fn all_groups_progress(&self) -> Result<String> {
        let topics = self.admin.topic_list().await.map_err(plain)?;
        let mut rows = Vec::new();
        for topic in topics.iter().filter(|t| naming::is_retry_topic(t)) {
            let group = &topic[naming::RETRY_GROUP_TOPIC_PREFIX.len()..];
            let stats = self.admin.consumer_progress(group, None).await.ok();
            let conns = self.admin.consumer_connections(group).await.ok();
            let count = conns.as_ref().map_or(0, |c| c.connection_set.len());
            let version = conns
                .as_ref()
                .and_then(|c| c.connection_set.iter().map(|x| x.version).min())
                .filter(|_| count > 0)
                .map(version_desc)
                .unwrap_or_else(|| "OFFLINE".to_owned());
            let (ty, model) = match (&conns, count) {
                (Some(c), n) if n > 0 => (
                    match c.consume_type {
                        ConsumeType::Actively => "PULL",
                        ConsumeType::Passively => "PUSH",
                        ConsumeType::Pop => "POP",
                    },
                    match c.message_model {
                        MessageModel::Broadcasting => "BROADCASTING",
                        MessageModel::Clustering => "CLUSTERING",
                    },
                ),
                _ => ("", ""),
            };
            let tps = stats.as_ref().map_or(0.0, |s| s.consume_tps);
            let diff = stats.as_ref().map_or(0, |s| {
                s.queues
                    .values()
                    .map(|o| o.broker_offset - o.consumer_offset)
                    .sum::<i64>()
            });
            rows.push((group.to_owned(), count, version, ty, model, tps, diff));
        }
        if self.json {
            let v: Vec<Value> = rows
                .iter()
                .map(|(g, count, version, ty, model, tps, diff)| {
                    json!({
                        "group": g,
                        "count": count,
                        "version": version,
                        "consumeType": ty,
                        "messageModel": model,
                        "consumeTps": tps,
                        "diffTotal": diff,
                    })
                })
                .collect();
            return Ok(pretty(&json!(v)));
        }
        let mut t = Table::new(&[
            "#Group",
            "#Count",
            "#Version",
            "#Type",
            "#Model",
            "#TPS",
            "#Diff Total",
        ]);
        for (g, count, version, ty, model, tps, diff) in rows {
            t.row(vec![
                g,
                count.to_string(),
                version,
                ty.to_owned(),
                model.to_owned(),
                format!("{}", tps as i64),
                diff.to_string(),
            ]);
        }
        Ok(t.render())
    }

    async fn consumer_connection(&self, group: &str, broker: Option<&str>) -> Result<String> {
        let cc = match broker {
            Some(addr) => self
                .admin
                .consumer_connections_on_broker(addr.trim(), group)
                .await
                .map_err(plain)?,
            None => match self.admin.consumer_connections(group).await {
                Ok(c) => c,
                Err(ClientError::NoRoute(_)) => {
                    bail!("the consumer group[{group}] not online (CONSUMER_NOT_ONLINE)")
                }
                Err(e) => return Err(plain(e)),
            },
        };
        if self.json {
            return Ok(pretty(&serde_json::to_value(&cc)?));
        }
        let mut t = Table::new(&["#ClientId", "#ClientAddr", "#Language", "#Version"]);
        for c in &cc.connection_set {
            t.row(vec![
                c.client_id.clone(),
                c.client_addr.clone(),
                c.language.clone(),
                version_desc(c.version),
            ]);
        }
        let mut out = t.render();
        out.push_str("\nBelow is subscription:\n");
        let mut s = Table::new(&["#Topic", "#SubExpression"]);
        for sd in cc.subscription_table.values() {
            s.row(vec![sd.topic.clone(), sd.sub_string.clone()]);
        }
        out.push_str(&s.render());
        out.push_str(&format!(
            "\nConsumeType: {}\nMessageModel: {}\nConsumeFromWhere: {}\n",
            cc.consume_type.name(),
            cc.message_model.name(),
            cc.consume_from_where.name()
        ));
        Ok(out)
    }

    async fn producer_connection(&self, group: &str, topic: &str) -> Result<String> {
        let pc = self
            .admin
            .producer_connections(group, topic)
            .await
            .map_err(plain)?;
        if self.json {
            return Ok(pretty(&serde_json::to_value(&pc)?));
        }
        let mut t = Table::new(&["#", "#ClientId", "#ClientAddr", "#Language", "#Version"]);
        for (i, c) in pc.connection_set.iter().enumerate() {
            t.row(vec![
                format!("{:04}", i + 1),
                c.client_id.clone(),
                c.client_addr.clone(),
                c.language.clone(),
                version_desc(c.version),
            ]);
        }
        Ok(t.render())
    }

    // ----- messages -----------------------------------------------------------------------

    async fn query_msg_by_id(&self, ids: &str, topic: Option<&str>) -> Result<String> {
        let topic = topic.map(str::trim).unwrap_or("");
        let mut found = Vec::new();
        for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let is_offset_id = ferrymq_protocol::message::OffsetMsgId::decode(id).is_ok();
            if topic.is_empty() && !is_offset_id {
                bail!("[{id}] is not an offset message id: give the topic (-t) to look it up as a UNIQ_KEY");
            }
            let msg = if topic.is_empty() {
                match self.admin.view_message(id).await {
                    Ok(m) => Some(m),
                    Err(ClientError::Broker {
                        code: ResponseCode::SystemError,
                        ..
                    }) => None,
                    Err(e) => return Err(plain(e)),
                }
            } else {
                self.admin
                    .query_message_by_id(topic, id)
                    .await
                    .map_err(plain)?
            };
            match msg {
                Some(m) => found.push(m),
                None => bail!("message [{id}] not found"),
            }
        }
        if found.is_empty() {
            bail!("no message id given");
        }
        if self.json {
            return Ok(pretty(&json!(found
                .iter()
                .map(|m| m.to_json(usize::MAX))
                .collect::<Vec<_>>())));
        }
        Ok(found
            .iter()
            .map(message_text)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    async fn query_msg_trace(&self, msg_id: &str, trace_topic: &str) -> Result<String> {
        let records = self
            .admin
            .query_msg_trace(msg_id, trace_topic)
            .await
            .map_err(plain)?;
        if records.is_empty() {
            bail!("no trace of message {msg_id} in {trace_topic}");
        }
        if self.json {
            return Ok(pretty(&json!(records)));
        }
        let mut t = Table::new(&[
            "#Type",
            "#Group",
            "#ClientHost",
            "#Time",
            "#CostTimes",
            "#Status",
        ]);
        for r in &records {
            let status = match r.trace_type {
                ferrymq_protocol::trace::TraceType::EndTransaction => r.transaction_state.clone(),
                ferrymq_protocol::trace::TraceType::SubBefore => {
                    format!("received (retry {})", r.retry_times)
                }
                _ if r.success => "success".to_owned(),
                _ => "failed".to_owned(),
            };
            t.row(vec![
                r.trace_type.as_str().to_owned(),
                r.group.clone(),
                if r.client_host.is_empty() {
                    r.store_host.clone()
                } else {
                    r.client_host.clone()
                },
                fmt::human_ms(r.timestamp),
                format!("{}ms", r.cost_time),
                status,
            ]);
        }
        Ok(t.render())
    }

    async fn query_msg_by_key(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        max: i32,
    ) -> Result<String> {
        let found = self
            .admin
            .query_messages_by_key(topic, key, max, begin, end)
            .await
            .map_err(plain)?;
        if self.json {
            return Ok(pretty(&json!(found
                .iter()
                .map(|m| m.to_json(usize::MAX))
                .collect::<Vec<_>>())));
        }
        let mut t = Table::new(&["#Message ID", "#QID", "#Offset"]);
        for m in &found {
            t.row(vec![
                m.msg_id().to_owned(),
                m.queue_id.to_string(),
                m.queue_offset.to_string(),
            ]);
        }
        Ok(t.render())
    }

    async fn send_message(
        &self,
        msg: ferrymq_client::Message,
        queue: Option<MessageQueue>,
        trace: bool,
    ) -> Result<String> {
        let producer = ferrymq_client::Producer::builder(SEND_MESSAGE_GROUP)
            .options(self.admin.instance().options().clone())
            .enable_msg_trace(trace)
            .start()
            .await
            .map_err(plain)?;
        let sent = match queue {
            Some(q) => producer.send_to_queue(msg, &q).await,
            None => producer.send(msg).await,
        };
        // The trace dispatcher flushes what it holds on shutdown.
        producer.shutdown().await;
        let r = sent.map_err(plain)?;
        if self.json {
            return Ok(pretty(&json!({
                "brokerName": r.queue.broker_name,
                "queueId": r.queue.queue_id,
                "queueOffset": r.queue_offset,
                "sendStatus": format!("{:?}", r.status),
                "msgId": r.msg_id,
                "offsetMsgId": r.offset_msg_id,
            })));
        }
        let mut t = Table::new(&["#Broker Name", "#QID", "#Send Result", "#MsgId"]);
        t.row(vec![
            r.queue.broker_name.clone(),
            r.queue.queue_id.to_string(),
            format!("{:?}", r.status),
            r.msg_id.clone(),
        ]);
        Ok(t.render())
    }

    async fn query_msg_by_offset(
        &self,
        topic: &str,
        broker_name: &str,
        queue_id: i32,
        offset: i64,
    ) -> Result<String> {
        let route = self.admin.topic_route(topic).await.map_err(plain)?;
        let Some(qd) = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == broker_name)
        else {
            bail!("broker [{broker_name}] does not serve topic [{topic}]");
        };
        if queue_id < 0 || queue_id >= qd.read_queue_nums.max(qd.write_queue_nums) {
            bail!(
                "queue id {queue_id} out of range: topic [{topic}] has {} queues on broker [{broker_name}]",
                qd.read_queue_nums.max(qd.write_queue_nums)
            );
        }
        let queue = MessageQueue {
            topic: topic.to_owned(),
            broker_name: broker_name.to_owned(),
            queue_id,
        };
        let Some(m) = self.admin.message_at(&queue, offset).await.map_err(plain)? else {
            bail!("no message at offset {offset} of queue {queue_id} of topic [{topic}] on broker [{broker_name}]");
        };
        if self.json {
            return Ok(pretty(&m.to_json(usize::MAX)));
        }
        Ok(message_text(&m))
    }

    async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        given: &str,
        ts: i64,
        force: bool,
    ) -> Result<String> {
        let offsets = self
            .admin
            .reset_offset_by_time(group, topic, ts, force)
            .await
            .map_err(plain)?;
        if self.json {
            let rows: Vec<Value> = offsets
                .iter()
                .map(|(mq, off)| {
                    json!({ "brokerName": mq.broker_name, "queueId": mq.queue_id, "offset": off })
                })
                .collect();
            return Ok(pretty(&json!({
                "group": group,
                "topic": topic,
                "timestamp": ts,
                "force": force,
                "offsets": rows,
            })));
        }
        let mut out = format!(
            "rollback consumer offset by specified group[{group}], topic[{topic}], force[{force}], timestamp(string)[{given}], timestamp(long)[{ts}]\n"
        );
        let mut t = Table::new(&["#brokerName", "#queueId", "#offset"]);
        let mut sorted: Vec<_> = offsets.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.0.broker_name, a.0.queue_id).cmp(&(&b.0.broker_name, b.0.queue_id))
        });
        for (mq, off) in sorted {
            t.row(vec![
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                off.to_string(),
            ]);
        }
        out.push_str(&t.render());
        Ok(out)
    }
}

/// Parses `+a=b,+c=d` (the `+` is optional) into `{"+a":"b","+c":"d"}`.
fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.trim_start_matches('+').split_once('=') else {
            bail!("invalid attribute `{part}`: expected +key=value");
        };
        if k.is_empty() {
            bail!("invalid attribute `{part}`: empty key");
        }
        map.insert(format!("+{k}"), v.to_owned());
    }
    Ok(map)
}

/// One row of `clusterList`: a broker member and what its runtime info says.
struct BrokerRow {
    cluster: String,
    broker_name: String,
    id: i64,
    addr: String,
    runtime: std::result::Result<BTreeMap<String, String>, String>,
}

impl BrokerRow {
    fn new(
        cluster: &str,
        name: &str,
        id: i64,
        addr: &str,
        runtime: ferrymq_client::Result<BTreeMap<String, String>>,
    ) -> BrokerRow {
        BrokerRow {
            cluster: cluster.to_owned(),
            broker_name: name.to_owned(),
            id,
            addr: addr.to_owned(),
            runtime: runtime.map_err(|e| describe(&e)),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.runtime
            .as_ref()
            .ok()
            .and_then(|t| t.get(key))
            .map_or("", String::as_str)
    }

    /// The first figure of a `"tps10s tps60s tps600s"` value.
    fn tps(&self, key: &str) -> f64 {
        self.get(key)
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    }

    fn hours(&self) -> f64 {
        match self.get("earliestMessageTimeStamp").parse::<i64>() {
            Ok(ts) if ts > 0 => (fmt::now_ms() - ts).max(0) as f64 / 3_600_000.0,
            _ => 0.0,
        }
    }

    fn space(&self) -> f64 {
        self.get("commitLogDiskRatio").parse().unwrap_or(0.0)
    }

    fn json(&self) -> Value {
        let mut v = json!({
            "cluster": self.cluster,
            "brokerName": self.broker_name,
            "brokerId": self.id,
            "addr": self.addr,
            "version": self.get("brokerVersionDesc"),
            "inTps": self.tps("putTps"),
            "outTps": self.tps("getTransferredTps"),
            "pageCacheLockTimeMills": self.get("pageCacheLockTimeMills"),
            "hour": self.hours(),
            "space": self.space(),
            "active": self.get("brokerActive") == "true",
        });
        if let Err(e) = &self.runtime {
            v["error"] = json!(e);
        }
        v
    }

    fn cells(&self) -> Vec<String> {
        if let Err(e) = &self.runtime {
            return vec![
                self.cluster.clone(),
                self.broker_name.clone(),
                self.id.to_string(),
                self.addr.clone(),
                format!("(unreachable: {e})"),
            ];
        }
        vec![
            self.cluster.clone(),
            self.broker_name.clone(),
            self.id.to_string(),
            self.addr.clone(),
            self.get("brokerVersionDesc").to_owned(),
            format!(
                "{:.2}({},{}ms)",
                self.tps("putTps"),
                self.get("sendThreadPoolQueueSize"),
                self.get("sendThreadPoolQueueHeadWaitTimeMills")
            ),
            format!(
                "{:.2}({},{}ms)",
                self.tps("getTransferredTps"),
                self.get("pullThreadPoolQueueSize"),
                self.get("pullThreadPoolQueueHeadWaitTimeMills")
            ),
            self.get("pageCacheLockTimeMills").to_owned(),
            format!("{:.2}", self.hours()),
            format!("{:.4}", self.space()),
            (self.get("brokerActive") == "true").to_string(),
        ]
    }
}

/// A message as JSON: coordinates, properties and the body (text when it is UTF-8).
/// A message the way mqadmin's queryMsgById prints it.
fn message_text(m: &MessageExt) -> String {
    let props = m
        .properties()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = match std::str::from_utf8(m.body()) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("({} bytes, not UTF-8; see --json bodyHex)", m.body().len()),
    };
    let lines: Vec<(&str, String)> = vec![
        ("OffsetID:", m.offset_msg_id.clone()),
        ("MsgId:", m.msg_id().to_owned()),
        ("Topic:", m.topic().to_owned()),
        ("Tags:", format!("[{}]", m.tags().unwrap_or(""))),
        ("Keys:", format!("[{}]", m.keys().join(" "))),
        ("Queue ID:", m.queue_id.to_string()),
        ("Queue Offset:", m.queue_offset.to_string()),
        ("CommitLog Offset:", m.commit_log_offset.to_string()),
        ("Reconsume Times:", m.reconsume_times.to_string()),
        ("Born Timestamp:", human_ms(m.born_timestamp)),
        ("Store Timestamp:", human_ms(m.store_timestamp)),
        ("Born Host:", m.born_host.to_string()),
        ("Store Host:", m.store_host.to_string()),
        ("System Flag:", m.sys_flag.to_string()),
        ("Properties:", format!("{{{props}}}")),
        ("Message Body:", body),
    ];
    lines
        .iter()
        .map(|(k, v)| format!("{k:<20} {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_like_mqadmin() {
        let m = parse_attributes("+message.type=FIFO, k=v").unwrap();
        assert_eq!(m["+message.type"], "FIFO");
        assert_eq!(m["+k"], "v");
        assert!(parse_attributes("+novalue").is_err());
        assert!(parse_attributes("+=x").is_err());
        assert!(parse_attributes("").unwrap().is_empty());
    }
}
