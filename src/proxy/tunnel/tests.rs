//! The tunnel between real loopback sockets (and in-memory pipes under paused time): bytes in
//! order, half-closes, clocks, and for WebSockets the close frames, pings and limits, checked
//! with a strict WebSocket client and server on either end.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;

use super::*;
use tokio::time::Instant;

use crate::proxy::drain::{Cause, Drains, Selector, Subscription};
use crate::proxy::frames::Peer;

/// In-memory pipes are never spliced.
impl splice::Spliceable for tokio::io::DuplexStream {}

/// What a test holds of a tunnel's signals.
struct Control {
    drains: Arc<Drains>,
}

fn signals() -> (Subscription, Control) {
    let drains = Arc::new(Drains::default());
    let subscription = drains.subscribe(Arc::from("r"), ([127, 0, 0, 1], 1).into());
    (subscription, Control { drains })
}

/// Runs a tunnel as its own task, holding its subscription as `Tunnel::run` does.
fn spawn_run<C, B>(
    client: C,
    backend: B,
    limits: Limits,
    signals: Subscription,
) -> tokio::task::JoinHandle<Closed>
where
    C: AsyncRead + AsyncWrite + Spliceable + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Spliceable + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut signals = signals;
        run(client, backend, limits, &mut signals, Early::default()).await
    })
}

/// A connected pair of loopback sockets: (ours, the peer's).
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (accepted.expect("accept").0, connected.expect("connect"))
}

/// A tunnel between two socket pairs: (client peer, backend peer, the running tunnel, control).
async fn tunnel(limits: Limits) -> (TcpStream, TcpStream, tokio::task::JoinHandle<Closed>, Control) {
    let (client, client_peer) = socket_pair().await;
    let (backend, backend_peer) = socket_pair().await;
    let (signals, control) = signals();
    let task = spawn_run(client, backend, limits, signals);
    (client_peer, backend_peer, task, control)
}

/// A WebSocket tunnel with a strict client and server (tokio-tungstenite) on its two ends.
async fn websocket(
    limits: WebSocketLimits,
    idle: Option<Duration>,
) -> (WebSocketStream<TcpStream>, WebSocketStream<TcpStream>, tokio::task::JoinHandle<Closed>, Control) {
    let limits = Limits { idle, max_duration: None, websocket: Some(limits) };
    let (client, backend, task, control) = tunnel(limits).await;
    let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    let backend = WebSocketStream::from_raw_socket(backend, Role::Server, None).await;
    (client, backend, task, control)
}

/// The close frame a peer received, reading (and answering pings) until it comes.
async fn close_of(ws: &mut WebSocketStream<TcpStream>) -> (WsCode, String) {
    let wait = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => return Some((frame.code, frame.reason.to_string())),
                Ok(Message::Close(None)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        None
    });
    wait.await.expect("no close within 5 s").expect("ended without a close frame")
}

#[tokio::test]
async fn a_slow_reader_gets_every_byte_in_order() {
    let (mut client, mut backend, task, _control) = tunnel(Limits::default()).await;
    let sent: Vec<u8> = (0..8 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            client.write_all(&sent).await.expect("write");
            client.shutdown().await.expect("shutdown");
            client
        })
    };
    // Let the tunnel fill the backend's socket buffers and keep bytes pending.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut received = Vec::new();
    backend.read_to_end(&mut received).await.expect("read");
    assert!(received == sent, "bytes lost or reordered");
    drop(backend);
    drop(writer.await.expect("writer"));
    let closed = task.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::Client);
    assert_eq!(closed.totals.client_to_backend, sent.len() as u64);
}

#[tokio::test]
async fn a_half_close_is_passed_on_and_the_other_direction_keeps_flowing() {
    let (mut client, mut backend, task, _control) = tunnel(Limits::default()).await;
    client.write_all(b"last words").await.expect("write");
    client.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    backend.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"last words");
    backend.write_all(b"reply").await.expect("write");
    drop(backend);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.expect("read");
    assert_eq!(reply, b"reply");
    let closed = task.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::Client);
    assert_eq!((closed.totals.client_to_backend, closed.totals.backend_to_client), (10, 5));
}

