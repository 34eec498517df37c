//! Command-line options (clap derive). Doc comments are the `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::conn::ports;
use crate::core::OriginConfig;
use crate::store::StoreConfig;
use crate::transport::{Congestion, Limits};
use crate::units::{count_in, duration_in, parse_ack_delay, parse_udp_payload, size_in};

/// The log filter when `RUST_LOG` is unset: noisy crates at warn. Filter
/// targets match by prefix, so `h3=warn` alone would also silence `h3live`
/// itself; the longer `h3live=info` directive wins for our own target.
pub const DEFAULT_LOG_FILTER: &str =
    "info,quinn=warn,quinn_proto=warn,h3=warn,h3_quinn=warn,rustls=warn,hyper=warn,moq_net=error,moq_mux=warn,hang=warn,web_transport_quinn=error,h3live=info";

/// A listener address, or `off` to disable the listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenAddr(pub Option<SocketAddr>);

impl ListenAddr {
    /// `127.0.0.1:port`.
    pub fn loopback(port: u16) -> ListenAddr {
        ListenAddr(Some(SocketAddr::from(([127, 0, 0, 1], port))))
    }

    /// `[::]:port` (dual-stack).
    pub fn any(port: u16) -> ListenAddr {
        ListenAddr(Some(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" | "" => Ok(ListenAddr(None)),
            _ => s
                .parse()
                .map(|a| ListenAddr(Some(a)))
                .map_err(|e| format!("{s:?}: {e} (use ADDR:PORT, [V6]:PORT or off)")),
        }
    }
}

/// `--state-dir`: a directory, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDirArg {
    /// Keep state in this directory.
    Dir(PathBuf),
    /// Keep nothing across a restart.
    None,
}

impl std::str::FromStr for StateDirArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "off" => Ok(StateDirArg::None),
            "" => Err("empty: give a directory or none".into()),
            dir => Ok(StateDirArg::Dir(PathBuf::from(dir))),
        }
    }
}

/// The default state directory of an origin whose ingest listener is bound
/// to `ingest`, given the environment `env`: `<base>/<ip>-<port>`, the base
/// being `$STATE_DIRECTORY` (what systemd's `StateDirectory=` sets), else
/// `$XDG_STATE_HOME/h3live`, else `$HOME/.local/state/h3live` (relative
/// paths do not count, as the XDG spec says). Keyed by the listener address
/// so that origins on one machine never share a directory: two processes
/// cannot listen on the same address, and a restart on the same address
/// finds its own. `None` on port 0 (a restart gets another port and could
/// not find it) and without any base.
pub fn default_state_dir(ingest: SocketAddr, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    if ingest.port() == 0 {
        return None;
    }
    let absolute = |k: &str| env(k).map(PathBuf::from).filter(|p| p.is_absolute());
    // systemd joins several StateDirectory= entries with ':'.
    let systemd = env("STATE_DIRECTORY")
        .and_then(|v| v.to_str().and_then(|v| v.split(':').next()).map(PathBuf::from))
        .filter(|p| p.is_absolute());
    let base = systemd
        .or_else(|| absolute("XDG_STATE_HOME").map(|p| p.join("h3live")))
        .or_else(|| absolute("HOME").map(|p| p.join(".local/state/h3live")))?;
    // `::1` becomes `__1`: no ':' in a path.
    Some(base.join(format!("{}-{}", ingest.ip().to_string().replace(':', "_"), ingest.port())))
}

