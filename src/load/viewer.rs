//! One simulated viewer: reads the manifest like a low-latency DASH player,
//! fetches each representation's init segment once, then follows the live
//! edge segment by segment, reading each media segment while it is written.
//!
//! Connections: over HTTP/2 and HTTP/3 a viewer's representations share one
//! connection (one stream each); HTTP/1.1 carries one request at a time, so
//! each representation gets its own connection, as a browser would open.
//!
//! Segment and init URLs carry `?run=<availabilityStartTime in ms>` as the
//! player page's do (edge caches key on it).
//!
//! The next segment is requested as soon as the current one ends: the
//! origin holds a request for a segment whose upload has not started yet.
//! The segment a viewer joins on is delivered partly from the origin's
//! backlog, so its fragments are not counted in the latency measure.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use http::StatusCode;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::cmaf::FragmentTracker;
use super::stats::Totals;
use crate::client::{Client, Connector};
use crate::mpd::{Manifest, Representation, Track};

/// Consecutive failed segment requests after which a viewer starts a new
/// session (reconnect, re-read the manifest).
const MAX_MISSES: u32 = 3;

/// When a viewer asks for the next segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pace {
    /// As soon as the previous one ended (low-latency player; the origin holds the request).
    Live,
    /// When the segment is complete per the manifest's timeline (a plain
    /// player, or a static file server that cannot stream a growing file).
    Segment,
}

/// Which representations a viewer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tracks {
    /// Every representation in the manifest.
    All,
    /// The first video representation.
    Video,
    /// The first audio representation.
    Audio,
}

/// What every viewer shares, HTTP and MoQ alike: what to follow, when a
/// fragment is late, the counters and the stop signal.
pub struct Viewers {
    /// Representations to follow.
    pub tracks: Tracks,
    /// ABR ladder: the one video representation to follow (else every one `tracks` names).
    pub representation: Option<Representation>,
    /// A segment (MoQ: a frame) ending later than this after the previous one
    /// (beyond its duration) counts as a stall.
    pub stall_margin: Duration,
    /// Connect and read the manifest (MoQ: the catalog) once, then hold the
    /// connection idle.
    pub idle: bool,
    /// Give up waiting for the stream (manifest 404, no broadcast) after this long.
    pub wait_for_stream: Duration,
    /// Counters.
    pub totals: Arc<Totals>,
    /// Ends every viewer.
    pub stop: CancellationToken,
}

/// What every HTTP viewer of one connector shares.
pub struct Shared {
    /// Opens connections.
    pub connector: Connector,
    /// Path of the manifest, e.g. `/live/test/manifest.mpd`.
    pub manifest_path: String,
    /// Request pacing.
    pub pace: Pace,
    /// What every viewer shares.
    pub viewers: Arc<Viewers>,
}

impl Shared {
    fn dir(&self) -> &str {
        self.manifest_path.rsplit_once('/').map_or("", |(d, _)| d)
    }
}

/// Run viewer `id` until `shared.viewers.stop`: reconnect after errors (each one
/// counted) with a one-second pause.
pub async fn run(shared: Arc<Shared>, id: usize) {
    reconnecting(&shared.viewers.totals, &shared.viewers.stop, id, || session(&shared, id)).await
}

