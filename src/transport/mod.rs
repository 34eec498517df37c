//! Thin transport adapters around the core: hyper for HTTP/1.1 and HTTP/2
//! (cleartext and TLS), h3 + h3-quinn for HTTP/3. They only translate
//! requests and bodies; what to answer is decided in [`crate::core`].

pub mod accept;
pub mod h3;
mod h3_limit;
mod h3_stream;
pub mod hyper;
pub mod moq;
pub mod overload;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use crate::conn::{ConnInfo, ListenerInfo, Transport};
use crate::core::{Origin, Progress, SharedFloor};

/// Limits and timeouts of the listeners, grouped by the layer that applies
/// them. [`Limits::default`] (and the CLI flags) derive some from others:
/// the QUIC idle timeout and TCP keepalive from the HTTP idle timeout, the
/// HTTP/2 ping interval and timeout and QUIC keep-alives from a third of it,
/// the HTTP/1.1 header-read timeout from the handshake timeout.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Admission at every listener (TCP and QUIC).
    pub conn: ConnLimits,
    /// What every HTTP version applies per connection and response.
    pub http: HttpLimits,
    /// Accepted TCP sockets (HTTP/1.1 and HTTP/2).
    pub tcp: TcpLimits,
    /// HTTP/1.1.
    pub h1: H1Limits,
    /// HTTP/2.
    pub h2: H2Limits,
    /// QUIC (HTTP/3 and the interop endpoint).
    pub quic: QuicLimits,
    /// Graceful shutdown.
    pub shutdown: ShutdownLimits,
    /// Media over QUIC sessions.
    pub moq: moq::MoqLimits,
}

/// Admission at a listener's door ([`accept::Door`]).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections per listener ([`overload::Pool`]): near it, the ones doing
    /// no useful work are closed for newcomers; when all are busy, further
    /// ones wait (TCP) or are refused (QUIC).
    pub max_connections: usize,
    /// Open connections per client IP address on each listener (0: no limit).
    pub max_connections_per_ip: usize,
    /// The ingest listener's second budget: a connection whose first
    /// completed request head is a PUT/POST/DELETE moves to one of these
    /// (giving its `max_connections` slot back), so neither viewers nor
    /// connections that never finish a head can lock out the encoder.
    pub max_ingest_connections: usize,
    /// Time allowed for a TLS or QUIC handshake.
    pub handshake_timeout: Duration,
}

/// Per-connection and per-response limits of every HTTP version.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A connection with no open request for this long is closed (HTTP/1.1
    /// keep-alive, HTTP/2 with GOAWAY, HTTP/3 with GOAWAY then close), however
    /// many pings the client sends.
    pub idle_timeout: Duration,
    /// A response that has bytes to send but is not asked for them by its
    /// transport for this long (the client stopped reading) is dropped: its
    /// HTTP/1.1 or HTTP/2 connection is closed, its HTTP/3 stream reset. This
    /// bounds how long a viewer can pin an evicted segment.
    pub send_timeout: Duration,
    /// Concurrent requests per HTTP/2 or HTTP/3 connection.
    pub max_streams_per_connection: u32,
    /// Largest request header section: HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`
    /// and HTTP/3 `SETTINGS_MAX_FIELD_SECTION_SIZE` (431 beyond); bytes a
    /// client may send on an HTTP/3 request stream before its headers are
    /// complete are capped a little above it (stream refused beyond).
    /// HTTP/1.1 heads are capped by hyper's read buffer (64 KiB, 431).
    pub max_header_bytes: u32,
}

/// Options of accepted TCP sockets.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// `TCP_NOTSENT_LOWAT` (Linux): cap on the bytes queued in the kernel but
    /// not yet sent, so an HTTP/2 connection keeps its backlog in user space
    /// where a new response (the next manifest or segment) can still be
    /// interleaved. `None` leaves the kernel default.
    pub notsent_lowat: Option<u32>,
    /// TCP keepalive idle time and probe interval, so a peer that vanished is
    /// found even while a request waits for bytes.
    pub keepalive: Duration,
}

/// HTTP/1.1.
#[derive(Debug, Clone)]
pub struct H1Limits {
    /// Time allowed for a request's header section to arrive (after the
    /// connection opens or the previous response ends).
    pub header_read_timeout: Duration,
}

