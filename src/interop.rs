//! QUIC interop endpoint: the server role of the quic-interop-runner
//! (`interop/run_endpoint.sh` maps its `TESTCASE` to these options).
//!
//! One QUIC endpoint offers two ALPNs and dispatches on the negotiated one:
//! - `hq-interop`: HTTP/0.9 over QUIC. The request is one line,
//!   `GET /path\r\n`, on a bidirectional stream; the response is the file's
//!   bytes, then FIN. A missing or refused file resets the stream.
//! - `h3`: the origin's own HTTP/3 adapter ([`crate::transport::h3`]) over an
//!   origin whose web directory is the www directory, so HTTP rules are not
//!   duplicated here.
//!
//! Test-case switches: Retry for every new address (`--retry`), only
//! TLS_CHACHA20_POLY1305_SHA256 (`--chacha20`), 0-RTT (`--zero-rtt`), a
//! server-initiated key update mid-transfer (`--key-update`), one qlog trace
//! per connection (`--qlog-dir`). Session resumption is always on (rustls'
//! in-memory session cache, two TLS 1.3 tickets per handshake); ECN is on
//! whenever quinn-udp supports it on the platform (Linux does). quinn 0.11
//! does not implement QUIC v2 (RFC 9369), so there is no switch for it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument as _};

use crate::cert::{self, CertPaths, TlsKeys};
use crate::core::route::Route;
use crate::core::static_files::{self, LookupError};
use crate::core::{Origin, OriginConfig};
use crate::store::{Store, StoreConfig};
use crate::transport::accept::{ConfigFor, Door, QuicAccept};
use crate::transport::{self, Activity, ConnInfo, Limits, ListenerInfo, Tasks, Transport};

/// ALPN of HTTP/0.9 over QUIC, as the interop runner names it.
pub const ALPN_HQ: &[u8] = b"hq-interop";
/// ALPN of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

/// Longest HTTP/0.9 request line accepted.
const MAX_REQUEST_LINE: usize = 4096;
/// Read size when streaming a file to an hq-interop stream.
const FILE_CHUNK: usize = 64 << 10;
/// Stream reset code for a refused hq-interop request (H3_REQUEST_REJECTED's
/// value; HTTP/0.9 has no codes of its own).
const HQ_REJECTED: u32 = 0x10b;
/// Server-sent bytes after which `--key-update` updates the keys: far enough
/// into a transfer that both key phases carry data.
const KEY_UPDATE_AFTER_BYTES: u64 = 64 << 10;

/// Options of `h3live interop-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct InteropArgs {
    /// UDP address to listen on (`[::]` is dual-stack).
    #[arg(long, default_value = "[::]:443")]
    pub listen: SocketAddr,
    /// Directory whose files are served.
    #[arg(long, default_value = "/www")]
    pub www: PathBuf,
    /// PEM certificate chain.
    #[arg(long, default_value = "/certs/cert.pem")]
    pub cert: PathBuf,
    /// PEM private key.
    #[arg(long, default_value = "/certs/priv.key")]
    pub key: PathBuf,
    /// Validate every client address with a Retry packet before accepting it.
    #[arg(long)]
    pub retry: bool,
    /// Offer only the TLS_CHACHA20_POLY1305_SHA256 cipher suite.
    #[arg(long)]
    pub chacha20: bool,
    /// Accept 0-RTT data from resuming clients (and send 0.5-RTT data).
    #[arg(long)]
    pub zero_rtt: bool,
    /// Initiate one key update per connection, 64 KiB into the transfer.
    #[arg(long)]
    pub key_update: bool,
    /// Write one qlog trace (JSON-SEQ, `.sqlog`, opens in qvis) per connection here.
    #[arg(long)]
    pub qlog_dir: Option<PathBuf>,
    /// Once bound, write the port here as one `quic=PORT` line (for --listen with port 0).
    #[arg(long, value_name = "FILE")]
    pub ports_file: Option<PathBuf>,
}

/// Load the certificate and run the endpoint until SIGINT/SIGTERM.
pub async fn run_cli(args: InteropArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    let keys = cert::load(&CertPaths { cert: args.cert.clone(), key: args.key.clone() })?;
    let socket = transport::bind_udp(args.listen).with_context(|| format!("binding --listen {}", args.listen))?;
    if let Some(path) = &args.ports_file {
        crate::conn::ports::write_file(path, &[("quic", socket.local_addr()?.port())])
            .with_context(|| format!("writing --ports-file {}", path.display()))?;
    }
    serve(&args, &keys, socket, shutdown).await
}

