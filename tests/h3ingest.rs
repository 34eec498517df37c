//! Ingest over HTTP/3 (`--h3-ingest`): the same core path as HTTP/1.1
//! ingest, so an upload is served progressively on every transport, and the
//! same rules apply (token, Origin, size, broken bodies). Uploaded with the
//! project's client and with an independent one (aioquic).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{read_all, TestOrigin, ALL};
use h3live::client::Client;
use h3live::transport::Transport;
use http::{Method, StatusCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Readers of `path` on every transport, each reporting its byte count after
/// every piece it receives; they return their bodies.
async fn readers(
    o: &TestOrigin,
    path: &'static str,
) -> (Vec<tokio::task::JoinHandle<(Transport, Vec<u8>)>>, mpsc::UnboundedReceiver<(Transport, usize)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for t in ALL {
        let mut c = o.client(t).await;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut resp = c.get(path).await.unwrap();
            assert_eq!(resp.status, StatusCode::OK, "{t}");
            let mut body = Vec::new();
            while let Some(piece) = resp.chunk().await {
                body.extend_from_slice(&piece.unwrap_or_else(|e| panic!("{t}: {e:#}")));
                tx.send((t, body.len())).unwrap();
            }
            (t, body)
        }));
    }
    (tasks, rx)
}

/// Wait until every transport's reader has `want` bytes.
async fn all_have(have: &mut [usize; 4], rx: &mut mpsc::UnboundedReceiver<(Transport, usize)>, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while have.iter().any(|&n| n < want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((t, n))) => have[t.index()] = n,
            _ => panic!("readers did not all get {want} bytes: {have:?}"),
        }
    }
}

/// An upload over h3 reaches readers on every transport piece by piece:
/// each piece is read everywhere before the next one is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h3_upload_is_served_live_on_every_transport() {
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(5)).await;
    let path = "/live/h3i/chunk-stream0-00001.m4s";
    let (tasks, mut rx) = readers(&o, path).await;
    let mut up = Client::connect(Transport::H3, o.h3_ingest, "localhost", &o.roots).await.unwrap();
    let mut upload = up.upload(Method::PUT, path, &[]).await.unwrap();
    let mut expected = Vec::new();
    let mut have = [0usize; 4];
    for i in 0..8u8 {
        let piece = Bytes::from(vec![i; 500 + 900 * i as usize]);
        expected.extend_from_slice(&piece);
        upload.send(piece).await.unwrap();
        all_have(&mut have, &mut rx, expected.len()).await;
    }
    let mut resp = upload.finish().await.unwrap();
    assert_eq!(resp.status, StatusCode::CREATED);
    let _ = resp.bytes().await;
    for task in tasks {
        let (t, body) = task.await.unwrap();
        assert!(body == expected, "{t}: {} bytes, expected {}", body.len(), expected.len());
    }
    // The same connection takes the next request (a replace: 204) and a DELETE.
    let mut upload = up.upload(Method::PUT, path, &[]).await.unwrap();
    upload.send(Bytes::from_static(b"again")).await.unwrap();
    assert_eq!(upload.finish().await.unwrap().status, StatusCode::NO_CONTENT);
    assert_eq!(up.request(Method::DELETE, path).await.unwrap().status, StatusCode::NO_CONTENT);
    o.stop().await;
}

