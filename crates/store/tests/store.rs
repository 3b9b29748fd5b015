//! End-to-end behaviour of `MessageStore`: put/get, statuses, batches, index queries, restart
//! and recovery, SYNC_FLUSH, retention.

use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::message::{batch, properties, tags_code, RecordView, SubscriptionTags};
use ferrymq_store::{
    FlushDiskType, GetMessageStatus, MessageBatch, MessageInner, MessageStore, PutMessageStatus,
    StoreConfig,
};

fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = 64 * 1024;
    c.mapped_file_size_consume_queue = 100 * 20;
    c.max_hash_slot_num = 64;
    c.max_index_num = 256;
    c.flush_interval_commit_log = Duration::from_millis(20);
    c
}

fn msg(topic: &str, q: i32, body: &str, tag: &str, key: &str) -> MessageInner {
    let mut m = MessageInner::new(topic, q, Bytes::copy_from_slice(body.as_bytes()));
    m.properties = properties::encode([
        ("TAGS", tag),
        ("KEYS", key),
        ("UNIQ_KEY", &format!("U-{body}")),
    ]);
    m
}

fn body_of(b: &Bytes) -> String {
    String::from_utf8(RecordView::parse_checked(b).unwrap().body().to_vec()).unwrap()
}

#[test]
fn put_get_statuses_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for i in 0..10 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let r = store
            .put_message(msg("T", 1, &format!("m{i}"), tag, &format!("k{i}")))
            .wait();
        assert_eq!(r.status, PutMessageStatus::PutOk);
        let a = r.append.unwrap();
        assert_eq!(a.logics_offset, i);
        assert_eq!(a.msg_id().len(), 32);
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(store.max_offset_in_queue("T", 1), 10);
    let r = store.get_messages("T", 1, 0, 32, 1 << 20, None);
    assert_eq!(r.status, GetMessageStatus::Found);
    assert_eq!(r.messages.len(), 10);
    assert_eq!(r.next_begin_offset, 10);
    assert_eq!(body_of(&r.messages[3]), "m3");
    let v = RecordView::parse(&r.messages[3]).unwrap();
    assert_eq!(v.queue_offset(), 3);
    assert_eq!(
        store.lookup_message_by_offset(v.physical_offset()).unwrap(),
        r.messages[3]
    );

    let f = SubscriptionTags::parse("odd");
    let r = store.get_messages("T", 1, 0, 32, 1 << 20, Some(&f));
    assert_eq!(r.messages.len(), 5);
    assert_eq!(r.queue_offsets, vec![1, 3, 5, 7, 9]);
    let none = SubscriptionTags::parse("nothing");
    let r = store.get_messages("T", 1, 0, 32, 1 << 20, Some(&none));
    assert_eq!(r.status, GetMessageStatus::NoMatchedMessage);
    assert_eq!(r.next_begin_offset, 10);

    let r = store.get_messages("T", 1, 2, 3, 1 << 20, None);
    assert_eq!(r.queue_offsets, vec![2, 3, 4]);
    assert_eq!(r.next_begin_offset, 5);
    assert_eq!(
        store.get_messages("T", 1, 10, 32, 1 << 20, None).status,
        GetMessageStatus::OffsetOverflowOne
    );
    let r = store.get_messages("T", 1, 11, 32, 1 << 20, None);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetOverflowBadly, 10)
    );
    assert_eq!(
        store.get_messages("T", 2, 0, 32, 1 << 20, None).status,
        GetMessageStatus::NoMatchedLogicQueue
    );
    assert_eq!(
        store.get_messages("U", 0, 0, 32, 1 << 20, None).status,
        GetMessageStatus::NoMatchedLogicQueue
    );

    // Index queries.
    let q = store.query_messages_by_key("T", "k4", 10, 0, i64::MAX);
    assert_eq!(q.messages.len(), 1);
    assert_eq!(body_of(&q.messages[0]), "m4");
    assert_eq!(
        body_of(&store.message_by_uniq_key("T", "U-m7").unwrap()),
        "m7"
    );
    assert!(store.message_by_uniq_key("T", "U-zzz").is_none());

    // Time search.
    let ts5 = store.message_store_timestamp("T", 1, 5).unwrap();
    let off = store.offset_by_timestamp("T", 1, ts5);
    assert!(off <= 5);
    assert_eq!(store.message_store_timestamp("T", 1, off), Some(ts5));
    assert_eq!(store.offset_by_timestamp("T", 1, i64::MAX), 10);
    assert_eq!(store.offset_by_timestamp("T", 1, 0), 0);
    assert!(store.earliest_message_time("T", 1).is_some());

    assert!(store.delete_topic("T").unwrap());
    assert_eq!(
        store.get_messages("T", 1, 0, 32, 1 << 20, None).status,
        GetMessageStatus::NoMatchedLogicQueue
    );
    let r = store.put_message(msg("T", 1, "again", "x", "y")).wait();
    assert_eq!(r.append.unwrap().logics_offset, 0);
    store.shutdown().unwrap();
    assert!(!dir.path().join("abort").exists());
}

