//! Who is connected: producer groups and consumer groups with their channels and subscriptions,
//! as learned from heartbeats.
//!
//! Every consumer heartbeats every broker, so each broker can answer "who is in group G" for
//! rebalancing, and tell the members when that changes. Pull handling reads subscriptions on every
//! request, so the table sits behind a read-write lock and writes (heartbeats, every 30 s per
//! client) are short.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use ferrymq_protocol::body::{
    ClientConnection, ConsumeFromWhere, ConsumeType, ConsumerConnection, ConsumerData,
    MessageModel, SubscriptionData,
};
use ferrymq_protocol::LanguageCode;
use ferrymq_remoting::Connection;

/// One client channel in a group.
#[derive(Debug, Clone)]
pub struct ClientChannel {
    pub client_id: String,
    pub connection: Connection,
    pub language: LanguageCode,
    pub version: i32,
    pub last_update: Instant,
}

impl ClientChannel {
    pub fn new(
        client_id: String,
        connection: Connection,
        language: LanguageCode,
        version: i32,
    ) -> Self {
        ClientChannel {
            client_id,
            connection,
            language,
            version,
            last_update: Instant::now(),
        }
    }

    fn describe(&self) -> ClientConnection {
        ClientConnection {
            client_id: self.client_id.clone(),
            client_addr: self.connection.peer_addr().to_string(),
            language: self.language.name().to_owned(),
            version: self.version,
        }
    }
}

/// A consumer group as this broker knows it.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub subscriptions: HashMap<String, SubscriptionData>,
    /// Keyed by connection id.
    pub channels: HashMap<u64, ClientChannel>,
}

/// What a consumer heartbeat changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegisterOutcome {
    pub new_channel: bool,
    pub subscriptions_changed: bool,
}

#[derive(Default)]
struct Tables {
    consumers: HashMap<String, ConsumerGroup>,
    producers: HashMap<String, HashMap<u64, ClientChannel>>,
}

/// Producer and consumer groups with their live channels.
#[derive(Default)]
pub struct ClientRegistry {
    tables: RwLock<Tables>,
}

