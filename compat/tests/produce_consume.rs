//! Issue #4, items 1 and 2: mixed sync/async/oneway production of 10,000 messages to a push
//! consumer, and server-side tag filtering for a second consumer group.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cheetah_string::CheetahString;
use common::client::{
    body_for, ensure_topic, start_concurrent_consumer, ClientEnv, Collector, Delivery,
};
use common::raw::{self, RawConn};
use common::{wait_until, Ferrymq};
use rocketmq_client_rust::SendStatus;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;

const TEXT_PROP: &str = "héllo wörld ✓ a=b;c:d,e";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sync,
    Async,
    Oneway,
}

impl Mode {
    fn of(i: usize) -> Mode {
        match i % 3 {
            0 => Mode::Sync,
            1 => Mode::Async,
            _ => Mode::Oneway,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Oneway => "oneway",
        }
    }
}

/// What message `i` of the mixed test looks like.
struct Expected {
    id: String,
    tag: String,
    keys: String,
    body: Vec<u8>,
    mode: Mode,
}

fn expected(i: usize) -> Expected {
    let id = format!("mx-{i:05}");
    let tag = ["TagA", "TagB", "TagC", "TagD"][i % 4].to_owned();
    let keys = format!("{id} grp{}", i % 10);
    // every 100th body is over the client's 4 KiB compression threshold
    let len = if i % 100 == 7 {
        6000
    } else {
        20 + (i * 37) % 700
    };
    Expected {
        body: body_for(&id, i as u64, len),
        id,
        tag,
        keys,
        mode: Mode::of(i),
    }
}

fn build_message(topic: &str, i: usize) -> Message {
    let e = expected(i);
    let mut m = Message::builder()
        .topic(topic.to_owned())
        .body(e.body.clone())
        .tags(e.tag.clone())
        .keys(vec![e.id.clone(), format!("grp{}", i % 10)])
        .build_unchecked();
    m.put_user_property(
        CheetahString::from("idx"),
        CheetahString::from(i.to_string()),
    )
    .expect("idx");
    m.put_user_property(
        CheetahString::from("mode"),
        CheetahString::from(e.mode.name()),
    )
    .expect("mode");
    m.put_user_property(CheetahString::from("text"), CheetahString::from(TEXT_PROP))
        .expect("text");
    m
}

/// What a SEND_MESSAGE response said about a stored message.
#[derive(Clone, Debug)]
struct SendInfo {
    queue_id: i32,
    queue_offset: i64,
    msg_id: Option<String>,
    offset_msg_id: Option<String>,
}

impl SendInfo {
    fn of(r: &rocketmq_client_rust::SendResult) -> SendInfo {
        SendInfo {
            queue_id: r.message_queue.as_ref().map(|q| q.queue_id()).unwrap_or(-1),
            queue_offset: r.queue_offset as i64,
            msg_id: r.msg_id.as_ref().map(|m| m.to_string()),
            offset_msg_id: r.offset_msg_id.clone(),
        }
    }
}

fn idx_of(d: &Delivery) -> Option<usize> {
    d.user_property("idx").and_then(|s| s.parse().ok())
}

/// Checks one delivery against what was sent; returns a description of each difference.
fn check_delivery(topic: &str, d: &Delivery) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(i) = idx_of(d) else {
        return errs;
    };
    let e = expected(i);
    if d.topic != topic {
        errs.push(format!("{}: topic {:?}", e.id, d.topic));
    }
    if d.body != e.body {
        errs.push(format!(
            "{}: body differs (got {} bytes starting {:?}, want {} bytes)",
            e.id,
            d.body.len(),
            String::from_utf8_lossy(&d.body[..d.body.len().min(24)]),
            e.body.len()
        ));
    }
    if d.tags.as_deref() != Some(e.tag.as_str()) {
        errs.push(format!("{}: tags {:?}, want {:?}", e.id, d.tags, e.tag));
    }
    if d.keys.as_deref() != Some(e.keys.as_str()) {
        errs.push(format!("{}: keys {:?}, want {:?}", e.id, d.keys, e.keys));
    }
    if d.user_property("mode") != Some(e.mode.name()) {
        errs.push(format!(
            "{}: property mode {:?}",
            e.id,
            d.user_property("mode")
        ));
    }
    if d.user_property("text") != Some(TEXT_PROP) {
        errs.push(format!(
            "{}: property text {:?}, want {TEXT_PROP:?}",
            e.id,
            d.user_property("text")
        ));
    }
    errs
}

