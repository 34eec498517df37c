//! What the relay keeps of the encoder's requests, for its upstreams.
//!
//! **Lanes.** Each connection the encoder opens is a lane: ffmpeg sends the
//! requests of one track strictly one after another on its own connection
//! (init segment first, then every segment), so a lane is an ordered list of
//! requests, and every upstream replays each lane in order, lanes
//! concurrently. A request's body is a growing [`Object`] (the store's own
//! type: one writer, any number of readers, each with its own cursor), so an
//! upstream forwards each chunk the moment it arrives and a late or returning
//! upstream reads the same body from its start.
//!
//! **Retention.** A request stays in its lane until every upstream has sent
//! it completely; the upstreams' cursors say how far each got. The bytes an
//! upstream still has to send are its *behind* count (see
//! `upstream::Upstream::behind`); past the relay's limit it jumps to the
//! live edge (the newest request of each lane), so a dead or slow origin
//! holds a bounded amount of memory.
//!
//! **Stream state.** Per stream the latest complete init segments and
//! manifests are kept as long as the stream lives (until the encoder DELETEs
//! them): they are what an origin that restarted may have lost long after
//! their requests left the lanes, and they are sent again when an upstream
//! comes back (see `upstream`). A second PUT of an init segment that the
//! stream already has starts a new encoder run (ffmpeg sends each init
//! segment once per run): requests of the old run that an upstream has not
//! started yet are then skipped, never interleaved with the new run's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::Method;
use tokio::sync::Notify;

use crate::store::{Kind, Object};

/// One request the encoder made.
#[derive(Debug)]
pub struct Request {
    /// PUT, POST or DELETE.
    pub method: Method,
    /// The stream (`/live/{stream}/`).
    pub stream: String,
    /// The file name in the stream.
    pub file: String,
    /// The body as it arrives (empty for DELETE).
    pub body: Arc<Object>,
    /// The stream's encoder run when the request came in.
    pub run: u64,
}

impl Request {
    /// The request path, the same at the relay and at the origins.
    pub fn path(&self) -> String {
        format!("/live/{}/{}", self.stream, self.file)
    }

    /// Init segment, manifest or media.
    pub fn kind(&self) -> Kind {
        Kind::of(&self.file)
    }
}

/// The requests of one encoder connection, in order.
#[derive(Debug)]
pub struct Lane {
    /// For logs.
    pub id: u64,
    /// The requests and the upstreams' cursors.
    state: Mutex<LaneState>,
    /// Woken when a request is added or the lane closes.
    changed: Notify,
    /// Per upstream: bytes of its current request it has sent (this attempt).
    progress: Vec<AtomicU64>,
}

#[derive(Debug)]
struct LaneState {
    /// Requests not yet sent by every upstream; `requests[0]` has index `base`.
    requests: VecDeque<Arc<Request>>,
    /// Index of `requests[0]`.
    base: u64,
    /// Per upstream: index of the next request it will send.
    cursors: Vec<u64>,
    /// The encoder closed the connection: no request will be added.
    closed: bool,
}

impl LaneState {
    /// Drop the requests every upstream is done with.
    fn trim(&mut self) {
        let min = self.cursors.iter().copied().min().unwrap_or(u64::MAX);
        while self.base < min && !self.requests.is_empty() {
            self.requests.pop_front();
            self.base += 1;
        }
    }
}

/// What [`Lane::next`] hands an upstream.
pub enum Next {
    /// The request at this index.
    Request(u64, Arc<Request>),
    /// The lane is closed and the upstream has sent all of it.
    Done,
}

