//! Static files from the web directory: the player pages and dash.js from
//! `web/node_modules`. Components arrive validated by [`super::route`] (no
//! separators, no leading dots); the resolved path is also checked to stay
//! inside the canonical web directory, so a symlink cannot lead out of it.
//! Directories are never listed: a directory serves its `index.html` or 404.
//!
//! Memory: static files are the application's own (pages, players), few and
//! small, and every viewer asks for the same ones. [`StaticMemory`] is one
//! budget (`--max-static-memory`) for all the bytes static responses hold:
//! a file of at most an eighth of it is read once and shared, immutable, by
//! every reader ([`StaticMemory::cached`]; a changed file is read again), so
//! N readers of a file cost one copy; larger files, and files that no longer
//! fit (a quarter of the budget is kept for them), are read from disk in
//! [`FILE_CHUNK`] pieces when the transport asks for the next one, and each
//! piece holds its bytes of the budget until the transport lets go of it: a
//! reader that finds the budget spent waits. Either way a response hands its
//! body over one piece at a time, so a reader that stops reading is found by
//! the send timeout. Each file carries a strong `ETag` (length and
//! modification time) and `Last-Modified`; `If-None-Match` /
//! `If-Modified-Since` give 304, and one `Range` gives 206.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest piece of a static file handed to the transport at once.
pub const FILE_CHUNK: usize = 64 << 10;

/// The memory budget of static responses, shared by an origin's readers.
#[derive(Debug)]
pub struct StaticMemory {
    /// The budget in bytes.
    budget: u64,
    /// Bytes of the budget not held (one permit per byte).
    free: Arc<Semaphore>,
    /// Shared copies of small files, by canonical path.
    cache: Mutex<HashMap<PathBuf, Cached>>,
    /// Held while a file is read into the cache, so concurrent first
    /// readers of a file read it once.
    filling: tokio::sync::Mutex<()>,
    /// Bytes held, exported (`h3live_static_bytes`).
    gauge: Gauge,
}

/// A shared copy of a file, valid while the file's length and modification
/// time are the ones it was read with.
#[derive(Debug)]
struct Cached {
    len: u64,
    modified: Option<SystemTime>,
    data: Bytes,
}

/// Bytes that hold their share of the budget until the last reader lets go.
struct Held {
    /// The bytes.
    data: Vec<u8>,
    /// Their share of the budget.
    _permit: OwnedSemaphorePermit,
    /// Decremented when they are freed.
    gauge: Gauge,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.data.len() as i64);
    }
}

impl StaticMemory {
    /// A budget of `budget` bytes (at least one piece), exported in `gauge`.
    pub fn new(budget: u64, gauge: Gauge) -> StaticMemory {
        let budget = budget.clamp(FILE_CHUNK as u64, Semaphore::MAX_PERMITS as u64);
        StaticMemory {
            budget,
            free: Arc::new(Semaphore::new(budget as usize)),
            cache: Mutex::new(HashMap::new()),
            filling: tokio::sync::Mutex::new(()),
            gauge,
        }
    }

    /// Bytes held now (shared copies and pieces in flight).
    pub fn held(&self) -> u64 {
        self.budget - self.free.available_permits() as u64
    }

    /// `data` as bytes holding `permit` (its length) until freed.
    fn hold(&self, data: Vec<u8>, permit: OwnedSemaphorePermit) -> Bytes {
        self.gauge.inc_by(data.len() as i64);
        Bytes::from_owner(Held { data, _permit: permit, gauge: self.gauge.clone() })
    }

    /// The shared copy of `f`, read now if it fits: at most an eighth of the
    /// budget, and a quarter of the budget left for streamed pieces.
    async fn cached(&self, f: &StaticFile) -> Option<Bytes> {
        let current = |cache: &HashMap<PathBuf, Cached>| {
            cache.get(&f.path).filter(|c| c.len == f.len && c.modified == f.modified).map(|c| c.data.clone())
        };
        if let Some(data) = current(&self.cache.lock().unwrap_or_else(|e| e.into_inner())) {
            return Some(data);
        }
        if f.len > self.budget / 8 {
            return None;
        }
        let _filling = self.filling.lock().await;
        if let Some(data) = current(&self.cache.lock().unwrap_or_else(|e| e.into_inner())) {
            return Some(data);
        }
        if (self.free.available_permits() as u64) < f.len + self.budget / 4 {
            return None;
        }
        let permit = self.free.clone().try_acquire_many_owned(u32::try_from(f.len).ok()?).ok()?;
        let (file, len) = (f.file.clone(), f.len as usize);
        let data = tokio::task::spawn_blocking(move || read_at(&file, 0, len)).await.ok()?.ok()?;
        if data.len() != len {
            return None; // changed under us: streamed instead
        }
        let data = self.hold(data, permit);
        let entry = Cached { len: f.len, modified: f.modified, data: data.clone() };
        // A previous version is freed once its last reader lets go.
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(f.path.clone(), entry);
        Some(data)
    }

