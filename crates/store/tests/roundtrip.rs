//! Property test: whatever sequence of appends (single and batched), clean restarts, crash
//! restarts and torn tails, every acknowledged message reads back identical, in order, at its
//! queue offset.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ferrymq_protocol::message::{batch, properties, RecordView};
use ferrymq_store::{GetMessageStatus, MessageBatch, MessageInner, MessageStore, StoreConfig};
use proptest::prelude::*;

const FILE_SIZE: usize = 64 * 1024;

fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = FILE_SIZE;
    c.mapped_file_size_consume_queue = 50 * 20;
    c.max_hash_slot_num = 32;
    c.max_index_num = 128;
    c.warm_mapped_file_enable = false;
    c
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        queue: i32,
        bodies: Vec<Vec<u8>>,
        batch: bool,
    },
    Restart,
    Crash,
    Tear(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3i32, proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..6), any::<bool>())
            .prop_map(|(queue, bodies, batch)| Op::Put { queue, bodies, batch }),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
        1 => proptest::collection::vec(1..=255u8, 1..300).prop_map(Op::Tear),
    ]
}

fn check(store: &MessageStore, model: &[Vec<Vec<u8>>]) -> Result<(), TestCaseError> {
    prop_assert!(store.wait_dispatched(Duration::from_secs(10)));
    for (q, want) in model.iter().enumerate() {
        let q = q as i32;
        prop_assert_eq!(store.max_offset_in_queue("P", q), want.len() as i64);
        let mut off = 0;
        let mut got: Vec<Vec<u8>> = Vec::new();
        while off < want.len() as i64 {
            let r = store.get_messages("P", q, off, 32, 1 << 20, None);
            prop_assert_eq!(r.status, GetMessageStatus::Found);
            for (m, qo) in r.messages.iter().zip(&r.queue_offsets) {
                let v = RecordView::parse_checked(m).unwrap();
                prop_assert_eq!(v.queue_offset(), *qo);
                got.push(v.body().to_vec());
            }
            off = r.next_begin_offset;
        }
        prop_assert_eq!(&got, want);
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut model: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    let mut store = MessageStore::open(config(dir.path())).unwrap();
    for op in ops {
        match op {
            Op::Put {
                queue,
                bodies,
                batch: true,
            } => {
                let props: Vec<String> = (0..bodies.len())
                    .map(|i| properties::encode([("KEYS", i.to_string().as_str())]))
                    .collect();
                let els: Vec<batch::BatchElement<'_>> = bodies
                    .iter()
                    .zip(&props)
                    .map(|(b, p)| batch::BatchElement {
                        flag: 0,
                        body: b,
                        properties: p,
                    })
                    .collect();
                let r = store
                    .put_messages(MessageBatch {
                        topic: "P".into(),
                        queue_id: queue,
                        body: Bytes::from(batch::encode(els.iter()).unwrap()),
                        properties: String::new(),
                        sys_flag: 0,
                        born_timestamp: 0,
                        born_host: "127.0.0.1:1".parse().unwrap(),
                        store_host: "127.0.0.1:2".parse().unwrap(),
                        reconsume_times: 0,
                    })
                    .wait();
                if r.is_ok() {
                    prop_assert_eq!(
                        r.append.unwrap().logics_offset,
                        model[queue as usize].len() as i64
                    );
                    model[queue as usize].extend(bodies);
                }
            }
            Op::Put {
                queue,
                bodies,
                batch: false,
            } => {
                for b in bodies {
                    let r = store
                        .put_message(MessageInner::new("P", queue, b.clone()))
                        .wait();
                    if r.is_ok() {
                        model[queue as usize].push(b);
                    }
                }
            }
            Op::Restart => {
                store.shutdown().unwrap();
                drop(store);
                store = MessageStore::open(config(dir.path())).unwrap();
                check(&store, &model)?;
            }
            Op::Crash => {
                store.shutdown().unwrap();
                drop(store);
                std::fs::write(dir.path().join("abort"), b"").unwrap();
                store = MessageStore::open(config(dir.path())).unwrap();
                check(&store, &model)?;
            }
            Op::Tear(garbage) => {
                let end = store.commit_log_max_offset();
                store.shutdown().unwrap();
                drop(store);
                let start = end / FILE_SIZE as i64 * FILE_SIZE as i64;
                let pos = (end - start) as usize;
                let path = dir.path().join("commitlog").join(format!("{start:020}"));
                if path.exists() && pos + garbage.len() <= FILE_SIZE {
                    let mut data = std::fs::read(&path).unwrap();
                    data[pos..pos + garbage.len()].copy_from_slice(&garbage);
                    std::fs::write(&path, &data).unwrap();
                }
                std::fs::write(dir.path().join("abort"), b"").unwrap();
                store = MessageStore::open(config(dir.path())).unwrap();
                prop_assert_eq!(store.commit_log_max_offset(), end);
                check(&store, &model)?;
            }
        }
    }
    check(&store, &model)?;
    store.shutdown().unwrap();
    drop(store);
    let store = MessageStore::open(config(dir.path())).unwrap();
    check(&store, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn acknowledged_messages_survive_everything(ops in proptest::collection::vec(op(), 1..30)) {
        run(ops)?;
    }
}
