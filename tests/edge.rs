//! The edge admits only what it routes: `Upgrade: h2c` is never tunnelled, paths are normalised
//! before matching (and sent on as matched), and an Ingress asking for access control hawser
//! does not enforce answers 503 instead of serving its paths unprotected.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::process::{ANY_PORTS, Process};
use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::model::Policy;
use hawser::proxy::{EncodedSlashes, ProxyConfig};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Sends `head` on a new connection and returns everything the proxy sends back within `wait`.
async fn raw(addr: SocketAddr, head: &str, wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

const H2C_UPGRADE: &str = "GET /public HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";

#[tokio::test]
async fn h2c_upgrades_go_on_as_plain_requests() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let answer = raw(
        proxy.addr,
        H2C_UPGRADE.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").as_str(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let seen = seen(&Bytes::from(body.to_owned()));
    assert!(!seen.headers.contains_key("upgrade"), "the backend saw {:?}", seen.headers);
    assert!(!seen.headers.contains_key("http2-settings"), "the backend saw {:?}", seen.headers);
    assert_eq!(proxy.proxy.open_tunnels(), 0);
}

#[tokio::test]
async fn a_backend_switching_to_h2c_gets_no_tunnel() {
    // A backend that answers every request with 101 h2c and then speaks whatever it likes.
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen_heads = heads.clone();
    let backend = raw_backend(move |mut stream: TcpStream| {
        let heads = seen_heads.clone();
        async move {
            let mut head = vec![0u8; 4096];
            let n = stream.read(&mut head).await.unwrap_or(0);
            heads.lock().unwrap().push(String::from_utf8_lossy(&head[..n]).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nSMUGGLED")
                .await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let answer = raw(proxy.addr, H2C_UPGRADE, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(!answer.contains("SMUGGLED"), "{answer}");
    assert!(
        !heads.lock().unwrap()[0].to_ascii_lowercase().contains("upgrade"),
        "{:?}",
        heads.lock().unwrap()
    );
    assert_eq!(proxy.proxy.open_tunnels(), 0);
    // The same backend switching to h2c on a WebSocket handshake is refused too.
    let ws = "GET /public HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let answer = raw(proxy.addr, ws, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(!answer.contains("SMUGGLED"), "{answer}");
}

#[tokio::test]
async fn other_upgrades_only_where_the_route_allows_them() {
    // A backend switching to `foo` and echoing raw bytes after it.
    let backend = raw_backend(|mut stream: TcpStream| async move {
        let mut head = vec![0u8; 4096];
        let n = stream.read(&mut head).await.unwrap_or(0);
        let upgrade = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase().contains("upgrade: foo");
        let answer: &[u8] = if upgrade {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain"
        };
        let _ = stream.write_all(answer).await;
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let _ = stream.write_all(&buf[..n]).await;
        }
    })
    .await;
    let head = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n";
    let closed = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let answer = raw(closed.addr, head, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("plain"), "{answer}");
    let policy = Policy { allowed_upgrades: vec!["foo".into()], ..Policy::default() };
    let open = TestProxy::start(simple_table(&[backend.addr], policy)).await;
    let mut stream = TcpStream::connect(open.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 101");
    eventually("the tunnel", || (open.proxy.open_tunnels() == 1).then_some(())).await;
}

/// Routes `/public` and `/ws` (both to the echo) on a.test, nothing else.
fn public_only(echo: SocketAddr) -> hawser::model::RoutingTable {
    table(
        "a.test",
        vec![
            prefix_route("public", "/public", &[echo], Policy::default()),
            prefix_route("ws", "/ws", &[echo], Policy::default()),
        ],
    )
}

#[tokio::test]
async fn paths_are_normalised_before_matching_and_sent_as_matched() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(public_only(echo.addr)).await;
    // (raw path, status, path the backend receives)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/public/x", 200, Some("/public/x")),
        ("/public/../admin", 404, None),
        ("/public/%2e%2e/admin", 404, None),
        ("/public/%2E%2e/admin", 404, None),
        ("/public/./../admin", 404, None),
        ("/public/..%2fadmin", 400, None),
        ("/public%2Fx", 400, None),
        ("/public%5Cx", 400, None),
        ("/public\\x", 400, None),
        ("/public/%zz", 400, None),
        ("//public///a/./b", 200, Some("/public/a/b")),
        ("/admin/../public/x", 200, Some("/public/x")),
        ("/public/%7Euser?q=%2F", 200, Some("/public/~user")),
        ("/%70ublic/x", 200, Some("/public/x")),
    ];
    for &(path, status, backend_path) in cases {
        let answer = raw(
            proxy.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(answer.get(9..12), Some(status.to_string().as_str()), "{path}: {answer}");
        if let Some(want) = backend_path {
            let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
            assert_eq!(seen(&Bytes::from(body.to_owned())).path, want, "{path}");
        }
    }
    // The query is kept as it was.
    let (_, _, body) = get(proxy.addr, "a.test", "/public/./x?q=%2F&a=..").await;
    assert_eq!(seen(&body).query.as_deref(), Some("q=%2F&a=.."));
}

#[tokio::test]
async fn upgrades_and_http2_are_normalised_too() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(public_only(echo.addr)).await;
    // A WebSocket to `/public/../ws` reaches the /ws route as /ws.
    let (mut ws, _) = ws_open(proxy.addr, "a.test", "/public/../ws").await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    let refused = ws_refused(proxy.addr, "a.test", "/public/%2e%2e/admin", &[]).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    // HTTP/2 with prior knowledge.
    let mut h2 = h2_client(proxy.addr).await;
    for (path, want) in [("/public/%2e%2e/admin", 404), ("/public/a/../b", 200), ("/public%2fb", 400)] {
        let req = Request::get(format!("http://a.test{path}")).body(Full::<Bytes>::default()).unwrap();
        let response = h2.send_request(req).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, want, "h2 {path}");
        if want == 200 {
            assert_eq!(seen(&body).path, "/public/b");
        }
    }
}

#[tokio::test]
async fn encoded_slashes_can_be_kept_unchanged() {
    let echo = echo("a").await;
    let config = ProxyConfig { encoded_slashes: EncodedSlashes::Keep, ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(public_only(echo.addr), config).await;
    let (status, _, body) = get(proxy.addr, "a.test", "/public/a%2fb/../c").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).path, "/public/c");
    let (status, _, body) = get(proxy.addr, "a.test", "/public/..%2fadmin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).path, "/public/..%2Fadmin");
}

const PROTECTED: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: admin\n  annotations:\n    nginx.ingress.kubernetes.io/auth-tls-verify-client: \"on\"\n    nginx.ingress.kubernetes.io/auth-tls-secret: default/admin-ca\nspec:\n  ingressClassName: hawser\n  rules:\n  - host: admin.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {name: http}}}}\n";

const PUBLIC: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  ingressClassName: hawser\n  rules:\n  - host: web.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {name: http}}}}\n";