/// The rustls config for the endpoint: TLS 1.3, both ALPNs, optionally
/// ChaCha20 only and 0-RTT.
fn tls_config(args: &InteropArgs, keys: &TlsKeys) -> Result<quinn::crypto::rustls::QuicServerConfig> {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    let mut provider = default_provider();
    if args.chacha20 {
        provider.cipher_suites = vec![cipher_suite::TLS13_CHACHA20_POLY1305_SHA256];
    }
    let mut tls =
        transport::tls::server_config_with(Arc::new(provider), &[&rustls::version::TLS13], keys, &[ALPN_HQ, ALPN_H3])?;
    // QUIC allows only 0 or u32::MAX here (RFC 9001 §4.6.1).
    tls.max_early_data_size = if args.zero_rtt { u32::MAX } else { 0 };
    // Packet protection of Initial packets is always AES-128-GCM (RFC 9001
    // §5.2), even when the handshake may only negotiate ChaCha20.
    let initial = cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|s| s.quic_suite())
        .context("ring lacks the QUIC initial suite")?;
    quinn::crypto::rustls::QuicServerConfig::with_initial(Arc::new(tls), initial).context("QUIC TLS config")
}

/// Transport parameters, with a qlog trace for one connection when asked.
fn transport_config(limits: &Limits, qlog: Option<&Path>) -> quinn::TransportConfig {
    let mut t = transport::h3::transport_config(limits, false);
    if let Some(path) = qlog {
        match std::fs::File::create(path) {
            Ok(file) => {
                let mut q = quinn::QlogConfig::default();
                // Line-buffered: each event reaches the file as it happens, so a
                // trace can be read while the server runs.
                q.writer(Box::new(std::io::LineWriter::new(file))).title(Some("h3live interop-server".into()));
                t.qlog_stream(q.into_stream());
            }
            Err(e) => warn!(path = %path.display(), error = %e, "cannot create qlog file"),
        }
    }
    t
}

/// Serve `args.www` on `socket` until `shutdown` resolves.
pub async fn serve(
    args: &InteropArgs,
    keys: &TlsKeys,
    socket: std::net::UdpSocket,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let limits = Limits::default();
    let mut base = quinn::ServerConfig::with_crypto(Arc::new(tls_config(args, keys)?));
    base.transport_config(Arc::new(transport_config(&limits, None)));
    let endpoint = transport::quic_endpoint(socket, base.clone(), &keys.key)?;
    if let Some(dir) = &args.qlog_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    info!(addr = %endpoint.local_addr()?, www = %args.www.display(), retry = args.retry, chacha20 = args.chacha20,
        zero_rtt = args.zero_rtt, key_update = args.key_update, "interop server listening (hq-interop, h3)");
    let ctx = conn_ctx(args, &limits);
    let tasks = Tasks::default();
    let metrics = ctx.origin.metrics().clone();
    let door =
        Door::new(ctx.listener.clone(), &limits.conn, metrics, None, tasks.shutdown.clone(), tasks.tracker.clone());
    let opts = QuicAccept {
        // Retry for every new address when asked, else never.
        retry_above: if args.retry { 0 } else { u32::MAX },
        zero_rtt: args.zero_rtt,
        config_for: args.qlog_dir.clone().map(|dir| qlog_per_connection(dir, base, limits.clone())),
    };
    let t = tasks.clone();
    let accept = door.accept_quic(&endpoint, opts, move |conn, remote, activity| {
        handle_conn(conn, ctx.clone(), remote, activity, t.shutdown.clone(), t.tracker.clone())
    });
    tokio::select! {
        _ = accept => {}
        _ = shutdown => {}
    }
    tasks.stop(limits.shutdown.grace, &[endpoint]).await;
    Ok(())
}

/// What the connections share: the www directory and an origin over it for h3.
fn conn_ctx(args: &InteropArgs, limits: &Limits) -> Arc<ConnCtx> {
    let origin = Arc::new(Origin::new(
        Store::new(StoreConfig::default()),
        OriginConfig { web_dir: args.www.clone(), ..OriginConfig::default() },
    ));
    Arc::new(ConnCtx {
        www: args.www.clone(),
        origin,
        listener: Arc::new(ListenerInfo { name: "interop", ingest: false, alt_svc: None, status_pages: false }),
        key_update: args.key_update,
        limits: limits.clone(),
    })
}