/// Seconds.
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Milliseconds.
const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One day.
const DAY: Duration = Duration::from_secs(86_400);
/// One hour.
const HOUR: Duration = Duration::from_secs(3600);
/// A mebibyte, a gibibyte, a tebibyte.
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Listener addresses.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Cleartext HTTP/1.1 listener: ingest (PUT/POST/DELETE) and reads. `off` disables it.
    #[arg(long, default_value_t = ListenAddr::loopback(ports::HTTP), value_name = "ADDR|off")]
    pub http: ListenAddr,
    /// HTTP/3 (QUIC, UDP) listener. `[::]` is dual-stack. Port 0 here and in --https: both
    /// get the same port, chosen by the kernel.
    #[arg(long, default_value_t = ListenAddr::any(ports::H3), value_name = "ADDR|off")]
    pub h3: ListenAddr,
    /// TLS listener offering h2 and http/1.1; every response advertises h3 with Alt-Svc.
    #[arg(long, default_value_t = ListenAddr::any(ports::HTTPS), value_name = "ADDR|off")]
    pub https: ListenAddr,
    /// TLS listener offering HTTP/1.1 only, no Alt-Svc: the HTTP/1.1 arm of the A/B.
    #[arg(long = "https-h1", default_value_t = ListenAddr::any(ports::HTTPS_H1), value_name = "ADDR|off")]
    pub https_h1: ListenAddr,
    /// TLS listener offering HTTP/2 only, no Alt-Svc: the HTTP/2 arm.
    #[arg(long = "https-h2", default_value_t = ListenAddr::any(ports::HTTPS_H2), value_name = "ADDR|off")]
    pub https_h2: ListenAddr,
    /// HTTP/3 (QUIC, UDP) ingest listener: PUT/POST/DELETE with the rules of --http (token, Origin, limits),
    /// and reads. Default: 127.0.0.1 on --http's port number, when --http is on and another TLS or QUIC
    /// listener is (a certificate is in use); `off` disables it. With port 0 for both, --http and the h3
    /// ingest get one kernel-chosen number.
    #[arg(long = "h3-ingest", value_name = "ADDR|off")]
    pub h3_ingest: Option<ListenAddr>,
    /// Once every listener is bound, write their ports here, one `NAME=PORT` line each (http, h3,
    /// h3_ingest, https, https_h1, https_h2, moq): for scripts that start the origin on port 0.
    #[arg(long, value_name = "FILE")]
    pub ports_file: Option<PathBuf>,
}

impl ListenArgs {
    /// The HTTP/3 ingest address: the one given, else the default derived
    /// from --http (see the flag's help). The flag says whether it was given
    /// (a default that cannot be bound is not fatal).
    pub fn h3_ingest_addr(&self) -> (Option<SocketAddr>, bool) {
        if let Some(a) = self.h3_ingest {
            return (a.0, true);
        }
        let tls = [self.h3, self.https, self.https_h1, self.https_h2].iter().any(|a| a.0.is_some());
        let derived = self.http.0.filter(|_| tls).map(|a| SocketAddr::from(([127, 0, 0, 1], a.port())));
        (derived, false)
    }
}

/// Media over QUIC (MoQ) listener and limits.
#[derive(Debug, Clone, Args)]
pub struct MoqArgs {
    /// Media over QUIC over WebTransport (UDP) listener, e.g. 127.0.0.1:4435 or [::]:4435. Off by default.
    /// Every stream is published as a MoQ broadcast named after it (docs/moq.md). The same address is also
    /// bound over TCP as a read-only cleartext HTTP/1.1 listener, so `http://HOST:PORT/certificate.sha256`
    /// (where MoQ web players look for the certificate hash) answers on the same port number.
    #[arg(long, default_value = "off", value_name = "ADDR|off")]
    pub moq: ListenAddr,
    /// Concurrent track subscriptions per MoQ session (QUIC flow control: the client cannot open more).
    /// 1 to 1000.
    #[arg(long, default_value = "16", value_parser = count_in(1u32, 1000))]
    pub moq_max_subscriptions: u32,
    /// Bytes quinn buffers per MoQ session (sent, not yet acknowledged): what a subscriber that stops
    /// reading can pin besides the shared group cache. 64K to 1G.
    #[arg(long, default_value = "4M", value_parser = size_in(64 << 10, GIB))]
    pub moq_send_window: u64,
    /// A MoQ session that sends less than 64 KiB in a window this long (nothing subscribed, or a subscriber
    /// that stopped reading) is closed. 1s to 1h.
    #[arg(long, default_value = "30s", value_parser = duration_in(secs(1), HOUR))]
    pub moq_idle_timeout: Duration,
    /// QUIC idle timeout of MoQ sessions (transport parameter `max_idle_timeout`; the origin sends a
    /// keep-alive every third of it): a viewer whose origin vanished (killed, path cut) sees its session
    /// end after this long and reconnects. Short, so players follow an origin restart within a segment
    /// or two. 1s to 1h.
    #[arg(long, default_value = "3s", value_parser = duration_in(secs(1), HOUR))]
    pub moq_quic_idle_timeout: Duration,
    /// How far (media time) a group may fall behind the newest of its track before it is dropped; a
    /// subscriber further behind skips ahead to newer groups. 100ms to 60s.
    #[arg(long, default_value = "4s", value_parser = duration_in(ms(100), secs(60)))]
    pub moq_max_age: Duration,
    /// Bytes of published groups the MoQ view keeps for all subscribers together (oldest dropped beyond).
    /// 1M to 64G.
    #[arg(long, default_value = "64M", value_parser = size_in(MIB, 64 * GIB))]
    pub moq_cache_size: u64,
}

