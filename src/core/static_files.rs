//! Static files from the web directory: the player pages and dash.js from
//! `web/node_modules`. Components arrive validated by [`super::route`] (no
//! separators, no leading dots); the resolved path is also checked to stay
//! inside the canonical web directory, so a symlink cannot lead out of it.
//! Directories are never listed: a directory serves its `index.html` or 404.
//!
//! Files are never read whole: [`open`] returns an open file and its
//! metadata, and the response body reads it in [`FILE_CHUNK`]-sized pieces
//! only when the transport asks for the next piece, so a viewer that stops
//! reading holds at most one piece plus what the transport buffers. Each file
//! carries a strong `ETag` (length and modification time) and `Last-Modified`;
//! `If-None-Match` / `If-Modified-Since` give 304, and one `Range` gives 206.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::header::{self, HeaderMap};

/// Largest piece of a static file read at once (and so held per response).
pub const FILE_CHUNK: usize = 64 << 10;

/// An open static file, ready to be served.
pub struct StaticFile {
    /// The open file.
    pub file: tokio::fs::File,
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
    Ok(StaticFile { file, name, len: meta.len(), modified: meta.modified().ok() })
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
