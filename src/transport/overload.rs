//! Overload: the connection budgets of a listener, and which connections
//! give up their slot when a budget is full.
//!
//! A [`Pool`] is a budget of slots (`--max-connections` per listener; the
//! ingest listener has a second one, `--max-ingest-connections`, that only
//! connections whose first completed request head is ingest move to). Every
//! connection holds a slot from its admission (before its TLS or QUIC
//! handshake) to its end. When a new connection finds its budget full or
//! nearly so (at most an eighth of it free, at most [`MAX_EVICT`] slots),
//! the pool closes connections that hold a slot without doing useful work,
//! the ones that have done none the longest first:
//!
//! - *idle*: no open request: an unfinished handshake or request head
//!   (slowloris), a keep-alive between requests, an HTTP/2 connection that
//!   only pings, a QUIC connection with no request stream whose head arrived;
//! - *slow_upload*: its only open requests are uploads behind the minimum
//!   ingest rate pro rata ([`crate::core::SharedFloor`]), judged at once
//!   instead of at the end of the rate window.
//!
//! This is nginx's answer when `worker_connections` run out (it closes the
//! oldest reusable connections: keep-alive and those waiting for a request
//! head, up to 32 at a time, an eighth of them) with HAProxy's rule that a
//! request head has one deadline from its first byte wait
//! (`timeout http-request`: hyper's header read timeout is one deadline, not
//! reset by each byte), applied to HTTP/2, HTTP/3 and slow uploads too. A
//! connection doing useful work (a request being answered, an upload at the
//! rate) is never closed for a newcomer: when no connection is idle, TCP
//! connections wait in the kernel's backlog and QUIC ones are refused, as
//! before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Activity;
use crate::metrics::Metrics;

/// At most this many connections are closed at once for a newcomer (nginx's
/// figure), and at least one; in between, an eighth of the idle ones, so
/// that a flood of arrivals does not take a scan of the pool each. Also the
/// most a listener closes them ahead of need ([`Pool::near_cap`]), so that
/// its accept loop does not wait for a closing connection (the kernel's
/// backlog would fill meanwhile and drop newcomers' SYNs).
pub const MAX_EVICT: usize = 32;

/// The clock [`Activity`] timestamps count from (one per process, so that
/// connections of one pool compare).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`] at `t` (a timestamp that fits an atomic).
pub(super) fn stamp(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Why a connection does no useful work (the `reason` label of
/// `h3live_evictions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Useless {
    /// No open request.
    Idle,
    /// Only uploads behind the minimum rate.
    SlowUpload,
}

impl Useless {
    fn as_str(self) -> &'static str {
        match self {
            Useless::Idle => "idle",
            Useless::SlowUpload => "slow_upload",
        }
    }
}

/// One budget of connection slots and the connections that hold them.
#[derive(Debug)]
pub struct Pool {
    /// The listener (for logs and metrics).
    listener: &'static str,
    /// Which budget: `connections` or `ingest`.
    name: &'static str,
    /// Free slots.
    permits: Arc<Semaphore>,
    /// Free slots at or below which connections are closed ahead of need.
    headroom: usize,
    /// The connections holding a slot, by slot id (weak: a connection's
    /// [`Activity`] owns its [`Slot`], never the other way round).
    members: Mutex<HashMap<u64, std::sync::Weak<Activity>>>,
    /// Next slot id.
    next: AtomicU64,
    /// Slots in use, exported.
    gauge: Gauge,
    /// Eviction counters.
    metrics: Arc<Metrics>,
    /// Times the pool was found full with connections to close (for the log).
    full: prometheus_client::metrics::counter::Counter,
}

/// A slot held in a [`Pool`]; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    /// The pool it belongs to.
    pool: Arc<Pool>,
    /// Its key in the pool's members.
    id: u64,
    /// The permit itself.
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// True if this is a slot of `pool`.
    pub fn of(&self, pool: &Arc<Pool>) -> bool {
        Arc::ptr_eq(&self.pool, pool)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.members.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        self.pool.gauge.dec();
    }
}

impl Pool {
    /// A budget of `cap` slots named `name` on `listener`.
    pub fn new(listener: &'static str, name: &'static str, cap: usize, metrics: Arc<Metrics>) -> Arc<Pool> {
        let gauge = metrics.slots(listener, name);
        Arc::new(Pool {
            listener,
            name,
            permits: Arc::new(Semaphore::new(cap)),
            headroom: (cap / 8).min(MAX_EVICT),
            members: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            gauge,
            metrics,
            full: Default::default(),
        })
    }

