//! TLS to backends (`backend-protocol: HTTPS`). With a CA Secret, the backend's chain is
//! verified against it and must name the Service's DNS name. Without one — ingress-nginx's
//! default, `proxy-ssl-verify: off` — the certificate is not verified (cluster-internal traffic
//! to a Pod IP, which a certificate rarely names), but the handshake signatures are, so the
//! session is still bound to the presented key. The Service's DNS name is sent as SNI; ALPN
//! offers only `http/1.1`.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::model::BackendCa;

/// Opens TLS sessions to backends.
#[derive(Clone)]
pub struct BackendTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendTls")
    }
}

impl Default for BackendTls {
    fn default() -> Self {
        Self { connector: TlsConnector::from(Arc::new(unverified_client_config(&[b"http/1.1"]))) }
    }
}

/// A client configuration that accepts any server certificate but still checks the handshake
/// signatures against it: what HTTPS backends get without a CA Secret.
pub fn unverified_client_config(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
    let mut config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth(),
        // The ring provider supports the safe default versions; this is never reached.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

impl BackendTls {
    /// TLS over `stream` to `addr`, naming `server_name` (else the address) in SNI.
    pub async fn connect(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        server_name: Option<&str>,
        ca: Option<&BackendCa>,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = server_name
            .and_then(|name| ServerName::try_from(name.to_owned()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        match ca {
            Some(ca) => TlsConnector::from(ca.client.clone()).connect(name, stream).await,
            None => self.connector.connect(name, stream).await,
        }
    }
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
