//! The user-space engine: packets diverted by the xt NFQUEUE target
//! (`iptables -t raw -A PREROUTING -i DEV -j NFQUEUE --queue-num N`) come to
//! this process through netfilter's netlink queue (crate `nfq`); each is
//! given to the [`Path`] model and its verdict (accept or drop) is sent when
//! the model says the packet leaves. The kernel keeps the packet meanwhile,
//! and verdicts may be given in any order, so this is a delay line for TCP
//! and UDP alike that needs no sch_netem.
//!
//! Hooking the receiver's PREROUTING (not the sender's egress) matters: on
//! the sender a held packet still counts against its socket (TCP small
//! queues), which would throttle TCP to one packet per emulated delay; after
//! the veth crossing it belongs to no socket (sch_netem orphans it for the
//! same reason).
//!
//! Only the first 64 bytes of each packet are copied to user space (the IP
//! header gives the length). One thread, sleeping in `ppoll` until the next
//! packet arrives or leaves; it asks for SCHED_FIFO so that a loaded machine
//! does not add scheduling delay to the path.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nfq::{Queue, Verdict};
use serde::Serialize;

use super::model::{Drop, Path};
use super::spec::DirSpec;

/// A packet waiting for its departure time (ordered by time, then arrival).
struct Held {
    /// When to accept it.
    at: Instant,
    /// Arrival order, to keep equal times in order.
    seq: u64,
    /// The kernel's packet, given back with the verdict.
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Counters written to the `--stats` file (JSON) every second and at exit.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// The path this engine emulates (canonical spec).
    pub spec: String,
    /// Packets received from the queue.
    pub packets: u64,
    /// IP bytes received.
    pub bytes: u64,
    /// Dropped by the loss model.
    pub dropped_loss: u64,
    /// Dropped because the bottleneck queue was full.
    pub dropped_queue: u64,
    /// Accepted (sent on) so far.
    pub accepted: u64,
    /// Most packets held at once.
    pub max_held: usize,
    /// Packets whose verdict was sent more than 1 ms after their departure time.
    pub late_1ms: u64,
    /// Median / 99th percentile / maximum lateness of verdicts (µs).
    pub late_p50_us: u64,
    /// 99th percentile lateness (µs).
    pub late_p99_us: u64,
    /// Largest lateness (µs).
    pub late_max_us: u64,
    /// Seconds since start.
    pub wall_s: f64,
    /// CPU seconds used by this process (user + system).
    pub cpu_s: f64,
    /// Whether the thread runs with SCHED_FIFO.
    pub realtime: bool,
    /// How the thread waits: `ppoll` on the queue socket or `sleep` polling.
    pub wait: String,
}

/// Lateness histogram in 10 µs buckets up to 20 ms.
struct Lateness {
    /// Counts per bucket; the last one collects everything beyond.
    buckets: Vec<u64>,
    /// Largest seen (µs).
    max_us: u64,
    /// Total recorded.
    n: u64,
}