impl Lane {
    fn new(id: u64, upstreams: usize) -> Lane {
        let state = LaneState { requests: VecDeque::new(), base: 0, cursors: vec![0; upstreams], closed: false };
        Lane {
            id,
            state: Mutex::new(state),
            changed: Notify::new(),
            progress: (0..upstreams).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Upstream `up` has sent `bytes` of its current request.
    pub fn set_progress(&self, up: usize, bytes: u64) {
        self.progress[up].store(bytes, Ordering::Relaxed);
    }

    /// Bytes of its current request upstream `up` has sent.
    pub fn progress(&self, up: usize) -> u64 {
        self.progress[up].load(Ordering::Relaxed)
    }

    /// Bytes upstream `up` still has to send in this lane.
    pub fn behind(&self, up: usize) -> u64 {
        let st = self.lock();
        let from = (st.cursors[up] - st.base) as usize;
        let total: u64 = st.requests.iter().skip(from).map(|r| r.body.len()).sum();
        total.saturating_sub(self.progress(up))
    }

    /// True if `req` is the newest request of the lane.
    pub fn is_newest(&self, req: &Arc<Request>) -> bool {
        self.lock().requests.back().is_some_and(|r| Arc::ptr_eq(r, req))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a request (the encoder sent its headers).
    pub fn push(&self, req: Arc<Request>) {
        self.lock().requests.push_back(req);
        self.changed.notify_waiters();
    }

    /// The encoder closed this connection.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// The request upstream `up` sends next, waiting until there is one.
    pub async fn next(&self, up: usize) -> Next {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a push in between is not missed.
            changed.as_mut().enable();
            {
                let st = self.lock();
                let at = st.cursors[up];
                if let Some(r) = st.requests.get((at - st.base) as usize) {
                    return Next::Request(at, r.clone());
                }
                if st.closed {
                    return Next::Done;
                }
            }
            changed.await;
        }
    }

    /// Upstream `up` is done with the request at `index`.
    pub fn advance(&self, up: usize, index: u64) {
        let mut st = self.lock();
        st.cursors[up] = st.cursors[up].max(index + 1);
        self.set_progress(up, 0);
        st.trim();
    }

    /// Move upstream `up` to the live edge: the newest request of the lane
    /// (from its start). Returns the requests skipped, for the byte count.
    pub fn jump_to_edge(&self, up: usize) -> Vec<Arc<Request>> {
        let mut st = self.lock();
        let end = st.base + st.requests.len() as u64;
        let edge = end.saturating_sub(1).max(st.cursors[up]);
        let from = (st.cursors[up] - st.base) as usize;
        let skipped: Vec<_> = st.requests.iter().skip(from).take((edge - st.cursors[up]) as usize).cloned().collect();
        st.cursors[up] = edge;
        self.set_progress(up, 0);
        st.trim();
        skipped
    }

    /// True if the lane is closed and no upstream has anything left in it.
    fn finished(&self) -> bool {
        let st = self.lock();
        st.closed && st.requests.is_empty() && st.cursors.iter().all(|&c| c >= st.base)
    }
}

/// Kept per stream for upstreams that come back.
#[derive(Debug, Default)]
struct StreamState {
    /// Complete init segments, by file name.
    inits: BTreeMap<String, Arc<Object>>,
    /// The latest complete manifest of each name.
    manifests: BTreeMap<String, Arc<Object>>,
    /// The encoder run (bumped when an init segment comes a second time).
    run: u64,
}

/// Every lane and stream of one relay.
#[derive(Debug)]
pub struct Journal {
    /// Number of upstreams (cursor slots per lane).
    upstreams: usize,
    /// Open lanes (and closed ones an upstream has not finished).
    lanes: Mutex<Vec<Arc<Lane>>>,
    /// Per stream: init segments, manifests, run.
    streams: Mutex<HashMap<String, StreamState>>,
    /// Lane ids.
    next_lane: AtomicU64,
}

/// What an upstream that comes back is sent again.
#[derive(Debug)]
pub struct Kept {
    /// `/live/{stream}/{file}`.
    pub path: String,
    /// Init segment or manifest.
    pub kind: Kind,
    /// The complete body.
    pub body: Arc<Object>,
}

impl Journal {
    /// An empty journal for `upstreams` upstreams.
    pub fn new(upstreams: usize) -> Journal {
        Journal {
            upstreams,
            lanes: Mutex::new(Vec::new()),
            streams: Mutex::new(HashMap::new()),
            next_lane: AtomicU64::new(1),
        }
    }

    /// A lane for a new encoder connection.
    pub fn lane(&self) -> Arc<Lane> {
        let lane = Arc::new(Lane::new(self.next_lane.fetch_add(1, Ordering::Relaxed), self.upstreams));
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.retain(|l| !l.finished());
        lanes.push(lane.clone());
        lane
    }

    /// The lanes held (open, or closed with requests still to send).
    pub fn lanes_held(&self) -> Vec<Arc<Lane>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.retain(|l| !l.finished());
        lanes.clone()
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamState>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run a new request of `stream` belongs to. An init segment that the
    /// stream already has starts a new run.
    pub fn run_for(&self, stream: &str, file: &str, method: &Method) -> u64 {
        let mut streams = self.streams();
        let st = streams.entry(stream.to_string()).or_default();
        if *method != Method::DELETE && Kind::of(file) == Kind::Init && st.inits.contains_key(file) {
            st.run += 1;
            tracing::info!(stream, file, run = st.run, "init segment sent again: a new encoder run");
        }
        st.run
    }

    /// The current run of `stream`.
    pub fn run(&self, stream: &str) -> u64 {
        self.streams().get(stream).map_or(0, |s| s.run)
    }

    /// A request finished arriving (cleanly): keep init segments and manifests.
    pub fn completed(&self, req: &Request) {
        let mut streams = self.streams();
        let st = streams.entry(req.stream.clone()).or_default();
        match req.kind() {
            Kind::Init => {
                st.inits.insert(req.file.clone(), req.body.clone());
            }
            Kind::Manifest => {
                st.manifests.insert(req.file.clone(), req.body.clone());
            }
            Kind::Media => {}
        }
    }

    /// The encoder deleted a file: forget it; a stream with nothing kept is dropped.
    pub fn deleted(&self, stream: &str, file: &str) {
        let mut streams = self.streams();
        if let Some(st) = streams.get_mut(stream) {
            st.inits.remove(file);
            st.manifests.remove(file);
            if st.inits.is_empty() && st.manifests.is_empty() {
                streams.remove(stream);
            }
        }
    }

    /// Init segments, then manifests, of every stream: what an upstream that
    /// comes back may have lost.
    pub fn kept(&self) -> Vec<Kept> {
        let streams = self.streams();
        let mut out = Vec::new();
        for kind in [Kind::Init, Kind::Manifest] {
            for (name, st) in streams.iter() {
                let files = if kind == Kind::Init { &st.inits } else { &st.manifests };
                for (file, body) in files {
                    out.push(Kept { path: format!("/live/{name}/{file}"), kind, body: body.clone() });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(j: &Journal, file: &str) -> Arc<Request> {
        let (body, mut w) = Object::growing();
        w.push(bytes::Bytes::from(vec![0u8; 10]));
        w.finish();
        let run = j.run_for("s", file, &Method::PUT);
        Arc::new(Request { method: Method::PUT, stream: "s".into(), file: file.into(), body, run })
    }

    #[tokio::test]
    async fn requests_stay_until_every_upstream_sent_them() {
        let j = Journal::new(2);
        let lane = j.lane();
        for f in ["init-stream0.m4s", "chunk-stream0-00001.m4s", "chunk-stream0-00002.m4s"] {
            lane.push(req(&j, f));
        }
        let Next::Request(i, r) = lane.next(0).await else { panic!() };
        assert_eq!((i, r.file.as_str()), (0, "init-stream0.m4s"));
        lane.advance(0, 0);
        lane.advance(0, 1);
        // Upstream 1 has sent nothing: everything is still there for it.
        let Next::Request(i, _) = lane.next(1).await else { panic!() };
        assert_eq!(i, 0);
        assert_eq!(lane.lock().requests.len(), 3);
        // Upstream 1 falls behind: it jumps to the newest request, the rest
        // is skipped and freed.
        let skipped = lane.jump_to_edge(1);
        assert_eq!(skipped.len(), 2);
        let Next::Request(i, r) = lane.next(1).await else { panic!() };
        assert_eq!((i, r.file.as_str()), (2, "chunk-stream0-00002.m4s"));
        assert_eq!(lane.lock().requests.len(), 1);
        lane.close();
        lane.advance(0, 2);
        lane.advance(1, 2);
        assert!(matches!(lane.next(0).await, Next::Done));
        assert!(j.lanes_held().is_empty());
    }

    #[test]
    fn an_init_sent_again_starts_a_new_run_and_kept_lists_inits_first() {
        let j = Journal::new(1);
        for f in ["manifest.mpd", "init-stream0.m4s", "init-stream1.m4s"] {
            let r = req(&j, f);
            j.completed(&r);
        }
        assert_eq!(j.run("s"), 0);
        assert_eq!(req(&j, "init-stream0.m4s").run, 1);
        let kept: Vec<String> = j.kept().into_iter().map(|k| k.path).collect();
        assert_eq!(kept, ["/live/s/init-stream0.m4s", "/live/s/init-stream1.m4s", "/live/s/manifest.mpd"]);
        j.deleted("s", "init-stream0.m4s");
        j.deleted("s", "init-stream1.m4s");
        j.deleted("s", "manifest.mpd");
        assert!(j.kept().is_empty());
    }
}
