//! Consumer-group policy the proxy must apply on behalf of gRPC consumers: whether the group
//! consumes in order (`consumeMessageOrderly` → orderly POP, per-queue assignments, `fifo` in
//! the Settings answer) and after how many attempts a message is dead-lettered
//! (`retryMaxTimes + 1`). Read from the group's config on a master broker and cached briefly;
//! a group the broker does not know yet (it is created on first use) gets RocketMQ's defaults.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferrymq_protocol::body::{from_java_json, SubscriptionGroupConfig, TopicRouteData};
use ferrymq_protocol::header::GroupHeader;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use parking_lot::Mutex;
use tracing::debug;

use crate::service::Context;

/// How long a group's policy is reused before it is read again.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// What the proxy needs to know about a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupPolicy {
    pub fifo: bool,
    pub max_attempts: i32,
}

impl Default for GroupPolicy {
    /// RocketMQ's defaults: concurrent consumption, `retryMaxTimes` 16.
    fn default() -> Self {
        GroupPolicy {
            fifo: false,
            max_attempts: 17,
        }
    }
}

impl GroupPolicy {
    fn from_config(c: &SubscriptionGroupConfig) -> GroupPolicy {
        GroupPolicy {
            fifo: c.consume_message_orderly,
            max_attempts: c.retry_max_times.max(0).saturating_add(1),
        }
    }
}

/// Cached policies by group name.
#[derive(Default)]
pub(crate) struct Groups {
    table: Mutex<HashMap<String, (GroupPolicy, Instant)>>,
}

impl Groups {
    fn cached(&self, group: &str) -> Option<GroupPolicy> {
        self.table
            .lock()
            .get(group)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(p, _)| *p)
    }

    fn store(&self, group: &str, policy: GroupPolicy) {
        let mut t = self.table.lock();
        if t.len() > 10_000 {
            t.retain(|_, (_, at)| at.elapsed() < CACHE_FOR);
        }
        t.insert(group.to_owned(), (policy, Instant::now()));
    }
}

/// The master address of the first broker of a route that has one.
pub(crate) fn any_master(route: &TopicRouteData) -> Option<String> {
    route
        .broker_datas
        .iter()
        .find_map(|bd| bd.broker_addrs.get(&0).cloned())
}

/// The policy of `group`, asking the broker at `addr` when not cached. Failures fall back to
/// the defaults (and are not cached, so the next call asks again).
pub(crate) async fn policy(ctx: &Context, group: &str, addr: &str) -> GroupPolicy {
    if let Some(p) = ctx.groups.cached(group) {
        return p;
    }
    let req = RemotingCommand::request_with_header(
        RequestCode::GetSubscriptiongroupConfig,
        &GroupHeader {
            group: group.to_owned(),
        },
    );
    match ctx.instance.invoke(addr, req, ctx.request_timeout).await {
        Ok(resp) if resp.response_code() == ResponseCode::Success => {
            let text = String::from_utf8_lossy(&resp.body.to_bytes()).into_owned();
            match from_java_json::<SubscriptionGroupConfig>(&text) {
                Ok(config) => {
                    let p = GroupPolicy::from_config(&config);
                    ctx.groups.store(group, p);
                    p
                }
                Err(e) => {
                    debug!(%group, error = %e, "unreadable group config");
                    GroupPolicy::default()
                }
            }
        }
        Ok(_) => {
            // Not created yet: the broker creates it with the defaults on first use.
            let p = GroupPolicy::default();
            ctx.groups.store(group, p);
            p
        }
        Err(e) => {
            debug!(%group, error = %e, "group config not readable");
            GroupPolicy::default()
        }
    }
}

/// The policy of `group`, found through the route of one of its topics.
pub(crate) async fn policy_by_topic(ctx: &Context, group: &str, topic: &str) -> GroupPolicy {
    if let Some(p) = ctx.groups.cached(group) {
        return p;
    }
    let addr = match ctx.instance.route(topic).await {
        Ok(route) => any_master(&route),
        Err(_) => None,
    };
    match addr {
        Some(addr) => policy(ctx, group, &addr).await,
        None => GroupPolicy::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_follows_group_config() {
        let mut c = SubscriptionGroupConfig::new("g");
        assert_eq!(GroupPolicy::from_config(&c), GroupPolicy::default());
        c.consume_message_orderly = true;
        c.retry_max_times = 3;
        assert_eq!(
            GroupPolicy::from_config(&c),
            GroupPolicy {
                fifo: true,
                max_attempts: 4
            }
        );
    }

    #[test]
    fn cache_expires() {
        let g = Groups::default();
        assert_eq!(g.cached("g"), None);
        g.store("g", GroupPolicy::default());
        assert_eq!(g.cached("g"), Some(GroupPolicy::default()));
    }
}
