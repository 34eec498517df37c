//! The body types between the core and the transports: [`IngestBody`], what
//! ingest reads from a request whatever the transport, and [`Body`], the
//! response body the adapters copy to the wire piece by piece, with its
//! [`Progress`] for the connections' stall watchdogs, and
//! [`ResponseBodyError`], how such a body ends when it cannot end cleanly.
//! These are the transports' whole view of a body: they never see the
//! store's objects or errors.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::warn;

use super::{range, static_files, upstream};
use crate::conn::Transport;
use crate::metrics::{GaugeGuard, Metrics};
use crate::store::{Object, ObjectError, ObjectReader, Status};
use upstream::UpstreamBroken;

/// A request body as ingest reads it, whatever the transport.
pub trait IngestBody: Send {
    /// The next piece of the body: `None` at a clean end, `Some(Err)` when the
    /// body broke (connection closed before the terminating chunk).
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes, BodyError>>> + Send;
}

/// A request body that ended abnormally (connection closed before the
/// terminating chunk, stream reset). The transport's error is kept as the
/// [`source`](std::error::Error::source), for the one log line ingest writes.
#[derive(Debug, thiserror::Error)]
#[error("request body broken")]
pub struct BodyError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl BodyError {
    /// A broken body caused by `e`.
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BodyError {
        BodyError(e.into())
    }
}

/// Why a response body ends in an error. The transport must then end the
/// response visibly broken (HTTP/1.1: close the connection without the last
/// chunk; h2/h3: reset the stream): what the reader got is a truncated
/// prefix and must never look like a whole object. One byte, `Copy`: it is
/// part of every piece a body returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseBodyError {
    /// The object's upload ended without its terminating chunk.
    #[error("upload aborted before completion")]
    Aborted,
    /// The object was evicted and then revoked under this reader (evicted
    /// objects held by readers passed the pinned-bytes budget).
    #[error("evicted object revoked: readers holding evicted objects passed the pinned-bytes budget")]
    Revoked,
    /// Front mode: the upstream's body broke before its end.
    #[error("upstream body broken before its end")]
    Upstream,
    /// A static file was truncated or became unreadable while it was sent.
    #[error("static file ended early")]
    File,
}

impl From<ObjectError> for ResponseBodyError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::Aborted => ResponseBodyError::Aborted,
            ObjectError::Evicted => ResponseBodyError::Revoked,
        }
    }
}

impl From<UpstreamBroken> for ResponseBodyError {
    fn from(_: UpstreamBroken) -> Self {
        ResponseBodyError::Upstream
    }
}

/// The body of a request that cannot carry one into ingest (h3 reads).
pub struct NoBody;

impl IngestBody for NoBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        None
    }
}

/// What a response sends after its headers.
pub(super) enum BodyKind {
    /// Nothing (HEAD, 204, errors without text).
    Empty,
    /// One buffer.
    Full(Option<Bytes>),
    /// A stored object, streamed chunk by chunk as ingest receives it.
    Object {
        /// The reader's cursor.
        reader: ObjectReader,
        /// When the read started: chunks that arrived later count for the
        /// origin-delay histogram.
        started: Instant,
        /// The byte window sent (a `Range` request), and how far into it the
        /// body has got.
        window: range::Window,
    },
    /// A response body streaming in from the upstream (front mode).
    Upstream(upstream::UpstreamBody),
    /// A static file, one piece at a time when the transport asks for the
    /// next one (see [`static_files::StaticMemory`]).
    File(static_files::FileBody),
}

