//! Media over QUIC served over WebTransport (`web-transport-quinn` on the
//! project's quinn, `moq-net` sessions), on a QUIC endpoint of its own: a
//! WebTransport session takes over its connection's HTTP/3 SETTINGS, so it
//! cannot share a connection with the `h3` crate's requests.
//!
//! Each connection comes in through the listener's [`Door`] (Retry under a
//! handshake flood, connection limits per listener and per client address,
//! handshake timeout, which here covers the QUIC handshake and the
//! WebTransport CONNECT). The session picks its MoQ version from the
//! client's WebTransport subprotocols (the first one, in the client's order,
//! that moq-net speaks) and publishes every broadcast of the [`Moq`] view.
//!
//! Limits ([`MoqLimits`]):
//! - subscriptions per session: the client may open at most
//!   `max_subscriptions` (+ [`CONTROL_STREAMS`]) bidirectional streams at
//!   once (moq-lite opens one per subscription), enforced by QUIC flow control;
//! - memory one session can pin: quinn buffers at most `send_window` bytes
//!   of unacknowledged stream data per connection; groups are shared by all
//!   sessions in the view's cache (bounded by its size and `max_age`); a
//!   group that stays blocked (the subscriber stopped reading) past its
//!   `max_age` is reset by moq-net and newer groups go first (the subscriber
//!   skips ahead);
//! - a session that sends less than [`IDLE_BYTES`] in an `idle_timeout`
//!   window (nothing subscribed, or a subscriber that stopped reading, so
//!   flow control stopped it) is closed, as is a QUIC path silent for the
//!   QUIC idle timeout;
//! - listener full: a session counts as busy only while it sends media (at
//!   least [`BUSY_BYTES`] in each [`BUSY_WINDOW`]); one that does not is
//!   idle for the overload policy, like an HTTP connection between requests,
//!   and the first to be closed for a newcomer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::accept::{Door, HandshakeError, QuicAccept};
use super::{Activity, Limits, ListenerInfo};
use crate::moq::Moq;

/// Bidirectional streams a moq-lite-05 session holds besides its
/// subscriptions: the WebTransport CONNECT stream, moq-lite's announce and
/// probe streams. A subscription opens a short-lived track-info stream
/// before its own, within the same budget.
pub const CONTROL_STREAMS: u32 = 3;

/// Limits of MoQ sessions.
#[derive(Debug, Clone)]
pub struct MoqLimits {
    /// Concurrent track subscriptions per session.
    pub max_subscriptions: u32,
    /// Bytes of stream data quinn buffers per session (sent, not yet acknowledged).
    pub send_window: u64,
    /// A session that sends no media for this long is closed.
    pub idle_timeout: Duration,
    /// QUIC idle timeout of the MoQ endpoint (`max_idle_timeout`, keep-alives
    /// every third of it). A browser takes the smaller of its own and this
    /// one, so it bounds how long a viewer whose origin was killed keeps a
    /// dead session before reconnecting: nothing else tells it (a killed
    /// process closes nothing, and the client has nothing to send).
    pub quic_idle_timeout: Duration,
}

impl Default for MoqLimits {
    fn default() -> Self {
        MoqLimits {
            max_subscriptions: 16,
            send_window: 4 << 20,
            idle_timeout: Duration::from_secs(30),
            quic_idle_timeout: Duration::from_secs(3),
        }
    }
}

/// Counters of the MoQ listener (what the sessions deliver is counted by
/// moq-net's stats registry, [`MoqServer::traffic`]).
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Sessions open now.
    pub open: AtomicU64,
    /// Sessions accepted so far.
    pub accepted: AtomicU64,
    /// Sessions refused after the QUIC handshake: no MoQ version in common.
    pub refused_version: AtomicU64,
    /// Sessions that failed their WebTransport or MoQ handshake.
    pub failed_handshake: AtomicU64,
    /// Sessions closed for sending no media for the idle timeout.
    pub closed_idle: AtomicU64,
    /// Sessions sending media now (busy for the overload policy).
    pub sending: AtomicU64,
    /// Sessions closed for a newcomer (listener full, no media sent lately).
    pub closed_for_newcomer: AtomicU64,
}

