//! The one error type of the client.
//!
//! A broker or name server refusing a request becomes [`ClientError::Broker`] with the response
//! code and remark it sent; a request that never got an answer becomes
//! [`ClientError::Transport`]. Everything the client rejects before talking to anyone (a bad
//! message, a missing route, a stopped client) has its own variant, so callers can match on the
//! cause instead of parsing text.

use ferrymq_protocol::header::HeaderError;
use ferrymq_protocol::{RemotingCommand, ResponseCode};
use ferrymq_remoting::TransportError;

/// Result of every fallible client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error code.
    #[error("{addr} answered {code:?} ({}): {remark}", code.value())]
    Broker {
        /// The response code.
        code: ResponseCode,
        /// The server's explanation (may be empty).
        remark: String,
        /// The server that answered.
        addr: String,
    },
    /// The request could not be sent or no response arrived in time.
    #[error("request to {addr} failed: {source}")]
    Transport {
        /// Where the request was going.
        addr: String,
        /// What went wrong on the way.
        #[source]
        source: TransportError,
    },
    /// No name server address was configured (neither given nor in `NAMESRV_ADDR`).
    #[error("no name server address configured (set it on the builder or in NAMESRV_ADDR)")]
    NoNameServer,
    /// The name servers know no route for the topic (nor for the auto-create template).
    #[error("no route info of topic {0}")]
    NoRoute(String),
    /// The route names a broker whose address is unknown.
    #[error("broker {0} has no known address")]
    BrokerNotFound(String),
    /// The message was refused before sending (size, topic name, batch rules…).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// A call was given arguments it cannot work with.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A response could not be decoded.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The client was shut down (or never started).
    #[error("the client is shut down")]
    Shutdown,
    /// A sync send spent its whole time budget without success.
    #[error("send timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A request of request-reply was sent, but no reply came within its timeout.
    #[error("send request message to <{topic}> OK, but wait reply message timeout, {} ms", timeout.as_millis())]
    ReplyTimeout {
        /// The request's topic.
        topic: String,
        /// The request's whole time budget.
        timeout: std::time::Duration,
    },
}

impl ClientError {
    /// The broker response code, if the failure was a refusal by a server.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a producer should try the send again, on another broker if it can
    /// (behaviour.md §2.2): transport failures and the broker codes of Java's retry set.
    pub fn is_retryable_send(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::BrokerNotFound(_) => true,
            ClientError::Broker { code, .. } => matches!(
                code,
                ResponseCode::TopicNotExist
                    | ResponseCode::ServiceNotAvailable
                    | ResponseCode::SystemError
                    | ResponseCode::SystemBusy
                    | ResponseCode::NoPermission
                    | ResponseCode::NoBuyerId
                    | ResponseCode::NotInCurrentUnit
                    | ResponseCode::GoAway
            ),
            _ => false,
        }
    }

    pub(crate) fn broker(addr: &str, response: &RemotingCommand) -> ClientError {
        ClientError::Broker {
            code: response.response_code(),
            remark: response.remark.clone().unwrap_or_default(),
            addr: addr.to_owned(),
        }
    }

    pub(crate) fn transport(addr: &str, source: TransportError) -> ClientError {
        ClientError::Transport {
            addr: addr.to_owned(),
            source,
        }
    }

    pub(crate) fn header(addr: &str, e: HeaderError) -> ClientError {
        ClientError::Malformed(format!("response header from {addr}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::RequestCode;

    fn refused(code: ResponseCode) -> ClientError {
        let req = RemotingCommand::request(RequestCode::SendMessageV2);
        ClientError::broker("b:1", &RemotingCommand::error_response(&req, code, "no"))
    }

    #[test]
    fn retry_set_matches_java() {
        for code in [
            ResponseCode::TopicNotExist,
            ResponseCode::ServiceNotAvailable,
            ResponseCode::SystemError,
            ResponseCode::SystemBusy,
            ResponseCode::NoPermission,
            ResponseCode::NoBuyerId,
            ResponseCode::NotInCurrentUnit,
            ResponseCode::GoAway,
        ] {
            assert!(refused(code).is_retryable_send(), "{code:?}");
        }
        for code in [ResponseCode::MessageIllegal, ResponseCode::InvalidParameter] {
            assert!(!refused(code).is_retryable_send(), "{code:?}");
        }
        let e = refused(ResponseCode::MessageIllegal);
        assert_eq!(e.response_code(), Some(ResponseCode::MessageIllegal));
        assert!(e.to_string().contains("MessageIllegal (13): no"), "{e}");
        assert!(ClientError::transport("x", TransportError::ConnectionClosed).is_retryable_send());
    }
}
