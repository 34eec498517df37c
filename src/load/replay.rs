//! `h3live load replay`: push a recorded capture into an origin at the pace it
//! was recorded, looping for as long as asked, so benchmarks run without an
//! encoder eating the CPU they measure.
//!
//! Looping: the loop is the first N media segments that every representation
//! recorded completely; one loop lasts N segment durations. In loop `k` the
//! segment numbers are shifted by `k·N` (file names keep their zero padding)
//! and each fragment's `tfdt` by `k·N` segment durations in its track's
//! timescale, so the stream continues as if it had never stopped. Init
//! segments are pushed once; manifests are re-stamped (`availabilityStartTime`
//! moved to the replay's clock, `publishTime` to now); the final static
//! manifest and the exit-time DELETEs are dropped.
//!
//! `prft` re-stamping, so the viewers' latency measure stays valid:
//! - [`PrftMode::Push`] (default): each fragment's `prft` becomes the wall
//!   time at which the replay sends the fragment's last byte. Viewer latency
//!   is then what the origin and the transport add (plus scheduling noise).
//! - [`PrftMode::Shift`]: every `prft` moves by the same offset as the push
//!   times, keeping the encoder's own delay (~60 ms for ffmpeg) inside the
//!   measure, as a player would see it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::capture::{Capture, Request};
use super::cmaf;
use crate::client::{Client, Connector};
use crate::mpd::{self, Manifest};
use crate::store::name::{renumber, sequence_number, Kind, Numbered};
use crate::transport::Transport;

/// How `prft` times are re-stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrftMode {
    /// The wall time at which the fragment's last byte is pushed.
    Push,
    /// The recorded time moved by the replay's offset (keeps encoder delay).
    Shift,
}

/// One request as it will be sent.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Connection it goes on (ffmpeg keeps one per track and one for manifests).
    pub lane: String,
    /// HTTP method.
    pub method: http::Method,
    /// File name (relative to the stream).
    pub file: String,
    /// Start, relative to the replay's time zero.
    pub at: Duration,
    /// Body pieces with their send times.
    pub chunks: Vec<(Duration, Bytes)>,
    /// When the body ends.
    pub end: Duration,
}

/// A capture prepared for looping.
pub struct Plan {
    /// The recording.
    capture: Capture,
    /// Indices of the requests replayed in every loop (init ones only in loop 0).
    included: Vec<usize>,
    /// Media segments per loop (N).
    pub loop_segments: u64,
    /// Segment duration (from the manifest).
    pub segment: Duration,
    /// Media timescale per track ID (from the init segments).
    timescales: HashMap<u32, u32>,
    /// Index of the last dynamic manifest request.
    manifest: usize,
}

impl Plan {
    /// Prepare `capture`.
    pub fn new(capture: Capture) -> Result<Plan> {
        let reqs = &capture.requests;
        let is_put = |r: &Request| r.method != "DELETE";
        let dynamic = |r: &Request| {
            let s = String::from_utf8_lossy(&r.body);
            !s.contains("type=\"static\"") && Manifest::parse(&s).is_ok()
        };
        let manifest = (0..reqs.len())
            .rev()
            .find(|&i| {
                is_put(&reqs[i])
                    && Kind::of(&reqs[i].file) == Kind::Manifest
                    && reqs[i].file.ends_with(".mpd")
                    && dynamic(&reqs[i])
            })
            .context("the capture has no complete dynamic MPD")?;
        let m = Manifest::parse(&String::from_utf8_lossy(&reqs[manifest].body))?;
        let segment = m.tracks[0].duration;
        let mut timescales = HashMap::new();
        for r in reqs.iter().filter(|r| is_put(r) && Kind::of(&r.file) == Kind::Init && r.end.is_some()) {
            timescales.extend(cmaf::track_timescales(&r.body));
        }
        // N: the largest n such that every representation has segments 1..=n complete.
        let mut complete: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for t in &m.tracks {
            complete.insert(t.media_name(0), Vec::new());
        }
        for r in reqs.iter().filter(|r| is_put(r) && r.end.is_some() && Kind::of(&r.file) == Kind::Media) {
            if let Some(v) = complete.get_mut(&renumber(&r.file, 0)) {
                v.push(sequence_number(&r.file).unwrap_or(0));
            }
        }
        let n = complete.values().map(|v| (1..).take_while(|i| v.contains(i)).count() as u64).min().unwrap_or(0);
        if n == 0 {
            bail!("the capture has no complete media segment for every representation");
        }
        let loop_end = reqs
            .iter()
            .filter(|r| Kind::of(&r.file) == Kind::Media && r.method != "DELETE" && sequence_number(&r.file) == Some(n))
            .filter_map(|r| r.end)
            .max()
            .unwrap_or_default();
        let included = (0..reqs.len())
            .filter(|&i| {
                let r = &reqs[i];
                let seq = sequence_number(&r.file).unwrap_or(0);
                match (r.method.as_str(), Kind::of(&r.file)) {
                    ("DELETE", _) => r.at <= loop_end && (1..=n).contains(&seq),
                    (_, Kind::Init) => r.end.is_some(),
                    (_, Kind::Manifest) => r.end.is_some() && r.at <= loop_end && dynamic(r),
                    (_, Kind::Media) => r.end.is_some() && (1..=n).contains(&seq),
                }
            })
            .collect();
        Ok(Plan { capture, included, loop_segments: n, segment, timescales, manifest })
    }

