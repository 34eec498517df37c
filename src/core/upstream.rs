//! Serving viewers from an upstream URL instead of the store: the protocol
//! front of an edge node (`h3live front --upstream http://127.0.0.1:6081`).
//!
//! The front terminates HTTP/3, HTTP/2 and TLS for viewers and forwards every
//! read to an HTTP/1.1 cache (Varnish, `deploy/varnish/`), which coalesces
//! viewers into one origin request per object. The front keeps no cache of
//! its own: each viewer request is one upstream request on a pooled
//! keep-alive connection, and the upstream body is handed to the viewer's
//! transport piece by piece as it arrives, through the same [`super::Body`]
//! and transport adapters as the origin's own objects.
//!
//! Rules: only GET, HEAD and OPTIONS are forwarded (ingest never passes a
//! front); hop-by-hop headers are dropped both ways; an upstream body that
//! breaks ends the viewer's response in a visible error, like an aborted
//! upload at the origin (HTTP/1.1: no final chunk; h2/h3: stream reset), so a
//! truncated segment never looks complete.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body::Body as _;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// Why an upstream request failed (the front answers 502 or 504).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URL given for the upstream is unusable.
    #[error("upstream URL {0:?}: {1}")]
    BadUrl(String, &'static str),
    /// No connection could be made.
    #[error("connecting to the upstream {0}: {1}")]
    Connect(String, String),
    /// The request failed on the connection (reset, protocol error).
    #[error("upstream request failed: {0}")]
    Request(String),
    /// No response headers within the timeout.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
}

/// An upstream response body that broke before its end (connection closed,
/// timeout): the viewer's response must end in an error too, never as a
/// short clean body. Zero-sized: returned on the per-piece path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream body broken before its end")]
pub struct UpstreamBroken;

/// An HTTP/1.1 upstream with a pool of idle keep-alive connections.
pub struct Upstream {
    /// `host:port` to connect to.
    addr: String,
    /// Host header sent upstream.
    authority: HeaderValue,
    /// Idle connections ready for a request, most recent last.
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
    /// Most idle connections kept; more are closed when their response ends.
    max_idle: usize,
    /// Time allowed for connecting and for the response headers. Must exceed
    /// the origin's hold time (a request for the next segment is held until
    /// its upload starts).
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("addr", &self.addr).field("timeout", &self.timeout).finish()
    }
}

/// Request headers never forwarded: hop-by-hop (RFC 9110 §7.6.1) and the
/// ones the front sets itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