/// What every connection task shares.
struct ConnCtx {
    /// Root of the files served over hq-interop.
    www: PathBuf,
    /// The origin serving h3 (its web directory is `www`).
    origin: Arc<Origin>,
    /// Listener description for the origin's logs and metrics.
    listener: Arc<ListenerInfo>,
    /// Whether the server initiates a key update.
    key_update: bool,
    /// The limits of the endpoint, also for its h3 connections.
    limits: Limits,
}

/// A server config per connection, each with its own qlog trace in `dir`
/// (`server-NNNN-<original destination CID>.sqlog`).
fn qlog_per_connection(dir: PathBuf, base: quinn::ServerConfig, limits: Limits) -> ConfigFor {
    let seq = AtomicU64::new(0);
    Arc::new(move |incoming: &quinn::Incoming| {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("server-{n:04}-{}.sqlog", incoming.orig_dst_cid()));
        let mut cfg = base.clone();
        cfg.transport_config(Arc::new(transport_config(&limits, Some(&path))));
        Arc::new(cfg)
    })
}

/// Serve one connection whose handshake is done (or, with 0-RTT, under way):
/// dispatch on its ALPN.
async fn handle_conn(
    conn: quinn::Connection,
    ctx: Arc<ConnCtx>,
    remote: SocketAddr,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .unwrap_or_default();
    info!(alpn = %String::from_utf8_lossy(&alpn), "connection accepted");
    if ctx.key_update {
        tokio::spawn(update_keys_mid_transfer(conn.clone()));
    }
    let watched = conn.clone();
    match alpn.as_slice() {
        ALPN_HQ => serve_hq(conn, ctx, shutdown, tracker).await,
        ALPN_H3 => {
            let info = Arc::new(ConnInfo { listener: ctx.listener.clone(), transport: Transport::H3, remote });
            transport::h3::serve_conn(conn, info, activity, ctx.origin.clone(), &ctx.limits, shutdown, tracker).await;
        }
        other => warn!(alpn = %String::from_utf8_lossy(other), "unexpected ALPN"),
    }
    // Who ended it, for the interop matrix: a client that closes by itself
    // with its downloads unfinished failed on its own side. The close
    // reason alone cannot tell: the h3 layer closes the connection too once
    // it sees the client's close, and quinn then reports a local close; the
    // count of CONNECTION_CLOSE frames received can.
    let reason = watched.closed().await;
    let client_closed = watched.stats().frame_rx.connection_close > 0;
    info!(ended = %ended_by(&reason, client_closed), "connection ended");
}

/// Who ended a connection, in words: the client (with its close frame's
/// code and reason when quinn kept them), this server, an idle timeout or a
/// protocol error. `client_closed`: a CONNECTION_CLOSE came from the client.
fn ended_by(e: &quinn::ConnectionError, client_closed: bool) -> String {
    use quinn::ConnectionError as E;
    let reason =
        |r: &[u8]| if r.is_empty() { String::new() } else { format!(", reason {:?}", String::from_utf8_lossy(r)) };
    match e {
        E::ApplicationClosed(c) => {
            format!("closed by the client, application code {}{}", c.error_code, reason(&c.reason))
        }
        E::ConnectionClosed(c) => format!("closed by the client, transport code {}{}", c.error_code, reason(&c.reason)),
        _ if client_closed => "closed by the client (its CONNECTION_CLOSE was received)".into(),
        E::LocallyClosed => "closed by this server".into(),
        E::TimedOut => "idle timeout".into(),
        E::Reset => "reset by the client (stateless reset)".into(),
        other => format!("protocol error: {other}"),
    }
}

/// Initiate one key update once `KEY_UPDATE_AFTER_BYTES` have been sent (or
/// when the connection closes first, never).
async fn update_keys_mid_transfer(conn: quinn::Connection) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = conn.closed() => return,
        }
        if conn.stats().udp_tx.bytes >= KEY_UPDATE_AFTER_BYTES {
            conn.force_key_update();
            info!(sent = conn.stats().udp_tx.bytes, "initiated a key update");
            return;
        }
    }
}

/// HTTP/0.9 over QUIC: one request per bidirectional stream. At shutdown no
/// new request is taken; the connection stays open for the running ones until
/// the client closes it or the endpoint is closed after the grace period.
async fn serve_hq(conn: quinn::Connection, ctx: Arc<ConnCtx>, shutdown: CancellationToken, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            s = conn.accept_bi() => s,
            _ = shutdown.cancelled() => {
                conn.closed().await;
                return;
            }
        };
        let (send, recv) = match accepted {
            Ok(s) => s,
            Err(quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed) => return,
            Err(e) => {
                debug!(error = %e, "hq connection ended");
                return;
            }
        };
        let ctx = ctx.clone();
        let id = send.id();
        tracker.spawn(
            async move {
                if let Err(e) = hq_request(send, recv, &ctx.www).await {
                    debug!(error = format!("{e:#}"), "hq request failed");
                }
            }
            .instrument(info_span!("hq", stream = %id)),
        );
    }
}

