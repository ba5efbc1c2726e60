//! Accepting client connections: the PROXY protocol header when configured, TLS on the HTTPS
//! listener, then HTTP/1.1 or HTTP/2 on the same port (chosen by ALPN, or in clear text by the
//! HTTP/2 preface in the first bytes read), with header limits, a header-read timeout and
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::Proxy;
use super::h1_server::{self, ClientStream};
use super::headers::Client;
use super::prefixed::Prefixed;
use super::proxy_protocol;
use super::request_body::RequestBody;
use crate::accept::accept_until;

/// hyper refuses HTTP/1 read buffers smaller than this.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// The HTTP/2 connection preface (RFC 9113 §3.4): how a prior-knowledge client starts.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every connection of one listener shares.
struct Listener {
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// Set when the listener stops: connections finish their requests and close.
    closing: watch::Sender<bool>,
}

/// Serves `listener` (with TLS when `tls` is given) until `stop` completes with a deadline,
/// then lets in-flight requests finish until that deadline. Upgraded connections are not
/// waited for here: see [`Proxy::drain_tunnels`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    stop: impl Future<Output = Instant>,
) {
    let what = if tls.is_some() { "proxy-tls" } else { "proxy" };
    let (http1, http2) = http_builders(&proxy);
    let shared = Arc::new(Listener { http1, http2, proxy, tls, closing: watch::Sender::new(false) });
    let connections = TaskTracker::new();
    let mut deadline = None;
    let stopped = async { deadline = Some(stop.await) };
    accept_until(listener, what, stopped, |stream, peer| {
        let proxy = &shared.proxy;
        if proxy.connections.get() + proxy.open_tunnels() >= proxy.config.max_connections {
            // Closed at once: the descriptors left are the admin listener's and the live ones'.
            proxy.metrics.connection_rejected("max_connections");
            tracing::debug!(%peer, "connection refused: --max-connections reached");
            return;
        }
        let counted = proxy.connections.open();
        let connection = shared.clone().connection(stream, peer);
        // Boxed: the task is then a pointer wide, and spawning it copies no more than that (the
        // connection's future, some 2 KiB, would be copied several times on its way into a
        // task, and once more when it ends).
        connections.spawn(Box::pin(async move {
            connection.await;
            drop(counted);
        }));
    })
    .await;
    shared.closing.send_replace(true);
    connections.close();
    let deadline = deadline.unwrap_or_else(Instant::now);
    if tokio::time::timeout_at(deadline, connections.wait()).await.is_err() {
        tracing::info!(listener = what, "shutdown grace over with requests still in flight");
    }
}

fn http_builders(proxy: &Proxy) -> (http1::Builder, http2::Builder<TokioExecutor>) {
    let max_header_bytes = proxy.config.max_header_bytes.max(MIN_HEADER_BYTES);
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(proxy.config.header_read_timeout)
        .max_buf_size(max_header_bytes);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new()).max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    if proxy.config.extended_connect {
        // SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3): browsers then open WebSockets as
        // streams of the connection they already have.
        h2.enable_connect_protocol();
    }
    (h1, h2)
}