#[test]
fn rolls_files_batches_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let store = MessageStore::open(config(dir.path())).unwrap();
        for i in 0..300 {
            let body = format!("{i:0>500}");
            let r = store
                .put_message(msg("Roll", i % 3, &body, "t", "k"))
                .wait();
            assert!(r.is_ok());
            expected.push((i % 3, body));
        }
        let elements: Vec<(String, String)> = (0..20)
            .map(|i| {
                (
                    format!("batch-{i}"),
                    properties::encode([("UNIQ_KEY", format!("B{i}").as_str())]),
                )
            })
            .collect();
        let els: Vec<batch::BatchElement<'_>> = elements
            .iter()
            .map(|(b, p)| batch::BatchElement {
                flag: 0,
                body: b.as_bytes(),
                properties: p,
            })
            .collect();
        let r = store
            .put_messages(MessageBatch {
                topic: "Roll".into(),
                queue_id: 0,
                body: Bytes::from(batch::encode(els.iter()).unwrap()),
                properties: String::new(),
                sys_flag: 0,
                born_timestamp: 1,
                born_host: "127.0.0.1:1".parse().unwrap(),
                store_host: "127.0.0.1:10911".parse().unwrap(),
                reconsume_times: 0,
            })
            .wait();
        let a = r.append.unwrap();
        assert_eq!(a.msg_num, 20);
        assert_eq!(a.logics_offset, 100);
        assert_eq!(a.msg_id().split(',').count(), 20);
        for (b, _) in &elements {
            expected.push((0, b.clone()));
        }
        assert!(store.wait_dispatched(Duration::from_secs(5)));
        assert!(
            std::fs::read_dir(dir.path().join("commitlog"))
                .unwrap()
                .count()
                > 2
        );
        store.shutdown().unwrap();
    }
    for round in 0..2 {
        let store = MessageStore::open(config(dir.path())).unwrap();
        for q in 0..3 {
            let want: Vec<&String> = expected
                .iter()
                .filter(|(qq, _)| *qq == q)
                .map(|(_, b)| b)
                .collect();
            let mut got = Vec::new();
            let mut off = 0;
            loop {
                let r = store.get_messages("Roll", q, off, 32, 1 << 20, None);
                if r.status != GetMessageStatus::Found {
                    break;
                }
                got.extend(r.messages.iter().map(body_of));
                off = r.next_begin_offset;
            }
            assert_eq!(got.len(), want.len(), "queue {q} round {round}");
            assert!(got.iter().zip(want).all(|(a, b)| a == b));
        }
        assert_eq!(
            body_of(&store.message_by_uniq_key("Roll", "B7").unwrap()),
            "batch-7"
        );
        if round == 0 {
            // Simulate a crash: leave the abort file behind.
            store.shutdown().unwrap();
            std::fs::write(dir.path().join("abort"), b"").unwrap();
        }
    }
}

#[test]
fn sync_flush_and_wait_false() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_disk_type = FlushDiskType::SyncFlush;
    let store = MessageStore::open(c).unwrap();
    let handles: Vec<_> = (0..50)
        .map(|i| store.put_message(msg("S", 0, &format!("s{i}"), "a", "b")))
        .collect();
    for h in handles {
        assert_eq!(h.wait().status, PutMessageStatus::PutOk);
    }
    assert!(store.stats().commit_log_flushed_offset >= store.commit_log_max_offset());
    let mut m = msg("S", 0, "nowait", "a", "b");
    m.properties = properties::with(&m.properties, "WAIT", "false");
    assert_eq!(store.put_message(m).wait().status, PutMessageStatus::PutOk);
}

