//! Access control with other authors' clients against a real `ferrymq standalone` started with
//! `aclEnable=true` and a `plain_acl.yml`: the crates.io 4.x client `rocketmq-client-rust`
//! signing with its own `AclClientRPCHook`, the official 5.x gRPC SDK (`rocketmq` 5.0.0) with
//! an access key / secret key, and `ferrymq admin` with `--access-key/--secret-key`. Signed
//! requests with the right permissions are served; unsigned, wrongly signed and unpermitted
//! ones are refused.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cheetah_string::CheetahString;
use common::client::ClientEnv;
use common::{ferrymq_bin, BrokerOptions, Ferrymq};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq_client_rust::{AclClientRPCHook, DefaultMQProducer, SessionCredentials};
use rocketmq_model::common::message::message_single::Message;

const TOPIC: &str = "AclTopic";
const GROUP: &str = "AclGroup";

/// The broker and the directory of its ACL file (polled for changes while it runs).
fn start() -> (Ferrymq, tempfile::TempDir) {
    let acl_dir = tempfile::tempdir().expect("temp dir");
    let file = acl_dir.path().join("plain_acl.yml");
    std::fs::write(
        &file,
        format!(
            "accounts:\n\
             \x20 - accessKey: ops\n    secretKey: ops-secret\n    admin: true\n\
             \x20 - accessKey: app\n    secretKey: app-secret\n    defaultTopicPerm: DENY\n    defaultGroupPerm: DENY\n    topicPerms:\n      - {TOPIC}=PUB|SUB\n    groupPerms:\n      - {GROUP}=SUB\n"
        ),
    )
    .unwrap();
    let broker = Ferrymq::start_with(
        "acl",
        BrokerOptions::default()
            .with("aclEnable", "true")
            .with("rocketmq.acl.plain.file", &file.to_string_lossy()),
    );
    (broker, acl_dir)
}

fn admin(broker: &Ferrymq, creds: Option<(&str, &str)>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(ferrymq_bin());
    cmd.arg("admin")
        .args(args)
        .arg("-n")
        .arg(broker.namesrv_addr());
    if let Some((ak, sk)) = creds {
        cmd.args(["--access-key", ak, "--secret-key", sk]);
    }
    cmd.output().expect("run ferrymq admin")
}

fn grpc_option(broker: &Ferrymq, creds: Option<(&str, &str)>) -> ClientOption {
    let mut o = ClientOption::default();
    o.set_access_url(broker.grpc_addr());
    o.set_enable_tls(false);
    o.set_timeout(Duration::from_secs(5));
    o.set_long_polling_timeout(Duration::from_secs(5));
    if let Some((ak, sk)) = creds {
        o.set_access_key(ak);
        o.set_secret_key(sk);
    }
    o
}

async fn remoting_producer(
    env: &ClientEnv,
    broker: &Ferrymq,
    creds: Option<(&str, &str)>,
) -> DefaultMQProducer {
    let group = common::client::unique_instance("acl-pg");
    let mut builder = DefaultMQProducer::builder(env.runtime.clone())
        .client_config(env.client_config(&broker.namesrv_addr(), &group))
        .producer_group(group.clone())
        .name_server_addr(broker.namesrv_addr());
    if let Some((ak, sk)) = creds {
        builder = builder.rpc_hook(Arc::new(AclClientRPCHook::new(
            SessionCredentials::with_keys(
                CheetahString::from(ak.to_owned()),
                CheetahString::from(sk.to_owned()),
            ),
        )));
    }
    let mut p = builder.build();
    p.start().await.expect("producer start");
    p
}

fn message(body: &str) -> Message {
    Message::builder()
        .topic(TOPIC.to_owned())
        .body_slice(body.as_bytes())
        .build_unchecked()
}

