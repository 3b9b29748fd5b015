//! Metrics exposition, shared by the broker, the NameServer and the gRPC proxy: RocketMQ 5.x's
//! PROM exporter (`metricsExporterType=PROM`) serves the Prometheus text format at `/metrics`
//! on `metricsPromExporterPort` (5557), and so does [`MetricsEndpoint`].
//!
//! Components keep their own counters (plain atomics on their hot paths) and register a
//! [`prometheus_client::collector::Collector`] that reads them at scrape time; this crate only
//! owns the registry plumbing, the label vocabulary and the HTTP side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use prometheus_client;

pub mod series;

/// RocketMQ's metric label names.
pub mod label {
    pub const CLUSTER: &str = "cluster";
    pub const NODE_TYPE: &str = "node_type";
    pub const NODE_ID: &str = "node_id";
    pub const TOPIC: &str = "topic";
    pub const CONSUMER_GROUP: &str = "consumer_group";
    pub const MESSAGE_TYPE: &str = "message_type";
    pub const REQUEST_CODE: &str = "request_code";
    pub const RESPONSE_CODE: &str = "response_code";
    pub const PROTOCOL_TYPE: &str = "protocol_type";
    pub const CAUSE: &str = "cause";
}

/// `metricsExporterType`: DISABLE (the default) or PROM. Java's OTLP_GRPC and LOG exporters
/// are not implemented and are refused by the config checks of each component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterType {
    Disable,
    Prom,
}

impl ExporterType {
    pub fn parse(value: &str) -> Option<ExporterType> {
        match value.trim().to_ascii_uppercase().as_str() {
            "" | "DISABLE" => Some(ExporterType::Disable),
            "PROM" => Some(ExporterType::Prom),
            _ => None,
        }
    }
}

/// Where `/metrics` is served under RocketMQ's keys (`metricsExporterType`,
/// `metricsPromExporterHost`, `metricsPromExporterPort`): `None` unless the type is PROM.
pub fn exporter_addr(exporter_type: &str, host: &str, port: u16) -> Option<SocketAddr> {
    if ExporterType::parse(exporter_type) != Some(ExporterType::Prom) {
        return None;
    }
    let ip = host
        .trim()
        .parse()
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    Some(SocketAddr::new(ip, port))
}

/// Serves `/metrics` from a registry; everything else is 404.
pub struct MetricsEndpoint {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves the registry until [`MetricsEndpoint::shutdown`].
    pub async fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<MetricsEndpoint> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let registry = Arc::new(registry);
        let task = tokio::spawn(accept_loop(listener, registry, stop.clone()));
        tracing::info!(%local_addr, "metrics endpoint serving /metrics");
        Ok(MetricsEndpoint {
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&registry, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, "metrics connection ended");
                },
            }
        });
    }
}

fn answer(registry: &Registry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        resp
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_owned(),
        );
    }
    let mut text = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}
