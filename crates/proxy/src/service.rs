//! `apache.rocketmq.v2.MessagingService`: request metadata checks, then one module per RPC
//! family (route, send, receive, transaction). Unary RPCs always answer gRPC OK with the
//! outcome in their `status` field, as the Java proxy does; only Telemetry uses gRPC errors.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrymq_client::ClientInstance;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use ferrymq_auth::{grpc as grpc_auth, AccessControl, AclError, Perm, Resource};

use crate::convert;
use crate::group::{self, GroupPolicy, Groups};
use crate::offset;
use crate::pb::messaging_service_server::MessagingService;
use crate::pb::{self, settings::PubSub, telemetry_command::Command, Code};
use crate::receive;
use crate::renew::Renewals;
use crate::route;
use crate::send::{self, MAX_BODY_SIZE};
use crate::session::Sessions;
use crate::status::{self, Failure};
use crate::transaction::{self, Producers, Transactions};

/// Metadata key every SDK sends with its client instance id.
const CLIENT_ID: &str = "x-mq-client-id";
/// Producer send attempts announced to clients (`grpcClientProducerMaxAttempts`).
const PRODUCER_MAX_ATTEMPTS: i32 = 3;
/// Messages per receive announced to push consumers.
const RECEIVE_BATCH_SIZE: i32 = 32;
/// Long polling announced to push consumers.
const LONG_POLLING: Duration = Duration::from_secs(20);
/// Longest wait for a group's config before answering Settings with the defaults.
const SETTINGS_LOOKUP: Duration = Duration::from_secs(1);
/// The default consumer retry schedule (RocketMQ's delay levels 3..18).
const CONSUMER_BACKOFF_SECS: [u64; 18] = [
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
];

/// What every RPC needs.
pub(crate) struct Context {
    /// Accounts and permissions when access control is on (ACL 1.0 or 2.0).
    pub acl: Option<AccessControl>,
    pub instance: ClientInstance,
    pub sessions: Arc<Sessions>,
    pub transactions: Arc<Transactions>,
    pub producers: Producers,
    pub groups: Groups,
    pub renewals: Renewals,
    pub request_timeout: Duration,
    /// How far ahead a delivery time may be (`maxDelayTimeMills`).
    pub max_delay: Duration,
}

/// The service object handed to tonic.
#[derive(Clone)]
pub(crate) struct Messaging {
    pub ctx: Arc<Context>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

static STREAM_IDS: AtomicU64 = AtomicU64::new(1);

fn client_id<T>(req: &Request<T>) -> Result<String, Failure> {
    req.metadata()
        .get(CLIENT_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Failure::new(Code::ClientIdRequired, "x-mq-client-id is required"))
}

type Needs = Vec<(Resource, Perm)>;

fn name(r: &Option<pb::Resource>) -> &str {
    r.as_ref().map_or("", |r| r.name.as_str())
}

/// SUB on a consumer's group and topic (receive, ack, change-invisible, DLQ, assignment).
fn consuming(group: &Option<pb::Resource>, topic: &Option<pb::Resource>) -> Needs {
    vec![
        Resource::group(name(group)),
        Resource::topic(name(topic), Perm::SUB),
    ]
}

impl Messaging {
    /// The caller's client id, once it is known who the caller is and that it may touch
    /// `needs` (white-listed callers and ACL off skip the checks). Failures are answered as
    /// the Java proxy does: UNAUTHORIZED (40100) or FORBIDDEN (40300) in the response status.
    fn admit<T>(
        &self,
        req: &Request<T>,
        needs: impl FnOnce(&T) -> Needs,
    ) -> Result<String, Failure> {
        let id = client_id(req)?;
        let Some(acl) = &self.ctx.acl else {
            return Ok(id);
        };
        let meta = |k: &str| req.metadata().get(k).and_then(|v| v.to_str().ok());
        let remote = req
            .remote_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let checked = acl.check_grpc(
            meta(grpc_auth::AUTHORIZATION),
            meta(grpc_auth::DATE_TIME),
            remote,
            &needs(req.get_ref()),
        );
        checked.map(|()| id).map_err(|e| {
            debug!(%remote, error = %e, "gRPC call refused by ACL");
            match e {
                AclError::Authentication(m) => Failure::new(Code::Unauthorized, m),
                AclError::Authorization(m) => Failure::new(Code::Forbidden, m),
            }
        })
    }
}

/// The time left before the client's deadline (`grpc-timeout`, e.g. `2999m`).
fn remaining<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 {
        return None;
    }
    let (num, unit) = v.split_at(v.len() - 1);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn secs(s: u64) -> prost_types::Duration {
    convert::duration(Duration::from_secs(s))
}

/// The Settings answer: the client's own settings with the server-decided fields filled in
/// (grpc-v5.md §7). Leaving them out breaks clients (a Java producer needs an exponential
/// backoff, a producer with max_body_size 0 rejects every message, a push consumer polls
/// nothing with batch size 0).
pub(crate) fn answer_settings(reported: &pb::Settings, policy: GroupPolicy) -> pb::Settings {
    let mut s = reported.clone();
    match &mut s.pub_sub {
        Some(PubSub::Publishing(p)) => {
            p.max_body_size = MAX_BODY_SIZE as i32;
            p.validate_message_type = true;
            let attempts = reported
                .backoff_policy
                .as_ref()
                .map(|b| b.max_attempts)
                .filter(|n| *n > 0)
                .unwrap_or(PRODUCER_MAX_ATTEMPTS);
            s.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: attempts,
                strategy: Some(pb::retry_policy::Strategy::ExponentialBackoff(
                    pb::ExponentialBackoff {
                        initial: Some(convert::duration(Duration::from_millis(10))),
                        max: Some(convert::duration(Duration::from_secs(1))),
                        multiplier: 2.0,
                    },
                )),
            });
        }
        Some(PubSub::Subscription(sub)) => {
            sub.fifo = Some(policy.fifo);
            sub.receive_batch_size = Some(RECEIVE_BATCH_SIZE);
            sub.long_polling_timeout = Some(convert::duration(LONG_POLLING));
            s.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: policy.max_attempts,
                strategy: Some(pb::retry_policy::Strategy::CustomizedBackoff(
                    pb::CustomizedBackoff {
                        next: CONSUMER_BACKOFF_SECS.iter().map(|s| secs(*s)).collect(),
                    },
                )),
            });
        }
        None => {}
    }
    // No metrics collector here: clients must not push OTLP metrics anywhere.
    s.metric = Some(pb::Metric {
        on: false,
        endpoints: None,
    });
    s
}

