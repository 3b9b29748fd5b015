//! Transport behaviour over real loopback sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use ferrymq_remoting::{
    ClientConfig, ClientTls, Connection, ConnectionConfig, RemotingClient, RemotingServer,
    RequestHandler, ServerConfig, ServerTls, TlsFiles, TlsMode, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes the body of GET_KV_CONFIG, sleeps for the ms given in the body of GET_BROKER_CONFIG,
/// counts one-way UPDATE_CONSUMER_OFFSET calls, and calls back into the client on HEART_BEAT.
#[derive(Default)]
struct TestHandler {
    oneway_seen: AtomicUsize,
    closed: AtomicUsize,
}

impl RequestHandler for TestHandler {
    async fn handle(&self, conn: &Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        match request.request_code() {
            RequestCode::GetKvConfig => Some(
                RemotingCommand::response_to(&request, ResponseCode::Success)
                    .with_body(request.body.to_bytes()),
            ),
            RequestCode::GetBrokerConfig => {
                let ms: u64 = String::from_utf8_lossy(&request.body.to_bytes())
                    .parse()
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Some(RemotingCommand::response_to(
                    &request,
                    ResponseCode::Success,
                ))
            }
            RequestCode::UpdateConsumerOffset => {
                self.oneway_seen.fetch_add(1, Ordering::SeqCst);
                Some(RemotingCommand::response_to(
                    &request,
                    ResponseCode::Success,
                ))
            }
            RequestCode::HeartBeat => {
                let call = RemotingCommand::request(RequestCode::GetConsumerRunningInfo);
                let answer = conn.invoke(call, Duration::from_secs(3)).await.ok()?;
                Some(
                    RemotingCommand::response_to(&request, ResponseCode::Success)
                        .with_body(answer.body.to_bytes()),
                )
            }
            _ => Some(RemotingCommand::unsupported(&request)),
        }
    }

