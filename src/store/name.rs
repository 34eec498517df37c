//! DASH stream naming rules, shared by the store (visibility, retention,
//! encoder runs) and the capture replay (renumbering loops): what kind of
//! file a name is, and where its sequence number sits.

/// What kind of file a name is; decides visibility and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `.mpd` / `.m3u8`: replaced atomically, cached briefly.
    Manifest,
    /// Initialization segment (name contains `init`): kept while the stream lives.
    Init,
    /// Everything else: visible from the first byte, subject to retention.
    Media,
}

impl Kind {
    /// Classify a validated file name.
    pub fn of(name: &str) -> Kind {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".mpd") || lower.ends_with(".m3u8") {
            Kind::Manifest
        } else if lower.contains("init") {
            Kind::Init
        } else {
            Kind::Media
        }
    }
}

/// A file name split around its sequence number, the last run of digits
/// before the extension (digits in the extension, `.m4s`, `.mp4`, are not
/// one): `chunk-stream0-00042.m4s` is `chunk-stream0-`, 42 written with 5
/// digits, `.m4s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered<'a> {
    /// Everything before the number.
    pub prefix: &'a str,
    /// Digits the number is written with (zero padding included).
    pub width: usize,
    /// The sequence number.
    pub number: u64,
    /// Everything after the number (the extension).
    pub suffix: &'a str,
}

impl<'a> Numbered<'a> {
    /// Split `name`; `None` if it has no number before its extension.
    pub fn parse(name: &'a str) -> Option<Numbered<'a>> {
        let stem_len = name.rfind('.').unwrap_or(name.len());
        let bytes = &name.as_bytes()[..stem_len];
        let end = bytes.iter().rposition(|b| b.is_ascii_digit())? + 1;
        let start = bytes[..end].iter().rposition(|b| !b.is_ascii_digit()).map_or(0, |i| i + 1);
        let number = name[start..end].parse().ok()?;
        Some(Numbered { prefix: &name[..start], width: end - start, number, suffix: &name[end..] })
    }

    /// The representation the name belongs to: the name with its number
    /// masked (`chunk-stream0-#.m4s`).
    pub fn representation(&self) -> String {
        format!("{}#{}", self.prefix, self.suffix)
    }

    /// The name with number `n`, zero-padded to the same width.
    pub fn with_number(&self, n: u64) -> String {
        format!("{}{n:0width$}{}", self.prefix, self.suffix, width = self.width)
    }
}

/// Representation key and sequence number of a media segment name.
pub fn sequence_of(name: &str) -> Option<(String, u64)> {
    Numbered::parse(name).map(|n| (n.representation(), n.number))
}

/// Sequence number of a name, if it has one.
pub fn sequence_number(name: &str) -> Option<u64> {
    Numbered::parse(name).map(|n| n.number)
}

/// `name` with its sequence number replaced by `n` (unchanged if it has none).
pub fn renumber(name: &str, n: u64) -> String {
    Numbered::parse(name).map_or_else(|| name.to_string(), |p| p.with_number(n))
}

/// Media segment `seq` of representation `rep`, as ffmpeg's DASH muxer names
/// it (`chunk-{rep}-{seq}.m4s`, `width` digits).
pub fn segment_name(rep: &str, seq: u64, width: usize) -> String {
    format!("chunk-{rep}-{seq:0width$}.m4s")
}

/// Init segment of representation `rep` (`init-{rep}.m4s`).
pub fn init_name(rep: &str) -> String {
    format!("init-{rep}.m4s")
}

/// The representation an init segment name belongs to (`init-stream0.m4s`: `stream0`).
pub fn init_rep(name: &str) -> Option<&str> {
    name.strip_prefix("init-")?.strip_suffix(".m4s").filter(|r| !r.is_empty())
}

/// Sequence number and digit count of `name` if it is a media segment of `rep`.
pub fn segment_seq(rep: &str, name: &str) -> Option<(u64, usize)> {
    let digits = name.strip_prefix("chunk-")?.strip_prefix(rep)?.strip_prefix('-')?.strip_suffix(".m4s")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, digits.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sequence_of("chunk-stream0-00042.m4s"), Some(("chunk-stream0-#.m4s".to_string(), 42)));
        assert_eq!(sequence_of("seg_7.cmfv"), Some(("seg_#.cmfv".to_string(), 7)));
        assert_eq!(sequence_of("manifest.mpd"), None);
        assert_eq!(
            Numbered::parse("chunk-stream0-00042.m4s"),
            Some(Numbered { prefix: "chunk-stream0-", width: 5, number: 42, suffix: ".m4s" })
        );
        assert_eq!(renumber("chunk-stream1-00042.m4s", 123456), "chunk-stream1-123456.m4s");
        assert_eq!(renumber("chunk-stream1-00042.m4s", 7), "chunk-stream1-00007.m4s");
        assert_eq!(renumber("manifest.mpd", 3), "manifest.mpd");
        assert_eq!(Kind::of("init-stream0.m4s"), Kind::Init);
        assert_eq!(Kind::of("media_0.m3u8"), Kind::Manifest);
        assert_eq!(Kind::of("chunk-stream1-00001.m4s"), Kind::Media);
    }
}
