//! The relay's `/metrics` (Prometheus text): what it received from the
//! encoder, and per upstream what it sent, re-sent, how far behind it is and
//! how long each chunk waited in the relay.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::Histogram;

/// `{upstream="http://127.0.0.1:8080 h3"}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    /// The upstream's URL (no credentials) and transport.
    upstream: String,
}

/// One upstream's series.
#[derive(Debug, Clone, Default)]
pub struct UpstreamMetrics {
    /// 1 while its requests go through, 0 while they fail.
    pub up: Gauge,
    /// Bytes it still has to send (set at each scrape).
    pub behind: Gauge,
    /// Body bytes handed to its transport.
    pub sent_bytes: Counter,
    /// Body bytes sent again: requests retried from their start, kept init
    /// segments and manifests sent after a restart.
    pub resent_bytes: Counter,
    /// Connections opened after a failure.
    pub reconnects: Counter,
    /// Failed uploads (connection or stream lost, timeout) and refused requests.
    pub upload_errors: Counter,
    /// Jumps to the live edge (too far behind).
    pub live_edge_drops: Counter,
    /// Time from a chunk's arrival from the encoder to its hand-off to this
    /// upstream's transport (chunks that arrived while the upstream was
    /// already waiting for them; a backlog after a failure is not counted).
    pub delay: Histogram,
}

/// Every metric of one relay.
#[derive(Debug)]
pub struct RelayMetrics {
    /// What `/metrics` encodes.
    registry: Registry,
    /// Body bytes received from the encoder.
    pub ingest_bytes: Counter,
    /// Requests received from the encoder (PUT, POST, DELETE).
    pub requests: Counter,
    /// Encoder uploads that ended without their terminating chunk.
    pub broken_uploads: Counter,
    /// Encoder requests refused (bad path, Origin header, too large, method).
    pub refused: Counter,
    /// Lanes held (encoder connections, or closed ones not yet sent everywhere).
    pub lanes: Gauge,
    /// Per-upstream families, for [`RelayMetrics::upstream`].
    families: UpstreamFamilies,
}

#[derive(Debug, Default)]
struct UpstreamFamilies {
    up: Family<UpstreamLabel, Gauge>,
    behind: Family<UpstreamLabel, Gauge>,
    sent_bytes: Family<UpstreamLabel, Counter>,
    resent_bytes: Family<UpstreamLabel, Counter>,
    reconnects: Family<UpstreamLabel, Counter>,
    upload_errors: Family<UpstreamLabel, Counter>,
    live_edge_drops: Family<UpstreamLabel, Counter>,
    delay: Family<UpstreamLabel, Histogram>,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let f = UpstreamFamilies::default();
        let ingest_bytes = Counter::default();
        r.register("h3live_relay_ingest_bytes", "Body bytes received from the encoder", ingest_bytes.clone());
        let requests = Counter::default();
        r.register("h3live_relay_requests", "Requests received from the encoder", requests.clone());
        let broken_uploads = Counter::default();
        r.register(
            "h3live_relay_broken_uploads",
            "Encoder uploads that ended without their terminating chunk",
            broken_uploads.clone(),
        );
        let refused = Counter::default();
        r.register("h3live_relay_refused", "Encoder requests refused", refused.clone());
        let lanes = Gauge::default();
        r.register("h3live_relay_lanes", "Encoder connections held (open, or not yet sent everywhere)", lanes.clone());
        r.register("h3live_relay_upstream_up", "1 while the upstream's requests go through", f.up.clone());
        r.register("h3live_relay_behind_bytes", "Bytes the upstream still has to send", f.behind.clone());
        r.register("h3live_relay_sent_bytes", "Body bytes handed to the upstream's transport", f.sent_bytes.clone());
        r.register(
            "h3live_relay_resent_bytes",
            "Body bytes sent again to the upstream (retries from a request's start, kept init segments and manifests)",
            f.resent_bytes.clone(),
        );
        r.register(
            "h3live_relay_reconnects",
            "Connections to the upstream opened after a failure",
            f.reconnects.clone(),
        );
        r.register("h3live_relay_upload_errors", "Failed or refused uploads to the upstream", f.upload_errors.clone());
        r.register(
            "h3live_relay_live_edge_drops",
            "Jumps of the upstream to the live edge (too far behind)",
            f.live_edge_drops.clone(),
        );
        r.register(
            "h3live_relay_delay_seconds",
            "Time from a chunk's arrival from the encoder to its hand-off to the upstream's transport",
            f.delay.clone(),
        );
        RelayMetrics { registry: r, ingest_bytes, requests, broken_uploads, refused, lanes, families: f }
    }
}

impl RelayMetrics {
    /// The series of the upstream called `name`.
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        let l = UpstreamLabel { upstream: name.to_string() };
        let f = &self.families;
        UpstreamMetrics {
            up: f.up.get_or_create(&l).clone(),
            behind: f.behind.get_or_create(&l).clone(),
            sent_bytes: f.sent_bytes.get_or_create(&l).clone(),
            resent_bytes: f.resent_bytes.get_or_create(&l).clone(),
            reconnects: f.reconnects.get_or_create(&l).clone(),
            upload_errors: f.upload_errors.get_or_create(&l).clone(),
            live_edge_drops: f.live_edge_drops.get_or_create(&l).clone(),
            delay: f.delay.get_or_create(&l).clone(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
