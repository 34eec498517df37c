//! The origin over real sockets on ephemeral ports: progressive delivery on
//! every transport, store semantics, and every refusal.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::{
    read_all, spawn_reader, wait_for, wait_readers, whole_then_reset, whole_then_shutdown, RawUpload, TestOrigin, ALL,
};
use h3live::transport::Transport;
use http::{Method, StatusCode};
use tokio::sync::mpsc;

/// A chunked PUT sending chunks 100 ms apart is read at the same time over
/// every transport: each reader gets each chunk before the next one is sent,
/// and every body is byte-identical to what was put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_arrive_progressively_on_every_transport() {
    let o = TestOrigin::start().await;
    let path = "/live/prog/chunk-stream0-00001.m4s";
    let up = o.put(path).await;
    let first = Bytes::from_static(b"styp-0000000000000000000");
    up.send(first.clone()).await;

    // One reader per transport, plus h2 and h1 via ALPN on the Alt-Svc listener.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, usize)>();
    let mut readers = Vec::new();
    let mut targets: Vec<(String, Transport, std::net::SocketAddr)> =
        ALL.iter().map(|&t| (t.to_string(), t, o.addr(t))).collect();
    targets.push(("https-alpn-h2".into(), Transport::H2, o.https));
    targets.push(("https-alpn-h1".into(), Transport::H1Tls, o.https));
    for (label, t, addr) in targets {
        let mut c = h3live::client::Client::connect(t, addr, "localhost", &o.roots).await.unwrap();
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let mut resp = c.get(path).await.unwrap();
            assert_eq!(resp.status, StatusCode::OK, "{label}");
            assert!(resp.header("content-length").is_none(), "{label}: growing object has no length");
            let mut body = Vec::new();
            while let Some(piece) = resp.chunk().await {
                body.extend_from_slice(&piece.unwrap_or_else(|e| panic!("{label}: {e:#}")));
                tx.send((label.clone(), body.len())).unwrap();
            }
            (label, body)
        }));
    }
    drop(tx);
    let n_readers = readers.len();

    let mut have: HashMap<String, usize> = HashMap::new();
    let mut expected = first.to_vec();
    wait_all(&mut have, &mut rx, n_readers, expected.len()).await;
    for i in 0..10u8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chunk = Bytes::from(vec![b'a' + i; 1000 + i as usize * 700]);
        expected.extend_from_slice(&chunk);
        up.send(chunk).await;
        wait_all(&mut have, &mut rx, n_readers, expected.len()).await;
    }
    assert_eq!(up.finish().await, StatusCode::CREATED);
    for r in readers {
        let (label, body) = r.await.unwrap();
        assert!(body == expected, "{label}: body differs ({} vs {} bytes)", body.len(), expected.len());
    }

    // The origin measured its own delay for every transport.
    let m = o.origin.metrics();
    for t in ALL {
        assert!(m.origin_delay(t).count() >= 10, "{t}: origin delay not recorded");
    }
    o.stop().await;
}

/// Wait until every reader has at least `want` bytes, or fail.
async fn wait_all(
    have: &mut HashMap<String, usize>,
    rx: &mut mpsc::UnboundedReceiver<(String, usize)>,
    n_readers: usize,
    want: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while have.values().filter(|&&n| n >= want).count() < n_readers {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((label, n))) => {
                have.insert(label, n);
            }
            _ => panic!("readers did not all receive {want} bytes before the next chunk: {have:?}"),
        }
    }
}

