//! Counters shared by every viewer task: lock-free, so thousands of viewers on
//! two threads update them without contention beyond the atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Number of log buckets: 1 % wide, from 1 µs to beyond 100 s.
const BUCKETS: usize = 2000;
/// Growth factor between bucket bounds.
const GROWTH: f64 = 1.01;

/// A latency histogram with 1 % resolution (log buckets over microseconds),
/// safe to update from many tasks.
pub struct LatencyHistogram {
    /// Count per bucket.
    buckets: Box<[AtomicU64]>,
    /// Number of observations.
    count: AtomicU64,
    /// Largest observation in µs (exact).
    max_us: AtomicU64,
    /// Sum in µs, for the mean.
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Observations.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencyHistogram {
    fn index(us: u64) -> usize {
        (((us as f64 + 1.0).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
    }

    /// Upper bound of bucket `i`, in µs.
    fn upper_us(i: usize) -> f64 {
        GROWTH.powi(i as i32 + 1) - 1.0
    }

    /// Record one latency.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Percentiles of what was observed (bucket upper bounds, capped at the max).
    pub fn percentiles(&self) -> Percentiles {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Percentiles::default();
        }
        let max = self.max_us.load(Ordering::Relaxed) as f64;
        let at = |q: f64| {
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::upper_us(i).min(max) / 1000.0;
                }
            }
            max / 1000.0
        };
        Percentiles {
            count: total,
            mean_ms: self.sum_us.load(Ordering::Relaxed) as f64 / total as f64 / 1000.0,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: max / 1000.0,
        }
    }

    /// Clear (for per-interval histograms).
    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.max_us.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
    }
}

/// Counters of one viewer.
#[derive(Debug, Default)]
pub struct ViewerStats {
    /// Body bytes received (manifests, init and media segments).
    pub bytes: AtomicU64,
    /// Fragments completed.
    pub fragments: AtomicU64,
    /// Media segments completed.
    pub segments: AtomicU64,
    /// Failed requests and broken connections.
    pub errors: AtomicU64,
    /// Segments that completed slower than real time.
    pub stalls: AtomicU64,
    /// 1 while the viewer has its connection(s) up.
    pub connected: AtomicU64,
}

/// One viewer's line in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerReport {
    /// Viewer index.
    pub id: usize,
    /// Body bytes received.
    pub bytes: u64,
    /// Average receive rate over the run.
    pub mbit_per_s: f64,
    /// Fragments completed.
    pub fragments: u64,
    /// Media segments completed.
    pub segments: u64,
    /// Errors.
    pub errors: u64,
    /// Stalls.
    pub stalls: u64,
}

/// Everything every viewer adds to.
#[derive(Default)]
pub struct Totals {
    /// Per viewer.
    pub viewers: Vec<ViewerStats>,
    /// prft → last byte of the fragment, over the whole run.
    pub latency: LatencyHistogram,
    /// The same, since the last progress line.
    pub latency_interval: LatencyHistogram,
    /// Errors by kind (the first line of the error chain).
    pub error_kinds: Mutex<BTreeMap<String, u64>>,
    /// Per media segment (file name): when the first of these viewers got
    /// its first byte, in microseconds since the Unix epoch.
    pub first_bytes: Mutex<BTreeMap<String, u64>>,
}

impl Totals {
    /// Room for `n` viewers.
    pub fn new(n: usize) -> Totals {
        Totals { viewers: (0..n).map(|_| ViewerStats::default()).collect(), ..Default::default() }
    }

    /// Sum of one counter over all viewers.
    pub fn sum(&self, f: impl Fn(&ViewerStats) -> &AtomicU64) -> u64 {
        self.viewers.iter().map(|v| f(v).load(Ordering::Relaxed)).sum()
    }

    /// A viewer got the first byte of media segment `name` at `at`.
    pub fn first_byte(&self, name: &str, at: std::time::SystemTime) {
        let us = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let mut m = self.first_bytes.lock().unwrap_or_else(|e| e.into_inner());
        let t = m.entry(name.to_string()).or_insert(us);
        *t = (*t).min(us);
    }

    /// Count an error of `viewer`; returns how many of this kind so far.
    pub fn error(&self, viewer: usize, kind: String) -> u64 {
        self.viewers[viewer].errors.fetch_add(1, Ordering::Relaxed);
        let mut k = self.error_kinds.lock().unwrap_or_else(|e| e.into_inner());
        let n = k.entry(kind).or_default();
        *n += 1;
        *n
    }

    /// Record one fragment latency.
    pub fn latency(&self, d: Duration) {
        self.latency.observe(d);
        self.latency_interval.observe(d);
    }

    /// Per-viewer lines for the report.
    pub fn reports(&self, elapsed: Duration) -> Vec<ViewerReport> {
        let secs = elapsed.as_secs_f64().max(1e-9);
        self.viewers
            .iter()
            .enumerate()
            .map(|(id, v)| {
                let bytes = v.bytes.load(Ordering::Relaxed);
                ViewerReport {
                    id,
                    bytes,
                    mbit_per_s: bytes as f64 * 8.0 / secs / 1e6,
                    fragments: v.fragments.load(Ordering::Relaxed),
                    segments: v.segments.load(Ordering::Relaxed),
                    errors: v.errors.load(Ordering::Relaxed),
                    stalls: v.stalls.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_one_percent() {
        let h = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            h.observe(Duration::from_millis(ms));
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() / 500.0 < 0.011, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() / 990.0 < 0.011, "{p:?}");
        assert_eq!(p.max_ms, 1000.0);
        h.reset();
        assert_eq!(h.percentiles(), Percentiles::default());
    }
}
