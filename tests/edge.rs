//! The edge tier with a real Varnish (`deploy/varnish/h3live.vcl`) in front of
//! a real origin, and `h3live front` (HTTP/3, HTTP/2, HTTP/1.1+TLS) in front
//! of that Varnish: one origin fetch per segment however many viewers, bytes
//! identical, growing segments streamed, and nothing broken ever cached.
//! Needs `varnishd` (Debian package `varnish`; scripts/test.sh installs it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{read_all, spawn_reader, wait_readers, RawUpload, TestOrigin};
use h3live::cert::{self, CertPaths};
use h3live::client::Client;
use h3live::core::upstream::Upstream;
use h3live::core::OriginConfig;
use h3live::server::{self, Listeners, ServerConfig};
use h3live::transport::{bind_tcp, bind_udp, Limits, ShutdownLimits, Transport};
use http::{Method, StatusCode};
use tokio::sync::{mpsc, oneshot};

/// A varnishd with the project's VCL, pointed at `backend`, in its own work
/// directory; stopped (SIGTERM, then SIGKILL) when dropped.
struct Varnish {
    addr: SocketAddr,
    workdir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The project's VCL with its backends replaced (the lines marked BACKEND,
/// and STANDBY: the standby, or the origin again when there is none).
fn vcl_for(backend: SocketAddr, standby: Option<SocketAddr>) -> String {
    let vcl = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/varnish/h3live.vcl")).unwrap();
    let standby = standby.unwrap_or(backend);
    let mut out = String::new();
    for line in vcl.lines() {
        if line.contains("# BACKEND host") {
            out.push_str(&format!("    .host = \"{}\";\n", backend.ip()));
        } else if line.contains("# BACKEND port") {
            out.push_str(&format!("    .port = \"{}\";\n", backend.port()));
        } else if line.contains("# STANDBY host") {
            out.push_str(&format!("    .host = \"{}\";\n", standby.ip()));
        } else if line.contains("# STANDBY port") {
            out.push_str(&format!("    .port = \"{}\";\n", standby.port()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains(&format!("\"{}\"", backend.port())), "VCL has no BACKEND port line");
    out
}

impl Varnish {
    async fn start(backend: SocketAddr) -> Varnish {
        Varnish::start_with(backend, None).await
    }

    /// Varnish with a hot standby behind the origin.
    async fn start_with(backend: SocketAddr, standby: Option<SocketAddr>) -> Varnish {
        let varnishd = ["/usr/sbin/varnishd", "/usr/local/sbin/varnishd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("varnishd not found: apt-get install varnish (scripts/test.sh installs it)");
        let dir = tempfile::tempdir().unwrap();
        let vcl = dir.path().join("h3live.vcl");
        std::fs::write(&vcl, vcl_for(backend, standby)).unwrap();
        let workdir = dir.path().join("varnish");
        let log = std::fs::File::create(dir.path().join("varnishd.log")).unwrap();
        // Varnish binds port 0 itself (no port picked here and released, for
        // another process to take first) and tells varnishadm, through its
        // management port (also port 0, found in the work directory), which
        // port it got.
        let child = Command::new(varnishd)
            .args(["-F", "-j", "none", "-a", "127.0.0.1:0", "-T", "127.0.0.1:0"])
            .args(["-s", "malloc,64m", "-p", "thread_pool_min=20"])
            .arg("-n")
            .arg(&workdir)
            .arg("-f")
            .arg(&vcl)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting varnishd");
        let mut v = Varnish { addr: "127.0.0.1:0".parse().unwrap(), workdir, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        v.addr = loop {
            if let Some(addr) = v.listen_address() {
                break addr;
            }
            let log = std::fs::read_to_string(v._dir.path().join("varnishd.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "varnishd reported no listen address:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let addr = v.addr;
        // Ready once it answers and its probe finds the origin healthy.
        loop {
            if let Ok(mut c) = Client::connect(Transport::H1Clear, addr, "localhost", &[]).await {
                if let Ok(mut r) = c.get("/healthz").await {
                    let _ = r.bytes().await;
                    if r.status == StatusCode::OK {
                        break;
                    }
                }
            }
            let log = std::fs::read_to_string(v._dir.path().join("varnishd.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "varnishd did not come up on {addr}:\n{log}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        v
    }

    /// The address varnishd listens on (`varnishadm debug.listen_address`:
    /// `a0 127.0.0.1 PORT`), once its management process answers.
    fn listen_address(&self) -> Option<SocketAddr> {
        let out = Command::new("varnishadm").arg("-n").arg(&self.workdir).arg("debug.listen_address").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text.lines().next()?.split_whitespace().skip(1);
        format!("{}:{}", f.next()?, f.next()?).parse().ok()
    }

    /// Whether Varnish's health probe counts the origin healthy (at least
    /// `.threshold` 2 of the last `.window` 3 probes good, the VCL's figures).
    fn backend_healthy(&self) -> bool {
        let happy = self.stat("VBE.boot.origin.happy");
        (happy & 0b111).count_ones() >= 2
    }

    /// A counter from varnishstat, e.g. `MAIN.backend_req`.
    fn stat(&self, name: &str) -> u64 {
        self.stats(name).first().copied().unwrap_or_else(|| panic!("varnishstat has no {name}"))
    }

    /// The values of the varnishstat fields that `pattern` matches (a glob).
    fn stats(&self, pattern: &str) -> Vec<u64> {
        let out =
            Command::new("varnishstat").arg("-n").arg(&self.workdir).args(["-1", "-f", pattern]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect()
    }

    /// Client requests Varnish is working on right now (being answered,
    /// fetching, or queued behind another request's fetch): its request
    /// structures in use, a gauge kept as they are taken and given back.
    fn requests_in_progress(&self) -> u64 {
        self.stats("MEMPOOL.req*.live").iter().sum()
    }

    async fn client(&self) -> Client {
        Client::connect(Transport::H1Clear, self.addr, "localhost", &[]).await.unwrap()
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `h3live front` in process: HTTP/3, HTTP/2 and HTTP/1.1+TLS listeners on
/// ephemeral ports forwarding to `upstream`.
struct Front {
    h3: SocketAddr,
    h2: SocketAddr,
    h1: SocketAddr,
    roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Front {
    /// A front; with `prefetch`, it prefetches what the origin names and
    /// serves its own /metrics on its TLS listeners.
    async fn start(upstream: SocketAddr, cert_pem: &Path, prefetch: bool) -> Front {
        let paths = CertPaths { cert: cert_pem.to_path_buf(), key: cert_pem.with_file_name("key.pem") };
        let keys = cert::load(&paths).unwrap();
        let roots = keys.chain.clone();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners {
            http: None,
            https: None,
            https_h1: Some(bind_tcp(local).unwrap()),
            https_h2: Some(bind_tcp(local).unwrap()),
            h3: Some(bind_udp(local).unwrap()),
            ..Default::default()
        };
        let h1 = listeners.https_h1.as_ref().unwrap().local_addr().unwrap();
        let h2 = listeners.https_h2.as_ref().unwrap().local_addr().unwrap();
        let h3 = listeners.h3.as_ref().unwrap().local_addr().unwrap();
        let up = Upstream::new(&format!("http://{upstream}"), Duration::from_secs(10)).unwrap();
        let config = ServerConfig {
            store: Default::default(),
            origin: OriginConfig { upstream: Some(Arc::new(up)), prefetch, ..Default::default() },
            limits: Limits { shutdown: ShutdownLimits { grace: Duration::from_secs(1) }, ..Default::default() },
            tls: Some(keys),
            ingest_on_http: false,
            public_status: prefetch,
            moq: None,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(config, listeners, async move {
            let _ = rx.await;
        }));
        Front { h3, h2, h1, roots, shutdown: Some(tx), task }
    }

    fn addr(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::H3 => self.h3,
            Transport::H2 => self.h2,
            _ => self.h1,
        }
    }

    async fn client(&self, t: Transport) -> Client {
        Client::connect(t, self.addr(t), "localhost", &self.roots).await.unwrap_or_else(|e| panic!("{t}: {e:#}"))
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

const VIEWERS: usize = 20;

/// Twenty viewers (ten on Varnish over HTTP/1.1, ten on the front over
/// HTTP/3, HTTP/2 and HTTP/1.1+TLS) ask for each segment before its upload
/// starts, as live players do. Each segment must cost the origin one
/// request, reach every viewer while it is being written, and arrive
/// byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_cost_one_origin_fetch_per_segment() {
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(3)).await;
    let varnish = Varnish::start(o.http).await;
    let front = Front::start(varnish.addr, &o.cert_pem, false).await;

    for seg in 1..=3u32 {
        let path = format!("/live/edge/chunk-stream0-{seg:05}.m4s");
        let before = varnish.stat("MAIN.backend_req");
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, usize)>();
        let mut viewers = Vec::new();
        for id in 0..VIEWERS {
            let mut client = if id < VIEWERS / 2 {
                varnish.client().await
            } else {
                front.client([Transport::H3, Transport::H2, Transport::H1Tls][id % 3]).await
            };
            let (path, tx) = (path.clone(), tx.clone());
            viewers.push(tokio::spawn(async move {
                let mut resp = client.get(&path).await.unwrap();
                assert_eq!(resp.status, StatusCode::OK, "viewer {id}");
                let mut body = Vec::new();
                while let Some(piece) = resp.chunk().await {
                    body.extend_from_slice(&piece.unwrap_or_else(|e| panic!("viewer {id}: {e:#}")));
                    tx.send((id, body.len())).unwrap();
                }
                body
            }));
        }
        drop(tx);
        // Everyone is waiting before the upload starts: Varnish holds all 20
        // requests (its pool of request structures in use, a live gauge),
        // and its one fetch for them is held at the origin.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (held, in_varnish) = (o.origin.metrics().held_reads(), varnish.requests_in_progress());
            if held == 1 && in_varnish == VIEWERS as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "segment {seg}: {held} held at the origin, {in_varnish} requests in Varnish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let up = o.put(&path).await;
        let mut expected = Vec::new();
        let mut have = vec![0usize; VIEWERS];
        for i in 0..12u32 {
            let chunk = Bytes::from(vec![(seg * 16 + i) as u8; 700 + 300 * i as usize]);
            expected.extend_from_slice(&chunk);
            up.send(chunk).await;
            if i == 0 {
                // The first chunk reaches every viewer before the second is
                // sent: Varnish streams the miss, the front streams too.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while have.iter().any(|&n| n < expected.len()) {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some((id, n))) => have[id] = n,
                        _ => panic!("segment {seg}: first chunk not streamed to every viewer: {have:?}"),
                    }
                }
                // While viewers stream, the origin has one reader: Varnish.
                assert_eq!(o.origin.metrics().active_readers(Transport::H1Clear), 1, "segment {seg}");
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert_eq!(up.finish().await, StatusCode::CREATED);
        for (id, v) in viewers.into_iter().enumerate() {
            let body = v.await.unwrap();
            assert!(body == expected, "segment {seg} viewer {id}: {} bytes, expected {}", body.len(), expected.len());
        }
        let fetches = varnish.stat("MAIN.backend_req") - before;
        assert_eq!(fetches, 1, "segment {seg}: origin fetches for {VIEWERS} viewers");
    }
    front.stop().await;
    drop(varnish);
    o.stop().await;
}

/// What must never be cached at the edge: a 404 for a segment that appears
/// a moment later, an aborted upload (viewers see a broken body, the next
/// request gets the origin's 502, a re-upload is served), and ingest or the
/// operator pages are refused. Manifests live at most one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_never_caches_errors_or_aborted_uploads() {
    // Segments live one second here, so the init-segment rule can be seen.
    // The hold (2 s) leaves time to see every viewer queued before it ends.
    const HOLD: Duration = Duration::from_secs(2);
    let o = TestOrigin::start_with(|c| {
        c.origin.segment_max_age = 1;
        c.store.hold = HOLD;
    })
    .await;
    let varnish = Varnish::start(o.http).await;
    let front = Front::start(varnish.addr, &o.cert_pem, false).await;
    let mut v = varnish.client().await;

    // Viewers queued on a segment that never comes all get the 404 of one
    // origin fetch when the origin's hold ends, not one hold after another
    // (each queued request waking alone and fetching again).
    let fetches_before = varnish.stat("MAIN.backend_req");
    let started = Instant::now();
    let mut waiting = Vec::new();
    for _ in 0..12 {
        let mut c = varnish.client().await;
        waiting.push(tokio::spawn(async move {
            let mut r = c.get("/live/err/chunk-stream0-00006.m4s").await.unwrap();
            let _ = r.bytes().await;
            r.status
        }));
    }
    // All twelve are in Varnish while its one fetch is held at the origin.
    let deadline = Instant::now() + HOLD;
    loop {
        let (held, in_varnish) = (o.origin.metrics().held_reads(), varnish.requests_in_progress());
        if held == 1 && in_varnish == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "{held} held at the origin, {in_varnish} requests in Varnish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in waiting {
        assert_eq!(w.await.unwrap(), StatusCode::NOT_FOUND);
    }
    let fetches = varnish.stat("MAIN.backend_req") - fetches_before;
    assert_eq!(fetches, 1, "origin fetches for 12 viewers of a missing segment");
    // Sanity bound, generous for a loaded machine: one hold after another
    // would take 12 holds.
    assert!(started.elapsed() < HOLD * 4, "404s were serialized: {:?}", started.elapsed());

    // 404, then the segment appears: served within a second, not a 404
    // cached for the segments' lifetime.
    let seg = "/live/err/chunk-stream0-00007.m4s";
    let mut r = v.get(seg).await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let _ = r.bytes().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Viewers arriving while it is uploaded still share one origin fetch: the
    // 404 left no hit-for-miss marker that would send each to the origin.
    let before = varnish.stat("MAIN.backend_req");
    let up = o.put(seg).await;
    up.send("sev").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut early = Vec::new();
    for id in 0..6 {
        early.push(spawn_reader(varnish.client().await, seg.to_string(), id, tx.clone()));
    }
    // Every viewer is reading it before the upload finishes.
    wait_readers(&mut [0; 6], &mut rx, 3, "the segment's first bytes through Varnish").await;
    up.send("en").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    for e in early {
        let (status, body, err) = e.await.unwrap();
        assert_eq!((status, err), (StatusCode::OK, None));
        assert_eq!(&body[..], b"seven");
    }
    assert_eq!(varnish.stat("MAIN.backend_req") - before, 1, "origin fetches after a 404");
    for t in [Transport::H3, Transport::H2, Transport::H1Tls] {
        let mut c = front.client(t).await;
        let mut r = c.get(seg).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{t}");
        assert_eq!(&r.bytes().await.unwrap()[..], b"seven", "{t}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{t}: CORS through the edge");
    }

    // An upload aborted while viewers stream it through the edge.
    let seg = "/live/err/chunk-stream0-00008.m4s";
    let mut raw = RawUpload::start(o.http, seg).await;
    raw.chunk(&[b'x'; 3000]).await;
    let mut clients = vec![(Transport::H1Clear, varnish.client().await)];
    for t in [Transport::H3, Transport::H2, Transport::H1Tls] {
        clients.push((t, front.client(t).await));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, (t, c))| (t, spawn_reader(c, seg.to_string(), id, tx.clone())))
        .collect();
    let mut have = [0; 4];
    wait_readers(&mut have, &mut rx, 3000, "the first chunk through the edge").await;
    raw.chunk(&[b'y'; 3000]).await;
    // Every viewer has both chunks when the upload breaks.
    wait_readers(&mut have, &mut rx, 6000, "the second chunk through the edge").await;
    raw.kill();
    for (t, r) in readers {
        let (status, body, err) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{t}");
        assert!(err.is_some(), "{t}: an aborted segment must end in an error, got a clean {} bytes", body.len());
        assert_eq!(body.len(), 6000, "{t}");
    }
    // Not kept by Varnish: the next request goes to the origin (502, no-store).
    let mut v = varnish.client().await;
    let mut r = v.get(seg).await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let _ = r.bytes().await;
    // And a re-upload under the same name is served whole.
    let up = o.put(seg).await;
    up.send("eight, complete").await;
    assert_eq!(up.finish().await, StatusCode::NO_CONTENT);
    let mut r = v.get(seg).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], b"eight, complete");

    // An init segment the origin has lost (restart: the encoder never sends
    // it again) is still served by the edge after its max-age.
    let init = "/live/err/init-stream0.m4s";
    let up = o.put(init).await;
    up.send("ftyp+moov").await;
    up.finish().await;
    let mut r = v.get(init).await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], b"ftyp+moov");
    assert!(o.origin.store().delete("err", "init-stream0.m4s"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let mut r = v.get(init).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "init segment lost at the edge");
        assert_eq!(&r.bytes().await.unwrap()[..], b"ftyp+moov");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Manifests: at most one second old at the edge.
    let mpd = "/live/err/manifest.mpd";
    for (i, body) in ["<MPD v1/>", "<MPD v2/>"].iter().enumerate() {
        let up = o.put(mpd).await;
        up.send(*body).await;
        up.finish().await;
        if i == 0 {
            let mut r = v.get(mpd).await.unwrap();
            assert_eq!(&r.bytes().await.unwrap()[..], body.as_bytes());
        }
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut r = v.get(mpd).await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], b"<MPD v2/>", "manifest older than 1 s served");

    // Ingest never passes the edge, on Varnish or on the front.
    for (label, mut c) in [("varnish", varnish.client().await), ("front", front.client(Transport::H1Tls).await)] {
        for method in [Method::PUT, Method::POST, Method::DELETE] {
            let mut r = c.request(method.clone(), "/live/err/evil.m4s").await.unwrap();
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{label} {method}");
            let _ = r.bytes().await;
        }
        let mut r = c.request(Method::DELETE, "/live/err/manifest.mpd").await.unwrap();
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{label}");
        let _ = r.bytes().await;
    }
    assert!(o.origin.store().snapshot().iter().all(|s| s.objects.iter().all(|ob| !ob.name.contains("evil"))));
    let mut r = v.get("/live/err/manifest.mpd").await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "DELETE through the edge must not delete");
    let _ = r.bytes().await;

    // Operator pages stay at the origin; the players' clock passes through.
    let mut c = front.client(Transport::H3).await;
    let mut r = c.get("/metrics").await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let _ = r.bytes().await;
    let mut r = c.get("/time").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
    assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");

    // Preflights and HEAD pass through the front and Varnish unchanged.
    let mut c = front.client(Transport::H2).await;
    let mut r = c.request(Method::OPTIONS, mpd).await.unwrap();
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("access-control-allow-methods").unwrap().contains("GET"));
    let _ = r.bytes().await;
    let mut r = c.request(Method::HEAD, seg).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("15"));
    assert!(r.bytes().await.unwrap().is_empty());

    // The origin goes away: once its health probe fails, the edge keeps
    // serving the last manifest (grace) instead of errors.
    front.stop().await;
    o.stop().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while varnish.backend_healthy() {
        assert!(Instant::now() < deadline, "Varnish's probe still finds the stopped origin healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut v = varnish.client().await;
    let mut r = v.get(mpd).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "manifest during an origin outage");
    assert_eq!(&r.bytes().await.unwrap()[..], b"<MPD v2/>");
    drop(varnish);
}

/// Queries on /live/: the player's `run=` marker and LL-HLS's blocking-reload
/// parameters make their own cache objects (a new encoder run must not get
/// the old run's cached segment of the same number); anything else is dropped
/// so it cannot defeat coalescing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_keeps_the_run_marker_and_drops_other_queries() {
    let o = TestOrigin::start().await;
    let varnish = Varnish::start(o.http).await;
    let mut v = varnish.client().await;
    let seg = "/live/q/chunk-stream0-00001.m4s";
    let up = o.put(seg).await;
    up.send("one").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    let fetches = |before: u64| varnish.stat("MAIN.backend_req") - before;
    let before = varnish.stat("MAIN.backend_req");
    for (query, new_fetches) in [
        ("?run=A&x=1", 1),     // first time: one origin fetch
        ("?y=2&run=A", 1),     // same run, other junk: a hit
        ("?run=B", 2),         // another run: its own object
        ("?cachebuster=3", 3), // no run: the plain URL, fetched once
        ("?cachebuster=4", 3), // ... and then a hit
    ] {
        let mut r = v.get(&format!("{seg}{query}")).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{query}");
        assert_eq!(&r.bytes().await.unwrap()[..], b"one", "{query}");
        assert_eq!(fetches(before), new_fetches, "origin fetches after {query}");
    }
}

/// The prefetch path of an init segment (or a manifest) is the live edge when
/// the origin answered: only the response that filled the cache carries it. A
/// cached init segment's hit named the segment that was the live edge at the
/// fill, seconds or minutes old, and the front's prefetch of it was held at the
/// origin and ended in a 404 (scripts/edge.sh --prefetch: 1 of the 2 failed
/// prefetches per run, "segment 4" when the live edge was 19). A media
/// segment's path (N+1) does not age: its hits keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_init_segment_names_no_stale_live_edge() {
    let o = TestOrigin::start().await;
    let varnish = Varnish::start(o.http).await;
    let mut v = varnish.client().await;
    let put = |name: String, body: &'static str| {
        let o = &o;
        async move {
            let up = o.put(&format!("/live/pi/{name}")).await;
            up.send(body).await;
            assert_eq!(up.finish().await, StatusCode::CREATED, "{name}");
        }
    };
    let seg = |n: u32| format!("chunk-stream0-{n:05}.m4s");
    let prefetch_path =
        |r: &h3live::client::ClientResponse| r.header("cdn-origin-assist-prefetch-path").map(str::to_string);
    // The live edge of a representation is found through the manifest's SegmentTemplate.
    const MPD: &str = r#"<?xml version="1.0"?>
<MPD type="dynamic" availabilityStartTime="2026-12-07T10:00:00.250Z"><Period><AdaptationSet contentType="video">
 <SegmentTemplate timescale="15360" duration="30720" startNumber="1"
  initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
 <Representation id="stream0" bandwidth="2000000"/></AdaptationSet></Period></MPD>"#;
    put("init-stream0.m4s".into(), "init").await;
    put("manifest.mpd".into(), MPD).await;
    put(seg(1), "one").await;
    let mut get = async |path: &str| {
        let mut r = v.get(&format!("/live/pi/{path}")).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let _ = r.bytes().await.unwrap();
        (r.header("x-cache").map(str::to_string), prefetch_path(&r))
    };
    assert_eq!(get("init-stream0.m4s").await, (Some("MISS".into()), Some(seg(1))), "the fill names the live edge");
    assert_eq!(get(&seg(1)).await, (Some("MISS".into()), Some(seg(2))));
    put(seg(2), "two").await;
    put(seg(3), "three").await;
    assert_eq!(get("init-stream0.m4s").await, (Some("HIT".into()), None), "a hit names no stale live edge");
    assert_eq!(get(&seg(1)).await, (Some("HIT".into()), Some(seg(2))), "a media segment's hit keeps N+1");
}

/// A counter of the front's own /metrics (`h3live_prefetch_total{event="sent"}`).
async fn front_prefetches(front: &Front, event: &str) -> u64 {
    let mut c = front.client(Transport::H1Tls).await;
    let mut r = c.get("/metrics").await.unwrap();
    let text = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
    let key = format!("h3live_prefetch_total{{event=\"{event}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).map_or(0, |v| v.trim().parse().unwrap())
}

/// Wait (bounded) until `cond` holds; `what` says what was awaited.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Origin-assisted prefetch through Varnish: as a player's response for
/// segment N arrives, the front prefetches N+1, and that request is held at
/// the origin BEFORE any player asks for N+1 (the origin's held-read count
/// says so; only then does the player ask). The player's request then joins
/// the prefetch's fetch (X-Cache: HIT), so each segment still costs the
/// origin one fetch; the prefetch's own response starts no further prefetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_opens_the_next_segment_before_any_player_asks() {
    let o = TestOrigin::start_with(|c| c.store.hold = Duration::from_secs(2)).await;
    let varnish = Varnish::start(o.http).await;
    let front = Front::start(varnish.addr, &o.cert_pem, true).await;
    let seg = |n: u32| format!("/live/pf/chunk-stream0-{n:05}.m4s");
    let held = || o.origin.metrics().held_reads();
    let fetches_before = varnish.stat("MAIN.backend_req");

    let mut up = o.put(&seg(1)).await;
    up.send("first of 1").await;
    let mut player = front.client(Transport::H3).await;
    let mut resp = player.get(&seg(1)).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("x-cache"), Some("MISS"), "the first player fetches segment 1 itself");
    assert!(resp.header("cdn-origin-assist-prefetch-path").is_none(), "paths are for the edge, not players");
    for n in 1..=3u32 {
        // The front's prefetch of N+1 is waiting at the origin; no player has asked for it.
        until(&format!("the prefetch of segment {} held at the origin", n + 1), || held() == 1).await;
        assert_eq!(front_prefetches(&front, "sent").await, n as u64);
        // Segment N ends, N+1 begins (the encoder's order).
        let next = o.put(&seg(n + 1)).await;
        next.send(format!("first of {}", n + 1)).await;
        up.send(" ... end").await;
        assert_eq!(up.finish().await, StatusCode::CREATED);
        assert_eq!(&resp.bytes().await.unwrap()[..], format!("first of {n} ... end").as_bytes());
        up = next;
        // Only now does the player ask for N+1: it joins the prefetch's fetch.
        resp = player.get(&seg(n + 1)).await.unwrap();
        assert_eq!(resp.status, StatusCode::OK, "segment {}", n + 1);
        assert_eq!(resp.header("x-cache"), Some("HIT"), "segment {}: the player made an origin fetch", n + 1);
    }
    // Segment 4 ends with no player asking for 5: the prefetch of 5 (held at
    // the origin) is answered, and its response names 6, which is NOT prefetched.
    up.send(" ... end").await;
    assert_eq!(up.finish().await, StatusCode::CREATED);
    let _ = resp.bytes().await.unwrap();
    until("the prefetch of segment 5 held at the origin", || held() == 1).await;
    let sent = front_prefetches(&front, "sent").await;
    assert_eq!(sent, 4);
    let ok = front_prefetches(&front, "ok").await;
    let five = o.put(&seg(5)).await;
    five.send("5").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while front_prefetches(&front, "ok").await == ok {
        assert!(Instant::now() < deadline, "the prefetch of segment 5 did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(front_prefetches(&front, "sent").await, sent, "a prefetched response started another prefetch");
    assert_eq!(five.finish().await, StatusCode::CREATED);
    // One origin fetch per segment: segment 1 by the player, 2 to 5 by the prefetches.
    assert_eq!(varnish.stat("MAIN.backend_req") - fetches_before, 5, "origin fetches for 5 segments");
    assert_eq!(front_prefetches(&front, "failed").await, 0);
    front.stop().await;
    drop(varnish);
    o.stop().await;
}

/// Segment duration of the hot-standby test's stream.
const STANDBY_SEG: Duration = Duration::from_secs(2);

/// A viewer that follows video segment after segment through the edge from
/// `from`, asking a segment again (new connection, 100 ms later) when its
/// body broke or it got an error, as a player does. Sends each completed
/// segment's number and completion time; stops after `until`.
async fn follow_segments(edge: SocketAddr, from: u64, until: u64, done: mpsc::UnboundedSender<(u64, Instant, u32)>) {
    let mut c = Client::connect(Transport::H1Clear, edge, "localhost", &[]).await.unwrap();
    let mut n = from;
    let mut retries = 0;
    while n <= until {
        let ok = match c.get(&format!("/live/hs/chunk-stream0-{n:05}.m4s")).await {
            Ok(mut r) if r.status == StatusCode::OK => read_all(&mut r).await.1.is_none(),
            Ok(mut r) => {
                let _ = r.bytes().await;
                false
            }
            Err(_) => false,
        };
        if ok {
            let _ = done.send((n, Instant::now(), retries));
            n += 1;
            retries = 0;
        } else {
            retries += 1;
            assert!(retries < 100, "segment {n}: no answer through the edge after 100 tries");
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(fresh) = Client::connect(Transport::H1Clear, edge, "localhost", &[]).await {
                c = fresh;
            }
        }
    }
}

/// Hot standby: the encoder relay feeds two origin processes; the edge's VCL
/// fetches from the first while its probe is good, from the second when it
/// is not, and retries a fetch that cannot reach the first on the second at
/// once. The primary is killed with SIGKILL under viewers: a viewer that
/// follows every segment is never late by more than one segment duration,
/// the new segments come from the standby, and the load tool's viewers all
/// play to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_primary_is_killed() {
    use h3live::load::replay::{self, PrftMode, ReplayStats};
    let certs = common::cert_dir();
    let mut primary = common::OriginProc::start(certs.path(), &["--max-connections-per-ip", "0"]).await;
    let standby = common::OriginProc::start(certs.path(), &["--max-connections-per-ip", "0"]).await;
    let relay = common::start_relay(&[
        "--origin",
        &format!("http://{}", primary.addr),
        "--origin",
        &format!("http://{}", standby.addr),
    ])
    .await;
    let capture = tempfile::tempdir().unwrap();
    let opts = h3live::load::capture::SynthOptions {
        duration: STANDBY_SEG * 3,
        segment: STANDBY_SEG,
        video_bitrate: 500_000,
        fps: 30,
    };
    h3live::load::capture::synthesize(capture.path(), &opts).unwrap();
    let plan = replay::load_plan(capture.path()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let replay = tokio::spawn(replay::run(
        plan,
        relay.addr,
        "hs",
        PrftMode::Push,
        None,
        stop.clone(),
        Arc::new(ReplayStats::default()),
    ));
    let varnish = Varnish::start_with(primary.addr, Some(standby.addr)).await;
    let newest = common::wait_until("a video segment on the primary", 20, || async {
        common::segments(&common::objects(&primary.streams().await, "hs"), "chunk-stream0-").keys().next_back().copied()
    })
    .await;

    // Ten viewers of the load tool, and one viewer following every segment.
    let mut load = common::load_cmd("h1-clear", varnish.addr, &certs.path().join("cert.pem"), 10, "14s");
    load.viewers.stream = "hs".into();
    let load = tokio::spawn(h3live::load::run(load.viewers, tokio_util::sync::CancellationToken::new()));
    let (tx, mut done) = mpsc::unbounded_channel();
    let follower = tokio::spawn(follow_segments(varnish.addr, newest, newest + 5, tx));
    let mut completed = vec![done.recv().await.expect("first segment through the edge")];
    completed.push(done.recv().await.expect("second segment through the edge"));
    let standby_reads = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("h3live_origin_delay_seconds_count{transport=\"h1-clear\"}"))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = standby_reads(&String::from_utf8(standby.get("/metrics").await.1).unwrap());
    primary.kill9();
    let killed = Instant::now();
    while let Some(x) = done.recv().await {
        completed.push(x);
    }
    follower.await.unwrap();
    let report = load.await.unwrap().unwrap();
    let after = standby_reads(&String::from_utf8(standby.get("/metrics").await.1).unwrap());

    let gaps: Vec<(u64, Duration, u32)> = completed.windows(2).map(|w| (w[1].0, w[1].1 - w[0].1, w[1].2)).collect();
    println!("primary killed after segment {}; completions (segment, gap, retries): {gaps:?}", completed[1].0);
    println!("load tool through the edge: {}", report.summary());
    assert_eq!(completed.len(), 6, "the follower did not get every segment");
    assert!(completed.last().unwrap().1 > killed);
    for (n, gap, _) in &gaps {
        assert!(
            *gap <= STANDBY_SEG * 2,
            "segment {n} ended {gap:?} after the one before: a stall of more than one segment"
        );
    }
    assert_eq!(before, 0, "the standby served viewers while the primary was up");
    assert!(after > 0, "no live chunk came from the standby");
    assert_eq!(report.connected, 10, "load viewers still playing at the end: {}", report.summary());
    stop.cancel();
    let _ = replay.await;
    drop(varnish);
    relay.stop().await;
}
