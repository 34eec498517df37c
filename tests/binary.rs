//! The `h3live` binary itself: `cert` prints what Chromium needs, `serve`
//! binds what the flags say, answers, and exits cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_h3live");

#[test]
fn cert_prints_spki_and_chromium_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(BIN).args(["cert", "--out"]).arg(dir.path()).args(["--host", "origin.test"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(dir.path().join("cert.pem").exists() && dir.path().join("key.pem").exists());
    let spki = text.lines().find_map(|l| l.strip_prefix("SPKI SHA-256 (base64): ")).expect(&text).to_string();
    assert_eq!(spki.len(), 44);
    assert!(text.contains(&format!("--ignore-certificate-errors-spki-list={spki}")), "{text}");
    assert!(text.contains("--origin-to-force-quic-on=origin.test:4433"), "{text}");
    // --show reads the same files back.
    let out = Command::new(BIN).args(["cert", "--show", "--out"]).arg(dir.path()).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains(&spki));
}

#[tokio::test]
async fn serve_answers_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&["--h3", "127.0.0.1:0", "--https", "127.0.0.1:0"], dir.path(), Some("info"));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let http = listening_addr(&mut lines, "http", &mut seen).await;
    assert!(seen.iter().any(|l| l.contains("generated a self-signed certificate")), "{seen:?}");
    assert!(dir.path().join("certs/cert.pem").exists());
    let mut c =
        h3live::client::Client::connect(h3live::transport::Transport::H1Clear, http, "localhost", &[]).await.unwrap();
    assert_eq!(c.get("/healthz").await.unwrap().status, http::StatusCode::OK);
    drop(c);

    let pid = child.id().unwrap() as i32;
    assert_eq!(unsafe_kill(pid), 0);
    // The rest of the log, to its end (the process exits): the shutdown is
    // logged, and with nothing in flight it does not wait out the grace
    // period (3 s) for responses. The time limit is only a sanity bound
    // against a hang, generous for a loaded machine.
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(strip_ansi(&line));
        }
        rest
    })
    .await
    .expect("the log did not end after SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("no exit").unwrap();
    assert!(status.success(), "exit status {status:?}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    assert!(!rest.iter().any(|l| l.contains("grace period")), "an idle origin waited for responses: {rest:?}");
}

/// Started on port 0, `serve` writes the ports it got to `--ports-file`
/// (no port picked beforehand and released): the ones its log names, h3 and
/// https sharing one number as the defaults do, and so http and the h3 ingest
/// (the encoder relay finds the h3 ingest on the --http port number), and
/// they answer.
#[tokio::test]
async fn serve_on_port_0_reports_its_ports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports");
    let args = ["--h3", "127.0.0.1:0", "--https", "127.0.0.1:0", "--ports-file", file.to_str().unwrap()];
    let mut child = spawn_serve(&args, dir.path(), Some("info"));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The log's addresses: "listening" lines of the TCP listeners, of h3 and
    // of the h3 ingest (named as in the ports file).
    let mut logged = std::collections::BTreeMap::new();
    while logged.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("listening lines")
            .unwrap()
            .expect("serve exited");
        let plain = strip_ansi(&line);
        let Some(addr) = plain.split("addr=").nth(1).and_then(|a| a.split_whitespace().next()) else { continue };
        let port: u16 = addr.parse::<std::net::SocketAddr>().unwrap().port();
        if plain.contains("listening") {
            let name = plain.split("listener=\"").nth(1).unwrap().split('"').next().unwrap().replace('-', "_");
            logged.insert(name, port);
        }
    }
    let written: std::collections::BTreeMap<String, u16> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(written, logged, "ports file against the log");
    assert!(written.values().all(|&p| p != 0), "{written:?}");
    assert_eq!(written["h3"], written["https"], "h3 and https share one port");
    assert_eq!(written["h3_ingest"], written["http"], "http and the h3 ingest share one port");
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], written["http"]));
    let mut c =
        h3live::client::Client::connect(h3live::transport::Transport::H1Clear, http, "localhost", &[]).await.unwrap();
    assert_eq!(c.get("/healthz").await.unwrap().status, http::StatusCode::OK);
    let _ = child.kill().await;
}