/// What a MoQ listener shares with its sessions.
#[derive(Clone)]
pub struct MoqServer {
    /// The broadcasts.
    pub view: Moq,
    /// Session counters.
    pub stats: Arc<SessionStats>,
    /// moq-net's traffic counters (egress per broadcast).
    pub traffic: moq_net::stats::Registry,
}

impl MoqServer {
    /// A server for `view`.
    pub fn new(view: Moq) -> MoqServer {
        MoqServer { view, stats: Arc::default(), traffic: moq_net::stats::Registry::new(moq_net::stats::Config::new()) }
    }
}

/// Transport parameters of the MoQ endpoint.
pub fn transport_config(limits: &Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(limits.moq.quic_idle_timeout).ok());
    t.keep_alive_interval(Some(limits.moq.quic_idle_timeout / 3));
    t.max_concurrent_bidi_streams((limits.moq.max_subscriptions + CONTROL_STREAMS).into());
    // Clients send only control messages on their own streams.
    t.max_concurrent_uni_streams(8u32.into());
    t.stream_receive_window(quinn::VarInt::from_u32(64 << 10));
    t.send_window(limits.moq.send_window);
    limits.quic.congestion.apply(&mut t);
    t
}

/// A failed WebTransport handshake, for the door's log levels.
struct WtError(web_transport_quinn::ServerError);

impl std::fmt::Display for WtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebTransport: {}", self.0)
    }
}

impl HandshakeError for WtError {
    fn client_went_away(&self) -> bool {
        use web_transport_quinn::ServerError::*;
        match &self.0 {
            Connection(e) => e.client_went_away(),
            UnexpectedEnd | ReadError(_) | WriteError(_) => true,
            _ => false,
        }
    }
}

/// Serve MoQ over WebTransport on `endpoint` until `shutdown`.
pub async fn serve(
    endpoint: quinn::Endpoint,
    info: Arc<ListenerInfo>,
    server: MoqServer,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let door = Door::new(info, &limits.conn, metrics, None, shutdown.clone(), tracker);
    let opts = QuicAccept { retry_above: limits.quic.retry_above, ..QuicAccept::default() };
    let door2 = door.clone();
    door.accept_quic(&endpoint, opts, move |quic, remote, activity| {
        let (door, server, limits, shutdown) = (door2.clone(), server.clone(), limits.clone(), shutdown.clone());
        async move { session(quic, remote, activity, door, server, &limits, shutdown).await }
    })
    .await
}