#[test]
fn refuses_bad_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let big = MessageInner::new("T", 0, vec![0u8; 70 * 1024]);
    assert_eq!(
        store.put_message(big).wait().status,
        PutMessageStatus::MessageIllegal
    );
    let mut p = MessageInner::new("T", 0, "x");
    p.properties = "a\u{1}".to_owned() + &"b".repeat(40_000) + "\u{2}";
    assert_eq!(
        store.put_message(p).wait().status,
        PutMessageStatus::PropertiesSizeExceeded
    );
    assert!(
        MessageStore::open(config(dir.path())).is_err(),
        "second open must fail on the lock"
    );
    store.shutdown().unwrap();
    assert_eq!(
        store
            .put_message(MessageInner::new("T", 0, "x"))
            .wait()
            .status,
        PutMessageStatus::ServiceNotAvailable
    );
}

#[test]
fn retention_deletes_old_files_and_moves_min_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.file_reserved_time = Duration::ZERO;
    let store = MessageStore::open(c).unwrap();
    for i in 0..400 {
        assert!(store
            .put_message(msg("R", 0, &format!("{i:0>300}"), "t", "k"))
            .wait()
            .is_ok());
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(100)); // let the async flusher catch up
    store.flush_logics().unwrap();
    let before = store.commit_log_min_offset();
    let deleted = store.clean_expired_files().unwrap();
    assert!(deleted > 0);
    assert!(store.commit_log_min_offset() > before);
    let min = store.min_offset_in_queue("R", 0);
    assert!(min > 0);
    let r = store.get_messages("R", 0, 0, 32, 1 << 20, None);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetTooSmall, min)
    );
    let r = store.get_messages("R", 0, min, 32, 1 << 20, None);
    assert_eq!(r.status, GetMessageStatus::Found);
    assert_eq!(
        RecordView::parse(&r.messages[0]).unwrap().queue_offset(),
        min
    );
    assert_eq!(
        tags_code(Some("t")),
        tags_code(RecordView::parse(&r.messages[0]).unwrap().property("TAGS"))
    );
}

/// A zero-filled segment left at the head of the log before a hole (an allocator guess on a
/// slave that later learned the master's offsets) must not make recovery cut away the log.
#[test]
fn a_stray_empty_segment_before_a_hole_does_not_truncate_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cl_dir = dir.path().join("commitlog");
    let (max, last_body) = {
        let store = MessageStore::open(config(dir.path())).unwrap();
        let mut last = String::new();
        for i in 0..400 {
            last = format!("{i:0>500}");
            assert!(store
                .put_message(msg("Hole", 0, &last, "t", "k"))
                .wait()
                .is_ok());
        }
        assert!(store.wait_dispatched(Duration::from_secs(5)));
        let max = store.commit_log_max_offset();
        store.shutdown().unwrap();
        (max, last)
    };
    // Segments 0 and 1 go (as retention would delete them); a zero-filled 0 comes back.
    let size = 64 * 1024u64;
    assert!(max > 3 * size as i64);
    for off in [0, size] {
        std::fs::remove_file(cl_dir.join(format!("{off:020}"))).unwrap();
    }
    std::fs::File::create(cl_dir.join(format!("{:020}", 0)))
        .unwrap()
        .set_len(size)
        .unwrap();
    for crashed in [true, false] {
        if crashed {
            std::fs::write(dir.path().join("abort"), b"").unwrap();
        }
        let store = MessageStore::open(config(dir.path())).unwrap();
        assert_eq!(store.commit_log_max_offset(), max, "crashed={crashed}");
        assert_eq!(store.commit_log_min_offset(), 2 * size as i64);
        let r = store.get_messages("Hole", 0, 399, 1, 1 << 20, None);
        assert_eq!(r.status, GetMessageStatus::Found);
        assert_eq!(body_of(&r.messages[0]), last_body);
        store.shutdown().unwrap();
    }
    assert!(!cl_dir.join(format!("{:020}", 0)).exists());
}
