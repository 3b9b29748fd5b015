//! The `checkpoint` file: one 4 KiB page of big-endian int64 fields recording how far the commit
//! log, the consume queues and the index were known durable. Abnormal recovery starts scanning
//! from the newest commit-log file whose first message is older than these timestamps.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use memmap2::MmapRaw;

use crate::error::{IoContext, Result};

const SIZE: u64 = 4096;

pub struct Checkpoint {
    map: MmapRaw,
    physic_msg_timestamp: AtomicI64,
    logics_msg_timestamp: AtomicI64,
    index_msg_timestamp: AtomicI64,
    master_flushed_offset: AtomicI64,
    confirm_phy_offset: AtomicI64,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .context(|| format!("open {}", path.display()))?;
        let len = file
            .metadata()
            .context(|| format!("stat {}", path.display()))?
            .len();
        if len < SIZE {
            file.set_len(SIZE)
                .context(|| format!("size {}", path.display()))?;
        }
        let map = MmapRaw::map_raw(&file).context(|| format!("map {}", path.display()))?;
        let cp = Checkpoint {
            map,
            physic_msg_timestamp: AtomicI64::new(0),
            logics_msg_timestamp: AtomicI64::new(0),
            index_msg_timestamp: AtomicI64::new(0),
            master_flushed_offset: AtomicI64::new(0),
            confirm_phy_offset: AtomicI64::new(0),
        };
        cp.physic_msg_timestamp.store(cp.read(0), Ordering::Relaxed);
        cp.logics_msg_timestamp.store(cp.read(8), Ordering::Relaxed);
        cp.index_msg_timestamp.store(cp.read(16), Ordering::Relaxed);
        cp.master_flushed_offset
            .store(cp.read(24), Ordering::Relaxed);
        cp.confirm_phy_offset.store(cp.read(32), Ordering::Relaxed);
        Ok(cp)
    }

    fn read(&self, at: usize) -> i64 {
        let mut b = [0u8; 8];
        // SAFETY: the page is at least 4096 bytes and only this struct touches it.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(at), b.as_mut_ptr(), 8) };
        i64::from_be_bytes(b)
    }

    pub fn physic_msg_timestamp(&self) -> i64 {
        self.physic_msg_timestamp.load(Ordering::Acquire)
    }
    pub fn logics_msg_timestamp(&self) -> i64 {
        self.logics_msg_timestamp.load(Ordering::Acquire)
    }
    pub fn index_msg_timestamp(&self) -> i64 {
        self.index_msg_timestamp.load(Ordering::Acquire)
    }
    pub fn confirm_phy_offset(&self) -> i64 {
        self.confirm_phy_offset.load(Ordering::Acquire)
    }
    pub fn set_physic_msg_timestamp(&self, v: i64) {
        self.physic_msg_timestamp.fetch_max(v, Ordering::AcqRel);
    }
    pub fn set_logics_msg_timestamp(&self, v: i64) {
        self.logics_msg_timestamp.fetch_max(v, Ordering::AcqRel);
    }
    pub fn set_index_msg_timestamp(&self, v: i64) {
        self.index_msg_timestamp.fetch_max(v, Ordering::AcqRel);
    }
    pub fn set_confirm_phy_offset(&self, v: i64) {
        self.confirm_phy_offset.store(v, Ordering::Release);
    }

    /// Where abnormal recovery may start: `min(physic, logics[, index]) - 3 s`, floored at 0.
    pub fn min_timestamp(&self, index_safe: bool) -> i64 {
        let mut m = self.physic_msg_timestamp().min(self.logics_msg_timestamp());
        if index_safe {
            m = m.min(self.index_msg_timestamp());
        }
        (m - 3000).max(0)
    }

    /// Writes the fields to the page and syncs it. Callers serialize flushes.
    pub fn flush(&self) -> Result<()> {
        let fields = [
            self.physic_msg_timestamp(),
            self.logics_msg_timestamp(),
            self.index_msg_timestamp(),
            self.master_flushed_offset.load(Ordering::Acquire),
            self.confirm_phy_offset(),
        ];
        for (i, v) in fields.iter().enumerate() {
            let b = v.to_be_bytes();
            // SAFETY: in bounds; flushes are serialized by the maintenance thread / shutdown.
            unsafe {
                std::ptr::copy_nonoverlapping(b.as_ptr(), self.map.as_mut_ptr().add(i * 8), 8)
            };
        }
        self.map.flush().context(|| "flush checkpoint".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoint");
        let cp = Checkpoint::open(&p).unwrap();
        cp.set_physic_msg_timestamp(10_000);
        cp.set_logics_msg_timestamp(9_000);
        cp.set_index_msg_timestamp(20_000);
        cp.flush().unwrap();
        drop(cp);
        let cp = Checkpoint::open(&p).unwrap();
        assert_eq!(cp.physic_msg_timestamp(), 10_000);
        assert_eq!(cp.min_timestamp(false), 6_000);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
    }
}
