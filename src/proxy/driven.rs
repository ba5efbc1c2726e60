//! A clear-text backend connection driven by the task of the request that opened it: an
//! upgrade's handshake. The connection's one exchange needs no task of its own and no hop
//! through hyper's dispatch channel to one, and after a `101` the socket itself comes back for
//! the tunnel rather than through hyper's upgrade hand-over.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::pool::{PlainConnection, spawn};

/// A connection this task polls itself, until it has finished.
#[derive(Debug)]
pub struct Driven {
    connection: Box<PlainConnection>,
    /// `Some` once the connection has nothing more to do: how it ended.
    finished: Option<Result<(), hyper::Error>>,
}

impl Driven {
    pub fn new(connection: Box<PlainConnection>) -> Self {
        Self { connection, finished: None }
    }

    /// Runs `exchange` (a request sent on this connection) to its end, driving the connection
    /// meanwhile: it writes the request and reads the response head.
    pub async fn alongside<F: Future>(&mut self, exchange: F) -> F::Output {
        let mut exchange = pin!(exchange);
        poll_fn(|cx| {
            self.poll(cx);
            exchange.as_mut().poll(cx)
        })
        .await
    }

    /// After a `101`: the socket, and the bytes the backend sent behind the response.
    pub async fn into_socket(mut self, endpoint: SocketAddr) -> Result<(TcpStream, Bytes), ProxyError> {
        poll_fn(|cx| {
            self.poll(cx);
            if self.finished.is_some() { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        match self.finished {
            Some(Err(source)) => Err(ProxyError::Backend { endpoint, source: source.into() }),
            _ => {
                let parts = self.connection.into_parts();
                Ok((parts.io.into_inner(), parts.read_buf))
            }
        }
    }

    /// No upgrade: the response's body streams on, so the connection goes on in its own task.
    pub fn detach(self, endpoint: SocketAddr) {
        if self.finished.is_none() {
            spawn(*self.connection, endpoint);
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) {
        if self.finished.is_none()
            && let Poll::Ready(ended) = self.connection.poll_without_shutdown(cx)
        {
            self.finished = Some(ended);
        }
    }
}