#[test]
fn acl_with_remoting_grpc_and_admin_clients() {
    let (broker, _acl_dir) = start();

    // Admin: creating the topic needs the admin account.
    let create = [
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        TOPIC,
        "-r",
        "4",
        "-w",
        "4",
    ];
    let refused = admin(&broker, None, &create);
    assert!(!refused.status.success(), "unsigned updateTopic must fail");
    let refused = admin(&broker, Some(("app", "app-secret")), &create);
    let text = String::from_utf8_lossy(&refused.stderr).into_owned()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(
        !refused.status.success() && text.contains("admin"),
        "non-admin updateTopic: {text}"
    );
    let created = admin(&broker, Some(("ops", "ops-secret")), &create);
    assert!(
        created.status.success(),
        "admin updateTopic: {}{}",
        String::from_utf8_lossy(&created.stdout),
        String::from_utf8_lossy(&created.stderr)
    );

    // 4.x remoting client: its own ACL hook is accepted; no hook or a wrong secret is not.
    let env = ClientEnv::new("acl");
    env.block_on(async {
        let signed = remoting_producer(&env, &broker, Some(("app", "app-secret"))).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match signed.send(message("remoting-signed")).await {
                Ok(Some(r)) => {
                    assert!(matches!(r.send_status, rocketmq_client_rust::SendStatus::SendOk), "{r:?}");
                    break;
                }
                other if Instant::now() > deadline => panic!("signed send failed: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        for creds in [None, Some(("app", "wrong-secret"))] {
            let p = remoting_producer(&env, &broker, creds).await;
            let r = p.send(message("remoting-refused")).await;
            assert!(
                !matches!(r, Ok(Some(ref res)) if matches!(res.send_status, rocketmq_client_rust::SendStatus::SendOk)),
                "send with {creds:?} must be refused: {r:?}"
            );
        }
    });
    env.shutdown();

    // 5.x gRPC SDK: credentials accepted, none refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut option = ProducerOption::default();
        option.set_topics(vec![TOPIC]);
        let mut producer =
            rocketmq::Producer::new(option, grpc_option(&broker, Some(("app", "app-secret"))))
                .expect("producer");
        producer.start().await.expect("signed gRPC producer starts");
        for i in 0..5 {
            let m = MessageBuilder::builder()
                .set_topic(TOPIC)
                .set_body(format!("grpc-{i}").into_bytes())
                .build()
                .unwrap();
            producer.send(m).await.expect("signed gRPC send");
        }
        let mut option = SimpleConsumerOption::default();
        option.set_topics(vec![TOPIC]);
        option.set_consumer_group(GROUP);
        let mut consumer = rocketmq::SimpleConsumer::new(
            option,
            grpc_option(&broker, Some(("app", "app-secret"))),
        )
        .expect("consumer");
        consumer.start().await.expect("signed gRPC consumer starts");
        let all = FilterExpression::new(FilterType::Tag, "*");
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < 6 && Instant::now() < deadline {
            let batch = consumer
                .receive_with(TOPIC, &all, 32, Duration::from_secs(20))
                .await
                .expect("signed receive");
            for m in &batch {
                consumer.ack(m).await.expect("signed ack");
            }
            got += batch.len();
        }
        // The remoting send plus five gRPC sends.
        assert_eq!(got, 6, "every message received over gRPC");

        let mut option = ProducerOption::default();
        option.set_topics(vec![TOPIC]);
        let mut anonymous =
            rocketmq::Producer::new(option, grpc_option(&broker, None)).expect("producer");
        let refused = match anonymous.start().await {
            Err(_) => true,
            Ok(()) => {
                let m = MessageBuilder::builder()
                    .set_topic(TOPIC)
                    .set_body(b"anonymous".to_vec())
                    .build()
                    .unwrap();
                anonymous.send(m).await.is_err()
            }
        };
        assert!(refused, "a gRPC client without credentials must be refused");
        let mut option = ProducerOption::default();
        option.set_topics(vec![TOPIC]);
        let mut wrong =
            rocketmq::Producer::new(option, grpc_option(&broker, Some(("app", "nope-nope"))))
                .expect("producer");
        let refused = match wrong.start().await {
            Err(_) => true,
            Ok(()) => {
                let m = MessageBuilder::builder()
                    .set_topic(TOPIC)
                    .set_body(b"wrong".to_vec())
                    .build()
                    .unwrap();
                wrong.send(m).await.is_err()
            }
        };
        assert!(refused, "a gRPC client with a wrong secret must be refused");
    });
}

