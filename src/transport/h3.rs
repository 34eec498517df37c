//! HTTP/3 over QUIC through quinn + h3 + h3-quinn.
//!
//! Connections come in through the listener's [`Door`] (Retry under a
//! handshake flood, connection limits, handshake timeout). GREASE is off
//! (aioquic clients otherwise miss the end of a stream). Keep-alives run
//! below the QUIC idle timeout, so a viewer held on a request is not dropped;
//! a connection with no open request for the idle timeout gets GOAWAY and is
//! closed, whatever the client sends. Header sections are limited to
//! `max_header_bytes` (431) and a request stream cannot make h3 buffer more
//! than that (see `h3_limit`). A response whose stream is not drained for the
//! send timeout is reset. On shutdown each connection sends GOAWAY and lets
//! its requests finish; the caller then closes the endpoint and waits for it
//! to be idle so no stream data is lost.

use std::sync::Arc;

use bytes::Bytes;
use h3::error::Code;
use h3::server::RequestResolver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument as _};

use super::accept::{Door, QuicAccept};
use super::{h3_limit, Activity, Congestion, ConnInfo, Limits, ListenerInfo, Transport};
use crate::conn::request_span;
use crate::core::{NoBody, Origin};

/// Transport parameters for the QUIC listener.
pub fn transport_config(limits: &Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(limits.quic.idle_timeout).ok());
    t.keep_alive_interval(Some(limits.quic.keep_alive_interval));
    t.max_concurrent_bidi_streams(limits.http.max_streams_per_connection.into());
    // What a client sends is only ever header sections (ingest is HTTP/1.1)
    // and h3's own streams. h3 never reads a client's QPACK encoder and
    // decoder streams after their type (the dynamic table is off), nor a
    // unidirectional stream whose type is still incomplete: quinn buffers
    // such data up to the stream window, 1.25 MB each by default. A window
    // just above the request-stream cap bounds that to 64 KiB per stream,
    // and a client gets 8 unidirectional streams (h3 uses 3) instead of 100.
    let cap = 2 * u64::from(limits.http.max_header_bytes) + 1024;
    t.stream_receive_window(quinn::VarInt::from_u64(cap.max(64 << 10)).unwrap_or(quinn::VarInt::MAX));
    t.max_concurrent_uni_streams(8u32.into());
    match limits.quic.congestion {
        Congestion::Cubic => t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default())),
        Congestion::NewReno => t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default())),
        Congestion::Bbr => t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default())),
    };
    if let Some(af) = limits.quic.ack_frequency {
        let mut c = quinn::AckFrequencyConfig::default();
        c.ack_eliciting_threshold(af.ack_eliciting_threshold.into());
        c.max_ack_delay(af.max_ack_delay);
        t.ack_frequency_config(Some(c));
    }
    if limits.quic.mtu_upper_bound != super::DEFAULT_MTU_UPPER_BOUND {
        let mut m = quinn::MtuDiscoveryConfig::default();
        m.upper_bound(limits.quic.mtu_upper_bound);
        t.mtu_discovery_config(Some(m));
    }
    t
}

/// Serve HTTP/3 on `endpoint` until `shutdown` is cancelled: connections
/// come in through [`Door::accept_quic`].
pub async fn serve(
    endpoint: quinn::Endpoint,
    info: Arc<ListenerInfo>,
    origin: Arc<Origin>,
    limits: Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let metrics = origin.metrics().clone();
    let door = Door::new(info.clone(), &limits.conn, metrics, None, shutdown.clone(), tracker.clone());
    let opts = QuicAccept { retry_above: limits.quic.retry_above, ..QuicAccept::default() };
    door.accept_quic(&endpoint, opts, move |quic, remote, activity| {
        let conn = Arc::new(ConnInfo { listener: info.clone(), transport: Transport::H3, remote });
        let (origin, limits, shutdown, tracker) = (origin.clone(), limits.clone(), shutdown.clone(), tracker.clone());
        async move { serve_conn(quic, conn, activity, origin, &limits, shutdown, tracker).await }
    })
    .await
}

