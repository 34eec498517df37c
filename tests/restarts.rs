//! Encoder and origin restarts over real sockets: retention across a
//! numbering restart, a new encoder run, and the state directory that lets a
//! restarted origin serve the init segments ffmpeg will not send again.
//! (The same scenarios with real ffmpeg and Chromium: web/e2e/restart.js.)

mod common;

use common::{read_all, TestOrigin};
use h3live::transport::Transport;
use http::StatusCode;

async fn put(o: &TestOrigin, path: &str, body: &str) {
    let up = o.put(path).await;
    up.send(body.to_string()).await;
    assert!(up.finish().await.is_success(), "PUT {path}");
}

async fn get(o: &TestOrigin, path: &str) -> (StatusCode, Vec<u8>) {
    let mut r = o.client(Transport::H3).await.get(path).await.unwrap();
    let (body, err) = read_all(&mut r).await;
    assert!(err.is_none(), "GET {path}: {err:?}");
    (r.status, body)
}

/// ffmpeg restarted: segment numbers start at 1 again. The new run's segments
/// must be served (the old code kept the old run's higher numbers and evicted
/// the new ones as they completed), and the old run's are gone.
#[tokio::test]
async fn encoder_restart_keeps_the_new_runs_segments() {
    let o = TestOrigin::start_with(|c| c.store.keep_segments = 3).await;
    for run in ["a", "b"] {
        put(&o, "/live/r/init-stream0.m4s", &format!("init {run}")).await;
        let last = if run == "a" { 15 } else { 4 };
        for i in 1..=last {
            put(&o, &format!("/live/r/chunk-stream0-{i:05}.m4s"), &format!("{run}{i}")).await;
            put(&o, "/live/r/manifest.mpd", &format!("<MPD run {run}/>")).await;
        }
    }
    assert_eq!(get(&o, "/live/r/chunk-stream0-00004.m4s").await, (StatusCode::OK, b"b4".to_vec()));
    assert_eq!(get(&o, "/live/r/chunk-stream0-00002.m4s").await, (StatusCode::OK, b"b2".to_vec()));
    assert_eq!(get(&o, "/live/r/chunk-stream0-00015.m4s").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&o, "/live/r/manifest.mpd").await.1, b"<MPD run b/>".to_vec());
    assert_eq!(o.origin.store().snapshot()[0].run, 1);
    o.stop().await;
}

/// With --state-dir, init segments and the latest manifest survive an origin
/// restart; media segments do not; a DELETE (ffmpeg's clean exit) forgets them.
#[tokio::test]
async fn state_dir_restores_init_segments_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let with_state = |c: &mut h3live::server::ServerConfig| c.origin.state_dir = Some(state.clone());

    let a = TestOrigin::start_with(with_state).await;
    put(&a, "/live/s/init-stream0.m4s", "video init").await;
    put(&a, "/live/s/manifest.mpd", "<MPD 1/>").await;
    put(&a, "/live/s/manifest.mpd", "<MPD 2/>").await;
    put(&a, "/live/s/chunk-stream0-00001.m4s", "media").await;
    a.stop().await;

    let b = TestOrigin::start_with(with_state).await;
    assert_eq!(get(&b, "/live/s/init-stream0.m4s").await, (StatusCode::OK, b"video init".to_vec()));
    assert_eq!(get(&b, "/live/s/manifest.mpd").await, (StatusCode::OK, b"<MPD 2/>".to_vec()));
    assert_eq!(get(&b, "/live/s/chunk-stream0-00001.m4s").await.0, StatusCode::NOT_FOUND);
    // The restored init counts as sent in the running encoder run: media keeps flowing.
    put(&b, "/live/s/chunk-stream0-00002.m4s", "more").await;
    assert_eq!(b.origin.store().snapshot()[0].run, 0);
    let del = b.upload("DELETE", "/live/s/init-stream0.m4s", &[]).await;
    assert_eq!(del.finish().await, StatusCode::NO_CONTENT);
    b.stop().await;

    let c = TestOrigin::start_with(with_state).await;
    assert_eq!(get(&c, "/live/s/init-stream0.m4s").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&c, "/live/s/manifest.mpd").await.0, StatusCode::OK);
    c.stop().await;
}

/// An origin killed and started again with the same certificate key resets the
/// QUIC connections of the old process at their next packet (a stateless reset,
/// RFC 9000 §10.3), so a player reconnects at once. The old code drew its
/// connection-ID and reset keys at random per process: the restarted origin
/// dropped the old connection's packets as carrying invalid connection IDs and
/// sent nothing, and the client's request hung until its own timers gave up.
#[tokio::test]
async fn a_restarted_origin_resets_the_old_processes_quic_connections() {
    let certs = common::cert_dir();
    let roots = h3live::cert::load_certs(&certs.path().join("cert.pem")).unwrap();
    let mut o = common::OriginProc::start(certs.path(), &[]).await;
    let mut c = h3live::client::Client::connect(Transport::H3, o.addr, "localhost", &roots).await.unwrap();
    let mut r = c.get("/healthz").await.unwrap();
    let (_, err) = read_all(&mut r).await;
    assert!(r.status == StatusCode::OK && err.is_none(), "h3 GET /healthz before the restart: {} {err:?}", r.status);

    o.kill9();
    o.restart().await;
    // The guard only turns the old code's hang into a failure; the reset comes
    // with the first packet the client sends.
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut r = c.get("/healthz").await?;
        let (_, err) = read_all(&mut r).await;
        anyhow::Ok(err)
    })
    .await;
    let err = match got {
        Err(_) => panic!("the old connection got no reset it accepted within 20 s"),
        Ok(Ok(None)) => panic!("the old connection answered after the restart"),
        Ok(Ok(Some(e))) => e,
        Ok(Err(e)) => format!("{e:#}"),
    };
    assert!(err.contains("reset"), "expected a stateless reset, got: {err}");
}
