//! The fragment index of one representation, built as the bytes arrive.
//!
//! An indexer task reads each media segment of the representation through an
//! ordinary [`crate::store::ObjectReader`] (so it sees chunks the moment
//! ingest stores them, like any viewer) and feeds them to a
//! [`FragmentTracker`]. Every completed fragment is added to the segment's
//! open part; a part closes when one more fragment of the same length would
//! pass the part target, or before a fragment that starts with a sync sample
//! (so `INDEPENDENT=YES` marks exactly the parts that begin with a
//! keyframe). Nothing is ever re-parsed: a playlist request only formats
//! what the index holds.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::cmaf::{self, FragmentDone, TrackInfo};

/// Segments kept in the index (the store's retention decides what exists;
/// this only bounds the index if the store keeps more).
pub const MAX_SEGMENTS: usize = 30;

/// One part: a byte range of its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Offset of its first byte in the segment.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Its duration in track ticks.
    pub ticks: u64,
    /// Whether it starts with a sync sample.
    pub independent: bool,
}

/// The part being filled.
#[derive(Debug, Clone, Copy, Default)]
struct OpenPart {
    /// Offset of its first byte.
    offset: u64,
    /// Offset just past its last complete fragment.
    end: u64,
    /// Duration of its fragments so far.
    ticks: u64,
    /// Fragments in it so far.
    frags: u32,
    /// Whether its first fragment starts with a sync sample.
    independent: bool,
}

/// One media segment of the representation.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its media sequence number (the position in the playlist, continuing
    /// across encoder runs).
    pub seq: u64,
    /// The number in its file name (starts again at 1 with each encoder run).
    pub file_seq: u64,
    /// Its file name in the stream.
    pub name: String,
    /// Wall-clock time of its first fragment (`prft`).
    pub pdt: Option<SystemTime>,
    /// Closed parts, in order.
    pub parts: Vec<Part>,
    /// True once its upload finished (it then has an `EXTINF`).
    pub complete: bool,
    /// The part being filled.
    open: OpenPart,
}

impl Segment {
    /// An empty, growing segment.
    pub fn new(seq: u64, name: String) -> Segment {
        Segment { seq, file_seq: seq, name, pdt: None, parts: Vec::new(), complete: false, open: OpenPart::default() }
    }

    /// Duration of the closed parts, in ticks.
    pub fn ticks(&self) -> u64 {
        self.parts.iter().map(|p| p.ticks).sum()
    }

    /// Offset where the next part starts (the preload hint).
    pub fn next_part_offset(&self) -> u64 {
        self.open.offset
    }

    /// Bytes in closed parts.
    pub fn bytes(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.offset + p.len)
    }

    fn close_part(&mut self) {
        let o = self.open;
        if o.frags == 0 {
            return;
        }
        self.parts.push(Part { offset: o.offset, len: o.end - o.offset, ticks: o.ticks, independent: o.independent });
        self.open = OpenPart { offset: o.end, end: o.end, ..OpenPart::default() };
    }

    /// Add a completed fragment. Returns true if a part closed.
    pub fn add_fragment(&mut self, f: &FragmentDone, track: &TrackInfo, target_ticks: u64) -> bool {
        let (ticks, independent) = fragment_timing(f, track);
        if self.pdt.is_none() {
            self.pdt = f.prft;
        }
        let before = self.parts.len();
        // A video keyframe starts a part of its own; audio fragments are all
        // sync samples and are grouped by duration only.
        let video = &track.handler != b"soun";
        if video && independent && self.open.frags > 0 {
            self.close_part();
        }
        if self.open.frags == 0 {
            self.open.independent = independent;
        }
        self.open.end = f.end;
        self.open.ticks += ticks;
        self.open.frags += 1;
        if self.open.ticks + ticks > target_ticks {
            self.close_part();
        }
        self.parts.len() != before
    }

    /// The upload finished at `len` bytes: close the last part (bytes after
    /// the last fragment, if any, belong to it).
    pub fn finish(&mut self, len: u64) {
        if self.open.frags > 0 {
            self.open.end = len;
            self.close_part();
        } else if let Some(p) = self.parts.last_mut() {
            p.len = len - p.offset;
        }
        self.complete = true;
    }
}

/// Duration in ticks and sync flag of a fragment, with the init segment's
/// `trex` defaults where the `moof` carries none.
pub fn fragment_timing(f: &FragmentDone, track: &TrackInfo) -> (u64, bool) {
    let Some(m) = f.moof else {
        return (0, true);
    };
    let ticks = m
        .duration
        .or_else(|| track.default_duration.map(|d| d as u64 * m.samples as u64))
        .unwrap_or(track.timescale as u64 / 30);
    let audio = &track.handler == b"soun";
    let independent = audio || m.first_flags.or(track.default_flags).map_or(true, cmaf::is_sync);
    (ticks, independent)
}

