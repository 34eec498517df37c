//! The door of every listener (TCP for HTTP/1.1 and HTTP/2, QUIC for HTTP/3
//! and the interop endpoint): one place that decides whether a connection
//! comes in, how long its handshake may take, which span it runs in, and at
//! which level its failures are logged.
//!
//! - Slots: at most `max_connections_per_ip` connections per client address
//!   (closed or refused at once), and at most `max_connections` per listener
//!   ([`overload::Pool`]). At that cap the connections that do no useful work
//!   the longest are closed for the newcomer; when there are none a TCP
//!   connection waits (the listener accepts nothing meanwhile) and a QUIC
//!   one is refused.
//! - Handshakes run in the connection's task, never in the accept loop, under
//!   the handshake timeout.
//! - Every connection task runs in [`crate::conn::connection_span`].
//! - Log levels: a client that goes away or times out during its handshake is
//!   routine (debug). Any other handshake failure (a client rejecting the
//!   certificate, no common ALPN or cipher suite, plain HTTP sent to a TLS
//!   port) is what a user setting up TLS must see, so it is logged at warn,
//!   but only the 1st, 2nd, 4th, 8th, … failure of a listener (with the
//!   running count); the others go to debug. A scanner or a broken client
//!   therefore adds one warn line per doubling, never a flood. Refusals
//!   (per address, at the cap) and evictions are counted in `/metrics` and
//!   logged the same way ([`crate::metrics::doubling`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument as _};

use super::overload::Pool;
use super::{Activity, IpPermit, ListenerInfo, PerIp};
use crate::conn::connection_span;
use crate::doubling_log;
use crate::metrics::Metrics;

/// How long a QUIC connection attempt waits for the slot of a connection
/// closed for it (an idle one closes at once).
const QUIC_SLOT_WAIT: Duration = Duration::from_secs(1);

/// How long the TCP accept loop waits for a spare slot of a connection
/// closed for it (the loop accepts nothing meanwhile).
const SPARE_SLOT_WAIT: Duration = Duration::from_millis(200);

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
    /// The listener's connection slots.
    pool: Arc<Pool>,
    /// Where a connection waits for its first request head when `pool` is
    /// full of busy connections (the ingest listener's ingest budget), if
    /// anywhere.
    spare: Option<Arc<Pool>>,
    /// Open connections per client address.
    per_ip: Arc<PerIp>,
    /// Time allowed for a TLS or QUIC handshake.
    handshake_timeout: Duration,
    /// Refusals, evictions and handshake failures are counted here.
    metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down: the accept loop stops.
    shutdown: CancellationToken,
    /// Where connection tasks are spawned (the server waits for them).
    tracker: TaskTracker,
}

impl Door {
    /// A door admitting `limits.max_connections` connections,
    /// `limits.max_connections_per_ip` per client address (0: no limit),
    /// handshakes limited to `limits.handshake_timeout`.
    /// A TCP door may have a `spare` budget (see [`Door::accept_tcp`]).
    pub fn new(
        info: Arc<ListenerInfo>,
        limits: &super::ConnLimits,
        metrics: Arc<Metrics>,
        spare: Option<Arc<Pool>>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Door {
        Door {
            inner: Arc::new(DoorInner {
                pool: Pool::new(info.name, "connections", limits.max_connections, metrics.clone()),
                spare,
                info,
                per_ip: PerIp::new(limits.max_connections_per_ip),
                handshake_timeout: limits.handshake_timeout,
                metrics,
                shutdown,
                tracker,
            }),
        }
    }

    /// The listener this door guards.
    pub fn info(&self) -> &Arc<ListenerInfo> {
        &self.inner.info
    }

    /// Run `handshake` under the handshake timeout, unless the connection is
    /// closed for a newcomer meanwhile (overload). A failure is logged (see
    /// the module comment for the level) and gives `None`.
    pub async fn handshake<T, E: HandshakeError>(
        &self,
        what: &'static str,
        activity: &Activity,
        handshake: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let timed = tokio::time::timeout(self.inner.handshake_timeout, handshake);
        let result = tokio::select! {
            r = timed => r,
            _ = activity.evicted() => {
                debug!("{what} handshake: closed for a newcomer (listener full)");
                return None;
            }
        };
        match result {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) if e.client_went_away() => {
                debug!(error = %e, "{what} handshake: client went away");
                None
            }
            Ok(Err(e)) => {
                // The connection span names the listener and the peer.
                let (failures, loud) = self.inner.metrics.handshake_failed(self.inner.info.name);
                doubling_log!(loud, failures, error = %e,
                    "{what} handshake failed (logged at warn for the 1st, 2nd, 4th, 8th... failure of this listener, else at debug)");
                None
            }
            Err(_) => {
                debug!(timeout = ?self.inner.handshake_timeout, "{what} handshake timed out");
                None
            }
        }
    }