    /// The body of `f` from byte `start`, `len` bytes: pieces of the shared
    /// copy, or pieces read from disk under the budget.
    pub async fn body(self: &Arc<Self>, f: &StaticFile, start: u64, len: u64) -> FileBody {
        let source = match self.cached(f).await {
            Some(data) => Source::Shared(data),
            None => Source::Disk { file: f.file.clone(), memory: self.clone() },
        };
        FileBody { source, pos: start, end: start + len, pending: None }
    }
}

/// Read up to `len` bytes of `file` at `offset` (fewer only at its end).
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Where a static response's bytes come from.
enum Source {
    /// The shared copy: pieces are slices of it.
    Shared(Bytes),
    /// The file on disk, read a piece at a time under the budget.
    Disk {
        /// The open file (read with `pread`: no shared cursor).
        file: Arc<std::fs::File>,
        /// The budget the pieces are held under.
        memory: Arc<StaticMemory>,
    },
}

/// A piece being fetched from disk.
enum Pending {
    /// Waiting for its bytes of the budget.
    Budget(Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send + Sync>>),
    /// Being read (on a blocking thread).
    Read(tokio::task::JoinHandle<std::io::Result<Vec<u8>>>, Option<OwnedSemaphorePermit>),
}

/// The body of a static response: one piece of at most [`FILE_CHUNK`] bytes
/// at a time, when the transport asks for it. Cancel safe.
pub struct FileBody {
    source: Source,
    /// Next byte to send.
    pos: u64,
    /// End of the bytes to send.
    end: u64,
    /// The disk piece under way.
    pending: Option<Pending>,
}

impl FileBody {
    /// Bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// True while the next piece waits for the budget (not for the client).
    pub fn waits_for_memory(&self) -> bool {
        matches!(self.pending, Some(Pending::Budget(_)))
    }

    /// The next piece; `None` at the end; an error if the file could not be
    /// read or ended early (the response must then end visibly broken).
    pub fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let want = self.remaining().min(FILE_CHUNK as u64) as usize;
        if want == 0 {
            return Poll::Ready(None);
        }
        let (file, memory) = match &self.source {
            Source::Shared(data) => {
                let piece = data.slice(self.pos as usize..self.pos as usize + want);
                self.pos += want as u64;
                return Poll::Ready(Some(Ok(piece)));
            }
            Source::Disk { file, memory } => (file.clone(), memory.clone()),
        };
        loop {
            match self.pending.take() {
                None => {
                    let acquire = memory.free.clone().acquire_many_owned(want as u32);
                    self.pending = Some(Pending::Budget(Box::pin(acquire)));
                }
                Some(Pending::Budget(mut f)) => match f.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.pending = Some(Pending::Budget(f));
                        return Poll::Pending;
                    }
                    Poll::Ready(permit) => {
                        let (file, pos) = (file.clone(), self.pos);
                        let read = tokio::task::spawn_blocking(move || read_at(&file, pos, want));
                        self.pending = Some(Pending::Read(read, permit.ok()));
                    }
                },
                Some(Pending::Read(mut h, permit)) => {
                    let r = match Pin::new(&mut h).poll(cx) {
                        Poll::Pending => {
                            self.pending = Some(Pending::Read(h, permit));
                            return Poll::Pending;
                        }
                        Poll::Ready(r) => r,
                    };
                    let data = r.map_err(std::io::Error::other).and_then(|r| r);
                    return Poll::Ready(Some(match (data, permit) {
                        (Ok(d), Some(p)) if d.len() == want => {
                            self.pos += want as u64;
                            Ok(memory.hold(d, p))
                        }
                        (Ok(_), _) => {
                            self.pos = self.end;
                            Err(std::io::ErrorKind::UnexpectedEof.into())
                        }
                        (Err(e), _) => {
                            self.pos = self.end;
                            Err(e)
                        }
                    }));
                }
            }
        }
    }
}

/// An open static file, ready to be served.
pub struct StaticFile {
    /// The open file.
    pub file: Arc<std::fs::File>,
    /// Its canonical path (the key of its shared copy).
    pub path: PathBuf,
    /// Its name (for the content type).
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time, if the file system has one.
    pub modified: Option<SystemTime>,
}

impl StaticFile {
    /// Strong validator from length and modification time.
    pub fn etag(&self) -> String {
        let ns = self.modified.and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        format!("\"{:x}-{:x}\"", self.len, ns)
    }

    /// True if the request's validators say the client's copy is current (304).
    pub fn not_modified(&self, req: &HeaderMap) -> bool {
        if req.contains_key(header::IF_NONE_MATCH) {
            return super::headers::none_match(req, &self.etag());
        }
        match (req.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()), self.modified) {
            (Some(ims), Some(m)) => match httpdate::parse_http_date(ims) {
                // HTTP dates have second precision.
                Ok(since) => m.duration_since(since).map_or(true, |d| d.as_secs() == 0),
                Err(_) => false,
            },
            _ => false,
        }
    }
}