#[tokio::test]
async fn late_reader_gets_all_bytes_with_content_length() {
    let o = TestOrigin::start().await;
    let up = o.put("/live/late/seg-1.m4s").await;
    up.send("hello ").await;
    up.send("world").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    for t in ALL {
        let mut c = o.client(t).await;
        let mut r = c.get("/live/late/seg-1.m4s").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-length"), Some("11"), "{t}");
        assert_eq!(r.header("content-type"), Some("video/mp4"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=30"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r.header("access-control-expose-headers").unwrap().contains("Date"));
        assert!(r.header("date").is_some(), "{t}: Date header");
        assert_eq!(&r.bytes().await.unwrap()[..], b"hello world");
        // HEAD: same headers, no body.
        let mut r = c.request(Method::HEAD, "/live/late/seg-1.m4s").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-length"), Some("11"), "{t} HEAD");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // A replace answers 204.
    let up = o.put("/live/late/seg-1.m4s").await;
    up.send("x").await;
    assert_eq!(up.finish().await, StatusCode::NO_CONTENT);
    o.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_replace_is_atomic() {
    let o = TestOrigin::start().await;
    let path = "/live/atomic/manifest.mpd";
    let doc = |i: u8| format!("<MPD version=\"{i}\">{}</MPD>", (b'a' + i) as char).repeat(50);
    let up = o.put(path).await;
    up.send(doc(0)).await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    let valid: Vec<String> = (0..6).map(doc).collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for t in ALL {
        let mut c = o.client(t).await;
        let (stop, valid) = (stop.clone(), valid.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut r = c.get(path).await.unwrap();
                assert_eq!(r.status, StatusCode::OK);
                assert!(r.header("content-length").is_some(), "manifests are served complete");
                assert_eq!(r.header("content-type"), Some("application/dash+xml"));
                assert_eq!(r.header("cache-control"), Some("public, max-age=1"));
                let body = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
                assert!(valid.contains(&body), "{t}: partial manifest seen ({} bytes)", body.len());
                seen += 1;
            }
            seen
        }));
    }
    for i in 1..6u8 {
        let d = doc(i);
        let (a, b) = d.split_at(d.len() / 2);
        let up = o.put(path).await;
        up.send(a.to_string()).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        up.send(b.to_string()).await;
        assert_eq!(up.finish().await, StatusCode::NO_CONTENT);
    }
    // A broken replacement leaves the last good manifest in place: the
    // readers go on until the origin has seen it break.
    let mut raw = RawUpload::start(o.http, path).await;
    raw.chunk(b"<MPD broken").await;
    raw.kill();
    wait_for("the broken manifest upload to be aborted", || o.origin.metrics().aborted_uploads() == 1).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    let mut c = o.client(Transport::H3).await;
    let body = c.get(path).await.unwrap().bytes().await.unwrap();
    assert_eq!(body, doc(5));
    o.stop().await;
}

/// A GET for a segment whose upload has not started is held (the origin
/// counts it in `h3live_held_reads`) and answered when the upload starts;
/// one for a segment that never comes is a 404 after the hold time.
#[tokio::test]
async fn held_get_is_answered_when_upload_starts_and_404s_after_hold() {
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(5)).await;
    let mut readers = Vec::new();
    for t in ALL {
        let mut c = o.client(t).await;
        readers.push(tokio::spawn(async move {
            let mut r = c.get("/live/held/seg-5.m4s").await.unwrap();
            (t, r.status, r.bytes().await.unwrap())
        }));
    }
    // Every reader is held at the origin before the upload starts.
    wait_for("four held GETs", || o.origin.metrics().held_reads() == ALL.len() as i64).await;
    let metrics = o.client(Transport::H1Clear).await.get("/metrics").await.unwrap().bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&metrics).contains("\nh3live_held_reads 4\n"), "held reads not in /metrics");
    let up = o.put("/live/held/seg-5.m4s").await;
    up.send("early").await;
    up.send("-bird").await;
    up.finish().await;
    for r in readers {
        let (t, status, body) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(&body[..], b"early-bird", "{t}");
    }
    assert_eq!(o.origin.metrics().held_reads(), 0);
    o.stop().await;
    // A segment that never comes: 404 once the hold time (300 ms here) is over.
    let o = TestOrigin::start().await;
    for t in ALL {
        let mut c = o.client(t).await;
        let started = std::time::Instant::now();
        let r = c.get("/live/held/never.m4s").await.unwrap();
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{t}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{t}: 404 must not be cached");
        assert!(started.elapsed() >= Duration::from_millis(250), "{t}: 404 before the hold time");
    }
    assert_eq!(o.origin.metrics().held_reads(), 0);
    o.stop().await;
}

