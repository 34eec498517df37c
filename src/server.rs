//! The server: one [`Origin`] behind every bound listener, until a shutdown
//! future resolves. `main` binds the listeners from flags; tests bind port 0
//! and call [`run`] directly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http::HeaderValue;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cert::TlsKeys;
use crate::core::{Origin, OriginConfig};
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
    /// Whether the cleartext listener accepts ingest.
    pub ingest_on_http: bool,
    /// Serve `/streams` and `/metrics` on every listener, not only on the
    /// cleartext (admin) one.
    pub public_status: bool,
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
    let (token, tracker) = (tasks.shutdown.clone(), tasks.tracker.clone());
    let limits = config.limits.clone();
    let needs_tls = listeners.https.is_some()
        || listeners.https_h1.is_some()
        || listeners.https_h2.is_some()
        || listeners.h3.is_some();
    let keys = match (&config.tls, needs_tls) {
        (Some(k), _) => Some(k),
        (None, false) => None,
        (None, true) => anyhow::bail!("TLS and QUIC listeners need a certificate"),
    };

    let mut endpoint = None;
    let mut alt_svc = None;
    if let Some(sock) = listeners.h3 {
        let keys = keys.context("h3 needs a certificate")?;
        let port = sock.local_addr()?.port();
        let mut server_config = transport::tls::quic_server_config(keys, &[b"h3"])?;
        server_config.transport_config(Arc::new(transport::h3::transport_config(&limits)));
        let ep = transport::quic_endpoint(sock, server_config)?;
        info!(addr = %ep.local_addr()?, "h3 (QUIC) listening");
        alt_svc = Some(HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))?);
        let info =
            Arc::new(ListenerInfo { name: "h3", ingest: false, alt_svc: None, status_pages: config.public_status });
        tracker.spawn(transport::h3::serve(
            ep.clone(),
            info,
            origin.clone(),
            limits.clone(),
            token.clone(),
            tracker.clone(),
        ));
        endpoint = Some(ep);
    }

    let tcp = [
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
            alt_svc: if name == "https" { alt_svc.clone() } else { None },
            status_pages: name == "http" || config.public_status,
        });
        info!(listener = name, addr = %listener.local_addr()?, ingest = info.ingest, "listening");
        tracker.spawn(transport::hyper::serve(
            listener,
            mode,
            info,
            origin.clone(),
            limits.clone(),
            token.clone(),
            tracker.clone(),
        ));
    }

    // Drop streams whose encoder went away.
    let sweeper = {
        let (origin, token) = (origin.clone(), token.clone());
        tokio::spawn(async move {
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
                    _ = token.cancelled() => return,
                }
            }
        })
    };

    shutdown.await;
    tasks.stop(limits.shutdown.grace, endpoint.as_slice()).await;
    sweeper.abort();
    Ok(())
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
