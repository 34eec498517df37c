//! One origin the relay pushes to.
//!
//! Every upstream replays every lane of the [`Journal`] on its own
//! connections (HTTP/1.1: one per lane, as ffmpeg does; HTTP/3: one QUIC
//! connection for all lanes, a stream per request), each chunk as soon as the
//! encoder's bytes arrive. Upstreams never wait for one another or for the
//! encoder's side: the relay reads ffmpeg's bodies into the journal, and each
//! upstream reads the journal at its own pace.
//!
//! **Failures.** A connection that cannot be opened, a request that breaks,
//! or a chunk the transport does not take within the timeout counts as a
//! failure: the upstream waits (backoff 0.1 s doubling to 0.5 s), reconnects,
//! and sends the same request again *from its start* (the journal still has
//! it), then the requests that came in meanwhile, then live again. Before the
//! first request after a failure it makes sure the origin has the stream
//! state it may have lost in a restart: for each kept init segment and
//! manifest it asks HEAD, and PUTs the kept copy when the origin answers
//! anything but 200 with the same length (an origin that still has them
//! would otherwise see an init segment "sent again" and start a new encoder
//! run). An answer other than 2xx to a request is logged and counted, not
//! retried (ffmpeg never retries either; 4xx will not change).
//!
//! **Memory.** An upstream's *behind* count is what it still has to send:
//! every byte after its cursors. Past `max_behind` it jumps to the live edge:
//! in each lane, straight to the newest request (an upload it was sending is
//! broken on purpose, so that origin's readers see an error, never a short
//! segment), and it sends the kept stream state again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use http::{Method, StatusCode};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::journal::{Journal, Lane, Next, Request};
use super::metrics::UpstreamMetrics;
use crate::client::{Client, Connector};
use crate::conn::Transport;
use crate::store::{Object, Status};

/// Wait before the first retry; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between retries: a restarted origin gets the first retry within
/// half a second of answering again (a connection attempt costs little).
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How often a lane worker looks at its upstream's behind count.
const BEHIND_CHECK: Duration = Duration::from_millis(100);

/// How an upstream is reached and what it is allowed to hold.
pub struct UpstreamConfig {
    /// For logs and metric labels: the URL without credentials, and the transport.
    pub name: String,
    /// Opens connections (HTTP/1.1 cleartext or HTTP/3).
    pub connector: Connector,
    /// `Authorization` value (from the URL's user info), if any.
    pub auth: Option<String>,
    /// Connect, per-chunk hand-off and response timeout.
    pub timeout: Duration,
    /// Bytes it may be behind before it jumps to the live edge.
    pub max_behind: u64,
}

/// One origin: its connections, failure state and counters.
pub struct Upstream {
    /// Slot in the lanes' cursors.
    index: usize,
    /// Settings.
    config: UpstreamConfig,
    /// The journal it replays.
    journal: Arc<Journal>,
    /// HTTP/3: the QUIC connection every lane shares, and its generation.
    shared: tokio::sync::Mutex<(u64, Option<Client>)>,
    /// Bumped by every failure and every jump to the live edge: the kept
    /// stream state must be checked again before the next request.
    epoch: AtomicU64,
    /// The epoch up to which the kept state was checked; held while checking
    /// so that every lane waits for it.
    synced: tokio::sync::Mutex<u64>,
    /// Since when requests fail (for the "back after" log line).
    down_since: Mutex<Option<Instant>>,
    /// Set while it is over `max_behind` (one warning per episode).
    dropping: AtomicBool,
    /// Its counters.
    pub metrics: UpstreamMetrics,
}

/// A request that failed partway: how much of it went out.
struct Failure {
    /// Bytes of the body handed to the transport before it failed.
    sent: u64,
    /// Why.
    error: anyhow::Error,
}

/// How a request ended for this upstream.
enum Outcome {
    /// Sent whole (answered, whatever the status), or forwarded as broken.
    Done,
    /// Left for the live edge: the upstream is too far behind.
    Skipped,
}

