//! The server: one [`Origin`] behind every bound listener, until a shutdown
//! future resolves. `main` binds the listeners from flags; tests bind port 0
//! and call [`run`] directly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http::HeaderValue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cert::TlsKeys;
use crate::core::{Origin, OriginConfig};
use crate::moq::{Moq, MoqConfig};
use crate::store::{Store, StoreConfig};
use crate::transport::hyper::TcpMode;
use crate::transport::{self, Limits, ListenerInfo, Tasks};

/// Already-bound sockets; `None` disables that listener.
#[derive(Default)]
pub struct Listeners {
    /// Cleartext HTTP/1.1: ingest and reads.
    pub http: Option<TcpListener>,
    /// TLS, ALPN h2 + http/1.1, with `Alt-Svc` pointing at the h3 listener.
    pub https: Option<TcpListener>,
    /// TLS, HTTP/1.1 only, no Alt-Svc: the HTTP/1.1 arm of the A/B.
    pub https_h1: Option<TcpListener>,
    /// TLS, HTTP/2 only, no Alt-Svc: the HTTP/2 arm.
    pub https_h2: Option<TcpListener>,
    /// UDP socket for HTTP/3.
    pub h3: Option<std::net::UdpSocket>,
    /// UDP socket for HTTP/3 with ingest (loopback by default): the QUIC twin
    /// of the cleartext `http` listener.
    pub h3_ingest: Option<std::net::UdpSocket>,
    /// UDP socket for Media over QUIC (WebTransport).
    pub moq: Option<std::net::UdpSocket>,
    /// Cleartext HTTP/1.1 listener on the MoQ port number (TCP), read-only:
    /// serves `/certificate.sha256` where MoQ players look for it
    /// (`http://HOST:PORT/` URLs), and the rest of the origin's reads.
    pub moq_http: Option<TcpListener>,
}

impl Listeners {
    /// True if a TLS or QUIC listener is bound (a certificate is needed).
    pub fn need_tls(&self) -> bool {
        self.https.is_some()
            || self.https_h1.is_some()
            || self.https_h2.is_some()
            || self.h3.is_some()
            || self.h3_ingest.is_some()
    }

    /// The bound listeners' ports by name (`http`, `h3`, `h3_ingest`,
    /// `https`, `https_h1`, `https_h2`, `moq`), for `--ports-file`.
    pub fn ports(&self) -> Vec<(&'static str, u16)> {
        let tcp = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port());
        let udp = |s: &Option<std::net::UdpSocket>| s.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.port());
        [
            ("http", tcp(&self.http)),
            ("h3", udp(&self.h3)),
            ("h3_ingest", udp(&self.h3_ingest)),
            ("https", tcp(&self.https)),
            ("https_h1", tcp(&self.https_h1)),
            ("https_h2", tcp(&self.https_h2)),
            ("moq", udp(&self.moq)),
        ]
        .into_iter()
        .filter_map(|(name, port)| port.map(|p| (name, p)))
        .collect()
    }
}

/// Everything [`run`] needs besides the sockets.
#[derive(Clone)]
pub struct ServerConfig {
    /// Store limits.
    pub store: StoreConfig,
    /// HTTP settings.
    pub origin: OriginConfig,
    /// Connection limits and timeouts.
    pub limits: Limits,
    /// Certificate for the TLS and QUIC listeners (required if any is bound).
    pub tls: Option<TlsKeys>,
    /// Whether the ingest listeners (cleartext `http`, `h3_ingest`) accept ingest.
    pub ingest_on_http: bool,
    /// Serve `/streams` and `/metrics` on every listener, not only on the
    /// cleartext (admin) one.
    pub public_status: bool,
    /// The MoQ view and its endpoint's certificate (required if a MoQ socket is bound).
    pub moq: Option<MoqSetup>,
}