/// The index of one representation.
#[derive(Debug, Default)]
pub struct RepIndex {
    /// Its track, once the init segment was read.
    pub track: Option<TrackInfo>,
    /// Name of its init segment.
    pub init: String,
    /// Segments, oldest first; the last may be growing.
    pub segments: VecDeque<Segment>,
    /// Digits in segment numbers (`00042`: 5), to name the next one.
    pub width: usize,
    /// Representation name (`stream0`).
    pub rep_name: String,
    /// Media sequence number of the next segment; `None` before the first.
    /// The first segment takes its file number; later ones count on, also
    /// across an encoder restart (whose files are numbered from 1 again), so
    /// the media sequence never goes back (RFC 8216bis 6.2.1).
    pub next_msn: Option<u64>,
    /// Encoder runs after the first: the `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity: u64,
}

impl RepIndex {
    /// Start indexing an encoder run (`track` from its init segment): the
    /// previous run's segments go, the media sequence continues and the
    /// discontinuity sequence counts the run.
    pub fn start_run(&mut self, track: TrackInfo) {
        self.track = Some(track);
        self.segments.clear();
        if self.next_msn.is_some() {
            self.discontinuity += 1;
        }
    }

    /// Add the growing segment with file number `file_seq` and name `name`;
    /// it gets the next media sequence number.
    pub fn push_segment(&mut self, file_seq: u64, name: String) {
        let msn = self.next_msn.unwrap_or(file_seq);
        self.next_msn = Some(msn + 1);
        let mut seg = Segment::new(msn, name);
        seg.file_seq = file_seq;
        self.segments.push_back(seg);
    }

    /// Drop the growing segment (its upload was aborted); its media sequence
    /// number goes to the next segment, so the sequence has no hole.
    pub fn drop_growing(&mut self) {
        if self.segments.back().is_some_and(|s| !s.complete) {
            if let Some(s) = self.segments.pop_back() {
                self.next_msn = Some(s.seq);
            }
        }
    }

    /// Part target in ticks for `secs`.
    pub fn target_ticks(&self, secs: f64) -> u64 {
        let scale = self.track.as_ref().map_or(1, |t| t.timescale.max(1)) as f64;
        (secs * scale).round() as u64
    }

    /// Seconds of `ticks`.
    pub fn secs(&self, ticks: u64) -> f64 {
        ticks as f64 / self.track.as_ref().map_or(1, |t| t.timescale.max(1)) as f64
    }

    /// Number of the last complete segment.
    pub fn last_complete(&self) -> Option<u64> {
        self.segments.iter().rev().find(|s| s.complete).map(|s| s.seq)
    }

    /// True if the playlist holds part `part` of segment `msn` or anything
    /// later (`part` `None`: the whole segment `msn`), RFC 8216bis 6.2.5.2.
    pub fn has(&self, msn: u64, part: Option<u64>) -> bool {
        self.segments.iter().any(|s| match part {
            None => s.seq > msn || (s.seq == msn && s.complete),
            Some(p) => (s.seq == msn && s.parts.len() as u64 > p) || (s.seq > msn && !s.parts.is_empty()),
        })
    }

    /// True if `_HLS_msn`/`_HLS_part` asks too far ahead (400): more than
    /// two segments after the last complete one, or more than the Advance
    /// Part Limit (3 for part targets under 1 s) after the last part.
    pub fn too_far(&self, msn: u64, part: Option<u64>) -> bool {
        let Some(last) = self.segments.back() else {
            return false;
        };
        let last_complete = self.last_complete().unwrap_or(last.seq.saturating_sub(1));
        if msn > last_complete + 2 {
            return true;
        }
        match part {
            Some(p) if msn == last.seq => p > last.parts.len() as u64 + 3,
            Some(p) if msn > last.seq => p > 3,
            _ => false,
        }
    }

    /// The part `EXT-X-PRELOAD-HINT` names: its segment's file name and the
    /// offset it starts at (in the growing segment, or the first part of the
    /// next one once the last segment is complete).
    pub fn preload_hint(&self) -> Option<(String, u64)> {
        let s = self.segments.back()?;
        if s.complete {
            Some((super::segment_name(&self.rep_name, s.file_seq + 1, self.width), 0))
        } else {
            Some((s.name.clone(), s.next_part_offset()))
        }
    }