    /// Give `activity` a slot of this pool (replacing the one it held, which
    /// is given back) if one is free.
    pub fn try_join(self: &Arc<Self>, activity: &Arc<Activity>) -> bool {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                self.register(activity, p);
                true
            }
            Err(_) => false,
        }
    }

    /// Wait for a free slot for `activity` (FIFO with the other waiters).
    pub async fn join(self: &Arc<Self>, activity: &Arc<Activity>) {
        // The semaphore is never closed.
        if let Ok(p) = self.permits.clone().acquire_owned().await {
            self.register(activity, p);
        }
    }

    /// A slot for `activity`: a free one, else close the connections that
    /// do no useful work ([`Pool::evict`]) and wait up to `wait` for one of
    /// theirs. False if none came (every connection is busy).
    pub async fn join_or_evict(self: &Arc<Self>, activity: &Arc<Activity>, wait: Duration) -> bool {
        let evicted = if self.near_cap() { self.evict() } else { 0 };
        if self.try_join(activity) {
            return true;
        }
        if evicted == 0 {
            return false;
        }
        tokio::time::timeout(wait, self.join(activity)).await.is_ok()
    }

    fn register(self: &Arc<Self>, activity: &Arc<Activity>, permit: OwnedSemaphorePermit) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.members.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::downgrade(activity));
        self.gauge.inc();
        activity.hold(Slot { pool: self.clone(), id, _permit: permit });
    }

    /// Close the connections of this pool that have done no useful work for
    /// the longest: at most [`MAX_EVICT`], at least one, an eighth of those
    /// found. Returns how many were told to close (each frees its slot when
    /// its task ends, at once for an idle one).
    pub fn evict(&self) -> usize {
        let members: Vec<Arc<Activity>> = {
            let m = self.members.lock().unwrap_or_else(|e| e.into_inner());
            m.values().filter_map(std::sync::Weak::upgrade).collect()
        };
        // Not under the lock: dropping the last reference to a connection
        // gives its slot back, which takes the lock.
        let now = Instant::now();
        let mut useless: Vec<(u64, Useless, &Arc<Activity>)> =
            members.iter().filter_map(|a| a.useless(now).map(|(since, why)| (since, why, a))).collect();
        if useless.is_empty() {
            return 0;
        }
        let n = (useless.len() / 8).clamp(1, MAX_EVICT);
        if n < useless.len() {
            useless.select_nth_unstable_by_key(n - 1, |u| u.0);
        }
        for (_, why, a) in &useless[..n] {
            a.evict();
            self.metrics.evicted(self.listener, self.name, why.as_str());
        }
        let (listener, pool, m) = (self.listener, self.name, &self.metrics);
        let (idle, slow) = (m.evictions(listener, pool, "idle"), m.evictions(listener, pool, "slow_upload"));
        let (times, loud) = crate::metrics::doubling(&self.full);
        crate::doubling_log!(
            loud,
            listener,
            pool,
            closed = n,
            idle,
            slow_uploads = slow,
            times,
            "connection budget full: closing the connections that did no useful work the longest \
            (logged at warn for the 1st, 2nd, 4th, 8th... time)"
        );
        n
    }

    /// True when at most an eighth of the slots, at most [`MAX_EVICT`], are
    /// free: connections that do no useful work are closed from then on,
    /// ahead of need. A small budget (up to 7 slots) closes them only when
    /// full, so a connection whose first request head is still on its way
    /// is not closed while slots are free.
    pub fn near_cap(&self) -> bool {
        self.permits.available_permits() <= self.headroom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` connections holding a slot of `pool` each, none with an open request.
    fn fill(pool: &Arc<Pool>, n: usize) -> Vec<Arc<Activity>> {
        (0..n)
            .map(|_| {
                let a = Arc::new(Activity::default());
                assert!(pool.try_join(&a));
                a
            })
            .collect()
    }

    /// A small budget closes idle connections only when full: a connection
    /// whose first request head is still on its way keeps its slot while
    /// others are free. A large one starts 32 slots before its cap.
    #[test]
    fn connections_are_closed_ahead_of_need_only_near_the_cap() {
        let metrics = Arc::new(Metrics::default());
        let small = Pool::new("test", "connections", 3, metrics.clone());
        let held = fill(&small, 2);
        assert!(!small.near_cap());
        let full = fill(&small, 1);
        assert!(small.near_cap());
        assert_eq!(small.evict(), 1);
        let large = Pool::new("test", "connections", 4096, metrics);
        let mut many = fill(&large, 4096 - 33);
        assert!(!large.near_cap());
        many.extend(fill(&large, 1));
        assert!(large.near_cap());
        drop((held, full, many));
    }
}
