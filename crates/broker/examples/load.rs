//! Throwaway load generator (not committed): N concurrent senders of 1 KiB messages.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymq_protocol::header::SendMessageRequestHeader;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or("127.0.0.1:10911".into());
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let client = RemotingClient::new(ClientConfig::default());
    let done = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(AtomicU64::new(0));
    let body = bytes::Bytes::from(vec![b'x'; 1024]);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..conc {
        let (client, addr, done, fail, body) = (
            client.clone(),
            addr.clone(),
            done.clone(),
            fail.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0i32;
            while Instant::now() < end {
                let h = SendMessageRequestHeader {
                    producer_group: "bench".into(),
                    topic: "BenchTopic".into(),
                    default_topic: "TBW102".into(),
                    default_topic_queue_nums: 8,
                    queue_id: ((i as i32) + n) % 8,
                    sys_flag: 0,
                    born_timestamp: 1,
                    flag: 0,
                    properties: Some("UNIQ_KEY\u{1}x\u{2}".into()),
                    reconsume_times: None,
                    unit_mode: None,
                    batch: None,
                    max_reconsume_times: None,
                    broker_name: None,
                };
                n += 1;
                let mut req =
                    RemotingCommand::request(RequestCode::SendMessageV2).with_body(body.clone());
                h.write_v2(&mut req.ext_fields);
                match client.invoke(&addr, req, Duration::from_secs(3)).await {
                    Ok(r) if r.response_code() == ResponseCode::Success => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        if fail.fetch_add(1, Ordering::Relaxed) < 3 {
                            match other {
                                Ok(r) => eprintln!("fail code {} {:?}", r.code, r.remark),
                                Err(e) => eprintln!("err {e}"),
                            }
                        }
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "sent {} failed {} in {:.1}s => {:.0} msg/s",
        done.load(Ordering::Relaxed),
        fail.load(Ordering::Relaxed),
        el,
        done.load(Ordering::Relaxed) as f64 / el
    );
}
