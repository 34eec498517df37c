//! Prometheus metrics, kept in atomics and rendered as text exposition.
//!
//! The key series is `h3live_origin_delay_seconds{transport}`: for each chunk
//! handed to a reader that was waiting for it, the time from the chunk's
//! arrival on ingest to its hand-off to the transport (the body frame given to
//! hyper for h1/h2, the `send_data` call for h3). It is the origin's own
//! contribution to end-to-end latency. Chunks that were already stored when a
//! reader asked (a late joiner's backlog) are not counted: their wait is the
//! reader's choice, not the origin's delay.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::conn::Transport;
use crate::store::{allocated_bytes, Store};

/// Upper bounds (seconds) of the origin-delay histogram buckets.
const DELAY_BUCKETS: [f64; 14] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// A fixed-bucket histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; DELAY_BUCKETS.len() + 1],
    /// Sum of observations in nanoseconds.
    sum_ns: AtomicU64,
    /// Number of observations.
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DELAY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(DELAY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = DELAY_BUCKETS.get(i).map_or_else(|| "+Inf".to_string(), |v| v.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count());
    }
}

/// All counters of one origin.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by transport and status code.
    responses: Mutex<BTreeMap<(Transport, u16), u64>>,
    /// Readers currently streaming an object, by transport.
    active_readers: [AtomicI64; Transport::ALL.len()],
    /// Open connections, by transport.
    connections: [AtomicI64; Transport::ALL.len()],
    /// Origin delay, by transport.
    origin_delay: [Histogram; Transport::ALL.len()],
    /// Uploads that ended without their terminating chunk.
    aborted_uploads: AtomicU64,
    /// QUIC handshakes answered with Retry (address validation under load).
    quic_retries: AtomicU64,
    /// Refused ingest requests by reason.
    rejected_ingest: Mutex<BTreeMap<&'static str, u64>>,
}

/// Which gauge a [`GaugeGuard`] holds up.
#[derive(Debug, Clone, Copy)]
enum Gauge {
    /// `active_readers[i]`.
    Readers(usize),
    /// `connections[i]`.
    Connections(usize),
}

/// Decrements a gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard {
    /// The metrics the gauge lives in.
    metrics: Arc<Metrics>,
    /// The gauge to decrement.
    gauge: Gauge,
}

