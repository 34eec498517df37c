//! The origin's state directory (`--state-dir`): what a restarted origin
//! cannot get back from the encoder.
//!
//! ffmpeg sends each init segment once per run and never again, also not to
//! an origin that restarted under it (`-ignore_io_errors 1` keeps it running
//! and pushing media segments). So the origin writes every init segment and
//! the latest manifest of each stream to `DIR/<stream>/<file>` when their
//! upload completes, and publishes them again at start. Media segments are not
//! kept: they are seconds long and the encoder pushes new ones.
//!
//! Files are written to a temporary name and renamed, so a crash leaves the
//! old or the new file, never a torn one. A DELETE of an init segment or a
//! manifest (ffmpeg's clean exit) removes its file; a stream dropped as idle
//! loses its directory. Names are validated by the router (`[A-Za-z0-9._-]`,
//! no leading dot) before they get here, and are checked again when loading.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{info, warn};

use super::route::valid_name;
use crate::store::{Kind, Store};

/// A state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// Its root: one subdirectory per stream.
    root: PathBuf,
}

impl StateDir {
    /// Use `root` (created when missing).
    pub fn open(root: &Path) -> io::Result<StateDir> {
        std::fs::create_dir_all(root)?;
        Ok(StateDir { root: root.to_path_buf() })
    }

    /// Whether a file of this name is kept here.
    pub fn keeps(name: &str) -> bool {
        Kind::of(name) != Kind::Media
    }

    /// Publish every kept file into `store`. Returns how many were restored.
    pub fn load(&self, store: &Store) -> io::Result<usize> {
        let mut n = 0;
        for stream in std::fs::read_dir(&self.root)? {
            let stream = stream?;
            let Some(sname) = stream.file_name().to_str().map(str::to_string) else { continue };
            if !valid_name(&sname) || !stream.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(stream.path())? {
                let file = file?;
                let Some(fname) = file.file_name().to_str().map(str::to_string) else { continue };
                if !valid_name(&fname) || !Self::keeps(&fname) || !file.file_type()?.is_file() {
                    continue;
                }
                let data = std::fs::read(file.path())?;
                info!(stream = sname, file = fname, bytes = data.len(), "restored from the state directory");
                store.restore(&sname, &fname, Bytes::from(data));
                n += 1;
            }
        }
        Ok(n)
    }

    /// Keep `data` as `stream/name` (atomically replaced).
    pub async fn save(&self, stream: &str, name: &str, data: Vec<Bytes>) {
        let dir = self.root.join(stream);
        let (path, tmp) = (dir.join(name), dir.join(format!(".{name}.tmp")));
        let res = tokio::task::spawn_blocking(move || -> io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut buf = Vec::with_capacity(data.iter().map(Bytes::len).sum());
            for d in &data {
                buf.extend_from_slice(d);
            }
            std::fs::write(&tmp, &buf)?;
            std::fs::rename(&tmp, &path)
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(stream, file = name, error = %e, "state directory: write failed"),
            Err(e) => warn!(stream, file = name, error = %e, "state directory: write task failed"),
        }
    }

    /// Forget `stream/name`.
    pub fn remove(&self, stream: &str, name: &str) {
        match std::fs::remove_file(self.root.join(stream).join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(stream, file = name, error = %e, "state directory: remove failed"),
        }
    }

    /// Forget a whole stream.
    pub fn remove_stream(&self, stream: &str) {
        match std::fs::remove_dir_all(self.root.join(stream)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(stream, error = %e, "state directory: remove failed"),
        }
    }
}
