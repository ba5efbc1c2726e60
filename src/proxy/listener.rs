//! Accepting client connections: the PROXY protocol header when configured, TLS on the HTTPS
//! listener, then HTTP/1.1 and HTTP/2 (ALPN, or prior knowledge in clear text) on the same port,
//! with header limits, a header-read timeout and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::Proxy;
use super::headers::Client;
use super::proxy_protocol;
use crate::accept::accept_until;

/// hyper refuses HTTP/1 read buffers smaller than this.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// What every connection of one listener shares.
struct Listener {
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    http: auto::Builder<TokioExecutor>,
}

/// Serves `listener` (with TLS when `tls` is given) until `stop` completes, then lets in-flight
/// requests finish for up to `grace`. Upgraded connections are not waited for here: see
/// [`Proxy::drain_tunnels`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let what = if tls.is_some() { "proxy-tls" } else { "proxy" };
    let shared = Arc::new(Listener { http: http_builder(&proxy), proxy, tls });
    let graceful = GracefulShutdown::new();
    accept_until(listener, what, stop, |stream, peer| {
        tokio::spawn(shared.clone().connection(stream, peer, graceful.watcher()));
    })
    .await;
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::info!(listener = what, "grace period over with requests still in flight");
    }
}

fn http_builder(proxy: &Proxy) -> auto::Builder<TokioExecutor> {
    let max_header_bytes = proxy.config.max_header_bytes.max(MIN_HEADER_BYTES);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.config.header_read_timeout)
        .max_buf_size(max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    builder
}

impl Listener {
    /// One accepted connection: PROXY header, TLS, HTTP. Failures close only this connection.
    async fn connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        // WebSocket frames are small and latency-bound: never hold them back for Nagle.
        let _ = stream.set_nodelay(true);
        let mut client_ip = peer.ip();
        if let Some(timeout) = self.proxy.config.proxy_protocol {
            match proxy_protocol::read_header(&mut stream, timeout).await {
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
            return self.serve_http(stream, client, watcher).await;
        };
        match tokio::time::timeout(self.proxy.config.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve_http(tls, client, watcher).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve_http<I>(&self, io: I, client: Client, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.proxy.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, client).await) }
        });
        let connection = self.http.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%error, "client connection ended with an error");
        }
    }
}
