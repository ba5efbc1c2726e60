//! Plain HTTP through the proxy: forwarding, streaming both ways, keep-alive reuse, HTTP/2
//! clients, header hygiene, and every error status the proxy produces.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use hawser::model::Policy;
use hawser::proxy::ProxyConfig;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

/// `tokio-stream`'s `ReceiverStream`, in six lines, to keep the dev-dependencies small.
mod tokio_stream_shim {
    pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);
    impl<T> futures_util::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[tokio::test]
async fn get_reaches_the_backend_with_host_and_forwarded_headers() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let req = Request::get("/hello?x=1")
        .header("host", "app.example.com:8080")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-kept", "yes")
        .body(Full::default())
        .unwrap();
    let (status, _, body) = request(proxy.addr, req).await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen(&body);
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str(), seen.query.as_deref()),
        ("GET", "/hello", Some("x=1"))
    );
    assert_eq!(seen.host.as_deref(), Some("app.example.com:8080"));
    assert_eq!(seen.version, "HTTP/1.1");
    let h = &seen.headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "untrusted X-Forwarded-For is replaced");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example.com:8080");
    assert_eq!(h["x-kept"], "yes");
    for hop in ["x-hop", "keep-alive", "te", "upgrade", "proxy-connection"] {
        assert!(!h.contains_key(hop), "{hop} was forwarded");
    }
}