    /// Length of one loop.
    pub fn period(&self) -> Duration {
        self.segment * self.loop_segments as u32
    }

    /// The requests of loop `k`, in start order. `wall_zero` is the wall
    /// time of the replay's time zero (capture t = 0).
    pub fn render_loop(&self, k: u64, wall_zero: SystemTime, prft: PrftMode) -> Vec<Rendered> {
        self.included
            .iter()
            .filter(|&&i| k == 0 || Kind::of(&self.capture.requests[i].file) != Kind::Init)
            .map(|&i| self.render(i, k, wall_zero, prft))
            .collect()
    }

    fn render(&self, i: usize, k: u64, wall_zero: SystemTime, prft: PrftMode) -> Rendered {
        let r = &self.capture.requests[i];
        let shift = self.period() * k as u32;
        let delta = wall_zero.duration_since(self.capture.wall_start).unwrap_or_default();
        let kind = Kind::of(&r.file);
        let method = http::Method::from_bytes(r.method.as_bytes()).unwrap_or(http::Method::PUT);
        let file = match (kind, Numbered::parse(&r.file)) {
            (Kind::Media, Some(n)) => n.with_number(n.number + k * self.loop_segments),
            _ => r.file.clone(),
        };
        let lane = if method == http::Method::DELETE {
            "delete".to_string()
        } else {
            match kind {
                Kind::Manifest => "manifest".to_string(),
                Kind::Init => "init".to_string(),
                Kind::Media => renumber(&r.file, 0),
            }
        };
        let body: Vec<u8> = match kind {
            Kind::Media if method != http::Method::DELETE => {
                let mut b = r.body.to_vec();
                for f in cmaf::fragments(&b) {
                    if let Some(at) = f.prft_ntp {
                        let t = match prft {
                            PrftMode::Shift => cmaf::read_ntp(&b, at).map(|t| t + delta + shift),
                            PrftMode::Push => {
                                r.chunks.iter().find(|(_, end)| *end >= f.end).map(|(t, _)| wall_zero + *t + shift)
                            }
                        };
                        if let Some(t) = t {
                            cmaf::write_ntp(&mut b, at, t);
                        }
                    }
                    for (at, width, track) in f.tfdt {
                        let scale = self.timescales.get(&track).copied().unwrap_or(0) as f64;
                        let ticks = (self.period().as_secs_f64() * scale).round() as u64 * k;
                        cmaf::shift_tfdt(&mut b, at, width, ticks);
                    }
                }
                b
            }
            Kind::Manifest => {
                let xml = String::from_utf8_lossy(&r.body);
                let moved = |v: &str, by: Duration| {
                    humantime::parse_rfc3339_weak(v).ok().map(|t| humantime::format_rfc3339_millis(t + by).to_string())
                };
                let xml = mpd::rewrite_attr(&xml, "availabilityStartTime", |v| moved(v, delta));
                mpd::rewrite_attr(&xml, "publishTime", |v| moved(v, delta + shift)).into_bytes()
            }
            _ => r.body.to_vec(),
        };
        let body = Bytes::from(body);
        let mut chunks = Vec::with_capacity(r.chunks.len());
        let mut from = 0;
        for &(t, end) in &r.chunks {
            if kind == Kind::Manifest {
                continue; // sent whole below: its length changed
            }
            chunks.push((t + shift, body.slice(from..end.min(body.len()))));
            from = end;
        }
        let end = r.end.unwrap_or(r.at) + shift;
        if kind == Kind::Manifest {
            chunks.push((r.chunks.last().map_or(r.at, |c| c.0) + shift, body));
        }
        Rendered { lane, method, file, at: r.at + shift, chunks, end }
    }

