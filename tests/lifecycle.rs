//! How WebSockets end, through the real binary: SIGTERM drains every tunnel with 1001 spread
//! over the drain window while in-flight requests finish; an endpoint that leaves its
//! EndpointSlices gets its tunnels closed with 1012; `POST /drain` does the same on demand;
//! pings keep a tunnel alive through a middlebox that cuts silent connections; rebalancing
//! spreads tunnels over endpoints that joined; and the metrics say what happened.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{ANY_PORTS, Process};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse as WsErrorResponse, Request as WsRequest, Response as WsResponse,
};

/// Close codes a backend received, in order.
type Codes = Arc<Mutex<Vec<u16>>>;

/// A WebSocket echo backend named `name` (in `X-Echo-Name` of its 101) that records the close
/// codes it receives; plain requests get a 200 after `delay_ms` from an `X-Delay` header.
async fn backend(name: &'static str) -> (SocketAddr, Codes) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let codes: Codes = Arc::default();
    let recorded = codes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let codes = recorded.clone();
            tokio::spawn(serve_one(stream, name, codes));
        }
    });
    (addr, codes)
}

async fn serve_one(stream: TcpStream, name: &'static str, codes: Codes) {
    let mut head = [0u8; 4];
    if stream.peek(&mut head).await.is_err() {
        return;
    }
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    fn tag(name: &'static str) -> impl FnOnce(&WsRequest, WsResponse) -> Result<WsResponse, WsErrorResponse> {
        move |_, mut response| {
            response.headers_mut().insert("x-echo-name", name.parse().unwrap());
            Ok(response)
        }
    }
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, tag(name)).await else { return };
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Close(frame) = &message {
            codes.lock().unwrap().push(frame.as_ref().map_or(1005, |f| u16::from(f.code)));
        } else if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// A Service `name` with one EndpointSlice per backend (they listen on different ports).
fn service(name: &str, backends: &[SocketAddr]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n"
    );
    for (i, addr) in backends.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{i}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"{}\"]}}]\n",
            addr.port(),
            addr.ip()
        ));
    }
    yaml
}

/// A WebSocketRoute for `chat.test` to Service `chat` with `extra` rule fields.
fn route(extra: &str) -> String {
    format!(
        "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{name: chat}}\nspec:\n  hostnames: [chat.test]\n  rules:\n  - backends: [{{name: chat, port: http}}]\n{extra}"
    )
}

/// hawser on `dir` with `flags`; waits until it is ready.
async fn start(dir: &Path, flags: &[&str]) -> Process {
    let args = [&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()], flags].concat();
    let hawser = Process::start(&args, 3);
    let admin = hawser.addr("admin");
    eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
    hawser
}

/// Waits for the first close frame on `ws` (within `limit`); `None` for an end without one.
async fn close_code(ws: &mut Ws, limit: Duration) -> Option<u16> {
    let wait = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(error) => panic!("the tunnel ended with an error: {error}"),
            }
        }
        None
    };
    tokio::time::timeout(limit, wait).await.expect("no close frame in time")
}

async fn metrics(admin: SocketAddr) -> String {
    String::from_utf8(get(admin, "admin", "/metrics").await.2.to_vec()).unwrap()
}

