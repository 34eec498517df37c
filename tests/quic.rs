//! HTTP/3 settings that change quinn's packet budget take effect: the origin's
//! quinn counters (`h3live_quic_*` at /metrics) show it.

mod common;

use common::TestOrigin;
use h3live::client::{Client, Connector, QuicClientOptions};
use h3live::quic_stats::QuicTotals;
use h3live::transport::{AckFrequency, Transport};

/// Chunks of this size take three datagrams at quinn's default MTU.
const CHUNK: usize = 3000;

/// Stream `chunks` chunks to `client` through the origin, each pushed only
/// once the client has read the previous one (a live stream's cadence: the
/// client never holds two chunks' packets at once, so it cannot acknowledge
/// them together). Returns the origin's quinn counters.
async fn trickle(o: &TestOrigin, client: &mut Client, chunks: usize) -> QuicTotals {
    static SEGMENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let n = SEGMENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = &format!("/live/q/chunk-stream0-{n:05}.m4s");
    let up = o.put(path).await;
    up.send(vec![1u8; CHUNK]).await;
    let mut resp = client.get(path).await.unwrap();
    let (mut got, mut sent) = (0, CHUNK);
    for _ in 1..chunks {
        while got < sent {
            got += resp.chunk().await.expect("body ended early").unwrap().len();
        }
        up.send(vec![2u8; CHUNK]).await;
        sent += CHUNK;
    }
    assert_eq!(up.finish().await, http::StatusCode::CREATED);
    while let Some(c) = resp.chunk().await {
        got += c.unwrap().len();
    }
    assert_eq!(got, sent);
    o.origin.metrics().quic().totals()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_frequency_is_requested_of_quinn_clients_and_thins_their_acks() {
    let chunks = 200;
    let plain = TestOrigin::start().await;
    let mut c = plain.client(Transport::H3).await;
    let without = trickle(&plain, &mut c, chunks).await;
    drop(c);
    plain.stop().await;

    let asking = TestOrigin::start_with(|c| {
        c.limits.quic.ack_frequency = Some(AckFrequency { ack_eliciting_threshold: 9, max_ack_delay: None });
    })
    .await;
    let mut c = asking.client(Transport::H3).await;
    let with = trickle(&asking, &mut c, chunks).await;
    let metrics = asking.client(Transport::H1Clear).await.get("/metrics").await.unwrap().bytes().await.unwrap();
    drop(c);
    asking.stop().await;

    assert_eq!(without.tx_ack_frequency, 0, "no ACK_FREQUENCY unless configured: {without:?}");
    assert!(with.tx_ack_frequency >= 1, "ACK_FREQUENCY sent to a quinn client: {with:?}");
    let metrics = String::from_utf8_lossy(&metrics);
    let line = metrics.lines().find(|l| l.starts_with("h3live_quic_ack_frequency_frames_total{dir=\"tx\"}"));
    assert!(line.is_some_and(|l| !l.ends_with(" 0")), "/metrics shows it: {line:?}");
    // Both sent about the same data; the client acknowledged less often.
    let ratio = |t: &QuicTotals| t.rx_acks as f64 / t.tx_datagrams as f64;
    eprintln!("ACK frames per datagram sent: {:.3} with ACK_FREQUENCY, {:.3} without", ratio(&with), ratio(&without));
    assert!(with.tx_datagrams > 2 * chunks as u64 && without.tx_datagrams > 2 * chunks as u64);
    assert!(
        ratio(&with) < ratio(&without),
        "ACK frames per datagram sent: {:.3} with ACK_FREQUENCY, {:.3} without ({with:?} / {without:?})",
        ratio(&with),
        ratio(&without)
    );
}

/// A client of `o` over HTTP/3 accepting datagrams up to `max_udp_payload`.
async fn client_accepting(o: &TestOrigin, max_udp_payload: Option<u16>) -> Client {
    let opts = QuicClientOptions { max_udp_payload_size: max_udp_payload };
    Connector::with_options(Transport::H3, o.h3, "localhost", &o.roots, &opts).unwrap().connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_mtu_upper_bound_is_reached_on_loopback_only_when_the_client_accepts_it() {
    let o = TestOrigin::start_with(|c| c.limits.quic.mtu_upper_bound = 65527).await;
    // quinn's default client (max_udp_payload_size 1472), then one accepting more.
    let mut c = client_accepting(&o, None).await;
    let small = trickle(&o, &mut c, 50).await;
    assert!(small.mtu_max <= 1472, "the client's limit holds: {small:?}");
    drop(c);
    let mut c = client_accepting(&o, Some(65527)).await;
    // MTU discovery probes run alongside the data: stream until they are done.
    let mut t = small;
    for _ in 0..40 {
        t = trickle(&o, &mut c, 50).await;
        if t.mtu_max > 1472 {
            break;
        }
    }
    assert!(t.mtu_max > 1472, "MTU discovery went past 1472 bytes on loopback: {t:?}");
    o.stop().await;
}
