//! The route table: which brokers exist, which are alive, and which queues each serves per topic.
//!
//! It keeps RocketMQ's four tables (request-codes.md §11.2–§11.8) and their rules:
//! * cluster name → broker names;
//! * broker name → [`BrokerData`] (addresses by broker id, 0 = master);
//! * topic → broker name → [`QueueData`];
//! * live brokers keyed by (cluster, address): last heartbeat, heartbeat timeout, the topic-config
//!   [`DataVersion`] last registered, the HA address, and the connection the broker registered on.
//!
//! It is a plain struct, no locking and no I/O: the request handler wraps it in one `RwLock`
//! (route reads dominate, writes are a broker registration every 30 s), and every method takes
//! the current time as an argument so the liveness rules can be tested without sleeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ferrymq_protocol::body::{
    BrokerData, BrokerMemberGroup, ClusterInfo, DataVersion, QueueData,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData,
};
use ferrymq_protocol::message::{perm, topic_sys_flag};
use tracing::{debug, info, warn};

/// Broker id of a master.
pub const MASTER_ID: i64 = 0;

/// Topics of the slave-acting-master member sync; their routes are never rewritten.
const SYNC_BROKER_MEMBER_GROUP_PREFIX: &str = "rmq_sys_SYNC_BROKER_MEMBER_";

/// Identifies one live broker process: the same address may serve two clusters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerKey {
    pub cluster: String,
    pub addr: String,
}

impl BrokerKey {
    pub fn new(cluster: impl Into<String>, addr: impl Into<String>) -> BrokerKey {
        BrokerKey {
            cluster: cluster.into(),
            addr: addr.into(),
        }
    }
}

impl std::fmt::Display for BrokerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.addr, self.cluster)
    }
}

/// Liveness of one registered broker.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveBroker {
    /// Last REGISTER_BROKER, QUERY_DATA_VERSION or BROKER_HEARTBEAT.
    pub last_update: Instant,
    /// Silence longer than this removes the broker.
    pub heartbeat_timeout: Duration,
    /// Version of the topic config it last registered.
    pub data_version: DataVersion,
    pub ha_server_addr: String,
    /// Connection the registration arrived on; its close removes the broker at once.
    pub connection_id: Option<u64>,
}

/// Settings of the table that come from the NameServer configuration (and may change at runtime
/// through UPDATE_NAMESRV_CONFIG, which is why they are passed per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOptions {
    /// Heartbeat timeout of brokers that do not send their own.
    pub default_heartbeat_timeout: Duration,
    /// Drop a broker's topics that are missing from its registration.
    pub delete_topic_with_broker_registration: bool,
    /// Show the read-only slave standing in for a lost master as id 0 in routes.
    pub support_acting_master: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            default_heartbeat_timeout: Duration::from_secs(120),
            delete_topic_with_broker_registration: false,
            support_acting_master: false,
        }
    }
}

/// One REGISTER_BROKER, decoded.
#[derive(Debug, Clone, Default)]
pub struct BrokerRegistration {
    pub cluster: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    pub zone_name: Option<String>,
    /// `None`: the configured default.
    pub heartbeat_timeout: Option<Duration>,
    /// `None` marks a broker older than the acting-master feature.
    pub enable_acting_master: Option<bool>,
    pub topics: TopicConfigSerializeWrapper,
    pub filter_servers: Vec<String>,
    pub connection_id: Option<u64>,
}

/// What became of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Stored. For a slave whose master is alive, the master's address and HA address.
    Registered {
        master_addr: Option<String>,
        master_ha_addr: Option<String>,
    },
    /// Another address holds this broker id with a newer state version; the registration was
    /// dropped (Java still answers SUCCESS, without master addresses).
    Ignored,
    /// A single-topic registration from a broker id that never did a full one (Java answers
    /// SYSTEM_ERROR "register broker failed").
    Rejected,
}

