//! WebSockets over HTTP/2 (RFC 8441) through the proxy, with hyper's HTTP/2 client as the
//! browser: extended CONNECT on h2c and on TLS (ALPN h2), every message kind, 16 MiB, ping/pong,
//! close codes both ways, the Origin allow-list and budgets, metrics that say `protocol="h2"`,
//! and the setting withheld when turned off.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::tls::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::model::{Policy, Timeout};
use hawser::proxy::ProxyConfig;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An HTTP/2 connection over `io`, after one plain request so that the server's SETTINGS
/// (and with them `SETTINGS_ENABLE_CONNECT_PROTOCOL`) have arrived.
async fn h2<I>(io: I, authority: &str) -> SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    tokio::spawn(connection);
    let warm_up = Request::get(format!("{authority}/warm-up")).body(Empty::new()).unwrap();
    sender.send_request(warm_up).await.unwrap();
    sender
}

async fn h2c(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    h2(TcpStream::connect(addr).await.unwrap(), "http://a.test").await
}

/// Opens a WebSocket as a stream of `sender`'s connection; `Err` carries the refusal status.
async fn open(
    sender: &mut SendRequest<Empty<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<H2Ws, StatusCode> {
    let mut req = Request::builder().method(Method::CONNECT).uri(url).header("sec-websocket-version", "13");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Empty::new()).unwrap();
    req.extensions_mut().insert(Protocol::from_static("websocket"));
    let response = sender.send_request(req).await.unwrap();
    if response.status() != StatusCode::OK {
        return Err(response.status());
    }
    assert_eq!(response.version(), http::Version::HTTP_2);
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(config)).await)
}

async fn echoed(ws: &mut H2Ws, message: Message) {
    ws.send(message.clone()).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), message);
}

