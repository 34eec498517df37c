//! Thin transport adapters around the core: hyper for HTTP/1.1 and HTTP/2
//! (cleartext and TLS), h3 + h3-quinn for HTTP/3. They only translate
//! requests and bodies; what to answer is decided in [`crate::core`].

pub mod h3;
pub mod hyper;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

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

/// Limits applied at the door of every listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections per listener; further ones wait (TCP) or are refused (QUIC).
    pub max_connections: usize,
    /// Time allowed for a TLS/QUIC handshake or for request headers.
    pub handshake_timeout: Duration,
    /// QUIC idle timeout; keep-alives are sent at a third of it.
    pub idle_timeout: Duration,
    /// How long in-flight responses may run after shutdown starts.
    pub shutdown_grace: Duration,
    /// Concurrent requests per HTTP/2 or HTTP/3 connection.
    pub max_streams_per_connection: u32,
    /// `TCP_NOTSENT_LOWAT` for accepted TCP sockets (Linux): cap on the bytes
    /// queued in the kernel but not yet sent, so an HTTP/2 connection keeps
    /// its backlog in user space where a new response (the next manifest or
    /// segment) can still be interleaved. `None` leaves the kernel default.
    pub tcp_notsent_lowat: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(3),
            max_streams_per_connection: 256,
            tcp_notsent_lowat: None,
        }
    }
}

/// Bind a TCP listener; an unspecified IPv6 address (`[::]`) is bound
/// dual-stack so IPv4 clients reach it too.
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Bind a UDP socket for QUIC, dual-stack for `[::]`.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