impl Lateness {
    fn new() -> Self {
        Lateness { buckets: vec![0; 2001], max_us: 0, n: 0 }
    }
    fn record(&mut self, us: u64) {
        let i = ((us / 10) as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.max_us = self.max_us.max(us);
        self.n += 1;
    }
    fn pct(&self, p: f64) -> u64 {
        let want = (p * self.n as f64).ceil() as u64;
        let mut acc = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            acc += c;
            if acc >= want.max(1) {
                return i as u64 * 10;
            }
        }
        0
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Ask for SCHED_FIFO (priority 10) for the calling thread; false if refused.
/// The emulator and the probes' timing threads use it: on a loaded machine
/// an ordinary thread can wait tens of milliseconds for a CPU, which would
/// show up as path delay.
pub fn go_realtime() -> bool {
    let p = libc::sched_param { sched_priority: 10 };
    // SAFETY: plain syscall on the calling thread with a valid parameter.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0 }
}

fn sockopt(fd: i32, opt: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// The queue's netlink socket. nfq 0.2.5 does not expose its descriptor
/// (its next release implements `AsRawFd`), so look for the one netfilter
/// netlink socket of this process; `None` if there is not exactly one.
fn find_queue_fd() -> Option<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if sockopt(fd, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
            && sockopt(fd, libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
        {
            found.push(fd);
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// Wait until `fd` is readable or `timeout` passes (ppoll: ns resolution).
fn wait_readable(fd: i32, timeout: Duration) {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
}

/// IP length of a packet from its first bytes (IPv4 total length, IPv6 payload + 40).
fn ip_len(p: &[u8], fallback: usize) -> usize {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 4 => u16::from_be_bytes([p[2], p[3]]) as usize,
        Some(6) if p.len() >= 6 => u16::from_be_bytes([p[4], p[5]]) as usize + 40,
        _ => fallback,
    }
}

fn write_stats(file: &FsPath, s: &Stats) {
    let tmp = file.with_extension("tmp");
    if let Ok(json) = serde_json::to_vec_pretty(s) {
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }
}

/// Run the delay line on queue `num` until `stop` is set; then accept every
/// held packet and return the final counters.
pub fn run(num: u16, spec: DirSpec, seed: u64, stats_file: Option<&FsPath>, stop: &AtomicBool) -> Result<Stats> {
    let mut q = Queue::open().context("opening the netfilter queue socket (root? CONFIG_NETFILTER_NETLINK_QUEUE?)")?;
    q.bind(num).with_context(|| format!("binding netfilter queue {num} (another process on it?)"))?;
    q.set_copy_range(num, 64)?;
    q.set_queue_max_len(num, 65536)?;
    q.set_nonblocking(true);
    let fd = find_queue_fd();
    if let Some(fd) = fd {
        // Room for bursts while the thread sleeps: the default (~200 kB) holds a few hundred.
        super::force_recv_buffer(fd, 16 << 20);
    }
    let realtime = go_realtime();
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut st = Stats {
        spec: spec.to_string(),
        realtime,
        wait: if fd.is_some() { "ppoll".into() } else { "sleep 200us".into() },
        ..Stats::default()
    };
    let mut path = Path::new(spec, seed);
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut late = Lateness::new();
    let mut seq = 0u64;
    let mut last_write = start;
    let mut stopping = false;
    loop {
        // Receive everything waiting.
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    let now = Instant::now();
                    let len = ip_len(msg.get_payload(), msg.get_original_len());
                    st.packets += 1;
                    st.bytes += len as u64;
                    match path.admit(now - start, len) {
                        Ok(dep) => {
                            seq += 1;
                            heap.push(Reverse(Held { at: start + dep, seq, msg }));
                            st.max_held = st.max_held.max(heap.len());
                        }
                        Err(why) => {
                            match why {
                                Drop::Loss => st.dropped_loss += 1,
                                Drop::Queue => st.dropped_queue += 1,
                            }
                            msg.set_verdict(Verdict::Drop);
                            q.verdict(msg).context("sending a drop verdict")?;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => bail!("reading netfilter queue {num}: {e}"),
            }
        }
        // Release what is due (everything when stopping).
        let now = Instant::now();
        while heap.peek().is_some_and(|h| stopping || h.0.at <= now) {
            let Reverse(mut h) = heap.pop().expect("peeked");
            let us = now.saturating_duration_since(h.at).as_micros() as u64;
            if !stopping {
                late.record(us);
                st.late_1ms += (us > 1000) as u64;
            }
            h.msg.set_verdict(Verdict::Accept);
            q.verdict(h.msg).context("sending an accept verdict")?;
            st.accepted += 1;
        }
        if now.duration_since(last_write) >= Duration::from_secs(1) || stopping {
            last_write = now;
            st.wall_s = start.elapsed().as_secs_f64();
            st.cpu_s = cpu_seconds() - cpu0;
            st.late_p50_us = late.pct(0.5);
            st.late_p99_us = late.pct(0.99);
            st.late_max_us = late.max_us;
            if let Some(f) = stats_file {
                write_stats(f, &st);
            }
        }
        if stopping {
            let _ = q.unbind(num);
            return Ok(st);
        }
        if stop.load(Ordering::Relaxed) {
            stopping = true;
            continue;
        }
        // Sleep until the next departure, a new packet, or 100 ms (to notice `stop`).
        let until =
            heap.peek().map_or(Duration::from_millis(100), |h| h.0.at.saturating_duration_since(Instant::now()));
        let until = until.min(Duration::from_millis(100));
        match fd {
            Some(fd) => wait_readable(fd, until),
            None => std::thread::sleep(until.min(Duration::from_micros(200))),
        }
    }
}
