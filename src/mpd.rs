//! The part of a DASH manifest a live viewer needs: `type`,
//! `availabilityStartTime`, and per representation its `SegmentTemplate`
//! (`initialization`, `media`, `startNumber`, `duration`, `timescale`).
//!
//! A tag scanner rather than an XML parser: the MPDs this reads are ffmpeg's
//! (and our replay's re-stamped copies), attributes are double- or
//! single-quoted, and a `SegmentTemplate` on an `AdaptationSet` applies to its
//! representations. Anything it does not understand is skipped.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

/// One start or empty-element tag: its name and attributes.
#[derive(Debug, Clone, Default)]
struct Tag {
    /// Local name (namespace prefix dropped).
    name: String,
    /// Attributes in document order.
    attrs: Vec<(String, String)>,
    /// `</Name>`.
    closing: bool,
    /// `<Name ... />`: opens and closes.
    empty: bool,
}

impl Tag {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Every tag of `xml`, in order (comments, PIs and declarations skipped).
fn tags(xml: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix("!--") {
            rest = r.find("-->").map_or("", |j| &r[j + 3..]);
            continue;
        }
        let Some(end) = rest.find('>') else { break };
        let inner = &rest[..end];
        rest = &rest[end + 1..];
        if inner.starts_with('?') || inner.starts_with('!') {
            continue;
        }
        let empty = inner.ends_with('/');
        let (closing, inner) = match inner.strip_prefix('/') {
            Some(i) => (true, i),
            None => (false, inner.trim_end_matches('/')),
        };
        let name_end = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
        let name = inner[..name_end].rsplit(':').next().unwrap_or_default().to_string();
        let mut attrs = Vec::new();
        let mut a = &inner[name_end..];
        while let Some(eq) = a.find('=') {
            let key = a[..eq].trim().to_string();
            let v = a[eq + 1..].trim_start();
            let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else { break };
            let Some(close) = v[1..].find(q) else { break };
            attrs.push((key, unescape(&v[1..1 + close])));
            a = &v[close + 2..];
        }
        out.push(Tag { name, attrs, closing, empty });
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A representation's segment addressing.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// `Representation@id`.
    pub id: String,
    /// `contentType` or the main type of `mimeType` (`video`, `audio`, ...).
    pub content: String,
    /// `SegmentTemplate@initialization`, unexpanded.
    pub init: String,
    /// `SegmentTemplate@media`, unexpanded.
    pub media: String,
    /// `SegmentTemplate@startNumber` (default 1).
    pub start_number: u64,
    /// Segment duration.
    pub duration: Duration,
    /// `Representation@bandwidth`, bits per second.
    pub bandwidth: u64,
}

impl Track {
    /// The initialization segment's file name.
    pub fn init_name(&self) -> String {
        expand(&self.init, &self.id, 0, self.bandwidth)
    }

    /// The file name of media segment `number`.
    pub fn media_name(&self, number: u64) -> String {
        expand(&self.media, &self.id, number, self.bandwidth)
    }
}

/// Expand `$RepresentationID$`, `$Number$`, `$Number%0Nd$`, `$Bandwidth$`, `$$`.
fn expand(template: &str, id: &str, number: u64, bandwidth: u64) -> String {
    let mut out = String::new();
    let mut parts = template.split('$');
    out.push_str(parts.next().unwrap_or_default());
    let mut ident = true;
    for p in parts {
        if ident {
            let (name, fmt) = p.split_once('%').unwrap_or((p, ""));
            let width: usize = fmt.trim_start_matches('0').trim_end_matches('d').parse().unwrap_or(0);
            match name {
                "" => out.push('$'),
                "RepresentationID" => out.push_str(id),
                "Number" => out.push_str(&format!("{number:0width$}")),
                "Bandwidth" => out.push_str(&format!("{bandwidth:0width$}")),
                other => {
                    out.push('$');
                    out.push_str(other);
                    out.push('$');
                }
            }
        } else {
            out.push_str(p);
        }
        ident = !ident;
    }
    out
}

/// What a viewer reads from the manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `type="dynamic"`.
    pub dynamic: bool,
    /// `availabilityStartTime`, for a dynamic manifest.
    pub availability_start: Option<SystemTime>,
    /// Representations with a `SegmentTemplate`.
    pub tracks: Vec<Track>,
}

