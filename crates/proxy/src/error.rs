//! Why the proxy could not start. Errors of single RPCs are not Rust errors: they are answered
//! in the response's `Status` (see `status.rs`).

use std::net::SocketAddr;

/// Start-up failures of the gRPC endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The client towards name servers and brokers could not start (e.g. no name server).
    #[error("cannot start the broker client: {0}")]
    Client(#[from] ferrymq_client::ClientError),
    /// The configured certificate or key could not be used.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The ACL file could not be used.
    #[error(transparent)]
    Acl(#[from] ferrymq_auth::AclFileError),
}
