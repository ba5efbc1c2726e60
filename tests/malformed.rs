//! Hostile and broken input: garbage, truncated heads, odd upgrade headers and slow senders
//! get an error or a closed connection, and the proxy keeps serving everyone else.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hawser::model::Policy;
use hawser::proxy::ProxyConfig;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes`, half-closes, and returns whatever the proxy answers before closing.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn garbage_never_hurts_the_proxy() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let inputs: &[&[u8]] = &[
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nHo",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x09garbage",
        b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    ];
    for input in inputs {
        let answer = exchange(proxy.addr, input).await;
        let status = answer.get(9..12).unwrap_or("");
        assert!(
            answer.is_empty()
                || ["400", "404", "405", "200", "502", "505", "431"].contains(&status)
                || answer.starts_with("\0"),
            "{:?} → {answer:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            get(proxy.addr, "a.test", "/").await.0,
            StatusCode::OK,
            "after {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[tokio::test]
async fn an_invalid_websocket_handshake_is_answered_by_the_backend_not_tunnelled() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    // `Upgrade: websocket` without `Sec-WebSocket-Key`: the echo does not switch protocols.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer)).await.unwrap().unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&answer));
    assert_eq!(proxy.proxy.open_tunnels(), 0);
}

#[tokio::test]
async fn slow_header_senders_are_cut_off() {
    let echo = echo("a").await;
    let config = ProxyConfig { header_read_timeout: ms(300), ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(2), "cut after {:?}", started.elapsed());
    assert_eq!(get(proxy.addr, "a.test", "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_silent_connection_lives_one_header_read_timeout() {
    let echo = echo("a").await;
    let config = ProxyConfig { header_read_timeout: ms(400), ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    let lived = started.elapsed();
    assert!(lived >= ms(380) && lived < ms(700), "a silent connection lived {lived:?}, not one timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_new_connections_are_refused_and_admin_still_answers() {
    use common::process::{ANY_PORTS, Process};
    let echo = echo("a").await;
    let dir = tempdir();
    std::fs::write(dir.join("a.yaml"), format!("{}---\n{}", service_yaml("a", echo.addr), INGRESS)).unwrap();
    // 160 descriptors: 100 kept back, so 30 client connections at most.
    let args = [&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()]].concat();
    let hawser = Process::start_under(&["prlimit", "--nofile=160:160", "--"], &args, 3, &[]);
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(TcpStream::connect(proxy).await.unwrap());
    }
    tokio::time::sleep(ms(200)).await;
    // The 31st is closed at once, cleanly; the admin port keeps answering.
    let mut refused = TcpStream::connect(proxy).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the 31st connection was kept: {closed:?}");
    assert_eq!(get(admin, "admin", "/healthz").await.0, StatusCode::OK);
    let (_, _, metrics) = get(admin, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains(r#"hawser_connections_rejected_total{reason="max_connections"}"#), "{metrics}");
    // Once connections close, service resumes (the first tries may still meet the limit while
    // hawser notices the closes).
    held.clear();
    eventually_async(|| async { try_get(proxy, "a.test", "/").await == Some(StatusCode::OK) }).await;
}

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: a}\nspec:\n  ingressClassName: hawser\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {name: http}}}}\n";

/// A backend that reads the whole request body, then answers with its length.
async fn body_reader() -> Server {
    backend(|req: http::Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let length = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
        http::Response::new(full_body(format!("read {length}")))
    })
    .await
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_a_slow_steady_one_gets_through() {
    let reader = body_reader().await;
    let config = ProxyConfig { request_body_timeout: ms(300), ..ProxyConfig::default() };
    let policy = Policy { response_timeout: ms(500), ..Policy::default() };
    let proxy = TestProxy::with_config(simple_table(&[reader.addr], policy), config).await;
    // Ten bytes of a hundred, then nothing.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Ten bytes every 150 ms for 1.5 s: longer than the response timeout, never stalled.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n").await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(ms(150)).await;
        stream.write_all(b"0123456789").await.unwrap();
    }
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("read 100"), "{answer}");
    // A route's own timeout (`client-body-timeout`) wins over the flag's 60 s.
    let policy = Policy { request_body_timeout: Some(ms(300)), ..Policy::default() };
    let proxy = TestProxy::start(simple_table(&[reader.addr], policy)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"));
}

#[tokio::test]
async fn the_header_limit_is_exact() {
    let echo = echo("a").await;
    let config = ProxyConfig { max_header_bytes: 8192, ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    // "GET / HTTP/1.1\r\n" + "Host: a.test\r\n" + "X-Fill: …\r\n" + "\r\n"
    let head =
        |fill: usize| format!("GET / HTTP/1.1\r\nHost: a.test\r\nX-Fill: {}\r\n\r\n", "f".repeat(fill));
    let exact = 8192 - head(0).len();
    assert_eq!(head(exact).len(), 8192);
    for (fill, status) in [(exact, "200"), (exact + 1, "431"), (exact + 4096, "431")] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(head(fill).as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 64];
        let n = stream.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert_eq!(answer.get(9..12), Some(status), "{} bytes: {answer}", head(fill).len());
    }
}
