//! Label-keyed atomic counters and histograms, and their encoding at scrape time. A series is
//! created the first time its labels are seen (a write lock, once) and then only read-locked to
//! find it, so recording is an atomic add.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::label;

/// Messages and bytes through one topic (or one topic and group).
#[derive(Debug, Default)]
pub struct Traffic {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

impl Traffic {
    pub fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Upper bounds (ms) of the latency buckets, as RocketMQ's rpc latency view.
const LATENCY_BUCKETS_MS: [u64; 8] = [1, 3, 5, 10, 50, 100, 1_000, 3_000];

/// A histogram of atomics: one add per bucket hit, no lock.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        let micros = elapsed.as_micros() as u64;
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|b| micros <= b * 1000) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Series keyed by label values; a key is created once, then only read-locked.
#[derive(Debug)]
pub struct Series<K, V> {
    map: RwLock<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for Series<K, V> {
    fn default() -> Self {
        Series {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Default> Series<K, V> {
    /// The series of `key`, created (with `owned()` as its key) the first time.
    pub fn get<Q>(&self, key: &Q, owned: impl FnOnce() -> K) -> Arc<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Some(v) = self.map.read().get(key) {
            return v.clone();
        }
        self.map.write().entry(owned()).or_default().clone()
    }

    /// Every series with its key, for encoding.
    pub fn snapshot(&self) -> Vec<(K, Arc<V>)> {
        self.map
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// Encodes one counter family.
pub fn encode_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// Encodes one gauge family.
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// `rocketmq_rpc_latency`: request latency in milliseconds by request (a remoting code, or a
/// gRPC method name) and response code.
#[derive(Debug)]
pub struct RpcLatency<K = i32> {
    series: Series<(K, i32), Latency>,
}

impl<K> Default for RpcLatency<K> {
    fn default() -> Self {
        RpcLatency {
            series: Series::default(),
        }
    }
}

impl<K: Eq + Hash + Clone + std::fmt::Display> RpcLatency<K> {
    /// Whether nothing was observed yet.
    pub fn is_empty(&self) -> bool {
        self.series.map.read().is_empty()
    }

    pub fn observe(&self, request_code: K, response_code: i32, elapsed: Duration) {
        let key = (request_code, response_code);
        self.series.get(&key, || key.clone()).observe(elapsed);
    }

    /// Encodes the histogram family; `node` adds the component's own labels.
    pub fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        protocol: &str,
        node: impl Fn(Labels) -> Labels,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "rocketmq_rpc_latency",
            "Milliseconds to serve a request, by request and response code",
            None,
            MetricType::Histogram,
        )?;
        for ((request, response), h) in self.series.snapshot() {
            let labels = node(vec![
                (label::PROTOCOL_TYPE, protocol.to_owned()),
                (label::REQUEST_CODE, request.to_string()),
                (label::RESPONSE_CODE, response.to_string()),
            ]);
            // The encoder sums the buckets up itself: hand it each bucket's own count, and the
            // rest (slower than the last bound) as the +Inf bucket.
            let count = h.count.load(Ordering::Relaxed);
            let mut within = 0;
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_MS.len() + 1);
            for (bound, n) in LATENCY_BUCKETS_MS.iter().zip(&h.buckets) {
                let n = n.load(Ordering::Relaxed);
                within += n;
                buckets.push((*bound as f64, n));
            }
            // The encoder writes `+Inf` for f64::MAX (and `inf` for infinity).
            buckets.push((f64::MAX, count.saturating_sub(within)));
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e3;
            family
                .encode_family(&labels)?
                .encode_histogram::<Labels>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}
