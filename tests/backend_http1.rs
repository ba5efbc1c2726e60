//! Requests without a body go out through hawser's own HTTP/1.1 client: responses framed every
//! way a backend frames them arrive whole, a connection is reused only after a clean end, a
//! body whose length is in doubt is refused, a broken body ends its connection, a kept-alive
//! connection the backend closed is replaced for an idempotent request only, and an upgrade
//! request with a body still sends it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use hawser::model::Policy;
use hawser::proxy::ProxyConfig;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one request head off `stream`, `None` at its end.
async fn read_head(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buffered.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffered.extend_from_slice(&chunk[..n]);
    }
}

/// A backend that answers the request head naming `/<n>` with `responses[n]`, written in
/// pieces of `piece` bytes, and counts the connections it accepted. A response that ends the
/// connection (`close` in it) is followed by the close.
async fn scripted(responses: Vec<Vec<u8>>, piece: usize) -> (Server, Arc<AtomicUsize>) {
    let responses = Arc::new(responses);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = raw_backend(move |mut stream: TcpStream| {
        counter.fetch_add(1, Ordering::SeqCst);
        let responses = responses.clone();
        async move {
            let mut buffered = Vec::new();
            while let Some(head) = read_head(&mut stream, &mut buffered).await {
                let path = head.split(' ').nth(1).unwrap_or("/0");
                let index: usize = path.trim_start_matches('/').parse().unwrap_or(0);
                let response = &responses[index];
                for part in response.chunks(piece) {
                    if stream.write_all(part).await.is_err() {
                        return;
                    }
                    stream.flush().await.unwrap();
                }
                if String::from_utf8_lossy(response).to_ascii_lowercase().contains("close") {
                    return;
                }
            }
        }
    })
    .await;
    (server, accepted)
}

async fn fetch(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
) -> (StatusCode, Result<Bytes, String>) {
    let req =
        Request::builder().method(method).uri(path).header("host", "a.test").body(Full::default()).unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).map_err(|e| e.to_string());
    (status, body)
}

#[tokio::test]
async fn responses_framed_every_way_arrive_whole() {
    let big: Vec<u8> = (0..200_000u32).map(|i| b"abcdefghij"[(i % 10) as usize]).collect();
    let mut chunked_big = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in big.chunks(7_777) {
        chunked_big.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        chunked_big.extend_from_slice(piece);
        chunked_big.extend_from_slice(b"\r\n");
    }
    chunked_big.extend_from_slice(b"0\r\nx-checksum: 42\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>, StatusCode, Vec<u8>)> = vec![
        (
            "content-length",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
            StatusCode::OK,
            b"hello".to_vec(),
        ),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec(),
            StatusCode::OK,
            b"abcde".to_vec(),
        ),
        ("chunked, large, with trailers", chunked_big, StatusCode::OK, big.clone()),
        (
            "an interim 100 first",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            StatusCode::CREATED,
            b"ok".to_vec(),
        ),
        ("no content", b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), StatusCode::NO_CONTENT, Vec::new()),
        (
            "not modified, a length that is not the body's",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\n\r\n".to_vec(),
            StatusCode::NOT_MODIFIED,
            Vec::new(),
        ),
        (
            "until close",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end".to_vec(),
            StatusCode::OK,
            b"to the end".to_vec(),
        ),
        (
            "HTTP/1.0",
            b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold".to_vec(),
            StatusCode::OK,
            b"old".to_vec(),
        ),
    ];
    for piece in [usize::MAX, 1] {
        let responses = cases.iter().map(|(_, response, ..)| response.clone()).collect();
        let (backend, _) = scripted(responses, piece).await;
        let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
        let mut client = http1(proxy.addr).await;
        for (index, (name, _, status, body)) in cases.iter().enumerate() {
            if piece == 1 && body.len() > 10_000 {
                continue;
            }
            let (got_status, got_body) = fetch(&mut client, Method::GET, &format!("/{index}")).await;
            assert_eq!(got_status, *status, "{name}, in pieces of {piece}");
            assert_eq!(got_body.as_deref(), Ok(&body[..]), "{name}, in pieces of {piece}");
        }
    }
}

#[tokio::test]
async fn a_head_request_reads_no_body() {
    let (backend, accepted) =
        scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n".to_vec()], usize::MAX).await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut client = http1(proxy.addr).await;
    for _ in 0..3 {
        let (status, body) = fetch(&mut client, Method::HEAD, "/0").await;
        assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok(&b""[..])));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the connection was kept for the next HEAD");
}

