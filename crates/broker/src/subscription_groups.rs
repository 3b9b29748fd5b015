//! Consumer groups' broker-side configuration (retry queues, max retries, orderly flag),
//! persisted in `config/subscriptionGroup.json` in RocketMQ's shape. Groups are auto-created on
//! first heartbeat or pull when `autoCreateSubscriptionGroup` is on, as RocketMQ does.

use std::sync::RwLock;

use ferrymq_protocol::body::SubscriptionGroupConfig;
pub use ferrymq_protocol::body::SubscriptionGroupWrapper;

/// The groups this broker knows.
pub struct SubscriptionGroups {
    inner: RwLock<SubscriptionGroupWrapper>,
    auto_create: bool,
}

impl SubscriptionGroups {
    pub fn new(persisted: Option<SubscriptionGroupWrapper>, auto_create: bool) -> Self {
        let mut w = persisted.unwrap_or_default();
        for g in ferrymq_protocol::naming::SYSTEM_GROUPS {
            w.subscription_group_table
                .entry((*g).to_owned())
                .or_insert_with(|| SubscriptionGroupConfig::new(*g));
        }
        SubscriptionGroups {
            inner: RwLock::new(w),
            auto_create,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SubscriptionGroupWrapper> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SubscriptionGroupWrapper> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.read().subscription_group_table.get(group).cloned()
    }

    /// The group's config, creating it with defaults when auto-creation is on. The flag says
    /// whether it was created now (and so needs persisting).
    pub fn find_or_create(&self, group: &str) -> Option<(SubscriptionGroupConfig, bool)> {
        if let Some(g) = self.get(group) {
            return Some((g, false));
        }
        if !self.auto_create {
            return None;
        }
        let mut w = self.write();
        if let Some(g) = w.subscription_group_table.get(group) {
            return Some((g.clone(), false));
        }
        let g = SubscriptionGroupConfig::new(group);
        w.subscription_group_table
            .insert(group.to_owned(), g.clone());
        w.data_version.next_version();
        Some((g, true))
    }

    pub fn upsert(&self, config: SubscriptionGroupConfig) {
        let mut w = self.write();
        w.subscription_group_table
            .insert(config.group_name.clone(), config);
        w.data_version.next_version();
    }

    pub fn remove(&self, group: &str) -> bool {
        let mut w = self.write();
        let existed = w.subscription_group_table.remove(group).is_some();
        if existed {
            w.data_version.next_version();
        }
        existed
    }

    pub fn names(&self) -> Vec<String> {
        self.read()
            .subscription_group_table
            .keys()
            .cloned()
            .collect()
    }

    /// Slave: takes the master's groups (GET_ALL_SUBSCRIPTIONGROUP_CONFIG) when its data
    /// version differs; true if anything changed.
    pub fn merge_from_master(&self, master: SubscriptionGroupWrapper) -> bool {
        let mut w = self.write();
        if w.data_version == master.data_version {
            return false;
        }
        w.subscription_group_table
            .extend(master.subscription_group_table);
        w.forbidden_table = master.forbidden_table;
        w.data_version = master.data_version;
        true
    }

    pub fn snapshot(&self) -> SubscriptionGroupWrapper {
        self.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_create_follows_the_switch() {
        let on = SubscriptionGroups::new(None, true);
        assert!(on.find_or_create("g1").unwrap().1);
        assert!(!on.find_or_create("g1").unwrap().1);
        let off = SubscriptionGroups::new(None, false);
        assert!(off.find_or_create("g1").is_none());
        assert!(off.get("TOOLS_CONSUMER").is_some());
    }
}
