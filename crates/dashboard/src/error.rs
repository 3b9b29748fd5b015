//! The dashboard's one error type and how each cause reaches the browser: an HTTP status
//! chosen from the RocketMQ response code when a server refused, and a JSON body
//! `{"error": "...", "code": <RocketMQ code or null>}` the page shows as it is.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrymq_client::ClientError;
use ferrymq_protocol::ResponseCode;

/// Why a dashboard request (or the dashboard itself) failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The HTTP port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A cluster call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No (or an expired) session while sign-in is required.
    #[error("{0}")]
    Unauthorized(String),
    /// The request itself is wrong (missing field, bad number, bad name).
    #[error("{0}")]
    BadRequest(String),
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl DashboardError {
    fn status(&self) -> StatusCode {
        match self {
            DashboardError::Bind { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            DashboardError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            DashboardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashboardError::NotFound(_) => StatusCode::NOT_FOUND,
            DashboardError::Client(e) => match e {
                ClientError::Broker { code, .. } => match code {
                    ResponseCode::NoPermission => StatusCode::FORBIDDEN,
                    ResponseCode::TopicNotExist
                    | ResponseCode::SubscriptionGroupNotExist
                    | ResponseCode::QueryNotFound => StatusCode::NOT_FOUND,
                    ResponseCode::InvalidParameter => StatusCode::BAD_REQUEST,
                    _ => StatusCode::BAD_GATEWAY,
                },
                ClientError::NoRoute(_) => StatusCode::NOT_FOUND,
                ClientError::InvalidArgument(_) | ClientError::InvalidMessage(_) => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let code = match &self {
            DashboardError::Client(e) => e.response_code().map(|c| c.value()),
            _ => None,
        };
        let body = serde_json::json!({ "error": self.to_string(), "code": code });
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ResponseCode) -> DashboardError {
        DashboardError::Client(ClientError::Broker {
            code,
            remark: "no".into(),
            addr: "b:1".into(),
        })
    }

    #[test]
    fn refusals_map_to_statuses() {
        assert_eq!(
            refused(ResponseCode::NoPermission).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refused(ResponseCode::TopicNotExist).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            refused(ResponseCode::SystemError).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            DashboardError::Unauthorized("sign in".into()).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
