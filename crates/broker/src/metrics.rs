//! The broker's metrics, under RocketMQ 5.x's names and labels (`rocketmq_messages_in_total`,
//! `rocketmq_rpc_latency`, `rocketmq_consumer_lag_messages`, ...; every series also carries
//! `cluster`, `node_type` and `node_id`).
//!
//! Hot paths only touch atomics: a send adds to its topic's counters (found under a read lock,
//! created once per topic), a request adds to its code's latency buckets. Gauges (topics,
//! groups, lag, storage) are computed when Prometheus scrapes, from the broker's own tables,
//! so they cost nothing between scrapes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use ferrymq_metrics::label;
use ferrymq_metrics::prometheus_client::collector::Collector;
use ferrymq_metrics::prometheus_client::encoding::DescriptorEncoder;
use ferrymq_metrics::series::{encode_counter, encode_gauge, Labels, RpcLatency, Series, Traffic};

use crate::state::BrokerState;

/// Where the broker counts; one per broker, shared by the processors. With the exporter off
/// (`metricsExporterType=DISABLE`) nothing is counted at all.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    enabled: bool,
    produced: Series<String, Traffic>,
    consumed: Series<(String, String), Traffic>,
    refused: Series<&'static str, AtomicU64>,
    rpc: RpcLatency,
}

