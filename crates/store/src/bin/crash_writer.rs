//! Test helper for `tests/crash.rs`: appends messages under SYNC_FLUSH from several threads and
//! prints one `ACK <id> <queueId> <queueOffset> <commitLogOffset>` line per acknowledged put, until
//! it is killed. The message body is a pure function of the id so the test can check it.
//!
//! Usage: `ferrymq-store-crash-writer <storeDir> <firstId> <threads>`

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::message::properties;
use ferrymq_store::{FlushDiskType, MessageInner, MessageStore, PutMessageStatus, StoreConfig};

/// Body of message `id` (the test has the same function).
fn body_for(id: u64) -> Vec<u8> {
    let len = 16 + (id.wrapping_mul(2_654_435_761) % 1500) as usize;
    (0..len)
        .map(|i| {
            (id as u8)
                .wrapping_mul(7)
                .wrapping_add((i as u8).wrapping_mul(31))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} <storeDir> <firstId> <threads>", args[0]);
        std::process::exit(2);
    }
    let first: u64 = args[2].parse().unwrap_or(0);
    let threads: usize = args[3].parse().unwrap_or(4);
    let mut config = StoreConfig::new(&args[1]);
    config.mapped_file_size_commit_log = 256 * 1024;
    config.mapped_file_size_consume_queue = 1000 * 20;
    config.max_hash_slot_num = 1024;
    config.max_index_num = 4096;
    config.flush_disk_type = FlushDiskType::SyncFlush;
    config.flush_interval_consume_queue = Duration::from_millis(50);
    let store = match MessageStore::open(config) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    let next = Arc::new(AtomicU64::new(first));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            let next = next.clone();
            std::thread::spawn(move || loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let queue_id = (id % 4) as i32;
                let mut m = MessageInner::new("Crash", queue_id, Bytes::from(body_for(id)));
                let key = id.to_string();
                m.properties =
                    properties::encode([("KEYS", key.as_str()), ("UNIQ_KEY", key.as_str())]);
                let r = store.put_message(m).wait();
                if r.status != PutMessageStatus::PutOk {
                    eprintln!("put {id} failed: {}", r.status);
                    continue;
                }
                let Some(a) = r.append else { continue };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "ACK {id} {queue_id} {} {}",
                    a.logics_offset, a.wrote_offset
                );
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
