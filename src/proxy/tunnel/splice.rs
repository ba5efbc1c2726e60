//! Zero-copy for plain-TCP tunnels: a large payload moves socket → pipe → socket with
//! splice(2), so its bytes never enter hawser's memory (the kernel hands the pages on). Only
//! where it wins: both sides plain TCP (TLS must see its bytes), and only payload the direction
//! passes untouched — a WebSocket data frame's payload past its header, or a byte tunnel in a
//! burst — and at least [`SPLICE_MIN`] of it; everything else is copied as before.
//!
//! A direction holds a pipe only while bytes are in it: pipes come from a small per-thread
//! pool and go back empty, so an idle tunnel holds no pipe and no descriptors beyond its two
//! sockets. At most [`MAX_PIPES`] are open at once (their descriptors are kept back from the
//! connection budget); past that, payloads are copied.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::os::fd::OwnedFd;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Payload at least this large goes through a pipe; below it, one copy through user space
/// costs less than the pipe's two system calls.
pub const SPLICE_MIN: u64 = super::super::frames::LARGE_PAYLOAD;
/// The most one splice into the pipe asks for: a pipe's default capacity (16 pages).
pub const PIPE_CHUNK: usize = 64 * 1024;
/// Empty pipes each thread keeps for the next large payload.
const POOLED_PIPES: usize = 8;
/// Pipes open at once in the whole process, pooled or in use: two descriptors each.
pub const MAX_PIPES: usize = 32;

/// Pipes open now.
static OPEN_PIPES: AtomicUsize = AtomicUsize::new(0);
/// Set once splice(2) is refused here (a seccomp profile, an old kernel): copy from then on.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
/// Bytes spliced so far (`hawser_spliced_bytes_total`).
static SPLICED: LazyLock<Counter> = LazyLock::new(Counter::default);

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Bytes tunnels have spliced from a socket, never copying them through hawser.
pub fn spliced_bytes() -> Counter {
    SPLICED.clone()
}

/// A connection a tunnel can splice from and to: plain TCP only.
pub trait Spliceable {
    /// The TCP socket underneath, when nothing (TLS) stands between it and the tunnel.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Spliceable for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

/// hyper's upgraded connection: TLS on one side or the other.
impl<T> Spliceable for TokioIo<T> {}

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// An empty pipe from this thread's pool, or a new one; `None` when [`MAX_PIPES`] are open
    /// or none can be made (the descriptors are spent): the payload is copied instead.
    fn take() -> Option<Self> {
        PIPES.with_borrow_mut(Vec::pop).or_else(|| {
            // Counted before it is made, so that racing threads never open more than the cap.
            let made = (OPEN_PIPES.fetch_add(1, Ordering::Relaxed) < MAX_PIPES)
                .then(|| rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC).ok())
                .flatten();
            if made.is_none() {
                OPEN_PIPES.fetch_sub(1, Ordering::Relaxed);
            }
            made.map(|(read, write)| Self { read, write })
        })
    }

    /// Returns an empty pipe to this thread's pool (closed when the pool is full).
    fn give_back(self) {
        PIPES.with_borrow_mut(|pool| {
            if pool.len() < POOLED_PIPES {
                pool.push(self);
            }
        });
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        OPEN_PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One direction's pipe while bytes are in it. A pipe left holding bytes when the tunnel ends
/// is closed with them.
#[derive(Debug, Default)]
pub struct Spliced {
    pipe: Option<Pipe>,
    /// Bytes in the pipe, not yet spliced on.
    held: u32,
}

impl Spliced {
    /// Whether the pipe holds nothing (or there is none).
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Splices up to `len` bytes from `from` into the (empty) pipe: the bytes taken, 0 at the
    /// end of the stream. `None` when no pipe can be had, or splice(2) is refused (nothing was
    /// taken: the caller copies those bytes instead). Pending (the waker registered for
    /// readability) when there is nothing to read; the pipe then goes back to the pool.
    pub fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        len: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        if UNSUPPORTED.load(Ordering::Relaxed) {
            return None;
        }
        let pipe = self.pipe.take().or_else(Pipe::take)?;
        // The pipe is empty, so a splice that would block says the socket has nothing: tokio
        // then clears its readiness and the next poll waits for more.
        let filled = poll_splice(cx, from, Interest::READABLE, || {
            rustix::pipe::splice(from, None, &pipe.write, None, len.min(PIPE_CHUNK), flags())
        });
        if let Poll::Ready(Err(error)) = &filled
            && refused(error)
        {
            tracing::warn!(%error, "splice(2) refused; tunnels copy their bytes instead");
            UNSUPPORTED.store(true, Ordering::Relaxed);
            // Not the connection failing: the tunnel that met the refusal copies on, unharmed.
            pipe.give_back();
            return None;
        }
        if let Poll::Ready(Ok(taken)) = filled {
            self.held += taken as u32;
            SPLICED.inc_by(taken as u64);
        }
        self.keep_or_give_back(pipe);
        Some(filled)
    }

    /// Splices what the pipe holds on to `to`: the bytes moved. Pending (the waker registered
    /// for writability) while `to` takes nothing. An emptied pipe goes back to the pool.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>, to: &TcpStream) -> Poll<io::Result<usize>> {
        let Some(pipe) = &self.pipe else { return Poll::Ready(Ok(0)) };
        let held = self.held as usize;
        let moved = ready!(poll_splice(cx, to, Interest::WRITABLE, || {
            rustix::pipe::splice(&pipe.read, None, to, None, held, flags())
        }))?;
        if moved == 0 {
            return Poll::Ready(Err(ErrorKind::WriteZero.into()));
        }
        self.held -= moved as u32;
        if let Some(pipe) = self.pipe.take() {
            self.keep_or_give_back(pipe);
        }
        Poll::Ready(Ok(moved))
    }

    /// Keeps a pipe that holds bytes; an empty one goes back to the pool.
    fn keep_or_give_back(&mut self, pipe: Pipe) {
        if self.held > 0 {
            self.pipe = Some(pipe);
        } else {
            pipe.give_back();
        }
    }
}

/// Whether `error` says splice(2) itself is unavailable, rather than the socket failing.
fn refused(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput | ErrorKind::PermissionDenied)
}

/// Non-blocking on the pipe's side; the socket is non-blocking already (tokio's).
fn flags() -> SpliceFlags {
    SpliceFlags::MOVE | SpliceFlags::NONBLOCK
}

/// Runs `splice` once `socket` is ready for `interest`, until it does not say "would block".
fn poll_splice(
    cx: &mut Context<'_>,
    socket: &TcpStream,
    interest: Interest,
    mut splice: impl FnMut() -> rustix::io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        if interest.is_readable() {
            ready!(socket.poll_read_ready(cx))?;
        } else {
            ready!(socket.poll_write_ready(cx))?;
        }
        match socket.try_io(interest, || splice().map_err(io::Error::from)) {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
}
