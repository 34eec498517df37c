//! The transport-independent origin: routing, ingest, reads and HTTP
//! semantics. Transport adapters (hyper for h1/h2, h3-quinn for h3) turn
//! their requests into `http::Request<B>` with an [`IngestBody`], call
//! [`Origin::handle`], and copy the returned [`Body`] to the wire. Every rule
//! of how an object is served is decided here, once.

pub mod headers;
pub mod route;
pub mod state_dir;
mod static_files;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tracing::{debug, info, warn};

use crate::metrics::{GaugeGuard, Metrics};
use crate::store::{IngestError, Kind, ObjectError, ObjectReader, Status, Store};
use crate::transport::{ConnInfo, Transport};
use headers::CachePolicy;
use route::Route;

/// Settings of the HTTP layer (the store has its own).
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Directory served for non-live GETs.
    pub web_dir: PathBuf,
    /// If set, ingest requires this token (Basic password or Bearer).
    pub ingest_token: Option<String>,
    /// `max-age` of media and init segments, in seconds.
    pub segment_max_age: u64,
    /// Where init segments and manifests are kept across a restart (none: not kept).
    pub state_dir: Option<PathBuf>,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig { web_dir: PathBuf::from("web"), ingest_token: None, segment_max_age: 30, state_dir: None }
    }
}

/// A request body as ingest reads it, whatever the transport.
pub trait IngestBody: Send {
    /// The next piece of the body: `None` at a clean end, `Some(Err)` when the
    /// body broke (connection closed before the terminating chunk).
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes, BodyError>>> + Send;
}

/// A request body that ended abnormally.
#[derive(Debug, thiserror::Error)]
#[error("request body broken: {0}")]
pub struct BodyError(pub String);

/// The body of a request that cannot carry one into ingest (h3 reads).
pub struct NoBody;

impl IngestBody for NoBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        None
    }
}

/// What a response sends after its headers.
enum BodyKind {
    /// Nothing (HEAD, 204, errors without text).
    Empty,
    /// One buffer.
    Full(Option<Bytes>),
    /// A stored object, streamed chunk by chunk as ingest receives it.
    Object {
        /// The reader's cursor.
        reader: ObjectReader,
        /// When the read started: chunks that arrived later count for the
        /// origin-delay histogram.
        started: Instant,
    },
}

/// A response body. Adapters poll it with [`Body::poll_next`] (or
/// [`Body::next`]) and write each piece as one frame/chunk as soon as it is
/// returned; `Some(Err)` means the object's upload was aborted and the
/// response must end in a visible error (HTTP/1.1: close without the final
/// chunk; h2/h3: reset the stream).
pub struct Body {
    /// What is sent.
    kind: BodyKind,
    /// The origin's metrics, for the origin-delay histogram.
    metrics: Arc<Metrics>,
    /// Transport label for the metrics.
    transport: Transport,
    /// Counts this response as an active reader while it streams.
    _reader: Option<GaugeGuard>,
}

impl Body {
    fn new(kind: BodyKind, origin: &Origin, transport: Transport) -> Body {
        let reader = match kind {
            BodyKind::Object { .. } => Some(origin.metrics.reader(transport)),
            _ => None,
        };
        Body { kind, metrics: origin.metrics.clone(), transport, _reader: reader }
    }

    /// Exact length when known up front (complete objects, buffers).
    pub fn exact_len(&self) -> Option<u64> {
        match &self.kind {
            BodyKind::Empty => Some(0),
            BodyKind::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Object { reader, .. } => match reader.object().snapshot() {
                (len, Status::Complete) => Some(len),
                _ => None,
            },
        }
    }

    /// True if the body will send nothing more.
    pub fn is_end(&self) -> bool {
        match &self.kind {
            BodyKind::Empty => true,
            BodyKind::Full(b) => b.is_none(),
            BodyKind::Object { .. } => false,
        }
    }