    /// The last dynamic manifest, re-stamped for `wall_zero`, and the init
    /// segments: what a static copy of the stream needs besides its media.
    pub fn static_files(&self, wall_zero: SystemTime) -> Vec<(String, Bytes)> {
        let mut out = vec![];
        let m = self.render(self.manifest, 0, wall_zero, PrftMode::Push);
        out.push((m.file, m.chunks.into_iter().next().map(|c| c.1).unwrap_or_default()));
        for &i in &self.included {
            let r = &self.capture.requests[i];
            if Kind::of(&r.file) == Kind::Init && r.method != "DELETE" {
                out.push((r.file.clone(), r.body.clone()));
            }
        }
        out
    }

    /// Media segment `number` (from 1) as a complete file, as it would be
    /// pushed with time zero at `wall_zero`; one per representation.
    pub fn static_segment(&self, number: u64, wall_zero: SystemTime) -> Vec<(String, Bytes)> {
        let n = self.loop_segments;
        let (k, base) = ((number - 1) / n, (number - 1) % n + 1);
        self.included
            .iter()
            .filter(|&&i| {
                let r = &self.capture.requests[i];
                r.method != "DELETE" && Kind::of(&r.file) == Kind::Media && sequence_number(&r.file) == Some(base)
            })
            .map(|&i| {
                let r = self.render(i, k, wall_zero, PrftMode::Push);
                let mut body = Vec::new();
                for (_, c) in &r.chunks {
                    body.extend_from_slice(c);
                }
                (r.file, Bytes::from(body))
            })
            .collect()
    }
}

/// Counters of a running replay.
#[derive(Debug, Default)]
pub struct ReplayStats {
    /// Requests completed with a 2xx status.
    pub requests: AtomicU64,
    /// Body bytes pushed.
    pub bytes: AtomicU64,
    /// Failed requests (non-2xx except DELETE 404, connection errors).
    pub errors: AtomicU64,
}

/// Push `plan` into the origin's cleartext ingest at `ingest` under
/// `/live/{stream}/` until `stop` is cancelled or `duration` elapsed.
pub async fn run(
    plan: Arc<Plan>,
    ingest: SocketAddr,
    stream: &str,
    prft: PrftMode,
    duration: Option<Duration>,
    stop: CancellationToken,
    stats: Arc<ReplayStats>,
) -> Result<()> {
    let connector = Connector::new(Transport::H1Clear, ingest, &ingest.ip().to_string(), &[])?;
    let wall_zero = SystemTime::now();
    let zero = Instant::now();
    info!(%ingest, stream, segments_per_loop = plan.loop_segments, loop_s = plan.period().as_secs_f64(), "replaying");
    let mut lanes: HashMap<String, mpsc::Sender<Rendered>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let base = format!("/live/{stream}/");
    let deadline = duration.map(|d| tokio::time::Instant::from_std(zero + d));
    let schedule = async {
        for k in 0.. {
            for item in plan.render_loop(k, wall_zero, prft) {
                let tx = lanes.entry(item.lane.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(4);
                    tasks.spawn(lane(connector.clone(), rx, base.clone(), zero, stats.clone(), stop.clone()));
                    tx
                });
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = schedule => {}
        _ = stop.cancelled() => {}
        _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
    }
    stop.cancel();
    drop(lanes);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One ingest connection: its requests strictly in order, each at its time.
async fn lane(
    connector: Connector,
    mut rx: mpsc::Receiver<Rendered>,
    base: String,
    zero: Instant,
    stats: Arc<ReplayStats>,
    stop: CancellationToken,
) {
    let mut client: Option<Client> = None;
    loop {
        let item = tokio::select! {
            i = rx.recv() => match i { Some(i) => i, None => return },
            _ = stop.cancelled() => return,
        };
        let at = tokio::time::Instant::from_std(zero + item.at);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.cancelled() => return,
        }
        if client.is_none() {
            match connector.connect().await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %format!("{e:#}"), "replay: cannot connect to the ingest");
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let result = tokio::select! {
            r = push(c, &base, &item, zero, &stats) => r,
            _ = stop.cancelled() => return,
        };
        match result {
            Ok(status)
                if status.is_success()
                    || (item.method == http::Method::DELETE && status == http::StatusCode::NOT_FOUND) =>
            {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                debug!(file = item.file, %status, "pushed");
            }
            Ok(status) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(file = item.file, %status, "replay: ingest refused");
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(file = item.file, error = %format!("{e:#}"), "replay: push failed");
                client = None;
            }
        }
    }
}