/// h3 ingest answers to the rules of the cleartext ingest: the token, the
/// browser Origin rule, the object size cap; a broken body is an error to
/// readers; the public h3 listener takes no ingest at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_ingest_keeps_the_ingest_rules() {
    let o = TestOrigin::start_with(|c| {
        c.origin.ingest_token = Some("s3cret".into());
        c.store.max_object_bytes = 10_000;
    })
    .await;
    let mut c = Client::connect(Transport::H3, o.h3_ingest, "localhost", &o.roots).await.unwrap();
    let auth = ("authorization", "Bearer s3cret");
    let put = |c: &mut Client, path: &'static str, headers: Vec<(&'static str, &'static str)>, n: usize| {
        let mut c = c.share().unwrap();
        async move {
            let mut up = c.upload(Method::PUT, path, &headers).await.unwrap();
            // The origin may refuse before the body ends: then sending fails.
            if up.send(Bytes::from(vec![1u8; n])).await.is_err() {
                return None;
            }
            up.finish().await.ok().map(|r| r.status)
        }
    };
    assert_eq!(put(&mut c, "/live/r/a.m4s", vec![], 10).await, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(
        put(&mut c, "/live/r/a.m4s", vec![auth, ("origin", "https://evil.example")], 10).await,
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(put(&mut c, "/live/r/a.m4s", vec![auth], 10).await, Some(StatusCode::CREATED));
    assert_eq!(
        put(&mut c, "/live/r/big.m4s", vec![auth], 20_000).await.unwrap_or(StatusCode::PAYLOAD_TOO_LARGE),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(put(&mut c, "/live/r/../x", vec![auth], 1).await, Some(StatusCode::BAD_REQUEST));

    // The public h3 listener: 405, nothing stored.
    let mut public = o.client(Transport::H3).await;
    let mut up = public.upload(Method::PUT, "/live/r/b.m4s", &[auth]).await.unwrap();
    let _ = up.send(Bytes::from_static(b"x")).await;
    assert_eq!(up.finish().await.unwrap().status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(o.origin.store().get("r", "b.m4s").is_none());

    // A body broken mid-way (stream reset): the reader sees an error, not a
    // clean short body, and later requests get 502.
    let path = "/live/r/chunk-stream0-00002.m4s";
    let mut up = c.upload(Method::PUT, path, &[auth]).await.unwrap();
    up.send(Bytes::from_static(b"first piece")).await.unwrap();
    let mut reader = o.client(Transport::H1Clear).await;
    let mut r = reader.get(path).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.chunk().await.unwrap().unwrap()[..], b"first piece");
    up.abort().await;
    let (rest, err) = read_all(&mut r).await;
    assert!(err.is_some(), "a reset upload must end the reader in an error, got {} more bytes cleanly", rest.len());
    let r = o.client(Transport::H3).await.get(path).await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    o.stop().await;
}

/// aioquic PUTs a segment in pieces 150 ms apart over h3; a reader on the
/// cleartext listener gets the first bytes long before the upload ends, and
/// the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_uploads_over_h3_progressively() {
    let py = common::aioquic_python();
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(10)).await;
    let path = "/live/aq/chunk-stream0-00001.m4s";
    let mut reader = o.client(Transport::H1Clear).await;
    let read = tokio::spawn(async move {
        let mut r = reader.get(path).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let first = r.chunk().await.unwrap().unwrap();
        let first_at = std::time::SystemTime::now();
        let mut body = first.to_vec();
        let (rest, err) = read_all(&mut r).await;
        assert!(err.is_none(), "{err:?}");
        body.extend_from_slice(&rest);
        (first_at, body)
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/h3_get.py");
    let url = format!("https://127.0.0.1:{}{path}", o.h3_ingest.port());
    let out = tokio::process::Command::new(py)
        .arg(script)
        .arg(&url)
        .arg("--ca")
        .arg(&o.cert_pem)
        .args(["--put", "--pieces", "10", "--size", "3000", "--interval", "150"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(out.stdout.unwrap()).lines();
    let mut events = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap() {
        events.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let end = events.last().expect("no output from the aioquic uploader");
    assert_eq!(end["event"], "response", "{events:?}");
    assert_eq!(end["status"], 201);
    let last_piece = events.iter().rev().find(|e| e["event"] == "piece").unwrap()["t"].as_f64().unwrap();
    let (first_at, body) = read.await.unwrap();
    let first_at = first_at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(
        first_at < last_piece - 1.0,
        "first bytes {:.3} s before the last piece: not progressive",
        last_piece - first_at
    );
    assert_eq!(body.len() as u64, end["bytes"].as_u64().unwrap());
    let sha: String =
        ring::digest::digest(&ring::digest::SHA256, &body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(end["sha256"], sha, "the reader got other bytes than aioquic sent");
    o.stop().await;
}
