//! The broker's put/get counters and the rates derived from them, as GET_BROKER_RUNTIME_INFO
//! reports them (`putTps`, `getTransferredTps`: "10 s, 60 s, 600 s" averages; today's and
//! yesterday's totals at midnight). The request paths add to two atomics; a once-a-second
//! sampler keeps the last ten minutes of readings, so a runtime-info request only divides.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The windows RocketMQ's runtime info averages over.
const WINDOWS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

/// Message counters and their sampled history.
#[derive(Default)]
pub struct BrokerStats {
    pub msg_put_total: AtomicU64,
    pub msg_get_total: AtomicU64,
    history: Mutex<History>,
}

#[derive(Default)]
struct History {
    /// (when, puts, gets), oldest first, spanning a little over the longest window.
    samples: VecDeque<(Instant, u64, u64)>,
    /// UTC day number of the last sample, and the totals at the start of today / yesterday.
    day: i64,
    today_morning: (u64, u64),
    yesterday_morning: (u64, u64),
}

/// What runtime info reports about traffic.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrafficSnapshot {
    pub put_total: u64,
    pub get_total: u64,
    /// Messages per second put over 10 s, 60 s and 600 s.
    pub put_tps: [f64; 3],
    /// Messages per second delivered to consumers over the same windows.
    pub get_tps: [f64; 3],
    pub put_today_morning: u64,
    pub get_today_morning: u64,
    pub put_yesterday_morning: u64,
    pub get_yesterday_morning: u64,
}

impl BrokerStats {
    /// Takes one reading; the broker calls it once a second. `utc_day` is days since the epoch.
    pub fn sample(&self, now: Instant, utc_day: i64) {
        let put = self.msg_put_total.load(Ordering::Relaxed);
        let get = self.msg_get_total.load(Ordering::Relaxed);
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.samples.is_empty() {
            h.day = utc_day;
        } else if utc_day != h.day {
            // The first reading of a new day stands for its midnight.
            h.yesterday_morning = h.today_morning;
            h.today_morning = (put, get);
            h.day = utc_day;
        }
        h.samples.push_back((now, put, get));
        let keep = WINDOWS[2] + Duration::from_secs(2);
        while let Some(&(t, _, _)) = h.samples.front() {
            if now.duration_since(t) > keep {
                h.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The counters and rates as of the last reading (rates over what history there is when
    /// the broker has run for less than a window).
    pub fn snapshot(&self) -> TrafficSnapshot {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = TrafficSnapshot {
            put_total: self.msg_put_total.load(Ordering::Relaxed),
            get_total: self.msg_get_total.load(Ordering::Relaxed),
            put_today_morning: h.today_morning.0,
            get_today_morning: h.today_morning.1,
            put_yesterday_morning: h.yesterday_morning.0,
            get_yesterday_morning: h.yesterday_morning.1,
            ..TrafficSnapshot::default()
        };
        let Some(&(last_t, last_put, last_get)) = h.samples.back() else {
            return out;
        };
        for (i, window) in WINDOWS.iter().enumerate() {
            // The oldest reading inside the window (or the oldest there is).
            let first = h
                .samples
                .iter()
                .find(|(t, _, _)| last_t.duration_since(*t) <= *window)
                .copied();
            if let Some((t, put, get)) = first {
                let secs = last_t.duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    out.put_tps[i] = last_put.saturating_sub(put) as f64 / secs;
                    out.get_tps[i] = last_get.saturating_sub(get) as f64 / secs;
                }
            }
        }
        out
    }
}

/// Days since the Unix epoch, UTC (the day boundary of the daily totals).
pub fn utc_day_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_each_window() {
        let stats = BrokerStats::default();
        let t0 = Instant::now();
        for s in 0..=120u64 {
            // 5 puts and 2 gets a second for two minutes.
            stats.msg_put_total.store(s * 5, Ordering::Relaxed);
            stats.msg_get_total.store(s * 2, Ordering::Relaxed);
            stats.sample(t0 + Duration::from_secs(s), 100);
        }
        let snap = stats.snapshot();
        assert_eq!(snap.put_total, 600);
        assert!((snap.put_tps[0] - 5.0).abs() < 1e-9, "{snap:?}");
        assert!((snap.put_tps[1] - 5.0).abs() < 1e-9);
        // Only two minutes of history: the 600 s figure averages what there is.
        assert!((snap.put_tps[2] - 5.0).abs() < 1e-9);
        assert!((snap.get_tps[0] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_burst_shows_in_the_short_window_first() {
        let stats = BrokerStats::default();
        let t0 = Instant::now();
        for s in 0..=60u64 {
            let put = if s > 55 { (s - 55) * 100 } else { 0 };
            stats.msg_put_total.store(put, Ordering::Relaxed);
            stats.sample(t0 + Duration::from_secs(s), 1);
        }
        let snap = stats.snapshot();
        assert!((snap.put_tps[0] - 50.0).abs() < 1e-9, "{snap:?}");
        assert!((snap.put_tps[1] - 500.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn history_is_bounded_and_days_roll() {
        let stats = BrokerStats::default();
        let t0 = Instant::now();
        for s in 0..2_000u64 {
            stats.msg_put_total.store(s, Ordering::Relaxed);
            stats.sample(t0 + Duration::from_secs(s), if s < 1_500 { 7 } else { 8 });
        }
        let h = stats.history.lock().unwrap();
        assert!(h.samples.len() <= 603, "{}", h.samples.len());
        assert_eq!(h.today_morning.0, 1_500);
        assert_eq!(h.yesterday_morning.0, 0);
    }

    #[test]
    fn no_history_no_rates() {
        let stats = BrokerStats::default();
        stats.msg_put_total.store(9, Ordering::Relaxed);
        let snap = stats.snapshot();
        assert_eq!(snap.put_total, 9);
        assert_eq!(snap.put_tps, [0.0; 3]);
    }
}
