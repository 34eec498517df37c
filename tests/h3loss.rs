//! HTTP/3 over a lossy path, without root: a user-space UDP relay between the
//! viewers and the origin's QUIC listener delays every datagram by 50 ms each
//! way (100 ms RTT) and drops 2 % of them each way in bursts of 3 on average
//! (seeded; scripts/ab.sh's rtt100-burst profile). A live stream of 2 Mbit/s
//! must still reach the viewers about as fast as over the same path without
//! loss: with quinn's default CUBIC the sender's window fell below the
//! stream's rate after a few losses (it does not grow on application-limited
//! ACKs) and latency grew to seconds; see
//! docs/results/2026-11-30-http3-under-loss.md.
//!
//! Each test reads the stream over the lossy path and, at the same time, over
//! a control path (the same relay and delay, no loss), and compares the two
//! tails: a loaded machine slows both, so the comparison holds on a busy
//! 2-core CI machine where an absolute latency bound does not.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::TestOrigin;
use h3live::load::capture::{synthesize, SynthOptions};
use h3live::load::replay::{self, PrftMode, ReplayStats};
use h3live::transport::Congestion;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One-way delay of the relay.
const DELAY: Duration = Duration::from_millis(50);
/// Per million datagrams in the good state: chance of entering a loss burst.
const BURST_START_PPM: u64 = 6_800;
/// Per million datagrams in a burst: chance of the burst going on (mean 3).
const BURST_STAY_PPM: u64 = 666_667;

/// Deterministic bursty loss (Gilbert-Elliott, about 2 % of datagrams in
/// bursts of 3 on average): xorshift64, one draw per datagram. `None`: the
/// control path, no loss.
struct Loss(Option<u64>, bool);

impl Loss {
    fn drop_next(&mut self) -> bool {
        let Some(state) = self.0.as_mut() else { return false };
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let draw = *state % 1_000_000;
        self.1 = if self.1 { draw < BURST_STAY_PPM } else { draw < BURST_START_PPM };
        self.1
    }
}

/// A delay line: datagrams sent `DELAY` after they were queued, in order.
fn delay_line(sock: Arc<UdpSocket>) -> mpsc::UnboundedSender<(Instant, Vec<u8>, SocketAddr)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, SocketAddr)>();
    tokio::spawn(async move {
        while let Some((at, data, dest)) = rx.recv().await {
            tokio::time::sleep_until(at + DELAY).await;
            let _ = sock.send_to(&data, dest).await;
        }
    });
    tx
}

/// Relay on a fresh loopback port to `server`, delaying both directions,
/// and with `lossy` dropping datagrams both ways.
async fn relay(server: SocketAddr, lossy: bool, stop: CancellationToken) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let to_clients = delay_line(front.clone());
    tokio::spawn(async move {
        let mut up_loss = Loss(lossy.then_some(0x9e37_79b9_7f4a_7c15), false);
        let mut flows: HashMap<SocketAddr, mpsc::UnboundedSender<(Instant, Vec<u8>, SocketAddr)>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, client) = tokio::select! {
                r = front.recv_from(&mut buf) => r.unwrap(),
                _ = stop.cancelled() => return,
            };
            let up = flows.entry(client).or_insert_with(|| {
                // A socket towards the server per client; its replies go back
                // through the shared delay line of the front socket.
                let back = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                back.set_nonblocking(true).unwrap();
                let back = Arc::new(UdpSocket::from_std(back).unwrap());
                let to_clients = to_clients.clone();
                let stop = stop.clone();
                let rx_sock = back.clone();
                tokio::spawn(async move {
                    let mut down_loss = Loss(lossy.then_some(0xd1b5_4a32_d192_ed03 ^ u64::from(client.port())), false);
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = tokio::select! {
                            r = rx_sock.recv_from(&mut buf) => match r { Ok((n, _)) => n, Err(_) => return },
                            _ = stop.cancelled() => return,
                        };
                        if !down_loss.drop_next() {
                            let _ = to_clients.send((Instant::now(), buf[..n].to_vec(), client));
                        }
                    }
                });
                delay_line(back)
            });
            if !up_loss.drop_next() {
                let _ = up.send((Instant::now(), buf[..n].to_vec(), server));
            }
        }
    });
    addr
}

/// How much loss may stretch the tail, a sanity bound: the p95 of prft ->
/// last byte over the lossy path must stay within `TAIL_RATIO` x the control
/// path's p95 (measured at the same time) plus `TAIL_SLACK_MS` (three round
/// trips of retransmission). What it guards against is CUBIC's window stuck
/// below the stream's rate: 13 x the control's tail (2.3 s against 170 ms)
/// on a moderately loaded machine, about 20 x on an idle one. BBR measured
/// 1.3-2.2 x with the machine's load average between 12 and 22 on 2 cores,
/// where an absolute bound failed (p95 0.2-2.5 s on the lossy path alone).
/// At such a load CUBIC's ratio also fell (1.7 x): there this test cannot
/// tell the two apart, and the printed numbers and `scripts/bench.sh` on an
/// idle machine are the measurement.
const TAIL_RATIO: f64 = 4.0;
const TAIL_SLACK_MS: f64 = 300.0;

