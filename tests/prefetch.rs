//! Origin-assisted prefetch at the origin, over real sockets with a real
//! ffmpeg push: with `CDN-Origin-Assist-Prefetch-Enabled: 1` a response names
//! the object a player fetches next (`CDN-Origin-Assist-Prefetch-Path`), for
//! DASH and LL-HLS, under the player's `run=` marker, and never an old
//! encoder run's object after a restart; without the header, nothing.

mod common;

use std::time::{Duration, Instant, UNIX_EPOCH};

use common::ffmpeg::ffmpeg_push;
use common::TestOrigin;
use h3live::client::Client;
use h3live::mpd::Manifest;
use h3live::transport::Transport;
use http::{Method, StatusCode};

const ON: (&str, &str) = ("cdn-origin-assist-prefetch-enabled", "1");

/// Status, the named paths, and the body.
async fn get(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Vec<String>, String) {
    let mut r = c.request_with(Method::GET, path, headers).await.unwrap();
    let named =
        r.headers.get_all("cdn-origin-assist-prefetch-path").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let body = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
    (r.status, named, body)
}

/// The `run=` value the player page uses for this manifest.
fn run_of(mpd: &str) -> String {
    let m = Manifest::parse(mpd).unwrap();
    m.availability_start.unwrap().duration_since(UNIX_EPOCH).unwrap().as_millis().to_string()
}

/// Number of a segment file name.
fn number(name: &str) -> u64 {
    name.split('?').next().unwrap().trim_end_matches(".m4s").rsplit('-').next().unwrap().parse().unwrap()
}

async fn wait_for(o: &TestOrigin, stream: &str, file: &str) {
    let started = Instant::now();
    while o.origin.store().get(stream, file).is_none() {
        assert!(started.elapsed() < Duration::from_secs(40), "ffmpeg did not push {file} in 40 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_names_the_next_object_for_dash_and_ll_hls_across_an_encoder_restart() {
    let o = TestOrigin::start().await;
    let enc = ffmpeg_push(o.http, "pf");
    wait_for(&o, "pf", "chunk-stream0-00003.m4s").await;
    let mut h3 = o.client(Transport::H3).await;
    let mut h1 = o.client(Transport::H1Clear).await;

    // The manifest: each representation's live edge, under its run marker.
    let (status, named, mpd) = get(&mut h3, "/live/pf/manifest.mpd", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(named.is_empty(), "no request header, no prefetch path: {named:?}");
    let run = run_of(&mpd);
    let (_, named, _) = get(&mut h3, "/live/pf/manifest.mpd", &[ON]).await;
    assert_eq!(named.len(), 2, "video and audio: {named:?}");
    for (n, rep) in named.iter().zip(["stream0", "stream1"]) {
        assert!(n.starts_with(&format!("chunk-{rep}-")) && n.ends_with(&format!(".m4s?run={run}")), "{n}");
        assert!(number(n) >= 3, "{n}: not the live edge");
    }

    // A media segment (over HTTP/1.1 and HTTP/3): the next one, same marker.
    let q = format!("?run={run}");
    for c in [&mut h1, &mut h3] {
        let (status, named, _) = get(c, &format!("/live/pf/chunk-stream0-00002.m4s{q}"), &[ON]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(named, [format!("chunk-stream0-00003.m4s{q}")]);
        let (_, named, _) = get(c, &format!("/live/pf/chunk-stream0-00002.m4s{q}"), &[]).await;
        assert!(named.is_empty(), "{named:?}");
        let (_, named, _) = get(c, "/live/pf/chunk-stream1-00002.m4s", &[ON]).await;
        assert_eq!(named, ["chunk-stream1-00003.m4s"], "no marker in, no marker out");
        let (_, named, _) = get(c, "/live/pf/chunk-stream0-00002.m4s?run=12345", &[ON]).await;
        assert!(named.is_empty(), "another run's marker: {named:?}");
    }
    // The init segment: the live edge a joining player fetches first.
    let (_, named, _) = get(&mut h3, &format!("/live/pf/init-stream0.m4s{q}"), &[ON]).await;
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(named[0].starts_with("chunk-stream0-") && named[0].ends_with(&q) && number(&named[0]) >= 3, "{named:?}");

    // LL-HLS: the media playlist names the preload-hinted part's segment; a
    // part (a byte range of a segment) names the next segment.
    let (status, named, pl) = get(&mut h3, "/live/pf/hls-stream0.m3u8", &[ON]).await;
    assert_eq!(status, StatusCode::OK, "{pl}");
    let hint = pl.lines().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:")).expect("preload hint");
    let uri = hint.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(named, [uri], "{pl}");
    let (_, named, _) = get(&mut h3, "/live/pf/hls-stream0.m3u8", &[]).await;
    assert!(named.is_empty());
    let (status, named, _) = get(&mut h3, "/live/pf/chunk-stream0-00002.m4s", &[ON, ("range", "bytes=0-99")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(named, ["chunk-stream0-00003.m4s"]);

    // The encoder restarts: numbers from 1 again, a new availabilityStartTime.
    let aborted = o.origin.metrics().aborted_uploads();
    drop(enc);
    // The old run is over for the origin once the killed encoder's open upload breaks.
    common::wait_for("the killed encoder's upload to break", || o.origin.metrics().aborted_uploads() > aborted).await;
    let _enc = ffmpeg_push(o.http, "pf");
    let started = Instant::now();
    let new_run = loop {
        let (status, _, mpd) = get(&mut h1, "/live/pf/manifest.mpd", &[]).await;
        if status == StatusCode::OK
            && run_of(&mpd) != run
            && o.origin.store().get("pf", "chunk-stream0-00002.m4s").is_some()
        {
            break run_of(&mpd);
        }
        assert!(started.elapsed() < Duration::from_secs(40), "no new run in 40 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, named, _) = get(&mut h1, &format!("/live/pf/chunk-stream0-00001.m4s{q}"), &[ON]).await;
    assert!(named.is_empty(), "an old run's player must not be sent to the new run's objects: {named:?}");
    let nq = format!("?run={new_run}");
    let (_, named, _) = get(&mut h1, &format!("/live/pf/chunk-stream0-00001.m4s{nq}"), &[ON]).await;
    assert_eq!(named, [format!("chunk-stream0-00002.m4s{nq}")]);
    let (_, named, _) = get(&mut h1, "/live/pf/manifest.mpd", &[ON]).await;
    assert!(!named.is_empty() && named.iter().all(|n| n.ends_with(&nq) && number(n) < 10), "{named:?}");
}
