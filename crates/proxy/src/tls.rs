//! The gRPC port's connections: TLS and plaintext on one port, as on the Java proxy's 8081
//! (Java and Go SDKs dial TLS by default, trusting any certificate; the others plaintext).
//! Classification and handshakes are the remoting crate's [`ServerTls`], shared with the
//! remoting ports so `tls.server.mode` and the certificate files mean the same everywhere;
//! this module only adapts the streams to tonic.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferrymq_remoting::tls::{MaybeTlsStream, ServerTls, HANDSHAKE_TIMEOUT};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, warn};

/// An accepted connection, plaintext or TLS, as tonic wants it.
pub(crate) struct ProxyStream(MaybeTlsStream);

impl Connected for ProxyStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.tcp().local_addr().ok(),
            remote_addr: self.0.tcp().peer_addr().ok(),
        }
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Accepts connections, classifies each on its own task (a slow handshake must not hold up
/// the others) and hands ready streams to the gRPC server through the returned channel. The
/// accept loop ends when the receiver is dropped (server shut down).
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> mpsc::Receiver<io::Result<ProxyStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(ProxyStream(stream))).await;
                    }
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "gRPC connection dropped before HTTP/2")
                    }
                    Err(_) => debug!(%peer, "gRPC connection silent or handshake too slow"),
                }
            });
        }
    });
    rx
}

/// The address a listener is bound to, for logs and tests.
pub(crate) fn bound(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
