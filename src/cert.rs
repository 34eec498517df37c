//! Self-signed certificates for development origins, and the SPKI hash that
//! Chromium needs to use HTTP/3 with them (docs/architecture.md, "Chromium and
//! HTTP/3 with a self-signed certificate").

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Names always put in a generated certificate: Chromium resolves
/// `localhost` to `::1` for QUIC, and users type all three.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Paths of a PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct CertPaths {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl CertPaths {
    /// `cert.pem` and `key.pem` in `dir`.
    pub fn in_dir(dir: &Path) -> CertPaths {
        CertPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem") }
    }
}

/// A loaded certificate chain and key.
#[derive(Debug)]
pub struct TlsKeys {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Base64 SHA-256 of the leaf's SubjectPublicKeyInfo.
    pub spki_sha256: String,
}

impl Clone for TlsKeys {
    fn clone(&self) -> Self {
        TlsKeys { chain: self.chain.clone(), key: self.key.clone_key(), spki_sha256: self.spki_sha256.clone() }
    }
}

/// Generate an ECDSA P-256 self-signed certificate for the default names
/// plus `hosts`, valid for one year from yesterday. Returns (cert PEM, key PEM).
pub fn generate(hosts: &[String]) -> Result<(String, String)> {
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating key")?;
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "h3live development origin");
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    params.not_before = (now - day).into();
    params.not_after = (now + 365 * day).into();
    // Apple platforms (Safari, AVPlayer) refuse a TLS server certificate
    // without the serverAuth extended key usage, even once it is trusted.
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).context("signing certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Write a freshly generated certificate and key to `paths`.
pub fn write_new(paths: &CertPaths, hosts: &[String]) -> Result<()> {
    let (cert, key) = generate(hosts)?;
    if let Some(dir) = paths.cert.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&paths.cert, cert).with_context(|| format!("writing {}", paths.cert.display()))?;
    write_private(&paths.key, key.as_bytes()).with_context(|| format!("writing {}", paths.key.display()))?;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

/// Load a certificate chain and key from PEM files.
pub fn load(paths: &CertPaths) -> Result<TlsKeys> {
    let chain = CertificateDer::pem_file_iter(&paths.cert)
        .with_context(|| format!("reading {}", paths.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", paths.cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", paths.cert.display());
    let key_pem = std::fs::read_to_string(&paths.key).with_context(|| format!("reading {}", paths.key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .with_context(|| format!("parsing {}", paths.key.display()))?;
    let spki_sha256 = spki_hash(&key_pem).with_context(|| format!("public key of {}", paths.key.display()))?;
    Ok(TlsKeys { chain, key, spki_sha256 })
}

/// Load the certificate, generating it first when both files are missing.
pub fn load_or_generate(paths: &CertPaths, hosts: &[String]) -> Result<TlsKeys> {
    if !paths.cert.exists() && !paths.key.exists() {
        write_new(paths, hosts)?;
        tracing::info!(cert = %paths.cert.display(), key = %paths.key.display(), "generated a self-signed certificate");
    }
    load(paths)
}

/// Base64 SHA-256 of the SubjectPublicKeyInfo of a PEM private key: the value
/// for Chromium's `--ignore-certificate-errors-spki-list`.
pub fn spki_hash(key_pem: &str) -> Result<String> {
    let key = rcgen::KeyPair::from_pem(key_pem).context("unsupported private key")?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// Longest validity Chromium accepts for a certificate pinned with
/// WebTransport's `serverCertificateHashes` (14 days, ECDSA only).
pub const WEBTRANSPORT_MAX_VALIDITY: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// A certificate for a WebTransport endpoint that browsers accept by its
/// hash alone (`serverCertificateHashes`): ECDSA P-256, valid from an hour
/// ago for 13 days in all (under [`WEBTRANSPORT_MAX_VALIDITY`]), for the
/// default names plus `hosts`. Returns the keys and the lower-case hex
/// SHA-256 of the certificate (DER), the value to pin.
pub fn webtransport_cert(hosts: &[String]) -> Result<(TlsKeys, String)> {
    let (cert, key, _) = generate_webtransport(hosts)?;
    keys_from_pem(&cert, &key)
}

/// [`webtransport_cert`] kept in `dir` (`moq-cert.pem`, `moq-key.pem`, and
/// `moq-cert.not-after` with its expiry in Unix seconds), so a restarted
/// origin keeps the hash its clients pinned. A new one replaces it when it
/// has less than a day left.
pub fn load_or_generate_webtransport(dir: &Path, hosts: &[String]) -> Result<(TlsKeys, String)> {
    let paths = CertPaths { cert: dir.join("moq-cert.pem"), key: dir.join("moq-key.pem") };
    let stamp = dir.join("moq-cert.not-after");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let kept = std::fs::read_to_string(&stamp).ok().and_then(|s| s.trim().parse::<u64>().ok());
    if kept.is_some_and(|t| t > now + 86_400) {
        if let (Ok(cert), Ok(key)) = (std::fs::read_to_string(&paths.cert), std::fs::read_to_string(&paths.key)) {
            if let Ok(k) = keys_from_pem(&cert, &key) {
                return Ok(k);
            }
        }
    }
    let (cert, key, not_after) = generate_webtransport(hosts)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&paths.cert, &cert).with_context(|| format!("writing {}", paths.cert.display()))?;
    write_private(&paths.key, key.as_bytes()).with_context(|| format!("writing {}", paths.key.display()))?;
    std::fs::write(&stamp, format!("{not_after}\n")).with_context(|| format!("writing {}", stamp.display()))?;
    keys_from_pem(&cert, &key)
}

/// A fresh WebTransport certificate: (cert PEM, key PEM, expiry in Unix seconds).
fn generate_webtransport(hosts: &[String]) -> Result<(String, String, u64)> {
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    names.extend(hosts.iter().filter(|h| !DEFAULT_NAMES.contains(&h.as_str())).cloned());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating key")?;
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "h3live MoQ endpoint");
    let hour = std::time::Duration::from_secs(3600);
    let start = std::time::SystemTime::now() - hour;
    let end = start + WEBTRANSPORT_MAX_VALIDITY - 24 * hour;
    params.not_before = start.into();
    params.not_after = end.into();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).context("signing certificate")?;
    let not_after = end.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// Keys and hex SHA-256 (of the leaf's DER) from PEM text.
fn keys_from_pem(cert_pem: &str, key_pem: &str) -> Result<(TlsKeys, String)> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let leaf = chain.first().context("no certificate")?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let spki_sha256 = spki_hash(key_pem)?;
    Ok((TlsKeys { chain, key, spki_sha256 }, hex))
}

/// The Chromium command line that makes Chromium use HTTP/3 for `host:port`
/// with this certificate.
pub fn chromium_command(spki: &str, host: &str, port: u16, url: &str) -> String {
    format!(
        "chromium --user-data-dir=$(mktemp -d) --origin-to-force-quic-on={host}:{port} \
         --ignore-certificate-errors-spki-list={spki} '{url}'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cert_loads_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::in_dir(dir.path());
        write_new(&paths, &["example.test".into()]).unwrap();
        let keys = load(&paths).unwrap();
        assert_eq!(keys.chain.len(), 1);
        // 32 bytes of SHA-256 in base64 are 44 characters.
        assert_eq!(keys.spki_sha256.len(), 44);
        assert_eq!(keys.spki_sha256, load(&paths).unwrap().spki_sha256);
    }

    #[test]
    fn generated_cert_has_server_auth_usage_for_apple_clients() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths::in_dir(dir.path());
        write_new(&paths, &[]).unwrap();
        let der = load(&paths).unwrap().chain[0].to_vec();
        // OID 1.3.6.1.5.5.7.3.1 (id-kp-serverAuth), DER encoded.
        let server_auth = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
        assert!(der.windows(server_auth.len()).any(|w| w == server_auth));
    }
}
