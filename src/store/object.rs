//! One stored object: a growing sequence of chunks that any number of readers
//! consume while the single writer appends to it.
//!
//! Shape (after moq-lite's `Frame`): the state is `{ chunks, status }` behind a
//! small `std::sync::Mutex`. The writer pushes synchronously and never blocks
//! on readers; each reader keeps its own cursor and is woken by the write.
//! Nothing is copied: chunks are `Bytes`, a reader clones the handle.
//!
//! Why a `std::sync::Mutex` and a hand-made waker list rather than
//! `tokio::sync::watch`: readers are polled from inside `http_body::Body::
//! poll_frame`, which must not create-and-drop a `changed()` future per poll
//! (the wake-up is lost and the body stalls; docs/architecture.md, "quinn, h3
//! and rustls"). A poll-based reader that registers its `Waker` in the object
//! is cancel safe by construction: its only progress is the `next` index, kept
//! in a field.
//! The critical sections are a few pointer copies and never `.await`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};

use super::pinned::{Pinned, Pins};

/// Bytes charged per stored chunk on top of its length: the `Chunk` entry
/// itself (handle, arrival time) and allocator slack. Charging it makes the
/// store cap bound memory even when an encoder sends tiny chunks.
pub const CHUNK_OVERHEAD: u64 = 64;

/// Size of the buffers ingest chunks are copied into (see [`ObjectWriter::push`]).
const ARENA_BYTES: usize = 16 << 10;

/// Why a reader cannot get the rest of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// The upload ended without its terminating chunk (encoder killed,
    /// connection reset, body over the size limit). What the reader already
    /// got is a truncated prefix and must not look like a whole object.
    #[error("upload aborted before completion")]
    Aborted,
    /// The object was evicted and then revoked while this reader still held
    /// it, because evicted objects held by readers passed their byte budget
    /// (see `pinned`). What the reader got is a truncated prefix.
    #[error("evicted object revoked: readers holding evicted objects passed the pinned-bytes budget")]
    Evicted,
}

/// Where an object is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The upload is still running; more chunks may come.
    Growing,
    /// The upload finished cleanly; the object will not change again.
    Complete,
    /// The upload broke; readers get [`ObjectError::Aborted`] at the end.
    Aborted,
}

impl Status {
    /// Lower-case name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Growing => "growing",
            Status::Complete => "complete",
            Status::Aborted => "aborted",
        }
    }
}

/// One piece of an object as it arrived on ingest.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The bytes, shared with every other reader.
    pub data: Bytes,
    /// When the ingest side received them: origin delay is measured from here.
    pub arrived: Instant,
}

/// Mutable part of an object.
struct State {
    /// Every chunk received so far, in order.
    chunks: Vec<Chunk>,
    /// Sum of the chunk lengths.
    len: u64,
    /// Growing, complete or aborted.
    status: Status,
    /// Readers waiting for the next change; drained and woken on each change.
    wakers: Vec<Waker>,
    /// Bumped on each drain of `wakers`, so a reader knows whether the slot it
    /// registered earlier is still there (then it replaces its waker in place
    /// instead of pushing a second one).
    generation: u64,
    /// Whether a store name points at this object. An object is charged to
    /// the store's byte count while it is named *or* still being written.
    named: bool,
    /// Bytes charged to the store for this object (data plus per-chunk overhead).
    charged: u64,
    /// Bytes counted in the store's pinned budget (uncounted but alive); 0 if not pinned.
    pinned: u64,
    /// Set when the object was revoked (its chunks dropped): how many chunks it had.
    revoked: Option<usize>,
}

/// The store's byte count, shared by every object it holds. See
/// [`Object::unname`] for when an object stops counting.
pub type Account = Arc<AtomicU64>;

/// Where a store's object is counted: the store cap while it is named or
/// written, the pinned budget once it is neither but readers still hold it.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// The store's byte count.
    pub used: Account,
    /// Evicted objects still held by readers.
    pub pins: Arc<Pins>,
}

/// Process-wide count of bytes held by objects that still exist (named in the
/// store or still held by a reader). Exported as a metric.
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes held by all live objects in this process, including evicted objects
/// that readers still stream.
pub fn allocated_bytes() -> u64 {
    ALLOCATED_BYTES.load(Ordering::Relaxed)
}

/// A stored object. Shared as `Arc<Object>` between the store, the writer and
/// every reader; dropped (and its memory freed) when the last one lets go.
pub struct Object {
    /// Wall-clock creation time, for `/streams` and `Last-Modified`-like info.
    created: SystemTime,
    /// The growing state.
    state: Mutex<State>,
    /// The store's byte count this object is charged to (`None`: not counted).
    account: Option<Account>,
    /// The store's pinned budget (`None`: not counted).
    pins: Option<Arc<Pins>>,
    /// This object, weakly: what the pinned budget's queue holds.
    me: Weak<Object>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Object")
            .field("len", &st.len)
            .field("chunks", &st.chunks.len())
            .field("status", &st.status)
            .finish()
    }
}

