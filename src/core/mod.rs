//! The transport-independent origin: routing, ingest, reads and HTTP
//! semantics. Transport adapters (hyper for h1/h2, h3-quinn for h3) turn
//! their requests into `http::Request<B>` with an [`IngestBody`], call
//! [`Origin::handle`], and copy the returned [`Body`] to the wire. Every rule
//! of how an object is served is decided here, once.

mod admission;
mod auth;
mod body;
pub mod headers;
mod ingest_rate;
pub mod prefetch;
pub mod prefetcher;
pub mod range;
pub mod route;
pub mod state_dir;
pub mod static_files;
pub mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tracing::{debug, error, info, warn};

use crate::conn::{ConnInfo, Transport};
use crate::metrics::Metrics;
use crate::store::{IngestError, Kind, Object, Status, Store, Upload};
use headers::CachePolicy;
use route::Route;

pub use admission::is_ingest;
use admission::{Attempt, Refusal};
use body::BodyKind;
pub use body::{Body, BodyError, IngestBody, NoBody, Progress, ResponseBodyError};
pub use ingest_rate::SharedFloor;

/// How repeated upload failures are logged (see [`crate::metrics::doubling`]).
const ABORT_LOG: &str = " (logged at warn for the 1st, 2nd, 4th, 8th... aborted upload)";

