//! `h3live load`: a swarm of simulated live viewers, and the tools that feed
//! an origin a realistic stream without running an encoder.
//!
//! - [`viewer`]: one viewer (manifest, init segments once, then each media
//!   segment while it is written); thousands run as tasks on the two tokio
//!   worker threads of the binary, sharing one [`Connector`] (for HTTP/3 a
//!   few quinn client endpoints, each carrying many QUIC connections).
//! - [`cmaf`]: incremental box parsing; the latency of a fragment is the time
//!   from its `prft` wall clock to the arrival of the last byte of its `mdat`.
//! - [`mpd`]: the manifest fields a live viewer needs.
//! - [`stats`]: lock-free counters and a 1 %-resolution latency histogram.
//! - [`capture`], [`record`], [`replay`]: a capture format with per-chunk
//!   timing, a recorder ffmpeg can push to, a looping real-time replay into
//!   the origin's ingest (re-stamping `prft`), and a synthetic stream.
//!
//! Subcommands: `h3live load [viewer flags]` runs viewers (optionally with
//! `--replay DIR` feeding the origin in the same process); `load record`,
//! `load replay`, `load synth` handle captures.

pub mod capture;
pub use crate::cmaf;
pub mod moq;
pub use crate::mpd;
pub mod record;
pub mod replay;
pub mod stats;
pub mod viewer;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::client::{Connector, QuicClientOptions};
use crate::conn::ports;
use crate::quic_stats::{QuicTally, QuicTotals};
use crate::transport::Transport;
use crate::units::parse_duration;
use stats::{Percentiles, Totals, ViewerReport};
use viewer::{Pace, Shared, Tracks, Viewers};

/// Viewer swarm and stream replay for benchmarks.
#[derive(Debug, Parser)]
#[command(name = "load", args_conflicts_with_subcommands = true)]
pub struct LoadCmd {
    /// Capture tools; without one, run viewers.
    #[command(subcommand)]
    pub mode: Option<Mode>,
    /// Viewer options.
    #[command(flatten)]
    pub viewers: LoadArgs,
}

/// Capture tools.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Act as the ingest listener and record what an encoder pushes.
    Record(RecordArgs),
    /// Push a capture into an origin at real-time pace, looping.
    Replay(ReplayArgs),
    /// Write a synthetic capture (CMAF-shaped filler, real prft/tfdt timing).
    Synth(SynthArgs),
}

/// A transport, as named on the command line and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// HTTP/3 over QUIC.
    H3,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// Cleartext HTTP/1.1.
    H1Clear,
    /// Media over QUIC (moq-lite over WebTransport): one subscriber per viewer.
    Moq,
}

impl TransportArg {
    /// The HTTP transport, or `None` for MoQ.
    pub fn http(self) -> Option<Transport> {
        match self {
            TransportArg::H3 => Some(Transport::H3),
            TransportArg::H2 => Some(Transport::H2),
            TransportArg::H1Tls => Some(Transport::H1Tls),
            TransportArg::H1Clear => Some(Transport::H1Clear),
            TransportArg::Moq => None,
        }
    }

    /// The label in reports and progress lines.
    pub fn label(self) -> &'static str {
        self.http().map_or("moq", Transport::as_str)
    }
}

