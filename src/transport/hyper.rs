//! HTTP/1.1 and HTTP/2 over TCP (cleartext or TLS) through hyper 1.x.
//!
//! Connections come in through the listener's [`Door`]: at most
//! `max_connections` per listener, at most `max_connections_per_ip` per
//! client address, TLS handshakes in the connection task under the handshake
//! timeout. On the ingest listener a connection whose first completed
//! request head is ingest moves to a budget of its own
//! (`max_ingest_connections`), giving its connection slot back: viewers and
//! connections that never finish a head cannot lock out the encoder. A full
//! budget closes its connections that do no useful work for a newcomer
//! ([`super::overload`]); a connection told so is closed at once. Sockets
//! get TCP_NODELAY (small manifest bodies would otherwise trail their
//! headers by the Nagle delay) and TCP keepalive. A connection with no open
//! request for the idle timeout is closed (HTTP/2: GOAWAY), pings or not; one
//! whose response is not read for the send timeout is closed at once.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument as _};

use super::accept::Door;
use super::overload::Pool;
use super::{Activity, ConnInfo, Limits, ListenerInfo, RequestGuard, Transport};
use crate::conn::request_span;
use crate::core::{is_ingest, Body, BodyError, IngestBody, Origin, ResponseBodyError, SharedFloor};

/// A hyper request body as seen by ingest.
pub struct HyperIngest(pub Incoming);

impl IngestBody for HyperIngest {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        crate::frames::next_data(&mut self.0).await.map(|r| r.map_err(BodyError::new))
    }
}

/// The core's response body as a hyper body: one frame per stored chunk,
/// returned as soon as the chunk exists (hyper flushes when the body is
/// pending). An aborted object yields an error: hyper then closes an
/// HTTP/1.1 connection without the final chunk and resets an HTTP/2 stream.
pub struct HyperBody(pub Body, pub Option<RequestGuard>);

