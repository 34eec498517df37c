//! The encoder relay (`h3live relay`) over real sockets: real ffmpeg pushing
//! through it to two `h3live serve` processes at once (one over HTTP/1.1,
//! one over HTTP/3) that get byte-identical objects and, after `kill -9` and
//! a restart with their state directory, miss no segment; a dead origin that
//! slows neither the encoder nor the other origin and, once back, gets the
//! kept init segment and the live edge; broken uploads forwarded as broken.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ffmpeg::ffmpeg_push;
use common::{
    cert_dir, objects, read_all, segments, start_relay, wait_until, whole_then_shutdown, OriginProc, RawUpload,
    TestOrigin,
};
use h3live::client::Client;
use h3live::transport::Transport;
use http::{Method, StatusCode};
use tokio::sync::mpsc;

/// Complete objects the two origins both have, compared byte for byte;
/// returns how many media segments were compared.
async fn same_objects(a: &OriginProc, b: &OriginProc, stream: &str, from: u64) -> usize {
    let (oa, ob) = (objects(&a.streams().await, stream), objects(&b.streams().await, stream));
    let mut media = 0;
    for (name, (state, _)) in &oa {
        let number = name.rsplit('-').next().and_then(|n| n.strip_suffix(".m4s")).and_then(|n| n.parse::<u64>().ok());
        let wanted = name.starts_with("init-") || (name.starts_with("chunk-") && number.is_some_and(|n| n >= from));
        if !wanted || state != "complete" || ob.get(name).map(|(s, _)| s.as_str()) != Some("complete") {
            continue;
        }
        let path = format!("/live/{stream}/{name}");
        let (ga, gb) = (a.get(&path).await, b.get(&path).await);
        assert_eq!(ga.0, StatusCode::OK, "{name} on the h1 origin");
        assert!(ga == gb, "{name}: the two origins differ ({} vs {} bytes)", ga.1.len(), gb.1.len());
        media += usize::from(name.starts_with("chunk-"));
    }
    media
}

/// Real ffmpeg -> relay -> two origin processes, one fed over HTTP/1.1 and
/// one over HTTP/3. Both get the same bytes. Then both are killed with
/// SIGKILL while a segment is being written and started again on the same
/// ports and state directories: the relay sends that segment again from its
/// start, so on each origin every segment number from the one in flight at
/// the kill onwards is there (ffmpeg pushing directly loses it and skips the
/// next one), and the objects are still identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origins_over_h1_and_h3_get_the_same_bytes_and_no_gap_after_kill_9() {
    let certs = cert_dir();
    let mut a = OriginProc::start(certs.path(), &[]).await;
    let mut b = OriginProc::start(certs.path(), &[]).await;
    let ca = certs.path().join("cert.pem");
    let r = start_relay(&[
        "--origin",
        &format!("http://{}", a.addr),
        "--origin",
        &format!("http://{}", b.addr),
        "--ingest-transport",
        "h1",
        "--ingest-transport",
        "h3",
        "--ca",
        ca.to_str().unwrap(),
    ])
    .await;
    let _enc = ffmpeg_push(r.addr, "rl");
    let video = "chunk-stream0-";

    // Two complete segments on both, then the same bytes everywhere.
    for o in [&a, &b] {
        wait_until("two complete video segments", 30, || async {
            let s = segments(&objects(&o.streams().await, "rl"), video);
            (s.values().filter(|st| *st == "complete").count() >= 2).then_some(())
        })
        .await;
    }
    assert!(same_objects(&a, &b, "rl", 0).await >= 2, "too few segments compared");

    // Kill both just after a new video segment starts (it is certainly in
    // flight at the kill: it lasts 2 s).
    let in_flight = wait_until("a video segment that just started", 10, || async {
        let o = objects(&a.streams().await, "rl");
        let newest = segments(&o, video).into_iter().next_back()?;
        let bytes = o.get(&format!("{video}{:05}.m4s", newest.0)).map_or(u64::MAX, |x| x.1);
        (newest.1 == "growing" && bytes < 40_000).then_some(newest.0)
    })
    .await;
    a.kill9();
    b.kill9();
    // The relay notices (h1: the connection breaks; h3: the QUIC connection
    // goes silent for the upstream timeout) before they come back.
    for (i, up) in r.relay.upstreams().iter().enumerate() {
        wait_until("the relay to see the origin gone", 15, || async { (!up.is_up()).then_some(()) }).await;
        assert!(up.metrics.upload_errors.get() >= 1, "upstream {i}");
    }
    a.restart().await;
    b.restart().await;

    for (label, o) in [("h1", &a), ("h3", &b)] {
        let have = wait_until("two more video segments after the restart", 30, || async {
            let s = segments(&objects(&o.streams().await, "rl"), video);
            s.range(in_flight + 2..).next().is_some().then_some(s)
        })
        .await;
        let first = *have.keys().next().unwrap();
        let last = *have.keys().next_back().unwrap();
        let missing: Vec<u64> = (in_flight..=last).filter(|n| !have.contains_key(n)).collect();
        assert!(
            first <= in_flight && missing.is_empty(),
            "{label}: segment {in_flight} was in flight at the kill; after the restart the origin has {:?}",
            have.keys().collect::<Vec<_>>()
        );
        assert_eq!(have[&in_flight], "complete", "{label}: the in-flight segment was sent again whole");
    }
    assert!(same_objects(&a, &b, "rl", in_flight).await >= 1);
    for up in r.relay.upstreams() {
        assert!(up.metrics.resent_bytes.get() > 0, "{}: nothing re-sent", up.name());
        assert!(up.metrics.reconnects.get() >= 1, "{}: no reconnect counted", up.name());
    }
    drop(_enc);
    r.stop().await;
}

