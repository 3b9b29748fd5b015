//! Transactional messages (behaviour.md §6): a half message the broker keeps invisible until the
//! producer commits or rolls it back.
//!
//! ```no_run
//! # async fn demo() -> ferrymq_client::Result<()> {
//! use ferrymq_client::{Message, TransactionProducer, TransactionState};
//! let producer = TransactionProducer::builder("tx-group")
//!     .namesrv_addr("127.0.0.1:9876")
//!     // Asked by the broker about transactions left open (e.g. after a crash).
//!     .checker(|msg: &ferrymq_client::MessageExt| TransactionState::Commit)
//!     .start()
//!     .await?;
//! let half = producer.send_half(Message::new("Orders", "order 1")).await?;
//! // … run the local transaction, possibly awaiting a database …
//! half.commit().await?;
//! # Ok(()) }
//! ```
//!
//! The half message carries `TRAN_MSG=true` and `PGROUP=<group>` and is flagged PREPARED; the
//! verdict goes to the broker that stored it as a one-way END_TRANSACTION naming the half
//! message's commit-log offset (from its offset id) and its half-queue offset. Transactions left
//! open are checked back by the broker (CHECK_TRANSACTION_STATE) and answered from the checker.

use std::future::Future;
use std::sync::Arc;

use ferrymq_protocol::header::EndTransactionRequestHeader;
use ferrymq_protocol::message::{keys, sys_flag, OffsetMsgId};
use ferrymq_protocol::{RemotingCommand, RequestCode};

use crate::config::{client_option_setters, ClientOptions};
use crate::error::{ClientError, Result};
use crate::instance::{BoxFuture, ClientInstance, TransactionCheck};
use crate::message::{Message, MessageExt};
use crate::producer::{Producer, ProducerSettings, SendResult, SendStatus};

/// The outcome of a local transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// Make the message visible to consumers.
    Commit,
    /// Discard the message.
    Rollback,
    /// Undecided: the broker will ask again later.
    Unknown,
}

impl TransactionState {
    /// The `commitOrRollback` value of END_TRANSACTION.
    pub(crate) fn wire_value(self) -> i32 {
        match self {
            TransactionState::Commit => sys_flag::TRANSACTION_COMMIT_TYPE,
            TransactionState::Rollback => sys_flag::TRANSACTION_ROLLBACK_TYPE,
            TransactionState::Unknown => sys_flag::TRANSACTION_NOT_TYPE,
        }
    }
    /// Java's `LocalTransactionState` name, as EndTransaction trace records carry it.
    pub(crate) fn trace_name(self) -> &'static str {
        match self {
            TransactionState::Commit => "COMMIT_MESSAGE",
            TransactionState::Rollback => "ROLLBACK_MESSAGE",
            TransactionState::Unknown => "UNKNOW",
        }
    }
}

/// Answers the broker's check of a transaction left open. Closures
/// `Fn(&MessageExt) -> TransactionState` implement it.
pub trait TransactionChecker: Send + Sync + 'static {
    /// The state of the local transaction of `msg` (a half message; its `UNIQ_KEY` /
    /// [`MessageExt::msg_id`] is the transaction id).
    fn check(&self, msg: &MessageExt) -> impl Future<Output = TransactionState> + Send;
}

impl<F> TransactionChecker for F
where
    F: Fn(&MessageExt) -> TransactionState + Send + Sync + 'static,
{
    fn check(&self, msg: &MessageExt) -> impl Future<Output = TransactionState> + Send {
        std::future::ready(self(msg))
    }
}

struct Checker<C>(C);

impl<C: TransactionChecker> TransactionCheck for Checker<C> {
    fn check<'a>(&'a self, msg: &'a MessageExt) -> BoxFuture<'a, TransactionState> {
        Box::pin(self.0.check(msg))
    }
}

/// Builds and starts a [`TransactionProducer`].
pub struct TransactionProducerBuilder {
    group: String,
    options: ClientOptions,
    instance: Option<ClientInstance>,
    settings: ProducerSettings,
    checker: Option<Arc<dyn TransactionCheck>>,
    trace_topic: Option<String>,
}

impl std::fmt::Debug for TransactionProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionProducerBuilder")
            .field("group", &self.group)
            .field("has_checker", &self.checker.is_some())
            .finish()
    }
}

impl TransactionProducerBuilder {
    client_option_setters!();