#[tokio::test]
async fn byte_tunnels_end_at_once_on_idle_and_drains() {
    let idle = Limits { idle: Some(Duration::from_millis(150)), ..Limits::default() };
    let (mut client, mut backend, task, _control) = tunnel(idle).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(75)).await;
        client.write_all(b"x").await.expect("write");
        backend.read_exact(&mut [0u8; 1]).await.expect("read");
    }
    assert!(!task.is_finished(), "activity must postpone the idle timeout");
    assert_eq!(task.await.expect("tunnel").reason, CloseReason::Idle);
    let (_client, _backend, task, control) = tunnel(Limits::default()).await;
    control.drains.order(Cause::Shutdown, Selector::All, Duration::ZERO, None);
    assert_eq!(task.await.expect("tunnel").reason, CloseReason::Drained(Cause::Shutdown));
}

#[tokio::test]
async fn idle_closes_a_websocket_with_1001_to_both_sides() {
    let (mut client, mut backend, task, _control) =
        websocket(WebSocketLimits::default(), Some(Duration::from_millis(200))).await;
    client.send(Message::text("hello")).await.expect("send");
    assert_eq!(backend.next().await.expect("message").expect("ok"), Message::text("hello"));
    let (to_client, to_backend) = tokio::join!(close_of(&mut client), close_of(&mut backend));
    assert_eq!(to_client, (WsCode::Away, "idle timeout".to_owned()));
    assert_eq!(to_backend, (WsCode::Away, "idle timeout".to_owned()));
    let closed = task.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::Idle);
    let websocket = closed.websocket.expect("websocket");
    assert_eq!(websocket.close.map(|c| (c.code, c.by)), Some((Some(1001), Initiator::Hawser)));
    assert_eq!(websocket.messages, (1, 0));
}

#[tokio::test]
async fn a_drain_order_closes_with_its_code_and_peers_closes_are_recorded() {
    let (mut client, mut backend, task, control) = websocket(WebSocketLimits::default(), None).await;
    control.drains.order(Cause::EndpointGone, Selector::All, Duration::ZERO, None);
    let (to_client, to_backend) = tokio::join!(close_of(&mut client), close_of(&mut backend));
    assert_eq!(to_client.0, WsCode::Restart);
    assert_eq!(to_backend.0, WsCode::Away);
    assert_eq!(task.await.expect("tunnel").reason, CloseReason::Drained(Cause::EndpointGone));

    // A close the client starts passes through untouched and is recorded as the client's.
    let (mut client, mut backend, task, _control) = websocket(WebSocketLimits::default(), None).await;
    client
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: WsCode::Library(4000),
            reason: "bye".into(),
        }))
        .await
        .expect("close");
    assert_eq!(close_of(&mut backend).await, (WsCode::Library(4000), "bye".to_owned()));
    drop(backend);
    while client.next().await.is_some() {}
    drop(client);
    let closed = task.await.expect("tunnel");
    let close = closed.websocket.and_then(|w| w.close).expect("close");
    assert_eq!((close.code, close.by), (Some(4000), Initiator::Client));
}

#[tokio::test]
async fn pings_keep_answering_peers_and_find_dead_ones() {
    let ping = Ping { interval: Duration::from_millis(100), timeout: Duration::from_millis(150) };
    let limits = WebSocketLimits { ping: Some(ping), max_message: None };
    let (mut client, mut backend, task, _control) = websocket(limits, Some(Duration::from_secs(60))).await;
    // Both peers answer pings (tungstenite does, while it reads): the tunnel lives on, and
    // hawser's pongs reach neither side.
    let until = tokio::time::Instant::now() + Duration::from_millis(700);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, backend.next()).await {
            seen.push(message);
        }
        (backend, seen)
    });
    let mut client_seen = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, client.next()).await {
        client_seen.push(message);
    }
    let (backend, backend_seen) = reader.await.expect("reader");
    assert!(!task.is_finished(), "answering peers were cut");
    for seen in [&client_seen, &backend_seen] {
        assert!(seen.iter().all(|m| matches!(m, Message::Ping(_))), "{seen:?}");
        assert!(!seen.is_empty(), "no ping arrived");
    }
    // The client stops reading (so it answers nothing): found dead, the backend told.
    let mut backend = backend;
    let started = Instant::now();
    let to_backend = close_of(&mut backend).await;
    assert_eq!(to_backend.0, WsCode::Away);
    let closed = task.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::PingTimeout(Peer::Client));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(client);
}

