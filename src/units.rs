//! Values that flags and specs share, parsed one way everywhere: durations
//! (`2s`, `500ms`) and byte sizes (`64M`), plain or within a range (the
//! range-checked parsers name the range in their error). The origin's flags (`crate::cli`),
//! the load tool and the path emulator use them; this module depends on
//! nothing else of the crate but the QUIC payload range of
//! `crate::transport`, so the tools do not pull in the origin's CLI.

use std::time::Duration;

/// Parse a duration such as `2s`, `500ms`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Parse a byte size such as `64M`, `1G`, `512K` or `1000` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (use K, M or G)")),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("{s:?}: not a size"))?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("{s:?}: not a size"));
    }
    Ok((n * mult as f64) as u64)
}

/// A duration flag's parser that refuses values outside `min..=max` with a
/// message naming the range (a timeout of a few microseconds, like one of
/// 0, breaks what it times without a word). The range is in the flag's help
/// and in docs/reference.md ("Ranges of the flags").
pub fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    move |s| match parse_duration(s)? {
        d if d < min || d > max => Err(format!(
            "{s:?} is outside the accepted range {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )),
        d => Ok(d),
    }
}

/// A byte-size parser that refuses values outside `min..=max`.
pub fn size_in(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync {
    move |s| match parse_size(s)? {
        n if n < min || n > max => {
            Err(format!("{s:?} is outside the accepted range {} to {}", show_size(min), show_size(max)))
        }
        n => Ok(n),
    }
}

/// A count parser that refuses values outside `min..=max`.
pub fn count_in<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s| match s.trim().parse::<T>() {
        Ok(n) if n < min || n > max => Err(format!("{s:?} is outside the accepted range {min} to {max}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?}: not a whole number")),
    }
}

/// `n` bytes in the largest binary unit that divides it.
fn show_size(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

/// Parse a requested QUIC max_ack_delay: 1 ms to 1 s.
pub fn parse_ack_delay(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d < Duration::from_millis(1) || d > Duration::from_secs(1) => {
            Err(format!("{s:?}: must be between 1ms and 1s"))
        }
        d => Ok(d),
    }
}

/// Parse a UDP payload size for QUIC (1200 to 65527 bytes; K units allowed).
pub fn parse_udp_payload(s: &str) -> Result<u16, String> {
    let n = parse_size(s)?;
    let range = crate::transport::UDP_PAYLOAD_RANGE;
    match u16::try_from(n) {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: must be between {} and {} bytes", range.start(), range.end())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("abc").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(duration_in(Duration::from_millis(1), Duration::from_secs(1))("0s").is_err());
        assert_eq!(size_in(1 << 20, 1 << 30)("1K"), Err("\"1K\" is outside the accepted range 1M to 1G".into()));
        assert!(count_in(1u32, 10)("11").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
