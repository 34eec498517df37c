//! Values that flags and specs share, parsed one way everywhere: durations
//! (`2s`, `500ms`) and byte sizes (`64M`). The origin's flags (`crate::cli`),
//! the load tool and the path emulator use them; this module depends on
//! nothing else of the crate but the QUIC payload range of
//! `crate::transport`, so the tools do not pull in the origin's CLI.

use std::time::Duration;

/// Parse a duration such as `2s`, `500ms`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Parse a duration that must be more than zero (a zero timeout would
/// disable or break what it times).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than 0")),
        d => Ok(d),
    }
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
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