    /// `(LAST-MSN, LAST-PART)` of the newest part, for `EXT-X-RENDITION-REPORT`.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        self.segments.iter().rev().find(|s| !s.parts.is_empty()).map(|s| (s.seq, s.parts.len() - 1))
    }

    /// Drop the oldest segments beyond [`MAX_SEGMENTS`] and those the store no longer names.
    pub fn prune(&mut self, exists: impl Fn(&str) -> bool) {
        while self.segments.len() > MAX_SEGMENTS
            || self.segments.front().is_some_and(|s| s.complete && !exists(&s.name))
        {
            self.segments.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::MoofInfo;

    fn frag(end: u64, ticks: u64, sync: bool) -> FragmentDone {
        let flags = if sync { 0x0200_0000 } else { 0x0101_0000 };
        let moof = MoofInfo { samples: 1, duration: Some(ticks), first_flags: Some(flags), ..MoofInfo::default() };
        FragmentDone { prft: None, end, moof: Some(moof) }
    }

    #[test]
    fn fragments_group_into_parts_at_the_target_and_at_keyframes() {
        let track = TrackInfo { timescale: 15360, handler: *b"vide", ..TrackInfo::default() };
        let mut s = Segment::new(1, "c-1.m4s".into());
        // 30 fps: 512 ticks per frame, target 200 ms = 3072 ticks = 6 frames.
        for i in 1..=14u64 {
            s.add_fragment(&frag(24 + i * 100, 512, i == 1), &track, 3072);
        }
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0], Part { offset: 0, len: 624, ticks: 3072, independent: true });
        assert_eq!(s.parts[1], Part { offset: 624, len: 600, ticks: 3072, independent: false });
        // A keyframe closes the open part early and starts an independent one.
        s.add_fragment(&frag(1524, 512, true), &track, 3072);
        assert_eq!(s.parts.len(), 3);
        assert_eq!(s.parts[2].ticks, 1024);
        assert_eq!(s.next_part_offset(), 1424);
        s.finish(1530);
        assert_eq!(s.parts[3], Part { offset: 1424, len: 106, ticks: 512, independent: true });
        assert!(s.complete);
        assert_eq!(s.ticks(), 3072 * 2 + 1024 + 512);

        // Audio (every fragment a sync sample): grouped by duration only,
        // 9 AAC frames of 1024 ticks at 48 kHz = 192 ms per part.
        let audio = TrackInfo { timescale: 48000, handler: *b"soun", ..TrackInfo::default() };
        let mut a = Segment::new(1, "a-1.m4s".into());
        for i in 1..=20u64 {
            a.add_fragment(&frag(i * 10, 1024, true), &audio, 9600);
        }
        assert_eq!(a.parts.len(), 2);
        assert!(a.parts.iter().all(|p| p.ticks == 9 * 1024 && p.independent));
    }

    #[test]
    fn blocking_conditions() {
        let mut ix = RepIndex::default();
        let mut a = Segment::new(5, "a".into());
        a.parts.push(Part { offset: 0, len: 1, ticks: 1, independent: true });
        a.complete = true;
        let mut b = Segment::new(6, "b".into());
        b.parts.push(Part { offset: 0, len: 1, ticks: 1, independent: true });
        ix.segments.extend([a, b]);
        assert!(ix.has(5, None));
        assert!(!ix.has(6, None));
        assert!(ix.has(6, Some(0)));
        assert!(!ix.has(6, Some(1)));
        assert!(ix.has(5, Some(3)), "a later part counts");
        assert!(!ix.too_far(7, None));
        assert!(ix.too_far(8, None));
        assert!(!ix.too_far(6, Some(4)));
        assert!(ix.too_far(6, Some(5)));
    }

    #[test]
    fn media_sequence_counts_on_across_encoder_runs() {
        let track = TrackInfo { timescale: 15360, handler: *b"vide", ..TrackInfo::default() };
        let mut ix = RepIndex::default();
        ix.start_run(track.clone());
        assert_eq!(ix.discontinuity, 0, "the first run is no discontinuity");
        for n in 3..=5 {
            ix.push_segment(n, format!("c-{n}"));
            ix.segments.back_mut().unwrap().finish(10);
        }
        // A lost file number (7) leaves no hole in the media sequence.
        ix.push_segment(8, "c-8".into());
        assert_eq!(ix.segments.iter().map(|s| s.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
        // An aborted upload gives its number to the next segment.
        ix.drop_growing();
        ix.push_segment(9, "c-9".into());
        assert_eq!((ix.segments.back().unwrap().seq, ix.segments.back().unwrap().file_seq), (6, 9));
        // The encoder restarts: files from 1 again, the sequence goes on.
        ix.start_run(track);
        assert!(ix.segments.is_empty());
        assert_eq!(ix.discontinuity, 1);
        ix.push_segment(1, "c-1".into());
        assert_eq!((ix.segments[0].seq, ix.segments[0].file_seq), (7, 1));
    }
}