    fn on_connection_closed(&self, _conn: &Connection) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers a server-initiated GET_CONSUMER_RUNNING_INFO with a fixed body.
struct ClientSide;

impl RequestHandler for ClientSide {
    async fn handle(
        &self,
        _conn: &Connection,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        Some(
            RemotingCommand::response_to(&request, ResponseCode::Success)
                .with_body(b"client-info".to_vec()),
        )
    }
}

async fn start(config: ConnectionConfig) -> (RemotingServer, Arc<TestHandler>, String) {
    start_with_tls(config, None).await
}

async fn start_with_tls(
    config: ConnectionConfig,
    tls: Option<ServerTls>,
) -> (RemotingServer, Arc<TestHandler>, String) {
    let handler = Arc::new(TestHandler::default());
    let server = RemotingServer::bind(
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connection: config,
            tls: tls.map(Arc::new),
        },
        handler.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    (server, handler, addr)
}

fn echo(body: &[u8], ty: SerializeType) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::GetKvConfig).with_body(body.to_vec());
    cmd.serialize_type = ty;
    cmd
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn request_response_both_header_types_and_large_bodies() {
    let (server, _h, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    for ty in [SerializeType::Json, SerializeType::RocketMq] {
        let resp = client.invoke(&addr, echo(b"hello", ty), T).await.unwrap();
        assert!(resp.is_response());
        assert_eq!(resp.response_code(), ResponseCode::Success);
        assert_eq!(&resp.body.to_bytes()[..], b"hello");
        assert_eq!(
            resp.serialize_type,
            SerializeType::Json,
            "replies are JSON by default"
        );
    }
    // Above the zero-copy threshold the body is written from its own buffer.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let resp = client
        .invoke(&addr, echo(&big, SerializeType::Json), T)
        .await
        .unwrap();
    assert_eq!(resp.body.to_bytes(), Bytes::from(big));
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_are_correlated_by_opaque() {
    let (server, _h, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    let mut calls = Vec::new();
    for i in 0..500u32 {
        let client = client.clone();
        let addr = addr.clone();
        calls.push(tokio::spawn(async move {
            let body = i.to_string();
            let resp = client
                .invoke(&addr, echo(body.as_bytes(), SerializeType::Json), T)
                .await
                .unwrap();
            assert_eq!(resp.body.to_bytes(), Bytes::from(body));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_codes_are_not_supported_and_oneway_gets_no_reply() {
    let (server, handler, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    let resp = client
        .invoke(
            &addr,
            RemotingCommand::request(RequestCode::Unknown(9999)),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp.response_code(), ResponseCode::RequestCodeNotSupported);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 9999 not supported")
    );

    client
        .invoke_oneway(
            &addr,
            RemotingCommand::request(RequestCode::UpdateConsumerOffset),
        )
        .await
        .unwrap();
    // A follow-up call proves the one-way request was processed and nothing else arrived:
    // a stray reply would carry an unknown opaque and be dropped, never matched.
    let resp = client
        .invoke(&addr, echo(b"x", SerializeType::Json), T)
        .await
        .unwrap();
    assert_eq!(&resp.body.to_bytes()[..], b"x");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(handler.oneway_seen.load(Ordering::SeqCst), 1);
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let (server, handler, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    client
        .invoke(&addr, echo(b"a", SerializeType::Json), T)
        .await
        .unwrap();

    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(T, raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the server closes a connection that sent garbage");

    let resp = client
        .invoke(&addr, echo(b"still", SerializeType::Json), T)
        .await
        .unwrap();
    assert_eq!(&resp.body.to_bytes()[..], b"still");
    assert!(handler.closed.load(Ordering::SeqCst) >= 1);
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_reconnects() {
    let (server, _h, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    let slow = RemotingCommand::request(RequestCode::GetBrokerConfig).with_body(b"500".to_vec());
    let err = client
        .invoke(&addr, slow, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout(_)), "{err}");

    let conn = client.connection(&addr).await.unwrap();
    conn.close();
    let resp = client
        .invoke(&addr, echo(b"again", SerializeType::Json), T)
        .await
        .unwrap();
    assert_eq!(&resp.body.to_bytes()[..], b"again");
    assert_ne!(client.connection(&addr).await.unwrap().id(), conn.id());

    let err = client
        .invoke("127.0.0.1:1", echo(b"x", SerializeType::Json), T)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn callers_racing_for_a_connection_share_one_dial() {
    let (server, h, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    let dials = (0..32).map(|_| {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move { client.connection(&addr).await.unwrap().id() })
    });
    let mut ids = Vec::new();
    for d in dials {
        ids.push(d.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one connection for all callers");
    // No extra socket was opened and closed again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.closed.load(Ordering::SeqCst), 0);

    // Callers waiting behind a failed dial fail with it.
    let failed = (0..8).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.connection("127.0.0.1:1").await.map(|c| c.id()) })
    });
    for f in failed {
        let err = f.await.unwrap().unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    }
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let config = ConnectionConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..ConnectionConfig::default()
    };
    let (server, handler, addr) = start(config).await;
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(T, raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(handler.closed.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn servers_call_back_into_clients_on_their_connection() {
    let (server, _h, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::with_handler(ClientConfig::default(), Arc::new(ClientSide));
    let resp = client
        .invoke(&addr, RemotingCommand::request(RequestCode::HeartBeat), T)
        .await
        .unwrap();
    assert_eq!(&resp.body.to_bytes()[..], b"client-info");
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_limit_answers_system_busy() {
    let config = ConnectionConfig {
        max_in_flight: 2,
        ..ConnectionConfig::default()
    };
    let (server, _h, addr) = start(config).await;
    let client = RemotingClient::new(ClientConfig::default());
    let mut slow = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            let cmd =
                RemotingCommand::request(RequestCode::GetBrokerConfig).with_body(b"400".to_vec());
            client.invoke(&addr, cmd, T).await.unwrap()
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = client
        .invoke(&addr, echo(b"x", SerializeType::Json), T)
        .await
        .unwrap();
    assert_eq!(busy.response_code(), ResponseCode::SystemBusy);
    assert!(busy.remark.unwrap().starts_with("[OVERLOAD]"));
    for s in slow {
        assert_eq!(s.await.unwrap().response_code(), ResponseCode::Success);
    }
    client.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let (server, _h, addr) = start(ConnectionConfig::default()).await;
    let client = RemotingClient::new(ClientConfig::default());
    client
        .invoke(&addr, echo(b"warm", SerializeType::Json), T)
        .await
        .unwrap();
    let call = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let cmd =
                RemotingCommand::request(RequestCode::GetBrokerConfig).with_body(b"300".to_vec());
            client.invoke(&addr, cmd, T).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success);
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "listener closed"
    );
    client.shutdown();
}

fn tls_client() -> RemotingClient {
    RemotingClient::with_handler(
        ClientConfig {
            tls: Some(ClientTls::trust_any().unwrap()),
            ..ClientConfig::default()
        },
        Arc::new(ClientSide),
    )
}

/// One round trip with a body above the zero-copy threshold and a server → client call.
async fn exercise(client: &RemotingClient, addr: &str) -> Result<(), TransportError> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let resp = client
        .invoke(addr, echo(&big, SerializeType::Json), T)
        .await?;
    assert_eq!(resp.body.to_bytes(), Bytes::from(big));
    let resp = client
        .invoke(addr, RemotingCommand::request(RequestCode::HeartBeat), T)
        .await?;
    assert_eq!(&resp.body.to_bytes()[..], b"client-info");
    Ok(())
}

#[tokio::test]
async fn tls_permissive_serves_tls_and_plaintext_on_one_port() {
    let tls = ServerTls::new(TlsMode::Permissive, None, Vec::new());
    let (server, _h, addr) = start_with_tls(ConnectionConfig::default(), Some(tls)).await;
    let plain = RemotingClient::with_handler(ClientConfig::default(), Arc::new(ClientSide));
    exercise(&plain, &addr).await.expect("plaintext accepted");
    let tls = tls_client();
    exercise(&tls, &addr).await.expect("TLS accepted");
    assert!(tls.connection(&addr).await.unwrap().is_tls());
    assert!(!plain.connection(&addr).await.unwrap().is_tls());
    plain.shutdown();
    tls.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn tls_enforcing_refuses_plaintext() {
    let tls = ServerTls::new(TlsMode::Enforcing, None, Vec::new());
    let (server, _h, addr) = start_with_tls(ConnectionConfig::default(), Some(tls)).await;
    let plain = RemotingClient::new(ClientConfig::default());
    let refused = plain
        .invoke(&addr, echo(b"x", SerializeType::Json), T)
        .await;
    assert!(
        matches!(refused, Err(TransportError::ConnectionClosed)),
        "plaintext must be refused: {refused:?}"
    );
    let tls = tls_client();
    exercise(&tls, &addr).await.expect("TLS accepted");
    plain.shutdown();
    tls.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn tls_disabled_serves_plaintext_only() {
    let tls = ServerTls::new(TlsMode::Disabled, None, Vec::new());
    let (server, _h, addr) = start_with_tls(ConnectionConfig::default(), Some(tls)).await;
    let tls = tls_client();
    assert!(tls
        .invoke(&addr, echo(b"x", SerializeType::Json), T)
        .await
        .is_err());
    let plain = RemotingClient::with_handler(ClientConfig::default(), Arc::new(ClientSide));
    exercise(&plain, &addr).await.expect("plaintext accepted");
    plain.shutdown();
    tls.shutdown();
    server.shutdown().await;
}

#[tokio::test]
async fn tls_with_certificate_files_and_a_verifying_client() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("rocketmq.crt");
    let key_path = dir.path().join("rocketmq.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = ServerTls::from_keys(
        "enforcing",
        cert_path.to_str(),
        key_path.to_str(),
        Vec::new(),
    )
    .unwrap();
    let (server, _h, addr) = start_with_tls(ConnectionConfig::default(), Some(tls)).await;
    let port = addr.rsplit_once(':').unwrap().1;
    let verifying = RemotingClient::with_handler(
        ClientConfig {
            tls: Some(ClientTls::new(Some(&cert_path), Vec::new()).unwrap()),
            ..ClientConfig::default()
        },
        Arc::new(ClientSide),
    );
    // The certificate names localhost, and the client checks it against the CA file.
    exercise(&verifying, &format!("localhost:{port}"))
        .await
        .expect("verified TLS");
    // A certificate the client does not trust fails the handshake.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_path = dir.path().join("other.crt");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let distrusting = RemotingClient::new(ClientConfig {
        tls: Some(ClientTls::new(Some(&other_path), Vec::new()).unwrap()),
        ..ClientConfig::default()
    });
    assert!(distrusting
        .invoke(
            &format!("localhost:{port}"),
            echo(b"x", SerializeType::Json),
            T
        )
        .await
        .is_err());
    // Half a pair or a missing file is a start-up error naming the problem.
    assert!(ServerTls::from_keys("enforcing", cert_path.to_str(), None, Vec::new()).is_err());
    let missing = TlsFiles {
        cert_chain: dir.path().join("none.crt"),
        private_key: key_path.clone(),
    };
    assert!(
        ServerTls::new(TlsMode::Enforcing, Some(missing), Vec::new())
            .validate()
            .unwrap_err()
            .contains("none.crt")
    );
    verifying.shutdown();
    distrusting.shutdown();
    server.shutdown().await;
}
