//! The capture format: what an encoder pushed, with per-chunk timing, so it
//! can be replayed into an origin at the same pace.
//!
//! A capture is a directory with two files:
//! - `data.bin`: every request body byte, in arrival order;
//! - `capture.jsonl`: one JSON object per line. The first is the header
//!   `{"format":"h3live-capture","version":1,"wall_start_unix_us":N}`; then
//!   events, each with `t_us` (µs since the start) and `req` (request id):
//!   `{"ev":"start","method":"PUT","file":"chunk-stream0-00001.m4s"}`,
//!   `{"ev":"data","len":N}` (the next N bytes of `data.bin`), `{"ev":"end"}`
//!   (the body ended cleanly; a request without it was cut off).
//!
//! [`crate::load::record`] writes captures from a live ffmpeg push;
//! [`synthesize`] writes a synthetic one (CMAF-shaped boxes with real `prft`
//! and `tfdt`, no codec data) for tests and machines without ffmpeg.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::cmaf::{boxed, prft};

/// The first line of `capture.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// Always `h3live-capture`.
    format: String,
    /// Format version (1).
    version: u32,
    /// Wall-clock time of `t_us = 0`.
    wall_start_unix_us: u64,
}

/// One event line.
#[derive(Debug, Serialize, Deserialize)]
struct Event {
    /// µs since the capture started.
    t_us: u64,
    /// Request id.
    req: u64,
    /// `start`, `data` or `end`.
    ev: String,
    /// For `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    /// For `start`: the file name (last path component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// For `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
}

/// Writes a capture; events may interleave between requests.
pub struct CaptureWriter {
    /// `capture.jsonl`.
    events: BufWriter<std::fs::File>,
    /// `data.bin`.
    data: BufWriter<std::fs::File>,
    /// Wall clock at t = 0.
    start: SystemTime,
}

impl CaptureWriter {
    /// Create `dir` (if needed) and a capture starting now.
    pub fn create(dir: &Path, start: SystemTime) -> Result<CaptureWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let open =
            |n: &str| std::fs::File::create(dir.join(n)).with_context(|| format!("creating {}", dir.join(n).display()));
        let mut events = BufWriter::new(open("capture.jsonl")?);
        let header = Header { format: "h3live-capture".into(), version: 1, wall_start_unix_us: unix_us(start) };
        serde_json::to_writer(&mut events, &header)?;
        events.write_all(b"\n")?;
        Ok(CaptureWriter { events, data: BufWriter::new(open("data.bin")?), start })
    }

    fn t_us(&self, at: SystemTime) -> u64 {
        at.duration_since(self.start).unwrap_or_default().as_micros() as u64
    }

    fn event(&mut self, e: &Event) -> Result<()> {
        serde_json::to_writer(&mut self.events, e)?;
        self.events.write_all(b"\n")?;
        Ok(())
    }

    /// A request for `file` started at `at`.
    pub fn start(&mut self, req: u64, at: SystemTime, method: &str, file: &str) -> Result<()> {
        let e = Event {
            t_us: self.t_us(at),
            req,
            ev: "start".into(),
            method: Some(method.into()),
            file: Some(file.into()),
            len: None,
        };
        self.event(&e)
    }

    /// A body piece of `req` arrived at `at`.
    pub fn data(&mut self, req: u64, at: SystemTime, data: &[u8]) -> Result<()> {
        self.data.write_all(data)?;
        let e = Event {
            t_us: self.t_us(at),
            req,
            ev: "data".into(),
            method: None,
            file: None,
            len: Some(data.len() as u64),
        };
        self.event(&e)
    }

    /// The body of `req` ended cleanly at `at`.
    pub fn end(&mut self, req: u64, at: SystemTime) -> Result<()> {
        let e = Event { t_us: self.t_us(at), req, ev: "end".into(), method: None, file: None, len: None };
        self.event(&e)
    }

    /// Flush both files.
    pub fn flush(&mut self) -> Result<()> {
        self.events.flush()?;
        self.data.flush()?;
        Ok(())
    }
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// When it started, since the capture start.
    pub at: Duration,
    /// `PUT`, `POST` or `DELETE`.
    pub method: String,
    /// File name.
    pub file: String,
    /// The whole body.
    pub body: Bytes,
    /// Body pieces: (arrival since the capture start, end offset in `body`).
    pub chunks: Vec<(Duration, usize)>,
    /// When the body ended cleanly; `None` if it was cut off.
    pub end: Option<Duration>,
}

