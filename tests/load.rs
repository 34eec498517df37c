//! The load tool against a real origin: a synthetic capture is replayed into
//! the ingest at real-time pace while a few viewers per transport follow the
//! live edge; each run must have measured something sane. No performance
//! assertions: the numbers are quoted by scripts/bench.sh, not tested.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestOrigin;
use h3live::load::capture::{synthesize, Capture, SynthOptions};
use h3live::load::replay::{self, PrftMode, ReplayStats};
use h3live::load::Report;
use h3live::transport::Transport;
use tokio_util::sync::CancellationToken;

const VIEWERS: usize = 3;

fn synth(dir: &std::path::Path, secs: u64) {
    let opts = SynthOptions {
        duration: Duration::from_secs(secs),
        segment: Duration::from_secs(1),
        video_bitrate: 500_000,
        fps: 30,
    };
    synthesize(dir, &opts).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_on_every_transport_measure_latency_of_a_replayed_stream() {
    let o = TestOrigin::start().await;
    let capture = tempfile::tempdir().unwrap();
    synth(capture.path(), 4);
    let plan = replay::load_plan(capture.path()).unwrap();
    let (stop, stats) = (CancellationToken::new(), Arc::new(ReplayStats::default()));
    let replay = tokio::spawn(replay::run(plan, o.http, "t", PrftMode::Push, None, stop.clone(), stats.clone()));

    let mut runs = Vec::new();
    for t in Transport::ALL {
        let cmd = common::load_cmd(t.as_str(), o.addr(t), &o.cert_pem, VIEWERS, "4s");
        runs.push(tokio::spawn(h3live::load::run(cmd.viewers, CancellationToken::new())));
    }
    let mut reports: Vec<Report> = Vec::new();
    for r in runs {
        reports.push(r.await.unwrap().unwrap());
    }
    stop.cancel();
    replay.await.unwrap().unwrap();
    assert_eq!(stats.errors.load(std::sync::atomic::Ordering::Relaxed), 0, "replay errors");

    for (t, r) in Transport::ALL.iter().zip(&reports) {
        let summary = r.summary();
        assert_eq!(r.transport, t.as_str());
        assert_eq!(r.errors, 0, "{summary}");
        assert_eq!(r.connected, VIEWERS as u64, "{summary}");
        assert!(r.bytes > 100_000, "{summary}");
        assert!(r.segments >= VIEWERS as u64 * 2, "{summary}");
        assert!(r.per_viewer.iter().all(|v| v.bytes > 0 && v.fragments > 0), "{summary}");
        let l = &r.latency;
        assert!(l.count > 0, "no latency samples: {summary}");
        assert!(l.p50_ms > 0.0 && l.max_ms < 10_000.0, "{summary}");
        assert!(l.p50_ms <= l.p95_ms && l.p95_ms <= l.p99_ms && l.p99_ms <= l.max_ms, "{summary}");
        // The origin saw this transport deliver live chunks.
        assert!(o.origin.metrics().origin_delay(*t).count() > 0, "{t}: no origin-delay samples");
    }
    o.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_recorded_by_the_recorder_replays_again() {
    let synthetic = tempfile::tempdir().unwrap();
    synth(synthetic.path(), 2);
    let recorded = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec_stop = CancellationToken::new();
    let out = recorded.path().to_path_buf();
    let recorder = tokio::spawn({
        let stop = rec_stop.clone();
        async move { h3live::load::record::serve(listener, &out, stop).await }
    });
    let plan = replay::load_plan(synthetic.path()).unwrap();
    let stats = Arc::new(ReplayStats::default());
    // One loop (2 s) plus a little: every request of the first loop completes.
    replay::run(
        plan,
        addr,
        "t",
        PrftMode::Shift,
        Some(Duration::from_millis(2300)),
        CancellationToken::new(),
        stats.clone(),
    )
    .await
    .unwrap();
    rec_stop.cancel();
    recorder.await.unwrap().unwrap();

    let original = Capture::load(synthetic.path()).unwrap();
    let copy = Capture::load(recorded.path()).unwrap();
    let complete =
        |c: &Capture, f: &str| c.requests.iter().find(|r| r.file == f && r.end.is_some()).map(|r| r.body.clone());
    for f in ["init-stream0.m4s", "init-stream1.m4s"] {
        assert_eq!(complete(&copy, f), complete(&original, f), "{f}");
    }
    let seg = complete(&copy, "chunk-stream0-00001.m4s").expect("segment 1 recorded");
    assert_eq!(seg.len(), complete(&original, "chunk-stream0-00001.m4s").unwrap().len());
    let r = copy.requests.iter().find(|r| r.file == "chunk-stream0-00001.m4s").unwrap();
    // Recorded at the pace it was pushed: one chunk per 1/30 s fragment.
    assert!(r.chunks.len() > 20, "{} chunks", r.chunks.len());
    let span = r.chunks.last().unwrap().0 - r.chunks.first().unwrap().0;
    assert!(span > Duration::from_millis(800) && span < Duration::from_millis(1500), "{span:?}");
    // And the copy is itself a replayable capture.
    replay::Plan::new(copy).unwrap();
}
