//! The in-memory live store: streams of named objects, written by ingest and
//! read by any number of viewers while they grow.
//!
//! Rules enforced here (and only here):
//! - **Visibility.** Media and init segments are published under their name at
//!   the first byte of their upload and grow in place. Manifests and playlists
//!   (`.mpd`, `.m3u8`) are buffered and swapped in whole when their upload
//!   completes, so a reader sees the old or the new document, never a mix.
//! - **Replacement and DELETE** change what the *name* points to. A reader
//!   holds the object itself (`Arc`), so it finishes what it started even if
//!   the name is replaced, deleted or evicted meanwhile. A DELETE also
//!   cancels the manifest uploads of that name already running: they finish
//!   without publishing. ffmpeg sends its last manifest and, on another
//!   connection, its `-remove_at_exit` DELETE right after; the origin may
//!   complete them in either order, and the stream must end up gone.
//! - **Retention.** Per stream and per representation (the file name with its
//!   last run of digits masked, e.g. `chunk-stream0-00042.m4s` belongs to
//!   `chunk-stream0-#.m4s`), only the newest `keep_segments` *finished* media
//!   segments keep their names. "Newest" is by arrival (the order uploads
//!   started), not by the number in the name: a restarted encoder numbers its
//!   segments from 1 again, and ranking by number would evict the new run's
//!   segments as soon as they complete while the old run's higher numbers
//!   stay. Growing segments, init segments and manifests are never evicted
//!   while the stream lives. ffmpeg sends init segments once per run, so
//!   losing one would break the stream until the encoder restarts.
//! - **Encoder runs.** A new run starts when an init segment is uploaded a
//!   second time in the same run (ffmpeg sends each init segment exactly once
//!   per run, so only a restarted encoder does that) *and* the next media
//!   segment's number is not above the highest its representation reached
//!   (the numbering started again). An encoder that re-sends an init segment
//!   and keeps counting up stays in its run. The new run drops every media
//!   segment of the old one, and its manifest unless a new one is already
//!   being uploaded: their numbers and timeline belong to the old
//!   `availabilityStartTime`, and a new-run player asking early for segment 7
//!   must be held until the new segment 7 starts, not be handed the old run's
//!   segment 7. Readers of old objects finish normally.
//! - **Memory.** One object may hold at most `max_object_bytes` (413 beyond).
//!   The store's byte count is kept as bytes arrive (a counter, never a scan):
//!   every named object, every object still being written (even when its
//!   name was replaced or deleted meanwhile) and every buffered manifest
//!   upload, each chunk charged its length plus [`CHUNK_OVERHEAD`]. A push
//!   that would take the count over `max_store_bytes` aborts its upload
//!   (503), and new uploads are refused while the count is at the cap.
//!   Readers that still stream an evicted object keep its memory alive, but
//!   cannot push ingest out: their send timeout bounds how long, and the
//!   pinned budget (`max_pinned_bytes`, see `pinned`) how much; past it the
//!   oldest pinned objects are revoked and their readers get an error. At most
//!   `max_objects` names and `max_streams` streams exist (503 beyond). A
//!   stream without ingest for `stream_idle_timeout` is dropped whole.
//! - **Hold.** A read of a name that does not exist yet waits up to `hold` for
//!   its upload to start (LL-DASH players ask for the next segment early).

pub mod name;
mod object;
mod pinned;
pub mod view;

pub use name::Kind;
pub use object::{
    allocated_bytes, Account, Chunk, Ledger, Object, ObjectError, ObjectReader, ObjectWriter, Status, CHUNK_OVERHEAD,
};
pub use pinned::Pins;
pub use view::{ObjectInfo, StreamInfo};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use name::sequence_of;

/// Limits and timings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Finished media segments kept per representation.
    pub keep_segments: usize,
    /// Largest object an upload may create.
    pub max_object_bytes: u64,
    /// New uploads are refused while named objects hold this many bytes.
    pub max_store_bytes: u64,
    /// A stream with no ingest for this long is dropped.
    pub stream_idle_timeout: Duration,
    /// How long a read waits for a missing object to appear.
    pub hold: Duration,
    /// Named objects over all streams; uploads of new names are refused beyond.
    pub max_objects: usize,
    /// Streams; uploads that would create another one are refused.
    pub max_streams: usize,
    /// Bytes that evicted (unnamed, finished) objects still held by readers
    /// may keep alive; past it the oldest are revoked (readers get an error).
    pub max_pinned_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            keep_segments: 10,
            max_object_bytes: 64 << 20,
            max_store_bytes: 1 << 30,
            stream_idle_timeout: Duration::from_secs(60),
            hold: Duration::from_secs(2),
            max_objects: 10_000,
            max_streams: 100,
            max_pinned_bytes: 128 << 20,
        }
    }
}

