//! Small helpers: wall-clock milliseconds, civil dates for file names and hour checks, and disk
//! usage (statvfs). File-name dates are UTC; the `deleteWhen` hour is local time, as operators
//! (and RocketMQ, in the JVM's zone) mean it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `yyyyMMddHHmmssSSS` of an epoch-millisecond time.
pub fn format_index_file_name(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Hour of day (0-23) of an epoch-millisecond time, in UTC.
pub fn hour_of_day(ms: i64) -> i64 {
    ms.rem_euclid(86_400_000) / 3_600_000
}

/// Hour of day (0-23) of an epoch-millisecond time in the machine's local zone (`TZ` or
/// /etc/localtime), which is what operators mean by `deleteWhen=04`. Falls back to UTC.
pub fn local_hour_of_day(ms: i64) -> i64 {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r only writes the caller-provided struct; both pointers are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if ok {
        i64::from(tm.tm_hour)
    } else {
        hour_of_day(ms)
    }
}

/// Used fraction (0.0-1.0) of the file system holding `path`; `None` if it cannot be read.
pub fn disk_used_ratio(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 || st.f_blocks == 0 {
        return None;
    }
    let total = st.f_blocks as f64;
    let free = st.f_bfree as f64;
    Some((total - free) / total)
}

/// Total physical memory in bytes (for the "message still in memory" pull limits).
pub fn total_physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages > 0 && page > 0 {
        pages as u64 * page as u64
    } else {
        8 << 30
    }
}

/// A counter plus condition variable: cheap "something changed" wake-ups between threads.
///
/// `notify` is called once per append, so it costs one atomic add unless a thread is actually
/// asleep on the signal; only then does it take the lock and wake it.
#[derive(Default)]
pub(crate) struct Signal {
    seq: std::sync::atomic::AtomicU64,
    sleepers: std::sync::atomic::AtomicUsize,
    lock: parking_lot::Mutex<()>,
    cv: parking_lot::Condvar,
}

impl Signal {
    pub fn notify(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.seq.fetch_add(1, SeqCst);
        // SeqCst pairs with the sleeper's increment-then-check: either it sees the new count or
        // this sees it asleep (it holds the lock until it waits, so the wake-up is not lost).
        if self.sleepers.load(SeqCst) > 0 {
            let _held = self.lock.lock();
            self.cv.notify_all();
        }
    }

    pub fn current(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the counter differs from `seen` or `timeout` passes; returns the counter.
    pub fn wait_change(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        let mut held = self.lock.lock();
        self.sleepers.fetch_add(1, SeqCst);
        if self.seq.load(SeqCst) == seen {
            self.cv.wait_for(&mut held, timeout);
        }
        self.sleepers.fetch_sub(1, SeqCst);
        self.seq.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(format_index_file_name(0), "19700101000000000");
        // 2024-02-29T13:45:12.345Z
        assert_eq!(
            format_index_file_name(1_709_214_312_345),
            "20240229134512345"
        );
        assert_eq!(hour_of_day(1_709_214_312_345), 13);
        assert!(disk_used_ratio(Path::new("/")).is_some());
    }
}