/// Send one request, feeding its body pieces at their times.
async fn push(
    client: &mut Client,
    base: &str,
    item: &Rendered,
    zero: Instant,
    stats: &ReplayStats,
) -> Result<http::StatusCode> {
    let (tx, rx) = mpsc::channel(16);
    let feed = async move {
        for (t, b) in &item.chunks {
            tokio::time::sleep_until(tokio::time::Instant::from_std(zero + *t)).await;
            stats.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            if tx.send(b.clone()).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(zero + item.end)).await;
    };
    let path = format!("{base}{}", item.file);
    let (resp, ()) = tokio::join!(client.request_streaming(item.method.clone(), &path, rx), feed);
    let mut resp = resp?;
    let _ = resp.bytes().await;
    Ok(resp.status)
}

/// Write a static copy of the looped stream into `dir` (for a plain file
/// server): manifest and init segments, and media segments 1..=`segments`,
/// with time zero at `wall_zero`.
pub fn write_static(plan: &Plan, dir: &Path, segments: u64, wall_zero: SystemTime) -> Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = 0;
    let mut write = |name: &str, data: &[u8]| -> Result<()> {
        bytes += data.len() as u64;
        std::fs::write(dir.join(name), data).with_context(|| format!("writing {}", dir.join(name).display()))
    };
    for (name, data) in plan.static_files(wall_zero) {
        write(&name, &data)?;
    }
    for n in 1..=segments {
        for (name, data) in plan.static_segment(n, wall_zero) {
            write(&name, &data)?;
        }
    }
    Ok(bytes)
}

/// Load and prepare a capture directory.
pub fn load_plan(dir: &Path) -> Result<Arc<Plan>> {
    Ok(Arc::new(Plan::new(Capture::load(dir)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::capture::{synthesize, SynthOptions};

    #[test]
    fn loops_renumber_and_restamp() {
        let dir = tempfile::tempdir().unwrap();
        synthesize(dir.path(), &SynthOptions { duration: Duration::from_secs(6), ..Default::default() }).unwrap();
        let plan = load_plan(dir.path()).unwrap();
        assert_eq!(plan.loop_segments, 3);
        assert_eq!(plan.period(), Duration::from_secs(6));
        // Replayed 100 s after it was captured: every time moves.
        let zero = SystemTime::now() + Duration::from_secs(100);
        let l1 = plan.render_loop(1, zero, PrftMode::Push);
        assert!(l1.iter().all(|r| !r.file.starts_with("init")));
        let seg = l1.iter().find(|r| r.file == "chunk-stream0-00004.m4s").unwrap();
        assert_eq!(seg.at, Duration::from_secs(6));
        let body: Vec<u8> = seg.chunks.iter().flat_map(|c| c.1.to_vec()).collect();
        let frags = cmaf::fragments(&body);
        // The last fragment's prft is the time its last chunk is sent.
        let last = cmaf::read_ntp(&body, frags.last().unwrap().prft_ntp.unwrap()).unwrap();
        let want = zero + seg.chunks.last().unwrap().0;
        let diff = last.duration_since(want).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(1), "{diff:?}");
        // tfdt continues: segment 4 starts at 6 s in the 15360 timescale.
        let (at, width, _) = frags[0].tfdt[0];
        assert_eq!(width, 8);
        assert_eq!(u64::from_be_bytes(body[at..at + 8].try_into().unwrap()), 6 * 15360);
        let m = l1.iter().find(|r| r.file == "manifest.mpd").unwrap();
        let xml = String::from_utf8(m.chunks[0].1.to_vec()).unwrap();
        let parsed = Manifest::parse(&xml).unwrap();
        let ast = parsed.availability_start.unwrap();
        let diff = ast.duration_since(zero).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(2), "{diff:?}");
        let files = plan.static_segment(5, zero);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "chunk-stream0-00005.m4s");
    }
}