impl Manifest {
    /// Parse an MPD.
    pub fn parse(xml: &str) -> Result<Manifest> {
        let tags = tags(xml);
        let mpd = tags.iter().find(|t| t.name == "MPD" && !t.closing).context("no <MPD> element")?;
        let dynamic = mpd.attr("type") == Some("dynamic");
        let availability_start = mpd
            .attr("availabilityStartTime")
            .map(|s| humantime::parse_rfc3339_weak(s).with_context(|| format!("availabilityStartTime {s:?}")))
            .transpose()?;
        let mut tracks = Vec::new();
        let (mut set, mut set_template): (Option<&Tag>, Option<&Tag>) = (None, None);
        let mut rep: Option<(&Tag, Option<&Tag>)> = None;
        for t in &tags {
            match (t.name.as_str(), t.closing) {
                ("AdaptationSet", false) => (set, set_template) = (Some(t), None),
                ("AdaptationSet", true) => (set, set_template) = (None, None),
                ("Representation", false) if t.empty => {
                    if let Some(tpl) = set_template {
                        tracks.push(track(t, tpl, set)?);
                    }
                }
                ("Representation", false) => rep = Some((t, None)),
                ("SegmentTemplate", false) => match &mut rep {
                    Some((_, tpl)) => *tpl = Some(t),
                    None => set_template = Some(t),
                },
                ("Representation", true) => {
                    if let Some((r, tpl)) = rep.take() {
                        if let Some(tpl) = tpl.or(set_template) {
                            tracks.push(track(r, tpl, set)?);
                        }
                    }
                }
                _ => {}
            }
        }
        if tracks.is_empty() {
            bail!("no Representation with a SegmentTemplate");
        }
        Ok(Manifest { dynamic, availability_start, tracks })
    }

    /// The number of the segment being written at `now` for `track`: the
    /// live edge, from `availabilityStartTime` and the segment duration.
    /// `None` for a static manifest.
    pub fn live_number(&self, track: &Track, now: SystemTime) -> Option<u64> {
        let ast = self.availability_start.filter(|_| self.dynamic)?;
        let elapsed = now.duration_since(ast).unwrap_or_default();
        Some(track.start_number + (elapsed.as_secs_f64() / track.duration.as_secs_f64()).floor() as u64)
    }

    /// When segment `number` of `track` is complete (its last byte written),
    /// per the timeline. `None` for a static manifest.
    pub fn segment_end(&self, track: &Track, number: u64) -> Option<SystemTime> {
        let ast = self.availability_start.filter(|_| self.dynamic)?;
        Some(ast + track.duration * (number + 1).saturating_sub(track.start_number) as u32)
    }
}

/// Which video representation of an ABR ladder a viewer follows
/// (`h3live load --representation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Representation {
    /// The one with this `Representation@id`.
    Id(String),
    /// The one with the lowest `bandwidth`.
    Lowest,
    /// The one with the highest `bandwidth`.
    Highest,
}

impl std::str::FromStr for Representation {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" => bail!("empty representation (give an id, lowest or highest)"),
            "lowest" => Ok(Representation::Lowest),
            "highest" => Ok(Representation::Highest),
            id => Ok(Representation::Id(id.to_string())),
        }
    }
}

impl Manifest {
    /// The video representation `choice` names.
    pub fn pick_video(&self, choice: &Representation) -> Result<&Track> {
        let video = self.tracks.iter().filter(|t| t.content == "video");
        let found = match choice {
            Representation::Id(id) => self.tracks.iter().find(|t| &t.id == id && t.content == "video"),
            Representation::Lowest => video.min_by_key(|t| t.bandwidth),
            Representation::Highest => video.max_by_key(|t| t.bandwidth),
        };
        found.with_context(|| {
            let ids: Vec<&str> = self.tracks.iter().filter(|t| t.content == "video").map(|t| t.id.as_str()).collect();
            format!("no video representation {choice:?} in the manifest (video ids: {ids:?})")
        })
    }
}

fn track(rep: &Tag, tpl: &Tag, set: Option<&Tag>) -> Result<Track> {
    let id = rep.attr("id").context("Representation without id")?.to_string();
    let num = |k: &str, d: u64| -> Result<u64> {
        tpl.attr(k).map_or(Ok(d), |v| v.parse().with_context(|| format!("SegmentTemplate@{k}={v:?}")))
    };
    let timescale = num("timescale", 1)?.max(1);
    let duration = num("duration", 0)?;
    if duration == 0 {
        bail!("representation {id}: SegmentTemplate without duration (SegmentTimeline is not supported)");
    }
    let content = set
        .and_then(|s| s.attr("contentType"))
        .or_else(|| {
            rep.attr("mimeType").or_else(|| set.and_then(|s| s.attr("mimeType"))).and_then(|m| m.split('/').next())
        })
        .unwrap_or("")
        .to_string();
    Ok(Track {
        id,
        content,
        init: tpl.attr("initialization").context("SegmentTemplate without initialization")?.to_string(),
        media: tpl.attr("media").context("SegmentTemplate without media")?.to_string(),
        start_number: num("startNumber", 1)?,
        duration: Duration::from_secs_f64(duration as f64 / timescale as f64),
        bandwidth: rep.attr("bandwidth").and_then(|b| b.parse().ok()).unwrap_or(0),
    })
}

