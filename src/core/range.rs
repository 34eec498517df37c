//! `Range` requests (RFC 9110 §14), one parser for static files and live
//! objects.
//!
//! Static files and finished live objects have a known length and get the
//! ordinary answers: 206 with `Content-Range: bytes a-b/len`, 416 with
//! `bytes */len`. A growing live object has no length yet, so its ranges are
//! answered the way RFC 8673 (random access to live content) describes:
//! - `bytes=N-M`: 206 with `Content-Range: bytes N-M/*`; bytes that have not
//!   arrived yet are sent when ingest brings them (the reader waits as for a
//!   normal growing read). If the upload ends before byte M the response ends
//!   there (RFC 8673 §3: a live range ends with the content).
//! - `bytes=N-`: 206 with `Content-Range: bytes N-9007199254740991/*` (RFC
//!   8673's "to the live end" marker), streamed to the end of the object. This
//!   is the request an LL-HLS client sends for an `EXT-X-PRELOAD-HINT` with
//!   `BYTERANGE-START` and no length.
//! - a suffix range (`bytes=-N`) needs the length: the whole object is sent
//!   (200), as RFC 9110 allows a server to ignore a range.
//! - a start beyond the largest object ingest accepts: 416 `bytes */*`.
//!
//! Several ranges in one request are ignored (whole object, 200).

/// What a `Range` header asks for, before knowing the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `bytes=N-`: from N to the end.
    From(u64),
    /// `bytes=N-M`: N to M inclusive (M >= N).
    Span(u64, u64),
    /// `bytes=-N`: the last N bytes (N > 0).
    Suffix(u64),
}

/// The parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// No header, another unit, several ranges or bad syntax: the whole
    /// representation (RFC 9110 lets a server ignore what it cannot use).
    Ignore,
    /// One range.
    One(Spec),
    /// `bytes=-0`: can never be satisfied.
    Unsatisfiable,
}

/// RFC 8673's last-byte-pos meaning "as far as the live content goes"
/// (2^53 - 1, the largest integer JavaScript represents exactly).
pub const LIVE_END: u64 = (1 << 53) - 1;

/// Parse a `Range` header value.
pub fn parse(value: Option<&str>) -> Parsed {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Parsed::Ignore;
    };
    if spec.contains(',') {
        return Parsed::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Parsed::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => Parsed::Unsatisfiable,
            Ok(n) => Parsed::One(Spec::Suffix(n)),
            Err(_) => Parsed::Ignore,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Parsed::Ignore;
    };
    if b.is_empty() {
        return Parsed::One(Spec::From(start));
    }
    match b.parse::<u64>() {
        Ok(end) if end >= start => Parsed::One(Spec::Span(start, end)),
        _ => Parsed::Ignore,
    }
}

/// What a `Range` header asks of a representation of known length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReq {
    /// No usable range: the whole representation (also for multiple ranges,
    /// which are not supported and so ignored, as RFC 9110 allows).
    Full,
    /// One satisfiable range, `start..=end`.
    Part(u64, u64),
    /// Not satisfiable (416).
    Unsatisfiable,
}

/// Resolve a `Range` header value against a known length `len`.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeReq {
    let last = len.saturating_sub(1);
    let (start, end) = match parse(value) {
        Parsed::Ignore => return RangeReq::Full,
        Parsed::Unsatisfiable => return RangeReq::Unsatisfiable,
        Parsed::One(Spec::Suffix(n)) => (len.saturating_sub(n), last),
        Parsed::One(Spec::From(a)) => (a, last),
        Parsed::One(Spec::Span(a, b)) => (a, b.min(last)),
    };
    if len == 0 || start >= len {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end)
}

/// The bytes of an object a response sends, and how far it has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Offset of the first byte sent.
    pub start: u64,
    /// Offset of the last byte sent, if bounded.
    pub end: Option<u64>,
    /// Bytes still to skip before the window starts.
    skip: u64,
    /// Bytes still to send, if bounded.
    remaining: Option<u64>,
}

impl Window {
    /// The whole object.
    pub fn all() -> Window {
        Window::new(0, None)
    }

    /// Bytes `start..=end` (`end` `None`: to the end of the object).
    pub fn new(start: u64, end: Option<u64>) -> Window {
        Window { start, end, skip: start, remaining: end.map(|e| e + 1 - start) }
    }

    /// Bytes sent of an object of final length `total`.
    pub fn len_of(&self, total: u64) -> u64 {
        let end = self.end.map_or(total, |e| (e + 1).min(total));
        end.saturating_sub(self.start)
    }

