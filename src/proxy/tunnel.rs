//! An upgraded connection: bytes copied both ways, unchanged, until a side closes, the route's
//! idle timeout or maximum duration runs out, or hawser shuts down. One implementation for
//! plain TCP and TLS on either side, holding no buffer while idle: each direction reads into a
//! per-thread scratch buffer and writes straight on; only bytes the other side cannot take yet
//! are kept, in a buffer freed once they are written. An idle tunnel costs its two connections
//! and this task, nothing more.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::TunnelTotals;

/// Scratch space for one read; 64 KiB moves large WebSocket messages in few system calls.
const SCRATCH: usize = 64 * 1024;
/// Reads and writes per direction and wake-up before the other direction and the timers get a
/// turn (and, through tokio's budget, other tasks).
const READS_PER_TURN: usize = 8;

thread_local! {
    static SCRATCH_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// Stand-in deadline for a timer that is off.
pub(super) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a tunnel closed (who closed it, or which limit did).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side first.
    Client,
    /// The backend closed its side first.
    Backend,
    /// Reading from or writing to the client failed (reset, broken pipe).
    ClientError,
    /// Reading from or writing to the backend failed.
    BackendError,
    /// No byte in either direction for the route's idle timeout.
    Idle,
    /// The route's maximum connection duration passed.
    MaxDuration,
    /// hawser shut down and the drain grace period ended.
    Shutdown,
}

impl CloseReason {
    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Backend => "backend",
            Self::ClientError => "client_error",
            Self::BackendError => "backend_error",
            Self::Idle => "idle",
            Self::MaxDuration => "max_duration",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The clocks a tunnel runs under.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Close after this long with no byte in either direction.
    pub idle: Option<Duration>,
    /// Close this long after the upgrade.
    pub max_duration: Option<Duration>,
}

