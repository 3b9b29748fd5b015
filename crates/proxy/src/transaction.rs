//! Transactions through the proxy (grpc-v5.md §11).
//!
//! Half messages are sent by a [`TransactionProducer`] of group = topic, one per topic, all on
//! the proxy's client instance, so the brokers know a live producer of that group and send
//! their CHECK_TRANSACTION_STATE to the proxy. The producer's checker is a relay: it pushes a
//! `RecoverOrphanedTransactionCommand` onto the Telemetry stream of a gRPC producer that
//! declared the topic and answers "unknown" to the broker (a no-op END_TRANSACTION); the gRPC
//! client's verdict then arrives as EndTransaction(SOURCE_SERVER_CHECK).
//!
//! EndTransaction needs the half message's broker and offsets, which the gRPC client does not
//! have; [`Transactions`] remembers them by (topic, transaction id) from the send or from the
//! check, for [`REMEMBER_FOR`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymq_client::producer::ProducerSettings;
use ferrymq_client::{
    ClientInstance, MessageExt, SendResult, TransactionChecker, TransactionProducer,
    TransactionState,
};
use ferrymq_protocol::header::EndTransactionRequestHeader;
use ferrymq_protocol::message::{keys, sys_flag, OffsetMsgId};
use ferrymq_protocol::{RemotingCommand, RequestCode};
use parking_lot::Mutex;
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::convert;
use crate::pb::{self, telemetry_command::Command, Code, TransactionResolution};
use crate::send::MAX_BODY_SIZE;
use crate::service::Context;
use crate::session::Sessions;
use crate::status::{self, Failure};

/// How long the coordinates of a half message are kept for EndTransaction. Longer than the
/// Java proxy's 30 s: a client committing late should not depend on the check-back.
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Bound on remembered transactions (oldest dropped first when exceeded).
const MAX_REMEMBERED: usize = 100_000;

/// Where a half message is and what END_TRANSACTION must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HalfMessage {
    pub broker_name: String,
    pub producer_group: String,
    pub tran_state_table_offset: i64,
    pub commit_log_offset: i64,
    pub msg_id: String,
}

/// Half messages awaiting a verdict.
#[derive(Default)]
pub(crate) struct Transactions {
    table: Mutex<HashMap<(String, String), (HalfMessage, Instant)>>,
}

impl Transactions {
    fn insert(&self, topic: &str, transaction_id: &str, half: HalfMessage) {
        let mut t = self.table.lock();
        if t.len() >= MAX_REMEMBERED {
            t.retain(|_, (_, at)| at.elapsed() < REMEMBER_FOR);
            if t.len() >= MAX_REMEMBERED {
                if let Some(oldest) = t
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    t.remove(&oldest);
                }
            }
        }
        t.insert(
            (topic.to_owned(), transaction_id.to_owned()),
            (half, Instant::now()),
        );
    }

    /// Records a half message just sent for the client.
    pub fn remember_half(&self, topic: &str, transaction_id: &str, result: &SendResult) {
        let Ok(offset_id) = OffsetMsgId::decode(&result.offset_msg_id) else {
            warn!(id = %result.offset_msg_id, "half message with an unreadable offset id");
            return;
        };
        self.insert(
            topic,
            transaction_id,
            HalfMessage {
                broker_name: result.queue.broker_name.clone(),
                producer_group: topic.to_owned(),
                tran_state_table_offset: result.queue_offset,
                commit_log_offset: offset_id.physical_offset,
                msg_id: result.msg_id.clone(),
            },
        );
    }

    fn take(&self, topic: &str, transaction_id: &str) -> Option<HalfMessage> {
        let mut t = self.table.lock();
        let (half, at) = t.remove(&(topic.to_owned(), transaction_id.to_owned()))?;
        (at.elapsed() < REMEMBER_FOR).then_some(half)
    }

    /// Drops entries older than [`REMEMBER_FOR`].
    pub fn expire(&self) {
        self.table
            .lock()
            .retain(|_, (_, at)| at.elapsed() < REMEMBER_FOR);
    }
}

/// Relays the broker's transaction checks to a gRPC producer of the topic.
struct Relay {
    sessions: Arc<Sessions>,
    transactions: Arc<Transactions>,
}

impl TransactionChecker for Relay {
    async fn check(&self, msg: &MessageExt) -> TransactionState {
        let topic = msg.topic().to_owned();
        let transaction_id = msg
            .property(keys::TRANSACTION_ID)
            .map(str::to_owned)
            .unwrap_or_else(|| msg.msg_id().to_owned());
        self.transactions.insert(
            &topic,
            &transaction_id,
            HalfMessage {
                broker_name: msg.broker_name.clone(),
                producer_group: msg
                    .property(keys::PRODUCER_GROUP)
                    .unwrap_or(&topic)
                    .to_owned(),
                tran_state_table_offset: msg.queue_offset,
                commit_log_offset: msg.commit_log_offset,
                msg_id: msg.msg_id().to_owned(),
            },
        );
        let command = pb::TelemetryCommand {
            status: Some(status::ok()),
            command: Some(Command::RecoverOrphanedTransactionCommand(
                pb::RecoverOrphanedTransactionCommand {
                    message: Some(convert::to_pb(msg, None, None)),
                    transaction_id: transaction_id.clone(),
                },
            )),
        };
        // Any one producer of the topic may answer; the broker asks again later otherwise.
        let delivered = self
            .sessions
            .producers_of(&topic)
            .into_iter()
            .any(|tx| tx.try_send(Ok(command.clone())).is_ok());
        if !delivered {
            debug!(%topic, %transaction_id, "no gRPC producer to relay a transaction check to");
        }
        // The verdict comes later as EndTransaction; "unknown" leaves the half message open.
        TransactionState::Unknown
    }
}

