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
}