#[tokio::test]
async fn delete_removes_name_but_running_readers_finish() {
    let o = TestOrigin::start().await;
    let up = o.put("/live/del/seg-1.m4s").await;
    up.send("part1-").await;
    let mut c = o.client(Transport::H3).await;
    let mut r = c.get("/live/del/seg-1.m4s").await.unwrap();
    assert_eq!(&r.chunk().await.unwrap().unwrap()[..], b"part1-");

    let d = o.upload("DELETE", "/live/del/seg-1.m4s", &[]).await;
    assert_eq!(d.finish().await, StatusCode::NO_CONTENT);
    let mut c2 = o.client(Transport::H1Clear).await;
    assert_eq!(c2.get("/live/del/seg-1.m4s").await.unwrap().status, StatusCode::NOT_FOUND);

    up.send("part2").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    let (rest, err) = read_all(&mut r).await;
    assert_eq!(err, None);
    assert_eq!(&rest[..], b"part2");
    assert_eq!(o.upload("DELETE", "/live/del/seg-1.m4s", &[]).await.finish().await, StatusCode::NOT_FOUND);
    o.stop().await;
}

/// A request that arrived whole is applied even if the client closes at once
/// (shuts its side, or resets a connection with answers it never read), as
/// ffmpeg does with its last requests at exit (-remove_at_exit).
#[tokio::test]
async fn a_whole_request_is_applied_when_the_client_closes_at_once() {
    let o = TestOrigin::start().await;
    let addr = o.addr(Transport::H1Clear);
    for i in 0..5 {
        let path = format!("/ldash/gone/seg-{i}.m4s");
        let put =
            format!("PUT {path} HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let answer = whole_then_shutdown(addr, &put).await;
        assert!(answer.starts_with("HTTP/1.1 201"), "PUT {i}: {answer:?}");
        let mut c = o.client(Transport::H1Clear).await;
        let mut r = c.get(&path).await.unwrap();
        assert_eq!(read_all(&mut r).await, (b"hello".to_vec(), None), "PUT {i}");

        let delete = format!("DELETE {path} HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let answer = whole_then_shutdown(addr, &delete).await;
        assert!(answer.starts_with("HTTP/1.1 204"), "DELETE {i}: {answer:?}");
        assert_eq!(c.get(&path).await.unwrap().status, StatusCode::NOT_FOUND, "DELETE {i}");

        // The same DELETE, the connection reset right after it.
        let up = o.put(&path).await;
        assert_eq!(up.finish().await, StatusCode::CREATED);
        let answered = || o.origin.metrics().responses(Transport::H1Clear, 204);
        let before = answered();
        whole_then_reset(addr, &delete).await;
        wait_for("the reset DELETE to be answered", || answered() > before).await;
        assert_eq!(c.get(&path).await.unwrap().status, StatusCode::NOT_FOUND, "reset DELETE {i}");
    }
    o.stop().await;
}

/// ffmpeg at exit (-remove_at_exit) sends its last manifest on one
/// connection and the manifest's DELETE on another, right after: a DELETE
/// that completes while that manifest is still being uploaded wins. The
/// manifest used to be published when its upload ended, after the DELETE,
/// and the stream stayed on the origin (seen in the sources e2e).
#[tokio::test]
async fn a_delete_wins_over_the_manifest_upload_it_overtook() {
    let o = TestOrigin::start().await;
    let path = "/ldash/1234/manifest.mpd";
    let first = o.put(path).await;
    first.send("<MPD/>").await;
    assert_eq!(first.finish().await, StatusCode::CREATED);
    let last = o.put(path).await;
    let charged = o.origin.store().named_bytes();
    last.send("<MPD the last one/>").await;
    wait_for("the last manifest's first bytes at the origin", || o.origin.store().named_bytes() > charged).await;
    let delete = o.upload("DELETE", path, &[]).await;
    assert_eq!(delete.finish().await, StatusCode::NO_CONTENT);
    assert_eq!(last.finish().await, StatusCode::NO_CONTENT, "the upload itself went through (a replacement)");
    let mut c = o.client(Transport::H1Clear).await;
    assert_eq!(c.get(path).await.unwrap().status, StatusCode::NOT_FOUND, "the manifest came back after its DELETE");
    assert_eq!(o.origin.store().named_bytes(), 0);
    o.stop().await;
}

/// The preview's URLs: a PUT at `/ldash/<id>/...` is the stream `/live/<id>/...`
/// (read back over every transport under both prefixes, deleted through
/// `/ldash`), and `/ldashplay/<id>/manifest.mpd` redirects to the player page
/// for that stream.
#[tokio::test]
async fn ldash_paths_are_the_live_stream_and_ldashplay_opens_the_player() {
    let o = TestOrigin::start().await;
    let up = o.put("/ldash/1234/chunk-stream-0-00001.m4s").await;
    up.send("preview-bytes").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    for t in ALL {
        let mut c = o.client(t).await;
        for prefix in ["/live", "/ldash"] {
            let mut r = c.get(&format!("{prefix}/1234/chunk-stream-0-00001.m4s")).await.unwrap();
            assert_eq!(r.status, StatusCode::OK, "{t} {prefix}");
            assert_eq!(read_all(&mut r).await, (b"preview-bytes".to_vec(), None), "{t} {prefix}");
        }
    }
    let mut c = o.client(Transport::H1Clear).await;
    for (path, to) in [
        ("/ldashplay/1234/manifest.mpd", "/?stream=1234"),
        ("/ldashplay/1234/manifest.mpd?latency=2", "/?stream=1234&latency=2"),
        ("/ldashplay/1234/other.mpd", "/?stream=1234&mpd=/live/1234/other.mpd"),
    ] {
        let r = c.get(path).await.unwrap();
        assert_eq!((r.status, r.header("location")), (StatusCode::FOUND, Some(to)), "{path}");
    }
    assert_eq!(
        o.upload("DELETE", "/ldash/1234/chunk-stream-0-00001.m4s", &[]).await.finish().await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(c.get("/live/1234/chunk-stream-0-00001.m4s").await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(o.put("/ldashplay/1234/manifest.mpd").await.finish().await, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(c.get("/ldash/1234").await.unwrap().status, StatusCode::BAD_REQUEST);
    o.stop().await;
}

/// An upload that ends without its terminating chunk is an error for readers
/// on every transport, never a clean end of a truncated body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_upload_is_an_error_for_readers_on_every_transport() {
    let o = TestOrigin::start().await;
    let path = "/live/abort/chunk-stream0-00003.m4s";
    let mut raw = RawUpload::start(o.http, path).await;
    raw.chunk(b"first-bytes").await;
    let store = o.origin.store();
    wait_for("the first chunk in the store", || {
        store.get("abort", "chunk-stream0-00003.m4s").is_some_and(|ob| ob.len() == 11)
    })
    .await;
    // Every reader has the first bytes before the upload breaks.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for (id, t) in ALL.into_iter().enumerate() {
        readers.push((t, spawn_reader(o.client(t).await, path.to_string(), id, tx.clone())));
    }
    wait_readers(&mut [0; ALL.len()], &mut rx, 11, "first bytes before the abort").await;
    raw.kill();
    for (t, r) in readers {
        let (status, body, err) = tokio::time::timeout(Duration::from_secs(5), r).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(&body[..], b"first-bytes", "{t}");
        assert!(err.is_some(), "{t}: aborted upload ended as a clean body");
    }
    // Later readers are told plainly, with an uncacheable error.
    let mut c = o.client(Transport::H2).await;
    let r = c.get(path).await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let metrics = o.client(Transport::H1Clear).await.get("/metrics").await.unwrap().bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&metrics).contains("h3live_aborted_uploads_total 1"));
    o.stop().await;
}

#[tokio::test]
async fn bad_names_are_400() {
    let o = TestOrigin::start().await;
    let bad = [
        "/live/s/..",
        "/live/s/%2e%2e",
        "/live/%2e%2e/x.m4s",
        "/live/s/a%2fb.m4s",
        "/live/s/a%2Fb.m4s",
        "/live/s/.hidden",
        "/live/s/a%20b",
        "/live/s",
        "/live/a/b/c.m4s",
    ];
    for p in bad {
        assert_eq!(o.upload("PUT", p, &[]).await.early_status().await, StatusCode::BAD_REQUEST, "PUT {p}");
        for t in ALL {
            let r = o.client(t).await.get(p).await.unwrap();
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "GET {p} over {t}");
        }
    }
    let long = format!("/live/s/{}", "a".repeat(129));
    assert_eq!(o.upload("PUT", &long, &[]).await.early_status().await, StatusCode::BAD_REQUEST);
    // Nothing outside /live/ is writable; static files cannot escape web/.
    assert_eq!(o.upload("PUT", "/index.html", &[]).await.early_status().await, StatusCode::METHOD_NOT_ALLOWED);
    let r = o.client(Transport::H1Clear).await.get("/%2e%2e/Cargo.toml").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    o.stop().await;
}

