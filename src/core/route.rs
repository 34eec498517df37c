//! Request paths: parsing, percent-decoding and name validation. Every path
//! component that reaches the store or the file system passes through
//! [`valid_name`] after decoding, so `%2F`, `%2e%2e` and friends cannot
//! smuggle a separator or a parent reference.

use percent_encoding::percent_decode_str;

/// Longest accepted name component, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/live/{stream}/{file}`: the live store. `/ldash/{stream}/{file}`
    /// (the ingest and playback paths of the Streamline low-latency DASH
    /// preview, whose launchers push there) is the same route: the same
    /// stream, every method.
    Live {
        /// Stream name.
        stream: String,
        /// File name inside the stream.
        file: String,
    },
    /// `/ldashplay/{stream}/{file}`: the preview's player URL for a stream;
    /// answered with a redirect to the player page playing that stream.
    Play {
        /// Stream name.
        stream: String,
        /// Manifest name inside the stream.
        file: String,
    },
    /// `/time`: UTC time for DASH `UTCTiming` (http-xsdate).
    Time,
    /// `/streams`: JSON listing of the store.
    Streams,
    /// `/metrics`: Prometheus text exposition.
    Metrics,
    /// `/healthz`: liveness.
    Healthz,
    /// `/certificate.sha256`: hex SHA-256 of the MoQ endpoint's certificate
    /// (where MoQ web players look for it).
    CertificateSha256,
    /// Anything else: a file under the web directory, as validated components
    /// (empty for `/`).
    Static(Vec<String>),
}

/// Why a path was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A component is not `[A-Za-z0-9._-]{1,128}` without a leading dot
    /// (after percent-decoding).
    #[error("invalid name {0:?}: use [A-Za-z0-9._-], no leading dot, at most 128 bytes")]
    BadName(String),
    /// `/live/...` (or its aliases) without exactly a stream and a file.
    #[error("live paths are /live/<stream>/<file> (or /ldash/<stream>/<file>)")]
    BadLivePath,
}

/// True for `[A-Za-z0-9._-]{1,128}` not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn decode(component: &str) -> Result<String, PathError> {
    let decoded = percent_decode_str(component).decode_utf8().map_err(|_| PathError::BadName(component.to_string()))?;
    if valid_name(&decoded) {
        Ok(decoded.into_owned())
    } else {
        Err(PathError::BadName(decoded.into_owned()))
    }
}

impl Route {
    /// Parse the path part of a request target (no query).
    pub fn parse(path: &str) -> Result<Route, PathError> {
        let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        match rest {
            "time" => return Ok(Route::Time),
            "streams" => return Ok(Route::Streams),
            "metrics" => return Ok(Route::Metrics),
            "healthz" => return Ok(Route::Healthz),
            "certificate.sha256" => return Ok(Route::CertificateSha256),
            "" => return Ok(Route::Static(Vec::new())),
            _ => {}
        }
        let raw: Vec<&str> = rest.split('/').collect();
        if matches!(raw[0], "live" | "ldash" | "ldashplay") {
            let (stream, file) = match raw.as_slice() {
                [_, stream, file] => (decode(stream)?, decode(file)?),
                _ => return Err(PathError::BadLivePath),
            };
            return Ok(if raw[0] == "ldashplay" { Route::Play { stream, file } } else { Route::Live { stream, file } });
        }
        // A trailing slash names a directory: its index.html is served.
        let mut parts = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            if c.is_empty() && i == raw.len() - 1 {
                parts.push("index.html".to_string());
            } else {
                parts.push(decode(c)?);
            }
        }
        Ok(Route::Static(parts))
    }
}

/// Where `/ldashplay/{stream}/{file}` sends the browser: the player page
/// playing that stream (`file` other than `manifest.mpd` is passed as the
/// manifest to play), with the request's own query appended (`latency=`...).
/// Names are validated, so they need no escaping.
pub fn player_location(stream: &str, file: &str, query: Option<&str>) -> String {
    let mut url = format!("/?stream={stream}");
    if file != "manifest.mpd" {
        url.push_str(&format!("&mpd=/live/{stream}/{file}"));
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('&');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes() {
        assert_eq!(
            Route::parse("/live/test/chunk-stream0-00001.m4s"),
            Ok(Route::Live { stream: "test".into(), file: "chunk-stream0-00001.m4s".into() })
        );
        assert_eq!(
            Route::parse("/ldash/1234/chunk-stream-0-00001.m4s"),
            Ok(Route::Live { stream: "1234".into(), file: "chunk-stream-0-00001.m4s".into() })
        );
        assert_eq!(
            Route::parse("/ldashplay/1234/manifest.mpd"),
            Ok(Route::Play { stream: "1234".into(), file: "manifest.mpd".into() })
        );
        assert_eq!(Route::parse("/time"), Ok(Route::Time));
        assert_eq!(Route::parse("/"), Ok(Route::Static(vec![])));
        assert_eq!(
            Route::parse("/node_modules/dashjs/dist/x.js"),
            Ok(Route::Static(vec!["node_modules".into(), "dashjs".into(), "dist".into(), "x.js".into()]))
        );
        assert_eq!(Route::parse("/docs/"), Ok(Route::Static(vec!["docs".into(), "index.html".into()])));
    }

    #[test]
    fn player_location_keeps_stream_manifest_and_query() {
        assert_eq!(player_location("1234", "manifest.mpd", None), "/?stream=1234");
        assert_eq!(player_location("1234", "manifest.mpd", Some("latency=1")), "/?stream=1234&latency=1");
        assert_eq!(player_location("s", "other.mpd", Some("")), "/?stream=s&mpd=/live/s/other.mpd");
    }

    #[test]
    fn refuses_escapes_and_bad_names() {
        for p in [
            "/live/test/..",
            "/live/test/%2e%2e",
            "/live/test/a%2fb",
            "/live/test/a%2Fb",
            "/live/..%2f..%2fetc/passwd",
            "/live/test/.hidden",
            "/live/te st/x",
            "/live/test/x%00",
            "/live/test/%ff",
            "/live/test",
            "/live/a/b/c",
            "/ldash/1234",
            "/ldash/1234/a/b",
            "/ldash/..%2f..%2fetc/passwd",
            "/ldashplay/1234",
            "/ldashplay/../x",
            "/live//x",
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a//b",
            "relative",
        ] {
            assert!(Route::parse(p).is_err(), "{p} should be refused");
        }
        let long = format!("/live/s/{}", "a".repeat(129));
        assert!(Route::parse(&long).is_err());
        let ok = format!("/live/s/{}", "a".repeat(128));
        assert!(Route::parse(&ok).is_ok());
    }
}
