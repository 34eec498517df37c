//! Origin-assisted prefetch, the origin's half: with the CDN's request header
//! `CDN-Origin-Assist-Prefetch-Enabled: 1`, a live response names, in
//! `CDN-Origin-Assist-Prefetch-Path` (one header per path, relative to the
//! request's path), the object a player will ask for next, so the edge can
//! fetch it before any player does. The scheme (header names, relative and
//! absolute paths, the prefetch marker `CDN-Origin-Assist-Prefetch-Request: 1`,
//! no prefetch from a prefetched response) is the one Akamai's Adaptive Media
//! Delivery documents; `docs/edge.md` links it.
//!
//! What is named:
//! - a media segment (whole, or a range: an LL-HLS part is a byte range of
//!   its segment, so the next part is either in the object being served or
//!   at the start of the next segment): the next segment of the same
//!   representation;
//! - an init segment: the live edge of its representation (the newest media
//!   segment of the current encoder run), what a joining player fetches first;
//! - a DASH manifest: the live edge of every representation it lists;
//! - an LL-HLS media playlist: the segment holding the preload-hinted part.
//!
//! Encoder runs: the player page marks segment and init URLs with
//! `?run=<availabilityStartTime in ms>` (a restarted encoder numbers from 1
//! again; the marker keeps edge caches from mixing runs). A named path keeps
//! the request's `run=`; a manifest names paths with its own
//! `availabilityStartTime`. A request whose `run=` is not the current run's
//! (an older run's player) gets no path, and neither does a manifest
//! published before the current run began, so a restart never makes the
//! origin name an old run's object.
//!
//! A prefetch request (marked `CDN-Origin-Assist-Prefetch-Request: 1`) for
//! an object that does not exist yet is held [`PREFETCH_HOLD_FACTOR`] times
//! the usual hold: the edge asks for segment N+1 as segment N starts, one
//! segment duration before N+1 exists.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::mpd::Manifest;
use crate::store::name::Numbered;
use crate::store::{Kind, Object, Store};

/// Request header: the CDN prefetches what the response names.
pub const ENABLED: HeaderName = HeaderName::from_static("cdn-origin-assist-prefetch-enabled");
/// Response header: a path to prefetch (absolute, or relative to the request's path).
pub const PATH: HeaderName = HeaderName::from_static("cdn-origin-assist-prefetch-path");
/// Request header: this request is a prefetch, not a player's.
pub const REQUEST: HeaderName = HeaderName::from_static("cdn-origin-assist-prefetch-request");

/// A prefetch request waits this many times `--hold` for its object.
pub const PREFETCH_HOLD_FACTOR: u32 = 2;

/// True if header `name` is present with the value `1`.
fn flag(h: &HeaderMap, name: &HeaderName) -> bool {
    h.get(name).is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
}

/// The request asks for prefetch paths.
pub fn enabled(h: &HeaderMap) -> bool {
    flag(h, &ENABLED)
}

/// The request is a CDN's prefetch.
pub fn is_prefetch(h: &HeaderMap) -> bool {
    flag(h, &REQUEST)
}

/// The value of `run=` in a query string.
pub fn run_param(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("run=")).filter(|v| !v.is_empty())
}

/// Add one `CDN-Origin-Assist-Prefetch-Path` header per path.
pub fn set_paths(h: &mut HeaderMap, paths: &[String]) {
    for p in paths {
        if let Ok(v) = HeaderValue::from_str(p) {
            h.append(PATH, v);
        }
    }
}

/// `name` with `?run=R` when the request had one.
fn with_run(name: &str, run: Option<&str>) -> String {
    match run {
        Some(r) => format!("{name}?run={r}"),
        None => name.to_string(),
    }
}

/// `availabilityStartTime` of `mpd` in ms since the Unix epoch: the value the
/// player page puts in `run=`.
fn run_of(mpd: &Manifest) -> Option<String> {
    let ms = mpd.availability_start?.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(ms.to_string())
}

/// A manifest of `stream` as the origin serves it.
struct Current {
    /// The parsed document.
    mpd: Manifest,
    /// Its `run=` value.
    run: Option<String>,
}

