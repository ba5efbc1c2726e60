//! The tunnel for the common case, plain TCP on both sides, holding no buffer while idle: each
//! direction waits for readiness, reads into a per-thread scratch buffer and writes straight
//! on; only bytes the other side cannot take yet are kept, in a buffer freed once they are
//! written. An idle tunnel costs its two sockets and this task, nothing more.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::tunnel::{CloseReason, FAR_FUTURE, Limits};
use crate::metrics::TunnelTotals;

/// Scratch space for one read; 64 KiB moves large WebSocket messages in few system calls.
const SCRATCH: usize = 64 * 1024;
/// Readiness events served per direction and wake-up before the other direction and the
/// timers get a turn (and, through tokio's budget, other tasks).
const READS_PER_TURN: usize = 8;

thread_local! {
    static SCRATCH_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// One direction of the tunnel.
#[derive(Default)]
struct Half {
    /// Read but not yet written to the other side.
    pending: Vec<u8>,
    /// The reading side has ended its stream.
    ended: bool,
    /// The end of stream has been passed on (write side shut down).
    closed: bool,
    bytes: u64,
}

/// Copies between `client` and `backend` until both directions have ended, one fails, or a
/// limit or `shutdown` fires. Same contract as [`super::tunnel::run`].
///
/// The sockets are polled directly (`poll_read`/`poll_write`), which keeps the task's waker in
/// each socket's own reader and writer slot: a message costs one `recv`, one `send` and one
/// wake-up, with no readiness futures created, queued and dropped per message.
pub async fn run(
    client: TcpStream,
    backend: TcpStream,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> (CloseReason, TunnelTotals) {
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

/// The two sockets and what each direction has in hand.
struct Pair {
    client: TcpStream,
    backend: TcpStream,
    /// Client to backend.
    up: Half,
    /// Backend to client.
    down: Half,
    first_close: Option<CloseReason>,
    /// Whether the last [`Self::poll_copy`] moved any byte or end of stream.
    moved: bool,
}

impl Pair {
    /// Moves what both sockets allow now. Ready with the reason once the tunnel is over;
    /// pending (with the waker registered wherever the tunnel waits) otherwise.
    fn poll_copy(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let (mut client_read, mut client_write) = self.client.split();
        let (mut backend_read, mut backend_write) = self.backend.split();
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
        let moved_up = match up.drive(cx, &mut client_read, &mut backend_write, &mut self.first_close) {
            Ok(moved) => moved,
            Err(reason) => return Poll::Ready(reason),
        };
        let moved_down = match down.drive(cx, &mut backend_read, &mut client_write, &mut self.first_close) {
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
    fn drive(
        self,
        cx: &mut Context<'_>,
        from: &mut ReadHalf<'_>,
        to: &mut WriteHalf<'_>,
        first_close: &mut Option<CloseReason>,
    ) -> Result<bool, CloseReason> {
        let half = self.half;
        let mut moved = false;
        for turns in 1..=READS_PER_TURN {
            let turn = if !half.pending.is_empty() {
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
        if half.ended && half.pending.is_empty() && !half.closed {
            half.closed = true;
            match first_close {
                // The other direction is over too: the tunnel ends now and dropping the sockets
                // sends the FIN, so no `shutdown` call is needed.
                Some(_) => {}
                None => {
                    // Pass the end of stream on as a half-close (RFC 9293 §3.6).
                    let _ = Pin::new(to).poll_shutdown(cx);
                    *first_close = Some(self.closer);
                }
            }
        }
        Ok(moved)
    }
}

/// One read from `from`, written on to `to`; only what `to` cannot take now is kept. tokio's
/// `poll_read` takes a short read as "drained" (as nginx does), so a small message costs one
/// `recv`, not a second one that would only say `EAGAIN`.
fn step(
    cx: &mut Context<'_>,
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    half: &mut Half,
    read_failed: CloseReason,
    write_failed: CloseReason,
) -> Result<Poll<()>, CloseReason> {
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
        Ok(Poll::Ready(()))
    })
}

/// Writes kept bytes; the buffer is released once empty. Pending when nothing could be written.
fn flush(cx: &mut Context<'_>, to: &mut WriteHalf<'_>, half: &mut Half) -> io::Result<Poll<()>> {
    let written = write_some(cx, to, &half.pending)?;
    if written == half.pending.len() {
        half.pending = Vec::new();
    } else {
        half.pending.drain(..written);
    }
    Ok(if written == 0 { Poll::Pending } else { Poll::Ready(()) })
}

/// As much of `data` as the socket takes now (0 when it takes nothing; the waker is then
/// registered for writability).
fn write_some(cx: &mut Context<'_>, to: &mut WriteHalf<'_>, mut data: &[u8]) -> io::Result<usize> {
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
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

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
