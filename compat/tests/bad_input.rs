//! Issue #4, item 6: bad input. A malformed topic name and an oversize body (> 4 MiB) must
//! fail with an error — through the crates.io client and, since that client validates both
//! locally, also when sent to the broker directly — and the broker must keep serving.

mod common;

use std::time::Duration;

use cheetah_string::CheetahString;
use common::client::{
    body_for, ensure_topic, random_bytes, start_concurrent_consumer, ClientEnv, Collector,
};
use common::raw::{self, RawConn};
use common::{wait_until, Ferrymq};
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;

const MAX_BODY: usize = 4 * 1024 * 1024;

fn describe(r: &raw::RawResponse) -> String {
    format!("code {} remark {:?}", r.code, r.remark)
}

/// Send statuses a broker may answer to a stored message (SUCCESS, FLUSH_DISK_TIMEOUT,
/// FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE); anything else is an error for the producer.
fn is_stored(code: i32) -> bool {
    matches!(code, 0 | 10 | 11 | 12)
}

#[test]
fn malformed_topic_and_oversize_body_fail_and_broker_keeps_serving() {
    let topic = "CompatBadInput";
    let broker = Ferrymq::start("bad-input");
    let ns = broker.namesrv_addr();
    let env = ClientEnv::new("bad-input");
    let received = Collector::new();
    let mut report = Vec::new();
    let mut broker = broker;

    // --- directly at the broker: what does ferrymq itself answer? ---
    let mut conn = RawConn::connect(&broker.broker_addr()).expect("connect broker");
    let props = raw::properties_string(&[("WAIT", "true"), ("TAGS", "bad")]);
    let long_topic = "T".repeat(128);
    for bad in ["bad topic!", "bad/topic", long_topic.as_str()] {
        let r =
            raw::send_message(&mut conn, "compat_bad_pg", bad, 0, &props, b"x").expect("raw send");
        report.push(format!("raw SEND_MESSAGE topic {bad:?}: {}", describe(&r)));
        assert!(
            !is_stored(r.code),
            "broker accepted SEND_MESSAGE (code 10) to malformed topic {bad:?}: {} ext {:?}",
            describe(&r),
            r.ext
        );
        let mut nsc = RawConn::connect(&ns).expect("connect namesrv");
        let route = raw::route_info(&mut nsc, bad).expect("route query");
        assert_eq!(
            route.code,
            raw::code::TOPIC_NOT_EXIST,
            "after the rejected send, the name server has a route for {bad:?}: {}",
            describe(&route)
        );
    }
    let big = random_bytes(MAX_BODY + 1, 7);
    let r = raw::send_message(&mut conn, "compat_bad_pg", topic, 0, &props, &big)
        .expect("raw oversize send");
    report.push(format!(
        "raw SEND_MESSAGE body {} bytes: {}",
        big.len(),
        describe(&r)
    ));
    assert_eq!(
        r.code,
        raw::code::MESSAGE_ILLEGAL,
        "broker answered {} to SEND_MESSAGE with a {} byte body (maxMessageSize {MAX_BODY}); RocketMQ answers MESSAGE_ILLEGAL (13)",
        describe(&r),
        big.len()
    );
    // the same connection still works
    let ok = raw::send_message(
        &mut conn,
        "compat_bad_pg",
        topic,
        0,
        &props,
        b"after-oversize",
    )
    .expect("connection closed after an oversize message");
    assert_eq!(
        ok.code,
        raw::code::SUCCESS,
        "normal raw send after the oversize one: {}",
        describe(&ok)
    );

    let served = env.block_on(async {
        // --- through the crates.io client ---
        let producer = env.producer(&ns, "compat_bad_pg").await;
        for bad in ["bad topic!", long_topic.as_str()] {
            let m = Message::builder()
                .topic(bad.to_owned())
                .body_slice(b"x")
                .build_unchecked();
            let r = producer.send(m).await;
            report.push(format!("client send to {bad:?}: {r:?}"));
            assert!(
                r.is_err(),
                "client send to malformed topic {bad:?} did not fail: {r:?}"
            );
        }
        let m = Message::builder()
            .topic(topic.to_owned())
            .body(random_bytes(MAX_BODY + 1, 9))
            .build_unchecked();
        let r = producer.send(m).await;
        report.push(format!(
            "client send of {} byte body: {:?}",
            MAX_BODY + 1,
            r.as_ref().map(|_| ())
        ));
        assert!(r.is_err(), "client send of an oversize body did not fail");

        // A producer whose own limit is higher lets the oversize message reach the broker,
        // which must refuse it.
        let mut lax = DefaultMQProducer::builder(env.runtime.clone())
            .client_config(env.client_config(&ns, "lax"))
            .producer_group("compat_bad_lax_pg".to_owned())
            .name_server_addr(ns.clone())
            .max_message_size((2 * MAX_BODY) as u32)
            .retry_times_when_send_failed(0)
            .build();
        lax.start().await.expect("lax producer start");
        ensure_topic(&lax, &ns, topic).await;
        let m = Message::builder()
            .topic(topic.to_owned())
            .body(random_bytes(MAX_BODY + 1, 11))
            .build_unchecked();
        let r = lax.send(m).await;
        match &r {
            Err(e) => {
                report.push(format!(
                    "client (maxMessageSize 8 MiB) send of {} byte body: broker code {:?}: {e}",
                    MAX_BODY + 1,
                    e.broker_response_code()
                ));
                assert_eq!(
                    e.broker_response_code(),
                    Some(raw::code::MESSAGE_ILLEGAL),
                    "expected the broker's MESSAGE_ILLEGAL (13) for an oversize body, got error {e}"
                );
            }
            Ok(res) => panic!("broker stored a {} byte message: {res:?}", MAX_BODY + 1),
        }
        lax.shutdown().await;

        // --- the broker keeps serving ---
        let mut consumer = start_concurrent_consumer(
            &env,
            &ns,
            "compat_bad_cg",
            topic,
            "*",
            "bad-c1",
            received.clone(),
        )
        .await;
        let mut sent = Vec::new();
        for (i, len) in [(0usize, 100usize), (1, 1024 * 1024)] {
            let id = format!("ok-{i}");
            let mut m = Message::builder()
                .topic(topic.to_owned())
                .body(body_for(&id, i as u64, len))
                .tags("ok")
                .build_unchecked();
            m.put_user_property(
                CheetahString::from("idx"),
                CheetahString::from(i.to_string()),
            )
            .unwrap();
            let r = producer.send(m).await;
            assert!(
                matches!(&r, Ok(Some(s)) if s.send_status == SendStatus::SendOk),
                "normal send {id} ({len} bytes) after bad input: {r:?}"
            );
            sent.push((i, len));
        }
        let rc = received.clone();
        let got = wait_until(Duration::from_secs(30), move || {
            rc.distinct_by(|d| d.user_property("idx").map(str::to_owned)) >= 2
        })
        .await;
        consumer.shutdown().await;
        let mut producer = producer;
        producer.shutdown().await;
        for d in received.snapshot() {
            if let Some(i) = d.user_property("idx").and_then(|s| s.parse::<u64>().ok()) {
                let len = sent
                    .iter()
                    .find(|(j, _)| *j as u64 == i)
                    .map(|(_, l)| *l)
                    .unwrap();
                assert!(
                    d.body == body_for(&format!("ok-{i}"), i, len),
                    "message ok-{i} body corrupted ({} bytes)",
                    d.body.len()
                );
            }
        }
        got
    });
    env.shutdown();
    for line in &report {
        eprintln!("[bad-input] {line}");
    }
    assert!(
        served,
        "messages sent after the bad input were not consumed"
    );
    assert!(broker.is_running(), "broker process died");
    let log = broker.read_log();
    assert!(
        !log.contains("panicked"),
        "broker log shows a panic:\n{}",
        broker.log_tail(30)
    );
    drop(broker);
}
