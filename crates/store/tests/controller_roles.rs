//! Controller-mode role switches between two stores in one process, over real HA sockets: a
//! master of epoch 1 with a replica, a partition in which the old master keeps appending what
//! nobody acknowledged, the replica elected master of epoch 2 writing its own messages, and
//! the old master rejoining: it must cut its diverged tail at the epoch boundary, take the new
//! master's epochs and end up byte-identical with it.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymq_protocol::message::RecordView;
use ferrymq_store::epoch::Epoch;
use ferrymq_store::{
    BrokerRole, GetMessageStatus, MessageInner, MessageStore, PutMessageStatus, StoreConfig,
};

const SEGMENT: usize = 64 * 1024;
const TOPIC: &str = "RoleTopic";

fn config(dir: &Path, id: u64) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = SEGMENT;
    c.mapped_file_size_consume_queue = 100 * 20;
    c.max_hash_slot_num = 64;
    c.max_index_num = 256;
    c.warm_mapped_file_enable = false;
    c.broker_role = BrokerRole::Slave;
    c.controller_broker_id = Some(id);
    c.all_ack_in_sync_state_set = true;
    c.sync_flush_timeout = Duration::from_millis(500);
    c.ha_send_heartbeat_interval = Duration::from_millis(100);
    c.ha_listen_addr = Some("127.0.0.1:0".parse().unwrap());
    c
}

fn msg(tag: &str, i: usize) -> MessageInner {
    // ~1.5 KiB records: frames end inside records and segments roll.
    MessageInner::new(
        TOPIC,
        0,
        Bytes::from(format!("{tag}{i:04}-{}", "x".repeat(1500))),
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn bodies(store: &MessageStore) -> Vec<String> {
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    let mut out = Vec::new();
    let mut offset = store.min_offset_in_queue(TOPIC, 0);
    loop {
        let got = store.get_messages(TOPIC, 0, offset, 32, usize::MAX, None);
        if got.status != GetMessageStatus::Found {
            return out;
        }
        for record in &got.messages {
            let view = RecordView::parse(record).unwrap();
            let body = std::str::from_utf8(view.body()).unwrap();
            out.push(body[..5].to_owned());
        }
        offset = got.next_begin_offset;
    }
}

fn ha_addr(store: &MessageStore) -> String {
    store.ha_local_addr().unwrap().to_string()
}

#[test]
fn an_old_master_cuts_its_diverged_tail_and_rejoins_identical() {
    let adir = tempfile::tempdir().unwrap();
    let bdir = tempfile::tempdir().unwrap();
    let a = MessageStore::open(config(adir.path(), 1)).unwrap();
    let b = MessageStore::open(config(bdir.path(), 2)).unwrap();
    // Controller mode starts every store as a slave that replicates nothing.
    assert_eq!(a.role(), BrokerRole::Slave);
    assert_eq!(
        a.put_message(msg("a", 0)).wait().status,
        PutMessageStatus::ServiceNotAvailable
    );

    a.become_master(BrokerRole::SyncMaster, 1).unwrap();
    // Alone in the SyncStateSet: acknowledged at once.
    for i in 0..10 {
        assert!(a.put_message(msg("a", i)).wait().is_ok());
    }
    b.become_slave().unwrap();
    assert_eq!(
        b.reconcile_with_master(&a.epoch_entries(), a.commit_log_max_offset())
            .unwrap(),
        None
    );
    b.replicate_from(&ha_addr(&a)).unwrap();
    wait_until("b to connect and catch up", || {
        b.commit_log_max_offset() == a.commit_log_max_offset()
            && a.ha_status()
                .replicas
                .iter()
                .any(|r| r.broker_id == Some(2))
    });
    // With b in the SyncStateSet a put waits for b.
    a.set_sync_state_set(BTreeSet::from([2]));
    for i in 10..20 {
        assert!(a.put_message(msg("a", i)).wait().is_ok());
    }
    wait_until("b to have everything acknowledged", || {
        b.commit_log_max_offset() == a.commit_log_max_offset()
    });
    let boundary = a.commit_log_max_offset();

    // Partition: b stops replicating; a still appends, but nothing is acknowledged.
    b.become_slave().unwrap();
    for i in 20..25 {
        let r = a.put_message(msg("x", i)).wait();
        assert_eq!(r.status, PutMessageStatus::FlushSlaveTimeout);
    }
    assert!(a.commit_log_max_offset() > boundary);

    // b is elected master of epoch 2 and writes its own messages from the boundary.
    b.become_master(BrokerRole::SyncMaster, 2).unwrap();
    assert_eq!(
        b.epoch_entries(),
        vec![
            Epoch {
                epoch: 1,
                start_offset: 0
            },
            Epoch {
                epoch: 2,
                start_offset: boundary
            },
        ]
    );
    for i in 0..7 {
        assert!(b.put_message(msg("b", i)).wait().is_ok());
    }

    // a learns it is a slave now: it cuts back to the boundary and replicates from b.
    a.become_slave().unwrap();
    let cut = a
        .reconcile_with_master(&b.epoch_entries(), b.commit_log_max_offset())
        .unwrap();
    assert_eq!(cut, Some(boundary));
    assert_eq!(a.epoch_entries(), b.epoch_entries());
    a.replicate_from(&ha_addr(&b)).unwrap();
    wait_until("a to catch up with b", || {
        a.commit_log_max_offset() == b.commit_log_max_offset()
    });
    let end = b.commit_log_max_offset();
    assert_eq!(
        a.commit_log_data(0, SEGMENT.min(end as usize)),
        b.commit_log_data(0, SEGMENT.min(end as usize))
    );
    let expected: Vec<String> = (0..20)
        .map(|i| format!("a{i:04}"))
        .chain((0..7).map(|i| format!("b{i:04}")))
        .collect();
    assert_eq!(bodies(&a), expected);
    assert_eq!(bodies(&b), expected);

    // The rejoined replica survives a restart on its cut log, and a can lead again.
    drop(a);
    let a = MessageStore::open(config(adir.path(), 1)).unwrap();
    assert_eq!(a.commit_log_max_offset(), end);
    a.become_master(BrokerRole::SyncMaster, 3).unwrap();
    assert!(a.put_message(msg("a", 99)).wait().is_ok());
    let mut after = expected.clone();
    after.push("a0099".to_owned());
    assert_eq!(bodies(&a), after);
}
