//! Consumers: the push consumer ([`PushConsumer`]), which pulls in the background and hands
//! messages to a listener, and the lite pull consumer ([`LitePullConsumer`]), which the
//! application polls. This module holds what both share: subscription expressions, where a new
//! group starts, listener results, and the broker requests of consumption.

/// Adds the group-level setters both consumer builders share to a builder whose `settings`
/// have `message_model`, `consume_from` and `allocate_strategy` fields.
macro_rules! consumer_group_setters {
    () => {
        /// Clustering (default) or broadcasting.
        pub fn message_model(mut self, model: MessageModel) -> Self {
            self.settings.message_model = model;
            self
        }

        /// Where a new group starts (default: last offset).
        pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
            self.settings.consume_from = from;
            self
        }

        /// How a clustering group divides queues (default AVG).
        pub fn allocate_strategy(mut self, strategy: AllocateStrategy) -> Self {
            self.settings.allocate_strategy = strategy;
            self
        }
    };
}

pub mod lite;
mod offset_store;
mod process_queue;
pub mod pull;
pub mod push;
pub(crate) mod requests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymq_protocol::body::{ConsumeFromWhere, MessageQueue, SubscriptionData};
use ferrymq_protocol::message::SubscriptionTags;

use ferrymq_protocol::naming;

use crate::error::Result;
use crate::instance::{BoxFuture, ClientInstance};
use crate::message::{now_ms, MessageExt};
use crate::rebalance::AllocateStrategy;
use offset_store::OffsetStore;

pub use ferrymq_protocol::body::MessageModel;
pub use lite::{LitePullConsumer, LitePullConsumerBuilder, LitePullSettings};
pub use pull::{PullResult, PullStatus};
pub use push::{PushConsumer, PushConsumerBuilder, PushConsumerSettings};

/// Which messages of a topic a subscription selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expression {
    /// Every message (`*`).
    All,
    /// Messages whose tag is one of these (`"TagA || TagB"`).
    Tags(String),
    /// Messages whose properties match a SQL92 expression (the broker must enable property
    /// filtering).
    Sql92(String),
}

impl Expression {
    /// A tag expression: `"*"` (or empty) selects everything, else `"TagA || TagB"`.
    pub fn tags(expression: impl Into<String>) -> Expression {
        let expression = expression.into();
        let trimmed = expression.trim();
        if trimmed.is_empty() || trimmed == "*" {
            Expression::All
        } else {
            Expression::Tags(expression)
        }
    }

    /// A SQL92 property filter, e.g. `"a BETWEEN 0 AND 3"`.
    pub fn sql92(expression: impl Into<String>) -> Expression {
        Expression::Sql92(expression.into())
    }

    /// The expression text as sent to the broker.
    pub fn as_str(&self) -> &str {
        match self {
            Expression::All => "*",
            Expression::Tags(s) | Expression::Sql92(s) => s,
        }
    }

    /// `TAG` or `SQL92`.
    pub fn expression_type(&self) -> &'static str {
        match self {
            Expression::Sql92(_) => "SQL92",
            _ => "TAG",
        }
    }

    /// The heartbeat form, versioned now.
    pub(crate) fn subscription_data(&self, topic: &str) -> SubscriptionData {
        let mut data = SubscriptionData {
            topic: topic.to_owned(),
            sub_string: self.as_str().trim().to_owned(),
            sub_version: now_ms(),
            expression_type: self.expression_type().to_owned(),
            ..SubscriptionData::default()
        };
        if let Expression::Tags(expr) = self {
            let tags = SubscriptionTags::parse(expr);
            let mut pairs: Vec<(String, i32)> = tags
                .tags
                .iter()
                .map(|t| (t.clone(), ferrymq_protocol::message::java_string_hash(t)))
                .collect();
            pairs.sort();
            data.tags_set = pairs.iter().map(|(t, _)| t.clone()).collect();
            data.code_set = pairs.iter().map(|(_, c)| *c).collect();
        }
        data
    }
}

