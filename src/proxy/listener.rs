//! Accepting client connections and serving HTTP/1.1 and HTTP/2 (prior knowledge, h2c) on the
//! same port, with header limits, a header-read timeout and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use super::Proxy;
use super::headers::Client;
use crate::accept::accept_until;

/// hyper refuses HTTP/1 read buffers smaller than this.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Serves `listener` until `stop` completes, then lets in-flight requests finish for up to
/// `grace`. Upgraded connections are not waited for here: see [`Proxy::drain_tunnels`].
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let builder = Arc::new(http_builder(&proxy));
    let graceful = GracefulShutdown::new();
    accept_until(listener, "proxy", stop, |stream, peer| {
        let client = Client::new(peer.ip(), "http", &proxy.config.trusted_proxies);
        serve_connection(stream, client, &proxy, &builder, &graceful);
    })
    .await;
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::info!("grace period over with requests still in flight");
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

fn serve_connection(
    stream: TcpStream,
    client: Client,
    proxy: &Arc<Proxy>,
    builder: &Arc<auto::Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
) {
    // WebSocket frames are small and latency-bound: never hold them back for Nagle.
    let _ = stream.set_nodelay(true);
    let proxy = proxy.clone();
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, client).await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "client connection ended with an error");
        }
    });
}
