//! MoQ viewers for `h3live load -t moq`: one WebTransport session and one
//! moq-net subscriber per viewer, following the broadcast of the stream
//! from its `hang` catalog.
//!
//! Per frame (one CMAF fragment) it records the arrival of the frame's last
//! byte and, from the fragment's `prft`, the latency like the HTTP viewers;
//! the group joined on (delivered from its start, partly backlog) is not
//! measured. A frame that arrives later than its media-time distance to the
//! previous one plus `--stall-margin` is a stall, and so is a group given up
//! because the viewer fell more than 2 s (its subscription's max age) behind
//! the newest one (it then goes on with newer groups, as a player skips
//! ahead). A group that ends in an error (its segment's upload broke) is
//! counted as an error and the subscription goes on; any other error, or a
//! track that ends, starts a new session after a second (counted too).
//!
//! The certificate is pinned by its SHA-256 (`--cert-hash`, else fetched from
//! `http://ADDR/certificate.sha256`, the origin's read-only TCP listener on
//! the MoQ port), as a browser does with `serverCertificateHashes`. Sessions
//! offer the WebTransport subprotocol `moq-lite-05`, the version Chromium's
//! `@moq/net` speaks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::cmaf::FragmentTracker;
use super::viewer::{Tracks, Viewers};

/// The WebTransport subprotocol the load tool offers.
pub const PROTOCOL: &str = "moq-lite-05";

/// What every MoQ viewer shares.
pub struct MoqShared {
    /// WebTransport client (one quinn endpoint, shared by a group of viewers).
    pub client: web_transport_quinn::Client,
    /// `https://ADDR/`.
    pub url: url::Url,
    /// Broadcast path (the stream name).
    pub broadcast: String,
    /// What every viewer shares.
    pub viewers: Arc<Viewers>,
}

/// A WebTransport client whose QUIC endpoint has the load tool's UDP buffers
/// and trusts the server certificate with SHA-256 `hash`.
pub fn client(addr: SocketAddr, hash: Vec<u8>) -> Result<web_transport_quinn::Client> {
    let provider = crate::transport::tls::provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedHash { hash, provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![web_transport_quinn::ALPN.as_bytes().to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    // A viewer notices a dead origin (kill -9) within seconds and reconnects.
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(6)).ok());
    config.transport_config(Arc::new(t));
    let bind: SocketAddr = if addr.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    let socket = std::net::UdpSocket::bind(bind)?;
    crate::transport::set_udp_buffers(&socket, crate::transport::UDP_BUFFER);
    let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, Arc::new(quinn::TokioRuntime))?;
    Ok(web_transport_quinn::Client::new(endpoint, config))
}