impl Messaging {
    /// Runs one Telemetry stream: Settings in, Settings answer out, and the stream is the
    /// client's channel for server-initiated commands until it ends.
    fn run_telemetry(
        &self,
        client_id: String,
        mut inbound: Streaming<pb::TelemetryCommand>,
    ) -> BoxStream<pb::TelemetryCommand> {
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.ctx.clone();
        let stream_id = STREAM_IDS.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                let cmd = match item {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(%client_id, error = %e, "telemetry stream broken");
                        break;
                    }
                };
                match cmd.command {
                    Some(Command::Settings(settings)) => {
                        let Some(pub_sub) = &settings.pub_sub else {
                            let _ = tx
                                .send(Err(Status::invalid_argument(
                                    "settings carry neither publishing nor subscription",
                                )))
                                .await;
                            break;
                        };
                        if let PubSub::Publishing(p) = pub_sub {
                            // Producers of transactional topics must be reachable by the
                            // brokers' checks even before their first send.
                            let topics: Vec<String> =
                                p.topics.iter().map(|t| t.name.clone()).collect();
                            let ctx = ctx.clone();
                            tokio::spawn(async move { ctx.producers.prepare(topics).await });
                        }
                        let policy = match pub_sub {
                            PubSub::Subscription(sub) => {
                                let group = sub.group.as_ref().map(|g| g.name.as_str());
                                let topic = sub
                                    .subscriptions
                                    .iter()
                                    .find_map(|e| e.topic.as_ref().map(|t| t.name.as_str()));
                                match (group, topic) {
                                    // The client waits for this answer (Java: 3 s plus
                                    // its request timeout); never make it wait on a slow
                                    // broker.
                                    (Some(g), Some(t)) => tokio::time::timeout(
                                        SETTINGS_LOOKUP,
                                        group::policy_by_topic(&ctx, g, t),
                                    )
                                    .await
                                    .unwrap_or_default(),
                                    _ => GroupPolicy::default(),
                                }
                            }
                            PubSub::Publishing(_) => GroupPolicy::default(),
                        };
                        let answer = answer_settings(&settings, policy);
                        ctx.sessions.set_settings(&client_id, settings);
                        ctx.sessions.attach(&client_id, stream_id, tx.clone());
                        let reply = pb::TelemetryCommand {
                            status: Some(status::ok()),
                            command: Some(Command::Settings(answer)),
                        };
                        if tx.send(Ok(reply)).await.is_err() {
                            break;
                        }
                    }
                    // Answers to admin commands this proxy never sends; nothing waits for them.
                    Some(other) => {
                        debug!(%client_id, command = ?std::mem::discriminant(&other), "telemetry command ignored")
                    }
                    None => {}
                }
            }
            // The client half-closed: end our side too (dropping every sender).
            ctx.sessions.detach(&client_id, stream_id);
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