/// Send one whole request through the relay.
async fn put(enc: &mut Client, path: &str, body: &[u8]) -> StatusCode {
    let mut up = enc.upload(Method::PUT, path, &[]).await.unwrap();
    // A refusal (400, 403) may come before the body is taken; the status says it.
    let _ = up.send(Bytes::copy_from_slice(body)).await;
    up.finish().await.unwrap().status
}

/// An origin that is down slows neither the encoder nor the other origin:
/// every chunk reaches a reader of the live origin before the next is sent.
/// Once it is further behind than --max-behind it jumps to the live edge;
/// when it comes up it gets the kept init segment (it never saw it) and the
/// newest segment from its start, not the ones skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_origin_slows_nothing_and_comes_back_at_the_live_edge() {
    let a = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(5)).await;
    // An origin's address with nothing behind it: one started and killed.
    let certs = cert_dir();
    let mut b = OriginProc::start(certs.path(), &[]).await;
    b.kill9();
    let dead = b.addr.port();
    let r = start_relay(&[
        "--origin",
        &format!("http://{}", a.http),
        "--origin",
        &format!("http://127.0.0.1:{dead}"),
        "--max-behind",
        "64K",
        "--upstream-timeout",
        "1s",
    ])
    .await;
    let mut enc = Client::connect(Transport::H1Clear, r.addr, "localhost", &[]).await.unwrap();
    assert_eq!(put(&mut enc, "/live/d/init-stream0.m4s", b"ftyp moov").await, StatusCode::CREATED);

    // Live: each chunk reaches the reader of origin A before the next one.
    let path = "/live/d/chunk-stream0-00001.m4s";
    let mut reader = a.client(Transport::H3).await;
    let (tx, mut got) = mpsc::unbounded_channel();
    let read = tokio::spawn(async move {
        let mut resp = reader.get(path).await.unwrap();
        let mut n = 0;
        while let Some(c) = resp.chunk().await {
            n += c.unwrap().len();
            let _ = tx.send(n);
        }
        n
    });
    let mut up = enc.upload(Method::PUT, path, &[]).await.unwrap();
    let mut sent = 0;
    for i in 0..5u8 {
        up.send(Bytes::from(vec![i; 1000])).await.unwrap();
        sent += 1000;
        tokio::time::timeout(Duration::from_secs(5), async { while got.recv().await.unwrap() < sent {} })
            .await
            .unwrap_or_else(|_| panic!("chunk {i} did not reach origin A's reader"));
    }
    assert_eq!(up.finish().await.unwrap().status, StatusCode::CREATED);
    assert_eq!(read.await.unwrap(), 5000);

    // 120 KB more for the dead one: over --max-behind, it jumps to the live edge.
    for n in 2..=4 {
        let path = format!("/live/d/chunk-stream0-{n:05}.m4s");
        assert_eq!(put(&mut enc, &path, &vec![n as u8; 40_000]).await, StatusCode::CREATED);
    }
    let dead_up = r.relay.upstreams()[1].clone();
    wait_until("the dead origin's jump to the live edge", 10, || async {
        (dead_up.metrics.live_edge_drops.get() >= 1).then_some(())
    })
    .await;
    assert!(dead_up.behind() <= 64 * 1024 + 40_000, "memory held for it: {} bytes", dead_up.behind());
    assert!(!dead_up.is_up());

    // It comes up while segment 5 is being written.
    let path5 = "/live/d/chunk-stream0-00005.m4s";
    let mut up5 = enc.upload(Method::PUT, path5, &[]).await.unwrap();
    up5.send(Bytes::from_static(b"five, first half; ")).await.unwrap();
    b.restart().await;
    wait_until("the revived origin to get segment 5's first bytes", 20, || async {
        objects(&b.streams().await, "d").contains_key("chunk-stream0-00005.m4s").then_some(())
    })
    .await;
    up5.send(Bytes::from_static(b"second half")).await.unwrap();
    assert_eq!(up5.finish().await.unwrap().status, StatusCode::CREATED);
    let have = wait_until("segment 5 complete on the revived origin", 20, || async {
        let o = objects(&b.streams().await, "d");
        (o.get("chunk-stream0-00005.m4s").map(|x| x.0.as_str()) == Some("complete")).then_some(o)
    })
    .await;
    assert_eq!(b.get("/live/d/init-stream0.m4s").await, (StatusCode::OK, b"ftyp moov".to_vec()), "kept init");
    assert_eq!(b.get(path5).await.1, b"five, first half; second half".to_vec());
    assert!(!have.contains_key("chunk-stream0-00001.m4s"), "skipped segments were sent: {have:?}");
    assert!(!have.contains_key("chunk-stream0-00002.m4s"), "skipped segments were sent: {have:?}");
    assert!(dead_up.metrics.resent_bytes.get() >= 9, "the kept init counts as re-sent");
    wait_until("the revived origin counted as up", 10, || async { dead_up.is_up().then_some(()) }).await;
    r.stop().await;
    a.stop().await;
}

