//! `h3live`: the origin binary. Parses flags, binds listeners, runs
//! [`h3live::server::run`] until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use h3live::cert::{self, CertPaths};
use h3live::cli::{CertArgs, HttpArgs, ListenArgs, MoqArgs, StoreArgs};
use h3live::server::{self, Listeners, ServerConfig};
use h3live::transport::{bind_tcp, bind_tcp_udp_same_port, bind_udp};
use tracing::info;

/// Low-latency live video origin: LL-DASH ingest over HTTP/1.1, progressive
/// delivery over HTTP/3, HTTP/2 and HTTP/1.1.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the origin.
    Serve(Box<ServeArgs>),
    /// Edge protocol front: serve viewers over h3/h2/h1 by forwarding every read to an upstream cache (Varnish).
    Front(Box<FrontArgs>),
    /// Generate a self-signed certificate and print the Chromium flags for HTTP/3.
    Cert(CertCmd),
    /// QUIC interop endpoint (quic-interop-runner server): serves a www directory over hq-interop and h3.
    InteropServer(h3live::interop::InteropArgs),
    /// Viewer swarm (N live viewers over h3/h2/h1, latency from prft) and stream record/replay.
    Load(Box<h3live::load::LoadCmd>),
    /// Encoder relay: takes the encoder's uploads on loopback, forwards them to one or more origins
    /// (HTTP/1.1 or HTTP/3), re-sends what an origin lost in a restart.
    Relay(Box<h3live::relay::RelayArgs>),
    /// Network path emulator without sch_netem (NFQUEUE delay line) and its self-check.
    #[command(subcommand)]
    Pathemu(h3live::pathemu::PathemuCmd),
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    cert: CertArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    moq: MoqArgs,
}

/// `h3live front`: the listeners, certificate and limits of `serve`, no
/// store and no ingest; reads go to `--upstream`.
#[derive(clap::Args)]
struct FrontArgs {
    /// The edge cache to forward to: http://HOST:PORT (Varnish with deploy/varnish/h3live.vcl).
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// Time allowed to connect and for response headers (more than the origin's --hold). 1s to 10m.
    #[arg(long, default_value = "10s", value_parser = h3live::units::duration_in(
        std::time::Duration::from_secs(1), std::time::Duration::from_secs(600)))]
    upstream_timeout: std::time::Duration,
    /// Do not prefetch the objects the origin names (CDN-Origin-Assist-Prefetch-Path, docs/edge.md).
    #[arg(long)]
    no_prefetch: bool,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    cert: CertArgs,
    #[command(flatten)]
    http: HttpArgs,
}

/// The store's default settings (front mode has no use for them).
#[derive(Parser)]
struct StoreDefaults {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    moq: MoqArgs,
}

#[derive(clap::Args)]
struct CertCmd {
    /// Output directory (cert.pem, key.pem).
    #[arg(long, default_value = "certs")]
    out: PathBuf,
    /// Extra host names or IPs (localhost, 127.0.0.1 and ::1 are always in).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Do not generate: print the SPKI hash and Chromium flags of the existing files.
    #[arg(long)]
    show: bool,
    /// Port of the HTTP/3 listener, for the printed Chromium command.
    #[arg(long, default_value_t = h3live::conn::ports::H3)]
    port: u16,
}

fn main() -> Result<()> {
    // An empty RUST_LOG (set but blank) counts as unset: the default applies.
    // A RUST_LOG that does not parse is reported, not silently replaced.
    let filter = match std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()) {
        None => h3live::cli::DEFAULT_LOG_FILTER.into(),
        Some(v) => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "h3live: RUST_LOG={v:?} is not a valid filter ({e}); using the default {:?}",
                    h3live::cli::DEFAULT_LOG_FILTER
                );
                h3live::cli::DEFAULT_LOG_FILTER.into()
            }
        },
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(*args, None, false)),
        Command::Front(args) => {
            let up = h3live::core::upstream::Upstream::new(&args.upstream, args.upstream_timeout)?;
            info!(upstream = up.addr(), prefetch = !args.no_prefetch, "front: forwarding every read upstream");
            let serve_args = ServeArgs {
                listen: args.listen,
                cert: args.cert,
                // The store is unused in front mode.
                store: StoreDefaults::parse_from(["front"]).store,
                http: args.http,
                moq: StoreDefaults::parse_from(["front"]).moq,
            };
            rt.block_on(serve(serve_args, Some(std::sync::Arc::new(up)), !args.no_prefetch))
        }
        Command::Cert(args) => cert_cmd(args),
        Command::InteropServer(args) => {
            rt.block_on(async { h3live::interop::run_cli(args, h3live::server::shutdown_signal()).await })
        }
        Command::Load(args) => rt.block_on(h3live::load::main(*args)),
        Command::Pathemu(cmd) => rt.block_on(h3live::pathemu::main(cmd)),
        Command::Relay(args) => {
            let r = rt.block_on(h3live::relay::main(*args));
            // A read of stdin (--exit-on-stdin-eof) may still block a thread: do not wait for it.
            rt.shutdown_background();
            r
        }
    }
}