impl Limits {
    /// The idle timer, the maximum-duration timer, and a future that completes when `shutdown`
    /// turns true (never, if its sender is gone).
    pub(super) fn clocks(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> (tokio::time::Sleep, tokio::time::Sleep, impl Future<Output = ()>) {
        let idle = tokio::time::sleep(self.idle.unwrap_or(FAR_FUTURE));
        let max = tokio::time::sleep(self.max_duration.unwrap_or(FAR_FUTURE));
        let drained = async move {
            if shutdown.wait_for(|draining| *draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        (idle, max, drained)
    }
}

/// One direction of the tunnel.
#[derive(Default)]
struct Half {
    /// Read but not yet written to the other side.
    pending: Vec<u8>,
    /// Written, but the writer (TLS) still holds some of it: flush before reading more.
    unflushed: bool,
    /// The reading side has ended its stream.
    ended: bool,
    /// The end of stream has been passed on (write side shut down).
    closed: bool,
    bytes: u64,
}

/// Copies between `client` and `backend` until both directions have ended, one fails, or a
/// limit or `shutdown` fires. End of stream on one side is passed on as a write shutdown
/// (half-close) to the other.
///
/// The connections are polled directly (`poll_read`/`poll_write`), which keeps the task's
/// waker in each socket's own reader and writer slot: on plain TCP a message costs one `recv`,
/// one `send` and one wake-up, with no readiness futures created, queued and dropped per
/// message.
pub async fn run<C, B>(
    client: C,
    backend: B,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> (CloseReason, TunnelTotals)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut tunnel =
        Pair { client, backend, up: Half::default(), down: Half::default(), first_close: None, moved: false };
    let mut last_activity = started;
    let idle = limits.idle.unwrap_or(FAR_FUTURE);
    let (idle_timer, max_timer, shutdown) = limits.clocks(shutdown);
    let (mut idle_timer, mut max_timer, mut shutdown) = (pin!(idle_timer), pin!(max_timer), pin!(shutdown));
    let reason = poll_fn(|cx| {
        match tunnel.poll_copy(cx) {
            Poll::Ready(reason) => return Poll::Ready(reason),
            Poll::Pending if tunnel.moved => last_activity = Instant::now(),
            Poll::Pending => {}
        }
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(CloseReason::Shutdown);
        }
        if max_timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(CloseReason::MaxDuration);
        }
        // The idle timer is re-armed only when it fires, never per message.
        while idle_timer.as_mut().poll(cx).is_ready() {
            if last_activity.elapsed() >= idle {
                return Poll::Ready(CloseReason::Idle);
            }
            idle_timer.as_mut().reset(last_activity + idle);
        }
        Poll::Pending
    })
    .await;
    let totals = TunnelTotals {
        client_to_backend: tunnel.up.bytes,
        backend_to_client: tunnel.down.bytes,
        duration: started.elapsed(),
    };
    (reason, totals)
}

/// The two connections and what each direction has in hand.
struct Pair<C, B> {
    client: C,
    backend: B,
    /// Client to backend.
    up: Half,
    /// Backend to client.
    down: Half,
    first_close: Option<CloseReason>,
    /// Whether the last [`Self::poll_copy`] moved any byte or end of stream.
    moved: bool,
}

impl<C, B> Pair<C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    /// Moves what both connections allow now. Ready with the reason once the tunnel is over;
    /// pending (with the waker registered wherever the tunnel waits) otherwise.
    fn poll_copy(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let up = Direction {
            half: &mut self.up,
            closer: CloseReason::Client,
            from: CloseReason::ClientError,
            to: CloseReason::BackendError,
        };
        let down = Direction {
            half: &mut self.down,
            closer: CloseReason::Backend,
            from: CloseReason::BackendError,
            to: CloseReason::ClientError,
        };
        let moved_up = match up.drive(cx, &mut self.client, &mut self.backend, &mut self.first_close) {
            Ok(moved) => moved,
            Err(reason) => return Poll::Ready(reason),
        };
        let moved_down = match down.drive(cx, &mut self.backend, &mut self.client, &mut self.first_close) {
            Ok(moved) => moved,
            Err(reason) => return Poll::Ready(reason),
        };
        self.moved = moved_up || moved_down;
        if self.up.closed && self.down.closed {
            return Poll::Ready(self.first_close.unwrap_or(CloseReason::Client));
        }
        Poll::Pending
    }
}

/// One direction with what to blame when it ends or fails.
struct Direction<'a> {
    half: &'a mut Half,
    /// Who closed the tunnel if this direction ends first.
    closer: CloseReason,
    /// Reading failed.
    from: CloseReason,
    /// Writing failed.
    to: CloseReason,
}

impl Direction<'_> {
    /// Moves bytes until the socket it waits on is not ready (the waker is then registered
    /// there) or it has had its turn; passes an end of stream on. Says whether anything moved.
    fn drive<R, W>(
        self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        first_close: &mut Option<CloseReason>,
    ) -> Result<bool, CloseReason>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let half = self.half;
        let mut moved = false;
        for turns in 1..=READS_PER_TURN {
            let turn = if half.unflushed {
                poll_flush(cx, to, half).map_err(|_| self.to)?
            } else if !half.pending.is_empty() {
                flush(cx, to, half).map_err(|_| self.to)?
            } else if !half.ended {
                step(cx, from, to, half, self.from, self.to)?
            } else {
                Poll::Pending
            };
            if turn.is_pending() {
                break;
            }
            moved = true;
            if turns == READS_PER_TURN {
                // Still ready, but others get their turn first: come back right after them.
                cx.waker().wake_by_ref();
            }
        }
        if half.ended && half.pending.is_empty() && !half.unflushed && !half.closed {
            first_close.get_or_insert(self.closer);
            // Pass the end of stream on as a half-close (RFC 9293 §3.6); over TLS a close_notify
            // goes first, which may have to wait for the socket (then a later turn finishes it).
            if Pin::new(to).poll_shutdown(cx).is_ready() {
                half.closed = true;
            }
        }
        Ok(moved)
    }
}