/// Serve HTTP/3 on one established QUIC connection (also used by
/// [`crate::interop`], which dispatches on ALPN first). `activity` is the
/// connection's, from its door: a request counts in it once its header
/// section has arrived, and the connection is closed when it is evicted.
pub async fn serve_conn(
    quic: quinn::Connection,
    conn: Arc<ConnInfo>,
    activity: Arc<Activity>,
    origin: Arc<Origin>,
    limits: &Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let _gauge = origin.metrics().connection(Transport::H3);
    let _tracked = origin.metrics().quic().track(&quic);
    // A request stream carries nothing else h3live reads than its header
    // section: twice the limit (so sections somewhat over it get h3's 431
    // rather than a reset) plus room for frame headers.
    let cap = 2 * u64::from(limits.http.max_header_bytes) + 1024;
    let mut h3conn = match h3::server::builder()
        .send_grease(false)
        .max_field_section_size(limits.http.max_header_bytes.into())
        .build::<_, Bytes>(h3_limit::Connection::new(quic.clone(), cap))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "h3 connection setup failed");
            return;
        }
    };
    let mut closing = false;
    let idle = activity.idle(limits.http.idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            r = h3conn.accept() => match r {
                Ok(Some(resolver)) => {
                    let (origin, conn, activity) = (origin.clone(), conn.clone(), activity.clone());
                    let timeouts = (limits.h1.header_read_timeout, limits.http.send_timeout);
                    tracker.spawn(handle_request(resolver, origin, conn, activity, timeouts));
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
            _ = activity.evicted() => {
                // No request, closed for a newcomer (listener full).
                debug!("h3 connection closed for a newcomer (connection budget full)");
                quic.close(quinn::VarInt::from_u32(0x100), b"overload"); // H3_NO_ERROR
                break;
            }
            _ = &mut idle, if !closing => {
                // No request for the idle timeout: pings and keep-alives do
                // not count. GOAWAY, then close (nothing is in flight).
                debug!("h3 connection idle: closing");
                let _ = h3conn.shutdown(0).await;
                quic.close(quinn::VarInt::from_u32(0x100), b"idle"); // H3_NO_ERROR
                break;
            }
        }
    }
    let s = quic.stats();
    debug!(
        rtt_ms = s.path.rtt.as_secs_f64() * 1e3,
        cwnd = s.path.cwnd,
        congestion_events = s.path.congestion_events,
        sent_packets = s.path.sent_packets,
        lost_packets = s.path.lost_packets,
        lost_plpmtud_probes = s.path.lost_plpmtud_probes,
        mtu = s.path.current_mtu,
        "h3 connection stats"
    );
}

/// `send` under the send timeout, with the timer armed only if `send` does
/// not complete at its first poll. quinn queues a DATA frame at once unless
/// flow control is closed, and a timer per chunk per reader costs a clock
/// read and a shared reference count for nothing.
async fn send_within<F: std::future::Future>(
    timeout: std::time::Duration,
    send: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut send = std::pin::pin!(send);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(send.as_mut().poll(cx))).await {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => tokio::time::timeout(timeout, send).await,
    }
}