    /// Producer tunables (send timeout, retries…).
    pub fn settings(mut self, settings: ProducerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// How to answer the broker's checks of open transactions (without one, checks are
    /// ignored and the broker keeps asking until it gives up).
    pub fn checker(mut self, checker: impl TransactionChecker) -> Self {
        self.checker = Some(Arc::new(Checker(checker)));
        self
    }

    /// Traces sends and verdicts (Pub, EndTransaction) to the trace topic
    /// (RocketMQ's `enableMsgTrace`; `trace_topic` picks another topic).
    pub fn enable_msg_trace(mut self, on: bool) -> Self {
        self.trace_topic = on.then(|| {
            self.trace_topic
                .take()
                .unwrap_or_else(|| ferrymq_protocol::naming::TRACE_TOPIC.to_owned())
        });
        self
    }

    /// Traces to `topic` instead of `RMQ_SYS_TRACE_TOPIC` (turns tracing on).
    pub fn trace_topic(mut self, topic: impl Into<String>) -> Self {
        self.trace_topic = Some(topic.into());
        self
    }

    /// Starts the producer.
    pub async fn start(self) -> Result<TransactionProducer> {
        let mut builder = Producer::builder(self.group).settings(self.settings);
        if let Some(topic) = self.trace_topic {
            builder = builder.trace_topic(topic);
        }
        let builder = match self.instance {
            Some(i) => builder.instance(i),
            None => builder.options(self.options),
        };
        let producer = builder.start_with_checker(self.checker).await?;
        Ok(TransactionProducer { producer })
    }
}

/// A producer of transactional messages (it can send ordinary ones too, via
/// [`TransactionProducer::producer`]).
#[derive(Debug, Clone)]
pub struct TransactionProducer {
    producer: Producer,
}

/// The outcome of [`TransactionProducer::send_in_transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// The half message's send result.
    pub send_result: SendResult,
    /// What was sent to the broker.
    pub state: TransactionState,
}

/// A stored half message awaiting the verdict of its local transaction.
#[derive(Debug, Clone)]
pub struct HalfMessage {
    producer: Producer,
    topic: String,
    result: SendResult,
}

impl HalfMessage {
    /// How the half message was stored; `result().msg_id` is the transaction id.
    pub fn result(&self) -> &SendResult {
        &self.result
    }

    /// Makes the message visible to consumers.
    pub async fn commit(&self) -> Result<()> {
        self.end(TransactionState::Commit).await
    }

    /// Discards the message.
    pub async fn rollback(&self) -> Result<()> {
        self.end(TransactionState::Rollback).await
    }

    /// Sends the verdict (one-way END_TRANSACTION to the broker holding the half message).
    pub async fn end(&self, state: TransactionState) -> Result<()> {
        end_transaction(&self.producer, &self.topic, &self.result, state).await
    }
}

impl TransactionProducer {
    /// A builder for a transactional producer of `group`.
    pub fn builder(group: impl Into<String>) -> TransactionProducerBuilder {
        TransactionProducerBuilder {
            group: group.into(),
            options: ClientOptions::default(),
            instance: None,
            settings: ProducerSettings::default(),
            checker: None,
            trace_topic: None,
        }
    }

    /// The underlying producer (ordinary sends, group, instance).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Sends a half message. Commit or roll it back with the returned handle.
    pub async fn send_half(&self, mut msg: Message) -> Result<HalfMessage> {
        // A half message never takes the delay path.
        msg.remove_property(keys::DELAY_TIME_LEVEL);
        msg.set_property(keys::TRANSACTION_PREPARED, "true");
        msg.set_property(keys::PRODUCER_GROUP, self.producer.group());
        let topic = msg.topic().to_owned();
        let result = self.producer.send(msg).await?;
        Ok(HalfMessage {
            producer: self.producer.clone(),
            topic,
            result,
        })
    }

    /// Sends a half message, runs `local` (the local transaction) if it was stored and sends
    /// its verdict. A half message stored without the requested durability is rolled back
    /// without running `local`.
    pub async fn send_in_transaction<F>(
        &self,
        msg: Message,
        local: F,
    ) -> Result<TransactionSendResult>
    where
        F: FnOnce(&SendResult) -> TransactionState,
    {
        let half = self.send_half(msg).await?;
        let state = if half.result.status == SendStatus::SendOk {
            local(&half.result)
        } else {
            TransactionState::Rollback
        };
        half.end(state).await?;
        Ok(TransactionSendResult {
            send_result: half.result,
            state,
        })
    }

    /// Unregisters and stops (see [`Producer::shutdown`]).
    pub async fn shutdown(&self) {
        self.producer.shutdown().await
    }
}

async fn end_transaction(
    producer: &Producer,
    topic: &str,
    result: &SendResult,
    state: TransactionState,
) -> Result<()> {
    let offset_id = OffsetMsgId::decode(&result.offset_msg_id).map_err(|e| {
        ClientError::Malformed(format!(
            "offset message id {} of the half message: {e}",
            result.offset_msg_id
        ))
    })?;
    let instance = producer.instance();
    let addr = instance
        .master_addr_or_refresh(&result.queue.broker_name, topic)
        .await?;
    let header = EndTransactionRequestHeader {
        topic: Some(topic.to_owned()),
        producer_group: producer.group().to_owned(),
        tran_state_table_offset: result.queue_offset,
        commit_log_offset: offset_id.physical_offset,
        commit_or_rollback: state.wire_value(),
        from_transaction_check: Some(false),
        msg_id: result.msg_id.clone(),
        transaction_id: Some(
            result
                .transaction_id
                .clone()
                .unwrap_or_else(|| result.msg_id.clone()),
        ),
    };
    let req = RemotingCommand::request_with_header(RequestCode::EndTransaction, &header);
    instance.invoke_oneway(&addr, req).await?;
    producer.trace_end_transaction(topic, result, state.trace_name(), &addr);
    Ok(())
}