/// Item 1: 10,000 messages, one third each sync, async and oneway, with tags, two keys and
/// user properties; one clustering push consumer must receive each exactly once, intact.
#[test]
fn mixed_sync_async_oneway_10k_delivered_intact() {
    const N: usize = 10_000;
    let topic = "CompatMixed";
    let broker = Ferrymq::start("mixed");
    let ns = broker.namesrv_addr();
    let env = ClientEnv::new("mixed");
    let collector = Collector::new();
    let result = env.block_on(async {
        let producer = env.producer(&ns, "compat_mixed_pg").await;
        ensure_topic(&producer, &ns, topic).await;
        let mut consumer =
            start_concurrent_consumer(&env, &ns, "compat_mixed_cg", topic, "*", "mixed-c1", collector.clone()).await;
        assert_eq!(
            format!("{:?}", consumer.message_model()),
            "Clustering",
            "the push consumer default should be clustering"
        );

        let sends: Arc<Mutex<HashMap<usize, SendInfo>>> = Arc::new(Mutex::new(HashMap::new()));
        let async_ok = Arc::new(AtomicUsize::new(0));
        let async_err: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let mut sync_errors = Vec::new();
        let mut dispatch_errors = Vec::new();
        let mut async_sent = 0usize;
        let started = Instant::now();
        for i in 0..N {
            let msg = build_message(topic, i);
            match Mode::of(i) {
                Mode::Sync => match producer.send(msg).await {
                    Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                        sends.lock().unwrap().insert(i, SendInfo::of(&r));
                    }
                    other => sync_errors.push(format!("mx-{i:05}: {other:?}")),
                },
                Mode::Async => {
                    let ok = async_ok.clone();
                    let err = async_err.clone();
                    let infos = sends.clone();
                    let r = producer
                        .send_with_callback(msg, move |res, e| match (res, e) {
                            (Some(r), None) if r.send_status == SendStatus::SendOk => {
                                infos.lock().unwrap().insert(i, SendInfo::of(r));
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            (r, e) => err.lock().unwrap().push(format!("mx-{i:05}: result {r:?} error {e:?}")),
                        })
                        .await;
                    match r {
                        Ok(()) => async_sent += 1,
                        Err(e) => dispatch_errors.push(format!("mx-{i:05} async dispatch: {e}")),
                    }
                }
                Mode::Oneway => {
                    if let Err(e) = producer.send_oneway(msg).await {
                        dispatch_errors.push(format!("mx-{i:05} oneway: {e}"));
                    }
                }
            }
        }
        let ok2 = async_ok.clone();
        let err2 = async_err.clone();
        let callbacks_done = wait_until(Duration::from_secs(30), move || {
            ok2.load(Ordering::SeqCst) + err2.lock().unwrap().len() >= async_sent
        })
        .await;
        eprintln!(
            "[mixed] sent {N} in {:?}: sync errors {}, async ok {}/{async_sent}, async errors {}, dispatch errors {}",
            started.elapsed(),
            sync_errors.len(),
            async_ok.load(Ordering::SeqCst),
            async_err.lock().unwrap().len(),
            dispatch_errors.len()
        );
        assert!(sync_errors.is_empty(), "sync sends failed: {:?}", &sync_errors[..sync_errors.len().min(5)]);
        assert!(dispatch_errors.is_empty(), "sends failed: {:?}", &dispatch_errors[..dispatch_errors.len().min(5)]);
        assert!(callbacks_done, "async send callbacks incomplete after 30 s");
        {
            let e = async_err.lock().unwrap();
            assert!(e.is_empty(), "async sends failed ({}): {:?}", e.len(), &e[..e.len().min(5)]);
        }

        let c2 = collector.clone();
        let all = wait_until(Duration::from_secs(90), move || c2.distinct_by(|d| d.user_property("idx").map(str::to_owned)) >= N).await;
        // let any stray redelivery arrive before judging duplicates
        tokio::time::sleep(Duration::from_millis(500)).await;
        consumer.shutdown().await;
        let mut producer = producer;
        producer.shutdown().await;
        let sends = sends.lock().unwrap().clone();
        (all, sends)
    });
    let (result, sends) = result;
    env.shutdown();

    let deliveries = collector.snapshot();
    let mut by_idx: BTreeMap<usize, Vec<&Delivery>> = BTreeMap::new();
    for d in &deliveries {
        if let Some(i) = idx_of(d) {
            by_idx.entry(i).or_default().push(d);
        }
    }
    let missing: Vec<usize> = (0..N).filter(|i| !by_idx.contains_key(i)).collect();
    let missing_by_mode: HashMap<&str, usize> = missing.iter().fold(HashMap::new(), |mut m, i| {
        *m.entry(Mode::of(*i).name()).or_default() += 1;
        m
    });
    assert!(
        result && missing.is_empty(),
        "{} of {N} messages never delivered (by send mode: {missing_by_mode:?}); first missing: {:?}; broker log {}",
        missing.len(),
        &missing[..missing.len().min(10)],
        broker.log_path().display()
    );
    let mut errs = Vec::new();
    for d in &deliveries {
        errs.extend(check_delivery(topic, d));
    }
    assert!(
        errs.is_empty(),
        "{} field mismatches, first: {:#?}",
        errs.len(),
        &errs[..errs.len().min(10)]
    );
    let acknowledged = (0..N).filter(|i| Mode::of(*i) != Mode::Oneway).count();
    assert_eq!(sends.len(), acknowledged, "send results recorded");
    // What the broker answered to each acknowledged send (queue, queue offset, message ids)
    // must match where the message was then found.
    let store = format!("127.0.0.1:{}", broker.broker_port);
    let store_prefix = format!("7F000001{:08X}", broker.broker_port);
    let mut id_errs = Vec::new();
    for d in &deliveries {
        let Some(i) = idx_of(d) else { continue };
        if d.store_host.to_string() != store {
            id_errs.push(format!(
                "mx-{i:05}: store host {} (broker is {store})",
                d.store_host
            ));
        }
        if d.store_timestamp < d.born_timestamp - 60_000 || d.store_timestamp == 0 {
            id_errs.push(format!(
                "mx-{i:05}: store timestamp {} vs born {}",
                d.store_timestamp, d.born_timestamp
            ));
        }
        let Some(s) = sends.get(&i) else { continue };
        if (s.queue_id, s.queue_offset) != (d.queue_id, d.queue_offset) {
            id_errs.push(format!(
                "mx-{i:05}: SEND_MESSAGE answered queue {} offset {}, consumed from queue {} offset {}",
                s.queue_id, s.queue_offset, d.queue_id, d.queue_offset
            ));
        }
        let uniq = d.user_property("UNIQ_KEY").map(str::to_owned);
        if s.msg_id.is_none() || uniq != s.msg_id {
            id_errs.push(format!(
                "mx-{i:05}: send result msgId {:?}, consumed UNIQ_KEY {uniq:?}",
                s.msg_id
            ));
        }
        match &s.offset_msg_id {
            Some(o) if o.len() == 32 && o.to_ascii_uppercase().starts_with(&store_prefix) => {}
            other => id_errs.push(format!("mx-{i:05}: offsetMsgId {other:?} does not encode the store address {store} ({store_prefix}…)")),
        }
    }
    assert!(
        id_errs.is_empty(),
        "{} send-result/stored-message mismatches (of {} acknowledged sends), first: {:#?}",
        id_errs.len(),
        sends.len(),
        &id_errs[..id_errs.len().min(10)]
    );
    // The listener always returns ConsumeSuccess: nothing may come back through the retry topic.
    let retried: Vec<String> = deliveries
        .iter()
        .filter(|d| d.reconsume_times > 0 || d.user_property("RETRY_TOPIC").is_some())
        .take(5)
        .map(|d| {
            format!(
                "{:?} q{}@{} reconsume {}",
                idx_of(d),
                d.queue_id,
                d.queue_offset,
                d.reconsume_times
            )
        })
        .collect();
    assert!(
        retried.is_empty(),
        "messages were re-consumed although every consume succeeded: {retried:?}"
    );
    // exactly once in a clean single-consumer run: no stored duplicates, no redeliveries
    let dups: Vec<String> = by_idx
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(i, v)| {
            let places: Vec<String> = v
                .iter()
                .map(|d| format!("q{}@{} {}", d.queue_id, d.queue_offset, d.msg_id))
                .collect();
            format!("mx-{i:05} x{}: {places:?}", v.len())
        })
        .collect();
    assert!(
        dups.is_empty(),
        "{} messages delivered more than once: {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    drop(broker);
}