impl GaugeGuard {
    fn new(metrics: &Arc<Metrics>, gauge: Gauge) -> GaugeGuard {
        metrics.gauge(gauge).fetch_add(1, Ordering::Relaxed);
        GaugeGuard { metrics: metrics.clone(), gauge }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.metrics.gauge(self.gauge).fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Count one response.
    pub fn response(&self, transport: Transport, status: u16) {
        *self.responses.lock().unwrap_or_else(|e| e.into_inner()).entry((transport, status)).or_default() += 1;
    }

    fn gauge(&self, g: Gauge) -> &AtomicI64 {
        match g {
            Gauge::Readers(i) => &self.active_readers[i],
            Gauge::Connections(i) => &self.connections[i],
        }
    }

    /// One more reader streaming on `transport` until the guard drops.
    pub fn reader(self: &Arc<Self>, transport: Transport) -> GaugeGuard {
        GaugeGuard::new(self, Gauge::Readers(transport.index()))
    }

    /// One more open connection on `transport` until the guard drops.
    pub fn connection(self: &Arc<Self>, transport: Transport) -> GaugeGuard {
        GaugeGuard::new(self, Gauge::Connections(transport.index()))
    }

    /// Readers currently streaming on `transport`.
    pub fn active_readers(&self, transport: Transport) -> i64 {
        self.active_readers[transport.index()].load(Ordering::Relaxed)
    }

    /// The origin-delay histogram of `transport`.
    pub fn origin_delay(&self, transport: Transport) -> &Histogram {
        &self.origin_delay[transport.index()]
    }

    /// Count an aborted upload.
    pub fn upload_aborted(&self) {
        self.aborted_uploads.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a QUIC Retry sent.
    pub fn quic_retry(&self) {
        self.quic_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// QUIC Retries sent so far.
    pub fn quic_retries(&self) -> u64 {
        self.quic_retries.load(Ordering::Relaxed)
    }

    /// Count a refused ingest request.
    pub fn ingest_rejected(&self, reason: &'static str) {
        *self.rejected_ingest.lock().unwrap_or_else(|e| e.into_inner()).entry(reason).or_default() += 1;
    }

    /// Text exposition of everything, including the store's gauges.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::with_capacity(8192);
        let streams = store.snapshot();

        out.push_str("# HELP h3live_ingest_bytes_total Bytes received by ingest, per stream.\n");
        out.push_str("# TYPE h3live_ingest_bytes_total counter\n");
        for s in &streams {
            let _ = writeln!(out, "h3live_ingest_bytes_total{{stream=\"{}\"}} {}", s.name, s.ingest_bytes);
        }
        out.push_str("# HELP h3live_ingest_chunks_total Chunks received by ingest, per stream.\n");
        out.push_str("# TYPE h3live_ingest_chunks_total counter\n");
        for s in &streams {
            let _ = writeln!(out, "h3live_ingest_chunks_total{{stream=\"{}\"}} {}", s.name, s.ingest_chunks);
        }
        out.push_str("# HELP h3live_stream_objects Named objects per stream.\n");
        out.push_str("# TYPE h3live_stream_objects gauge\n");
        for s in &streams {
            let _ = writeln!(out, "h3live_stream_objects{{stream=\"{}\"}} {}", s.name, s.objects.len());
        }

        out.push_str(
            "# HELP h3live_store_bytes Bytes the store cap counts: named objects, uploads still running, buffered manifests, 64 per chunk.\n",
        );
        out.push_str("# TYPE h3live_store_bytes gauge\n");
        let _ = writeln!(out, "h3live_store_bytes {}", store.named_bytes());
        out.push_str("# HELP h3live_store_objects Named objects over all streams (what --max-objects caps).\n");
        out.push_str("# TYPE h3live_store_objects gauge\n");
        let _ = writeln!(out, "h3live_store_objects {}", store.object_count());
        out.push_str(
            "# HELP h3live_allocated_bytes Bytes held by all objects, including evicted ones still being read.\n",
        );
        out.push_str("# TYPE h3live_allocated_bytes gauge\n");
        let _ = writeln!(out, "h3live_allocated_bytes {}", allocated_bytes());
        out.push_str(
            "# HELP h3live_pinned_bytes Bytes of evicted objects still held by readers (outside the store cap, under --max-pinned-size).\n",
        );
        out.push_str("# TYPE h3live_pinned_bytes gauge\n");
        let _ = writeln!(out, "h3live_pinned_bytes {}", store.pinned_bytes());
        out.push_str("# HELP h3live_pinned_revoked_total Evicted objects revoked under their readers because the pinned budget was passed.\n");
        out.push_str("# TYPE h3live_pinned_revoked_total counter\n");
        let _ = writeln!(out, "h3live_pinned_revoked_total {}", store.pinned_revoked());

        out.push_str("# HELP h3live_quic_retries_total QUIC connection attempts answered with Retry.\n");
        out.push_str("# TYPE h3live_quic_retries_total counter\n");
        let _ = writeln!(out, "h3live_quic_retries_total {}", self.quic_retries());
        out.push_str("# HELP h3live_aborted_uploads_total Uploads that ended without their terminating chunk.\n");
        out.push_str("# TYPE h3live_aborted_uploads_total counter\n");
        let _ = writeln!(out, "h3live_aborted_uploads_total {}", self.aborted_uploads.load(Ordering::Relaxed));

        out.push_str("# HELP h3live_ingest_rejected_total Refused ingest requests by reason.\n");
        out.push_str("# TYPE h3live_ingest_rejected_total counter\n");
        for (reason, n) in self.rejected_ingest.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "h3live_ingest_rejected_total{{reason=\"{reason}\"}} {n}");
        }

        out.push_str("# HELP h3live_active_readers Responses currently streaming an object, per transport.\n");
        out.push_str("# TYPE h3live_active_readers gauge\n");
        for t in Transport::ALL {
            let _ = writeln!(out, "h3live_active_readers{{transport=\"{t}\"}} {}", self.active_readers(t));
        }
        out.push_str("# HELP h3live_connections Open connections, per transport.\n");
        out.push_str("# TYPE h3live_connections gauge\n");
        for t in Transport::ALL {
            let n = self.connections[t.index()].load(Ordering::Relaxed);
            let _ = writeln!(out, "h3live_connections{{transport=\"{t}\"}} {n}");
        }

        out.push_str("# HELP h3live_responses_total Responses by transport and status.\n");
        out.push_str("# TYPE h3live_responses_total counter\n");
        for ((t, status), n) in self.responses.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "h3live_responses_total{{transport=\"{t}\",status=\"{status}\"}} {n}");
        }

        out.push_str("# HELP h3live_origin_delay_seconds Time from a chunk's arrival on ingest to its hand-off to the transport, per transport.\n");
        out.push_str("# TYPE h3live_origin_delay_seconds histogram\n");
        for t in Transport::ALL {
            self.origin_delay(t).render(&mut out, "h3live_origin_delay_seconds", &format!("transport=\"{t}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5));
        let mut s = String::new();
        h.render(&mut s, "x", "t=\"a\"");
        assert!(s.contains("x_bucket{t=\"a\",le=\"0.00005\"} 1\n"));
        assert!(s.contains("x_bucket{t=\"a\",le=\"0.005\"} 2\n"));
        assert!(s.contains("x_bucket{t=\"a\",le=\"+Inf\"} 3\n"));
        assert!(s.contains("x_count{t=\"a\"} 3\n"));
    }
}
