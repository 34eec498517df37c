//! The JSON view of the store served at `/streams` (and read by `/metrics`):
//! every stream with its counters, its encoder run and its named objects,
//! times in RFC 3339.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{unix_ms, Store};

/// Description of an object for `/streams`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectInfo {
    /// File name.
    pub name: String,
    /// growing / complete / aborted.
    pub state: &'static str,
    /// Bytes received.
    pub bytes: u64,
}

/// Description of a stream for `/streams` and `/metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// Last ingest activity, RFC 3339 with ms.
    pub last_ingest: String,
    /// Age of the last ingest activity in ms.
    pub last_ingest_age_ms: u64,
    /// Bytes received by ingest over the stream's life.
    pub ingest_bytes: u64,
    /// Chunks received by ingest over the stream's life.
    pub ingest_chunks: u64,
    /// Encoder run, from 0: bumped when an init segment is uploaded again.
    pub run: u64,
    /// Named objects, sorted by name.
    pub objects: Vec<ObjectInfo>,
}

impl Store {
    /// Every stream with its objects, sorted by name.
    pub fn snapshot(&self) -> Vec<StreamInfo> {
        let now = SystemTime::now();
        let streams = self.streams();
        let mut out: Vec<StreamInfo> = streams
            .iter()
            .map(|(name, s)| {
                let last_ms = s.stats.last_ingest_ms.load(Ordering::Relaxed);
                let last = UNIX_EPOCH + Duration::from_millis(last_ms);
                let mut objects: Vec<ObjectInfo> = s
                    .objects
                    .iter()
                    .map(|(n, o)| {
                        let (bytes, status) = o.snapshot();
                        ObjectInfo { name: n.clone(), state: status.as_str(), bytes }
                    })
                    .collect();
                objects.sort_by(|a, b| a.name.cmp(&b.name));
                StreamInfo {
                    name: name.clone(),
                    last_ingest: humantime::format_rfc3339_millis(last).to_string(),
                    last_ingest_age_ms: unix_ms(now).saturating_sub(last_ms),
                    ingest_bytes: s.stats.bytes.load(Ordering::Relaxed),
                    ingest_chunks: s.stats.chunks.load(Ordering::Relaxed),
                    run: s.runs.current,
                    objects,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The `/streams` document: `{"streams": [...]}`, pretty-printed.
pub fn streams_json(store: &Store) -> serde_json::Result<String> {
    let json = serde_json::json!({ "streams": store.snapshot() });
    Ok(serde_json::to_string_pretty(&json)? + "\n")
}