fn cert_cmd(args: CertCmd) -> Result<()> {
    let paths = CertPaths::in_dir(&args.out);
    if !args.show {
        cert::write_new(&paths, &args.hosts)?;
        println!("wrote {} and {}", paths.cert.display(), paths.key.display());
    }
    let keys = cert::load(&paths)?;
    let host = args.hosts.first().map_or("localhost", String::as_str);
    println!("SPKI SHA-256 (base64): {}", keys.spki_sha256);
    println!("Chromium with HTTP/3 for this origin:");
    println!(
        "  {}",
        cert::chromium_command(&keys.spki_sha256, host, args.port, &format!("https://{host}:{}/", args.port))
    );
    Ok(())
}

/// The TLS certificate: `--cert`/`--key`, else the one in `--cert-dir`
/// (generated when missing). Logs the Chromium command for the h3 port.
fn load_certificate(args: &CertArgs, h3_port: Option<u16>) -> Result<cert::TlsKeys> {
    let paths = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => CertPaths { cert: c.clone(), key: k.clone() },
        _ => CertPaths::in_dir(&args.cert_dir),
    };
    let keys = if args.cert.is_some() { cert::load(&paths)? } else { cert::load_or_generate(&paths, &args.hosts)? };
    info!(cert = %paths.cert.display(), spki_sha256 = %keys.spki_sha256, "certificate loaded");
    if let Some(port) = h3_port {
        let url = format!("https://localhost:{port}/");
        info!("Chromium: {}", cert::chromium_command(&keys.spki_sha256, "localhost", port, &url));
    }
    Ok(keys)
}

/// The MoQ endpoint's WebTransport certificate (kept in `--cert-dir`) and
/// its SHA-256 for `serverCertificateHashes`.
fn load_moq_certificate(args: &ServeArgs, port: u16) -> Result<(server::MoqSetup, String)> {
    let (keys, sha256) = cert::load_or_generate_webtransport(&args.cert.cert_dir, &args.cert.hosts)?;
    info!(
        url = %format!("https://localhost:{port}/"),
        certificate_sha256 = %sha256,
        moq_spki_sha256 = %keys.spki_sha256,
        "MoQ: certificate for serverCertificateHashes (ECDSA, 13 days), also at /certificate.sha256"
    );
    Ok((server::MoqSetup { view: args.moq.view(), keys }, sha256))
}

