//! The MoQ arm with the real encoder: ffmpeg pushes LL-DASH into the origin,
//! and an independent MoQ subscriber (moq-net's client API over
//! web-transport-quinn, pinning the endpoint's certificate by its SHA-256 as
//! a browser does with `serverCertificateHashes`) reads the broadcast. Every
//! frame must be one CMAF fragment and the frames of a group, together, the
//! very bytes the HTTP arm serves for that segment; an encoder restart under
//! an open subscription must be followed by the same track; and the session
//! limits hold. Events order the test (frames, groups, metrics), not sleeps;
//! the only timeouts are generous bounds on how long an event may take.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::ffmpeg::ffmpeg_push;
use common::TestOrigin;
use h3live::transport::Transport;
use moq_mux::container::fmp4::mp4_atom::{self, DecodeMaybe as _};
use moq_net::{origin, track};

/// A generous bound for one event (a group is 2 s of media).
const EVENT: Duration = Duration::from_secs(20);

/// An origin with the MoQ endpoint on, and the hex SHA-256 of its certificate.
async fn moq_origin(f: impl FnOnce(&mut h3live::server::ServerConfig)) -> (TestOrigin, String) {
    let (keys, sha) = h3live::cert::webtransport_cert(&[]).unwrap();
    let sha2 = sha.clone();
    let o = TestOrigin::start_with(move |c| {
        c.store.hold = Duration::from_secs(4);
        c.origin.moq_certificate_sha256 = Some(sha2);
        c.moq = Some(h3live::server::MoqSetup { view: Default::default(), keys });
        f(c)
    })
    .await;
    (o, sha)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A MoQ session to `addr` over WebTransport; the broadcasts it receives land in the returned origin.
async fn connect(addr: SocketAddr, sha: &str) -> (moq_net::Session, origin::Consumer, origin::Producer) {
    let client = web_transport_quinn::ClientBuilder::new().with_server_certificate_hashes(vec![unhex(sha)]).unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/", addr.port())).unwrap();
    // The subprotocol Chromium's @moq/net offers first.
    let request = web_transport_quinn::proto::ConnectRequest::new(url).with_protocol("moq-lite-05");
    let wt = client.connect(request).await.expect("WebTransport session");
    assert_eq!(wt.protocol(), Some("moq-lite-05"), "the server picks the client's first MoQ version");
    let (producer, driver) = origin::Producer::new(Default::default());
    tokio::spawn(moq_net::time::run(driver));
    let (session, driver) = moq_net::Client::new()
        .with_subscriber(producer.clone())
        .connect(std::time::Instant::now(), wt)
        .await
        .expect("MoQ handshake");
    tokio::spawn(moq_net::time::run(driver));
    (session, producer.consume(), producer)
}

/// Top-level box types of `data`, decoded by mp4-atom.
fn boxes(data: &[u8]) -> Vec<String> {
    let mut cursor = std::io::Cursor::new(data);
    let mut out = Vec::new();
    while let Some(atom) = mp4_atom::Any::decode_maybe(&mut cursor).expect("ISO-BMFF boxes") {
        out.push(format!("{:?}", atom).split(['(', ' ', '{']).next().unwrap_or_default().to_lowercase());
    }
    assert_eq!(cursor.position() as usize, data.len(), "trailing bytes after the last box");
    out
}

/// The next group of `sub`: its sequence, its frames and whether it ended
/// cleanly (a group whose upload broke ends in an error).
async fn next_group(sub: &mut track::Subscriber) -> (u64, Vec<Bytes>, bool) {
    let mut group = tokio::time::timeout(EVENT, sub.recv_group()).await.expect("a group in time").unwrap().unwrap();
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(EVENT, group.read_frame()).await.expect("a frame in time") {
            Ok(Some(f)) => frames.push(f.payload),
            Ok(None) => return (group.sequence, frames, true),
            Err(_) => return (group.sequence, frames, false),
        }
    }
}

