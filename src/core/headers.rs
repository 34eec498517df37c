//! Response header policy: content types, caching and CORS. One place for the
//! rules, whatever the transport.
//!
//! ## Caching (so an ordinary HTTP cache can be an edge tier)
//! - Media and init segments: `public, max-age=<segment_max_age>` both while
//!   growing and when finished, so a cache that coalesces viewers into one
//!   origin request streams the growing response to all of them and keeps it
//!   for the segment's life in the DASH window. Segment names are unique
//!   within an encoder run.
//! - Manifests and playlists: `public, max-age=1` (they change every segment
//!   period or faster, and LL-DASH players refetch them about every second).
//! - 404 and every other error: `no-store`. A cached 404 for a segment that is
//!   about to appear would break the stream at the edge.
//! - An aborted upload never ends as a clean response: HTTP/1.1 readers lose
//!   the connection before the last chunk, h2/h3 readers get a stream reset;
//!   a cache must discard such a response. A request for an already aborted
//!   object gets `502` with `no-store`.
//! - `/time`, `/streams`, `/metrics`, `/healthz`: `no-store`.

use http::header::{self, HeaderMap, HeaderValue};

use crate::store::Kind;

/// Cache policy of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never stored (errors, clocks, status pages).
    NoStore,
    /// Manifests: at most one second.
    Manifest,
    /// Segments: the configured max-age, the same while growing and finished.
    Segment,
    /// Static web files: a short max-age, revalidated afterwards.
    Static,
}

/// Content type by file extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "mpd" => "application/dash+xml",
        "m3u8" => "application/vnd.apple.mpegurl",
        "m4s" | "mp4" | "cmfv" | "m4v" => "video/mp4",
        "cmfa" | "m4a" => "audio/mp4",
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Cache policy of a live object by its kind.
pub fn live_policy(kind: Kind) -> CachePolicy {
    match kind {
        Kind::Manifest => CachePolicy::Manifest,
        Kind::Init | Kind::Media => CachePolicy::Segment,
    }
}

/// Headers every response carries: Date, CORS for reads, nosniff, Server.
pub fn common(headers: &mut HeaderMap) {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    if let Ok(v) = HeaderValue::from_str(&date) {
        headers.insert(header::DATE, v);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("h3live"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "Date, Content-Length, Content-Type, Content-Range, Cache-Control, Age, ETag, Server-Timing",
        ),
    );
    headers.insert("timing-allow-origin", HeaderValue::from_static("*"));
}

/// Set Cache-Control for `policy`.
pub fn cache(headers: &mut HeaderMap, policy: CachePolicy, segment_max_age: u64) {
    let value = match policy {
        CachePolicy::NoStore => HeaderValue::from_static("no-store"),
        CachePolicy::Manifest => HeaderValue::from_static("public, max-age=1"),
        CachePolicy::Static => HeaderValue::from_static("public, max-age=60, must-revalidate"),
        CachePolicy::Segment => HeaderValue::from_str(&format!("public, max-age={segment_max_age}"))
            .unwrap_or_else(|_| HeaderValue::from_static("no-store")),
    };
    headers.insert(header::CACHE_CONTROL, value);
}

/// True if the request's `If-None-Match` matches `etag` (weak comparison, `*` included).
pub fn none_match(req: &HeaderMap, etag: &str) -> bool {
    req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|inm| {
        inm.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("manifest.mpd"), "application/dash+xml");
        assert_eq!(content_type("chunk-stream0-00001.m4s"), "video/mp4");
        assert_eq!(content_type("a.cmfa"), "audio/mp4");
        assert_eq!(content_type("a.M3U8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type("a.m4v"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