/// One request stream: its header section within `header_timeout` (the
/// request counts as open in `activity` from then on), then the answer, each
/// piece sent within `send_timeout`.
async fn handle_request(
    resolver: RequestResolver<h3_limit::Connection, Bytes>,
    origin: Arc<Origin>,
    conn: Arc<ConnInfo>,
    activity: Arc<Activity>,
    (header_timeout, send_timeout): (std::time::Duration, std::time::Duration),
) {
    let (req, mut stream) = match tokio::time::timeout(header_timeout, resolver.resolve_request()).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            match rejected_reason(&e) {
                Some(reason) => {
                    let (rejected, loud) = origin.metrics().h3_stream_rejected(reason);
                    crate::doubling_log!(loud, error = %e, reason, rejected,
                        "h3: request stream rejected (logged at warn for the 1st, 2nd, 4th, 8th... of each reason)");
                }
                None => debug!(error = %e, "h3: request stream ended before its header section"),
            }
            return;
        }
        Err(_) => {
            // The resolver (and its stream) is dropped: h3 resets it.
            let (rejected, loud) = origin.metrics().h3_stream_rejected("header_timeout");
            crate::doubling_log!(loud, timeout = ?header_timeout, rejected,
                "h3: request header section not complete in time (logged at warn for the 1st, 2nd, 4th, 8th...)");
            return;
        }
    };
    let _guard = activity.begin();
    if let Some(why) = malformed(&req) {
        let (rejected, loud) = origin.metrics().h3_stream_rejected("malformed");
        crate::doubling_log!(
            loud,
            why,
            rejected,
            "h3: malformed request answered 400 (logged at warn for the 1st, 2nd, 4th, 8th...)"
        );
        let resp = http::Response::builder().status(http::StatusCode::BAD_REQUEST).body(()).expect("a 400 head");
        if stream.send_response(resp).await.is_ok() {
            let _ = stream.send_data(Bytes::from(format!("400 malformed request: {why}\n"))).await;
            let _ = stream.finish().await;
        }
        return;
    }
    let span = request_span(Transport::H3, req.method(), req.uri().path());
    async move {
        let resp = origin.handle(req.map(|()| NoBody), &conn).await;
        let (parts, mut body) = resp.into_parts();
        if let Err(e) = stream.send_response(http::Response::from_parts(parts, ())).await {
            debug!(error = %e, "h3: client went away before the response");
            return;
        }
        while let Some(piece) = body.next().await {
            match piece {
                Ok(data) => match tokio::select! {
                    r = send_within(send_timeout, stream.send_data(data)) => r,
                    _ = body.revoked() => {
                        // Blocked on a client that does not read an evicted
                        // segment that was revoked (pinned budget).
                        warn!("h3: evicted segment revoked under a stalled reader, resetting the stream");
                        stream.stop_stream(Code::H3_REQUEST_CANCELLED);
                        return;
                    }
                } {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(error = %e, "h3: client went away mid-response");
                        return;
                    }
                    Err(_) => {
                        // Flow control stayed closed: the client stopped reading.
                        debug!(timeout = ?send_timeout, "h3: reader stopped reading, resetting the stream");
                        stream.stop_stream(Code::H3_REQUEST_CANCELLED);
                        return;
                    }
                },
                Err(e) => {
                    warn!(error = %e, "h3: object broken under a reader, resetting the stream");
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

/// Why a request h3 resolved is malformed (RFC 9114 4.1.2), for what h3
/// hands over: connection-specific fields (4.2), `TE` other than
/// `trailers` (4.2), `:protocol` without extended CONNECT (RFC 9220, not
/// offered here), a `:path` that is neither absolute nor `*` for OPTIONS
/// (4.3.1). h3 itself rejects uppercase or invalid field names, unknown
/// pseudo-headers, a missing `:method`, `:scheme` or `:path`, and
/// `:authority` and `Host` that disagree (H3_MESSAGE_ERROR). What it hides
/// (pseudo-header order, repeated pseudo-headers, a response pseudo-header
/// in a request) is in docs/security.md, "Known gaps".
fn malformed(req: &http::Request<()>) -> Option<&'static str> {
    use http::header;
    const CONNECTION_SPECIFIC: [&str; 5] =
        ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];
    let h = req.headers();
    if CONNECTION_SPECIFIC.iter().any(|n| h.contains_key(*n)) {
        return Some("connection-specific header field");
    }
    if h.get_all(header::TE).iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers")) {
        return Some("TE other than trailers");
    }
    if req.extensions().get::<h3::ext::Protocol>().is_some() {
        return Some(":protocol without extended CONNECT");
    }
    let path = req.uri().path_and_query().map_or("", |p| p.as_str());
    let options_star = req.method() == http::Method::OPTIONS && path == "*";
    if req.method() != http::Method::CONNECT && !path.starts_with('/') && !options_star {
        return Some(":path neither absolute nor * (OPTIONS)");
    }
    None
}

/// The `reason` label of a request stream h3 could not resolve, or `None`
/// when the client went away (reset, connection closed).
fn rejected_reason(e: &h3::error::StreamError) -> Option<&'static str> {
    use h3::error::StreamError;
    match e {
        // 431 sent by h3.
        StreamError::HeaderTooBig { .. } => Some("header_too_large"),
        // Malformed (RFC 9114 4.1.2): h3 resets it with H3_MESSAGE_ERROR.
        StreamError::StreamError { code, .. } if *code == Code::H3_MESSAGE_ERROR => Some("malformed"),
        // Stopped by `h3_limit` (more bytes than a header section may hold).
        StreamError::RemoteTerminate { code, .. } if *code == Code::H3_REQUEST_REJECTED => Some("oversized_stream"),
        StreamError::StreamError { .. } => Some("other"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What quinn is given (its config has no getters; its Debug shows the fields).
    fn config(limits: &Limits) -> String {
        format!("{:?}", transport_config(limits))
    }

    #[test]
    fn ack_frequency_goes_to_quinn_only_when_asked() {
        let mut l = Limits::default();
        assert!(config(&l).contains("ack_frequency_config: None"), "{}", config(&l));
        l.quic.ack_frequency = Some(super::super::AckFrequency {
            ack_eliciting_threshold: 9,
            max_ack_delay: Some(std::time::Duration::from_millis(40)),
        });
        let c = config(&l);
        assert!(c.contains("ack_eliciting_threshold: 9"), "{c}");
        assert!(c.contains("max_ack_delay: Some(40ms)"), "{c}");
    }

    #[test]
    fn mtu_upper_bound_goes_to_quinn() {
        let mut l = Limits::default();
        assert!(config(&l).contains("upper_bound: 1452"), "{}", config(&l));
        l.quic.mtu_upper_bound = 9000;
        assert!(config(&l).contains("upper_bound: 9000"), "{}", config(&l));
    }
}