/// `--moq` on port 0: the ports file names the MoQ endpoint's port, and its
/// read-only TCP twin answers on that same number (the MoQ player fetches the
/// certificate hash there before it opens WebTransport on UDP).
#[tokio::test]
async fn moq_on_port_0_is_reported_and_shares_its_number_with_the_tcp_twin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports");
    let args = ["--h3", "off", "--https", "off", "--moq", "127.0.0.1:0", "--ports-file", file.to_str().unwrap()];
    let mut child = spawn_serve(&args, dir.path(), None);
    // The ports file appears (renamed into place, whole) once every listener is bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&file) {
            break t;
        }
        assert!(child.try_wait().unwrap().is_none(), "serve exited before writing its ports");
        assert!(std::time::Instant::now() < deadline, "no ports file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let moq: u16 = text.lines().find_map(|l| l.strip_prefix("moq=")).expect("moq in the ports file").parse().unwrap();
    assert_ne!(moq, 0, "{text}");
    let twin = std::net::SocketAddr::from(([127, 0, 0, 1], moq));
    let mut c =
        h3live::client::Client::connect(h3live::transport::Transport::H1Clear, twin, "localhost", &[]).await.unwrap();
    assert_eq!(c.get("/certificate.sha256").await.unwrap().status, http::StatusCode::OK);
    let _ = child.kill().await;
}

/// Read the log until the "listening" line of `listener` and return its
/// address; every line read is kept in `seen` (without colours).
async fn listening_addr(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    listener: &str,
    seen: &mut Vec<String>,
) -> std::net::SocketAddr {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("serve exited");
        let plain = strip_ansi(&line);
        let found = plain.contains("listening") && plain.contains(&format!("listener=\"{listener}\""));
        let addr = found.then(|| plain.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap().to_string());
        seen.push(plain);
        if let Some(addr) = addr {
            return addr.parse().unwrap();
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `h3live serve` with cleartext HTTP on an ephemeral port, `listeners` for
/// h3/https, no h1/h2-only listeners, certificates generated under `dir`,
/// stderr piped (the log) and `RUST_LOG` set to `log` or removed.
fn spawn_serve(listeners: &[&str], dir: &std::path::Path, log: Option<&str>) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["serve", "--http", "127.0.0.1:0"])
        .args(listeners)
        .args(["--https-h1", "off", "--https-h2", "off", "--cert-dir"])
        .arg(dir.join("certs"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match log {
        Some(l) => cmd.env("RUST_LOG", l),
        None => cmd.env_remove("RUST_LOG"),
    };
    cmd.spawn().unwrap()
}

/// SIGTERM via the `kill` command (no libc dependency for one call).
fn unsafe_kill(pid: i32) -> i32 {
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().map_or(1, |s| s.code().unwrap_or(1))
}

/// With RUST_LOG unset, the origin's own INFO lines are shown (the default
/// filter turns `h3` down, and a bare `h3` directive also matched `h3live`).
#[tokio::test]
async fn default_log_filter_shows_the_origins_own_info_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&["--h3", "off", "--https", "off"], dir.path(), None);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if strip_ansi(&line).contains("listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no \"listening\" line with the default log filter");
    let _ = child.kill().await;
}

/// Zero timeouts, and timeouts of microseconds, are refused with a clear message instead
/// of breaking what they time (`--idle-timeout 0s` made quinn drop every QUIC Initial;
/// 500us made every h3 request time out with nothing logged).
#[tokio::test]
async fn zero_timeouts_are_refused() {
    for (flag, value) in [
        "--idle-timeout",
        "--send-timeout",
        "--ingest-idle-timeout",
        "--handshake-timeout",
        "--header-read-timeout",
        "--quic-idle-timeout",
        "--h2-ping-timeout",
    ]
    .into_iter()
    .flat_map(|flag| [(flag, "0s"), (flag, "500us")])
    // Counts and sizes whose 0 (or tiny value) would silently break serving.
    .chain([
        ("--max-connections", "0"),
        ("--max-streams", "0"),
        ("--max-ingest-connections", "0"),
        ("--keep-segments", "0"),
        ("--max-header-size", "100"),
        ("--hls-part-target", "0s"),
        ("--max-static-memory", "1K"),
    ]) {
        let child = tokio::process::Command::new(BIN)
            .args(["serve", "--http", "off", "--h3", "off", "--https", "off", "--https-h1", "off", "--https-h2", "off"])
            .args([flag, value])
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{flag} {value} accepted: serve is running"))
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && err.contains("outside the accepted range"), "{flag} {value}: {err}");
    }
}