/// The proxy's producers, one per topic (group = topic).
pub(crate) struct Producers {
    instance: ClientInstance,
    sessions: Arc<Sessions>,
    transactions: Arc<Transactions>,
    table: Mutex<HashMap<String, Arc<OnceCell<TransactionProducer>>>>,
}

impl Producers {
    pub fn new(
        instance: ClientInstance,
        sessions: Arc<Sessions>,
        transactions: Arc<Transactions>,
    ) -> Producers {
        Producers {
            instance,
            sessions,
            transactions,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The producer of `topic`, started on first use once the topic is known to exist.
    pub async fn get(&self, topic: &str) -> Result<TransactionProducer, Failure> {
        let cell = self
            .table
            .lock()
            .entry(topic.to_owned())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            // The proxy never auto-creates topics for gRPC clients (grpc-v5.md §8).
            self.instance.route(topic).await?;
            let settings = ProducerSettings {
                // Bodies are stored as the client sent them (already inflated).
                compress_threshold: usize::MAX,
                max_message_size: MAX_BODY_SIZE * 2,
                ..ProducerSettings::default()
            };
            let relay = Relay {
                sessions: self.sessions.clone(),
                transactions: self.transactions.clone(),
            };
            TransactionProducer::builder(topic)
                .instance(self.instance.clone())
                .settings(settings)
                .checker(relay)
                .start()
                .await
                .map_err(Failure::from)
        })
        .await
        .cloned()
    }

    /// Makes sure a producer of each topic exists so the brokers can check transactions of a
    /// gRPC producer that has not sent anything through this proxy yet.
    pub async fn prepare(&self, topics: impl IntoIterator<Item = String>) {
        for topic in topics {
            if let Err(f) = self.get(&topic).await {
                debug!(%topic, error = %f.message, "no producer for a declared topic");
            }
        }
    }

    pub async fn shutdown(&self) {
        let producers: Vec<_> = self
            .table
            .lock()
            .drain()
            .filter_map(|(_, cell)| cell.get().cloned())
            .collect();
        for p in producers {
            p.shutdown().await;
        }
    }
}

pub(crate) async fn end_transaction(
    ctx: &Context,
    req: pb::EndTransactionRequest,
) -> Result<(), Failure> {
    let topic = req.topic.as_ref().map(|t| t.name.as_str()).unwrap_or("");
    crate::send::check_topic(topic)?;
    if req.transaction_id.is_empty() {
        return Err(Failure::new(
            Code::InvalidTransactionId,
            "transaction id is empty",
        ));
    }
    let commit = match TransactionResolution::try_from(req.resolution) {
        Ok(TransactionResolution::Commit) => sys_flag::TRANSACTION_COMMIT_TYPE,
        Ok(TransactionResolution::Rollback) => sys_flag::TRANSACTION_ROLLBACK_TYPE,
        _ => {
            return Err(Failure::new(
                Code::BadRequest,
                "transaction resolution must be COMMIT or ROLLBACK",
            ))
        }
    };
    let Some(half) = ctx.transactions.take(topic, &req.transaction_id) else {
        return Err(Failure::new(
            Code::InternalServerError,
            format!("cannot found transaction data: {}", req.transaction_id),
        ));
    };
    let addr = ctx
        .instance
        .master_addr_or_refresh(&half.broker_name, topic)
        .await?;
    let header = EndTransactionRequestHeader {
        topic: Some(topic.to_owned()),
        producer_group: half.producer_group.clone(),
        tran_state_table_offset: half.tran_state_table_offset,
        commit_log_offset: half.commit_log_offset,
        commit_or_rollback: commit,
        from_transaction_check: Some(req.source == pb::TransactionSource::SourceServerCheck as i32),
        msg_id: if req.message_id.is_empty() {
            half.msg_id.clone()
        } else {
            req.message_id.clone()
        },
        transaction_id: Some(req.transaction_id.clone()),
    };
    let request = RemotingCommand::request_with_header(RequestCode::EndTransaction, &header);
    ctx.instance.invoke_oneway(&addr, request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_halves_are_taken_once() {
        let t = Transactions::default();
        let half = HalfMessage {
            broker_name: "b".into(),
            producer_group: "T".into(),
            tran_state_table_offset: 3,
            commit_log_offset: 100,
            msg_id: "id".into(),
        };
        t.insert("T", "tx", half.clone());
        assert_eq!(t.take("U", "tx"), None);
        assert_eq!(t.take("T", "tx"), Some(half));
        assert_eq!(t.take("T", "tx"), None);
    }
}