/// The NameServer's route and liveness tables.
#[derive(Debug, Default)]
pub struct RouteTable {
    clusters: BTreeMap<String, BTreeSet<String>>,
    brokers: BTreeMap<String, BrokerData>,
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    live: HashMap<BrokerKey, LiveBroker>,
    filter_servers: HashMap<BrokerKey, Vec<String>>,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Applies a REGISTER_BROKER (request-codes.md §11.2, steps 1–9).
    pub fn register(
        &mut self,
        reg: BrokerRegistration,
        options: &RouteOptions,
        now: Instant,
    ) -> RegisterOutcome {
        let key = BrokerKey::new(&reg.cluster, &reg.broker_addr);
        let name = reg.broker_name.as_str();
        let id = reg.broker_id;

        // 1–2: the cluster knows the broker name; the broker name has its data.
        self.clusters
            .entry(reg.cluster.clone())
            .or_default()
            .insert(reg.broker_name.clone());
        let mut register_first = false;
        let broker = self
            .brokers
            .entry(reg.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    cluster: reg.cluster.clone(),
                    broker_name: reg.broker_name.clone(),
                    ..BrokerData::default()
                }
            });
        let old_version_broker = reg.enable_acting_master.is_none();
        broker.enable_acting_master = reg.enable_acting_master.unwrap_or(false);
        broker.zone_name = reg.zone_name.clone();

        // 3: one address has one id; a slave promoted to master re-registers under id 0.
        broker
            .broker_addrs
            .retain(|other_id, addr| *addr != reg.broker_addr || *other_id == id);

        // 4: a different address holding this id with a newer state wins over the newcomer.
        if let Some(old_addr) = broker.broker_addrs.get(&id) {
            if *old_addr != reg.broker_addr {
                let holder = self.live.get(&BrokerKey::new(&reg.cluster, old_addr));
                if let Some(holder) = holder {
                    let (old, new) = (
                        holder.data_version.state_version,
                        reg.topics.data_version.state_version,
                    );
                    if old > new {
                        warn!(
                            cluster = %reg.cluster, broker = name, id, old_addr = %old_addr,
                            old_state = old, new_addr = %reg.broker_addr, new_state = new,
                            "registration conflicts with a newer broker under the same id; ignored"
                        );
                        self.live.remove(&key);
                        return RegisterOutcome::Ignored;
                    }
                }
            }
        }

        // 5: single-topic registrations only update a broker that already did a full one.
        if !broker.broker_addrs.contains_key(&id) && reg.topics.topic_config_table.len() == 1 {
            warn!(
                cluster = %reg.cluster, broker = name, id, addr = %reg.broker_addr,
                "single-topic registration before a full registration; rejected"
            );
            // Java leaves an address-less BrokerData behind here; drop it instead so cluster
            // info never lists a broker name nobody serves.
            self.forget_if_empty(name, &reg.cluster);
            return RegisterOutcome::Rejected;
        }

        // 6
        let old_addr = broker.broker_addrs.insert(id, reg.broker_addr.clone());
        register_first |= old_addr.is_none_or(|a| a.is_empty());

        // 7: queue data comes from the master, or from the lowest-id slave of a new-version
        // broker (which stands in for a lost master).
        let is_master = id == MASTER_ID;
        let min_id = broker.broker_addrs.keys().next().copied();
        let is_prime_slave = !old_version_broker && !is_master && min_id == Some(id);
        let acting_master = broker.enable_acting_master;
        if is_master || is_prime_slave {
            let table = &reg.topics.topic_config_table;
            if options.delete_topic_with_broker_registration {
                let stale: Vec<String> = self
                    .topics
                    .iter()
                    .filter(|(topic, queues)| {
                        queues.contains_key(name) && !table.contains_key(topic.as_str())
                    })
                    .map(|(topic, _)| topic.clone())
                    .collect();
                for topic in stale {
                    info!(
                        topic,
                        broker = name,
                        "topic missing from registration; removed"
                    );
                    self.remove_queue_data(&topic, name);
                }
            }
            // Unchanged version and queue data already present: nothing to rewrite.
            let version_changed =
                self.live.get(&key).map(|l| &l.data_version) != Some(&reg.topics.data_version);
            for (table_key, tc) in table {
                let topic = if tc.topic_name.is_empty() {
                    table_key.as_str()
                } else {
                    tc.topic_name.as_str()
                };
                let known = self.topics.get(topic).is_some_and(|q| q.contains_key(name));
                if !(register_first || version_changed || !known) {
                    continue;
                }
                let mut perm = tc.perm;
                if is_prime_slave && acting_master {
                    // A slave acting as master serves reads only.
                    perm &= !perm::WRITE;
                }
                let queue = QueueData {
                    broker_name: reg.broker_name.clone(),
                    perm,
                    read_queue_nums: tc.read_queue_nums,
                    topic_sys_flag: tc.topic_sys_flag,
                    write_queue_nums: tc.write_queue_nums,
                };
                let queues = self.topics.entry(topic.to_owned()).or_default();
                match queues.get(name) {
                    None => debug!(topic, broker = name, "topic registered"),
                    Some(old) if *old != queue => {
                        info!(topic, broker = name, ?old, new = ?queue, "topic changed")
                    }
                    Some(_) => {}
                }
                queues.insert(reg.broker_name.clone(), queue);
            }
        }

        // 8
        let heartbeat_timeout = reg
            .heartbeat_timeout
            .unwrap_or(options.default_heartbeat_timeout);
        let previous = self.live.insert(
            key.clone(),
            LiveBroker {
                last_update: now,
                heartbeat_timeout,
                data_version: reg.topics.data_version.clone(),
                ha_server_addr: reg.ha_server_addr.clone(),
                connection_id: reg.connection_id,
            },
        );
        if previous.is_none() {
            info!(broker = %key, name, id, ha = %reg.ha_server_addr, "new broker registered");
        }
        if reg.filter_servers.is_empty() {
            self.filter_servers.remove(&key);
        } else {
            self.filter_servers.insert(key, reg.filter_servers);
        }

        // 9: a slave learns where its master is, if the master is alive.
        if !is_master {
            let master = self
                .brokers
                .get(name)
                .and_then(|b| b.broker_addrs.get(&MASTER_ID));
            if let Some(master_addr) = master {
                if let Some(m) = self.live.get(&BrokerKey::new(&reg.cluster, master_addr)) {
                    return RegisterOutcome::Registered {
                        master_addr: Some(master_addr.clone()),
                        master_ha_addr: Some(m.ha_server_addr.clone()),
                    };
                }
            }
        }
        RegisterOutcome::Registered {
            master_addr: None,
            master_ha_addr: None,
        }
    }

    /// Removes a broker address (UNREGISTER_BROKER, §11.3). When it was the broker name's last
    /// address the name leaves its cluster and every topic loses that name's queues. Returns the
    /// removed liveness entry, if there was one.
    pub fn unregister(
        &mut self,
        cluster: &str,
        addr: &str,
        broker_name: &str,
    ) -> Option<LiveBroker> {
        let key = BrokerKey::new(cluster, addr);
        let live = self.live.remove(&key);
        self.filter_servers.remove(&key);

        let Some(broker) = self.brokers.get_mut(broker_name) else {
            return live;
        };
        broker.broker_addrs.retain(|_, a| a != addr);
        if broker.broker_addrs.is_empty() {
            self.brokers.remove(broker_name);
            info!(
                broker = broker_name,
                "last address gone; broker name removed"
            );
            if let Some(names) = self.clusters.get_mut(cluster) {
                names.remove(broker_name);
                if names.is_empty() {
                    self.clusters.remove(cluster);
                    info!(cluster, "last broker gone; cluster removed");
                }
            }
            let topics: Vec<String> = self
                .topics
                .iter()
                .filter(|(_, queues)| queues.contains_key(broker_name))
                .map(|(t, _)| t.clone())
                .collect();
            for topic in topics {
                self.remove_queue_data(&topic, broker_name);
            }
        } else if broker.enable_acting_master && !broker.broker_addrs.contains_key(&MASTER_ID) {
            // The master left an acting-master group: its queues become read-only until a
            // master is back.
            for queues in self.topics.values_mut() {
                if let Some(q) = queues.get_mut(broker_name) {
                    q.perm &= !perm::WRITE;
                }
            }
        }
        live
    }

    /// Removes every broker registered over connection `connection_id` (its socket closed).
    pub fn remove_connection(&mut self, connection_id: u64) -> Vec<BrokerKey> {
        let keys: Vec<BrokerKey> = self
            .live
            .iter()
            .filter(|(_, l)| l.connection_id == Some(connection_id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.unregister_key(key);
        }
        keys
    }

    /// Removes every broker silent for longer than its heartbeat timeout, returning them.
    pub fn expire(&mut self, now: Instant) -> Vec<(BrokerKey, LiveBroker)> {
        let expired: Vec<(BrokerKey, LiveBroker)> = self
            .live
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.last_update) > l.heartbeat_timeout)
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect();
        for (key, _) in &expired {
            self.unregister_key(key);
        }
        expired
    }

    /// Unregisters a live entry known only by (cluster, address), finding its broker names.
    fn unregister_key(&mut self, key: &BrokerKey) {
        let names: Vec<String> = self
            .brokers
            .values()
            .filter(|b| b.cluster == key.cluster && b.broker_addrs.values().any(|a| *a == key.addr))
            .map(|b| b.broker_name.clone())
            .collect();
        for name in &names {
            self.unregister(&key.cluster, &key.addr, name);
        }
        // Without a broker name only the liveness entry is left; drop it too (Java would keep
        // it forever and re-report it on every scan).
        self.live.remove(key);
        self.filter_servers.remove(key);
    }

    fn remove_queue_data(&mut self, topic: &str, broker_name: &str) {
        if let Some(queues) = self.topics.get_mut(topic) {
            queues.remove(broker_name);
            if queues.is_empty() {
                self.topics.remove(topic);
                debug!(topic, "last queues gone; topic removed");
            }
        }
    }

    fn forget_if_empty(&mut self, broker_name: &str, cluster: &str) {
        if !self
            .brokers
            .get(broker_name)
            .is_some_and(|b| b.broker_addrs.is_empty())
        {
            return;
        }
        self.brokers.remove(broker_name);
        if let Some(names) = self.clusters.get_mut(cluster) {
            names.remove(broker_name);
            if names.is_empty() {
                self.clusters.remove(cluster);
            }
        }
    }

    /// Refreshes a broker's liveness (QUERY_DATA_VERSION, BROKER_HEARTBEAT). False if unknown.
    pub fn touch(&mut self, cluster: &str, addr: &str, now: Instant) -> bool {
        match self.live.get_mut(&BrokerKey::new(cluster, addr)) {
            Some(l) => {
                l.last_update = now;
                true
            }
            None => false,
        }
    }

    /// The liveness entry of (cluster, address).
    pub fn live_broker(&self, cluster: &str, addr: &str) -> Option<&LiveBroker> {
        self.live.get(&BrokerKey::new(cluster, addr))
    }

    /// Number of live broker addresses.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The topic-config version a broker last registered.
    pub fn data_version(&self, cluster: &str, addr: &str) -> Option<&DataVersion> {
        self.live_broker(cluster, addr).map(|l| &l.data_version)
    }

    /// The route of `topic`: its queues plus the data of every broker name serving them, or
    /// `None` unless both exist (§11.1).
    pub fn route(&self, topic: &str, options: &RouteOptions) -> Option<TopicRouteData> {
        let queues = self.topics.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            ..TopicRouteData::default()
        };
        for name in queues.keys() {
            let Some(broker) = self.brokers.get(name) else {
                continue;
            };
            if !self.filter_servers.is_empty() {
                for addr in broker.broker_addrs.values() {
                    if let Some(list) = self
                        .filter_servers
                        .get(&BrokerKey::new(&broker.cluster, addr))
                    {
                        route.filter_server_table.insert(addr.clone(), list.clone());
                    }
                }
            }
            route.broker_datas.push(broker.clone());
        }
        if route.broker_datas.is_empty() {
            return None;
        }
        if options.support_acting_master && !topic.starts_with(SYNC_BROKER_MEMBER_GROUP_PREFIX) {
            promote_acting_masters(&mut route);
        }
        Some(route)
    }

    /// GET_BROKER_CLUSTER_INFO body.
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.brokers.clone(),
            cluster_addr_table: self.clusters.clone(),
        }
    }

    /// Every topic with a route.
    pub fn all_topics(&self) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self.topics.keys().cloned().collect(),
        }
    }

    /// Topics with queues on any broker of `cluster` (unknown cluster: none).
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let names = self.clusters.get(cluster);
        let topic_list = self
            .topics
            .iter()
            .filter(|(_, queues)| {
                names.is_some_and(|names| queues.keys().any(|n| names.contains(n)))
            })
            .map(|(t, _)| t.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: cluster names and broker names (each is a system topic on
    /// the brokers), with the address of one broker to ask for the rest.
    pub fn system_topics(&self) -> TopicList {
        let mut topic_list = BTreeSet::new();
        for (cluster, names) in &self.clusters {
            topic_list.insert(cluster.clone());
            topic_list.extend(names.iter().cloned());
        }
        let broker_addr = self
            .brokers
            .values()
            .find_map(|b| b.broker_addrs.values().next().cloned());
        TopicList {
            broker_addr,
            topic_list,
        }
    }

    fn topics_by_sys_flag(&self, wanted: impl Fn(i32) -> bool) -> TopicList {
        // Java judges a topic by the flag of its first queue data.
        let topic_list = self
            .topics
            .iter()
            .filter(|(_, queues)| {
                queues
                    .values()
                    .next()
                    .is_some_and(|q| wanted(q.topic_sys_flag))
            })
            .map(|(t, _)| t.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// GET_UNIT_TOPIC_LIST.
    pub fn unit_topics(&self) -> TopicList {
        self.topics_by_sys_flag(|f| f & topic_sys_flag::UNIT != 0)
    }

    /// GET_HAS_UNIT_SUB_TOPIC_LIST.
    pub fn has_unit_sub_topics(&self) -> TopicList {
        self.topics_by_sys_flag(|f| f & topic_sys_flag::UNIT_SUB != 0)
    }

    /// GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST.
    pub fn has_unit_sub_ununit_topics(&self) -> TopicList {
        self.topics_by_sys_flag(|f| {
            f & topic_sys_flag::UNIT == 0 && f & topic_sys_flag::UNIT_SUB != 0
        })
    }

    /// Removes a topic entirely. False if it had no route.
    pub fn delete_topic(&mut self, topic: &str) -> bool {
        self.topics.remove(topic).is_some()
    }

    /// Removes the queues of `cluster`'s brokers from a topic (the topic goes when none are
    /// left). Returns how many broker names lost it.
    pub fn delete_topic_in_cluster(&mut self, topic: &str, cluster: &str) -> usize {
        let Some(names) = self.clusters.get(cluster) else {
            return 0;
        };
        let Some(queues) = self.topics.get_mut(topic) else {
            return 0;
        };
        let before = queues.len();
        queues.retain(|name, _| !names.contains(name));
        let removed = before - queues.len();
        if queues.is_empty() {
            self.topics.remove(topic);
        }
        removed
    }

    /// REGISTER_TOPIC_IN_NAMESRV: merges queue data of known broker names into a topic. Like
    /// Java, nothing is applied if any queue names an unknown broker. Returns whether applied.
    pub fn register_topic(&mut self, topic: &str, queue_datas: &[QueueData]) -> bool {
        if queue_datas.is_empty() {
            return false;
        }
        if let Some(unknown) = queue_datas
            .iter()
            .find(|q| !self.brokers.contains_key(&q.broker_name))
        {
            warn!(topic, broker = %unknown.broker_name, "topic registration names an unknown broker; ignored");
            return false;
        }
        let queues = self.topics.entry(topic.to_owned()).or_default();
        for q in queue_datas {
            queues.insert(q.broker_name.clone(), q.clone());
        }
        true
    }

    /// Clears the write bit of every queue of `broker_name`; returns how many topics changed.
    pub fn wipe_write_perm(&mut self, broker_name: &str) -> i32 {
        self.update_perm(broker_name, |p| p & !perm::WRITE)
    }

    /// Makes every queue of `broker_name` read-write; returns how many topics changed.
    pub fn add_write_perm(&mut self, broker_name: &str) -> i32 {
        self.update_perm(broker_name, |_| perm::READ | perm::WRITE)
    }

    fn update_perm(&mut self, broker_name: &str, f: impl Fn(i32) -> i32) -> i32 {
        let mut count = 0;
        for queues in self.topics.values_mut() {
            if let Some(q) = queues.get_mut(broker_name) {
                q.perm = f(q.perm);
                count += 1;
            }
        }
        count
    }

    /// GET_BROKER_MEMBER_GROUP: the addresses of one broker name.
    pub fn broker_member_group(&self, cluster: &str, broker_name: &str) -> BrokerMemberGroup {
        BrokerMemberGroup {
            broker_addrs: self
                .brokers
                .get(broker_name)
                .map(|b| b.broker_addrs.clone())
                .unwrap_or_default(),
            broker_name: broker_name.to_owned(),
            cluster: cluster.to_owned(),
        }
    }
}

/// Slave-acting-master: a broker name without a master whose queues are read-only shows its
/// lowest-id slave as id 0, so clients that read from "the master" keep working.
fn promote_acting_masters(route: &mut TopicRouteData) {
    let need = route
        .broker_datas
        .iter()
        .any(|b| !b.broker_addrs.is_empty() && !b.broker_addrs.contains_key(&MASTER_ID));
    if !need {
        return;
    }
    for broker in &mut route.broker_datas {
        if broker.broker_addrs.is_empty()
            || broker.broker_addrs.contains_key(&MASTER_ID)
            || !broker.enable_acting_master
        {
            continue;
        }
        let read_only = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == broker.broker_name)
            .is_some_and(|q| !perm::is_writeable(q.perm));
        if read_only {
            if let Some((&min_id, _)) = broker.broker_addrs.iter().next() {
                if let Some(addr) = broker.broker_addrs.remove(&min_id) {
                    broker.broker_addrs.insert(MASTER_ID, addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::body::TopicConfig;

    const CLUSTER: &str = "DefaultCluster";

    fn wrapper(counter: i64, topics: &[(&str, i32)]) -> TopicConfigSerializeWrapper {
        let mut w = TopicConfigSerializeWrapper::default();
        w.data_version.counter = counter;
        w.data_version.timestamp = 1;
        for (name, queues) in topics {
            w.topic_config_table
                .insert((*name).to_owned(), TopicConfig::new(*name, *queues));
        }
        w
    }

    fn reg(
        name: &str,
        id: i64,
        addr: &str,
        topics: TopicConfigSerializeWrapper,
    ) -> BrokerRegistration {
        BrokerRegistration {
            cluster: CLUSTER.into(),
            broker_addr: addr.into(),
            broker_name: name.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            enable_acting_master: Some(false),
            topics,
            connection_id: Some(1),
            ..BrokerRegistration::default()
        }
    }

    fn opts() -> RouteOptions {
        RouteOptions::default()
    }

    fn registered(outcome: &RegisterOutcome) -> bool {
        matches!(outcome, RegisterOutcome::Registered { .. })
    }

    #[test]
    fn master_and_slave_share_a_broker_name_and_the_slave_learns_its_master() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let w = wrapper(1, &[("T1", 4), ("T2", 8)]);
        let out = t.register(
            reg("broker-a", 0, "10.0.0.1:10911", w.clone()),
            &opts(),
            now,
        );
        assert_eq!(
            out,
            RegisterOutcome::Registered {
                master_addr: None,
                master_ha_addr: None
            }
        );
        let out = t.register(reg("broker-a", 1, "10.0.0.2:10911", w), &opts(), now);
        assert_eq!(
            out,
            RegisterOutcome::Registered {
                master_addr: Some("10.0.0.1:10911".into()),
                master_ha_addr: Some("10.0.0.1:10911-ha".into())
            }
        );
        let route = t.route("T1", &opts()).unwrap();
        assert_eq!(route.broker_datas.len(), 1);
        let addrs = &route.broker_datas[0].broker_addrs;
        assert_eq!(addrs.get(&0).map(String::as_str), Some("10.0.0.1:10911"));
        assert_eq!(addrs.get(&1).map(String::as_str), Some("10.0.0.2:10911"));
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        let info = t.cluster_info();
        assert_eq!(info.cluster_addr_table[CLUSTER].len(), 1);
        assert_eq!(t.live_count(), 2);
        assert!(t.route("nope", &opts()).is_none());
    }

    #[test]
    fn slave_of_an_old_version_broker_does_not_write_queue_data() {
        let mut t = RouteTable::new();
        let mut r = reg(
            "broker-a",
            1,
            "10.0.0.2:10911",
            wrapper(1, &[("T1", 4), ("T2", 4)]),
        );
        r.enable_acting_master = None;
        t.register(r, &opts(), Instant::now());
        assert!(t.route("T1", &opts()).is_none());
        assert_eq!(t.cluster_info().broker_addr_table.len(), 1);
    }

    #[test]
    fn slave_without_a_live_master_gets_no_master_addresses() {
        let mut t = RouteTable::new();
        let out = t.register(
            reg(
                "broker-a",
                1,
                "10.0.0.2:10911",
                wrapper(1, &[("T1", 4), ("T2", 4)]),
            ),
            &opts(),
            Instant::now(),
        );
        assert_eq!(
            out,
            RegisterOutcome::Registered {
                master_addr: None,
                master_ha_addr: None
            }
        );
    }

    #[test]
    fn queue_data_follows_data_version_changes() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let addr = "10.0.0.1:10911";
        t.register(
            reg("broker-a", 0, addr, wrapper(1, &[("T1", 4), ("T2", 4)])),
            &opts(),
            now,
        );
        // Someone edits the queue data out of band (e.g. wipe perm): an unchanged version does
        // not overwrite it…
        t.wipe_write_perm("broker-a");
        t.register(
            reg("broker-a", 0, addr, wrapper(1, &[("T1", 8), ("T2", 4)])),
            &opts(),
            now,
        );
        let q = &t.route("T1", &opts()).unwrap().queue_datas[0];
        assert_eq!((q.write_queue_nums, q.perm), (4, perm::READ));
        // …but a new version does.
        t.register(
            reg("broker-a", 0, addr, wrapper(2, &[("T1", 8), ("T2", 4)])),
            &opts(),
            now,
        );
        let q = &t.route("T1", &opts()).unwrap().queue_datas[0];
        assert_eq!((q.write_queue_nums, q.perm), (8, perm::READ | perm::WRITE));
        // A topic missing from the table is added even with an unchanged version.
        t.register(
            reg(
                "broker-a",
                0,
                addr,
                wrapper(2, &[("T1", 8), ("T2", 4), ("T3", 2)]),
            ),
            &opts(),
            now,
        );
        assert_eq!(
            t.route("T3", &opts()).unwrap().queue_datas[0].read_queue_nums,
            2
        );
        assert_eq!(t.data_version("DefaultCluster", addr).unwrap().counter, 2);
    }

    #[test]
    fn newer_state_version_keeps_its_id() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let mut w = wrapper(1, &[("T1", 4), ("T2", 4)]);
        w.data_version.state_version = 5;
        t.register(reg("broker-a", 0, "10.0.0.1:10911", w), &opts(), now);
        let mut older = wrapper(1, &[("T1", 4), ("T2", 4)]);
        older.data_version.state_version = 3;
        let out = t.register(reg("broker-a", 0, "10.0.0.9:10911", older), &opts(), now);
        assert_eq!(out, RegisterOutcome::Ignored);
        let route = t.route("T1", &opts()).unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs[&0], "10.0.0.1:10911");
        assert!(t.live_broker(CLUSTER, "10.0.0.9:10911").is_none());
        // An equal or newer state takes the id over.
        let mut newer = wrapper(1, &[("T1", 4), ("T2", 4)]);
        newer.data_version.state_version = 5;
        let out = t.register(reg("broker-a", 0, "10.0.0.9:10911", newer), &opts(), now);
        assert!(registered(&out));
        let route = t.route("T1", &opts()).unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs[&0], "10.0.0.9:10911");
    }

    #[test]
    fn single_topic_registration_needs_a_full_one_first() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let single = wrapper(1, &[("T1", 4)]);
        let out = t.register(
            reg("broker-a", 0, "10.0.0.1:10911", single.clone()),
            &opts(),
            now,
        );
        assert_eq!(out, RegisterOutcome::Rejected);
        assert!(
            t.cluster_info().broker_addr_table.is_empty(),
            "nothing left behind"
        );
        assert!(t.cluster_info().cluster_addr_table.is_empty());
        assert_eq!(t.live_count(), 0);
        t.register(
            reg(
                "broker-a",
                0,
                "10.0.0.1:10911",
                wrapper(1, &[("T0", 4), ("TBW102", 8)]),
            ),
            &opts(),
            now,
        );
        let out = t.register(reg("broker-a", 0, "10.0.0.1:10911", single), &opts(), now);
        assert!(registered(&out));
        assert!(t.route("T1", &opts()).is_some());
    }

    #[test]
    fn slave_promoted_to_master_moves_its_address() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let w = wrapper(1, &[("T1", 4), ("T2", 4)]);
        t.register(
            reg("broker-a", 1, "10.0.0.2:10911", w.clone()),
            &opts(),
            now,
        );
        t.register(reg("broker-a", 0, "10.0.0.2:10911", w), &opts(), now);
        let addrs = &t.cluster_info().broker_addr_table["broker-a"].broker_addrs;
        assert_eq!(addrs.len(), 1);
        assert_eq!(addrs[&0], "10.0.0.2:10911");
    }

    #[test]
    fn unregister_cascades_to_names_clusters_and_topics() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(
            reg("broker-a", 0, "a0", wrapper(1, &[("T1", 4), ("Ta", 4)])),
            &opts(),
            now,
        );
        t.register(
            reg("broker-a", 1, "a1", wrapper(1, &[("T1", 4), ("Ta", 4)])),
            &opts(),
            now,
        );
        t.register(
            reg("broker-b", 0, "b0", wrapper(1, &[("T1", 4), ("Tb", 4)])),
            &opts(),
            now,
        );

        // Removing the slave leaves everything but its address.
        assert!(t.unregister(CLUSTER, "a1", "broker-a").is_some());
        assert_eq!(
            t.route("Ta", &opts()).unwrap().broker_datas[0]
                .broker_addrs
                .len(),
            1
        );
        // Removing the master removes broker-a from topics; Ta disappears, T1 stays on b.
        t.unregister(CLUSTER, "a0", "broker-a");
        assert!(t.route("Ta", &opts()).is_none());
        let t1 = t.route("T1", &opts()).unwrap();
        assert_eq!(t1.queue_datas.len(), 1);
        assert_eq!(t1.queue_datas[0].broker_name, "broker-b");
        assert_eq!(t.cluster_info().cluster_addr_table[CLUSTER].len(), 1);
        // The last broker takes the cluster with it.
        t.unregister(CLUSTER, "b0", "broker-b");
        assert!(t.cluster_info().cluster_addr_table.is_empty());
        assert!(t.all_topics().topic_list.is_empty());
        assert_eq!(t.live_count(), 0);
    }

    #[test]
    fn write_perm_wipe_and_add_count_topics() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(
            reg(
                "broker-a",
                0,
                "a0",
                wrapper(1, &[("T1", 4), ("T2", 4), ("T3", 4)]),
            ),
            &opts(),
            now,
        );
        t.register(
            reg("broker-b", 0, "b0", wrapper(1, &[("T1", 4), ("T4", 4)])),
            &opts(),
            now,
        );
        assert_eq!(t.wipe_write_perm("broker-a"), 3);
        assert_eq!(t.wipe_write_perm("nobody"), 0);
        let t1 = t.route("T1", &opts()).unwrap();
        let perm_of = |name: &str| {
            t1.queue_datas
                .iter()
                .find(|q| q.broker_name == name)
                .unwrap()
                .perm
        };
        assert_eq!(perm_of("broker-a"), perm::READ);
        assert_eq!(perm_of("broker-b"), perm::READ | perm::WRITE);
        assert_eq!(t.add_write_perm("broker-a"), 3);
        assert_eq!(
            t.route("T2", &opts()).unwrap().queue_datas[0].perm,
            perm::READ | perm::WRITE
        );
    }

    #[test]
    fn topics_by_cluster_and_delete_by_cluster() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(
            reg("broker-a", 0, "a0", wrapper(1, &[("T1", 4), ("Ta", 4)])),
            &opts(),
            now,
        );
        let mut other = reg("broker-x", 0, "x0", wrapper(1, &[("T1", 4), ("Tx", 4)]));
        other.cluster = "Other".into();
        t.register(other, &opts(), now);

        let list = |l: TopicList| l.topic_list.into_iter().collect::<Vec<_>>();
        assert_eq!(list(t.topics_by_cluster(CLUSTER)), vec!["T1", "Ta"]);
        assert_eq!(list(t.topics_by_cluster("Other")), vec!["T1", "Tx"]);
        assert!(t.topics_by_cluster("Nope").topic_list.is_empty());

        assert_eq!(t.delete_topic_in_cluster("T1", "Other"), 1);
        let t1 = t.route("T1", &opts()).unwrap();
        assert_eq!(t1.queue_datas.len(), 1);
        assert_eq!(t1.queue_datas[0].broker_name, "broker-a");
        assert_eq!(t.delete_topic_in_cluster("T1", CLUSTER), 1);
        assert!(
            t.route("T1", &opts()).is_none(),
            "no queues left: topic gone"
        );
        assert_eq!(t.delete_topic_in_cluster("Ta", "Nope"), 0);
        assert!(t.delete_topic("Ta"));
        assert!(!t.delete_topic("Ta"));
        assert_eq!(list(t.all_topics()), vec!["Tx"]);
    }

    #[test]
    fn expiry_removes_silent_brokers_only() {
        let mut t = RouteTable::new();
        let start = Instant::now();
        let mut short = reg("broker-a", 0, "a0", wrapper(1, &[("T1", 4), ("Ta", 4)]));
        short.heartbeat_timeout = Some(Duration::from_millis(500));
        t.register(short, &opts(), start);
        t.register(
            reg("broker-b", 0, "b0", wrapper(1, &[("T1", 4), ("Tb", 4)])),
            &opts(),
            start,
        );

        assert!(t.expire(start + Duration::from_millis(400)).is_empty());
        // A heartbeat pushes the deadline out.
        assert!(t.touch(CLUSTER, "a0", start + Duration::from_millis(400)));
        assert!(t.expire(start + Duration::from_millis(800)).is_empty());
        let gone = t.expire(start + Duration::from_millis(1000));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, BrokerKey::new(CLUSTER, "a0"));
        assert!(t.route("Ta", &opts()).is_none());
        assert!(t.route("Tb", &opts()).is_some());
        // The default timeout (120 s) applies to broker-b.
        assert!(t.expire(start + Duration::from_secs(119)).is_empty());
        assert_eq!(t.expire(start + Duration::from_secs(121)).len(), 1);
        assert!(!t.touch(CLUSTER, "b0", start), "unknown after expiry");
    }

    #[test]
    fn closing_a_connection_removes_all_its_brokers() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let mut a = reg("broker-a", 0, "a0", wrapper(1, &[("T1", 4), ("Ta", 4)]));
        a.connection_id = Some(7);
        let mut b = reg("broker-b", 0, "b0", wrapper(1, &[("T1", 4), ("Tb", 4)]));
        b.connection_id = Some(7);
        let mut c = reg("broker-c", 0, "c0", wrapper(1, &[("T1", 4), ("Tc", 4)]));
        c.connection_id = Some(8);
        t.register(a.clone(), &opts(), now);
        t.register(b, &opts(), now);
        t.register(c, &opts(), now);
        // broker-a re-registers over a new connection: the old one's close must not remove it.
        a.connection_id = Some(9);
        t.register(a, &opts(), now);
        let removed = t.remove_connection(7);
        assert_eq!(removed, vec![BrokerKey::new(CLUSTER, "b0")]);
        assert_eq!(t.route("T1", &opts()).unwrap().queue_datas.len(), 2);
        assert_eq!(t.remove_connection(9).len(), 1);
        assert_eq!(t.remove_connection(8).len(), 1);
        assert!(t.cluster_info().broker_addr_table.is_empty());
    }

    #[test]
    fn delete_topic_with_broker_registration_drops_missing_topics() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let options = RouteOptions {
            delete_topic_with_broker_registration: true,
            ..opts()
        };
        t.register(
            reg("broker-a", 0, "a0", wrapper(1, &[("T1", 4), ("T2", 4)])),
            &options,
            now,
        );
        t.register(
            reg("broker-a", 0, "a0", wrapper(2, &[("T1", 4), ("T3", 4)])),
            &options,
            now,
        );
        assert!(t.route("T2", &options).is_none());
        assert!(t.route("T3", &options).is_some());
    }

    #[test]
    fn acting_master_slave_serves_read_only_and_is_shown_as_master() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        let options = RouteOptions {
            support_acting_master: true,
            ..opts()
        };
        let w = wrapper(1, &[("T1", 4), ("T2", 4)]);
        let mut master = reg("broker-a", 0, "a0", w.clone());
        master.enable_acting_master = Some(true);
        let mut slave = reg("broker-a", 1, "a1", w);
        slave.enable_acting_master = Some(true);
        t.register(master, &options, now);
        t.register(slave.clone(), &options, now);
        t.unregister(CLUSTER, "a0", "broker-a");
        let route = t.route("T1", &options).unwrap();
        assert_eq!(
            route.queue_datas[0].perm,
            perm::READ,
            "master gone: read-only"
        );
        assert_eq!(
            route.broker_datas[0]
                .broker_addrs
                .get(&0)
                .map(String::as_str),
            Some("a1")
        );
        // Without the option the route shows the real ids.
        let plain = t.route("T1", &opts()).unwrap();
        assert_eq!(
            plain.broker_datas[0]
                .broker_addrs
                .get(&1)
                .map(String::as_str),
            Some("a1")
        );
        // A prime slave re-registering keeps its queues read-only.
        slave.topics.data_version.counter = 2;
        t.register(slave, &options, now);
        assert_eq!(
            t.route("T1", &options).unwrap().queue_datas[0].perm,
            perm::READ
        );
    }

    #[test]
    fn register_topic_merges_known_brokers_only() {
        let mut t = RouteTable::new();
        t.register(
            reg("broker-a", 0, "a0", wrapper(1, &[("T1", 4), ("T2", 4)])),
            &opts(),
            Instant::now(),
        );
        let q = |name: &str, n: i32| QueueData {
            broker_name: name.into(),
            perm: 6,
            read_queue_nums: n,
            topic_sys_flag: 0,
            write_queue_nums: n,
        };
        assert!(!t.register_topic("New", &[q("broker-a", 2), q("ghost", 2)]));
        assert!(t.route("New", &opts()).is_none());
        assert!(t.register_topic("New", &[q("broker-a", 2)]));
        assert_eq!(
            t.route("New", &opts()).unwrap().queue_datas[0].read_queue_nums,
            2
        );
        assert!(!t.register_topic("New", &[]));
    }

    #[test]
    fn system_and_unit_topic_lists() {
        let mut t = RouteTable::new();
        let mut w = wrapper(1, &[("T1", 4), ("U", 4), ("US", 4), ("UUS", 4)]);
        w.topic_config_table.get_mut("U").unwrap().topic_sys_flag = topic_sys_flag::UNIT;
        w.topic_config_table.get_mut("US").unwrap().topic_sys_flag = topic_sys_flag::UNIT_SUB;
        w.topic_config_table.get_mut("UUS").unwrap().topic_sys_flag =
            topic_sys_flag::UNIT | topic_sys_flag::UNIT_SUB;
        t.register(reg("broker-a", 0, "a0", w), &opts(), Instant::now());
        let list = |l: TopicList| l.topic_list.into_iter().collect::<Vec<_>>();
        assert_eq!(list(t.unit_topics()), vec!["U", "UUS"]);
        assert_eq!(list(t.has_unit_sub_topics()), vec!["US", "UUS"]);
        assert_eq!(list(t.has_unit_sub_ununit_topics()), vec!["US"]);
        let sys = t.system_topics();
        assert_eq!(sys.broker_addr.as_deref(), Some("a0"));
        assert_eq!(list(sys), vec!["DefaultCluster", "broker-a"]);
        let group = t.broker_member_group(CLUSTER, "broker-a");
        assert_eq!(group.broker_addrs[&0], "a0");
        assert!(t
            .broker_member_group(CLUSTER, "nope")
            .broker_addrs
            .is_empty());
    }
}