impl From<&str> for Expression {
    /// A tag expression (see [`Expression::tags`]).
    fn from(s: &str) -> Expression {
        Expression::tags(s)
    }
}

impl From<String> for Expression {
    /// A tag expression (see [`Expression::tags`]).
    fn from(s: String) -> Expression {
        Expression::tags(s)
    }
}

/// Keeps the messages a subscription's tags select (the broker filters by tag hash, which can
/// collide; this re-checks the exact tag, as Java does).
pub(crate) fn filter_by_tags(sub: &SubscriptionData, msgs: &mut Vec<MessageExt>) {
    if sub.expression_type != "TAG" || sub.tags_set.is_empty() {
        return;
    }
    msgs.retain(|m| {
        m.tags()
            .is_some_and(|t| sub.tags_set.iter().any(|s| s == t))
    });
}

/// Where a group without a committed offset starts reading a queue (behaviour.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFrom {
    /// At the end: only messages sent from now on (the default). Note the broker's rule that a
    /// young queue whose first message is still in memory starts at 0 anyway.
    #[default]
    LastOffset,
    /// At the beginning of every queue.
    FirstOffset,
    /// At the first message stored at or after this time.
    Timestamp(SystemTime),
}

impl ConsumeFrom {
    pub(crate) fn wire(self) -> ConsumeFromWhere {
        match self {
            ConsumeFrom::LastOffset => ConsumeFromWhere::LastOffset,
            ConsumeFrom::FirstOffset => ConsumeFromWhere::FirstOffset,
            ConsumeFrom::Timestamp(_) => ConsumeFromWhere::Timestamp,
        }
    }

    pub(crate) fn timestamp_ms(self) -> i64 {
        match self {
            ConsumeFrom::Timestamp(t) => t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            _ => now_ms() - 30 * 60 * 1000,
        }
    }
}

/// What a listener reports for a batch of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeResult {
    /// Consumed; the offset may advance past these messages.
    Success,
    /// Not consumed. Concurrent consumers send the messages back to be redelivered after a
    /// delay (through the group's retry topic); orderly consumers suspend the queue and retry
    /// the same messages locally.
    ReconsumeLater,
}

/// Per-batch information and knobs for a listener.
#[derive(Debug, Clone)]
pub struct ConsumeContext {
    /// Shared with the queue's state: a context is made for every listener call.
    queue: Arc<MessageQueue>,
    delay_level: i32,
    suspend: Duration,
}

impl ConsumeContext {
    pub(crate) fn new(queue: Arc<MessageQueue>, suspend: Duration) -> ConsumeContext {
        ConsumeContext {
            queue,
            delay_level: 0,
            suspend,
        }
    }

    /// The queue the messages came from.
    pub fn queue(&self) -> &MessageQueue {
        &self.queue
    }

    /// Concurrent consumers: the delay level of the redelivery after
    /// [`ConsumeResult::ReconsumeLater`] (0, the default, lets the broker pick 3 + retries;
    /// −1 sends straight to the dead-letter queue).
    pub fn set_delay_level(&mut self, level: i32) {
        self.delay_level = level;
    }

    /// The delay level that will be used.
    pub fn delay_level(&self) -> i32 {
        self.delay_level
    }

    /// Orderly consumers: how long the queue pauses after [`ConsumeResult::ReconsumeLater`]
    /// (default 1 s).
    pub fn set_suspend(&mut self, pause: Duration) {
        self.suspend = pause;
    }

    /// The pause that will be used.
    pub fn suspend(&self) -> Duration {
        self.suspend
    }
}

