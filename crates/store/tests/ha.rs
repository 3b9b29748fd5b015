//! Replication between two stores in one process: a master with an HA server on an ephemeral
//! port and a slave pointed at it. Small segments so frames cut records and segments roll.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymq_store::{
    BrokerRole, GetMessageStatus, MessageInner, MessageStore, PutMessageStatus, StoreConfig,
};

const SEGMENT: usize = 64 * 1024;

fn config(dir: &Path, role: BrokerRole) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = SEGMENT;
    c.mapped_file_size_consume_queue = 100 * 20;
    c.max_hash_slot_num = 64;
    c.max_index_num = 256;
    c.warm_mapped_file_enable = false;
    c.broker_role = role;
    c.sync_flush_timeout = Duration::from_secs(3);
    c.ha_send_heartbeat_interval = Duration::from_millis(200);
    if role != BrokerRole::Slave {
        c.ha_listen_addr = Some("127.0.0.1:0".parse().unwrap());
    }
    c
}

fn msg(i: usize) -> MessageInner {
    // ~1.5 KiB records: 32 KiB frames end inside records, 64 KiB segments roll often.
    let body = format!("{i:06}-{}", "x".repeat(1500));
    MessageInner::new("HaTopic", (i % 2) as i32, Bytes::from(body))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn commit_log_bytes(store: &MessageStore, from: i64, to: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let seg_end = at - at % SEGMENT as i64 + SEGMENT as i64;
        let n = (seg_end.min(to) - at) as usize;
        // Segment tails past the end-of-file marker are zeros on both sides.
        match store.commit_log_data(at, n) {
            Some(b) => out.extend_from_slice(&b),
            None => panic!("no bytes at {at}"),
        }
        at += n as i64;
    }
    out
}

#[test]
fn slave_copies_the_commit_log_byte_for_byte_and_resumes_after_restart() {
    let mdir = tempfile::tempdir().unwrap();
    let sdir = tempfile::tempdir().unwrap();
    let master = MessageStore::open(config(mdir.path(), BrokerRole::AsyncMaster)).unwrap();
    let ha_addr = master.ha_local_addr().unwrap();
    for i in 0..100 {
        assert!(master.put_message(msg(i)).wait().is_ok());
    }

    let slave = MessageStore::open(config(sdir.path(), BrokerRole::Slave)).unwrap();
    // A slave refuses puts of its own.
    let refused = slave.put_message(msg(0)).wait();
    assert_eq!(refused.status, PutMessageStatus::ServiceNotAvailable);
    slave.set_ha_master_address(&ha_addr.to_string());
    let end = master.commit_log_max_offset();
    wait_until("slave to catch up", Duration::from_secs(10), || {
        slave.commit_log_max_offset() == end
    });
    assert!(slave.wait_dispatched(Duration::from_secs(5)));
    // An empty slave starts at the master's last segment (RocketMQ's rule).
    let from = slave.commit_log_min_offset();
    assert_eq!(from, end - end % SEGMENT as i64);
    assert!(from > 0);
    assert_eq!(
        commit_log_bytes(&slave, from, end),
        commit_log_bytes(&master, from, end)
    );
    // Consume queues are rebuilt on the slave.
    for q in 0..2 {
        assert_eq!(
            slave.max_offset_in_queue("HaTopic", q),
            master.max_offset_in_queue("HaTopic", q)
        );
    }
    let min = slave.min_offset_in_queue("HaTopic", 1);
    let got = slave.get_messages("HaTopic", 1, min, 32, usize::MAX, None);
    assert_eq!(got.status, GetMessageStatus::Found);
    wait_until("the master to see the ack", Duration::from_secs(5), || {
        master.ha_status().acked_offset == end
    });
    assert!(slave.ha_status().connected_to_master);

    // Restart the slave; it resumes from its own recovered end.
    drop(slave);
    for i in 100..150 {
        assert!(master.put_message(msg(i)).wait().is_ok());
    }
    let slave = MessageStore::open(config(sdir.path(), BrokerRole::Slave)).unwrap();
    let resumed_from = slave.commit_log_max_offset();
    assert_eq!(resumed_from, end);
    slave.set_ha_master_address(&ha_addr.to_string());
    let end2 = master.commit_log_max_offset();
    wait_until("slave to catch up again", Duration::from_secs(10), || {
        slave.commit_log_max_offset() == end2
    });
    assert_eq!(
        commit_log_bytes(&slave, from, end2),
        commit_log_bytes(&master, from, end2)
    );
    assert!(slave.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(
        slave.max_offset_in_queue("HaTopic", 0),
        master.max_offset_in_queue("HaTopic", 0)
    );
}

#[test]
fn sync_master_waits_for_a_slave() {
    let mdir = tempfile::tempdir().unwrap();
    let sdir = tempfile::tempdir().unwrap();
    let master = MessageStore::open(config(mdir.path(), BrokerRole::SyncMaster)).unwrap();
    // No slave: stored, but SLAVE_NOT_AVAILABLE at once.
    let r = master.put_message(msg(0)).wait();
    assert_eq!(r.status, PutMessageStatus::SlaveNotAvailable);
    assert!(r.append.is_some());

    let mut sc = config(sdir.path(), BrokerRole::Slave);
    sc.ha_master_address = Some(master.ha_local_addr().unwrap().to_string());
    let slave = MessageStore::open(sc).unwrap();
    wait_until("the slave to connect", Duration::from_secs(10), || {
        master
            .ha_status()
            .slaves
            .iter()
            .any(|(_, acked)| *acked >= 0)
    });
    for i in 1..20 {
        let r = master.put_message(msg(i)).wait();
        assert_eq!(r.status, PutMessageStatus::PutOk, "message {i}");
        let end = r.append.unwrap().end_offset();
        assert!(master.ha_status().acked_offset >= end);
    }
    // The slave stops acknowledging: the put times out but stays stored.
    drop(slave);
    let r = master.put_message(msg(99)).wait();
    assert!(
        matches!(
            r.status,
            PutMessageStatus::FlushSlaveTimeout | PutMessageStatus::SlaveNotAvailable
        ),
        "{:?}",
        r.status
    );
    assert!(r.append.is_some());
}
