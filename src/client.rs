//! A small streaming HTTP client over the same four transports the origin
//! serves (cleartext HTTP/1.1, HTTP/1.1 over TLS, HTTP/2, HTTP/3), built on
//! hyper's client connections and h3's client. Used by the test suite and by
//! tools that act as viewers; bodies are read piece by piece as they arrive.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::{Buf, Bytes};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::sync::mpsc;

use crate::quic_stats::{QuicTally, Tracked};
use crate::transport::Transport;

/// A TLS client config trusting `roots`, offering `alpn`.
pub fn tls_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).context("adding a trusted certificate")?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(crate::transport::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// How an HTTP/3 client that must notice a vanished server quickly, and keep
/// up with a live upload over a lossy path, tunes its QUIC connections (see
/// [`Connector::quic_tuning`]).
#[derive(Debug, Clone, Copy)]
pub struct QuicTuning {
    /// A connection without a packet from the server for this long is dead
    /// (keep-alives every third of it).
    pub idle_timeout: std::time::Duration,
    /// Congestion controller.
    pub congestion: crate::transport::Congestion,
}

/// quinn's client config over `tls` (0-RTT allowed): quinn's defaults with
/// keep-alives every 5 s, or `tuning`.
fn quic_client_config(tls: &rustls::ClientConfig, tuning: Option<QuicTuning>) -> Result<quinn::ClientConfig> {
    let mut tls = tls.clone();
    tls.enable_early_data = true;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(tuning.map_or(std::time::Duration::from_secs(5), |q| q.idle_timeout / 3)));
    if let Some(q) = tuning {
        t.max_idle_timeout(Some(quinn::IdleTimeout::try_from(q.idle_timeout)?));
        q.congestion.apply(&mut t);
    }
    cfg.transport_config(Arc::new(t));
    Ok(cfg)
}

/// ALPN a transport asks for.
fn alpn(t: Transport) -> &'static [&'static [u8]] {
    match t {
        Transport::H1Clear | Transport::H1Tls => &[b"http/1.1"],
        Transport::H2 => &[b"h2"],
        Transport::H3 => &[b"h3"],
    }
}

/// One connection to an origin.
pub struct Client {
    /// The protocol spoken.
    transport: Transport,
    /// Host header / :authority.
    authority: String,
    /// The request sender.
    conn: Conn,
}

/// Request body type of the hyper connections: empty, or fed chunk by chunk.
type ReqBody = UnsyncBoxBody<Bytes, UploadAborted>;

/// Pieces an [`Upload`] over HTTP/1.1 or HTTP/2 may queue ahead of hyper
/// (its backpressure: [`Upload::send`] waits beyond this).
const UPLOAD_QUEUE: usize = 4;

/// The error an aborted upload's body ends with: hyper then closes an
/// HTTP/1.1 connection without the terminating chunk and resets an HTTP/2
/// stream, so the server sees a broken body, never a clean short one.
#[derive(Debug, thiserror::Error)]
#[error("upload aborted by the client")]
pub struct UploadAborted;

/// A request whose body is being sent (see [`Client::upload`]).
pub struct Upload(UploadKind);

/// What the task awaiting an HTTP/1.1 or HTTP/2 upload's response ended with.
type Answer = Result<hyper::Result<http::Response<Incoming>>, tokio::task::JoinError>;

enum UploadKind {
    /// HTTP/1.1 or HTTP/2: pieces go to hyper through a channel; the response
    /// is awaited in its own task (hyper writes the body meanwhile).
    Hyper {
        tx: mpsc::Sender<Result<Bytes, UploadAborted>>,
        resp: tokio::task::JoinHandle<hyper::Result<http::Response<Incoming>>>,
        /// The response task's result once `send` had to await it (hyper
        /// dropped the body early), so that `finish` does not poll it again.
        answer: Option<Answer>,
    },
    /// HTTP/3: DATA frames written on the request stream.
    H3(Box<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>>),
}

