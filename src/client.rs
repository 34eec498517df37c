//! A small streaming HTTP client over the same four transports the origin
//! serves (cleartext HTTP/1.1, HTTP/1.1 over TLS, HTTP/2, HTTP/3), built on
//! hyper's client connections and h3's client. Used by the test suite and by
//! tools that act as viewers; bodies are read piece by piece as they arrive.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::{Buf, Bytes};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};

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

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
    H3 {
        send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        /// Kept alive for as long as the connection is used.
        _endpoint: quinn::Endpoint,
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
            RespBody::Hyper(b) => loop {
                match b.frame().await? {
                    Err(e) => return Some(Err(anyhow!(e).context("body broken"))),
                    Ok(f) => {
                        if let Ok(d) = f.into_data() {
                            if !d.is_empty() {
                                return Some(Ok(d));
                            }
                        }
                    }
                }
            },
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

impl Client {
    /// Connect to `addr` over `transport`. `server_name` is checked against the
    /// certificate (TLS/QUIC) and sent as the authority; `tls` must trust the
    /// origin's certificate for every transport but cleartext.
    pub async fn connect(
        transport: Transport,
        addr: SocketAddr,
        server_name: &str,
        roots: &[CertificateDer<'static>],
    ) -> Result<Client> {
        let authority = format!("{server_name}:{}", addr.port());
        let conn = match transport {
            Transport::H1Clear => {
                let tcp = tokio::net::TcpStream::connect(addr).await.context("TCP connect")?;
                tcp.set_nodelay(true)?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Transport::H1Tls | Transport::H2 => {
                let tcp = tokio::net::TcpStream::connect(addr).await.context("TCP connect")?;
                tcp.set_nodelay(true)?;
                let connector = tokio_rustls::TlsConnector::from(tls_config(roots, alpn(transport))?);
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
            Transport::H3 => {
                let bind: SocketAddr = if addr.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
                let mut endpoint = quinn::Endpoint::client(bind)?;
                let mut tls = (*tls_config(roots, alpn(transport))?).clone();
                tls.enable_early_data = true;
                let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
                let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
                let mut t = quinn::TransportConfig::default();
                t.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
                cfg.transport_config(Arc::new(t));
                endpoint.set_default_client_config(cfg);
                let conn = endpoint.connect(addr, server_name)?.await.context("QUIC handshake")?;
                let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
                tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                Conn::H3 { send, _endpoint: endpoint }
            }
        };
        Ok(Client { transport, authority, conn })
    }

    /// The transport of this connection.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Send a request without a body; the response body streams.
    pub async fn request(&mut self, method: Method, path: &str) -> Result<ClientResponse> {
        let scheme = if self.transport == Transport::H1Clear { "http" } else { "https" };
        match &mut self.conn {
            Conn::H1(send) => {
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(http::header::HOST, &self.authority)
                    .body(Empty::new())?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let (parts, body) = resp.into_parts();
                Ok(ClientResponse { status: parts.status, headers: parts.headers, body: RespBody::Hyper(body) })
            }
            Conn::H2(send) => {
                let uri = format!("{scheme}://{}{path}", self.authority);
                let req = Request::builder().method(method).uri(uri).body(Empty::new())?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let (parts, body) = resp.into_parts();
                Ok(ClientResponse { status: parts.status, headers: parts.headers, body: RespBody::Hyper(body) })
            }
            Conn::H3 { send, .. } => {
                let uri = format!("{scheme}://{}{path}", self.authority);
                let req = Request::builder().method(method).uri(uri).body(())?;
                let mut stream = send.send_request(req).await?;
                stream.finish().await?;
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