/// HTTP/2 liveness pings.
#[derive(Debug, Clone)]
pub struct H2Limits {
    /// A PING is sent after this long without frames from the client.
    pub ping_interval: Duration,
    /// The connection is closed when a PING is not answered within this.
    pub ping_timeout: Duration,
}

/// QUIC transport.
#[derive(Debug, Clone)]
pub struct QuicLimits {
    /// QUIC idle timeout (transport parameter `max_idle_timeout`): a path
    /// that carries nothing, keep-alives included, for this long is dead.
    pub idle_timeout: Duration,
    /// Keep-alive (PING) interval, below the idle timeout so a viewer held on
    /// a request is not dropped.
    pub keep_alive_interval: Duration,
    /// QUIC handshakes per second above which new clients must first prove
    /// their address with a Retry round trip (0: always; `u32::MAX`: never),
    /// so a flood of spoofed Initials costs one stateless packet each instead
    /// of a handshake.
    pub retry_above: u32,
    /// Congestion controller for every connection.
    pub congestion: Congestion,
    /// What to ask of clients that support the QUIC acknowledgement frequency
    /// extension (quinn clients do); `None`: nothing, clients keep their own
    /// ACK policy.
    pub ack_frequency: Option<AckFrequency>,
    /// Largest UDP payload that path MTU discovery tries (quinn's default,
    /// 1452, fits a 1500-byte Ethernet MTU over IPv4 and IPv6). Larger sizes
    /// only help where every hop carries them (loopback, jumbo frames) and the
    /// client accepts them (its `max_udp_payload_size`).
    pub mtu_upper_bound: u16,
}

/// ACK_FREQUENCY request sent to clients that support the extension
/// (draft-ietf-quic-ack-frequency): acknowledge after more than
/// `ack_eliciting_threshold` ack-eliciting packets, or after `max_ack_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFrequency {
    /// Ack-eliciting packets a client may receive without acknowledging at once.
    pub ack_eliciting_threshold: u32,
    /// Longest a client may hold an ACK; `None`: the client's own
    /// `max_ack_delay` (25 ms for quinn and Chromium). quinn requests at most
    /// the larger of the path's RTT and 25 ms, whatever is asked.
    pub max_ack_delay: Option<Duration>,
}

/// Range of `--h3-mtu-upper-bound` and the load tool's `--max-udp-payload`:
/// QUIC's minimum datagram size to the largest UDP payload over IPv6.
pub const UDP_PAYLOAD_RANGE: std::ops::RangeInclusive<u16> = 1200..=65527;

/// quinn's default upper bound of path MTU discovery.
pub const DEFAULT_MTU_UPPER_BOUND: u16 = 1452;

/// Graceful shutdown ([`Tasks::stop`]).
#[derive(Debug, Clone)]
pub struct ShutdownLimits {
    /// How long in-flight responses may run after shutdown starts.
    pub grace: Duration,
}

/// QUIC congestion controller (quinn's implementations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default. A live stream is application-limited
    /// most of the time and quinn's CUBIC does not grow its window on
    /// application-limited ACKs, so after a few losses it stays below the
    /// stream's rate (docs/architecture.md, "quinn, h3 and rustls").
    Cubic,
    /// NewReno (RFC 9002), same application-limited rule as CUBIC.
    NewReno,
    /// BBR (v1, experimental in quinn): paces at the measured bottleneck rate
    /// and does not shrink its window on random loss.
    Bbr,
}

impl Congestion {
    /// Make `t` use this controller (every QUIC endpoint of the project, server or client).
    pub fn apply(self, t: &mut quinn::TransportConfig) {
        match self {
            Congestion::Cubic => t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default())),
            Congestion::NewReno => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()))
            }
            Congestion::Bbr => t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default())),
        };
    }
}