impl Upload {
    /// Send one piece of the body; returns once the transport took it (h3:
    /// flow control; h1/h2: hyper's queue). An error means the request
    /// failed (connection lost, stream reset).
    pub async fn send(&mut self, data: Bytes) -> Result<()> {
        match &mut self.0 {
            UploadKind::Hyper { tx, resp, answer } => {
                if tx.send(Ok(data)).await.is_err() {
                    // hyper dropped the body: the request is over, say why
                    // (and keep the answer for `finish`).
                    if answer.is_none() {
                        *answer = Some(resp.await);
                    }
                    return Err(match answer.as_ref() {
                        Some(Ok(Err(e))) => anyhow!("upload failed: {e}"),
                        Some(Ok(Ok(r))) => anyhow!("the server answered {} before the body ended", r.status()),
                        Some(Err(e)) => anyhow!("upload task: {e}"),
                        None => anyhow!("upload task: no answer"),
                    });
                }
                Ok(())
            }
            UploadKind::H3(stream) => stream.send_data(data).await.context("h3 upload"),
        }
    }

    /// End the body cleanly and wait for the response.
    pub async fn finish(self) -> Result<ClientResponse> {
        match self.0 {
            UploadKind::Hyper { tx, resp, answer } => {
                drop(tx);
                let answer = match answer {
                    Some(a) => a,
                    None => resp.await,
                };
                let resp = answer.context("upload task")?.context("upload failed")?;
                let (parts, body) = resp.into_parts();
                Ok(ClientResponse { status: parts.status, headers: parts.headers, body: RespBody::Hyper(body) })
            }
            UploadKind::H3(mut stream) => {
                stream.finish().await.context("h3: finishing the upload")?;
                let resp = stream.recv_response().await.context("h3 upload response")?;
                Ok(ClientResponse {
                    status: resp.status(),
                    headers: resp.headers().clone(),
                    body: RespBody::H3(stream),
                })
            }
        }
    }

    /// Break the body on purpose: the server sees an upload that did not
    /// end (HTTP/1.1: the connection closes without the terminating chunk;
    /// h2/h3: the stream is reset). An HTTP/1.1 connection is unusable after it.
    pub async fn abort(self) {
        match self.0 {
            UploadKind::Hyper { tx, resp, answer } => {
                let _ = tx.send(Err(UploadAborted)).await;
                drop(tx);
                if answer.is_none() {
                    let _ = resp.await;
                }
            }
            UploadKind::H3(mut stream) => {
                stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                stream.stop_sending(h3::error::Code::H3_REQUEST_CANCELLED);
            }
        }
    }
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
    H3 {
        send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        /// Kept alive for as long as the connection is used.
        _endpoint: quinn::Endpoint,
        /// Counts the connection in the connector's tally, if it has one.
        _tracked: Option<Arc<Tracked>>,
    },
}

/// A response whose body is read as it arrives.
pub struct ClientResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    body: RespBody,
}

enum RespBody {
    Hyper(Incoming),
    H3(Box<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>>),
}

impl ClientResponse {
    /// The next piece of the body as the transport delivered it; `None` at a
    /// clean end, `Some(Err)` if the body broke (connection closed before the
    /// end, stream reset).
    pub async fn chunk(&mut self) -> Option<Result<Bytes>> {
        match &mut self.body {
            RespBody::Hyper(b) => {
                crate::frames::next_data(b).await.map(|r| r.map_err(|e| anyhow!(e).context("body broken")))
            }
            RespBody::H3(s) => match s.recv_data().await {
                Ok(Some(mut buf)) => Some(Ok(buf.copy_to_bytes(buf.remaining()))),
                Ok(None) => None,
                Err(e) => Some(Err(anyhow!(e).context("h3 stream broken"))),
            },
        }
    }

