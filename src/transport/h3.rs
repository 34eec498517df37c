//! HTTP/3 over QUIC through quinn + h3 + h3-quinn.
//!
//! Per incoming connection the accept loop decides: refuse it when the
//! listener is at its connection limit, else spawn its task (the handshake
//! runs there, under a timeout). GREASE is off (aioquic clients otherwise miss
//! the end of a stream). Keep-alives run at a third of the idle timeout, so a
//! viewer held on a request is not dropped. On shutdown each connection sends
//! GOAWAY and lets its requests finish; the caller then closes the endpoint
//! and waits for it to be idle so no stream data is lost.

use std::sync::Arc;

use bytes::Bytes;
use h3::error::Code;
use h3::server::RequestResolver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument as _};

use super::{ConnInfo, Limits, ListenerInfo, Transport};
use crate::core::{NoBody, Origin};
use crate::store::ObjectError;

/// Transport parameters for the QUIC listener.
pub fn transport_config(limits: &Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(limits.idle_timeout).ok());
    t.keep_alive_interval(Some(limits.idle_timeout / 3));
    t.max_concurrent_bidi_streams(limits.max_streams_per_connection.into());
    t
}

/// Serve HTTP/3 on `endpoint` until `shutdown` is cancelled.
pub async fn serve(
    endpoint: quinn::Endpoint,
    info: Arc<ListenerInfo>,
    origin: Arc<Origin>,
    limits: Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => return },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            warn!(remote = %incoming.remote_address(), "h3: connection limit reached, refusing");
            incoming.refuse();
            continue;
        };
        let remote = incoming.remote_address();
        let conn = ConnInfo { listener: info.clone(), transport: Transport::H3, remote };
        let (origin, limits, shutdown, t2) = (origin.clone(), limits.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(
            async move {
                let _permit = permit;
                let connecting = match incoming.accept() {
                    Ok(c) => c,
                    Err(e) => return debug!(error = %e, "QUIC accept failed"),
                };
                let quic = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return debug!(error = %e, "QUIC handshake failed"),
                    Err(_) => return debug!("QUIC handshake timed out"),
                };
                serve_conn(quic, Arc::new(conn), origin, shutdown, t2).await;
            }
            .instrument(info_span!("conn", listener = "h3", %remote)),
        );
    }
}

/// Serve HTTP/3 on one established QUIC connection (also used by
/// [`crate::interop`], which dispatches on ALPN first).
pub async fn serve_conn(
    quic: quinn::Connection,
    conn: Arc<ConnInfo>,
    origin: Arc<Origin>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let _gauge = origin.metrics().connection(Transport::H3);
    let mut h3conn =
        match h3::server::builder().send_grease(false).build::<_, Bytes>(h3_quinn::Connection::new(quic)).await {
            Ok(c) => c,
            Err(e) => return debug!(error = %e, "h3 connection setup failed"),
        };
    let mut closing = false;
    loop {
        tokio::select! {
            r = h3conn.accept() => match r {
                Ok(Some(resolver)) => {
                    let (origin, conn) = (origin.clone(), conn.clone());
                    tracker.spawn(async move { handle_request(resolver, origin, conn).await });
                }
                Ok(None) => break,
                Err(e) => {
                    if e.is_h3_no_error() {
                        debug!("h3 connection closed");
                    } else {
                        debug!(error = %e, "h3 connection ended");
                    }
                    break;
                }
            },
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                if let Err(e) = h3conn.shutdown(0).await {
                    debug!(error = %e, "h3 GOAWAY failed");
                }
            }
        }
    }
}

async fn handle_request(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    origin: Arc<Origin>,
    conn: Arc<ConnInfo>,
) {
    let (req, mut stream) = match resolver.resolve_request().await {
        Ok(x) => x,
        Err(e) => return debug!(error = %e, "h3: bad request stream"),
    };
    let span = info_span!("req", transport = "h3", method = %req.method(), path = %req.uri().path(),
        stream = tracing::field::Empty, file = tracing::field::Empty);
    async move {
        let resp = origin.handle(req.map(|()| NoBody), &conn).await;
        let (parts, mut body) = resp.into_parts();
        if let Err(e) = stream.send_response(http::Response::from_parts(parts, ())).await {
            return debug!(error = %e, "h3: client went away before the response");
        }
        while let Some(piece) = body.next().await {
            match piece {
                Ok(data) => {
                    if let Err(e) = stream.send_data(data).await {
                        return debug!(error = %e, "h3: client went away mid-response");
                    }
                }
                Err(ObjectError::Aborted) => {
                    warn!("h3: upload aborted under a reader, resetting the stream");
                    stream.stop_stream(Code::H3_REQUEST_INCOMPLETE);
                    return;
                }
            }
        }
        if let Err(e) = stream.finish().await {
            debug!(error = %e, "h3: finishing the stream failed");
        }
    }
    .instrument(span)
    .await
}