/// How far a response body has got, shared with the connection sending it so
/// that a reader which stops reading can be found and dropped (see
/// [`Progress::stalled_for`]).
///
/// The body's side is two counters bumped with plain stores (it is their only
/// writer) and no clock read: polls run once or twice per chunk per reader,
/// the watchdog a few times per send timeout, so the watchdog keeps the time.
#[derive(Debug)]
pub struct Progress {
    /// Polls so far.
    polls: AtomicU64,
    /// The watchdog's view: the poll count it saw while the body had something
    /// to send, and when it first saw that count (`None` while nothing waits).
    seen: Mutex<Option<(u64, Instant)>>,
    /// Bytes handed to the transport.
    sent: AtomicU64,
    /// Set once the body returned its end or error.
    finished: AtomicBool,
    /// Set while the last poll of an upstream body returned `Pending`, i.e.
    /// it waits for the edge cache, not for the client (front mode: an
    /// upstream body has no object to compare `sent` with), and while a
    /// static body waits for the static memory budget. Not used for
    /// objects: hyper's h2 stops polling a body while the stream has no
    /// flow-control capacity, so "last poll was Pending" can hide a stalled
    /// client there; the object's length tells the truth instead. A front
    /// holds no bytes of its own for a stalled client (TCP backpressure
    /// reaches the cache).
    waiting: AtomicBool,
    /// The object streamed, if any: while the reader has caught up with a
    /// growing object it waits for ingest, not for the client.
    object: Option<Arc<Object>>,
    /// Length of a body known up front (buffers, files): once that much was
    /// handed over, nothing is left to stall on.
    total: Option<u64>,
    /// Offset in `object` of the first byte sent (a range request).
    base: u64,
}

impl Progress {
    fn new(object: Option<Arc<Object>>, total: Option<u64>, finished: bool) -> Progress {
        Progress {
            polls: AtomicU64::new(0),
            seen: Mutex::new(None),
            sent: AtomicU64::new(0),
            finished: AtomicBool::new(finished),
            waiting: AtomicBool::new(false),
            object,
            total,
            base: 0,
        }
    }

    /// How long the body has had something to send without being asked for
    /// it, unless it is done or is waiting for ingest (caught up with a
    /// growing object). A reader that stops reading (flow control closed)
    /// makes this grow. Meant to be called periodically (the watchdog): the
    /// time counts from the first call that saw the current poll count with
    /// something to send, so it lags the last poll by at most one period.
    pub fn stalled_for(&self) -> Option<Duration> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !self.finished.load(Ordering::Relaxed) && self.object.as_ref().is_some_and(|o| o.is_revoked()) {
            // Its evicted object was revoked (pinned budget): drop it now.
            return Some(Duration::MAX);
        }
        if self.is_waiting_or_done() {
            *seen = None;
            return None;
        }
        let polls = self.polls.load(Ordering::Relaxed);
        match *seen {
            Some((p, since)) if p == polls => Some(since.elapsed()),
            _ => {
                *seen = Some((polls, Instant::now()));
                Some(Duration::ZERO)
            }
        }
    }

    /// True when the body has nothing to send now: finished, waiting for the
    /// upstream or for ingest, or all of a known length handed over.
    fn is_waiting_or_done(&self) -> bool {
        if self.finished.load(Ordering::Relaxed)
            || self.waiting.load(Ordering::Relaxed)
            || self.total.is_some_and(|t| self.sent() >= t)
        {
            return true;
        }
        self.object.as_ref().is_some_and(|o| {
            let (len, status) = o.snapshot();
            status == Status::Growing && len <= self.base + self.sent()
        })
    }

    /// Bytes handed to the transport so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// A response body. Adapters poll it with [`Body::poll_next`] (or
/// [`Body::next`]) and write each piece as one frame/chunk as soon as it is
/// returned; `Some(Err)` means the object's upload was aborted and the
/// response must end in a visible error (HTTP/1.1: close without the final
/// chunk; h2/h3: reset the stream).
pub struct Body {
    /// What is sent.
    kind: BodyKind,
    /// The origin's metrics, for the origin-delay histogram.
    metrics: Arc<Metrics>,
    /// Transport label for the metrics.
    transport: Transport,
    /// Counts this response as an active reader while it streams.
    _reader: Option<GaugeGuard>,
    /// Shared with the connection's stall watchdog.
    progress: Arc<Progress>,
}

