//! The interop endpoint (`h3live interop-server`) over real sockets, with
//! quinn as an hq-interop (HTTP/0.9) client: transfers, refusals, Retry,
//! ChaCha20-only, 0-RTT on a resumed session, qlog per connection.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use h3live::cert::{self, CertPaths, TlsKeys};
use h3live::interop::{self, InteropArgs, ALPN_HQ};
use rustls::crypto::ring::{cipher_suite, default_provider};
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    keys: TlsKeys,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(f: impl FnOnce(&mut InteropArgs)) -> Server {
        common::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::in_dir(&dir.path().join("certs"));
        cert::write_new(&paths, &[]).unwrap();
        let keys = cert::load(&paths).unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        for (name, len) in [("small", 5_000usize), ("big", 700_000)] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            std::fs::write(www.join(name), data).unwrap();
        }
        let mut args = InteropArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            www,
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            retry: false,
            chacha20: false,
            zero_rtt: false,
            key_update: false,
            qlog_dir: None,
            ports_file: None,
        };
        f(&mut args);
        let socket = h3live::transport::bind_udp(args.listen).unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let k = keys.clone();
        let task = tokio::spawn(async move {
            interop::serve(&args, &k, socket, async move {
                let _ = rx.await;
            })
            .await
        });
        Server { addr, keys, stop: Some(tx), task, dir }
    }

    fn www(&self) -> std::path::PathBuf {
        self.dir.path().join("www")
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A quinn client endpoint trusting the server's certificate, offering
/// hq-interop and only the given TLS 1.3 suites (all when empty).
fn client(keys: &TlsKeys, suites: &[rustls::SupportedCipherSuite]) -> quinn::Endpoint {
    let mut provider = default_provider();
    if !suites.is_empty() {
        provider.cipher_suites = suites.to_vec();
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(keys.chain[0].clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_HQ.to_vec()];
    tls.enable_early_data = true;
    let initial = cipher_suite::TLS13_AES_128_GCM_SHA256.tls13().unwrap().quic_suite().unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::with_initial(Arc::new(tls), initial).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    ep
}

/// One HTTP/0.9 GET: `Ok(body)`, or `Err` when the stream was reset.
async fn get(conn: &quinn::Connection, path: &str) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(format!("GET {path}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    send.finish().unwrap();
    recv.read_to_end(64 << 20).await.map_err(|e| e.to_string())
}

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[tokio::test]
async fn hq_transfers_files_in_parallel_and_refuses_bad_paths() {
    let qlog = tempfile::tempdir().unwrap();
    let qdir = qlog.path().to_path_buf();
    let s = Server::start(|a| a.qlog_dir = Some(qdir)).await;
    let ep = client(&s.keys, &[]);
    let conn = ep.connect(s.addr, "localhost").unwrap().await.unwrap();
    let (a, b, c) = tokio::join!(get(&conn, "/small"), get(&conn, "/big"), get(&conn, "/small"));
    assert_eq!(a.unwrap(), file(&s.www(), "small"));
    assert_eq!(b.unwrap(), file(&s.www(), "big"));
    assert_eq!(c.unwrap(), file(&s.www(), "small"));
    for bad in ["/missing", "/../certs/key.pem", "/%2e%2e/certs/key.pem", "/"] {
        assert!(get(&conn, bad).await.is_err(), "{bad} was served");
    }
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    s.stop().await;
    let traces: Vec<_> = std::fs::read_dir(qlog.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(traces.len(), 1, "one qlog per connection: {traces:?}");
    let text = std::fs::read_to_string(&traces[0]).unwrap();
    assert!(text.contains("JSON-SEQ") && text.contains("\"packet_type\":\"1RTT\""), "not a qlog trace");
}

#[tokio::test]
async fn retry_and_chacha20_only() {
    let s = Server::start(|a| {
        a.retry = true;
        a.chacha20 = true;
    })
    .await;
    // A client that offers only AES-GCM cannot agree on a suite.
    let aes = client(&s.keys, &[cipher_suite::TLS13_AES_128_GCM_SHA256]);
    let refused =
        tokio::time::timeout(Duration::from_secs(5), aes.connect(s.addr, "localhost").unwrap()).await.unwrap();
    assert!(refused.is_err(), "AES-only client connected to a ChaCha20-only server");
    // One offering ChaCha20 connects (after a Retry round trip) and downloads.
    let chacha = client(&s.keys, &[cipher_suite::TLS13_CHACHA20_POLY1305_SHA256]);
    let conn = chacha.connect(s.addr, "localhost").unwrap().await.unwrap();
    assert_eq!(get(&conn, "/big").await.unwrap(), file(&s.www(), "big"));
    conn.close(0u32.into(), b"done");
    s.stop().await;
}

#[tokio::test]
async fn zero_rtt_request_on_a_resumed_session() {
    let s = Server::start(|a| {
        a.zero_rtt = true;
        a.key_update = true;
    })
    .await;
    let ep = client(&s.keys, &[]);
    let first = ep.connect(s.addr, "localhost").unwrap().await.unwrap();
    // Long enough for the key update the server starts after 64 KiB.
    assert_eq!(get(&first, "/big").await.unwrap(), file(&s.www(), "big"));
    first.close(0u32.into(), b"done");
    // The session ticket arrives right after the handshake; the second
    // connection resumes and sends its request as 0-RTT data.
    let connecting = ep.connect(s.addr, "localhost").unwrap();
    let (conn, accepted) = connecting.into_0rtt().unwrap_or_else(|_| panic!("no 0-RTT: session not resumed"));
    let body = get(&conn, "/small").await.unwrap();
    assert!(accepted.await, "server rejected 0-RTT");
    assert_eq!(body, file(&s.www(), "small"));
    conn.close(0u32.into(), b"done");
    s.stop().await;
}

/// At shutdown the interop endpoint closes its connections the way the
/// origin does (one shutdown path): with H3_NO_ERROR (0x100), not 0.
#[tokio::test]
async fn shutdown_closes_connections_with_h3_no_error() {
    let s = Server::start(|_| {}).await;
    let ep = client(&s.keys, &[]);
    let conn = ep.connect(s.addr, "localhost").unwrap().await.unwrap();
    assert_eq!(get(&conn, "/small").await.unwrap(), file(&s.www(), "small"));
    s.stop().await;
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(u64::from(c.error_code), 0x100),
        other => panic!("closed with {other:?}"),
    }
}