#[tokio::test]
async fn an_ingress_with_unenforced_auth_is_refused_not_served_open() {
    let a = echo("a").await;
    let dir = tempdir();
    let manifests = format!("{}---\n{PROTECTED}---\n{PUBLIC}", service_yaml("a", a.addr));
    std::fs::write(dir.join("all.yaml"), &manifests).unwrap();
    let dir_arg = dir.to_str().unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_hawser")).args(["check", dir_arg]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(
        said.contains("error   Ingress default/admin nginx.ingress.kubernetes.io/auth-tls-verify-client"),
        "{said}"
    );

    let hawser = Process::start(&[&["run"][..], &ANY_PORTS, &["--manifests", dir_arg]].concat(), 3);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    let (status, _, body) = get(proxy, "admin.test", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&body));
    assert_eq!(get(proxy, "admin.test", "/anything").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(proxy, "web.test", "/").await.0, StatusCode::OK, "other Ingresses keep serving");
    drop(hawser);

    // The operator's explicit opt-out serves it without the restriction.
    let opted = [
        &["run"][..],
        &ANY_PORTS,
        &["--manifests", dir_arg, "--ignore-annotations", "auth-tls-verify-client,auth-tls-secret"],
    ]
    .concat();
    let hawser = Process::start(&opted, 3);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    assert_eq!(get(proxy, "admin.test", "/").await.0, StatusCode::OK);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the backend saw of a raw request, if it got that far: (status, echo's view).
async fn raw_exchange(proxy: SocketAddr, head: &str) -> (String, Option<hawser::echo::SeenRequest>) {
    let answer = raw(proxy, head, Duration::from_secs(5)).await;
    let status = answer.get(9..12).unwrap_or("").to_owned();
    let body = answer.find("\r\n\r\n").map(|at| answer[at + 4..].to_owned()).unwrap_or_default();
    let seen = (status == "200").then(|| seen(&Bytes::from(body)));
    (status, seen)
}

#[tokio::test]
async fn a_strict_http11_edge() {
    let (a, b) = (echo("a").await, echo("b").await);
    let routes = hawser::model::RoutingTable::new(vec![
        hawser::model::VirtualHost::new(
            hawser::model::HostMatch::parse("a.test"),
            vec![prefix_route("a", "/", &[a.addr], Policy::default())],
        ),
        hawser::model::VirtualHost::new(
            hawser::model::HostMatch::parse("b.test"),
            vec![prefix_route("b", "/", &[b.addr], Policy::default())],
        ),
    ]);
    let proxy = TestProxy::start(routes).await;
    let close = "Connection: close\r\n";
    // (request head, status, echo that must answer)
    let cases: &[(String, &str, Option<&str>)] = &[
        (format!("GET / HTTP/1.1\r\nHost: a.test\r\n{close}\r\n"), "200", Some("a")),
        (format!("GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n{close}\r\n"), "200", Some("b")),
        (format!("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n{close}\r\n"), "400", None),
        (format!("GET / HTTP/1.1\r\n{close}\r\n"), "400", None),
        (format!("GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n{close}\r\n"), "400", None),
        (format!("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n{close}\r\n"), "405", None),
        (format!("GET / HTTP/1.1\r\nHost: 2130706433/.a.test\r\n{close}\r\n"), "400", None),
        (format!("GET / HTTP/1.1\r\nHost: a.test?x\r\n{close}\r\n"), "400", None),
        (format!("GET / HTTP/1.1\r\nHost: user@a.test\r\n{close}\r\n"), "400", None),
        ("GET / HTTP/1.0\r\n\r\n".to_owned(), "404", None),
    ];
    for (head, status, echo_name) in cases {
        let (got, seen) = raw_exchange(proxy.addr, head).await;
        assert_eq!(&got, status, "{head:?}");
        assert_eq!(seen.map(|s| s.name).as_deref(), *echo_name, "{head:?}");
    }
}

#[tokio::test]
async fn forwarding_headers_request_ids_and_the_server_header() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let head = "GET / HTTP/1.1\r\nHost: a.test\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Scheme: https\r\nX-Forwarded-Prefix: /admin\r\nX-Original-URI: /admin\r\nX-Request-Id: trace-7\r\nConnection: close\r\n\r\n";
    let (status, seen) = raw_exchange(proxy.addr, head).await;
    assert_eq!(status, "200");
    let headers = seen.unwrap().headers;
    for forged in
        ["forwarded", "x-forwarded-port", "x-forwarded-scheme", "x-forwarded-prefix", "x-original-uri"]
    {
        assert!(!headers.contains_key(forged), "{forged} reached the backend: {headers:?}");
    }
    assert_eq!(headers.get("x-request-id").map(String::as_str), Some("trace-7"));
    let (_, response_headers, _) = get(proxy.addr, "a.test", "/").await;
    assert_eq!(response_headers.get("server").map(|v| v.as_bytes()), Some(&b"hawser"[..]));
    // hawser's own errors name nothing internal, and carry the request id for the log line.
    let dead = TestProxy::start(simple_table(&[dead_addr().await], Policy::default())).await;
    let (status, headers, body) = get(dead.addr, "a.test", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "502 Bad Gateway\n");
    assert_eq!(headers["x-request-id"].len(), 32);
    let (status, _, body) =
        get(TestProxy::start(simple_table(&[], Policy::default())).await.addr, "a.test", "/").await;
    assert_eq!((status, &body[..]), (StatusCode::SERVICE_UNAVAILABLE, &b"503 Service Unavailable\n"[..]));
}

