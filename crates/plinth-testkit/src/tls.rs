//! A test PKI made on the spot: a CA, server certificates it signs (for
//! loopback names and addresses, or expired), and the TLS configuration
//! the loopback servers of this crate use.
//!
//! Certificates are generated per test run (rcgen, ECDSA P-256); nothing
//! is committed and nothing here is trusted by the machine, so a test
//! decides exactly where the CA is trusted: an `SSL_CERT_FILE`, a settings
//! file, or nowhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key.
#[derive(Clone)]
pub struct ServerCert {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    key_der: Vec<u8>,
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path` and returns it.
    pub fn write_pem(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.pem())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_owned()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        self.sign(names, |_| {})
    }

    /// A server certificate that was valid in 2000 only.
    pub fn expired_server_cert(&self, names: &[&str]) -> ServerCert {
        self.sign(names, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn sign(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> ServerCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "plinth test server");
        edit(&mut params);
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

impl ServerCert {
    /// Writes `name.crt` and `name.key` (PEM) into `dir`, for servers that
    /// read files (`docker-registry`); returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        for (path, text) in [(&cert, &self.cert_pem), (&key, &self.key_pem)] {
            std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        (cert, key)
    }

    /// A rustls server configuration presenting this certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        install_provider();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .expect("a server configuration for the test certificate");
        Arc::new(config)
    }
}

/// The process-wide rustls provider, for the server side (a client built
/// by ureq brings its own).
fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
