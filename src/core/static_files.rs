//! Static files from the web directory: the player pages and dash.js from
//! `web/node_modules`. Components arrive validated by [`super::route`] (no
//! separators, no leading dots); the resolved path is also checked to stay
//! inside the canonical web directory, so a symlink cannot lead out of it.
//! Directories are never listed: a directory serves its `index.html` or 404.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Largest static file served (the player and dash.js are far smaller).
const MAX_STATIC_BYTES: u64 = 32 << 20;

/// The file for `parts` under `web_dir` and its name (for the content type),
/// or `None` (404).
pub async fn read(web_dir: &Path, parts: &[String]) -> Option<(Bytes, String)> {
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
    if !meta.is_file() || meta.len() > MAX_STATIC_BYTES {
        return None;
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let data = tokio::fs::read(&path).await.ok()?;
    Some((Bytes::from(data), name))
}
