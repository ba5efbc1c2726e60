//! What hawser's own HTTP/1.1 server reads requests from and writes responses to: a client's
//! plain socket, or its TLS stream. The two differ in how a connection ends and in who tunnels
//! its upgrades.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a TLS client has to take its `close_notify` before the socket closes anyway (one
/// whose receive window is full reads nothing).
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// A client connection the own server can serve.
pub(in crate::proxy) trait ClientStream:
    AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static
{
    /// Whether a `101` hands this connection straight to a tunnel. A TLS client's upgrades go
    /// to hyper's server, whose upgraded stream its tunnel then runs on.
    const TUNNELS: bool;

    /// The plain socket, when this is one.
    fn into_socket(self) -> Option<TcpStream>;

    /// Ends the connection from hawser's side.
    fn close(self) -> impl Future<Output = ()> + Send;

    /// Completes once the client may have sent something: an idle connection waits here
    /// holding no read buffer.
    fn wait_for_data(&self) -> impl Future<Output = ()> + Send;
}

impl ClientStream for TcpStream {
    const TUNNELS: bool = true;

    fn into_socket(self) -> Option<TcpStream> {
        Some(self)
    }

    /// Closing the socket is all: its FIN says the rest.
    async fn close(self) {}

    async fn wait_for_data(&self) {
        // Polled with the task's own waker, as a read is (`readable()` would queue a waiter of
        // its own in the socket's list, at twice the cost). An error shows in the read after.
        let _ = std::future::poll_fn(|cx| self.poll_read_ready(cx)).await;
    }
}

impl ClientStream for TlsStream<TcpStream> {
    const TUNNELS: bool = false;

    fn into_socket(self) -> Option<TcpStream> {
        None
    }

    /// `close_notify` first, so that the client can tell the end from a truncation
    /// (RFC 8446 §6.1), as hyper's server ends its TLS connections.
    async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_NOTIFY_WAIT, self.shutdown()).await;
    }

    /// At once: rustls may hold decrypted bytes already (and its own buffers are far larger
    /// than the read buffer this would spare).
    async fn wait_for_data(&self) {}
}