    /// The whole body; an error if it broke.
    pub async fn bytes(&mut self) -> Result<Bytes> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await {
            out.extend_from_slice(&c?);
        }
        Ok(Bytes::from(out))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// HTTP/3 client settings that differ from quinn's defaults.
#[derive(Debug, Clone, Default)]
pub struct QuicClientOptions {
    /// The `max_udp_payload_size` transport parameter: the largest datagram
    /// the client accepts (quinn's default 1472 fits a 1500-byte Ethernet MTU).
    pub max_udp_payload_size: Option<u16>,
}

/// Everything needed to open connections to one origin over one transport,
/// built once and shared by many clients: the TLS config and, for HTTP/3, the
/// quinn client endpoint (one UDP socket carrying many QUIC connections).
#[derive(Clone)]
pub struct Connector {
    /// The protocol spoken.
    transport: Transport,
    /// Where to connect.
    addr: SocketAddr,
    /// Checked against the certificate and sent as the authority.
    server_name: String,
    /// TLS config for TLS transports (`None` for cleartext).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Client endpoint for HTTP/3.
    endpoint: Option<quinn::Endpoint>,
    /// Where HTTP/3 connections are counted (quinn's statistics), if anywhere.
    tally: Option<Arc<QuicTally>>,
    /// Source address of the connections (any, if `None`).
    source: Option<std::net::IpAddr>,
}

impl Connector {
    /// A connector for `transport` to `addr`. `roots` must trust the origin's
    /// certificate for every transport but cleartext.
    pub fn new(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
    ) -> Result<Connector> {
        Connector::build(transport, addr, server_name, roots, &QuicClientOptions::default(), None)
    }

    /// [`Connector::new`] with HTTP/3 client options.
    pub fn with_options(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
        quic: &QuicClientOptions,
    ) -> Result<Connector> {
        Connector::build(transport, addr, server_name, roots, quic, None)
    }

    /// [`Connector::new`] whose connections come from the local address
    /// `source` (e.g. one of 127.0.0.0/8, to look like many clients).
    pub fn from_source(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
        source: Option<std::net::IpAddr>,
    ) -> Result<Connector> {
        Connector::build(transport, addr, server_name, roots, &QuicClientOptions::default(), source)
    }

    fn build(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
        quic: &QuicClientOptions,
        source: Option<std::net::IpAddr>,
    ) -> Result<Connector> {
        let tls = match transport {
            Transport::H1Clear => None,
            _ => Some(tls_config(roots, alpn(transport))?),
        };
        let endpoint = match (&tls, transport) {
            (Some(tls), Transport::H3) => {
                let bind: SocketAddr = match source {
                    Some(ip) => SocketAddr::new(ip, 0),
                    None if addr.is_ipv6() => "[::]:0".parse()?,
                    None => "0.0.0.0:0".parse()?,
                };
                // Many connections share this socket: give it room (see set_udp_buffers).
                let socket = std::net::UdpSocket::bind(bind)?;
                crate::transport::set_udp_buffers(&socket, crate::transport::UDP_BUFFER);
                let mut ep_config = quinn::EndpointConfig::default();
                if let Some(max) = quic.max_udp_payload_size {
                    ep_config.max_udp_payload_size(max)?;
                }
                let mut endpoint = quinn::Endpoint::new(ep_config, None, socket, Arc::new(quinn::TokioRuntime))?;
                endpoint.set_default_client_config(quic_client_config(tls, None)?);
                Some(endpoint)
            }
            _ => None,
        };
        Ok(Connector { transport, addr, server_name: server_name.to_string(), tls, endpoint, tally: None, source })
    }

    /// Count every HTTP/3 connection this connector opens in `tally`.
    pub fn with_tally(mut self, tally: Arc<QuicTally>) -> Connector {
        self.tally = Some(tally);
        self
    }