/// Viewer swarm options.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Transport every viewer uses.
    #[arg(long, short = 't', value_enum, default_value = "h3")]
    pub transport: TransportArg,
    /// Origin address. Default: the `serve` default listener of the transport
    /// (h3 127.0.0.1:4433, h2 :4444, h1-tls :4443, h1-clear :8080, moq :4435).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Server name checked against the certificate.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// PEM certificate(s) to trust.
    #[arg(long, default_value = "certs/cert.pem")]
    pub ca: PathBuf,
    /// MoQ: hex SHA-256 of the endpoint's certificate (default: fetched from
    /// http://ADDR/certificate.sha256, the origin's TCP twin of the MoQ port).
    #[arg(long, value_name = "HEX")]
    pub cert_hash: Option<String>,
    /// Stream name: the manifest is /live/STREAM/manifest.mpd.
    #[arg(long, default_value = "test")]
    pub stream: String,
    /// Manifest path, overriding --stream (e.g. /static/manifest.mpd).
    #[arg(long)]
    pub manifest: Option<String>,
    /// Number of viewers.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub viewers: usize,
    /// How long to run (after the ramp).
    #[arg(long, short = 'd', default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Spread viewer starts over this long.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// When the next segment is requested.
    #[arg(long, value_enum, default_value = "live")]
    pub pace: Pace,
    /// Representations each viewer follows.
    #[arg(long, value_enum, default_value = "all")]
    pub tracks: Tracks,
    /// ABR ladder: follow this video representation (`Representation@id`, `lowest` or
    /// `highest` bandwidth) instead of every video representation.
    #[arg(long, value_name = "ID|lowest|highest")]
    pub representation: Option<mpd::Representation>,
    /// A segment ending more than this beyond its duration after the previous one is a stall.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub stall_margin: Duration,
    /// Connect and read the manifest, then hold the connection idle (memory per idle viewer).
    #[arg(long)]
    pub idle: bool,
    /// How long a viewer waits for the stream to appear (manifest/init 404s).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub wait: Duration,
    /// HTTP/3: QUIC connections per client endpoint (UDP socket). One task
    /// drives each endpoint's socket, so many connections per endpoint
    /// serialize the viewers' receive path (100 h3 viewers: prft p99 32 ms
    /// at 128 per endpoint, 7 ms at 16); too few costs sockets and wake-ups.
    #[arg(long, default_value_t = 32)]
    pub conns_per_endpoint: usize,
    /// HTTP/3: the largest UDP datagram the clients accept (their `max_udp_payload_size`), 1200-65527.
    /// quinn's default, 1472, fits a 1500-byte Ethernet MTU; an origin started with a larger
    /// --h3-mtu-upper-bound sends larger datagrams on loopback only if this allows them.
    #[arg(long, value_parser = crate::units::parse_udp_payload)]
    pub max_udp_payload: Option<u16>,
    /// Write the report as JSON here (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Also replay this capture into the origin's ingest while the viewers run.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// Cleartext ingest address for --replay.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], ports::HTTP)))]
    pub ingest: SocketAddr,
    /// prft re-stamping for --replay.
    #[arg(long, value_enum, default_value = "push")]
    pub prft: replay::PrftMode,
}

impl LoadArgs {
    fn addr(&self) -> SocketAddr {
        self.addr.unwrap_or_else(|| {
            let port = match self.transport {
                TransportArg::H3 => ports::H3,
                TransportArg::H2 => ports::HTTPS_H2,
                TransportArg::H1Tls => ports::HTTPS_H1,
                TransportArg::H1Clear => ports::HTTP,
                TransportArg::Moq => ports::MOQ,
            };
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }

    /// The MoQ broadcast: the stream of `--manifest` (`/live/STREAM/…`) or `--stream`.
    fn broadcast(&self) -> String {
        self.manifest
            .as_deref()
            .and_then(|m| m.strip_prefix("/live/")?.split('/').next().map(str::to_string))
            .unwrap_or_else(|| self.stream.clone())
    }

    fn manifest_path(&self) -> String {
        self.manifest.clone().unwrap_or_else(|| format!("/live/{}/manifest.mpd", self.stream))
    }
}

/// `load record` options.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Address to listen on; point the encoder's output URL here.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Capture directory to write.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Stop after this long (default: at SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// `load replay` options.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Capture directory.
    #[arg(long, short = 'c')]
    pub capture: PathBuf,
    /// Cleartext ingest address of the origin.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], ports::HTTP)))]
    pub ingest: SocketAddr,
    /// Stream name to push as.
    #[arg(long, default_value = "test")]
    pub stream: String,
    /// prft re-stamping.
    #[arg(long, value_enum, default_value = "push")]
    pub prft: replay::PrftMode,
    /// Stop after this long (default: at SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Instead of pushing, write a static copy (manifest, init and this many
    /// media segments, timeline starting now) into --static-out.
    #[arg(long, requires = "static_out")]
    pub static_segments: Option<u64>,
    /// Directory for --static-segments.
    #[arg(long)]
    pub static_out: Option<PathBuf>,
    /// With --static-segments: start the timeline this long from now.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub static_delay: Duration,
}

/// `load synth` options.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Capture directory to write.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Length.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Segment duration.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub segment: Duration,
    /// Video bitrate in bit/s.
    #[arg(long, default_value_t = 2_000_000)]
    pub bitrate: u64,
    /// Video fragments per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
}

