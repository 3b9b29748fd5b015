//! POP survives `kill -9`: a broker process is killed with SIGKILL while a popped batch is
//! partly acked; after a restart on the same store every un-acked message comes back (through
//! the retry topic) and no acked one does.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrymq_protocol::header::{
    AckMessageRequestHeader, PopMessageRequestHeader, SendMessageRequestHeader, POP_INIT_MODE_MIN,
};
use ferrymq_protocol::message::properties::{self, keys};
use ferrymq_protocol::message::record::RecordIter;
use ferrymq_protocol::pop::ExtraInfo;
use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{ClientConfig, RemotingClient};

const BIN: &str = env!("CARGO_BIN_EXE_ferrymq");
const GROUP: &str = "crashGroup";
const TOPIC: &str = "PopCrash";
const T: Duration = Duration::from_secs(10);

/// The broker process, SIGKILLed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port `p` whose `p - 2` (the fast port) is free too.
fn broker_port() -> u16 {
    for _ in 0..200 {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if p > 2000 && std::net::TcpListener::bind(("127.0.0.1", p - 2)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair found");
}

fn start(conf: &Path, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(BIN)
        .args(["broker", "-c", conf.to_str().unwrap()])
        .env_remove("NAMESRV_ADDR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    Proc(child)
}

/// Waits until the broker answers (ports open only after POP recovery).
async fn wait_up(client: &RemotingClient, addr: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let req = RemotingCommand::request(RequestCode::GetBrokerRuntimeInfo);
        if client
            .invoke(addr, req, Duration::from_secs(1))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "broker did not come up: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

async fn send(client: &RemotingClient, addr: &str, body: &str) {
    let h = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1,
        flag: 0,
        properties: Some(properties::encode([(keys::TAGS, "A")])),
        reconsume_times: None,
        unit_mode: None,
        batch: None,
        max_reconsume_times: None,
        broker_name: None,
    };
    let mut req =
        RemotingCommand::request(RequestCode::SendMessageV2).with_body(body.as_bytes().to_vec());
    h.write_v2(&mut req.ext_fields);
    let resp = client.invoke(addr, req, T).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success, "{resp:?}");
}

/// (body, handle, reconsumeTimes) of each popped message.
async fn pop(client: &RemotingClient, addr: &str, poll_ms: i64) -> Vec<(String, ExtraInfo, i32)> {
    let h = PopMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: TOPIC.into(),
        queue_id: -1,
        max_msg_nums: 32,
        invisible_time: 3000,
        poll_time: poll_ms,
        born_time: 0,
        init_mode: POP_INIT_MODE_MIN,
        exp_type: None,
        exp: None,
        order: None,
        attempt_id: None,
    };
    let req = RemotingCommand::request_with_header(RequestCode::PopMessage, &h);
    let resp = client
        .invoke(addr, req, T + Duration::from_millis(poll_ms as u64))
        .await
        .unwrap();
    let body = resp.body.to_bytes();
    RecordIter::new(&body)
        .map(|r| {
            let v = r.unwrap();
            (
                String::from_utf8_lossy(v.body()).into_owned(),
                ExtraInfo::parse(v.property(keys::POP_CK).unwrap()).unwrap(),
                v.reconsume_times(),
            )
        })
        .collect()
}

async fn ack(client: &RemotingClient, addr: &str, handle: &ExtraInfo) {
    let h = AckMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: handle.real_topic(TOPIC, GROUP),
        queue_id: handle.queue_id,
        extra_info: handle.encode(),
        offset: handle.queue_offset,
    };
    let req = RemotingCommand::request_with_header(RequestCode::AckMessage, &h);
    let resp = client.invoke(addr, req, T).await.unwrap();
    assert_eq!(resp.response_code(), ResponseCode::Success, "{resp:?}");
}

#[tokio::test]
async fn unacked_pops_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = broker_port();
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "brokerName=crash\nbrokerIP1=127.0.0.1\nlistenPort={port}\nhaListenPort={}\n\
             storePathRootDir={}\nmappedFileSizeCommitLog=4194304\nmappedFileSizeConsumeQueue=60000\n\
             popFromRetryProbability=0\n",
            broker_port(),
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("broker.log");
    let addr = format!("127.0.0.1:{port}");
    let client = RemotingClient::new(ClientConfig::default());

    let mut broker = start(&conf, &log);
    wait_up(&client, &addr, &log).await;
    for i in 0..6 {
        send(&client, &addr, &format!("m{i}")).await;
    }
    let mut popped = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while popped.len() < 6 && Instant::now() < deadline {
        popped.extend(pop(&client, &addr, 1000).await);
    }
    assert_eq!(popped.len(), 6, "{popped:?}");
    let mut acked = Vec::new();
    let mut pending = Vec::new();
    for (i, (body, handle, _)) in popped.iter().enumerate() {
        if i % 2 == 0 {
            ack(&client, &addr, handle).await;
            acked.push(body.clone());
        } else {
            pending.push(body.clone());
        }
    }

    // SIGKILL: no shutdown hook runs, no offsets or revive progress are persisted.
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();
    drop(broker);

    let _broker = start(&conf, &log);
    wait_up(&client, &addr, &log).await;
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && again.len() < pending.len() {
        for (body, handle, reconsume) in pop(&client, &addr, 2000).await {
            assert!(!acked.contains(&body), "acked {body} came back");
            assert_eq!(reconsume, 1, "{body}");
            ack(&client, &addr, &handle).await;
            again.push(body);
        }
    }
    again.sort();
    pending.sort();
    assert_eq!(again, pending);
    // Nothing else shows up afterwards (no duplicate of the acked or the re-acked ones).
    let extra = pop(&client, &addr, 4500).await;
    assert!(extra.is_empty(), "{extra:?}");
}