impl Listener {
    /// One accepted connection: PROXY header, TLS, HTTP. Failures close only this connection.
    async fn connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        // WebSocket frames are small and latency-bound: never hold them back for Nagle.
        let _ = stream.set_nodelay(true);
        let mut client_ip = peer.ip();
        if let Some(timeout) = self.proxy.config.proxy_protocol {
            // Boxed, as TLS below: what only some connections do must not size the task every
            // idle keep-alive connection keeps.
            match Box::pin(proxy_protocol::read_header(&mut stream, timeout)).await {
                Ok(Some(client)) => client_ip = client.ip(),
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%peer, %error, "connection refused");
                    return;
                }
            }
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = Client::new(client_ip, scheme, &self.proxy.config.trusted_proxies);
        let Some(acceptor) = &self.tls else {
            // A connection that sends nothing within the header-read timeout is closed here,
            // not handed to HTTP/1 for a second timeout.
            let deadline = Instant::now() + self.proxy.config.header_read_timeout;
            let Some((h2, opening)) = first_bytes(&mut stream, deadline).await else {
                tracing::debug!(%peer, "nothing sent within the header-read timeout");
                return;
            };
            if h2 {
                // Boxed, as are all of hyper's connections below: the common connection is
                // served by hawser's own server alone, and its task is not sized by hyper's.
                return Box::pin(self.serve_http(Prefixed::new(opening.freeze(), stream), true, client))
                    .await;
            }
            // The first head is due within the same timeout as the first byte.
            return self.serve_http1(stream, (opening, deadline), client).await;
        };
        // Boxed: a TLS stream's state (rustls's, over 1 KiB) would otherwise size every plain
        // connection's task.
        Box::pin(self.serve_tls(acceptor, stream, client, peer)).await
    }

    /// The TLS handshake, then HTTP/2 or HTTP/1.1 as ALPN chose.
    async fn serve_tls(&self, acceptor: &TlsAcceptor, stream: TcpStream, client: Client, peer: SocketAddr) {
        match tokio::time::timeout(self.proxy.config.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Box::pin(self.serve_http(tls, true, client)).await
            }
            Ok(Ok(tls)) => {
                let first_due = Instant::now() + self.proxy.config.header_read_timeout;
                self.serve_http1(tls, (BytesMut::new(), first_due), client).await
            }
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// HTTP/1.1: hawser's own server for as long as it can serve the connection (`first` holds
    /// what was read of it, and when its first head is due), then hyper's.
    async fn serve_http1<S: ClientStream>(&self, stream: S, first: (BytesMut, Instant), client: Client) {
        let closing = self.closing.subscribe();
        let Some(rest) = h1_server::serve(&self.proxy, stream, first, &client, closing).await else {
            return;
        };
        Box::pin(self.serve_http(Prefixed::new(rest.read, rest.stream), false, client)).await
    }

    /// HTTP/2 when `h2`, else HTTP/1.1 with upgrades. A clear-text socket is handed to hyper
    /// with no other wrapper than [`Prefixed`], so an upgraded connection can be taken back as
    /// the plain socket (see `tunnel.rs`).
    async fn serve_http<I>(&self, io: I, h2: bool, client: Client)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.proxy.clone();
        // No async block around `handle`: it would hold the request a second time.
        let service = service_fn(move |req: Request<Incoming>| {
            proxy
                .clone()
                .handle(Box::new(req.map(RequestBody::untracked)), client.clone())
                .map(Ok::<_, Infallible>)
        });
        let mut closing = self.closing.subscribe();
        // Drives a pinned hyper connection; when the listener closes, lets in-flight requests
        // finish.
        macro_rules! until_closed {
            ($connection:expr) => {{
                let mut connection = $connection;
                tokio::select! {
                    ended = connection.as_mut() => ended,
                    () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                }
            }};
        }
        let ended = if h2 {
            // Boxed: HTTP/2's connection state would otherwise size every HTTP/1.1 connection.
            until_closed!(Box::pin(self.http2.serve_connection(TokioIo::new(io), service)))
        } else {
            until_closed!(std::pin::pin!(
                self.http1.serve_connection(TokioIo::new(io), service).with_upgrades()
            ))
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "client connection ended with an error");
        }
    }
}

/// A clear-text client's first bytes, and whether they are the HTTP/2 preface: reads until the
/// bytes stop matching it or all of it has arrived. `None` when not one byte came by
/// `deadline` (or the client closed first); a client that sent part of the preface by then gets
/// HTTP/1. The buffer (4 KiB, most request heads whole) is the first the own server reads into.
async fn first_bytes(stream: &mut TcpStream, deadline: Instant) -> Option<(bool, BytesMut)> {
    let mut read = h1_server::spare::take();
    loop {
        let more = tokio::time::timeout_at(deadline, stream.read_buf(&mut read)).await;
        if !matches!(more, Ok(Ok(n)) if n > 0) {
            return (!read.is_empty()).then_some((false, read));
        }
        let seen = read.len().min(H2_PREFACE.len());
        if read[..seen] != H2_PREFACE[..seen] {
            return Some((false, read));
        }
        if seen == H2_PREFACE.len() {
            return Some((true, read));
        }
    }
}