pub use super::range::{parse_range, RangeReq};

/// Why a file under a root directory was not opened.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No such file, a directory without `index.html`, or not a regular
    /// file: 404.
    #[error("not found")]
    NotFound,
    /// The resolved path leads out of the root (a symlink). Answered like a
    /// missing file (404), as before: whether a path outside exists is not
    /// the client's business.
    #[error("resolves outside the served directory")]
    Escape,
    /// Any other IO error (a symlink loop, permissions, a failing disk):
    /// 500, logged with its cause.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl LookupError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            LookupError::NotFound | LookupError::Escape => http::StatusCode::NOT_FOUND,
            LookupError::Io { .. } => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text for the client (no paths, no causes).
    pub fn public_message(&self) -> &'static str {
        match self {
            LookupError::NotFound | LookupError::Escape => "not found",
            LookupError::Io { .. } => "cannot read the file",
        }
    }
}

/// `NotFound` for errors that mean "there is no such file" (also a file used
/// as a directory and a name too long for the file system), else `Io`, which
/// is logged here, once, with its cause.
fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> LookupError {
    use std::io::ErrorKind::*;
    if matches!(source.kind(), NotFound | NotADirectory | InvalidFilename) {
        return LookupError::NotFound;
    }
    tracing::error!(path = %path.display(), error = %source, "static file lookup failed: {what}");
    LookupError::Io { what, path: path.to_path_buf(), source }
}

/// The regular file `parts` names under `root`, opened, with its canonical
/// path. Components arrive validated by [`super::route`]; the canonical path
/// must stay inside the canonical root, so a symlink cannot lead out of it.
/// With `index`, a directory serves its `index.html`; without, it is not found.
/// Shared by the static files here and the interop endpoint's hq-interop files.
pub async fn open_in(root: &Path, parts: &[String], index: bool) -> Result<(tokio::fs::File, PathBuf), LookupError> {
    let root = tokio::fs::canonicalize(root).await.map_err(|e| io_error("resolving the root", root, e))?;
    let mut path: PathBuf = root.clone();
    path.extend(parts);
    let mut path = inside(&root, &path).await?;
    let meta = tokio::fs::metadata(&path).await.map_err(|e| io_error("reading metadata of", &path, e))?;
    if meta.is_dir() && index {
        path = inside(&root, &path.join("index.html")).await?;
    }
    let meta = tokio::fs::metadata(&path).await.map_err(|e| io_error("reading metadata of", &path, e))?;
    if !meta.is_file() {
        return Err(LookupError::NotFound);
    }
    let file = tokio::fs::File::open(&path).await.map_err(|e| io_error("opening", &path, e))?;
    Ok((file, path))
}

/// The canonical form of `path`, which must lie under the canonical `root`.
async fn inside(root: &Path, path: &Path) -> Result<PathBuf, LookupError> {
    let canonical = tokio::fs::canonicalize(path).await.map_err(|e| io_error("resolving", path, e))?;
    if canonical.starts_with(root) {
        Ok(canonical)
    } else {
        Err(LookupError::Escape)
    }
}

/// The static file for `parts` under `web_dir` (a directory serves its
/// `index.html`), opened.
pub async fn open(web_dir: &Path, parts: &[String]) -> Result<StaticFile, LookupError> {
    let (file, path) = open_in(web_dir, parts, true).await?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The length and time of what was opened (the path may change meanwhile).
    let meta = file.metadata().await.map_err(|e| io_error("reading metadata of", &path, e))?;
    let file = Arc::new(file.into_std().await);
    Ok(StaticFile { file, path, name, len: meta.len(), modified: meta.modified().ok() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn lookup_errors_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("web");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("f.txt"), "x").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("loop-b"), root.join("loop-a")).unwrap();
        std::os::unix::fs::symlink(root.join("loop-a"), root.join("loop-b")).unwrap();
        assert!(open_in(&root, &parts(&["f.txt"]), false).await.is_ok());
        assert!(matches!(open_in(&root, &parts(&["missing"]), false).await, Err(LookupError::NotFound)));
        assert!(matches!(open_in(&root, &parts(&["f.txt", "x"]), false).await, Err(LookupError::NotFound)));
        assert!(matches!(open_in(&root, &parts(&[&"n".repeat(300)]), false).await, Err(LookupError::NotFound)));
        assert!(matches!(open_in(&root, &parts(&[]), false).await, Err(LookupError::NotFound)));
        assert!(matches!(open_in(&root, &parts(&["out"]), false).await, Err(LookupError::Escape)));
        let e = open_in(&root, &parts(&["loop-a"]), false).await.unwrap_err();
        assert_eq!(e.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(std::error::Error::source(&e).is_some(), "the io::Error is kept as the source");
    }
}
