//! Request dispatch: one [`Processor`] serves both broker ports and routes each request code to
//! the module that owns it (send, pull, pop, client management, offsets, admin). Handlers return
//! `Result<RemotingCommand, RemotingCommand>` so validation reads top to bottom with `?`, the
//! error side already being the RocketMQ error response.

// The error side *is* the response, moved out exactly once per request; boxing it would only add
// an allocation to every error reply.
#![allow(clippy::result_large_err)]

mod admin;
mod auth;
mod client;
mod offset;
mod pop;
mod pop_ack;
mod pop_checkpoint;
mod pop_order;
mod pop_revive;
mod pull;
mod recall;
mod reply;
mod send;
mod transaction;

use std::sync::Arc;

use ferrymq_protocol::header::CommandHeader;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{Connection, RequestHandler};

use crate::state::BrokerState;
use ferrymq_auth::AccessControl;

pub use pop::PopState;
pub(crate) use pop_revive::{recover as recover_pop, run as run_pop_revive};
pub(crate) use send::put_internal;

type Reply = Result<RemotingCommand, RemotingCommand>;

/// Serves every broker request.
pub struct Processor {
    state: Arc<BrokerState>,
    /// ACL 1.0 rules when `aclEnable`; every request is checked against them first.
    acl: Option<AccessControl>,
}

impl Processor {
    pub fn new(state: Arc<BrokerState>, acl: Option<AccessControl>) -> Self {
        Processor { state, acl }
    }
}

/// Decodes a typed header or answers with the error Java gives for a bad custom header.
fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>()
        .map_err(|e| RemotingCommand::error_response(req, ResponseCode::SystemError, e.to_string()))
}

/// Parses a JSON body (fastjson dialect) or answers SYSTEM_ERROR naming the problem.
fn json_body<T: serde::de::DeserializeOwned>(req: &RemotingCommand) -> Result<T, RemotingCommand> {
    let bytes = req.body.to_bytes();
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        RemotingCommand::error_response(req, ResponseCode::SystemError, "request body is not UTF-8")
    })?;
    ferrymq_protocol::body::from_java_json(text).map_err(|e| {
        RemotingCommand::error_response(
            req,
            ResponseCode::SystemError,
            format!("malformed request body: {e}"),
        )
    })
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::Success)
}

fn err(req: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::error_response(req, code, remark)
}

fn json_reply<T: serde::Serialize>(req: &RemotingCommand, value: &T) -> RemotingCommand {
    ok(req).with_body(serde_json::to_vec(value).unwrap_or_default())
}

impl RequestHandler for Processor {
    async fn handle(&self, conn: &Connection, req: RemotingCommand) -> Option<RemotingCommand> {
        // With metrics off not even the clock is read.
        let started = self.state.metrics.enabled().then(std::time::Instant::now);
        let code = req.code;
        let reply = self.serve(conn, req).await;
        if let Some(started) = started {
            self.state.metrics.rpc(code, reply.code, started.elapsed());
        }
        Some(reply)
    }

    fn on_connection_closed(&self, conn: &Connection) {
        for group in self.state.clients.remove_connection(conn.id()) {
            tracing::info!(group, peer = %conn.peer_addr(), "client connection closed");
            self.state.notify_consumer_ids_changed(&group);
        }
    }
}