impl Limits {
    /// The defaults, with the values derived from the HTTP idle timeout
    /// (QUIC idle timeout, TCP keepalive, a third of it for HTTP/2 pings and
    /// QUIC keep-alives) and from the handshake timeout (HTTP/1.1 header
    /// read) set from `idle` and `handshake`.
    pub fn derived(idle: Duration, handshake: Duration) -> Limits {
        Limits {
            conn: ConnLimits {
                max_connections: 4096,
                max_connections_per_ip: 256,
                max_ingest_connections: 64,
                handshake_timeout: handshake,
            },
            http: HttpLimits {
                idle_timeout: idle,
                send_timeout: Duration::from_secs(30),
                max_streams_per_connection: 256,
                max_header_bytes: 16 << 10,
            },
            tcp: TcpLimits { notsent_lowat: None, keepalive: idle },
            h1: H1Limits { header_read_timeout: handshake },
            h2: H2Limits { ping_interval: idle / 3, ping_timeout: idle / 3 },
            quic: QuicLimits {
                idle_timeout: idle,
                keep_alive_interval: idle / 3,
                retry_above: 100,
                congestion: Congestion::Bbr,
                ack_frequency: None,
                mtu_upper_bound: DEFAULT_MTU_UPPER_BOUND,
            },
            shutdown: ShutdownLimits { grace: Duration::from_secs(3) },
            moq: moq::MoqLimits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::derived(Duration::from_secs(30), Duration::from_secs(10))
    }
}

/// The running listeners' and connections' tasks and the token that stops
/// them: the one shutdown path of every server (origin, front, interop).
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    /// Cancelled at shutdown: accept loops stop, connections send GOAWAY or
    /// close when idle.
    pub shutdown: CancellationToken,
    /// Every listener, connection and request task.
    pub tracker: TaskTracker,
}

/// How long [`Tasks::stop`] waits for QUIC endpoints to become idle after
/// closing them (the peers' acknowledgements of the close).
const QUIC_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Application error code a QUIC endpoint is closed with at shutdown:
/// H3_NO_ERROR. HTTP/0.9 over QUIC (hq-interop) defines no codes of its own
/// and its clients accept any.
pub const QUIC_CLOSE_CODE: u32 = 0x100;

impl Tasks {
    /// Stop gracefully: cancel the token (no new connections; GOAWAY), let
    /// running responses continue for up to `grace`, then close the QUIC
    /// `endpoints` with [`QUIC_CLOSE_CODE`] and wait until they are idle, so no
    /// stream data is lost.
    pub async fn stop(&self, grace: Duration, endpoints: &[quinn::Endpoint]) {
        info!("shutting down");
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            warn!(?grace, "responses still running after the grace period: closing them");
        }
        for ep in endpoints {
            ep.close(quinn::VarInt::from_u32(QUIC_CLOSE_CODE), b"shutdown");
        }
        for ep in endpoints {
            let _ = tokio::time::timeout(QUIC_CLOSE_WAIT, ep.wait_idle()).await;
        }
    }
}

/// A QUIC endpoint on a bound UDP socket with `config` (HTTP/3 listener, MoQ
/// endpoint and interop endpoint alike), configured by [`endpoint_config`].
pub fn quic_endpoint(
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
    tls_key: &rustls::pki_types::PrivateKeyDer<'_>,
) -> anyhow::Result<quinn::Endpoint> {
    let ep = quinn::Endpoint::new(endpoint_config(tls_key), Some(config), socket, Arc::new(quinn::TokioRuntime))
        .context("starting the QUIC endpoint")?;
    Ok(ep)
}

/// A server endpoint's configuration whose two keys, the one its connection
/// IDs are checked with and the one its stateless-reset tokens are derived
/// from (RFC 9000 §10.3), come from the TLS private key `tls_key` (HMAC-SHA256
/// of a fixed label under it), so an origin restarted with the same key, and
/// every origin sharing it, recognises the old process's connection IDs and
/// sends the resets their tokens promised. A client whose connection died with
/// the old process learns it at its next packet and opens a new connection at
/// once, instead of retransmitting into the restarted origin until its own
/// timers give up. quinn's defaults draw both keys at random per process: the
/// restarted origin dropped the old connection IDs as invalid and sent nothing.
/// Neither key can be recovered from what is sent, and without the TLS key no
/// one can forge a reset.
pub fn endpoint_config(tls_key: &rustls::pki_types::PrivateKeyDer<'_>) -> quinn::EndpointConfig {
    use ring::hmac;
    let master = hmac::Key::new(hmac::HMAC_SHA256, tls_key.secret_der());
    let reset = hmac::sign(&master, b"h3live QUIC stateless reset key v1");
    let cid = hmac::sign(&master, b"h3live QUIC connection ID key v1");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_be_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(hmac::Key::new(hmac::HMAC_SHA256, reset.as_ref())));
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    config
}