/// One read from `from`, written on to `to`; only what `to` cannot take now is kept. tokio's
/// `poll_read` takes a short read as "drained" (as nginx does), so a small message costs one
/// `recv`, not a second one that would only say `EAGAIN`.
fn step<R, W>(
    cx: &mut Context<'_>,
    from: &mut R,
    to: &mut W,
    half: &mut Half,
    read_failed: CloseReason,
    write_failed: CloseReason,
) -> Result<Poll<()>, CloseReason>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    SCRATCH_BUFFER.with_borrow_mut(|scratch| {
        let mut buffer = ReadBuf::new(scratch);
        match Pin::new(from).poll_read(cx, &mut buffer) {
            Poll::Pending => return Ok(Poll::Pending),
            Poll::Ready(Err(_)) => return Err(read_failed),
            Poll::Ready(Ok(())) => {}
        }
        let read = buffer.filled();
        if read.is_empty() {
            half.ended = true;
            return Ok(Poll::Ready(()));
        }
        half.bytes += read.len() as u64;
        let written = write_some(cx, to, read).map_err(|_| write_failed)?;
        half.pending.extend_from_slice(&read[written..]);
        half.unflushed = written > 0;
        Ok(Poll::Ready(()))
    })
}

/// Writes kept bytes; the buffer is released once empty. Pending when nothing could be written.
fn flush<W: AsyncWrite + Unpin>(cx: &mut Context<'_>, to: &mut W, half: &mut Half) -> io::Result<Poll<()>> {
    let written = write_some(cx, to, &half.pending)?;
    half.unflushed = written > 0;
    if written == half.pending.len() {
        half.pending = Vec::new();
    } else {
        half.pending.drain(..written);
    }
    Ok(if written == 0 { Poll::Pending } else { Poll::Ready(()) })
}

/// Pushes out what a buffering writer (TLS records) still holds; a no-op on a plain socket.
fn poll_flush<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    to: &mut W,
    half: &mut Half,
) -> io::Result<Poll<()>> {
    match Pin::new(to).poll_flush(cx) {
        Poll::Ready(Ok(())) => {
            half.unflushed = false;
            Ok(Poll::Ready(()))
        }
        Poll::Ready(Err(error)) => Err(error),
        Poll::Pending => Ok(Poll::Pending),
    }
}