#[tokio::test]
async fn ingest_only_on_the_ingest_listener() {
    let o = TestOrigin::start().await;
    for t in [Transport::H1Tls, Transport::H2, Transport::H3] {
        for m in [Method::PUT, Method::POST, Method::DELETE] {
            let r = o.client(t).await.request(m.clone(), "/live/s/seg-1.m4s").await.unwrap();
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} over {t}");
            assert!(r.header("allow").unwrap().contains("GET"));
        }
    }
    // POST is ingest too.
    let up = o.upload("POST", "/live/s/seg-2.m4s", &[]).await;
    up.send("x").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    assert!(o.origin.store().get("s", "seg-1.m4s").is_none());
    o.stop().await;
}

#[tokio::test]
async fn ingest_token() {
    use base64::Engine as _;
    let o = TestOrigin::start_with(|c| c.origin.ingest_token = Some("s3cret".into())).await;
    let up = o.put("/live/t/seg-1.m4s").await;
    assert_eq!(up.early_status().await, StatusCode::UNAUTHORIZED);
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ffmpeg:nope"));
    assert_eq!(
        o.upload("PUT", "/live/t/seg-1.m4s", &[("authorization", &wrong)]).await.early_status().await,
        StatusCode::UNAUTHORIZED
    );
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ffmpeg:s3cret"));
    let up = o.upload("PUT", "/live/t/seg-1.m4s", &[("authorization", &basic)]).await;
    up.send("ok").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    let up = o.upload("PUT", "/live/t/seg-2.m4s", &[("authorization", "Bearer s3cret")]).await;
    up.send("ok").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    // Reads need no token.
    assert_eq!(o.client(Transport::H3).await.get("/live/t/seg-1.m4s").await.unwrap().status, StatusCode::OK);
    o.stop().await;
}

