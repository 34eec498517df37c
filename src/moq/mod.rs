//! Media over QUIC: every ingest stream published as a MoQ broadcast, read
//! from the store like any viewer (no second copy of the ingest, no
//! re-encode). A delivery format beside [`crate::hls`]; the WebTransport
//! endpoint that serves it is [`crate::transport::moq`].
//!
//! Naming (see docs/moq.md):
//! - broadcast path: the stream name (`test` for `/live/test/…`);
//! - one track per DASH representation, named after it (`stream0`,
//!   `stream1`, … as ffmpeg's DASH muxer names them: video rungs first, audio
//!   last), plus the `hang` catalog track `catalog.json` listing them (video
//!   renditions and audio renditions, `cmaf` container with the init segment).
//!
//! Frames and groups: each media segment of a representation is one group,
//! and each of its CMAF fragments one frame, published the moment the last
//! byte of its `mdat` is stored. A frame holds the fragment's bytes exactly as
//! stored: the bytes after the previous fragment's `mdat` (or the segment
//! start) up to the end of its own `mdat` (`[styp] [prft] moof mdat`), so the
//! frames of a group, put together, are the segment the HTTP arms serve. The
//! group sequence is the segment's number in its file name for the first
//! encoder run; later runs continue from the last group published, so the
//! sequence never goes back (MoQ subscribers treat a lower sequence as old).
//!
//! Generations: an encoder restart uploads new init segments. When any init
//! segment of the stream is replaced, the view starts a new generation: a new
//! broadcast source at the same path with a new catalog, created before the
//! old one is dropped. moq-net's origin splices the tracks of the sources at
//! one path, so a subscriber's track continues with the new generation's
//! groups without a new subscription. A stream that leaves the store (DELETE
//! of its objects, idle drop) closes its broadcast.
//!
//! The view follows the live edge: a new generation starts with the newest
//! segment of each representation (from its first byte), never the backlog.

pub mod catalog;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use moq_net::{broadcast, origin, track, Timestamp};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cmaf::FragmentTracker;
use crate::metrics::Histogram;
use crate::store::name::{init_name, init_rep, segment_name, segment_seq};
use crate::store::{Object, Store};
use catalog::{Rendition, TrackSpec};

/// How long a replaced generation's source stays up after the next one is
/// announced (see [`Publisher::stream`]).
const GENERATION_LINGER: Duration = Duration::from_secs(2);

/// Settings of the MoQ view.
#[derive(Debug, Clone)]
pub struct MoqConfig {
    /// How far (in media time) a group may fall behind the newest one of its
    /// track before it is dropped from the cache; a subscriber that falls
    /// further behind skips to newer groups (moq-net's `max_age`).
    pub max_age: Duration,
    /// Bytes of published groups kept for subscribers over all tracks (the
    /// moq-net cache pool); the oldest groups go first beyond it.
    pub cache_bytes: u64,
}

impl Default for MoqConfig {
    fn default() -> Self {
        MoqConfig { max_age: Duration::from_secs(4), cache_bytes: 64 << 20 }
    }
}

/// Counters of the view (what it publishes; what sessions deliver is counted
/// by moq-net, see [`crate::transport::moq`]).
#[derive(Debug, Default)]
pub struct ViewStats {
    /// Frames (fragments) published.
    pub frames: AtomicU64,
    /// Bytes of frames published.
    pub bytes: AtomicU64,
    /// Groups (segments) published.
    pub groups: AtomicU64,
    /// Broadcast generations started (one per stream at first, one more per encoder restart).
    pub generations: AtomicU64,
    /// Broadcasts being published now.
    pub broadcasts: AtomicU64,
}

/// The MoQ view of a store: an origin of broadcasts, fed by a background task.
#[derive(Clone)]
pub struct Moq {
    /// Broadcasts, one per stream; sessions publish from its consumer.
    origin: origin::Producer,
    /// What was published.
    stats: Arc<ViewStats>,
}