impl Upstream {
    /// Upstream number `index` of `journal`.
    pub fn new(index: usize, config: UpstreamConfig, journal: Arc<Journal>, metrics: UpstreamMetrics) -> Upstream {
        Upstream {
            index,
            config,
            journal,
            shared: tokio::sync::Mutex::new((0, None)),
            epoch: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            down_since: Mutex::new(None),
            dropping: AtomicBool::new(false),
            metrics,
        }
    }

    /// Its name (URL and transport).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Bytes it still has to send: everything after its cursors.
    pub fn behind(&self) -> u64 {
        self.journal.lanes_held().iter().map(|l| l.behind(self.index)).sum()
    }

    /// True while no request fails.
    pub fn is_up(&self) -> bool {
        self.down_since.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// Replay `lane` until it is closed and sent, or until `shutdown`.
    pub async fn run_lane(self: Arc<Self>, lane: Arc<Lane>, shutdown: CancellationToken) {
        tokio::select! {
            () = self.replay(&lane) => debug!(upstream = self.name(), lane = lane.id, "lane done"),
            () = shutdown.cancelled() => {}
        }
    }

    async fn replay(&self, lane: &Lane) {
        // This lane's connection (HTTP/3: a handle on the shared one) and its generation.
        let mut conn: Option<(u64, Client)> = None;
        let mut backoff = BACKOFF_MIN;
        let mut checked = Instant::now();
        loop {
            let (index, req) = match lane.next(self.index).await {
                Next::Request(i, r) => (i, r),
                Next::Done => return,
            };
            if req.run < self.journal.run(&req.stream) && req.method != Method::DELETE {
                // The encoder restarted while this upstream was behind: the
                // old run's requests would interleave with the new run's.
                debug!(upstream = self.name(), path = req.path(), "old encoder run: skipped");
                lane.advance(self.index, index);
                continue;
            }
            let mut previous = 0u64; // bytes of it sent by the attempts before
            loop {
                if req.body.status() == Status::Aborted {
                    // Broken at the encoder before this attempt: nothing to forward.
                    lane.advance(self.index, index);
                    break;
                }
                if self.over_limit(&mut checked) {
                    self.jump(lane);
                    break;
                }
                let result = match self.ready(&mut conn).await {
                    Err(error) => Err(Failure { sent: 0, error }),
                    Ok(client) => self.send(lane, client, &req, previous).await,
                };
                match result {
                    Ok(Outcome::Done) => {
                        lane.advance(self.index, index);
                        self.back();
                        backoff = BACKOFF_MIN;
                        break;
                    }
                    Ok(Outcome::Skipped) => {
                        self.jump(lane);
                        break;
                    }
                    Err(f) => {
                        let sent = f.sent;
                        self.lost(&mut conn).await;
                        self.failed(&req.path(), sent, &f.error);
                        previous = previous.max(sent);
                        // Everything of it is to be sent again.
                        lane.set_progress(self.index, 0);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }

    /// A connection for the next request (made if needed), after the kept
    /// stream state was checked if anything failed since.
    async fn ready<'c>(&self, conn: &'c mut Option<(u64, Client)>) -> Result<&'c mut Client> {
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let (_, client) = conn.as_mut().expect("set above");
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut synced = self.synced.lock().await;
        if *synced < epoch {
            self.resync(client).await.context("sending the kept stream state")?;
            *synced = epoch;
        }
        Ok(client)
    }

    /// Open a connection (HTTP/3: share the upstream's, opening it if needed).
    async fn connect(&self) -> Result<(u64, Client)> {
        let timeout = self.config.timeout;
        let open = || async {
            tokio::time::timeout(timeout, self.config.connector.connect())
                .await
                .map_err(|_| anyhow!("no connection within {timeout:?}"))?
        };
        if self.config.connector.transport() != Transport::H3 {
            let c = open().await?;
            if self.epoch.load(Ordering::Relaxed) > 0 {
                self.metrics.reconnects.inc();
            }
            return Ok((0, c));
        }
        let mut shared = self.shared.lock().await;
        if shared.1.is_none() {
            let c = open().await?;
            if shared.0 > 0 {
                self.metrics.reconnects.inc();
            }
            shared.0 += 1;
            shared.1 = Some(c);
        }
        let generation = shared.0;
        let client = shared.1.as_ref().and_then(Client::share).expect("an h3 client can be shared");
        Ok((generation, client))
    }

    /// The connection of a failed request is not used again (HTTP/3: the
    /// shared one is replaced, unless another lane did that already).
    async fn lost(&self, conn: &mut Option<(u64, Client)>) {
        if let Some((generation, _)) = conn.take() {
            if self.config.connector.transport() == Transport::H3 {
                let mut shared = self.shared.lock().await;
                if shared.0 == generation {
                    shared.1 = None;
                }
            }
        }
    }

    fn failed(&self, path: &str, sent: u64, error: &anyhow::Error) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.upload_errors.inc();
        self.metrics.up.set(0);
        let mut down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            *down = Some(Instant::now());
            warn!(
                upstream = self.name(),
                path,
                sent,
                "forwarding failed: {error:#}; retrying (backoff up to 0.5 s), then sending it again from its start"
            );
        } else {
            debug!(upstream = self.name(), path, sent, "upload failed again: {error:#}");
        }
    }

    fn back(&self) {
        let since = self.down_since.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(since) = since {
            info!(upstream = self.name(), down = ?since.elapsed(), "upstream back: requests go through again");
        }
        self.metrics.up.set(1);
    }

    /// Whether the upstream is over its behind limit (looked at most every
    /// [`BEHIND_CHECK`]); warns once per episode.
    fn over_limit(&self, checked: &mut Instant) -> bool {
        if checked.elapsed() < BEHIND_CHECK {
            return false;
        }
        *checked = Instant::now();
        let behind = self.behind();
        if behind > self.config.max_behind {
            if !self.dropping.swap(true, Ordering::Relaxed) {
                warn!(
                    upstream = self.name(),
                    behind,
                    limit = self.config.max_behind,
                    "upstream too far behind: dropping to the live edge (newest request of each lane; init segments and manifests are sent again)"
                );
            }
            return true;
        }
        if behind < self.config.max_behind / 2 {
            self.dropping.store(false, Ordering::Relaxed);
        }
        false
    }

    /// Jump `lane` to its live edge; the kept state is checked again before
    /// the next request (the skipped requests may have held an init segment).
    fn jump(&self, lane: &Lane) {
        let skipped = lane.jump_to_edge(self.index);
        if !skipped.is_empty() {
            self.metrics.live_edge_drops.inc();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            debug!(upstream = self.name(), lane = lane.id, skipped = skipped.len(), "jumped to the live edge");
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![("user-agent", "h3live-relay")];
        if let Some(a) = &self.config.auth {
            h.push(("authorization", a.as_str()));
        }
        h
    }

    /// Send `req` whole, each chunk as it arrives. `previous`: bytes of it
    /// earlier attempts got out (counted as re-sent when sent again).
    async fn send(
        &self,
        lane: &Lane,
        client: &mut Client,
        req: &Arc<Request>,
        previous: u64,
    ) -> Result<Outcome, Failure> {
        let timeout = self.config.timeout;
        let path = req.path();
        let fail = |sent: u64, error: anyhow::Error| Failure { sent, error };
        let headers = self.headers();
        let mut up = tokio::time::timeout(timeout, client.upload(req.method.clone(), &path, &headers))
            .await
            .map_err(|_| fail(0, anyhow!("no request stream within {timeout:?}")))?
            .map_err(|e| fail(0, e))?;
        let started = Instant::now();
        let mut reader = req.body.reader();
        let mut sent = 0u64;
        let mut checked = Instant::now();
        loop {
            match std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                Some(Ok(chunk)) => {
                    let n = chunk.data.len() as u64;
                    match tokio::time::timeout(timeout, up.send(chunk.data)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(fail(sent, e)),
                        Err(_) => return Err(fail(sent, anyhow!("a chunk was not taken within {timeout:?}"))),
                    }
                    if chunk.arrived >= started {
                        self.metrics.delay.observe(chunk.arrived.elapsed());
                    }
                    self.metrics.sent_bytes.inc_by(n);
                    if sent < previous {
                        self.metrics.resent_bytes.inc_by(n.min(previous - sent));
                    }
                    sent += n;
                    lane.set_progress(self.index, sent);
                    if self.over_limit(&mut checked) && !lane.is_newest(req) {
                        up.abort().await;
                        return Ok(Outcome::Skipped);
                    }
                }
                Some(Err(_)) => {
                    // Broken at the encoder: broken here too, so readers see an error.
                    up.abort().await;
                    debug!(upstream = self.name(), path, sent, "forwarded a broken upload as broken");
                    return Ok(Outcome::Done);
                }
                None => break,
            }
        }
        let mut resp = match tokio::time::timeout(timeout, up.finish()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(fail(sent, e)),
            Err(_) => return Err(fail(sent, anyhow!("no response within {timeout:?}"))),
        };
        let _ = tokio::time::timeout(timeout, resp.bytes()).await;
        // A DELETE of what the origin lost in a restart is fine.
        let gone = req.method == Method::DELETE && resp.status == StatusCode::NOT_FOUND;
        if !(resp.status.is_success() || gone) {
            self.metrics.upload_errors.inc();
            warn!(upstream = self.name(), method = %req.method, path, status = resp.status.as_u16(), "the origin refused a request");
        }
        Ok(Outcome::Done)
    }

    /// Make sure the origin has every kept init segment and manifest (HEAD;
    /// PUT the kept copy where it answers anything but 200 with the same length).
    async fn resync(&self, client: &mut Client) -> Result<()> {
        let timeout = self.config.timeout;
        let mut sent = Vec::new();
        for kept in self.journal.kept() {
            let mut head =
                tokio::time::timeout(timeout, client.request_with(Method::HEAD, &kept.path, &self.headers()))
                    .await
                    .map_err(|_| anyhow!("HEAD {}: no answer within {timeout:?}", kept.path))??;
            let _ = head.bytes().await;
            let len = head.header("content-length").and_then(|v| v.parse::<u64>().ok());
            if head.status == StatusCode::OK && len == Some(kept.body.len()) {
                continue;
            }
            let status = tokio::time::timeout(timeout * 4, self.put_whole(client, &kept.path, &kept.body))
                .await
                .map_err(|_| anyhow!("PUT {}: no answer within {:?}", kept.path, timeout * 4))??;
            self.metrics.resent_bytes.inc_by(kept.body.len());
            if !status.is_success() {
                self.metrics.upload_errors.inc();
                warn!(
                    upstream = self.name(),
                    path = kept.path,
                    status = status.as_u16(),
                    "the origin refused a kept file"
                );
            }
            sent.push(kept.path);
        }
        if !sent.is_empty() {
            info!(upstream = self.name(), files = ?sent, "sent the kept init segments / manifests the origin did not have");
        }
        Ok(())
    }

    async fn put_whole(&self, client: &mut Client, path: &str, body: &Arc<Object>) -> Result<StatusCode> {
        let mut up = client.upload(Method::PUT, path, &self.headers()).await?;
        let mut reader = body.reader();
        while let Some(chunk) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
            let chunk = chunk.map_err(|e| anyhow!(e))?;
            up.send(chunk.data).await?;
        }
        let mut resp = up.finish().await?;
        let _ = resp.bytes().await;
        Ok(resp.status)
    }
}
