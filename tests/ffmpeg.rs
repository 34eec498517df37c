//! The real encoder: Debian's ffmpeg pushes LL-DASH (scripts/encoder.sh, at
//! a smaller picture size to spare the CPU) into the origin for about ten
//! seconds; the manifest, both init segments and a live segment are then read
//! over HTTP/3 and HTTP/1.1, the live one while ffmpeg is still writing it.

mod common;

use std::time::{Duration, Instant};

use common::TestOrigin;
use h3live::transport::Transport;
use http::StatusCode;

use common::ffmpeg::{ffmpeg_push, ffmpeg_push_to};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_ffmpeg_push_is_served_live_over_h3_and_h1() {
    // A long hold lets the test ask for the next segment before it exists.
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(4)).await;
    let _enc = ffmpeg_push(o.http, "ff");
    let started = Instant::now();

    // The manifest appears (ffmpeg writes it once the first segment closes).
    let mut h3 = o.client(Transport::H3).await;
    let mut h1 = o.client(Transport::H1Clear).await;
    let manifest = loop {
        let mut r = h3.get("/live/ff/manifest.mpd").await.unwrap();
        if r.status == StatusCode::OK {
            break String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no manifest from ffmpeg after 20 s");
    };
    assert!(manifest.contains("availabilityTimeComplete=\"false\""), "not an LL-DASH manifest:\n{manifest}");
    assert!(manifest.contains("http-xsdate"), "UTCTiming missing:\n{manifest}");
    let mut r = h1.get("/live/ff/manifest.mpd").await.unwrap();
    assert_eq!(r.header("content-type"), Some("application/dash+xml"));
    assert!(String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap().contains("<MPD"));

    // Both init segments, identical over both transports.
    for init in ["init-stream0.m4s", "init-stream1.m4s"] {
        let path = format!("/live/ff/{init}");
        let mut a = h3.get(&path).await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{init}");
        let a = a.bytes().await.unwrap();
        let b = h1.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&a[4..8], b"ftyp", "{init} is not an init segment");
        assert!(a.windows(4).any(|w| w == b"moov"));
        assert_eq!(a, b, "{init}: h3 and h1 bodies differ");
    }

    // Ask for the video segment after the one being written: the request is
    // held until ffmpeg starts it, then streams for the segment's 2 s.
    let streams: serde_json::Value =
        serde_json::from_slice(&h1.get("/streams").await.unwrap().bytes().await.unwrap()).unwrap();
    let newest = streams["streams"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str()?.strip_prefix("chunk-stream0-")?.strip_suffix(".m4s")?.parse::<u32>().ok())
        .max()
        .expect("no video segment yet");
    let path = format!("/live/ff/chunk-stream0-{:05}.m4s", newest + 1);
    let mut tasks = Vec::new();
    for t in [Transport::H3, Transport::H1Clear] {
        let mut c = o.client(t).await;
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = c.get(&path).await.unwrap();
            assert_eq!(r.status, StatusCode::OK, "{t}");
            assert!(r.header("content-length").is_none(), "{t}: the segment should still be growing");
            let mut body = Vec::new();
            let mut arrivals = Vec::new();
            while let Some(c) = r.chunk().await {
                body.extend_from_slice(&c.unwrap());
                arrivals.push(Instant::now());
            }
            (t, body, arrivals)
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let (t, body, arrivals) = tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap();
        assert_eq!(&body[4..8], b"styp", "{t}");
        assert!(body.windows(4).any(|w| w == b"prft"), "{t}: no prft box");
        let spread = *arrivals.last().unwrap() - arrivals[0];
        // every_frame at 30 fps: ~60 fragments spread over the 2 s segment.
        assert!(arrivals.len() >= 20, "{t}: only {} pieces: not progressive", arrivals.len());
        assert!(spread >= Duration::from_millis(1000), "{t}: first and last bytes only {spread:?} apart");
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1], "h3 and h1 bodies differ");
    // What the readers got is exactly what the store holds.
    let mut r = h3.get(&path).await.unwrap();
    assert_eq!(r.header("content-length").map(|v| v.parse::<usize>().unwrap()), Some(bodies[0].len()));
    assert_eq!(r.bytes().await.unwrap().to_vec(), bodies[0]);
    o.stop().await;
}

/// With `--ingest-token`, ffmpeg authenticates with the token as the URL's
/// Basic-auth password. Without `-http_opts auth_type=basic` it sends the
/// credentials only after a 401 on each connection, and the first request of
/// each track's connection (its init segment, sent once per run) is lost:
/// this checks that the documented command (`scripts/encoder.sh --origin
/// http://user:TOKEN@host:port`, which adds that option) loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_with_ingest_token_loses_nothing() {
    let o = TestOrigin::start_with(|c| c.origin.ingest_token = Some("s3cret".into())).await;
    let _enc = ffmpeg_push_to(&format!("http://ffmpeg:s3cret@{}", o.http), "tok");
    let store = o.origin.store();
    let started = Instant::now();
    while store.get("tok", "chunk-stream0-00002.m4s").is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "ffmpeg did not get two segments in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for name in
        ["init-stream0.m4s", "init-stream1.m4s", "manifest.mpd", "chunk-stream0-00001.m4s", "chunk-stream1-00001.m4s"]
    {
        assert!(store.get("tok", name).is_some(), "{name} was lost");
    }
    let metrics = o.origin.metrics().render(store);
    assert!(!metrics.contains("h3live_ingest_rejected_total{"), "ingest requests were refused:\n{metrics}");
    o.stop().await;
}