impl Processor {
    async fn serve(&self, conn: &Connection, req: RemotingCommand) -> RemotingCommand {
        let s = &self.state;
        if let Some(acl) = &self.acl {
            if let Err(cause) = acl.check_remoting(&req, conn.peer_addr().ip()) {
                tracing::debug!(peer = %conn.peer_addr(), code = req.code, %cause, "request refused by ACL");
                return err(&req, ResponseCode::NoPermission, cause);
            }
        }
        let reply = match req.request_code() {
            RequestCode::SendMessage
            | RequestCode::SendMessageV2
            | RequestCode::SendBatchMessage
            | RequestCode::SendReplyMessage
            | RequestCode::SendReplyMessageV2 => send::send_message(s, conn, &req).await,
            RequestCode::PullMessage | RequestCode::LitePullMessage => {
                pull::pull_message(s, &req).await
            }
            RequestCode::PopMessage => pop::pop_message(s, &req).await,
            RequestCode::AckMessage => pop_ack::ack_message(s, &req).await,
            RequestCode::BatchAckMessage => pop_ack::batch_ack_message(s, &req).await,
            RequestCode::ChangeMessageInvisibletime => {
                pop_ack::change_invisible_time(s, &req).await
            }
            RequestCode::Notification => pop::notification(s, &req).await,
            RequestCode::HeartBeat => client::heartbeat(s, conn, &req).await,
            RequestCode::UnregisterClient => client::unregister_client(s, conn, &req),
            RequestCode::GetConsumerListByGroup => client::consumer_list(s, &req),
            RequestCode::LockBatchMq => client::lock_batch(s, &req),
            RequestCode::UnlockBatchMq => client::unlock_batch(s, &req),
            RequestCode::CheckClientConfig => client::check_client_config(s, &req),
            RequestCode::QueryConsumerOffset => offset::query_consumer_offset(s, &req),
            RequestCode::UpdateConsumerOffset => offset::update_consumer_offset(s, &req),
            RequestCode::GetMaxOffset => offset::max_offset(s, &req),
            RequestCode::GetMinOffset => offset::min_offset(s, &req),
            RequestCode::SearchOffsetByTimestamp => offset::search_offset(s, &req),
            RequestCode::GetEarliestMsgStoretime => offset::earliest_time(s, &req),
            RequestCode::ConsumerSendMsgBack => send::consumer_send_back(s, &req).await,
            RequestCode::EndTransaction => transaction::end_transaction(s, &req).await,
            RequestCode::RecallMessage => recall::recall_message(s, conn, &req).await,
            RequestCode::GetBrokerEpochCache => Ok(crate::controller_mode::epoch_cache(s, &req)),
            RequestCode::NotifyBrokerRoleChanged => {
                Ok(crate::controller_mode::role_changed(s, &req))
            }
            RequestCode::QueryMessage => admin::query_message(s, &req),
            RequestCode::ViewMessageById => admin::view_message(s, &req),
            RequestCode::UpdateAndCreateTopic => admin::create_topic(s, &req).await,
            RequestCode::DeleteTopicInBroker => admin::delete_topic(s, &req).await,
            RequestCode::GetAllTopicConfig => admin::all_topic_config(s, &req),
            RequestCode::GetTopicConfig => admin::topic_config(s, &req),
            RequestCode::GetSystemTopicListFromBroker => admin::system_topics(s, &req),
            RequestCode::GetBrokerRuntimeInfo => admin::runtime_info(s, &req),
            RequestCode::GetBrokerConfig => admin::broker_config(s, &req),
            RequestCode::UpdateBrokerConfig => admin::update_broker_config(s, &req).await,
            RequestCode::GetTopicStatsInfo => admin::topic_stats(s, &req),
            RequestCode::GetConsumeStats => admin::consume_stats(s, &req),
            RequestCode::GetConsumerConnectionList => admin::consumer_connections(s, &req),
            RequestCode::GetProducerConnectionList => admin::producer_connections(s, &req),
            RequestCode::UpdateAndCreateSubscriptiongroup => admin::create_group(s, &req).await,
            RequestCode::GetAllSubscriptiongroupConfig => admin::all_groups(s, &req),
            RequestCode::GetSubscriptiongroupConfig => admin::group_config(s, &req),
            RequestCode::DeleteSubscriptiongroup => admin::delete_group(s, &req).await,
            RequestCode::GetAllConsumerOffset => admin::all_consumer_offsets(s, &req),
            RequestCode::GetAllDelayOffset => admin::all_delay_offsets(s, &req),
            RequestCode::QueryTopicConsumeByWho => admin::topic_consumed_by(s, &req),
            RequestCode::AuthCreateUser => Ok(auth::create_user(s, &req).await),
            RequestCode::AuthUpdateUser => Ok(auth::update_user(s, &req).await),
            RequestCode::AuthDeleteUser => Ok(auth::delete_user(s, &req).await),
            RequestCode::AuthGetUser => Ok(auth::get_user(s, &req)),
            RequestCode::AuthListUser => Ok(auth::list_users(s, &req)),
            RequestCode::AuthCreateAcl | RequestCode::AuthUpdateAcl => {
                Ok(auth::upsert_acl(s, &req).await)
            }
            RequestCode::AuthDeleteAcl => Ok(auth::delete_acl(s, &req).await),
            RequestCode::AuthGetAcl => Ok(auth::get_acl(s, &req)),
            RequestCode::AuthListAcl => Ok(auth::list_acls(s, &req)),
            RequestCode::QueryTopicsByConsumer => admin::topics_by_consumer(s, &req),
            RequestCode::InvokeBrokerToResetOffset => admin::reset_offset(s, &req),
            RequestCode::GetConsumerRunningInfo => admin::consumer_running_info(s, &req).await,
            RequestCode::ConsumeMessageDirectly => admin::consume_message_directly(s, &req).await,
            RequestCode::QueryConsumeTimeSpan => admin::consume_time_span(s, &req),
            _ => Ok(RemotingCommand::unsupported(&req)),
        };
        reply.unwrap_or_else(|e| e)
    }
}