/// The hex SHA-256 the origin publishes at `http://addr/certificate.sha256`.
pub async fn fetch_hash(addr: SocketAddr) -> Result<String> {
    let mut c = crate::client::Client::connect(crate::transport::Transport::H1Clear, addr, "localhost", &[])
        .await
        .with_context(|| format!("connecting to http://{addr} for the certificate hash (or give --cert-hash)"))?;
    let mut r = c.get("/certificate.sha256").await?;
    let body = r.bytes().await?;
    if r.status != http::StatusCode::OK {
        bail!("GET http://{addr}/certificate.sha256: {}", r.status);
    }
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

/// Bytes of a hex string.
pub fn unhex(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{s:?} is not a hex SHA-256");
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex")).collect()
}

/// Accepts exactly the certificate whose SHA-256 is `hash`.
#[derive(Debug)]
struct PinnedHash {
    hash: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedHash {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.hash.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("certificate SHA-256 does not match the pinned hash".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Run MoQ viewer `id` until `shared.viewers.stop`, starting a new session a second
/// after each error.
pub async fn run(shared: Arc<MoqShared>, id: usize) {
    super::viewer::reconnecting(&shared.viewers.totals, &shared.viewers.stop, id, || session(&shared, id)).await
}

async fn session(shared: &MoqShared, id: usize) -> Result<()> {
    let stats = &shared.viewers.totals.viewers[id];
    let request =
        web_transport_quinn::proto::ConnectRequest::new(shared.url.clone()).with_protocol(PROTOCOL.to_string());
    let wt = shared.client.connect(request).await.context("WebTransport connect")?;
    let (origin, driver) = moq_net::origin::Producer::new(Default::default());
    let origin_driver = tokio::spawn(moq_net::time::run(driver));
    let _abort_origin = AbortOnDrop(origin_driver);
    let (_session, driver) = moq_net::Client::new()
        .with_subscriber(origin.clone())
        .connect(std::time::Instant::now(), wt)
        .await
        .context("MoQ handshake")?;
    let session_driver = tokio::spawn(moq_net::time::run(driver));
    let _abort_session = AbortOnDrop(session_driver);
    stats.connected.store(1, Ordering::Relaxed);
    let consumer = origin.consume();
    let broadcast =
        tokio::time::timeout(shared.viewers.wait_for_stream, consumer.routed_broadcast(shared.broadcast.as_str()))
            .await
            .with_context(|| format!("broadcast {:?} not announced in time", shared.broadcast))?
            .context("broadcast")?;
    let mut catalog = broadcast
        .track(hang::Catalog::DEFAULT_NAME)?
        .subscribe(hang::Catalog::default_subscription())
        .await
        .context("catalog subscription")?;
    let mut group = catalog.recv_group().await?.context("catalog track ended")?;
    let frame = group.read_frame().await?.context("empty catalog group")?;
    stats.bytes.fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
    let cat = hang::catalog::Catalog::<()>::from_slice(&frame.payload).context("catalog")?;
    if shared.viewers.idle {
        std::future::pending::<()>().await;
    }
    let names = pick(&cat, shared.viewers.tracks, shared.viewers.representation.as_ref())?;
    let follows = names.iter().map(|name| follow(shared, id, &broadcast, name));
    futures_util::future::try_join_all(follows).await?;
    Ok(())
}

/// Aborts a driver task when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<moq_net::Error>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The track names to follow.
fn pick(
    cat: &hang::catalog::Catalog,
    tracks: Tracks,
    representation: Option<&super::mpd::Representation>,
) -> Result<Vec<String>> {
    use super::mpd::Representation;
    let area = |name: &String| {
        let v = &cat.video.renditions[name];
        u64::from(v.coded_width.unwrap_or(0)) * u64::from(v.coded_height.unwrap_or(0))
    };
    let all: Vec<String> = cat.video.renditions.keys().cloned().collect();
    let video: Vec<String> = match representation {
        None => all,
        Some(Representation::Lowest) => all.into_iter().min_by_key(area).into_iter().collect(),
        Some(Representation::Highest) => all.into_iter().max_by_key(area).into_iter().collect(),
        Some(Representation::Id(id)) => {
            let named = [id.clone(), format!("stream{id}")];
            match named.into_iter().find(|n| cat.video.renditions.contains_key(n)) {
                Some(n) => vec![n],
                None => bail!("no video rendition {id:?} in the catalog"),
            }
        }
    };
    let audio: Vec<String> = cat.audio.renditions.keys().cloned().collect();
    let names: Vec<String> = match tracks {
        Tracks::All => video.into_iter().chain(audio).collect(),
        Tracks::Video => video.into_iter().take(1).collect(),
        Tracks::Audio => audio.into_iter().take(1).collect(),
    };
    if names.is_empty() {
        bail!("no {tracks:?} rendition in the catalog");
    }
    Ok(names)
}

/// Follow one track from the live edge.
async fn follow(shared: &MoqShared, id: usize, broadcast: &moq_net::broadcast::Consumer, name: &str) -> Result<()> {
    let stats = &shared.viewers.totals.viewers[id];
    // A group may trail the newest by up to this much before it is skipped.
    let subscription = moq_net::track::Subscription::default().with_max_age(Duration::from_secs(2));
    let mut track =
        broadcast.track(name)?.subscribe(subscription).await.with_context(|| format!("subscribe {name}"))?;
    // The group joined on comes partly from the backlog: not measured.
    let mut measure = false;
    // Arrival and media time of the previous frame, for stalls.
    let mut previous: Option<(Instant, Duration)> = None;
    loop {
        let Some(mut group) = track.recv_group().await.with_context(|| format!("track {name}"))? else {
            bail!("track {name} ended");
        };
        loop {
            let frame = match group.read_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                // The viewer fell more than its max age behind: moq-net gave
                // the group up and the next one is newer. A player skips
                // ahead the same way; it counts as a stall, not an error.
                Err(moq_net::Error::Old) => {
                    stats.stalls.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // A group that ended in an error (its segment's upload broke,
                // e.g. the encoder restarted): counted, and the subscription
                // goes on with the next group (the track continues).
                // The session itself failed: one error, a new session.
                Err(e @ moq_net::Error::Transport(_)) => return Err(e).with_context(|| format!("track {name}")),
                Err(e) => {
                    shared.viewers.totals.error(id, format!("group ended in an error: {e}"));
                    break;
                }
            };
            let now = SystemTime::now();
            let arrived = Instant::now();
            stats.bytes.fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
            stats.fragments.fetch_add(1, Ordering::Relaxed);
            let media = Duration::from_micros(frame.timestamp.as_micros() as u64);
            if let Some((at, was)) = previous {
                let due = media.saturating_sub(was) + shared.viewers.stall_margin;
                if measure && arrived.duration_since(at) > due {
                    stats.stalls.fetch_add(1, Ordering::Relaxed);
                }
            }
            previous = Some((arrived, media));
            if measure {
                let mut tracker = FragmentTracker::default();
                tracker.feed(&frame.payload, |f| {
                    if let Some(prft) = f.prft {
                        shared.viewers.totals.latency(now.duration_since(prft).unwrap_or_default());
                    }
                });
            }
        }
        stats.segments.fetch_add(1, Ordering::Relaxed);
        measure = true;
    }
}
