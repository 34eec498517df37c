//! Just enough ISO-BMFF/CMAF to measure, re-stamp and package a live stream.
//! Shared by the load tool (`crate::load`) and the LL-HLS packager
//! (`crate::hls`):
//! - [`FragmentTracker`] follows a media segment *as it arrives*, in pieces of
//!   any size, and reports each fragment (`prft` + `moof` + `mdat`) when the
//!   last byte of its `mdat` is in, with the `prft` wall-clock time, the
//!   fragment's end offset and what its `moof` says (decode time, duration,
//!   whether it starts with a sync sample);
//! - [`init_tracks`] reads what a packager needs from an init segment
//!   (timescale, handler, codec string, picture size, `trex` defaults);
//! - [`fragments`] and [`track_timescales`] walk whole buffers for the replay
//!   (where to re-stamp `prft` and shift `tfdt`);
//! - a few writers ([`boxed`], [`prft`]) for the synthetic stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Wall-clock time of a 64-bit NTP timestamp (32.32 fixed point).
pub fn ntp_to_system(ntp: u64) -> Option<SystemTime> {
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET)?;
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    Some(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// 64-bit NTP timestamp of a wall-clock time.
pub fn system_to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    ((d.as_secs() + NTP_UNIX_OFFSET) << 32) | frac
}

/// Where the parser is inside the current top-level box.
#[derive(Debug)]
enum State {
    /// Collecting a box header (8 bytes, or 16 with a 64-bit size).
    Header,
    /// Collecting a `prft` body (small) to read its timestamp.
    Prft { remaining: usize },
    /// Collecting a `moof` body (small) to read its sample table.
    Moof { remaining: usize },
    /// Skipping the rest of a box body; `mdat` marks a fragment's end.
    Skip { remaining: u64, mdat: bool },
    /// A box of size 0 (to the end of the segment): nothing more to find.
    ToEnd,
}

/// One fragment whose last byte just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentDone {
    /// The `prft` wall-clock time of the fragment, if it carried one.
    pub prft: Option<SystemTime>,
    /// Offset in the segment just past the fragment's `mdat`.
    pub end: u64,
    /// What the fragment's `moof` says, if it was read.
    pub moof: Option<MoofInfo>,
}

/// The first track run of a `moof`, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MoofInfo {
    /// Track ID from `tfhd`.
    pub track: u32,
    /// `tfdt` base media decode time, in the track's timescale.
    pub decode_time: Option<u64>,
    /// Samples in the fragment.
    pub samples: u32,
    /// Sum of the sample durations when `tfhd`/`trun` carry them (else the
    /// `trex` default of the init segment applies).
    pub duration: Option<u64>,
    /// Flags of the first sample when `tfhd`/`trun` carry them.
    pub first_flags: Option<u32>,
}

/// Largest `moof` the tracker buffers to read (larger ones are skipped).
const MAX_MOOF: usize = 256 << 10;

/// `sample_is_non_sync_sample` in sample flags (ISO/IEC 14496-12 8.8.3.1).
const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// True if sample flags describe a sync sample (`sample_is_non_sync_sample` clear).
pub fn is_sync(flags: u32) -> bool {
    flags & SAMPLE_IS_NON_SYNC == 0
}

/// `tf_flags` of a track fragment header, `tfhd` (ISO/IEC 14496-12 8.8.7):
/// which optional fields follow the track ID, in this order.
mod tfhd {
    /// 64-bit base data offset.
    pub const BASE_DATA_OFFSET: u32 = 0x1;
    /// 32-bit sample description index.
    pub const SAMPLE_DESCRIPTION_INDEX: u32 = 0x2;
    /// 32-bit default sample duration.
    pub const DEFAULT_SAMPLE_DURATION: u32 = 0x8;
    /// 32-bit default sample size.
    pub const DEFAULT_SAMPLE_SIZE: u32 = 0x10;
    /// 32-bit default sample flags.
    pub const DEFAULT_SAMPLE_FLAGS: u32 = 0x20;
}