    /// A TCP connection to the origin, from `source` if set.
    async fn tcp(&self) -> Result<tokio::net::TcpStream> {
        let tcp = match self.source {
            None => tokio::net::TcpStream::connect(self.addr).await,
            Some(ip) => {
                let socket =
                    if ip.is_ipv6() { tokio::net::TcpSocket::new_v6()? } else { tokio::net::TcpSocket::new_v4()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await
            }
        };
        let tcp = tcp.context("TCP connect")?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// The transport connections are made over.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// HTTP/3: new connections get `tuning` (an idle timeout instead of
    /// quinn's 30 s, a congestion controller instead of quinn's CUBIC): what
    /// a client that must notice a vanished server quickly and keep up with a
    /// live upload over a lossy path (the encoder relay) sets. No effect on
    /// other transports.
    pub fn quic_tuning(mut self, tuning: QuicTuning) -> Result<Connector> {
        if let (Some(tls), Some(endpoint)) = (&self.tls, self.endpoint.as_mut()) {
            endpoint.set_default_client_config(quic_client_config(tls, Some(tuning))?);
        }
        Ok(self)
    }

    /// Open one connection (for HTTP/3: one more QUIC connection on the
    /// shared endpoint).
    pub async fn connect(&self) -> Result<Client> {
        let (transport, addr, server_name) = (self.transport, self.addr, self.server_name.as_str());
        let authority = format!("{server_name}:{}", addr.port());
        let conn = match (transport, &self.tls, &self.endpoint) {
            (Transport::H1Clear, _, _) => {
                let tcp = self.tcp().await?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            (Transport::H1Tls | Transport::H2, Some(tls), _) => {
                let tcp = self.tcp().await?;
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                let name = ServerName::try_from(server_name.to_string())?;
                let tls = connector.connect(name, tcp).await.context("TLS handshake")?;
                let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                if negotiated.as_deref() != Some(alpn(transport)[0]) {
                    anyhow::bail!("server negotiated ALPN {:?}, wanted {transport}", negotiated.map(String::from_utf8));
                }
                let io = TokioIo::new(tls);
                if transport == Transport::H2 {
                    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                    tokio::spawn(conn);
                    Conn::H2(send)
                } else {
                    let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                    tokio::spawn(conn);
                    Conn::H1(send)
                }
            }
            (Transport::H3, _, Some(endpoint)) => {
                let conn = endpoint.connect(addr, server_name)?.await.context("QUIC handshake")?;
                let tracked = self.tally.as_ref().map(|t| Arc::new(t.track(&conn)));
                let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
                tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                Conn::H3 { send, _endpoint: endpoint.clone(), _tracked: tracked }
            }
            _ => anyhow::bail!("connector for {transport} has no TLS config"),
        };
        Ok(Client { transport, authority, conn })
    }
}

impl Client {
    /// Connect to `addr` over `transport`. `server_name` is checked against the
    /// certificate (TLS/QUIC) and sent as the authority; `roots` must trust the
    /// origin's certificate for every transport but cleartext. Many
    /// connections to one origin should share a [`Connector`] instead.
    pub async fn connect(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
    ) -> Result<Client> {
        Connector::new(transport, addr, server_name, roots)?.connect().await
    }

    /// The transport of this connection.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Another handle on the same connection, for concurrent requests
    /// (HTTP/2 and HTTP/3 streams); `None` for HTTP/1.1, which carries one
    /// request at a time.
    pub fn share(&self) -> Option<Client> {
        let conn = match &self.conn {
            Conn::H1(_) => return None,
            Conn::H2(send) => Conn::H2(send.clone()),
            Conn::H3 { send, _endpoint, _tracked } => {
                Conn::H3 { send: send.clone(), _endpoint: _endpoint.clone(), _tracked: _tracked.clone() }
            }
        };
        Some(Client { transport: self.transport, authority: self.authority.clone(), conn })
    }

    /// Send a request without a body; the response body streams.
    pub async fn request(&mut self, method: Method, path: &str) -> Result<ClientResponse> {
        self.send(method, path, &[]).await
    }

    /// Send a request without a body and with extra header fields (e.g. `Range`).
    pub async fn request_with(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<ClientResponse> {
        self.send(method, path, headers).await
    }

    /// Send a request whose body is fed chunk by chunk through `body` (each
    /// piece goes out as it is received, HTTP/1.1 uses chunked encoding);
    /// the body ends cleanly when the sender is dropped. The response comes
    /// once the server answers, which for an origin's ingest is after the end
    /// of the body, so feed the channel from another task.
    pub async fn request_streaming(
        &mut self,
        method: Method,
        path: &str,
        mut body: mpsc::Receiver<Bytes>,
    ) -> Result<ClientResponse> {
        let mut up = self.upload(method, path, &[]).await?;
        while let Some(b) = body.recv().await {
            up.send(b).await?;
        }
        up.finish().await
    }

    /// Start a request whose body is sent piece by piece with
    /// [`Upload::send`] (each piece goes out at once: one HTTP/1.1 chunk or
    /// one h2/h3 DATA frame), ended with [`Upload::finish`] or broken on
    /// purpose with [`Upload::abort`].
    pub async fn upload(&mut self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Upload> {
        let scheme = if self.transport == Transport::H1Clear { "http" } else { "https" };
        let with = |mut b: http::request::Builder| {
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b
        };
        match &mut self.conn {
            Conn::H1(_) | Conn::H2(_) => {
                let (tx, rx) = mpsc::channel::<Result<Bytes, UploadAborted>>(UPLOAD_QUEUE);
                let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|r| (r.map(http_body::Frame::data), rx))
                }))
                .boxed_unsync();
                let resp = match &mut self.conn {
                    Conn::H1(send) => {
                        let req = with(Request::builder())
                            .method(method)
                            .uri(path)
                            .header(http::header::HOST, &self.authority)
                            .body(body)?;
                        send.ready().await?;
                        tokio::spawn(send.send_request(req))
                    }
                    Conn::H2(send) => {
                        let uri = format!("{scheme}://{}{path}", self.authority);
                        let req = with(Request::builder()).method(method).uri(uri).body(body)?;
                        send.ready().await?;
                        tokio::spawn(send.send_request(req))
                    }
                    Conn::H3 { .. } => unreachable!("matched above"),
                };
                Ok(Upload(UploadKind::Hyper { tx, resp, answer: None }))
            }
            Conn::H3 { send, .. } => {
                let uri = format!("{scheme}://{}{path}", self.authority);
                let req = with(Request::builder()).method(method).uri(uri).body(())?;
                let stream = send.send_request(req).await?;
                Ok(Upload(UploadKind::H3(Box::new(stream))))
            }
        }
    }

    async fn send(&mut self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<ClientResponse> {
        let with = |mut b: http::request::Builder| {
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b
        };
        let empty = || -> ReqBody { Empty::new().map_err(|never| match never {}).boxed_unsync() };
        let scheme = if self.transport == Transport::H1Clear { "http" } else { "https" };
        match &mut self.conn {
            Conn::H1(send) => {
                let req = with(Request::builder())
                    .method(method)
                    .uri(path)
                    .header(http::header::HOST, &self.authority)
                    .body(empty())?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let (parts, body) = resp.into_parts();
                Ok(ClientResponse { status: parts.status, headers: parts.headers, body: RespBody::Hyper(body) })
            }
            Conn::H2(send) => {
                let uri = format!("{scheme}://{}{path}", self.authority);
                let req = with(Request::builder()).method(method).uri(uri).body(empty())?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let (parts, body) = resp.into_parts();
                Ok(ClientResponse { status: parts.status, headers: parts.headers, body: RespBody::Hyper(body) })
            }
            Conn::H3 { send, .. } => {
                let uri = format!("{scheme}://{}{path}", self.authority);
                let req = with(Request::builder()).method(method).uri(uri).body(())?;
                let mut stream = send.send_request(req).await?;
                // The origin may answer a body-less request and drop its read
                // side (STOP_SENDING 0) before our FIN goes out; finishing then
                // fails although the response is on its way. A real failure
                // shows up in recv_response.
                if let Err(e) = stream.finish().await {
                    tracing::debug!(error = %e, "h3: finishing the request stream failed");
                }
                let resp = stream.recv_response().await?;
                Ok(ClientResponse {
                    status: resp.status(),
                    headers: resp.headers().clone(),
                    body: RespBody::H3(Box::new(stream)),
                })
            }
        }
    }

    /// GET `path`.
    pub async fn get(&mut self, path: &str) -> Result<ClientResponse> {
        self.request(Method::GET, path).await
    }
}
