//! The gRPC endpoint's metrics: `rocketmq_rpc_latency` by MessagingService method (with
//! `protocol_type="grpc"`; the response code is the call's grpc-status) and `rocketmq_proxy_up`.
//! [`Timed`] wraps the generated service, so every method is timed in one place.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use ferrymq_metrics::label;
use ferrymq_metrics::prometheus_client::collector::Collector;
use ferrymq_metrics::prometheus_client::encoding::DescriptorEncoder;
use ferrymq_metrics::series::{encode_gauge, Labels, RpcLatency};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;

/// The methods of `apache.rocketmq.v2.MessagingService`, so labels are static strings.
const METHODS: &[&str] = &[
    "QueryRoute",
    "Heartbeat",
    "SendMessage",
    "QueryAssignment",
    "ReceiveMessage",
    "AckMessage",
    "ForwardMessageToDeadLetterQueue",
    "PullMessage",
    "UpdateOffset",
    "GetOffset",
    "QueryOffset",
    "EndTransaction",
    "Telemetry",
    "NotifyClientTermination",
    "ChangeInvisibleDuration",
    "RecallMessage",
];

fn method_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or("");
    METHODS
        .iter()
        .copied()
        .find(|m| *m == name)
        .unwrap_or("other")
}

/// What the endpoint counts; nothing when metrics are off.
#[derive(Debug)]
pub struct ProxyMetrics {
    enabled: bool,
    rpc: RpcLatency<&'static str>,
}

impl ProxyMetrics {
    pub fn new(enabled: bool) -> ProxyMetrics {
        ProxyMetrics {
            enabled,
            rpc: RpcLatency::default(),
        }
    }
}

/// The generated service, timed.
#[derive(Clone)]
pub(crate) struct Timed<S> {
    pub inner: S,
    pub metrics: Arc<ProxyMetrics>,
}

impl<S: NamedService> NamedService for Timed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, RB> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !self.metrics.enabled {
            return Box::pin(self.inner.call(req));
        }
        let method = method_of(req.uri().path());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            // A failed call is answered with its status in the headers; a served one carries
            // it in the trailers, which is OK (RocketMQ codes travel in the response body).
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                Err(_) => 2,
            };
            metrics.rpc.observe(method, code, started.elapsed());
            result
        })
    }
}

/// Encodes the endpoint's metrics at scrape time.
#[derive(Debug)]
pub(crate) struct ProxyCollector {
    pub metrics: Arc<ProxyMetrics>,
    pub node_id: String,
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let node = |mut extra: Labels| {
            let mut labels = vec![
                (label::NODE_TYPE, "proxy".to_owned()),
                (label::NODE_ID, self.node_id.clone()),
            ];
            labels.append(&mut extra);
            labels
        };
        self.metrics.rpc.encode(&mut encoder, "grpc", node)?;
        encode_gauge(
            &mut encoder,
            "rocketmq_proxy_up",
            "1 while the gRPC endpoint serves",
            &[(node(Vec::new()), 1)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every request at once, with the grpc-status given (or none).
    #[derive(Clone)]
    struct Answer(Option<&'static str>);

    impl NamedService for Answer {
        const NAME: &'static str = "apache.rocketmq.v2.MessagingService";
    }

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut resp = http::Response::new(());
            if let Some(status) = self.0 {
                resp.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(status));
            }
            std::future::ready(Ok(resp))
        }
    }

    fn request(method: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(format!("/apache.rocketmq.v2.MessagingService/{method}"))
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn every_call_is_timed_by_method_and_status() {
        let metrics = Arc::new(ProxyMetrics::new(true));
        let mut ok = Timed {
            inner: Answer(None),
            metrics: metrics.clone(),
        };
        let mut failing = Timed {
            inner: Answer(Some("16")),
            metrics: metrics.clone(),
        };
        ok.call(request("SendMessage")).await.unwrap();
        ok.call(request("SendMessage")).await.unwrap();
        failing.call(request("QueryRoute")).await.unwrap();
        ok.call(request("NoSuchMethod")).await.unwrap();
        let mut registry = ferrymq_metrics::prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProxyCollector {
            metrics: metrics.clone(),
            node_id: "p".into(),
        }));
        let mut text = String::new();
        ferrymq_metrics::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let count = |method: &str, code: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("rocketmq_rpc_latency_count")
                        && l.contains(&format!("request_code=\"{method}\""))
                        && l.contains(&format!("response_code=\"{code}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(count("SendMessage", "0").as_deref(), Some("2"), "{text}");
        assert_eq!(count("QueryRoute", "16").as_deref(), Some("1"), "{text}");
        assert_eq!(count("other", "0").as_deref(), Some("1"), "{text}");
        assert!(text.contains("protocol_type=\"grpc\""));

        // Off: nothing is counted.
        let off = Arc::new(ProxyMetrics::new(false));
        let mut quiet = Timed {
            inner: Answer(None),
            metrics: off.clone(),
        };
        quiet.call(request("SendMessage")).await.unwrap();
        assert!(off.rpc.is_empty());
    }
}