#[tokio::test]
async fn size_limits_413_and_full_store_503() {
    let o = TestOrigin::start_with(|c| {
        c.store.max_object_bytes = 1000;
        c.store.max_store_bytes = 2000;
    })
    .await;
    // Announced too large.
    let up = o.upload("PUT", "/live/l/seg-1.m4s", &[("content-length", "5000")]).await;
    assert_eq!(up.early_status().await, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked, grows too large: 413, and readers of it see an error.
    let up = o.put("/live/l/seg-2.m4s").await;
    up.send(vec![1u8; 600]).await;
    let mut c = o.client(Transport::H2).await;
    let mut r = c.get("/live/l/seg-2.m4s").await.unwrap();
    up.send(vec![2u8; 600]).await;
    assert_eq!(up.early_status().await, StatusCode::PAYLOAD_TOO_LARGE);
    let (body, err) = read_all(&mut r).await;
    assert_eq!(body.len(), 600);
    assert!(err.is_some(), "oversized upload ended cleanly for a reader");
    // Fill the store: 600 (the aborted object keeps its name, so later readers get 502) + 900 + 308,
    // plus 64 bytes of overhead per stored chunk = 2000.
    for (name, n) in [("seg-3.m4s", 900), ("seg-4.m4s", 308)] {
        let up = o.put(&format!("/live/l/{name}")).await;
        up.send(vec![0u8; n]).await;
        assert_eq!(up.finish().await, StatusCode::CREATED);
    }
    let up = o.put("/live/l/seg-5.m4s").await;
    assert_eq!(up.early_status().await, StatusCode::SERVICE_UNAVAILABLE);
    // Freeing space lets ingest continue.
    assert_eq!(o.upload("DELETE", "/live/l/seg-3.m4s", &[]).await.finish().await, StatusCode::NO_CONTENT);
    let up = o.put("/live/l/seg-5.m4s").await;
    up.send("ok").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    o.stop().await;
}

#[tokio::test]
async fn cors_preflight_time_alt_svc_streams_metrics() {
    let o = TestOrigin::start().await;
    for t in ALL {
        let mut c = o.client(t).await;
        let r = c.request(Method::OPTIONS, "/live/s/manifest.mpd").await.unwrap();
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{t}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r.header("access-control-allow-methods").unwrap().contains("GET"));
        assert!(r.header("access-control-max-age").is_some());

        let mut r = c.get("/time").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let body = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
        // e.g. 2026-11-23T23:24:21.071Z
        let b = body.as_bytes();
        assert_eq!(body.len(), 24, "{body:?}");
        assert!(
            b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T'
                && b[13] == b':'
                && b[16] == b':'
                && b[19] == b'.'
                && b[23] == b'Z',
            "{body:?}"
        );
        let t_ms = humantime::parse_rfc3339(&body).unwrap();
        let skew = std::time::SystemTime::now().duration_since(t_ms).unwrap_or_default();
        assert!(skew < Duration::from_secs(2));
    }
    // Alt-Svc only on the discovery listener.
    let r = h3live::client::Client::connect(Transport::H2, o.https, "localhost", &o.roots)
        .await
        .unwrap()
        .get("/time")
        .await
        .unwrap();
    assert_eq!(r.header("alt-svc"), Some(format!("h3=\":{}\"; ma=86400", o.h3.port()).as_str()));
    for t in ALL {
        assert!(o.client(t).await.get("/time").await.unwrap().header("alt-svc").is_none(), "{t}");
    }

    let up = o.put("/live/list/seg-1.m4s").await;
    up.send("abc").await;
    up.finish().await;
    let mut r = o.client(Transport::H1Clear).await.get("/streams").await.unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["streams"][0]["name"], "list");
    assert_eq!(v["streams"][0]["objects"][0]["name"], "seg-1.m4s");
    assert_eq!(v["streams"][0]["objects"][0]["bytes"], 3);
    assert_eq!(v["streams"][0]["objects"][0]["state"], "complete");

    let mut r = o.client(Transport::H1Clear).await.get("/metrics").await.unwrap();
    let m = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
    for needle in [
        "h3live_ingest_bytes_total{stream=\"list\"} 3",
        "h3live_ingest_chunks_total{stream=\"list\"} 1",
        &format!("h3live_store_bytes {}", 3 + h3live::store::CHUNK_OVERHEAD),
        "h3live_active_readers{transport=\"h3\"}",
        "h3live_responses_total{transport=\"h3\",status=\"200\"}",
        "h3live_origin_delay_seconds_bucket{transport=\"h2\",le=\"+Inf\"}",
        "h3live_aborted_uploads_total 0",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
    assert_eq!(o.client(Transport::H2).await.get("/healthz").await.unwrap().status, StatusCode::OK);
    o.stop().await;
}