/// As much of `data` as the socket takes now (0 when it takes nothing; the waker is then
/// registered for writability).
fn write_some<W: AsyncWrite + Unpin>(cx: &mut Context<'_>, to: &mut W, mut data: &[u8]) -> io::Result<usize> {
    let total = data.len();
    while !data.is_empty() {
        match Pin::new(&mut *to).poll_write(cx, data) {
            Poll::Ready(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(written)) => data = &data[written..],
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(total - data.len())
}

#[cfg(test)]
mod socket_tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair of loopback sockets: (ours, the peer's).
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (accepted.expect("accept").0, connected.expect("connect"))
    }

    /// A tunnel between two socket pairs: (client peer, backend peer, the running tunnel).
    async fn tunnel(
        limits: Limits,
    ) -> (TcpStream, TcpStream, tokio::task::JoinHandle<(CloseReason, TunnelTotals)>, watch::Sender<bool>)
    {
        let (client, client_peer) = socket_pair().await;
        let (backend, backend_peer) = socket_pair().await;
        let (drain, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(client, backend, limits, shutdown));
        (client_peer, backend_peer, task, drain)
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_in_order() {
        let (mut client, mut backend, task, _drain) = tunnel(Limits::default()).await;
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
        let (reason, totals) = task.await.expect("tunnel");
        assert_eq!(reason, CloseReason::Client);
        assert_eq!(totals.client_to_backend, sent.len() as u64);
    }

    #[tokio::test]
    async fn a_half_close_is_passed_on_and_the_other_direction_keeps_flowing() {
        let (mut client, mut backend, task, _drain) = tunnel(Limits::default()).await;
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
        let (reason, totals) = task.await.expect("tunnel");
        assert_eq!(reason, CloseReason::Client);
        assert_eq!((totals.client_to_backend, totals.backend_to_client), (10, 5));
    }

    #[tokio::test]
    async fn idle_timeout_and_shutdown_end_the_tunnel() {
        let idle = Limits { idle: Some(Duration::from_millis(150)), max_duration: None };
        let (mut client, mut backend, task, _drain) = tunnel(idle).await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(75)).await;
            client.write_all(b"x").await.expect("write");
            backend.read_exact(&mut [0u8; 1]).await.expect("read");
        }
        assert!(!task.is_finished(), "activity must postpone the idle timeout");
        assert_eq!(task.await.expect("tunnel").0, CloseReason::Idle);

        let (_client, _backend, task, drain) = tunnel(Limits::default()).await;
        drain.send_replace(true);
        assert_eq!(task.await.expect("tunnel").0, CloseReason::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_closes_after_the_idle_timeout() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let (_tx, shutdown) = watch::channel(false);
        let limits = Limits { idle: Some(Duration::from_secs(30)), max_duration: None };
        let started = Instant::now();
        let (reason, _) = run(client, backend, limits, shutdown).await;
        assert_eq!(reason, CloseReason::Idle);
        assert_eq!(started.elapsed().as_secs(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_the_idle_timeout() {
        let (client, mut client_peer) = duplex(64);
        let (backend, mut backend_peer) = duplex(64);
        let (_tx, shutdown) = watch::channel(false);
        let limits = Limits { idle: Some(Duration::from_secs(30)), max_duration: None };
        let tunnel = tokio::spawn(run(client, backend, limits, shutdown));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client_peer.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            backend_peer.read_exact(&mut got).await.expect("read");
        }
        let started = Instant::now();
        let (reason, totals) = tunnel.await.expect("tunnel");
        assert_eq!(reason, CloseReason::Idle);
        assert_eq!(started.elapsed().as_secs(), 30);
        assert_eq!(totals.client_to_backend, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn max_duration_closes_a_busy_tunnel() {
        let (client, mut client_peer) = duplex(64);
        let (backend, mut backend_peer) = duplex(64);
        let (_tx, shutdown) = watch::channel(false);
        let limits =
            Limits { idle: Some(Duration::from_secs(5)), max_duration: Some(Duration::from_secs(12)) };
        let tunnel = tokio::spawn(run(client, backend, limits, shutdown));
        let chatter = tokio::spawn(async move {
            let mut got = [0u8; 1];
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client_peer.write_all(b"x").await.is_err()
                    || backend_peer.read_exact(&mut got).await.is_err()
                {
                    return;
                }
            }
        });
        let (reason, _) = tunnel.await.expect("tunnel");
        assert_eq!(reason, CloseReason::MaxDuration);
        chatter.abort();
    }

    #[tokio::test]
    async fn close_by_either_side_and_byte_counts() {
        let (client, mut client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1024);
        let (_tx, shutdown) = watch::channel(false);
        let tunnel = tokio::spawn(run(client, backend, Limits::default(), shutdown));
        client_peer.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        backend_peer.read_exact(&mut got).await.expect("read");
        backend_peer.write_all(b"hi").await.expect("write");
        client_peer.read_exact(&mut got[..2]).await.expect("read");
        drop(backend_peer);
        // The backend's end of stream reaches the client as a half-close first.
        assert_eq!(client_peer.read(&mut got).await.expect("eof"), 0);
        client_peer.shutdown().await.expect("shutdown");
        let (reason, totals) = tunnel.await.expect("tunnel");
        assert_eq!(reason, CloseReason::Backend);
        assert_eq!((totals.client_to_backend, totals.backend_to_client), (5, 2));
    }

    #[tokio::test]
    async fn shutdown_closes_the_tunnel() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let (tx, shutdown) = watch::channel(false);
        let tunnel = tokio::spawn(run(client, backend, Limits::default(), shutdown));
        tx.send_replace(true);
        assert_eq!(tunnel.await.expect("tunnel").0, CloseReason::Shutdown);
    }
}