impl Object {
    fn new(status: Status, chunks: Vec<Chunk>, ledger: Option<Ledger>) -> Arc<Object> {
        let len = chunks.iter().map(|c| c.data.len() as u64).sum();
        let charged = len + CHUNK_OVERHEAD * chunks.len() as u64;
        ALLOCATED_BYTES.fetch_add(len, Ordering::Relaxed);
        let (account, pins) = ledger.map_or((None, None), |l| (Some(l.used), Some(l.pins)));
        Arc::new_cyclic(|me| Object {
            created: SystemTime::now(),
            state: Mutex::new(State {
                chunks,
                len,
                status,
                wakers: Vec::new(),
                generation: 0,
                named: true,
                charged,
                pinned: 0,
                revoked: None,
            }),
            account,
            pins,
            me: me.clone(),
        })
    }

    /// A new empty object that is still being written, and its writer.
    pub fn growing() -> (Arc<Object>, ObjectWriter) {
        Object::growing_in(None)
    }

    /// [`Object::growing`], charged to a store's byte count: every pushed
    /// byte is added while it arrives, and removed once the object is neither
    /// named nor being written.
    pub fn growing_in(ledger: Option<Ledger>) -> (Arc<Object>, ObjectWriter) {
        let obj = Object::new(Status::Growing, Vec::new(), ledger);
        let writer = ObjectWriter { obj: Some(obj.clone()), arena: BytesMut::new() };
        (obj, writer)
    }

    /// A finished object from chunks that were buffered elsewhere (manifests,
    /// which are published only once whole).
    pub fn complete(chunks: Vec<Chunk>) -> Arc<Object> {
        Object::new(Status::Complete, chunks, None)
    }

    /// [`Object::complete`] for chunks already charged to `account` (the
    /// buffered upload's charge moves to the object).
    pub fn complete_in(chunks: Vec<Chunk>, ledger: Option<Ledger>) -> Arc<Object> {
        Object::new(Status::Complete, chunks, ledger)
    }

    /// Bytes charged to the store for this object, while it counts.
    pub fn charged(&self) -> u64 {
        let st = self.lock();
        if st.named || st.status == Status::Growing {
            st.charged
        } else {
            0
        }
    }

    /// The store no longer names this object (evicted, deleted, replaced,
    /// stream dropped). A finished object stops counting now; one still being
    /// written counts until its upload ends. Readers may still hold it: that
    /// memory moves to the store's pinned budget (see `pinned`).
    pub fn unname(&self) {
        let mut st = self.lock();
        if !st.named {
            return;
        }
        st.named = false;
        if st.status != Status::Growing {
            if let Some(a) = &self.account {
                a.fetch_sub(st.charged, Ordering::Relaxed);
            }
            let n = self.start_pin(&mut st);
            drop(st);
            self.finish_pin(n);
        }
    }

    /// The object just stopped counting against the store cap: count it in
    /// the pinned budget until it is freed, if readers hold it. Every caller
    /// (the store's name map as it lets go, or the writer as it closes)
    /// holds exactly one reference, so more than one means readers. No new
    /// reader can appear: the object has no name any more. Returns the bytes
    /// to pin.
    fn start_pin(&self, st: &mut State) -> u64 {
        if self.pins.is_none() || st.revoked.is_some() || self.me.strong_count() <= 1 {
            return 0;
        }
        st.pinned = st.charged;
        st.pinned
    }

    /// Second half of [`Object::start_pin`], called without the lock (the
    /// budget may revoke this very object).
    fn finish_pin(&self, n: u64) {
        if let (Some(p), true) = (&self.pins, n > 0) {
            p.pin(self.me.clone(), n);
        }
    }

    /// Resolves once this object is revoked (evicted and over its store's
    /// pinned budget); never for an object outside a store. Woken only by
    /// revocations in its own store.
    pub async fn revoked(&self) {
        let Some(pins) = &self.pins else {
            return std::future::pending().await;
        };
        loop {
            let next = pins.next_revocation();
            tokio::pin!(next);
            // Registered before looking, so a revocation in between is seen.
            next.as_mut().enable();
            if self.is_revoked() {
                return;
            }
            next.await;
        }
    }

    /// Bytes this object holds in the pinned budget (0 if it is not pinned).
    pub fn pinned(&self) -> u64 {
        self.lock().pinned
    }

    /// True once the object was revoked (see `pinned`).
    pub fn is_revoked(&self) -> bool {
        self.lock().revoked.is_some()
    }

