//! Origin-assisted prefetch, the edge's half (`h3live front`): the front asks
//! the origin for prefetch paths (`CDN-Origin-Assist-Prefetch-Enabled: 1` on
//! every upstream request) and, when a response names an object, sends ONE
//! background request for it through the cache, so the cache starts its
//! origin fetch before any player asks (held at the origin while the object
//! does not exist yet); players' requests then join that fetch.
//!
//! Rules:
//! - The prefetch is a HEAD marked `CDN-Origin-Assist-Prefetch-Request: 1`:
//!   the cache fetches the whole object from the origin (Varnish turns a
//!   HEAD miss into a GET) while the front reads no body.
//! - A prefetched response never triggers another prefetch: the front looks
//!   at the paths of responses to viewers only, never at its own prefetches'.
//!   The prefetch still asks for paths, so the cached object carries the
//!   next path and the next viewer response continues the chain, one object
//!   ahead of the players, never further.
//! - Each resolved URL is prefetched at most once per [`RECENT`] (every
//!   viewer of a segment gets the same path); at most [`MAX_IN_FLIGHT`] run
//!   at once, more are skipped; none is retried. Each is logged at debug and
//!   counted (`h3live_prefetch_total{event}`: sent, ok, failed, busy,
//!   duplicate): a prefetch that fails or is not used costs players nothing.
//! - Paths are resolved against the viewer's request path as URL references
//!   (RFC 3986 5.2: an absolute path replaces the path, a relative one
//!   replaces the last segment; the reference's own query is used, the
//!   request's is not carried over). A header may carry several paths
//!   separated by commas, and may be repeated (RFC 9110 5.3). Anything with
//!   a scheme or authority is ignored: prefetches stay on this edge's cache.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Uri};
use tokio::sync::Semaphore;
use tracing::debug;

use super::prefetch::{ENABLED, PATH, REQUEST};
use super::upstream::Upstream;
use crate::metrics::Metrics;

/// Prefetches running at once; more are skipped (counted as `busy`).
pub const MAX_IN_FLIGHT: usize = 32;
/// A URL prefetched once is not prefetched again for this long.
pub const RECENT: Duration = Duration::from_secs(30);
/// URLs remembered at most (older ones are forgotten first).
const MAX_RECENT: usize = 4096;

/// The front's prefetcher: one per front, shared by every listener.
pub struct Prefetcher {
    /// The cache to prefetch through.
    upstream: Arc<Upstream>,
    /// Bounds the prefetches in flight.
    slots: Arc<Semaphore>,
    /// URLs prefetched recently, with when.
    recent: Mutex<HashMap<String, Instant>>,
    /// Where events are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher").field("upstream", &self.upstream).finish()
    }
}

/// Headers a viewer may not send upstream: the front speaks the scheme itself.
pub fn scrub_request(h: &mut HeaderMap) {
    h.remove(ENABLED);
    h.remove(REQUEST);
}

