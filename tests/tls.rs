//! TLS end to end: certificates from Secrets chosen by SNI (exact, wildcard, default), wss and
//! HTTP/2 over ALPN, HTTP→HTTPS redirects, certificate rotation under 100 open tunnels, the
//! PROXY protocol, and TLS to backends.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::tls::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::model::Policy;
use hawser::proxy::ProxyConfig;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An Ingress for `host` → Service `echo`, with TLS from `secret` when given.
fn tls_ingress(name: &str, host: &str, secret: Option<&str>, annotations: &str) -> String {
    let tls =
        secret.map(|s| format!("  tls: [{{hosts: [\"{host}\"], secretName: {s}}}]\n")).unwrap_or_default();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  ingressClassName: hawser\n{tls}  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{name: http}}}}}}}}\n"
    )
}

fn manifests(parts: &[String]) -> String {
    parts.join("---\n")
}

#[tokio::test]
async fn sni_picks_exact_wildcard_and_default_certificates() {
    let echo = echo("e").await;
    let (a, w) = (cert(&["a.test"]), cert(&["*.w.test"]));
    let yaml = manifests(&[
        service_yaml("echo", echo.addr),
        secret_yaml("a-tls", &a),
        secret_yaml("w-tls", &w),
        tls_ingress("a", "a.test", Some("a-tls"), ""),
        tls_ingress("w", "*.w.test", Some("w-tls"), ""),
    ]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    assert_eq!(presented(&tls_connect(proxy.tls_addr, "a.test", &[]).await), a.der);
    assert_eq!(presented(&tls_connect(proxy.tls_addr, "x.w.test", &[]).await), w.der);
    for unknown in ["other.test", "w.test", "127.0.0.1"] {
        let fallback = presented(&tls_connect(proxy.tls_addr, unknown, &[]).await);
        assert!(fallback != a.der && fallback != w.der, "{unknown} got a host's certificate");
        let (_, parsed) = x509_parser::parse_x509_certificate(&fallback).unwrap();
        let names = format!("{:?}", parsed.subject_alternative_name().unwrap().unwrap().value.general_names);
        assert!(names.contains("hawser.invalid"), "{unknown}: {names}");
    }
}

/// An echo behind a.test with TLS, and a wss connection to it through the proxy.
async fn wss_to_echo() -> (Server, TestProxy, tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>) {
    let echo = echo("e").await;
    let a = cert(&["a.test"]);
    let yaml = manifests(&[
        service_yaml("echo", echo.addr),
        secret_yaml("a-tls", &a),
        tls_ingress("a", "a.test", Some("a-tls"), ""),
    ]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    let stream = tls_connect(proxy.tls_addr, "a.test", &[b"http/1.1"]).await;
    let request = "wss://a.test/chat".into_client_request().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    (echo, proxy, ws)
}

#[tokio::test]
async fn wss_echo_and_http2_over_alpn() {
    let (_echo, proxy, mut ws) = wss_to_echo().await;
    ws.send(Message::text("secure hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("secure hello"));
    // Larger than TLS records and socket buffers: the tunnel must flush what TLS holds back.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    // The close handshake crosses the tunnel both ways, then TLS and TCP close cleanly.
    ws.close(None).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
    assert!(ws.next().await.is_none());

    let stream = tls_connect(proxy.tls_addr, "a.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::get("https://a.test/h2").body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    assert_eq!((response.status(), response.version()), (StatusCode::OK, http::Version::HTTP_2));
    let seen = seen(&response.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.host.as_deref(), Some("a.test"));
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_when_the_host_has_tls() {
    let echo = echo("e").await;
    let a = cert(&["a.test"]);
    let yaml = manifests(&[
        service_yaml("echo", echo.addr),
        secret_yaml("a-tls", &a),
        tls_ingress("a", "a.test", Some("a-tls"), ""),
        tls_ingress("b", "b.test", Some("a-tls"), "nginx.ingress.kubernetes.io/ssl-redirect: \"false\""),
        tls_ingress("c", "c.test", None, ""),
        tls_ingress("d", "d.test", None, "nginx.ingress.kubernetes.io/force-ssl-redirect: \"true\""),
    ]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    let (status, headers, _) = get(proxy.addr, "a.test:8080", "/path?q=1").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "https://a.test/path?q=1");
    let upgrade = ws_refused(proxy.addr, "a.test", "/ws", &[]).await;
    assert_eq!(upgrade.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(upgrade.headers()["location"], "https://a.test/ws");
    assert_eq!(get(proxy.addr, "b.test", "/").await.0, StatusCode::OK, "ssl-redirect: false");
    assert_eq!(get(proxy.addr, "c.test", "/").await.0, StatusCode::OK, "no TLS, no redirect");
    assert_eq!(get(proxy.addr, "d.test", "/").await.0, StatusCode::PERMANENT_REDIRECT, "force-ssl-redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_keeps_a_hundred_wss_tunnels_open() {
    let echo = echo("e").await;
    let (old, new) = (cert(&["a.test"]), cert(&["a.test"]));
    let table = |c: &TestCert| {
        build_table(&manifests(&[
            service_yaml("echo", echo.addr),
            secret_yaml("a-tls", c),
            tls_ingress("a", "a.test", Some("a-tls"), ""),
        ]))
    };
    let proxy = TestProxy::start(table(&old)).await;
    let mut tunnels = Vec::new();
    for _ in 0..100 {
        let stream = tls_connect(proxy.tls_addr, "a.test", &[]).await;
        assert_eq!(presented(&stream), old.der);
        let (ws, _) =
            tokio_tungstenite::client_async("wss://a.test/ws".into_client_request().unwrap(), stream)
                .await
                .unwrap();
        tunnels.push(ws);
    }
    assert_eq!(proxy.publish(table(&new)), 2);
    assert_eq!(
        presented(&tls_connect(proxy.tls_addr, "a.test", &[]).await),
        new.der,
        "the next handshake uses the new certificate"
    );
    for (i, ws) in tunnels.iter_mut().enumerate() {
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("{i}")), "tunnel {i}");
    }
    assert_eq!(proxy.proxy.open_tunnels(), 100);
}

#[tokio::test]
async fn a_malformed_secret_only_affects_its_own_host() {
    let echo = echo("e").await;
    let a = cert(&["a.test"]);
    let broken = "apiVersion: v1\nkind: Secret\nmetadata: {name: broken}\nstringData: {tls.crt: garbage, tls.key: garbage}\n".to_owned();
    let yaml = manifests(&[
        service_yaml("echo", echo.addr),
        secret_yaml("a-tls", &a),
        broken,
        tls_ingress("a", "a.test", Some("a-tls"), ""),
        tls_ingress("b", "b.test", Some("broken"), ""),
    ]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    assert_eq!(presented(&tls_connect(proxy.tls_addr, "a.test", &[]).await), a.der);
    let b = tls_connect(proxy.tls_addr, "b.test", &[b"http/1.1"]).await;
    assert_ne!(presented(&b), a.der);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(b)).await.unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::get("/").header("host", "b.test").body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "b.test still serves, with the default certificate");
}

fn proxy_v2_header(source: std::net::SocketAddr) -> Vec<u8> {
    let addresses =
        ppp::v2::Addresses::from((source, "10.0.0.1:80".parse::<std::net::SocketAddr>().unwrap()));
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap()
}

/// Sends `prefix` and a GET for `a.test`; the echo's answer, or `None` if the proxy refused.
async fn get_with_prefix(addr: std::net::SocketAddr, prefix: &[u8]) -> Option<hawser::echo::SeenRequest> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let body = text.split_once("\r\n\r\n")?.1;
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
    serde_json::from_str(json).ok()
}

#[tokio::test]
async fn proxy_protocol_sets_the_client_address() {
    let echo = echo("e").await;
    let policy = Policy { max_connections_per_client: Some(1), ..Policy::default() };
    let config = ProxyConfig { proxy_protocol: Some(Duration::from_secs(1)), ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], policy), config).await;

    let v1 = get_with_prefix(proxy.addr, b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n").await.unwrap();
    assert_eq!(
        (v1.headers["x-forwarded-for"].as_str(), v1.headers["x-real-ip"].as_str()),
        ("203.0.113.7", "203.0.113.7")
    );
    let v2 =
        get_with_prefix(proxy.addr, &proxy_v2_header("198.51.100.9:40000".parse().unwrap())).await.unwrap();
    assert_eq!(v2.headers["x-forwarded-for"], "198.51.100.9");
    let v6 = get_with_prefix(proxy.addr, b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 80\r\n").await.unwrap();
    assert_eq!(v6.headers["x-forwarded-for"], "2001:db8::1");
    let health_check = get_with_prefix(proxy.addr, b"PROXY UNKNOWN\r\n").await.unwrap();
    assert_eq!(health_check.headers["x-forwarded-for"], "127.0.0.1");

    // Garbage instead of a header, or no header at all: refused, and nobody else is affected.
    assert!(get_with_prefix(proxy.addr, b"GARBAGE\r\n").await.is_none());
    assert!(get_with_prefix(proxy.addr, b"").await.is_none());
    assert!(get_with_prefix(proxy.addr, b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n").await.is_none());
    assert!(get_with_prefix(proxy.addr, b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n").await.is_some());

    // Per-client budgets count the address from the header.
    let handshake = |source: &'static str| {
        let addr = proxy.addr;
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(format!("PROXY TCP4 {source} 10.0.0.1 40000 80\r\n").as_bytes()).await.unwrap();
            let request = "ws://a.test/ws".into_client_request().unwrap();
            tokio_tungstenite::client_async(request, stream).await
        }
    };
    let _first = handshake("203.0.113.7").await.unwrap();
    match handshake("203.0.113.7").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("second tunnel from the same client: {:?}", other.map(|_| ())),
    }
    assert!(handshake("203.0.113.8").await.is_ok(), "another client is not limited");
}

#[tokio::test]
async fn proxy_protocol_comes_before_tls() {
    let echo = echo("e").await;
    let config = ProxyConfig { proxy_protocol: Some(Duration::from_secs(1)), ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    let mut stream = TcpStream::connect(proxy.tls_addr).await.unwrap();
    stream.write_all(&proxy_v2_header("192.0.2.44:1234".parse().unwrap())).await.unwrap();
    let tls = connector(&[b"http/1.1"])
        .connect(rustls::pki_types::ServerName::try_from("a.test").unwrap(), stream)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::get("/").header("host", "a.test").body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let seen = seen(&response.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(
        (seen.headers["x-forwarded-for"].as_str(), seen.headers["x-forwarded-proto"].as_str()),
        ("192.0.2.44", "https")
    );
}

#[tokio::test]
async fn https_backends_get_tls_with_the_service_name() {
    let backend = tls_backend(cert(&["ignored.example"])).await;
    let yaml = manifests(&[
        service_yaml("echo", backend.addr),
        tls_ingress("a", "a.test", None, "nginx.ingress.kubernetes.io/backend-protocol: HTTPS"),
    ]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    for _ in 0..3 {
        let (status, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"echo.default.svc"[..]));
    }
}

fn ca_secret(name: &str, ca_pem: &str) -> String {
    let pem = serde_json::to_string(ca_pem).unwrap();
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  ca.crt: {pem}\n")
}

/// Two Services on one HTTPS endpoint: each route's keep-alive connections carry its own
/// server name, never one opened for the other.
#[tokio::test]
async fn pooled_https_connections_stay_with_their_server_name() {
    let backend = tls_backend(cert(&["ignored.example"])).await;
    let ingress = |name: &str, host: &str, service: &str| {
        tls_ingress(name, host, None, "hawser.dev/backend-protocol: HTTPS")
            .replace("service: {name: echo,", &format!("service: {{name: {service},"))
    };
    let yaml = manifests(&[
        service_yaml("one", backend.addr),
        service_yaml("two", backend.addr),
        ingress("one", "one.test", "one"),
        ingress("two", "two.test", "two"),
    ]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    for _ in 0..3 {
        for (host, sni) in [("one.test", "one.default.svc"), ("two.test", "two.default.svc")] {
            let (status, _, body) = get(proxy.addr, host, "/").await;
            assert_eq!((status, String::from_utf8_lossy(&body)), (StatusCode::OK, sni.into()), "{host}");
        }
    }
}

#[tokio::test]
async fn https_backends_are_verified_against_a_ca_secret() {
    let (ca, signed) = ca_and_leaf(&["echo.default.svc"]);
    let (_, signed_by_another_ca) = ca_and_leaf(&["echo.default.svc"]);
    let (_, wrong_name) = ca_and_leaf(&["elsewhere.default.svc"]);
    let hawser = "hawser.dev/backend-protocol: HTTPS, hawser.dev/backend-ca-secret: backend-ca";
    let nginx = "nginx.ingress.kubernetes.io/backend-protocol: HTTPS, nginx.ingress.kubernetes.io/proxy-ssl-verify: \"on\", \
                 nginx.ingress.kubernetes.io/proxy-ssl-secret: default/backend-ca";
    let cases = [
        ("signed by the CA", signed, hawser, StatusCode::OK),
        ("another CA", signed_by_another_ca, hawser, StatusCode::BAD_GATEWAY),
        ("wrong name", wrong_name, nginx, StatusCode::BAD_GATEWAY),
        ("self-signed", cert(&["echo.default.svc"]), nginx, StatusCode::BAD_GATEWAY),
    ];
    for (case, backend_cert, annotations, want) in cases {
        let backend = tls_backend(backend_cert).await;
        let yaml = manifests(&[
            service_yaml("echo", backend.addr),
            ca_secret("backend-ca", &ca),
            tls_ingress("a", "a.test", None, annotations),
        ]);
        let proxy = TestProxy::start(build_table(&yaml)).await;
        assert_eq!(get(proxy.addr, "a.test", "/").await.0, want, "{case}");
    }
    // A CA Secret that does not exist refuses the Ingress (503) rather than skipping verification.
    let backend = tls_backend(cert(&["echo.default.svc"])).await;
    let yaml = manifests(&[service_yaml("echo", backend.addr), tls_ingress("a", "a.test", None, hawser)]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    assert_eq!(get(proxy.addr, "a.test", "/").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

/// A Gateway and an HTTPRoute for `a.test` to the Service `echo`, and a BackendTLSPolicy for
/// that Service verifying `hostname` against the CA in the ConfigMap `backend-ca`.
fn gateway_to_echo(hostname: &str, ca: Option<&str>) -> String {
    let ca_map = ca.map(|pem| {
        let pem = serde_json::to_string(pem).unwrap();
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: backend-ca}}\ndata:\n  ca.crt: {pem}\n"
        )
    });
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: hawser}}\nspec: {{controllerName: hawser.dev/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec: {{gatewayClassName: hawser, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec: {{parentRefs: [{{name: gw}}], hostnames: [a.test], rules: [{{backendRefs: [{{name: echo, port: 80}}]}}]}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: echo-tls}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: echo, sectionName: http}}]\n\
         \x20 validation: {{hostname: {hostname}, caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: backend-ca}}]}}\n{}",
        ca_map.unwrap_or_default()
    )
}

#[tokio::test]
async fn a_backend_tls_policy_verifies_gateway_backends() {
    let (ca, signed) = ca_and_leaf(&["backend.internal"]);
    let backend = tls_backend(signed).await;
    let cases = [
        ("the policy's hostname and CA", "backend.internal", Some(ca.as_str()), StatusCode::OK),
        (
            "a name the certificate does not have",
            "other.internal",
            Some(ca.as_str()),
            StatusCode::BAD_GATEWAY,
        ),
        ("no CA bundle: not sent unverified", "backend.internal", None, StatusCode::INTERNAL_SERVER_ERROR),
    ];
    for (case, hostname, ca, want) in cases {
        let yaml = manifests(&[service_yaml("echo", backend.addr), gateway_to_echo(hostname, ca)]);
        let proxy = TestProxy::start(build_table(&yaml)).await;
        let (status, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!(status, want, "{case}");
        if status == StatusCode::OK {
            assert_eq!(&body[..], b"backend.internal", "the policy's hostname is the SNI");
        }
    }
    // A rule whose other backend needs no TLS: one protocol per rule, so neither is sent
    // unverified or mistaken for the other.
    let mixed = gateway_to_echo("backend.internal", Some(&ca)).replace(
        "backendRefs: [{name: echo, port: 80}]",
        "backendRefs: [{name: echo, port: 80}, {name: plain, port: 80}]",
    );
    let yaml = manifests(&[service_yaml("echo", backend.addr), service_yaml("plain", backend.addr), mixed]);
    let proxy = TestProxy::start(build_table(&yaml)).await;
    assert_eq!(get(proxy.addr, "a.test", "/").await.0, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_wss_client_ending_with_a_bare_fin_closed_normally() {
    let (_echo, proxy, mut ws) = wss_to_echo().await;
    ws.send(Message::text("bye soon")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("bye soon"));
    // Browsers end with a TCP FIN and no TLS close_notify: an ordinary client close.
    let (mut tcp, _) = ws.into_inner().into_inner();
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    metrics_containing(
        &proxy,
        r#"hawser_tunnels_closed_total{route="ingress/default/a/0/0",reason="client"} 1"#,
    )
    .await;
}