    /// Drop the chunks of a pinned object and make its readers fail with
    /// [`ObjectError::Evicted`]. False if it was not pinned (still counted
    /// by the store, or revoked already).
    fn revoke(&self) -> bool {
        let mut chunks = Vec::new();
        let mut revoked = false;
        self.update(|st| {
            if st.pinned == 0 || st.revoked.is_some() {
                return;
            }
            if let Some(p) = &self.pins {
                p.unpin(st.pinned);
            }
            st.pinned = 0;
            st.revoked = Some(st.chunks.len());
            chunks = std::mem::take(&mut st.chunks);
            ALLOCATED_BYTES.fetch_sub(st.len, Ordering::Relaxed);
            revoked = true;
        });
        // The chunks are freed here, outside the lock.
        drop(chunks);
        revoked
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent
        // (every mutation is a single push or assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    /// True when no byte has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Growing, complete or aborted.
    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// Length and status read together.
    pub fn snapshot(&self) -> (u64, Status) {
        let st = self.lock();
        (st.len, st.status)
    }

    /// When the object was created.
    pub fn created(&self) -> SystemTime {
        self.created
    }

    /// When its first byte arrived, if it has one.
    pub fn first_arrival(&self) -> Option<Instant> {
        self.lock().chunks.first().map(|c| c.arrived)
    }

    /// A reader positioned at the first chunk.
    pub fn reader(self: &Arc<Self>) -> ObjectReader {
        ObjectReader { obj: self.clone(), next: 0, registered: None, done: false }
    }

    /// Apply `f` to the state and wake every waiting reader.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let wakers = {
            let mut st = self.lock();
            f(&mut st);
            st.generation = st.generation.wrapping_add(1);
            std::mem::take(&mut st.wakers)
        };
        // Wake outside the lock so woken readers do not contend on it at once.
        for w in wakers {
            w.wake();
        }
    }
}

impl Pinned for Object {
    fn pinned(&self) -> u64 {
        Object::pinned(self)
    }

    fn revoke(&self) -> bool {
        Object::revoke(self)
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.revoked.is_none() {
            ALLOCATED_BYTES.fetch_sub(st.len, Ordering::Relaxed);
        }
        if let (Some(p), true) = (&self.pins, st.pinned > 0) {
            p.unpin(st.pinned);
        }
    }
}

/// The single writer of a growing object. Dropping it without calling
/// [`ObjectWriter::finish`] marks the object aborted, so a broken upload can
/// never look like a clean end to readers.
pub struct ObjectWriter {
    /// `None` once finished or aborted.
    obj: Option<Arc<Object>>,
    /// Spare capacity that the next chunks are copied into.
    arena: BytesMut,
}

