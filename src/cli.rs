//! Command-line options (clap derive). Doc comments are the `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::core::OriginConfig;
use crate::store::StoreConfig;
use crate::transport::Limits;

/// A listener address, or `off` to disable the listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenAddr(pub Option<SocketAddr>);

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" | "" => Ok(ListenAddr(None)),
            _ => s
                .parse()
                .map(|a| ListenAddr(Some(a)))
                .map_err(|e| format!("{s:?}: {e} (use ADDR:PORT, [V6]:PORT or off)")),
        }
    }
}

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

/// Listener addresses.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Cleartext HTTP/1.1 listener: ingest (PUT/POST/DELETE) and reads. `off` disables it.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR|off")]
    pub http: ListenAddr,
    /// HTTP/3 (QUIC, UDP) listener. `[::]` is dual-stack.
    #[arg(long, default_value = "[::]:4433", value_name = "ADDR|off")]
    pub h3: ListenAddr,
    /// TLS listener offering h2 and http/1.1; every response advertises h3 with Alt-Svc.
    #[arg(long, default_value = "[::]:4433", value_name = "ADDR|off")]
    pub https: ListenAddr,
    /// TLS listener offering HTTP/1.1 only, no Alt-Svc: the HTTP/1.1 arm of the A/B.
    #[arg(long = "https-h1", default_value = "[::]:4443", value_name = "ADDR|off")]
    pub https_h1: ListenAddr,
    /// TLS listener offering HTTP/2 only, no Alt-Svc: the HTTP/2 arm.
    #[arg(long = "https-h2", default_value = "[::]:4444", value_name = "ADDR|off")]
    pub https_h2: ListenAddr,
}

/// Certificate options.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// PEM certificate chain. Default: certs/cert.pem, generated on first run when missing.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert. Default: certs/key.pem.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Directory for the generated certificate.
    #[arg(long, default_value = "certs")]
    pub cert_dir: PathBuf,
    /// Extra host names or IPs for a generated certificate (localhost, 127.0.0.1 and ::1 are always in).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

/// Store limits.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// How long a GET for a missing object waits for its upload to start before 404.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Finished media segments kept per representation (older ones are evicted; init segments and manifests stay).
    #[arg(long, default_value_t = 10)]
    pub keep_segments: usize,
    /// Largest object one upload may create (413 beyond).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub max_object_size: u64,
    /// New uploads get 503 while stored objects hold this much.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub max_store_size: u64,
    /// A stream with no ingest for this long is dropped whole.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub stream_timeout: Duration,
}

impl StoreArgs {
    /// The store configuration these flags describe.
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            keep_segments: self.keep_segments,
            max_object_bytes: self.max_object_size,
            max_store_bytes: self.max_store_size,
            stream_idle_timeout: self.stream_timeout,
            hold: self.hold,
        }
    }
}

/// HTTP and connection options.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Directory served for `/` and other non-live paths.
    #[arg(long, default_value = "web")]
    pub web_dir: PathBuf,
    /// Require this token for ingest (Basic auth password, e.g. http://user:TOKEN@host/..., or Bearer).
    #[arg(long, env = "H3LIVE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,
    /// Refuse ingest on the cleartext listener too (read-only origin).
    #[arg(long)]
    pub no_ingest: bool,
    /// Cache-Control max-age of media and init segments, in seconds (while growing and when finished).
    #[arg(long, default_value_t = 30)]
    pub segment_max_age: u64,
    /// Open connections per listener.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Concurrent requests per HTTP/2 or HTTP/3 connection.
    #[arg(long, default_value_t = 256)]
    pub max_streams: u32,
    /// QUIC idle timeout (keep-alives every third of it) and HTTP/2 ping timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Time allowed for a TLS/QUIC handshake or HTTP/1.1 request headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// TCP_NOTSENT_LOWAT for accepted TCP connections (Linux), e.g. 128K; 0 leaves the kernel default.
    /// Keeps an HTTP/2 connection's backlog out of the kernel send buffer so new responses are not queued behind it.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub tcp_notsent_lowat: u64,
    /// Keep init segments and the latest manifest of each stream in this directory and publish them again after a
    /// restart (ffmpeg sends init segments only once per run, so without it a restarted origin cannot serve the
    /// running stream until the encoder restarts).
    #[arg(long, env = "H3LIVE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long running responses may continue after SIGINT/SIGTERM.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl HttpArgs {
    /// The HTTP-layer configuration these flags describe.
    pub fn origin_config(&self) -> OriginConfig {
        OriginConfig {
            web_dir: self.web_dir.clone(),
            ingest_token: self.ingest_token.clone(),
            segment_max_age: self.segment_max_age,
            state_dir: self.state_dir.clone(),
        }
    }

    /// The connection limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
            max_streams_per_connection: self.max_streams,
            tcp_notsent_lowat: (self.tcp_notsent_lowat > 0).then(|| self.tcp_notsent_lowat.min(u32::MAX as u64) as u32),
        }
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
}