impl Moq {
    /// Start publishing every stream of `store` until `shutdown`; `delay`
    /// records, per fragment, the time from its last byte's arrival on ingest
    /// to its publication.
    pub fn start(store: Store, config: MoqConfig, delay: Histogram, shutdown: CancellationToken) -> Moq {
        let pool = moq_net::cache::Pool::new(
            moq_net::cache::Config::default()
                .with_capacity(config.cache_bytes)
                .with_expiry(moq_net::cache::DEFAULT_EXPIRY),
        );
        let mut origin_config = origin::Config::default();
        origin_config.pool = pool;
        origin_config.cache_duration = config.max_age;
        let (origin, driver) = origin::Producer::new(origin_config);
        let stats = Arc::new(ViewStats::default());
        let view = Moq { origin: origin.clone(), stats: stats.clone() };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                err = moq_net::time::run(driver) => debug!(error = %err, "moq: origin driver ended"),
                _ = stop.cancelled() => {}
            }
        });
        let publisher = Publisher { store, origin, config, stats, delay };
        tokio::spawn(publisher.run(shutdown));
        view
    }

    /// The broadcasts, for sessions to serve.
    pub fn consumer(&self) -> origin::Consumer {
        self.origin.consume()
    }

    /// What the view published so far.
    pub fn stats(&self) -> &Arc<ViewStats> {
        &self.stats
    }
}

/// Shared by the stream tasks.
#[derive(Clone)]
struct Publisher {
    store: Store,
    origin: origin::Producer,
    config: MoqConfig,
    stats: Arc<ViewStats>,
    delay: Histogram,
}

