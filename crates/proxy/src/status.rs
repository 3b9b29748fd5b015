//! Business results as `apache.rocketmq.v2.Status`: the Java proxy answers every unary RPC
//! with gRPC OK and puts the outcome here, so clients branch on `status.code` (grpc-v5.md §2,
//! §5). Broker and transport failures are translated the way the Java proxy does.

use ferrymq_client::ClientError;
use ferrymq_protocol::ResponseCode;
use ferrymq_remoting::TransportError;

use crate::pb::{Code, Status};

/// A status with a message.
pub(crate) fn status(code: Code, message: impl Into<String>) -> Status {
    Status {
        code: code as i32,
        message: message.into(),
    }
}

/// `OK`.
pub(crate) fn ok() -> Status {
    status(Code::Ok, "OK")
}

/// A failure of one RPC: the code and the explanation sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn to_status(&self) -> Status {
        status(self.code, self.message.clone())
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match &e {
            ClientError::Broker { code, .. } => broker_code(*code),
            ClientError::NoRoute(_) => Code::TopicNotFound,
            ClientError::Transport {
                source: TransportError::Timeout(_),
                ..
            }
            | ClientError::Timeout(_) => Code::ProxyTimeout,
            ClientError::InvalidMessage(_) => Code::MessageCorrupted,
            ClientError::InvalidArgument(_) => Code::BadRequest,
            _ => Code::InternalServerError,
        };
        Failure::new(code, e.to_string())
    }
}

/// The gRPC code of a broker's refusal (Java proxy `ProxyException` mapping).
pub(crate) fn broker_code(code: ResponseCode) -> Code {
    match code {
        ResponseCode::Success => Code::Ok,
        ResponseCode::TopicNotExist => Code::TopicNotFound,
        ResponseCode::SubscriptionGroupNotExist => Code::ConsumerGroupNotFound,
        ResponseCode::SystemBusy | ResponseCode::PollingFull | ResponseCode::FlowControl => {
            Code::TooManyRequests
        }
        ResponseCode::NoPermission => Code::Forbidden,
        ResponseCode::MessageIllegal => Code::MessageCorrupted,
        ResponseCode::FlushDiskTimeout => Code::MasterPersistenceTimeout,
        ResponseCode::FlushSlaveTimeout => Code::SlavePersistenceTimeout,
        ResponseCode::SlaveNotAvailable => Code::HaNotAvailable,
        ResponseCode::NoMessage | ResponseCode::PollingTimeout | ResponseCode::PullNotFound => {
            Code::MessageNotFound
        }
        ResponseCode::InvalidParameter => Code::BadRequest,
        ResponseCode::VersionNotSupported => Code::VersionUnsupported,
        _ => Code::InternalServerError,
    }
}

/// The top-level status of a response with one entry per item: the common code, or
/// MULTIPLE_RESULTS when the entries differ (grpc-v5.md §9 step 7).
pub(crate) fn summarize<'a>(entries: impl IntoIterator<Item = &'a Status>) -> Status {
    let mut first: Option<&Status> = None;
    for s in entries {
        match first {
            None => first = Some(s),
            Some(f) if f.code != s.code => {
                return status(Code::MultipleResults, "multiple results")
            }
            Some(_) => {}
        }
    }
    first.cloned().unwrap_or_else(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_common_code_or_multiple() {
        let a = ok();
        let b = status(Code::InvalidReceiptHandle, "bad");
        assert_eq!(summarize([&a, &a]).code, Code::Ok as i32);
        assert_eq!(summarize([&b]).code, Code::InvalidReceiptHandle as i32);
        assert_eq!(summarize([&a, &b]).code, Code::MultipleResults as i32);
        assert_eq!(summarize([]).code, Code::Ok as i32);
    }

    #[test]
    fn broker_codes_map_like_the_java_proxy() {
        assert_eq!(
            broker_code(ResponseCode::TopicNotExist),
            Code::TopicNotFound
        );
        assert_eq!(
            broker_code(ResponseCode::PollingFull),
            Code::TooManyRequests
        );
        assert_eq!(
            broker_code(ResponseCode::Unknown(4242)),
            Code::InternalServerError
        );
        let e = ClientError::Transport {
            addr: "b".into(),
            source: TransportError::Timeout(std::time::Duration::from_secs(1)),
        };
        assert_eq!(Failure::from(e).code, Code::ProxyTimeout);
    }
}