/// Consumes messages for a push consumer. Closures `Fn(&[MessageExt]) -> ConsumeResult`
/// implement it; implement it yourself for async work or to use the [`ConsumeContext`].
///
/// A listener runs on the Tokio runtime: it should not block (use `spawn_blocking` inside for
/// blocking work). A panic counts as [`ConsumeResult::ReconsumeLater`].
pub trait MessageListener: Send + Sync + 'static {
    /// Consumes a batch (by default one message). Orderly consumers get the messages of one
    /// queue in queue order, one batch at a time.
    fn consume(
        &self,
        messages: &[MessageExt],
        context: &mut ConsumeContext,
    ) -> impl Future<Output = ConsumeResult> + Send;
}

impl<F> MessageListener for F
where
    F: Fn(&[MessageExt]) -> ConsumeResult + Send + Sync + 'static,
{
    fn consume(
        &self,
        messages: &[MessageExt],
        _context: &mut ConsumeContext,
    ) -> impl Future<Output = ConsumeResult> + Send {
        std::future::ready(self(messages))
    }
}

/// Object-safe form of [`MessageListener`].
pub(crate) trait ErasedListener: Send + Sync + 'static {
    fn consume<'a>(
        &'a self,
        messages: &'a [MessageExt],
        context: &'a mut ConsumeContext,
    ) -> BoxFuture<'a, ConsumeResult>;
}

pub(crate) struct Listener<L>(pub L);

impl<L: MessageListener> ErasedListener for Listener<L> {
    fn consume<'a>(
        &'a self,
        messages: &'a [MessageExt],
        context: &'a mut ConsumeContext,
    ) -> BoxFuture<'a, ConsumeResult> {
        Box::pin(self.0.consume(messages, context))
    }
}

/// The queues of `topic` this client should own: all of them when broadcasting, its share by
/// `strategy` when clustering. `None` when that cannot be decided yet (no route, or no broker
/// knows the group's members).
pub(crate) async fn allocate(
    instance: &ClientInstance,
    group: &str,
    model: MessageModel,
    strategy: &AllocateStrategy,
    topic: &str,
) -> Option<Vec<MessageQueue>> {
    let all = match instance.subscribe_queues(topic).await {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(%topic, error = %e, "no route to rebalance");
            return None;
        }
    };
    if model == MessageModel::Broadcasting {
        return Some(all);
    }
    match requests::consumer_ids(instance, group, topic).await {
        Ok(Some(ids)) => Some(strategy.allocate(instance.client_id(), &all, &ids)),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(%topic, error = %e, "no consumer list");
            None
        }
    }
}

/// Where to start a newly assigned queue (behaviour.md §4.3): the stored offset, else the
/// `from` policy (retry topics start at 0, or at their end for timestamps).
pub(crate) async fn start_offset(
    instance: &ClientInstance,
    offsets: &OffsetStore,
    from: ConsumeFrom,
    mq: &MessageQueue,
) -> Result<i64> {
    if let Some(o) = offsets.read_store(instance, mq).await? {
        if o >= 0 {
            return Ok(o);
        }
    }
    let retry = naming::is_retry_topic(&mq.topic);
    match from {
        ConsumeFrom::LastOffset if retry => Ok(0),
        ConsumeFrom::LastOffset => requests::max_offset(instance, mq).await,
        ConsumeFrom::FirstOffset => Ok(0),
        ConsumeFrom::Timestamp(_) if retry => requests::max_offset(instance, mq).await,
        ConsumeFrom::Timestamp(_) => {
            requests::search_offset(instance, mq, from.timestamp_ms()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        assert_eq!(Expression::tags(" * "), Expression::All);
        assert_eq!(Expression::from(""), Expression::All);
        let e = Expression::tags("TagB || TagA");
        let d = e.subscription_data("T");
        assert_eq!(d.tags_set, ["TagA", "TagB"]);
        assert_eq!(d.code_set, [2598919, 2598920]);
        assert_eq!(d.expression_type, "TAG");
        let s = Expression::sql92("a > 1").subscription_data("T");
        assert_eq!(s.expression_type, "SQL92");
        assert!(s.tags_set.is_empty());
        assert_eq!(Expression::All.subscription_data("T").sub_string, "*");
    }
}