impl Publisher {
    /// Start a stream task for every stream that has init segments, until shutdown.
    async fn run(self, shutdown: CancellationToken) {
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            let changed = self.store.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            running.retain(|_, t| !t.is_finished());
            for stream in self.store.stream_names() {
                if running.contains_key(&stream) || inits(&self.store, &stream).is_empty() {
                    continue;
                }
                let task = tokio::spawn(self.clone().stream(stream.clone()));
                running.insert(stream, task);
            }
            tokio::select! {
                _ = changed => {}
                _ = shutdown.cancelled() => break,
            }
        }
        for (_, t) in running {
            t.abort();
        }
    }

    /// Publish `stream`, one generation per set of init segments, until it leaves the store.
    async fn stream(self, stream: String) {
        // Next group sequence per representation, kept across generations.
        let mut floors: HashMap<String, Arc<AtomicU64>> = HashMap::new();
        // The generation being served; replaced only once the next one is announced.
        let mut current: Option<Generation> = None;
        // Generations of this stream so far: the catalog group's sequence, so
        // that the catalog track, spliced across sources, goes on too.
        let mut generations = 0u64;
        loop {
            let objects = inits(&self.store, &stream);
            if objects.is_empty() {
                break;
            }
            if !media_after(&self.store, &stream, &objects) {
                // ffmpeg sends every init segment of a run before its first
                // media segment: wait for that, so one generation has them all.
                self.wait_change(&stream, &objects).await;
                continue;
            }
            let generation = match self.generation(&stream, &objects, &mut floors, generations).await {
                Some(g) => g,
                None => {
                    // An init segment was aborted or unreadable: wait for a change.
                    self.wait_init_change(&stream, &objects).await;
                    continue;
                }
            };
            generations += 1;
            self.stats.generations.fetch_add(1, Ordering::Relaxed);
            info!(stream, generation = generations, tracks = objects.len(), "moq: broadcast published");
            match current.replace(generation) {
                None => {
                    self.stats.broadcasts.fetch_add(1, Ordering::Relaxed);
                }
                // The old source stays up a little after the new one is
                // announced: moq-net's origin moves the path's subscribers to
                // the newest source in its driver, and a source that dies
                // before that ends their tracks in an error.
                Some(old) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(GENERATION_LINGER).await;
                        drop(old);
                    });
                }
            }
            let gen = current.as_mut().expect("just set");
            if gen.tasks.is_empty() {
                self.wait_init_change(&stream, &objects).await;
                continue;
            }
            tokio::select! {
                _ = self.wait_init_change(&stream, &objects) => {}
                // A representation task ended early (it panicked).
                _ = gen.tasks.join_next() => {}
            }
        }
        if current.take().is_some() {
            self.stats.broadcasts.fetch_sub(1, Ordering::Relaxed);
            info!(stream, "moq: stream gone, broadcast closed");
        }
    }

    /// Resolves at the next change of names, or when the init segments of
    /// `stream` already differ from `objects`.
    async fn wait_change(&self, stream: &str, objects: &[(String, Arc<Object>)]) {
        let changed = self.store.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if same_inits(&inits(&self.store, stream), objects) {
            changed.await;
        }
    }

    /// Resolves when the init segments of `stream` differ from `objects`
    /// (one replaced, added or removed; the stream dropped).
    async fn wait_init_change(&self, stream: &str, objects: &[(String, Arc<Object>)]) {
        loop {
            let changed = self.store.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !same_inits(&inits(&self.store, stream), objects) {
                return;
            }
            changed.await;
        }
    }

    /// Read the init segments, announce a broadcast with their catalog and
    /// start one task per representation. `None` if an init segment cannot be read.
    async fn generation(
        &self,
        stream: &str,
        objects: &[(String, Arc<Object>)],
        floors: &mut HashMap<String, Arc<AtomicU64>>,
        catalog_sequence: u64,
    ) -> Option<Generation> {
        let mut specs = Vec::new();
        for (rep, obj) in objects {
            let init = read_whole(obj).await?;
            match catalog::track_spec(&init) {
                Ok(spec) => specs.push((rep.clone(), obj.clone(), spec)),
                Err(e) => warn!(stream, rep, error = %e, "moq: representation not published"),
            }
        }
        let broadcast = match self.origin.create_broadcast(stream) {
            Ok(b) => b,
            Err(e) => {
                warn!(stream, error = %e, "moq: cannot create the broadcast");
                return None;
            }
        };
        let mut cat = hang::catalog::Catalog::<()>::default();
        let mut tracks = Vec::new();
        for (rep, obj, spec) in specs {
            let (priority, result) = match &spec.rendition {
                Rendition::Video(v) => (hang::catalog::PRIORITY.video, cat.video.insert(&rep, (**v).clone())),
                Rendition::Audio(a) => (hang::catalog::PRIORITY.audio, cat.audio.insert(&rep, (**a).clone())),
            };
            if let Err(e) = result {
                warn!(stream, rep, error = %e, "moq: representation left out of the catalog");
                continue;
            }
            let info = track_info(&spec, priority, self.config.max_age);
            match broadcast.create_track(rep.as_str(), info) {
                Ok(t) => tracks.push((rep, obj, spec, t)),
                Err(e) => warn!(stream, rep, error = %e, "moq: cannot create track"),
            }
        }
        let json = match cat.to_json() {
            Ok(j) => {
                debug!(stream, catalog = %j, "moq: catalog");
                j
            }
            Err(e) => {
                warn!(stream, error = %e, "moq: catalog not encodable");
                return None;
            }
        };
        let catalog_track =
            broadcast.create_track(hang::Catalog::DEFAULT_NAME, hang::Catalog::default_track_info()).and_then(|t| {
                let mut g = t.create_group(moq_net::group::Info { sequence: catalog_sequence })?;
                g.write_frame(Timestamp::now(), json)?;
                g.finish()?;
                Ok(t)
            });
        let catalog_track = match catalog_track {
            Ok(t) => t,
            Err(e) => {
                warn!(stream, error = %e, "moq: catalog track failed");
                return None;
            }
        };
        if let Err(e) = broadcast.announce(Default::default()) {
            warn!(stream, error = %e, "moq: announce failed");
            return None;
        }
        let mut tasks = JoinSet::new();
        for (rep, init, spec, track) in tracks {
            let floor = floors.entry(rep.clone()).or_default().clone();
            let rep_task = RepTask {
                publisher: self.clone(),
                stream: stream.to_string(),
                rep,
                init,
                timescale: spec.timescale,
                track,
                floor,
            };
            tasks.spawn(rep_task.run());
        }
        Some(Generation { _broadcast: broadcast, _catalog: catalog_track, tasks })
    }
}

