//! hawser's own HTTP/1.1 client for the common exchange: a request without a body, on a
//! clear-text keep-alive connection to a backend, written and answered in the request's own
//! task.
//!
//! hyper's client runs every connection as a task of its own behind a channel: per exchange a
//! push and a pop, the request copied out of the channel's slot, a `oneshot` back with the
//! response head and a body channel, and the backend task scheduled for each. Here the
//! request's task writes the head, reads the response head from the socket, and the response
//! body reads the socket itself as the client's connection takes it. A clear-text upgrade's
//! handshake goes this way too, and after a `101` its socket becomes the tunnel's. Requests
//! with a body and TLS backends stay with hyper's client (`pool.rs`), which also takes over an
//! idle connection of this kind when such a request finds one.

mod body;
mod head;

use std::io;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::{Home, Reusable};

pub use body::ResponseBody;
pub use head::Head;

/// The most a response head (or a trailer section) may take; nginx's `proxy_buffer_size` is
/// 4–8 KiB, hyper's client allows about 400 KiB.
const MAX_HEAD: usize = 64 * 1024;

/// How much room a read is given.
const READ_SIZE: usize = 8 * 1024;

/// How much room an upgrade's first read is given: its answer is a head alone (what follows a
/// `101` is the tunnel's), and a handshake waiting for its backend holds the buffer meanwhile.
const HANDSHAKE_READ_SIZE: usize = 1024;

/// One clear-text connection to a backend, between exchanges or in one. Kept boxed: it moves
/// between the pool and response bodies, which stay small that way.
#[derive(Debug)]
pub struct Connection {
    io: TcpStream,
    /// Bytes read and not yet taken; empty between exchanges.
    read: BytesMut,
    /// The request head on its way out, kept for its capacity.
    write: Vec<u8>,
    /// The pool it goes back to between exchanges; `None`: closed after its one exchange (an
    /// upgrade's, whose socket then becomes the tunnel's).
    home: Option<Home>,
}

/// How an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the connection closed before any response")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the connection closed inside the response")]
    Truncated,
}

impl Error {
    /// Whether the backend answered nothing at all (not a byte) because it closed the connection: on a
    /// kept-alive connection, the race of its keep-alive timeout with the request (RFC 9112
    /// §9.3.1), after which an idempotent request may go out again on another connection.
    pub fn is_closed_unanswered(&self) -> bool {
        match self {
            Self::Closed => true,
            Self::Io(error) => matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

impl Connection {
    pub fn new(io: TcpStream, home: Option<Home>) -> Box<Self> {
        Box::new(Self { io, read: BytesMut::new(), write: Vec::new(), home })
    }

    /// Back to its pool, for another exchange (closed if it has none).
    fn release(self: Box<Self>) {
        if let Some(home) = self.home.clone() {
            home.take_back(Reusable::Own(self));
        }
    }

    /// Whether an idle connection can take another exchange: nothing has arrived on it since
    /// its last response, neither bytes nor the backend's FIN. Costs no system call unless the
    /// socket was reported readable.
    pub fn is_fit(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                matches!(self.io.try_read(&mut [0; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// The socket, for hyper's client to take over (only between exchanges).
    pub fn into_socket(self) -> TcpStream {
        self.io
    }

    /// After a `101`: the socket, and the bytes the backend sent behind the response.
    pub fn into_tunnel(self) -> (TcpStream, Bytes) {
        (self.io, self.read.freeze())
    }

    /// Writes `req`'s head (the request has no body) and reads the response head, into the
    /// storage of `req`'s header map once the whole head is there (until then the request is
    /// whole, for another connection if this one closed unanswered).
    pub async fn send<B>(&mut self, req: &mut Request<B>) -> Result<Head, Error> {
        self.write.clear();
        head::write_request(req, &mut self.write);
        self.io.write_all(&self.write).await?;
        let method = req.method().clone();
        let mut heard = false;
        loop {
            if let Some(head) = head::take_response(&mut self.read, &method, req.headers_mut())? {
                return Ok(head);
            }
            if self.read.len() >= MAX_HEAD {
                return Err(Error::HeadTooLarge);
            }
            self.read.reserve(if self.home.is_some() { READ_SIZE } else { HANDSHAKE_READ_SIZE });
            match self.io.read_buf(&mut self.read).await {
                Ok(0) => return Err(if heard { Error::Truncated } else { Error::Closed }),
                Ok(_) => {}
                // Once part of an answer came, the request was acted on: not to be sent again.
                Err(_) if heard => return Err(Error::Truncated),
                Err(error) => return Err(error.into()),
            }
            heard = true;
        }
    }

    /// Reads more of the response into the buffer: `Ok(0)` at the backend's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read.reserve(READ_SIZE);
        tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut self.read)
    }
}