async fn hq_request(mut send: quinn::SendStream, mut recv: quinn::RecvStream, www: &Path) -> Result<()> {
    let line = read_request_line(&mut recv).await?;
    let Some(path) = parse_request_line(&line) else {
        debug!(line = %String::from_utf8_lossy(&line), "bad hq request");
        send.reset(HQ_REJECTED.into()).ok();
        return Ok(());
    };
    let mut file = match open_in(www, path).await {
        Ok(f) => f,
        Err(e) => {
            debug!(path, error = %e, "hq: refused");
            send.reset(HQ_REJECTED.into()).ok();
            return Ok(());
        }
    };
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await.context("reading the file")?;
        if n == 0 {
            break;
        }
        send.write_all(&buf[..n]).await.context("writing to the stream")?;
        total += n as u64;
    }
    send.finish().context("finishing the stream")?;
    debug!(path, bytes = total, "hq: served");
    Ok(())
}

/// Read up to the end of the request line (`\n`) or the end of the stream.
async fn read_request_line(recv: &mut quinn::RecvStream) -> Result<Vec<u8>> {
    let mut line = Vec::new();
    while !line.contains(&b'\n') {
        anyhow::ensure!(line.len() <= MAX_REQUEST_LINE, "request line too long");
        match recv.read_chunk(MAX_REQUEST_LINE, true).await.context("reading the request")? {
            Some(chunk) => line.extend_from_slice(&chunk.bytes),
            None => break,
        }
    }
    Ok(line)
}

/// The path of an HTTP/0.9 request line `GET /path` (CRLF or LF optional).
pub fn parse_request_line(line: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.split('\n').next()?.trim_end_matches('\r');
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("GET"), Some(path), None) if path.starts_with('/') => Some(path),
        _ => None,
    }
}

/// Open the file `path` names under `www`, with the origin's path rules
/// ([`Route::parse`]: percent-decoding, no separators or dot-names in a
/// component) and its root-confined lookup ([`static_files::open_in`]; a
/// directory is not a file here).
async fn open_in(www: &Path, path: &str) -> Result<tokio::fs::File, LookupError> {
    let Ok(Route::Static(parts)) = Route::parse(path) else { return Err(LookupError::NotFound) };
    Ok(static_files::open_in(www, &parts, false).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_ended_a_connection() {
        let app = quinn::ApplicationClose { error_code: quinn::VarInt::from_u32(0x100), reason: "bye".into() };
        assert_eq!(
            ended_by(&quinn::ConnectionError::ApplicationClosed(app), true),
            "closed by the client, application code 256, reason \"bye\""
        );
        assert_eq!(ended_by(&quinn::ConnectionError::LocallyClosed, false), "closed by this server");
        // The client's close came first, then the h3 layer closed locally.
        assert_eq!(
            ended_by(&quinn::ConnectionError::LocallyClosed, true),
            "closed by the client (its CONNECTION_CLOSE was received)"
        );
        assert_eq!(ended_by(&quinn::ConnectionError::TimedOut, false), "idle timeout");
    }

    #[test]
    fn request_lines() {
        assert_eq!(parse_request_line(b"GET /a.bin\r\n"), Some("/a.bin"));
        assert_eq!(parse_request_line(b"GET /a.bin"), Some("/a.bin"));
        assert_eq!(parse_request_line(b"GET /x/y\n"), Some("/x/y"));
        assert_eq!(parse_request_line(b"PUT /a\r\n"), None);
        assert_eq!(parse_request_line(b"GET a\r\n"), None);
        assert_eq!(parse_request_line(b"GET /a HTTP/1.1\r\n"), None);
    }

    #[tokio::test]
    async fn paths_stay_inside_www() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.bin"), b"x").unwrap();
        assert!(open_in(dir.path(), "/f.bin").await.is_ok());
        assert!(matches!(open_in(dir.path(), "/missing").await, Err(LookupError::NotFound)));
        assert!(open_in(dir.path(), "/../etc/passwd").await.is_err());
        assert!(open_in(dir.path(), "/%2e%2e/etc/passwd").await.is_err());
        assert!(matches!(open_in(dir.path(), "/").await, Err(LookupError::NotFound)));
    }
}