impl http_body::Body for HyperBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        self.get_mut().0.poll_next(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match self.0.exact_len() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// How long a connection closed for a newcomer may take to send its GOAWAY.
const EVICTED_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// hyper's HTTP/1.1 read buffer, which also caps a request head (431 beyond).
const H1_MAX_BUF: usize = 64 << 10;

/// Which protocols a TCP listener speaks.
#[derive(Clone)]
pub enum TcpMode {
    /// Cleartext HTTP/1.1.
    Clear,
    /// TLS; the negotiated ALPN picks HTTP/2 or HTTP/1.1.
    Tls(tokio_rustls::TlsAcceptor),
}

/// Serve one TCP listener until `shutdown` is cancelled: connections come in
/// through a [`Door`]; their tasks are spawned on `tracker` and stop
/// gracefully when `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    mode: TcpMode,
    info: Arc<ListenerInfo>,
    origin: Arc<Origin>,
    limits: Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let metrics = origin.metrics().clone();
    // The ingest listener's second budget, for connections that ingest.
    let ingest =
        info.ingest.then(|| Pool::new(info.name, "ingest", limits.conn.max_ingest_connections, metrics.clone()));
    let door = Door::new(info, &limits.conn, metrics, ingest.clone(), shutdown.clone(), tracker);
    let d = door.clone();
    door.accept_tcp(listener, move |stream, remote, activity| {
        let _ = stream.set_nodelay(true);
        super::set_keepalive(&stream, limits.tcp.keepalive);
        if let Some(lowat) = limits.tcp.notsent_lowat {
            set_notsent_lowat(&stream, lowat);
        }
        let (door, origin, mode, limits, shutdown, ingest) =
            (d.clone(), origin.clone(), mode.clone(), limits.clone(), shutdown.clone(), ingest.clone());
        async move {
            let listener = door.info().clone();
            let ctx = ConnCtx { origin, activity, ingest, door: door.clone(), shutdown };
            match mode {
                TcpMode::Clear => {
                    let conn = ConnInfo { listener, transport: Transport::H1Clear, remote };
                    serve_conn(stream, conn, ctx, &limits).await;
                }
                TcpMode::Tls(acceptor) => {
                    let handshake = door.handshake("TLS", &ctx.activity, acceptor.accept(stream));
                    let Some(tls) = handshake.await else { return };
                    let transport = match tls.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Transport::H2,
                        _ => Transport::H1Tls,
                    };
                    let conn = ConnInfo { listener, transport, remote };
                    serve_conn(tls, conn, ctx, &limits).await;
                }
            }
        }
    })
    .await
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_notsent_lowat(stream: &tokio::net::TcpStream, lowat: u32) {
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(lowat) {
        debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_notsent_lowat(_stream: &tokio::net::TcpStream, _lowat: u32) {}

/// How long a connection whose first request is ingest waits for the slot
/// of an ingest connection closed for it (an idle one closes at once).
const INGEST_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What a connection's task is given besides its stream.
struct ConnCtx {
    /// The core.
    origin: Arc<Origin>,
    /// The connection's requests and slot (overload, timeouts).
    activity: Arc<Activity>,
    /// The ingest listener's ingest budget.
    ingest: Option<Arc<Pool>>,
    /// The listener's door (refusals are counted there).
    door: Door,
    /// Cancelled at shutdown.
    shutdown: CancellationToken,
}

async fn serve_conn<S>(stream: S, conn: ConnInfo, ctx: ConnCtx, limits: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnCtx { origin, activity, ingest, door, shutdown } = ctx;
    let _gauge = origin.metrics().connection(conn.transport);
    let conn = Arc::new(conn);
    let transport = conn.transport;
    // Set by the first request: later ones never change the budget.
    let classified = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = activity.clone();
    let stall_origin = origin.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let (origin, conn, activity) = (origin.clone(), conn.clone(), watched.clone());
        let guard = activity.begin();
        let first = !classified.swap(true, std::sync::atomic::Ordering::Relaxed);
        let ingesting = is_ingest(req.method());
        // A connection whose first completed head is ingest moves to the
        // ingest budget, unless it waited for its head in it (spare slot);
        // one that waited there and reads is refused.
        let spare = first && ingest.as_ref().is_some_and(|p| activity.in_pool(p));
        let to_ingest = ingest.clone().filter(|_| first && ingesting && !spare);
        let refuse_viewer = spare && !ingesting;
        let door = door.clone();
        if ingesting {
            // Shared with the core, which counts the body's bytes in it.
            let floor = Arc::new(SharedFloor::default());
            activity.watch_upload(&floor);
            req.extensions_mut().insert(floor);
        }
        let span = request_span(conn.transport, req.method(), req.uri().path());
        async move {
            if refuse_viewer {
                door.at_cap(conn.remote, "answering 503 to a read that waited in an ingest slot");
                return Ok(origin.busy(&conn, false).map(|b| HyperBody(b, Some(guard))));
            }
            if let Some(pool) = to_ingest {
                if !pool.join_or_evict(&activity, INGEST_SLOT_WAIT).await {
                    return Ok(origin.busy(&conn, true).map(|b| HyperBody(b, Some(guard))));
                }
            }
            let resp = origin.handle(req.map(HyperIngest), &conn).await;
            activity.watch(resp.body().progress());
            Ok::<_, Infallible>(resp.map(|b| HyperBody(b, Some(guard))))
        }
        .instrument(span)
    });
    // One builder for both protocols, pinned to the one this connection speaks.
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut builder = if transport == Transport::H2 { builder.http2_only() } else { builder.http1_only() };
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.h1.header_read_timeout)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.http.max_header_bytes)
        .max_concurrent_streams(limits.http.max_streams_per_connection)
        .keep_alive_interval(Some(limits.h2.ping_interval))
        .keep_alive_timeout(limits.h2.ping_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = activity.idle(limits.http.idle_timeout) => {
            debug!("connection idle: closing");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.shutdown.grace, conn).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
        _ = activity.stall(limits.http.send_timeout, &stall_origin) => {
            debug!(timeout = ?limits.http.send_timeout, "a response was not read for the send timeout: closing the connection");
            Ok(())
        }
        _ = activity.evicted() => {
            // Idle or a slow upload, closed for a newcomer: say GOAWAY if it
            // goes out at once, never wait for the client.
            debug!("closed for a newcomer (connection budget full)");
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(EVICTED_GRACE, conn).await;
            Ok(())
        }
    };
    if let Err(e) = result {
        // Peers going away mid-response is normal for viewers.
        debug!(error = %e, "connection ended with an error");
    }
}