/// ACL 2.0: users and policies managed with `ferrymq admin` (mqadmin's createUser/createAcl…),
/// then the official gRPC SDK and the 4.x remoting client sign as those users.
#[test]
fn acl2_users_and_acls_from_admin_then_grpc_and_remoting_clients() {
    const TOPIC2: &str = "Acl2Topic";
    const GROUP2: &str = "Acl2Group";
    let broker = Ferrymq::start_with(
        "acl2",
        BrokerOptions::default()
            .with("authenticationEnabled", "true")
            .with("authorizationEnabled", "true")
            .with(
                "initAuthenticationUser",
                r#"{"username":"root","password":"root-secret"}"#,
            ),
    );
    let root = Some(("root", "root-secret"));
    let run = |creds: Option<(&str, &str)>, args: &[&str]| {
        let out = admin(&broker, creds, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let must = |creds: Option<(&str, &str)>, args: &[&str]| {
        let (ok, text) = run(creds, args);
        assert!(ok, "{args:?}: {text}");
        text
    };
    let cluster = ["-c", "DefaultCluster"];
    let with = |args: &[&'static str]| -> Vec<&'static str> {
        args.iter().copied().chain(cluster).collect()
    };

    let (ok, text) = run(
        None,
        &with(&["createUser", "-u", "app", "-p", "app-secret"]),
    );
    assert!(!ok, "an unsigned createUser must be refused: {text}");
    let out = must(
        root,
        &with(&["createUser", "-u", "app", "-p", "app-secret"]),
    );
    assert!(
        out.contains("create user to") && out.contains("success"),
        "{out}"
    );
    let out = must(root, &with(&["listUser"]));
    assert!(
        out.contains("#UserName") && out.contains("app") && out.contains("Normal"),
        "{out}"
    );
    must(
        root,
        &with(&[
            "createAcl",
            "-s",
            "User:app",
            "-r",
            "Topic:Acl2Topic,Group:Acl2Group",
            "-a",
            "Pub,Sub",
            "-d",
            "Allow",
        ]),
    );
    let out = must(root, &with(&["getAcl", "-s", "User:app"]));
    assert!(
        out.contains("Topic:Acl2Topic") && out.contains("Allow"),
        "{out}"
    );
    must(
        root,
        &with(&["updateTopic", "-t", TOPIC2, "-r", "4", "-w", "4"]),
    );
    let (ok, text) = run(
        Some(("app", "app-secret")),
        &with(&["updateTopic", "-t", "Other", "-r", "4", "-w", "4"]),
    );
    assert!(!ok, "a Normal user may not create topics: {text}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut option = ProducerOption::default();
        option.set_topics(vec![TOPIC2]);
        let mut producer =
            rocketmq::Producer::new(option, grpc_option(&broker, Some(("app", "app-secret"))))
                .expect("producer");
        producer.start().await.expect("signed gRPC producer starts");
        for i in 0..3 {
            let m = MessageBuilder::builder()
                .set_topic(TOPIC2)
                .set_body(format!("grpc-{i}").into_bytes())
                .build()
                .unwrap();
            producer.send(m).await.expect("signed gRPC send");
        }
        let mut option = SimpleConsumerOption::default();
        option.set_topics(vec![TOPIC2]);
        option.set_consumer_group(GROUP2);
        let mut consumer = rocketmq::SimpleConsumer::new(
            option,
            grpc_option(&broker, Some(("app", "app-secret"))),
        )
        .expect("consumer");
        consumer.start().await.expect("signed gRPC consumer starts");
        let all = FilterExpression::new(FilterType::Tag, "*");
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < 3 && Instant::now() < deadline {
            let batch = consumer
                .receive_with(TOPIC2, &all, 32, Duration::from_secs(20))
                .await
                .expect("signed receive");
            for m in &batch {
                consumer.ack(m).await.expect("signed ack");
            }
            got += batch.len();
        }
        assert_eq!(got, 3, "every message received over gRPC");

        for creds in [None, Some(("app", "wrong-secret"))] {
            let mut option = ProducerOption::default();
            option.set_topics(vec![TOPIC2]);
            let mut p =
                rocketmq::Producer::new(option, grpc_option(&broker, creds)).expect("producer");
            let refused = match p.start().await {
                Err(_) => true,
                Ok(()) => {
                    let m = MessageBuilder::builder()
                        .set_topic(TOPIC2)
                        .set_body(b"refused".to_vec())
                        .build()
                        .unwrap();
                    p.send(m).await.is_err()
                }
            };
            assert!(refused, "gRPC send with {creds:?} must be refused");
        }
    });
    drop(rt);

    // The 4.x client's own hook signs as the same user; a topic outside its ACL is refused.
    let env = ClientEnv::new("acl2");
    env.block_on(async {
        let signed = remoting_producer(&env, &broker, Some(("app", "app-secret"))).await;
        let to = |topic: &str| {
            Message::builder()
                .topic(topic.to_owned())
                .body_slice(b"remoting")
                .build_unchecked()
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match signed.send(to(TOPIC2)).await {
                Ok(Some(r)) => {
                    assert!(
                        matches!(r.send_status, rocketmq_client_rust::SendStatus::SendOk),
                        "{r:?}"
                    );
                    break;
                }
                other if Instant::now() > deadline => panic!("signed send failed: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    env.shutdown();

    // Deleting the user takes its rights away at once.
    must(root, &with(&["deleteUser", "-u", "app"]));
    let (ok, text) = run(root, &with(&["getUser", "-u", "app"]));
    assert!(!ok && text.contains("not found"), "{text}");
}
