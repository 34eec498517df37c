//! The connection vocabulary shared by the core and the transport adapters:
//! which protocol a request came over, on which listener, from where.
//!
//! It lives below both: [`crate::core`] decides answers from a [`ConnInfo`]
//! and labels metrics by [`Transport`]; [`crate::transport`] builds them. No
//! module here imports the core or the adapters, so the dependency arrows
//! run one way (transport -> core -> conn).

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

/// The default ports of `h3live serve`'s listeners: the one definition used
/// by its flags ([`crate::cli::ListenArgs`]), `h3live cert` and the load
/// tool. Shell scripts (run.sh, scripts/) keep their own copies of these
/// numbers as overridable variables.
pub mod ports {
    /// Cleartext HTTP/1.1 (ingest and reads).
    pub const HTTP: u16 = 8080;
    /// HTTP/3 (UDP); the `https` TCP listener shares the number.
    pub const H3: u16 = 4433;
    /// TLS offering h2 and http/1.1, with Alt-Svc.
    pub const HTTPS: u16 = 4433;
    /// TLS, HTTP/1.1 only.
    pub const HTTPS_H1: u16 = 4443;
    /// TLS, HTTP/2 only.
    pub const HTTPS_H2: u16 = 4444;
    /// Media over QUIC (WebTransport, UDP; off unless `--moq` is given), and
    /// its read-only cleartext HTTP/1.1 twin on TCP.
    pub const MOQ: u16 = 4435;

    /// Write `name=port` lines (`http=40123`) to `path` in one step (written
    /// aside, then renamed into place): how a binary started with port 0
    /// tells a script or test the ports it got (`--ports-file`), with no port
    /// picked beforehand and released for someone else to take.
    pub fn write_file(path: &std::path::Path, ports: &[(&str, u16)]) -> std::io::Result<()> {
        let text: String = ports.iter().map(|(name, port)| format!("{name}={port}\n")).collect();
        let mut aside = path.as_os_str().to_owned();
        aside.push(".part");
        std::fs::write(&aside, text)?;
        std::fs::rename(&aside, path)
    }
}

/// Which protocol a response travels over (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// HTTP/1.1 over cleartext TCP (the ingest listener).
    H1Clear,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/3 over QUIC.
    H3,
}

impl Transport {
    /// Every transport, in label order.
    pub const ALL: [Transport; 4] = [Transport::H1Clear, Transport::H1Tls, Transport::H2, Transport::H3];

    /// Index into per-transport arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::H1Clear => "h1-clear",
            Transport::H1Tls => "h1-tls",
            Transport::H2 => "h2",
            Transport::H3 => "h3",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a listener is for; shared by all its connections.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// Its flag name (`http`, `https`, `https-h1`, `https-h2`, `h3`), for logs.
    pub name: &'static str,
    /// Whether PUT/POST/DELETE are accepted here.
    pub ingest: bool,
    /// `Alt-Svc` value added to every response, if any.
    pub alt_svc: Option<HeaderValue>,
    /// Whether `/streams` and `/metrics` are served here (the cleartext
    /// admin listener by default; `--public-status` for every listener).
    pub status_pages: bool,
}

/// Where a request came from.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The listener it arrived on.
    pub listener: Arc<ListenerInfo>,
    /// The protocol actually spoken on this connection.
    pub transport: Transport,
    /// The peer's address.
    pub remote: SocketAddr,
}

/// The span a connection's work runs in (every listener, see
/// [`crate::transport::accept`]).
pub fn connection_span(listener: &'static str, remote: SocketAddr) -> tracing::Span {
    tracing::info_span!("conn", listener, %remote)
}

/// The span of one request, the same for every transport. Its `stream` and
/// `file` fields are declared here, empty, and filled by the core through
/// [`record_object`] once it has routed the request to a live object.
pub fn request_span(transport: Transport, method: &http::Method, path: &str) -> tracing::Span {
    tracing::info_span!("req", %transport, %method, path,
        stream = tracing::field::Empty, file = tracing::field::Empty)
}

/// Record the live object the current request addresses in its
/// [`request_span`].
pub fn record_object(stream: &str, file: &str) {
    tracing::Span::current().record("stream", stream).record("file", file);
}
