//! Test harness: echo backends, custom backends and an in-process proxy, all on 127.0.0.1:0,
//! plus small constructors for routing tables and real HTTP / WebSocket clients.
#![allow(dead_code, clippy::unwrap_used)]

pub mod process;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use hawser::echo::SeenRequest;
use hawser::handle::TableHandle;
use hawser::metrics::Metrics;
use hawser::model::{Backend, Endpoint, HostMatch, PathMatch, Policy, Route, RoutingTable, VirtualHost};
use hawser::proxy::{Proxy, ProxyConfig};

/// A server task that stops when this is dropped.
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn stop_signal() -> (oneshot::Sender<()>, impl Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// A `hawser echo` backend named `name`.
pub async fn echo(name: &str) -> Server {
    let (listener, addr) = listen().await;
    let (stop, stopped) = stop_signal();
    let name = name.to_owned();
    tokio::spawn(async move { hawser::echo::serve(listener, &name, stopped).await });
    Server { addr, _stop: stop }
}

/// A backend answering every request with `handler`.
pub async fn backend<F, Fut>(handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>> + Send + 'static,
{
    let (listener, addr) = listen().await;
    let (stop, stopped) = stop_signal();
    tokio::spawn(async move {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted.unwrap().0,
                () = &mut stopped => return,
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Server { addr, _stop: stop }
}

/// A raw TCP server: `handler` gets every accepted connection.
pub async fn raw_backend<F, Fut>(handler: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = listen().await;
    let (stop, stopped) = stop_signal();
    tokio::spawn(async move {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                accepted = listener.accept() => { tokio::spawn(handler(accepted.unwrap().0)); }
                () = &mut stopped => return,
            }
        }
    });
    Server { addr, _stop: stop }
}

/// An address where nothing listens (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    let (listener, addr) = listen().await;
    drop(listener);
    addr
}

/// A proxy serving `table` on 127.0.0.1:0, in clear text (`addr`) and TLS (`tls_addr`).
pub struct TestProxy {
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub table: Arc<TableHandle>,
    pub proxy: Arc<Proxy>,
    pub metrics: Arc<Metrics>,
    _stop: (oneshot::Sender<()>, oneshot::Sender<()>),
}

impl TestProxy {
    pub async fn start(table: RoutingTable) -> Self {
        Self::with_config(table, ProxyConfig::default()).await
    }

    pub async fn with_config(table: RoutingTable, config: ProxyConfig) -> Self {
        let handle = Arc::new(TableHandle::new());
        handle.publish(table);
        let metrics = Arc::new(Metrics::new());
        let proxy = Proxy::new(handle.clone(), metrics.clone(), config);
        let (listener, addr) = listen().await;
        let (tls_listener, tls_addr) = listen().await;
        let (stop, stopped) = stop_signal();
        let (tls_stop, tls_stopped) = stop_signal();
        let acceptor = hawser::proxy::tls::acceptor(handle.clone()).unwrap();
        let grace = Duration::from_secs(1);
        let deadline = |stopped| async move {
            stopped.await;
            tokio::time::Instant::now() + grace
        };
        tokio::spawn(hawser::proxy::serve(listener, None, proxy.clone(), deadline(stopped)));
        tokio::spawn(hawser::proxy::serve(
            tls_listener,
            Some(acceptor),
            proxy.clone(),
            deadline(tls_stopped),
        ));
        Self { addr, tls_addr, table: handle, proxy, metrics, _stop: (stop, tls_stop) }
    }

    pub fn publish(&self, table: RoutingTable) -> u64 {
        self.table.publish(table)
    }
}

// ---- tables ----

pub fn endpoints(addrs: &[SocketAddr]) -> Vec<Endpoint> {
    addrs.iter().map(|&addr| Endpoint { addr, weight: 1 }).collect()
}

pub fn prefix_route(name: &str, path: &str, addrs: &[SocketAddr], policy: Policy) -> Route {
    Route::new(name, PathMatch::Prefix(path.into()), Backend::new(endpoints(addrs)), policy)
}

pub fn table(host: &str, routes: Vec<Route>) -> RoutingTable {
    RoutingTable::new(vec![VirtualHost::new(HostMatch::parse(host), routes)])
}

/// The table `hawser` builds from these manifests (any failure to parse panics).
pub fn build_table(yaml: &str) -> RoutingTable {
    let objects = hawser::source::parse_documents(yaml).unwrap();
    hawser::translate::build(
        &hawser::snapshot::Snapshot::new(objects),
        &hawser::translate::BuildConfig::default(),
    )
    .table
}

/// A selector-less Service `name` (port `http` 80) with one EndpointSlice pointing at `backend`.
pub fn service_yaml(name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"{}\"]}}]\n",
        backend.port(),
        backend.ip()
    )
}

