//! TLS for RocketMQ ports (remoting here, gRPC in the proxy), with RocketMQ's three server modes:
//! `disabled` (plaintext only), `permissive` (TLS and plaintext on one port, Java's default) and
//! `enforcing` (TLS only). A connection is classified by its first byte without consuming it:
//! 0x16 starts a TLS handshake record, anything else is a plaintext frame.
//!
//! Certificates come from PEM files (`tls.server.certPath`/`tls.server.keyPath`); without them a
//! self-signed certificate is made on the first TLS connection, as Java's `tls.test.mode.enable`
//! does, so start-up pays nothing for TLS no client uses. Clients trust any certificate unless
//! given a CA file, which is what every RocketMQ SDK does by default (`tls.client.authServer`
//! false, gRPC SDKs' trust-all).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// First byte of a TLS record carrying a handshake message (the ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;
/// How long a new connection may stay silent, or take over its handshake, before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// RocketMQ's `tls.server.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plaintext only; a TLS ClientHello is read as a (bad) frame.
    Disabled,
    /// TLS and plaintext on the same port.
    #[default]
    Permissive,
    /// TLS only; plaintext connections are closed at once.
    Enforcing,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disabled" => Ok(TlsMode::Disabled),
            "permissive" => Ok(TlsMode::Permissive),
            "enforcing" => Ok(TlsMode::Enforcing),
            other => Err(format!(
                "`{other}` is not disabled, permissive or enforcing"
            )),
        }
    }
}

/// A certificate chain and its private key, in PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
}

/// The server side: mode plus the certificate, loaded (or generated) at most once.
pub struct ServerTls {
    mode: TlsMode,
    files: Option<TlsFiles>,
    alpn: Vec<Vec<u8>>,
    config: OnceLock<Result<Arc<rustls::ServerConfig>, String>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mode", &self.mode)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// `alpn`: protocols to offer (gRPC needs `h2`; remoting none).
    pub fn new(mode: TlsMode, files: Option<TlsFiles>, alpn: Vec<Vec<u8>>) -> ServerTls {
        ServerTls {
            mode,
            files,
            alpn,
            config: OnceLock::new(),
        }
    }

    /// Builds from RocketMQ's keys: `tls.server.mode` and `tls.server.certPath` /
    /// `tls.server.keyPath` (both or neither; neither = self-signed).
    pub fn from_keys(
        mode: &str,
        cert_path: Option<&str>,
        key_path: Option<&str>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<ServerTls, String> {
        let mode: TlsMode = mode.parse().map_err(|e| format!("tls.server.mode: {e}"))?;
        fn nonempty(p: Option<&str>) -> Option<&str> {
            p.map(str::trim).filter(|p| !p.is_empty())
        }
        let files = match (nonempty(cert_path), nonempty(key_path)) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert_chain: cert.into(),
                private_key: key.into(),
            }),
            _ => {
                return Err(
                    "tls.server.certPath and tls.server.keyPath must be given together".into(),
                )
            }
        };
        let tls = ServerTls::new(mode, files, alpn);
        tls.validate()?;
        Ok(tls)
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Loads configured files now, so a typo fails start-up rather than the first client.
    pub fn validate(&self) -> Result<(), String> {
        if self.files.is_some() && self.mode != TlsMode::Disabled {
            self.acceptor()?;
        }
        Ok(())
    }

    fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let config = self
            .config
            .get_or_init(|| server_config(self.files.as_ref(), &self.alpn).map(Arc::new));
        config.clone().map(TlsAcceptor::from)
    }

    /// Classifies an accepted socket and, for TLS, runs the handshake. Errors mean the
    /// connection is to be dropped (plaintext under `enforcing`, a failed handshake, EOF).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<MaybeTlsStream> {
        if self.mode == TlsMode::Disabled {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[0] != TLS_HANDSHAKE {
            if self.mode == TlsMode::Enforcing {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "plaintext connection refused (tls.server.mode=enforcing)",
                ));
            }
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let acceptor = self.acceptor().map_err(io::Error::other)?;
        Ok(MaybeTlsStream::ServerTls(Box::new(
            acceptor.accept(tcp).await?,
        )))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    files: Option<&TlsFiles>,
    alpn: &[Vec<u8>],
) -> Result<rustls::ServerConfig, String> {
    let (chain, key) = match files {
        Some(f) => load_pem(f)?,
        None => self_signed()?,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate/key rejected: {e}"))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

/// A fresh self-signed certificate for localhost and loopback.
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

fn load_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(chain)
}

fn load_pem(
    files: &TlsFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    use rustls::pki_types::pem::PemObject;
    let chain = load_certs(&files.cert_chain)?;
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .map_err(|e| format!("{}: {e}", files.private_key.display()))?;
    Ok((chain, key))
}

/// The dialling side: a connector that trusts either any certificate or a CA file.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts any server certificate (RocketMQ clients' default); handshake signatures are
    /// still verified, so the session key is bound to the certificate that was presented.
    pub fn trust_any() -> Result<ClientTls, String> {
        ClientTls::new(None, Vec::new())
    }

    /// Trusts only servers whose certificate chains to one in `ca_file` (PEM), or any server
    /// without one; offers `alpn` (gRPC: `h2`).
    pub fn new(ca_file: Option<&PathBuf>, alpn: Vec<Vec<u8>>) -> Result<ClientTls, String> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match ca_file {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in load_certs(ca_file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca_file.display()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        config.alpn_protocols = alpn;
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the client handshake over `tcp`; `host` is the name (or IP) dialled.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<MaybeTlsStream> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = self.connector.connect(name, tcp).await?;
        Ok(MaybeTlsStream::ClientTls(Box::new(stream)))
    }
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A socket that is plaintext or TLS (either side).
pub enum MaybeTlsStream {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::ServerTls(s) => s.get_ref().0,
            MaybeTlsStream::ClientTls(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, MaybeTlsStream::Plain(_))
    }

    /// The protocol agreed by ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            MaybeTlsStream::Plain(_) => None,
            MaybeTlsStream::ServerTls(s) => s.get_ref().1.alpn_protocol(),
            MaybeTlsStream::ClientTls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

macro_rules! each_stream {
    ($self:expr, $s:ident => $body:expr) => {
        match $self.get_mut() {
            MaybeTlsStream::Plain($s) => {
                let $s = Pin::new($s);
                $body
            }
            MaybeTlsStream::ServerTls($s) => {
                let $s = Pin::new($s.as_mut());
                $body
            }
            MaybeTlsStream::ClientTls($s) => {
                let $s = Pin::new($s.as_mut());
                $body
            }
        }
    };
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::ServerTls(s) => s.is_write_vectored(),
            MaybeTlsStream::ClientTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_like_rocketmq() {
        assert_eq!("enforcing".parse(), Ok(TlsMode::Enforcing));
        assert_eq!("Permissive".parse(), Ok(TlsMode::Permissive));
        assert_eq!("disabled".parse(), Ok(TlsMode::Disabled));
        assert!("strict".parse::<TlsMode>().is_err());
    }

    #[test]
    fn missing_files_are_reported_at_validation() {
        let tls = ServerTls::new(
            TlsMode::Enforcing,
            Some(TlsFiles {
                cert_chain: "/nonexistent/cert.pem".into(),
                private_key: "/nonexistent/key.pem".into(),
            }),
            Vec::new(),
        );
        let e = tls.validate().unwrap_err();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