impl Upstream {
    /// An upstream at `url` (`http://host:port`, no path).
    pub fn new(url: &str, timeout: Duration) -> Result<Upstream, UpstreamError> {
        let bad = |why| UpstreamError::BadUrl(url.to_string(), why);
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// upstreams are supported (the cache is on the same host or network)"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give scheme, host and port only"));
        }
        let auth = uri.authority().ok_or_else(|| bad("no host"))?;
        let addr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
        let authority = HeaderValue::from_str(auth.as_str()).map_err(|_| bad("bad host"))?;
        Ok(Upstream { addr, authority, idle: Mutex::new(Vec::new()), max_idle: 256, timeout })
    }

    /// `host:port` of the upstream.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, UpstreamError> {
        let err = |e: String| UpstreamError::Connect(self.addr.clone(), e);
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.addr))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| err(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(send)
    }

    /// An idle pooled connection that is still open, if any.
    fn take_idle(&self) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(send) = idle.pop() {
            // Not ready yet is fine (the previous response's end is still
            // being processed): the caller waits for `ready()`.
            if !send.is_closed() {
                return Some(send);
            }
        }
        None
    }

    fn put_idle(&self, send: SendRequest<Empty<Bytes>>) {
        if send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(send);
        }
    }

    /// Forward a viewer's request (`method`, path and query, headers) and
    /// return the response with its body still streaming. `client` is the
    /// viewer's address and `proto` its scheme, for X-Forwarded-*.
    pub async fn forward(
        self: &Arc<Self>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        client: std::net::IpAddr,
        proto: &'static str,
    ) -> Result<(http::response::Parts, UpstreamBody), UpstreamError> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let build = || {
            let mut req = Request::builder().method(method.clone()).uri(path).body(Empty::<Bytes>::new())?;
            let h = req.headers_mut();
            for (name, value) in headers {
                if !is_hop_by_hop(name) && name != header::HOST && !name.as_str().starts_with("x-forwarded-") {
                    h.append(name.clone(), value.clone());
                }
            }
            h.insert(header::HOST, self.authority.clone());
            h.insert("x-forwarded-for", HeaderValue::from_str(&client.to_string())?);
            h.insert("x-forwarded-proto", HeaderValue::from_static(proto));
            if let Some(host) =
                uri.authority().map(|a| a.as_str()).or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
            {
                if let Ok(v) = HeaderValue::from_str(host) {
                    h.insert("x-forwarded-host", v);
                }
            }
            Ok::<_, anyhow::Error>(req)
        };
        // A pooled connection may have been closed by the upstream an instant
        // ago (idle timeout): retry such a failure once on a fresh connection.
        // Only idempotent methods get here, so a retry is safe.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut send, pooled) = match self.take_idle() {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            let req = build().map_err(|e| UpstreamError::Request(e.to_string()))?;
            let sent = tokio::time::timeout(self.timeout, async {
                send.ready().await?;
                send.send_request(req).await
            })
            .await;
            match sent {
                Err(_) => return Err(UpstreamError::Timeout(self.timeout)),
                Ok(Err(e)) if pooled && attempt == 1 => {
                    debug!(error = %e, "pooled upstream connection failed, retrying on a new one");
                    continue;
                }
                Ok(Err(e)) => return Err(UpstreamError::Request(e.to_string())),
                Ok(Ok(resp)) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    let done = body.is_end_stream();
                    let mut body = UpstreamBody { body, conn: Some((send, self.clone())) };
                    if done {
                        body.release();
                    }
                    return Ok((parts, body));
                }
            }
        }
    }
}

/// Remove hop-by-hop headers, including those named in `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// A response body arriving from the upstream. When it ends cleanly its
/// connection goes back to the pool; dropped early, the connection closes.
pub struct UpstreamBody {
    /// The body as hyper receives it.
    body: Incoming,
    /// The connection it came on, returned to the pool at the end.
    conn: Option<(SendRequest<Empty<Bytes>>, Arc<Upstream>)>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some((send, up)) = self.conn.take() {
            up.put_idle(send);
        }
    }

    /// True once the upstream body has ended.
    pub fn is_end(&self) -> bool {
        self.body.is_end_stream()
    }

    /// Exact length when the upstream announced it.
    pub fn exact_len(&self) -> Option<u64> {
        self.body.size_hint().exact()
    }

    /// The next piece of the body. A broken upstream body (connection closed
    /// before the end, timeout) is reported as [`UpstreamBroken`]: the
    /// viewer must see an error, not a short clean body. Cancel safe.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, UpstreamBroken>>> {
        loop {
            match std::pin::Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.release();
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    debug!(error = %e, "upstream body broken");
                    self.conn = None;
                    return Poll::Ready(Some(Err(UpstreamBroken)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let up = Upstream::new("http://127.0.0.1:6081", Duration::from_secs(1)).unwrap();
        assert_eq!(up.addr(), "127.0.0.1:6081");
        assert_eq!(Upstream::new("http://cache", Duration::from_secs(1)).unwrap().addr(), "cache:80");
        for bad in ["https://127.0.0.1:6081", "127.0.0.1:6081", "http://h:1/live", "http://h:1/?x=1", "nonsense"] {
            assert!(Upstream::new(bad, Duration::from_secs(1)).is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=30"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CACHE_CONTROL));
    }
}
