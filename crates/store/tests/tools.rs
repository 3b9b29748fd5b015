//! `verify` and `dump` against a store we wrote, then against damaged copies.

use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::message::properties;
use ferrymq_store::tools::{dump, verify, DumpOptions};
use ferrymq_store::{MessageInner, MessageStore, StoreConfig};

fn write_store(dir: &std::path::Path) {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = 64 * 1024;
    c.mapped_file_size_consume_queue = 100 * 20;
    c.max_hash_slot_num = 64;
    c.max_index_num = 256;
    let store = MessageStore::open(c).unwrap();
    for i in 0..200 {
        let mut m = MessageInner::new(
            if i % 2 == 0 { "A" } else { "B" },
            i % 4,
            Bytes::from(format!("body-{i:0>400}")),
        );
        m.properties = properties::encode([
            ("TAGS", "t"),
            ("KEYS", format!("key{i}").as_str()),
            ("UNIQ_KEY", format!("U{i}").as_str()),
        ]);
        assert!(store.put_message(m).wait().is_ok());
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    store.shutdown().unwrap();
}

#[test]
fn verify_clean_then_damaged() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let r = verify(dir.path()).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.records, 200);
    assert_eq!(r.consume_queue_entries, 200);
    assert_eq!(r.index_entries, 400);

    // Flip one byte inside a body in the first file.
    let first = dir.path().join("commitlog").join(format!("{:020}", 0));
    let mut data = std::fs::read(&first).unwrap();
    let at = data.windows(9).position(|w| w == b"body-0000").unwrap() + 20;
    data[at] ^= 0x01;
    std::fs::write(&first, &data).unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(!r.is_ok());
    assert!(
        r.problems.iter().any(|p| p.contains("CRC")),
        "{:?}",
        r.problems
    );
    data[at] ^= 0x01;
    std::fs::write(&first, &data).unwrap();
    assert!(verify(dir.path()).unwrap().is_ok());

    // Truncate a file.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    f.set_len(30_000).unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(!r.is_ok());
    assert!(
        r.problems.iter().any(|p| p.contains("truncated")),
        "{:?}",
        r.problems
    );
}

#[test]
fn dump_filters_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let mut lines = Vec::new();
    let (n, damage) = dump(
        dir.path(),
        &DumpOptions {
            topic: Some("B".into()),
            offset: None,
            count: Some(5),
        },
        |r| lines.push(r.to_line()),
    )
    .unwrap();
    assert_eq!(n, 5);
    assert!(damage.is_none());
    assert!(lines.iter().all(|l| l.contains("topic=B ")));
    assert!(lines[0].contains("keys=key1 "));
    let mut all = 0;
    dump(dir.path(), &DumpOptions::default(), |r| {
        assert_eq!(
            serde_json::to_value(r).unwrap()["topic"]
                .as_str()
                .unwrap()
                .len(),
            1
        );
        all += 1;
    })
    .unwrap();
    assert_eq!(all, 200);
}