impl MoqArgs {
    /// The view's settings.
    pub fn view(&self) -> crate::moq::MoqConfig {
        crate::moq::MoqConfig { max_age: self.moq_max_age, cache_bytes: self.moq_cache_size }
    }

    /// The session limits.
    pub fn limits(&self) -> crate::transport::moq::MoqLimits {
        crate::transport::moq::MoqLimits {
            // Both within their flags' ranges.
            max_subscriptions: self.moq_max_subscriptions,
            send_window: self.moq_send_window,
            idle_timeout: self.moq_idle_timeout,
            quic_idle_timeout: self.moq_quic_idle_timeout,
        }
    }
}

/// Certificate options.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// PEM certificate chain. Default: certs/cert.pem, generated on first run when missing.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert. Default: certs/key.pem.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Directory for the generated certificate.
    #[arg(long, default_value = "certs")]
    pub cert_dir: PathBuf,
    /// Extra host names or IPs for a generated certificate (localhost, 127.0.0.1 and ::1 are always in).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

/// Store limits.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// How long a GET for a missing object waits for its upload to start before 404. 0s to 60s
    /// (0: 404 at once).
    #[arg(long, default_value = "2s", value_parser = duration_in(Duration::ZERO, secs(60)))]
    pub hold: Duration,
    /// Finished media segments kept per representation (older ones are evicted; init segments and manifests
    /// stay). 1 to 100000.
    #[arg(long, default_value = "10", value_parser = count_in(1usize, 100_000))]
    pub keep_segments: usize,
    /// Largest object one upload may create (413 beyond). 1K to 64G.
    #[arg(long, default_value = "64M", value_parser = size_in(1 << 10, 64 * GIB))]
    pub max_object_size: u64,
    /// New uploads get 503 while stored objects hold this much. 1M to 1T.
    #[arg(long, default_value = "1G", value_parser = size_in(MIB, TIB))]
    pub max_store_size: u64,
    /// A stream with no ingest for this long is dropped whole. 1s to 1day.
    #[arg(long, default_value = "60s", value_parser = duration_in(secs(1), DAY))]
    pub stream_timeout: Duration,
    /// Most objects (names) in the store over all streams; uploads of new names get 503 beyond.
    /// 1 to 10000000.
    #[arg(long, default_value = "10000", value_parser = count_in(1usize, 10_000_000))]
    pub max_objects: usize,
    /// Most live streams (/live/<stream>/); an upload that would create another one gets 503. 1 to 100000.
    #[arg(long, default_value = "100", value_parser = count_in(1usize, 100_000))]
    pub max_live_streams: usize,
    /// Most bytes that evicted segments still being read may keep alive (outside --max-store-size);
    /// beyond it the readers of the oldest ones get an error (stream reset / connection closed).
    /// 0 to 1T (0: an evicted segment is taken from its readers at once).
    #[arg(long, default_value = "128M", value_parser = size_in(0, TIB))]
    pub max_pinned_size: u64,
}