/// Item 2: a second consumer group subscribed with `TagA || TagB` only gets those tags — both
/// through the crates.io push consumer and, checked directly, in what the broker returns to a
/// PULL_MESSAGE carrying that subscription (the client also filters by tag locally, which
/// would hide a broker that does not filter).
#[test]
fn tag_expression_subscription_gets_only_matching_tags() {
    const N: usize = 2_000;
    let topic = "CompatTags";
    let tags_of = |i: usize| -> Option<&'static str> {
        [Some("TagA"), Some("TagB"), Some("TagC"), Some("TagD"), None][i % 5]
    };
    let wanted = |t: Option<&str>| matches!(t, Some("TagA") | Some("TagB"));
    let broker = Ferrymq::start("tags");
    let ns = broker.namesrv_addr();
    let env = ClientEnv::new("tags");
    let all = Collector::new();
    let ab = Collector::new();
    let expected_ab: HashSet<usize> = (0..N).filter(|i| wanted(tags_of(*i))).collect();
    let (all_ok, ab_ok) = env.block_on(async {
        let producer = env.producer(&ns, "compat_tags_pg").await;
        ensure_topic(&producer, &ns, topic).await;
        let mut c_all = start_concurrent_consumer(
            &env,
            &ns,
            "compat_tags_all",
            topic,
            "*",
            "tags-all",
            all.clone(),
        )
        .await;
        let mut c_ab = start_concurrent_consumer(
            &env,
            &ns,
            "compat_tags_ab",
            topic,
            "TagA || TagB",
            "tags-ab",
            ab.clone(),
        )
        .await;
        for i in 0..N {
            let mut b = Message::builder().topic(topic.to_owned()).body(body_for(
                &format!("tg-{i:05}"),
                i as u64,
                40,
            ));
            if let Some(t) = tags_of(i) {
                b = b.tags(t);
            }
            let mut m = b.build_unchecked();
            m.put_user_property(
                CheetahString::from("idx"),
                CheetahString::from(i.to_string()),
            )
            .unwrap();
            let r = producer.send(m).await;
            assert!(
                matches!(&r, Ok(Some(s)) if s.send_status == SendStatus::SendOk),
                "send tg-{i:05}: {r:?}"
            );
        }
        let a2 = all.clone();
        let all_ok = wait_until(Duration::from_secs(60), move || {
            a2.distinct_by(|d| d.user_property("idx").map(str::to_owned)) >= N
        })
        .await;
        let ab2 = ab.clone();
        let n_ab = expected_ab.len();
        let ab_ok = wait_until(Duration::from_secs(30), move || {
            ab2.distinct_by(|d| d.user_property("idx").map(str::to_owned)) >= n_ab
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        c_all.shutdown().await;
        c_ab.shutdown().await;
        let mut producer = producer;
        producer.shutdown().await;
        (all_ok, ab_ok)
    });
    env.shutdown();

    assert!(
        all_ok,
        "the '*' group got only {} distinct of {N}",
        all.distinct_by(|d| d.user_property("idx").map(str::to_owned))
    );
    let got: Vec<Delivery> = ab.snapshot();
    let wrong: Vec<String> = got
        .iter()
        .filter(|d| idx_of(d).is_some() && !wanted(d.tags.as_deref()))
        .map(|d| format!("idx {:?} tags {:?}", idx_of(d), d.tags))
        .collect();
    assert!(
        wrong.is_empty(),
        "'TagA || TagB' group received {} other messages: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let got_ids: HashSet<usize> = got.iter().filter_map(idx_of).collect();
    let missing: Vec<&usize> = expected_ab.difference(&got_ids).collect();
    assert!(
        ab_ok && missing.is_empty(),
        "'TagA || TagB' group missed {} of {} matching messages, e.g. {:?}",
        missing.len(),
        expected_ab.len(),
        &missing[..missing.len().min(10)]
    );

    // Broker-side filtering, seen without the client's local re-filtering.
    let queues = raw::route_queue_count(&ns, topic).expect("route");
    let mut conn = RawConn::connect(&broker.broker_addr()).expect("connect broker");
    let mut returned = Vec::new();
    for q in 0..queues {
        let max = raw::max_offset(&mut conn, topic, q).expect("max offset");
        let mut offset = 0i64;
        let mut rounds = 0;
        while offset < max {
            rounds += 1;
            assert!(
                rounds < 10_000,
                "pull loop on queue {q} does not advance (offset {offset}, max {max})"
            );
            let r = raw::pull_message(
                &mut conn,
                "compat_tags_raw",
                topic,
                q,
                offset,
                32,
                "TagA || TagB",
            )
            .expect("pull");
            let next = r.ext_i64("nextBeginOffset");
            match r.code {
                raw::code::SUCCESS => {
                    let msgs = raw::decode_messages(&r.body).unwrap_or_else(|e| {
                        panic!(
                            "cannot decode PULL_MESSAGE body from queue {q} offset {offset}: {e}"
                        )
                    });
                    assert!(
                        !msgs.is_empty(),
                        "PULL_MESSAGE SUCCESS with no messages (q{q}@{offset}): {}",
                        r.header_json
                    );
                    returned.extend(msgs);
                }
                raw::code::PULL_NOT_FOUND | raw::code::PULL_RETRY_IMMEDIATELY => {}
                other => panic!(
                    "raw PULL_MESSAGE q{q}@{offset} answered code {other} remark {:?} ({})",
                    r.remark, r.header_json
                ),
            }
            let next = next
                .unwrap_or_else(|| panic!("no nextBeginOffset in pull response {}", r.header_json));
            assert!(
                next > offset,
                "nextBeginOffset {next} does not advance past {offset} on queue {q}: {}",
                r.header_json
            );
            offset = next;
        }
    }
    let bad: Vec<String> = returned
        .iter()
        .filter(|m| !wanted(m.tags()))
        .map(|m| format!("q{}@{} tags {:?}", m.queue_id, m.queue_offset, m.tags()))
        .collect();
    assert!(
        bad.is_empty(),
        "broker returned {} non-matching messages to a PULL_MESSAGE with subscription 'TagA || TagB' (sysFlag FLAG_SUBSCRIPTION): {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    let raw_ids: HashSet<usize> = returned
        .iter()
        .filter_map(|m| m.properties.get("idx").and_then(|s| s.parse().ok()))
        .collect();
    assert_eq!(
        raw_ids.len(),
        expected_ab.len(),
        "raw pull returned a different set of TagA/TagB messages"
    );
    drop(broker);
}
