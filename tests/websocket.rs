//! WebSocket through the proxy with real clients: every frame kind passes unchanged, close
//! codes travel both ways, negotiation headers are preserved, non-101 answers are relayed,
//! and the route's clocks and admission rules apply.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::model::{Policy, Timeout};
use hawser::proxy::ProxyConfig;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no message in time")
        .unwrap()
        .unwrap()
}

async fn echo_proxy(policy: Policy) -> (Server, TestProxy) {
    let echo = echo("ws").await;
    let proxy = TestProxy::start(simple_table(&[echo.addr], policy)).await;
    (echo, proxy)
}

#[tokio::test]
async fn text_binary_and_large_messages_round_trip() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (mut ws, name) = ws_open(proxy.addr, "chat.test", "/ws").await;
    assert_eq!(name, "ws");
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("héllo"));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(binary));
    let large: Vec<u8> = (0..16 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let spliced = spliced_bytes(&proxy);
    ws.send(Message::binary(large.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await.into_data(), Bytes::from(large));
    // Plain TCP on both sides: the large payload went through a pipe, not through hawser's
    // memory (the counter is the process's, so other tests can only add to it).
    assert!(spliced_bytes(&proxy) - spliced >= 16 * 1024 * 1024, "the large message was copied");
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_by_the_backend() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let parts = [
        ("frag", OpCode::Data(Data::Text)),
        ("ment", OpCode::Data(Data::Continue)),
        ("ed", OpCode::Data(Data::Continue)),
    ];
    for (i, (chunk, opcode)) in parts.iter().enumerate() {
        let frame = Frame::message(chunk.as_bytes().to_vec(), *opcode, i == parts.len() - 1);
        ws.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(next_message(&mut ws).await, Message::text("fragmented"));
}

#[tokio::test]
async fn ping_gets_its_pong() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    ws.send(Message::Ping(Bytes::from_static(b"are you there"))).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::Pong(Bytes::from_static(b"are you there")));
}

#[tokio::test]
async fn client_close_code_and_reason_reach_the_backend_and_come_back() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let close = CloseFrame { code: CloseCode::Library(4001), reason: "client bye".into() };
    ws.send(Message::Close(Some(close.clone()))).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::Close(Some(close)));
}

#[tokio::test]
async fn backend_close_code_and_reason_reach_the_client() {
    let backend = raw_backend(|stream| async move {
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let close = CloseFrame { code: CloseCode::Library(4002), reason: "server bye".into() };
        ws.send(Message::Close(Some(close))).await.unwrap();
        while ws.next().await.is_some() {}
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let Message::Close(Some(frame)) = next_message(&mut ws).await else { panic!("expected a close frame") };
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::Library(4002), "server bye"));
}

#[tokio::test]
async fn subprotocol_is_negotiated_end_to_end() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (_ws, response) =
        ws_connect(proxy.addr, "chat.test", "/ws", &[("sec-websocket-protocol", "chat.v2, chat.v1")])
            .await
            .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
}

