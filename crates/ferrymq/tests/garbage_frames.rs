//! 10,000 random, malformed and truncated remoting frames sent over real sockets to the
//! broker and NameServer ports of a real `ferrymq standalone` process; afterwards the process
//! must still be running and serve a normal producer and consumer. Inputs come from a fixed
//! seed, so a failure replays.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferrymq_client::consumer::{ConsumeFrom, LitePullConsumer};
use ferrymq_client::{Message, Producer, SendStatus};

const FRAMES: usize = 10_000;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn word(&mut self) -> String {
        let n = self.below(12) as usize;
        (0..n)
            .map(|_| {
                const ALPHABET: &[u8] = b"abcXYZ019_%-{}\":,\\ \x7f";
                char::from(ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            })
            .collect()
    }
}

/// A frame with a JSON header: total length, header length (serialize type 0), header, body.
fn json_frame(header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + header.len() + body.len());
    out.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// One hostile frame; the second value says the connection should be dropped after it (the
/// frame leaves the stream mid-frame).
fn hostile(rng: &mut Rng) -> (Vec<u8>, bool) {
    match rng.below(7) {
        // Noise.
        0 => {
            let n = 1 + rng.below(64) as usize;
            (rng.bytes(n), true)
        }
        // A length prefix far beyond any frame limit.
        1 => {
            let mut f = (0x7fff_fff0u32 - rng.below(1 << 20) as u32)
                .to_be_bytes()
                .to_vec();
            f.extend(rng.bytes(16));
            (f, true)
        }
        // Right lengths, garbage header.
        2 => {
            let n = rng.below(200) as usize;
            let h = String::from_utf8_lossy(&rng.bytes(n)).into_owned();
            let n = rng.below(32) as usize;
            (json_frame(&h, &rng.bytes(n)), false)
        }
        // A plausible request: any code (but UPDATE_BROKER_CONFIG), random fields and body.
        3 | 4 => {
            let mut code = rng.below(1100) as i64 - 50;
            if code == 25 {
                code = 26;
            }
            let mut ext = String::new();
            for i in 0..rng.below(6) {
                if i > 0 {
                    ext.push(',');
                }
                ext.push_str(&format!("\"{}\":\"{}\"", rng.word(), rng.word()));
            }
            let h = format!(
                "{{\"code\":{code},\"flag\":{},\"language\":\"JAVA\",\"opaque\":{},\"serializeTypeCurrentRPC\":\"JSON\",\"version\":{},\"extFields\":{{{ext}}}}}",
                rng.below(4),
                rng.next() as i32,
                rng.below(500)
            );
            let n = rng.below(300) as usize;
            let body = rng.bytes(n);
            let frame = json_frame(&h, &body);
            if rng.below(3) == 0 {
                // Truncated somewhere inside.
                let cut = 1 + rng.below(frame.len() as u64 - 1) as usize;
                (frame[..cut].to_vec(), true)
            } else {
                (frame, false)
            }
        }
        // Header length larger than the frame.
        5 => {
            let mut f = 20u32.to_be_bytes().to_vec();
            f.extend_from_slice(&(1000u32 + rng.below(1 << 24) as u32).to_be_bytes());
            f.extend(rng.bytes(16));
            (f, true)
        }
        // RocketMQ binary header (serialize type 1) full of noise.
        _ => {
            let n = rng.below(120) as usize;
            let mut f = ((4 + n) as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&((1u32 << 24) | n as u32).to_be_bytes());
            f.extend(rng.bytes(n));
            (f, false)
        }
    }
}

/// Sends `count` hostile frames to `addr`, reconnecting whenever the server hangs up (or a
/// frame leaves the stream broken).
fn flood(addr: &str, count: usize, rng: &mut Rng) -> usize {
    let connect = || {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    };
    let mut conn = connect();
    let mut connections = 1;
    let mut on_conn = 0;
    for _ in 0..count {
        let (frame, drop_after) = hostile(rng);
        let ok = conn.write_all(&frame).is_ok();
        on_conn += 1;
        // Responses are never read: a new connection every 50 frames keeps the server from
        // blocking on a full socket buffer.
        if !ok || drop_after || on_conn >= 50 {
            conn = connect();
            connections += 1;
            on_conn = 0;
        }
    }
    connections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_ten_thousand_hostile_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, namesrv) = common::standalone(
        dir.path(),
        "FuzzCluster",
        "fuzz-b",
        "",
        &["--no-grpc", "--no-dashboard"],
    );
    // The broker's port is in its config; wait for its registration through a client.
    let producer = Producer::builder("fuzzProducer")
        .namesrv_addr(namesrv.as_str())
        .start()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        match producer.send(Message::new("FuzzTopic", "before")).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "broker never served: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(first.status, SendStatus::SendOk);
    let conf = std::fs::read_to_string(dir.path().join("broker.conf")).unwrap();
    let port = conf
        .lines()
        .find_map(|l| l.strip_prefix("listenPort="))
        .unwrap()
        .to_owned();
    let broker = format!("127.0.0.1:{port}");

    let ns = namesrv.clone();
    let connections = tokio::task::spawn_blocking(move || {
        let mut rng = Rng(0x00C0_FFEE_D15E_A5E5);
        flood(&broker, FRAMES * 7 / 10, &mut rng) + flood(&ns, FRAMES * 3 / 10, &mut rng)
    })
    .await
    .unwrap();
    assert!(connections > 100, "{connections}");
    assert!(
        proc.0.try_wait().unwrap().is_none(),
        "the server process died"
    );

    // Still serving: a send and a consume.
    let r = producer
        .send(Message::new("FuzzTopic", "after"))
        .await
        .unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    producer.shutdown().await;
    let consumer = LitePullConsumer::builder("fuzzConsumer")
        .namesrv_addr(namesrv.as_str())
        .consume_from(ConsumeFrom::FirstOffset)
        .start()
        .await
        .unwrap();
    consumer.subscribe("FuzzTopic", "*").await.unwrap();
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.len() < 2 && Instant::now() < deadline {
        for m in consumer.poll(Duration::from_millis(300)).await.unwrap() {
            bodies.push(String::from_utf8_lossy(m.body()).into_owned());
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["after", "before"]);
    consumer.shutdown().await;
    assert!(proc.0.try_wait().unwrap().is_none());
    // No request handler panicked on the way (tokio would have logged it and carried on).
    let log = std::fs::read_to_string(dir.path().join("standalone.log")).unwrap();
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
}