impl BrokerMetrics {
    pub fn new(enabled: bool) -> BrokerMetrics {
        BrokerMetrics {
            enabled,
            ..BrokerMetrics::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Messages a producer stored (`rocketmq_messages_in_total`, `..._throughput_in_total`).
    pub fn produced(&self, topic: &str, messages: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        self.produced
            .get(topic, || topic.to_owned())
            .add(messages, bytes);
    }

    /// Messages handed to a consumer group (`rocketmq_messages_out_total`, ...).
    pub fn consumed(&self, topic: &str, group: &str, messages: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        // Per pull (a batch), not per message: the owned key costs one small allocation.
        let key = (topic.to_owned(), group.to_owned());
        self.consumed.get(&key, || key.clone()).add(messages, bytes);
    }

    /// A send the store refused or could not complete, by the store's reason
    /// (`rocketmq_messages_refused_total{cause}`).
    pub fn refused(&self, cause: &'static str) {
        if !self.enabled {
            return;
        }
        self.refused
            .get(cause, || cause)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// One request served (`rocketmq_rpc_latency{request_code, response_code}`).
    pub fn rpc(&self, request_code: i32, response_code: i32, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        self.rpc.observe(request_code, response_code, elapsed);
    }
}

/// Encodes the broker's metrics at scrape time.
#[derive(Debug)]
pub struct BrokerCollector {
    pub(crate) state: Weak<BrokerState>,
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = self.state.upgrade() else {
            return Ok(());
        };
        let cfg = s.config();
        let node = |mut extra: Labels| -> Labels {
            let mut labels = vec![
                (label::CLUSTER, cfg.broker_cluster_name.clone()),
                (label::NODE_TYPE, "broker".to_owned()),
                (label::NODE_ID, cfg.broker_name.clone()),
            ];
            labels.append(&mut extra);
            labels
        };
        let m = &s.metrics;

        let produced = m.produced.snapshot();
        let in_series = |bytes: bool| -> Vec<(Labels, u64)> {
            produced
                .iter()
                .map(|(topic, t)| {
                    let v = if bytes { &t.bytes } else { &t.messages };
                    (
                        node(vec![(label::TOPIC, topic.clone())]),
                        v.load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        encode_counter(
            &mut encoder,
            "rocketmq_messages_in",
            "Messages stored from producers",
            &in_series(false),
        )?;
        encode_counter(
            &mut encoder,
            "rocketmq_throughput_in",
            "Bytes of message bodies stored from producers",
            &in_series(true),
        )?;
        let consumed = m.consumed.snapshot();
        let out_series = |bytes: bool| -> Vec<(Labels, u64)> {
            consumed
                .iter()
                .map(|((topic, group), t)| {
                    let v = if bytes { &t.bytes } else { &t.messages };
                    (
                        node(vec![
                            (label::TOPIC, topic.clone()),
                            (label::CONSUMER_GROUP, group.clone()),
                        ]),
                        v.load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        encode_counter(
            &mut encoder,
            "rocketmq_messages_out",
            "Messages handed to consumers",
            &out_series(false),
        )?;
        encode_counter(
            &mut encoder,
            "rocketmq_throughput_out",
            "Bytes of messages handed to consumers",
            &out_series(true),
        )?;
        let refused: Vec<(Labels, u64)> = m
            .refused
            .snapshot()
            .into_iter()
            .map(|(cause, n)| {
                (
                    node(vec![(label::CAUSE, cause.to_owned())]),
                    n.load(Ordering::Relaxed),
                )
            })
            .collect();
        encode_counter(
            &mut encoder,
            "rocketmq_messages_refused",
            "Sends the broker refused or could not complete, by cause (flow control, disk, replication)",
            &refused,
        )?;

        m.rpc.encode(&mut encoder, "remoting", node)?;

        // Consumer lag: what each group with committed offsets has not consumed yet.
        let mut lag = Vec::new();
        for (topic, group) in s.offsets.topic_groups() {
            let behind: i64 = s
                .offsets
                .queues(&topic, &group)
                .into_iter()
                .map(|(q, committed)| (s.store.max_offset_in_queue(&topic, q) - committed).max(0))
                .sum();
            lag.push((
                node(vec![(label::TOPIC, topic), (label::CONSUMER_GROUP, group)]),
                behind,
            ));
        }
        encode_gauge(
            &mut encoder,
            "rocketmq_consumer_lag_messages",
            "Messages stored but not yet consumed (committed) by a group",
            &lag,
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_consumer_inflight_messages",
            "Messages popped and not yet acknowledged (POP consumption)",
            &[(node(Vec::new()), s.pop.checkpoints.len() as i64)],
        )?;

        let stats = s.store.stats();
        encode_gauge(
            &mut encoder,
            "rocketmq_storage_size",
            "Bytes of commit log held by the store",
            &[(
                node(Vec::new()),
                stats.commit_log_max_offset - stats.commit_log_min_offset,
            )],
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_storage_flush_behind",
            "Bytes appended to the commit log but not yet flushed",
            &[(
                node(Vec::new()),
                stats.commit_log_max_offset - stats.commit_log_flushed_offset,
            )],
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_storage_dispatch_behind",
            "Bytes of commit log not yet dispatched to consume queues and index",
            &[(
                node(Vec::new()),
                stats.commit_log_max_offset - stats.dispatch_offset,
            )],
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_storage_pagecache_lock_time_milliseconds",
            "How long the append now in progress has held the commit-log lock (pageCacheLockTimeMills)",
            &[(
                node(Vec::new()),
                i64::try_from(stats.page_cache_lock_time.as_millis()).unwrap_or(i64::MAX),
            )],
        )?;
        encode_counter(
            &mut encoder,
            "rocketmq_storage_pagecache_lock_held_microseconds",
            "Total time appends have held the commit-log lock",
            &[(
                node(Vec::new()),
                u64::try_from(stats.page_cache_lock_held_total.as_micros()).unwrap_or(u64::MAX),
            )],
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_topic_number",
            "Topics on this broker",
            &[(node(Vec::new()), s.topics.names().len() as i64)],
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_consumer_group_number",
            "Subscription groups on this broker",
            &[(node(Vec::new()), s.groups.names().len() as i64)],
        )?;
        encode_gauge(
            &mut encoder,
            "rocketmq_broker_permission",
            "The broker's permission bits (brokerPermission)",
            &[(node(Vec::new()), i64::from(cfg.broker_permission))],
        )?;
        Ok(())
    }
}