/// Open connections per client IP on one listener.
#[derive(Debug, Default)]
pub struct PerIp {
    /// The limit (0: none).
    limit: usize,
    /// Open connections by address.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted in [`PerIp`]; uncounts it when dropped.
#[derive(Debug)]
pub struct IpPermit {
    /// The table it counts in.
    table: Arc<PerIp>,
    /// The client address.
    ip: IpAddr,
}

impl PerIp {
    /// A table allowing `limit` connections per address (0: no limit).
    pub fn new(limit: usize) -> Arc<PerIp> {
        Arc::new(PerIp { limit, open: Mutex::new(HashMap::new()) })
    }

    /// Count one more connection from `ip`, or `None` if it has its limit.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpPermit> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if self.limit > 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpPermit { table: self.clone(), ip })
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What a connection is doing: its open requests (for the idle timeout and
/// the overload policy), the progress of their response bodies (for the
/// send timeout) and of its uploads (for the overload policy), and the slot
/// it holds in its listener's budget ([`overload::Pool`]).
#[derive(Debug)]
pub struct Activity {
    /// Requests whose response has not been dropped yet.
    open: AtomicUsize,
    /// Woken when `open` changes.
    changed: Notify,
    /// Bodies being sent, weakly (a finished body drops out).
    bodies: Mutex<Vec<Weak<Progress>>>,
    /// Rate floors of its uploads, weakly (a finished upload drops out).
    uploads: Mutex<Vec<Weak<SharedFloor>>>,
    /// When `open` last fell to 0 (or the connection was admitted), as an
    /// [`overload::stamp`].
    idle_since: AtomicU64,
    /// Cancelled when the overload policy closes the connection.
    evicted: CancellationToken,
    /// Its slot in its listener's budget; given back when the connection
    /// ends (with the last reference to this).
    slot: Mutex<Option<overload::Slot>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            open: AtomicUsize::new(0),
            changed: Notify::new(),
            bodies: Mutex::default(),
            uploads: Mutex::default(),
            idle_since: AtomicU64::new(overload::stamp(Instant::now())),
            evicted: CancellationToken::new(),
            slot: Mutex::new(None),
        }
    }
}

/// One open request; ends it when dropped (with its response body).
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(overload::stamp(Instant::now()), Ordering::Relaxed);
        }
        self.0.changed.notify_waiters();
    }
}

impl Activity {
    /// A request starts; it stays open until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        RequestGuard(self.clone())
    }

    /// Hold `slot` (giving back the one held before, if any).
    pub fn hold(&self, slot: overload::Slot) {
        let old = self.slot.lock().unwrap_or_else(|e| e.into_inner()).replace(slot);
        drop(old);
    }

    /// True if the connection holds a slot.
    pub fn has_slot(&self) -> bool {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// True if the connection's slot is one of `pool`'s.
    pub fn in_pool(&self, pool: &Arc<overload::Pool>) -> bool {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.of(pool))
    }

    /// Watch an upload's rate floor for the overload policy.
    pub fn watch_upload(&self, floor: &Arc<SharedFloor>) {
        let mut u = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        u.retain(|w| w.strong_count() > 0);
        u.push(Arc::downgrade(floor));
    }

    /// Whether the connection does no useful work at `now`, and since when
    /// (an [`overload::stamp`]): no open request (idle since the last one
    /// ended, or since admission), or only uploads behind their rate floor.
    /// `None` once it was told to close.
    pub fn useless(&self, now: Instant) -> Option<(u64, overload::Useless)> {
        if self.evicted.is_cancelled() {
            return None;
        }
        let since = self.idle_since.load(Ordering::Relaxed);
        let open = self.open.load(Ordering::Relaxed);
        if open == 0 {
            return Some((since, overload::Useless::Idle));
        }
        let u = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let slow = u.iter().filter_map(Weak::upgrade).filter(|f| f.behind(now)).count();
        (slow >= open).then_some((since, overload::Useless::SlowUpload))
    }

    /// Tell the connection to close (overload).
    pub fn evict(&self) {
        self.evicted.cancel();
    }

    /// Resolves once the connection was told to close (overload).
    pub async fn evicted(&self) {
        self.evicted.cancelled().await
    }

    /// Watch a response body for the send timeout.
    pub fn watch(&self, progress: &Arc<Progress>) {
        let mut b = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        b.retain(|w| w.strong_count() > 0);
        b.push(Arc::downgrade(progress));
    }

    /// True if some body of this connection has had bytes to send for longer
    /// than `timeout` without its transport asking for them.
    pub fn stalled(&self, timeout: Duration) -> bool {
        let b = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        b.iter().filter_map(Weak::upgrade).any(|p| p.stalled_for().is_some_and(|d| d > timeout))
    }

    /// Resolves once the connection has had no open request for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.open.load(Ordering::Relaxed) > 0 {
                changed.await;
                continue;
            }
            if tokio::time::timeout(timeout, changed).await.is_err() && self.open.load(Ordering::Relaxed) == 0 {
                return;
            }
        }
    }

    /// Resolves once a body has been stalled for longer than `timeout`
    /// (checked a few times per timeout, and at each revocation in
    /// `origin`'s store).
    pub async fn stall(&self, timeout: Duration, origin: &Origin) {
        let period = (timeout / 4).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A revoked body (pinned budget) counts as stalled: look at once.
            tokio::select! {
                _ = tick.tick() => {}
                _ = origin.next_revocation() => {}
            }
            if self.stalled(timeout) {
                return;
            }
        }
    }
}

