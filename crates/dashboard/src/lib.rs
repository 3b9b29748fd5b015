//! The built-in dashboard: what operators otherwise run rocketmq-dashboard (a separate Java
//! app) for, served over HTTP by `ferrymq standalone`, `ferrymq broker` (port 8080 unless
//! turned off) or `ferrymq dashboard`.
//!
//! One page (plain HTML/JS/CSS compiled into the binary, no build step, no CDN) over a small
//! JSON API. Every API call is an [`Admin`] call of the Rust client — the same code path
//! `ferrymq admin` uses — so the dashboard has no second implementation of anything a
//! broker or name server does, and a broker refusing a call refuses it here too.
//!
//! With ACL on ([`LoginMode::Required`]) visitors sign in with their own ACL 1.0 access key
//! or ACL 2.0 username and secret; their session's admin client signs every request with
//! those credentials, so what they can see and change is exactly what the brokers' ACL
//! allows them ([`session`]).

mod api;
mod error;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferrymq_client::ClientOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::DashboardError;
pub use session::LoginMode;

/// RocketMQ dashboard's usual port.
pub const DEFAULT_PORT: u16 = 8080;

/// Where and how the dashboard runs.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// How the admin clients reach the cluster (name servers, TLS, timeouts). Credentials in
    /// here are used only in [`LoginMode::Open`].
    pub client: ClientOptions,
    /// Whether visitors must sign in (ACL on) or not.
    pub login: LoginMode,
    /// The topic message traces are read from (`msgTraceTopicName`).
    pub trace_topic: String,
}

impl DashboardConfig {
    /// A dashboard on `listen` over the cluster of `namesrv_addr`, without sign-in.
    pub fn new(listen: SocketAddr, namesrv_addr: impl Into<String>) -> DashboardConfig {
        DashboardConfig {
            listen,
            client: ClientOptions {
                namesrv_addr: Some(namesrv_addr.into()),
                ..ClientOptions::default()
            },
            login: LoginMode::Open,
            trace_topic: ferrymq_protocol::naming::TRACE_TOPIC.to_owned(),
        }
    }
}

/// A running dashboard.
pub struct Dashboard {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    state: Arc<api::AppState>,
}

impl Dashboard {
    /// Binds the port and starts serving.
    pub async fn serve(config: DashboardConfig) -> Result<Dashboard, DashboardError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| DashboardError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind {
                addr: config.listen,
                source,
            })?;
        let state = Arc::new(api::AppState::new(config).await?);
        let stop = CancellationToken::new();
        let app = router(state.clone());
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stopping.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "dashboard stopped");
            }
        });
        let sweeper = state.clone();
        let sweep_stop = stop.clone();
        tokio::spawn(async move { sweeper.sessions.sweep_loop(sweep_stop).await });
        tracing::info!(addr = %local_addr, "dashboard serving http://{local_addr}/");
        Ok(Dashboard {
            local_addr,
            stop,
            task,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and closes every admin client.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.state.shutdown().await;
    }
}

fn router(state: Arc<api::AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/app.css", get(|| async { asset("text/css", APP_CSS) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/session", get(api::session_info))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/overview", get(api::overview))
        .route("/api/topics", get(api::topics).post(api::create_topic))
        .route(
            "/api/topics/{topic}",
            get(api::topic_detail).delete(api::delete_topic),
        )
        .route("/api/groups", get(api::groups))
        .route("/api/groups/{group}", get(api::group_detail))
        .route("/api/groups/{group}/reset", post(api::reset_offset))
        .route("/api/messages", get(api::messages))
        .route("/api/trace", get(api::trace))
        .fallback(|| async { error::DashboardError::NotFound("no such page".into()) })
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
