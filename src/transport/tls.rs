//! TLS configuration for SIP over TLS (rustls, aws-lc-rs provider).
//!
//! Guarantees: server configs never request a client certificate (Meta's client certificates
//! carry random host names and would fail validation); client configs verify the server
//! against the system roots or a configured CA file, send SNI, and offer **no ALPN** (Meta's
//! edge answers ALPN "sip" with alert 120).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or held no usable item.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// rustls refused the certificate/key or the protocol selection.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// No trust anchor could be loaded.
    #[error("no trusted root certificates: {0}")]
    NoRoots(String),
}

/// Where a client finds the certificates it trusts.
#[derive(Debug, Clone)]
pub enum Roots {
    /// The operating system's store (rustls-native-certs).
    System,
    /// A PEM file with one or more CA certificates (e.g. the sandbox's `ca.pem`).
    CaFile(PathBuf),
    /// PEM text with one or more CA certificates.
    CaPem(Vec<u8>),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn pem_error(path: &Path, reason: impl ToString) -> TlsConfigError {
    TlsConfigError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Read every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in file"));
    }
    Ok(certs)
}

/// Read the private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

/// A server config from a certificate chain and a key; no client certificate is requested,
/// no ALPN is selected.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

/// A server config from PEM files (chain: leaf first, then intermediates).
pub fn server_config_from_pem_files(
    chain: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    server_config(load_certs(chain)?, load_key(key)?)
}

/// The trust store for `roots`.
pub fn root_store(roots: &Roots) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    let certs = match roots {
        Roots::System => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                let why = loaded
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(TlsConfigError::NoRoots(why));
            }
            loaded.certs
        }
        Roots::CaFile(path) => load_certs(path)?,
        Roots::CaPem(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(Path::new("<pem>"), e))?,
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConfigError::NoRoots(
            "no parsable CA certificate".to_owned(),
        ));
    }
    Ok(store)
}

/// A client config that verifies servers against `roots`, sends SNI and offers no ALPN.
pub fn client_config(roots: &Roots) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth();
    config.alpn_protocols = Vec::new();
    config.enable_sni = true;
    Ok(Arc::new(config))
}

/// What is known about the peer of a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPeer {
    /// Server side: the SNI the client sent. Client side: the verified host name we asked for.
    pub server_name: Option<String>,
    /// The peer's certificate chain (empty on our server side: we never ask for one).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// Negotiated ALPN protocol (always `None` with our configs).
    pub alpn: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_offer_no_alpn_and_no_client_auth() {
        let ck = rcgen::generate_simple_self_signed(vec!["gw.test".to_owned()]).unwrap();
        let der = ck.cert.der().clone();
        let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let server = server_config(vec![der], key).unwrap();
        assert!(server.alpn_protocols.is_empty());
        let client = client_config(&Roots::CaPem(ck.cert.pem().into_bytes())).unwrap();
        assert!(client.alpn_protocols.is_empty());
        assert!(client.enable_sni);
        assert!(!client.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        std::fs::write(&p, "not pem").unwrap();
        assert!(matches!(load_certs(&p), Err(TlsConfigError::Pem { .. })));
        assert!(matches!(load_key(&p), Err(TlsConfigError::Pem { .. })));
        assert!(matches!(
            client_config(&Roots::CaFile(p)),
            Err(TlsConfigError::Pem { .. })
        ));
    }
}