/// What the MoQ endpoint needs besides its socket.
#[derive(Clone)]
pub struct MoqSetup {
    /// The view's settings.
    pub view: MoqConfig,
    /// Its certificate: short-lived ECDSA, pinned by hash in browsers
    /// ([`crate::cert::webtransport_cert`]).
    pub keys: TlsKeys,
}

/// Serve until `shutdown` resolves, then stop gracefully: stop accepting,
/// send GOAWAY / close idle keep-alive connections, let in-flight responses
/// run for up to `limits.shutdown.grace`, close QUIC and wait until its
/// endpoint is idle.
pub async fn run(config: ServerConfig, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<()> {
    let origin = Arc::new(Origin::new(Store::new(config.store.clone()), config.origin.clone()));
    run_origin(origin, config, listeners, shutdown).await
}

/// [`run`] with an origin the caller keeps a handle to (for tests and tools
/// that read its store or metrics).
pub async fn run_origin(
    origin: Arc<Origin>,
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let tasks = Tasks::default();
    let keys = match (&config.tls, listeners.need_tls()) {
        (Some(k), _) => Some(k),
        (None, false) => None,
        (None, true) => anyhow::bail!("TLS and QUIC listeners need a certificate"),
    };
    let mut endpoints = Vec::new();
    let mut alt_svc = None;
    if let Some(sock) = listeners.h3 {
        let port = sock.local_addr()?.port();
        let info = ListenerInfo { name: "h3", ingest: false, alt_svc: None, status_pages: config.public_status };
        endpoints.push(start_h3(sock, keys.context("h3 needs a certificate")?, info, &config, &origin, &tasks)?);
        alt_svc = Some(HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))?);
    }
    if let Some(sock) = listeners.h3_ingest {
        let info = ListenerInfo { name: "h3-ingest", ingest: config.ingest_on_http, alt_svc: None, status_pages: true };
        endpoints.push(start_h3(sock, keys.context("h3 ingest needs a certificate")?, info, &config, &origin, &tasks)?);
    }
    if let Some(sock) = listeners.moq {
        endpoints.push(start_moq(sock, config.moq.as_ref().context("MoQ needs its setup")?, &config, &origin, &tasks)?);
    }
    let tcp = [
        (listeners.moq_http, "moq-http", None),
        (listeners.http, "http", None),
        (listeners.https, "https", Some(&[&b"h2"[..], b"http/1.1"][..])),
        (listeners.https_h1, "https-h1", Some(&[&b"http/1.1"[..]][..])),
        (listeners.https_h2, "https-h2", Some(&[&b"h2"[..]][..])),
    ];
    for (listener, name, alpn) in tcp {
        let Some(listener) = listener else { continue };
        let mode = match alpn {
            None => TcpMode::Clear,
            Some(alpn) => TcpMode::Tls(transport::tls::acceptor(keys.context("TLS needs a certificate")?, alpn)?),
        };
        let info = Arc::new(ListenerInfo {
            name,
            ingest: name == "http" && config.ingest_on_http,
            // The MoQ port's TCP twin is read-only and shows no status pages.
            alt_svc: if name == "https" { alt_svc.clone() } else { None },
            status_pages: name == "http" || (config.public_status && name != "moq-http"),
        });
        start_tcp(listener, mode, info, &config, &origin, &tasks)?;
    }
    let sweeper = tokio::spawn(sweep_idle_streams(origin.clone(), tasks.shutdown.clone()));
    let trimmer = tokio::spawn(return_freed_memory());

    shutdown.await;
    tasks.stop(config.limits.shutdown.grace, &endpoints).await;
    sweeper.abort();
    trimmer.abort();
    Ok(())
}