impl Prefetcher {
    /// A prefetcher sending through `upstream`.
    pub fn new(upstream: Arc<Upstream>, metrics: Arc<Metrics>) -> Arc<Prefetcher> {
        Arc::new(Prefetcher {
            upstream,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            recent: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Mark a viewer's upstream request as coming from a prefetching edge.
    pub fn enable(h: &mut HeaderMap) {
        h.insert(ENABLED, HeaderValue::from_static("1"));
    }

    /// A response to a viewer's request for `base` arrived: prefetch what
    /// it names (in the background). The path headers are removed from
    /// `response`: they are for the edge, not for players.
    pub fn on_response(self: &Arc<Self>, base: &Uri, response: &mut HeaderMap) {
        let named = paths(response);
        response.remove(PATH);
        for url in named.iter().filter_map(|p| resolve(base.path(), p)) {
            if !self.first_time(&url) {
                self.metrics.prefetch("duplicate");
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.metrics.prefetch("busy");
                debug!(url, "prefetch skipped: too many in flight");
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.fetch(&url).await;
                drop(permit);
            });
        }
    }

    /// Record `url`; false if it was prefetched within [`RECENT`].
    fn first_time(&self, url: &str) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.get(url).is_some_and(|t| now.duration_since(*t) < RECENT) {
            return false;
        }
        if recent.len() >= MAX_RECENT {
            recent.retain(|_, t| now.duration_since(*t) < RECENT);
            if recent.len() >= MAX_RECENT {
                recent.clear();
            }
        }
        recent.insert(url.to_string(), now);
        true
    }

    /// One prefetch: a marked HEAD through the cache.
    async fn fetch(&self, url: &str) {
        let Ok(uri) = url.parse::<Uri>() else {
            return;
        };
        let mut h = HeaderMap::new();
        h.insert(REQUEST, HeaderValue::from_static("1"));
        Prefetcher::enable(&mut h);
        self.metrics.prefetch("sent");
        let started = Instant::now();
        match self.upstream.forward(&Method::HEAD, &uri, &h, IpAddr::V4(Ipv4Addr::LOCALHOST), "http").await {
            Ok((parts, _body)) if parts.status.is_success() => {
                self.metrics.prefetch("ok");
                debug!(url, status = parts.status.as_u16(), after = ?started.elapsed(), "prefetched");
            }
            Ok((parts, _body)) => {
                self.metrics.prefetch("failed");
                debug!(url, status = parts.status.as_u16(), after = ?started.elapsed(), "prefetch answered with an error");
            }
            Err(e) => {
                self.metrics.prefetch("failed");
                debug!(url, error = %e, "prefetch failed");
            }
        }
    }
}

/// Every path named in `h`: repeated headers and comma-separated lists.
pub fn paths(h: &HeaderMap) -> Vec<String> {
    h.get_all(PATH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// `reference` (an absolute or relative path, with or without a query)
/// resolved against the request path `base`, as RFC 3986 5.2 does for a
/// reference without scheme and authority. `None` for anything else (a
/// scheme, an authority, a fragment-only or empty reference).
pub fn resolve(base: &str, reference: &str) -> Option<String> {
    let reference = reference.split('#').next()?;
    if reference.is_empty() || reference.starts_with("//") || reference.starts_with('?') {
        return None;
    }
    let (path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    // A colon before the first slash is a scheme (`http:`, `data:`).
    if path.split('/').next().is_some_and(|first| first.contains(':')) {
        return None;
    }
    let merged = if path.starts_with('/') {
        path.to_string()
    } else {
        let dir = base.rfind('/').map_or("/", |i| &base[..=i]);
        format!("{dir}{path}")
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = merged.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i == segments.len() - 1;
        match *seg {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut url = format!("/{}", out.join("/"));
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url.parse::<Uri>().ok().map(|_| url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_like_rfc_3986() {
        let base = "/live/test/chunk-stream0-00005.m4s";
        for (reference, expected) in [
            ("chunk-stream0-00006.m4s", Some("/live/test/chunk-stream0-00006.m4s")),
            ("chunk-stream0-00006.m4s?run=17", Some("/live/test/chunk-stream0-00006.m4s?run=17")),
            ("./a.m4s", Some("/live/test/a.m4s")),
            ("../other/a.m4s", Some("/live/other/a.m4s")),
            ("../../../../a.m4s", Some("/a.m4s")),
            ("/hls/live/seg2.ts", Some("/hls/live/seg2.ts")),
            ("a.m4s#frag", Some("/live/test/a.m4s")),
            ("https://elsewhere/a.m4s", None),
            ("//elsewhere/a.m4s", None),
            ("data:x", None),
            ("?run=1", None),
            ("", None),
        ] {
            assert_eq!(resolve(base, reference).as_deref(), expected, "{reference}");
        }
        // The Akamai examples: absolute paths keep only the host of the request.
        assert_eq!(
            resolve("/some/1234/video-100k/pl.m3u8", "/hls/live/1234/video-100k/seg1.ts").as_deref(),
            Some("/hls/live/1234/video-100k/seg1.ts")
        );
    }

    #[test]
    fn paths_from_repeated_headers_and_lists() {
        let mut h = HeaderMap::new();
        h.append(PATH, HeaderValue::from_static("a.m4s"));
        h.append(PATH, HeaderValue::from_static("b.m4s, /c.m4s?run=1 ,"));
        assert_eq!(paths(&h), ["a.m4s", "b.m4s", "/c.m4s?run=1"]);
    }

    #[tokio::test]
    async fn each_url_is_prefetched_once_and_paths_are_not_passed_on() {
        // An upstream that refuses connections: prefetches fail quietly.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let up = Arc::new(Upstream::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1)).unwrap());
        let metrics = Arc::new(Metrics::default());
        let p = Prefetcher::new(up, metrics.clone());
        let base: Uri = "/live/s/chunk-stream0-00001.m4s".parse().unwrap();
        for _ in 0..3 {
            let mut h = HeaderMap::new();
            h.append(PATH, HeaderValue::from_static("chunk-stream0-00002.m4s"));
            p.on_response(&base, &mut h);
            assert!(h.get(PATH).is_none(), "paths are for the edge only");
        }
        assert_eq!(metrics.prefetch_count("duplicate"), 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while metrics.prefetch_count("failed") < 1 {
            assert!(Instant::now() < deadline, "the prefetch did not fail");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.prefetch_count("sent"), 1);
    }
}
