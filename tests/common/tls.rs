//! TLS on the test side: certificates made with rcgen, manifests that carry them, and a client
//! that records which certificate the proxy presented.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate: its PEM, its key's PEM, and its DER.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

pub fn cert(names: &[&str]) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
}

/// A `kubernetes.io/tls` Secret manifest.
pub fn secret_yaml(name: &str, cert: &TestCert) -> String {
    let (crt, key) =
        (serde_json::to_string(&cert.cert_pem).unwrap(), serde_json::to_string(&cert.key_pem).unwrap());
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {crt}\n  tls.key: {key}\n"
    )
}

/// A TLS client offering `alpn`.
pub fn connector(alpn: &[&[u8]]) -> TlsConnector {
    // Accepts any certificate: the tests compare what was presented instead.
    TlsConnector::from(Arc::new(hawser::proxy::unverified_client_config(alpn)))
}

/// A TLS connection to `addr` naming `sni` (an IP literal sends no SNI).
pub async fn tls_connect(addr: SocketAddr, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    connector(alpn).connect(ServerName::try_from(sni.to_owned()).unwrap(), stream).await.unwrap()
}

/// The leaf certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}