#[tokio::test]
async fn websockets_as_streams_of_one_h2c_connection() {
    let backend = echo("e").await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut sender = h2c(proxy.addr).await;
    let mut first = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    let mut second = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    echoed(&mut first, Message::text("hello over h2")).await;
    echoed(&mut second, Message::binary(vec![0u8, 1, 2, 255])).await;
    // Larger than HTTP/2's flow-control windows: WINDOW_UPDATEs must follow the tunnel's reads.
    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    echoed(&mut first, Message::binary(big)).await;
    first.send(Message::Ping(Bytes::from_static(b"are you there"))).await.unwrap();
    assert_eq!(first.next().await.unwrap().unwrap(), Message::Pong(Bytes::from_static(b"are you there")));
    // The client closes with a code; the backend returns it; the stream ends.
    let bye = CloseFrame { code: CloseCode::from(4001), reason: "client bye".into() };
    first.close(Some(bye.clone())).await.unwrap();
    assert_eq!(first.next().await.unwrap().unwrap(), Message::Close(Some(bye)));
    assert!(first.next().await.is_none());
    drop(first);
    // The other stream of the same connection carries on.
    echoed(&mut second, Message::text("still here")).await;
    let text = metrics_containing(&proxy, "hawser_websocket_closes_total{").await;
    assert!(
        text.contains(r#"code="4001",initiator="client",protocol="h2""#),
        "{}",
        text.lines().filter(|l| l.contains("websocket_closes")).collect::<Vec<_>>().join("\n")
    );
    assert!(text.contains(r#"hawser_upgrades_total{route="default/r",reason="upgraded",protocol="h2"} 2"#));
}

#[tokio::test]
async fn the_backend_closes_with_its_code() {
    let backend = raw_backend(|stream| async move {
        // The connection's warm-up request is no WebSocket.
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
        let frame = CloseFrame { code: CloseCode::from(4002), reason: "server bye".into() };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        while ws.next().await.is_some() {}
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut sender = h2c(proxy.addr).await;
    let mut ws = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4002, "server bye"))
        }
        other => panic!("expected the backend's close, got {other:?}"),
    }
    assert!(ws.next().await.is_none());
    drop(ws);
    let text = metrics_containing(&proxy, r#"code="4002",initiator="backend",protocol="h2""#).await;
    assert!(text.contains("hawser_websocket_messages_total{"));
}

#[tokio::test]
async fn origin_and_budgets_apply_to_h2_streams() {
    let backend = echo("e").await;
    let policy = Policy {
        allowed_origins: vec!["https://chat.example.com".into()],
        max_connections: Some(1),
        ..Policy::default()
    };
    let proxy = TestProxy::start(simple_table(&[backend.addr], policy)).await;
    let mut sender = h2c(proxy.addr).await;
    let evil = [("origin", "https://evil.example")];
    assert_eq!(open(&mut sender, "http://a.test/chat", &evil).await.err(), Some(StatusCode::FORBIDDEN));
    let good = [("origin", "https://chat.example.com")];
    let mut held = open(&mut sender, "http://a.test/chat", &good).await.unwrap();
    assert_eq!(
        open(&mut sender, "http://a.test/chat", &good).await.err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    echoed(&mut held, Message::text("the first one works")).await;
    metrics_containing(&proxy, r#"reason="origin_forbidden",protocol="h2""#).await;
}

#[tokio::test]
async fn plain_connect_and_other_protocols_are_refused() {
    let backend = echo("e").await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut sender = h2c(proxy.addr).await;
    let mut req =
        Request::builder().method(Method::CONNECT).uri("http://a.test/x").body(Empty::new()).unwrap();
    req.extensions_mut().insert(Protocol::from_static("connect-udp"));
    assert_eq!(sender.send_request(req).await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn wss_over_h2_with_tls_and_alpn() {
    let backend = echo("e").await;
    let a = cert(&["a.test"]);
    let yaml = [
        service_yaml("echo", backend.addr),
        secret_yaml("a-tls", &a),
        "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {name: chat}\nspec:\n  hostnames: [a.test]\n  tls: {secretName: a-tls}\n  rules:\n  - backends: [{name: echo, port: http}]\n".to_owned(),
    ]
    .join("---\n");
    let proxy = TestProxy::start(build_table(&yaml)).await;
    let stream = tls_connect(proxy.tls_addr, "a.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2(stream, "https://a.test").await;
    let mut ws =
        open(&mut sender, "https://a.test/chat", &[("sec-websocket-protocol", "chat.v1")]).await.unwrap();
    echoed(&mut ws, Message::text("secure and multiplexed")).await;
    ws.close(None).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
}

#[tokio::test]
async fn turned_off_the_setting_is_not_offered() {
    let backend = echo("e").await;
    let config = ProxyConfig { extended_connect: false, ..ProxyConfig::default() };
    let proxy = TestProxy::with_config(simple_table(&[backend.addr], Policy::default()), config).await;
    let mut sender = h2c(proxy.addr).await;
    let mut req =
        Request::builder().method(Method::CONNECT).uri("http://a.test/chat").body(Empty::new()).unwrap();
    req.extensions_mut().insert(Protocol::from_static("websocket"));
    // The client refuses to send what the server did not offer (RFC 8441 §4).
    assert!(sender.send_request(req).await.is_err());
}

#[tokio::test]
async fn the_lifecycle_applies_to_h2_streams() {
    let backend = echo("e").await;
    let policy = Policy { idle_timeout: Timeout::After(ms(300)), ..Policy::default() };
    let proxy = TestProxy::start(simple_table(&[backend.addr], policy)).await;
    let mut sender = h2c(proxy.addr).await;
    let mut ws = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    echoed(&mut ws, Message::text("then silence")).await;
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1001, "idle timeout"))
        }
        other => panic!("expected hawser's close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reset_stream_ends_the_backend_connection_and_a_dead_backend_ends_the_stream() {
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let backend = raw_backend(move |stream| {
        let ended = ended_tx.clone();
        async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
            while let Some(Ok(message)) = ws.next().await {
                if message == Message::text("drop dead") {
                    return; // TCP closes without a close frame
                }
                if message.is_text() {
                    ws.send(message).await.unwrap();
                }
            }
            let _ = ended.send(());
        }
    })
    .await;
    let proxy = TestProxy::start(simple_table(&[backend.addr], Policy::default())).await;
    let mut sender = h2c(proxy.addr).await;
    // The client abandons its stream (RST_STREAM): the backend's connection ends.
    let mut ws = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    echoed(&mut ws, Message::text("hello")).await;
    drop(ws);
    tokio::time::timeout(std::time::Duration::from_secs(5), ended.recv()).await.unwrap();
    // The backend dies: the client's stream ends, and the connection serves on.
    let mut ws = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    ws.send(Message::text("drop dead")).await.unwrap();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.unwrap();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    let mut again = open(&mut sender, "http://a.test/chat", &[]).await.unwrap();
    echoed(&mut again, Message::text("the connection lives on")).await;
}
