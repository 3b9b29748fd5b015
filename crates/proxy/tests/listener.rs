//! The gRPC port accepts both plaintext HTTP/2 and TLS (self-signed, ALPN h2) on one socket,
//! as the Java proxy does: the Java and Go SDKs default to TLS, the others to plaintext.

use std::sync::Arc;

use ferrymq_proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Trusts any certificate, like the SDKs' default TLS mode.
#[derive(Debug)]
struct TrustAll;

impl ServerCertVerifier for TrustAll {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn start() -> Proxy {
    // Nothing listens on port 1: the listener works without a reachable cluster.
    let config = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ProxyConfig::new("127.0.0.1:1")
    };
    Proxy::start(config).await.expect("proxy starts")
}

/// Speaks the HTTP/2 preface and expects the server's SETTINGS frame back.
async fn expect_http2<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&EMPTY_SETTINGS).await.unwrap();
    s.flush().await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("server answered in time")
        .expect("frame header");
    assert_eq!(head[3], 4, "first server frame is SETTINGS: {head:?}");
}

#[tokio::test]
async fn plaintext_http2_is_served() {
    let proxy = start().await;
    let tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    expect_http2(tcp).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_with_generated_certificate_and_alpn_h2() {
    let proxy = start().await;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAll))
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    expect_http2(tls).await;
    proxy.shutdown().await;
}
