//! An independent HTTP/3 implementation (aioquic, from PyPI) reads a live
//! segment from the origin while it is being uploaded.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::TestOrigin;
use ring::digest;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_reads_a_live_segment_progressively() {
    let py = common::aioquic_python();
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(5)).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/h3_get.py");
    let url = format!("https://127.0.0.1:{}/live/aq/chunk-stream0-00001.m4s", o.h3.port());
    let mut child = tokio::process::Command::new(py)
        .arg(script)
        .arg(&url)
        .arg("--ca")
        .arg(&o.cert_pem)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // The client asks first (a held request), then the upload starts.
    let sent = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("client exited");
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["event"], "sent", "{sent}");
    common::wait_for("the aioquic request held at the origin", || o.origin.metrics().held_reads() == 1).await;
    let up = o.put("/live/aq/chunk-stream0-00001.m4s").await;
    let mut expected = Vec::new();
    let mut events = Vec::new();
    for i in 0..10u8 {
        let chunk = vec![i; 3000];
        expected.extend_from_slice(&chunk);
        up.send(chunk).await;
        if i == 0 {
            // Progressive: the client reads the first bytes while the rest of
            // the upload has not been sent yet.
            loop {
                let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                    .await
                    .expect("no data from aioquic while the upload runs")
                    .unwrap()
                    .expect("client exited");
                let e: serde_json::Value = serde_json::from_str(&line).unwrap();
                let data = e["event"] == "data";
                events.push(e);
                if data {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(up.finish().await, http::StatusCode::CREATED);

    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap() {
        events.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "aioquic client failed: {events:?}");
    assert_eq!(events[0]["event"], "headers");
    assert_eq!(events[0]["status"], 200);
    let data: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "data").collect();
    assert!(data.len() >= 5, "only {} data events", data.len());
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["bytes"], expected.len());
    let sha: String = digest::digest(&digest::SHA256, &expected).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(end["sha256"], sha, "aioquic got different bytes");
    o.stop().await;
}