/// How often freed memory is handed back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Hand memory the allocator keeps after it was freed back to the kernel,
/// every [`TRIM_EVERY`]. glibc's malloc keeps freed chunks in its arenas
/// (one per thread that allocated, up to 8 per core) and returns only the
/// top of a heap: after a flood of connections closed, the origin's RSS
/// stayed near its peak (137.6 MB, of which 100 MB went back with
/// `malloc_trim(0)`; docs/security.md, "Floods"). `malloc_trim` returns the
/// free pages of every arena; it takes milliseconds on such a heap.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Start an HTTP/3 listener on `sock`; returns its endpoint (closed at
/// shutdown).
fn start_h3(
    sock: std::net::UdpSocket,
    keys: &TlsKeys,
    info: ListenerInfo,
    config: &ServerConfig,
    origin: &Arc<Origin>,
    tasks: &Tasks,
) -> Result<quinn::Endpoint> {
    let mut server_config = transport::tls::quic_server_config(keys, &[b"h3"])?;
    server_config.transport_config(Arc::new(transport::h3::transport_config(&config.limits, info.ingest)));
    let ep = transport::quic_endpoint(sock, server_config, &keys.key)?;
    info!(listener = info.name, addr = %ep.local_addr()?, ingest = info.ingest, "h3 (QUIC) listening");
    let info = Arc::new(info);
    tasks.tracker.spawn(transport::h3::serve(
        ep.clone(),
        info,
        origin.clone(),
        config.limits.clone(),
        tasks.shutdown.clone(),
        tasks.tracker.clone(),
    ));
    Ok(ep)
}

/// Start the MoQ view of the store and its WebTransport endpoint on `sock`.
fn start_moq(
    sock: std::net::UdpSocket,
    setup: &MoqSetup,
    config: &ServerConfig,
    origin: &Arc<Origin>,
    tasks: &Tasks,
) -> Result<quinn::Endpoint> {
    let mut server_config = transport::tls::quic_server_config(&setup.keys, &[web_transport_quinn::ALPN.as_bytes()])?;
    server_config.transport_config(Arc::new(transport::moq::transport_config(&config.limits)));
    let ep = transport::quic_endpoint(sock, server_config, &setup.keys.key)?;
    info!(addr = %ep.local_addr()?, "MoQ (WebTransport) listening");
    let metrics = origin.metrics().clone();
    let view = Moq::start(
        origin.store().clone(),
        setup.view.clone(),
        metrics.origin_delay_series("moq"),
        tasks.shutdown.clone(),
    );
    let server = transport::moq::MoqServer::new(view);
    metrics.add_collector(Box::new(transport::moq::Collector(server.clone())));
    let info = Arc::new(ListenerInfo { name: "moq", ingest: false, alt_svc: None, status_pages: false });
    tasks.tracker.spawn(transport::moq::serve(
        ep.clone(),
        info,
        server,
        config.limits.clone(),
        metrics,
        tasks.shutdown.clone(),
        tasks.tracker.clone(),
    ));
    Ok(ep)
}

/// Start one HTTP/1.1 / HTTP/2 listener.
fn start_tcp(
    listener: TcpListener,
    mode: TcpMode,
    info: Arc<ListenerInfo>,
    config: &ServerConfig,
    origin: &Arc<Origin>,
    tasks: &Tasks,
) -> Result<()> {
    info!(listener = info.name, addr = %listener.local_addr()?, ingest = info.ingest, "listening");
    tasks.tracker.spawn(transport::hyper::serve(
        listener,
        mode,
        info,
        origin.clone(),
        config.limits.clone(),
        tasks.shutdown.clone(),
        tasks.tracker.clone(),
    ));
    Ok(())
}

/// Drop streams whose encoder went away, once a second, until `shutdown`.
async fn sweep_idle_streams(origin: Arc<Origin>, shutdown: CancellationToken) {
    let store = origin.store();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for name in store.sweep_idle() {
                    info!(stream = name, "stream idle: dropped");
                    origin.stream_dropped(&name);
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// A future that resolves at the first SIGINT or SIGTERM (logged), for
/// binaries' shutdown futures. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the listeners are still being set up is not lost (the process would
/// otherwise die of the default action). Call it inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => info!("SIGINT"),
                _ = term.recv() => info!("SIGTERM"),
            },
            _ => {
                warn!("cannot install signal handlers: stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
}