/// The result of a viewer run (the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Transport label.
    pub transport: String,
    /// Origin address.
    pub addr: String,
    /// Manifest path.
    pub manifest: String,
    /// Viewers started.
    pub viewers: usize,
    /// Viewers with their connection up at the end.
    pub connected: u64,
    /// Request pacing.
    pub pace: Pace,
    /// Idle viewers (connection held, nothing streamed).
    pub idle: bool,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Measured duration (ramp included), seconds.
    pub duration_s: f64,
    /// Body bytes received by all viewers.
    pub bytes: u64,
    /// Aggregate receive rate.
    pub mbit_per_s: f64,
    /// Fragments completed.
    pub fragments: u64,
    /// Media segments completed.
    pub segments: u64,
    /// Errors (failed connections and requests, broken bodies).
    pub errors: u64,
    /// Segments slower than real time.
    pub stalls: u64,
    /// prft → last byte of each fragment (join segments excluded).
    pub latency: Percentiles,
    /// Errors by root cause.
    pub error_kinds: BTreeMap<String, u64>,
    /// Per media segment: when the first viewer got its first byte (µs since the Unix epoch).
    pub first_byte_unix_us: BTreeMap<String, u64>,
    /// The in-process replay, if any: requests, bytes, errors.
    pub replay: Option<BTreeMap<String, u64>>,
    /// HTTP/3: quinn's counters summed over the viewers' connections (what
    /// the clients sent and received: ACKs, ACK_FREQUENCY honoured).
    pub quic: Option<QuicTotals>,
    /// Per viewer.
    pub per_viewer: Vec<ViewerReport>,
}

impl Report {
    /// Write the report as pretty JSON to `path` (`-`: stdout).
    fn write_json(&self, path: &std::path::Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)? + "\n";
        if path.as_os_str() == "-" {
            print!("{json}");
        } else {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let l = &self.latency;
        format!(
            "{} x{} {}: {:.1} s, {} MB, {:.2} Mbit/s ({:.3} per viewer), {} segments, {} fragments\n\
             latency prft→last byte (n={}): p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms  mean {:.1} ms\n\
             errors {}  stalls {}  connected at end {}/{}{}",
            self.transport,
            self.viewers,
            if self.idle { "idle" } else { "viewers" },
            self.duration_s,
            self.bytes / 1_000_000,
            self.mbit_per_s,
            self.mbit_per_s / self.viewers.max(1) as f64,
            self.segments,
            self.fragments,
            l.count,
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.max_ms,
            l.mean_ms,
            self.errors,
            self.stalls,
            self.connected,
            self.viewers,
            if self.error_kinds.is_empty() { String::new() } else { format!("\nerror kinds: {:?}", self.error_kinds) },
        )
    }
}

/// Run the `load` command.
pub async fn main(cmd: LoadCmd) -> Result<()> {
    let stop = CancellationToken::new();
    {
        let (stop, signal) = (stop.clone(), crate::server::shutdown_signal());
        tokio::spawn(async move {
            signal.await;
            stop.cancel();
        });
    }
    match cmd.mode {
        Some(Mode::Record(a)) => {
            if let Some(d) = a.duration {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    stop.cancel();
                });
            }
            record::run(a.listen, &a.out, stop).await
        }
        Some(Mode::Replay(a)) => {
            let plan = replay::load_plan(&a.capture)?;
            if let (Some(n), Some(dir)) = (a.static_segments, &a.static_out) {
                let bytes = replay::write_static(&plan, dir, n, SystemTime::now() + a.static_delay)?;
                println!("wrote {n} segments per representation ({bytes} bytes) to {}", dir.display());
                return Ok(());
            }
            let stats = Arc::new(replay::ReplayStats::default());
            replay::run(plan, a.ingest, &a.stream, a.prft, a.duration, stop, stats.clone()).await?;
            println!(
                "replay: {} requests, {} bytes, {} errors",
                stats.requests.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.errors.load(Ordering::Relaxed)
            );
            Ok(())
        }
        Some(Mode::Synth(a)) => {
            let opts = capture::SynthOptions {
                duration: a.duration,
                segment: a.segment,
                video_bitrate: a.bitrate,
                fps: a.fps,
            };
            capture::synthesize(&a.out, &opts)?;
            println!("wrote a synthetic capture to {}", a.out.display());
            Ok(())
        }
        None => {
            let report = run(cmd.viewers, stop).await?;
            eprintln!("{}", report.summary());
            Ok(())
        }
    }
}