impl Body {
    pub(super) fn new(kind: BodyKind, metrics: &Arc<Metrics>, transport: Transport) -> Body {
        let (reader, object) = match &kind {
            BodyKind::Object { reader, .. } => (Some(metrics.reader(transport)), Some(reader.object().clone())),
            BodyKind::Upstream(_) => (Some(metrics.reader(transport)), None),
            _ => (None, None),
        };
        let finished = matches!(kind, BodyKind::Empty);
        let total = match &kind {
            BodyKind::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::File(f) => Some(f.remaining()),
            _ => None,
        };
        let mut progress = Progress::new(object, total, finished);
        if let BodyKind::Object { window, .. } = &kind {
            progress.base = window.start;
        }
        let progress = Arc::new(progress);
        Body { kind, metrics: metrics.clone(), transport, _reader: reader, progress }
    }

    /// This body's progress, for a watchdog that drops readers which stopped reading.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Exact length when known up front (complete objects, buffers).
    pub fn exact_len(&self) -> Option<u64> {
        match &self.kind {
            BodyKind::Empty => Some(0),
            BodyKind::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Object { reader, window, .. } => match reader.object().snapshot() {
                (len, Status::Complete) => Some(window.len_of(len)),
                _ => None,
            },
            BodyKind::Upstream(b) => b.exact_len(),
            BodyKind::File(f) => Some(f.remaining()),
        }
    }

    /// True if the body will send nothing more.
    pub fn is_end(&self) -> bool {
        match &self.kind {
            BodyKind::Empty => true,
            BodyKind::Full(b) => b.is_none(),
            BodyKind::Object { .. } => false,
            BodyKind::Upstream(b) => b.is_end(),
            BodyKind::File(f) => f.remaining() == 0,
        }
    }

    /// The next piece to send. Cancel safe.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ResponseBodyError>>> {
        // Plain load + store: this body is the counters' only writer.
        let p = &self.progress;
        p.polls.store(p.polls.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        let r = self.poll_inner(cx);
        match &self.kind {
            BodyKind::Upstream(_) => self.progress.waiting.store(r.is_pending(), Ordering::Relaxed),
            // Waiting for the static budget is not the client's doing.
            BodyKind::File(f) => self.progress.waiting.store(f.waits_for_memory(), Ordering::Relaxed),
            _ => {}
        }
        match &r {
            Poll::Ready(Some(Ok(b))) => {
                let sent = &self.progress.sent;
                sent.store(sent.load(Ordering::Relaxed) + b.len() as u64, Ordering::Relaxed);
            }
            Poll::Ready(_) => self.progress.finished.store(true, Ordering::Relaxed),
            Poll::Pending => {}
        }
        r
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ResponseBodyError>>> {
        match &mut self.kind {
            BodyKind::File(f) => match f.poll_piece(cx) {
                Poll::Ready(Some(Err(e))) => {
                    // Truncated or unreadable under us: end visibly broken.
                    warn!(remaining = f.remaining(), error = %e, "static file ended early");
                    Poll::Ready(Some(Err(ResponseBodyError::File)))
                }
                other => other.map(|o| o.map(|r| r.map_err(|_| ResponseBodyError::File))),
            },
            BodyKind::Empty => Poll::Ready(None),
            BodyKind::Full(b) => Poll::Ready(b.take().map(Ok)),
            BodyKind::Object { reader, started, window } => loop {
                if window.done() {
                    return Poll::Ready(None);
                }
                match reader.poll_chunk(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        let Some(data) = window.cut(chunk.data) else {
                            continue; // before the range's start
                        };
                        if chunk.arrived >= *started {
                            self.metrics.origin_delay(self.transport).observe(chunk.arrived.elapsed());
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    other => return other.map(|o| o.map(|r| r.map(|c| c.data).map_err(ResponseBodyError::from))),
                }
            },
            BodyKind::Upstream(b) => b.poll_next(cx).map(|o| o.map(|r| r.map_err(ResponseBodyError::from))),
        }
    }

    /// Resolves once the object this body streams was revoked (evicted and
    /// over the pinned budget): a transport blocked on a stalled client
    /// then resets the response instead of waiting for the send timeout.
    /// Never resolves for other bodies.
    pub async fn revoked(&self) {
        match &self.progress.object {
            Some(obj) => obj.revoked().await,
            None => std::future::pending().await,
        }
    }

    /// Async form of [`Body::poll_next`].
    pub async fn next(&mut self) -> Option<Result<Bytes, ResponseBodyError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}
