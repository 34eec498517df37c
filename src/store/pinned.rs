//! Evicted objects that readers still hold, and the byte budget they share.
//!
//! An object stops counting against the store cap once it has neither a name
//! nor a running upload, but a reader that is still streaming it keeps its
//! chunks alive. The send timeout bounds how *long* a stalled reader can do
//! that; this budget bounds how *much*: the bytes of such objects are counted
//! here (exactly: added when an object becomes uncounted, removed when it is
//! freed), and when they pass the budget the oldest pinned objects are
//! revoked: their chunks are dropped at once and their readers get an error
//! (a reset stream or an aborted connection, never a clean short body).
//! Ingest is never refused because of readers.
//!
//! This module knows objects only through [`Pinned`], so it sits below the
//! object module (which counts itself here) rather than beside it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// What the budget needs of a pinned object.
pub trait Pinned: Send + Sync {
    /// Bytes it holds in the budget (0 once it is not pinned any more).
    fn pinned(&self) -> u64;
    /// Drop its chunks and fail its readers; false if it was not pinned
    /// (any more). Called without any lock of the budget held.
    fn revoke(&self) -> bool;
}

/// The pinned objects of one store and their budget.
#[derive(Debug)]
pub struct Pins {
    /// Most bytes evicted-but-held objects may keep alive.
    budget: u64,
    /// Bytes of pinned objects (data plus per-chunk overhead, as the store counts).
    bytes: AtomicU64,
    /// Objects revoked because the budget was passed.
    revoked: AtomicU64,
    /// Pinned objects, oldest first, held weakly (a freed one drops out).
    queue: Mutex<Queue>,
    /// Woken on every revocation in this store, so the watchdogs of its
    /// stalled connections (whose bodies are not being polled) look at
    /// their bodies. Other stores' watchdogs are not woken.
    revocations: Notify,
}

/// The queue of [`Pins`] and when to prune it.
#[derive(Debug, Default)]
struct Queue {
    /// Pinned objects, oldest first.
    objects: VecDeque<Weak<dyn Pinned>>,
    /// Length at which freed entries are swept out (amortised O(1) per pin).
    prune_at: usize,
}

impl Pins {
    /// An empty set with a budget of `budget` bytes.
    pub fn new(budget: u64) -> Pins {
        Pins {
            budget,
            bytes: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
            queue: Mutex::default(),
            revocations: Notify::new(),
        }
    }

    /// Resolves at the next revocation in this budget's store. Call
    /// `enable()` on it before looking at an object, so none is missed.
    pub fn next_revocation(&self) -> Notified<'_> {
        self.revocations.notified()
    }

    /// Bytes held by evicted objects that readers still stream.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Objects revoked so far because the budget was passed.
    pub fn revoked(&self) -> u64 {
        self.revoked.load(Ordering::Relaxed)
    }

    /// `obj` became uncounted while still alive, holding `n` bytes. Called
    /// without the object's lock held (it may be revoked here at once).
    pub(super) fn pin(&self, obj: Weak<dyn Pinned>, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let mut victims = Vec::new();
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.objects.push_back(obj);
            if q.objects.len() >= q.prune_at {
                q.objects.retain(|w| w.strong_count() > 0);
                q.prune_at = (2 * q.objects.len()).max(64);
            }
            let mut over = total.saturating_sub(self.budget);
            while over > 0 {
                let Some(w) = q.objects.pop_front() else { break };
                if let Some(o) = w.upgrade() {
                    over = over.saturating_sub(o.pinned());
                    victims.push(o);
                }
            }
        }
        let revoked = victims.iter().filter(|o| o.revoke()).count() as u64;
        if revoked > 0 {
            self.revoked.fetch_add(revoked, Ordering::Relaxed);
            tracing::warn!(
                revoked,
                pinned = self.bytes(),
                budget = self.budget,
                "evicted segments held by stalled readers passed the pinned budget: oldest revoked, their readers get an error"
            );
            self.revocations.notify_waiters();
        }
    }

    /// `n` pinned bytes were freed (the object was dropped or revoked).
    pub(super) fn unpin(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreConfig};
    use bytes::Bytes;

    fn put(st: &Store, name: &str, len: usize) {
        let mut up = st.begin_upload("s", name, None).unwrap();
        up.push(Bytes::from(vec![0u8; len])).unwrap();
        up.finish();
    }

    /// A revocation wakes its own store's waiters (the stall watchdogs of
    /// its connections, its objects' readers) and no other store's.
    #[test]
    fn a_revocation_wakes_only_its_store() {
        use std::future::Future as _;
        let config = || StoreConfig { keep_segments: 1, max_pinned_bytes: 1000, ..Default::default() };
        let (a, b) = (Store::new(config()), Store::new(config()));
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let (wait_a, wait_b) = (a.next_revocation(), b.next_revocation());
        tokio::pin!(wait_a, wait_b);
        wait_a.as_mut().enable();
        wait_b.as_mut().enable();
        put(&a, "c-1.m4s", 2000);
        let held = a.get("s", "c-1.m4s").unwrap();
        let object_revoked = held.revoked();
        tokio::pin!(object_revoked);
        assert!(object_revoked.as_mut().poll(&mut cx).is_pending());
        // c-1 evicted while held, alone over the budget: revoked at once.
        put(&a, "c-2.m4s", 10);
        assert!(held.is_revoked() && a.pinned_revoked() == 1);
        assert!(wait_a.as_mut().poll(&mut cx).is_ready());
        assert!(object_revoked.as_mut().poll(&mut cx).is_ready());
        assert!(wait_b.as_mut().poll(&mut cx).is_pending(), "woken by another store's revocation");
        // Its own store's revocation wakes it.
        put(&b, "c-1.m4s", 2000);
        let held_b = b.get("s", "c-1.m4s").unwrap();
        put(&b, "c-2.m4s", 10);
        assert!(held_b.is_revoked());
        assert!(wait_b.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn pinned_bytes_are_exact_and_bounded() {
        let st = Store::new(StoreConfig { keep_segments: 1, max_pinned_bytes: 2000, ..Default::default() });
        put(&st, "c-1.m4s", 1000);
        let held = st.get("s", "c-1.m4s").unwrap();
        let mut reader = held.reader();
        drop(held);
        put(&st, "c-2.m4s", 1000);
        // c-1 evicted, still held by its reader: pinned, not in the store cap.
        assert_eq!(st.pinned_bytes(), 1000 + super::super::CHUNK_OVERHEAD);
        assert_eq!(st.named_bytes(), 1000 + super::super::CHUNK_OVERHEAD);
        // Evicted objects nobody holds are not pinned.
        put(&st, "c-3.m4s", 1000);
        assert_eq!(st.pinned_bytes(), 1000 + super::super::CHUNK_OVERHEAD);
        // Two held evicted objects pass the budget: the oldest is revoked.
        let held2 = st.get("s", "c-3.m4s").unwrap();
        put(&st, "c-4.m4s", 2000);
        assert_eq!(st.pinned_bytes(), 1000 + super::super::CHUNK_OVERHEAD);
        assert_eq!(st.pinned_revoked(), 1);
        assert!(reader.object().is_revoked() && !held2.is_revoked());
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(matches!(
            reader.poll_chunk(&mut cx),
            std::task::Poll::Ready(Some(Err(super::super::ObjectError::Evicted)))
        ));
        drop(reader);
        drop(held2);
        assert_eq!(st.pinned_bytes(), 0);
    }
}