impl ObjectWriter {
    /// Append a chunk and wake the readers. Never blocks on readers.
    ///
    /// The bytes are copied into a shared 16 KiB buffer first: a chunk handed
    /// over by the transport is a slice of its read buffer, and keeping it
    /// would pin the whole read buffer (kilobytes) per stored chunk, however
    /// small the chunk. Copied, consecutive small chunks share one
    /// allocation and memory follows the stored bytes.
    pub fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if let Some(obj) = &self.obj {
            let n = data.len() as u64;
            if self.arena.capacity() - self.arena.len() < data.len() {
                self.arena = BytesMut::with_capacity(ARENA_BYTES.max(data.len()));
            }
            self.arena.extend_from_slice(&data);
            let data = self.arena.split().freeze();
            ALLOCATED_BYTES.fetch_add(n, Ordering::Relaxed);
            if let Some(a) = &obj.account {
                a.fetch_add(n + CHUNK_OVERHEAD, Ordering::Relaxed);
            }
            obj.update(|st| {
                st.len += n;
                st.charged += n + CHUNK_OVERHEAD;
                st.chunks.push(Chunk { data, arrived: Instant::now() });
            });
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.obj.as_ref().map_or(0, |o| o.len())
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The upload finished cleanly.
    pub fn finish(mut self) {
        self.close(Status::Complete);
    }

    /// The upload broke; readers see an error.
    pub fn abort(mut self) {
        self.close(Status::Aborted);
    }

    fn close(&mut self, status: Status) {
        self.arena = BytesMut::new();
        if let Some(obj) = self.obj.take() {
            let account = obj.account.clone();
            let mut pin = 0;
            obj.update(|st| {
                st.status = status;
                if !st.named {
                    if let Some(a) = &account {
                        a.fetch_sub(st.charged, Ordering::Relaxed);
                    }
                    pin = obj.start_pin(st);
                }
            });
            obj.finish_pin(pin);
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        self.close(Status::Aborted);
    }
}

/// One reader's cursor into an object. Cancel safe: all progress is in fields.
pub struct ObjectReader {
    /// The object being read (keeps it alive even after eviction or DELETE).
    obj: Arc<Object>,
    /// Index of the next chunk to hand out.
    next: usize,
    /// `(generation, slot)` of this reader's waker in the object's list, if
    /// it is still there.
    registered: Option<(u64, usize)>,
    /// Set once the end or the error was returned; later polls return `None`.
    done: bool,
}

impl ObjectReader {
    /// The object this reader reads.
    pub fn object(&self) -> &Arc<Object> {
        &self.obj
    }

    /// The next chunk; `None` at a clean end, `Some(Err)` if the upload was
    /// aborted. Returns `Pending` (waker registered) while the object grows.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Chunk, ObjectError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut st = self.obj.lock();
        if let Some(had) = st.revoked {
            // Revoked: a reader that had everything of a complete object
            // ends cleanly, any other gets the error.
            self.done = true;
            return Poll::Ready(if self.next >= had && st.status == Status::Complete {
                None
            } else {
                Some(Err(ObjectError::Evicted))
            });
        }
        if let Some(chunk) = st.chunks.get(self.next) {
            self.next += 1;
            return Poll::Ready(Some(Ok(chunk.clone())));
        }
        match st.status {
            Status::Complete => {
                self.done = true;
                Poll::Ready(None)
            }
            Status::Aborted => {
                self.done = true;
                Poll::Ready(Some(Err(ObjectError::Aborted)))
            }
            Status::Growing => {
                match self.registered {
                    Some((gen, slot)) if gen == st.generation => {
                        st.wakers[slot].clone_from(cx.waker());
                    }
                    _ => {
                        let slot = st.wakers.len();
                        st.wakers.push(cx.waker().clone());
                        self.registered = Some((st.generation, slot));
                    }
                }
                Poll::Pending
            }
        }
    }

    /// Async form of [`ObjectReader::poll_chunk`].
    pub async fn next_chunk(&mut self) -> Option<Result<Chunk, ObjectError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reader_gets_existing_then_new_chunks() {
        let (obj, mut w) = Object::growing();
        w.push(Bytes::from_static(b"ab"));
        let mut r = obj.reader();
        assert_eq!(r.next_chunk().await.unwrap().unwrap().data, "ab");
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = r.next_chunk().await {
                got.push(c.unwrap().data);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        w.push(Bytes::from_static(b"cd"));
        w.push(Bytes::from_static(b"ef"));
        w.finish();
        assert_eq!(task.await.unwrap(), vec!["cd", "ef"]);
        assert_eq!(obj.status(), Status::Complete);
        assert_eq!(obj.len(), 6);
    }

    #[test]
    fn pushed_chunks_do_not_pin_the_transport_buffer() {
        // A transport hands ingest slices of its (large) read buffer.
        let read_buf = Bytes::from(vec![7u8; 1 << 20]);
        let range = read_buf.as_ptr() as usize..read_buf.as_ptr() as usize + read_buf.len();
        let (obj, mut w) = Object::growing();
        for i in 0..100 {
            w.push(read_buf.slice(i..i + 1));
        }
        drop(read_buf);
        let mut r = obj.reader();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut first = None;
        while let Poll::Ready(Some(Ok(c))) = r.poll_chunk(&mut cx) {
            let p = c.data.as_ptr() as usize;
            assert!(!range.contains(&p), "stored chunk points into the transport's read buffer");
            // Consecutive small chunks share one allocation.
            let base = *first.get_or_insert(p);
            assert!(p - base < ARENA_BYTES);
        }
        assert_eq!(obj.len(), 100);
    }

    #[tokio::test]
    async fn dropped_writer_aborts_readers() {
        let (obj, mut w) = Object::growing();
        w.push(Bytes::from_static(b"x"));
        let mut r = obj.reader();
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(c) = r.next_chunk().await {
                out.push(c.map(|c| c.data));
            }
            out
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(w);
        let out = task.await.unwrap();
        assert_eq!(out, vec![Ok(Bytes::from_static(b"x")), Err(ObjectError::Aborted)]);
    }

    #[tokio::test]
    async fn many_readers_repeated_polls_do_not_grow_waker_list() {
        let (obj, mut w) = Object::growing();
        let mut r = obj.reader();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            assert!(r.poll_chunk(&mut cx).is_pending());
        }
        assert_eq!(obj.lock().wakers.len(), 1);
        w.push(Bytes::from_static(b"z"));
        assert!(obj.lock().wakers.is_empty());
        assert!(matches!(r.poll_chunk(&mut cx), Poll::Ready(Some(Ok(_)))));
    }
}
