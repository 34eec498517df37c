//! HTTP/3 over a lossy path, without root: a user-space UDP relay between the
//! load tool's viewers and the origin's QUIC listener delays every datagram by
//! 50 ms each way (100 ms RTT) and drops 2 % of them each way in bursts of 3
//! on average (seeded; scripts/ab.sh's rtt100-burst profile). A live stream of 2 Mbit/s must still reach
//! the viewers about one RTT after it was pushed: with quinn's default CUBIC
//! the sender's window fell below the stream's rate after a few losses (it
//! does not grow on application-limited ACKs) and latency grew to seconds;
//! see README, "HTTP/3 under loss".

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use common::TestOrigin;
use h3live::load::capture::{synthesize, SynthOptions};
use h3live::load::replay::{self, PrftMode, ReplayStats};
use h3live::load::LoadCmd;
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
/// bursts of 3 on average): xorshift64, one draw per datagram.
struct Loss(u64, bool);

impl Loss {
    fn drop_next(&mut self) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let draw = self.0 % 1_000_000;
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

/// Relay on a fresh loopback port to `server`, impairing both directions.
async fn lossy_relay(server: SocketAddr, stop: CancellationToken) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let to_clients = delay_line(front.clone());
    tokio::spawn(async move {
        let mut up_loss = Loss(0x9e37_79b9_7f4a_7c15, false);
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
                    let mut down_loss = Loss(0xd1b5_4a32_d192_ed03 ^ u64::from(client.port()), false);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_keeps_up_with_a_live_stream_over_a_lossy_path() {
    let o = TestOrigin::start().await;
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
    let relay = lossy_relay(o.h3, stop.clone()).await;

    let cmd = LoadCmd::try_parse_from([
        "load",
        "--transport",
        "h3",
        "--addr",
        &relay.to_string(),
        "--ca",
        o.cert_pem.to_str().unwrap(),
        "--stream",
        "t",
        "-n",
        "2",
        "--duration",
        "12s",
        "--ramp",
        "200ms",
        "--wait",
        "5s",
        "--quiet",
    ])
    .unwrap();
    let r = h3live::load::run(cmd.viewers, CancellationToken::new()).await.unwrap();
    stop.cancel();
    replay.await.unwrap().unwrap();
    let summary = r.summary();
    eprintln!("{summary}");
    assert_eq!(r.errors, 0, "{summary}");
    assert!(r.latency.count > 300, "{summary}");
    // One RTT is 100 ms; a sender that keeps up delivers most fragments
    // within a few RTTs (retransmissions included).
    assert!(r.latency.p95_ms < 500.0, "HTTP/3 fell behind the live stream over a lossy path: {summary}");
    o.stop().await;
}
