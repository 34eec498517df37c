//! `h3live relay`: the encoder relay. It listens on loopback for the
//! encoder's chunked PUTs and DELETEs (the URL shapes the origin takes) and
//! forwards each to one or more origins as its bytes arrive, over HTTP/1.1
//! or HTTP/3 per origin.
//!
//! ```text
//! ffmpeg ──PUT──▶ relay (loopback) ──▶ origin A   (HTTP/1.1 or HTTP/3)
//!                     journal      └─▶ origin B   (hot standby)
//! ```
//!
//! The encoder side never waits for an origin: a request's body goes into
//! the [`journal`] (one growing object per request, the store's type) and
//! ffmpeg gets its answer when its body ends. Each [`upstream`] replays the
//! journal on its own connections at its own pace: retries, re-sending
//! after an origin restart, the live-edge jump of a far-behind origin.
//! Built on hyper (the encoder's side) and the project's client
//! ([`crate::client`]: hyper and h3) for the origins: no HTTP of its own.

pub mod journal;
pub mod metrics;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::{header, Method, Request as HttpRequest, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument as _};

use crate::client::{Connector, QuicTuning};
use crate::conn::Transport;
use crate::core::route::Route;
use crate::store::{Kind, Object};
use crate::units::{duration_in, size_in};
use journal::{Journal, Lane, Request};
use metrics::RelayMetrics;
use upstream::{Upstream, UpstreamConfig};

/// The relay's default listening port (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 8081;

/// How the relay pushes to an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IngestTransport {
    /// Cleartext HTTP/1.1 chunked PUT to the origin's --http listener.
    H1,
    /// HTTP/3 to the origin's --h3-ingest listener (same address, UDP).
    H3,
}

/// `h3live relay` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Where the encoder pushes to (keep it on loopback: there is no token check here).
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Write the bound address (HOST:PORT) to this file once listening (for --listen 127.0.0.1:0).
    #[arg(long, value_name = "FILE")]
    pub addr_file: Option<PathBuf>,
    /// An origin to push to, http://[user:TOKEN@]HOST:PORT (its --http address; over h3 the same
    /// address over UDP, its --h3-ingest). Repeatable: every origin gets every request.
    #[arg(long = "origin", value_name = "URL", required = true)]
    pub origins: Vec<String>,
    /// How to push: h1 (HTTP/1.1 chunked PUT) or h3. Once for every origin, or once per --origin in
    /// the same order.
    #[arg(long = "ingest-transport", value_enum, value_name = "h1|h3")]
    pub ingest_transports: Vec<IngestTransport>,
    /// Certificate (PEM) to trust for h3 origins.
    #[arg(long, default_value = "certs/cert.pem")]
    pub ca: PathBuf,
    /// TLS name checked in h3 origins' certificates (default: each URL's host).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Time allowed to connect to an origin, for it to take each chunk, and to answer. An h3
    /// connection silent for this long is dead.
    #[arg(long, default_value = "3s", value_parser = duration_in(Duration::from_millis(100), Duration::from_secs(3600)))]
    pub upstream_timeout: Duration,
    /// QUIC congestion controller towards h3 origins. bbr (as the origin's default) keeps a live
    /// upload at its rate over a lossy path, where quinn's cubic falls behind.
    #[arg(long, value_enum, default_value = "bbr")]
    pub h3_congestion: crate::transport::Congestion,
    /// Bytes an origin may be behind (not yet sent to it) before it jumps to the live edge.
    #[arg(long, default_value = "32M", value_parser = size_in(1 << 10, 1 << 40))]
    pub max_behind: u64,
    /// Largest request body taken from the encoder (413 beyond).
    #[arg(long, default_value = "64M", value_parser = size_in(1 << 10, 64 << 30))]
    pub max_object_size: u64,
    /// An encoder body that brings no byte for this long is broken off (and forwarded as broken).
    #[arg(long, default_value = "30s", value_parser = duration_in(Duration::from_secs(1), Duration::from_secs(3600)))]
    pub ingest_idle_timeout: Duration,
    /// On SIGINT/SIGTERM, time allowed for the origins to get what the encoder already sent.
    #[arg(long, default_value = "5s", value_parser = duration_in(Duration::ZERO, Duration::from_secs(60)))]
    pub shutdown_grace: Duration,
    /// Also stop (as on SIGTERM) when stdin reaches its end: a script that started the relay with a
    /// pipe on its stdin takes the relay with it when it dies.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

