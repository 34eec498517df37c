//! Test harness: a real origin on ephemeral ports (cleartext, three TLS
//! listeners and QUIC) with a freshly generated certificate, clients for every
//! transport, and a chunked-PUT uploader driven chunk by chunk.
#![allow(dead_code)]

pub mod ffmpeg;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h3live::cert::{self, CertPaths};
use h3live::client::Client;
use h3live::core::Origin;
use h3live::server::{self, Listeners, ServerConfig};
use h3live::store::{Store, StoreConfig};
use h3live::transport::{bind_tcp, bind_udp, Limits, ShutdownLimits, Transport};
use http::StatusCode;
use http_body::Frame;
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

pub const ALL: [Transport; 4] = Transport::ALL;

/// The Python with aioquic: `$H3LIVE_PYTHON`, else the `.venv` that the
/// README's test command creates.
pub fn aioquic_python() -> std::path::PathBuf {
    let p = std::env::var_os("H3LIVE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok =
        std::process::Command::new(&p).args(["-c", "import aioquic"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(
        ok,
        "{} cannot import aioquic: run scripts/test.sh (it creates .venv with aioquic) or set H3LIVE_PYTHON",
        p.display()
    );
    p
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

pub struct TestOrigin {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub https_h1: SocketAddr,
    pub https_h2: SocketAddr,
    pub h3: SocketAddr,
    /// The HTTP/3 ingest listener (QUIC twin of `http`).
    pub h3_ingest: SocketAddr,
    pub roots: Vec<CertificateDer<'static>>,
    /// The MoQ (WebTransport) endpoint, when the config asked for one.
    pub moq: Option<SocketAddr>,
    /// PEM file of the origin's certificate, for external clients.
    pub cert_pem: std::path::PathBuf,
    pub origin: Arc<Origin>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub fn test_config() -> ServerConfig {
    ServerConfig {
        store: StoreConfig { hold: Duration::from_millis(300), ..Default::default() },
        origin: Default::default(),
        limits: Limits { shutdown: ShutdownLimits { grace: Duration::from_secs(1) }, ..Default::default() },
        tls: None,
        ingest_on_http: true,
        public_status: false,
        moq: None,
    }
}

impl TestOrigin {
    pub async fn start() -> TestOrigin {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> TestOrigin {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::in_dir(dir.path());
        cert::write_new(&paths, &[]).unwrap();
        let keys = cert::load(&paths).unwrap();
        let roots = keys.chain.clone();
        let mut config = test_config();
        config.tls = Some(keys);
        f(&mut config);
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners {
            http: Some(bind_tcp(local).unwrap()),
            https: Some(bind_tcp(local).unwrap()),
            https_h1: Some(bind_tcp(local).unwrap()),
            https_h2: Some(bind_tcp(local).unwrap()),
            h3: Some(bind_udp(local).unwrap()),
            h3_ingest: Some(bind_udp(local).unwrap()),
            moq: config.moq.as_ref().map(|_| bind_udp(local).unwrap()),
            moq_http: None,
        };
        let moq = listeners.moq.as_ref().map(|s| s.local_addr().unwrap());
        let addr = |l: &Option<tokio::net::TcpListener>| l.as_ref().unwrap().local_addr().unwrap();
        let (http, https, https_h1, https_h2) =
            (addr(&listeners.http), addr(&listeners.https), addr(&listeners.https_h1), addr(&listeners.https_h2));
        let h3 = listeners.h3.as_ref().unwrap().local_addr().unwrap();
        let h3_ingest = listeners.h3_ingest.as_ref().unwrap().local_addr().unwrap();
        let origin = Arc::new(Origin::new(Store::new(config.store.clone()), config.origin.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run_origin(origin.clone(), config, listeners, async move {
            let _ = rx.await;
        }));
        TestOrigin {
            http,
            https,
            https_h1,
            https_h2,
            h3,
            h3_ingest,
            moq,
            roots,
            cert_pem: paths.cert.clone(),
            origin,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// The listener address that serves `t` as a dedicated arm.
    pub fn addr(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::H1Clear => self.http,
            Transport::H1Tls => self.https_h1,
            Transport::H2 => self.https_h2,
            Transport::H3 => self.h3,
        }
    }

    pub async fn client(&self, t: Transport) -> Client {
        Client::connect(t, self.addr(t), "localhost", &self.roots).await.unwrap_or_else(|e| panic!("{t}: {e:#}"))
    }

    /// Start a chunked PUT (or another method) on the ingest listener.
    pub async fn put(&self, path: &str) -> Upload {
        self.upload("PUT", path, &[]).await
    }

    pub async fn upload(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Upload {
        let tcp = tokio::net::TcpStream::connect(self.http).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let (tx, rx) = mpsc::channel(64);
        let mut req = http::Request::builder().method(method).uri(path).header("host", self.http.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(ChannelBody(rx)).unwrap();
        let resp =
            tokio::spawn(async move { send.send_request(req).await.map(|r| r.status()).map_err(|e| e.to_string()) });
        Upload { tx: Some(tx), resp }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("shutdown timed out").unwrap().unwrap();
        }
    }
}

/// A request body fed chunk by chunk from the test.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub struct Upload {
    tx: Option<mpsc::Sender<Bytes>>,
    resp: tokio::task::JoinHandle<Result<StatusCode, String>>,
}

impl Upload {
    pub async fn send(&self, data: impl Into<Bytes>) {
        self.tx.as_ref().unwrap().send(data.into()).await.unwrap();
    }

    /// End the body cleanly and return the response status.
    pub async fn finish(mut self) -> StatusCode {
        self.tx.take();
        tokio::time::timeout(Duration::from_secs(10), self.resp)
            .await
            .expect("PUT response")
            .unwrap()
            .expect("PUT failed")
    }

    /// The response status of a request the origin answered before the body ended.
    pub async fn early_status(self) -> StatusCode {
        tokio::time::timeout(Duration::from_secs(10), self.resp)
            .await
            .expect("PUT response")
            .unwrap()
            .expect("PUT failed")
    }
}

/// A raw chunked PUT that sends `chunks` and then drops the connection
/// without the terminating zero-length chunk, as a killed encoder does.
pub struct RawUpload(tokio::net::TcpStream);

impl RawUpload {
    pub async fn start(addr: SocketAddr, path: &str) -> RawUpload {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nUser-Agent: Lavf/59.27.100\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        RawUpload(s)
    }

    pub async fn chunk(&mut self, data: &[u8]) {
        let mut buf = format!("{:x}\r\n", data.len()).into_bytes();
        buf.extend_from_slice(data);
        buf.extend_from_slice(b"\r\n");
        self.0.write_all(&buf).await.unwrap();
    }

    /// What the origin answered so far (up to 64 KiB, waiting at most `wait`
    /// for the first bytes); empty if nothing came.
    pub async fn answer(&mut self, wait: Duration) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 << 10];
        match tokio::time::timeout(wait, self.0.read(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            _ => String::new(),
        }
    }

    /// Reset the connection (RST), no terminating chunk.
    pub fn kill(self) {
        let _ = socket2::SockRef::from(&self.0).set_linger(Some(Duration::ZERO));
        drop(self.0);
    }
}

/// Send `request` whole on a new connection and shut the sending side at
/// once, as ffmpeg does with its last requests at exit; then read until the
/// server closes. The answer, or "" if the server dropped the request.
pub async fn whole_then_shutdown(addr: SocketAddr, request: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Send `request` whole on a new connection and reset it at once (RST), as
/// a client closing a keep-alive connection with answers it never read does
/// (ffmpeg with `-http_persistent 1` at exit). Nothing can be read back.
pub async fn whole_then_reset(addr: SocketAddr, request: &str) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

/// Progress of concurrent readers: `(reader id, bytes received so far)`.
pub type Progress = mpsc::UnboundedSender<(usize, usize)>;

/// GET `path` with `client` on its own task, reporting `(id, bytes so far)`
/// on `progress` after each piece. Gives the status, the body and the error
/// if the body broke.
pub fn spawn_reader(
    mut client: Client,
    path: String,
    id: usize,
    progress: Progress,
) -> tokio::task::JoinHandle<(StatusCode, Vec<u8>, Option<String>)> {
    tokio::spawn(async move {
        let mut resp = client.get(&path).await.unwrap_or_else(|e| panic!("reader {id}: GET {path}: {e:#}"));
        let mut body = Vec::new();
        while let Some(piece) = resp.chunk().await {
            match piece {
                Ok(b) => body.extend_from_slice(&b),
                Err(e) => return (resp.status, body, Some(format!("{e:#}"))),
            }
            let _ = progress.send((id, body.len()));
        }
        (resp.status, body, None)
    })
}

/// Wait until every reader in `have` (indexed by id) has at least `want`
/// bytes, taking progress reports from `rx`; fails after 10 s.
pub async fn wait_readers(
    have: &mut [usize],
    rx: &mut mpsc::UnboundedReceiver<(usize, usize)>,
    want: usize,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while have.iter().any(|&n| n < want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((id, n))) => have[id] = have[id].max(n),
            _ => panic!("{what}: not every reader got {want} bytes: {have:?}"),
        }
    }
}

/// Wait until `cond` holds (checked every 10 ms), or fail with `what` after 10 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything a reader received, with an error if the body broke.
pub async fn read_all(resp: &mut h3live::client::ClientResponse) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await {
        match c {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(format!("{e:#}"))),
        }
    }
    (out, None)
}

/// `h3live load` over `transport` at `addr` (certificate `ca`): `viewers` of
/// stream `t` for `duration`, ramped over 200 ms, waiting up to 5 s for the
/// stream, quiet.
pub fn load_cmd(
    transport: &str,
    addr: SocketAddr,
    ca: &std::path::Path,
    viewers: usize,
    duration: &str,
) -> h3live::load::LoadCmd {
    use clap::Parser as _;
    let (addr, ca, n) = (addr.to_string(), ca.to_str().expect("a UTF-8 path").to_string(), viewers.to_string());
    h3live::load::LoadCmd::try_parse_from([
        "load",
        "--transport",
        transport,
        "--addr",
        &addr,
        "--ca",
        &ca,
        "--stream",
        "t",
        "-n",
        &n,
        "--duration",
        duration,
        "--ramp",
        "200ms",
        "--wait",
        "5s",
        "--quiet",
    ])
    .expect("load arguments")
}

/// The `h3live serve` binary as a process, with only its ingest listeners
/// (`--http` and `--h3-ingest` on one port number), a state directory and
/// the certificate in `certs`; it can be killed with SIGKILL and started
/// again on the same port and state directory, as an operator would.
pub struct OriginProc {
    /// The cleartext listener (and, over UDP, the h3 ingest listener).
    pub addr: SocketAddr,
    /// The arguments it runs with.
    args: Vec<String>,
    /// The running process.
    child: Option<std::process::Child>,
    /// Its state directory.
    _state: tempfile::TempDir,
}

impl OriginProc {
    /// Start one on port 0 (--http and --h3-ingest get one number from the
    /// kernel, read from its --ports-file; restarts use that number);
    /// `certs` holds cert.pem and key.pem; `extra` are more `serve` flags.
    pub async fn start(certs: &std::path::Path, extra: &[&str]) -> OriginProc {
        let state = tempfile::tempdir().unwrap();
        let ports = state.path().join("ports");
        let mut args: Vec<String> =
            ["serve", "--h3", "off", "--https", "off", "--https-h1", "off", "--https-h2", "off"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(["--http".into(), "127.0.0.1:0".into(), "--h3-ingest".into(), "127.0.0.1:0".into()]);
        args.extend(["--cert".into(), certs.join("cert.pem").display().to_string()]);
        args.extend(["--key".into(), certs.join("key.pem").display().to_string()]);
        args.extend([
            "--state-dir".into(),
            state.path().join("state").display().to_string(),
            "--hold".into(),
            "300ms".into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut o = OriginProc { addr: ([127, 0, 0, 1], 0).into(), args, child: None, _state: state };
        o.spawn(&["--ports-file", ports.to_str().unwrap()]);
        let text = wait_until("the origin's ports file", 20, || async { std::fs::read_to_string(&ports).ok() }).await;
        let port = |name: &str| -> u16 {
            text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).unwrap().parse().unwrap()
        };
        assert_eq!(port("http"), port("h3_ingest"), "--http and --h3-ingest share one number: {text}");
        o.addr.set_port(port("http"));
        // Restarts bind the same number.
        for a in o.args.iter_mut().filter(|a| *a == "127.0.0.1:0") {
            *a = o.addr.to_string();
        }
        o.wait_up().await;
        o
    }

    fn spawn(&mut self, more: &[&str]) {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_h3live"))
            .args(&self.args)
            .args(more)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting h3live serve");
        self.child = Some(child);
    }

    /// Start the process (again) and wait until it answers.
    pub async fn restart(&mut self) {
        self.spawn(&[]);
        self.wait_up().await;
    }

    /// Wait until it answers /healthz.
    async fn wait_up(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(Transport::H1Clear, self.addr, "localhost", &[]).await {
                if let Ok(mut r) = c.get("/healthz").await {
                    let _ = r.bytes().await;
                    if r.status == StatusCode::OK {
                        return;
                    }
                }
            }
            assert!(std::time::Instant::now() < deadline, "origin on {} did not come up", self.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its `/streams` document.
    pub async fn streams(&self) -> serde_json::Value {
        let mut c = Client::connect(Transport::H1Clear, self.addr, "localhost", &[]).await.unwrap();
        let mut r = c.get("/streams").await.unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    /// GET `path` on its cleartext listener: status and body.
    pub async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let mut c = Client::connect(Transport::H1Clear, self.addr, "localhost", &[]).await.unwrap();
        let mut r = c.get(path).await.unwrap();
        let (body, err) = read_all(&mut r).await;
        assert!(err.is_none(), "GET {path}: {err:?}");
        (r.status, body)
    }
}

impl Drop for OriginProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The objects of `stream` in a `/streams` document: name -> (state, bytes).
pub fn objects(streams: &serde_json::Value, stream: &str) -> std::collections::BTreeMap<String, (String, u64)> {
    streams["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == stream)
        .flat_map(|s| s["objects"].as_array().cloned().unwrap_or_default())
        .map(|o| {
            let name = o["name"].as_str().unwrap_or_default().to_string();
            (name, (o["state"].as_str().unwrap_or_default().to_string(), o["bytes"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// Segment numbers of representation `prefix` (e.g. `chunk-stream0-`) among `objects`, with their state.
pub fn segments(
    objects: &std::collections::BTreeMap<String, (String, u64)>,
    prefix: &str,
) -> std::collections::BTreeMap<u64, String> {
    objects
        .iter()
        .filter_map(|(name, (state, _))| {
            let n = name.strip_prefix(prefix)?.strip_suffix(".m4s")?.parse().ok()?;
            Some((n, state.clone()))
        })
        .collect()
}

/// A certificate directory (cert.pem, key.pem) for localhost, 127.0.0.1 and ::1.
pub fn cert_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cert::write_new(&CertPaths::in_dir(dir.path()), &[]).unwrap();
    dir
}

/// Poll `check` every 50 ms until it returns `Some`, at most `secs` seconds
/// (the condition is the event: origin state, a metric).
pub async fn wait_until<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A relay in this process on an ephemeral loopback port.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub relay: Arc<h3live::relay::Relay>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

pub async fn start_relay(args: &[&str]) -> TestRelay {
    init_tracing();
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        relay: h3live::relay::RelayArgs,
    }
    let argv = ["relay", "--listen", "127.0.0.1:0", "--shutdown-grace", "1s"].into_iter().chain(args.iter().copied());
    let args = <Cmd as clap::Parser>::try_parse_from(argv).expect("relay arguments").relay;
    let listener = h3live::transport::bind_tcp(args.listen).unwrap();
    let addr = listener.local_addr().unwrap();
    let relay = h3live::relay::Relay::new(&args).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(relay.clone().serve(
        listener,
        async move {
            let _ = rx.await;
        },
        args.shutdown_grace,
    ));
    TestRelay { addr, relay, stop: Some(tx), task }
}

impl TestRelay {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("relay shutdown").unwrap();
    }
}
