//! Crash safety: a child process appends under SYNC_FLUSH and reports what was acknowledged; we
//! SIGKILL it at random moments, sometimes also tear the tail of the commit log by hand, reopen
//! the store and check that every acknowledged message is there, intact, at its offsets, and that
//! nothing beyond the valid end of the log is served.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrymq_protocol::message::record::{peek, RecordHead};
use ferrymq_protocol::message::RecordView;
use ferrymq_store::{GetMessageStatus, MessageStore, StoreConfig};
use rand::{Rng, SeedableRng};

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

fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.mapped_file_size_commit_log = 256 * 1024;
    c.mapped_file_size_consume_queue = 1000 * 20;
    c.max_hash_slot_num = 1024;
    c.max_index_num = 4096;
    c
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    id: u64,
    queue_id: i32,
    queue_offset: i64,
    phys: i64,
}

/// End of the valid records in the commit log (scanning like recovery, without the store).
fn data_end(dir: &Path, file_size: usize) -> Option<(std::path::PathBuf, usize, RecordViewOwned)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut last: Option<(std::path::PathBuf, usize, RecordViewOwned)> = None;
    for f in files {
        let data = std::fs::read(&f).ok()?;
        if data.len() != file_size {
            return last;
        }
        let mut pos = 0;
        loop {
            match peek(&data[pos..]) {
                Ok(RecordHead::Message { .. }) => match RecordView::parse_checked(&data[pos..]) {
                    Ok(v) => {
                        last = Some((
                            f.clone(),
                            pos + v.total_size(),
                            RecordViewOwned(v.as_bytes().to_vec()),
                        ));
                        pos += v.total_size();
                    }
                    Err(_) => return last,
                },
                Ok(RecordHead::Blank) => break,
                _ => return last,
            }
        }
    }
    last
}

struct RecordViewOwned(Vec<u8>);

#[test]
fn kill_nine_never_loses_acknowledged_messages() {
    let exe = env!("CARGO_BIN_EXE_ferrymq-store-crash-writer");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED_CAFE);
    let mut acked: Vec<Ack> = Vec::new();
    let started = Instant::now();
    let rounds = 24;
    for round in 0..rounds {
        let first_id = round as u64 * 1_000_000;
        let mut child = Command::new(exe)
            .arg(dir.path())
            .arg(first_id.to_string())
            .arg("4")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let p: Vec<&str> = line.split(' ').collect();
                if p.len() == 5 && p[0] == "ACK" {
                    if let (Ok(id), Ok(q), Ok(qo), Ok(ph)) =
                        (p[1].parse(), p[2].parse(), p[3].parse(), p[4].parse())
                    {
                        acks.push(Ack {
                            id,
                            queue_id: q,
                            queue_offset: qo,
                            phys: ph,
                        });
                    }
                }
            }
            acks
        });
        // Some rounds die during start-up/recovery, most while appending.
        let ms = if round % 5 == 0 {
            rng.gen_range(0..40)
        } else {
            rng.gen_range(60..400)
        };
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let new_acks = reader.join().unwrap();
        acked.extend(new_acks);

        // Every third round, tear the tail: half of a copy of the last record right after it.
        let mut torn_at = None;
        if round % 3 == 2 {
            if let Some((path, end, last)) = data_end(dir.path(), 256 * 1024) {
                let half = &last.0[..last.0.len() / 2];
                if end + half.len() + 8 < 256 * 1024 {
                    let mut data = std::fs::read(&path).unwrap();
                    data[end..end + half.len()].copy_from_slice(half);
                    std::fs::write(&path, &data).unwrap();
                    let start: i64 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
                    torn_at = Some(start + end as i64);
                }
            }
        }

        let store = MessageStore::open(config(dir.path())).unwrap();
        assert!(store.wait_dispatched(Duration::from_secs(10)));
        for a in &acked {
            let rec = store.lookup_message_by_offset(a.phys).unwrap_or_else(|| {
                panic!(
                    "round {round}: acknowledged message {} at {} lost",
                    a.id, a.phys
                )
            });
            let v = RecordView::parse_checked(&rec).unwrap();
            assert_eq!(
                v.body(),
                &body_for(a.id)[..],
                "round {round}: body of {}",
                a.id
            );
            assert_eq!(v.queue_id(), a.queue_id);
            assert_eq!(v.queue_offset(), a.queue_offset);
            let r = store.get_messages("Crash", a.queue_id, a.queue_offset, 1, 1 << 20, None);
            assert_eq!(
                r.status,
                GetMessageStatus::Found,
                "round {round}: pull of {}",
                a.id
            );
            assert_eq!(r.messages[0], rec);
        }
        // Everything the queues reference is intact and below the end of the log.
        let end = store.commit_log_max_offset();
        if let Some(t) = torn_at {
            assert_eq!(
                end, t,
                "round {round}: recovery must stop at the torn record"
            );
            assert!(store.lookup_message_by_offset(t).is_none());
        }
        for q in 0..4 {
            let mut off = store.min_offset_in_queue("Crash", q);
            let max = store.max_offset_in_queue("Crash", q);
            while off < max {
                let r = store.get_messages("Crash", q, off, 32, 1 << 20, None);
                assert_eq!(
                    r.status,
                    GetMessageStatus::Found,
                    "round {round} queue {q} offset {off}"
                );
                for m in &r.messages {
                    let v = RecordView::parse_checked(m).unwrap();
                    assert!(v.physical_offset() + (v.total_size() as i64) <= end);
                    let id: u64 = v.property("UNIQ_KEY").unwrap().parse().unwrap();
                    assert_eq!(v.body(), &body_for(id)[..]);
                }
                off = r.next_begin_offset;
            }
        }
        store.shutdown().unwrap();
        drop(store);
        if round % 2 == 1 {
            // Make the next child take the abnormal-recovery path as after a real crash.
            std::fs::write(dir.path().join("abort"), b"").unwrap();
        }
    }
    eprintln!(
        "{rounds} rounds, {} acknowledged messages, {:?}",
        acked.len(),
        started.elapsed()
    );
    assert!(
        acked.len() > 100,
        "the writer made too little progress to mean anything"
    );
}
