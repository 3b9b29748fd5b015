//! A slave's metadata sync (RocketMQ's SlaveSynchronize): the commit log arrives by
//! replication, but topics, subscription groups, consumer offsets and delay offsets live in
//! config files, so every 10 s (and as soon as a master is first known) the slave copies them
//! from its master over remoting: GET_ALL_TOPIC_CONFIG (21), GET_ALL_CONSUMER_OFFSET (43),
//! GET_ALL_DELAY_OFFSET (45) and GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymq_protocol::body::{from_java_json, TopicConfigSerializeWrapper};
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::RemotingClient;
use ferrymq_store::config_file::{ConsumerOffsetTable, DelayOffsetTable};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::state::BrokerState;
use crate::subscription_groups::SubscriptionGroupWrapper;

/// How often the whole metadata is copied (RocketMQ 4.x's period).
const SYNC_PERIOD: Duration = Duration::from_secs(10);
/// How often the loop checks whether a sync is due (a new master starts one at once).
const CHECK_PERIOD: Duration = Duration::from_secs(1);
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// The sync loop of a slave; ends when `stop` fires.
pub async fn run(s: Arc<BrokerState>, client: RemotingClient, stop: CancellationToken) {
    let mut last: Option<(String, Instant)> = None;
    let mut changes = s.master_addr.subscribe();
    loop {
        let master = changes.borrow_and_update().clone();
        if let Some(master) = master {
            let due = match &last {
                Some((addr, at)) => *addr != master || at.elapsed() >= SYNC_PERIOD,
                None => true,
            };
            if due {
                match sync_all(&s, &client, &master).await {
                    Ok(()) => tracing::debug!(%master, "slave metadata synced"),
                    Err(e) => tracing::warn!(%master, error = %e, "slave metadata sync failed"),
                }
                last = Some((master, Instant::now()));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_PERIOD) => {}
            _ = changes.changed() => {}
        }
    }
}

/// Why one sync step failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("{code:?} from the master: {remark}")]
    Refused { code: ResponseCode, remark: String },
    #[error(transparent)]
    Transport(#[from] ferrymq_remoting::TransportError),
    #[error("malformed body of {what:?}: {source}")]
    Body {
        what: RequestCode,
        source: serde_json::Error,
    },
}

async fn fetch<T: DeserializeOwned>(
    client: &RemotingClient,
    master: &str,
    code: RequestCode,
) -> Result<T, SyncError> {
    let resp = client
        .invoke(master, RemotingCommand::request(code), SYNC_TIMEOUT)
        .await?;
    if resp.response_code() != ResponseCode::Success {
        return Err(SyncError::Refused {
            code: resp.response_code(),
            remark: resp.remark.unwrap_or_default(),
        });
    }
    let bytes = resp.body.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    from_java_json(&text).map_err(|source| SyncError::Body { what: code, source })
}

/// Copies all four tables; each is applied as soon as it arrives.
async fn sync_all(
    s: &Arc<BrokerState>,
    client: &RemotingClient,
    master: &str,
) -> Result<(), SyncError> {
    let topics: TopicConfigSerializeWrapper =
        fetch(client, master, RequestCode::GetAllTopicConfig).await?;
    if s.topics.replace_from_master(topics) {
        s.topics_changed().await;
    }
    let offsets: ConsumerOffsetTable =
        fetch(client, master, RequestCode::GetAllConsumerOffset).await?;
    s.offsets.merge_from_master(offsets);
    let delays: DelayOffsetTable = fetch(client, master, RequestCode::GetAllDelayOffset).await?;
    let st = s.clone();
    let _ = tokio::task::spawn_blocking(move || st.persist_delay_offsets(&delays)).await;
    let groups: SubscriptionGroupWrapper =
        fetch(client, master, RequestCode::GetAllSubscriptiongroupConfig).await?;
    if s.groups.merge_from_master(groups) {
        s.groups_changed().await;
    }
    Ok(())
}
