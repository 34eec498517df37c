//! `Range` requests on live objects over real sockets, on every transport:
//! ranges inside what has arrived, ranges reaching past it (delivered as
//! ingest brings the bytes), open ranges on a growing object, the usual
//! answers once it is finished (206 with the length, 416, suffix ranges) and
//! `ETag`/`If-None-Match`.

mod common;

use std::time::Duration;

use common::{read_all, wait_for, TestOrigin, ALL};
use h3live::core::range::LIVE_END;
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_on_growing_and_finished_objects_on_every_transport() {
    let o = TestOrigin::start().await;
    for t in ALL {
        let path = format!("/live/range-{}/chunk-stream0-00001.m4s", t.as_str());
        let up = o.put(&path).await;
        up.send("0123456789").await;
        let mut c = o.client(t).await;
        // Wait until the first piece is in (the PUT is asynchronous).
        let stream = format!("range-{}", t.as_str());
        wait_for("the first piece in the store", || {
            o.origin.store().get(&stream, "chunk-stream0-00001.m4s").is_some_and(|ob| ob.len() == 10)
        })
        .await;

        // Inside what has arrived, while growing: 206, total unknown.
        let mut r = c.request_with(Method::GET, &path, &[("range", "bytes=2-5")]).await.unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{t}");
        assert_eq!(r.header("content-range"), Some("bytes 2-5/*"), "{t}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{t}");
        assert_eq!(&r.bytes().await.unwrap()[..], b"2345", "{t}");

        // Reaching past what has arrived: the first bytes come at once, the
        // rest when ingest brings them, and the response ends at byte 14.
        let mut past = o.client(t).await;
        let mut r = past.request_with(Method::GET, &path, &[("range", "bytes=8-14")]).await.unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{t}");
        assert_eq!(r.header("content-range"), Some("bytes 8-14/*"), "{t}");
        assert!(r.header("content-length").is_none(), "{t}: growing, length unknown");
        let first = tokio::time::timeout(Duration::from_secs(5), r.chunk()).await.expect("first bytes").unwrap();
        assert_eq!(&first.unwrap()[..], b"89", "{t}: bytes already there come at once");
        let ranged = tokio::spawn(async move { read_all(&mut r).await });

        // Open range starting beyond what has arrived: streamed to the end.
        let mut open = o.client(t).await;
        let mut r = open.request_with(Method::GET, &path, &[("range", "bytes=15-")]).await.unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{t}");
        assert_eq!(r.header("content-range"), Some(format!("bytes 15-{LIVE_END}/*").as_str()), "{t}");
        let open_task = tokio::spawn(async move { read_all(&mut r).await });

        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ranged.is_finished(), "{t}: the range waits for bytes 10-14");
        up.send("abcdefghij").await;
        let (rest, err) = tokio::time::timeout(Duration::from_secs(5), ranged).await.expect("range done").unwrap();
        assert_eq!((&rest[..], err), (&b"abcde"[..], None), "{t}: range ends at byte 14 while the object grows");
        up.send("KLMNO").await;
        assert_eq!(up.finish().await, StatusCode::CREATED);
        let (tail, err) = tokio::time::timeout(Duration::from_secs(5), open_task).await.expect("open range").unwrap();
        assert_eq!((&tail[..], err), (&b"fghijKLMNO"[..], None), "{t}: open range streamed to the end");

        // Finished (25 bytes): ordinary answers with the length.
        let mut r = c.request_with(Method::GET, &path, &[("range", "bytes=3-6")]).await.unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{t}");
        assert_eq!(r.header("content-range"), Some("bytes 3-6/25"), "{t}");
        assert_eq!(r.header("content-length"), Some("4"), "{t}");
        assert_eq!(&r.bytes().await.unwrap()[..], b"3456", "{t}");
        let mut r = c.request_with(Method::GET, &path, &[("range", "bytes=-3")]).await.unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{t}");
        assert_eq!(&r.bytes().await.unwrap()[..], b"MNO", "{t}");
        let mut r = c.request_with(Method::GET, &path, &[("range", "bytes=25-")]).await.unwrap();
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{t}");
        assert_eq!(r.header("content-range"), Some("bytes */25"), "{t}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{t}");
        let _ = r.bytes().await;

        // ETag on the finished object; If-None-Match gives 304.
        let mut r = c.get(&path).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let etag = r.header("etag").expect("finished object has an ETag").to_string();
        let _ = r.bytes().await;
        let mut r = c.request_with(Method::GET, &path, &[("if-none-match", &etag)]).await.unwrap();
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{t}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    o.stop().await;
}

/// A start past the largest object ingest accepts can never be satisfied.
#[tokio::test]
async fn range_beyond_the_object_limit_is_416_while_growing() {
    let o = TestOrigin::start().await;
    let up = o.put("/live/r416/c-1.m4s").await;
    up.send("x").await;
    wait_for("the first byte in the store", || o.origin.store().get("r416", "c-1.m4s").is_some_and(|ob| ob.len() == 1))
        .await;
    let mut c = o.client(h3live::transport::Transport::H3).await;
    let far = format!("bytes={}-", 1u64 << 40);
    let r = c.request_with(Method::GET, "/live/r416/c-1.m4s", &[("range", &far)]).await.unwrap();
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), Some("bytes */*"));
    drop(up);
    o.stop().await;
}
