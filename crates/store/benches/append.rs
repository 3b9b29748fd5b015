//! Append throughput of 1 KiB records: ASYNC_FLUSH with single puts and with batches of 32, and
//! SYNC_FLUSH group commit with many puts in flight. Each iteration is one message (or one batch);
//! puts are issued ahead of waiting, as a broker with many connections would.
//!
//! Run: `cargo bench -p ferrymq-store --bench append`. Uses 128 MiB commit-log files in a temp dir
//! under the target directory (same file system as the repo).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrymq_protocol::message::batch::{self, BatchElement};
use ferrymq_store::{
    FlushDiskType, MessageBatch, MessageInner, MessageStore, PutHandle, StoreConfig,
};

const BODY: usize = 1024;
const IN_FLIGHT: usize = 4096;

fn open(flush: FlushDiskType) -> (tempfile::TempDir, MessageStore) {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let mut c = StoreConfig::new(dir.path());
    c.mapped_file_size_commit_log = 128 * 1024 * 1024;
    c.flush_disk_type = flush;
    c.message_index_enable = false;
    // The bench measures throughput with thousands of puts queued on purpose; the broker's
    // flow control (refuse what queued > 200 ms) would only turn a busy machine into failures.
    c.wait_time_in_queue = Duration::from_secs(3600);
    let store = MessageStore::open(c).expect("open store");
    (dir, store)
}

fn message(i: u64) -> MessageInner {
    let mut m = MessageInner::new(
        "BenchmarkTest",
        (i % 8) as i32,
        Bytes::from(vec![b'x'; BODY]),
    );
    m.properties = "TAGS\u{1}TagA\u{2}".to_owned();
    m
}

fn drive(iters: u64, mut submit: impl FnMut(u64) -> PutHandle) -> Duration {
    let start = Instant::now();
    let mut pending = Vec::with_capacity(IN_FLIGHT);
    for i in 0..iters {
        pending.push(submit(i));
        if pending.len() == IN_FLIGHT {
            for h in pending.drain(..) {
                let r = h.wait();
                assert!(r.status.is_stored(), "{:?} {:?}", r.status, r.remark);
            }
        }
    }
    for h in pending.drain(..) {
        let r = h.wait();
        assert!(r.status.is_stored(), "{:?} {:?}", r.status, r.remark);
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_1KiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    {
        let (_dir, store) = open(FlushDiskType::AsyncFlush);
        g.throughput(Throughput::Bytes(BODY as u64));
        g.bench_function("async_flush/batch_1", |b| {
            b.iter_custom(|iters| drive(iters, |i| store.put_message(message(i))))
        });
        store.shutdown().expect("shutdown");
    }
    {
        let (_dir, store) = open(FlushDiskType::AsyncFlush);
        let bodies = vec![vec![b'x'; BODY]; 32];
        let props = "TAGS\u{1}TagA\u{2}";
        let els: Vec<BatchElement<'_>> = bodies
            .iter()
            .map(|b| BatchElement {
                flag: 0,
                body: b,
                properties: props,
            })
            .collect();
        let body = Bytes::from(batch::encode(els.iter()).expect("encode batch"));
        g.throughput(Throughput::Bytes(32 * BODY as u64));
        g.bench_function("async_flush/batch_32", |b| {
            b.iter_custom(|iters| {
                drive(iters, |i| {
                    store.put_messages(MessageBatch {
                        topic: "BenchmarkTest".into(),
                        queue_id: (i % 8) as i32,
                        body: body.clone(),
                        properties: String::new(),
                        sys_flag: 0,
                        born_timestamp: 0,
                        born_host: "127.0.0.1:1".parse().expect("addr"),
                        store_host: "127.0.0.1:10911".parse().expect("addr"),
                        reconsume_times: 0,
                    })
                })
            })
        });
        store.shutdown().expect("shutdown");
    }
    {
        let (_dir, store) = open(FlushDiskType::SyncFlush);
        g.throughput(Throughput::Bytes(BODY as u64));
        g.bench_function("sync_flush_group_commit/batch_1", |b| {
            b.iter_custom(|iters| drive(iters, |i| store.put_message(message(i))))
        });
        store.shutdown().expect("shutdown");
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