/// A raw backend that accepts `permessage-deflate` and then echoes bytes as they are: frames
/// with RSV1 set (compressed) must cross the tunnel unchanged, byte for byte.
#[tokio::test]
async fn extension_negotiation_and_compressed_frames_pass_unchanged() {
    let backend = raw_backend(|mut stream| async move {
        let head = read_head(&mut stream).await;
        assert!(head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate"), "{head}");
        let key = header_value(&head, "sec-websocket-key");
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        let (mut read, mut write) = stream.split();
        let _ = tokio::io::copy(&mut read, &mut write).await;
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header_value(&head, "sec-websocket-extensions"),
        "permessage-deflate; server_no_context_takeover"
    );
    assert_eq!(header_value(&head, "sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // A masked text frame with RSV1 (compressed "Hello" from RFC 7692 §7.2.3.1).
    let mut frame = Vec::new();
    let header = FrameHeader { rsv1: true, mask: Some([1, 2, 3, 4]), ..FrameHeader::default() };
    header.format(7, &mut frame).unwrap();
    let payload: Vec<u8> = [0xf2u8, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        .iter()
        .zip([1u8, 2, 3, 4].iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect();
    frame.extend_from_slice(&payload);
    client.write_all(&frame).await.unwrap();
    let mut back = vec![0u8; frame.len()];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(back, frame);
}

/// Bytes that come in the same write as the handshake — a frame behind the client's request, a
/// greeting behind the backend's `101` — are read with it and must still reach the other side,
/// first and whole.
#[tokio::test]
async fn frames_in_the_same_write_as_the_handshake_arrive() {
    // An unmasked text frame, as a server sends it (RFC 6455 §5.2).
    let greeting_bytes = b"\x81\x07welcome".to_vec();
    let backend = raw_backend(move |mut stream| {
        let greeting_bytes = greeting_bytes.clone();
        async move {
            let head = read_head(&mut stream).await;
            let key = header_value(&head, "sec-websocket-key");
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(&greeting_bytes);
            stream.write_all(&answer).await.unwrap();
            let (mut read, mut write) = stream.split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
        }
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut frame = Vec::new();
    let header = FrameHeader { mask: Some([9, 8, 7, 6]), ..FrameHeader::default() };
    header.format(5, &mut frame).unwrap();
    frame.extend(b"first".iter().zip([9u8, 8, 7, 6].iter().cycle()).map(|(b, m)| b ^ m));
    let mut opening = b"GET /ws HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec();
    opening.extend_from_slice(&frame);
    client.write_all(&opening).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The backend's greeting first, then the client's own frame echoed back.
    let mut greeting_back = [0u8; 9];
    client.read_exact(&mut greeting_back).await.unwrap();
    assert_eq!(&greeting_back, b"\x81\x07welcome");
    let mut echoed = vec![0u8; frame.len()];
    client.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, frame);
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn header_value(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|line| {
            line.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

#[tokio::test]
async fn non_101_answers_are_relayed() {
    let backend = backend(|_req| async {
        http::Response::builder().status(StatusCode::FORBIDDEN).body(full_body("go away")).unwrap()
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let response = ws_refused(proxy.addr, "chat.test", "/ws", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.body().as_deref(), Some(&b"go away"[..]));
    let text = proxy.metrics.render(&proxy.table);
    assert!(
        text.contains(
            r#"hawser_upgrades_total{route="default/r",reason="refused_by_backend",protocol="h1"} 1"#
        ),
        "{text}"
    );
}

/// A refusal with a body larger than one read streams whole: the handshake's connection keeps
/// being driven after its head was relayed.
#[tokio::test]
async fn a_large_refusal_body_streams_whole() {
    let page: Bytes = (0..2_000_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>().into();
    let body = page.clone();
    let backend =
        backend(move |_req| {
            let body = body.clone();
            async move {
                http::Response::builder().status(StatusCode::UNAUTHORIZED).body(full_body(body)).unwrap()
            }
        })
        .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let upgrade = http::Request::get("/ws")
        .header("host", "chat.test")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(http_body_util::Full::default())
        .unwrap();
    let (status, _, body) = request(proxy.addr, upgrade).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body.len(), page.len());
    assert!(body == page, "the body changed on the way");
}

#[tokio::test]
async fn idle_tunnel_is_closed_and_busy_tunnel_stays_open() {
    let (_echo, proxy) =
        echo_proxy(Policy { idle_timeout: Timeout::After(ms(400)), ..Policy::default() }).await;
    let (mut idle, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let (mut busy, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let opened = Instant::now();
    let busy_task = tokio::spawn(async move {
        for i in 0..12 {
            tokio::time::sleep(ms(100)).await;
            busy.send(Message::text(format!("{i}"))).await.unwrap();
            assert_eq!(next_message(&mut busy).await, Message::text(format!("{i}")));
        }
    });
    let end =
        tokio::time::timeout(Duration::from_secs(5), idle.next()).await.expect("idle tunnel not closed");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "unexpected {end:?}");
    let lived = opened.elapsed();
    assert!(lived >= ms(380) && lived < ms(1500), "closed after {lived:?}");
    match end {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1001, "idle timeout"));
        }
        other => panic!("expected a 1001 close frame, got {other:?}"),
    }
    busy_task.await.unwrap();
    metrics_containing(&proxy, r#"hawser_tunnels_closed_total{route="default/r",reason="idle"} 1"#).await;
}

#[tokio::test]
async fn max_duration_closes_even_a_busy_tunnel() {
    let policy = Policy { max_connection_duration: Timeout::After(ms(500)), ..Policy::default() };
    let (_echo, proxy) = echo_proxy(policy).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let opened = Instant::now();
    let lived = loop {
        tokio::time::sleep(ms(50)).await;
        let alive = ws.send(Message::text("x")).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(2), ws.next()).await,
                Ok(Some(Ok(Message::Text(_))))
            );
        if !alive {
            break opened.elapsed();
        }
        assert!(opened.elapsed() < Duration::from_secs(5), "never closed");
    };
    assert!(lived >= ms(450) && lived < ms(2000), "closed after {lived:?}");
}

#[tokio::test]
async fn origin_allow_list_is_checked_before_the_upgrade() {
    let policy = Policy { allowed_origins: vec!["https://chat.example.com".into()], ..Policy::default() };
    let proxy = TestProxy::start(simple_table(&[dead_addr().await], policy.clone())).await;
    // The endpoint is dead: a 403 (not a 502) proves the backend was never contacted.
    let response =
        ws_refused(proxy.addr, "chat.test", "/ws", &[("origin", "https://evil.example.org")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_echo, proxy) = echo_proxy(policy).await;
    assert!(
        ws_connect(proxy.addr, "chat.test", "/ws", &[("origin", "https://chat.example.com")]).await.is_ok()
    );
    assert!(
        ws_connect(proxy.addr, "chat.test", "/ws", &[]).await.is_ok(),
        "non-browser clients send no Origin"
    );
}

#[tokio::test]
async fn source_ranges_refuse_other_clients() {
    let denied = Policy { source_ranges: vec!["10.0.0.0/8".parse().unwrap()], ..Policy::default() };
    let proxy = TestProxy::start(simple_table(&[dead_addr().await], denied)).await;
    assert_eq!(ws_refused(proxy.addr, "chat.test", "/ws", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(proxy.addr, "chat.test", "/").await.0, StatusCode::FORBIDDEN);
    let allowed = Policy { source_ranges: vec!["127.0.0.0/8".parse().unwrap()], ..Policy::default() };
    let (_echo, proxy) = echo_proxy(allowed).await;
    assert!(ws_connect(proxy.addr, "chat.test", "/ws", &[]).await.is_ok());
}

#[tokio::test]
async fn connection_budgets_answer_503_before_the_upgrade() {
    let policy =
        Policy { max_connections: Some(3), max_connections_per_client: Some(2), ..Policy::default() };
    let (echo, proxy) = echo_proxy(policy).await;
    let (_a, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let (b, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    let accepted_before = seen(&get(echo.addr, "x", "/").await.2).connection;
    let refused = ws_refused(proxy.addr, "chat.test", "/ws", &[]).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    metrics_containing(
        &proxy,
        r#"hawser_upgrades_total{route="default/r",reason="client_budget",protocol="h1"} 1"#,
    )
    .await;
    let accepted_after = seen(&get(echo.addr, "x", "/").await.2).connection;
    assert_eq!(accepted_after, accepted_before + 1, "the refused handshake reached the backend");
    // Closing a tunnel gives its place back.
    drop(b);
    let mut reopened = None;
    for _ in 0..250 {
        if let Ok(ws) = ws_connect(proxy.addr, "chat.test", "/ws", &[]).await {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(ms(20)).await;
    }
    assert!(reopened.is_some(), "budget not released");
}

#[tokio::test]
async fn tunnel_metrics_and_bytes_are_recorded() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    ws.send(Message::text("12345")).await.unwrap();
    next_message(&mut ws).await;
    let text = proxy.metrics.render(&proxy.table);
    assert!(text.contains(r#"hawser_tunnels_active{route="default/r""#) && text.contains("} 1"), "{text}");
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    // RFC 6455 §7.1.1: after the close handshake the server closes TCP first, so a
    // transparent tunnel sees the backend end first.
    let text =
        metrics_containing(&proxy, r#"hawser_tunnels_closed_total{route="default/r",reason="backend"} 1"#)
            .await;
    assert!(
        text.contains(r#"hawser_upgrades_total{route="default/r",reason="upgraded",protocol="h1"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"hawser_tunnel_bytes_total{route="default/r",direction="client_to_backend"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_sends_1001_within_the_window_and_closes_what_is_left_at_the_deadline() {
    let (_echo, proxy) = echo_proxy(Policy::default()).await;
    let (mut ws, _) = ws_open(proxy.addr, "chat.test", "/ws").await;
    ws.send(Message::text("before")).await.unwrap();
    next_message(&mut ws).await;
    assert_eq!(proxy.proxy.open_tunnels(), 1);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let drained = tokio::spawn({
        let proxy = proxy.proxy.clone();
        async move { proxy.drain_tunnels(ms(300), deadline).await }
    });
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("client not told");
    match end {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a 1001 close frame, got {other:?}"),
    }
    assert!(started.elapsed() <= ms(1500), "close frame after {:?}", started.elapsed());
    while ws.next().await.is_some() {}
    drained.await.unwrap();
    assert_eq!(proxy.proxy.open_tunnels(), 0);
    let text = proxy.metrics.render(&proxy.table);
    assert!(text.contains(r#"hawser_tunnels_closed_total{route="default/r",reason="shutdown"} 1"#), "{text}");
    assert!(text.contains(r#"hawser_drained_total{route="default/r",cause="shutdown"} 1"#), "{text}");
    assert!(
        text.contains(r#"hawser_websocket_closes_total{route="default/r",code="1001",initiator="hawser",protocol="h1"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn handshakes_waiting_for_a_slow_backend_are_capped() {
    let silent = raw_backend(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let config = ProxyConfig { max_pending_handshakes: 2, ..ProxyConfig::default() };
    let policy = Policy { handshake_timeout: ms(800), ..Policy::default() };
    let proxy = TestProxy::with_config(simple_table(&[silent.addr], policy), config).await;
    let addr = proxy.addr;
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { ws_refused(addr, "a.test", "/ws", &[]).await.status() }))
        .collect();
    eventually("two handshakes pending", || (proxy.proxy.pending_handshakes() == 2).then_some(())).await;
    let third = ws_refused(addr, "a.test", "/ws", &[]).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().contains_key("retry-after"));
    for status in futures_util::future::join_all(waiting).await {
        assert_eq!(status.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    }
    // Their places are free again.
    assert_eq!(ws_refused(addr, "a.test", "/ws", &[]).await.status(), StatusCode::GATEWAY_TIMEOUT);
}