/// One parsed `--origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginUrl {
    /// `http://host:port`, no credentials: for logs and labels.
    shown: String,
    /// Host (name or address, no brackets).
    host: String,
    /// Port.
    port: u16,
    /// `Basic ...` from the user info.
    auth: Option<String>,
}

fn parse_origin(s: &str) -> Result<OriginUrl> {
    let uri: http::Uri = s.parse().with_context(|| format!("--origin {s:?}: not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or("http");
    if scheme != "http" && scheme != "https" {
        bail!("--origin {s:?}: use http://HOST:PORT");
    }
    if !matches!(uri.path(), "" | "/") {
        bail!("--origin {s:?}: give the origin's base URL, without a path (the relay keeps the encoder's /live/... paths)");
    }
    let authority = uri.authority().with_context(|| format!("--origin {s:?}: no host"))?.as_str();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let hp: http::uri::Authority = hostport.parse()?;
    let port = hp.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = hp.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let auth = userinfo.map(|u| {
        use base64::Engine as _;
        let u = percent_encoding::percent_decode_str(u).decode_utf8_lossy();
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(u.as_bytes()))
    });
    Ok(OriginUrl { shown: format!("{scheme}://{hostport}"), host, port, auth })
}

/// The relay: journal, upstreams, counters.
pub struct Relay {
    /// What the encoder sent, for the upstreams.
    journal: Arc<Journal>,
    /// Every origin.
    upstreams: Vec<Arc<Upstream>>,
    /// Counters.
    metrics: Arc<RelayMetrics>,
    /// Limits of the encoder's side.
    max_object_size: u64,
    idle_timeout: Duration,
    /// Stops the upstream workers.
    shutdown: CancellationToken,
    /// Upstream workers.
    tasks: TaskTracker,
}

impl Relay {
    /// A relay for `args` (origins resolved, connectors built).
    pub async fn new(args: &RelayArgs) -> Result<Arc<Relay>> {
        let n = args.origins.len();
        let transports = match args.ingest_transports.len() {
            0 => vec![IngestTransport::H1; n],
            1 => vec![args.ingest_transports[0]; n],
            k if k == n => args.ingest_transports.clone(),
            k => bail!("--ingest-transport given {k} times for {n} origins: give it once, or once per --origin"),
        };
        let journal = Arc::new(Journal::new(n));
        let metrics = Arc::new(RelayMetrics::default());
        let mut roots = None;
        let mut upstreams = Vec::new();
        for (i, (url, t)) in args.origins.iter().zip(transports).enumerate() {
            let o = parse_origin(url)?;
            let addr = tokio::net::lookup_host((o.host.as_str(), o.port))
                .await
                .with_context(|| format!("resolving {}", o.shown))?
                .next()
                .with_context(|| format!("{}: no address", o.shown))?;
            let connector = match t {
                IngestTransport::H1 => Connector::new(Transport::H1Clear, addr, &o.host, &[])?,
                IngestTransport::H3 => {
                    if roots.is_none() {
                        roots = Some(crate::cert::load_certs(&args.ca).with_context(|| {
                            format!("h3 origins: cannot read --ca {} (the origin's certificate)", args.ca.display())
                        })?);
                    }
                    let name = args.server_name.clone().unwrap_or_else(|| o.host.clone());
                    let tuning = QuicTuning { idle_timeout: args.upstream_timeout, congestion: args.h3_congestion };
                    Connector::new(Transport::H3, addr, &name, roots.as_deref().unwrap_or_default())?
                        .quic_tuning(tuning)?
                }
            };
            let name = format!("{} {}", o.shown, if t == IngestTransport::H3 { "h3" } else { "h1" });
            let config = UpstreamConfig {
                name: name.clone(),
                connector,
                auth: o.auth,
                timeout: args.upstream_timeout,
                max_behind: args.max_behind,
            };
            upstreams.push(Arc::new(Upstream::new(i, config, journal.clone(), metrics.upstream(&name))));
        }
        Ok(Arc::new(Relay {
            journal,
            upstreams,
            metrics,
            max_object_size: args.max_object_size,
            idle_timeout: args.ingest_idle_timeout,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }))
    }

    /// The upstreams, in `--origin` order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The `/metrics` text.
    pub fn render_metrics(&self) -> String {
        for up in &self.upstreams {
            up.metrics.behind.set(up.behind() as i64);
        }
        self.metrics.lanes.set(self.journal.lanes_held().len() as i64);
        self.metrics.render()
    }

    /// A lane for a new encoder connection, replayed by every upstream.
    fn lane(&self) -> Arc<Lane> {
        let lane = self.journal.lane();
        for up in &self.upstreams {
            self.tasks.spawn(up.clone().run_lane(lane.clone(), self.shutdown.clone()));
        }
        lane
    }

    /// Serve the encoder on `listener` until `shutdown`; then give the
    /// upstreams up to `grace` to send what is left.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let conns = TaskTracker::new();
        let stop = CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let relay = self.clone();
            let stop = stop.clone();
            conns.spawn(
                async move { relay.serve_conn(tcp, stop).await }.instrument(tracing::info_span!("encoder", %remote)),
            );
        }
        stop.cancel();
        conns.close();
        let _ = tokio::time::timeout(grace, conns.wait()).await;
        // Let the upstreams finish what the encoder sent, within the grace.
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && self.upstreams.iter().any(|u| u.behind() > 0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
    }

    async fn serve_conn(self: Arc<Self>, tcp: tokio::net::TcpStream, stop: CancellationToken) {
        // The lane is made at the connection's first ingest request.
        let lane: Arc<std::sync::OnceLock<Arc<Lane>>> = Arc::default();
        let relay = self.clone();
        let l = lane.clone();
        let service = hyper::service::service_fn(move |req: HttpRequest<Incoming>| {
            let (relay, lane) = (relay.clone(), l.clone());
            async move { Ok::<_, std::convert::Infallible>(relay.handle(req, &lane).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(tcp), service);
        tokio::pin!(conn);
        let r = tokio::select! {
            r = conn.as_mut() => r,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = r {
            debug!(error = %e, "encoder connection ended with an error");
        }
        if let Some(lane) = lane.get() {
            lane.close();
        }
    }

    async fn handle(&self, req: HttpRequest<Incoming>, lane: &std::sync::OnceLock<Arc<Lane>>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if method == Method::GET || method == Method::HEAD {
            return match path.as_str() {
                "/metrics" => text(StatusCode::OK, self.render_metrics()),
                "/healthz" => text(StatusCode::OK, "ok\n".into()),
                _ => text(StatusCode::NOT_FOUND, "404 the relay only takes ingest; /metrics, /healthz\n".into()),
            };
        }
        if !matches!(method, Method::PUT | Method::POST | Method::DELETE) {
            self.metrics.refused.inc();
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n".into());
        }
        // A page in a browser on this machine can reach loopback: never from a page.
        if req.headers().contains_key(header::ORIGIN) {
            self.metrics.refused.inc();
            warn!(%method, path, "refused: a request from a web page (Origin header)");
            return text(StatusCode::FORBIDDEN, "403 ingest from a web page is not allowed\n".into());
        }
        let (stream, file) = match Route::parse(&path) {
            Ok(Route::Live { stream, file }) => (stream, file),
            Ok(_) => {
                self.metrics.refused.inc();
                warn!(%method, path, "refused: only /live/<stream>/<file> is writable");
                return text(StatusCode::METHOD_NOT_ALLOWED, "405 only /live/<stream>/<file> is writable\n".into());
            }
            Err(e) => {
                self.metrics.refused.inc();
                warn!(%method, path, "refused: {e}");
                return text(StatusCode::BAD_REQUEST, format!("400 {e}\n"));
            }
        };
        self.metrics.requests.inc();
        let lane = lane.get_or_init(|| self.lane()).clone();
        let run = self.journal.run_for(&stream, &file, &method);
        if method == Method::DELETE {
            self.journal.deleted(&stream, &file);
        }
        let (body, mut writer) = Object::growing();
        let request = Arc::new(Request { method: method.clone(), stream, file, body, run });
        lane.push(request.clone());
        let mut incoming = req.into_body();
        loop {
            let piece = match tokio::time::timeout(self.idle_timeout, crate::frames::next_data(&mut incoming)).await {
                Ok(p) => p,
                Err(_) => {
                    writer.abort();
                    self.metrics.broken_uploads.inc();
                    warn!(path, idle = ?self.idle_timeout, "encoder upload idle: broken off (forwarded as broken)");
                    return text(StatusCode::REQUEST_TIMEOUT, "408 request body idle for too long\n".into());
                }
            };
            match piece {
                None => break,
                Some(Ok(data)) => {
                    self.metrics.ingest_bytes.inc_by(data.len() as u64);
                    if writer.len() + data.len() as u64 > self.max_object_size {
                        writer.abort();
                        self.metrics.refused.inc();
                        warn!(path, limit = self.max_object_size, "encoder upload too large: broken off");
                        return text(StatusCode::PAYLOAD_TOO_LARGE, "413 too large\n".into());
                    }
                    writer.push(data);
                }
                Some(Err(e)) => {
                    let received = writer.len();
                    writer.abort();
                    self.metrics.broken_uploads.inc();
                    warn!(path, received, error = %e, "encoder upload broken: forwarded as broken");
                    return text(StatusCode::BAD_REQUEST, "400 request body broken\n".into());
                }
            }
        }
        writer.finish();
        if method != Method::DELETE && request.kind() != Kind::Media {
            self.journal.completed(&request);
        }
        let status = if method == Method::DELETE { StatusCode::NO_CONTENT } else { StatusCode::CREATED };
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        r
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

/// `h3live relay`: bind, serve until SIGINT/SIGTERM.
pub async fn main(args: RelayArgs) -> Result<()> {
    let signal = crate::server::shutdown_signal();
    let eof = args.exit_on_stdin_eof;
    let shutdown = async move {
        let stdin_closed = async {
            if !eof {
                return std::future::pending().await;
            }
            let mut buf = [0u8; 256];
            let mut stdin = tokio::io::stdin();
            while tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await.is_ok_and(|n| n > 0) {}
            info!("stdin closed: stopping");
        };
        tokio::select! {
            () = signal => {}
            () = stdin_closed => {}
        }
    };
    let listener =
        crate::transport::bind_tcp(args.listen).with_context(|| format!("binding --listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    let relay = Relay::new(&args).await?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the relay listens beyond loopback: anyone who reaches it can push to the origins");
    }
    let names: Vec<&str> = relay.upstreams().iter().map(|u| u.name()).collect();
    info!(%addr, origins = ?names, "relay listening: the encoder pushes here");
    if let Some(f) = &args.addr_file {
        std::fs::write(f, format!("{addr}\n")).with_context(|| format!("writing {}", f.display()))?;
    }
    relay.serve(listener, shutdown, args.shutdown_grace).await;
    info!("relay stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls() {
        let o = parse_origin("http://ffmpeg:s%40cret@127.0.0.1:8080").unwrap();
        assert_eq!((o.shown.as_str(), o.host.as_str(), o.port), ("http://127.0.0.1:8080", "127.0.0.1", 8080));
        assert_eq!(o.auth.as_deref(), Some("Basic ZmZtcGVnOnNAY3JldA=="));
        let o = parse_origin("http://[::1]:9000/").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.auth), ("::1", 9000, None));
        assert!(parse_origin("http://127.0.0.1:8080/live/x").is_err());
        assert!(parse_origin("ftp://h:1").is_err());
    }
}
