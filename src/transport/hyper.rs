//! HTTP/1.1 and HTTP/2 over TCP (cleartext or TLS) through hyper 1.x.
//!
//! The accept loop takes a connection permit before accepting, so at most
//! `max_connections` connections are served per listener; TLS handshakes run
//! in the connection task under a timeout and never block the loop. Sockets
//! get TCP_NODELAY (small manifest bodies would otherwise trail their
//! headers by the Nagle delay).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument as _};

use super::{ConnInfo, Limits, ListenerInfo, Transport};
use crate::core::{Body, BodyError, IngestBody, Origin};
use crate::store::ObjectError;

/// A hyper request body as seen by ingest.
pub struct HyperIngest(pub Incoming);

impl IngestBody for HyperIngest {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        loop {
            match self.0.frame().await? {
                Err(e) => return Some(Err(BodyError(e.to_string()))),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Some(Ok(data));
                        }
                    }
                }
            }
        }
    }
}

/// The core's response body as a hyper body: one frame per stored chunk,
/// returned as soon as the chunk exists (hyper flushes when the body is
/// pending). An aborted object yields an error: hyper then closes an
/// HTTP/1.1 connection without the final chunk and resets an HTTP/2 stream.
pub struct HyperBody(pub Body);

impl http_body::Body for HyperBody {
    type Data = Bytes;
    type Error = ObjectError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ObjectError>>> {
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

/// Which protocols a TCP listener speaks.
#[derive(Clone)]
pub enum TcpMode {
    /// Cleartext HTTP/1.1.
    Clear,
    /// TLS; the negotiated ALPN picks HTTP/2 or HTTP/1.1.
    Tls(tokio_rustls::TlsAcceptor),
}

/// Serve one TCP listener until `shutdown` is cancelled. Connection tasks are
/// spawned on `tracker` and stop gracefully when `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    mode: TcpMode,
    info: Arc<ListenerInfo>,
    origin: Arc<Origin>,
    limits: Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(listener = info.name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        if let Some(lowat) = limits.tcp_notsent_lowat {
            set_notsent_lowat(&stream, lowat);
        }
        let (origin, info, mode, limits, shutdown) =
            (origin.clone(), info.clone(), mode.clone(), limits.clone(), shutdown.clone());
        let span = info_span!("conn", listener = info.name, %remote);
        tracker.spawn(
            async move {
                let _permit = permit;
                match mode {
                    TcpMode::Clear => {
                        let conn = ConnInfo { listener: info, transport: Transport::H1Clear, remote };
                        serve_conn(stream, conn, origin, &limits, shutdown).await;
                    }
                    TcpMode::Tls(acceptor) => {
                        let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
                            Err(_) => return debug!("TLS handshake timed out"),
                        };
                        let transport = match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Transport::H2,
                            _ => Transport::H1Tls,
                        };
                        let conn = ConnInfo { listener: info, transport, remote };
                        serve_conn(tls, conn, origin, &limits, shutdown).await;
                    }
                }
            }
            .instrument(span),
        );
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_notsent_lowat(stream: &tokio::net::TcpStream, lowat: u32) {
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(lowat) {
        debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_notsent_lowat(_stream: &tokio::net::TcpStream, _lowat: u32) {}

async fn serve_conn<S>(stream: S, conn: ConnInfo, origin: Arc<Origin>, limits: &Limits, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _gauge = origin.metrics().connection(conn.transport);
    let conn = Arc::new(conn);
    let transport = conn.transport;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (origin, conn) = (origin.clone(), conn.clone());
        let span = info_span!("req", transport = %conn.transport, method = %req.method(), path = %req.uri().path(),
            stream = tracing::field::Empty, file = tracing::field::Empty);
        async move {
            let resp = origin.handle(req.map(HyperIngest), &conn).await;
            Ok::<_, Infallible>(resp.map(HyperBody))
        }
        .instrument(span)
    });
    // One builder for both protocols, pinned to the one this connection speaks.
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut builder = if transport == Transport::H2 { builder.http2_only() } else { builder.http1_only() };
    builder.http1().timer(TokioTimer::new()).keep_alive(true).header_read_timeout(limits.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(Some(limits.idle_timeout / 3))
        .keep_alive_timeout(limits.idle_timeout / 3);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Peers going away mid-response is normal for viewers.
        debug!(error = %e, "connection ended with an error");
    }
}