/// `tr_flags` of a track fragment run, `trun` (ISO/IEC 14496-12 8.8.8):
/// which optional fields follow the sample count, and which fields each
/// sample record has (32 bits each, in the order of the bits).
mod trun {
    /// 32-bit data offset.
    pub const DATA_OFFSET: u32 = 0x1;
    /// 32-bit flags of the first sample (instead of per-sample flags for it).
    pub const FIRST_SAMPLE_FLAGS: u32 = 0x4;
    /// Per sample: duration.
    pub const SAMPLE_DURATION: u32 = 0x100;
    /// Per sample: size.
    pub const SAMPLE_SIZE: u32 = 0x200;
    /// Per sample: flags.
    pub const SAMPLE_FLAGS: u32 = 0x400;
    /// Per sample: composition time offset.
    pub const SAMPLE_CTS_OFFSET: u32 = 0x800;
    /// Every per-sample field, in record order.
    pub const PER_SAMPLE: [u32; 4] = [SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_CTS_OFFSET];
}

/// Incremental parser of one media segment's top-level boxes. Feed it the
/// body pieces in order; it keeps its progress in fields, so pieces may split
/// boxes anywhere.
#[derive(Debug)]
pub struct FragmentTracker {
    /// Parser state.
    state: State,
    /// Partial header or `prft` body.
    buf: Vec<u8>,
    /// `prft` time waiting for its fragment's `mdat` to complete.
    pending_prft: Option<SystemTime>,
    /// `moof` summary waiting for its fragment's `mdat` to complete.
    pending_moof: Option<MoofInfo>,
    /// Fragments completed so far.
    fragments: u64,
    /// Bytes consumed so far (offset of the next byte in the segment).
    pos: u64,
}

impl Default for FragmentTracker {
    fn default() -> Self {
        FragmentTracker {
            state: State::Header,
            buf: Vec::with_capacity(64),
            pending_prft: None,
            pending_moof: None,
            fragments: 0,
            pos: 0,
        }
    }
}

impl FragmentTracker {
    /// Fragments completed so far.
    pub fn fragments(&self) -> u64 {
        self.fragments
    }

