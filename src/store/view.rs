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
    /// Wall-clock time its first byte arrived on ingest, in microseconds
    /// since the Unix epoch (for measuring how long it takes to reach viewers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_unix_us: Option<u64>,
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
                        let first_byte_unix_us = o.first_arrival().map(|t| unix_us(now - t.elapsed()));
                        ObjectInfo { name: n.clone(), state: status.as_str(), bytes, first_byte_unix_us }
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

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The `/streams` document: `{"streams": [...]}`, pretty-printed.
pub fn streams_json(store: &Store) -> serde_json::Result<String> {
    let json = serde_json::json!({ "streams": store.snapshot() });
    Ok(serde_json::to_string_pretty(&json)? + "\n")
}
