//! Moving bytes between a tunnel's two connections, both ways, holding no buffer while idle:
//! each direction reads into a per-thread scratch buffer and writes straight on; only bytes the
//! other side cannot take yet are kept, in a buffer freed once written. A WebSocket direction
//! passes each chunk through its [`FrameTracker`] first, which almost always lets it go on
//! unchanged.
//!
//! Where both connections are plain TCP, large payloads skip the buffer too: they are spliced
//! through a pipe ([`super::splice`]).
//!
//! The connections are polled directly (`poll_read`/`poll_write`), which keeps the task's
//! waker in each socket's own reader and writer slot: on plain TCP a message costs one `recv`,
//! one `send` and one wake-up, with no readiness futures created, queued and dropped per
//! message.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::frames::{Forward, FrameTracker, Peer};
use super::CloseReason;
use super::splice::{PIPE_CHUNK, SPLICE_MIN, Spliceable, Spliced};

/// Scratch space for one read; 64 KiB moves large WebSocket messages in few system calls.
const SCRATCH: usize = 64 * 1024;
/// Reads and writes per direction and wake-up before the other direction and the timers get a
/// turn (and, through tokio's budget, other tasks).
const READS_PER_TURN: usize = 8;
/// After large WebSocket frames, a read takes the rest of the current frame and this much more:
/// just past the next header, so that a large payload behind it is left in the socket to be
/// spliced rather than copied.
const PAST_HEADER: usize = 1024;

thread_local! {
    static SCRATCH_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// One direction of the tunnel.
#[derive(Debug)]
pub struct Half {
    /// Read but not yet written to the other side.
    pending: Vec<u8>,
    /// Written, but the writer (TLS) still holds some of it: flush before reading more.
    unflushed: bool,
    /// The reading side has ended its stream (or hawser stopped reading it).
    ended: bool,
    /// The end of stream has been passed on (write side shut down).
    closed: bool,
    /// Large payloads are passing: splice them (plain TCP) and, on a WebSocket, read only
    /// just past the next frame header.
    bulk: bool,
    /// Bytes between the two sockets, in a pipe.
    spliced: Spliced,
    /// Bytes read.
    pub bytes: u64,
    /// Something was read during the last [`Pair::poll_copy`].
    pub heard: bool,
    /// Frame boundaries, when the tunnel carries a WebSocket.
    pub frames: Option<FrameTracker>,
}

impl Half {
    /// A direction reading from `peer`; frame-aware when `websocket`.
    pub fn new(peer: Peer, websocket: bool) -> Self {
        Self {
            pending: Vec::new(),
            unflushed: false,
            ended: false,
            closed: false,
            bulk: false,
            spliced: Spliced::default(),
            bytes: 0,
            heard: false,
            frames: websocket.then(|| FrameTracker::new(peer)),
        }
    }

    /// Takes bytes read before the tunnel began (behind the handshake) as if read now.
    pub fn seed(&mut self, early: &[u8], max_message: Option<u64>) {
        if early.is_empty() {
            return;
        }
        self.bytes += early.len() as u64;
        match self.frames.as_mut().map(|frames| frames.scan(early, max_message)) {
            None | Some(Forward::All) => self.pending.extend_from_slice(early),
            Some(Forward::Bytes(bytes)) => self.pending.extend_from_slice(&bytes),
            Some(Forward::Prefixed(head, from)) => {
                self.pending.extend_from_slice(&head);
                self.pending.extend_from_slice(&early[from..]);
            }
        }
    }

    /// Puts one of hawser's frames on this direction's wire at the next frame boundary.
    pub fn inject(&mut self, frame: Vec<u8>) {
        if let Some(now) = self.frames.as_mut().and_then(|frames| frames.inject(frame)) {
            self.pending.extend_from_slice(&now);
        }
    }

    /// Stops reading; what is pending is still written, then the write side is shut down.
    pub fn finish(&mut self) {
        self.ended = true;
    }

    /// Whether the reading side has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// How many bytes to splice next: in a burst, what passes untouched (a large WebSocket
    /// data frame's payload; anything on a byte tunnel). 0: read and copy.
    fn to_splice(&self) -> usize {
        match &self.frames {
            _ if !self.bulk => 0,
            Some(frames) if frames.passing() >= SPLICE_MIN => passing(frames).min(PIPE_CHUNK),
            Some(_) => 0,
            None => PIPE_CHUNK,
        }
    }

    /// How much the next read takes: after large frames, just past the next frame header.
    fn read_size(&self) -> usize {
        match &self.frames {
            Some(frames) if self.bulk => passing(frames).saturating_add(PAST_HEADER).min(SCRATCH),
            _ => SCRATCH,
        }
    }

    /// Whether what was just read or spliced (`count` bytes) starts or continues a burst: a
    /// large frame on a WebSocket, a large read on a byte tunnel.
    fn note_burst(&mut self, count: usize) {
        self.bulk = match &self.frames {
            Some(frames) => frames.large,
            None => count as u64 >= SPLICE_MIN,
        };
    }
}

/// The two connections and what each direction has in hand.
pub struct Pair<C, B> {
    pub client: C,
    pub backend: B,
    /// Client to backend.
    pub up: Half,
    /// Backend to client.
    pub down: Half,
    /// Who ended first, or which side failed.
    first_close: Option<CloseReason>,
    /// Whether the last [`Self::poll_copy`] moved any byte or end of stream.
    pub moved: bool,
    /// The largest message either side may send (WebSocket tunnels).
    pub max_message: Option<u64>,
}

impl<C, B> Pair<C, B>
where
    C: AsyncRead + AsyncWrite + Spliceable + Unpin,
    B: AsyncRead + AsyncWrite + Spliceable + Unpin,
{
    /// A tunnel between `client` and `backend`, frame-aware when `websocket`.
    pub fn new(client: C, backend: B, websocket: bool, max_message: Option<u64>) -> Self {
        Self {
            client,
            backend,
            up: Half::new(Peer::Client, websocket),
            down: Half::new(Peer::Backend, websocket),
            first_close: None,
            moved: false,
            max_message,
        }
    }

    /// Moves what both connections allow now. Ready with the reason once the tunnel is over;
    /// pending (with the waker registered wherever the tunnel waits) otherwise.
    pub fn poll_copy(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.up.heard = false;
        self.down.heard = false;
        let up = Direction {
            peer_ended: self.down.ended,
            half: &mut self.up,
            closer: CloseReason::Client,
            from: CloseReason::ClientError,
            to: CloseReason::BackendError,
            max_message: self.max_message,
        };
        let moved_up = match up.drive(cx, &mut self.client, &mut self.backend, &mut self.first_close) {
            Ok(moved) => moved,
            Err(reason) => return Poll::Ready(reason),
        };
        let down = Direction {
            peer_ended: self.up.ended,
            half: &mut self.down,
            closer: CloseReason::Backend,
            from: CloseReason::BackendError,
            to: CloseReason::ClientError,
            max_message: self.max_message,
        };
        let moved_down = match down.drive(cx, &mut self.backend, &mut self.client, &mut self.first_close) {
            Ok(moved) => moved,
            Err(reason) => return Poll::Ready(reason),
        };
        self.moved = moved_up || moved_down;
        if matches!(self.first_close, Some(CloseReason::ClientError | CloseReason::BackendError))
            && !(self.up.ended && self.down.ended)
        {
            // A side failed: finish both directions (the survivor gets what is pending, a close
            // frame included) and come back to shut them down.
            self.up.finish();
            self.down.finish();
            cx.waker().wake_by_ref();
        }
        if self.up.closed && self.down.closed {
            return Poll::Ready(self.first_close.unwrap_or(CloseReason::Client));
        }
        Poll::Pending
    }
}

/// One direction with what to blame when it ends or fails.
struct Direction<'a> {
    half: &'a mut Half,
    /// The side this direction writes to has ended its own sending (the other direction read
    /// its end of stream).
    peer_ended: bool,
    /// Who closed the tunnel if this direction ends first.
    closer: CloseReason,
    /// Reading failed.
    from: CloseReason,
    /// Writing failed.
    to: CloseReason,
    max_message: Option<u64>,
}