    /// The next piece to send. Cancel safe.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ObjectError>>> {
        match &mut self.kind {
            BodyKind::Empty => Poll::Ready(None),
            BodyKind::Full(b) => Poll::Ready(b.take().map(Ok)),
            BodyKind::Object { reader, started } => match reader.poll_chunk(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.arrived >= *started {
                        self.metrics.origin_delay(self.transport).observe(chunk.arrived.elapsed());
                    }
                    Poll::Ready(Some(Ok(chunk.data)))
                }
                other => other.map(|o| o.map(|r| r.map(|c| c.data))),
            },
        }
    }

    /// Async form of [`Body::poll_next`].
    pub async fn next(&mut self) -> Option<Result<Bytes, ObjectError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// The origin: store, metrics and HTTP rules. Shared by every listener.
pub struct Origin {
    /// The live store.
    store: Store,
    /// Counters.
    metrics: Arc<Metrics>,
    /// HTTP settings.
    config: OriginConfig,
    /// Init segments and manifests kept across a restart.
    state: Option<state_dir::StateDir>,
}

type Resp = Response<Body>;

impl Origin {
    /// An origin over `store`.
    /// With a state directory, what it holds is published first; a directory
    /// that cannot be used is logged and ignored.
    pub fn new(store: Store, config: OriginConfig) -> Origin {
        let state = config.state_dir.as_deref().and_then(|dir| {
            let opened = state_dir::StateDir::open(dir).and_then(|s| s.load(&store).map(|n| (s, n)));
            match opened {
                Ok((s, n)) => {
                    info!(dir = %dir.display(), restored = n, "state directory");
                    Some(s)
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "state directory unusable: init segments will not survive a restart");
                    None
                }
            }
        });
        Origin { store, metrics: Arc::new(Metrics::default()), config, state }
    }

    /// A stream was dropped from the store (idle): forget its kept state.
    pub fn stream_dropped(&self, stream: &str) {
        if let Some(state) = &self.state {
            state.remove_stream(stream);
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Handle one request. `conn` says which listener and transport it came
    /// on; ingest is only accepted where the listener allows it.
    pub async fn handle<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo) -> Resp {
        let resp = self.route(req, conn).await;
        self.metrics.response(conn.transport, resp.status().as_u16());
        resp
    }

    async fn route<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo) -> Resp {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let is_ingest = matches!(method, Method::PUT | Method::POST | Method::DELETE);

        if method == Method::OPTIONS {
            return self.preflight(req, conn);
        }
        if is_ingest {
            if !conn.listener.ingest {
                return self.refuse_ingest(
                    conn,
                    &method,
                    &path,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "ingest is not accepted on this listener",
                    "wrong_listener",
                );
            }
            if !self.authorized(req.headers()) {
                let mut r = self.refuse_ingest(
                    conn,
                    &method,
                    &path,
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong ingest token",
                    "unauthorized",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"h3live ingest\""));
                return r;
            }
        } else if method != Method::GET && method != Method::HEAD {
            return self.error(conn, StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }

        let route = match Route::parse(&path) {
            Ok(r) => r,
            Err(e) => {
                if is_ingest {
                    return self.refuse_ingest(
                        conn,
                        &method,
                        &path,
                        StatusCode::BAD_REQUEST,
                        &e.to_string(),
                        "bad_path",
                    );
                }
                return self.error(conn, StatusCode::BAD_REQUEST, &e.to_string());
            }
        };
        let head = method == Method::HEAD;
        match route {
            Route::Live { stream, file } => {
                tracing::Span::current().record("stream", stream.as_str()).record("file", file.as_str());
                match method {
                    Method::PUT | Method::POST => self.ingest(req, conn, &stream, &file).await,
                    Method::DELETE => self.delete(req, conn, &stream, &file).await,
                    _ => self.read_live(conn, &stream, &file, head).await,
                }
            }
            _ if is_ingest => self.refuse_ingest(
                conn,
                &method,
                &path,
                StatusCode::METHOD_NOT_ALLOWED,
                "only /live/<stream>/<file> is writable",
                "not_writable",
            ),
            Route::Time => {
                let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                self.text(conn, StatusCode::OK, "text/plain; charset=utf-8", now, head)
            }
            Route::Healthz => self.text(conn, StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into(), head),
            Route::Streams => {
                let json = serde_json::json!({ "streams": self.store.snapshot() });
                let body = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
                self.text(conn, StatusCode::OK, "application/json", body, head)
            }
            Route::Metrics => {
                let body = self.metrics.render(&self.store);
                self.text(conn, StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body, head)
            }
            Route::Static(parts) => match static_files::read(&self.config.web_dir, &parts).await {
                Some((bytes, name)) => {
                    let mut r = self.response(conn, StatusCode::OK, BodyKind::Full(Some(bytes)), head);
                    set_type(&mut r, headers::content_type(&name));
                    headers::cache(r.headers_mut(), CachePolicy::Static, 0);
                    r
                }
                None => self.error(conn, StatusCode::NOT_FOUND, "not found"),
            },
        }
    }

    /// GET/HEAD of a live object, held until its upload starts.
    async fn read_live(&self, conn: &ConnInfo, stream: &str, file: &str, head: bool) -> Resp {
        let Some(obj) = self.store.get_or_wait(stream, file).await else {
            return self.error(conn, StatusCode::NOT_FOUND, "no such object (yet)");
        };
        if obj.status() == Status::Aborted {
            return self.error(conn, StatusCode::BAD_GATEWAY, "the upload of this object was aborted");
        }
        let kind = BodyKind::Object { reader: obj.reader(), started: Instant::now() };
        let mut r = self.response(conn, StatusCode::OK, kind, head);
        set_type(&mut r, headers::content_type(file));
        headers::cache(r.headers_mut(), headers::live_policy(Kind::of(file)), self.config.segment_max_age);
        debug!(stream, file, status = obj.status().as_str(), "serving live object");
        r
    }

    /// PUT/POST: stream the body into the store.
    async fn ingest<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo, stream: &str, file: &str) -> Resp {
        let announced =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let path = req.uri().path().to_string();
        let mut upload = match self.store.begin_upload(stream, file, announced) {
            Ok(u) => u,
            Err(e) => return self.ingest_error(conn, &path, e),
        };
        let mut body = req.into_body();
        // Init segments and manifests are also written to the state directory.
        let mut kept = self.state.as_ref().filter(|_| state_dir::StateDir::keeps(file)).map(|_| Vec::new());
        while let Some(piece) = body.next_chunk().await {
            match piece {
                Ok(data) => {
                    if let Some(k) = kept.as_mut() {
                        k.push(data.clone());
                    }
                    if let Err(e) = upload.push(data) {
                        return self.ingest_error(conn, &path, e);
                    }
                }
                Err(e) => {
                    upload.abort();
                    self.metrics.upload_aborted();
                    warn!(path, received = upload.len(), error = %e, "upload aborted: readers see an error");
                    return self.error(conn, StatusCode::BAD_REQUEST, "request body broken");
                }
            }
        }
        let replaced = upload.replaces();
        let len = upload.len();
        upload.finish();
        debug!(path, bytes = len, "upload complete");
        if let (Some(state), Some(data)) = (&self.state, kept) {
            state.save(stream, file, data).await;
        }
        let status = if replaced { StatusCode::NO_CONTENT } else { StatusCode::CREATED };
        self.response(conn, status, BodyKind::Empty, false)
    }

    async fn delete<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo, stream: &str, file: &str) -> Resp {
        // ffmpeg sends DELETE with an empty chunked body; read it so the
        // connection stays usable.
        let mut body = req.into_body();
        let mut drained = 0usize;
        while let Some(Ok(d)) = body.next_chunk().await {
            drained += d.len();
            if drained > 64 * 1024 {
                break;
            }
        }
        if let Some(state) = self.state.as_ref().filter(|_| state_dir::StateDir::keeps(file)) {
            state.remove(stream, file);
        }
        if self.store.delete(stream, file) {
            info!(stream, file, "deleted");
            self.response(conn, StatusCode::NO_CONTENT, BodyKind::Empty, false)
        } else {
            self.error(conn, StatusCode::NOT_FOUND, "no such object")
        }
    }

    fn ingest_error(&self, conn: &ConnInfo, path: &str, e: IngestError) -> Resp {
        let (status, reason) = match e {
            IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            IngestError::StoreFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "store_full"),
        };
        self.refuse_ingest(conn, &Method::PUT, path, status, &e.to_string(), reason)
    }

    /// A refused ingest request: logged at warn (ffmpeg ignores status codes,
    /// so the origin's log is where an operator sees it) and counted.
    fn refuse_ingest(
        &self,
        conn: &ConnInfo,
        method: &Method,
        path: &str,
        status: StatusCode,
        why: &str,
        reason: &'static str,
    ) -> Resp {
        warn!(%method, path, status = status.as_u16(), remote = %conn.remote, listener = conn.listener.name, "ingest refused: {why}");
        self.metrics.ingest_rejected(reason);
        let mut r = self.error(conn, status, why);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
        r
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = &self.config.ingest_token else {
            return true;
        };
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let presented = if let Some(b) = value.strip_prefix("Bearer ") {
            b.trim().as_bytes().to_vec()
        } else if let Some(b) = value.strip_prefix("Basic ") {
            use base64::Engine as _;
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
                return false;
            };
            match decoded.iter().position(|&c| c == b':') {
                Some(i) => decoded[i + 1..].to_vec(),
                None => return false,
            }
        } else {
            return false;
        };
        constant_time_eq(&presented, token.as_bytes())
    }

    fn preflight<B>(&self, req: Request<B>, conn: &ConnInfo) -> Resp {
        let mut r = self.response(conn, StatusCode::NO_CONTENT, BodyKind::Empty, false);
        let h = r.headers_mut();
        let methods = if conn.listener.ingest { "GET, HEAD, OPTIONS, PUT, POST, DELETE" } else { "GET, HEAD, OPTIONS" };
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
        let allow_headers = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(header::ALLOW, HeaderValue::from_static(methods));
        headers::cache(h, CachePolicy::NoStore, 0);
        r
    }

    fn text(&self, conn: &ConnInfo, status: StatusCode, ctype: &'static str, body: String, head: bool) -> Resp {
        let mut r = self.response(conn, status, BodyKind::Full(Some(Bytes::from(body))), head);
        set_type(&mut r, ctype);
        headers::cache(r.headers_mut(), CachePolicy::NoStore, 0);
        r
    }

    /// An error response with a one-line text body and `no-store`.
    fn error(&self, conn: &ConnInfo, status: StatusCode, message: &str) -> Resp {
        self.text(conn, status, "text/plain; charset=utf-8", format!("{} {message}\n", status.as_u16()), false)
    }

    /// A response with the common headers. For HEAD the body is dropped but
    /// its length (when known) is kept in Content-Length.
    fn response(&self, conn: &ConnInfo, status: StatusCode, kind: BodyKind, head: bool) -> Resp {
        let body = Body::new(kind, self, conn.transport);
        let len = body.exact_len();
        let body = if head { Body::new(BodyKind::Empty, self, conn.transport) } else { body };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        headers::common(h);
        if let Some(alt) = &conn.listener.alt_svc {
            h.insert(header::ALT_SVC, alt.clone());
        }
        if let Some(len) = len {
            if status != StatusCode::NO_CONTENT {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
        }
        r
    }
}

fn set_type(r: &mut Resp, ctype: &'static str) {
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