async fn serve(
    args: ServeArgs,
    upstream: Option<std::sync::Arc<h3live::core::upstream::Upstream>>,
    prefetch: bool,
) -> Result<()> {
    // Signal handlers first: a SIGTERM during start-up stops cleanly too.
    let shutdown = h3live::server::shutdown_signal();
    let l = &args.listen;
    let bind = |a: Option<std::net::SocketAddr>, what: &str| -> Result<_> {
        a.map(|a| bind_tcp(a).with_context(|| format!("binding --{what} {a}"))).transpose()
    };
    let (https, h3) = match (l.https.0, l.h3.0) {
        // Port 0 for both: one kernel-chosen number for TCP and UDP.
        (Some(t), Some(u)) if t.port() == 0 && u.port() == 0 => {
            let (t, u) = bind_tcp_udp_same_port(t, u).with_context(|| format!("binding --https {t} and --h3 {u}"))?;
            (Some(t), Some(u))
        }
        (t, u) => (bind(t, "https")?, u.map(|a| bind_udp(a).with_context(|| format!("binding --h3 {a}"))).transpose()?),
    };
    // MoQ's UDP endpoint and its TCP twin share one number, port 0 included.
    let (moq_http, moq) = match args.moq.moq.0 {
        Some(a) if a.port() == 0 => {
            let (t, u) = bind_tcp_udp_same_port(a, a).with_context(|| format!("binding --moq {a}"))?;
            (Some(t), Some(u))
        }
        a => (
            bind(a, "moq (TCP)")?,
            a.map(|a| bind_udp(a).with_context(|| format!("binding --moq {a} (UDP)"))).transpose()?,
        ),
    };
    // The h3 ingest: none on a front; else --h3-ingest, or its default derived from --http.
    let h3_ingest_addr = if upstream.is_some() { (None, false) } else { l.h3_ingest_addr() };
    let bind_h3_ingest = |a: Option<std::net::SocketAddr>, given: bool| -> Result<_> {
        Ok(match a {
            None => None,
            Some(a) if given => Some(bind_udp(a).with_context(|| format!("binding --h3-ingest {a}"))?),
            // The derived default: a busy port costs only the h3 ingest.
            Some(a) => match bind_udp(a) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(addr = %a, error = %format!("{e:#}"), "h3 ingest not started (the default --h3-ingest address is busy): ingest over HTTP/1.1 only");
                    None
                }
            },
        })
    };
    let (http, h3_ingest) = match (l.http.0, h3_ingest_addr) {
        // Port 0 for both (the default follows --http): one kernel-chosen number, the encoder relay
        // finding the h3 ingest on its origin's --http port number.
        (Some(t), (Some(u), _)) if t.port() == 0 && u.port() == 0 => {
            let (t, u) =
                bind_tcp_udp_same_port(t, u).with_context(|| format!("binding --http {t} and --h3-ingest {u}"))?;
            (Some(t), Some(u))
        }
        (t, (u, given)) => (bind(t, "http")?, bind_h3_ingest(u, given)?),
    };
    let listeners = Listeners {
        http,
        https,
        https_h1: bind(l.https_h1.0, "https-h1")?,
        https_h2: bind(l.https_h2.0, "https-h2")?,
        h3,
        h3_ingest,
        moq,
        moq_http,
    };
    if let Some(path) = &l.ports_file {
        h3live::conn::ports::write_file(path, &listeners.ports())
            .with_context(|| format!("writing --ports-file {}", path.display()))?;
    }
    if let Some(sock) = &listeners.h3 {
        let want = args.http.udp_buffer;
        let (rcv, snd) = h3live::transport::set_udp_buffers(sock, want);
        // The kernel reports twice what it granted.
        if want > 0 && (rcv as u64) / 2 < want {
            tracing::warn!(
                want,
                got = rcv,
                "h3: the UDP receive buffer is smaller than --udp-buffer (raise net.core.rmem_max or run as root)"
            );
        }
        tracing::info!(receive = rcv, send = snd, "h3 UDP socket buffers");
    }
    // The bound ports (a flag's may be 0).
    let h3_port = listeners.h3.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.port());
    let tls = if listeners.need_tls() { Some(load_certificate(&args.cert, h3_port)?) } else { None };
    let front = upstream.is_some();
    let ingest_on_http = !args.http.no_ingest && !front;
    // The state directory's default is keyed by the ingest listener's address.
    let ingest = l.http.0.filter(|_| ingest_on_http);
    let moq = match args.moq.moq.0 {
        Some(addr) => {
            let port = listeners.moq.as_ref().and_then(|s| s.local_addr().ok()).map_or(addr.port(), |a| a.port());
            Some(load_moq_certificate(&args, port)?)
        }
        None => None,
    };
    let mut limits = args.http.limits();
    limits.moq = args.moq.limits();
    let config = ServerConfig {
        store: args.store.config(),
        origin: h3live::core::OriginConfig {
            upstream,
            prefetch,
            moq_certificate_sha256: moq.as_ref().map(|m| m.1.clone()),
            ..args.http.origin_config(ingest)
        },
        limits,
        tls,
        ingest_on_http,
        public_status: args.http.public_status,
        moq: moq.map(|m| m.0),
    };
    server::run(config, listeners, shutdown).await
}
