//! What the proxy remembers about each gRPC client, keyed by its `x-mq-client-id` (one client
//! instance may open several channels and streams; grpc-v5.md §6): the Settings it last
//! reported over Telemetry and the sender half of its Telemetry response stream, through which
//! the proxy pushes server-initiated commands (orphaned-transaction checks).
//!
//! Sessions disappear on NotifyClientTermination, when their Telemetry stream ends, or after
//! [`IDLE_EXPIRY`] without any call (the Java proxy's `grpcClientIdleTimeMills`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::pb::{self, settings::PubSub, TelemetryCommand};

/// A client silent this long is forgotten.
pub(crate) const IDLE_EXPIRY: Duration = Duration::from_secs(120);

/// The sending side of a client's Telemetry response stream.
pub(crate) type TelemetrySender = mpsc::Sender<Result<TelemetryCommand, tonic::Status>>;

struct Session {
    settings: Option<pb::Settings>,
    telemetry: Option<(u64, TelemetrySender)>,
    last_seen: Instant,
}

impl Session {
    fn new() -> Session {
        Session {
            settings: None,
            telemetry: None,
            last_seen: Instant::now(),
        }
    }
}

/// All known gRPC clients.
#[derive(Default)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Records activity of a client.
    pub fn touch(&self, client_id: &str) {
        let mut t = self.table.lock();
        t.entry(client_id.to_owned())
            .or_insert_with(Session::new)
            .last_seen = Instant::now();
    }

    /// Stores the Settings a client reported.
    pub fn set_settings(&self, client_id: &str, settings: pb::Settings) {
        let mut t = self.table.lock();
        let s = t.entry(client_id.to_owned()).or_insert_with(Session::new);
        s.settings = Some(settings);
        s.last_seen = Instant::now();
    }

    /// Attaches a Telemetry stream (replacing an older one: the client reconnected). `stream`
    /// identifies it so that the end of a replaced stream does not detach its successor.
    pub fn attach(&self, client_id: &str, stream: u64, sender: TelemetrySender) {
        let mut t = self.table.lock();
        let s = t.entry(client_id.to_owned()).or_insert_with(Session::new);
        s.telemetry = Some((stream, sender));
        s.last_seen = Instant::now();
    }

    /// Detaches a Telemetry stream that ended, if it is still the current one.
    pub fn detach(&self, client_id: &str, stream: u64) {
        let mut t = self.table.lock();
        if let Some(s) = t.get_mut(client_id) {
            if s.telemetry.as_ref().is_some_and(|(id, _)| *id == stream) {
                s.telemetry = None;
            }
        }
    }

    pub fn remove(&self, client_id: &str) {
        self.table.lock().remove(client_id);
    }

    /// Telemetry senders of live producers that declared `topic` (checks of its transactions
    /// may go to any of them, as with remoting producers of one group).
    pub fn producers_of(&self, topic: &str) -> Vec<TelemetrySender> {
        self.table
            .lock()
            .values()
            .filter(|s| publishes(s.settings.as_ref(), topic))
            .filter_map(|s| s.telemetry.as_ref().map(|(_, tx)| tx.clone()))
            .filter(|tx| !tx.is_closed())
            .collect()
    }

    /// Forgets clients idle for longer than [`IDLE_EXPIRY`] without a live Telemetry stream;
    /// returns their ids.
    pub fn expire(&self) -> Vec<String> {
        let mut t = self.table.lock();
        let gone: Vec<String> = t
            .iter()
            .filter(|(_, s)| {
                s.last_seen.elapsed() >= IDLE_EXPIRY
                    && s.telemetry.as_ref().is_none_or(|(_, tx)| tx.is_closed())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            t.remove(id);
        }
        gone
    }
}

fn publishes(settings: Option<&pb::Settings>, topic: &str) -> bool {
    match settings.and_then(|s| s.pub_sub.as_ref()) {
        Some(PubSub::Publishing(p)) => p.topics.iter().any(|t| t.name == topic),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_settings(topic: &str) -> pb::Settings {
        pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            pub_sub: Some(PubSub::Publishing(pb::Publishing {
                topics: vec![pb::Resource {
                    resource_namespace: String::new(),
                    name: topic.into(),
                }],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn producers_are_found_by_topic_and_replaced_streams_stay_attached() {
        let s = Sessions::default();
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        s.set_settings("c1", producer_settings("T"));
        s.attach("c1", 1, tx1);
        assert_eq!(s.producers_of("T").len(), 1);
        assert!(s.producers_of("U").is_empty());
        s.attach("c1", 2, tx2);
        s.detach("c1", 1);
        assert_eq!(s.producers_of("T").len(), 1, "the newer stream stays");
        s.detach("c1", 2);
        assert!(s.producers_of("T").is_empty());
        s.remove("c1");
        assert!(s.table.lock().is_empty());
    }
}