    /// Consume one piece of the segment; `done` is called for every fragment
    /// whose `mdat` ends inside it.
    pub fn feed(&mut self, mut data: &[u8], mut done: impl FnMut(FragmentDone)) {
        while !data.is_empty() {
            match &mut self.state {
                State::ToEnd => {
                    self.pos += data.len() as u64;
                    return;
                }
                State::Header => {
                    let want = if self.buf.len() >= 8 && be32(&self.buf, 0) == Some(1) { 16 } else { 8 };
                    let take = (want - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.pos += take as u64;
                    if self.buf.len() < want {
                        continue;
                    }
                    let size32 = be32(&self.buf, 0).unwrap_or_default();
                    if size32 == 1 && want == 8 {
                        continue; // a 64-bit size follows
                    }
                    let kind: [u8; 4] = self.buf[4..8].try_into().unwrap_or_default();
                    let (size, header) = match size32 {
                        0 => {
                            self.state = State::ToEnd;
                            self.buf.clear();
                            continue;
                        }
                        1 => (be64(&self.buf, 8).unwrap_or_default(), 16),
                        n => (n as u64, 8),
                    };
                    self.buf.clear();
                    let body = size.saturating_sub(header);
                    self.state = if &kind == b"prft" && body <= 64 {
                        State::Prft { remaining: body as usize }
                    } else if &kind == b"moof" && body <= MAX_MOOF as u64 {
                        State::Moof { remaining: body as usize }
                    } else {
                        State::Skip { remaining: body, mdat: &kind == b"mdat" }
                    };
                    self.finish_box_if_empty(&mut done);
                }
                State::Prft { remaining } | State::Moof { remaining } => {
                    let take = (*remaining).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    *remaining -= take;
                    data = &data[take..];
                    self.pos += take as u64;
                    self.finish_box_if_empty(&mut done);
                }
                State::Skip { remaining, .. } => {
                    let take = (*remaining).min(data.len() as u64);
                    *remaining -= take;
                    data = &data[take as usize..];
                    self.pos += take;
                    self.finish_box_if_empty(&mut done);
                }
            }
        }
    }

    /// Bytes consumed so far (the offset of the next byte in the segment).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// At the end of a box body: read a `prft` or `moof`, report a finished `mdat`.
    fn finish_box_if_empty(&mut self, done: &mut impl FnMut(FragmentDone)) {
        match self.state {
            State::Prft { remaining: 0 } => {
                self.pending_prft = prft_time(&self.buf);
                self.buf.clear();
                self.state = State::Header;
            }
            State::Moof { remaining: 0 } => {
                self.pending_moof = moof_info(&self.buf);
                self.buf.clear();
                self.state = State::Header;
            }
            State::Skip { remaining: 0, mdat } => {
                if mdat {
                    self.fragments += 1;
                    done(FragmentDone {
                        prft: self.pending_prft.take(),
                        end: self.pos,
                        moof: self.pending_moof.take(),
                    });
                }
                self.state = State::Header;
            }
            _ => {}
        }
    }
}

/// Summarise the first `traf` of a `moof` body.
pub fn moof_info(body: &[u8]) -> Option<MoofInfo> {
    let (_, _, tb, te) = children(body, 0, body.len()).into_iter().find(|c| &c.0 == b"traf")?;
    let mut info = MoofInfo::default();
    let mut defaults = Defaults::default();
    for (k, _, b, e) in children(body, tb, te) {
        let inside = &body[..e];
        match &k {
            b"tfhd" if e - b >= 8 => (info.track, defaults) = tfhd_defaults(inside, b),
            b"tfdt" if e - b >= 8 => {
                info.decode_time = if body[b] == 1 { be64(inside, b + 4) } else { be32(inside, b + 4).map(u64::from) };
            }
            b"trun" if e - b >= 8 => trun_info(inside, b, &defaults, &mut info),
            _ => {}
        }
    }
    Some(info)
}

/// Sample defaults a `tfhd` gives the runs of its track fragment.
#[derive(Debug, Default)]
struct Defaults {
    /// Default sample duration.
    duration: Option<u64>,
    /// Default sample flags.
    flags: Option<u32>,
}

/// Track ID and sample defaults of the `tfhd` whose body starts at `b` in
/// `boxed` (which ends where the box ends).
fn tfhd_defaults(boxed: &[u8], b: usize) -> (u32, Defaults) {
    let flags = be32(boxed, b).unwrap_or_default() & 0xff_ffff;
    let track = be32(boxed, b + 4).unwrap_or_default();
    let mut d = Defaults::default();
    let mut at = b + 8;
    if flags & tfhd::BASE_DATA_OFFSET != 0 {
        at += 8;
    }
    if flags & tfhd::SAMPLE_DESCRIPTION_INDEX != 0 {
        at += 4;
    }
    if flags & tfhd::DEFAULT_SAMPLE_DURATION != 0 {
        d.duration = be32(boxed, at).map(u64::from);
        at += 4;
    }
    if flags & tfhd::DEFAULT_SAMPLE_SIZE != 0 {
        at += 4;
    }
    if flags & tfhd::DEFAULT_SAMPLE_FLAGS != 0 {
        d.flags = be32(boxed, at);
    }
    (track, d)
}

/// Sample count, total duration and first sample's flags of the `trun`
/// whose body starts at `b` in `boxed` (which ends where the box ends).
fn trun_info(boxed: &[u8], b: usize, defaults: &Defaults, info: &mut MoofInfo) {
    let flags = be32(boxed, b).unwrap_or_default() & 0xff_ffff;
    let count = be32(boxed, b + 4).unwrap_or_default();
    info.samples = count;
    let mut at = b + 8;
    if flags & trun::DATA_OFFSET != 0 {
        at += 4;
    }
    let mut first_flags = None;
    if flags & trun::FIRST_SAMPLE_FLAGS != 0 {
        first_flags = be32(boxed, at);
        at += 4;
    }
    let has = |f: u32| flags & f != 0;
    let per = trun::PER_SAMPLE.iter().filter(|&&f| has(f)).count() * 4;
    // Records that fit in the box (a truncated run counts what it has).
    let fits = boxed.len().saturating_sub(at).checked_div(per).unwrap_or(0);
    let mut total = if has(trun::SAMPLE_DURATION) { 0 } else { defaults.duration.unwrap_or(0) * count as u64 };
    for i in 0..(count as usize).min(fits) {
        let mut o = at + i * per;
        if has(trun::SAMPLE_DURATION) {
            total += u64::from(be32(boxed, o).unwrap_or_default());
            o += 4;
        } else if !has(trun::SAMPLE_FLAGS) || i > 0 {
            break; // nothing more to read from the records
        }
        if has(trun::SAMPLE_SIZE) {
            o += 4;
        }
        if i == 0 && has(trun::SAMPLE_FLAGS) && first_flags.is_none() {
            first_flags = be32(boxed, o);
        }
    }
    if has(trun::SAMPLE_DURATION) || defaults.duration.is_some() {
        info.duration = Some(total);
    }
    info.first_flags = first_flags.or(defaults.flags);
}

/// The big-endian `u32` at `at`, if `b` holds all of it.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// The big-endian `u64` at `at`, if `b` holds all of it.
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The big-endian `u16` at `at`, if `b` holds all of it.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// The NTP time of a `prft` body (version/flags, reference track, NTP, media time).
fn prft_time(body: &[u8]) -> Option<SystemTime> {
    be64(body, 8).and_then(ntp_to_system)
}

/// Iterate the boxes in `buf[start..end]`: (type, box start, body start, box end).
fn children(buf: &[u8], start: usize, end: usize) -> Vec<([u8; 4], usize, usize, usize)> {
    let mut out = Vec::new();
    let end = end.min(buf.len());
    let mut at = start;
    while at + 8 <= end {
        let (Some(size32), Some(kind)) = (be32(buf, at), buf.get(at + 4..at + 8)) else { break };
        let kind: [u8; 4] = kind.try_into().unwrap_or_default();
        let (size, header) = match size32 {
            0 => ((end - at) as u64, 8),
            1 if at + 16 <= end => (be64(buf, at + 8).unwrap_or_default(), 16),
            1 => break,
            n => (n as u64, 8),
        };
        if size < header as u64 || at as u64 + size > end as u64 {
            break;
        }
        out.push((kind, at, at + header, at + size as usize));
        at += size as usize;
    }
    out
}

/// Byte positions inside one fragment of a complete segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of the 8-byte NTP timestamp of its `prft`, if any.
    pub prft_ntp: Option<usize>,
    /// `tfdt` base media decode times: (offset, width in bytes 4 or 8, track ID).
    pub tfdt: Vec<(usize, usize, u32)>,
    /// Offset just past the end of its `mdat` (its last byte + 1).
    pub end: usize,
}

