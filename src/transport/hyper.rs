//! HTTP/1.1 and HTTP/2 over TCP (cleartext or TLS) through hyper 1.x.
//!
//! Connections come in through the listener's [`Door`]: at most
//! `max_connections` per listener (the ingest listener has
//! `max_ingest_connections` more, which only connections whose first request
//! is ingest may use: viewers cannot lock out the encoder), at most
//! `max_connections_per_ip` per client address, TLS handshakes in the
//! connection task under the handshake timeout. Sockets
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument as _};

use super::accept::Door;
use super::{Activity, ConnInfo, Limits, ListenerInfo, RequestGuard, Transport};
use crate::conn::request_span;
use crate::core::{is_ingest, Body, BodyError, IngestBody, Origin, ResponseBodyError};

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
    // The ingest listener admits viewers and ingest from separate budgets.
    let budget = info.ingest.then(|| Budget {
        viewers: Arc::new(Semaphore::new(limits.conn.max_connections)),
        ingest: Arc::new(Semaphore::new(limits.conn.max_ingest_connections)),
    });
    let total = limits.conn.max_connections + if info.ingest { limits.conn.max_ingest_connections } else { 0 };
    let door = Door::new(
        info,
        total,
        limits.conn.max_connections_per_ip,
        limits.conn.handshake_timeout,
        shutdown.clone(),
        tracker,
    );
    let d = door.clone();
    door.accept_tcp(listener, move |stream, remote| {
        let _ = stream.set_nodelay(true);
        super::set_keepalive(&stream, limits.tcp.keepalive);
        if let Some(lowat) = limits.tcp.notsent_lowat {
            set_notsent_lowat(&stream, lowat);
        }
        let (door, origin, mode, limits, shutdown, budget) =
            (d.clone(), origin.clone(), mode.clone(), limits.clone(), shutdown.clone(), budget.clone());
        async move {
            let listener = door.info().clone();
            match mode {
                TcpMode::Clear => {
                    let conn = ConnInfo { listener, transport: Transport::H1Clear, remote };
                    serve_conn(stream, conn, origin, &limits, shutdown, budget).await;
                }
                TcpMode::Tls(acceptor) => {
                    let Some(tls) = door.handshake("TLS", acceptor.accept(stream)).await else { return };
                    let transport = match tls.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Transport::H2,
                        _ => Transport::H1Tls,
                    };
                    let conn = ConnInfo { listener, transport, remote };
                    serve_conn(tls, conn, origin, &limits, shutdown, budget).await;
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

/// Separate connection budgets of the ingest listener.
#[derive(Clone)]
struct Budget {
    /// Connections whose first request reads.
    viewers: Arc<Semaphore>,
    /// Connections whose first request is ingest (PUT/POST/DELETE).
    ingest: Arc<Semaphore>,
}

async fn serve_conn<S>(
    stream: S,
    conn: ConnInfo,
    origin: Arc<Origin>,
    limits: &Limits,
    shutdown: CancellationToken,
    budget: Option<Budget>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _gauge = origin.metrics().connection(conn.transport);
    let conn = Arc::new(conn);
    let transport = conn.transport;
    let activity = Arc::new(Activity::default());
    // The budget permit this connection holds, taken by its first request.
    let class: Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>> = Default::default();
    let watched = activity.clone();
    let stall_origin = origin.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (origin, conn, activity) = (origin.clone(), conn.clone(), watched.clone());
        let guard = activity.begin();
        let admitted = match &budget {
            None => true,
            Some(b) => {
                let mut class = class.lock().unwrap_or_else(|e| e.into_inner());
                if class.is_none() {
                    let sem = if is_ingest(req.method()) { &b.ingest } else { &b.viewers };
                    *class = sem.clone().try_acquire_owned().ok();
                }
                class.is_some()
            }
        };
        let span = request_span(conn.transport, req.method(), req.uri().path());
        async move {
            if !admitted {
                return Ok(origin.busy(&conn).map(|b| HyperBody(b, Some(guard))));
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
    };
    if let Err(e) = result {
        // Peers going away mid-response is normal for viewers.
        debug!(error = %e, "connection ended with an error");
    }
}