#[tokio::test]
async fn a_connection_is_reused_only_after_a_clean_end() {
    let cases: [(&[u8], usize); 4] = [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 1),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 1),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", 4),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", 4),
    ];
    for (response, connections) in cases {
        let (backend, accepted) = scripted(vec![response.to_vec()], usize::MAX).await;
        let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
        for _ in 0..4 {
            let (status, _, body) = get(proxy.addr, "a.test", "/0").await;
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        }
        let response = String::from_utf8_lossy(response);
        assert_eq!(accepted.load(Ordering::SeqCst), connections, "{response:?}");
    }
}

#[tokio::test]
async fn a_body_length_in_doubt_is_502_and_the_next_request_is_served() {
    let responses = vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nab".to_vec(),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ];
    let (backend, accepted) = scripted(responses, usize::MAX).await;
    let verbose = ProxyConfig { verbose_errors: true, ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[backend.addr], Policy::default()), verbose).await;
    let reasons = [
        "both Transfer-Encoding and Content-Length",
        "differing Content-Length values",
        "a transfer coding other than chunked",
    ];
    for (index, reason) in reasons.iter().enumerate() {
        let (status, _, body) = get(proxy.addr, "a.test", &format!("/{index}")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{reason}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&format!("malformed response: {reason}")), "{body}");
    }
    let (status, _, body) = get(proxy.addr, "a.test", "/3").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "no refused response's connection was reused");
}

#[tokio::test]
async fn a_broken_body_fails_the_client_response_and_its_connection() {
    let (backend, accepted) = scripted(
        vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-close: close\r\n\r\nhalf".to_vec(),
            // An empty chunk-size line is not a last chunk.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        ],
        usize::MAX,
    )
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    for path in ["/0", "/1"] {
        let mut client = http1(proxy.addr).await;
        let req = Request::get(path).header("host", "a.test").body(Full::default()).unwrap();
        // The client's connection is cut: before the head, or inside the body.
        let complete = match client.send_request(req).await {
            Ok(response) => response.into_body().collect().await.is_ok(),
            Err(_) => false,
        };
        assert!(!complete, "{path}: a broken body arrived as complete");
    }
    let (status, _, body) = get(proxy.addr, "a.test", "/2").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "no broken body's connection was reused");
}

/// A backend that answers the first request on each connection and closes the connection
/// when the second arrives, unanswered: the race of a keep-alive timeout with a request.
async fn closes_on_second_request() -> (Server, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = raw_backend(move |mut stream: TcpStream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut buffered = Vec::new();
            if read_head(&mut stream, &mut buffered).await.is_none() {
                return;
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            let _ = read_head(&mut stream, &mut buffered).await;
        }
    })
    .await;
    (server, accepted)
}

#[tokio::test]
async fn a_kept_alive_connection_closed_under_a_request_is_replaced_for_idempotent_ones() {
    let (backend, accepted) = closes_on_second_request().await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    for _ in 0..3 {
        let (status, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "each GET after the first was retried once");

    // A POST is not sent twice: its request may have been acted on.
    let (backend, _) = closes_on_second_request().await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut client = http1(proxy.addr).await;
    assert_eq!(fetch(&mut client, Method::POST, "/").await.0, StatusCode::OK);
    assert_eq!(fetch(&mut client, Method::POST, "/").await.0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn an_idle_connection_the_backend_closed_is_not_used() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    // Answers one request per connection, then closes it without saying so in the response.
    let backend = raw_backend(move |mut stream: TcpStream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut buffered = Vec::new();
            if read_head(&mut stream, &mut buffered).await.is_some() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            }
        }
    })
    .await;
    let proxy = TestProxy::with_config(
        simple_table(&[backend.addr], Policy::default()),
        ProxyConfig { verbose_errors: true, ..ProxyConfig::default() },
    )
    .await;
    let mut client = http1(proxy.addr).await;
    for _ in 0..3 {
        let (status, body) = fetch(&mut client, Method::POST, "/").await;
        assert_eq!((status, body.as_deref()), (StatusCode::OK, Ok(&b"ok"[..])));
        // The backend's FIN arrives at hawser before the next request takes a connection.
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// An upgrade request that carries a body (rare, but HTTP/1.1 allows it) goes out whole: the
/// own client writes heads only, so such a request takes hyper's.
#[tokio::test]
async fn an_upgrade_request_with_a_body_sends_it() {
    let backend = raw_backend(|mut stream: TcpStream| async move {
        let mut buffered = Vec::new();
        let Some(head) = read_head(&mut stream, &mut buffered).await else { return };
        assert!(head.to_ascii_lowercase().contains("content-length: 5"), "{head}");
        while buffered.len() < 5 {
            let mut chunk = [0u8; 64];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffered.extend_from_slice(&chunk[..n]),
            }
        }
        let body = format!("got:{}", String::from_utf8_lossy(&buffered));
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let request = "GET / HTTP/1.1\r\nhost: a.test\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
                   content-length: 5\r\n\r\nhello";
    client.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("got:hello") {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read).await.expect("the backend got the body");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}
