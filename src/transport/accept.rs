//! The door of every listener (TCP for HTTP/1.1 and HTTP/2, QUIC for HTTP/3
//! and the interop endpoint): one place that decides whether a connection
//! comes in, how long its handshake may take, which span it runs in, and at
//! which level its failures are logged.
//!
//! - Permits: at most `max_connections` open connections per listener (a TCP
//!   listener waits for a free permit before it accepts; a QUIC listener
//!   refuses the Initial) and at most `max_connections_per_ip` per client
//!   address (closed or refused at once).
//! - Handshakes run in the connection's task, never in the accept loop, under
//!   the handshake timeout.
//! - Every connection task runs in [`crate::conn::connection_span`].
//! - Log levels: a client that goes away or times out during its handshake is
//!   routine (debug). Any other handshake failure (a client rejecting the
//!   certificate, no common ALPN or cipher suite, plain HTTP sent to a TLS
//!   port) is what a user setting up TLS must see, so it is logged at warn,
//!   but only the 1st, 2nd, 4th, 8th, … failure of a listener (with the
//!   running count); the others go to debug. A scanner or a broken client
//!   therefore adds one warn line per doubling, never a flood. Refusals at
//!   the connection limit are logged the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument as _};

use super::{IpPermit, ListenerInfo, PerIp};
use crate::conn::connection_span;
use crate::metrics::Metrics;

/// A failure that recurs per connection, logged at warn only at the 1st,
/// 2nd, 4th, 8th, … occurrence (so a flood adds one line per doubling).
#[derive(Debug, Default)]
pub struct FailureLog {
    /// Occurrences so far.
    count: AtomicU64,
}

impl FailureLog {
    /// Count one occurrence; returns the running count and whether this one
    /// is to be logged at warn.
    pub fn record(&self) -> (u64, bool) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        (n, n.is_power_of_two())
    }
}

/// A handshake error that knows whether it is a routine client abort.
pub trait HandshakeError: std::fmt::Display {
    /// True when the client went away (closed, reset, idle) rather than the
    /// handshake failing.
    fn client_went_away(&self) -> bool;
}

impl HandshakeError for std::io::Error {
    fn client_went_away(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(self.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut)
    }
}

impl HandshakeError for quinn::ConnectionError {
    fn client_went_away(&self) -> bool {
        use quinn::ConnectionError::*;
        match self {
            // A TLS alert from the client (0x100 + alert) is a failed
            // handshake (e.g. it does not trust the certificate).
            ConnectionClosed(close) => !(0x100..0x200).contains(&u64::from(close.error_code)),
            ApplicationClosed(_) | Reset | TimedOut | LocallyClosed | VersionMismatch => true,
            TransportError(_) | CidsExhausted => false,
        }
    }
}

/// The permits an admitted connection holds until it ends.
#[derive(Debug)]
pub struct Admission {
    /// One of the listener's connections.
    _slot: OwnedSemaphorePermit,
    /// One of its client address's connections.
    _ip: IpPermit,
}

/// How a QUIC listener admits connections.
#[derive(Clone, Default)]
pub struct QuicAccept {
    /// Connection attempts per second above which clients must first prove
    /// their address with a Retry (0: always; `u32::MAX`: never).
    pub retry_above: u32,
    /// Accept 0-RTT: the connection is served before its handshake completes.
    pub zero_rtt: bool,
    /// A server config for one incoming connection (e.g. with its own qlog
    /// file); `None`: the endpoint's.
    pub config_for: Option<ConfigFor>,
}

/// A server config chosen per incoming QUIC connection.
pub type ConfigFor = Arc<dyn Fn(&quinn::Incoming) -> Arc<quinn::ServerConfig> + Send + Sync>;

/// The door of one listener; cheap to clone (shared state).
#[derive(Clone)]
pub struct Door {
    /// Shared state.
    inner: Arc<DoorInner>,
}

/// What a [`Door`] shares with its connection tasks.
struct DoorInner {
    /// The listener it guards.
    info: Arc<ListenerInfo>,
    /// Open connections (permits).
    open: Arc<Semaphore>,
    /// Open connections per client address.
    per_ip: Arc<PerIp>,
    /// Time allowed for a TLS or QUIC handshake.
    handshake_timeout: Duration,
    /// Handshake failures (not client aborts) on this listener.
    handshake_failures: FailureLog,
    /// Connections refused at the connection limit.
    refusals: FailureLog,
    /// Cancelled when the server shuts down: the accept loop stops.
    shutdown: CancellationToken,
    /// Where connection tasks are spawned (the server waits for them).
    tracker: TaskTracker,
}