/// The two tests measure latency on a shared (often busy) machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The origin's congestion controller: BBR (the default), or
/// `$H3LOSS_CONGESTION` (`cubic`, `new-reno`) to see the old tail by hand
/// (the assertions then fail, printing the numbers).
fn congestion() -> Congestion {
    std::env::var("H3LOSS_CONGESTION").map_or(Congestion::Bbr, |v| {
        <Congestion as clap::ValueEnum>::from_str(&v, true).expect("H3LOSS_CONGESTION: cubic, new-reno or bbr")
    })
}

/// A live stream (synthetic, 2 Mbit/s, 1 s segments, prft stamped at push
/// time) pushed into `o` as stream `t`, and two relays in front of its QUIC
/// listener: `(lossy, control)`. Cancel the token to stop all, then await
/// the replay.
async fn live_behind_relays(
    o: &TestOrigin,
) -> ((SocketAddr, SocketAddr), CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>, tempfile::TempDir) {
    let capture = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        duration: Duration::from_secs(4),
        segment: Duration::from_secs(1),
        video_bitrate: 2_000_000,
        fps: 30,
    };
    synthesize(capture.path(), &opts).unwrap();
    let plan = replay::load_plan(capture.path()).unwrap();
    let (stop, stats) = (CancellationToken::new(), Arc::new(ReplayStats::default()));
    let replay = tokio::spawn(replay::run(plan, o.http, "t", PrftMode::Push, None, stop.clone(), stats.clone()));
    let lossy = relay(o.h3, true, stop.clone()).await;
    let control = relay(o.h3, false, stop.clone()).await;
    ((lossy, control), stop, replay, capture)
}

/// The lossy path's tail stays within [`TAIL_RATIO`] x the control path's plus [`TAIL_SLACK_MS`].
fn assert_keeps_up(who: &str, lossy_p95: f64, control_p95: f64) {
    eprintln!("{who}: p95 {lossy_p95:.1} ms over the lossy path, {control_p95:.1} ms over the control path");
    assert!(
        lossy_p95 <= TAIL_RATIO * control_p95 + TAIL_SLACK_MS,
        "HTTP/3 fell behind the live stream over a lossy path ({who}): p95 {lossy_p95:.1} ms, \
         {control_p95:.1} ms without loss at the same time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_keeps_up_with_a_live_stream_over_a_lossy_path() {
    let _serial = SERIAL.lock().await;
    let o = TestOrigin::start_with(|c| c.limits.quic.congestion = congestion()).await;
    let ((lossy, control), stop, replay, _capture) = live_behind_relays(&o).await;

    let run = |addr| {
        let cmd = common::load_cmd("h3", addr, &o.cert_pem, 2, "12s");
        tokio::spawn(h3live::load::run(cmd.viewers, CancellationToken::new()))
    };
    let (r, c) = (run(lossy), run(control));
    let (r, c) = (r.await.unwrap().unwrap(), c.await.unwrap().unwrap());
    stop.cancel();
    replay.await.unwrap().unwrap();
    let (summary, control_summary) = (r.summary(), c.summary());
    eprintln!("lossy path: {summary}\ncontrol path: {control_summary}");
    assert_eq!(r.errors, 0, "{summary}");
    assert_eq!(c.errors, 0, "{control_summary}");
    assert!(r.latency.count > 300, "{summary}");
    assert!(c.latency.count > 300, "{control_summary}");
    assert_keeps_up("load tool", r.latency.p95_ms, c.latency.p95_ms);
    o.stop().await;
}

/// The same paths read by an independent QUIC and HTTP/3 stack (aioquic,
/// tests/py/h3_live_probe.py: one connection, both tracks, segment after
/// segment, prft -> last byte per fragment): the tail the load tool reports
/// is the origin's, not an artefact of the load tool's own client. With
/// CUBIC this probe saw p95 in the seconds too (docs/results/2026-11-30-http3-under-loss.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_keeps_up_with_a_live_stream_over_a_lossy_path() {
    let _serial = SERIAL.lock().await;
    let py = common::aioquic_python();
    let o = TestOrigin::start_with(|c| {
        c.store.hold = Duration::from_secs(3);
        c.limits.quic.congestion = congestion();
    })
    .await;
    let ((lossy, control), stop, replay, _capture) = live_behind_relays(&o).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/h3_live_probe.py");
    let probe = |addr: SocketAddr| {
        tokio::process::Command::new(&py)
            .arg(&script)
            .arg(format!("https://{addr}/live/t/"))
            .arg("--ca")
            .arg(&o.cert_pem)
            .args(["--duration", "10"])
            .kill_on_drop(true)
            .output()
    };
    let both = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(probe(lossy), probe(control)) });
    let (out, control_out) = both.await.expect("probe hung");
    stop.cancel();
    replay.await.unwrap().unwrap();
    let result = |out: std::io::Result<std::process::Output>, path: &str| -> serde_json::Value {
        let out = out.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("aioquic probe, {path} path: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "aioquic probe failed on the {path} path: {text}");
        let r: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert!(r["fragments"].as_u64().unwrap() > 300, "{path}: {r}");
        r
    };
    let (r, c) = (result(out, "lossy"), result(control_out, "control"));
    assert_keeps_up("aioquic", r["p95_ms"].as_f64().unwrap(), c["p95_ms"].as_f64().unwrap());
    o.stop().await;
}