#[tokio::test]
async fn retention_bounds_memory_and_keeps_init_segments() {
    let o = TestOrigin::start_with(|c| c.store.keep_segments = 3).await;
    for name in ["init-stream0.m4s", "init-stream1.m4s"] {
        let up = o.put(&format!("/live/r/{name}")).await;
        up.send(vec![7u8; 500]).await;
        up.finish().await;
    }
    for i in 1..=40 {
        for track in 0..2 {
            let up = o.put(&format!("/live/r/chunk-stream{track}-{i:05}.m4s")).await;
            up.send(vec![1u8; 10_000]).await;
            up.finish().await;
        }
    }
    let store = o.origin.store();
    let overhead = h3live::store::CHUNK_OVERHEAD;
    // A 10 kB body may arrive in a few reads, each a stored chunk.
    let bound = 2 * (500 + 4 * overhead) + 2 * 3 * (10_000 + 4 * overhead);
    assert!(store.named_bytes() <= bound, "store holds {}", store.named_bytes());
    assert!(store.get("r", "init-stream0.m4s").is_some());
    assert!(store.get("r", "init-stream1.m4s").is_some());
    assert!(store.get("r", "chunk-stream0-00040.m4s").is_some());
    assert!(store.get("r", "chunk-stream1-00038.m4s").is_some());
    assert!(store.get("r", "chunk-stream0-00037.m4s").is_none());
    let r = o.client(Transport::H3).await.get("/live/r/chunk-stream0-00001.m4s").await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    o.stop().await;
}