    /// The per-address permit for `remote`, or `None` (counted, logged) when
    /// the address has its limit.
    fn per_ip(&self, remote: SocketAddr) -> Option<IpPermit> {
        let permit = self.inner.per_ip.try_acquire(remote.ip());
        if permit.is_none() {
            let listener = self.inner.info.name;
            let (refused, loud) = self.inner.metrics.connection_refused(listener, "per_ip");
            doubling_log!(loud, listener, %remote, refused,
                "connection limit per IP reached, refusing (logged at warn for the 1st, 2nd, 4th, 8th... refusal)");
        }
        permit
    }

    /// Count and log a connection that found the listener full with nothing
    /// to close (QUIC: refused; TCP: left waiting, or answered 503).
    pub fn at_cap(&self, remote: SocketAddr, what: &'static str) {
        let listener = self.inner.info.name;
        let (refused, loud) = self.inner.metrics.connection_refused(listener, "cap");
        doubling_log!(loud, listener, %remote, refused,
            "connection limit reached and every connection busy: {what} (logged at warn for the 1st, 2nd, 4th, 8th... time)");
    }

    /// The listener's connection slots.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.inner.pool
    }

    /// Spawn a connection's task in its span; it holds its address's permit
    /// and `activity` (with its slot) until it ends.
    fn spawn(
        &self,
        remote: SocketAddr,
        ip: IpPermit,
        activity: Arc<Activity>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let span = connection_span(self.inner.info.name, remote);
        self.inner.tracker.spawn(
            async move {
                let _held = (ip, activity);
                task.await
            }
            .instrument(span),
        );
    }

    /// Accept TCP connections until shutdown: accept, take the address's
    /// permit, then a slot (closing idle connections at the cap; when every
    /// connection is busy, a slot of the spare budget if there is one, else
    /// waiting for a slot), then spawn `serve(stream, remote, activity)`,
    /// which runs any TLS handshake through [`Door::handshake`] and must
    /// close the connection when `activity` is evicted. The ingest listener
    /// gives its ingest budget as the spare: an encoder is not kept out by
    /// busy viewers, and the connection is answered 503 if its first request
    /// is not ingest.
    pub async fn accept_tcp<F, Fut>(&self, listener: TcpListener, mut serve: F)
    where
        F: FnMut(TcpStream, SocketAddr, Arc<Activity>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = &self.inner.shutdown;
        let pool = &self.inner.pool;
        loop {
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
            let Some(ip) = self.per_ip(remote) else { continue };
            let activity = Arc::new(Activity::default());
            // Near the cap, idle connections are closed ahead of need.
            let evicted = if pool.near_cap() { pool.evict() } else { 0 };
            if !pool.try_join(&activity) && evicted == 0 {
                let spare = match &self.inner.spare {
                    Some(spare) => spare.join_or_evict(&activity, SPARE_SLOT_WAIT).await,
                    None => false,
                };
                if !spare {
                    self.at_cap(remote, "waiting for one to end");
                }
            }
            if !activity.has_slot() {
                tokio::select! {
                    _ = pool.join(&activity) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            let task = serve(stream, remote, activity.clone());
            self.spawn(remote, ip, activity, task);
        }
    }

    /// Accept QUIC connections on `endpoint` until shutdown: ask for a Retry
    /// when `opts` says so, refuse over the per-address limit, take a slot
    /// (at the cap: close idle connections and wait briefly for one of their
    /// slots, else refuse), then spawn a task that completes the handshake
    /// and runs `serve(connection, remote, activity)`, which must close the
    /// connection when `activity` is evicted.
    pub async fn accept_quic<F, Fut>(&self, endpoint: &quinn::Endpoint, opts: QuicAccept, serve: F)
    where
        F: Fn(quinn::Connection, SocketAddr, Arc<Activity>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let metrics = &self.inner.metrics;
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
            let Some(ip) = self.per_ip(remote) else {
                incoming.refuse();
                continue;
            };
            let activity = Arc::new(Activity::default());
            let pool = self.inner.pool.clone();
            let evicted = if pool.near_cap() { pool.evict() } else { 0 };
            let slot_now = pool.try_join(&activity);
            if !slot_now && evicted == 0 {
                self.at_cap(remote, "refusing");
                incoming.refuse();
                continue;
            }
            let (door, serve, zero_rtt, config_for) =
                (self.clone(), serve.clone(), opts.zero_rtt, opts.config_for.clone());
            let a = activity.clone();
            self.spawn(remote, ip, activity, async move {
                // Connections were closed for this one: wait for a slot.
                if !slot_now && tokio::time::timeout(QUIC_SLOT_WAIT, pool.join(&a)).await.is_err() {
                    door.at_cap(remote, "refusing");
                    incoming.refuse();
                    return;
                }
                let accepted = match &config_for {
                    Some(config_for) => {
                        let config = config_for(&incoming);
                        incoming.accept_with(config)
                    }
                    None => incoming.accept(),
                };
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
                        Err(connecting) => door.handshake("QUIC", &a, connecting).await,
                    }
                } else {
                    door.handshake("QUIC", &a, connecting).await
                };
                let Some(quic) = handshake else { return };
                serve(quic, remote, a).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