/// TCP keepalive on an accepted socket, so a peer that vanished (cable
/// pulled, NAT expired) is found even while a request waits for bytes.
pub fn set_keepalive(stream: &tokio::net::TcpStream, every: Duration) {
    let ka = socket2::TcpKeepalive::new().with_time(every).with_interval(every);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "freebsd"))]
    let ka = ka.with_retries(3);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
}

/// Bind a TCP listener on `tcp` and a UDP socket on `udp` with the same port
/// number, both asking for port 0: the kernel picks the TCP port and the UDP
/// socket takes the same number (the defaults share 4433 between the HTTPS
/// listener and h3, and a browser forced onto QUIC for `host:port` expects
/// it). When that number is taken for UDP, a new TCP port is tried.
pub fn bind_tcp_udp_same_port(
    tcp: SocketAddr,
    udp: SocketAddr,
) -> std::io::Result<(tokio::net::TcpListener, std::net::UdpSocket)> {
    let mut last = None;
    for _ in 0..50 {
        let listener = bind_tcp(SocketAddr::new(tcp.ip(), 0))?;
        let port = listener.local_addr()?.port();
        match bind_udp(SocketAddr::new(udp.ip(), port)) {
            Ok(sock) => return Ok((listener, sock)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free for both TCP and UDP")))
}

/// Bind a TCP listener; an unspecified IPv6 address (`[::]`) is bound
/// dual-stack so IPv4 clients reach it too.
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// What QUIC sockets ask for by default (the origin's `--udp-buffer`, the
/// load tool's client endpoints).
pub const UDP_BUFFER: u64 = 8 << 20;

/// Ask for `bytes` of kernel receive and send buffer on a QUIC socket; the
/// sizes obtained are returned as the kernel reports them, which on Linux is
/// twice what was granted (the kernel adds room for its bookkeeping). Linux's
/// default (`net.core.rmem_default`, 208 KiB) holds about 150 full datagrams:
/// one socket serves every connection, and at 500 h3 viewers on one core the
/// kernel dropped about one datagram in five (149,053 in 20 s; 69,171 at the
/// origin's socket: ACKs and requests, the rest at the clients'). Beyond
/// `net.core.rmem_max` (and `wmem_max`) only root can go (`SO_RCVBUFFORCE`),
/// which is tried first.
pub fn set_udp_buffers(socket: &std::net::UdpSocket, bytes: u64) -> (usize, usize) {
    let s = socket2::SockRef::from(socket);
    if bytes > 0 {
        let size = bytes.min(i32::MAX as u64 / 2) as usize;
        if !force_buffer(socket, libc::SO_RCVBUFFORCE, size) {
            let _ = s.set_recv_buffer_size(size);
        }
        if !force_buffer(socket, libc::SO_SNDBUFFORCE, size) {
            let _ = s.set_send_buffer_size(size);
        }
    }
    (s.recv_buffer_size().unwrap_or(0), s.send_buffer_size().unwrap_or(0))
}

/// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (needs CAP_NET_ADMIN); false if refused.
fn force_buffer(socket: &std::net::UdpSocket, opt: libc::c_int, size: usize) -> bool {
    use std::os::fd::AsRawFd;
    let size = size as libc::c_int;
    // SAFETY: setsockopt reads one c_int from a live pointer.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Bind a UDP socket for QUIC, dual-stack for `[::]`.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
