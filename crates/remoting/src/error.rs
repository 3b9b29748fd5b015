//! Transport failures as seen by a caller of `invoke`.

use std::time::Duration;

/// Why a remote call did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid address `{0}`")]
    InvalidAddress(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the connection is closed")]
    ConnectionClosed,
}
