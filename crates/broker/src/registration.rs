//! Keeping the NameServers informed: the broker registers its whole topic table with every
//! NameServer at start, every `registerNameServerPeriod` (30 s) and at once when topics change,
//! and unregisters on shutdown. NameServers are independent, so each is called separately and a
//! dead one only costs a logged warning.

use std::sync::Arc;
use std::time::Duration;

use ferrymq_protocol::body::{RegisterBrokerBody, TopicConfigSerializeWrapper};
use ferrymq_protocol::header::{
    BrokerIdentityHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
};
use ferrymq_protocol::message::flag::perm;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::RemotingClient;
use tokio_util::sync::CancellationToken;

use crate::state::BrokerState;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(6);

fn topic_wrapper(s: &BrokerState) -> TopicConfigSerializeWrapper {
    let mut w = s.topics.snapshot();
    if s.controller_broker_id.is_some() {
        // Controller mode, as RocketMQ: the state version is the master epoch, so a NameServer
        // that still lists the previous master (frozen, not yet expired) under id 0 lets the
        // newly elected one take the id over instead of refusing it as older.
        w.data_version.state_version = s
            .store
            .epoch_entries()
            .last()
            .map_or(0, |e| i64::from(e.epoch));
    }
    let broker_perm = s.config().broker_permission;
    if !perm::is_readable(broker_perm) || !perm::is_writeable(broker_perm) {
        for tc in w.topic_config_table.values_mut() {
            tc.perm &= broker_perm;
        }
    }
    w
}

fn register_request(s: &BrokerState) -> RemotingCommand {
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: topic_wrapper(s),
    }
    .encode();
    let crc = (crc32fast::hash(&body) & 0x7FFF_FFFF) as i32;
    let header = RegisterBrokerRequestHeader {
        broker_name: s.config().broker_name.clone(),
        broker_addr: s.broker_addr.clone(),
        cluster_name: s.config().broker_cluster_name.clone(),
        ha_server_addr: s.ha_server_addr.clone(),
        broker_id: s.config().broker_id,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: Some(crc),
        zone_name: None,
    };
    RemotingCommand::request_with_header(RequestCode::RegisterBroker, &header).with_body(body)
}

/// Registers with every NameServer once; returns how many accepted. A slave learns its
/// master's addresses from the answers.
pub async fn register_all(s: &BrokerState, client: &RemotingClient) -> usize {
    let addrs = s.config().namesrv_addrs();
    let calls = addrs.iter().map(|addr| {
        let req = register_request(s);
        async move {
            match client.invoke(addr, req, REGISTER_TIMEOUT).await {
                Ok(resp) if resp.response_code() == ResponseCode::Success => {
                    Some(resp.decode_header::<RegisterBrokerResponseHeader>().ok())
                }
                Ok(resp) => {
                    tracing::warn!(namesrv = %addr, code = resp.code, remark = ?resp.remark, "broker registration refused");
                    None
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "broker registration failed");
                    None
                }
            }
        }
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    let accepted = answers.len();
    // In controller mode the controller, not the NameServer, names the master.
    if s.config().is_slave() && s.controller_broker_id.is_none() && accepted > 0 {
        learn_master(s, answers.into_iter().flatten());
    }
    accepted
}

/// Slave: takes the master's addresses from REGISTER_BROKER answers (any NameServer that knows
/// a live master); none knowing one means the master is down.
fn learn_master(s: &BrokerState, answers: impl Iterator<Item = RegisterBrokerResponseHeader>) {
    let mut master = None;
    for h in answers {
        if let Some(addr) = h.master_addr.filter(|a| !a.is_empty()) {
            master = Some((addr, h.ha_server_addr.filter(|a| !a.is_empty())));
            break;
        }
    }
    let configured_ha = s.config().ha_master_address.clone();
    match master {
        Some((addr, ha)) => {
            if let Some(ha) = configured_ha.or(ha) {
                s.store.set_ha_master_address(&ha);
            }
            s.master_addr.send_if_modified(|current| {
                if current.as_deref() == Some(addr.as_str()) {
                    return false;
                }
                tracing::info!(master = %addr, "master of this slave is up");
                *current = Some(addr);
                true
            });
        }
        None => {
            if s.master_addr.send_replace(None).is_some() {
                tracing::warn!("no NameServer knows a live master of this slave");
            }
        }
    }
}

/// The registration loop; ends when `stop` fires.
pub async fn run(s: Arc<BrokerState>, client: RemotingClient, stop: CancellationToken) {
    let period =
        Duration::from_millis(s.config().register_name_server_period.clamp(10_000, 60_000));
    let mut logged = false;
    loop {
        let n = register_all(&s, &client).await;
        if n > 0 && !logged {
            tracing::info!(
                broker = %s.config().broker_name,
                addr = %s.broker_addr,
                topics = s.topics.names().len(),
                namesrvs = n,
                "registered with name servers"
            );
            logged = true;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            _ = s.register_now.notified() => {}
        }
    }
}

/// Tells every NameServer this broker is leaving.
pub async fn unregister_all(s: &BrokerState, client: &RemotingClient) {
    let header = BrokerIdentityHeader {
        broker_name: s.config().broker_name.clone(),
        broker_addr: s.broker_addr.clone(),
        cluster_name: s.config().broker_cluster_name.clone(),
        broker_id: s.config().broker_id,
    };
    let addrs = s.config().namesrv_addrs();
    let calls = addrs.iter().map(|addr| {
        let req = RemotingCommand::request_with_header(RequestCode::UnregisterBroker, &header);
        async move {
            if let Err(e) = client.invoke(addr, req, Duration::from_secs(3)).await {
                tracing::warn!(namesrv = %addr, error = %e, "broker unregistration failed");
            }
        }
    });
    futures::future::join_all(calls).await;
}
