//! The path self-check: `pathemu echo` on the origin side (UDP echo + a TCP
//! control port on the same number), `pathemu check` on the client side. Both
//! ends run on one machine (two network namespaces share the kernel's
//! monotonic clock), so one-way delays are measured directly from timestamps
//! in the packets.
//!
//! What `check` measures, in order:
//! 1. TCP connect time (SYN → SYN-ACK: one round trip through the path) × 10;
//! 2. RTT and one-way delays: 100 UDP echoes spaced wider than the jitter;
//! 3. loss per direction: N echoes (N ≥ 5000, more when the expected loss
//!    or burstiness needs it for a ±0.5 pp estimate at 4 σ), paced below any
//!    bottleneck; the server counts what arrived;
//! 4. per direction with a rate limit: a flood at 1.3 × the rate for 3 s,
//!    rate = IP bytes delivered after the first second over the time taken,
//!    and the longest one-way delay (the queue limit).
//!
//! Datagram layout (big endian, 48 bytes + padding): magic `PEM1`, kind
//! (1 echo request, 2 echo reply, 3 flood), 3 pad bytes, session u64, seq u64,
//! client send time, server receive time, server send time (monotonic ns).
//! `PATHEMU_DEBUG=1` makes `check` print every RTT echo (up, server, down ms).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::queue::go_realtime;
use super::spec::{DirSpec, Dist};

const MAGIC: &[u8; 4] = b"PEM1";
const HDR: usize = 48;
/// IPv4 + UDP header bytes added to a payload on the wire.
const IP_UDP: usize = 28;
const ECHO_REQ: u8 = 1;
const ECHO_REP: u8 = 2;
const FLOOD: u8 = 3;

/// CLOCK_MONOTONIC in ns: the same clock in every network namespace.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One probe datagram's header.
#[derive(Debug, Clone, Copy, Default)]
struct Pkt {
    /// ECHO_REQ, ECHO_REP or FLOOD.
    kind: u8,
    /// Which measurement it belongs to.
    session: u64,
    /// Sequence number within the session.
    seq: u64,
    /// Sender's send time (client for echoes, flooding side for floods).
    t_send: u64,
    /// Echo server's receive time.
    t_srv_rx: u64,
    /// Echo server's send time.
    t_srv_tx: u64,
}

impl Pkt {
    fn write(&self, buf: &mut [u8]) {
        buf[..4].copy_from_slice(MAGIC);
        buf[4] = self.kind;
        buf[5..8].fill(0);
        for (i, v) in [self.session, self.seq, self.t_send, self.t_srv_rx, self.t_srv_tx].iter().enumerate() {
            buf[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_be_bytes());
        }
    }
    fn read(buf: &[u8]) -> Option<Pkt> {
        if buf.len() < HDR || &buf[..4] != MAGIC {
            return None;
        }
        let u = |i: usize| u64::from_be_bytes(buf[8 + i * 8..16 + i * 8].try_into().expect("8 bytes"));
        Some(Pkt { kind: buf[4], session: u(0), seq: u(1), t_send: u(2), t_srv_rx: u(3), t_srv_tx: u(4) })
    }
}

/// Arrivals of a flood: (arrival ns, IP bytes, one-way delay ns).
type Arrivals = Vec<(u64, usize, u64)>;

/// Rate over the arrivals after the first `skip` (bit/s), or None if too few.
fn flood_rate(arr: &[(u64, usize, u64)], skip: Duration) -> Option<f64> {
    let first = arr.first()?.0 + skip.as_nanos() as u64;
    let win: Vec<_> = arr.iter().filter(|a| a.0 > first).collect();
    let last = win.last()?.0;
    if win.len() < 20 || last <= first {
        return None;
    }
    let bytes: usize = win.iter().map(|a| a.1).sum();
    Some(bytes as f64 * 8.0 / ((last - first) as f64 / 1e9))
}