impl ClientRegistry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers or refreshes a consumer channel. When `replace_subscriptions` is false (heartbeat
    /// V2 without subscriptions) the stored subscriptions stay.
    pub fn register_consumer(
        &self,
        data: &ConsumerData,
        channel: ClientChannel,
        replace_subscriptions: bool,
    ) -> RegisterOutcome {
        let mut tables = self.write();
        let group = tables
            .consumers
            .entry(data.group_name.clone())
            .or_insert_with(|| ConsumerGroup {
                consume_type: data.consume_type,
                message_model: data.message_model,
                consume_from_where: data.consume_from_where,
                subscriptions: HashMap::new(),
                channels: HashMap::new(),
            });
        group.consume_type = data.consume_type;
        group.message_model = data.message_model;
        group.consume_from_where = data.consume_from_where;
        let conn_id = channel.connection.id();
        let new_channel = match group.channels.get_mut(&conn_id) {
            Some(existing) => {
                existing.last_update = Instant::now();
                existing.client_id = channel.client_id;
                false
            }
            None => {
                group.channels.insert(conn_id, channel);
                true
            }
        };
        let mut subscriptions_changed = false;
        if replace_subscriptions {
            let incoming: HashMap<String, SubscriptionData> = data
                .subscription_data_set
                .iter()
                .map(|s| (s.topic.clone(), s.clone()))
                .collect();
            subscriptions_changed = incoming.len() != group.subscriptions.len()
                || incoming.iter().any(|(topic, sub)| {
                    group.subscriptions.get(topic).is_none_or(|old| {
                        old.sub_string != sub.sub_string
                            || old.expression_type != sub.expression_type
                    })
                });
            // Keep the newest version of each subscription: a pull carrying a newer subVersion
            // than the stored one is told SUBSCRIPTION_NOT_LATEST until the heartbeat arrives.
            group.subscriptions = incoming;
        }
        RegisterOutcome {
            new_channel,
            subscriptions_changed,
        }
    }

    /// Removes a consumer channel from a group; true when it was there.
    pub fn unregister_consumer(&self, group: &str, conn_id: u64) -> bool {
        let mut tables = self.write();
        let Some(g) = tables.consumers.get_mut(group) else {
            return false;
        };
        let removed = g.channels.remove(&conn_id).is_some();
        if g.channels.is_empty() {
            tables.consumers.remove(group);
        }
        removed
    }

    pub fn register_producer(&self, group: &str, channel: ClientChannel) {
        let mut tables = self.write();
        let channels = tables.producers.entry(group.to_owned()).or_default();
        match channels.get_mut(&channel.connection.id()) {
            Some(existing) => existing.last_update = Instant::now(),
            None => {
                channels.insert(channel.connection.id(), channel);
            }
        }
    }

    pub fn unregister_producer(&self, group: &str, conn_id: u64) {
        let mut tables = self.write();
        if let Some(channels) = tables.producers.get_mut(group) {
            channels.remove(&conn_id);
            if channels.is_empty() {
                tables.producers.remove(group);
            }
        }
    }

    /// Forgets a closed connection everywhere; returns the consumer groups it left.
    pub fn remove_connection(&self, conn_id: u64) -> Vec<String> {
        self.remove_where(|id, _| id == conn_id)
    }

    /// Removes channels silent for longer than `timeout`; returns the consumer groups that
    /// lost members.
    pub fn remove_expired(&self, timeout: Duration) -> Vec<String> {
        let now = Instant::now();
        self.remove_where(|_, ch| now.duration_since(ch.last_update) > timeout)
    }

    fn remove_where(&self, dead: impl Fn(u64, &ClientChannel) -> bool) -> Vec<String> {
        let mut tables = self.write();
        let mut affected = Vec::new();
        tables.consumers.retain(|name, group| {
            let before = group.channels.len();
            group.channels.retain(|id, ch| !dead(*id, ch));
            if group.channels.len() != before {
                affected.push(name.clone());
            }
            !group.channels.is_empty()
        });
        tables.producers.retain(|_, channels| {
            channels.retain(|id, ch| !dead(*id, ch));
            !channels.is_empty()
        });
        affected
    }

    /// Client ids of a consumer group, sorted (rebalance inputs must agree across clients).
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let tables = self.read();
        let mut ids: Vec<String> = tables
            .consumers
            .get(group)
            .map(|g| g.channels.values().map(|c| c.client_id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Live connections of a consumer group (for notifications).
    pub fn consumer_connections(&self, group: &str) -> Vec<Connection> {
        let tables = self.read();
        tables
            .consumers
            .get(group)
            .map(|g| g.channels.values().map(|c| c.connection.clone()).collect())
            .unwrap_or_default()
    }

    /// Channels of a consumer group with the client versions (for reset-offset calls).
    pub fn consumer_channels(&self, group: &str) -> Vec<ClientChannel> {
        let tables = self.read();
        tables
            .consumers
            .get(group)
            .map(|g| g.channels.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The subscription of `group` to `topic`, if a heartbeat declared one.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.read()
            .consumers
            .get(group)?
            .subscriptions
            .get(topic)
            .cloned()
    }

    /// The group's message model, if the group is online.
    pub fn message_model(&self, group: &str) -> Option<MessageModel> {
        self.read().consumers.get(group).map(|g| g.message_model)
    }

    /// Where the group's clients said (in their heartbeats) a new group starts, if online.
    pub fn consume_from_where(&self, group: &str) -> Option<ConsumeFromWhere> {
        self.read()
            .consumers
            .get(group)
            .map(|g| g.consume_from_where)
    }

    /// Online consumer groups.
    pub fn consumer_groups(&self) -> Vec<String> {
        self.read().consumers.keys().cloned().collect()
    }

    /// Groups that subscribe to `topic`.
    pub fn groups_subscribing(&self, topic: &str) -> Vec<String> {
        self.read()
            .consumers
            .iter()
            .filter(|(_, g)| g.subscriptions.contains_key(topic))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// GET_CONSUMER_CONNECTION_LIST answer; `None` when the group has no live member.
    pub fn consumer_connection(&self, group: &str) -> Option<ConsumerConnection> {
        let tables = self.read();
        let g = tables.consumers.get(group)?;
        Some(ConsumerConnection {
            connection_set: g.channels.values().map(ClientChannel::describe).collect(),
            subscription_table: g
                .subscriptions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            consume_type: g.consume_type,
            message_model: g.message_model,
            consume_from_where: g.consume_from_where,
        })
    }

    /// Connections of a producer group; `None` when none is online.
    pub fn producer_connections(&self, group: &str) -> Option<Vec<ClientConnection>> {
        let tables = self.read();
        let channels = tables.producers.get(group)?;
        Some(channels.values().map(ClientChannel::describe).collect())
    }

    /// The live connection of the client instance `client_id`, if it heartbeats as a producer
    /// here (where a reply to its request is pushed).
    pub fn producer_by_client_id(&self, client_id: &str) -> Option<Connection> {
        let tables = self.read();
        tables
            .producers
            .values()
            .flat_map(|channels| channels.values())
            .find(|c| c.client_id == client_id && !c.connection.is_closed())
            .map(|c| c.connection.clone())
    }

    /// One live connection of a producer group (transaction check-backs go to any member).
    pub fn any_producer(&self, group: &str) -> Option<Connection> {
        let tables = self.read();
        tables
            .producers
            .get(group)?
            .values()
            .find(|c| !c.connection.is_closed())
            .map(|c| c.connection.clone())
    }
}