/// 10,000 refused ingest requests (no token) and 10,000 connections refused
/// by the per-address limit write a few dozen log lines at the default
/// level, not one per refusal; /metrics counts every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_and_logged_at_doubling_counts() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--h3", "off", "--https", "off", "--ingest-token", "secret", "--max-connections-per-ip", "1"];
    let mut child = spawn_serve(&args, dir.path(), None);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let http = listening_addr(&mut lines, "http", &mut seen).await;
    let counter = tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok(Some(_)) = lines.next_line().await {
            n += 1;
        }
        n
    });
    // One keep-alive connection from 127.0.0.2 sends the PUTs; each gets 401.
    let mut c = h3live::client::Connector::from_source(
        h3live::transport::Transport::H1Clear,
        http,
        "localhost",
        &[],
        Some([127, 0, 0, 2].into()),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    for i in 0..10_000 {
        let r = c.request(http::Method::PUT, &format!("/live/log/seg-{i}.m4s")).await.unwrap();
        assert_eq!(r.status, http::StatusCode::UNAUTHORIZED);
    }
    // A second connection from 127.0.0.2 is over its limit (1): closed at once.
    for _ in 0..10_000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
        let mut s = socket.connect(http).await.unwrap();
        let mut b = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
    }
    let metrics = c.get("/metrics").await.unwrap().bytes().await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("h3live_ingest_rejected_total{reason=\"unauthorized\"} 10000"), "{metrics}");
    assert!(metrics.contains("h3live_connections_refused_total{listener=\"http\",reason=\"per_ip\"} 10000"));
    assert_eq!(unsafe_kill(child.id().unwrap() as i32), 0);
    let _ = child.wait().await;
    let written = seen.len() + counter.await.unwrap();
    // Start-up and shutdown lines, then 14 doublings of each refusal class.
    assert!(written <= 48, "{written} log lines for 20,000 refusals");
}

/// A failing TLS handshake (here the client does not trust the certificate)
/// is visible with RUST_LOG unset, without flooding the log: the 1st and
/// 2nd failure of a listener are logged at warn, the 3rd is not.
#[tokio::test]
async fn failed_tls_handshakes_are_logged_at_warn_without_flooding() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(&["--h3", "off", "--https", "127.0.0.1:0"], dir.path(), None);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let https = listening_addr(&mut lines, "https", &mut Vec::new()).await;
    // A client with no trusted roots: it rejects the origin's certificate
    // and tells the origin so with a TLS alert.
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        assert!(connector.connect(name, tcp).await.is_err(), "an untrusted certificate was accepted");
    }
    let mut failures = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await {
        let plain = strip_ansi(&line);
        if plain.contains("handshake failed") {
            failures.push(plain);
        }
    }
    let _ = child.kill().await;
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().all(|l| l.contains("WARN") && l.contains("TLS handshake failed")), "{failures:?}");
    assert!(failures[0].contains("failures=1") && failures[1].contains("failures=2"), "{failures:?}");
}

/// The h3 socket gets the kernel buffer `--udp-buffer` asks for (Linux's
/// default, 208 KiB, overflowed at 500 viewers), and the log says what it
/// got (the kernel's figure: twice what it granted). Checked from outside with `ss` when it is there.
#[tokio::test]
async fn h3_socket_gets_the_udp_buffer_it_asks_for() {
    const WANT: u64 = 4 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        spawn_serve(&["--h3", "127.0.0.1:0", "--https", "off", "--udp-buffer", "4M"], dir.path(), Some("info"));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut logged, mut port) = (None, None);
    while logged.is_none() || port.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("no buffer and listening lines in the log")
            .unwrap()
            .expect("serve exited");
        let plain = strip_ansi(&line);
        let field = |name: &str| {
            plain.split(&format!("{name}=")).nth(1).map(|v| v.split_whitespace().next().unwrap().to_string())
        };
        if plain.contains("h3 UDP socket buffers") {
            logged = Some(field("receive").unwrap().parse::<u64>().unwrap());
        }
        if plain.contains("h3 (QUIC) listening") {
            port = Some(field("addr").unwrap().parse::<std::net::SocketAddr>().unwrap().port());
        }
    }
    let logged = logged.unwrap();
    // Root may pass net.core.rmem_max (SO_RCVBUFFORCE); anyone else gets at most that.
    let rmem_max: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    let expect = 2 * if root { WANT } else { WANT.min(rmem_max) };
    assert!(logged >= expect, "logged receive buffer {logged}, expected at least {expect}");
    match Command::new("ss").args(["-u", "-l", "-n", "-m", &format!("sport = :{}", port.unwrap())]).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let rb: u64 = text
                .split("rb")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no rb in ss output: {text}"));
            assert_eq!(rb, logged, "ss sees another receive buffer than the log says: {text}");
        }
        _ => eprintln!("ss not available: checked the logged size only"),
    }
    let _ = child.kill().await;
}