/// One generation of a stream's broadcast: dropping it ends its tasks and
/// its source (subscribers move on to the next generation's).
struct Generation {
    /// The broadcast source; closes when dropped.
    _broadcast: broadcast::Producer,
    /// The catalog track (its one group stays cached).
    _catalog: track::Producer,
    /// The representation tasks (aborted on drop).
    tasks: JoinSet<()>,
}

/// Track properties of a representation.
fn track_info(spec: &TrackSpec, priority: u8, max_age: Duration) -> track::Info {
    let mut info = track::Info::default().with_priority(priority).with_max_age(max_age);
    if let Ok(ts) = moq_net::Timescale::new(spec.timescale) {
        info = info.with_timescale(ts);
    }
    info
}

/// The init segments of `stream`, sorted by representation.
fn inits(store: &Store, stream: &str) -> Vec<(String, Arc<Object>)> {
    let mut out: Vec<(String, Arc<Object>)> = store
        .names(stream)
        .iter()
        .filter_map(|n| {
            let rep = init_rep(n)?;
            Some((rep.to_string(), store.get(stream, n)?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// True if both lists name the same init segment objects.
fn same_inits(a: &[(String, Arc<Object>)], b: &[(String, Arc<Object>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && Arc::ptr_eq(x, y))
}

/// True if a media segment of one of the representations started after the
/// newest of their init segments (the run's init segments are all in).
fn media_after(store: &Store, stream: &str, objects: &[(String, Arc<Object>)]) -> bool {
    let Some(newest) = objects.iter().map(|(_, o)| o.created()).max() else {
        return false;
    };
    store.names(stream).iter().any(|n| {
        objects.iter().any(|(rep, _)| segment_seq(rep, n).is_some())
            && store.get(stream, n).is_some_and(|o| o.created() >= newest)
    })
}

/// A finished object's bytes in one buffer; `None` if its upload broke.
async fn read_whole(obj: &Arc<Object>) -> Option<Bytes> {
    let mut r = obj.reader();
    let mut out = BytesMut::new();
    while let Some(c) = r.next_chunk().await {
        out.extend_from_slice(&c.ok()?.data);
    }
    Some(out.freeze())
}

/// Publishes one representation of one generation, segment after segment.
struct RepTask {
    publisher: Publisher,
    stream: String,
    rep: String,
    /// The init segment this generation was built from.
    init: Arc<Object>,
    /// Units per second of the track's media times.
    timescale: u64,
    track: track::Producer,
    /// The lowest group sequence this generation may use (shared across generations).
    floor: Arc<AtomicU64>,
}

impl RepTask {
    /// Publish until the generation is dropped. Once the init segment is
    /// replaced (or the stream is gone) there is nothing more to publish, but
    /// the track stays open: it closes with its generation, after the next
    /// one is announced, so a subscriber never sees it end in between.
    async fn run(self) {
        self.publish().await;
        std::future::pending::<()>().await;
    }

    async fn publish(&self) {
        let store = &self.publisher.store;
        let stream = self.stream.as_str();
        // The newest segment there is, then each next one.
        let mut next: Option<u64> = None;
        // Group sequence = segment number + offset (fixed per generation).
        let mut offset: Option<u64> = None;
        loop {
            if !store.get(stream, &init_name(&self.rep)).is_some_and(|o| Arc::ptr_eq(&o, &self.init)) {
                return;
            }
            let changed = store.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut existing: Vec<(u64, usize)> =
                store.names(stream).iter().filter_map(|n| segment_seq(&self.rep, n)).collect();
            existing.sort_unstable();
            let width = existing.last().map_or(5, |&(_, w)| w);
            if existing.is_empty() && store.names(stream).is_empty() {
                return;
            }
            let seq = match next {
                Some(n) => n,
                // The newest segment of this encoder run: one whose upload
                // started after this generation's init segment (until the
                // first one of a new run arrives, the store still holds the
                // previous run's, which belong to the old init segment).
                None => match existing.iter().rev().find(|&&(s, w)| {
                    store
                        .get(stream, &segment_name(&self.rep, s, w))
                        .is_some_and(|o| o.created() >= self.init.created())
                }) {
                    Some(&(s, _)) => s,
                    None => {
                        changed.await;
                        continue;
                    }
                },
            };
            let name = segment_name(&self.rep, seq, width);
            let Some(obj) = store.get(stream, &name) else {
                if let Some(&(s, _)) = existing.iter().find(|(s, _)| *s > seq) {
                    // Skipped numbers (a lost segment): go on with the next one there is.
                    next = Some(s);
                } else {
                    changed.await;
                }
                continue;
            };
            let off = *offset.get_or_insert_with(|| self.floor.load(Ordering::Relaxed).saturating_sub(seq));
            let group = seq + off;
            self.floor.fetch_max(group + 1, Ordering::Relaxed);
            self.segment(obj, group).await;
            next = Some(seq + 1);
        }
    }

    /// Publish one segment as group `sequence`: a frame per fragment as soon as it is complete.
    async fn segment(&self, obj: Arc<Object>, sequence: u64) {
        let stats = &self.publisher.stats;
        let mut group = match self.track.create_group(moq_net::group::Info { sequence }) {
            Ok(g) => g,
            Err(e) => {
                debug!(stream = self.stream, rep = self.rep, sequence, error = %e, "moq: group not created");
                return;
            }
        };
        stats.groups.fetch_add(1, Ordering::Relaxed);
        let mut reader = obj.reader();
        let mut tracker = FragmentTracker::default();
        // Pieces of the fragment being received (slices of stored chunks) and its start offset.
        let mut pending: Vec<Bytes> = Vec::new();
        let mut start = 0u64;
        let mut ends = Vec::new();
        loop {
            let chunk = match reader.next_chunk().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    // A broken upload: the group ends in an error, never short and clean.
                    debug!(stream = self.stream, rep = self.rep, sequence, error = %e, "moq: segment aborted");
                    let _ = group.abort(moq_net::Error::Cancel);
                    return;
                }
                None => break,
            };
            let chunk_start = tracker.position();
            tracker.feed(&chunk.data, |f| ends.push((f.end, f.moof.and_then(|m| m.decode_time))));
            let mut taken = 0usize;
            for (end, decode_time) in ends.drain(..) {
                let upto = (end - chunk_start) as usize;
                pending.push(chunk.data.slice(taken..upto));
                taken = upto;
                let frame = concat(std::mem::take(&mut pending));
                let size = frame.len() as u64;
                let ts = Timestamp::from_scale(decode_time.unwrap_or(0), self.timescale).unwrap_or(Timestamp::ZERO);
                if let Err(e) = group.write_frame(ts, frame) {
                    debug!(stream = self.stream, rep = self.rep, sequence, error = %e, "moq: frame not written");
                    return;
                }
                self.publisher.delay.observe(chunk.arrived.elapsed());
                stats.frames.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(size, Ordering::Relaxed);
                start = end;
            }
            if taken < chunk.data.len() {
                pending.push(chunk.data.slice(taken..));
            }
        }
        let trailing = tracker.position() - start;
        if trailing > 0 {
            debug!(
                stream = self.stream,
                rep = self.rep,
                sequence,
                trailing,
                "moq: bytes after the last fragment not published"
            );
        }
        let _ = group.finish();
    }
}

/// One buffer of `pieces` (the piece itself when there is one: no copy).
fn concat(mut pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() == 1 {
        return pieces.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in pieces {
        out.extend_from_slice(&p);
    }
    out.freeze()
}