/// A loaded capture.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Wall clock at t = 0.
    pub wall_start: SystemTime,
    /// Requests in start order.
    pub requests: Vec<Request>,
}

impl Capture {
    /// Read a capture directory.
    pub fn load(dir: &Path) -> Result<Capture> {
        let events = std::fs::File::open(dir.join("capture.jsonl"))
            .with_context(|| format!("opening {}/capture.jsonl", dir.display()))?;
        let data =
            std::fs::read(dir.join("data.bin")).with_context(|| format!("reading {}/data.bin", dir.display()))?;
        let data = Bytes::from(data);
        let mut lines = std::io::BufReader::new(events).lines();
        let header: Header =
            serde_json::from_str(&lines.next().context("empty capture.jsonl")??).context("capture header")?;
        if header.format != "h3live-capture" || header.version != 1 {
            bail!("not an h3live capture (version 1)");
        }
        let mut reqs: BTreeMap<u64, (Request, Vec<u8>)> = BTreeMap::new();
        let mut offset = 0usize;
        for (i, line) in lines.enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let e: Event = serde_json::from_str(&line).with_context(|| format!("capture.jsonl line {}", i + 2))?;
            let t = Duration::from_micros(e.t_us);
            match e.ev.as_str() {
                "start" => {
                    let r = Request {
                        at: t,
                        method: e.method.unwrap_or_else(|| "PUT".into()),
                        file: e.file.context("start without file")?,
                        body: Bytes::new(),
                        chunks: Vec::new(),
                        end: None,
                    };
                    reqs.insert(e.req, (r, Vec::new()));
                }
                "data" => {
                    let len = e.len.unwrap_or(0) as usize;
                    let piece = data.get(offset..offset + len).context("data.bin shorter than capture.jsonl says")?;
                    offset += len;
                    if let Some((r, body)) = reqs.get_mut(&e.req) {
                        body.extend_from_slice(piece);
                        r.chunks.push((t, body.len()));
                    }
                }
                "end" => {
                    if let Some((r, _)) = reqs.get_mut(&e.req) {
                        r.end = Some(t);
                    }
                }
                other => bail!("unknown event {other:?}"),
            }
        }
        let mut requests: Vec<Request> = reqs
            .into_values()
            .map(|(mut r, body)| {
                r.body = Bytes::from(body);
                r
            })
            .collect();
        requests.sort_by_key(|r| r.at);
        Ok(Capture { wall_start: UNIX_EPOCH + Duration::from_micros(header.wall_start_unix_us), requests })
    }
}

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// Shape of a synthetic stream.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Length of the capture.
    pub duration: Duration,
    /// Segment duration.
    pub segment: Duration,
    /// Video bitrate, bit/s (audio is a fixed 128 kbit/s at 48 kHz).
    pub video_bitrate: u64,
    /// Video fragments (frames) per second.
    pub fps: u32,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            duration: Duration::from_secs(10),
            segment: Duration::from_secs(2),
            video_bitrate: 2_000_000,
            fps: 30,
        }
    }
}

/// One synthetic track.
struct SynthTrack {
    /// Representation id / track id - 1.
    id: u32,
    /// Media timescale.
    timescale: u32,
    /// Fragment duration in timescale units.
    frag_ticks: u64,
    /// Payload bytes per fragment.
    frag_bytes: usize,
}

