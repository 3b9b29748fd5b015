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

/// A request with string header fields, signed by `creds`.
fn auth_request(
    code: ferrymq_protocol::RequestCode,
    fields: &[(&str, &str)],
    body: &str,
    creds: &Credentials,
) -> ferrymq_protocol::RemotingCommand {
    let mut req = ferrymq_protocol::RemotingCommand::request(code).with_body(body.to_owned());
    for (k, v) in fields {
        req.ext_fields.insert(k, v);
    }
    sign_request(&mut req, creds);
    req
}

#[tokio::test]
async fn acl2_users_and_policies_decide_on_a_real_socket_and_survive_restart() {
    use ferrymq_protocol::RequestCode;
    let mut broker = TestBroker::start(|c| {
        c.authentication_enabled = true;
        c.authorization_enabled = true;
        c.init_authentication_user = Some(r#"{"username":"root","password":"root-secret"}"#.into());
    })
    .await;
    let root = Credentials::new("root", "root-secret");
    let alice = Credentials::new("alice", "alice-secret");
    let code = |resp: &ferrymq_protocol::RemotingCommand| resp.response_code();
    let send_as = |topic: &str, creds: &Credentials| {
        let mut req = send_request(topic, b"body", "", 0);
        sign_request(&mut req, creds);
        req
    };

    // Authentication: unsigned, unknown user and wrong password are refused.
    assert_eq!(
        code(&broker.send("Orders", b"b", "", 0).await),
        ResponseCode::NoPermission
    );
    assert_eq!(
        code(&broker.call(send_as("Orders", &alice)).await),
        ResponseCode::NoPermission
    );
    // The initial user is Super: it may send anywhere and manage users.
    assert_eq!(
        code(&broker.call(send_as("Orders", &root)).await),
        ResponseCode::Success
    );
    let created = broker
        .call(auth_request(
            RequestCode::AuthCreateUser,
            &[("username", "alice")],
            r#"{"username":"alice","password":"alice-secret","userType":"Normal"}"#,
            &root,
        ))
        .await;
    assert_eq!(code(&created), ResponseCode::Success, "{created:?}");
    let again = broker
        .call(auth_request(
            RequestCode::AuthCreateUser,
            &[("username", "alice")],
            r#"{"username":"alice","password":"x"}"#,
            &root,
        ))
        .await;
    assert_ne!(
        code(&again),
        ResponseCode::Success,
        "a user is created once"
    );

    // Authorization: a Normal user without an ACL may do nothing.
    let refused = broker.call(send_as("Orders", &alice)).await;
    assert_eq!(code(&refused), ResponseCode::NoPermission, "{refused:?}");
    let wrong = broker
        .call(send_as("Orders", &Credentials::new("alice", "not-hers")))
        .await;
    assert_eq!(code(&wrong), ResponseCode::NoPermission);
    let acl = r#"{"subject":"User:alice","policies":[{"policyType":"Custom","entries":[
        {"resource":"Topic:Ord*","actions":["Pub"],"sourceIps":[],"decision":"Allow"},
        {"resource":"Topic:Orders-secret","actions":["Pub"],"sourceIps":[],"decision":"Deny"}]}]}"#;
    let granted = broker
        .call(auth_request(
            RequestCode::AuthCreateAcl,
            &[("subject", "User:alice")],
            acl,
            &root,
        ))
        .await;
    assert_eq!(code(&granted), ResponseCode::Success, "{granted:?}");
    assert_eq!(
        code(&broker.call(send_as("Orders", &alice)).await),
        ResponseCode::Success
    );
    assert_eq!(
        code(&broker.call(send_as("Orders-secret", &alice)).await),
        ResponseCode::NoPermission
    );
    assert_eq!(
        code(&broker.call(send_as("Payments", &alice)).await),
        ResponseCode::NoPermission
    );
    // A Normal user may not manage users.
    let escalate = broker
        .call(auth_request(
            RequestCode::AuthUpdateUser,
            &[("username", "alice")],
            r#"{"username":"alice","userType":"Super"}"#,
            &alice,
        ))
        .await;
    assert_eq!(code(&escalate), ResponseCode::NoPermission, "{escalate:?}");

    // Everything survives a restart.
    broker.restart().await;
    assert_eq!(
        code(&broker.call(send_as("Orders", &alice)).await),
        ResponseCode::Success
    );
    let got = broker
        .call(auth_request(
            RequestCode::AuthGetAcl,
            &[("subject", "User:alice")],
            "",
            &root,
        ))
        .await;
    assert_eq!(code(&got), ResponseCode::Success);
    let text = String::from_utf8_lossy(&got.body.to_bytes()).into_owned();
    assert!(
        text.contains("Topic:Ord*") && text.contains("Deny"),
        "{text}"
    );

    // A disabled user is refused even where its ACL allows.
    let disabled = broker
        .call(auth_request(
            RequestCode::AuthUpdateUser,
            &[("username", "alice")],
            r#"{"username":"alice","userStatus":"disable"}"#,
            &root,
        ))
        .await;
    assert_eq!(code(&disabled), ResponseCode::Success, "{disabled:?}");
    assert_eq!(
        code(&broker.call(send_as("Orders", &alice)).await),
        ResponseCode::NoPermission
    );
    broker.stop().await;
}