impl Door {
    /// A door admitting `max_connections` connections, `max_per_ip` per client
    /// address (0: no limit), handshakes limited to `handshake_timeout`.
    pub fn new(
        info: Arc<ListenerInfo>,
        max_connections: usize,
        max_per_ip: usize,
        handshake_timeout: Duration,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Door {
        Door {
            inner: Arc::new(DoorInner {
                info,
                open: Arc::new(Semaphore::new(max_connections)),
                per_ip: PerIp::new(max_per_ip),
                handshake_timeout,
                handshake_failures: FailureLog::default(),
                refusals: FailureLog::default(),
                shutdown,
                tracker,
            }),
        }
    }

    /// The listener this door guards.
    pub fn info(&self) -> &Arc<ListenerInfo> {
        &self.inner.info
    }

    /// Run `handshake` under the handshake timeout. A failure is logged (see
    /// the module comment for the level) and gives `None`.
    pub async fn handshake<T, E: HandshakeError>(
        &self,
        what: &'static str,
        handshake: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.inner.handshake_timeout, handshake).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) if e.client_went_away() => {
                debug!(error = %e, "{what} handshake: client went away");
                None
            }
            Ok(Err(e)) => {
                // The connection span names the listener and the peer.
                let (failures, loud) = self.inner.handshake_failures.record();
                if loud {
                    warn!(failures, error = %e,
                        "{what} handshake failed (logged at warn for the 1st, 2nd, 4th, 8th... failure of this listener, else at debug)");
                } else {
                    debug!(failures, error = %e, "{what} handshake failed");
                }
                None
            }
            Err(_) => {
                debug!(timeout = ?self.inner.handshake_timeout, "{what} handshake timed out");
                None
            }
        }
    }

    /// Take the per-address permit for `remote` (a free connection permit is
    /// already held), or `None` (logged at debug) when the address has its limit.
    fn admit(&self, slot: OwnedSemaphorePermit, remote: SocketAddr) -> Option<Admission> {
        match self.inner.per_ip.try_acquire(remote.ip()) {
            Some(ip) => Some(Admission { _slot: slot, _ip: ip }),
            None => {
                debug!(listener = self.inner.info.name, %remote, "connection limit per IP reached, refusing");
                None
            }
        }
    }

    /// Spawn a connection's task in its span; it holds `admission` until it ends.
    fn spawn(&self, remote: SocketAddr, admission: Admission, task: impl Future<Output = ()> + Send + 'static) {
        let span = connection_span(self.inner.info.name, remote);
        self.inner.tracker.spawn(
            async move {
                let _admission = admission;
                task.await
            }
            .instrument(span),
        );
    }

    /// Accept TCP connections until shutdown: wait for a connection permit,
    /// accept, take the address's permit, then spawn `serve(stream, remote)`
    /// (which runs any TLS handshake through [`Door::handshake`]).
    pub async fn accept_tcp<F, Fut>(&self, listener: TcpListener, mut serve: F)
    where
        F: FnMut(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = &self.inner.shutdown;
        loop {
            let slot = tokio::select! {
                p = self.inner.open.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            let (stream, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        warn!(listener = self.inner.info.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let Some(admission) = self.admit(slot, remote) else { continue };
            let task = serve(stream, remote);
            self.spawn(remote, admission, task);
        }
    }

    /// Accept QUIC connections on `endpoint` until shutdown: ask for a Retry
    /// when `opts` says so, refuse over the limits, else spawn a task that
    /// completes the handshake and runs `serve(connection, remote)`.
    pub async fn accept_quic<F, Fut>(&self, endpoint: &quinn::Endpoint, opts: QuicAccept, metrics: &Metrics, serve: F)
    where
        F: Fn(quinn::Connection, SocketAddr) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let name = self.inner.info.name;
        // Connection attempts in the current one-second window (for Retry).
        let (mut window, mut attempts) = (Instant::now(), 0u32);
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i { Some(i) => i, None => return },
                _ = self.inner.shutdown.cancelled() => return,
            };
            let remote = incoming.remote_address();
            if window.elapsed() >= Duration::from_secs(1) {
                (window, attempts) = (Instant::now(), 0);
            }
            attempts = attempts.saturating_add(1);
            if attempts > opts.retry_above && !incoming.remote_address_validated() && incoming.may_retry() {
                // Make the client prove its address (stateless: no handshake
                // state is kept until it comes back).
                metrics.quic_retry();
                if let Err(e) = incoming.retry() {
                    debug!(%remote, error = %e, "QUIC retry failed");
                }
                continue;
            }
            let Ok(slot) = self.inner.open.clone().try_acquire_owned() else {
                let (refused, loud) = self.inner.refusals.record();
                if loud {
                    warn!(listener = name, %remote, refused, "connection limit reached, refusing (logged at warn for the 1st, 2nd, 4th, 8th... refusal)");
                } else {
                    debug!(listener = name, %remote, refused, "connection limit reached, refusing");
                }
                incoming.refuse();
                continue;
            };
            let Some(admission) = self.admit(slot, remote) else {
                incoming.refuse();
                continue;
            };
            let accepted = match &opts.config_for {
                Some(config_for) => {
                    let config = config_for(&incoming);
                    incoming.accept_with(config)
                }
                None => incoming.accept(),
            };
            let (door, serve, zero_rtt) = (self.clone(), serve.clone(), opts.zero_rtt);
            self.spawn(remote, admission, async move {
                let connecting = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "QUIC accept failed");
                        return;
                    }
                };
                let handshake = if zero_rtt {
                    match connecting.into_0rtt() {
                        Ok((quic, done)) => {
                            // Served at once (0-RTT / 0.5-RTT); `done`
                            // resolves when the handshake completes.
                            let log = async move {
                                let complete = done.await;
                                debug!(complete, "handshake complete (0.5-RTT)");
                            };
                            tokio::spawn(log.in_current_span());
                            Some(quic)
                        }
                        Err(connecting) => door.handshake("QUIC", connecting).await,
                    }
                } else {
                    door.handshake("QUIC", connecting).await
                };
                let Some(quic) = handshake else { return };
                serve(quic, remote).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_loud_at_powers_of_two() {
        let log = FailureLog::default();
        let loud: Vec<u64> = (0..100).map(|_| log.record()).filter(|&(_, l)| l).map(|(n, _)| n).collect();
        assert_eq!(loud, [1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn client_aborts_are_not_failures() {
        use std::io::{Error, ErrorKind};
        assert!(Error::from(ErrorKind::UnexpectedEof).client_went_away());
        assert!(Error::from(ErrorKind::ConnectionReset).client_went_away());
        assert!(!Error::new(ErrorKind::InvalidData, "received fatal alert: UnknownCA").client_went_away());
        assert!(quinn::ConnectionError::TimedOut.client_went_away());
        assert!(!quinn::ConnectionError::CidsExhausted.client_went_away());
    }
}
