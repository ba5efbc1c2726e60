//! TLS on the test side: certificates made with rcgen, manifests that carry them, a client
//! that records which certificate the proxy presented, and an HTTPS backend.

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

/// A CA, and a certificate for `names` that it signed.
pub fn ca_and_leaf(names: &[&str]) -> (String, TestCert) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    (ca_pem, TestCert { cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem(), der: leaf.der().clone() })
}

/// A backend that speaks HTTPS with `backend_cert` and answers with the SNI name it was asked for.
pub async fn tls_backend(backend_cert: TestCert) -> super::Server {
    let key = rustls::pki_types::PrivateKeyDer::try_from(
        rcgen::KeyPair::from_pem(&backend_cert.key_pem).unwrap().serialize_der(),
    )
    .unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![backend_cert.der.clone()], key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    super::raw_backend(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let sni = tls.get_ref().1.server_name().unwrap_or("(none)").to_owned();
            let service = hyper::service::service_fn(move |_req| {
                let sni = sni.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from(sni),
                    )))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        }
    })
    .await
}