/// Parse `obj` (a manifest) if it belongs to the current encoder run of
/// `stream`: published at or after the run began.
async fn current_manifest(store: &Store, stream: &str, obj: &Arc<Object>) -> Option<Current> {
    let began = store.run_began(stream).unwrap_or(SystemTime::UNIX_EPOCH);
    if obj.created() < began {
        return None;
    }
    let bytes = crate::hls::read_whole(obj).await?;
    let mpd = Manifest::parse(&String::from_utf8_lossy(&bytes)).ok()?;
    let run = run_of(&mpd);
    Some(Current { mpd, run })
}

/// The current run's manifests of `stream` (normally one, `manifest.mpd`).
async fn current_manifests(store: &Store, stream: &str) -> Vec<Current> {
    let mut out = Vec::new();
    for name in store.names(stream).into_iter().filter(|n| n.ends_with(".mpd")) {
        if let Some(obj) = store.get(stream, &name) {
            out.extend(current_manifest(store, stream, &obj).await);
        }
    }
    out
}

/// True if `run` (a request's `run=`) is the current run's.
async fn run_is_current(store: &Store, stream: &str, run: &str) -> bool {
    current_manifests(store, stream).await.iter().any(|m| m.run.as_deref() == Some(run))
}

/// The live edge of the representation whose media template is `media`.
fn live_edge(store: &Store, stream: &str, track: &crate::mpd::Track) -> Option<String> {
    let first = track.media_name(track.start_number);
    let key = Numbered::parse(&first)?.representation();
    store.newest_media(stream, &key)
}