/// One WebTransport connection: CONNECT, subprotocol, MoQ handshake, then
/// serve until the peer leaves, the session idles or the server shuts down.
/// Until its session is up the connection does no useful work (the overload
/// policy may close it for a newcomer); from then on it counts as busy, and
/// its own idle rule closes it when it carries no media.
async fn session(
    quic: quinn::Connection,
    remote: SocketAddr,
    activity: Arc<Activity>,
    door: Door,
    server: MoqServer,
    limits: &Limits,
    shutdown: CancellationToken,
) {
    let stats = &server.stats;
    let accept = async { web_transport_quinn::Request::accept(quic.clone()).await.map_err(WtError) };
    let Some(request) = door.handshake("WebTransport", &activity, accept).await else {
        stats.failed_handshake.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let offered = request.protocols.clone();
    let chosen = offered.iter().find(|p| moq_net::ALPNS.contains(&p.as_str())).cloned();
    let response = match (&chosen, offered.is_empty()) {
        (Some(p), _) => web_transport_quinn::proto::ConnectResponse::OK.with_protocol(p.clone()),
        // No subprotocol offered: moq-net negotiates the version in band.
        (None, true) => web_transport_quinn::proto::ConnectResponse::OK,
        (None, false) => {
            stats.refused_version.fetch_add(1, Ordering::Relaxed);
            debug!(?offered, "moq: no MoQ version in common, refusing");
            let _ = request.reject(http::StatusCode::BAD_REQUEST).await;
            return;
        }
    };
    let path = request.url.path().to_string();
    let respond = async { request.respond(response).await.map_err(WtError) };
    let wt = match door.handshake("WebTransport", &activity, respond).await {
        Some(s) => s,
        None => {
            stats.failed_handshake.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let moq = moq_net::Server::new()
        .with_publisher(server.view.consumer())
        .with_stats(server.traffic.tier(moq_net::stats::Tier::default()).session(path.as_str()));
    let accepted = tokio::time::timeout(limits.conn.handshake_timeout, moq.accept(std::time::Instant::now(), wt)).await;
    let (session, driver) = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            stats.failed_handshake.fetch_add(1, Ordering::Relaxed);
            debug!(error = %e, "moq: session handshake failed");
            return;
        }
        Err(_) => {
            stats.failed_handshake.fetch_add(1, Ordering::Relaxed);
            debug!("moq: session handshake timed out");
            return;
        }
    };
    // Counted as sending from the start, before it counts as open: a reader
    // of the metrics never sees an open session in neither count.
    let sending = Sending::begin(&activity, stats);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    stats.open.fetch_add(1, Ordering::Relaxed);
    debug!(%remote, protocol = chosen.as_deref().unwrap_or("(in band)"), version = %session.version(), "moq: session");
    tokio::select! {
        err = moq_net::time::run(driver) => debug!(error = %err, "moq: session ended"),
        _ = idle(&quic, limits.moq.idle_timeout) => {
            stats.closed_idle.fetch_add(1, Ordering::Relaxed);
            info!(%remote, timeout = ?limits.moq.idle_timeout, "moq: session sent no media for the idle timeout, closed");
            quic.close(quinn::VarInt::from_u32(0), b"idle");
        }
        () = busy_while_sending(&quic, &activity, stats, sending) => {}
        _ = activity.evicted() => {
            stats.closed_for_newcomer.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, "moq: session sent no media lately, closed for a newcomer (listener full)");
            quic.close(quinn::VarInt::from_u32(0), b"listener full");
        }
        _ = shutdown.cancelled() => quic.close(quinn::VarInt::from_u32(0), b"shutdown"),
    }
    drop(session);
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// The window over which a session's sending decides whether it is busy.
pub const BUSY_WINDOW: Duration = Duration::from_secs(2);

/// Bytes a session must send in a [`BUSY_WINDOW`] to count as busy: about
/// the rate of [`IDLE_BYTES`] (a 128 kbit/s audio track alone sends 32 KB
/// in 2 s; keep-alives and acknowledgements a few hundred bytes).
pub const BUSY_BYTES: u64 = 4 << 10;

/// A session counted as sending media: busy for the overload policy (its
/// request guard) and in [`SessionStats::sending`], until dropped.
struct Sending<'a> {
    _guard: super::RequestGuard,
    count: &'a AtomicU64,
}