    /// True once the bounded window was sent whole.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The part of the next chunk of the object that falls inside the
    /// window; `None` if the chunk lies wholly before it.
    pub fn cut(&mut self, mut data: bytes::Bytes) -> Option<bytes::Bytes> {
        if self.skip > 0 {
            if (data.len() as u64) <= self.skip {
                self.skip -= data.len() as u64;
                return None;
            }
            data = data.split_off(self.skip as usize);
            self.skip = 0;
        }
        if let Some(r) = &mut self.remaining {
            if (data.len() as u64) > *r {
                data.truncate(*r as usize);
            }
            *r -= data.len() as u64;
        }
        Some(data)
    }
}

/// How a live object answers a `Range` header (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveRange {
    /// 200, the whole object.
    Full,
    /// 206 with this window and `Content-Range` value.
    Part(Window, String),
    /// 416 with this `Content-Range` value.
    Unsatisfiable(String),
}

/// Decide the answer to `value` for a live object of `len` bytes so far,
/// complete or not; `max_len` is the largest object ingest accepts.
pub fn live(value: Option<&str>, len: u64, complete: bool, max_len: u64) -> LiveRange {
    if complete {
        return match parse_range(value, len) {
            RangeReq::Full => LiveRange::Full,
            RangeReq::Part(a, b) => LiveRange::Part(Window::new(a, Some(b)), format!("bytes {a}-{b}/{len}")),
            RangeReq::Unsatisfiable => LiveRange::Unsatisfiable(format!("bytes */{len}")),
        };
    }
    match parse(value) {
        Parsed::Ignore | Parsed::One(Spec::Suffix(_)) => LiveRange::Full,
        Parsed::Unsatisfiable => LiveRange::Unsatisfiable("bytes */*".into()),
        Parsed::One(Spec::From(a) | Spec::Span(a, _)) if a >= max_len => LiveRange::Unsatisfiable("bytes */*".into()),
        Parsed::One(Spec::From(a)) => LiveRange::Part(Window::new(a, None), format!("bytes {a}-{LIVE_END}/*")),
        Parsed::One(Spec::Span(a, b)) => LiveRange::Part(Window::new(a, Some(b)), format!("bytes {a}-{b}/*")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_known_length() {
        assert_eq!(parse_range(None, 10), RangeReq::Full);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), RangeReq::Part(0, 3));
        assert_eq!(parse_range(Some("bytes=4-"), 10), RangeReq::Part(4, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeReq::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), RangeReq::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeReq::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeReq::Full);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeReq::Full);
    }

    #[test]
    fn specs() {
        assert_eq!(parse(Some("bytes=7-")), Parsed::One(Spec::From(7)));
        assert_eq!(parse(Some(" bytes=7-9 ")), Parsed::One(Spec::Span(7, 9)));
        assert_eq!(parse(Some("bytes=-9")), Parsed::One(Spec::Suffix(9)));
        assert_eq!(parse(Some("bytes=x-9")), Parsed::Ignore);
        assert_eq!(parse(None), Parsed::Ignore);
    }

    #[test]
    fn windows_cut_chunks() {
        let mut w = Window::new(3, Some(7));
        let got: Vec<_> = ["ab", "cdef", "ghij", "kl"]
            .iter()
            .filter_map(|c| w.cut(bytes::Bytes::from_static(c.as_bytes())))
            .collect();
        assert_eq!(got, ["def", "gh", ""]);
        assert!(w.done());
        assert_eq!(Window::new(3, Some(7)).len_of(5), 2);
        assert_eq!(Window::new(3, None).len_of(10), 7);
        assert_eq!(Window::all().len_of(10), 10);
    }

    #[test]
    fn live_answers() {
        let max = 1000;
        assert_eq!(
            live(Some("bytes=2-5"), 3, false, max),
            LiveRange::Part(Window::new(2, Some(5)), "bytes 2-5/*".into())
        );
        assert_eq!(
            live(Some("bytes=9-"), 3, false, max),
            LiveRange::Part(Window::new(9, None), format!("bytes 9-{LIVE_END}/*"))
        );
        assert_eq!(live(Some("bytes=-2"), 3, false, max), LiveRange::Full);
        assert_eq!(live(Some("bytes=1000-"), 3, false, max), LiveRange::Unsatisfiable("bytes */*".into()));
        assert_eq!(
            live(Some("bytes=2-5"), 4, true, max),
            LiveRange::Part(Window::new(2, Some(3)), "bytes 2-3/4".into())
        );
        assert_eq!(live(Some("bytes=4-"), 4, true, max), LiveRange::Unsatisfiable("bytes */4".into()));
        assert_eq!(live(None, 4, true, max), LiveRange::Full);
    }
}