macro_rules! unary_status {
    ($resp:ident, $result:expr) => {
        match $result {
            Ok(()) => pb::$resp {
                status: Some(status::ok()),
            },
            Err(f) => pb::$resp {
                status: Some(f.to_status()),
            },
        }
    };
}

#[tonic::async_trait]
impl MessagingService for Messaging {
    async fn query_route(
        &self,
        request: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, Status> {
        let result = match self.admit(&request, |r| {
            vec![Resource::topic(name(&r.topic), Perm::ANY)]
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                route::query_route(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(match result {
            Ok(message_queues) => pb::QueryRouteResponse {
                status: Some(status::ok()),
                message_queues,
            },
            Err(f) => pb::QueryRouteResponse {
                status: Some(f.to_status()),
                message_queues: Vec::new(),
            },
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let result = self
            .admit(&request, |_| Vec::new())
            .map(|id| self.ctx.sessions.touch(&id));
        Ok(Response::new(unary_status!(HeartbeatResponse, result)))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let response = match self.admit(&request, |r| {
            r.messages
                .iter()
                .map(|m| Resource::topic(name(&m.topic), Perm::PUB))
                .collect()
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                send::send_message(&self.ctx, request.into_inner()).await
            }
            Err(f) => pb::SendMessageResponse {
                status: Some(f.to_status()),
                entries: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn query_assignment(
        &self,
        request: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, Status> {
        let result = match self.admit(&request, |r| consuming(&r.group, &r.topic)) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                route::query_assignment(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(match result {
            Ok(assignments) => pb::QueryAssignmentResponse {
                status: Some(status::ok()),
                assignments,
            },
            Err(f) => pb::QueryAssignmentResponse {
                status: Some(f.to_status()),
                assignments: Vec::new(),
            },
        }))
    }

    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        let responses = match self.admit(&request, |r| {
            consuming(
                &r.group,
                &r.message_queue.as_ref().and_then(|q| q.topic.clone()),
            )
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                let left = remaining(&request);
                receive::receive(&self.ctx, &id, request.into_inner(), left).await
            }
            Err(f) => vec![pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Status(f.to_status())),
            }],
        };
        Ok(Response::new(Box::pin(futures::stream::iter(
            responses.into_iter().map(Ok),
        ))))
    }

    async fn ack_message(
        &self,
        request: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, Status> {
        let response = match self.admit(&request, |r| consuming(&r.group, &r.topic)) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                receive::ack(&self.ctx, &id, request.into_inner()).await
            }
            Err(f) => pb::AckMessageResponse {
                status: Some(f.to_status()),
                entries: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, Status> {
        let result = match self.admit(&request, |r| consuming(&r.group, &r.topic)) {
            Ok(id) => receive::forward_to_dlq(&self.ctx, &id, request.into_inner()).await,
            Err(f) => Err(f),
        };
        Ok(Response::new(unary_status!(
            ForwardMessageToDeadLetterQueueResponse,
            result
        )))
    }

    type PullMessageStream = BoxStream<pb::PullMessageResponse>;

    async fn pull_message(
        &self,
        request: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        let responses = match self.admit(&request, |r| {
            consuming(
                &r.group,
                &r.message_queue.as_ref().and_then(|q| q.topic.clone()),
            )
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                let left = remaining(&request);
                offset::pull(&self.ctx, request.into_inner(), left).await
            }
            Err(f) => vec![pb::PullMessageResponse {
                content: Some(pb::pull_message_response::Content::Status(f.to_status())),
            }],
        };
        Ok(Response::new(Box::pin(futures::stream::iter(
            responses.into_iter().map(Ok),
        ))))
    }

    async fn update_offset(
        &self,
        request: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, Status> {
        let result = match self.admit(&request, |r| {
            consuming(
                &r.group,
                &r.message_queue.as_ref().and_then(|q| q.topic.clone()),
            )
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                offset::update(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(unary_status!(UpdateOffsetResponse, result)))
    }

    async fn get_offset(
        &self,
        request: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, Status> {
        let result = match self.admit(&request, |r| {
            consuming(
                &r.group,
                &r.message_queue.as_ref().and_then(|q| q.topic.clone()),
            )
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                offset::get(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(match result {
            Ok(offset) => pb::GetOffsetResponse {
                status: Some(status::ok()),
                offset,
            },
            Err(f) => pb::GetOffsetResponse {
                status: Some(f.to_status()),
                offset: 0,
            },
        }))
    }

    async fn query_offset(
        &self,
        request: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, Status> {
        let result = match self.admit(&request, |r| {
            let topic = r.message_queue.as_ref().and_then(|q| q.topic.as_ref());
            vec![Resource::topic(
                topic.map_or("", |t| t.name.as_str()),
                Perm::SUB,
            )]
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                offset::query(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(match result {
            Ok(offset) => pb::QueryOffsetResponse {
                status: Some(status::ok()),
                offset,
            },
            Err(f) => pb::QueryOffsetResponse {
                status: Some(f.to_status()),
                offset: 0,
            },
        }))
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        let result = match self.admit(&request, |r| {
            vec![Resource::topic(name(&r.topic), Perm::PUB)]
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                transaction::end_transaction(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(unary_status!(EndTransactionResponse, result)))
    }

    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn telemetry(
        &self,
        request: Request<Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let id = self
            .admit(&request, |_| Vec::new())
            .map_err(|f| match f.code {
                Code::Unauthorized => Status::unauthenticated(f.message),
                Code::Forbidden => Status::permission_denied(f.message),
                _ => Status::invalid_argument(f.message),
            })?;
        Ok(Response::new(self.run_telemetry(id, request.into_inner())))
    }

    async fn notify_client_termination(
        &self,
        request: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, Status> {
        let result = self.admit(&request, |_| Vec::new()).map(|id| {
            info!(client_id = %id, "gRPC client terminated");
            self.ctx.sessions.remove(&id);
            // Its messages reappear after their current invisible time.
            self.ctx.renewals.drop_client(&id)
        });
        Ok(Response::new(unary_status!(
            NotifyClientTerminationResponse,
            result
        )))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        let result = match self.admit(&request, |r| consuming(&r.group, &r.topic)) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                receive::change_invisible(&self.ctx, &id, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(match result {
            Ok(receipt_handle) => pb::ChangeInvisibleDurationResponse {
                status: Some(status::ok()),
                receipt_handle,
            },
            Err(f) => pb::ChangeInvisibleDurationResponse {
                status: Some(f.to_status()),
                receipt_handle: String::new(),
            },
        }))
    }

    async fn recall_message(
        &self,
        request: Request<pb::RecallMessageRequest>,
    ) -> Result<Response<pb::RecallMessageResponse>, Status> {
        let result = match self.admit(&request, |r| {
            vec![Resource::topic(name(&r.topic), Perm::PUB)]
        }) {
            Ok(id) => {
                self.ctx.sessions.touch(&id);
                send::recall(&self.ctx, request.into_inner()).await
            }
            Err(f) => Err(f),
        };
        Ok(Response::new(match result {
            Ok(message_id) => pb::RecallMessageResponse {
                status: Some(status::ok()),
                message_id,
            },
            Err(f) => pb::RecallMessageResponse {
                status: Some(f.to_status()),
                message_id: String::new(),
            },
        }))
    }

    async fn sync_lite_subscription(
        &self,
        _request: Request<pb::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<pb::SyncLiteSubscriptionResponse>, Status> {
        Err(Status::unimplemented("lite topics are not supported"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_is_parsed() {
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("grpc-timeout", "2999m".parse().unwrap());
        assert_eq!(remaining(&req), Some(Duration::from_millis(2999)));
        req.metadata_mut()
            .insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(remaining(&req), Some(Duration::from_secs(3)));
        req.metadata_mut()
            .insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(remaining(&req), None);
    }

    #[test]
    fn settings_answers_fill_server_fields() {
        let producer = pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            pub_sub: Some(PubSub::Publishing(pb::Publishing::default())),
            ..Default::default()
        };
        let a = answer_settings(&producer, GroupPolicy::default());
        let Some(PubSub::Publishing(p)) = &a.pub_sub else {
            panic!("publishing expected")
        };
        assert_eq!(p.max_body_size, MAX_BODY_SIZE as i32);
        let b = a.backoff_policy.unwrap();
        assert_eq!(b.max_attempts, PRODUCER_MAX_ATTEMPTS);
        assert!(matches!(
            b.strategy,
            Some(pb::retry_policy::Strategy::ExponentialBackoff(_))
        ));
        assert_eq!(a.metric.map(|m| m.on), Some(false));

        let consumer = pb::Settings {
            client_type: Some(pb::ClientType::SimpleConsumer as i32),
            pub_sub: Some(PubSub::Subscription(pb::Subscription::default())),
            ..Default::default()
        };
        let policy = GroupPolicy {
            fifo: true,
            max_attempts: 4,
        };
        let a = answer_settings(&consumer, policy);
        let Some(PubSub::Subscription(s)) = &a.pub_sub else {
            panic!("subscription expected")
        };
        assert_eq!(s.receive_batch_size, Some(RECEIVE_BATCH_SIZE));
        assert_eq!(s.fifo, Some(true));
        assert_eq!(a.backoff_policy.unwrap().max_attempts, 4);
    }
}
