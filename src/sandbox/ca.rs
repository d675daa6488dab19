//! The sandbox's certificate authority: one CA (persisted under `var/sandbox/`, reused across
//! runs) that signs the edge certificate for `wa.meta.vc` and, for gateway profiles with
//! `tls.mode = "sandbox"`, the gateway's certificate for its public host name.
//!
//! Guarantees: `ca.pem` (the CA certificate clients trust) and `ca.key` (mode 0600) are written
//! together and read back on the next run, so a gateway started earlier keeps trusting the
//! edge; every issued leaf names exactly the requested host (SAN) and is signed by that CA.
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Default folder of the CA files (`var/sandbox/ca.pem`, `var/sandbox/ca.key`).
pub const DEFAULT_DIR: &str = "var/sandbox";
/// The host name the edge certificate is issued for (Meta's edge).
pub const EDGE_HOST: &str = "wa.meta.vc";
/// The fixture gateway host (the shipped profile's `sip.public_host`).
pub const GATEWAY_HOST: &str = "gateway.whatsip.test";

const CA_NAME: &str = "whatsip sandbox CA";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("sandbox CA file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox CA: {0}")]
    Cert(#[from] rcgen::Error),
}

/// A loaded (or freshly created) sandbox CA.
pub struct SandboxCa {
    dir: PathBuf,
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for SandboxCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A certificate chain (leaf then CA) and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "whatsip sandbox");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SandboxCa {
    /// Loads `dir/ca.pem` + `dir/ca.key`, or creates both when either is missing.
    pub fn load_or_create(dir: &Path) -> Result<SandboxCa, CaError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.is_file() && key_path.is_file() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            return Ok(SandboxCa {
                dir: dir.to_path_buf(),
                cert_pem,
                key,
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        let cert_pem = cert.pem();
        write_private(&key_path, &key.serialize_pem())?;
        std::fs::write(&cert_path, &cert_pem).map_err(io(&cert_path))?;
        tracing::info!(path = %cert_path.display(), "sandbox CA created");
        Ok(SandboxCa {
            dir: dir.to_path_buf(),
            cert_pem,
            key,
        })
    }

    /// Path of the CA certificate clients should trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server certificate for `host` (SAN), signed by this CA.
    pub fn issue(&self, host: &str) -> Result<IssuedCert, CaError> {
        let mut p = CertificateParams::new(vec![host.to_string()])?;
        p.distinguished_name.push(DnType::CommonName, host);
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf_key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params()?, &self.key);
        let leaf = p.signed_by(&leaf_key, &issuer)?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", leaf.pem(), self.cert_pem),
            key_pem: leaf_key.serialize_pem(),
        })
    }

    /// The edge certificate (`wa.meta.vc`).
    pub fn issue_edge(&self) -> Result<IssuedCert, CaError> {
        self.issue(EDGE_HOST)
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))
}

/// For gateway profiles with `tls.mode = "sandbox"`: the gateway's certificate for `host`,
/// issued by the sandbox CA persisted under `var/sandbox/` (created when missing). Returns
/// `(chain_pem, key_pem)`; the chain is the leaf then the CA.
pub fn issue_gateway_cert(host: &str) -> Result<(String, String), CaError> {
    issue_gateway_cert_in(Path::new(DEFAULT_DIR), host)
}

/// [`issue_gateway_cert`] with the CA folder given.
pub fn issue_gateway_cert_in(dir: &Path, host: &str) -> Result<(String, String), CaError> {
    let c = SandboxCa::load_or_create(dir)?.issue(host)?;
    Ok((c.chain_pem, c.key_pem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::{Roots, client_config, server_config};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

    fn verify(ca_pem: &str, chain_pem: &str, key_pem: &str, name: &str) -> bool {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let server = server_config(chain, key).unwrap();
        let client = client_config(&Roots::CaPem(ca_pem.as_bytes().to_vec())).unwrap();
        let mut c =
            rustls::ClientConnection::new(client, ServerName::try_from(name.to_string()).unwrap())
                .unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                s.read_tls(&mut &buf[..]).unwrap();
                if s.process_new_packets().is_err() {
                    return false;
                }
            }
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                c.read_tls(&mut &buf[..]).unwrap();
                if c.process_new_packets().is_err() {
                    return false;
                }
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return true;
            }
        }
        false
    }

    #[test]
    fn issued_certs_verify_for_their_name_only_and_the_ca_persists() {
        let dir = tempfile::tempdir().unwrap();
        let ca = SandboxCa::load_or_create(dir.path()).unwrap();
        let edge = ca.issue_edge().unwrap();
        assert!(verify(
            ca.ca_pem(),
            &edge.chain_pem,
            &edge.key_pem,
            "wa.meta.vc"
        ));
        assert!(!verify(
            ca.ca_pem(),
            &edge.chain_pem,
            &edge.key_pem,
            "other.example"
        ));
        // a second load reuses the same CA: a cert issued now verifies against the first pem
        let (chain, key) = issue_gateway_cert_in(dir.path(), GATEWAY_HOST).unwrap();
        assert!(verify(ca.ca_pem(), &chain, &key, GATEWAY_HOST));
        let other = tempfile::tempdir().unwrap();
        let stranger = SandboxCa::load_or_create(other.path()).unwrap();
        assert!(!verify(stranger.ca_pem(), &chain, &key, GATEWAY_HOST));
    }
}