/// An upload the encoder breaks off is broken at the origin too (its reader
/// gets an error, not a short segment); requests from a web page and bad
/// paths are refused at the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_uploads_stay_broken_and_pages_are_refused() {
    let a = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(5)).await;
    let r = start_relay(&["--origin", &format!("http://{}", a.http)]).await;
    let path = "/live/b/chunk-stream0-00001.m4s";
    let mut reader = a.client(Transport::H1Clear).await;
    let read = tokio::spawn(async move {
        let mut resp = reader.get(path).await.unwrap();
        let first = resp.chunk().await.unwrap().unwrap();
        let (_, err) = read_all(&mut resp).await;
        (first, err)
    });
    let mut raw = RawUpload::start(r.addr, path).await;
    raw.chunk(b"a first piece").await;
    wait_until("the first piece at the origin", 10, || async {
        a.origin.store().get("b", "chunk-stream0-00001.m4s").is_some_and(|o| o.len() == 13).then_some(())
    })
    .await;
    raw.kill();
    let (first, err) = read.await.unwrap();
    assert_eq!(&first[..], b"a first piece");
    assert!(err.is_some(), "the origin's reader must see the broken upload as an error");

    let mut c = Client::connect(Transport::H1Clear, r.addr, "localhost", &[]).await.unwrap();
    let mut up = c.upload(Method::PUT, "/live/b/x.m4s", &[("origin", "https://page.example")]).await.unwrap();
    let _ = up.send(Bytes::from_static(b"x")).await;
    assert_eq!(up.finish().await.unwrap().status, StatusCode::FORBIDDEN);
    let mut c = Client::connect(Transport::H1Clear, r.addr, "localhost", &[]).await.unwrap();
    assert_eq!(put(&mut c, "/live/b/%2e%2e", b"x").await, StatusCode::BAD_REQUEST);
    assert!(a.origin.store().get("b", "x.m4s").is_none());
    // A fresh connection: after a 400 to a PUT whose body it did not read, the
    // relay may close the one it answered on.
    let mut c = Client::connect(Transport::H1Clear, r.addr, "localhost", &[]).await.unwrap();
    let mut m = c.get("/metrics").await.unwrap();
    let text = String::from_utf8(m.bytes().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("h3live_relay_broken_uploads_total 1"), "{text}");
    r.stop().await;
    a.stop().await;
}

/// ffmpeg's last requests at exit (-remove_at_exit's DELETEs) arrive whole
/// and the socket closes at once: the relay still answers and forwards them.
#[tokio::test]
async fn a_whole_request_then_close_reaches_the_origin() {
    let a = TestOrigin::start().await;
    let r = start_relay(&["--origin", &format!("http://{}", a.http)]).await;
    for i in 0..3 {
        let file = format!("chunk-stream0-{:05}.m4s", i + 1);
        let path = format!("/live/gone/{file}");
        let put =
            format!("PUT {path} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let answer = whole_then_shutdown(r.addr, &put).await;
        assert!(answer.starts_with("HTTP/1.1 201"), "PUT {i}: {answer:?}");
        wait_until("the PUT at the origin", 10, || async {
            a.origin.store().get("gone", &file).is_some_and(|o| o.len() == 5).then_some(())
        })
        .await;
        let delete = format!("DELETE {path} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let answer = whole_then_shutdown(r.addr, &delete).await;
        assert!(answer.starts_with("HTTP/1.1 204"), "DELETE {i}: {answer:?}");
        wait_until("the DELETE at the origin", 10, || async {
            a.origin.store().get("gone", &file).is_none().then_some(())
        })
        .await;
    }
    r.stop().await;
    a.stop().await;
}
