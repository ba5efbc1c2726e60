//! TLS on the HTTPS listener: an SNI resolver that reads the live routing table on every
//! handshake (so a rotated certificate is presented by the next handshake, with no restart and
//! without touching established connections), a self-signed fallback generated at start for
//! unknown or missing SNI (as ingress-nginx does), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::handle::TableHandle;
use crate::model::normalize_host;

/// Name on the generated fallback certificate.
const FALLBACK_NAME: &str = "hawser.invalid";

/// Why the HTTPS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("generating the fallback certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Config(#[from] rustls::Error),
}

#[derive(Debug)]
struct SniResolver {
    table: Arc<TableHandle>,
    fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let chosen = hello
            .server_name()
            .and_then(|name| table.certificate(&normalize_host(name)).map(|c| c.0.clone()));
        Some(chosen.unwrap_or_else(|| self.fallback.clone()))
    }
}

/// The acceptor of the HTTPS listener, serving certificates from `table`.
pub fn acceptor(table: Arc<TableHandle>) -> Result<TlsAcceptor, TlsSetupError> {
    let resolver = SniResolver { table, fallback: self_signed()? };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn self_signed() -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let generated = rcgen::generate_simple_self_signed(vec![FALLBACK_NAME.to_owned()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()));
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(Arc::new(CertifiedKey::new(vec![generated.cert.der().clone()], signing_key)))
}
