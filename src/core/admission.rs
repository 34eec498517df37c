//! Admission: who may do what, decided before any handler runs. Reads are
//! GET and HEAD; ingest (PUT, POST, DELETE) is accepted only on the ingest
//! listener, from no browser page but the allowed origins, in a transfer
//! coding the origin can store, with the ingest token, and only on
//! `/live/<stream>/<file>`. Every refused ingest request is logged at warn
//! and counted by reason (ffmpeg ignores status codes, so the origin's log
//! and metrics are where an operator sees a refusal).

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};

use super::{auth, Origin, Resp};
use crate::conn::ConnInfo;
use crate::store::IngestError;

/// True for the methods that write the store. Decided here, once: the
/// transports ask (the ingest listener's separate connection budget).
pub fn is_ingest(method: &Method) -> bool {
    matches!(*method, Method::PUT | Method::POST | Method::DELETE)
}

/// The request a refusal answers, as its log line names it.
pub(super) struct Attempt<'a> {
    /// Where it came from.
    pub conn: &'a ConnInfo,
    /// Its method.
    pub method: &'a Method,
    /// Its path (undecoded).
    pub path: &'a str,
}

/// Why an ingest request is refused.
pub(super) struct Refusal {
    /// The answer's status.
    pub status: StatusCode,
    /// What the client and the log are told.
    pub why: Cow<'static, str>,
    /// The `h3live_ingest_rejected` reason label.
    pub reason: &'static str,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, why: impl Into<Cow<'static, str>>, reason: &'static str) -> Refusal {
        Refusal { status, why: why.into(), reason }
    }

    /// A store limit hit by an upload (413, 503).
    pub(super) fn of(e: IngestError) -> Refusal {
        let (status, reason) = match e {
            IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            IngestError::StoreFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "store_full"),
            IngestError::TooManyObjects(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_objects"),
            IngestError::TooManyStreams(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams"),
        };
        Refusal::new(status, e.to_string(), reason)
    }
}

impl Origin {
    /// Admission of a request by its method and headers (the path is
    /// checked by routing): `Some` is the answer to a refused one. OPTIONS is
    /// answered before admission (see [`Origin::preflight`]).
    pub(super) fn refusal<B>(&self, req: &Request<B>, conn: &ConnInfo) -> Option<Resp> {
        let method = req.method();
        if !is_ingest(method) {
            let read = method == Method::GET || method == Method::HEAD;
            return (!read).then(|| self.error(conn, StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        }
        let refusal = self.ingest_refusal(req.headers(), conn)?;
        Some(self.refuse_ingest(&Attempt { conn, method, path: req.uri().path() }, refusal))
    }

    /// Why an ingest request with these headers may not write, if it may not.
    fn ingest_refusal(&self, h: &HeaderMap, conn: &ConnInfo) -> Option<Refusal> {
        if !conn.listener.ingest {
            let why = "ingest is not accepted on this listener";
            return Some(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, why, "wrong_listener"));
        }
        // Browsers send Origin on every cross-site PUT/POST/DELETE
        // (CORS-safelisted "simple" POSTs included): refuse them unless the
        // operator allowed that origin.
        if h.get(header::ORIGIN).is_some_and(|o| !auth::origin_allowed(&self.config.ingest_allow_origins, o)) {
            let why = "ingest from a web page (Origin header) is not allowed (--ingest-allow-origin)";
            return Some(Refusal::new(StatusCode::FORBIDDEN, why, "origin"));
        }
        if let Some(coding) = unsupported_transfer_coding(h) {
            // RFC 9112 6.1: an unknown transfer coding is 501; storing the
            // still-encoded bytes would serve garbage.
            let why = format!("transfer coding {coding:?} is not supported (only chunked)");
            return Some(Refusal::new(StatusCode::NOT_IMPLEMENTED, why, "transfer_coding"));
        }
        if !auth::authorized(self.config.ingest_token.as_deref(), h) {
            return Some(Refusal::new(StatusCode::UNAUTHORIZED, "missing or wrong ingest token", "unauthorized"));
        }
        None
    }

    /// The answer to a refused ingest request: counted, and logged at warn
    /// for the 1st, 2nd, 4th, 8th... refusal of each reason (debug between).
    /// 405 says what the listener allows, 401 how to authenticate.
    pub(super) fn refuse_ingest(&self, at: &Attempt<'_>, r: Refusal) -> Resp {
        let (conn, method, path, why) = (at.conn, at.method, at.path, &r.why);
        let (reason, status) = (r.reason, r.status.as_u16());
        let (refused, loud) = self.metrics.ingest_rejected(reason);
        crate::doubling_log!(loud, %method, path, status, remote = %conn.remote,
            listener = conn.listener.name, reason, refused,
            "ingest refused: {why} (logged at warn for the 1st, 2nd, 4th, 8th... refusal of each reason)");
        let mut resp = self.error(conn, r.status, why);
        let h = resp.headers_mut();
        match r.status {
            StatusCode::METHOD_NOT_ALLOWED => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            }
            StatusCode::UNAUTHORIZED => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"h3live ingest\""));
            }
            _ => {}
        }
        resp
    }

    /// CORS preflight. Ingest methods are offered only to an allowed origin
    /// on the ingest listener; everyone else may only read.
    pub(super) fn preflight<B>(&self, req: Request<B>, conn: &ConnInfo) -> Resp {
        let mut r = self.response(conn, StatusCode::NO_CONTENT, super::BodyKind::Empty, false);
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .filter(|o| auth::origin_allowed(&self.config.ingest_allow_origins, o))
            .cloned();
        let h = r.headers_mut();
        let methods = match origin {
            Some(o) if conn.listener.ingest => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
                "GET, HEAD, OPTIONS, PUT, POST, DELETE"
            }
            _ => "GET, HEAD, OPTIONS",
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
        let allow_headers = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(header::ALLOW, HeaderValue::from_static(methods));
        super::headers::cache(h, super::CachePolicy::NoStore, 0);
        r
    }
}

/// The first transfer coding other than `chunked` in `Transfer-Encoding`, if any.
fn unsupported_transfer_coding(h: &HeaderMap) -> Option<String> {
    h.get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .find(|c| !c.is_empty() && c != "chunked")
}
