//! Who may write: the ingest token (`Authorization: Bearer TOKEN`, or Basic
//! with TOKEN as the password) and the browser origins allowed to send
//! ingest requests (`--ingest-allow-origin`).

use http::header::{self, HeaderValue};

/// True if `headers` present the ingest token `expected` (always true when
/// no token is configured). Compared in constant time.
pub fn authorized(expected: Option<&str>, headers: &http::HeaderMap) -> bool {
    let Some(token) = expected else {
        return true;
    };
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let presented = if let Some(b) = value.strip_prefix("Bearer ") {
        b.trim().as_bytes().to_vec()
    } else if let Some(b) = value.strip_prefix("Basic ") {
        use base64::Engine as _;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return false;
        };
        match decoded.iter().position(|&c| c == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    constant_time_eq(&presented, token.as_bytes())
}

/// True if `origin` (an `Origin` header value) is one of `allowed`.
pub fn origin_allowed(allowed: &[String], origin: &HeaderValue) -> bool {
    let o = origin.as_bytes();
    allowed.iter().any(|a| a.as_bytes() == o)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn token_forms() {
        assert!(authorized(None, &http::HeaderMap::new()));
        assert!(!authorized(Some("s3"), &http::HeaderMap::new()));
        assert!(authorized(Some("s3"), &with("Bearer s3")));
        assert!(!authorized(Some("s3"), &with("Bearer s4")));
        // user "u", password "s3"
        assert!(authorized(Some("s3"), &with("Basic dTpzMw==")));
        assert!(!authorized(Some("s3"), &with("Basic !!")));
        assert!(!authorized(Some("s3"), &with("Digest s3")));
        assert!(origin_allowed(&["https://a.example".into()], &HeaderValue::from_static("https://a.example")));
        assert!(!origin_allowed(&[], &HeaderValue::from_static("https://a.example")));
    }
}