/// Why ingest refused or lost an upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The upload grew past `max_object_bytes`.
    #[error("object larger than {0} bytes")]
    TooLarge(u64),
    /// The store holds `max_store_bytes` already.
    #[error("store full ({used} of {cap} bytes)")]
    StoreFull {
        /// Bytes counted by the store.
        used: u64,
        /// The configured cap.
        cap: u64,
    },
    /// `max_objects` names exist already.
    #[error("too many objects (limit {0})")]
    TooManyObjects(usize),
    /// `max_streams` streams exist already.
    #[error("too many streams (limit {0})")]
    TooManyStreams(usize),
}

/// Ingest counters of one stream, updated without the store lock.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Bytes received by ingest.
    pub bytes: AtomicU64,
    /// Chunks received by ingest.
    pub chunks: AtomicU64,
    /// Unix time in ms of the last ingest activity.
    pub last_ingest_ms: AtomicU64,
}

impl StreamStats {
    fn touch(&self) {
        self.last_ingest_ms.store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The named objects of one stream. A thin map that tells each object when
/// it loses its name (removed, replaced, or the stream dropped), so the
/// store's byte count stays exact, and keeps the store-wide name count.
struct Objects {
    /// Objects by file name.
    map: HashMap<String, Arc<Object>>,
    /// Store-wide count of names, shared by every stream.
    names: Arc<AtomicU64>,
}

impl Objects {
    fn new(names: Arc<AtomicU64>) -> Objects {
        Objects { map: HashMap::new(), names }
    }

    fn get(&self, name: &str) -> Option<&Arc<Object>> {
        self.map.get(name)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    fn iter(&self) -> std::collections::hash_map::Iter<'_, String, Arc<Object>> {
        self.map.iter()
    }

    fn insert(&mut self, name: String, obj: Arc<Object>) -> Option<Arc<Object>> {
        let old = self.map.insert(name, obj);
        match &old {
            Some(o) => o.unname(),
            None => {
                self.names.fetch_add(1, Ordering::Relaxed);
            }
        }
        old
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Keep only the objects `keep` says yes to; the others are unnamed and
    /// uncounted as [`Objects::remove`] does.
    fn retain(&mut self, mut keep: impl FnMut(&str, &Arc<Object>) -> bool) {
        let names = &self.names;
        self.map.retain(|n, o| {
            let k = keep(n, o);
            if !k {
                o.unname();
                names.fetch_sub(1, Ordering::Relaxed);
            }
            k
        });
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Object>> {
        let old = self.map.remove(name);
        if let Some(o) = &old {
            o.unname();
            self.names.fetch_sub(1, Ordering::Relaxed);
        }
        old
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        for o in self.map.values() {
            o.unname();
        }
        self.names.fetch_sub(self.map.len() as u64, Ordering::Relaxed);
    }
}

/// One stream: its named objects and its counters.
struct StreamState {
    /// Objects by file name.
    objects: Objects,
    /// Shared with running uploads.
    stats: Arc<StreamStats>,
    /// Encoder runs and upload order, for retention.
    runs: Runs,
    /// Manifest uploads running, by name (an entry lives while one runs).
    replacing: HashMap<String, Replacing>,
}

/// The manifest uploads of one name that are running, and which of them a
/// DELETE of the name cancelled. Each upload's ticket is `begun` when it began.
#[derive(Debug, Default)]
struct Replacing {
    /// Uploads begun since the entry was made.
    begun: u64,
    /// Uploads with a lower ticket began before a DELETE: not published.
    cancelled_below: u64,
    /// Uploads still running.
    running: u32,
}

/// Encoder runs of one stream and the arrival order of its media segments
/// (see "Retention" and "Encoder runs" in the module docs).
#[derive(Debug, Default)]
struct Runs {
    /// Number of the current run, from 0; shown in `/streams`.
    current: u64,
    /// Init segments uploaded (or restored) in the current run: uploading one
    /// of them again may start a new run.
    inits: HashSet<String>,
    /// Init segments uploaded again since the current run's: `Some` while a
    /// new run is suspected, confirmed or dismissed by the next media segment.
    resent: Option<HashSet<String>>,
    /// Whether a manifest upload started while a new run was suspected (the
    /// new run's manifest, to keep).
    manifest_since_resend: bool,
    /// Highest sequence number per representation in the current run.
    highest: HashMap<String, u64>,
    /// Arrival rank of each named media segment (pruned by `retain`).
    arrival: HashMap<String, u64>,
    /// Next arrival rank; grows over the stream's life.
    next_arrival: u64,
    /// When the current run began: the stream's first upload, or the first
    /// init segment uploaded again for the run that followed. Anything
    /// published before it (a manifest) belongs to an older run.
    began: Option<SystemTime>,
    /// When the init segment that made a new run suspected was uploaded.
    suspected_at: Option<SystemTime>,
}

impl StreamState {
    fn new(objects: Objects) -> StreamState {
        StreamState {
            objects,
            stats: Arc::new(StreamStats::default()),
            runs: Runs::default(),
            replacing: HashMap::new(),
        }
    }

    /// A manifest upload of `name` begins: its ticket.
    fn begin_replacing(&mut self, name: &str) -> u64 {
        let r = self.replacing.entry(name.to_string()).or_default();
        r.running += 1;
        r.begun += 1;
        r.begun - 1
    }

    /// A DELETE of `name`: the manifest uploads running now will not
    /// publish. True if there were any.
    fn cancel_replacing(&mut self, name: &str) -> bool {
        self.replacing.get_mut(name).is_some_and(|r| {
            let any = r.cancelled_below < r.begun;
            r.cancelled_below = r.begun;
            any
        })
    }

    /// The manifest upload of `name` with `ticket` ended: true if it may
    /// publish (no DELETE of the name since it began).
    fn end_replacing(&mut self, name: &str, ticket: u64) -> bool {
        let Some(r) = self.replacing.get_mut(name) else {
            return false;
        };
        let publish = ticket >= r.cancelled_below;
        r.running -= 1;
        if r.running == 0 {
            self.replacing.remove(name);
        }
        publish
    }

    /// Book an upload of `name` that is starting (before it is published):
    /// media segments get their arrival rank; an init segment already
    /// uploaded in this run makes a new run suspected, and the next media
    /// segment confirms it (its number did not go up) or dismisses it.
    fn note_upload(&mut self, stream: &str, name: &str, kind: Kind) {
        let runs = &mut self.runs;
        runs.began.get_or_insert_with(SystemTime::now);
        match kind {
            Kind::Init => match runs.resent.as_mut() {
                Some(resent) => {
                    resent.insert(name.to_string());
                }
                None if runs.inits.contains(name) => {
                    runs.resent = Some(HashSet::from([name.to_string()]));
                    runs.manifest_since_resend = false;
                    runs.suspected_at = Some(SystemTime::now());
                }
                None => {
                    runs.inits.insert(name.to_string());
                }
            },
            Kind::Manifest => runs.manifest_since_resend = true,
            Kind::Media => {
                if let Some((key, seq)) = sequence_of(name) {
                    let highest = runs.highest.get(&key).copied();
                    if let (Some(resent), Some(h)) = (runs.resent.take(), highest) {
                        if seq <= h {
                            self.new_run(stream, name, resent);
                        } else {
                            self.runs.inits.extend(resent);
                        }
                    }
                    // Confirmed (taken by `new_run`) or dismissed.
                    self.runs.suspected_at = None;
                    let h = self.runs.highest.entry(key).or_insert(seq);
                    *h = (*h).max(seq);
                }
                let runs = &mut self.runs;
                runs.arrival.insert(name.to_string(), runs.next_arrival);
                runs.next_arrival += 1;
            }
        }
    }

    /// Start a new run: drop the old run's media segments (and its manifest
    /// unless the new run's is on its way).
    fn new_run(&mut self, stream: &str, first: &str, inits: HashSet<String>) {
        let keep_manifest = self.runs.manifest_since_resend;
        let runs = &mut self.runs;
        runs.current += 1;
        runs.began = runs.suspected_at.take();
        runs.inits = inits;
        runs.highest.clear();
        runs.arrival.clear();
        let before = self.objects.len();
        self.objects.retain(|n, _| match Kind::of(n) {
            Kind::Init => true,
            Kind::Manifest => keep_manifest,
            Kind::Media => false,
        });
        tracing::info!(
            stream,
            run = self.runs.current,
            first,
            dropped = before - self.objects.len(),
            "new encoder run (init segment sent again, numbering restarted): old run's segments dropped"
        );
    }
}

/// State shared by the store handle and running uploads.
struct Inner {
    /// Limits.
    config: StoreConfig,
    /// Streams by name. A `std` mutex: every critical section is a map
    /// operation, never held across `.await`.
    streams: Mutex<HashMap<String, StreamState>>,
    /// Woken whenever a name is published (held reads) or removed, or a
    /// stream dropped (views that follow the store: MoQ).
    published: Notify,
    /// Bytes counted against `max_store_bytes`, kept as bytes arrive.
    used: Account,
    /// Names over all streams, for `max_objects`.
    names: Arc<AtomicU64>,
    /// Evicted objects still held by readers, and their budget.
    pins: Arc<Pins>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Store {
        Store {
            inner: Arc::new(Inner {
                streams: Mutex::new(HashMap::new()),
                published: Notify::new(),
                used: Arc::new(AtomicU64::new(0)),
                names: Arc::new(AtomicU64::new(0)),
                pins: Arc::new(Pins::new(config.max_pinned_bytes)),
                config,
            }),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, StreamState>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The object currently published under `stream/name`.
    pub fn get(&self, stream: &str, name: &str) -> Option<Arc<Object>> {
        self.streams().get(stream)?.objects.get(name).cloned()
    }

    /// Names published in `stream` (unordered); empty if the stream does not exist.
    pub fn names(&self, stream: &str) -> Vec<String> {
        self.streams().get(stream).map(|s| s.objects.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default()
    }

    /// Like [`Store::get`], but waits up to the hold time for the name to be
    /// published. `None` if it did not appear in time.
    pub async fn get_or_wait(&self, stream: &str, name: &str) -> Option<Arc<Object>> {
        self.get_or_wait_within(stream, name, self.inner.config.hold).await
    }

    /// [`Store::get_or_wait`] with another hold time (a CDN's prefetch of
    /// the next segment is held longer, see `core::prefetch`).
    pub async fn get_or_wait_within(&self, stream: &str, name: &str, hold: Duration) -> Option<Arc<Object>> {
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            // Register interest before looking, so a publish between the look
            // and the wait is not missed.
            let notified = self.inner.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(obj) = self.get(stream, name) {
                return Some(obj);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// The newest media segment of the current encoder run in
    /// representation `representation` (a name with its number masked, see
    /// [`name::Numbered::representation`]): the live edge, by arrival.
    pub fn newest_media(&self, stream: &str, representation: &str) -> Option<String> {
        let streams = self.streams();
        let s = streams.get(stream)?;
        s.runs
            .arrival
            .iter()
            .filter(|(n, _)| sequence_of(n).is_some_and(|(k, _)| k == representation) && s.objects.contains_key(n))
            .max_by_key(|(_, rank)| **rank)
            .map(|(n, _)| n.clone())
    }

    /// When the current encoder run of `stream` began (see "Encoder runs" in
    /// the module docs): a manifest published before it is an older run's.
    pub fn run_began(&self, stream: &str) -> Option<SystemTime> {
        self.streams().get(stream)?.runs.began
    }

    /// Remove `stream/name`, and cancel its manifest uploads still running
    /// (see "Replacement and DELETE"). Readers already streaming it finish
    /// normally. False if there was nothing to remove or cancel.
    pub fn delete(&self, stream: &str, name: &str) -> bool {
        let mut streams = self.streams();
        let Some(s) = streams.get_mut(stream) else {
            return false;
        };
        s.stats.touch();
        let cancelled = s.cancel_replacing(name);
        let removed = s.objects.remove(name).is_some() || cancelled;
        drop(streams);
        self.inner.published.notify_waiters();
        removed
    }

    /// Bytes the store cap counts: named objects, objects still being
    /// written and buffered manifest uploads, each chunk with its overhead.
    /// A counter kept as bytes arrive, not a scan.
    pub fn named_bytes(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Bytes of evicted objects that readers still hold (not in
    /// [`Store::named_bytes`]), kept under `max_pinned_bytes`.
    pub fn pinned_bytes(&self) -> u64 {
        self.inner.pins.bytes()
    }

    /// Evicted objects revoked because the pinned budget was passed.
    pub fn pinned_revoked(&self) -> u64 {
        self.inner.pins.revoked()
    }

    /// Resolves at the next revocation of an evicted object in this store
    /// (not in any other). Call `enable()` on it before looking at what it
    /// guards, so none is missed.
    pub fn next_revocation(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.pins.next_revocation()
    }

    /// Where this store's objects are counted.
    fn ledger(&self) -> Ledger {
        Ledger { used: self.inner.used.clone(), pins: self.inner.pins.clone() }
    }

    /// Named objects over all streams.
    pub fn object_count(&self) -> u64 {
        self.inner.names.load(Ordering::Relaxed)
    }

    /// Charge `n` bytes to the store, or refuse if that would pass the cap.
    fn charge(&self, n: u64) -> Result<(), IngestError> {
        let cap = self.inner.config.max_store_bytes;
        let used = self.inner.used.fetch_add(n, Ordering::Relaxed) + n;
        if used > cap {
            self.inner.used.fetch_sub(n, Ordering::Relaxed);
            return Err(IngestError::StoreFull { used: used - n, cap });
        }
        Ok(())
    }

    /// Start an upload to `stream/name`. Refused with
    /// [`IngestError::StoreFull`] while the store is at its cap, and with
    /// [`IngestError::TooLarge`] when the announced length is over the limit.
    pub fn begin_upload(&self, stream: &str, name: &str, announced_len: Option<u64>) -> Result<Upload, IngestError> {
        let cfg = &self.inner.config;
        if let Some(n) = announced_len {
            if n > cfg.max_object_bytes {
                return Err(IngestError::TooLarge(cfg.max_object_bytes));
            }
        }
        let used = self.named_bytes();
        if used >= cfg.max_store_bytes {
            return Err(IngestError::StoreFull { used, cap: cfg.max_store_bytes });
        }
        let kind = Kind::of(name);
        let mut streams = self.streams();
        if !streams.contains_key(stream) && streams.len() >= cfg.max_streams {
            return Err(IngestError::TooManyStreams(cfg.max_streams));
        }
        let names = self.inner.names.clone();
        let s = streams.entry(stream.to_string()).or_insert_with(|| StreamState::new(Objects::new(names)));
        s.stats.touch();
        s.note_upload(stream, name, kind);
        let replaced = s.objects.contains_key(name);
        if !replaced && self.inner.names.load(Ordering::Relaxed) >= cfg.max_objects as u64 {
            return Err(IngestError::TooManyObjects(cfg.max_objects));
        }
        let target = if kind == Kind::Manifest {
            Target::Buffered { chunks: Vec::new(), charged: 0, ticket: s.begin_replacing(name) }
        } else {
            let (obj, writer) = Object::growing_in(Some(self.ledger()));
            s.objects.insert(name.to_string(), obj);
            Target::Live(writer)
        };
        let stats = s.stats.clone();
        drop(streams);
        if kind != Kind::Manifest {
            self.inner.published.notify_waiters();
        }
        Ok(Upload {
            store: self.clone(),
            stream: stream.to_string(),
            name: name.to_string(),
            kind,
            replaced,
            len: 0,
            stats,
            target: Some(target),
        })
    }

    /// Publish a finished object that was kept outside the store (the
    /// origin's state directory after a restart). A restored init segment
    /// counts as sent in the current run.
    pub fn restore(&self, stream: &str, name: &str, data: Bytes) {
        let mut streams = self.streams();
        let names = self.inner.names.clone();
        let s = streams.entry(stream.to_string()).or_insert_with(|| StreamState::new(Objects::new(names)));
        s.stats.touch();
        s.runs.began.get_or_insert_with(SystemTime::now);
        if Kind::of(name) == Kind::Init {
            s.runs.inits.insert(name.to_string());
        }
        // Charged like an upload of one chunk, so the cap counts it.
        let used = &self.inner.used;
        used.fetch_add(data.len() as u64 + CHUNK_OVERHEAD, Ordering::Relaxed);
        let obj = Object::complete_in(vec![Chunk { data, arrived: Instant::now() }], Some(self.ledger()));
        s.objects.insert(name.to_string(), obj);
        drop(streams);
        self.inner.published.notify_waiters();
    }

    /// Apply the retention rule to the representation of `name` in `stream`:
    /// keep its `keep_segments` finished media segments that arrived last.
    fn retain(&self, stream: &str, name: &str) {
        let Some((key, _)) = sequence_of(name) else {
            return;
        };
        let keep = self.inner.config.keep_segments;
        let mut streams = self.streams();
        let Some(s) = streams.get_mut(stream) else {
            return;
        };
        let arrival = &s.runs.arrival;
        let mut finished: Vec<(u64, u64, String)> = s
            .objects
            .iter()
            .filter(|(n, o)| Kind::of(n) == Kind::Media && o.status() != Status::Growing)
            .filter_map(|(n, _)| match sequence_of(n) {
                Some((k, seq)) if k == key => Some((arrival.get(n).copied().unwrap_or(0), seq, n.clone())),
                _ => None,
            })
            .collect();
        if finished.len() > keep {
            finished.sort_unstable_by_key(|e| std::cmp::Reverse((e.0, e.1)));
            for (_, _, old) in finished.into_iter().skip(keep) {
                tracing::debug!(stream, name = %old, "retention: evicting old segment");
                s.objects.remove(&old);
            }
        }
        // Forget the rank of names that are gone (evicted, deleted, dropped).
        let objects = &s.objects;
        s.runs.arrival.retain(|n, _| objects.contains_key(n));
    }

    /// Drop streams that had no ingest for the idle timeout. Returns their names.
    pub fn sweep_idle(&self) -> Vec<String> {
        let now = unix_ms(SystemTime::now());
        let limit = self.inner.config.stream_idle_timeout.as_millis() as u64;
        let mut dropped = Vec::new();
        self.streams().retain(|name, s| {
            let idle = now.saturating_sub(s.stats.last_ingest_ms.load(Ordering::Relaxed));
            let keep = idle < limit || Arc::strong_count(&s.stats) > 1;
            if !keep {
                dropped.push(name.clone());
            }
            keep
        });
        if !dropped.is_empty() {
            self.inner.published.notify_waiters();
        }
        dropped
    }

    /// Names of the streams that exist (unordered).
    pub fn stream_names(&self) -> Vec<String> {
        self.streams().keys().cloned().collect()
    }

    /// A future woken at the next change of names: a name published or
    /// removed, a stream dropped. Call [`tokio::sync::futures::Notified::enable`]
    /// on it (pinned) before looking at the store, so a change between the
    /// look and the wait is not missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.published.notified()
    }
}

/// Where an upload's bytes go.
enum Target {
    /// Published at the first byte; readers follow it as it grows.
    Live(ObjectWriter),
    /// Collected and published whole on completion (manifests), with the
    /// bytes charged to the store so far and the upload's ticket (see
    /// `Replacing`).
    Buffered { chunks: Vec<Chunk>, charged: u64, ticket: u64 },
}

/// A running upload. Dropping it without [`Upload::finish`] aborts it: a live
/// object becomes an error for its readers, a buffered manifest is discarded.
pub struct Upload {
    /// The store it publishes into.
    store: Store,
    /// Stream name.
    stream: String,
    /// File name.
    name: String,
    /// Decides retention after completion.
    kind: Kind,
    /// Whether the name existed when the upload started (201 vs 204).
    replaced: bool,
    /// Bytes received.
    len: u64,
    /// The stream's ingest counters.
    stats: Arc<StreamStats>,
    /// `None` once finished.
    target: Option<Target>,
}

impl Upload {
    /// True if the upload replaces an existing object (204), false if it
    /// creates one (201).
    pub fn replaces(&self) -> bool {
        self.replaced
    }

    /// Append received bytes. Over the object size limit the upload is
    /// aborted (readers see an error) and `TooLarge` is returned.
    pub fn push(&mut self, data: Bytes) -> Result<(), IngestError> {
        let max = self.store.inner.config.max_object_bytes;
        let n = data.len() as u64;
        if self.len + n > max {
            self.abort();
            return Err(IngestError::TooLarge(max));
        }
        if self.target.is_some() {
            if let Err(e) = self.store.charge(n + CHUNK_OVERHEAD) {
                self.abort();
                return Err(e);
            }
        }
        self.len += n;
        self.stats.bytes.fetch_add(n, Ordering::Relaxed);
        self.stats.chunks.fetch_add(1, Ordering::Relaxed);
        self.stats.touch();
        match self.target.as_mut() {
            Some(Target::Live(w)) => {
                // The writer charges the object (and so the store) itself.
                self.store.inner.used.fetch_sub(n + CHUNK_OVERHEAD, Ordering::Relaxed);
                w.push(data)
            }
            Some(Target::Buffered { chunks, charged, .. }) => {
                // A copy, so the chunk does not pin the transport's read buffer.
                chunks.push(Chunk { data: Bytes::copy_from_slice(&data), arrived: Instant::now() });
                *charged += n + CHUNK_OVERHEAD;
            }
            None => {}
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The upload ended cleanly: complete the object (or publish the
    /// manifest) and apply retention.
    pub fn finish(mut self) {
        match self.target.take() {
            Some(Target::Live(w)) => w.finish(),
            Some(Target::Buffered { chunks, charged, ticket }) => {
                let mut streams = self.store.streams();
                let stream = streams.get_mut(&self.stream);
                match stream.and_then(|s| s.end_replacing(&self.name, ticket).then_some(s)) {
                    Some(s) => {
                        // The upload's charge moves to the published object.
                        let obj = Object::complete_in(chunks, Some(self.store.ledger()));
                        s.objects.insert(self.name.clone(), obj);
                    }
                    // Deleted meanwhile (the name or the whole stream).
                    _ => {
                        self.store.inner.used.fetch_sub(charged, Ordering::Relaxed);
                    }
                }
                drop(streams);
                self.store.inner.published.notify_waiters();
            }
            None => return,
        }
        self.stats.touch();
        if self.kind == Kind::Media {
            self.store.retain(&self.stream, &self.name);
        }
    }

    /// The upload broke: readers of a live object see an error; a buffered
    /// manifest is discarded and the previous one stays published.
    pub fn abort(&mut self) {
        match self.target.take() {
            Some(Target::Live(w)) => w.abort(),
            Some(Target::Buffered { charged, ticket, .. }) => {
                if let Some(s) = self.store.streams().get_mut(&self.stream) {
                    s.end_replacing(&self.name, ticket);
                }
                self.store.inner.used.fetch_sub(charged, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(cfg: StoreConfig) -> Store {
        Store::new(cfg)
    }

    #[test]
    fn retention_keeps_newest_and_init() {
        let st = store(StoreConfig { keep_segments: 3, ..Default::default() });
        let mut up = st.begin_upload("s", "init-stream0.m4s", None).unwrap();
        up.push(Bytes::from_static(b"init")).unwrap();
        up.finish();
        for i in 1..=10 {
            for track in 0..2 {
                let mut up = st.begin_upload("s", &format!("chunk-stream{track}-{i:05}.m4s"), None).unwrap();
                up.push(Bytes::from(vec![0u8; 100])).unwrap();
                up.finish();
            }
        }
        let names: Vec<String> = st.snapshot()[0].objects.iter().map(|o| o.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                "chunk-stream0-00008.m4s",
                "chunk-stream0-00009.m4s",
                "chunk-stream0-00010.m4s",
                "chunk-stream1-00008.m4s",
                "chunk-stream1-00009.m4s",
                "chunk-stream1-00010.m4s",
                "init-stream0.m4s"
            ]
        );
    }

    fn put(st: &Store, name: &str) {
        let mut up = st.begin_upload("s", name, None).unwrap();
        up.push(Bytes::from(name.to_string())).unwrap();
        up.finish();
    }

    fn names(st: &Store) -> Vec<String> {
        st.snapshot()[0].objects.iter().map(|o| o.name.clone()).collect()
    }

    #[test]
    fn retention_ranks_by_arrival_across_a_numbering_restart() {
        // An encoder that starts numbering at 1 again (without sending its
        // init segment again, e.g. pushing through a relay): the new low
        // numbers are the newest segments and must stay.
        let st = store(StoreConfig { keep_segments: 3, ..Default::default() });
        for i in 1..=15 {
            put(&st, &format!("chunk-stream0-{i:05}.m4s"));
        }
        for i in 1..=2 {
            put(&st, &format!("chunk-stream0-{i:05}.m4s"));
        }
        assert_eq!(names(&st), vec!["chunk-stream0-00001.m4s", "chunk-stream0-00002.m4s", "chunk-stream0-00015.m4s"]);
        put(&st, "chunk-stream0-00003.m4s");
        put(&st, "chunk-stream0-00004.m4s");
        assert_eq!(names(&st), vec!["chunk-stream0-00002.m4s", "chunk-stream0-00003.m4s", "chunk-stream0-00004.m4s"]);
    }

    #[test]
    fn init_sent_again_starts_a_new_run() {
        let st = store(StoreConfig { keep_segments: 3, ..Default::default() });
        put(&st, "init-stream0.m4s");
        put(&st, "init-stream1.m4s");
        for i in 1..=15 {
            put(&st, &format!("chunk-stream0-{i:05}.m4s"));
            put(&st, &format!("chunk-stream1-{i:05}.m4s"));
            put(&st, "manifest.mpd");
        }
        assert_eq!(st.snapshot()[0].run, 0);
        // ffmpeg restarted: each track's init segment comes first on its connection.
        put(&st, "init-stream0.m4s");
        put(&st, "init-stream1.m4s");
        assert_eq!(st.snapshot()[0].run, 0, "suspected until the numbering is seen to restart");
        put(&st, "chunk-stream0-00001.m4s");
        assert_eq!(st.snapshot()[0].run, 1);
        assert_eq!(
            names(&st),
            vec!["chunk-stream0-00001.m4s", "init-stream0.m4s", "init-stream1.m4s"],
            "old run's segments and manifest dropped"
        );
        put(&st, "chunk-stream1-00001.m4s");
        let mut growing = st.begin_upload("s", "chunk-stream0-00002.m4s", None).unwrap();
        growing.push(Bytes::from_static(b"x")).unwrap();
        put(&st, "manifest.mpd");
        assert_eq!(st.snapshot()[0].run, 1, "one restart, one new run");
        assert_eq!(
            names(&st),
            vec![
                "chunk-stream0-00001.m4s",
                "chunk-stream0-00002.m4s",
                "chunk-stream1-00001.m4s",
                "init-stream0.m4s",
                "init-stream1.m4s",
                "manifest.mpd"
            ]
        );
        drop(growing);

        // An init sent again while the numbering goes on is not a new run.
        put(&st, "init-stream0.m4s");
        put(&st, "chunk-stream0-00003.m4s");
        assert_eq!(st.snapshot()[0].run, 1);
        assert!(st.get("s", "chunk-stream0-00001.m4s").is_some());

        // The new run's manifest already on its way is kept.
        put(&st, "init-stream0.m4s");
        let _manifest = st.begin_upload("s", "manifest.mpd", None).unwrap();
        put(&st, "chunk-stream0-00001.m4s");
        assert_eq!(st.snapshot()[0].run, 2);
        assert!(st.get("s", "manifest.mpd").is_some());

        // A restored init (origin restart) counts as sent in the running run.
        let st = store(StoreConfig::default());
        st.restore("s", "init-stream0.m4s", Bytes::from_static(b"init"));
        put(&st, "chunk-stream0-00005.m4s");
        assert_eq!(st.snapshot()[0].run, 0);
        put(&st, "init-stream0.m4s");
        put(&st, "chunk-stream0-00001.m4s");
        assert_eq!(st.snapshot()[0].run, 1);
    }

    #[test]
    fn growing_segment_is_not_evicted() {
        let st = store(StoreConfig { keep_segments: 1, ..Default::default() });
        let mut growing = st.begin_upload("s", "c-1.m4s", None).unwrap();
        growing.push(Bytes::from_static(b"a")).unwrap();
        for i in 2..5 {
            st.begin_upload("s", &format!("c-{i}.m4s"), None).unwrap().finish();
        }
        assert!(st.get("s", "c-1.m4s").is_some());
        assert!(st.get("s", "c-4.m4s").is_some());
        assert!(st.get("s", "c-2.m4s").is_none());
    }

    /// ffmpeg's last manifest and its -remove_at_exit DELETE come on two
    /// connections: a DELETE that the origin completes while that manifest
    /// upload still runs must win, whichever finishes last.
    #[test]
    fn a_delete_cancels_the_manifest_uploads_running() {
        let st = store(StoreConfig::default());
        let mut first = st.begin_upload("s", "manifest.mpd", None).unwrap();
        first.push(Bytes::from_static(b"<MPD/>")).unwrap();
        first.finish();
        let mut last = st.begin_upload("s", "manifest.mpd", None).unwrap();
        last.push(Bytes::from_static(b"<MPD last/>")).unwrap();
        assert!(st.delete("s", "manifest.mpd"));
        last.finish();
        assert!(st.get("s", "manifest.mpd").is_none(), "a manifest begun before the DELETE came back");
        assert_eq!(st.named_bytes(), 0, "the cancelled manifest is still charged");

        // Only a manifest upload running, nothing published yet: the DELETE
        // still cancels it (and says it did).
        let running = st.begin_upload("s", "manifest.mpd", None).unwrap();
        assert!(st.delete("s", "manifest.mpd"));
        assert!(!st.delete("s", "manifest.mpd"));
        // An upload begun after the DELETE publishes, even while the cancelled one still runs.
        let mut after = st.begin_upload("s", "manifest.mpd", None).unwrap();
        after.push(Bytes::from_static(b"<MPD new/>")).unwrap();
        after.finish();
        running.finish();
        assert_eq!(st.get("s", "manifest.mpd").unwrap().len(), 10);
        let streams = st.streams();
        assert!(streams["s"].replacing.is_empty(), "an ended upload is still tracked");
    }

    #[test]
    fn manifest_is_published_only_when_complete() {
        let st = store(StoreConfig::default());
        let mut up = st.begin_upload("s", "manifest.mpd", None).unwrap();
        up.push(Bytes::from_static(b"<MPD")).unwrap();
        assert!(st.get("s", "manifest.mpd").is_none());
        up.push(Bytes::from_static(b"/>")).unwrap();
        up.finish();
        assert_eq!(st.get("s", "manifest.mpd").unwrap().len(), 6);
        // A broken replacement leaves the old one in place.
        let mut up = st.begin_upload("s", "manifest.mpd", None).unwrap();
        assert!(up.replaces());
        up.push(Bytes::from_static(b"<MPD partial")).unwrap();
        drop(up);
        assert_eq!(st.get("s", "manifest.mpd").unwrap().len(), 6);
    }

    #[test]
    fn limits() {
        let o = CHUNK_OVERHEAD;
        let st = store(StoreConfig { max_object_bytes: 10, max_store_bytes: 17 + 2 * o, ..Default::default() });
        assert_eq!(st.begin_upload("s", "a-1.m4s", Some(11)).err(), Some(IngestError::TooLarge(10)));
        let mut up = st.begin_upload("s", "a-1.m4s", None).unwrap();
        up.push(Bytes::from(vec![0u8; 8])).unwrap();
        assert_eq!(up.push(Bytes::from(vec![0u8; 3])), Err(IngestError::TooLarge(10)));
        assert_eq!(st.get("s", "a-1.m4s").unwrap().status(), Status::Aborted);
        let mut up = st.begin_upload("s", "a-2.m4s", None).unwrap();
        up.push(Bytes::from(vec![0u8; 9])).unwrap();
        up.finish();
        assert_eq!(st.named_bytes(), 17 + 2 * o);
        assert!(
            matches!(st.begin_upload("s", "a-3.m4s", None), Err(IngestError::StoreFull { used, .. }) if used == 17 + 2 * o)
        );
        assert!(st.delete("s", "a-1.m4s"));
        assert!(st.begin_upload("s", "a-3.m4s", None).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn held_read_is_answered_when_upload_starts() {
        let st = store(StoreConfig::default());
        let st2 = st.clone();
        let waiter = tokio::spawn(async move { st2.get_or_wait("s", "c-1.m4s").await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _up = st.begin_upload("s", "c-1.m4s", None).unwrap();
        assert!(waiter.await.unwrap().is_some());
        assert!(st.get_or_wait("s", "never.m4s").await.is_none());
    }
}