fn init_segment(track_id: u32, timescale: u32) -> Vec<u8> {
    let mut tkhd = vec![0u8; 12];
    tkhd.extend_from_slice(&track_id.to_be_bytes());
    tkhd.extend_from_slice(&[0u8; 68]);
    let mut mdhd = vec![0u8; 12];
    mdhd.extend_from_slice(&timescale.to_be_bytes());
    mdhd.extend_from_slice(&[0u8; 8]);
    let trak = [boxed(b"tkhd", &tkhd), boxed(b"mdia", &boxed(b"mdhd", &mdhd))].concat();
    let moov = [boxed(b"mvhd", &[0u8; 100]), boxed(b"trak", &trak), boxed(b"mvex", &[])].concat();
    [boxed(b"ftyp", b"iso6\0\0\0\0iso6cmfc"), boxed(b"moov", &moov)].concat()
}

fn fragment(track_id: u32, seq: u32, t: SystemTime, decode_time: u64, payload: usize) -> Vec<u8> {
    let mut out = prft(track_id, t, decode_time);
    let mut mfhd = vec![0u8; 4];
    mfhd.extend_from_slice(&seq.to_be_bytes());
    let mut tfhd = vec![0, 2, 0, 0];
    tfhd.extend_from_slice(&track_id.to_be_bytes());
    let mut tfdt = vec![1, 0, 0, 0];
    tfdt.extend_from_slice(&decode_time.to_be_bytes());
    let traf = [boxed(b"tfhd", &tfhd), boxed(b"tfdt", &tfdt)].concat();
    out.extend(boxed(b"moof", &[boxed(b"mfhd", &mfhd), boxed(b"traf", &traf)].concat()));
    out.extend(boxed(b"mdat", &vec![0x5a; payload]));
    out
}

