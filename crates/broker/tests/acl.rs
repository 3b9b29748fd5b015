//! ACL 1.0 on a real broker socket: each refusal is NO_PERMISSION with a remark naming the
//! cause, the connection keeps serving, and an edited `plain_acl.yml` takes effect without a
//! restart.

mod common;

use std::time::{Duration, Instant};

use common::{send_request, TestBroker};
use ferrymq_protocol::acl::{sign_request, Credentials};
use ferrymq_protocol::ResponseCode;

const RULES: &str = r#"
accounts:
  - accessKey: app
    secretKey: app-secret
    defaultTopicPerm: DENY
    topicPerms:
      - Orders=PUB
"#;

#[tokio::test]
async fn refusals_name_their_cause_and_the_connection_stays_usable() {
    let acl_dir = tempfile::tempdir().unwrap();
    let file = acl_dir.path().join("plain_acl.yml");
    std::fs::write(&file, RULES).unwrap();
    let path = file.to_string_lossy().into_owned();
    let broker = TestBroker::start(|c| {
        c.acl_enable = true;
        c.plain_acl_file = Some(path);
    })
    .await;
    let app = Credentials::new("app", "app-secret");
    let signed = |topic: &str, creds: &Credentials| {
        let mut req = send_request(topic, b"body", "", 0);
        sign_request(&mut req, creds);
        req
    };
    let refused = |resp: &ferrymq_protocol::RemotingCommand, cause: &str| {
        assert_eq!(resp.response_code(), ResponseCode::NoPermission, "{resp:?}");
        let remark = resp.remark.clone().unwrap_or_default();
        assert!(
            remark.contains(cause),
            "remark `{remark}` should say `{cause}`"
        );
    };

    refused(&broker.send("Orders", b"body", "", 0).await, "no AccessKey");
    refused(
        &broker
            .call(signed("Orders", &Credentials::new("app", "wrong-secret")))
            .await,
        "bad signature for access key `app`",
    );
    refused(
        &broker
            .call(signed("Orders", &Credentials::new("nobody", "123456")))
            .await,
        "unknown access key `nobody`",
    );
    refused(
        &broker.call(signed("Payments", &app)).await,
        "no PUB permission on topic `Payments`",
    );
    // After four refusals the same connection still serves a good request.
    let ok = broker.call(signed("Orders", &app)).await;
    assert_eq!(ok.response_code(), ResponseCode::Success, "{ok:?}");

    // Hot reload: white-listing loopback lets unsigned requests in.
    std::fs::write(
        &file,
        format!("globalWhiteRemoteAddresses:\n  - 127.0.0.*\n{RULES}"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = broker.send("Orders", b"body", "", 0).await;
        if resp.response_code() == ResponseCode::Success {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edited ACL file was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken edit keeps the rules in force.
    std::fs::write(&file, "accounts: [unclosed").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = broker.send("Orders", b"body", "", 0).await;
    assert_eq!(resp.response_code(), ResponseCode::Success, "{resp:?}");
    broker.stop().await;
}

#[tokio::test]
async fn acl_without_a_usable_file_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.acl_enable = true;
    let e = ferrymq_broker::Broker::start(config.clone())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("no ACL file"), "{e}");
    config.plain_acl_file = Some(dir.path().join("missing.yml").to_string_lossy().into());
    let e = ferrymq_broker::Broker::start(config).await.err().unwrap();
    assert!(e.to_string().contains("missing.yml"), "{e}");
}