/// Waits (5 s at most) for `/metrics` to hold `line`: a tunnel is counted once its close
/// handshake is over.
async fn metrics_with(admin: SocketAddr, line: &str) -> String {
    let started = Instant::now();
    loop {
        let text = metrics(admin).await;
        if text.contains(line) {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{line}\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_tunnel_with_1001_over_the_window() {
    let (chat, codes) = backend("chat").await;
    let slow = backend_with_delay().await;
    let dir = tempdir();
    let manifests = format!(
        "{}---\n{}---\n{}---\n{}",
        service("chat", &[chat]),
        route(""),
        service_yaml("slow", slow),
        slow_ingress()
    );
    std::fs::write(dir.join("all.yaml"), manifests).unwrap();
    let mut hawser = start(&dir, &["--shutdown-grace", "8s", "--drain-window", "2s"]).await;
    let proxy = hawser.addr("proxy");
    let mut tunnels = Vec::new();
    for _ in 0..200 {
        tunnels.push(ws_open(proxy, "chat.test", "/").await.0);
    }
    // A request in flight when the signal comes must still finish.
    let in_flight = tokio::spawn(async move {
        let req = http::Request::get("/").header("host", "slow.test").header("x-delay", "1500");
        request(proxy, req.body(http_body_util::Full::default()).unwrap()).await.0
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    let waiter = std::thread::spawn(move || hawser.terminate());
    let watchers: Vec<_> = tunnels
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let code = close_code(&mut ws, Duration::from_secs(6)).await;
                let arrived = signalled.elapsed();
                // After the close handshake the connection ends cleanly (no reset).
                while let Some(next) = ws.next().await {
                    assert!(next.is_ok(), "{next:?}");
                }
                (code, arrived)
            })
        })
        .collect();
    let mut arrivals = Vec::new();
    for watcher in watchers {
        let (code, arrived) = watcher.await.unwrap();
        assert_eq!(code, Some(1001));
        arrivals.push(arrived);
    }
    arrivals.sort();
    let early = arrivals.iter().filter(|t| **t < Duration::from_millis(100)).count();
    assert!(early < 50, "{early} of 200 closes in the first 100 ms: not spread");
    let late = arrivals.iter().filter(|t| **t > Duration::from_millis(1000)).count();
    assert!(late > 50, "only {late} of 200 closes after the first second of a 2 s window");
    assert!(
        *arrivals.last().unwrap() < Duration::from_millis(3500),
        "last close after {:?}",
        arrivals.last()
    );
    assert_eq!(in_flight.await.unwrap(), StatusCode::OK);
    assert!(waiter.join().unwrap().success());
    eventually("the backend's close codes", || (codes.lock().unwrap().len() == 200).then_some(())).await;
    assert!(codes.lock().unwrap().iter().all(|code| *code == 1001), "{:?}", codes.lock().unwrap());
}

/// A backend that answers plain requests after `X-Delay` milliseconds.
async fn backend_with_delay() -> SocketAddr {
    let server = common::backend(|req| async move {
        let delay = req.headers().get("x-delay").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        http::Response::new(full_body("slow"))
    })
    .await;
    let addr = server.addr;
    std::mem::forget(server);
    addr
}

fn slow_ingress() -> String {
    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: slow}\nspec:\n  ingressClassName: hawser\n  rules:\n  - host: slow.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: slow, port: {name: http}}}}\n".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gone_from_its_slices_gets_1012_and_admin_drains_on_demand() {
    let ((a, _), (b, b_codes)) = (backend("a").await, backend("b").await);
    let dir = tempdir();
    std::fs::write(dir.join("chat.yaml"), format!("{}---\n{}", service("chat", &[a, b]), route(""))).unwrap();
    let hawser = start(&dir, &[]).await;
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    let mut on = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let (ws, name) = ws_open(proxy, "chat.test", "/").await;
        if name == "a" { on.0.push(ws) } else { on.1.push(ws) }
    }
    assert!(!on.0.is_empty() && !on.1.is_empty(), "round-robin used both endpoints");
    std::fs::write(dir.join("chat.yaml"), format!("{}---\n{}", service("chat", &[a]), route(""))).unwrap();
    for ws in &mut on.1 {
        assert_eq!(close_code(ws, Duration::from_secs(8)).await, Some(1012));
    }
    eventually("b's close codes", || (b_codes.lock().unwrap().len() == on.1.len()).then_some(())).await;
    for ws in &mut on.0 {
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("still here"));
    }
    let gone = format!(
        "hawser_drained_total{{route=\"wsroute/default/chat/0/0\",cause=\"endpoint_gone\"}} {}",
        on.1.len()
    );
    metrics_with(admin, &gone).await;
    // Admin drain: a's tunnels, on request.
    let drain = http::Request::post(format!("/drain?endpoint={a}&window=0s")).header("host", "admin");
    let (status, _, body) = request(admin, drain.body(http_body_util::Full::default()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8_lossy(&body).trim(), format!("{{\"draining\":{}}}", on.0.len()));
    for ws in &mut on.0 {
        assert_eq!(close_code(ws, Duration::from_secs(5)).await, Some(1012));
    }
    let refused = http::Request::get("/drain?endpoint=x").header("host", "admin");
    assert_eq!(
        request(admin, refused.body(http_body_util::Full::default()).unwrap()).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// A TCP relay in front of `to` that cuts any connection silent in both directions for
/// `idle`, as cloud load balancers do.
async fn middlebox(to: SocketAddr, idle: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut server = TcpStream::connect(to).await.unwrap();
                let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
                loop {
                    tokio::select! {
                        read = client.read(&mut a) => match read {
                            Ok(n @ 1..) => if server.write_all(&a[..n]).await.is_err() { return },
                            _ => return,
                        },
                        read = server.read(&mut b) => match read {
                            Ok(n @ 1..) => if client.write_all(&b[..n]).await.is_err() { return },
                            _ => return,
                        },
                        () = tokio::time::sleep(idle) => return,
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_quiet_tunnel_alive_through_a_middlebox_and_find_dead_clients() {
    let (chat, codes) = backend("chat").await;
    let dir = tempdir();
    let rule = "    pingInterval: 300ms\n    pingTimeout: 400ms\n";
    std::fs::write(dir.join("chat.yaml"), format!("{}---\n{}", service("chat", &[chat]), route(rule)))
        .unwrap();
    let hawser = start(&dir, &[]).await;
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    let through = middlebox(proxy, Duration::from_secs(1)).await;
    let (mut quiet, _) = ws_open(through, "chat.test", "/").await;
    // Reading answers hawser's pings; the application says nothing for 2.5 s.
    let listened = tokio::time::timeout(Duration::from_millis(2500), async {
        while let Some(message) = quiet.next().await {
            assert!(matches!(message, Ok(Message::Ping(_))), "{message:?}");
        }
    })
    .await;
    assert!(listened.is_err(), "the tunnel ended although the client answered every ping");
    quiet.send(Message::text("still open")).await.unwrap();
    assert_eq!(quiet.next().await.unwrap().unwrap(), Message::text("still open"));
    // A client that stops reading answers no ping: found dead, and the backend is told.
    let (dead, _) = ws_open(proxy, "chat.test", "/").await;
    let started = Instant::now();
    eventually("the backend told of the dead client", || (!codes.lock().unwrap().is_empty()).then_some(()))
        .await;
    assert_eq!(codes.lock().unwrap()[0], 1001);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    metrics_with(admin, r#"reason="ping_timeout"} 1"#).await;
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_get_1009_and_the_metrics_say_who_closed() {
    let (chat, codes) = backend("chat").await;
    let dir = tempdir();
    let rule = "    maxMessageBytes: 1024\n";
    std::fs::write(dir.join("chat.yaml"), format!("{}---\n{}", service("chat", &[chat]), route(rule)))
        .unwrap();
    let hawser = start(&dir, &[]).await;
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    let (mut ws, _) = ws_open(proxy, "chat.test", "/").await;
    ws.send(Message::binary(vec![7u8; 1024])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().len(), 1024);
    ws.send(Message::binary(vec![7u8; 1025])).await.unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(5)).await, Some(1009));
    eventually("the backend's 1001", || (codes.lock().unwrap().first() == Some(&1001)).then_some(())).await;
    for line in [
        r#"hawser_websocket_closes_total{route="wsroute/default/chat/0/0",code="1009",initiator="hawser",protocol="h1"} 1"#,
        r#"hawser_tunnels_closed_total{route="wsroute/default/chat/0/0",reason="message_too_big"} 1"#,
        r#"hawser_websocket_messages_total{route="wsroute/default/chat/0/0",direction="client_to_backend",protocol="h1"} 1"#,
    ] {
        metrics_with(admin, line).await;
    }
    // The access log line says how the WebSocket ended.
    let closed = eventually("the access-log line", || hawser.events("tunnel closed").pop()).await;
    assert_eq!(closed["close_code"], 1009, "{closed}");
    assert_eq!(closed["close_initiator"], "hawser", "{closed}");
    assert_eq!(closed["closed_by"], "message_too_big", "{closed}");
    assert_eq!(closed["messages_from_client"], 1, "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalancing_spreads_tunnels_over_endpoints_that_joined() {
    let (a, b, c, d) =
        (backend("a").await.0, backend("b").await.0, backend("c").await.0, backend("d").await.0);
    let dir = tempdir();
    let rule = "    loadBalancing: {strategy: LeastConnections}\n    rebalance: {maxSkew: 1.25, closesPerSecond: 10}\n";
    std::fs::write(dir.join("chat.yaml"), format!("{}---\n{}", service("chat", &[a, b]), route(rule)))
        .unwrap();
    let hawser = start(&dir, &[]).await;
    let (proxy, admin) = (hawser.addr("proxy"), hawser.addr("admin"));
    // 60 clients that reconnect whenever hawser closes their tunnel, counting where they land.
    let landed: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..60)
        .map(|_| {
            let landed = landed.clone();
            tokio::spawn(async move {
                loop {
                    let (mut ws, name) = ws_open(proxy, "chat.test", "/").await;
                    landed.lock().unwrap().push(name);
                    if close_code(&mut ws, Duration::from_secs(60)).await != Some(1012) {
                        return;
                    }
                }
            })
        })
        .collect();
    eventually("60 tunnels", || (landed.lock().unwrap().len() == 60).then_some(())).await;
    let spread = |text: &str| -> Vec<u64> {
        let mut counts: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("hawser_tunnels_active{route=\"wsroute/default/chat/0/0\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        counts.sort();
        counts
    };
    // Least-connections spreads the 60 over a and b about evenly, not always exactly: the
    // surplus is what lies above the limit (mean 15 over four endpoints, × 1.25 = 18).
    let mut before = spread(&metrics(admin).await);
    for _ in 0..100 {
        if before.iter().sum::<u64>() == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = spread(&metrics(admin).await);
    }
    assert_eq!(before.iter().sum::<u64>(), 60, "{before:?}");
    let surplus: u64 = before.iter().map(|&n| n.saturating_sub(18)).sum();
    let started = Instant::now();
    std::fs::write(dir.join("chat.yaml"), format!("{}---\n{}", service("chat", &[a, b, c, d]), route(rule)))
        .unwrap();
    loop {
        let text = metrics(admin).await;
        let counts = spread(&text);
        if counts.len() == 4 && counts.iter().sum::<u64>() == 60 && counts[3] <= 18 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "not rebalanced: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let text = metrics(admin).await;
    let closed: u64 = text
        .lines()
        .find(|l| {
            l.starts_with(r#"hawser_drained_total{route="wsroute/default/chat/0/0",cause="rebalance"}"#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(closed <= surplus, "{closed} closed for a surplus of {surplus} ({before:?})");
    // At 10 a second, the last close comes in round ⌈surplus / 10⌉, a second per round.
    let rounds = u32::try_from(surplus.div_ceil(10)).unwrap();
    let least =
        Duration::from_secs(u64::from(rounds.saturating_sub(1))).saturating_sub(Duration::from_millis(500));
    assert!(took >= least, "{surplus} closes at 10 a second took only {took:?}");
    for client in clients {
        client.abort();
    }
}
