//! TLS of a virtual host: the Secret that serves it and, when that Secret held a usable
//! certificate, the parsed key pair the SNI resolver hands to rustls.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use serde::{Serialize, Serializer};

/// A certificate chain and key, parsed once when the table is built.
#[derive(Clone)]
pub struct Certificate(pub Arc<CertifiedKey>);

impl PartialEq for Certificate {
    /// Same chain means same key: a certificate binds its public key.
    fn eq(&self, other: &Self) -> bool {
        self.0.cert == other.0.cert
    }
}

impl Eq for Certificate {}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({} certificates in chain)", self.0.cert.len())
    }
}

impl Serialize for Certificate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{} certificates in chain", self.0.cert.len()))
    }
}

/// TLS settings of one host pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostTls {
    /// `namespace/name` of the Secret named for this host.
    pub secret: String,
    /// The certificate, or `None` when the Secret is missing or unusable (the default
    /// certificate is served instead; plain-HTTP requests are still redirected).
    pub certificate: Option<Certificate>,
    /// When that certificate expires (its notAfter), in Unix seconds; `None` without one.
    pub not_after: Option<i64>,
}

/// Trust for HTTPS backends: the CA certificates of a Secret and the client configuration that
/// verifies backends against them (built once, with the table).
#[derive(Clone)]
pub struct BackendCa {
    /// `namespace/name` of the Secret holding `ca.crt`.
    pub secret: String,
    /// The CA certificates, for equality.
    pub certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// A hash of `certificates`: connections verified against one bundle are not reused under
    /// another.
    pub fingerprint: u64,
    /// Verifies the backend's certificate chain and that it names the Service's DNS name.
    pub client: Arc<rustls::ClientConfig>,
}

impl PartialEq for BackendCa {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret && self.certificates == other.certificates
    }
}

impl Eq for BackendCa {}

impl fmt::Debug for BackendCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendCa({}, {} certificates)", self.secret, self.certificates.len())
    }
}

impl Serialize for BackendCa {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.secret)
    }
}
