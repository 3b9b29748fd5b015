//! ACL 1.0 and TLS end to end: an in-process NameServer and broker with `aclEnable=true` or
//! `tls.server.mode=enforcing`, driven by this crate's producer, push consumer and admin with
//! and without credentials / TLS.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, unique, Cluster};
use ferrymq_client::admin::TopicSpec;
use ferrymq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use ferrymq_client::{Admin, ClientOptions, Message, MessageExt, Producer};
use ferrymq_protocol::acl::Credentials;
use ferrymq_protocol::ResponseCode;

fn acl_file(dir: &std::path::Path, topic: &str, group: &str) -> String {
    let path = dir.join("plain_acl.yml");
    std::fs::write(
        &path,
        format!(
            r#"
accounts:
  - accessKey: ops
    secretKey: ops-secret
    admin: true
  - accessKey: app
    secretKey: app-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - {topic}=PUB|SUB
    groupPerms:
      - {group}=SUB
  - accessKey: reader
    secretKey: reader-secret
    topicPerms:
      - {topic}=SUB
"#
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn with_credentials(options: ClientOptions, ak: &str, sk: &str) -> ClientOptions {
    ClientOptions {
        credentials: Some(Credentials::new(ak, sk)),
        ..options
    }
}

async fn send_code(options: ClientOptions, topic: &str) -> Option<ResponseCode> {
    let producer = Producer::builder(unique("pg"))
        .options(options)
        .retry_times(0)
        .start()
        .await
        .unwrap();
    let result = producer.send(Message::new(topic, "x")).await;
    producer.shutdown().await;
    result.err().map(|e| {
        e.response_code()
            .expect("a broker refusal, not a transport error")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_signed_clients_work_and_the_rest_are_refused() {
    let acl_dir = tempfile::tempdir().unwrap();
    let topic = unique("AclT");
    let group = unique("aclcg");
    let file = acl_file(acl_dir.path(), &topic, &group);
    let cluster = Cluster::start_with(1, |c| {
        c.acl_enable = true;
        c.plain_acl_file = Some(file.clone());
    })
    .await;

    // Only the admin account may create topics.
    let app_admin = Admin::builder()
        .options(with_credentials(cluster.options(), "app", "app-secret"))
        .start()
        .await
        .unwrap();
    let refused = app_admin
        .create_topic_on_broker(&cluster.broker_addr(0), &TopicSpec::new(&topic, 4))
        .await
        .unwrap_err();
    assert_eq!(
        refused.response_code(),
        Some(ResponseCode::NoPermission),
        "{refused}"
    );
    app_admin.shutdown().await;
    let admin = Admin::builder()
        .options(with_credentials(cluster.options(), "ops", "ops-secret"))
        .start()
        .await
        .unwrap();
    admin
        .create_topic_on_broker(&cluster.broker_addr(0), &TopicSpec::new(&topic, 4))
        .await
        .unwrap();
    admin.shutdown().await;
    cluster
        .wait_route(&topic, |r| !r.queue_datas.is_empty())
        .await;

    // The app account produces and consumes (heartbeats, pulls and offset commits signed).
    let app = with_credentials(cluster.options(), "app", "app-secret");
    let producer = Producer::builder(unique("pg"))
        .options(app.clone())
        .start()
        .await
        .unwrap();
    let n = 40;
    for i in 0..n {
        producer
            .send(Message::new(&topic, format!("m-{i}")))
            .await
            .unwrap();
    }
    producer.shutdown().await;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let sink = seen.clone();
    let consumer = PushConsumer::builder(&group)
        .options(app.clone())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |msgs: &[MessageExt]| {
            let mut s = sink.lock().unwrap();
            for m in msgs {
                s.insert(String::from_utf8_lossy(m.body()).into_owned());
            }
            ConsumeResult::Success
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "every message consumed", || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() == n }
    })
    .await;
    consumer.shutdown().await;

    // Unsigned, wrong secret, unknown key and missing PUB are NO_PERMISSION.
    assert_eq!(
        send_code(cluster.options(), &topic).await,
        Some(ResponseCode::NoPermission)
    );
    assert_eq!(
        send_code(
            with_credentials(cluster.options(), "app", "not-the-secret"),
            &topic
        )
        .await,
        Some(ResponseCode::NoPermission)
    );
    assert_eq!(
        send_code(
            with_credentials(cluster.options(), "ghost", "ghost-secret"),
            &topic
        )
        .await,
        Some(ResponseCode::NoPermission)
    );
    assert_eq!(
        send_code(
            with_credentials(cluster.options(), "reader", "reader-secret"),
            &topic
        )
        .await,
        Some(ResponseCode::NoPermission)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_enforcing_broker_serves_tls_clients_only() {
    let cluster = Cluster::start_with(1, |c| c.tls_server_mode = "enforcing".into()).await;
    let topic = unique("TlsT");
    // The test's raw client is plaintext: create the topic over TLS with the admin client.
    let tls = ClientOptions {
        tls: true,
        ..cluster.options()
    };
    let admin = Admin::builder().options(tls.clone()).start().await.unwrap();
    admin
        .create_topic_on_broker(&cluster.broker_addr(0), &TopicSpec::new(&topic, 2))
        .await
        .unwrap();
    admin.shutdown().await;
    cluster
        .wait_route(&topic, |r| !r.queue_datas.is_empty())
        .await;

    let producer = Producer::builder(unique("pg"))
        .options(tls.clone())
        .start()
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .send(Message::new(&topic, format!("t-{i}")))
            .await
            .unwrap();
    }
    producer.shutdown().await;
    let count = Arc::new(Mutex::new(0usize));
    let sink = count.clone();
    let consumer = PushConsumer::builder(unique("tlscg"))
        .options(tls)
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |msgs: &[MessageExt]| {
            *sink.lock().unwrap() += msgs.len();
            ConsumeResult::Success
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "TLS consumer got all", || {
        let count = count.clone();
        async move { *count.lock().unwrap() == 10 }
    })
    .await;
    consumer.shutdown().await;

    // Plaintext to the broker is refused (the connection is closed before any frame).
    let plain = Producer::builder(unique("pg"))
        .options(cluster.options())
        .retry_times(0)
        .start()
        .await
        .unwrap();
    let e = plain.send(Message::new(&topic, "plain")).await.unwrap_err();
    assert!(e.response_code().is_none(), "refused by the transport: {e}");
    plain.shutdown().await;
    cluster.shutdown().await;
}