/// The fragments of a complete media segment, in order.
pub fn fragments(seg: &[u8]) -> Vec<Fragment> {
    let mut out = Vec::new();
    let mut cur = Fragment::default();
    for (kind, _, body, end) in children(seg, 0, seg.len()) {
        match &kind {
            b"prft" if end - body >= 16 => cur.prft_ntp = Some(body + 8),
            b"moof" => {
                for (k, _, tb, te) in children(seg, body, end) {
                    if &k != b"traf" {
                        continue;
                    }
                    let mut track = 0;
                    for (k, _, b, e) in children(seg, tb, te) {
                        match &k {
                            b"tfhd" if e - b >= 8 => track = be32(seg, b + 4).unwrap_or_default(),
                            b"tfdt" if e - b >= 8 => {
                                let width = if seg[b] == 1 { 8 } else { 4 };
                                if b + 4 + width <= e {
                                    cur.tfdt.push((b + 4, width, track));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            b"mdat" => {
                cur.end = end;
                out.push(std::mem::take(&mut cur));
            }
            _ => {}
        }
    }
    out
}

/// Overwrite the NTP timestamp at `at` with `t` (nothing if `seg` ends before it does).
pub fn write_ntp(seg: &mut [u8], at: usize, t: SystemTime) {
    if let Some(dst) = at.checked_add(8).and_then(|end| seg.get_mut(at..end)) {
        dst.copy_from_slice(&system_to_ntp(t).to_be_bytes());
    }
}

/// Read the NTP timestamp at `at` (`None` if `seg` ends before it does).
pub fn read_ntp(seg: &[u8], at: usize) -> Option<SystemTime> {
    ntp_to_system(be64(seg, at)?)
}

/// Add `delta` to the `tfdt` value at (`at`, `width`) (nothing if `seg` ends before it does).
pub fn shift_tfdt(seg: &mut [u8], at: usize, width: usize, delta: u64) {
    if width == 8 {
        if let Some(v) = be64(seg, at) {
            seg[at..at + 8].copy_from_slice(&v.wrapping_add(delta).to_be_bytes());
        }
    } else if let Some(v) = be32(seg, at) {
        let v = (v as u64).wrapping_add(delta) as u32;
        seg[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// (track ID, media timescale) of every track of an init segment.
pub fn track_timescales(init: &[u8]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (k, _, b, e) in children(init, 0, init.len()) {
        if &k != b"moov" {
            continue;
        }
        for (k, _, tb, te) in children(init, b, e) {
            if &k != b"trak" {
                continue;
            }
            let (mut id, mut scale) = (None, None);
            for (k, _, b, e) in children(init, tb, te) {
                let v1 = init.get(b) == Some(&1);
                match &k {
                    b"tkhd" => {
                        let at = b + if v1 { 20 } else { 12 };
                        if at + 4 <= e {
                            id = be32(init, at);
                        }
                    }
                    b"mdia" => {
                        for (k, _, b, e) in children(init, b, e) {
                            let at = b + if init.get(b) == Some(&1) { 20 } else { 12 };
                            if &k == b"mdhd" && at + 4 <= e {
                                scale = be32(init, at);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let (Some(id), Some(scale)) = (id, scale) {
                out.push((id, scale));
            }
        }
    }
    out
}

/// What a packager needs to know about one track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackInfo {
    /// Track ID.
    pub id: u32,
    /// Media timescale (ticks per second).
    pub timescale: u32,
    /// Handler type: `vide`, `soun`, ...
    pub handler: [u8; 4],
    /// RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`), when recognised.
    pub codec: Option<String>,
    /// Picture size of a visual sample entry.
    pub size: Option<(u16, u16)>,
    /// `trex` default sample duration.
    pub default_duration: Option<u32>,
    /// `trex` default sample flags.
    pub default_flags: Option<u32>,
}

/// Every track of an init segment (`moov/trak` + `moov/mvex/trex`).
pub fn init_tracks(init: &[u8]) -> Vec<TrackInfo> {
    let mut out: Vec<TrackInfo> = Vec::new();
    let mut trex = Vec::new();
    for (k, _, b, e) in children(init, 0, init.len()) {
        if &k != b"moov" {
            continue;
        }
        for (k, _, tb, te) in children(init, b, e) {
            match &k {
                b"trak" => {
                    let mut t = TrackInfo::default();
                    for (k, _, b, e) in children(init, tb, te) {
                        match &k {
                            b"tkhd" => {
                                let at = b + if init.get(b) == Some(&1) { 20 } else { 12 };
                                if at + 4 <= e {
                                    t.id = be32(init, at).unwrap_or_default();
                                }
                            }
                            b"mdia" => mdia_info(init, b, e, &mut t),
                            _ => {}
                        }
                    }
                    out.push(t);
                }
                b"mvex" => {
                    for (k, _, b, e) in children(init, tb, te) {
                        if &k != b"trex" || b + 24 > e {
                            continue;
                        }
                        if let (Some(id), Some(d), Some(f)) =
                            (be32(init, b + 4), be32(init, b + 12), be32(init, b + 20))
                        {
                            trex.push((id, d, f));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for t in &mut out {
        if let Some(&(_, d, f)) = trex.iter().find(|x| x.0 == t.id) {
            t.default_duration = Some(d);
            t.default_flags = Some(f);
        }
    }
    out
}

/// Timescale, handler and sample entry of a `mdia` box.
fn mdia_info(buf: &[u8], start: usize, end: usize, t: &mut TrackInfo) {
    for (k, _, b, e) in children(buf, start, end) {
        match &k {
            b"mdhd" => {
                let at = b + if buf.get(b) == Some(&1) { 20 } else { 12 };
                if at + 4 <= e {
                    t.timescale = be32(buf, at).unwrap_or_default();
                }
            }
            b"hdlr" if b + 12 <= e => t.handler = buf[b + 8..b + 12].try_into().unwrap_or_default(),
            b"minf" => {
                let Some(stbl) = children(buf, b, e).into_iter().find(|c| &c.0 == b"stbl") else { continue };
                let Some(stsd) = children(buf, stbl.2, stbl.3).into_iter().find(|c| &c.0 == b"stsd") else {
                    continue;
                };
                let Some((kind, _, sb, se)) = children(buf, stsd.2 + 8, stsd.3).into_iter().next() else { continue };
                match &kind {
                    b"avc1" | b"avc3" if sb + 78 <= se => {
                        t.size = be16(buf, sb + 24).zip(be16(buf, sb + 26));
                        if let Some((_, _, cb, ce)) = children(buf, sb + 78, se).into_iter().find(|c| &c.0 == b"avcC") {
                            if cb + 4 <= ce {
                                let name = String::from_utf8_lossy(&kind);
                                t.codec =
                                    Some(format!("{name}.{:02x}{:02x}{:02x}", buf[cb + 1], buf[cb + 2], buf[cb + 3]));
                            }
                        }
                    }
                    // AAC: the object type is assumed to be AAC-LC (what ffmpeg's `aac` encoder makes).
                    b"mp4a" => t.codec = Some("mp4a.40.2".into()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// A box: 32-bit size, type, body.
pub fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// A version-1 `prft` box for `track` at wall-clock `t`.
pub fn prft(track: u32, t: SystemTime, media_time: u64) -> Vec<u8> {
    let mut body = vec![1, 0, 0, 0x18];
    body.extend_from_slice(&track.to_be_bytes());
    body.extend_from_slice(&system_to_ntp(t).to_be_bytes());
    body.extend_from_slice(&media_time.to_be_bytes());
    boxed(b"prft", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(track: u32, t: SystemTime, payload: usize) -> Vec<u8> {
        let mut out = prft(track, t, 0);
        let mut tfdt = vec![1, 0, 0, 0];
        tfdt.extend_from_slice(&1000u64.to_be_bytes());
        let mut tfhd = vec![0, 0, 0, 0];
        tfhd.extend_from_slice(&track.to_be_bytes());
        let traf = [boxed(b"tfhd", &tfhd), boxed(b"tfdt", &tfdt)].concat();
        out.extend(boxed(b"moof", &boxed(b"traf", &traf)));
        out.extend(boxed(b"mdat", &vec![7u8; payload]));
        out
    }

    #[test]
    fn ntp_round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_763_000_000_123_456);
        let back = ntp_to_system(system_to_ntp(t)).unwrap();
        let diff = back.duration_since(t).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_micros(1), "{diff:?}");
    }

    #[test]
    fn tracker_reports_fragments_across_any_split() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut seg = boxed(b"styp", b"msdh\0\0\0\0msdhmsix");
        for i in 0..3 {
            seg.extend(fragment(1, t0 + Duration::from_millis(33 * i), 100 + 50 * i as usize));
        }
        for piece in [1, 3, 7, 16, 33, 1000] {
            let mut tr = FragmentTracker::default();
            let mut got = Vec::new();
            for c in seg.chunks(piece) {
                tr.feed(c, |f| got.push(f.prft));
            }
            assert_eq!(got.len(), 3, "piece {piece}");
            assert_eq!(got[2], Some(ntp_to_system(system_to_ntp(t0 + Duration::from_millis(66))).unwrap()));
        }
        // The last byte of an mdat is what completes a fragment.
        let mut tr = FragmentTracker::default();
        let mut n = 0;
        let first_end = 24 + fragment(1, t0, 100).len();
        tr.feed(&seg[..first_end - 1], |_| n += 1);
        assert_eq!(n, 0);
        tr.feed(&seg[first_end - 1..first_end], |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn layout_and_restamp() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut seg = boxed(b"styp", b"msdh");
        seg.extend(fragment(2, t0, 10));
        seg.extend(fragment(2, t0, 20));
        let frags = fragments(&seg);
        assert_eq!(frags.len(), 2);
        assert_eq!(frags[1].end, seg.len());
        let t1 = t0 + Duration::from_secs(10);
        write_ntp(&mut seg, frags[0].prft_ntp.unwrap(), t1);
        let (at, width, track) = frags[0].tfdt[0];
        assert_eq!((width, track), (8, 2));
        shift_tfdt(&mut seg, at, width, 500);
        assert_eq!(be64(&seg, at), Some(1500));
        assert_eq!(read_ntp(&seg, frags[0].prft_ntp.unwrap()).unwrap().duration_since(t1).unwrap(), Duration::ZERO);
    }

    /// The readers are total: a short buffer is `None`, never a panic.
    #[test]
    fn readers_of_short_buffers() {
        assert_eq!(be32(&[0, 0, 1, 2], 0), Some(258));
        assert_eq!(be32(&[0, 0, 1], 0), None);
        assert_eq!(be32(&[0, 0, 1, 2], 1), None);
        assert_eq!(be32(&[0, 0, 1, 2], usize::MAX), None);
        assert_eq!(be64(&[0; 7], 0), None);
        assert_eq!(be16(&[1], 0), None);
        // Public entry points on offsets past the end (the old readers
        // indexed `b[..8]` first and panicked here).
        let mut short = [0u8; 6];
        assert_eq!(read_ntp(&short, 0), None);
        assert_eq!(read_ntp(&short, 100), None);
        write_ntp(&mut short, 2, UNIX_EPOCH);
        shift_tfdt(&mut short, 4, 4, 1);
        shift_tfdt(&mut short, 0, 8, 1);
        assert_eq!(short, [0u8; 6], "nothing written past the end");
    }

    /// Every truncation of a segment and of a `moof` body parses without a
    /// panic, and the flags a `trun` names are read.
    #[test]
    fn truncated_boxes_parse() {
        let sample = |d: u32, f: u32| [d.to_be_bytes(), 100u32.to_be_bytes(), f.to_be_bytes()].concat();
        let mut trun_body = (trun::SAMPLE_DURATION | trun::SAMPLE_SIZE | trun::SAMPLE_FLAGS).to_be_bytes().to_vec();
        trun_body.extend_from_slice(&2u32.to_be_bytes());
        trun_body.extend([sample(512, SAMPLE_IS_NON_SYNC), sample(512, 0)].concat());
        let mut tfhd_body = tfhd::DEFAULT_SAMPLE_DURATION.to_be_bytes().to_vec();
        tfhd_body.extend_from_slice(&7u32.to_be_bytes());
        tfhd_body.extend_from_slice(&1024u32.to_be_bytes());
        let traf = [boxed(b"tfhd", &tfhd_body), boxed(b"trun", &trun_body)].concat();
        let moof = boxed(b"traf", &traf);
        let info = moof_info(&moof).unwrap();
        assert_eq!((info.track, info.samples, info.duration), (7, 2, Some(1024)));
        assert_eq!(info.first_flags.map(is_sync), Some(false));
        for n in 0..moof.len() {
            let _ = moof_info(&moof[..n]);
        }
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let seg = [boxed(b"styp", b"msdh"), fragment(1, t0, 10)].concat();
        for n in 0..seg.len() {
            let _ = (fragments(&seg[..n]), init_tracks(&seg[..n]), track_timescales(&seg[..n]));
        }
    }

    #[test]
    fn timescales_of_an_init_segment() {
        let mut tkhd = vec![0u8; 12];
        tkhd.extend_from_slice(&3u32.to_be_bytes());
        tkhd.extend_from_slice(&[0u8; 8]);
        let mut mdhd = vec![0u8; 12];
        mdhd.extend_from_slice(&15360u32.to_be_bytes());
        mdhd.extend_from_slice(&[0u8; 8]);
        let trak = [boxed(b"tkhd", &tkhd), boxed(b"mdia", &boxed(b"mdhd", &mdhd))].concat();
        let init = [boxed(b"ftyp", b"iso6"), boxed(b"moov", &boxed(b"trak", &trak))].concat();
        assert_eq!(track_timescales(&init), vec![(3, 15360)]);
    }
}
