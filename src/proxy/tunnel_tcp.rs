//! The tunnel for the common case, plain TCP on both sides, holding no buffer while idle: each
//! direction waits for readiness, reads into a per-thread scratch buffer and writes straight
//! on; only bytes the other side cannot take yet are kept, in a buffer freed once they are
//! written. An idle tunnel costs its two sockets and this task, nothing more.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::pin::pin;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::tunnel::{CloseReason, FAR_FUTURE, Limits};
use crate::metrics::TunnelTotals;

/// Scratch space for one read; 64 KiB moves large WebSocket messages in few system calls.
const SCRATCH: usize = 64 * 1024;
/// Reads per readiness event before the other direction and the timers get a turn.
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

/// What a turn of one direction found.
enum Turn {
    Moved,
    Failed(CloseReason),
}

/// Copies between `client` and `backend` until both directions have ended, one fails, or a
/// limit or `shutdown` fires. Same contract as [`super::tunnel::run`].
pub async fn run(
    client: TcpStream,
    backend: TcpStream,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> (CloseReason, TunnelTotals) {
    let started = Instant::now();
    let (mut up, mut down) = (Half::default(), Half::default());
    let mut last_activity = started;
    let idle = limits.idle.unwrap_or(FAR_FUTURE);
    let (idle_timer, max_timer, shutdown) = limits.clocks(shutdown);
    let (mut idle_timer, mut max_timer, mut shutdown) = (pin!(idle_timer), pin!(max_timer), pin!(shutdown));
    let mut first_close = None;
    let reason = loop {
        if up.closed && down.closed {
            break first_close.unwrap_or(CloseReason::Client);
        }
        let turn = tokio::select! {
            ready = client.readable(), if !up.ended && up.pending.is_empty() => match ready {
                Ok(()) => step(&client, &backend, &mut up, CloseReason::ClientError, CloseReason::BackendError),
                Err(_) => Turn::Failed(CloseReason::ClientError),
            },
            ready = backend.writable(), if !up.pending.is_empty() => match ready {
                Ok(()) => flush(&backend, &mut up, CloseReason::BackendError),
                Err(_) => Turn::Failed(CloseReason::BackendError),
            },
            ready = backend.readable(), if !down.ended && down.pending.is_empty() => match ready {
                Ok(()) => step(&backend, &client, &mut down, CloseReason::BackendError, CloseReason::ClientError),
                Err(_) => Turn::Failed(CloseReason::BackendError),
            },
            ready = client.writable(), if !down.pending.is_empty() => match ready {
                Ok(()) => flush(&client, &mut down, CloseReason::ClientError),
                Err(_) => Turn::Failed(CloseReason::ClientError),
            },
            () = &mut idle_timer => {
                if last_activity.elapsed() >= idle {
                    break CloseReason::Idle;
                }
                idle_timer.as_mut().reset(last_activity + idle);
                continue;
            },
            () = &mut max_timer => break CloseReason::MaxDuration,
            () = &mut shutdown => break CloseReason::Shutdown,
        };
        if let Turn::Failed(reason) = turn {
            break reason;
        }
        last_activity = Instant::now();
        for (half, to, closer) in
            [(&mut up, &backend, CloseReason::Client), (&mut down, &client, CloseReason::Backend)]
        {
            if half.ended && half.pending.is_empty() && !half.closed {
                // Pass the end of stream on as a half-close (RFC 9293 §3.6).
                let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
                half.closed = true;
                first_close.get_or_insert(closer);
            }
        }
    };
    let totals = TunnelTotals {
        client_to_backend: up.bytes,
        backend_to_client: down.bytes,
        duration: started.elapsed(),
    };
    (reason, totals)
}

/// Reads what `from` has (a bounded number of times) and writes it to `to`, keeping only what
/// `to` cannot take now.
fn step(
    from: &TcpStream,
    to: &TcpStream,
    half: &mut Half,
    read_failed: CloseReason,
    write_failed: CloseReason,
) -> Turn {
    SCRATCH_BUFFER.with_borrow_mut(|scratch| {
        for _ in 0..READS_PER_TURN {
            let read = match from.try_read(scratch) {
                Ok(0) => {
                    half.ended = true;
                    return Turn::Moved;
                }
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Turn::Moved,
                Err(_) => return Turn::Failed(read_failed),
            };
            half.bytes += read as u64;
            match write_some(to, &scratch[..read]) {
                Ok(written) if written == read => {}
                Ok(written) => {
                    half.pending.extend_from_slice(&scratch[written..read]);
                    return Turn::Moved;
                }
                Err(_) => return Turn::Failed(write_failed),
            }
        }
        Turn::Moved
    })
}

/// Writes kept bytes; the buffer is released once empty.
fn flush(to: &TcpStream, half: &mut Half, write_failed: CloseReason) -> Turn {
    match write_some(to, &half.pending) {
        Ok(written) if written == half.pending.len() => {
            half.pending = Vec::new();
            Turn::Moved
        }
        Ok(written) => {
            half.pending.drain(..written);
            Turn::Moved
        }
        Err(_) => Turn::Failed(write_failed),
    }
}

/// As much of `data` as the socket takes now (0 when it takes nothing).
fn write_some(to: &TcpStream, mut data: &[u8]) -> io::Result<usize> {
    let total = data.len();
    while !data.is_empty() {
        match to.try_write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => data = &data[written..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total - data.len())
}