impl StoreArgs {
    /// The store configuration these flags describe.
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            keep_segments: self.keep_segments,
            max_object_bytes: self.max_object_size,
            max_store_bytes: self.max_store_size,
            stream_idle_timeout: self.stream_timeout,
            hold: self.hold,
            max_objects: self.max_objects,
            max_streams: self.max_live_streams,
            max_pinned_bytes: self.max_pinned_size,
        }
    }
}

/// HTTP and connection options.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Directory served for `/` and other non-live paths.
    #[arg(long, default_value = "web")]
    pub web_dir: PathBuf,
    /// Require this token for ingest (Basic auth password, e.g. http://user:TOKEN@host/..., or Bearer).
    #[arg(long, env = "H3LIVE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,
    /// Refuse ingest on the cleartext listener too (read-only origin).
    #[arg(long)]
    pub no_ingest: bool,
    /// Cache-Control max-age of media and init segments, in seconds (while growing and when finished).
    /// 0 to 31536000.
    #[arg(long, default_value = "30", value_parser = count_in(0u64, 31_536_000))]
    pub segment_max_age: u64,
    /// Connections per listener (on the ingest listener: viewers and connections that have not finished
    /// a request head; ingest has its own budget). At the cap, the connections idle the longest are closed
    /// for a newcomer. 1 to 1000000.
    #[arg(long, default_value = "4096", value_parser = count_in(1usize, 1_000_000))]
    pub max_connections: usize,
    /// Connections on the ingest listener whose first request is PUT/POST/DELETE (they leave the
    /// --max-connections budget). 1 to 100000; --no-ingest turns ingest off.
    #[arg(long, default_value = "64", value_parser = count_in(1usize, 100_000))]
    pub max_ingest_connections: usize,
    /// Open connections per client IP address on each listener. 0 to 1000000 (0: no limit).
    #[arg(long, default_value = "256", value_parser = count_in(0usize, 1_000_000))]
    pub max_connections_per_ip: usize,
    /// Concurrent requests per HTTP/2 or HTTP/3 connection. 1 to 10000.
    #[arg(long, default_value = "256", value_parser = count_in(1u32, 10_000))]
    pub max_streams: u32,
    /// Connections with no open request are closed after this (all protocols). Also the default of
    /// --quic-idle-timeout and the TCP keepalive time; HTTP/2 pings and QUIC keep-alives are sent every
    /// third of it. 1s to 1day.
    #[arg(long, default_value = "30s", value_parser = duration_in(secs(1), DAY))]
    pub idle_timeout: Duration,
    /// QUIC idle timeout: a QUIC path silent for this long (keep-alives included) is dead. Keep-alives
    /// are sent every third of it. Default: --idle-timeout. 1s to 1day.
    #[arg(long, value_parser = duration_in(secs(1), DAY))]
    pub quic_idle_timeout: Option<Duration>,
    /// An HTTP/2 connection whose PING is not answered within this is closed. Default: a third of
    /// --idle-timeout. 100ms to 1h.
    #[arg(long, value_parser = duration_in(ms(100), HOUR))]
    pub h2_ping_timeout: Option<Duration>,
    /// A response the client does not read for this long is dropped (HTTP/1.1, HTTP/2: connection
    /// closed; HTTP/3: stream reset). Bounds how long a viewer can pin memory. 1s to 1h.
    #[arg(long, default_value = "30s", value_parser = duration_in(secs(1), HOUR))]
    pub send_timeout: Duration,
    /// An upload whose body brings no byte for this long is aborted (408). 1s to 1h.
    #[arg(long, default_value = "30s", value_parser = duration_in(secs(1), HOUR))]
    pub ingest_idle_timeout: Duration,
    /// An upload must bring at least this many bytes in every --ingest-rate-window, else it is aborted
    /// (408): a body that drips a byte every few seconds cannot hold a connection for ever. 0 to 1G
    /// (0: no floor).
    #[arg(long, default_value = "1K", value_parser = size_in(0, GIB))]
    pub ingest_min_bytes: u64,
    /// Window of --ingest-min-bytes (consecutive windows from the start of each upload). 1s to 1h.
    #[arg(long, default_value = "30s", value_parser = duration_in(secs(1), HOUR))]
    pub ingest_rate_window: Duration,
    /// Largest request header section for HTTP/2 and HTTP/3 (431 beyond). 1K to 1M.
    #[arg(long, default_value = "16K", value_parser = size_in(1 << 10, MIB))]
    pub max_header_size: u64,
    /// Browser origin allowed to send ingest requests (repeatable), e.g. https://tool.example.
    /// Ingest requests with any other Origin header get 403; requests without one (ffmpeg) are unaffected.
    #[arg(long = "ingest-allow-origin", value_name = "ORIGIN")]
    pub ingest_allow_origins: Vec<String>,
    /// QUIC connection attempts per second above which clients must first answer a Retry
    /// (address validation). 0 to 4294967295 (0: always).
    #[arg(long, default_value = "100", value_parser = count_in(0u32, u32::MAX))]
    pub quic_retry_above: u32,
    /// QUIC congestion controller for HTTP/3. bbr keeps a live stream's rate over a lossy path
    /// (1 % loss, 50 ms RTT); quinn's cubic and new-reno fall behind there (docs/results/2026-11-30-http3-under-loss.md).
    #[arg(long, value_enum, default_value = "bbr")]
    pub h3_congestion: Congestion,
    /// Ask HTTP/3 clients that support the QUIC ACK frequency extension (quinn does) to acknowledge
    /// only after more than N ack-eliciting packets (or --h3-max-ack-delay), 1-1000; default: no
    /// request, clients keep their own policy (docs/load.md#ack-traffic).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub h3_ack_frequency: Option<u32>,
    /// With --h3-ack-frequency: the longest a client may hold an ACK, 1ms-1s (quinn asks for at most
    /// the larger of the RTT and 25 ms). Default: the client's own (25 ms for quinn and Chromium).
    #[arg(long, requires = "h3_ack_frequency", value_parser = parse_ack_delay)]
    pub h3_max_ack_delay: Option<Duration>,
    /// Largest UDP payload HTTP/3 path MTU discovery tries, 1200-65527. 1452 fits a 1500-byte
    /// Ethernet MTU; more only helps where the whole path carries it (loopback, jumbo frames) and
    /// the client accepts it.
    #[arg(long, default_value_t = crate::transport::DEFAULT_MTU_UPPER_BOUND, value_parser = parse_udp_payload)]
    pub h3_mtu_upper_bound: u16,
    /// Kernel receive and send buffer of the HTTP/3 UDP socket, e.g. 8M; 0 leaves the kernel default
    /// (208 KiB on Linux, where 500 viewers overflow it: docs/results/2026-12-01-udp-buffer.md). Above
    /// net.core.rmem_max/wmem_max it needs root (SO_RCVBUFFORCE); the size obtained is logged.
    /// 0 to 1G.
    // "8M" is transport::UDP_BUFFER, which the load tool uses.
    #[arg(long, default_value = "8M", value_parser = size_in(0, GIB))]
    pub udp_buffer: u64,
    /// Serve /streams and /metrics on every listener (default: only on the cleartext --http listener).
    #[arg(long)]
    pub public_status: bool,
    /// Time allowed for a TLS or QUIC handshake. Also the default of --header-read-timeout. 1s to 10m.
    #[arg(long, default_value = "10s", value_parser = duration_in(secs(1), secs(600)))]
    pub handshake_timeout: Duration,
    /// Time allowed for a request's header section to arrive, from its first byte wait (HTTP/1.1: after the
    /// connection opens or the previous response ends; HTTP/3: after the request stream opens).
    /// Default: --handshake-timeout. 1s to 10m.
    #[arg(long, value_parser = duration_in(secs(1), secs(600)))]
    pub header_read_timeout: Option<Duration>,
    /// TCP_NOTSENT_LOWAT for accepted TCP connections (Linux), e.g. 128K; 0 leaves the kernel default.
    /// Keeps an HTTP/2 connection's backlog out of the kernel send buffer so new responses are not queued behind it.
    /// 0 to 1G.
    #[arg(long, default_value = "0", value_parser = size_in(0, GIB))]
    pub tcp_notsent_lowat: u64,
    /// LL-HLS part target: CMAF fragments are grouped into parts of at most this length
    /// (at fragment boundaries; a single longer fragment makes a longer part). 10ms to 10s.
    #[arg(long, default_value = "200ms", value_parser = duration_in(ms(10), secs(10)))]
    pub hls_part_target: Duration,
    /// Most memory static-file responses (pages, players) hold at once: files of up to an eighth of it are
    /// read once and shared by every reader, larger ones are streamed from disk in pieces that count against
    /// it (a reader waits when it is spent). 1M to 64G.
    #[arg(long, default_value = "64M", value_parser = size_in(MIB, 64 * GIB))]
    pub max_static_memory: u64,
    /// Keep init segments and the latest manifest of each stream in this directory and publish them again after a
    /// restart (ffmpeg sends init segments only once per run, so without them a restarted origin cannot serve the
    /// running stream until the encoder restarts). `none`: keep nothing. Default: a directory per ingest listener
    /// address, e.g. 127.0.0.1-8080, under $STATE_DIRECTORY (systemd's StateDirectory=), else
    /// $XDG_STATE_HOME/h3live, else ~/.local/state/h3live; none without an ingest listener (--http off,
    /// --no-ingest, front) or on port 0.
    #[arg(long, env = "H3LIVE_STATE_DIR", value_name = "DIR|none")]
    pub state_dir: Option<StateDirArg>,
    /// How long running responses may continue after SIGINT/SIGTERM. 0s to 10m (0: closed at once).
    #[arg(long, default_value = "3s", value_parser = duration_in(Duration::ZERO, secs(600)))]
    pub shutdown_grace: Duration,
}