#[tokio::test]
async fn idle_streams_are_dropped() {
    let o = TestOrigin::start_with(|c| c.store.stream_idle_timeout = Duration::from_millis(500)).await;
    let kept = std::time::Instant::now();
    let up = o.put("/live/idle/init-stream0.m4s").await;
    up.send("x").await;
    up.finish().await;
    assert!(o.origin.store().get("idle", "init-stream0.m4s").is_some());
    wait_for("the idle stream to be dropped", || o.origin.store().get("idle", "init-stream0.m4s").is_none()).await;
    assert!(kept.elapsed() >= Duration::from_millis(490), "dropped before its idle timeout: {:?}", kept.elapsed());
    o.stop().await;
}

#[tokio::test]
async fn static_files_from_web_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>hi</p>").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/app.js"), "1;").unwrap();
    std::fs::write(dir.path().join(".secret"), "no").unwrap();
    let web = dir.path().to_path_buf();
    let o = TestOrigin::start_with(move |c| c.origin.web_dir = web).await;
    let mut c = o.client(Transport::H3).await;
    let mut r = c.get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(&r.bytes().await.unwrap()[..], b"<p>hi</p>");
    let mut r = c.get("/sub/app.js").await.unwrap();
    assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(&r.bytes().await.unwrap()[..], b"1;");
    assert_eq!(c.get("/sub/").await.unwrap().status, StatusCode::NOT_FOUND, "no directory listing");
    assert_eq!(c.get("/.secret").await.unwrap().status, StatusCode::BAD_REQUEST);
    assert_eq!(c.get("/missing.js").await.unwrap().status, StatusCode::NOT_FOUND);
    o.stop().await;
}

/// A static file that exists but cannot be read (here a symlink loop) is a
/// server error (500), not a 404; a symlink out of the web directory stays 404.
#[tokio::test]
async fn static_file_io_errors_are_500_not_404() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir(&web).unwrap();
    std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), web.join("out.txt")).unwrap();
    std::os::unix::fs::symlink(web.join("b.js"), web.join("a.js")).unwrap();
    std::os::unix::fs::symlink(web.join("a.js"), web.join("b.js")).unwrap();
    let o = TestOrigin::start_with(move |c| c.origin.web_dir = web).await;
    let mut c = o.client(Transport::H1Clear).await;
    assert_eq!(c.get("/a.js").await.unwrap().status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(c.get("/out.txt").await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(c.get("/file.js/x").await.unwrap().status, StatusCode::NOT_FOUND);
    o.stop().await;
}

/// An upload the origin refuses before reading its body (an invalid name):
/// the client's `send` fails once the answer is in, and `finish` still
/// returns that answer (it used to poll the finished response task again and
/// panic).
#[tokio::test]
async fn an_upload_refused_before_its_body_reports_the_status() {
    let o = TestOrigin::start().await;
    let mut c = o.client(Transport::H1Clear).await;
    let mut up = c.upload(Method::PUT, "/live/b/%2e%2e", &[]).await.unwrap();
    let mut sent = 0;
    while up.send(Bytes::from(vec![0u8; 64 << 10])).await.is_ok() {
        sent += 1;
        assert!(sent < 10_000, "the origin kept reading the body of a refused upload");
    }
    assert_eq!(up.finish().await.unwrap().status, StatusCode::BAD_REQUEST);
    o.stop().await;
}