/// Send `n` datagrams of `size` payload bytes at `kbit` (IP bytes), kind FLOOD.
fn flood(sock: &UdpSocket, to: Option<SocketAddr>, session: u64, kbit: f64, size: usize, secs: f64) -> u64 {
    let mut buf = vec![0u8; size.max(HDR)];
    let per_pkt = (buf.len() + IP_UDP) as f64 * 8.0 / (kbit * 1000.0);
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let due = start + Duration::from_secs_f64(seq as f64 * per_pkt);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        Pkt { kind: FLOOD, session, seq, t_send: mono_ns(), ..Default::default() }.write(&mut buf);
        let _ = match to {
            Some(a) => sock.send_to(&buf, a),
            None => sock.send(&buf),
        };
        seq += 1;
    }
    seq
}

/// Buffers that hold the loss step's echoes while a thread is not running
/// (a busy machine): a probe dropped by a full socket buffer would count as
/// path loss. Past `rmem_max` as root, else as large as it allows.
fn big_buffers(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let s = socket2::SockRef::from(sock);
    if !super::force_recv_buffer(sock.as_raw_fd(), 8 << 20) {
        let _ = s.set_recv_buffer_size(8 << 20);
    }
    let _ = s.set_send_buffer_size(4 << 20);
}

/// Per-session counters on the echo server.
#[derive(Default)]
struct ServerState {
    /// Echo requests received per session.
    echoes: HashMap<u64, u64>,
    /// Flood arrivals per session (client → server floods).
    floods: HashMap<u64, Arrivals>,
}