/// Replace the value of every `name="..."` attribute with `f(old)`.
pub fn rewrite_attr(xml: &str, name: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let needle = format!("{name}=\"");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find(&needle) {
        let vstart = i + needle.len();
        // Only a whole attribute name: preceded by whitespace (a space, or
        // ffmpeg's newline + tab).
        let whole = rest[..i].chars().next_back().is_some_and(char::is_whitespace);
        let Some(len) = rest[vstart..].find('"') else { break };
        out.push_str(&rest[..vstart]);
        let old = &rest[vstart..vstart + len];
        match whole.then(|| f(old)).flatten() {
            Some(new) => out.push_str(&new),
            None => out.push_str(old),
        }
        rest = &rest[vstart + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG_MPD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011"
	type="dynamic"
	minimumUpdatePeriod="PT500S" availabilityStartTime="2026-11-24T00:40:00.500Z" publishTime="2026-11-24T00:40:10Z">
	<Period id="0" start="PT0.0S">
		<AdaptationSet id="0" contentType="video" startWithSAP="1">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="1000000" width="640" height="360">
				<SegmentTemplate timescale="1000000" duration="2000000" availabilityTimeOffset="1.967" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="audio">
			<!-- a comment <Representation id="x"> -->
			<SegmentTemplate timescale="48000" duration="96000" initialization="a-init.m4s" media="a-$Number$.m4s" startNumber="5"/>
			<Representation id="1" mimeType="audio/mp4" bandwidth="128000"/>
		</AdaptationSet>
	</Period>
</MPD>"#;

    #[test]
    fn parses_ffmpeg_manifest() {
        let m = Manifest::parse(FFMPEG_MPD).unwrap();
        assert!(m.dynamic);
        assert_eq!(m.tracks.len(), 2);
        let v = &m.tracks[0];
        assert_eq!((v.id.as_str(), v.content.as_str(), v.start_number), ("0", "video", 1));
        assert_eq!(v.duration, Duration::from_secs(2));
        assert_eq!(v.init_name(), "init-stream0.m4s");
        assert_eq!(v.media_name(42), "chunk-stream0-00042.m4s");
        let a = &m.tracks[1];
        assert_eq!((a.content.as_str(), a.start_number, a.media_name(7)), ("audio", 5, "a-7.m4s".to_string()));
        let ast = m.availability_start.unwrap();
        assert_eq!(m.live_number(v, ast + Duration::from_millis(4100)), Some(3));
        assert_eq!(m.segment_end(v, 3), Some(ast + Duration::from_secs(6)));
    }

    #[test]
    fn picks_a_ladder_rendition() {
        let xml = r#"<MPD type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z"><Period>
<AdaptationSet contentType="video"><SegmentTemplate duration="2" initialization="init-$RepresentationID$.m4s" media="c-$RepresentationID$-$Number$.m4s"/>
<Representation id="0" bandwidth="2000000"/><Representation id="1" bandwidth="900000"/><Representation id="2" bandwidth="300000"/>
</AdaptationSet><AdaptationSet contentType="audio"><SegmentTemplate duration="2" initialization="i$RepresentationID$" media="m$Number$"/>
<Representation id="3" bandwidth="128000"/></AdaptationSet></Period></MPD>"#;
        let m = Manifest::parse(xml).unwrap();
        let pick = |s: &str| m.pick_video(&s.parse().unwrap()).map(|t| t.id.clone());
        assert_eq!(pick("lowest").unwrap(), "2");
        assert_eq!(pick("highest").unwrap(), "0");
        assert_eq!(pick("1").unwrap(), "1");
        let err = pick("3").unwrap_err().to_string();
        assert!(err.contains("no video representation") && err.contains(r#"["0", "1", "2"]"#), "{err}");
        assert!("".parse::<Representation>().is_err());
    }

    #[test]
    fn rewrites_attributes() {
        // ffmpeg puts attributes on their own lines after a tab.
        let out = rewrite_attr(FFMPEG_MPD, "availabilityStartTime", |_| Some("X".into()));
        assert!(out.contains("\tminimumUpdatePeriod=\"PT500S\" availabilityStartTime=\"X\""));
        assert_eq!(out.len(), FFMPEG_MPD.len() - "2026-11-24T00:40:00.500Z".len() + 1);
        let out = rewrite_attr(FFMPEG_MPD, "publishTime", |_| Some("Y".into()));
        assert!(out.contains(
            "\n\tminimumUpdatePeriod=\"PT500S\" availabilityStartTime=\"2026-11-24T00:40:00.500Z\" publishTime=\"Y\">"
        ));
        let out = rewrite_attr(FFMPEG_MPD, "type", |_| Some("static".into()));
        assert!(out.contains("\n\ttype=\"static\"\n"));
        assert_eq!(
            rewrite_attr("<a xpublishTime=\"1\"/>", "publishTime", |_| Some("Y".into())),
            "<a xpublishTime=\"1\"/>"
        );
    }
}