/// Run sessions of viewer `id` one after another until `stop`: after one
/// ends (its error counted and, the first three times, logged), the next
/// starts a second later. Shared by the HTTP and MoQ viewers.
pub async fn reconnecting<F, Fut>(totals: &Totals, stop: &CancellationToken, id: usize, mut session: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let stats = &totals.viewers[id];
    loop {
        let result = tokio::select! {
            r = session() => r,
            _ = stop.cancelled() => return,
        };
        stats.connected.store(0, Ordering::Relaxed);
        if let Err(e) = result {
            let kind: String = e.root_cause().to_string().chars().take(80).collect();
            if totals.error(id, kind) <= 3 {
                warn!(viewer = id, error = %format!("{e:#}"), "viewer error");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// GET a whole body; counts its bytes.
async fn get_all(shared: &Shared, id: usize, client: &mut Client, path: &str) -> Result<(StatusCode, bytes::Bytes)> {
    let mut r = client.get(path).await.with_context(|| format!("GET {path}"))?;
    let body = r.bytes().await.with_context(|| format!("GET {path} body"))?;
    shared.viewers.totals.viewers[id].bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok((r.status, body))
}

/// GET `path` until it exists (the stream may not have started yet).
async fn get_when_there(shared: &Shared, id: usize, client: &mut Client, path: &str) -> Result<bytes::Bytes> {
    let started = Instant::now();
    loop {
        let (status, body) = get_all(shared, id, client, path).await?;
        match status {
            StatusCode::OK => return Ok(body),
            StatusCode::NOT_FOUND if started.elapsed() < shared.viewers.wait_for_stream => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            s => bail!("GET {path}: {s}"),
        }
    }
}

async fn session(shared: &Shared, id: usize) -> Result<()> {
    let stats = &shared.viewers.totals.viewers[id];
    let mut client = shared.connector.connect().await.context("connect")?;
    stats.connected.store(1, Ordering::Relaxed);
    let xml = get_when_there(shared, id, &mut client, &shared.manifest_path).await?;
    let manifest = Manifest::parse(&String::from_utf8_lossy(&xml)).context("manifest")?;
    if shared.viewers.idle {
        std::future::pending::<()>().await;
    }
    let pick = |kind: &str| manifest.tracks.iter().find(|t| t.content == kind).cloned().into_iter().collect::<Vec<_>>();
    let mut tracks: Vec<Track> = match shared.viewers.tracks {
        Tracks::All => manifest.tracks.clone(),
        Tracks::Video => pick("video"),
        Tracks::Audio => pick("audio"),
    };
    if let Some(choice) = &shared.viewers.representation {
        // One rendition of the ladder instead of every (or the first) video representation.
        let video = manifest.pick_video(choice)?.clone();
        tracks.retain(|t| t.content != "video");
        if shared.viewers.tracks != Tracks::Audio {
            tracks.insert(0, video);
        }
    }
    if tracks.is_empty() {
        bail!("no {:?} representation in the manifest", shared.viewers.tracks);
    }
    let mut clients = vec![client];
    for _ in 1..tracks.len() {
        let c = match clients[0].share() {
            Some(c) => c,
            None => shared.connector.connect().await.context("connect")?,
        };
        clients.push(c);
    }
    let follows = tracks.iter().zip(clients).map(|(t, c)| follow(shared, id, &manifest, t, c));
    futures_util::future::try_join_all(follows).await?;
    Ok(())
}

/// Follow one representation from the live edge.
async fn follow(shared: &Shared, id: usize, manifest: &Manifest, track: &Track, mut client: Client) -> Result<()> {
    let stats = &shared.viewers.totals.viewers[id];
    let dir = shared.dir();
    // The player page's encoder-run marker (web/measure.js): edge caches key
    // on it, and the origin names prefetch paths with it.
    let run = manifest
        .availability_start
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(String::new(), |d| format!("?run={}", d.as_millis()));
    get_when_there(shared, id, &mut client, &format!("{dir}/{}{run}", track.init_name())).await?;
    let live_edge = || manifest.live_number(track, SystemTime::now()).unwrap_or(track.start_number);
    let mut number = live_edge();
    // The segment joined on comes partly from the backlog: not measured.
    let mut measure = false;
    let mut previous_end: Option<Instant> = None;
    let mut misses = 0u32;
    loop {
        if shared.pace == Pace::Segment {
            if let Some(end) = manifest.segment_end(track, number) {
                if let Ok(wait) = end.duration_since(SystemTime::now()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        let path = format!("{dir}/{}{run}", track.media_name(number));
        let mut resp = client.get(&path).await.with_context(|| format!("GET {path}"))?;
        if resp.status != StatusCode::OK {
            let _ = resp.bytes().await;
            // A restarted encoder starts a new timeline: numbers from 1, a new
            // availabilityStartTime. Then the live edge of this manifest never
            // comes: start over with the new one.
            if let Ok((StatusCode::OK, xml)) = get_all(shared, id, &mut client, &shared.manifest_path).await {
                let now = Manifest::parse(&String::from_utf8_lossy(&xml)).ok().and_then(|m| m.availability_start);
                if now.is_some() && now != manifest.availability_start {
                    bail!("new timeline (encoder restarted): joining it");
                }
            }
            misses += 1;
            if misses >= MAX_MISSES {
                // The stream restarted (new encoder run: numbers from 1, new
                // availabilityStartTime) or moved on: a new session re-reads
                // the manifest, as a player does.
                bail!("GET {path}: {} {MAX_MISSES} times in a row: re-reading the manifest", resp.status);
            }
            let edge = live_edge();
            shared.viewers.totals.error(id, format!("GET media: {}", resp.status));
            warn!(viewer = id, path, status = %resp.status, live_edge = edge, "segment missing: re-joining at the live edge");
            number = edge.max(number);
            measure = false;
            previous_end = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        misses = 0;
        let mut tracker = FragmentTracker::default();
        let mut first = true;
        while let Some(piece) = resp.chunk().await {
            let piece = piece.with_context(|| format!("GET {path} body"))?;
            let now = SystemTime::now();
            if std::mem::take(&mut first) {
                shared.viewers.totals.first_byte(&track.media_name(number), now);
            }
            stats.bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
            tracker.feed(&piece, |f| {
                stats.fragments.fetch_add(1, Ordering::Relaxed);
                if let (true, Some(prft)) = (measure, f.prft) {
                    shared.viewers.totals.latency(now.duration_since(prft).unwrap_or_default());
                }
            });
        }
        let end = Instant::now();
        stats.segments.fetch_add(1, Ordering::Relaxed);
        if let Some(prev) = previous_end {
            if end.duration_since(prev) > track.duration + shared.viewers.stall_margin {
                stats.stalls.fetch_add(1, Ordering::Relaxed);
            }
        }
        previous_end = Some(end);
        measure = true;
        number += 1;
    }
}