#[tokio::test]
async fn trusted_proxies_keep_and_extend_forwarded_headers() {
    let echo = echo("a").await;
    let config =
        ProxyConfig { trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()], ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    let req = Request::get("/")
        .header("host", "a.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    let seen = seen(&request(proxy.addr, req).await.2);
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let backend = backend(|_req| async {
        Response::builder()
            .header("connection", "x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=9")
            .header("x-public", "1")
            .body(full_body("ok"))
            .unwrap()
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let (status, headers, body) = get(proxy.addr, "a.test", "/").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert!(headers.contains_key("x-public"));
    assert!(!headers.contains_key("x-private") && !headers.contains_key("keep-alive"));
}

#[tokio::test]
async fn request_and_response_bodies_stream_in_both_directions() {
    // The backend answers with the request body itself, so each chunk can only come back
    // if the proxy forwards it before the request has ended.
    let backend = backend(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().map_err(|_| -> Infallible { unreachable!("test body") });
        Response::new(http_body_util::combinators::BoxBody::new(body))
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let req =
        Request::post("/upload").header("host", "a.test").body(StreamBody::new(ReceiverStream(rx))).unwrap();
    let response = tokio::spawn(sender.send_request(req));
    tx.send(Ok(Frame::data(Bytes::from_static(b"chunk-1")))).await.unwrap();
    let mut body = response.await.unwrap().unwrap().into_body();
    for n in 1..=5 {
        let frame =
            tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap().unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("chunk-{n}"));
        tx.send(Ok(Frame::data(Bytes::from(format!("chunk-{}", n + 1))))).await.unwrap();
    }
}

#[tokio::test]
async fn large_upload_streams_through() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let payload = vec![7u8; 20 * 1024 * 1024];
    let req = Request::post("/big").header("host", "a.test").body(Full::new(Bytes::from(payload))).unwrap();
    let (status, _, body) = request(proxy.addr, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).body_bytes, 20 * 1024 * 1024);
}

#[tokio::test]
async fn server_sent_events_arrive_incrementally() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let backend = backend(move |_req| {
        let release = release_rx.clone();
        async move {
            let events = futures_util::stream::unfold(0u8, move |n| {
                let mut release = release.clone();
                async move {
                    match n {
                        0 => Some((Ok(Frame::data(Bytes::from_static(b"data: one\n\n"))), 1)),
                        1 => {
                            let _ = release.wait_for(|r| *r).await;
                            Some((Ok(Frame::data(Bytes::from_static(b"data: two\n\n"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(http_body_util::combinators::BoxBody::new(StreamBody::new(events)))
                .unwrap()
        }
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut sender = http1(proxy.addr).await;
    let req = Request::get("/events").header("host", "a.test").body(Full::default()).unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let first =
        tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("first event held back");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "data: one\n\n");
    release_tx.send_replace(true);
    let second = body.frame().await.unwrap().unwrap();
    assert_eq!(second.into_data().unwrap(), "data: two\n\n");
}

#[tokio::test]
async fn backend_connections_are_reused() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let mut connections = Vec::new();
    for _ in 0..5 {
        let (status, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!(status, StatusCode::OK);
        connections.push(seen(&body).connection);
    }
    assert!(connections.iter().all(|&c| c == connections[0]), "connections {connections:?}");
}

#[tokio::test]
async fn without_keepalive_connections_each_request_gets_a_new_backend_connection() {
    let echo = echo("a").await;
    let config = ProxyConfig { pool_max_idle_per_endpoint: 0, ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    let mut connections = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!(status, StatusCode::OK);
        connections.push(seen(&body).connection);
    }
    connections.dedup();
    assert_eq!(connections.len(), 3, "connections {connections:?}");
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    for path in ["/one", "/two"] {
        let req =
            Request::get(format!("http://h2.example.com{path}")).body(Full::<Bytes>::default()).unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let seen = seen(&response.into_body().collect().await.unwrap().to_bytes());
        assert_eq!(seen.path, path);
        assert_eq!(seen.host.as_deref(), Some("h2.example.com"));
        assert_eq!(seen.version, "HTTP/1.1");
    }
}

/// The listener tells HTTP/2 from HTTP/1.1 by a connection's first bytes: bytes that arrive in
/// pieces are read until they decide, and hyper still gets every one of them.
#[tokio::test]
async fn a_connection_opening_in_pieces_gets_its_protocol() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let mut h2 = TcpStream::connect(proxy.addr).await.unwrap();
    for piece in [&b"PRI * HTTP/2.0\r"[..], b"\n\r\nSM", b"\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"] {
        h2.write_all(piece).await.unwrap();
        tokio::time::sleep(ms(30)).await;
    }
    let mut frame_head = [0u8; 9];
    h2.read_exact(&mut frame_head).await.unwrap();
    assert_eq!(frame_head[3], 0x4, "the server's first frame is SETTINGS (RFC 9113 §3.4): {frame_head:?}");
    let mut h1 = TcpStream::connect(proxy.addr).await.unwrap();
    for piece in ["P", "RI", "NT /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"] {
        h1.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(ms(30)).await;
    }
    let mut answer = String::new();
    h1.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"method\":\"PRINT\""), "{answer}");
}

#[tokio::test]
async fn unknown_host_or_path_is_404() {
    let echo = echo("a").await;
    let table = table("a.test", vec![prefix_route("r", "/api", &[echo.addr], Policy::default())]);
    let proxy = TestProxy::with_config(table, verbose()).await;
    assert_eq!(get(proxy.addr, "b.test", "/api").await.0, StatusCode::NOT_FOUND);
    let (status, _, body) = get(proxy.addr, "a.test", "/web").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no route"));
    assert_eq!(get(proxy.addr, "a.test", "/api/x").await.0, StatusCode::OK);
}

#[tokio::test]
async fn route_without_endpoints_is_503() {
    let proxy = TestProxy::with_config(simple_table(&[], Policy::default()), verbose()).await;
    let (status, headers, body) = get(proxy.addr, "a.test", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert!(String::from_utf8_lossy(&body).contains("no ready endpoint"));
}

#[tokio::test]
async fn refused_endpoint_is_502() {
    let proxy =
        TestProxy::with_config(simple_table(&[dead_addr().await], Policy::default()), verbose()).await;
    let (status, _, body) = get(proxy.addr, "a.test", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("could not connect"));
}

#[tokio::test]
async fn backend_closing_before_a_response_is_502() {
    let rude = raw_backend(|mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[rude.addr], Policy::default())).await;
    assert_eq!(get(proxy.addr, "a.test", "/").await.0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn slow_backends_get_504_after_the_response_or_handshake_timeout() {
    let silent = raw_backend(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let policy = Policy { handshake_timeout: ms(300), response_timeout: ms(900), ..Policy::default() };
    let proxy = TestProxy::with_config(simple_table(&[silent.addr], policy), verbose()).await;
    // A plain request waits for the response timeout (a long poll is a plain request).
    let started = std::time::Instant::now();
    let (status, _, body) = get(proxy.addr, "a.test", "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(String::from_utf8_lossy(&body).contains("did not answer"));
    let waited = started.elapsed();
    assert!(waited >= ms(900) && waited < Duration::from_secs(3), "{waited:?}");
    // An upgrade waits for the handshake timeout.
    let started = std::time::Instant::now();
    assert_eq!(ws_refused(proxy.addr, "a.test", "/", &[]).await.status(), StatusCode::GATEWAY_TIMEOUT);
    let waited = started.elapsed();
    assert!(waited >= ms(300) && waited < ms(900), "{waited:?}");
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let echo = echo("a").await;
    let config = ProxyConfig { max_header_bytes: 16 * 1024, ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[echo.addr], Policy::default()), config).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let big = "x".repeat(20 * 1024);
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(get(proxy.addr, "a.test", "/").await.0, StatusCode::OK, "normal heads still pass");
}

#[tokio::test]
async fn malformed_request_line_is_400() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn responses_are_counted_by_route_and_status() {
    let echo = echo("a").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], Policy::default())).await;
    get(proxy.addr, "a.test", "/").await;
    let text = proxy.metrics.render(&proxy.table);
    assert!(text.contains(r#"hawser_requests_total{route="default/r",status="200"} 1"#), "{text}");
    assert!(text.contains("hawser_table_generation 1"), "{text}");
}

#[tokio::test]
async fn concurrent_requests_spread_without_errors() {
    let (a, b) = (echo("a").await, echo("b").await);
    let proxy = TestProxy::start(simple_table(&[a.addr, b.addr], Policy::default())).await;
    let tasks: Vec<_> = (0..50).map(|_| tokio::spawn(get(proxy.addr, "a.test", "/"))).collect();
    let results =
        futures_util::stream::iter(tasks).then(|t| async { t.await.unwrap().0 }).collect::<Vec<_>>().await;
    assert!(results.iter().all(|s| *s == StatusCode::OK));
}

/// Error bodies with their details, as `--verbose-errors` gives them.
fn verbose() -> hawser::proxy::ProxyConfig {
    hawser::proxy::ProxyConfig { verbose_errors: true, ..hawser::proxy::ProxyConfig::default() }
}

#[tokio::test]
async fn a_backend_answering_before_the_body_is_sent_does_not_stall_the_next_request() {
    // Answers 413 as soon as the head is in, keeps the connection, and reads the body slowly.
    let backend = raw_backend(|mut stream| async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok(n @ 1..) = stream.read(&mut buf).await else { return };
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let answer: &[u8] = if head.starts_with("POST") {
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"
            } else if head.starts_with("GET") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            } else {
                tokio::time::sleep(ms(50)).await;
                continue;
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    // An upload the backend refuses at once, whose body keeps coming for a second.
    let mut upload = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    upload
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    upload.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    let feeder = tokio::spawn(async move {
        for _ in 0..20 {
            if upload.write_all(&[b'x'; 1000]).await.is_err() {
                return;
            }
            tokio::time::sleep(ms(50)).await;
        }
    });
    // Other clients' requests are not queued behind that body.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert_eq!(get(proxy.addr, "a.test", "/").await.0, StatusCode::OK);
        assert!(started.elapsed() < ms(500), "waited {:?} behind another client's upload", started.elapsed());
    }
    feeder.abort();
}
