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
        if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
            let etag = self.etag();
            return inm.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(&etag));
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

/// The file for `parts` under `web_dir`, opened, or `None` (404).
pub async fn open(web_dir: &Path, parts: &[String]) -> Option<StaticFile> {
    let root = tokio::fs::canonicalize(web_dir).await.ok()?;
    let mut path: PathBuf = root.clone();
    path.extend(parts);
    let mut path = tokio::fs::canonicalize(&path).await.ok()?;
    if !path.starts_with(&root) {
        return None;
    }
    let mut meta = tokio::fs::metadata(&path).await.ok()?;
    if meta.is_dir() {
        path = tokio::fs::canonicalize(path.join("index.html")).await.ok()?;
        if !path.starts_with(&root) {
            return None;
        }
        meta = tokio::fs::metadata(&path).await.ok()?;
    }
    if !meta.is_file() {
        return None;
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let file = tokio::fs::File::open(&path).await.ok()?;
    // The length and time of what was opened (the path may change meanwhile).
    let meta = file.metadata().await.ok()?;
    Some(StaticFile { file, name, len: meta.len(), modified: meta.modified().ok() })
}