/// `pathemu echo`: UDP echo and TCP control on `listen` until `stop` is set.
pub fn echo_server(listen: SocketAddr, stop: &AtomicBool) -> Result<()> {
    let udp = Arc::new(UdpSocket::bind(listen).with_context(|| format!("binding UDP {listen}"))?);
    big_buffers(&udp);
    let tcp = TcpListener::bind(listen).with_context(|| format!("binding TCP {listen}"))?;
    tcp.set_nonblocking(true)?;
    udp.set_read_timeout(Some(Duration::from_millis(100)))?;
    let state = Arc::new(Mutex::new(ServerState::default()));
    eprintln!("pathemu echo: UDP + TCP on {listen}");
    std::thread::scope(|sc| {
        sc.spawn(|| {
            go_realtime();
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = udp.recv_from(&mut buf) else { continue };
                let t = mono_ns();
                let Some(mut p) = Pkt::read(&buf[..n]) else { continue };
                let mut st = state.lock().expect("state lock");
                match p.kind {
                    ECHO_REQ => {
                        *st.echoes.entry(p.session).or_default() += 1;
                        drop(st);
                        p.kind = ECHO_REP;
                        p.t_srv_rx = t;
                        p.t_srv_tx = mono_ns();
                        p.write(&mut buf[..n]);
                        let _ = udp.send_to(&buf[..n], from);
                    }
                    FLOOD => st.floods.entry(p.session).or_default().push((t, n + IP_UDP, t.saturating_sub(p.t_send))),
                    _ => {}
                }
            }
        });
        while !stop.load(Ordering::Relaxed) {
            match tcp.accept() {
                Ok((conn, peer)) => {
                    let (udp, state) = (udp.clone(), state.clone());
                    sc.spawn(move || {
                        if let Err(e) = control(conn, peer, &udp, &state) {
                            eprintln!("pathemu echo: control connection from {peer}: {e:#}");
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Ok(())
}

/// One control connection: `count S`, `flood S KBIT SIZE SECS PORT`, `upstats S`; one reply line each.
fn control(conn: TcpStream, peer: SocketAddr, udp: &UdpSocket, state: &Mutex<ServerState>) -> Result<()> {
    conn.set_nodelay(true)?;
    let mut out = conn.try_clone()?;
    for line in BufReader::new(conn).lines() {
        let line = line?;
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<f64> { w.get(i).context("missing argument")?.parse().context("not a number") };
        let reply = match w.first().copied() {
            Some("count") => {
                format!("{}", state.lock().expect("lock").echoes.get(&(num(1)? as u64)).copied().unwrap_or(0))
            }
            Some("flood") => {
                let to = SocketAddr::new(peer.ip(), num(5)? as u16);
                let n = flood(udp, Some(to), num(1)? as u64, num(2)?, num(3)? as usize, num(4)?);
                format!("{n}")
            }
            Some("upstats") => {
                let st = state.lock().expect("lock");
                let arr = st.floods.get(&(num(1)? as u64)).cloned().unwrap_or_default();
                let rate = flood_rate(&arr, Duration::from_secs(1)).unwrap_or(0.0);
                let mut owd: Vec<f64> = arr.iter().map(|a| a.2 as f64).collect();
                let p99 = pctl(&mut owd, 0.99).unwrap_or(0.0);
                format!("{} {rate:.0} {p99:.0}", arr.len())
            }
            _ => format!("error unknown command {line:?}"),
        };
        writeln!(out, "{reply}")?;
    }
    Ok(())
}

/// One measured quantity next to its configured value.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What was measured, e.g. `rtt_ms`, `loss_down_pct`.
    pub name: String,
    /// The configured (expected) value.
    pub configured: f64,
    /// The measured value (None when it could not be measured).
    pub measured: Option<f64>,
    /// Allowed absolute difference.
    pub tolerance: f64,
    /// How it was measured.
    pub how: String,
    /// Within tolerance (informational items are always ok).
    pub ok: bool,
}

/// The whole self-check result (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Downstream spec (origin → client).
    pub down: String,
    /// Upstream spec (client → origin).
    pub up: String,
    /// Every item.
    pub items: Vec<Item>,
    /// All items within tolerance.
    pub ok: bool,
    /// Seconds the check took.
    pub seconds: f64,
}

/// Options of `pathemu check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The `pathemu echo` server (origin side), e.g. 198.18.0.1:7777.
    #[arg(long)]
    pub target: SocketAddr,
    /// Configured downstream path (origin → client), spec text.
    #[arg(long, default_value = "none")]
    pub down: DirSpec,
    /// Configured upstream path (client → origin), spec text.
    #[arg(long, default_value = "none")]
    pub up: DirSpec,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Fewest packets per direction for the loss estimate.
    #[arg(long, default_value_t = 5000)]
    pub min_loss_packets: u64,
    /// Highest probe rate in packets/s for the loss estimate.
    #[arg(long, default_value_t = 5000.0)]
    pub max_pps: f64,
    /// Only measure a downstream flood at this rate (kbit/s of IP bytes) and
    /// report delivered rate and loss: for measuring the emulator's capacity.
    #[arg(long)]
    pub flood_kbit: Option<f64>,
    /// Payload bytes per flood packet.
    #[arg(long, default_value_t = 1200)]
    pub flood_size: usize,
    /// Seconds of flood.
    #[arg(long, default_value_t = 3.0)]
    pub flood_secs: f64,
}

/// Client-side receiver: every datagram with its arrival time.
struct Rx {
    /// (arrival ns, packet, IP bytes)
    got: Mutex<Vec<(u64, Pkt, usize)>>,
    /// Tells the receive thread to end.
    stop: AtomicBool,
}

fn median(v: &mut [f64]) -> Option<f64> {
    pctl(v, 0.5)
}

fn pctl(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
}

fn sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

fn jitter_sd(d: &DirSpec) -> f64 {
    let j = d.jitter.as_secs_f64() * 1000.0;
    if d.dist == Dist::Normal {
        j
    } else {
        j / 3f64.sqrt()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Packets needed so that 4 σ of the loss estimate is within 0.5 pp: the
/// check then fails a path that measures as configured about once in
/// 16,000 items (3 σ failed one in 370, often enough to fail a test run).
fn loss_packets(d: &DirSpec, min: u64) -> u64 {
    let l = d.expected_loss();
    // Variance inflation of a two-state Markov chain's mean: (1 + λ) / (1 - λ).
    let f = d.burst.map_or(1.0, |b| {
        let lambda = 1.0 - b.p() - b.r();
        (1.0 + lambda) / (1.0 - lambda)
    });
    ((16.0 * l * (1.0 - l) * f / 0.005f64.powi(2)).ceil() as u64).clamp(min, 200_000)
}

/// Probe datagram bytes on the wire (header + IPv4 + UDP).
const PROBE: usize = HDR + IP_UDP;

/// Time a bottleneck of `d` takes to serialize `bytes`, in ms (0 without a rate).
fn serialization_ms(d: &DirSpec, bytes: usize) -> f64 {
    d.rate_bps.map_or(0.0, |r| bytes as f64 * 8.0 / r as f64 * 1000.0)
}

/// Standard deviation of a round trip's jitter (both directions'), in ms.
fn round_trip_jitter_sd(down: &DirSpec, up: &DirSpec) -> f64 {
    (jitter_sd(down).powi(2) + jitter_sd(up).powi(2)).sqrt()
}

/// Tolerance of a median of `n` samples with jitter of standard deviation
/// `sd`: the measurement's own `base` plus 3 standard errors of the median
/// (about 1.25 σ / √n). Both add: a median can be off by both at once (a
/// clean-clone CI run measured 53.9 ms for a configured 50 ms at σ 14 ms,
/// n 300, with each one-way median 1 ms late from scheduling). A path
/// without jitter gets `base` alone (±2 ms for a round trip).
fn median_tolerance(base: f64, sd: f64, n: usize) -> f64 {
    base + 3.0 * 1.25 * sd / (n.max(1) as f64).sqrt()
}

/// The control connection to the echo server: one command line, one reply line.
struct Control {
    /// Where commands are written.
    out: TcpStream,
    /// Where replies are read.
    replies: BufReader<TcpStream>,
}

impl Control {
    fn connect(target: SocketAddr) -> Result<Control> {
        let out = connect_retry(target, Duration::from_secs(10))?;
        out.set_nodelay(true)?;
        out.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Control { replies: BufReader::new(out.try_clone()?), out })
    }

    /// Send `cmd`, return the reply line.
    fn ask(&mut self, cmd: String) -> Result<String> {
        writeln!(self.out, "{cmd}")?;
        let mut l = String::new();
        self.replies.read_line(&mut l).with_context(|| format!("echo server did not answer {cmd:?}"))?;
        Ok(l.trim().to_string())
    }
}

/// A check in progress: the echo server's control connection, the probe
/// socket and its receive thread, and the items measured so far.
struct Checker<'a> {
    /// What to check.
    a: &'a CheckArgs,
    /// Control connection.
    ctl: Control,
    /// Probe socket, connected to the echo server.
    sock: UdpSocket,
    /// The probe socket's port (where the server floods to).
    port: u16,
    /// What the receive thread got.
    rx: Arc<Rx>,
    /// The receive thread.
    rx_thread: std::thread::JoinHandle<()>,
    /// Session numbers of this check start here (one per measurement).
    session_base: u64,
    /// Wait after a measurement's last send for its last packets to arrive.
    settle: Duration,
    /// Measured items, in order.
    items: Vec<Item>,
    /// When the check started.
    t0: Instant,
}

impl<'a> Checker<'a> {
    /// Connect to the echo server and start receiving.
    fn start(a: &'a CheckArgs) -> Result<Checker<'a>> {
        let t0 = Instant::now();
        go_realtime();
        let ctl = Control::connect(a.target)?;
        let sock = UdpSocket::bind(if a.target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        big_buffers(&sock);
        sock.connect(a.target)?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let port = sock.local_addr()?.port();
        let rx = Arc::new(Rx { got: Mutex::new(Vec::new()), stop: AtomicBool::new(false) });
        let rx_thread = {
            let (sock, rx) = (sock.try_clone()?, rx.clone());
            std::thread::spawn(move || receive(&sock, &rx))
        };
        let (down, up) = (&a.down, &a.up);
        let max_delay = down.delay + up.delay + (down.jitter + up.jitter) * 4 + down.queue + up.queue;
        let settle = max_delay + Duration::from_millis(300);
        let session_base = mono_ns() << 4;
        Ok(Checker { a, ctl, sock, port, rx, rx_thread, session_base, settle, items: Vec::new(), t0 })
    }

    /// Record an item; with `check`, it is ok when `measured` is within `tolerance` of `configured`.
    fn item(&mut self, name: &str, configured: f64, measured: Option<f64>, tolerance: f64, how: &str, check: bool) {
        let ok = !check || measured.is_some_and(|m| (m - configured).abs() <= tolerance);
        self.items.push(Item { name: name.into(), configured, measured, tolerance, how: how.into(), ok });
    }

    /// `--flood-kbit`: only a downstream flood at `kbit`, its delivered rate and loss.
    fn flood_only(&mut self, kbit: f64) -> Result<()> {
        let s = self.session_base + 9;
        let cmd = format!("flood {s} {kbit} {} {} {}", self.a.flood_size, self.a.flood_secs, self.port);
        let sent: f64 = self.ctl.ask(cmd)?.parse()?;
        std::thread::sleep(self.settle);
        let arr = take_floods(&self.rx, s);
        let rate = flood_rate(&arr, Duration::from_secs(1)).map(|r| r / 1000.0);
        self.item("flood_kbit", kbit, rate, kbit * 0.05, "downstream flood, IP bytes after the first second", true);
        let loss = 100.0 * (1.0 - arr.len() as f64 / sent.max(1.0));
        let how = format!("{} of {sent} flood packets arrived", arr.len());
        self.item("flood_loss_pct", 0.0, Some(loss), 0.5, &how, true);
        Ok(())
    }

    /// Step 1, TCP connect time: one round trip through the path (SYN -> SYN-ACK).
    fn tcp_connect(&mut self) {
        let (down, up) = (&self.a.down, &self.a.up);
        let jit = round_trip_jitter_sd(down, up);
        let configured = ms(down.delay) + ms(up.delay) + serialization_ms(down, 60) + serialization_ms(up, 60);
        let tries = if jit > 0.0 { 30 } else { 10 };
        let mut connects = Vec::new();
        for _ in 0..tries {
            let s = Instant::now();
            if TcpStream::connect_timeout(&self.a.target, Duration::from_secs(5)).is_ok() {
                connects.push(ms(s.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = connects.len();
        let how = format!("median of {n}/{tries} TCP connects (SYN → SYN-ACK)");
        self.item("tcp_connect_ms", configured, median(&mut connects), median_tolerance(2.0, jit, n), &how, true);
    }

    /// Step 2, RTT and one-way delays from UDP echoes, spaced 3 σ of jitter
    /// apart so that in-order jitter almost never holds a probe back for
    /// the one before it: the probes see the configured distribution.
    fn rtt_and_delays(&mut self) -> Result<()> {
        let (down, up) = (self.a.down.clone(), self.a.up.clone());
        let jit = round_trip_jitter_sd(&down, &up);
        let spacing =
            Duration::from_millis(10).max(Duration::from_secs_f64(3.0 * jitter_sd(&down).max(jitter_sd(&up)) / 1000.0));
        let n_sent = if jit > 0.0 { 300 } else { 100 };
        let session = self.session_base + 1;
        let mut buf = [0u8; HDR];
        for seq in 0..n_sent {
            Pkt { kind: ECHO_REQ, session, seq, t_send: mono_ns(), ..Default::default() }.write(&mut buf);
            self.sock.send(&buf)?;
            std::thread::sleep(spacing);
        }
        std::thread::sleep(self.settle);
        let replies = take_replies(&self.rx, session);
        if std::env::var_os("PATHEMU_DEBUG").is_some() {
            print_echoes(&replies);
        }
        let mut rtt: Vec<f64> = replies.iter().map(|(t, p)| (t - p.t_send) as f64 / 1e6).collect();
        let mut owd_up: Vec<f64> =
            replies.iter().map(|(_, p)| (p.t_srv_rx.saturating_sub(p.t_send)) as f64 / 1e6).collect();
        let mut owd_down: Vec<f64> = replies.iter().map(|(t, p)| (t.saturating_sub(p.t_srv_tx)) as f64 / 1e6).collect();
        let how = format!("median of {} UDP echoes, {} ms apart", rtt.len(), spacing.as_millis());
        let n = rtt.len();
        let rtt_cfg = ms(down.delay) + ms(up.delay);
        let rtt_expected = rtt_cfg + serialization_ms(&down, PROBE) + serialization_ms(&up, PROBE);
        self.item("rtt_ms", rtt_expected, median(&mut rtt), median_tolerance(2.0, jit, n), &how, true);
        let (jd, ju) = (jitter_sd(&down), jitter_sd(&up));
        let down_expected = ms(down.delay) + serialization_ms(&down, PROBE);
        self.item("delay_down_ms", down_expected, median(&mut owd_down), median_tolerance(1.0, jd, n), &how, true);
        let up_expected = ms(up.delay) + serialization_ms(&up, PROBE);
        self.item("delay_up_ms", up_expected, median(&mut owd_up), median_tolerance(1.0, ju, n), &how, true);
        if jit > 0.0 {
            self.item("rtt_sd_ms", jit, sd(&rtt), (jit * 0.3).max(1.0), "standard deviation of the echo RTTs", true);
        }
        self.item("rtt_p10_ms", rtt_cfg, pctl(&mut rtt, 0.1), 0.0, "10th percentile (information)", false);
        self.item("rtt_p90_ms", rtt_cfg, pctl(&mut rtt, 0.9), 0.0, "90th percentile (information)", false);
        Ok(())
    }

    /// Step 3, loss per direction: echoes paced below any bottleneck; the server
    /// counts what reached it, the client what came back.
    fn loss(&mut self) -> Result<()> {
        let (down, up) = (&self.a.down, &self.a.up);
        let n = loss_packets(down, self.a.min_loss_packets).max(loss_packets(up, self.a.min_loss_packets));
        let slowest = [down.rate_bps, up.rate_bps].into_iter().flatten().min();
        let pps = slowest.map_or(self.a.max_pps, |r| (0.5 * r as f64 / (PROBE as f64 * 8.0)).min(self.a.max_pps));
        let session = self.session_base + 2;
        let mut buf = [0u8; HDR];
        let start = Instant::now();
        for seq in 0..n {
            let due = start + Duration::from_secs_f64(seq as f64 / pps);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            Pkt { kind: ECHO_REQ, session, seq, t_send: mono_ns(), ..Default::default() }.write(&mut buf);
            self.sock.send(&buf)?;
        }
        std::thread::sleep(self.settle);
        let srv_rx: f64 = self.ctl.ask(format!("count {session}"))?.parse().context("count reply")?;
        let cli_rx = take_replies(&self.rx, session).len() as f64;
        let up_loss = 100.0 * (1.0 - srv_rx / n as f64);
        let down_loss = (srv_rx > 0.0).then(|| 100.0 * (1.0 - cli_rx / srv_rx));
        let how = format!("{n} UDP echoes at {pps:.0}/s: {srv_rx} reached the server, {cli_rx} came back");
        let (up_expected, down_expected) = (100.0 * up.expected_loss(), 100.0 * down.expected_loss());
        self.item("loss_up_pct", up_expected, Some(up_loss), 0.5, &how, true);
        self.item("loss_down_pct", down_expected, down_loss, 0.5, &how, true);
        Ok(())
    }

    /// Step 4, rate and queue of each direction that has a rate limit.
    fn rates(&mut self) -> Result<()> {
        for (dir, spec) in [("down", self.a.down.clone()), ("up", self.a.up.clone())] {
            if let Some(rate) = spec.rate_bps {
                self.rate(dir, &spec, rate)?;
            }
        }
        Ok(())
    }

    /// A flood at 1.3 × `rate` for 3 s in direction `dir`: the rate
    /// delivered after the first second, and the one-way delay of a full
    /// queue (99th percentile).
    fn rate(&mut self, dir: &str, spec: &DirSpec, rate: u64) -> Result<()> {
        let kbit = 1.3 * rate as f64 / 1000.0;
        let s = self.session_base + if dir == "down" { 3 } else { 4 };
        let (got_rate, max_owd) = if dir == "down" {
            self.ctl.ask(format!("flood {s} {kbit} 1200 3 {}", self.port))?;
            std::thread::sleep(self.settle);
            let arr = take_floods(&self.rx, s);
            let mut owd: Vec<f64> = arr.iter().map(|x| x.2 as f64).collect();
            (flood_rate(&arr, Duration::from_secs(1)), pctl(&mut owd, 0.99).map(|x| x as u64))
        } else {
            flood(&self.sock, None, s, kbit, 1200, 3.0);
            std::thread::sleep(self.settle);
            let r = self.ctl.ask(format!("upstats {s}"))?;
            let v: Vec<f64> = r.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.get(1).copied().filter(|r| *r > 0.0), v.get(2).map(|x| *x as u64))
        };
        let cfg = rate as f64 / 1000.0;
        let how = "3 s flood at 1.3 × the rate, IP bytes delivered after the first second";
        self.item(&format!("rate_{dir}_kbit"), cfg, got_rate.map(|r| r / 1000.0), cfg * 0.05, how, true);
        let q = ms(spec.delay) + ms(spec.queue) + 3.0 * jitter_sd(spec);
        self.item(
            &format!("queue_{dir}_p99_delay_ms"),
            q,
            max_owd.map(|x| x as f64 / 1e6),
            ms(spec.queue) * 0.2 + 3.0,
            "99th percentile one-way delay during the flood (delay + full queue)",
            true,
        );
        Ok(())
    }

    /// Stop receiving; the report (also written as JSON with `--json`).
    fn finish(self) -> Result<Report> {
        self.rx.stop.store(true, Ordering::Relaxed);
        let _ = self.rx_thread.join();
        let ok = self.items.iter().all(|i| i.ok);
        let a = self.a;
        let seconds = self.t0.elapsed().as_secs_f64();
        let r = Report { down: a.down.to_string(), up: a.up.to_string(), items: self.items, ok, seconds };
        if let Some(f) = &a.json {
            std::fs::write(f, serde_json::to_vec_pretty(&r)?).with_context(|| format!("writing {}", f.display()))?;
        }
        Ok(r)
    }
}

/// The receive thread: every datagram with its arrival time, until `rx.stop`.
fn receive(sock: &UdpSocket, rx: &Rx) {
    go_realtime();
    let mut buf = vec![0u8; 65536];
    while !rx.stop.load(Ordering::Relaxed) {
        if let Ok(n) = sock.recv(&mut buf) {
            let t = mono_ns();
            if let Some(p) = Pkt::read(&buf[..n]) {
                rx.got.lock().expect("rx lock").push((t, p, n + IP_UDP));
            }
        }
    }
}

/// `PATHEMU_DEBUG=1`: every RTT echo (up, server, down ms).
fn print_echoes(replies: &[(u64, Pkt)]) {
    for (t, p) in replies {
        eprintln!(
            "seq {} up {:.2} srv {:.3} down {:.2}",
            p.seq,
            (p.t_srv_rx - p.t_send) as f64 / 1e6,
            (p.t_srv_tx - p.t_srv_rx) as f64 / 1e6,
            (t - p.t_srv_tx) as f64 / 1e6
        );
    }
}

/// `pathemu check`: measure the path and compare with the configuration
/// (the steps are in the module's documentation).
pub fn check(a: &CheckArgs) -> Result<Report> {
    let mut c = Checker::start(a)?;
    if let Some(kbit) = a.flood_kbit {
        c.flood_only(kbit)?;
        return c.finish();
    }
    c.tcp_connect();
    c.rtt_and_delays()?;
    c.loss()?;
    c.rates()?;
    c.finish()
}

fn take_replies(rx: &Rx, session: u64) -> Vec<(u64, Pkt)> {
    let mut got = rx.got.lock().expect("rx lock");
    let mut seen = std::collections::HashSet::new();
    let v = got
        .iter()
        .filter(|(_, p, _)| p.kind == ECHO_REP && p.session == session && seen.insert(p.seq))
        .map(|(t, p, _)| (*t, *p))
        .collect();
    got.retain(|(_, p, _)| p.session != session);
    v
}

fn take_floods(rx: &Rx, session: u64) -> Arrivals {
    let mut got = rx.got.lock().expect("rx lock");
    let v: Arrivals = got
        .iter()
        .filter(|(_, p, _)| p.kind == FLOOD && p.session == session)
        .map(|(t, p, len)| (*t, *len, t.saturating_sub(p.t_send)))
        .collect();
    got.retain(|(_, p, _)| p.session != session);
    v
}

fn connect_retry(to: SocketAddr, within: Duration) -> Result<TcpStream> {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() > within => bail!("cannot reach the echo server at {to}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The report as a table (what ab.sh prints next to the profile).
pub fn render(r: &Report) -> String {
    let mut s = format!("path self-check: down [{}] up [{}], {:.1} s\n", r.down, r.up, r.seconds);
    for i in &r.items {
        let m = i.measured.map_or("–".into(), |m| format!("{m:.2}"));
        let verdict = if i.tolerance == 0.0 && i.ok {
            "info"
        } else if i.ok {
            "ok"
        } else {
            "FAIL"
        };
        s += &format!(
            "  {:<4} {:<24} configured {:>9.2}  measured {:>9}  (±{:.2}; {})\n",
            verdict, i.name, i.configured, m, i.tolerance, i.how
        );
    }
    s += if r.ok { "  => path measures as configured\n" } else { "  => PATH DOES NOT MEASURE AS CONFIGURED\n" };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_round_trip() {
        let p = Pkt { kind: ECHO_REP, session: 7, seq: 42, t_send: 1, t_srv_rx: 2, t_srv_tx: 3 };
        let mut buf = [0u8; HDR];
        p.write(&mut buf);
        let q = Pkt::read(&buf).unwrap();
        assert_eq!((q.kind, q.session, q.seq, q.t_send, q.t_srv_rx, q.t_srv_tx), (ECHO_REP, 7, 42, 1, 2, 3));
        assert!(Pkt::read(&buf[..HDR - 1]).is_none());
        buf[0] = b'X';
        assert!(Pkt::read(&buf).is_none());
    }

    #[test]
    fn loss_estimate_sizes() {
        let n = |s: &str| loss_packets(&s.parse().unwrap(), 5000);
        assert_eq!(n("none"), 5000);
        // 1 % random: 16 · 0.01 · 0.99 / 0.005² = 6,336
        assert_eq!(n("loss=1%"), 6336);
        // 3 % random: 16 · 0.03 · 0.97 / 0.005² = 18,624
        assert_eq!(n("loss=3%"), 18624);
        // bursts carry less information per packet than independent losses
        assert!(n("burst=3%/3") > 3 * n("loss=3%"), "{}", n("burst=3%/3"));
    }

    #[test]
    fn flood_rate_skips_the_first_second() {
        // 1 s at 2 Mbit/s then 2 s at 1 Mbit/s (1250-byte packets): the rate is the second part.
        let mut arr = Vec::new();
        let mut t = 0u64;
        while t < 1_000_000_000 {
            arr.push((t, 1250, 0));
            t += 5_000_000;
        }
        while t < 3_000_000_000 {
            arr.push((t, 1250, 0));
            t += 10_000_000;
        }
        let r = flood_rate(&arr, Duration::from_secs(1)).unwrap();
        assert!((r - 1e6).abs() < 1e4, "{r}");
        assert!(flood_rate(&arr[..5], Duration::from_secs(1)).is_none());
    }
}
