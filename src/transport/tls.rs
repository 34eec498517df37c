//! rustls configurations for the TLS listeners and QUIC, all on the `ring`
//! provider (one provider only: with two, rustls cannot pick one and panics).
//! `SSLKEYLOGFILE` is honoured everywhere, for Wireshark.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ServerConfig;

use crate::cert::TlsKeys;

/// The crypto provider used by every TLS and QUIC endpoint.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server config offering `alpn` (in preference order).
pub fn server_config(keys: &TlsKeys, alpn: &[&[u8]], tls13_only: bool) -> Result<ServerConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls13_only { &[&rustls::version::TLS13] } else { rustls::DEFAULT_VERSIONS };
    server_config_with(provider(), versions, keys, alpn)
}

/// [`server_config`] with a given provider (e.g. fewer cipher suites) and
/// protocol versions: the one place that sets certificate, ALPN and key log.
pub fn server_config_with(
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    keys: &TlsKeys,
    alpn: &[&[u8]],
) -> Result<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(keys.chain.clone(), keys.key.clone_key())
        .context("certificate and key do not match or are unsupported")?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

/// A TCP TLS acceptor offering `alpn`.
pub fn acceptor(keys: &TlsKeys, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(keys, alpn, false)?)))
}

/// A QUIC server config (TLS 1.3, ALPN `h3`).
pub fn quic_server_config(keys: &TlsKeys, alpn: &[&[u8]]) -> Result<quinn::ServerConfig> {
    let mut tls = server_config(keys, alpn, true)?;
    tls.max_early_data_size = u32::MAX;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).context("QUIC TLS config")?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}