/// Paths to name in the response to a GET/HEAD of `stream/file` (a live
/// object: segment, init segment or manifest; `obj` is what is served).
pub async fn paths_for(store: &Store, stream: &str, file: &str, query: Option<&str>, obj: &Arc<Object>) -> Vec<String> {
    let run = run_param(query);
    match Kind::of(file) {
        Kind::Manifest if file.ends_with(".mpd") => {
            let Some(m) = current_manifest(store, stream, obj).await else {
                return Vec::new();
            };
            m.mpd
                .tracks
                .iter()
                .filter_map(|t| live_edge(store, stream, t))
                .map(|n| with_run(&n, m.run.as_deref()))
                .collect()
        }
        Kind::Manifest => Vec::new(),
        Kind::Init => {
            let manifests = current_manifests(store, stream).await;
            let Some(m) = manifests.iter().find(|m| run.is_none() || m.run.as_deref() == run) else {
                return Vec::new();
            };
            m.mpd
                .tracks
                .iter()
                .filter(|t| t.init_name() == file)
                .filter_map(|t| live_edge(store, stream, t))
                .map(|n| with_run(&n, run))
                .collect()
        }
        Kind::Media => {
            let Some(n) = Numbered::parse(file) else {
                return Vec::new();
            };
            if let Some(r) = run {
                if !run_is_current(store, stream, r).await {
                    return Vec::new();
                }
            }
            vec![with_run(&n.with_number(n.number + 1), run)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MPD: &str = r#"<?xml version="1.0"?>
<MPD type="dynamic" availabilityStartTime="2026-12-07T10:00:00.250Z">
 <Period><AdaptationSet contentType="video">
  <SegmentTemplate timescale="15360" duration="30720" startNumber="1"
   initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
  <Representation id="stream0" bandwidth="2000000"/></AdaptationSet>
 <AdaptationSet contentType="audio">
  <SegmentTemplate timescale="48000" duration="96000" startNumber="1"
   initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
  <Representation id="stream1" bandwidth="128000"/></AdaptationSet></Period></MPD>"#;
    /// `availabilityStartTime` above in ms.
    const RUN: &str = "1796637600250";

    fn put(st: &Store, name: &str, body: &str) {
        let mut up = st.begin_upload("s", name, None).unwrap();
        up.push(Bytes::from(body.to_string())).unwrap();
        up.finish();
    }

    async fn paths(st: &Store, file: &str, query: Option<&str>) -> Vec<String> {
        let obj = st.get("s", file).unwrap();
        paths_for(st, "s", file, query, &obj).await
    }

    #[test]
    fn request_headers_and_queries() {
        let mut h = HeaderMap::new();
        assert!(!enabled(&h));
        h.insert(ENABLED, HeaderValue::from_static(" 1"));
        assert!(enabled(&h));
        h.insert(ENABLED, HeaderValue::from_static("0"));
        assert!(!enabled(&h));
        h.insert(REQUEST, HeaderValue::from_static("1"));
        assert!(is_prefetch(&h));
        assert_eq!(run_param(Some("x=1&run=42")), Some("42"));
        assert_eq!(run_param(Some("prerun=4")), None);
        assert_eq!(run_param(Some("run=")), None);
        assert_eq!(run_param(None), None);
        let mut h = HeaderMap::new();
        set_paths(&mut h, &["a.m4s".into(), "b.m4s?run=1".into()]);
        let v: Vec<&str> = h.get_all(PATH).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(v, ["a.m4s", "b.m4s?run=1"], "one header per path");
    }

    #[tokio::test]
    async fn dash_segments_init_and_manifest_name_the_next_object() {
        let st = Store::new(Default::default());
        for n in ["init-stream0.m4s", "init-stream1.m4s"] {
            put(&st, n, "init");
        }
        put(&st, "manifest.mpd", MPD);
        for i in 1..=3 {
            put(&st, &format!("chunk-stream0-{i:05}.m4s"), "v");
            put(&st, &format!("chunk-stream1-{i:05}.m4s"), "a");
        }
        let _growing = st.begin_upload("s", "chunk-stream0-00004.m4s", None).unwrap();
        assert_eq!(st.run_began("s").map(|t| t <= st.get("s", "manifest.mpd").unwrap().created()), Some(true));

        assert_eq!(paths(&st, "chunk-stream0-00003.m4s", None).await, ["chunk-stream0-00004.m4s"]);
        assert_eq!(
            paths(&st, "chunk-stream0-00004.m4s", Some(&format!("run={RUN}"))).await,
            [format!("chunk-stream0-00005.m4s?run={RUN}")],
            "the player's run marker is kept"
        );
        assert!(paths(&st, "chunk-stream0-00004.m4s", Some("run=123")).await.is_empty(), "another run's player");
        assert_eq!(paths(&st, "init-stream0.m4s", None).await, ["chunk-stream0-00004.m4s"], "live edge for a joiner");
        assert_eq!(
            paths(&st, "init-stream1.m4s", Some(&format!("run={RUN}"))).await,
            [format!("chunk-stream1-00003.m4s?run={RUN}")]
        );
        assert_eq!(
            paths(&st, "manifest.mpd", None).await,
            [format!("chunk-stream0-00004.m4s?run={RUN}"), format!("chunk-stream1-00003.m4s?run={RUN}")],
            "every representation's live edge, under the manifest's run"
        );
    }

    #[tokio::test]
    async fn an_encoder_restart_never_names_the_old_runs_objects() {
        let st = Store::new(Default::default());
        put(&st, "init-stream0.m4s", "init");
        put(&st, "manifest.mpd", MPD);
        for i in 1..=20 {
            put(&st, &format!("chunk-stream0-{i:05}.m4s"), "v");
        }
        let old_mpd = st.get("s", "manifest.mpd").unwrap();
        // The encoder restarts: its init segment again, then segment 1; the
        // new manifest has not arrived yet.
        put(&st, "init-stream0.m4s", "init");
        put(&st, "chunk-stream0-00001.m4s", "v");
        assert_eq!(st.snapshot()[0].run, 1);
        assert!(paths_for(&st, "s", "manifest.mpd", None, &old_mpd).await.is_empty(), "old run's manifest");
        let q = format!("run={RUN}");
        assert!(paths(&st, "chunk-stream0-00001.m4s", Some(&q)).await.is_empty(), "old run's marker");
        assert!(paths(&st, "init-stream0.m4s", Some(&q)).await.is_empty());
        // The new run's manifest: its own availabilityStartTime.
        put(&st, "manifest.mpd", &MPD.replace("10:00:00.250Z", "10:05:00Z"));
        let new_run = "1796637900000";
        assert_eq!(paths(&st, "manifest.mpd", None).await, [format!("chunk-stream0-00001.m4s?run={new_run}")]);
        assert_eq!(
            paths(&st, "chunk-stream0-00001.m4s", Some(&format!("run={new_run}"))).await,
            [format!("chunk-stream0-00002.m4s?run={new_run}")]
        );
        assert!(paths(&st, "chunk-stream0-00001.m4s", Some(&q)).await.is_empty());
    }
}