/// `serve` with no state flag keeps init segments in its default state
/// directory, one per ingest address (under `$XDG_STATE_HOME`, here a
/// temporary directory; `HOME` too, so nothing is written to the real one):
/// killed with SIGKILL and started again on the same ingest address, it
/// serves the init segment it had, byte for byte, and a second origin on the
/// same machine with the same default kept its own.
#[tokio::test]
async fn serve_keeps_init_segments_across_a_kill_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/live/s/init-stream0.m4s";
    let mine: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let other = b"another origin's init segment".to_vec();

    let (mut a, addr_a) = spawn_stateful(dir.path(), None).await;
    let (mut b, addr_b) = spawn_stateful(dir.path(), None).await;
    assert_eq!(put(addr_a, path, &mine).await, http::StatusCode::CREATED);
    assert_eq!(put(addr_b, path, &other).await, http::StatusCode::CREATED);
    // The answer comes once the file is written: kill at once.
    let kept = dir.path().join(format!("state/h3live/127.0.0.1-{}/s/init-stream0.m4s", addr_a.port()));
    assert_eq!(std::fs::read(&kept).unwrap(), mine, "{}", kept.display());
    a.start_kill().unwrap();
    a.wait().await.unwrap();

    let (_a, again) = spawn_stateful(dir.path(), Some(addr_a)).await;
    assert_eq!(get(again, path).await, (http::StatusCode::OK, mine));
    assert_eq!(get(addr_b, path).await, (http::StatusCode::OK, other));
    let _ = b.start_kill();

    // `--help` states the default and how to turn it off.
    let help = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("XDG_STATE_HOME") && help.contains("`none`: keep nothing"), "{help}");
}

/// `serve` on `at` (a fresh loopback port when `None`) with only the
/// cleartext listener and no state flag, in an environment whose state and
/// home directories are under `dir`; returns it once it listens, with the
/// ingest address.
async fn spawn_stateful(
    dir: &std::path::Path,
    at: Option<std::net::SocketAddr>,
) -> (tokio::process::Child, std::net::SocketAddr) {
    // A fixed port (the default is keyed by it, and port 0 has none): picked
    // free, so another process may take it first; then try another.
    for _ in 0..5 {
        let addr = at.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
        let mut child = tokio::process::Command::new(BIN)
            .args(["serve", "--http", &addr.to_string()])
            .args(["--h3", "off", "--https", "off", "--https-h1", "off", "--https-h2", "off"])
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("HOME", dir.join("home"))
            .env_remove("STATE_DIRECTORY")
            .env_remove("H3LIVE_STATE_DIR")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let listening = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let plain = strip_ansi(&line);
                let up = plain.contains("listening") && plain.contains("listener=\"http\"");
                seen.push(plain);
                if up {
                    return true;
                }
            }
            false
        })
        .await;
        if listening == Ok(true) {
            // Keep draining the log so the origin never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, addr);
        }
        assert!(at.is_none() && seen.iter().any(|l| l.contains("binding --http")), "serve did not start: {seen:?}");
    }
    panic!("no free port for serve");
}

async fn put(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> http::StatusCode {
    let mut c =
        h3live::client::Client::connect(h3live::transport::Transport::H1Clear, addr, "localhost", &[]).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(bytes::Bytes::copy_from_slice(body)).await.unwrap();
    drop(tx);
    c.request_streaming(http::Method::PUT, path, rx).await.unwrap().status
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (http::StatusCode, Vec<u8>) {
    let mut c =
        h3live::client::Client::connect(h3live::transport::Transport::H1Clear, addr, "localhost", &[]).await.unwrap();
    let mut r = c.get(path).await.unwrap();
    let body = r.bytes().await.unwrap();
    (r.status, body.to_vec())
}