#[tokio::test]
async fn a_message_over_the_limit_gets_1009_and_the_other_side_1001() {
    let limits = WebSocketLimits { ping: None, max_message: Some(1000) };
    let (mut client, mut backend, task, _control) = websocket(limits, None).await;
    client.send(Message::binary(vec![1u8; 900])).await.expect("send");
    assert_eq!(backend.next().await.expect("message").expect("ok").len(), 900);
    client.send(Message::binary(vec![2u8; 1001])).await.expect("send");
    let (to_client, to_backend) = tokio::join!(close_of(&mut client), close_of(&mut backend));
    assert_eq!(to_client.0, WsCode::Size);
    assert_eq!(to_backend.0, WsCode::Away);
    assert_eq!(task.await.expect("tunnel").reason, CloseReason::MessageTooBig(Peer::Client));
}

#[tokio::test]
async fn a_broken_frame_gets_1002_and_nothing_after_it_is_forwarded() {
    let limits = Limits { websocket: Some(WebSocketLimits::default()), ..Limits::default() };
    let (mut client, backend, task, _control) = tunnel(limits).await;
    let mut backend = WebSocketStream::from_raw_socket(backend, Role::Server, None).await;
    // An unmasked text frame from a client breaks RFC 6455 §5.1.
    client.write_all(&[0x81, 0x02, b'h', b'i']).await.expect("write");
    assert_eq!(close_of(&mut backend).await.0, WsCode::Away);
    let mut answer = [0u8; 4];
    client.read_exact(&mut answer).await.expect("close frame");
    assert_eq!(answer, [0x88, 16, 0x03, 0xEA], "1002 to the client, unmasked");
    let closed = task.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::ProtocolError(Peer::Client));
}

#[tokio::test(start_paused = true)]
async fn idle_tunnel_closes_after_the_idle_timeout() {
    let (client, _client_peer) = duplex(64);
    let (backend, _backend_peer) = duplex(64);
    let limits = Limits { idle: Some(Duration::from_secs(30)), ..Limits::default() };
    let started = Instant::now();
    let (signals, _control) = signals();
    let mut signals = signals;
    let closed = run(client, backend, limits, &mut signals, Early::default()).await;
    assert_eq!(closed.reason, CloseReason::Idle);
    assert_eq!(started.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn activity_postpones_the_idle_timeout() {
    let (client, mut client_peer) = duplex(64);
    let (backend, mut backend_peer) = duplex(64);
    let limits = Limits { idle: Some(Duration::from_secs(30)), ..Limits::default() };
    let (signals, _control) = signals();
    let tunnel = spawn_run(client, backend, limits, signals);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        client_peer.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        backend_peer.read_exact(&mut got).await.expect("read");
    }
    let started = Instant::now();
    let closed = tunnel.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::Idle);
    assert_eq!(started.elapsed().as_secs(), 30);
    assert_eq!(closed.totals.client_to_backend, 20);
}

#[tokio::test(start_paused = true)]
async fn max_duration_closes_a_busy_tunnel() {
    let (client, mut client_peer) = duplex(64);
    let (backend, mut backend_peer) = duplex(64);
    let limits = Limits {
        idle: Some(Duration::from_secs(5)),
        max_duration: Some(Duration::from_secs(12)),
        websocket: None,
    };
    let (signals, _control) = signals();
    let tunnel = spawn_run(client, backend, limits, signals);
    let chatter = tokio::spawn(async move {
        let mut got = [0u8; 1];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if client_peer.write_all(b"x").await.is_err() || backend_peer.read_exact(&mut got).await.is_err()
            {
                return;
            }
        }
    });
    assert_eq!(tunnel.await.expect("tunnel").reason, CloseReason::MaxDuration);
    chatter.abort();
}

#[tokio::test]
async fn close_by_either_side_and_byte_counts() {
    let (client, mut client_peer) = duplex(1024);
    let (backend, mut backend_peer) = duplex(1024);
    let (signals, _control) = signals();
    let tunnel = spawn_run(client, backend, Limits::default(), signals);
    client_peer.write_all(b"hello").await.expect("write");
    let mut got = [0u8; 5];
    backend_peer.read_exact(&mut got).await.expect("read");
    backend_peer.write_all(b"hi").await.expect("write");
    client_peer.read_exact(&mut got[..2]).await.expect("read");
    drop(backend_peer);
    // The backend's end of stream reaches the client as a half-close first.
    assert_eq!(client_peer.read(&mut got).await.expect("eof"), 0);
    client_peer.shutdown().await.expect("shutdown");
    let closed = tunnel.await.expect("tunnel");
    assert_eq!(closed.reason, CloseReason::Backend);
    assert_eq!((closed.totals.client_to_backend, closed.totals.backend_to_client), (5, 2));
}