/// The MPD of a synthetic stream.
fn synth_manifest(ast: SystemTime, publish: SystemTime, segment: Duration, tracks: &[(u32, &str, u64)]) -> String {
    let ms = segment.as_millis();
    let mut sets = String::new();
    for (id, kind, bw) in tracks {
        sets.push_str(&format!(
            "\t\t<AdaptationSet id=\"{id}\" contentType=\"{kind}\" segmentAlignment=\"true\">\n\
             \t\t\t<Representation id=\"{id}\" mimeType=\"{kind}/mp4\" bandwidth=\"{bw}\">\n\
             \t\t\t\t<SegmentTemplate timescale=\"1000\" duration=\"{ms}\" availabilityTimeOffset=\"{ato:.3}\" availabilityTimeComplete=\"false\" \
             initialization=\"init-stream$RepresentationID$.m4s\" media=\"chunk-stream$RepresentationID$-$Number%05d$.m4s\" startNumber=\"1\"/>\n\
             \t\t\t</Representation>\n\t\t</AdaptationSet>\n",
            ato = segment.as_secs_f64() - 0.033
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"dynamic\" minimumUpdatePeriod=\"PT500S\" availabilityStartTime=\"{}\" publishTime=\"{}\" maxSegmentDuration=\"PT{}S\" minBufferTime=\"PT{}S\">\n\
         \t<Period id=\"0\" start=\"PT0.0S\">\n{sets}\t</Period>\n</MPD>\n",
        humantime::format_rfc3339_millis(ast),
        humantime::format_rfc3339_millis(publish),
        segment.as_secs_f64(),
        segment.as_secs_f64(),
    )
}

/// Write a synthetic capture to `dir`, timed as ffmpeg pushes LL-DASH with
/// `-frag_type every_frame`: init segments first, then per track one PUT per
/// segment open for its whole duration with one chunk per fragment (`prft`
/// at the fragment's wall-clock time), and the manifest re-PUT as each
/// segment closes. Payload bytes are filler, not a decodable picture.
pub fn synthesize(dir: &Path, opts: &SynthOptions) -> Result<()> {
    let start = SystemTime::now();
    let mut w = CaptureWriter::create(dir, start)?;
    let at = |d: Duration| start + d;
    let seg_s = opts.segment.as_secs_f64();
    let video_frag = (opts.video_bitrate as f64 / 8.0 / opts.fps as f64) as usize;
    let tracks = [
        SynthTrack { id: 0, timescale: 15360, frag_ticks: 15360 / opts.fps as u64, frag_bytes: video_frag },
        // AAC: 1024 samples per frame at 48 kHz, 128 kbit/s.
        SynthTrack { id: 1, timescale: 48000, frag_ticks: 1024, frag_bytes: 128_000 / 8 * 1024 / 48000 },
    ];
    let mut req = 0u64;
    for t in &tracks {
        w.start(req, at(Duration::ZERO), "PUT", &format!("init-stream{}.m4s", t.id))?;
        w.data(req, at(Duration::ZERO), &init_segment(t.id + 1, t.timescale))?;
        w.end(req, at(Duration::ZERO))?;
        req += 1;
    }
    let segments = (opts.duration.as_secs_f64() / seg_s).floor().max(1.0) as u64;
    // Collect every event with its time, then write them in time order.
    let mut events: Vec<(Duration, u64, u8, Vec<u8>, String)> = Vec::new(); // (t, req, kind 0 start/1 data/2 end, data, file)
    let mut mfhd_seq = [1u32; 2];
    for n in 1..=segments {
        let seg_start = Duration::from_secs_f64((n - 1) as f64 * seg_s);
        let seg_end = Duration::from_secs_f64(n as f64 * seg_s);
        for (ti, t) in tracks.iter().enumerate() {
            let r = req;
            req += 1;
            let file = format!("chunk-stream{}-{n:05}.m4s", t.id);
            events.push((seg_start, r, 0, Vec::new(), file));
            events.push((seg_start, r, 1, boxed(b"styp", b"msdh\0\0\0\0msdhmsix"), String::new()));
            let mut decode = ((n - 1) as f64 * seg_s * t.timescale as f64) as u64;
            let end_ticks = (n as f64 * seg_s * t.timescale as f64) as u64;
            while decode < end_ticks {
                let frag_end = Duration::from_secs_f64((decode + t.frag_ticks) as f64 / t.timescale as f64);
                let f = fragment(t.id + 1, mfhd_seq[ti], at(frag_end), decode, t.frag_bytes);
                mfhd_seq[ti] += 1;
                events.push((frag_end.min(seg_end), r, 1, f, String::new()));
                decode += t.frag_ticks;
            }
            events.push((seg_end, r, 2, Vec::new(), String::new()));
            // The manifest, re-PUT as each track's segment closes.
            let m = req;
            req += 1;
            let xml = synth_manifest(
                start,
                at(seg_end),
                opts.segment,
                &[(0, "video", opts.video_bitrate), (1, "audio", 128_000)],
            );
            events.push((seg_end, m, 0, Vec::new(), "manifest.mpd".into()));
            events.push((seg_end, m, 1, xml.into_bytes(), String::new()));
            events.push((seg_end, m, 2, Vec::new(), String::new()));
        }
    }
    events.sort_by_key(|e| (e.0, e.1, e.2));
    for (t, r, kind, data, file) in events {
        match kind {
            0 => w.start(r, at(t), "PUT", &file)?,
            1 => w.data(r, at(t), &data)?,
            _ => w.end(r, at(t))?,
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::cmaf;

    #[test]
    fn synthetic_capture_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SynthOptions { duration: Duration::from_secs(4), ..Default::default() };
        synthesize(dir.path(), &opts).unwrap();
        let c = Capture::load(dir.path()).unwrap();
        let seg = c.requests.iter().find(|r| r.file == "chunk-stream0-00002.m4s").unwrap();
        assert_eq!(seg.at, Duration::from_secs(2));
        assert_eq!(seg.end, Some(Duration::from_secs(4)));
        let frags = cmaf::fragments(&seg.body);
        assert_eq!(frags.len(), 30 * 2);
        assert_eq!(seg.chunks.len(), 61);
        let init = c.requests.iter().find(|r| r.file == "init-stream1.m4s").unwrap();
        assert_eq!(cmaf::track_timescales(&init.body), vec![(2, 48000)]);
        let m = c.requests.iter().rev().find(|r| r.file == "manifest.mpd").unwrap();
        let m = crate::mpd::Manifest::parse(std::str::from_utf8(&m.body).unwrap()).unwrap();
        assert_eq!(m.tracks.len(), 2);
        assert!(m.dynamic);
    }
}
