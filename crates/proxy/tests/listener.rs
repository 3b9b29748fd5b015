//! The gRPC port accepts both plaintext HTTP/2 and TLS (self-signed, ALPN h2) on one socket,
//! as the Java proxy does: the Java and Go SDKs default to TLS, the others to plaintext.

use ferrymq_proxy::{Proxy, ProxyConfig};
use ferrymq_remoting::ClientTls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

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
    // Trusts any certificate, like the SDKs' default TLS mode.
    let client = ClientTls::new(None, vec![b"h2".to_vec()]).unwrap();
    let tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let tls = client
        .connect("localhost", tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]));
    expect_http2(tls).await;
    proxy.shutdown().await;
}
