//! Playlist text (RFC 8216bis): the multivariant playlist and one LL-HLS
//! media playlist per representation, formatted from the index.

use std::fmt::Write as _;

use super::index::RepIndex;

/// Segments before the last whose parts are still listed (RFC 8216bis 6.2.2:
/// parts older than three target durations from the live edge may go).
const PART_SEGMENTS: usize = 2;

/// `EXT-X-PART-INF` target in seconds: the configured target, raised to the
/// longest part actually made (a single fragment longer than the target
/// makes a longer part), rounded up to the millisecond.
pub fn part_target(index: &RepIndex, configured: f64) -> f64 {
    let longest = index.segments.iter().flat_map(|s| s.parts.iter()).map(|p| index.secs(p.ticks)).fold(0.0, f64::max);
    (configured.max(longest) * 1000.0).ceil() / 1000.0
}

/// `EXT-X-TARGETDURATION`: the longest segment rounded to the nearest
/// second (RFC 8216bis 4.4.3.1), 2 before the first segment completes.
pub fn target_duration(index: &RepIndex) -> u64 {
    let longest = index.segments.iter().filter(|s| s.complete).map(|s| index.secs(s.ticks())).fold(0.0, f64::max);
    if longest == 0.0 {
        2
    } else {
        (longest.round() as u64).max(1)
    }
}

/// The media playlist of one representation.
pub fn media(index: &RepIndex, configured_part_target: f64) -> String {
    let pt = part_target(index, configured_part_target);
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:6");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", target_duration(index));
    let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", 3.0 * pt);
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={pt:.3}");
    let first = index.segments.front().map_or(0, |s| s.seq);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
    if index.discontinuity > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", index.discontinuity);
    }
    let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", index.init);
    let n = index.segments.len();
    for (i, s) in index.segments.iter().enumerate() {
        if let Some(t) = s.pdt {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", humantime::format_rfc3339_millis(t));
        }
        // Parts of the last complete segments and of the growing one.
        let tail = if s.complete { n - i <= PART_SEGMENTS + 1 } else { true };
        if tail {
            for p in &s.parts {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.5},URI=\"{}\",BYTERANGE=\"{}@{}\"",
                    index.secs(p.ticks),
                    s.name,
                    p.len,
                    p.offset
                );
                out.push_str(if p.independent { ",INDEPENDENT=YES\n" } else { "\n" });
            }
        }
        if s.complete {
            let _ = writeln!(out, "#EXTINF:{:.5},", index.secs(s.ticks()));
            let _ = writeln!(out, "{}", s.name);
        }
    }
    // The next part: in the growing segment, or the first of the next one.
    if let Some((uri, start)) = index.preload_hint() {
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\",BYTERANGE-START={start}");
    }
    out
}

/// `EXT-X-RENDITION-REPORT` lines for the other renditions of the stream:
/// (media playlist URI, last segment number, last part index).
pub fn rendition_reports(out: &mut String, reports: &[(String, u64, usize)]) {
    for (uri, msn, part) in reports {
        let _ = writeln!(out, "#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN={msn},LAST-PART={part}");
    }
}

/// One representation as the multivariant playlist lists it.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Media playlist file name.
    pub uri: String,
    /// Handler type of its track (`vide`, `soun`).
    pub handler: [u8; 4],
    /// Codec string.
    pub codec: Option<String>,
    /// Picture size.
    pub size: Option<(u16, u16)>,
    /// Peak bit rate estimate, bits per second.
    pub bandwidth: u64,
    /// Representation name.
    pub name: String,
}

/// The multivariant playlist: every video representation as a variant
/// stream, every audio representation in one `AUDIO` rendition group.
pub fn multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let audio: Vec<&Variant> = variants.iter().filter(|v| &v.handler == b"soun").collect();
    for (i, a) in audio.iter().enumerate() {
        let default = if i == 0 { "YES" } else { "NO" };
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",DEFAULT={default},AUTOSELECT=YES,URI=\"{}\"",
            a.name, a.uri
        );
    }
    let audio_bw = audio.iter().map(|a| a.bandwidth).max().unwrap_or(0);
    let audio_codec = audio.first().and_then(|a| a.codec.clone());
    for v in variants.iter().filter(|v| &v.handler == b"vide") {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth + audio_bw);
        let codecs: Vec<String> = v.codec.iter().chain(audio_codec.iter()).cloned().collect();
        if !codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", codecs.join(","));
        }
        if let Some((w, h)) = v.size {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if !audio.is_empty() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{}", v.uri);
    }
    out
}
