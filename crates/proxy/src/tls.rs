//! One port for TLS and plaintext gRPC: the Java and Go SDKs connect with TLS by default
//! (trusting any certificate), the others in plaintext, and the Java proxy serves both on 8081.
//! Each accepted connection is classified by its first byte (0x16 = a TLS handshake record)
//! without consuming it; TLS connections are then handshaken with a certificate that is
//! either configured or self-signed and generated on first use, so start-up pays nothing for
//! TLS that no client uses.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, warn};

use crate::error::ProxyError;

/// First byte of a TLS record carrying a handshake message (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a new connection may stay silent (or take to finish its TLS handshake) before it
/// is dropped; keeps half-open sockets from piling up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and private key in PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
}

/// Where the TLS server configuration comes from; built at most once.
pub(crate) struct TlsSource {
    files: Option<TlsFiles>,
    config: OnceLock<Result<Arc<ServerConfig>, String>>,
}

impl TlsSource {
    pub fn new(files: Option<TlsFiles>) -> TlsSource {
        TlsSource {
            files,
            config: OnceLock::new(),
        }
    }

    /// Checks configured files at start (a typo should fail start-up, not the first client).
    pub fn validate(&self) -> Result<(), ProxyError> {
        if self.files.is_some() {
            self.acceptor().map_err(ProxyError::Tls)?;
        }
        Ok(())
    }

    fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let config = self
            .config
            .get_or_init(|| build_config(self.files.as_ref()).map(Arc::new));
        config.clone().map(TlsAcceptor::from)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build_config(files: Option<&TlsFiles>) -> Result<ServerConfig, String> {
    let (chain, key) = match files {
        Some(f) => load_pem(f)?,
        None => self_signed()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate/key rejected: {e}"))?;
    // gRPC needs HTTP/2; Java and Go clients offer it by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A fresh self-signed certificate for `localhost`/loopback: clients of this endpoint trust any
/// certificate (Java `sslEnabled` trust-all, Go `InsecureSkipVerify`).
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| format!("generated key: {e}"))?;
    Ok((vec![cert.cert.der().clone()], key))
}

fn load_pem(
    files: &TlsFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(&files.cert_chain)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", files.cert_chain.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", files.cert_chain.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .map_err(|e| format!("{}: {e}", files.private_key.display()))?;
    Ok((chain, key))
}

/// An accepted connection, plaintext or TLS.
pub(crate) enum ProxyStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ProxyStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ProxyStream::Plain(s) => s,
            ProxyStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl Connected for ProxyStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.tcp().local_addr().ok(),
            remote_addr: self.tcp().peer_addr().ok(),
        }
    }
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ProxyStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ProxyStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ProxyStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ProxyStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ProxyStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ProxyStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ProxyStream::Plain(s) => s.is_write_vectored(),
            ProxyStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ProxyStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ProxyStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ProxyStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ProxyStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts connections, classifies each on its own task (a slow handshake must not hold up
/// the others) and hands ready streams to the gRPC server through the returned channel. The
/// accept loop ends when the receiver is dropped (server shut down).
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<TlsSource>,
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
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, classify(tcp, &tls)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
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

async fn classify(tcp: TcpStream, tls: &TlsSource) -> io::Result<ProxyStream> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if first[0] != TLS_HANDSHAKE {
        return Ok(ProxyStream::Plain(tcp));
    }
    let acceptor = tls.acceptor().map_err(io::Error::other)?;
    let stream = acceptor.accept(tcp).await?;
    Ok(ProxyStream::Tls(Box::new(stream)))
}

/// The address a listener is bound to, for logs and tests.
pub(crate) fn bound(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