/// Catalog of the broadcast: the init segment of each rendition by name.
async fn catalog(sub: &mut track::Subscriber) -> hang::catalog::Catalog {
    let mut group = tokio::time::timeout(EVENT, sub.recv_group()).await.expect("catalog in time").unwrap().unwrap();
    let frame = group.read_frame().await.unwrap().expect("catalog frame");
    hang::catalog::Catalog::from_slice(&frame.payload).expect("a hang catalog")
}

fn init_of(c: &hang::catalog::Catalog, rep: &str) -> Bytes {
    let container = c
        .video
        .renditions
        .get(rep)
        .map(|v| v.container.clone())
        .or_else(|| c.audio.renditions.get(rep).map(|a| a.container.clone()))
        .unwrap_or_else(|| panic!("{rep} not in the catalog"));
    match container {
        hang::catalog::Container::Cmaf { init } => init,
        other => panic!("{rep}: container {other:?}, not cmaf"),
    }
}

async fn http_get(o: &TestOrigin, path: &str) -> Bytes {
    let mut c = o.client(Transport::H1Clear).await;
    let mut r = c.get(path).await.unwrap();
    assert_eq!(r.status, http::StatusCode::OK, "{path}");
    r.bytes().await.unwrap()
}

/// Check a group against the segment the HTTP arm serves: every frame is
/// whole boxes ending in one `moof` + `mdat`, and the frames together are the
/// segment's bytes.
fn check_group(frames: &[Bytes], segment: &[u8], what: &str) {
    assert!(!frames.is_empty(), "{what}: empty group");
    for (i, f) in frames.iter().enumerate() {
        let b = boxes(f);
        assert!(b.ends_with(&["moof".to_string(), "mdat".to_string()]), "{what} frame {i}: boxes {b:?}");
        assert_eq!(b.iter().filter(|x| *x == "moof").count(), 1, "{what} frame {i}: boxes {b:?}");
    }
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    assert_eq!(joined.len(), segment.len(), "{what}: {} frames", frames.len());
    assert!(joined == segment, "{what}: frames differ from the HTTP segment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moq_frames_are_the_http_fragments_and_follow_an_encoder_restart() {
    let (o, sha) = moq_origin(|_| {}).await;
    let moq = o.moq.unwrap();
    assert_eq!(std::str::from_utf8(&http_get(&o, "/certificate.sha256").await).unwrap(), sha);
    let enc = ffmpeg_push(o.http, "ff");

    let (_session, consumer, _keep) = connect(moq, &sha).await;
    let broadcast = tokio::time::timeout(EVENT, consumer.routed_broadcast("ff")).await.expect("announced").unwrap();
    let mut cat_sub = broadcast
        .track(hang::Catalog::DEFAULT_NAME)
        .unwrap()
        .subscribe(hang::Catalog::default_subscription())
        .await
        .unwrap();
    let cat = catalog(&mut cat_sub).await;
    assert!(cat.video.renditions.contains_key("stream0"), "{cat:?}");
    assert!(cat.audio.renditions.contains_key("stream1"), "{cat:?}");
    for rep in ["stream0", "stream1"] {
        assert_eq!(init_of(&cat, rep), http_get(&o, &format!("/live/ff/init-{rep}.m4s")).await, "{rep} init");
    }

    let live = track::Subscription::default().with_max_age(Duration::from_secs(10));
    let mut video = broadcast.track("stream0").unwrap().subscribe(live.clone()).await.unwrap();
    let mut audio = broadcast.track("stream1").unwrap().subscribe(live).await.unwrap();
    // The group being filled when we joined may have started before; the
    // next ones are whole.
    let (first, _, _) = next_group(&mut video).await;
    let mut last = first;
    for _ in 0..2 {
        let (seq, frames, ok) = next_group(&mut video).await;
        assert!(ok, "video group {seq} ended in an error");
        assert!(seq > last, "group sequence goes up");
        last = seq;
        let seg = http_get(&o, &format!("/live/ff/chunk-stream0-{seq:05}.m4s")).await;
        check_group(&frames, &seg, &format!("video group {seq}"));
        // 25 fps, one fragment per frame: about 50 per 2 s segment.
        assert!(frames.len() >= 20, "video group {seq}: {} frames", frames.len());
    }
    next_group(&mut audio).await;
    let (aseq, aframes, ok) = next_group(&mut audio).await;
    assert!(ok, "audio group {aseq} ended in an error");
    let seg = http_get(&o, &format!("/live/ff/chunk-stream1-{aseq:05}.m4s")).await;
    check_group(&aframes, &seg, &format!("audio group {aseq}"));

    // Encoder restart: a new ffmpeg, new init segments, numbering from 1.
    drop(enc);
    let _enc = ffmpeg_push(o.http, "ff");
    let cat2 = catalog(&mut cat_sub).await;
    let new_init = init_of(&cat2, "stream0");
    assert_eq!(new_init, http_get(&o, "/live/ff/init-stream0.m4s").await, "the new generation's catalog");
    // The same subscription goes on with the new run's groups, numbered on.
    // Groups of the old run may still come first (one cut by the kill ends in
    // an error); the store no longer has their segments.
    let mut matched = None;
    for _ in 0..8 {
        let (seq, frames, ok) = next_group(&mut video).await;
        assert!(seq > last, "group {seq} after {last}: the sequence never goes back");
        last = seq;
        if !ok {
            continue;
        }
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        for name in o.origin.store().names("ff") {
            if name.starts_with("chunk-stream0-") && o.origin.store().get("ff", &name).is_some() {
                let seg = http_get(&o, &format!("/live/ff/{name}")).await;
                if seg == joined {
                    check_group(&frames, &seg, &format!("video group {seq} ({name}) after the restart"));
                    matched = Some(name);
                }
            }
        }
        if matched.is_some() {
            break;
        }
    }
    assert!(matched.is_some(), "no group of the new run after the restart");
    let m = String::from_utf8(http_get(&o, "/metrics").await.to_vec()).unwrap();
    assert!(m.contains("h3live_moq_generations_total 2\n"), "{m}");
    o.stop().await;
}

/// A driver that stops being polled once `paused` is set: its session then
/// reads nothing more from QUIC (a subscriber that stopped reading; quinn
/// still acknowledges packets, so the connection stays up).
struct Pausable<D> {
    inner: D,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<D: moq_net::time::Driver> moq_net::time::Driver for Pausable<D> {
    fn poll(
        &mut self,
        now: moq_net::time::Instant,
        waiter: &moq_net::kio::Waiter,
    ) -> Result<Option<moq_net::time::Instant>, moq_net::Error> {
        if self.paused.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        self.inner.poll(now, waiter)
    }
}

/// [`connect`] with a driver the test can pause.
async fn connect_pausable(
    addr: SocketAddr,
    sha: &str,
) -> (moq_net::Session, origin::Consumer, origin::Producer, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let client = web_transport_quinn::ClientBuilder::new().with_server_certificate_hashes(vec![unhex(sha)]).unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/", addr.port())).unwrap();
    let request = web_transport_quinn::proto::ConnectRequest::new(url).with_protocol("moq-lite-05");
    let wt = client.connect(request).await.expect("WebTransport session");
    let (producer, driver) = origin::Producer::new(Default::default());
    tokio::spawn(moq_net::time::run(driver));
    let (session, driver) =
        moq_net::Client::new().with_subscriber(producer.clone()).connect(std::time::Instant::now(), wt).await.unwrap();
    let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(moq_net::time::run(Pausable { inner: driver, paused: paused.clone() }));
    (session, producer.consume(), producer, paused)
}

/// The value of an unlabelled series in `/metrics`.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Poll `/metrics` until `ok` holds for series `name` (bounded by [`EVENT`]).
async fn wait_metric(o: &TestOrigin, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = tokio::time::Instant::now() + EVENT;
    loop {
        let m = String::from_utf8(http_get(o, "/metrics").await.to_vec()).unwrap();
        let v = metric(&m, name);
        if ok(v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} = {v} after {EVENT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moq_session_limits_hold() {
    let (o, sha) = moq_origin(|c| {
        c.limits.moq.max_subscriptions = 1;
        // Long enough for the first session to wait for its second
        // subscription (under a group's time), short for the stalled one.
        c.limits.moq.idle_timeout = Duration::from_secs(6);
    })
    .await;
    let moq = o.moq.unwrap();
    let _enc = ffmpeg_push(o.http, "lim");

    // Subscriptions per session: with room for one, the catalog subscription
    // takes it; a media track gets nothing until the catalog one is gone.
    let (_s1, consumer, _k1) = connect(moq, &sha).await;
    let broadcast = tokio::time::timeout(EVENT, consumer.routed_broadcast("lim")).await.expect("announced").unwrap();
    let mut cat = broadcast
        .track(hang::Catalog::DEFAULT_NAME)
        .unwrap()
        .subscribe(hang::Catalog::default_subscription())
        .await
        .unwrap();
    catalog(&mut cat).await;
    wait_metric(&o, "h3live_moq_subscriptions", |v| v == 1).await;
    let live = track::Subscription::default().with_max_age(Duration::from_secs(10));
    let video_track = broadcast.track("stream0").unwrap();
    let mut video = tokio::spawn(async move {
        let mut sub = video_track.subscribe(live).await.unwrap();
        next_group(&mut sub).await
    });
    // A second session (not limited by the first) sees groups go by meanwhile.
    let (_s2, consumer2, _k2) = connect(moq, &sha).await;
    let b2 = tokio::time::timeout(EVENT, consumer2.routed_broadcast("lim")).await.unwrap().unwrap();
    let mut other = b2
        .track("stream0")
        .unwrap()
        .subscribe(track::Subscription::default().with_max_age(Duration::from_secs(10)))
        .await
        .unwrap();
    next_group(&mut other).await;
    assert!(!video.is_finished(), "a second subscription got through on a session limited to one");
    assert_eq!(wait_metric(&o, "h3live_moq_subscriptions", |_| true).await, 2, "one per session");
    drop(cat);
    let (_, frames, _) = tokio::time::timeout(EVENT, &mut video).await.expect("video after the catalog left").unwrap();
    assert!(!frames.is_empty());

    // A subscriber that stops reading: its session is closed by the idle
    // timeout, while the other session keeps receiving.
    let (_s3, consumer3, _k3, paused) = connect_pausable(moq, &sha).await;
    let b3 = tokio::time::timeout(EVENT, consumer3.routed_broadcast("lim")).await.unwrap().unwrap();
    let mut stalled = b3
        .track("stream0")
        .unwrap()
        .subscribe(track::Subscription::default().with_max_age(Duration::from_secs(10)))
        .await
        .unwrap();
    next_group(&mut stalled).await;
    let idle_before = wait_metric(&o, "h3live_moq_idle_closed_total", |_| true).await;
    paused.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_metric(&o, "h3live_moq_idle_closed_total", |v| v > idle_before).await;
    let (_, frames, ok) = next_group(&mut other).await;
    assert!(ok && !frames.is_empty(), "the reading session goes on");
    o.stop().await;
}

/// A UDP relay from a port of its own to `to`, for one client, forwarding
/// both ways until the returned flag is set; from then on it drops every
/// datagram, as the path to a killed origin does (nothing closes, nothing
/// answers).
async fn udp_relay(to: SocketAddr) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(("127.0.0.1", to.port())).await.unwrap();
    let addr = front.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (f, b, c, k) = (front.clone(), back.clone(), client.clone(), cut.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            if !k.load(Ordering::Relaxed) {
                let _ = b.send(&buf[..n]).await;
            }
        }
    });
    let k = cut.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock().unwrap();
            if let (Some(to), false) = (to, k.load(Ordering::Relaxed)) {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    (addr, cut)
}

/// A viewer whose origin vanishes (kill -9: no CONNECTION_CLOSE, the client
/// has nothing to send) learns it from the MoQ endpoint's short QUIC idle
/// timeout, which the client adopts as the smaller of the two, and can
/// reconnect: its session ends within a few seconds, not after the 30 s of
/// the client's own (quinn's default) idle timeout. A quiet but intact path
/// keeps the session (the origin's keep-alives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moq_session_to_a_vanished_origin_ends_within_seconds() {
    let (o, sha) = moq_origin(|_| {}).await;
    let (relay, cut) = udp_relay(o.moq.unwrap()).await;
    let (session, _consumer, _keep) = connect(relay, &sha).await;
    // Quiet (no broadcast, no subscription) for more than twice the default
    // MoQ QUIC idle timeout (3 s): the keep-alives hold the session.
    assert!(
        tokio::time::timeout(Duration::from_secs(7), session.closed()).await.is_err(),
        "a quiet session on an intact path ended"
    );
    cut.store(true, std::sync::atomic::Ordering::Relaxed);
    let cut_at = std::time::Instant::now();
    // Generous sanity bound: the idle timeout is 3 s; the old endpoint's was 30 s.
    let err = tokio::time::timeout(Duration::from_secs(10), session.closed())
        .await
        .expect("the session to a vanished origin still looks open after 10 s");
    eprintln!("session ended {:?} after the path was cut: {err}", cut_at.elapsed());
    o.stop().await;
}

/// A MoQ listener that is full closes, for a newcomer, a session that sends
/// no media (connected, nothing subscribed), like an idle HTTP connection;
/// the session that delivers media goes on. Such a session used to count as
/// busy and hold its slot until the idle timeout (30 s), refusing newcomers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_moq_listener_closes_a_session_without_media_for_a_newcomer() {
    let (o, sha) = moq_origin(|c| c.limits.conn.max_connections = 2).await;
    let moq = o.moq.unwrap();
    let _enc = ffmpeg_push(o.http, "room");
    let (_s1, consumer, _k1) = connect(moq, &sha).await;
    let broadcast = tokio::time::timeout(EVENT, consumer.routed_broadcast("room")).await.expect("announced").unwrap();
    let live = || track::Subscription::default().with_max_age(Duration::from_secs(10));
    let mut video = broadcast.track("stream0").unwrap().subscribe(live()).await.unwrap();
    next_group(&mut video).await;
    let (idle, _c2, _k2) = connect(moq, &sha).await;
    // Both sessions open at the origin (each counted as sending from its
    // start), then only the watching one still sending.
    wait_metric(&o, "h3live_moq_sessions", |v| v == 2).await;
    wait_metric(&o, "h3live_moq_sessions_sending", |v| v == 1).await;

    let (_s3, consumer3, _k3) = connect(moq, &sha).await;
    let b3 = tokio::time::timeout(EVENT, consumer3.routed_broadcast("room")).await.expect("newcomer served").unwrap();
    let mut newcomer = b3.track("stream0").unwrap().subscribe(live()).await.unwrap();
    let (_, frames, _) = next_group(&mut newcomer).await;
    assert!(!frames.is_empty(), "the newcomer gets media");
    assert_eq!(wait_metric(&o, "h3live_moq_closed_for_newcomer_total", |v| v >= 1).await, 1);
    tokio::time::timeout(EVENT, idle.closed()).await.expect("the session without media is closed");
    let (_, frames, ok) = next_group(&mut video).await;
    assert!(ok && !frames.is_empty(), "the watching session goes on");
    o.stop().await;
}