#[tokio::test]
async fn two_origins_and_http2_cookies() {
    let echo = echo("a").await;
    let policy = Policy { allowed_origins: vec!["https://ok.example".into()], ..Policy::default() };
    let proxy = TestProxy::start(simple_table(&[echo.addr], policy)).await;
    let ws = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://ok.example\r\nOrigin: https://evil.example\r\n\r\n";
    let answer = raw(proxy.addr, ws, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let evil = ws.replace(
        "Origin: https://ok.example\r\nOrigin: https://evil.example\r\n",
        "Origin: https://evil.com?.ok.example\r\n",
    );
    let answer = raw(proxy.addr, &evil, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // HTTP/2 may split cookies; the HTTP/1.1 backend gets one header joined with "; ".
    let mut h2 = h2_client(proxy.addr).await;
    let req = Request::get("http://a.test/")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::<Bytes>::default())
        .unwrap();
    let body = h2.send_request(req).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    assert_eq!(seen(&body).headers.get("cookie").map(String::as_str), Some("a=1; b=2"));
}

/// An HTTP/2 (prior knowledge) connection to `addr`.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (h2, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    h2
}

/// The response headers the upstream Ingress conformance suite (ingress-controller-conformance,
/// `features/default_backend.feature` and the others) checks on every answer.
#[tokio::test]
async fn conformance_response_headers_on_proxied_and_own_answers() {
    let echo = echo("a").await;
    let routed =
        TestProxy::start(table("a.test", vec![prefix_route("r", "/", &[echo.addr], Policy::default())]))
            .await;
    for (path, host, status) in
        [("/", "a.test", StatusCode::OK), ("/", "unknown.test", StatusCode::NOT_FOUND)]
    {
        let (got, headers, body) = get(routed.addr, host, path).await;
        assert_eq!(got, status, "{host}");
        for name in ["server", "date", "content-type", "content-length"] {
            assert!(headers.contains_key(name), "{host}: no {name} in {headers:?}");
        }
        assert_eq!(headers["content-length"].to_str().unwrap(), body.len().to_string());
        assert!(httpdate::parse_http_date(headers["date"].to_str().unwrap()).is_ok());
    }
}