/// Run viewers as `args` say until the duration ends or `stop` is
/// cancelled; write the JSON report if asked and return it.
pub async fn run(args: LoadArgs, stop: CancellationToken) -> Result<Report> {
    let transport = args.transport.label();
    let addr = args.addr();
    let tally = Arc::new(QuicTally::default());
    let connectors = match args.transport.http() {
        Some(t) => Connectors::Http(connectors(&args, t, addr, &tally)?),
        None => Connectors::Moq(moq_clients(&args, addr).await?),
    };
    let endpoints = connectors.len();
    // The in-process replay feeds the origin first.
    let replay = args.replay.as_deref().map(|dir| InProcessReplay::start(&args, dir)).transpose()?;

    let totals = Arc::new(Totals::new(args.viewers));
    let viewers_stop = stop.child_token();
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut viewers = spawn_viewers(&args, connectors, &totals, started, &viewers_stop);
    info!(%transport, %addr, viewers = args.viewers, endpoints, "viewers starting");

    show_progress(&args, transport, &totals, started, &stop).await;
    let connected = totals.sum(|v| &v.connected);
    let elapsed = started.elapsed();
    viewers_stop.cancel();
    while viewers.join_next().await.is_some() {}
    let replay = match replay {
        Some(r) => Some(r.finish().await?),
        None => None,
    };
    let bytes = totals.sum(|v| &v.bytes);
    let report = Report {
        transport: transport.to_string(),
        addr: addr.to_string(),
        manifest: args.manifest_path(),
        viewers: args.viewers,
        connected,
        pace: args.pace,
        idle: args.idle,
        started_unix_ms: crate::store::unix_ms(started_wall),
        duration_s: elapsed.as_secs_f64(),
        bytes,
        mbit_per_s: bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6,
        fragments: totals.sum(|v| &v.fragments),
        segments: totals.sum(|v| &v.segments),
        errors: totals.sum(|v| &v.errors),
        stalls: totals.sum(|v| &v.stalls),
        latency: totals.latency.percentiles(),
        error_kinds: totals.error_kinds.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        first_byte_unix_us: totals.first_bytes.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        replay,
        quic: (args.transport.http() == Some(Transport::H3)).then(|| tally.totals()),
        per_viewer: totals.reports(elapsed),
    };
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(report)
}

/// The viewers' connectors. HTTP/3: one client endpoint (UDP socket) per
/// `conns_per_endpoint` viewers; other transports: one.
fn connectors(
    args: &LoadArgs,
    transport: Transport,
    addr: SocketAddr,
    tally: &Arc<QuicTally>,
) -> Result<Vec<Connector>> {
    let roots: Vec<CertificateDer<'static>> = if transport == Transport::H1Clear {
        Vec::new()
    } else {
        crate::cert::load_certs(&args.ca).with_context(|| format!("--ca {}", args.ca.display()))?
    };
    let endpoints =
        if transport == Transport::H3 { args.viewers.div_ceil(args.conns_per_endpoint.max(1)).max(1) } else { 1 };
    let quic = QuicClientOptions { max_udp_payload_size: args.max_udp_payload };
    (0..endpoints)
        .map(|_| Ok(Connector::with_options(transport, addr, &args.host, &roots, &quic)?.with_tally(tally.clone())))
        .collect()
}

/// The viewers' clients: HTTP connectors, or MoQ WebTransport clients.
enum Connectors {
    /// HTTP viewers.
    Http(Vec<Connector>),
    /// MoQ viewers (one quinn endpoint per `conns_per_endpoint` viewers).
    Moq(Vec<web_transport_quinn::Client>),
}

impl Connectors {
    fn len(&self) -> usize {
        match self {
            Connectors::Http(c) => c.len(),
            Connectors::Moq(c) => c.len(),
        }
    }
}

/// MoQ clients pinning the endpoint's certificate hash (`--cert-hash`, else
/// fetched from the origin).
async fn moq_clients(args: &LoadArgs, addr: SocketAddr) -> Result<Vec<web_transport_quinn::Client>> {
    let hex = match &args.cert_hash {
        Some(h) => h.clone(),
        None => moq::fetch_hash(addr).await?,
    };
    let hash = moq::unhex(&hex)?;
    let endpoints = args.viewers.div_ceil(args.conns_per_endpoint.max(1)).max(1);
    (0..endpoints).map(|_| moq::client(addr, hash.clone())).collect()
}

/// `--replay`: a capture pushed into the origin's ingest while the viewers run.
struct InProcessReplay {
    /// The replay task.
    task: tokio::task::JoinHandle<Result<()>>,
    /// Its counters, for the report.
    stats: Arc<replay::ReplayStats>,
    /// Stops it once the viewers are done.
    stop: CancellationToken,
}