impl HttpArgs {
    /// The HTTP-layer configuration these flags describe, for an origin whose
    /// ingest listener is `ingest` (`None`: it has none; see [`HttpArgs::state_dir`]).
    pub fn origin_config(&self, ingest: Option<SocketAddr>) -> OriginConfig {
        OriginConfig {
            web_dir: self.web_dir.clone(),
            ingest_token: self.ingest_token.clone(),
            segment_max_age: self.segment_max_age,
            upstream: None,
            ingest_allow_origins: self.ingest_allow_origins.clone(),
            ingest_idle_timeout: self.ingest_idle_timeout,
            ingest_min_bytes: self.ingest_min_bytes,
            ingest_rate_window: self.ingest_rate_window,
            hls_part_target: self.hls_part_target,
            state_dir: self.state_dir(ingest, |k| std::env::var_os(k)),
            max_static_memory: self.max_static_memory,
            moq_certificate_sha256: None,
            prefetch: false,
        }
    }

    /// The state directory in force: `--state-dir` (or `H3LIVE_STATE_DIR`),
    /// else [`default_state_dir`] for the ingest listener `ingest` with the
    /// environment `env`.
    pub fn state_dir(
        &self,
        ingest: Option<SocketAddr>,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Option<PathBuf> {
        match &self.state_dir {
            Some(StateDirArg::Dir(dir)) => Some(dir.clone()),
            Some(StateDirArg::None) => None,
            None => default_state_dir(ingest?, env),
        }
    }

    /// The connection limits these flags describe (unset flags take the
    /// values [`Limits::derived`] derives from --idle-timeout and
    /// --handshake-timeout).
    pub fn limits(&self) -> Limits {
        let mut l = Limits::derived(self.idle_timeout, self.handshake_timeout);
        l.conn.max_connections = self.max_connections;
        l.conn.max_connections_per_ip = self.max_connections_per_ip;
        l.conn.max_ingest_connections = self.max_ingest_connections;
        l.http.send_timeout = self.send_timeout;
        l.http.max_streams_per_connection = self.max_streams;
        // Both within u32 by their ranges.
        l.http.max_header_bytes = self.max_header_size as u32;
        l.tcp.notsent_lowat = (self.tcp_notsent_lowat > 0).then_some(self.tcp_notsent_lowat as u32);
        if let Some(t) = self.header_read_timeout {
            l.h1.header_read_timeout = t;
        }
        if let Some(t) = self.h2_ping_timeout {
            l.h2.ping_timeout = t;
        }
        if let Some(t) = self.quic_idle_timeout {
            l.quic.idle_timeout = t;
            l.quic.keep_alive_interval = t / 3;
        }
        l.quic.retry_above = self.quic_retry_above;
        l.quic.congestion = self.h3_congestion;
        l.quic.ack_frequency = self.h3_ack_frequency.map(|n| crate::transport::AckFrequency {
            ack_eliciting_threshold: n,
            max_ack_delay: self.h3_max_ack_delay,
        });
        l.quic.mtu_upper_bound = self.h3_mtu_upper_bound;
        l.shutdown.grace = self.shutdown_grace;
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default state directory: one per ingest address, under the first
    /// base the environment gives; none on port 0 or without ingest;
    /// `--state-dir DIR|none` overrides it.
    #[test]
    fn state_dir_defaults() {
        use std::ffi::OsString;
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        };
        let at: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let all = env(&[("STATE_DIRECTORY", "/var/lib/h3live:/x"), ("XDG_STATE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(default_state_dir(at, all), Some(PathBuf::from("/var/lib/h3live/127.0.0.1-8080")));
        let xdg = env(&[("XDG_STATE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(default_state_dir(at, xdg), Some(PathBuf::from("/xdg/h3live/127.0.0.1-8080")));
        let home = env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(default_state_dir(at, home), Some(PathBuf::from("/home/u/.local/state/h3live/127.0.0.1-8080")));
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(default_state_dir(v6, home), Some(PathBuf::from("/home/u/.local/state/h3live/__1-9000")));
        assert_ne!(default_state_dir("127.0.0.1:8081".parse().unwrap(), home), default_state_dir(at, home));
        assert_eq!(default_state_dir("127.0.0.1:0".parse().unwrap(), home), None);
        assert_eq!(default_state_dir(at, env(&[])), None);

        use clap::Parser as _;
        let http = |args: &[&str]| Http::parse_from(std::iter::once("t").chain(args.iter().copied())).http;
        assert_eq!(http(&[]).state_dir(Some(at), xdg), Some(PathBuf::from("/xdg/h3live/127.0.0.1-8080")));
        assert_eq!(http(&[]).state_dir(None, xdg), None);
        assert_eq!(http(&["--state-dir", "none"]).state_dir(Some(at), xdg), None);
        assert_eq!(http(&["--state-dir", "/s"]).state_dir(None, xdg), Some(PathBuf::from("/s")));
    }

    #[derive(clap::Parser)]
    struct Http {
        #[command(flatten)]
        http: HttpArgs,
    }

    fn limits(args: &[&str]) -> Limits {
        use clap::Parser as _;
        Http::parse_from(std::iter::once("t").chain(args.iter().copied())).http.limits()
    }

    #[derive(clap::Parser)]
    struct Listen {
        #[command(flatten)]
        listen: ListenArgs,
    }

    /// The listeners' defaults (from `conn::ports`) are the documented ones.
    #[test]
    fn default_listen_addresses() {
        use clap::Parser as _;
        let l = Listen::parse_from(["t"]).listen;
        let shown: Vec<String> =
            [l.http, l.h3, l.https, l.https_h1, l.https_h2].iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1:8080", "[::]:4433", "[::]:4433", "[::]:4443", "[::]:4444"]);
        assert_eq!(Listen::parse_from(["t", "--http", "off"]).listen.http.to_string(), "off");
    }

    /// The h3 ingest listener follows --http onto loopback unless told otherwise.
    #[test]
    fn h3_ingest_defaults_to_loopback_on_the_http_port() {
        use clap::Parser as _;
        let addr = |args: &[&str]| {
            Listen::parse_from(std::iter::once("t").chain(args.iter().copied())).listen.h3_ingest_addr()
        };
        assert_eq!(addr(&[]), (Some("127.0.0.1:8080".parse().unwrap()), false));
        assert_eq!(addr(&["--http", "0.0.0.0:9000"]), (Some("127.0.0.1:9000".parse().unwrap()), false));
        assert_eq!(addr(&["--http", "off"]), (None, false));
        let no_tls = ["--h3", "off", "--https", "off", "--https-h1", "off", "--https-h2", "off"];
        assert_eq!(addr(&no_tls), (None, false));
        assert_eq!(addr(&["--h3-ingest", "off"]), (None, true));
        assert_eq!(addr(&["--h3-ingest", "[::1]:7000"]), (Some("[::1]:7000".parse().unwrap()), true));
    }

    /// Each timeout has its own field; the unset ones keep their old
    /// derivation from --idle-timeout and --handshake-timeout.
    fn http_args(args: &[&str]) -> Result<HttpArgs, clap::Error> {
        use clap::Parser as _;
        Http::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|h| h.http)
    }

    #[test]
    fn ack_frequency_flags() {
        use crate::transport::AckFrequency;
        assert_eq!(limits(&[]).quic.ack_frequency, None);
        let l = limits(&["--h3-ack-frequency", "9"]);
        assert_eq!(l.quic.ack_frequency, Some(AckFrequency { ack_eliciting_threshold: 9, max_ack_delay: None }));
        let l = limits(&["--h3-ack-frequency", "1000", "--h3-max-ack-delay", "40ms"]);
        let want = AckFrequency { ack_eliciting_threshold: 1000, max_ack_delay: Some(Duration::from_millis(40)) };
        assert_eq!(l.quic.ack_frequency, Some(want));
        for bad in [
            &["--h3-ack-frequency", "0"][..],
            &["--h3-ack-frequency", "1001"],
            &["--h3-ack-frequency", "-1"],
            &["--h3-max-ack-delay", "10ms"],
            &["--h3-ack-frequency", "9", "--h3-max-ack-delay", "0ms"],
            &["--h3-ack-frequency", "9", "--h3-max-ack-delay", "500us"],
            &["--h3-ack-frequency", "9", "--h3-max-ack-delay", "2s"],
        ] {
            assert!(http_args(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mtu_upper_bound_flag() {
        assert_eq!(limits(&[]).quic.mtu_upper_bound, 1452);
        assert_eq!(limits(&["--h3-mtu-upper-bound", "9000"]).quic.mtu_upper_bound, 9000);
        assert_eq!(limits(&["--h3-mtu-upper-bound", "65527"]).quic.mtu_upper_bound, 65527);
        for bad in ["1199", "65528", "64K", "0", "x"] {
            assert!(http_args(&["--h3-mtu-upper-bound", bad]).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_udp_payload("1200"), Ok(1200));
        assert_eq!(parse_udp_payload("8K"), Ok(8192));
    }

    #[test]
    fn timeouts_derive_and_override() {
        let l = limits(&["--idle-timeout", "60s", "--handshake-timeout", "5s"]);
        assert_eq!(l.http.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.quic.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.quic.keep_alive_interval, Duration::from_secs(20));
        assert_eq!((l.h2.ping_interval, l.h2.ping_timeout), (Duration::from_secs(20), Duration::from_secs(20)));
        assert_eq!(l.tcp.keepalive, Duration::from_secs(60));
        assert_eq!(l.h1.header_read_timeout, Duration::from_secs(5));
        assert_eq!(l.conn.handshake_timeout, Duration::from_secs(5));
        let l = limits(&["--quic-idle-timeout", "90s", "--h2-ping-timeout", "7s", "--header-read-timeout", "3s"]);
        assert_eq!(l.http.idle_timeout, Duration::from_secs(30));
        assert_eq!(
            (l.quic.idle_timeout, l.quic.keep_alive_interval),
            (Duration::from_secs(90), Duration::from_secs(30))
        );
        assert_eq!((l.h2.ping_interval, l.h2.ping_timeout), (Duration::from_secs(10), Duration::from_secs(7)));
        assert_eq!(
            (l.h1.header_read_timeout, l.conn.handshake_timeout),
            (Duration::from_secs(3), Duration::from_secs(10))
        );
    }
}
