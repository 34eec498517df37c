//! # h3live
//!
//! An experimental origin for low-latency live video. An encoder (ffmpeg)
//! pushes LL-DASH with HTTP/1.1 chunked PUTs; the origin keeps each segment in
//! memory while it is written and serves it to players *as the bytes arrive*
//! over HTTP/3, HTTP/2 and HTTP/1.1, so the transports can be compared on the
//! same timecoded stream.
//!
//! Layout, one job per module:
//! - [`store`]: the live store. Growing objects ([`store::Object`]) read by
//!   many while written by one; retention, memory caps, held reads.
//! - [`conn`]: the connection vocabulary (`Transport`, `ListenerInfo`,
//!   `ConnInfo`) below both the core and the adapters, so that no import runs
//!   from the core up to a transport.
//! - [`core`]: the transport-independent origin: routing, ingest, reads and
//!   every HTTP rule (status codes, headers, caching, CORS).
//! - [`transport`]: thin adapters. `transport::hyper` (HTTP/1.1 + HTTP/2 via
//!   hyper, cleartext or tokio-rustls), `transport::h3` (HTTP/3 via
//!   h3 + h3-quinn), `transport::tls` (rustls configs).
//! - [`server`]: [`server::run`] serves already-bound listeners until a
//!   shutdown future resolves; `main.rs` only parses flags and binds.
//! - [`cert`]: self-signed certificates and the SPKI hash Chromium needs.
//! - [`metrics`]: Prometheus metrics (a prometheus-client registry), including
//!   the origin-delay histogram.
//! - [`quic_stats`]: quinn's per-connection counters summed over connections
//!   (origin `/metrics`, load tool report).
//! - [`cli`]: clap option groups shared by the binary's subcommands.
//! - [`units`]: durations and byte sizes as flags and specs write them,
//!   shared by the origin's flags and the tools.
//! - [`interop`]: the quic-interop-runner server endpoint (hq-interop + h3).
//! - [`frames`]: a hyper body read as data pieces (server, client, recorder).
//! - [`client`]: a streaming client for all four transports (tests, viewer tools).
//! - [`cmaf`]: just enough ISO-BMFF/CMAF box parsing, shared by the load
//!   tool and the LL-HLS packager.
//! - [`mpd`]: the DASH manifest fields a live viewer needs, shared by the
//!   load tool and the origin's prefetch hints.
//! - [`hls`]: LL-HLS playlists generated from the stored CMAF.
//! - [`load`]: `h3live load`, a viewer swarm with per-fragment latency, and
//!   stream capture/replay for benchmarks.
//! - [`pathemu`]: `h3live pathemu`, a path emulator (delay, jitter, loss,
//!   bursty loss, rate) on NFQUEUE for kernels without sch_netem, and the
//!   path self-check the A/B harness runs before every profile.
//! - [`relay`]: `h3live relay`, the encoder relay: takes the encoder's
//!   uploads on loopback and forwards them to one or more origins over
//!   HTTP/1.1 or HTTP/3, re-sending what an origin lost in a restart.

pub mod cert;
pub mod cli;
pub mod client;
pub mod cmaf;
pub mod conn;
pub mod core;
pub mod frames;
pub mod hls;
pub mod interop;
pub mod load;
pub mod metrics;
pub mod moq;
pub mod mpd;
pub mod pathemu;
pub mod quic_stats;
pub mod relay;
pub mod server;
pub mod store;
pub mod transport;
pub mod units;

/// The layer rules, checked on the source text: an import never runs back
/// up (store below core, core below the transports), and the transports see
/// the store only through the core.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Every `.rs` file under `src/<dir>` that mentions one of `forbidden`.
    fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&root).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source file");
            // Imports, not doc links: a comment may name the layer that uses this one.
            let text: String =
                source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            // A whole path segment: `crate::cli` does not match `crate::client`.
            let names = |f: &str| {
                text.match_indices(f)
                    .any(|(i, _)| !text[i + f.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
            };
            for f in forbidden.iter().filter(|f| names(f)) {
                found.push(format!("{} names {f}", path.display()));
            }
        }
        found
    }

    #[test]
    fn imports_only_run_down() {
        assert_eq!(offenders("transport", &["crate::store"]), Vec::<String>::new());
        assert_eq!(offenders("core", &["crate::transport", "crate::server", "crate::cli"]), Vec::<String>::new());
        let above_store =
            ["crate::core", "crate::transport", "crate::server", "crate::cli", "crate::hls", "crate::moq"];
        assert_eq!(offenders("store", &above_store), Vec::<String>::new());
        // The delivery formats are views of the store: the transports use them, never the reverse.
        let above_views = ["crate::core", "crate::transport", "crate::server", "crate::cli"];
        assert_eq!(offenders("hls", &above_views), Vec::<String>::new());
        assert_eq!(offenders("moq", &above_views), Vec::<String>::new());
        // The tools use the shared value parsers, not the origin's flags.
        assert_eq!(offenders("load", &["crate::cli"]), Vec::<String>::new());
        assert_eq!(offenders("pathemu", &["crate::cli"]), Vec::<String>::new());
    }
}