/// Settings of the HTTP layer (the store has its own).
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Directory served for non-live GETs.
    pub web_dir: PathBuf,
    /// If set, ingest requires this token (Basic password or Bearer).
    pub ingest_token: Option<String>,
    /// `max-age` of media and init segments, in seconds.
    pub segment_max_age: u64,
    /// If set, this is a protocol front (`h3live front`): every read is
    /// forwarded to this upstream (an edge cache) instead of the store.
    pub upstream: Option<Arc<upstream::Upstream>>,
    /// Browser origins (`Origin` header values, e.g. `https://tool.example`)
    /// allowed to send ingest requests; any other request with an `Origin`
    /// header is refused with 403, so a web page cannot write the store.
    pub ingest_allow_origins: Vec<String>,
    /// An upload body that brings no byte for this long is aborted (408).
    pub ingest_idle_timeout: Duration,
    /// Bytes an upload body must bring in every `ingest_rate_window` (408
    /// beyond, see `ingest_rate`; 0: no floor).
    pub ingest_min_bytes: u64,
    /// Window of `ingest_min_bytes`.
    pub ingest_rate_window: Duration,
    /// LL-HLS part target (`crate::hls`).
    pub hls_part_target: Duration,
    /// Where init segments and manifests are kept across a restart (none: not kept).
    pub state_dir: Option<PathBuf>,
    /// Most bytes static-file responses hold at once (shared copies of
    /// small files and pieces of large ones, see [`static_files::StaticMemory`]).
    pub max_static_memory: u64,
    /// Hex SHA-256 of the MoQ endpoint's certificate, served at
    /// `/certificate.sha256` for WebTransport's `serverCertificateHashes`
    /// (none: 404, MoQ is off).
    pub moq_certificate_sha256: Option<String>,
    /// Front mode: prefetch what the origin names (origin-assisted prefetch,
    /// see `prefetcher`).
    pub prefetch: bool,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            web_dir: PathBuf::from("web"),
            ingest_token: None,
            segment_max_age: 30,
            upstream: None,
            ingest_allow_origins: Vec::new(),
            ingest_idle_timeout: Duration::from_secs(30),
            ingest_min_bytes: 1024,
            ingest_rate_window: Duration::from_secs(30),
            hls_part_target: crate::hls::HlsConfig::default().part_target,
            state_dir: None,
            max_static_memory: 64 << 20,
            moq_certificate_sha256: None,
            prefetch: false,
        }
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
    /// LL-HLS playlists generated from the stored CMAF.
    hls: crate::hls::Hls,
    /// Init segments and manifests kept across a restart.
    state: Option<state_dir::StateDir>,
    /// The memory budget of static responses.
    statics: Arc<static_files::StaticMemory>,
    /// Front mode with prefetch on: sends the prefetches.
    prefetcher: Option<Arc<prefetcher::Prefetcher>>,
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
        let hls = crate::hls::Hls::new(store.clone(), crate::hls::HlsConfig { part_target: config.hls_part_target });
        let metrics = Arc::new(Metrics::default());
        let statics = Arc::new(static_files::StaticMemory::new(config.max_static_memory, metrics.static_bytes()));
        let prefetcher = match (&config.upstream, config.prefetch) {
            (Some(up), true) => Some(prefetcher::Prefetcher::new(up.clone(), metrics.clone())),
            _ => None,
        };
        Origin { store, metrics, config, hls, state, statics, prefetcher }
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

    /// Resolves at the next revocation of an evicted object in this origin's
    /// store (pinned budget): a connection's stall watchdog then looks at
    /// its bodies at once. Revocations in other origins do not wake it.
    pub fn next_revocation(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.store.next_revocation()
    }

    /// Bytes static-file responses hold now (within `max_static_memory`).
    pub fn static_bytes(&self) -> u64 {
        self.statics.held()
    }

    /// The LL-HLS packager.
    pub fn hls(&self) -> &crate::hls::Hls {
        &self.hls
    }

    /// Handle one request. `conn` says which listener and transport it came
    /// on; ingest is only accepted where the listener allows it.
    pub async fn handle<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo) -> Resp {
        let resp = self.route(req, conn).await;
        self.metrics.response(conn.transport, resp.status().as_u16());
        resp
    }

    /// Routing: which handler serves the request. Front mode forwards
    /// (nearly) everything; OPTIONS is a CORS preflight; anything else passes admission
    /// (`admission.rs`) and then goes by its path.
    async fn route<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo) -> Resp {
        if let Some(up) = &self.config.upstream {
            return self.front(up, req, conn).await;
        }
        if req.method() == Method::OPTIONS {
            return self.preflight(req, conn);
        }
        if let Some(refused) = self.refusal(&req, conn) {
            return refused;
        }
        let ingest = is_ingest(req.method());
        let at = Attempt { conn, method: req.method(), path: req.uri().path() };
        let route = match Route::parse(req.uri().path()) {
            Ok(r) => r,
            Err(e) if ingest => {
                return self.refuse_ingest(&at, Refusal::new(StatusCode::BAD_REQUEST, e.to_string(), "bad_path"))
            }
            Err(e) => return self.error(conn, StatusCode::BAD_REQUEST, &e.to_string()),
        };
        match route {
            Route::Live { stream, file } => self.live(req, conn, &stream, &file).await,
            _ if ingest => {
                let why = "only /live/<stream>/<file> (or /ldash/<stream>/<file>) is writable";
                self.refuse_ingest(&at, Refusal::new(StatusCode::METHOD_NOT_ALLOWED, why, "not_writable"))
            }
            other => self.read_other(other, req, conn).await,
        }
    }

    /// `/live/<stream>/<file>`: ingest, delete, or a read of an object or a
    /// generated LL-HLS playlist.
    async fn live<B: IngestBody>(&self, req: Request<B>, conn: &ConnInfo, stream: &str, file: &str) -> Resp {
        crate::conn::record_object(stream, file);
        let head = req.method() == Method::HEAD;
        let (h, query) = (req.headers(), req.uri().query());
        match *req.method() {
            Method::PUT | Method::POST => self.ingest(req, conn, stream, file).await,
            Method::DELETE => self.delete(req, conn, stream, file).await,
            _ => match crate::hls::PlaylistName::parse(file) {
                Some(name) => self.hls_playlist(conn, h, stream, &name, query, head).await,
                None => self.read_live(conn, h, stream, file, query, head).await,
            },
        }
    }

    /// GET/HEAD of everything but the live store: the player redirect, the
    /// clock, health, the status pages (where the listener shows them) and
    /// static files.
    async fn read_other<B>(&self, route: Route, req: Request<B>, conn: &ConnInfo) -> Resp {
        let head = req.method() == Method::HEAD;
        match route {
            Route::Play { stream, file } => {
                let mut r = self.response(conn, StatusCode::FOUND, BodyKind::Empty, false);
                let to = route::player_location(&stream, &file, req.uri().query());
                match HeaderValue::from_str(&to) {
                    Ok(v) => r.headers_mut().insert(header::LOCATION, v),
                    Err(_) => return self.error(conn, StatusCode::BAD_REQUEST, "invalid query"),
                };
                headers::cache(r.headers_mut(), CachePolicy::NoStore, 0);
                r
            }
            Route::Time => {
                let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                self.text(conn, StatusCode::OK, "text/plain; charset=utf-8", now, head)
            }
            Route::Healthz => self.text(conn, StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into(), head),
            Route::CertificateSha256 => match &self.config.moq_certificate_sha256 {
                Some(hex) => self.text(conn, StatusCode::OK, "text/plain; charset=utf-8", hex.clone(), head),
                None => self.error(conn, StatusCode::NOT_FOUND, "MoQ is off"),
            },
            Route::Streams | Route::Metrics if !conn.listener.status_pages => {
                self.error(conn, StatusCode::NOT_FOUND, "not found")
            }
            Route::Streams => status_page(self.json(conn, crate::store::view::streams_json(&self.store), head)),
            Route::Metrics => {
                let body = self.metrics.render(&self.store);
                status_page(self.text(conn, StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body, head))
            }
            Route::Static(parts) => match static_files::open(&self.config.web_dir, &parts).await {
                Ok(file) => self.static_file(conn, req.headers(), file, head).await,
                Err(e) => self.error(conn, e.status(), e.public_message()),
            },
            // Routed to `live` before getting here.
            Route::Live { .. } => self.error(conn, StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Front mode: its own `/metrics` (where the origin's would be), every
    /// other request forwarded.
    async fn front<B>(&self, up: &Arc<upstream::Upstream>, req: Request<B>, conn: &ConnInfo) -> Resp {
        if req.uri().path() == "/metrics" && conn.listener.status_pages && req.method() == Method::GET {
            let body = self.metrics.render(&self.store);
            return status_page(self.text(
                conn,
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
                false,
            ));
        }
        self.forward(up, req, conn).await
    }

    /// Front mode: forward a read to the upstream and stream its answer.
    /// Ingest and other methods are refused here; everything else (status,
    /// caching and CORS headers) is the upstream's.
    async fn forward<B>(&self, up: &Arc<upstream::Upstream>, req: Request<B>, conn: &ConnInfo) -> Resp {
        let method = req.method().clone();
        if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let mut r = self.error(conn, StatusCode::METHOD_NOT_ALLOWED, "this is an edge: it only reads");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            return r;
        }
        let proto = if conn.transport == Transport::H1Clear { "http" } else { "https" };
        let mut headers = req.headers().clone();
        prefetcher::scrub_request(&mut headers);
        if self.prefetcher.is_some() {
            prefetcher::Prefetcher::enable(&mut headers);
        }
        match up.forward(&method, req.uri(), &headers, conn.remote.ip(), proto).await {
            Ok((mut parts, body)) => {
                match &self.prefetcher {
                    Some(p) if parts.status.is_success() => p.on_response(req.uri(), &mut parts.headers),
                    _ => {
                        parts.headers.remove(prefetch::PATH);
                    }
                }
                let mut r =
                    Response::from_parts(parts, Body::new(BodyKind::Upstream(body), &self.metrics, conn.transport));
                if let Some(alt) = &conn.listener.alt_svc {
                    r.headers_mut().insert(header::ALT_SVC, alt.clone());
                }
                r
            }
            Err(e) => {
                warn!(upstream = up.addr(), error = %e, "upstream request failed");
                let status = match e {
                    upstream::UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                self.error(conn, status, "the edge cache is unavailable")
            }
        }
    }

    /// A static file: 304 when the client's copy is current, 206 for one
    /// satisfiable range, else the whole file; streamed from disk.
    async fn static_file(
        &self,
        conn: &ConnInfo,
        req: &http::HeaderMap,
        file: static_files::StaticFile,
        head: bool,
    ) -> Resp {
        use static_files::RangeReq;
        let etag = file.etag();
        let modified = file.modified;
        let validators = |r: &mut Resp| {
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            if let Some(m) = modified {
                if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
                    h.insert(header::LAST_MODIFIED, v);
                }
            }
            headers::cache(h, CachePolicy::Static, 0);
        };
        if file.not_modified(req) {
            let mut r = self.response(conn, StatusCode::NOT_MODIFIED, BodyKind::Empty, false);
            validators(&mut r);
            return r;
        }
        let range = req.get(header::RANGE).and_then(|v| v.to_str().ok());
        let (status, start, len) = match static_files::parse_range(range, file.len) {
            RangeReq::Full => (StatusCode::OK, 0, file.len),
            RangeReq::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
            RangeReq::Unsatisfiable => {
                let mut r = self.error(conn, StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", file.len)) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
        let total = file.len;
        let ctype = headers::content_type(&file.name);
        let body = if head { BodyKind::Empty } else { BodyKind::File(self.statics.body(&file, start, len).await) };
        let mut r = self.response(conn, status, body, head);
        if head {
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        set_type(&mut r, ctype);
        validators(&mut r);
        r.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if status == StatusCode::PARTIAL_CONTENT {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", start + len - 1)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        r
    }

    /// GET/HEAD of a live object, held until its upload starts. One `Range`
    /// is honoured, growing or not (see [`range`]); a finished object has a
    /// strong `ETag` (304 on `If-None-Match`).
    /// With `CDN-Origin-Assist-Prefetch-Enabled: 1`, the response names the
    /// next object (see [`prefetch`]).
    async fn read_live(
        &self,
        conn: &ConnInfo,
        req: &http::HeaderMap,
        stream: &str,
        file: &str,
        query: Option<&str>,
        head: bool,
    ) -> Resp {
        let Some(obj) = self.find_live(req, stream, file).await else {
            return self.error(conn, StatusCode::NOT_FOUND, "no such object (yet)");
        };
        let (len, status) = obj.snapshot();
        if status == Status::Aborted {
            return self.error(conn, StatusCode::BAD_GATEWAY, "the upload of this object was aborted");
        }
        let policy = headers::live_policy(Kind::of(file));
        let max_age = self.config.segment_max_age;
        let etag = (status == Status::Complete).then(|| live_etag(&obj, len));
        if let Some(tag) = etag.as_deref().filter(|t| headers::none_match(req, t)) {
            let mut r = self.response(conn, StatusCode::NOT_MODIFIED, BodyKind::Empty, false);
            r.headers_mut().insert(header::ETAG, HeaderValue::from_str(tag).expect("hex etag"));
            headers::cache(r.headers_mut(), policy, max_age);
            return r;
        }
        let range = req.get(header::RANGE).and_then(|v| v.to_str().ok());
        let max_len = self.store.config().max_object_bytes;
        let (code, window, content_range) = match range::live(range, len, status == Status::Complete, max_len) {
            range::LiveRange::Full => (StatusCode::OK, range::Window::all(), None),
            range::LiveRange::Part(w, cr) => (StatusCode::PARTIAL_CONTENT, w, Some(cr)),
            range::LiveRange::Unsatisfiable(cr) => {
                let mut r = self.error(conn, StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                if let Ok(v) = HeaderValue::from_str(&cr) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
        let kind = BodyKind::Object { reader: obj.reader(), started: Instant::now(), window };
        let mut r = self.response(conn, code, kind, head);
        set_type(&mut r, headers::content_type(file));
        headers::cache(r.headers_mut(), policy, max_age);
        let h = r.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(v) = content_range.and_then(|cr| HeaderValue::from_str(&cr).ok()) {
            h.insert(header::CONTENT_RANGE, v);
        }
        if let Some(v) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
            h.insert(header::ETAG, v);
        }
        if prefetch::enabled(req) {
            let paths = prefetch::paths_for(&self.store, stream, file, query, &obj).await;
            if !paths.is_empty() {
                self.metrics.prefetch("named");
                prefetch::set_paths(r.headers_mut(), &paths);
            }
        }
        debug!(stream, file, status = obj.status().as_str(), "serving live object");
        r
    }

    /// The live object `stream/file`, held until its upload starts (a
    /// prefetch longer, see [`prefetch`]); `None` if it did not appear in time.
    async fn find_live(&self, req: &http::HeaderMap, stream: &str, file: &str) -> Option<Arc<Object>> {
        let is_prefetch = prefetch::is_prefetch(req);
        if is_prefetch {
            self.metrics.prefetch("request");
        }
        if let Some(obj) = self.store.get(stream, file) {
            return Some(obj);
        }
        let _held = self.metrics.held_read();
        let hold = self.store.config().hold * if is_prefetch { prefetch::PREFETCH_HOLD_FACTOR } else { 1 };
        self.store.get_or_wait_within(stream, file, hold).await
    }

    /// A generated LL-HLS playlist (`crate::hls`), cached like a manifest.
    async fn hls_playlist(
        &self,
        conn: &ConnInfo,
        req: &http::HeaderMap,
        stream: &str,
        name: &crate::hls::PlaylistName,
        query: Option<&str>,
        head: bool,
    ) -> Resp {
        match self.hls.playlist(stream, name, query).await {
            Ok(text) => {
                let mut r = self.text(conn, StatusCode::OK, "application/vnd.apple.mpegurl", text, head);
                headers::cache(r.headers_mut(), CachePolicy::Manifest, 0);
                // The segment of the preload-hinted part (see `prefetch`).
                if let (true, crate::hls::PlaylistName::Media(rep)) = (prefetch::enabled(req), name) {
                    if let Some(next) = self.hls.preload_hint(stream, rep) {
                        self.metrics.prefetch("named");
                        prefetch::set_paths(r.headers_mut(), &[next]);
                    }
                }
                r
            }
            Err(e) => self.error(conn, e.status(), &e.to_string()),
        }
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
        // The transport may share the floor with the connection (overload).
        let floor = req.extensions().get::<Arc<SharedFloor>>().cloned().unwrap_or_default();
        floor.start(self.config.ingest_min_bytes, self.config.ingest_rate_window);
        // Init segments and manifests are also written to the state directory.
        let mut kept = self.state.as_ref().filter(|_| state_dir::StateDir::keeps(file)).map(|_| Vec::new());
        if let Err(refused) = self.receive(req.into_body(), &floor, &mut upload, kept.as_mut(), conn, &path).await {
            return refused;
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

    /// Copy a request body into `upload` (and `kept`) until its clean end.
    /// A body that goes idle, drips below the rate floor or breaks aborts the
    /// upload (its readers see an error): `Err` is then the answer.
    async fn receive<B: IngestBody>(
        &self,
        mut body: B,
        floor: &SharedFloor,
        upload: &mut Upload,
        mut kept: Option<&mut Vec<Bytes>>,
        conn: &ConnInfo,
        path: &str,
    ) -> Result<(), Resp> {
        let idle = self.config.ingest_idle_timeout;
        let (min, window) = (self.config.ingest_min_bytes, self.config.ingest_rate_window);
        loop {
            let data = match tokio::time::timeout(idle, body.next_chunk()).await {
                Ok(None) => return Ok(()),
                Ok(Some(Ok(data))) => data,
                Err(_) => {
                    // A body that stalls holds a connection, a stream and a
                    // growing object forever: treat it as broken.
                    let (aborted, loud) = self.abort(upload);
                    crate::doubling_log!(loud, path, received = upload.len(), idle = ?idle, aborted,
                        "upload idle: aborted, readers see an error{ABORT_LOG}");
                    return Err(self.error(conn, StatusCode::REQUEST_TIMEOUT, "request body idle for too long"));
                }
                Ok(Some(Err(e))) => {
                    let (aborted, loud) = self.abort(upload);
                    // The error's source is the transport's reason (tracing prints the chain).
                    let e: &(dyn std::error::Error + 'static) = &e;
                    crate::doubling_log!(
                        loud,
                        path,
                        received = upload.len(),
                        error = e,
                        aborted,
                        "upload aborted: readers see an error{ABORT_LOG}"
                    );
                    return Err(self.error(conn, StatusCode::BAD_REQUEST, "request body broken"));
                }
            };
            if let Err(slow) = floor.add(data.len() as u64, std::time::Instant::now()) {
                // A drip: it would hold its connection and object for ever.
                let (aborted, loud) = self.abort(upload);
                let (received, got) = (upload.len(), slow.got);
                crate::doubling_log!(
                    loud,
                    path,
                    received,
                    got,
                    min,
                    ?window,
                    aborted,
                    "upload below the minimum rate: aborted, readers see an error{ABORT_LOG}"
                );
                return Err(self.error(conn, StatusCode::REQUEST_TIMEOUT, "request body too slow"));
            }
            if let Some(k) = kept.as_mut() {
                k.push(data.clone());
            }
            if let Err(e) = upload.push(data) {
                return Err(self.ingest_error(conn, path, e));
            }
        }
    }

    /// Abort `upload` (its readers end in an error) and count it: the
    /// aborted uploads so far, and whether this one is logged at warn.
    fn abort(&self, upload: &mut Upload) -> (u64, bool) {
        upload.abort();
        self.metrics.upload_aborted()
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
        self.refuse_ingest(&Attempt { conn, method: &Method::PUT, path }, Refusal::of(e))
    }

    fn text(&self, conn: &ConnInfo, status: StatusCode, ctype: &'static str, body: String, head: bool) -> Resp {
        let mut r = self.response(conn, status, BodyKind::Full(Some(Bytes::from(body))), head);
        set_type(&mut r, ctype);
        headers::cache(r.headers_mut(), CachePolicy::NoStore, 0);
        r
    }

    /// A JSON document, or 500 (logged) if it could not be serialized.
    fn json(&self, conn: &ConnInfo, doc: serde_json::Result<String>, head: bool) -> Resp {
        match doc {
            Ok(body) => self.text(conn, StatusCode::OK, "application/json", body, head),
            Err(e) => {
                let e: &(dyn std::error::Error + 'static) = &e;
                error!(error = e, "JSON serialization failed");
                self.error(conn, StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize the document")
            }
        }
    }

    /// 503 for a request the transport cannot admit: an ingest request when
    /// every ingest connection is busy (`ingest`: counted and logged as an
    /// ingest refusal), or a read that waited for its head in an ingest slot
    /// because every viewer connection was busy (the transport counts it).
    /// The connection is closed after it.
    pub fn busy(&self, conn: &ConnInfo, ingest: bool) -> Resp {
        if ingest {
            let (refused, loud) = self.metrics.ingest_rejected("busy");
            crate::doubling_log!(loud, remote = %conn.remote, listener = conn.listener.name, refused,
                "ingest refused: every ingest connection is busy (logged at warn for the 1st, 2nd, 4th, 8th... refusal)");
        }
        let mut r = self.error(conn, StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        self.metrics.response(conn.transport, 503);
        r
    }

    /// An error response with a one-line text body and `no-store`.
    fn error(&self, conn: &ConnInfo, status: StatusCode, message: &str) -> Resp {
        self.text(conn, status, "text/plain; charset=utf-8", format!("{} {message}\n", status.as_u16()), false)
    }

    /// A response with the common headers. For HEAD the body is dropped but
    /// its length (when known) is kept in Content-Length.
    fn response(&self, conn: &ConnInfo, status: StatusCode, kind: BodyKind, head: bool) -> Resp {
        let body = Body::new(kind, &self.metrics, conn.transport);
        let len = body.exact_len();
        let body = if head { Body::new(BodyKind::Empty, &self.metrics, conn.transport) } else { body };
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

/// The strong validator of a finished live object. Finished objects never
/// change under their name without a new upload (a new object with a new
/// creation time): a cheap validator for caches revalidating a segment.
fn live_etag(obj: &Object, len: u64) -> String {
    let ns = obj.created().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("\"{ns:x}-{len:x}\"")
}

/// `/streams` and `/metrics`: not readable by other sites' pages.
fn status_page(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    h.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    h.remove("timing-allow-origin");
    r
}

fn set_type(r: &mut Resp, ctype: &'static str) {
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ListenerInfo;

    fn conn() -> ConnInfo {
        let listener = ListenerInfo { name: "test", ingest: false, alt_svc: None, status_pages: true };
        ConnInfo { listener: Arc::new(listener), transport: Transport::H1Clear, remote: ([127, 0, 0, 1], 1).into() }
    }

    fn ingest_conn(ingest: bool) -> ConnInfo {
        let listener = ListenerInfo { name: "test", ingest, alt_svc: None, status_pages: true };
        ConnInfo { listener: Arc::new(listener), transport: Transport::H1Clear, remote: ([127, 0, 0, 1], 1).into() }
    }

    /// Method, path, ingest listener, request headers; status, a response
    /// header, the reason counted.
    type Case<'a> =
        (&'a str, &'a str, bool, &'a [(&'a str, &'a str)], u16, Option<(&'a str, &'a str)>, Option<&'a str>);

    /// Each refusal: its status, the header that tells the client what to
    /// do, and the reason it is counted under.
    #[tokio::test]
    async fn admission_refusals() {
        let config = OriginConfig { ingest_token: Some("secret".into()), ..OriginConfig::default() };
        let origin = Origin::new(Store::new(Default::default()), config);
        let auth = ("authorization", "Bearer secret");
        let cases: &[Case] = &[
            (
                "PUT",
                "/live/s/a.m4s",
                false,
                &[auth],
                405,
                Some(("allow", "GET, HEAD, OPTIONS")),
                Some("wrong_listener"),
            ),
            ("PUT", "/live/s/a.m4s", true, &[auth, ("origin", "https://x.example")], 403, None, Some("origin")),
            (
                "PUT",
                "/live/s/a.m4s",
                true,
                &[auth, ("transfer-encoding", "gzip, chunked")],
                501,
                None,
                Some("transfer_coding"),
            ),
            (
                "PUT",
                "/live/s/a.m4s",
                true,
                &[],
                401,
                Some(("www-authenticate", "Basic realm=\"h3live ingest\"")),
                Some("unauthorized"),
            ),
            ("POST", "/live/s/..", true, &[auth], 400, None, Some("bad_path")),
            ("DELETE", "/index.html", true, &[auth], 405, Some(("allow", "GET, HEAD, OPTIONS")), Some("not_writable")),
            ("PATCH", "/live/s/a.m4s", true, &[auth], 405, None, None),
            ("GET", "/live/s/%2e%2e", true, &[], 400, None, None),
        ];
        for &(method, path, ingest, headers, status, header, reason) in cases {
            let mut req = Request::builder().method(method).uri(path);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let before = origin.metrics.render(&origin.store);
            let r = origin.handle(req.body(NoBody).unwrap(), &ingest_conn(ingest)).await;
            assert_eq!(r.status().as_u16(), status, "{method} {path} {headers:?}");
            if let Some((k, v)) = header {
                assert_eq!(r.headers().get(k).and_then(|v| v.to_str().ok()), Some(v), "{method} {path}");
            }
            let counted = |text: &str, reason: &str| {
                text.lines().find(|l| l.contains(&format!("reason=\"{reason}\""))).map(str::to_string)
            };
            let after = origin.metrics.render(&origin.store);
            for label in ["wrong_listener", "origin", "transfer_coding", "unauthorized", "bad_path", "not_writable"] {
                let changed = counted(&before, label) != counted(&after, label);
                assert_eq!(changed, reason == Some(label), "{method} {path}: reason {label}");
            }
        }
    }

    #[tokio::test]
    async fn json_failure_is_a_500() {
        let origin = Origin::new(Store::new(Default::default()), OriginConfig::default());
        let ok = origin.json(&conn(), Ok("{}\n".into()), false);
        assert_eq!(ok.status(), StatusCode::OK);
        let broken = serde_json::from_str::<u8>("x").unwrap_err();
        let mut r = origin.json(&conn(), Err(broken), false);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = r.body_mut().next().await.unwrap().unwrap();
        assert!(!body.is_empty(), "an error text, not an empty body");
    }
}
