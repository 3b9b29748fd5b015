//! The dashboard's HTTP API against a real `ferrymq standalone` process: topics created and
//! deleted, messages found by time, key and id, a consumer group's lag and an offset reset,
//! broker TPS moving with traffic; and with ACL on, sign-in refused without or with wrong
//! credentials, a session that signs as its user (a non-admin user is refused topic
//! creation by the broker: 403), and sign-out. The page itself is driven in a real browser by
//! compat/dashboard/test_dashboard.js.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::free_port;
use ferrymq_client::{Message, Producer, SendStatus};
use serde_json::{json, Value};

const TOPIC: &str = "DashTopic";
const GROUP: &str = "dashGroup";

struct Reply {
    status: u16,
    set_cookie: Option<String>,
    body: Value,
}

/// One HTTP/1.1 request over a plain socket.
fn http(port: u16, method: &str, path: &str, body: Option<Value>, cookie: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect dashboard");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if !payload.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let set_cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap().to_owned());
    Reply {
        status,
        set_cookie,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

fn get(port: u16, path: &str) -> Reply {
    http(port, "GET", path, None, None)
}

/// Polls `f` until it returns `Some` (60 s at most).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_broker(port: u16, cookie: Option<&str>) {
    eventually("the broker in /api/overview", || {
        TcpStream::connect(("127.0.0.1", port)).ok()?;
        let r = http(port, "GET", "/api/overview", None, cookie);
        (r.status == 200 && !r.body["brokers"].as_array()?.is_empty()).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_api_over_a_real_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_proc, namesrv) = common::standalone(
        dir.path(),
        "DashCluster",
        "dash-b",
        "",
        &["--no-grpc", "--dashboard-listen", &listen],
    );
    tokio::task::spawn_blocking(move || wait_for_broker(port, None))
        .await
        .unwrap();

    // Topics: create (bad name refused), listed, detail with its queues.
    let bad = http(
        port,
        "POST",
        "/api/topics",
        Some(json!({"topic": "bad topic"})),
        None,
    );
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let created = http(
        port,
        "POST",
        "/api/topics",
        Some(json!({"topic": TOPIC, "queues": 2})),
        None,
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.body["cluster"], "DashCluster");
    let topics = get(port, "/api/topics").body;
    assert!(topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == TOPIC && t["kind"] == "normal"));
    assert!(
        !topics["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "DashCluster"),
        "cluster names are not listed as topics"
    );
    let detail = get(port, &format!("/api/topics/{TOPIC}")).body;
    assert_eq!(detail["queues"].as_array().unwrap().len(), 2);

    // Ten messages, one with a known key.
    let producer = Producer::builder("dashProducer")
        .namesrv_addr(namesrv.as_str())
        .start()
        .await
        .unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut m = Message::new(TOPIC, format!("dash body {i}"));
        if i == 7 {
            m = m.with_keys(["order-7"]);
        }
        let r = producer.send(m).await.unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        ids.push(r.msg_id);
    }
    producer.shutdown().await;

    let mut expected = ids.clone();
    expected.sort();
    // The consume queues are written a moment after the sends are acknowledged.
    tokio::task::spawn_blocking(move || {
        eventually("every message by time", || {
            let by_time = get(
                port,
                &format!("/api/messages?topic={TOPIC}&begin={}", before - 1000),
            )
            .body;
            let mut found: Vec<String> = by_time["messages"]
                .as_array()?
                .iter()
                .filter_map(|m| Some(m["msgId"].as_str()?.to_owned()))
                .collect();
            found.sort();
            (found == expected).then_some(())
        })
    })
    .await
    .unwrap();
    let by_key = tokio::task::spawn_blocking(move || {
        eventually("the key in the index", || {
            let r = get(port, &format!("/api/messages?topic={TOPIC}&key=order-7")).body;
            let list = r["messages"].as_array()?.clone();
            (list.len() == 1).then_some(list)
        })
    })
    .await
    .unwrap();
    assert_eq!(by_key[0]["msgId"], ids[7].as_str());
    assert_eq!(by_key[0]["body"], "dash body 7");
    let by_id = get(port, &format!("/api/messages?topic={TOPIC}&id={}", ids[3])).body;
    assert_eq!(by_id["messages"][0]["body"], "dash body 3");
    let no_topic = get(port, "/api/messages?topic=NoSuchTopic&key=x");
    assert_eq!(no_topic.status, 404, "{:?}", no_topic.body);

    // The broker's put TPS moves with the traffic.
    tokio::task::spawn_blocking(move || {
        eventually("put TPS and totals", || {
            let b = get(port, "/api/overview").body["brokers"][0].clone();
            let tps = b["putTps"][0].as_f64()?;
            (b["putTotal"].as_u64()? >= 10 && tps > 0.0).then_some(())
        })
    })
    .await
    .unwrap();

    // A group consumes everything (lag 0), then is reset to the beginning from the dashboard.
    let (consumer, got) = common::consume(&namesrv, GROUP, TOPIC, 10).await;
    assert_eq!(got, 10);
    let row = tokio::task::spawn_blocking(move || {
        eventually("the group with lag 0", || {
            let groups = get(port, "/api/groups").body;
            let row = groups["groups"]
                .as_array()?
                .iter()
                .find(|g| g["group"] == GROUP)?
                .clone();
            (row["lag"] == 0 && row["clients"] == 1).then_some(row)
        })
    })
    .await
    .unwrap();
    assert_eq!(row["consumeType"], "CONSUME_ACTIVELY");
    consumer.shutdown().await;
    let reset = http(
        port,
        "POST",
        &format!("/api/groups/{GROUP}/reset"),
        Some(json!({"topic": TOPIC, "timestamp": 0})),
        None,
    );
    assert_eq!(reset.status, 200, "{:?}", reset.body);
    assert_eq!(reset.body["offsets"].as_array().unwrap().len(), 2);
    let detail = get(port, &format!("/api/groups/{GROUP}")).body;
    assert_eq!(detail["lag"], 10, "{detail}");
    assert_eq!(detail["queues"].as_array().unwrap().len(), 2);

    // Delete the topic: gone from the detail page.
    let deleted = http(port, "DELETE", &format!("/api/topics/{TOPIC}"), None, None);
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    let gone = get(port, &format!("/api/topics/{TOPIC}"));
    assert_eq!(gone.status, 404, "{:?}", gone.body);
    assert_eq!(get(port, "/no/such/page").status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_sign_in_with_acl() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("plain_acl.yml");
    std::fs::write(
        &acl,
        "accounts:\n  - accessKey: ops\n    secretKey: ops-secret\n    admin: true\n  \
         - accessKey: app\n    secretKey: app-secret\n    defaultTopicPerm: PUB|SUB\n",
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_proc, _namesrv) = common::standalone(
        dir.path(),
        "AclDash",
        "acl-dash-b",
        &format!(
            "aclEnable=true\nrocketmq.acl.plain.file={}\n",
            acl.display()
        ),
        &["--no-grpc", "--dashboard-listen", &listen],
    );
    tokio::task::spawn_blocking(move || {
        eventually("the dashboard", || {
            TcpStream::connect(("127.0.0.1", port)).ok()?;
            let r = get(port, "/api/session");
            (r.status == 200).then_some(())
        });
        let session = get(port, "/api/session").body;
        assert_eq!(session["loginRequired"], true);
        assert_eq!(session["signedIn"], false);
        assert_eq!(get(port, "/api/overview").status, 401);
        assert_eq!(get(port, "/api/topics").status, 401);

        let login = |ak: &str, sk: &str| {
            http(
                port,
                "POST",
                "/api/login",
                Some(json!({"accessKey": ak, "secretKey": sk})),
                None,
            )
        };
        // The broker registers a moment after the dashboard is up.
        let ops = eventually("an accepted sign-in", || {
            let r = login("ops", "ops-secret");
            (r.status == 200).then_some(r)
        });
        let wrong = login("ops", "not-the-secret");
        assert_eq!(wrong.status, 401, "{:?}", wrong.body);
        assert!(wrong.body["error"].as_str().unwrap().contains("refused"));
        assert_eq!(login("nobody", "x").status, 401);
        let forged = http(
            port,
            "GET",
            "/api/overview",
            None,
            Some("ferrymq_session=0123456789abcdef0123456789abcdef"),
        );
        assert_eq!(forged.status, 401);

        let cookie = ops.set_cookie.expect("a session cookie");
        wait_for_broker(port, Some(&cookie));
        let created = http(
            port,
            "POST",
            "/api/topics",
            Some(json!({"topic": "AclDashTopic", "queues": 1})),
            Some(&cookie),
        );
        assert_eq!(created.status, 200, "{:?}", created.body);

        // A non-admin account signs in, but the broker refuses it an admin change: 403.
        let app = login("app", "app-secret");
        assert_eq!(app.status, 200, "{:?}", app.body);
        let app_cookie = app.set_cookie.unwrap();
        let refused = http(
            port,
            "POST",
            "/api/topics",
            Some(json!({"topic": "NotAllowedTopic", "queues": 1})),
            Some(&app_cookie),
        );
        assert_eq!(refused.status, 403, "{:?}", refused.body);
        assert_eq!(refused.body["code"], 16);

        let out = http(port, "POST", "/api/logout", None, Some(&cookie));
        assert_eq!(out.status, 200);
        let after = http(port, "GET", "/api/overview", None, Some(&cookie));
        assert_eq!(after.status, 401);
    })
    .await
    .unwrap();
}