/// Bytes spliced so far by every tunnel of the test process (tests run side by side, so only
/// a lower bound on what one test spliced can be read from it).
fn spliced() -> u64 {
    spliced_bytes().get()
}

#[tokio::test]
async fn a_byte_tunnels_bursts_are_spliced_intact() {
    let (mut client, mut backend, task, _control) = tunnel(Limits::default()).await;
    let sent: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 253) as u8).collect();
    let before = spliced();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move { client.write_all(&sent).await.map(|()| client) })
    };
    let mut received = vec![0; sent.len()];
    backend.read_exact(&mut received).await.expect("read");
    assert!(received == sent, "bytes lost or reordered");
    assert!(spliced() - before >= sent.len() as u64 / 2, "the burst was copied, not spliced");
    drop((writer.await.expect("writer"), backend));
    assert_eq!(task.await.expect("tunnel").totals.client_to_backend, sent.len() as u64);
}

#[tokio::test]
async fn large_websocket_messages_are_spliced_both_ways_and_arrive_whole() {
    let limits = WebSocketLimits { ping: None, max_message: Some(1 << 20) };
    let (mut client, mut backend, task, _control) = websocket(limits, None).await;
    let before = spliced();
    for round in 0..8u8 {
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8 ^ round).collect();
        client.send(Message::binary(message.clone())).await.expect("send");
        let Some(Ok(Message::Binary(got))) = backend.next().await else { panic!("no message") };
        assert!(got[..] == message[..], "message {round} changed on its way up");
        backend.send(Message::binary(got)).await.expect("echo");
        let Some(Ok(Message::Binary(back))) = client.next().await else { panic!("no echo") };
        assert!(back[..] == message[..], "message {round} changed on its way down");
    }
    assert!(spliced() - before >= 8 * 2 * 100_000, "large payloads were copied, not spliced");
    client.close(None).await.expect("close");
    assert!(matches!(backend.next().await, Some(Ok(Message::Close(_)))));
    drop(backend);
    while client.next().await.is_some() {}
    drop(client);
    let closed = task.await.expect("tunnel");
    assert_eq!(closed.websocket.map(|w| w.messages), Some((8, 8)));
}

/// A masked binary frame from a client (the zero key: masking that changes nothing).
fn client_frame_header(payload: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&payload.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    header
}

#[tokio::test]
async fn a_close_frame_waits_for_the_end_of_a_spliced_payload() {
    let (mut client, backend, task, control) =
        tunnel(Limits { websocket: Some(WebSocketLimits::default()), ..Limits::default() }).await;
    let mut backend = WebSocketStream::from_raw_socket(backend, Role::Server, None).await;
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 239) as u8).collect();
    client.write_all(&client_frame_header(payload.len() as u64)).await.expect("header");
    client.write_all(&payload[..150_000]).await.expect("first half");
    // The tunnel is inside the frame's payload (spliced) when the drain order comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    control.drains.order(Cause::EndpointGone, Selector::All, Duration::ZERO, None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(&payload[150_000..]).await.expect("second half");
    let Some(Ok(Message::Binary(got))) = backend.next().await else { panic!("no whole message") };
    assert!(got[..] == payload[..], "the message was cut or changed");
    assert_eq!(close_of(&mut backend).await.0, WsCode::Away);
    drop(backend);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
    assert_eq!(rest.first(), Some(&0x88), "the client gets a close frame");
    assert_eq!(task.await.expect("tunnel").reason, CloseReason::Drained(Cause::EndpointGone));
}

/// An idle tunnel's task must stay small: it is most of what each one costs. (Arguments of an
/// async fn are stored twice in its future; `run` avoids that, and this catches a return of it.)
/// The task around it (`Tunnel::run`, some 200 bytes more, and tokio's 80-byte header and
/// trailer, in 128-byte steps) fits 1,152 bytes as long as this stays under 840.
#[tokio::test]
async fn a_tunnels_future_is_small() {
    let (client, _client_peer) = socket_pair().await;
    let (backend, _backend_peer) = socket_pair().await;
    let (signals, _control) = signals();
    let mut signals = signals;
    let future = run(client, backend, Limits::default(), &mut signals, Early::default());
    assert!(std::mem::size_of_val(&future) <= 840, "{} bytes", std::mem::size_of_val(&future));
}