impl Direction<'_> {
    /// Moves bytes until the socket it waits on is not ready (the waker is then registered
    /// there) or it has had its turn; passes an end of stream on. Says whether anything moved
    /// (hawser's own pongs, taken off the stream, do not count).
    fn drive<R, W>(
        mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        first_close: &mut Option<CloseReason>,
    ) -> Result<bool, CloseReason>
    where
        R: AsyncRead + Spliceable + Unpin,
        W: AsyncWrite + Spliceable + Unpin,
    {
        let mut moved = false;
        for turns in 1..=READS_PER_TURN {
            let half = &mut *self.half;
            let turn = if half.unflushed {
                // Writing on what an earlier read counted already (or hawser's own ping).
                poll_flush(cx, to, half).map_err(|_| self.to)?.map(|()| false)
            } else if !half.pending.is_empty() {
                flush(cx, to, half).map_err(|_| self.to)?.map(|()| false)
            } else if !half.spliced.is_empty() {
                drain_pipe(cx, to, half).map_err(|_| self.to)?.map(|()| false)
            } else if !half.ended {
                match self.splice(cx, from, to, first_close) {
                    Some(turn) => turn,
                    None => self.step(cx, from, to, first_close)?,
                }
            } else {
                Poll::Pending
            };
            let Poll::Ready(counts) = turn else { break };
            moved |= counts;
            if turns == READS_PER_TURN {
                // Still ready, but others get their turn first: come back right after them.
                cx.waker().wake_by_ref();
            }
        }
        let half = &mut *self.half;
        if half.ended && half.pending.is_empty() && half.spliced.is_empty() && !half.unflushed && !half.closed
        {
            first_close.get_or_insert(self.closer);
            // Pass the end of stream on as a half-close (RFC 9293 §3.6); over TLS a close_notify
            // goes first, which may have to wait for the socket (then a later turn finishes it).
            // A plain socket whose peer has ended too is closed next, which sends the FIN: no
            // shutdown(2) for it (often refused anyway, the peer having reset it meanwhile).
            if (self.peer_ended && to.tcp().is_some()) || Pin::new(to).poll_shutdown(cx).is_ready() {
                half.closed = true;
            }
        }
        Ok(moved)
    }

    /// Splices the next bytes from `from` into the direction's pipe, when both sockets are
    /// plain TCP and a burst of untouched payload is passing; `None`: copy them instead.
    fn splice<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &R,
        to: &W,
        first_close: &mut Option<CloseReason>,
    ) -> Option<Poll<bool>>
    where
        R: Spliceable,
        W: Spliceable,
    {
        let (Some(from), Some(_)) = (from.tcp(), to.tcp()) else { return None };
        let half = &mut *self.half;
        let len = half.to_splice();
        if len == 0 {
            return None;
        }
        let turn = match half.spliced.poll_fill(cx, from, len)? {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                half.ended = true;
                Poll::Ready(true)
            }
            Poll::Ready(Ok(taken)) => {
                half.bytes += taken as u64;
                half.heard = true;
                half.note_burst(taken);
                Poll::Ready(true)
            }
            Poll::Ready(Err(_)) => {
                first_close.get_or_insert(self.from);
                half.ended = true;
                Poll::Ready(true)
            }
        };
        Some(turn)
    }

    /// One read from `from`, written on to `to`; only what `to` cannot take now is kept. tokio's
    /// `poll_read` takes a short read as "drained" (as nginx does), so a small message costs one
    /// `recv`, not a second one that would only say `EAGAIN`.
    fn step<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        first_close: &mut Option<CloseReason>,
    ) -> Result<Poll<bool>, CloseReason>
    where
        R: AsyncRead + Spliceable + Unpin,
        W: AsyncWrite + Spliceable + Unpin,
    {
        let half = &mut *self.half;
        let spliceable = from.tcp().is_some() && to.tcp().is_some();
        let size = if spliceable { half.read_size() } else { SCRATCH };
        SCRATCH_BUFFER.with_borrow_mut(|scratch| {
            let mut buffer = ReadBuf::new(&mut scratch[..size]);
            match Pin::new(&mut *from).poll_read(cx, &mut buffer) {
                Poll::Pending => return Ok(Poll::Pending),
                // A TLS peer that ends with a FIN but no close_notify (browsers do) simply closed.
                Poll::Ready(Err(error)) if error.kind() == ErrorKind::UnexpectedEof => {}
                Poll::Ready(Err(_)) => {
                    // Whoever failed is to blame; the tunnel ends once what is pending is out.
                    first_close.get_or_insert(self.from);
                    half.ended = true;
                    return Ok(Poll::Ready(true));
                }
                Poll::Ready(Ok(())) => {}
            }
            let read = buffer.filled();
            if read.is_empty() {
                half.ended = true;
                return Ok(Poll::Ready(true));
            }
            half.bytes += read.len() as u64;
            half.heard = true;
            let forward = match &mut half.frames {
                Some(frames) => frames.scan(read, self.max_message),
                None => Forward::All,
            };
            half.note_burst(read.len());
            let parts: [&[u8]; 2] = match &forward {
                Forward::All => [read, &[]],
                Forward::Bytes(bytes) => [bytes, &[]],
                Forward::Prefixed(head, from) => [head, &read[*from..]],
            };
            let (mut wrote, mut blocked) = (false, false);
            for part in parts {
                // Once the socket takes no more, the rest waits, in order.
                let written = if blocked { 0 } else { write_some(cx, to, part).map_err(|_| self.to)? };
                wrote |= written > 0;
                blocked |= written < part.len();
                half.pending.extend_from_slice(&part[written..]);
            }
            half.unflushed = wrote;
            Ok(Poll::Ready(parts.iter().any(|part| !part.is_empty())))
        })
    }
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

/// A WebSocket direction's untouched payload ahead, as a length.
fn passing(frames: &FrameTracker) -> usize {
    usize::try_from(frames.passing()).unwrap_or(usize::MAX)
}

/// Splices what the direction's pipe holds on to `to` (plain TCP, as the pipe was filled only
/// then); a WebSocket direction counts those payload bytes as passed, and at the frame's end
/// gets hawser's queued frames back, to write next. Pending when `to` takes nothing.
fn drain_pipe<W: Spliceable>(cx: &mut Context<'_>, to: &W, half: &mut Half) -> io::Result<Poll<()>> {
    let Some(to) = to.tcp() else { return Err(ErrorKind::Unsupported.into()) };
    let Poll::Ready(moved) = half.spliced.poll_drain(cx, to)? else { return Ok(Poll::Pending) };
    if let Some(queued) = half.frames.as_mut().and_then(|frames| frames.passed(moved as u64)) {
        half.pending.extend_from_slice(&queued);
    }
    Ok(Poll::Ready(()))
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