impl InProcessReplay {
    fn start(args: &LoadArgs, dir: &std::path::Path) -> Result<InProcessReplay> {
        let plan = replay::load_plan(dir)?;
        let (stream, prft, ingest) = (args.stream.clone(), args.prft, args.ingest);
        let stats = Arc::new(replay::ReplayStats::default());
        let stop = CancellationToken::new();
        let (st, rs) = (stats.clone(), stop.clone());
        let task = tokio::spawn(async move { replay::run(plan, ingest, &stream, prft, None, rs, st).await });
        Ok(InProcessReplay { task, stats, stop })
    }

    /// Stop the replay; its counters for the report (requests, bytes, errors).
    async fn finish(self) -> Result<BTreeMap<String, u64>> {
        self.stop.cancel();
        self.task.await.context("replay task")??;
        let s = &self.stats;
        Ok(BTreeMap::from([
            ("requests".to_string(), s.requests.load(Ordering::Relaxed)),
            ("bytes".to_string(), s.bytes.load(Ordering::Relaxed)),
            ("errors".to_string(), s.errors.load(Ordering::Relaxed)),
        ]))
    }
}

/// Start `args.viewers` viewers spread over the ramp, each on the connector
/// of its endpoint; they run until `stop` is cancelled.
fn spawn_viewers(
    args: &LoadArgs,
    connectors: Connectors,
    totals: &Arc<Totals>,
    started: Instant,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    /// One group of viewers' shared state.
    enum Group {
        Http(Arc<Shared>),
        Moq(Arc<moq::MoqShared>),
    }
    let viewers = Arc::new(Viewers {
        tracks: args.tracks,
        representation: args.representation.clone(),
        stall_margin: args.stall_margin,
        idle: args.idle,
        wait_for_stream: args.wait,
        totals: totals.clone(),
        stop: stop.clone(),
    });
    let shared: Vec<Group> = match connectors {
        Connectors::Http(c) => c
            .into_iter()
            .map(|connector| {
                Group::Http(Arc::new(Shared {
                    connector,
                    manifest_path: args.manifest_path(),
                    pace: args.pace,
                    viewers: viewers.clone(),
                }))
            })
            .collect(),
        Connectors::Moq(c) => c
            .into_iter()
            .map(|client| {
                Group::Moq(Arc::new(moq::MoqShared {
                    client,
                    url: url::Url::parse(&format!("https://{}/", args.addr())).expect("an address is a URL authority"),
                    broadcast: args.broadcast(),
                    viewers: viewers.clone(),
                }))
            })
            .collect(),
    };
    let (n, ramp) = (args.viewers, args.ramp);
    let per_endpoint = args.conns_per_endpoint.max(1);
    let stop = stop.clone();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        let mut inner = tokio::task::JoinSet::new();
        for id in 0..n {
            let at = started + ramp.mul_f64(id as f64 / n as f64);
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = stop.cancelled() => break,
            }
            match &shared[(id / per_endpoint).min(shared.len() - 1)] {
                Group::Http(s) => inner.spawn(viewer::run(s.clone(), id)),
                Group::Moq(s) => inner.spawn(moq::run(s.clone(), id)),
            };
        }
        while inner.join_next().await.is_some() {}
    });
    tasks
}

/// Wait for the end of the run (ramp + duration, or `stop`), printing a
/// progress line every second unless `--quiet`.
async fn show_progress(args: &LoadArgs, transport: &str, totals: &Totals, started: Instant, stop: &CancellationToken) {
    let end = started + args.ramp + args.duration;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_bytes = 0u64;
    let mut last_t = started;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end.into()) => break,
            _ = stop.cancelled() => break,
        }
        let now = Instant::now();
        let bytes = totals.sum(|v| &v.bytes);
        let rate = (bytes - last_bytes) as f64 * 8.0 / now.duration_since(last_t).as_secs_f64() / 1e6;
        (last_bytes, last_t) = (bytes, now);
        let p = totals.latency_interval.percentiles();
        totals.latency_interval.reset();
        if !args.quiet {
            eprint!(
                "\r[{:>4.0}s] {} conn {}/{} | {:>8.2} Mbit/s | frags {:>8} | lat p50 {:>6.1} p99 {:>6.1} max {:>6.1} ms | err {} | stalls {} ",
                started.elapsed().as_secs_f64(),
                transport,
                totals.sum(|v| &v.connected),
                args.viewers,
                rate,
                totals.sum(|v| &v.fragments),
                p.p50_ms,
                p.p99_ms,
                p.max_ms,
                totals.sum(|v| &v.errors),
                totals.sum(|v| &v.stalls),
            );
            let _ = std::io::stderr().flush();
        }
    }
    if !args.quiet {
        eprintln!();
    }
}