/// One catch-all host with one `/` route to `addrs`.
pub fn simple_table(addrs: &[SocketAddr], policy: Policy) -> RoutingTable {
    table("*", vec![prefix_route("default/r", "/", addrs, policy)])
}

// ---- clients ----

/// One HTTP/1.1 connection to `addr`.
pub async fn http1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection.with_upgrades());
    sender
}

/// A GET with `Host: host` on a new connection; the whole answer.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    request(addr, Request::get(path).header("host", host).body(Full::default()).unwrap()).await
}

/// The status of a GET, or `None` when the connection was refused or closed without one.
pub async fn try_get(addr: SocketAddr, host: &str, path: &str) -> Option<StatusCode> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    let req = Request::get(path).header("host", host).body(Full::<Bytes>::default()).ok()?;
    Some(sender.send_request(req).await.ok()?.status())
}

pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let mut sender = http1(addr).await;
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

/// What the echo backend saw, from a 200 answer.
pub fn seen(body: &Bytes) -> SeenRequest {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not echo JSON ({e}): {}", String::from_utf8_lossy(body)))
}

pub type Ws = WebSocketStream<TcpStream>;

/// A WebSocket handshake through `addr` for `ws://host/path`, with extra headers.
pub async fn ws_connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{host}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    client_async_with_config(request, stream, Some(config)).await
}

/// A WebSocket that must open; returns it with the name of the echo that took it.
pub async fn ws_open(addr: SocketAddr, host: &str, path: &str) -> (Ws, String) {
    let (ws, response) = ws_connect(addr, host, path, &[]).await.unwrap();
    let name =
        response.headers().get("x-echo-name").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (ws, name)
}

/// The status of a refused WebSocket handshake.
pub async fn ws_refused(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response<Option<Vec<u8>>> {
    match ws_connect(addr, host, path, headers).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the handshake succeeded"),
    }
}

pub fn empty_body() -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Empty::new().boxed()
}

pub fn full_body(content: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Full::new(content.into()).boxed()
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 5 s.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..250 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The proxy's metrics once they contain `needle`.
pub async fn metrics_containing(proxy: &TestProxy, needle: &str) -> String {
    eventually(needle, || Some(proxy.metrics.render(&proxy.table)).filter(|text| text.contains(needle))).await
}

/// `hawser_spliced_bytes_total` as the proxy reports it (the process's: tests running side by
/// side can only add to it).
pub fn spliced_bytes(proxy: &TestProxy) -> u64 {
    let text = proxy.metrics.render(&proxy.table);
    let line = text.lines().find(|line| line.starts_with("hawser_spliced_bytes_total "));
    line.and_then(|line| line.split(' ').nth(1))
        .and_then(|n| n.parse().ok())
        .expect("hawser_spliced_bytes_total")
}

/// Polls the async `check` every 20 ms until it is true, for at most 10 s.
pub async fn eventually_async<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 10 s");
}

/// A fresh, empty directory under the system temp dir.
pub fn tempdir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hawser-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