impl<'a> Sending<'a> {
    fn begin(activity: &Arc<Activity>, stats: &'a SessionStats) -> Sending<'a> {
        stats.sending.fetch_add(1, Ordering::Relaxed);
        Sending { _guard: activity.begin(), count: &stats.sending }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `busy` (the session counted as sending) while the session sends at
/// least [`BUSY_BYTES`] in each [`BUSY_WINDOW`]; drops it for a window that
/// sends less, takes it again after one that sends enough. Never resolves.
async fn busy_while_sending<'a>(
    quic: &quinn::Connection,
    activity: &Arc<Activity>,
    stats: &'a SessionStats,
    busy: Sending<'a>,
) {
    let mut busy = Some(busy);
    loop {
        if sent_during(quic, BUSY_WINDOW).await >= BUSY_BYTES {
            busy.get_or_insert_with(|| Sending::begin(activity, stats));
        } else {
            busy = None;
        }
    }
}

/// Bytes a session must send in an idle-timeout window to count as
/// delivering media: a 128 kbit/s audio track alone sends about 480 KB in
/// 30 s, while a session that carries no media sends only keep-alives,
/// acknowledgements and moq-lite's bandwidth probes.
pub const IDLE_BYTES: u64 = 64 << 10;

/// Resolves at the end of the first `timeout` window (consecutive windows
/// from the session's start) in which the connection sent less than
/// [`IDLE_BYTES`].
async fn idle(quic: &quinn::Connection, timeout: Duration) {
    while sent_during(quic, timeout).await >= IDLE_BYTES {}
}

/// UDP bytes the connection sends during the next `window`.
async fn sent_during(quic: &quinn::Connection, window: Duration) -> u64 {
    let before = quic.stats().udp_tx.bytes;
    tokio::time::sleep(window).await;
    quic.stats().udp_tx.bytes.saturating_sub(before)
}

/// The MoQ figures for `/metrics`: sessions and refusals (this listener),
/// what the view published, what the sessions delivered (moq-net's egress
/// counters).
#[derive(Clone)]
pub struct Collector(pub MoqServer);

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("moq::Collector")
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let s = &self.0.stats;
        let v = self.0.view.stats();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut egress = moq_net::stats::Traffic::default();
        for (_, role, traffic) in self.0.traffic.snapshot().traffic() {
            if role == moq_net::stats::Role::Publisher {
                egress.add(traffic);
            }
        }
        let gauges = [
            ("h3live_moq_sessions", "MoQ sessions open", load(&s.open)),
            (
                "h3live_moq_sessions_sending",
                "MoQ sessions sending media (the others may be closed for a newcomer when the listener is full)",
                load(&s.sending),
            ),
            (
                "h3live_moq_subscriptions",
                "MoQ track subscriptions open, over all sessions",
                egress.active_subscriptions(),
            ),
            ("h3live_moq_broadcasts", "Streams published as MoQ broadcasts", load(&v.broadcasts)),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value as i64).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let counters = [
            ("h3live_moq_sessions_accepted", "MoQ sessions that completed their handshake", load(&s.accepted)),
            (
                "h3live_moq_refused_version",
                "WebTransport sessions refused: no MoQ version in common",
                load(&s.refused_version),
            ),
            (
                "h3live_moq_failed_handshakes",
                "WebTransport or MoQ handshakes that failed or timed out",
                load(&s.failed_handshake),
            ),
            (
                "h3live_moq_idle_closed",
                "MoQ sessions closed for sending no media for the idle timeout",
                load(&s.closed_idle),
            ),
            (
                "h3live_moq_closed_for_newcomer",
                "MoQ sessions that sent no media lately, closed for a newcomer (listener full)",
                load(&s.closed_for_newcomer),
            ),
            ("h3live_moq_published_frames", "Frames (CMAF fragments) published by the MoQ view", load(&v.frames)),
            ("h3live_moq_published_bytes", "Bytes of frames published by the MoQ view", load(&v.bytes)),
            ("h3live_moq_published_groups", "Groups (segments) published by the MoQ view", load(&v.groups)),
            (
                "h3live_moq_generations",
                "Broadcast generations started (one per stream, one more per encoder restart)",
                load(&v.generations),
            ),
            ("h3live_moq_sent_frames", "Frames handed to MoQ subscribers", egress.frames),
            ("h3live_moq_sent_bytes", "Frame bytes handed to MoQ subscribers", egress.bytes),
            ("h3live_moq_sent_groups", "Groups handed to MoQ subscribers", egress.groups),
            (
                "h3live_moq_skipped_groups",
                "Groups skipped for subscribers that fell behind the live edge (max age)",
                egress.stale.groups,
            ),
        ];
        for (name, help, value) in counters {
            ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }
}
